//! Plots of a run's summary, written beside the CSVs as SVG and PNG:
//!
//! - `quality_diversity`: mean perplexity (x, log scale when the values span a wide range)
//!   against distinct-2 (y), one point per setting; sampling points coloured by temperature,
//!   greedy, beam and human rows marked with their own shapes.
//! - `by_temperature`: mean perplexity, distinct-2, Self-BLEU-4 and repetition rate against
//!   temperature (2 × 2 panels), one line per (top_k, top_p); greedy is temperature 0 of every
//!   line, beam and human rows are dashed horizontal references. Only when the run has at least
//!   two temperatures.
//!
//! Text is drawn with an embedded DejaVu Sans (`assets/`), so neither building nor running needs
//! fontconfig or FreeType. Every file is written under a temporary name and renamed into place.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters_backend::{BackendColor, BackendCoord, DrawingErrorKind};

use crate::report::summary::Metrics;
use crate::spec::grid::{Setting, Strategy};
use crate::util::files::AtomicFile;

/// Pixel size of every plot (the SVG uses the same user units).
pub const PLOT_SIZE: (u32, u32) = (1200, 800);

/// Points are labelled with their setting ids when a plot has fewer than this many.
const LABEL_POINTS_BELOW: usize = 25;

/// Width of the legend column on the right of each plot.
const LEGEND_WIDTH: u32 = 270;

const FONT: &str = "sans-serif";

/// What the plots need of one `summary.csv` row.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotRow {
    pub setting: String,
    pub strategy: Strategy,
    /// 0 for greedy; ignored for human rows.
    pub temperature: f64,
    pub top_k: usize,
    pub top_p: f64,
    pub num_beams: usize,
    pub mean_perplexity: f64,
    pub distinct_2: f64,
    pub self_bleu_4: f64,
    pub repetition_rate: f64,
}

impl PlotRow {
    pub fn new(setting: &Setting, metrics: &Metrics) -> Self {
        Self {
            setting: setting.id(),
            strategy: setting.strategy,
            temperature: setting.temperature,
            top_k: setting.top_k,
            top_p: setting.top_p,
            num_beams: setting.num_beams,
            mean_perplexity: metrics.mean_perplexity,
            distinct_2: metrics.distinct_2,
            self_bleu_4: metrics.self_bleu_4,
            repetition_rate: metrics.repetition_rate,
        }
    }

    fn metric(&self, metric: Metric) -> f64 {
        match metric {
            Metric::MeanPerplexity => self.mean_perplexity,
            Metric::Distinct2 => self.distinct_2,
            Metric::SelfBleu4 => self.self_bleu_4,
            Metric::RepetitionRate => self.repetition_rate,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("drawing {plot}: {message}")]
    Draw { plot: String, message: String },
    #[error("the embedded font could not be loaded")]
    Font,
}

/// Write `quality_diversity.svg/.png` and, when the run has at least two temperatures,
/// `by_temperature.svg/.png` into `dir`; returns the files written. Rows whose plotted values
/// are undefined (NaN) are left out; with nothing to plot, nothing is written.
pub fn write_plots(dir: &Path, rows: &[PlotRow]) -> Result<Vec<PathBuf>, PlotError> {
    register_font()?;
    let mut plots = Vec::new();
    if rows
        .iter()
        .any(|r| r.mean_perplexity.is_finite() && r.distinct_2.is_finite())
    {
        plots.push(Plot::QualityDiversity);
    }
    if temperatures(rows).len() >= 2 {
        plots.push(Plot::ByTemperature);
    }
    // One plot failing does not stop the other; the first error is returned.
    let mut written = Vec::new();
    let mut first_error = None;
    for plot in plots {
        match write_both(dir, plot, rows) {
            Ok(files) => written.extend(files),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(written),
    }
}

/// DejaVu Sans, embedded: `assets/DejaVuSans.ttf` (licence in `assets/DejaVuSans-LICENSE.txt`).
static FONT_BYTES: &[u8] = include_bytes!("../../../assets/DejaVuSans.ttf");

/// Register the embedded font with plotters (which lays out SVG text with it).
fn register_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()
            && ab_glyph::FontRef::try_from_slice(FONT_BYTES).is_ok()
    });
    if ok { Ok(()) } else { Err(PlotError::Font) }
}

type DrawResult = Result<(), String>;

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

#[derive(Clone, Copy)]
enum Plot {
    QualityDiversity,
    ByTemperature,
}

impl Plot {
    fn name(self) -> &'static str {
        match self {
            Plot::QualityDiversity => "quality_diversity",
            Plot::ByTemperature => "by_temperature",
        }
    }

    fn draw<DB: DrawingBackend>(
        self,
        root: &DrawingArea<DB, Shift>,
        rows: &[PlotRow],
    ) -> DrawResult {
        match self {
            Plot::QualityDiversity => draw_quality_diversity(root, rows),
            Plot::ByTemperature => draw_by_temperature(root, rows),
        }
    }
}

/// Run `f`, turning a panic inside the plotting code into an error: a drawing bug must not
/// take the run down with it.
fn guarded(f: impl FnOnce() -> DrawResult) -> DrawResult {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err("panicked while drawing".to_string()))
}

/// Draw one plot with both backends and write `<name>.svg` and `<name>.png` atomically.
fn write_both(dir: &Path, plot: Plot, rows: &[PlotRow]) -> Result<Vec<PathBuf>, PlotError> {
    let (w, h) = PLOT_SIZE;
    let draw_error = |message: String| PlotError::Draw {
        plot: plot.name().to_string(),
        message,
    };

    let draw_error_text = |_| "the embedded font could not be parsed".to_string();
    let mut svg = String::new();
    guarded(|| {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        plot.draw(&root, rows)?;
        root.present().map_err(err)
    })
    .map_err(draw_error)?;

    let mut pixels = vec![0u8; w as usize * h as usize * 3];
    guarded(|| {
        let root = GlyphBitMap::new(BitMapBackend::with_buffer(&mut pixels, (w, h)))
            .map_err(draw_error_text)?
            .into_drawing_area();
        plot.draw(&root, rows)?;
        root.present().map_err(err)
    })
    .map_err(draw_error)?;
    let png = encode_png(&pixels, w, h).map_err(draw_error)?;

    let svg_path = dir.join(format!("{}.svg", plot.name()));
    let png_path = dir.join(format!("{}.png", plot.name()));
    write_file(&svg_path, svg.as_bytes())?;
    write_file(&png_path, &png)?;
    Ok(vec![svg_path, png_path])
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(err)?;
    writer.write_image_data(rgb).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PlotError> {
    let io = |error| PlotError::Io {
        path: path.to_path_buf(),
        error,
    };
    // A failed AtomicFile removes its temporary file.
    AtomicFile::create(path)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.finish()
        })
        .map_err(io)
}

// ---------------------------------------------------------------------------------------------
// Bitmap text

/// `BitMapBackend` with its text drawn by ab_glyph directly. plotters 0.3.7 places each glyph of
/// a bitmap string at its pen position without the glyph's left bearing, which squeezes and
/// spreads letters ("t0. 5_k"); this draws every glyph at its proper place, anti-aliased.
/// Everything but text goes to the wrapped backend unchanged.
struct GlyphBitMap<'a> {
    inner: BitMapBackend<'a>,
    font: ab_glyph::FontRef<'static>,
}

impl<'a> GlyphBitMap<'a> {
    fn new(inner: BitMapBackend<'a>) -> Result<Self, ab_glyph::InvalidFont> {
        Ok(Self {
            inner,
            font: ab_glyph::FontRef::try_from_slice(FONT_BYTES)?,
        })
    }

    /// Glyphs of `text` at `size` px, laid out from a baseline at y = ascent (so the line's box
    /// starts at y = 0), with the line's width and height.
    fn layout(&self, text: &str, size: f64) -> (Vec<ab_glyph::Glyph>, f32, f32) {
        use ab_glyph::{Font, ScaleFont};
        let scaled = self.font.as_scaled(size as f32);
        let ascent = scaled.ascent();
        let mut pen = 0.0f32;
        let mut prev: Option<ab_glyph::GlyphId> = None;
        let mut glyphs = Vec::with_capacity(text.len());
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = prev {
                pen += scaled.kern(p, id);
            }
            glyphs.push(id.with_scale_and_position(scaled.scale(), ab_glyph::point(pen, ascent)));
            pen += scaled.h_advance(id);
            prev = Some(id);
        }
        (glyphs, pen, ascent - scaled.descent())
    }
}

impl DrawingBackend for GlyphBitMap<'_> {
    type ErrorType = <BitMapBackend<'static> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: plotters_backend::BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: plotters_backend::BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: plotters_backend::BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<TStyle: plotters_backend::BackendTextStyle>(
        &self,
        text: &str,
        style: &TStyle,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        let (_, width, height) = self.layout(text, style.size());
        Ok((width.ceil() as u32, height.ceil() as u32))
    }

    fn draw_text<TStyle: plotters_backend::BackendTextStyle>(
        &mut self,
        text: &str,
        style: &TStyle,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        use ab_glyph::Font;
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let (glyphs, width, height) = self.layout(text, style.size());
        let (width, height) = (width.ceil() as i32, height.ceil() as i32);
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match anchor.v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let transform = style.transform();
        let mut pixels = Vec::new();
        for glyph in glyphs {
            if let Some(outline) = self.font.outline_glyph(glyph) {
                let bounds = outline.px_bounds();
                let (x0, y0) = (bounds.min.x as i32, bounds.min.y as i32);
                outline.draw(|x, y, coverage| {
                    pixels.push((x0 + x as i32, y0 + y as i32, coverage));
                });
            }
        }
        for (x, y, coverage) in pixels {
            if coverage <= 0.0 {
                continue;
            }
            let (tx, ty) = transform.transform(x + dx, y + dy);
            let c = BackendColor {
                alpha: color.alpha * f64::from(coverage.min(1.0)),
                rgb: color.rgb,
            };
            self.inner.draw_pixel((pos.0 + tx, pos.1 + ty), c)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Axes

/// One axis: its range and tick positions in plot space (log10 of the value on a log axis).
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    ticks: Vec<f64>,
}

impl Axis {
    /// An axis that shows every finite value of `values` with a margin. `log_ok`: use a log
    /// scale when the values are positive and span a factor of 4 or more. `unit`: the metric
    /// lies in [0, 1], so no tick falls outside it.
    fn fit(values: &[f64], log_ok: bool, unit: bool) -> Axis {
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
    fn pos(&self, v: f64) -> f64 {
        if self.log { v.log10() } else { v }
    }

    fn range(&self) -> Ticked {
        Ticked {
            inner: (self.lo..self.hi).into(),
            ticks: self.ticks.clone(),
        }
    }

    /// The tick label of a plot-space position.
    fn label(&self, p: f64) -> String {
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
    fn ticks_at(mut self, values: &[f64]) -> Self {
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
struct Ticked {
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

/// `x` with at most `decimals` decimals (trailing zeros trimmed); large values rounded.
fn format_number(x: f64, decimals: usize) -> String {
    let decimals = if x.abs() >= 100.0 { 0 } else { decimals };
    let s = format!("{x:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".to_string() } else { s }
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

// ---------------------------------------------------------------------------------------------
// Styles

const TAB10: [RGBColor; 10] = [
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

const GREEDY_COLOR: RGBColor = RGBColor(0, 0, 0);
const BEAM_COLOR: RGBColor = RGBColor(0, 128, 96);
const HUMAN_COLOR: RGBColor = RGBColor(200, 0, 0);
const GRID_COLOR: RGBColor = RGBColor(225, 225, 225);
const LABEL_COLOR: RGBColor = RGBColor(60, 60, 60);

/// A colour for temperature `t` in [lo, hi]: plasma-like, from deep blue (cold) to orange (hot).
fn temperature_color(t: f64, lo: f64, hi: f64) -> RGBColor {
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

fn font(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

/// A legend symbol.
#[derive(Clone, Copy)]
enum Marker {
    Circle(RGBColor),
    Triangle(RGBColor),
    Square(RGBColor),
    Cross(RGBColor),
    /// A line with a circle on it.
    Line(RGBColor),
    Dashed(RGBColor),
}

/// Draw a point marker centred on backend pixel `c`.
fn draw_marker<DB: DrawingBackend>(
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
fn draw_legend<DB: DrawingBackend>(
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

// ---------------------------------------------------------------------------------------------
// Quality–diversity

fn short_id(id: &str) -> &str {
    id.strip_prefix("sample_").unwrap_or(id)
}

fn marker_of(row: &PlotRow, t_lo: f64, t_hi: f64) -> Marker {
    match row.strategy {
        Strategy::Sample => Marker::Circle(temperature_color(row.temperature, t_lo, t_hi)),
        Strategy::Greedy => Marker::Triangle(GREEDY_COLOR),
        Strategy::Beam => Marker::Square(BEAM_COLOR),
        Strategy::Human => Marker::Cross(HUMAN_COLOR),
    }
}

/// Sorted distinct temperatures of the sampling rows (greedy counts as 0).
fn temperatures(rows: &[PlotRow]) -> Vec<f64> {
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

fn draw_quality_diversity<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rows: &[PlotRow],
) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    let points: Vec<&PlotRow> = rows
        .iter()
        .filter(|r| r.mean_perplexity.is_finite() && r.distinct_2.is_finite())
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

    let ppl: Vec<f64> = points.iter().map(|r| r.mean_perplexity).collect();
    let d2: Vec<f64> = points.iter().map(|r| r.distinct_2).collect();
    let x = Axis::fit(&ppl, true, false);
    let y = Axis::fit(&d2, false, true);
    let mut chart = ChartBuilder::on(&plot_area)
        .margin(20)
        .x_label_area_size(70)
        .y_label_area_size(90)
        .build_cartesian_2d(x.range(), y.range())
        .map_err(err)?;
    let x_desc = if x.log {
        "mean perplexity (log scale; lower = more fluent under the model)"
    } else {
        "mean perplexity (lower = more fluent under the model)"
    };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("distinct-2 (higher = more diverse)")
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
        Strategy::Human => 2,
        Strategy::Greedy => 3,
    });
    let centres: Vec<(i32, i32)> = order
        .iter()
        .map(|r| chart.backend_coord(&(x.pos(r.mean_perplexity), y.pos(r.distinct_2))))
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

// ---------------------------------------------------------------------------------------------
// Metrics against temperature

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

/// One line: a (top_k, top_p) combination; its points are (temperature, row indices).
struct Line {
    top_k: usize,
    top_p: f64,
    points: Vec<(f64, Vec<usize>)>,
}

fn lines(rows: &[PlotRow]) -> Vec<Line> {
    let mut by_filter: BTreeMap<(usize, u64), BTreeMap<u64, Vec<usize>>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if r.strategy == Strategy::Sample && r.temperature.is_finite() && r.top_p.is_finite() {
            // Non-negative finite f64s order like their bit patterns.
            by_filter
                .entry((r.top_k, r.top_p.to_bits()))
                .or_default()
                .entry(r.temperature.to_bits())
                .or_default()
                .push(i);
        }
    }
    let greedy: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.strategy == Strategy::Greedy)
        .map(|(i, _)| i)
        .collect();
    let mut out: Vec<Line> = by_filter
        .into_iter()
        .map(|((top_k, top_p), temps)| {
            let mut points: Vec<(f64, Vec<usize>)> = temps
                .into_iter()
                .map(|(t, idx)| (f64::from_bits(t), idx))
                .collect();
            // Argmax ignores top-k and top-p: greedy is temperature 0 of every line.
            if !greedy.is_empty() {
                points.insert(0, (0.0, greedy.clone()));
            }
            Line {
                top_k,
                top_p: f64::from_bits(top_p),
                points,
            }
        })
        .collect();
    // Top-k off (0) sorts last: it is the widest filter.
    out.sort_by(|a, b| {
        let k = |l: &Line| if l.top_k == 0 { usize::MAX } else { l.top_k };
        k(a).cmp(&k(b))
            .then(a.top_p.partial_cmp(&b.top_p).unwrap_or(Ordering::Equal))
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
    if vals.is_empty() {
        f64::NAN
    } else {
        vals.iter().sum::<f64>() / vals.len() as f64
    }
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

fn draw_by_temperature<DB: DrawingBackend>(
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
                format!("top_k={}, top_p={}", l.top_k, format_number(l.top_p, 4)),
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

    fn row(setting: &str, strategy: Strategy, t: f64, k: usize, p: f64, n: usize) -> PlotRow {
        // Plausible shapes: perplexity and diversity grow with temperature.
        let heat = if strategy == Strategy::Beam { 0.0 } else { t };
        PlotRow {
            setting: setting.to_string(),
            strategy,
            temperature: t,
            top_k: k,
            top_p: p,
            num_beams: n,
            mean_perplexity: 2.0 * (1.0 + 3.0 * heat).powi(2) + k as f64 * 0.01,
            distinct_2: (0.2 + 0.5 * heat - 0.1 * (1.0 - p)).min(0.98),
            self_bleu_4: (0.8 - 0.5 * heat).max(0.02),
            repetition_rate: (0.6 - 0.6 * heat).max(0.0),
        }
    }

    fn grid_rows() -> Vec<PlotRow> {
        let mut rows = vec![row("greedy", Strategy::Greedy, 0.0, 0, 1.0, 1)];
        for t in [0.5, 0.8, 1.0] {
            for (k, p) in [(0, 1.0), (50, 0.9)] {
                rows.push(row(
                    &format!("sample_t{t}_k{k}_p{p}_s1"),
                    Strategy::Sample,
                    t,
                    k,
                    p,
                    1,
                ));
            }
        }
        rows.push(row("beam_n4_lp1", Strategy::Beam, 1.0, 0, 1.0, 4));
        let mut human = row("human", Strategy::Human, f64::NAN, 0, f64::NAN, 0);
        human.mean_perplexity = 40.0;
        human.distinct_2 = 0.9;
        rows.push(human);
        rows
    }

    #[test]
    fn writes_both_plots_as_svg_and_png() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_plots(dir.path(), &grid_rows()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "quality_diversity.svg",
                "quality_diversity.png",
                "by_temperature.svg",
                "by_temperature.png"
            ]
        );
        for f in &files {
            assert!(f.exists(), "{f:?}");
        }
        for name in ["quality_diversity.png", "by_temperature.png"] {
            let bytes = std::fs::read(dir.path().join(name)).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
            let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
                .read_info()
                .unwrap();
            assert_eq!((reader.info().width, reader.info().height), PLOT_SIZE);
            let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
            reader.next_frame(&mut rgb).unwrap();
            // The title (centred, top 45 px) is drawn: the embedded font works without system fonts.
            let width = PLOT_SIZE.0 as usize;
            let dark = (0..45 * width)
                .filter(|i| (i % width).abs_diff(width / 2) < 200)
                .filter(|i| rgb[i * 3] < 100 && rgb[i * 3 + 1] < 100 && rgb[i * 3 + 2] < 100)
                .count();
            assert!(dark > 200, "{name}: {dark} dark title pixels");
        }
        // No temporary files are left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");

        let qd = std::fs::read_to_string(dir.path().join("quality_diversity.svg")).unwrap();
        for text in [
            "Quality–diversity trade-off",
            "mean perplexity (log scale",
            "distinct-2 (higher = more diverse)",
            "sampling, T = 0.5",
            "sampling, T = 1",
            "greedy (T = 0)",
            "beam search, n = 4",
            "human reference",
            "beam_n4_lp1",
        ] {
            assert!(qd.contains(text), "quality_diversity.svg lacks {text:?}");
        }
        let bt = std::fs::read_to_string(dir.path().join("by_temperature.svg")).unwrap();
        for text in [
            "Metrics against temperature",
            "temperature",
            "mean perplexity",
            "distinct-2",
            "Self-BLEU-4",
            "repetition rate",
            "top_k=0, top_p=1",
            "top_k=50, top_p=0.9",
            "greedy (T = 0)",
            "beam search, n = 4",
            "human reference",
        ] {
            assert!(bt.contains(text), "by_temperature.svg lacks {text:?}");
        }
    }

    #[test]
    fn one_temperature_gives_no_temperature_plot() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<PlotRow> = grid_rows()
            .into_iter()
            .filter(|r| r.strategy != Strategy::Sample || r.temperature == 0.8)
            .filter(|r| r.strategy != Strategy::Greedy)
            .collect();
        let files = write_plots(dir.path(), &rows).unwrap();
        assert_eq!(files.len(), 2);
        assert!(dir.path().join("quality_diversity.png").exists());
        assert!(!dir.path().join("by_temperature.svg").exists());
    }

    #[test]
    fn undefined_values_are_left_out_and_nothing_to_plot_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut rows = grid_rows();
        rows[1].self_bleu_4 = f64::NAN;
        rows[2].mean_perplexity = f64::NAN;
        assert_eq!(write_plots(dir.path(), &rows).unwrap().len(), 4);

        let empty = tempfile::tempdir().unwrap();
        assert!(write_plots(empty.path(), &[]).unwrap().is_empty());
        let mut single = row("greedy", Strategy::Greedy, 0.0, 0, 1.0, 1);
        single.distinct_2 = f64::NAN;
        assert!(write_plots(empty.path(), &[single]).unwrap().is_empty());
    }

    #[test]
    fn a_failing_plot_is_an_error_without_leftovers_and_the_other_is_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("quality_diversity.png")).unwrap();
        let e = write_plots(dir.path(), &grid_rows()).unwrap_err();
        assert!(matches!(e, PlotError::Io { .. }), "{e}");
        assert!(e.to_string().contains("quality_diversity.png"), "{e}");
        assert!(!dir.path().join("quality_diversity.png.tmp").exists());
        assert!(dir.path().join("by_temperature.png").is_file());
    }

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
