//! Point markers and the legend column that names them: both plots mark their points and
//! explain them the same way.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::canvas::{DrawResult, err};
use super::style::font;

/// A legend symbol.
#[derive(Clone, Copy)]
pub(super) enum Marker {
    Circle(RGBColor),
    Triangle(RGBColor),
    Square(RGBColor),
    Cross(RGBColor),
    /// A line with a circle on it.
    Line(RGBColor),
    Dashed(RGBColor),
}

/// Draw a point marker centred on backend pixel `c`.
pub(super) fn draw_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    c: (i32, i32),
    marker: Marker,
) -> DrawResult {
    let (x, y) = c;
    match marker {
        Marker::Circle(color) => {
            area.draw(&Circle::new(c, 7, color.filled())).map_err(err)?;
            area.draw(&Circle::new(c, 7, WHITE.stroke_width(1)))
                .map_err(err)
        }
        Marker::Triangle(color) => area
            .draw(&TriangleMarker::new(c, 10, color.filled()))
            .map_err(err),
        Marker::Square(color) => {
            let corners = [(x - 7, y - 7), (x + 7, y + 7)];
            area.draw(&Rectangle::new(corners, color.filled()))
                .map_err(err)?;
            area.draw(&Rectangle::new(corners, WHITE.stroke_width(1)))
                .map_err(err)
        }
        Marker::Cross(color) => area
            .draw(&Cross::new(c, 8, color.stroke_width(3)))
            .map_err(err),
        Marker::Line(color) => {
            area.draw(&PathElement::new(
                vec![(x - 16, y), (x + 16, y)],
                color.stroke_width(3),
            ))
            .map_err(err)?;
            area.draw(&Circle::new(c, 5, color.filled())).map_err(err)
        }
        Marker::Dashed(color) => {
            for dx in [-16, -5, 6] {
                area.draw(&PathElement::new(
                    vec![(x + dx, y), (x + dx + 8, y)],
                    color.stroke_width(2),
                ))
                .map_err(err)?;
            }
            Ok(())
        }
    }
}

/// A legend in its own column: an optional title, then one row per entry (as many as fit).
pub(super) fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    entries: &[(Marker, String)],
) -> DrawResult {
    let (_, height) = area.dim_in_pixel();
    let row = 28;
    let mut y = 30;
    if !title.is_empty() {
        area.draw(&Text::new(title.to_string(), (12, y), font(17)))
            .map_err(err)?;
        y += row + 4;
    }
    for (i, (marker, text)) in entries.iter().enumerate() {
        if y + 2 * row > height as i32 && i + 1 < entries.len() {
            let more = format!("… and {} more", entries.len() - i);
            return area.draw(&Text::new(more, (12, y), font(15))).map_err(err);
        }
        draw_marker(area, (32, y + 9), *marker)?;
        area.draw(&Text::new(text.clone(), (58, y), font(16)))
            .map_err(err)?;
        y += row;
    }
    Ok(())
}
