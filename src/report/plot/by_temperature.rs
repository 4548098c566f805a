//! Metrics against temperature: four panels, one line per (top_k, top_p, knobs), greedy at
//! temperature 0 and beam and human rows as horizontal references.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::PlotRow;
use super::axes::{Axis, format_number};
use super::canvas::{DrawResult, err};
use super::legend::{Marker, draw_legend, draw_marker};
use super::style::{GREEDY_COLOR, GRID_COLOR, HUMAN_COLOR, LEGEND_WIDTH, TAB10, font};
use crate::report::metrics;
use crate::spec::grid::{Strategy, knob_suffix, knob_words};

#[derive(Clone, Copy, PartialEq)]
enum Metric {
    MeanPerplexity,
    Distinct2,
    SelfBleu4,
    RepetitionRate,
}

impl Metric {
    const ALL: [Metric; 4] = [
        Metric::MeanPerplexity,
        Metric::Distinct2,
        Metric::SelfBleu4,
        Metric::RepetitionRate,
    ];

    fn title(self) -> &'static str {
        match self {
            Metric::MeanPerplexity => "mean perplexity",
            Metric::Distinct2 => "distinct-2",
            Metric::SelfBleu4 => "Self-BLEU-4",
            Metric::RepetitionRate => "repetition rate",
        }
    }
}

impl PlotRow {
    fn metric(&self, metric: Metric) -> f64 {
        match metric {
            Metric::MeanPerplexity => self.mean_perplexity,
            Metric::Distinct2 => self.distinct_2,
            Metric::SelfBleu4 => self.self_bleu_4,
            Metric::RepetitionRate => self.repetition_rate,
        }
    }
}

/// Sorted distinct temperatures of the sampling rows (greedy counts as 0).
pub(super) fn temperatures(rows: &[PlotRow]) -> Vec<f64> {
    let mut ts: Vec<f64> = rows
        .iter()
        .filter_map(|r| match r.strategy {
            Strategy::Sample => Some(r.temperature),
            Strategy::Greedy => Some(0.0),
            _ => None,
        })
        .filter(|t| t.is_finite())
        .collect();
    ts.sort_by(f64::total_cmp);
    ts.dedup();
    ts
}

/// One line: a (top_k, top_p, processor knobs) combination; its points are (temperature, row
/// indices).
struct Line {
    top_k: usize,
    top_p: f64,
    /// The knobs that are on, as in ids (`_minp0.1`); empty for plain sampling.
    knobs: String,
    /// The same knobs in words, for the legend.
    words: String,
    points: Vec<(f64, Vec<usize>)>,
}

fn lines(rows: &[PlotRow]) -> Vec<Line> {
    type Key = (usize, u64, String);
    let mut by_filter: BTreeMap<Key, (String, BTreeMap<u64, Vec<usize>>)> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if r.strategy == Strategy::Sample && r.temperature.is_finite() && r.top_p.is_finite() {
            // Non-negative finite f64s order like their bit patterns.
            by_filter
                .entry((r.top_k, r.top_p.to_bits(), knob_suffix(&r.processors)))
                .or_insert_with(|| (knob_words(&r.processors), BTreeMap::new()))
                .1
                .entry(r.temperature.to_bits())
                .or_default()
                .push(i);
        }
    }
    // Greedy rows by their penalties, the only knobs argmax does not ignore.
    let mut greedy: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if r.strategy == Strategy::Greedy {
            greedy
                .entry(knob_suffix(&r.processors))
                .or_default()
                .push(i);
        }
    }
    let mut out: Vec<Line> = by_filter
        .into_iter()
        .map(|((top_k, top_p, knobs), (words, temps))| {
            let mut points: Vec<(f64, Vec<usize>)> = temps
                .into_iter()
                .map(|(t, idx)| (f64::from_bits(t), idx))
                .collect();
            // Argmax ignores top-k, top-p and the truncation filters: greedy with the line's
            // penalties is temperature 0 of every line.
            let first = points.first().map(|p| p.1[0]);
            let penalties = first.map(|i| knob_suffix(&rows[i].processors.penalties_only()));
            if let Some(g) = penalties.and_then(|p| greedy.get(&p)) {
                points.insert(0, (0.0, g.clone()));
            }
            Line {
                top_k,
                top_p: f64::from_bits(top_p),
                knobs,
                words,
                points,
            }
        })
        .collect();
    // Top-k off (0) sorts last: it is the widest filter. Plain sampling comes before the same
    // filters with knobs on.
    out.sort_by(|a, b| {
        let k = |l: &Line| if l.top_k == 0 { usize::MAX } else { l.top_k };
        k(a).cmp(&k(b))
            .then(a.top_p.partial_cmp(&b.top_p).unwrap_or(Ordering::Equal))
            .then(a.knobs.cmp(&b.knobs))
    });
    out
}

/// The mean of a metric over rows (seeds), ignoring undefined values.
fn mean_of(rows: &[PlotRow], idx: &[usize], metric: Metric) -> f64 {
    let vals: Vec<f64> = idx
        .iter()
        .map(|&i| rows[i].metric(metric))
        .filter(|v| v.is_finite())
        .collect();
    metrics::mean(&vals)
}

/// Beam and human rows, drawn as horizontal references, with their legend texts.
fn references(rows: &[PlotRow]) -> Vec<(usize, String, RGBColor)> {
    let beams: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.strategy == Strategy::Beam)
        .map(|(i, _)| i)
        .collect();
    let shades = [
        RGBColor(0, 110, 80),
        RGBColor(90, 90, 90),
        RGBColor(0, 160, 120),
        RGBColor(150, 150, 150),
    ];
    let mut out: Vec<(usize, String, RGBColor)> = beams
        .iter()
        .enumerate()
        .map(|(j, &i)| {
            let r = &rows[i];
            let same_n = beams.iter().filter(|&&b| rows[b].num_beams == r.num_beams);
            let text = if same_n.count() > 1 {
                r.setting.clone()
            } else {
                format!("beam search, n = {}", r.num_beams)
            };
            (i, text, shades[j % shades.len()])
        })
        .collect();
    out.extend(
        rows.iter()
            .enumerate()
            .filter(|(_, r)| r.strategy == Strategy::Human)
            .map(|(i, _)| (i, "human reference".to_string(), HUMAN_COLOR)),
    );
    out
}

pub(super) fn draw_by_temperature<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rows: &[PlotRow],
) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    let (w, _) = root.dim_in_pixel();
    let titled = root
        .titled("Metrics against temperature", font(28))
        .map_err(err)?;
    let (grid, legend_area) = titled.split_horizontally(w - LEGEND_WIDTH);
    let lines = lines(rows);
    let refs = references(rows);
    let greedy: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.strategy == Strategy::Greedy)
        .map(|(i, _)| i)
        .collect();
    let temps = temperatures(rows);
    let x = Axis::fit(&temps, false, false).ticks_at(&temps);

    for (panel, metric) in grid.split_evenly((2, 2)).iter().zip(Metric::ALL) {
        let series: Vec<Vec<(f64, f64)>> = lines
            .iter()
            .map(|l| {
                l.points
                    .iter()
                    .map(|(t, idx)| (*t, mean_of(rows, idx, metric)))
                    .filter(|(_, v)| v.is_finite())
                    .collect()
            })
            .collect();
        let ref_values: Vec<f64> = refs
            .iter()
            .map(|(i, _, _)| rows[*i].metric(metric))
            .collect();
        let mut all: Vec<f64> = series.iter().flatten().map(|p| p.1).collect();
        all.extend(ref_values.iter().copied());
        all.extend(greedy.iter().map(|&i| rows[i].metric(metric)));
        let y = Axis::fit(
            &all,
            metric == Metric::MeanPerplexity,
            metric != Metric::MeanPerplexity,
        );

        let mut chart = ChartBuilder::on(panel)
            .caption(metric.title(), font(21))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(x.range(), y.range())
            .map_err(err)?;
        let y_desc = if y.log {
            format!("{} (log scale)", metric.title())
        } else {
            metric.title().to_string()
        };
        chart
            .configure_mesh()
            .x_desc("temperature")
            .y_desc(y_desc)
            .axis_desc_style(font(17))
            .label_style(font(15))
            .bold_line_style(GRID_COLOR)
            .x_label_formatter(&|v| x.label(*v))
            .y_label_formatter(&|v| y.label(*v))
            .draw()
            .map_err(err)?;

        for ((_, _, color), v) in refs.iter().zip(&ref_values) {
            if v.is_finite() {
                let v = y.pos(*v);
                chart
                    .draw_series(DashedLineSeries::new(
                        [(x.lo, v), (x.hi, v)],
                        10,
                        6,
                        color.stroke_width(2),
                    ))
                    .map_err(err)?;
            }
        }
        for (j, points) in series.iter().enumerate() {
            let color = TAB10[j % TAB10.len()];
            let points: Vec<(f64, f64)> = points.iter().map(|&(t, v)| (t, y.pos(v))).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))
                .map_err(err)?;
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 5, color.filled())))
                .map_err(err)?;
        }
        for &i in &greedy {
            let v = rows[i].metric(metric);
            if v.is_finite() {
                let c = chart.backend_coord(&(0.0, y.pos(v)));
                draw_marker(root, c, Marker::Triangle(GREEDY_COLOR))?;
            }
        }
        if all.iter().all(|v| !v.is_finite()) {
            let (xr, yr) = chart.plotting_area().get_pixel_range();
            let centre = ((xr.start + xr.end) / 2, (yr.start + yr.end) / 2);
            let style = font(16).pos(Pos::new(HPos::Center, VPos::Center));
            root.draw(&Text::new("undefined for this run", centre, style))
                .map_err(err)?;
        }
    }

    let mut legend: Vec<(Marker, String)> = lines
        .iter()
        .enumerate()
        .map(|(j, l)| {
            (
                Marker::Line(TAB10[j % TAB10.len()]),
                if l.words.is_empty() {
                    format!("top_k={}, top_p={}", l.top_k, format_number(l.top_p, 4))
                } else {
                    format!(
                        "top_k={}, top_p={}, {}",
                        l.top_k,
                        format_number(l.top_p, 4),
                        l.words
                    )
                },
            )
        })
        .collect();
    if !greedy.is_empty() {
        legend.push((Marker::Triangle(GREEDY_COLOR), "greedy (T = 0)".to_string()));
    }
    legend.extend(
        refs.iter()
            .map(|(_, text, color)| (Marker::Dashed(*color), text.clone())),
    );
    draw_legend(&legend_area, "sampling filters", &legend)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::plot::tests::grid_rows;

    #[test]
    fn greedy_starts_every_line_and_lines_sort_by_filter() {
        let ls = lines(&grid_rows());
        let names: Vec<(usize, f64)> = ls.iter().map(|l| (l.top_k, l.top_p)).collect();
        assert_eq!(names, [(50, 0.9), (0, 1.0)]);
        for l in &ls {
            let ts: Vec<f64> = l.points.iter().map(|p| p.0).collect();
            assert_eq!(ts, [0.0, 0.5, 0.8, 1.0]);
        }
    }
}
