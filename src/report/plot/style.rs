//! Colours, sizes and the text style the plots share, so both plots look alike.

use plotters::prelude::*;

use super::canvas::FONT;

/// Width of the legend column on the right of each plot.
pub(super) const LEGEND_WIDTH: u32 = 270;

pub(super) const TAB10: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub(super) const GREEDY_COLOR: RGBColor = RGBColor(0, 0, 0);
pub(super) const BEAM_COLOR: RGBColor = RGBColor(0, 128, 96);
pub(super) const HUMAN_COLOR: RGBColor = RGBColor(200, 0, 0);
pub(super) const CONTRASTIVE_COLOR: RGBColor = RGBColor(148, 0, 211);
pub(super) const GRID_COLOR: RGBColor = RGBColor(225, 225, 225);
pub(super) const LABEL_COLOR: RGBColor = RGBColor(60, 60, 60);

/// A colour for temperature `t` in [lo, hi]: plasma-like, from deep blue (cold) to orange (hot).
pub(super) fn temperature_color(t: f64, lo: f64, hi: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [
        (13.0, 8.0, 135.0),
        (106.0, 0.0, 168.0),
        (177.0, 42.0, 144.0),
        (225.0, 100.0, 98.0),
        (245.0, 160.0, 40.0),
    ];
    let x = if hi > lo {
        ((t - lo) / (hi - lo)).clamp(0.0, 1.0)
    } else {
        0.5
    };
    let f = x * (STOPS.len() - 1) as f64;
    let i = (f.floor() as usize).min(STOPS.len() - 2);
    let u = f - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |p: f64, q: f64| (p + (q - p) * u).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Black text in the embedded font, `size` px high.
pub(super) fn font(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}
