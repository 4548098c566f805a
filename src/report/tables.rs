//! The files a run leaves: `summary.csv`, `samples.csv` (RFC 4180, UTF-8, CRLF rows, plain
//! decimal numbers, empty cells for undefined values) and `run.json`. Every file is written
//! under a temporary name and renamed into place, so a reader never sees half a file.

use std::io::Write;
use std::path::Path;

use crate::engine::processors::Processors;
use crate::report::summary::{
    COMPARED, MauveMetrics, Metrics, SCORER_METRICS, Sample, ScorerMetrics,
};
use crate::spec::grid::{Setting, Strategy};
use crate::util::files::AtomicFile;

/// A number as a CSV cell: plain decimal with up to `digits` decimals, trailing zeros trimmed;
/// NaN and infinities (undefined metrics) as empty cells.
pub fn number(x: f64, digits: usize) -> String {
    if !x.is_finite() {
        return String::new();
    }
    let s = format!("{x:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".to_string() } else { s }
}

/// The parameter cells of a row, each empty where the strategy has no such knob: a beam row
/// has no temperature and a sampling row no beams, so that a filter such as
/// `temperature == 0` selects greedy alone and not every beam row too. Greedy keeps its
/// temperature 0 (that is what makes it greedy) and nothing else; the human row has none.
fn parameters(setting: &Setting) -> [String; 7] {
    let none = String::new;
    let (temperature, top_k, top_p, seed, num_beams, length_penalty) = match setting.strategy {
        Strategy::Sample => (
            number(setting.temperature, 6),
            setting.top_k.to_string(),
            number(setting.top_p, 6),
            setting.seed.map(|s| s.to_string()).unwrap_or_default(),
            none(),
            none(),
        ),
        Strategy::Greedy => (number(0.0, 6), none(), none(), none(), none(), none()),
        Strategy::Beam if setting.do_sample => (
            number(setting.temperature, 6),
            setting.top_k.to_string(),
            number(setting.top_p, 6),
            setting.seed.map(|s| s.to_string()).unwrap_or_default(),
            setting.num_beams.to_string(),
            number(setting.length_penalty.unwrap_or(1.0), 6),
        ),
        Strategy::Beam => (
            none(),
            none(),
            none(),
            none(),
            setting.num_beams.to_string(),
            number(setting.length_penalty.unwrap_or(1.0), 6),
        ),
        Strategy::Contrastive => (
            none(),
            setting.top_k.to_string(),
            none(),
            none(),
            none(),
            none(),
        ),
        Strategy::Human => (none(), none(), none(), none(), none(), none()),
    };
    [
        setting.strategy.as_str().to_string(),
        temperature,
        top_k,
        top_p,
        seed,
        num_beams,
        length_penalty,
    ]
}

/// The column of a knob beyond the always-present parameters (`min_p`, `repetition_penalty`,
/// `num_beam_groups`, `penalty_alpha`, ...). A run writes the column of every such knob some
/// setting turns on, after `length_penalty`, and leaves out the others, so an experiment
/// without them keeps the columns it always had.
pub struct KnobColumn {
    pub name: &'static str,
    /// Whether the setting turns the knob on.
    on: fn(&Setting) -> bool,
    /// Whether the setting's strategy has the knob: its cell is written (off values too, so
    /// that a filter such as `min_p == 0` selects plain sampling), else left empty.
    applies: fn(&Setting) -> bool,
    value: fn(&Setting) -> String,
}

impl KnobColumn {
    fn cell(&self, setting: &Setting) -> String {
        if (self.applies)(setting) {
            (self.value)(setting)
        } else {
            String::new()
        }
    }
}

/// Sampling, and beam sampling, have every processor knob.
fn samples(s: &Setting) -> bool {
    s.strategy == Strategy::Sample || (s.strategy == Strategy::Beam && s.do_sample)
}

/// The penalties apply to greedy decoding and beam search too.
fn penalised(s: &Setting) -> bool {
    matches!(
        s.strategy,
        Strategy::Sample | Strategy::Greedy | Strategy::Beam
    )
}

fn beam(s: &Setting) -> bool {
    s.strategy == Strategy::Beam
}

macro_rules! number_knob {
    ($name:ident, $applies:expr) => {
        KnobColumn {
            name: stringify!($name),
            on: |s| s.processors.$name != Processors::OFF.$name,
            applies: $applies,
            value: |s| number(s.processors.$name, 6),
        }
    };
}

/// Every knob column, in the order they are written.
pub const KNOB_COLUMNS: [KnobColumn; 14] = [
    number_knob!(min_p, samples),
    number_knob!(typical_p, samples),
    number_knob!(epsilon_cutoff, samples),
    number_knob!(eta_cutoff, samples),
    number_knob!(top_n_sigma, samples),
    number_knob!(repetition_penalty, penalised),
    number_knob!(frequency_penalty, penalised),
    number_knob!(presence_penalty, penalised),
    KnobColumn {
        name: "no_repeat_ngram_size",
        on: |s| s.processors.no_repeat_ngram_size != 0,
        applies: penalised,
        value: |s| s.processors.no_repeat_ngram_size.to_string(),
    },
    KnobColumn {
        name: "temperature_last",
        on: |s| s.processors.temperature_last,
        applies: samples,
        value: |s| s.processors.temperature_last.to_string(),
    },
    KnobColumn {
        name: "num_beam_groups",
        on: |s| s.num_beam_groups > 1,
        applies: beam,
        value: |s| s.num_beam_groups.to_string(),
    },
    KnobColumn {
        name: "diversity_penalty",
        on: |s| s.diversity_penalty != 0.0,
        applies: beam,
        value: |s| number(s.diversity_penalty, 6),
    },
    KnobColumn {
        name: "do_sample",
        on: |s| s.do_sample,
        applies: beam,
        value: |s| s.do_sample.to_string(),
    },
    KnobColumn {
        name: "penalty_alpha",
        on: |s| s.penalty_alpha.is_some(),
        applies: |s| s.strategy == Strategy::Contrastive,
        value: |s| number(s.penalty_alpha.unwrap_or(0.0), 6),
    },
];

/// The knob columns of a run: those of the knobs some setting turns on.
pub fn knob_columns(settings: &[Setting]) -> Vec<&'static KnobColumn> {
    KNOB_COLUMNS
        .iter()
        .filter(|c| settings.iter().any(|s| (c.on)(s)))
        .collect()
}

const PARAMETER_COLUMNS: [&str; 8] = [
    "setting",
    "strategy",
    "temperature",
    "top_k",
    "top_p",
    "seed",
    "num_beams",
    "length_penalty",
];

/// The writer of every CSV file `sweep` leaves (`summary.csv`, `samples.csv`, `compare.csv`),
/// so that all of them are RFC 4180 with CRLF rows.
pub fn csv_writer<W: Write>(w: W) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(w)
}

/// One row of `summary.csv`.
pub struct SummaryRow<'a> {
    pub setting: &'a Setting,
    pub metrics: &'a Metrics,
    /// Under the `[score]` model, when the run has one.
    pub scorer: Option<&'a ScorerMetrics>,
    /// Against the references, when the run computes MAUVE (not on the human row).
    pub mauve: Option<&'a MauveMetrics>,
    pub tokens_per_s: f64,
}

/// The columns of `summary.csv` before the scorer's and MAUVE's (when a run has them).
const PERPLEXITY_COLUMNS: [&str; 5] = [
    "samples",
    "mean_perplexity",
    "mean_perplexity_lo",
    "mean_perplexity_hi",
    "corpus_perplexity",
];

const MAUVE_COLUMNS: [&str; 2] = ["mauve", "mauve_clusters"];

/// The columns of `summary.csv` after the scorer's and MAUVE's, before the `_vs_beam` ones.
const TEXT_COLUMNS: [&str; 23] = [
    "distinct_1",
    "distinct_2",
    "distinct_2_lo",
    "distinct_2_hi",
    "distinct_3",
    "self_bleu_4",
    "self_bleu_4_lo",
    "self_bleu_4_hi",
    "self_bleu_4_tokens",
    "zipf_coefficient",
    "repetition_rate",
    "repetition_rate_lo",
    "repetition_rate_hi",
    "seq_rep_4",
    "rep_2",
    "rep_3",
    "rep_4",
    "diversity",
    "compression_ratio",
    "mean_tokens",
    "eos_rate",
    "tokens_per_s",
    "baseline",
];

/// The columns of `summary.csv`, in order, with the given knob columns, and the scorer's
/// columns, then MAUVE's, after `corpus_perplexity` when the run has them (a run without
/// them keeps the columns it always had).
pub fn summary_header(knobs: &[&KnobColumn], scored: bool, mauve: bool) -> Vec<String> {
    let mut h: Vec<String> = PARAMETER_COLUMNS.iter().map(|s| s.to_string()).collect();
    h.extend(knobs.iter().map(|k| k.name.to_string()));
    h.extend(PERPLEXITY_COLUMNS.iter().map(|s| s.to_string()));
    if scored {
        h.extend(SCORER_METRICS.iter().map(|s| s.to_string()));
    }
    if mauve {
        h.extend(MAUVE_COLUMNS.iter().map(|s| s.to_string()));
    }
    h.extend(TEXT_COLUMNS.iter().map(|s| s.to_string()));
    for m in COMPARED {
        h.push(format!("{m}_vs_beam"));
    }
    h
}

/// Write `summary.csv`: one row per setting, and for every row each compared metric minus the
/// beam baseline's (`baseline` names that setting).
pub fn write_summary(
    path: &Path,
    rows: &[SummaryRow<'_>],
    baseline: Option<usize>,
    knobs: &[&KnobColumn],
) -> std::io::Result<()> {
    let scored = rows.iter().any(|r| r.scorer.is_some());
    let mauve = rows.iter().any(|r| r.mauve.is_some());
    let mut file = AtomicFile::create(path)?;
    {
        let mut w = csv_writer(&mut file);
        w.write_record(summary_header(knobs, scored, mauve))?;
        let base = baseline.map(|i| rows[i].metrics);
        let base_id = baseline.map(|i| rows[i].setting.id()).unwrap_or_default();
        for row in rows {
            let m = row.metrics;
            let mut rec: Vec<String> = vec![row.setting.id()];
            rec.extend(parameters(row.setting));
            rec.extend(knobs.iter().map(|k| k.cell(row.setting)));
            rec.push(m.samples.to_string());
            for x in [
                m.mean_perplexity,
                m.mean_perplexity_lo,
                m.mean_perplexity_hi,
                m.corpus_perplexity,
            ] {
                rec.push(number(x, 6));
            }
            if scored {
                let values = row.scorer.map_or([f64::NAN; 5], ScorerMetrics::values);
                rec.extend(values.iter().map(|&x| number(x, 6)));
            }
            if mauve {
                rec.push(row.mauve.map_or(String::new(), |m| number(m.mauve, 6)));
                rec.push(
                    row.mauve
                        .map_or(String::new(), |m| m.mauve_clusters.to_string()),
                );
            }
            for x in [
                m.distinct_1,
                m.distinct_2,
                m.distinct_2_lo,
                m.distinct_2_hi,
                m.distinct_3,
                m.self_bleu_4,
                m.self_bleu_4_lo,
                m.self_bleu_4_hi,
                m.self_bleu_4_tokens,
                m.zipf_coefficient,
                m.repetition_rate,
                m.repetition_rate_lo,
                m.repetition_rate_hi,
                m.seq_rep_4,
                m.rep_2,
                m.rep_3,
                m.rep_4,
                m.diversity,
                m.compression_ratio,
                m.mean_tokens,
                m.eos_rate,
            ] {
                rec.push(number(x, 6));
            }
            rec.push(number(row.tokens_per_s, 1));
            rec.push(base_id.clone());
            for name in COMPARED {
                rec.push(match base {
                    Some(b) => number(m.get(name) - b.get(name), 6),
                    None => String::new(),
                });
            }
            w.write_record(&rec)?;
        }
        w.flush()?;
    }
    file.finish()
}

/// The columns of `samples.csv`, in order, with the given knob columns.
/// With a scorer, `scorer_perplexity` follows `perplexity`.
pub fn sample_header(knobs: &[&KnobColumn], scored: bool) -> Vec<String> {
    let mut h: Vec<String> = PARAMETER_COLUMNS.iter().map(|s| s.to_string()).collect();
    h.extend(knobs.iter().map(|k| k.name.to_string()));
    for c in SAMPLE_COLUMNS {
        h.push(c.to_string());
        if c == "perplexity" && scored {
            h.push("scorer_perplexity".to_string());
        }
    }
    h
}

/// The columns of `samples.csv` after the parameter and knob columns.
const SAMPLE_COLUMNS: [&str; 8] = [
    "prompt_index",
    "sample_index",
    "prompt",
    "text",
    "token_ids",
    "num_tokens",
    "perplexity",
    "ended_with_eos",
];

/// Streams `samples.csv` one setting at a time, so memory does not grow with the run.
pub struct SamplesWriter {
    writer: csv::Writer<AtomicFile>,
    knobs: Vec<&'static KnobColumn>,
    scored: bool,
}

impl SamplesWriter {
    pub fn create(
        path: &Path,
        knobs: &[&'static KnobColumn],
        scored: bool,
    ) -> std::io::Result<Self> {
        let mut writer = csv_writer(AtomicFile::create(path)?);
        writer.write_record(sample_header(knobs, scored))?;
        Ok(Self {
            writer,
            knobs: knobs.to_vec(),
            scored,
        })
    }

    /// One setting's rows; `scores[i]`, the scorer's log-probabilities of `samples[i]`, when
    /// the writer was created `scored`.
    pub fn write(
        &mut self,
        setting: &Setting,
        prompts: &[String],
        samples: &[Sample],
        scores: Option<&[Vec<f32>]>,
    ) -> std::io::Result<()> {
        let id = setting.id();
        let mut params = parameters(setting).to_vec();
        params.extend(self.knobs.iter().map(|k| k.cell(setting)));
        for (i, s) in samples.iter().enumerate() {
            let mut rec: Vec<String> = vec![id.clone()];
            rec.extend(params.iter().cloned());
            rec.push(s.prompt_index.to_string());
            rec.push(s.sample_index.to_string());
            rec.push(prompts[s.prompt_index].clone());
            rec.push(s.text.clone());
            rec.push(
                s.token_ids
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            rec.push(s.token_ids.len().to_string());
            rec.push(number(s.perplexity(), 6));
            if self.scored {
                let scored = scores.map_or(f64::NAN, |s| crate::report::metrics::perplexity(&s[i]));
                rec.push(number(scored, 6));
            }
            rec.push(s.ended_with_eos.to_string());
            self.writer.write_record(&rec)?;
        }
        Ok(())
    }

    pub fn finish(self) -> std::io::Result<()> {
        let file = self.writer.into_inner().map_err(|e| e.into_error())?;
        file.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_plain_decimals_and_undefined_is_empty() {
        assert_eq!(number(1e-7, 6), "0");
        assert_eq!(number(0.000123456789, 6), "0.000123");
        assert_eq!(number(1234567.0, 6), "1234567");
        assert_eq!(number(2.5, 6), "2.5");
        assert_eq!(number(-0.0000001, 6), "0");
        assert_eq!(number(f64::NAN, 6), "");
        assert_eq!(number(f64::INFINITY, 6), "");
    }
}
