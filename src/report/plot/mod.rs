//! Plots of a run's summary, written beside the CSVs as SVG and PNG:
//!
//! - `quality_diversity`: mean perplexity (x, log scale when the values span a wide range)
//!   against distinct-2 (y), one point per setting; sampling points coloured by temperature,
//!   greedy, beam and human rows marked with their own shapes.
//! - `mauve_diversity` and `coherence_diversity`: the same with MAUVE or the scorer's coherence
//!   (x) against Su et al.'s diversity (y), the frontier decoding papers draw; only when the run
//!   computes MAUVE or has a scorer.
//! - `by_temperature`: mean perplexity, distinct-2, Self-BLEU-4 and repetition rate against
//!   temperature (2 × 2 panels), one line per (top_k, top_p); greedy is temperature 0 of every
//!   line, beam and human rows are dashed horizontal references. Only when the run has at least
//!   two temperatures.
//!
//! Text is drawn with an embedded DejaVu Sans (`assets/`), so neither building nor running needs
//! fontconfig or FreeType. Every file is written under a temporary name and renamed into place.

mod axes;
mod by_temperature;
mod canvas;
mod legend;
mod quality_diversity;
mod style;

use std::io::Write;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::engine::processors::Processors;
use crate::report::summary::{MauveMetrics, Metrics, ScorerMetrics};
use crate::spec::grid::{Setting, Strategy};
use crate::util::files::AtomicFile;
use by_temperature::{draw_by_temperature, temperatures};
use canvas::{DrawResult, GlyphBitMap, encode_png, err, guarded, register_font};
use quality_diversity::{
    COHERENCE, DISTINCT_2, DIVERSITY, MAUVE, Measure, PERPLEXITY, draw_quality_diversity,
};

/// Pixel size of every plot (the SVG uses the same user units).
pub const PLOT_SIZE: (u32, u32) = (1200, 800);

/// What the plots need of one `summary.csv` row.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotRow {
    pub setting: String,
    pub strategy: Strategy,
    /// 0 for greedy; ignored for human rows.
    pub temperature: f64,
    pub top_k: usize,
    pub top_p: f64,
    /// The processor knobs; a line of the temperature plot is one (top_k, top_p, knobs).
    pub processors: Processors,
    pub num_beams: usize,
    pub mean_perplexity: f64,
    pub distinct_2: f64,
    pub self_bleu_4: f64,
    pub repetition_rate: f64,
    /// Su et al.'s diversity.
    pub diversity: f64,
    /// Against the human references; NaN when the run computes no MAUVE.
    pub mauve: f64,
    /// Under the scorer; NaN without one.
    pub coherence: f64,
}

impl PlotRow {
    pub fn new(setting: &Setting, metrics: &Metrics) -> Self {
        Self {
            setting: setting.id(),
            strategy: setting.strategy,
            temperature: setting.temperature,
            top_k: setting.top_k,
            top_p: setting.top_p,
            processors: setting.processors,
            num_beams: setting.num_beams,
            mean_perplexity: metrics.mean_perplexity,
            distinct_2: metrics.distinct_2,
            self_bleu_4: metrics.self_bleu_4,
            repetition_rate: metrics.repetition_rate,
            diversity: metrics.diversity,
            mauve: f64::NAN,
            coherence: f64::NAN,
        }
    }

    /// With the row's MAUVE and the scorer's coherence, where the run has them.
    pub fn with_scores(
        mut self,
        scorer: Option<&ScorerMetrics>,
        mauve: Option<&MauveMetrics>,
    ) -> Self {
        self.coherence = scorer.map_or(f64::NAN, |s| s.coherence);
        self.mauve = mauve.map_or(f64::NAN, |m| m.mauve);
        self
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

/// Write `quality_diversity.svg/.png`; `mauve_diversity` and `coherence_diversity` when the
/// run has MAUVE or a scorer; and, when it has at least two temperatures,
/// `by_temperature.svg/.png` into `dir`; returns the files written. Rows whose plotted values
/// are undefined (NaN) are left out; with nothing to plot, nothing is written.
pub fn write_plots(dir: &Path, rows: &[PlotRow]) -> Result<Vec<PathBuf>, PlotError> {
    register_font()?;
    let mut plots: Vec<Plot> = [
        Plot::QualityDiversity,
        Plot::MauveDiversity,
        Plot::CoherenceDiversity,
    ]
    .into_iter()
    .filter(|p| {
        let (x, y) = p.measures().expect("a quality-diversity plot");
        quality_diversity::plottable(rows, x, y)
    })
    .collect();
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

#[derive(Clone, Copy)]
enum Plot {
    QualityDiversity,
    MauveDiversity,
    CoherenceDiversity,
    ByTemperature,
}

impl Plot {
    fn name(self) -> &'static str {
        match self {
            Plot::QualityDiversity => "quality_diversity",
            Plot::MauveDiversity => "mauve_diversity",
            Plot::CoherenceDiversity => "coherence_diversity",
            Plot::ByTemperature => "by_temperature",
        }
    }

    /// The axes (x, y) of a quality–diversity plot.
    fn measures(self) -> Option<(Measure, Measure)> {
        match self {
            Plot::QualityDiversity => Some((PERPLEXITY, DISTINCT_2)),
            Plot::MauveDiversity => Some((MAUVE, DIVERSITY)),
            Plot::CoherenceDiversity => Some((COHERENCE, DIVERSITY)),
            Plot::ByTemperature => None,
        }
    }

    fn draw<DB: DrawingBackend>(
        self,
        root: &DrawingArea<DB, Shift>,
        rows: &[PlotRow],
    ) -> DrawResult {
        match self.measures() {
            Some(axes) => draw_quality_diversity(root, rows, axes),
            None => draw_by_temperature(root, rows),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn row(
        setting: &str,
        strategy: Strategy,
        t: f64,
        k: usize,
        p: f64,
        n: usize,
    ) -> PlotRow {
        // Plausible shapes: perplexity and diversity grow with temperature.
        let heat = if strategy == Strategy::Beam { 0.0 } else { t };
        PlotRow {
            setting: setting.to_string(),
            strategy,
            temperature: t,
            top_k: k,
            top_p: p,
            processors: Processors::OFF,
            num_beams: n,
            mean_perplexity: 2.0 * (1.0 + 3.0 * heat).powi(2) + k as f64 * 0.01,
            distinct_2: (0.2 + 0.5 * heat - 0.1 * (1.0 - p)).min(0.98),
            self_bleu_4: (0.8 - 0.5 * heat).max(0.02),
            repetition_rate: (0.6 - 0.6 * heat).max(0.0),
            diversity: (0.3 + 0.6 * heat).min(1.0),
            mauve: f64::NAN,
            coherence: f64::NAN,
        }
    }

    pub(super) fn grid_rows() -> Vec<PlotRow> {
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
}
