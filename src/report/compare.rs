//! `sweep compare A B`: what changed between two results folders.
//!
//! Two runs are only comparable when one knows what else differed between them, so the
//! comparison starts from `run.json` (model weights, backend, `sweep` build, experiment) and
//! then lines up the `summary.csv` rows of the same setting. A change of a metric between two
//! runs of the same setting is noise unless a test says otherwise.
//!
//! When both runs answered the same prompts (same texts, same order) and kept their
//! `samples.csv`, the test is paired: a prompt that is hard for one run is hard for the other,
//! so the per-prompt differences vary far less than either run, and a paired test sees
//! changes that two separate intervals hide. The 95 % interval of the difference comes from
//! resampling prompts (cluster bootstrap, for perplexities and lengths) or leaving one prompt
//! out (jackknife, for set-level statistics such as distinct-n and for shares of texts), the
//! same choice as the summary's own intervals; the change is significant when that interval
//! excludes 0.
//! Otherwise the runs cannot be paired, and a change is significant when the two runs' 95 %
//! intervals do not overlap (a conservative rule: it rejects at well under 5 %).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::report::summary::{self, METRICS_SEED, SELF_BLEU_MAX_EXACT};
use crate::report::tables::{csv_writer, number};
use crate::report::{degeneration, diversity, metrics};
use crate::util::exit::{Exit, ExitStatus};
use crate::util::files::AtomicFile;

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{path}: no such results folder; give two folders written by `sweep run`")]
    NoFolder { path: PathBuf },
    #[error("{path}: not found; is {folder} a finished `sweep run` results folder?")]
    NoFile { path: PathBuf, folder: PathBuf },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    // The I/O error is part of the message rather than a `source`, so that `{:#}` does not
    // print it twice.
    #[error("{path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("writing {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Folders that cannot be compared are the user's to fix; a failed write is not.
impl ExitStatus for CompareError {
    fn exit(&self) -> Exit {
        match self {
            CompareError::Write { .. } => Exit::Failed,
            _ => Exit::BadInput,
        }
    }
}

type Result<T> = std::result::Result<T, CompareError>;

/// The metrics compared: every summary metric, then the scorer's (a run without a scorer
/// has none of those, and its cells are empty).
pub const METRICS: [&str; summary::METRICS.len() + 3] = {
    let mut all = [""; summary::METRICS.len() + 3];
    let mut i = 0;
    while i < summary::METRICS.len() {
        all[i] = summary::METRICS[i];
        i += 1;
    }
    all[i] = "scorer_mean_perplexity";
    all[i + 1] = "scorer_corpus_perplexity";
    all[i + 2] = "coherence";
    all
};

/// The columns of `compare.csv`, in order.
pub const COLUMNS: [&str; 9] = [
    "setting",
    "metric",
    "a",
    "b",
    "change",
    "change_lo",
    "change_hi",
    "significant",
    "test",
];

/// What `run.json` says about a run, as far as comparing is concerned.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub dir: PathBuf,
    pub model_sha256: Option<String>,
    /// The model the texts were scored under, if any.
    pub scorer_sha256: Option<String>,
    pub backend: Option<String>,
    pub sweep_version: Option<String>,
    pub git_commit: Option<String>,
    /// The experiment as resolved by the run (every default filled in).
    pub experiment: Value,
}

impl RunInfo {
    /// Read `dir/run.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = existing_file(dir, "run.json")?;
        let text = std::fs::read_to_string(&path).map_err(|error| CompareError::Read {
            path: path.clone(),
            error,
        })?;
        let json: Value = serde_json::from_str(&text).map_err(|e| CompareError::Invalid {
            path: path.clone(),
            message: format!("not valid JSON: {e}"),
        })?;
        Ok(Self::from_json(dir, &json))
    }

    /// The fields of a parsed `run.json`; absent ones are `None`.
    pub fn from_json(dir: &Path, json: &Value) -> Self {
        let text = |v: &Value| v.as_str().map(str::to_string);
        Self {
            dir: dir.to_path_buf(),
            model_sha256: text(&json["model"]["sha256"]),
            scorer_sha256: text(&json["scorer"]["sha256"]),
            backend: text(&json["backend"]),
            sweep_version: text(&json["sweep_version"]),
            git_commit: text(&json["git_commit"]),
            experiment: json["experiment"].clone(),
        }
    }
}

/// One thing that differs between the runs, with both values as display text (`None` where a
/// run does not record it).
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// What differs: `model sha256`, `backend`, `sweep version`, `git commit`, or an
    /// experiment key such as `experiment.grid.top_k`.
    pub what: String,
    pub a: Option<String>,
    pub b: Option<String>,
}

/// Everything that differs between two runs' records. The experiment is compared key by key
/// at the top level, and inside `grid` and `beam` sub-key by sub-key, since those are where a
/// sweep is usually changed.
pub fn run_differences(a: &RunInfo, b: &RunInfo) -> Vec<Difference> {
    let mut out = Vec::new();
    for (what, x, y) in [
        ("model sha256", &a.model_sha256, &b.model_sha256),
        ("scorer sha256", &a.scorer_sha256, &b.scorer_sha256),
        ("backend", &a.backend, &b.backend),
        ("sweep version", &a.sweep_version, &b.sweep_version),
        ("git commit", &a.git_commit, &b.git_commit),
    ] {
        if x != y {
            out.push(Difference {
                what: what.to_string(),
                a: x.clone(),
                b: y.clone(),
            });
        }
    }
    for key in keys(&a.experiment, &b.experiment) {
        let (x, y) = (&a.experiment[&key], &b.experiment[&key]);
        if x == y {
            continue;
        }
        if matches!(key.as_str(), "grid" | "beam") && x.is_object() && y.is_object() {
            for sub in keys(x, y) {
                if x[&sub] != y[&sub] {
                    out.push(Difference {
                        what: format!("experiment.{key}.{sub}"),
                        a: show_json(x.get(&sub)),
                        b: show_json(y.get(&sub)),
                    });
                }
            }
        } else {
            out.push(Difference {
                what: format!("experiment.{key}"),
                a: show_json(a.experiment.get(&key)),
                b: show_json(b.experiment.get(&key)),
            });
        }
    }
    out
}

/// The keys of two JSON objects: `a`'s in order, then those only `b` has.
fn keys(a: &Value, b: &Value) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for v in [a, b] {
        if let Some(map) = v.as_object() {
            for k in map.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    keys
}

/// A JSON value as one short line: compact JSON, cut at 60 characters. `None` for an absent
/// key, so that "absent" and `null` stay distinguishable.
fn show_json(v: Option<&Value>) -> Option<String> {
    let text = v?.to_string();
    Some(if text.chars().count() > 60 {
        text.chars().take(59).chain(['…']).collect()
    } else {
        text
    })
}

/// One row read back from a saved `summary.csv`: the setting id and every numeric cell by
/// column name (`None` for an empty cell: an undefined metric).
#[derive(Debug, Clone, PartialEq)]
pub struct SavedSummaryRow {
    pub setting: String,
    pub values: HashMap<String, Option<f64>>,
}

impl SavedSummaryRow {
    /// The value of a column; `None` when the cell is empty or the column absent.
    pub fn get(&self, column: &str) -> Option<f64> {
        self.values.get(column).copied().flatten()
    }

    /// The 95 % interval of `metric`, where the summary has one and it is defined.
    pub fn interval(&self, metric: &str) -> Option<(f64, f64)> {
        Some((
            self.get(&format!("{metric}_lo"))?,
            self.get(&format!("{metric}_hi"))?,
        ))
    }
}

/// Columns read as numbers: the metrics and their intervals. Parameters and ids are text.
fn is_numeric(column: &str) -> bool {
    METRICS.iter().any(|m| {
        column == *m
            || column
                .strip_prefix(m)
                .is_some_and(|rest| rest == "_lo" || rest == "_hi")
    })
}

/// Read `dir/summary.csv`.
pub fn load_summary(dir: &Path) -> Result<Vec<SavedSummaryRow>> {
    let path = existing_file(dir, "summary.csv")?;
    let invalid = |message: String| CompareError::Invalid {
        path: path.clone(),
        message,
    };
    let mut reader = csv::Reader::from_path(&path).map_err(|e| invalid(e.to_string()))?;
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| invalid(e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    // A summary without `seq_rep_4` was written when `rep_4` meant Welleck et al.'s seq-rep-4,
    // before Su et al.'s rep-n took the name: read it under the name it has now.
    let header: Vec<String> = if header.iter().any(|h| h == "seq_rep_4") {
        header
    } else {
        header
            .into_iter()
            .map(|h| {
                if h == "rep_4" {
                    "seq_rep_4".to_string()
                } else {
                    h
                }
            })
            .collect()
    };
    let setting = header
        .iter()
        .position(|h| h == "setting")
        .ok_or_else(|| invalid("no `setting` column; is this a sweep summary?".to_string()))?;
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| invalid(e.to_string()))?;
        let line = i + 2;
        let mut values = HashMap::new();
        for (column, cell) in header.iter().zip(record.iter()) {
            if !is_numeric(column) {
                continue;
            }
            let value = if cell.is_empty() {
                None
            } else {
                Some(cell.parse::<f64>().map_err(|_| {
                    invalid(format!(
                        "line {line}, column `{column}`: `{cell}` is not a number"
                    ))
                })?)
            };
            values.insert(column.clone(), value);
        }
        rows.push(SavedSummaryRow {
            setting: record.get(setting).unwrap_or_default().to_string(),
            values,
        });
    }
    Ok(rows)
}

/// `dir/name`, or an error naming which of the two is missing.
fn existing_file(dir: &Path, name: &str) -> Result<PathBuf> {
    if !dir.is_dir() {
        return Err(CompareError::NoFolder {
            path: dir.to_path_buf(),
        });
    }
    let path = dir.join(name);
    if !path.is_file() {
        return Err(CompareError::NoFile {
            path,
            folder: dir.to_path_buf(),
        });
    }
    Ok(path)
}

/// One metric of one setting in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricChange {
    pub setting: String,
    pub metric: &'static str,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// `b − a`, where both are defined.
    pub change: Option<f64>,
    /// The 95 % interval of `b − a` from the paired test; `None` for the unpaired rule or
    /// where the interval is undefined.
    pub change_lo: Option<f64>,
    pub change_hi: Option<f64>,
    /// Whether the change is significant by `test`; `None` where it could not be decided
    /// (no interval in either run, or an undefined statistic).
    pub significant: Option<bool>,
    /// The test that decided `significant`.
    pub test: Option<Test>,
}

/// How a change was judged significant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// Same prompts: the 95 % cluster-bootstrap interval of the paired difference (prompts
    /// resampled once for both runs) excludes 0.
    PairedBootstrap,
    /// Same prompts: the 95 % leave-one-prompt-out jackknife interval of the paired
    /// difference excludes 0.
    PairedJackknife,
    /// Different prompts: the two runs' 95 % intervals from `summary.csv` do not overlap.
    IntervalOverlap,
}

impl Test {
    /// The name written in `compare.csv`.
    pub fn as_str(self) -> &'static str {
        match self {
            Test::PairedBootstrap => "paired_bootstrap",
            Test::PairedJackknife => "paired_jackknife",
            Test::IntervalOverlap => "interval_overlap",
        }
    }
}

/// Whether two intervals are disjoint. Touching intervals overlap.
pub fn disjoint(a: (f64, f64), b: (f64, f64)) -> bool {
    a.1 < b.0 || b.1 < a.0
}

/// The rows of two summaries matched by setting id (which encodes strategy, temperature,
/// top-k, top-p, seed, beams, length penalty and early stopping).
#[derive(Debug, Clone, PartialEq)]
pub struct Matched {
    /// Every metric of every setting both runs have, in `a`'s row order.
    pub changes: Vec<MetricChange>,
    /// Settings only in `a`, then only in `b`, in their files' order.
    pub only_a: Vec<String>,
    pub only_b: Vec<String>,
}

pub fn match_rows(a: &[SavedSummaryRow], b: &[SavedSummaryRow]) -> Matched {
    let index_b: HashMap<&str, &SavedSummaryRow> =
        b.iter().rev().map(|r| (r.setting.as_str(), r)).collect();
    let in_a: std::collections::HashSet<&str> = a.iter().map(|r| r.setting.as_str()).collect();
    let mut changes = Vec::new();
    let mut only_a = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for ra in a {
        if !seen.insert(ra.setting.as_str()) {
            continue;
        }
        let Some(rb) = index_b.get(ra.setting.as_str()) else {
            only_a.push(ra.setting.clone());
            continue;
        };
        for metric in METRICS {
            let (x, y) = (ra.get(metric), rb.get(metric));
            let significant = ra
                .interval(metric)
                .zip(rb.interval(metric))
                .map(|(ia, ib)| disjoint(ia, ib));
            changes.push(MetricChange {
                setting: ra.setting.clone(),
                metric,
                a: x,
                b: y,
                change: x.zip(y).map(|(x, y)| y - x),
                change_lo: None,
                change_hi: None,
                significant,
                test: significant.map(|_| Test::IntervalOverlap),
            });
        }
    }
    let mut only_b = Vec::new();
    for rb in b {
        if !in_a.contains(rb.setting.as_str()) && !only_b.contains(&rb.setting) {
            only_b.push(rb.setting.clone());
        }
    }
    Matched {
        changes,
        only_a,
        only_b,
    }
}

/// A whole comparison: both runs' records, what differs, and the matched metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub a: RunInfo,
    pub b: RunInfo,
    pub differences: Vec<Difference>,
    pub matched: Matched,
    pub pairing: Pairing,
}

/// Whether the two runs' texts could be paired prompt by prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum Pairing {
    /// Both runs answered these many prompts, the same texts in the same order, and both
    /// kept their samples: changes are judged by paired tests.
    Paired { prompts: usize },
    /// Why not; changes are judged by whether the runs' intervals overlap.
    Unpaired { reason: String },
}

/// Read two results folders and compare them.
pub fn compare(a: &Path, b: &Path) -> Result<Comparison> {
    let rows_a = load_summary(a)?;
    let rows_b = load_summary(b)?;
    let run_a = RunInfo::load(a)?;
    let run_b = RunInfo::load(b)?;
    let mut matched = match_rows(&rows_a, &rows_b);
    let pairing = match shared_prompts(&run_a, &run_b) {
        Err(reason) => Pairing::Unpaired { reason },
        Ok(prompts) => match (load_samples(a), load_samples(b)) {
            (Ok(texts_a), Ok(texts_b)) => {
                pair_changes(&mut matched.changes, &texts_a, &texts_b);
                Pairing::Paired { prompts }
            }
            (Err(reason), _) | (_, Err(reason)) => Pairing::Unpaired { reason },
        },
    };
    Ok(Comparison {
        differences: run_differences(&run_a, &run_b),
        matched,
        a: run_a,
        b: run_b,
        pairing,
    })
}

/// The number of prompts when both runs record the same prompt texts in the same order, or
/// why they cannot be paired.
fn shared_prompts(a: &RunInfo, b: &RunInfo) -> std::result::Result<usize, String> {
    let texts = |run: &RunInfo| -> Option<Vec<String>> {
        run.experiment["prompts"]
            .as_array()?
            .iter()
            .map(|p| p["text"].as_str().or(p.as_str()).map(str::to_string))
            .collect()
    };
    match (texts(a), texts(b)) {
        (Some(x), Some(y)) if !x.is_empty() && x == y => Ok(x.len()),
        (Some(_), Some(_)) => Err("the runs' prompts differ".to_string()),
        _ => Err("a run.json does not record its prompts".to_string()),
    }
}

/// One text of `samples.csv`, with what the metrics need.
#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    pub prompt_index: usize,
    pub text: String,
    pub token_ids: Vec<u32>,
    /// NaN for an empty text.
    pub perplexity: f64,
    /// Under the run's scorer; NaN for an empty text or a run without a scorer.
    pub scorer_perplexity: f64,
    pub ended_with_eos: bool,
}

/// Every setting's texts from `dir/samples.csv`, in file order; an error message (naming the
/// file) when it is missing or unreadable, which makes the comparison unpaired.
fn load_samples(dir: &Path) -> std::result::Result<HashMap<String, Vec<Text>>, String> {
    let path = dir.join("samples.csv");
    if !path.is_file() {
        return Err(format!(
            "{} is missing (`sweep run` writes it; it is not kept in the repository)",
            path.display()
        ));
    }
    let fail = |message: String| format!("{}: {message}", path.display());
    let mut reader = csv::Reader::from_path(&path).map_err(|e| fail(e.to_string()))?;
    let header = reader.headers().map_err(|e| fail(e.to_string()))?.clone();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| fail(format!("no `{name}` column")))
    };
    let [setting, prompt, text, tokens, perplexity, eos] = [
        "setting",
        "prompt_index",
        "text",
        "token_ids",
        "perplexity",
        "ended_with_eos",
    ]
    .map(column);
    let (setting, prompt, text, tokens, perplexity, eos) =
        (setting?, prompt?, text?, tokens?, perplexity?, eos?);
    let scorer = header.iter().position(|h| h == "scorer_perplexity");
    let mut out: HashMap<String, Vec<Text>> = HashMap::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| fail(e.to_string()))?;
        let bad = |column: &str| fail(format!("line {}: bad `{column}`", i + 2));
        let cell = |c: usize| record.get(c).unwrap_or_default();
        let token_ids = cell(tokens)
            .split_whitespace()
            .map(str::parse)
            .collect::<std::result::Result<Vec<u32>, _>>()
            .map_err(|_| bad("token_ids"))?;
        let ppl = match cell(perplexity) {
            "" => f64::NAN,
            x => x.parse().map_err(|_| bad("perplexity"))?,
        };
        let scorer_ppl = match scorer.map(cell) {
            None | Some("") => f64::NAN,
            Some(x) => x.parse().map_err(|_| bad("scorer_perplexity"))?,
        };
        out.entry(cell(setting).to_string())
            .or_default()
            .push(Text {
                prompt_index: cell(prompt).parse().map_err(|_| bad("prompt_index"))?,
                text: cell(text).to_string(),
                token_ids,
                perplexity: ppl,
                scorer_perplexity: scorer_ppl,
                ended_with_eos: cell(eos).parse().map_err(|_| bad("ended_with_eos"))?,
            });
    }
    Ok(out)
}

/// Replace the verdict of every change whose setting both runs have texts for by the paired
/// test's. A setting whose runs answered different prompt indices keeps the unpaired verdict.
fn pair_changes(
    changes: &mut [MetricChange],
    a: &HashMap<String, Vec<Text>>,
    b: &HashMap<String, Vec<Text>>,
) {
    let mut tests: HashMap<String, Option<Vec<PairedTest>>> = HashMap::new();
    for change in changes.iter_mut() {
        let Some(paired) = tests
            .entry(change.setting.clone())
            .or_insert_with(|| {
                let (x, y) = (a.get(&change.setting)?, b.get(&change.setting)?);
                paired_tests(x, y)
            })
            .as_ref()
        else {
            continue;
        };
        let Some(t) = paired.iter().find(|t| t.metric == change.metric) else {
            continue;
        };
        let defined = t.lo.is_finite() && t.hi.is_finite();
        change.change_lo = defined.then_some(t.lo);
        change.change_hi = defined.then_some(t.hi);
        change.significant = defined.then_some(t.lo > 0.0 || t.hi < 0.0);
        change.test = defined.then_some(t.test);
    }
}

/// The paired test of one metric of one setting: the 95 % interval of `b − a`.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedTest {
    pub metric: &'static str,
    pub lo: f64,
    pub hi: f64,
    pub test: Test,
}

/// A metric of a set of texts, from what `samples.csv` holds. Self-BLEU scores the fixed
/// `hypotheses` (indices into `texts`) that `keep` holds, so that leaving a prompt out does
/// not also redraw the subsample of hypotheses.
fn metric_of(
    metric: &str,
    texts: &[Text],
    words: &[Vec<&str>],
    hypotheses: &[usize],
    keep: &[usize],
) -> f64 {
    let mean_of = |f: &dyn Fn(&Text) -> f64| {
        keep.iter().map(|&i| f(&texts[i])).sum::<f64>() / keep.len() as f64
    };
    let kept_words: Vec<&Vec<&str>> = keep.iter().map(|&i| &words[i]).collect();
    let kept_tokens: Vec<&[u32]> = keep
        .iter()
        .map(|&i| texts[i].token_ids.as_slice())
        .collect();
    match metric {
        "mean_perplexity" => mean_of(&|t| t.perplexity),
        // samples.csv has per-text perplexities, not log-probabilities: the token-weighted
        // mean NLL is recovered as Σ n·ln(ppl) / Σ n.
        "corpus_perplexity" => {
            let (mut nll, mut n) = (0.0, 0.0);
            for &i in keep {
                let t = &texts[i];
                if !t.token_ids.is_empty() {
                    nll += t.token_ids.len() as f64 * t.perplexity.ln();
                    n += t.token_ids.len() as f64;
                }
            }
            (nll / n).exp()
        }
        // As the summary computes them: over the texts the scorer scored.
        "scorer_mean_perplexity" | "scorer_corpus_perplexity" | "coherence" => {
            let scored: Vec<&Text> = keep
                .iter()
                .map(|&i| &texts[i])
                .filter(|t| t.scorer_perplexity.is_finite())
                .collect();
            let n = scored.len() as f64;
            match metric {
                "scorer_mean_perplexity" => {
                    scored.iter().map(|t| t.scorer_perplexity).sum::<f64>() / n
                }
                "coherence" => -scored.iter().map(|t| t.scorer_perplexity.ln()).sum::<f64>() / n,
                _ => {
                    let tokens: f64 = scored.iter().map(|t| t.token_ids.len() as f64).sum();
                    let nll: f64 = scored
                        .iter()
                        .map(|t| t.token_ids.len() as f64 * t.scorer_perplexity.ln())
                        .sum();
                    (nll / tokens).exp()
                }
            }
        }
        "distinct_1" => metrics::distinct_n(&kept_words, 1),
        "distinct_2" => metrics::distinct_n(&kept_words, 2),
        "distinct_3" => metrics::distinct_n(&kept_words, 3),
        "self_bleu_4" => metrics::self_bleu_4_among(words, keep, hypotheses),
        "self_bleu_4_tokens" => {
            degeneration::self_bleu_4(&kept_tokens, degeneration::SELF_BLEU_HYPOTHESES)
        }
        "zipf_coefficient" => degeneration::zipf_coefficient(&kept_tokens),
        "repetition_rate" => degeneration::repetition_rate(&kept_tokens),
        "seq_rep_4" => metrics::mean_rep_4(&kept_tokens),
        "rep_2" | "rep_3" | "rep_4" | "diversity" => {
            let kept: Vec<&str> = keep.iter().map(|&i| texts[i].text.as_str()).collect();
            let r = diversity::simctg_repetition(&kept);
            match metric {
                "rep_2" => r.rep_2,
                "rep_3" => r.rep_3,
                "rep_4" => r.rep_4,
                _ => r.diversity,
            }
        }
        "compression_ratio" => {
            let kept: Vec<&str> = keep.iter().map(|&i| texts[i].text.as_str()).collect();
            diversity::compression_ratio(&kept)
        }
        "mean_tokens" => mean_of(&|t| t.token_ids.len() as f64),
        "eos_rate" => mean_of(&|t| f64::from(u8::from(t.ended_with_eos))),
        _ => f64::NAN,
    }
}

/// Which paired test a metric gets, the same choice as the summary's intervals: the cluster
/// bootstrap for means of continuous per-text values (perplexities, lengths), whose skew
/// its percentiles follow; the jackknife for set-level statistics, which a drawn copy of a
/// text would distort (it counts as its own repetition), and for shares of texts, which
/// it covered better in simulation.
pub fn paired_test_of(metric: &str) -> Test {
    match metric {
        "mean_perplexity"
        | "corpus_perplexity"
        | "mean_tokens"
        | "scorer_mean_perplexity"
        | "scorer_corpus_perplexity"
        | "coherence" => Test::PairedBootstrap,
        _ => Test::PairedJackknife,
    }
}

/// Paired tests of every metric between the texts `a` and `b` of one setting, or `None` when
/// the two answered different prompt indices (nothing to pair).
pub fn paired_tests(a: &[Text], b: &[Text]) -> Option<Vec<PairedTest>> {
    let prompts = |texts: &[Text]| {
        let mut p: Vec<usize> = texts.iter().map(|t| t.prompt_index).collect();
        p.sort_unstable();
        p.dedup();
        p
    };
    if a.is_empty() || prompts(a) != prompts(b) {
        return None;
    }
    // One index space over both runs (a's texts, then b's), and one cluster per prompt
    // holding that prompt's texts of BOTH runs: resampling or leaving out a cluster does so
    // in both runs at once, which is what pairs them.
    let joined: Vec<usize> = a.iter().chain(b).map(|t| t.prompt_index).collect();
    let clusters = metrics::prompt_clusters(&joined);
    let words_a: Vec<Vec<&str>> = a.iter().map(|t| metrics::words(&t.text)).collect();
    let words_b: Vec<Vec<&str>> = b.iter().map(|t| metrics::words(&t.text)).collect();
    let hyp_a = metrics::hypothesis_subset(a.len(), SELF_BLEU_MAX_EXACT, METRICS_SEED);
    let hyp_b = metrics::hypothesis_subset(b.len(), SELF_BLEU_MAX_EXACT, METRICS_SEED);
    let n = a.len();
    Some(
        METRICS
            .iter()
            .map(|&metric| {
                let difference = |keep: &[usize]| {
                    let keep_a: Vec<usize> = keep.iter().copied().filter(|&i| i < n).collect();
                    let keep_b: Vec<usize> =
                        keep.iter().filter(|&&i| i >= n).map(|&i| i - n).collect();
                    metric_of(metric, b, &words_b, &hyp_b, &keep_b)
                        - metric_of(metric, a, &words_a, &hyp_a, &keep_a)
                };
                let test = paired_test_of(metric);
                let (lo, hi) = match test {
                    // Self-BLEU without each prompt in one pass per run; see
                    // `metrics::self_bleu_4_leave_group_out`.
                    Test::PairedJackknife if metric == "self_bleu_4" => {
                        let groups = metrics::jackknife_groups(&clusters);
                        let of = metrics::group_of(&groups, joined.len());
                        let (x, out_a) = metrics::self_bleu_4_leave_group_out(
                            &words_a,
                            &of[..n],
                            groups.len(),
                            &hyp_a,
                        );
                        let (y, out_b) = metrics::self_bleu_4_leave_group_out(
                            &words_b,
                            &of[n..],
                            groups.len(),
                            &hyp_b,
                        );
                        let leave_out: Vec<f64> =
                            out_a.iter().zip(&out_b).map(|(x, y)| y - x).collect();
                        metrics::jackknife_interval(y - x, &leave_out)
                    }
                    Test::PairedJackknife => metrics::jackknife_ci(&clusters, difference),
                    _ => metrics::cluster_bootstrap_ci(
                        &clusters,
                        difference,
                        metrics::BOOTSTRAP_RESAMPLES,
                        METRICS_SEED,
                    ),
                };
                PairedTest {
                    metric,
                    lo,
                    hi,
                    test,
                }
            })
            .collect(),
    )
}

fn cell(x: Option<f64>) -> String {
    x.map(|x| number(x, 6)).unwrap_or_default()
}

/// Write `compare.csv` (RFC 4180, CRLF rows, plain decimals, empty cells for undefined
/// values), under a temporary name renamed into place.
pub fn write_csv(path: &Path, changes: &[MetricChange]) -> Result<()> {
    let err = |error: std::io::Error| CompareError::Write {
        path: path.to_path_buf(),
        error,
    };
    let mut file = AtomicFile::create(path).map_err(err)?;
    {
        let mut w = csv_writer(&mut file);
        w.write_record(COLUMNS).map_err(|e| err(e.into()))?;
        for c in changes {
            w.write_record([
                c.setting.clone(),
                c.metric.to_string(),
                cell(c.a),
                cell(c.b),
                cell(c.change),
                cell(c.change_lo),
                cell(c.change_hi),
                c.significant.map(|s| s.to_string()).unwrap_or_default(),
                c.test.map(|t| t.as_str().to_string()).unwrap_or_default(),
            ])
            .map_err(|e| err(e.into()))?;
        }
        w.flush().map_err(err)?;
    }
    file.finish().map_err(err)
}

/// Columns padded to their widest cell; the first `left` columns left-aligned, the rest
/// right-aligned (numbers).
fn table(rows: &[Vec<String>], left: usize) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, text) in row.iter().enumerate() {
            let pad = " ".repeat(widths[c] - text.chars().count());
            if c > 0 {
                line.push_str("  ");
            }
            if c < left {
                line.push_str(text);
                line.push_str(&pad);
            } else {
                line.push_str(&pad);
                line.push_str(text);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The line that says which test judges the changes, and why.
fn test_line(pairing: &Pairing) -> String {
    match pairing {
        Pairing::Paired { prompts } => format!(
            "test: paired, over the {prompts} prompts both runs share (per-prompt differences: \
             prompt bootstrap for perplexities and lengths, leave-one-prompt-out jackknife for \
             the other metrics)"
        ),
        Pairing::Unpaired { reason } => {
            format!("test: unpaired, whether the runs' 95 % intervals overlap ({reason})")
        }
    }
}

/// A value for the terminal: 4 decimals, `-` where undefined.
fn show(x: Option<f64>) -> String {
    match x.map(|x| number(x, 4)) {
        Some(s) if !s.is_empty() => s,
        _ => "-".to_string(),
    }
}

/// A change for the terminal: signed, with `*` when significant (a blank of the same width
/// otherwise, so the digits stay aligned).
fn show_change(c: &MetricChange) -> String {
    let mut s = show(c.change);
    if c.change.is_some_and(|x| x > 0.0) && s != "0" {
        s.insert(0, '+');
    }
    s.push(if c.significant == Some(true) {
        '*'
    } else {
        ' '
    });
    s
}

/// The terminal report: how the runs differ, which test judges the changes, then a table of
/// every matched setting's metrics (`a`, `b`, change, `*` where significant), then the
/// settings only one run has.
pub fn render(cmp: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "A: {}", cmp.a.dir.display());
    let _ = writeln!(out, "B: {}", cmp.b.dir.display());
    let unknown = |x: &Option<String>| x.clone().unwrap_or_else(|| "(not recorded)".into());
    let same = |what: &str, x: &Option<String>| format!("  {what:<14} same: {}", unknown(x));
    for (what, x) in [
        ("model sha256", &cmp.a.model_sha256),
        ("scorer sha256", &cmp.a.scorer_sha256),
        ("backend", &cmp.a.backend),
        ("sweep version", &cmp.a.sweep_version),
        ("git commit", &cmp.a.git_commit),
    ] {
        // A run without a scorer says nothing of one.
        if what == "scorer sha256" && x.is_none() {
            continue;
        }
        if !cmp.differences.iter().any(|d| d.what == what) {
            let _ = writeln!(out, "{}", same(what, x));
        }
    }
    if !cmp
        .differences
        .iter()
        .any(|d| d.what.starts_with("experiment."))
    {
        let _ = writeln!(out, "  experiment     same");
    }
    if !cmp.differences.is_empty() {
        let _ = writeln!(out, "differences (A → B):");
        let rows: Vec<Vec<String>> = cmp
            .differences
            .iter()
            .map(|d| {
                vec![
                    format!("  {}", d.what),
                    unknown(&d.a),
                    "→".to_string(),
                    unknown(&d.b),
                ]
            })
            .collect();
        out.push_str(&table(&rows, 4));
    }
    let _ = writeln!(out, "{}", test_line(&cmp.pairing));
    out.push('\n');

    let changes = &cmp.matched.changes;
    if changes.is_empty() {
        let _ = writeln!(out, "no setting is in both runs");
    } else {
        let mut rows = vec![vec![
            "setting".to_string(),
            "metric".to_string(),
            "a".to_string(),
            "b".to_string(),
            "change ".to_string(),
        ]];
        let mut previous = "";
        for c in changes {
            let first = c.setting != previous;
            previous = &c.setting;
            rows.push(vec![
                if first {
                    c.setting.clone()
                } else {
                    String::new()
                },
                c.metric.to_string(),
                show(c.a),
                show(c.b),
                show_change(c),
            ]);
        }
        out.push_str(&table(&rows, 2));
        let settings = changes
            .iter()
            .map(|c| c.setting.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len();
        let significant = changes
            .iter()
            .filter(|c| c.significant == Some(true))
            .count();
        let rule = match cmp.pairing {
            Pairing::Paired { .. } => "the 95 % interval of the paired difference excludes 0",
            Pairing::Unpaired { .. } => {
                "the runs' 95 % intervals do not overlap (only mean_perplexity, distinct_2, \
                 self_bleu_4 and repetition_rate have intervals)"
            }
        };
        let _ = writeln!(
            out,
            "{settings} settings in both runs; change = b − a; * = {rule}; {significant} \
             significant changes"
        );
    }
    for (run, only) in [("A", &cmp.matched.only_a), ("B", &cmp.matched.only_b)] {
        if !only.is_empty() {
            let _ = writeln!(out, "only in {run}: {}", only.join(", "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(setting: &str, values: &[(&str, Option<f64>)]) -> SavedSummaryRow {
        SavedSummaryRow {
            setting: setting.to_string(),
            values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn intervals_that_touch_overlap() {
        assert!(disjoint((1.0, 2.0), (2.5, 3.0)));
        assert!(disjoint((2.5, 3.0), (1.0, 2.0)));
        assert!(!disjoint((1.0, 2.0), (2.0, 3.0)));
        assert!(!disjoint((1.0, 3.0), (1.5, 2.0)));
    }

    #[test]
    fn rows_match_by_setting_and_significance_needs_both_intervals() {
        let a = vec![
            row(
                "greedy",
                &[
                    ("mean_perplexity", Some(10.0)),
                    ("mean_perplexity_lo", Some(9.0)),
                    ("mean_perplexity_hi", Some(11.0)),
                    ("distinct_2", Some(0.5)),
                    ("distinct_2_lo", Some(0.4)),
                    ("distinct_2_hi", Some(0.6)),
                    ("self_bleu_4", Some(0.1)),
                    ("self_bleu_4_lo", None),
                    ("self_bleu_4_hi", None),
                    ("distinct_1", Some(0.25)),
                ],
            ),
            row("sample_t1_k0_p1_s1", &[]),
        ];
        let b = vec![
            row("beam_n2_lp1", &[]),
            row(
                "greedy",
                &[
                    ("mean_perplexity", Some(13.0)),
                    ("mean_perplexity_lo", Some(12.0)),
                    ("mean_perplexity_hi", Some(14.0)),
                    ("distinct_2", Some(0.55)),
                    ("distinct_2_lo", Some(0.45)),
                    ("distinct_2_hi", Some(0.65)),
                    ("self_bleu_4", Some(0.2)),
                    ("self_bleu_4_lo", Some(0.1)),
                    ("self_bleu_4_hi", Some(0.3)),
                    ("distinct_1", None),
                ],
            ),
        ];
        let m = match_rows(&a, &b);
        assert_eq!(m.only_a, vec!["sample_t1_k0_p1_s1"]);
        assert_eq!(m.only_b, vec!["beam_n2_lp1"]);
        assert_eq!(m.changes.len(), METRICS.len());
        let get = |metric: &str| m.changes.iter().find(|c| c.metric == metric).unwrap();
        assert_eq!(get("mean_perplexity").change, Some(3.0));
        assert_eq!(get("mean_perplexity").significant, Some(true));
        assert_eq!(get("distinct_2").significant, Some(false));
        // A's Self-BLEU interval is undefined: nothing to decide with.
        assert_eq!(get("self_bleu_4").significant, None);
        // A metric without intervals, undefined in B: no change, no verdict.
        assert_eq!(get("distinct_1").change, None);
        assert_eq!(get("distinct_1").significant, None);
        assert_eq!(get("zipf_coefficient").a, None);
    }

    #[test]
    fn differences_name_experiment_keys_and_grid_sub_keys() {
        let base = json!({
            "model": {"sha256": "aa"},
            "backend": "flex/cpu",
            "sweep_version": "0.1.0",
            "git_commit": "abc",
            "experiment": {
                "name": "a",
                "samples": 4,
                "grid": {"temperature": [0.8], "top_k": [0, 20]},
                "beam": null,
            }
        });
        let mut other = base.clone();
        other["backend"] = json!("tch/cuda:0");
        other["git_commit"] = Value::Null;
        other["experiment"]["name"] = json!("b");
        other["experiment"]["grid"]["top_k"] = json!([0, 30]);
        other["experiment"]["beam"] = json!({"num_beams": [2]});
        other["experiment"]["baseline"] = json!(2);
        let a = RunInfo::from_json(Path::new("a"), &base);
        let b = RunInfo::from_json(Path::new("b"), &other);
        let d = run_differences(&a, &b);
        let what: Vec<&str> = d.iter().map(|d| d.what.as_str()).collect();
        assert_eq!(
            what,
            vec![
                "backend",
                "git commit",
                "experiment.beam",
                "experiment.grid.top_k",
                "experiment.name",
                "experiment.baseline",
            ]
        );
        assert_eq!(d[1].b, None);
        assert_eq!(d[3].a.as_deref(), Some("[0,20]"));
        assert_eq!(d[3].b.as_deref(), Some("[0,30]"));
        assert_eq!(d[2].a.as_deref(), Some("null"));
        assert_eq!(d[5].a, None);
        assert!(run_differences(&a, &a).is_empty());
        let text = render(&Comparison {
            a: a.clone(),
            b,
            differences: d,
            matched: match_rows(&[], &[]),
            pairing: Pairing::Unpaired {
                reason: "the runs' prompts differ".into(),
            },
        });
        assert!(text.contains("model sha256   same: aa"), "{text}");
        assert!(text.contains("experiment.grid.top_k"), "{text}");
        assert!(
            text.contains("test: unpaired, whether the runs' 95 % intervals overlap"),
            "{text}"
        );
    }

    fn texts(prompts: usize, per_prompt: usize, ppl: impl Fn(usize) -> f64) -> Vec<Text> {
        let mut out = Vec::new();
        for p in 0..prompts {
            for s in 0..per_prompt {
                let words: Vec<String> = (0..8).map(|w| format!("p{p}s{s}w{w}")).collect();
                out.push(Text {
                    prompt_index: p,
                    text: words.join(" "),
                    token_ids: (0..8).map(|w| (p * 100 + s * 10 + w) as u32).collect(),
                    perplexity: ppl(p * per_prompt + s),
                    scorer_perplexity: f64::NAN,
                    ended_with_eos: false,
                });
            }
        }
        out
    }

    #[test]
    fn paired_tests_see_a_small_shift_that_prompt_spread_hides() {
        // Perplexity varies a lot between prompts (10 + 5p) but B is A plus 0.5 on every text:
        // the paired difference is exactly 0.5, while each run's own spread is far wider.
        let a = texts(12, 3, |i| 10.0 + 5.0 * (i / 3) as f64);
        let b = texts(12, 3, |i| 10.5 + 5.0 * (i / 3) as f64);
        let tests = paired_tests(&a, &b).unwrap();
        let get = |m: &str| tests.iter().find(|t| t.metric == m).unwrap().clone();
        let ppl = get("mean_perplexity");
        assert_eq!(ppl.test, Test::PairedBootstrap);
        assert!(
            (ppl.lo - 0.5).abs() < 1e-9 && (ppl.hi - 0.5).abs() < 1e-9,
            "{ppl:?}"
        );
        // Same texts: every set-level difference is 0 with a zero-width interval, which does
        // not exclude 0.
        let d2 = get("distinct_2");
        assert_eq!(d2.test, Test::PairedJackknife);
        assert_eq!((d2.lo, d2.hi), (0.0, 0.0));
        // Unpaired, the same shift is far inside both runs' prompt-bootstrap intervals.
        let mean_ci = |t: &[Text]| {
            let values: Vec<f64> = t.iter().map(|t| t.perplexity).collect();
            let prompts: Vec<usize> = t.iter().map(|t| t.prompt_index).collect();
            metrics::cluster_bootstrap_ci(
                &metrics::prompt_clusters(&prompts),
                |i| i.iter().map(|&i| values[i]).sum::<f64>() / i.len() as f64,
                1000,
                1,
            )
        };
        assert!(!disjoint(mean_ci(&a), mean_ci(&b)));

        let mut changes = match_rows(
            &[row("s", &[("mean_perplexity", Some(37.5))])],
            &[row("s", &[("mean_perplexity", Some(38.0))])],
        )
        .changes;
        let by_setting = |t: Vec<Text>| HashMap::from([("s".to_string(), t)]);
        pair_changes(&mut changes, &by_setting(a.clone()), &by_setting(b));
        let c = changes
            .iter()
            .find(|c| c.metric == "mean_perplexity")
            .unwrap();
        assert_eq!(c.significant, Some(true));
        assert_eq!(c.test, Some(Test::PairedBootstrap));
        let c = changes.iter().find(|c| c.metric == "distinct_2").unwrap();
        assert_eq!(
            (c.significant, c.test),
            (Some(false), Some(Test::PairedJackknife))
        );

        // Different prompt indices: nothing to pair.
        assert!(paired_tests(&a, &texts(11, 3, |_| 1.0)).is_none());
    }

    #[test]
    fn paired_tests_are_repeatable_and_thread_count_independent() {
        let a = texts(10, 2, |i| 5.0 + (i * i % 7) as f64);
        let b = texts(10, 2, |i| 5.0 + (i * 3 % 11) as f64);
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| paired_tests(&a, &b))
        };
        // Bit for bit, NaN (a metric these texts leave undefined) included.
        assert_eq!(format!("{:?}", run(1)), format!("{:?}", run(3)));
    }

    #[test]
    fn long_values_are_cut() {
        let long = json!("x".repeat(100));
        let shown = show_json(Some(&long)).unwrap();
        assert_eq!(shown.chars().count(), 60);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn tables_align_and_changes_are_signed_and_starred() {
        let t = table(
            &[
                vec!["a".into(), "1".into()],
                vec!["long".into(), "100".into()],
            ],
            1,
        );
        assert_eq!(t, "a       1\nlong  100\n");
        let mut c = MetricChange {
            setting: "s".into(),
            metric: "distinct_2",
            a: Some(0.1),
            b: Some(0.3),
            change: Some(0.3 - 0.1),
            change_lo: None,
            change_hi: None,
            significant: Some(true),
            test: Some(Test::IntervalOverlap),
        };
        assert_eq!(show_change(&c), "+0.2*");
        c.change = Some(-0.5);
        c.significant = Some(false);
        assert_eq!(show_change(&c), "-0.5 ");
        c.change = None;
        assert_eq!(show_change(&c), "- ");
    }

    #[test]
    fn missing_folders_and_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = compare(&missing, dir.path()).unwrap_err();
        assert!(matches!(err, CompareError::NoFolder { .. }));
        assert!(err.to_string().contains("nope"));
        let err = load_summary(dir.path()).unwrap_err();
        assert!(err.to_string().contains("summary.csv"), "{err}");
    }

    #[test]
    fn summaries_round_trip_through_compare_csv() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("summary.csv"),
            "setting,strategy,mean_perplexity,mean_perplexity_lo,mean_perplexity_hi,eos_rate\r\n\
             greedy,greedy,10.5,9,12,\r\n",
        )
        .unwrap();
        let rows = load_summary(dir.path()).unwrap();
        assert_eq!(rows[0].get("mean_perplexity"), Some(10.5));
        assert_eq!(rows[0].get("eos_rate"), None);
        assert_eq!(rows[0].interval("mean_perplexity"), Some((9.0, 12.0)));
        let m = match_rows(&rows, &rows);
        let out = dir.path().join("compare.csv");
        write_csv(&out, &m.changes).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.split("\r\n");
        assert_eq!(
            lines.next(),
            Some("setting,metric,a,b,change,change_lo,change_hi,significant,test")
        );
        assert_eq!(
            lines.next(),
            Some("greedy,mean_perplexity,10.5,10.5,0,,,false,interval_overlap")
        );
        assert_eq!(lines.next(), Some("greedy,corpus_perplexity,,,,,,,"));
        std::fs::write(
            dir.path().join("summary.csv"),
            "setting,distinct_2\r\ngreedy,lots\r\n",
        )
        .unwrap();
        let err = load_summary(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("distinct_2"),
            "{err}"
        );
    }
}
