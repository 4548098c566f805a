//! Axes: how a range of values is fitted (linear or log), where the ticks go and how they are
//! labelled. Shared by both plots.

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::report::tables::number;

/// One axis: its range and tick positions in plot space (log10 of the value on a log axis).
pub(super) struct Axis {
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) log: bool,
    pub(super) ticks: Vec<f64>,
}

impl Axis {
    /// An axis that shows every finite value of `values` with a margin. `log_ok`: use a log
    /// scale when the values are positive and span a factor of 4 or more. `unit`: the metric
    /// lies in [0, 1], so no tick falls outside it.
    pub(super) fn fit(values: &[f64], log_ok: bool, unit: bool) -> Axis {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let (mut min, mut max) = finite
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        if finite.is_empty() {
            (min, max) = (0.0, 1.0);
        }
        let log = log_ok && min > 0.0 && max / min >= 4.0;
        let (a, b) = if log {
            (min.log10(), max.log10())
        } else {
            (min, max)
        };
        let span = if b > a {
            b - a
        } else if a != 0.0 {
            a.abs() * 0.1
        } else {
            0.1
        };
        let (lo, hi) = (a - span * 0.08, b + span * 0.08);
        let mut ticks = if log {
            log_ticks(lo, hi)
        } else {
            linear_ticks(lo, hi, 6)
        };
        if unit {
            ticks.retain(|&t| (-1e-9..=1.0 + 1e-9).contains(&t));
        }
        Axis { lo, hi, log, ticks }
    }

    /// Plot-space position of a value.
    pub(super) fn pos(&self, v: f64) -> f64 {
        if self.log { v.log10() } else { v }
    }

    pub(super) fn range(&self) -> Ticked {
        Ticked {
            inner: (self.lo..self.hi).into(),
            ticks: self.ticks.clone(),
        }
    }

    /// The tick label of a plot-space position.
    pub(super) fn label(&self, p: f64) -> String {
        if self.log {
            return format_number(10f64.powf(p), 3);
        }
        // As many decimals as the ticks need, the same for every tick: 0.00, 0.02, …, 1.00.
        let decimals = (0..6)
            .find(|&d| {
                let scale = 10f64.powi(d);
                self.ticks
                    .iter()
                    .all(|t| ((t * scale).round() - t * scale).abs() < 1e-6)
            })
            .unwrap_or(6) as usize;
        let s = format!("{p:.decimals$}");
        if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
            s[1..].to_string()
        } else {
            s
        }
    }

    /// Put the ticks at `values` instead when they are few and far enough apart to read.
    pub(super) fn ticks_at(mut self, values: &[f64]) -> Self {
        let span = self.hi - self.lo;
        let far_apart = values.windows(2).all(|w| (w[1] - w[0]) >= 0.06 * span);
        if !self.log && (2..=8).contains(&values.len()) && far_apart {
            self.ticks = values.to_vec();
        }
        self
    }
}

/// A linear f64 coordinate whose grid lines and labels sit at given ticks (plotters'
/// `WithKeyPoints` over f64 cannot take a label formatter).
pub(super) struct Ticked {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

/// `x` as the CSV files write it, with at most `decimals` decimals, but values of 100 or more
/// rounded to whole numbers: a tick or legend label needs no more.
pub(super) fn format_number(x: f64, decimals: usize) -> String {
    number(x, if x.abs() >= 100.0 { 0 } else { decimals })
}

/// About `target` evenly spaced round ticks (1, 2 or 5 × 10^k apart) within [lo, hi].
fn linear_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let raw = (hi - lo) / target.max(1) as f64;
    if raw.is_nan() || raw <= 0.0 || raw.is_infinite() {
        return vec![lo];
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Ticks of a log axis given in log10 space: 1-2-5 × 10^k, finer (1…9) when that gives fewer
/// than four, only powers of ten when the range covers many decades.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades = hi - lo;
    let multipliers: &[&[f64]] = if decades > 5.0 {
        &[&[1.0]]
    } else {
        &[
            &[1.0, 2.0, 5.0],
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
        ]
    };
    let mut ticks = Vec::new();
    for m in multipliers {
        ticks = (lo.floor() as i64..=hi.ceil() as i64)
            .flat_map(|k| m.iter().map(move |m| (m * 10f64.powi(k as i32)).log10()))
            .filter(|&t| t >= lo && t <= hi)
            .collect();
        if ticks.len() >= 4 {
            break;
        }
    }
    if ticks.len() < 2 {
        // A narrow range: round values spaced linearly, placed on the log axis.
        ticks = linear_ticks(10f64.powf(lo), 10f64.powf(hi), 5)
            .into_iter()
            .filter(|&v| v > 0.0)
            .map(f64::log10)
            .collect();
    }
    ticks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_pick_log_scale_and_round_ticks() {
        let a = Axis::fit(&[2.0, 10.0, 300.0], true, false);
        assert!(a.log);
        let labels: Vec<String> = a.ticks.iter().map(|&t| a.label(t)).collect();
        assert!(labels.contains(&"10".to_string()), "{labels:?}");
        assert!(labels.contains(&"100".to_string()), "{labels:?}");
        let narrow = Axis::fit(&[480.0, 520.0], true, false);
        assert!(!narrow.log);
        assert!(narrow.ticks.len() >= 3);
        let unit = Axis::fit(&[0.0, 0.02], false, true);
        assert!(unit.ticks.iter().all(|&t| t >= 0.0));
        assert_eq!(
            linear_ticks(0.0, 1.0, 5),
            [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(format_number(0.6000000000000001, 1), "0.6");
        assert_eq!(format_number(512.4, 3), "512");
    }
}
