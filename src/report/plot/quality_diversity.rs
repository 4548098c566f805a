//! The quality–diversity plots, one point per setting: mean perplexity against distinct-2, and,
//! when a run has them, MAUVE and coherence against Su et al.'s diversity, the frontier decoding
//! papers draw.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::PlotRow;
use super::axes::{Axis, format_number};
use super::canvas::{DrawResult, err};
use super::legend::{Marker, draw_legend, draw_marker};
use super::style::{
    BEAM_COLOR, CONTRASTIVE_COLOR, GREEDY_COLOR, GRID_COLOR, HUMAN_COLOR, LABEL_COLOR,
    LEGEND_WIDTH, font, temperature_color,
};
use crate::spec::grid::Strategy;

/// Points are labelled with their setting ids when a plot has fewer than this many.
const LABEL_POINTS_BELOW: usize = 25;

fn short_id(id: &str) -> &str {
    id.strip_prefix("sample_").unwrap_or(id)
}

fn marker_of(row: &PlotRow, t_lo: f64, t_hi: f64) -> Marker {
    match row.strategy {
        Strategy::Sample => Marker::Circle(temperature_color(row.temperature, t_lo, t_hi)),
        Strategy::Greedy => Marker::Triangle(GREEDY_COLOR),
        Strategy::Beam => Marker::Square(BEAM_COLOR),
        Strategy::Contrastive => Marker::Triangle(CONTRASTIVE_COLOR),
        Strategy::Human => Marker::Cross(HUMAN_COLOR),
    }
}

/// One axis of a quality–diversity plot: which value of a row, and how to describe it.
#[derive(Clone, Copy)]
pub(super) struct Measure {
    pub(super) value: fn(&PlotRow) -> f64,
    /// The axis title; with a log scale, `log_desc`.
    pub(super) desc: &'static str,
    pub(super) log_desc: Option<&'static str>,
    /// The value lies in [0, 1].
    pub(super) unit: bool,
}

pub(super) const PERPLEXITY: Measure = Measure {
    value: |r| r.mean_perplexity,
    desc: "mean perplexity (lower = more fluent under the model)",
    log_desc: Some("mean perplexity (log scale; lower = more fluent under the model)"),
    unit: false,
};
pub(super) const DISTINCT_2: Measure = Measure {
    value: |r| r.distinct_2,
    desc: "distinct-2 (higher = more diverse)",
    log_desc: None,
    unit: true,
};
pub(super) const MAUVE: Measure = Measure {
    value: |r| r.mauve,
    desc: "MAUVE against the human text (higher = closer)",
    log_desc: None,
    unit: true,
};
pub(super) const COHERENCE: Measure = Measure {
    value: |r| r.coherence,
    desc: "coherence, mean log-probability per token under the scorer (higher = more coherent)",
    log_desc: None,
    unit: false,
};
pub(super) const DIVERSITY: Measure = Measure {
    value: |r| r.diversity,
    desc: "diversity, (1 − rep-2)(1 − rep-3)(1 − rep-4) (higher = less repetitive)",
    log_desc: None,
    unit: true,
};

/// Whether some row has both values of a plot, so that it has something to draw.
pub(super) fn plottable(rows: &[PlotRow], x: Measure, y: Measure) -> bool {
    rows.iter()
        .any(|r| (x.value)(r).is_finite() && (y.value)(r).is_finite())
}

pub(super) fn draw_quality_diversity<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rows: &[PlotRow],
    (xm, ym): (Measure, Measure),
) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    let points: Vec<&PlotRow> = rows
        .iter()
        .filter(|r| (xm.value)(r).is_finite() && (ym.value)(r).is_finite())
        .collect();
    let sample_ts: Vec<f64> = {
        let mut ts: Vec<f64> = points
            .iter()
            .filter(|r| r.strategy == Strategy::Sample)
            .map(|r| r.temperature)
            .collect();
        ts.sort_by(f64::total_cmp);
        ts.dedup();
        ts
    };
    let t_lo = sample_ts.first().copied().unwrap_or(0.0);
    let t_hi = sample_ts.last().copied().unwrap_or(1.0);

    let (w, _) = root.dim_in_pixel();
    let titled = root
        .titled("Quality–diversity trade-off", font(28))
        .map_err(err)?;
    let (plot_area, legend_area) = titled.split_horizontally(w - LEGEND_WIDTH);

    let xs: Vec<f64> = points.iter().map(|r| (xm.value)(r)).collect();
    let ys: Vec<f64> = points.iter().map(|r| (ym.value)(r)).collect();
    let x = Axis::fit(&xs, xm.log_desc.is_some(), xm.unit);
    let y = Axis::fit(&ys, ym.log_desc.is_some(), ym.unit);
    let mut chart = ChartBuilder::on(&plot_area)
        .margin(20)
        .x_label_area_size(70)
        .y_label_area_size(90)
        .build_cartesian_2d(x.range(), y.range())
        .map_err(err)?;
    let desc = |m: Measure, log: bool| match (log, m.log_desc) {
        (true, Some(d)) => d,
        _ => m.desc,
    };
    chart
        .configure_mesh()
        .x_desc(desc(xm, x.log))
        .y_desc(desc(ym, y.log))
        .axis_desc_style(font(20))
        .label_style(font(16))
        .bold_line_style(GRID_COLOR)
        .x_label_formatter(&|v| x.label(*v))
        .y_label_formatter(&|v| y.label(*v))
        .draw()
        .map_err(err)?;

    // Sampling points first, greedy last: the few baseline markers stay visible on top.
    let mut order: Vec<&PlotRow> = points.clone();
    order.sort_by_key(|r| match r.strategy {
        Strategy::Sample => 0,
        Strategy::Beam => 1,
        Strategy::Contrastive => 1,
        Strategy::Human => 2,
        Strategy::Greedy => 3,
    });
    let centres: Vec<(i32, i32)> = order
        .iter()
        .map(|r| chart.backend_coord(&(x.pos((xm.value)(r)), y.pos((ym.value)(r)))))
        .collect();
    for (r, &c) in order.iter().zip(&centres) {
        draw_marker(root, c, marker_of(r, t_lo, t_hi))?;
    }

    if order.len() < LABEL_POINTS_BELOW {
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        let labels: Vec<String> = order
            .iter()
            .map(|r| short_id(&r.setting).to_string())
            .collect();
        place_labels(root, &labels, &centres, (xr, yr))?;
    }

    let mut legend: Vec<(Marker, String)> = sample_ts
        .iter()
        .map(|&t| {
            (
                Marker::Circle(temperature_color(t, t_lo, t_hi)),
                format!("sampling, T = {}", format_number(t, 3)),
            )
        })
        .collect();
    let has = |s: Strategy| points.iter().any(|r| r.strategy == s);
    if has(Strategy::Greedy) {
        legend.push((Marker::Triangle(GREEDY_COLOR), "greedy (T = 0)".to_string()));
    }
    if has(Strategy::Beam) {
        let mut beams: Vec<usize> = points
            .iter()
            .filter(|r| r.strategy == Strategy::Beam)
            .map(|r| r.num_beams)
            .collect();
        beams.sort_unstable();
        beams.dedup();
        let beams: Vec<String> = beams.iter().map(|n| n.to_string()).collect();
        legend.push((
            Marker::Square(BEAM_COLOR),
            format!("beam search, n = {}", beams.join(", ")),
        ));
    }
    if has(Strategy::Contrastive) {
        legend.push((
            Marker::Triangle(CONTRASTIVE_COLOR),
            "contrastive search".to_string(),
        ));
    }
    if has(Strategy::Human) {
        legend.push((Marker::Cross(HUMAN_COLOR), "human reference".to_string()));
    }
    draw_legend(&legend_area, "", &legend)
}

/// Label each point (backend pixels `centres`) beside its marker: the first of a few positions
/// around it that stays inside the plotting area and clear of markers and earlier labels; a
/// label with no free position is left out rather than drawn over another.
fn place_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    labels: &[String],
    centres: &[(i32, i32)],
    (xr, yr): (std::ops::Range<i32>, std::ops::Range<i32>),
) -> DrawResult {
    type Rect = (i32, i32, i32, i32);
    let overlaps = |a: Rect, b: Rect| a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3;
    let style = font(13).color(&LABEL_COLOR);
    let mut taken: Vec<Rect> = centres
        .iter()
        .map(|&(x, y)| (x - 8, y - 8, x + 8, y + 8))
        .collect();
    // Label from the outside in: isolated points first get the best positions.
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| {
        let crowd = |i: usize| {
            centres
                .iter()
                .filter(|c| (c.0 - centres[i].0).abs() < 120 && (c.1 - centres[i].1).abs() < 40)
                .count()
        };
        crowd(a).cmp(&crowd(b)).then(a.cmp(&b))
    });
    for i in order {
        let (tw, th) = root.estimate_text_size(&labels[i], &style).map_err(err)?;
        let (tw, th) = (tw as i32, th as i32 + 2);
        let (x, y) = centres[i];
        let gap = 11;
        let candidates = [
            (x + gap, y - th / 2),
            (x - gap - tw, y - th / 2),
            (x - tw / 2, y - gap - th),
            (x - tw / 2, y + gap),
            (x + gap, y - gap - th + 4),
            (x + gap, y + gap - 4),
            (x - gap - tw, y - gap - th + 4),
            (x - gap - tw, y + gap - 4),
        ];
        let free = candidates.iter().find(|&&(lx, ly)| {
            let rect = (lx, ly, lx + tw, ly + th);
            lx >= xr.start
                && lx + tw <= xr.end
                && ly >= yr.start
                && ly + th <= yr.end
                && !taken.iter().any(|&t| overlaps(rect, t))
        });
        if let Some(&(lx, ly)) = free {
            taken.push((lx, ly, lx + tw, ly + th));
            root.draw(&Text::new(labels[i].clone(), (lx, ly), style.clone()))
                .map_err(err)?;
        }
    }
    Ok(())
}
