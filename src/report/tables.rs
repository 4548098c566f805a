//! The files a run leaves: `summary.csv`, `samples.csv` (RFC 4180, UTF-8, CRLF rows, plain
//! decimal numbers, empty cells for undefined values) and `run.json`. Every file is written
//! under a temporary name and renamed into place, so a reader never sees half a file.

use std::io::Write;
use std::path::Path;

use crate::report::summary::{COMPARED, Metrics, Sample};
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
        Strategy::Beam => (
            none(),
            none(),
            none(),
            none(),
            setting.num_beams.to_string(),
            number(setting.length_penalty.unwrap_or(1.0), 6),
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
    pub tokens_per_s: f64,
}

/// The columns of `summary.csv`, in order.
pub fn summary_header() -> Vec<String> {
    let mut h: Vec<String> = PARAMETER_COLUMNS.iter().map(|s| s.to_string()).collect();
    for c in [
        "samples",
        "mean_perplexity",
        "mean_perplexity_lo",
        "mean_perplexity_hi",
        "corpus_perplexity",
        "distinct_1",
        "distinct_2",
        "distinct_2_lo",
        "distinct_2_hi",
        "distinct_3",
        "self_bleu_4",
        "self_bleu_4_lo",
        "self_bleu_4_hi",
        "zipf_coefficient",
        "repetition_rate",
        "repetition_rate_lo",
        "repetition_rate_hi",
        "rep_4",
        "mean_tokens",
        "eos_rate",
        "tokens_per_s",
        "baseline",
    ] {
        h.push(c.to_string());
    }
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
) -> std::io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    {
        let mut w = csv_writer(&mut file);
        w.write_record(summary_header())?;
        let base = baseline.map(|i| rows[i].metrics);
        let base_id = baseline.map(|i| rows[i].setting.id()).unwrap_or_default();
        for row in rows {
            let m = row.metrics;
            let mut rec: Vec<String> = vec![row.setting.id()];
            rec.extend(parameters(row.setting));
            rec.push(m.samples.to_string());
            for x in [
                m.mean_perplexity,
                m.mean_perplexity_lo,
                m.mean_perplexity_hi,
                m.corpus_perplexity,
                m.distinct_1,
                m.distinct_2,
                m.distinct_2_lo,
                m.distinct_2_hi,
                m.distinct_3,
                m.self_bleu_4,
                m.self_bleu_4_lo,
                m.self_bleu_4_hi,
                m.zipf_coefficient,
                m.repetition_rate,
                m.repetition_rate_lo,
                m.repetition_rate_hi,
                m.rep_4,
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

/// The columns of `samples.csv`, in order.
pub const SAMPLE_COLUMNS: [&str; 16] = [
    "setting",
    "strategy",
    "temperature",
    "top_k",
    "top_p",
    "seed",
    "num_beams",
    "length_penalty",
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
}

impl SamplesWriter {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let mut writer = csv_writer(AtomicFile::create(path)?);
        writer.write_record(SAMPLE_COLUMNS)?;
        Ok(Self { writer })
    }

    pub fn write(
        &mut self,
        setting: &Setting,
        prompts: &[String],
        samples: &[Sample],
    ) -> std::io::Result<()> {
        let id = setting.id();
        let params = parameters(setting);
        for s in samples {
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
