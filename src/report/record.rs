//! The run record `run.json`: what was run, on which model and backend, when, by which
//! invocations, and how fast each setting went. Apart from the CSVs because it is a record
//! of the run's history, kept across invocations, not a table of its results.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::spec::experiment::Experiment;
use crate::spec::grid::{Setting, Strategy};

/// Timing of one finished setting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettingTiming {
    pub setting: String,
    pub tokens: usize,
    pub wall_s: f64,
    pub tokens_per_s: f64,
}

impl SettingTiming {
    /// Settings that shared batches share their time by tokens, so each one's throughput is
    /// that of the batches it ran in.
    pub fn new(id: &str, tokens: usize, wall_s: f64) -> Self {
        Self {
            setting: id.to_string(),
            tokens,
            wall_s,
            tokens_per_s: tokens as f64 / wall_s.max(1e-9),
        }
    }
}

/// What one invocation of `sweep run` did, for `run.json`'s list of invocations.
pub struct Invocation {
    pub settings_run: usize,
    pub rows: usize,
    /// Whether the run started on a folder holding no run of its own (new, or emptied by
    /// --force): a `run.json` already there, say one kept as a reference, is not its history.
    pub fresh: bool,
}

/// What `run.json` records of a run besides its invocations.
pub struct Record<'a> {
    pub exp: &'a Experiment,
    pub settings: &'a [Setting],
    pub model_path: &'a Path,
    pub model_sha256: &'a str,
    pub backend: &'a str,
    pub started: SystemTime,
    pub finished: SystemTime,
    pub wall_s: f64,
    /// The index in `settings` of the baseline used, where there is one.
    pub baseline: Option<usize>,
    /// Each setting's timing, in `settings` order.
    pub timings: &'a [Option<SettingTiming>],
    /// The model the texts were scored under, when there is one.
    pub scorer: Option<&'a ScorerRecord>,
}

/// Write `run.json` at `path`. A run (`invocation` given) keeps the invocations of the
/// folder's earlier `run.json` unless it started afresh; a merge of shards (`None`) is the
/// record's one invocation.
pub fn write(
    path: &Path,
    record: &Record<'_>,
    invocation: Option<&Invocation>,
) -> std::io::Result<()> {
    let stamp = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let this = serde_json::json!({
        "started": stamp(record.started),
        "finished": stamp(record.finished),
        "wall_s": record.wall_s,
        "settings_run": invocation.map(|i| i.settings_run),
        "rows": invocation.map(|i| i.rows),
    });
    let times = RunTimes {
        started: stamp(record.started),
        finished: stamp(record.finished),
        wall_s: record.wall_s,
    };
    let (times, invocations) = match invocation {
        Some(inv) => {
            let previous = if inv.fresh { None } else { previous_run(path) };
            RunTimes::after(previous, times, inv.settings_run > 0, this)
        }
        None => (times, vec![this]),
    };
    // `run.json` promises every default filled in: the model actually loaded and the
    // baseline actually used, where the experiment left them out or named a width.
    let mut experiment = serde_json::to_value(record.exp).expect("json");
    experiment["model"] = serde_json::json!(record.model_path);
    experiment["baseline"] = serde_json::json!(record.baseline.map(|i| record.settings[i].id()));
    let json = serde_json::json!({
        "sweep_version": env!("CARGO_PKG_VERSION"),
        "git_commit": option_env!("SWEEP_GIT_COMMIT"),
        "experiment": experiment,
        "model": {
            "path": record.model_path,
            "sha256": record.model_sha256,
        },
        "backend": record.backend,
        "scorer": record.scorer,
        "started": times.started,
        "finished": times.finished,
        "wall_s": times.wall_s,
        "invocations": invocations,
        "baseline": record.baseline.map(|i| record.settings[i].id()),
        "settings": record.settings.iter().zip(record.timings).map(|(s, t)| {
            // The human row generates nothing: its time is scoring, not a speed.
            let speed = t.as_ref().map(|t| t.tokens_per_s).filter(|_| s.strategy != Strategy::Human);
            serde_json::json!({
                "setting": s.id(),
                "strategy": s.strategy.as_str(),
                "tokens": t.as_ref().map(|t| t.tokens),
                "wall_s": t.as_ref().map(|t| t.wall_s),
                "tokens_per_s": speed,
            })
        }).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&json).expect("json") + "\n";
    crate::util::files::write_atomic(path, text.as_bytes())
}

/// The run's clock readings in `run.json`.
struct RunTimes {
    started: String,
    finished: String,
    wall_s: f64,
}

impl RunTimes {
    /// The run's times and invocations once `this` invocation is added to the `previous`
    /// `run.json` of the folder (if any). The run started with its first invocation; it
    /// finished with the last one that generated anything, and its wall time is the sum of
    /// those: an invocation that found everything saved leaves all three as they were.
    fn after(
        previous: Option<serde_json::Value>,
        now: RunTimes,
        generated: bool,
        this: serde_json::Value,
    ) -> (RunTimes, Vec<serde_json::Value>) {
        let Some(prev) = previous else {
            return (now, vec![this]);
        };
        let text = |key: &str| prev[key].as_str().map(str::to_owned);
        let (Some(started), Some(finished), Some(wall_s)) =
            (text("started"), text("finished"), prev["wall_s"].as_f64())
        else {
            return (now, vec![this]);
        };
        let mut invocations = match prev["invocations"].as_array() {
            Some(list) => list.clone(),
            // A `run.json` from before invocations were recorded: its run was one.
            None => vec![serde_json::json!({
                "started": started,
                "finished": finished,
                "wall_s": wall_s,
                "settings_run": null,
                "rows": null,
            })],
        };
        invocations.push(this);
        let times = if generated {
            RunTimes {
                started,
                finished: now.finished,
                wall_s: wall_s + now.wall_s,
            }
        } else {
            RunTimes {
                started,
                finished,
                wall_s,
            }
        };
        (times, invocations)
    }
}

/// The folder's `run.json` as the last run left it; `None` when there is none or it cannot
/// be read (then the run's record starts afresh: it is a record, not data).
fn previous_run(path: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// What `run.json` records of the scorer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorerRecord {
    pub path: PathBuf,
    pub sha256: String,
    pub n_positions: usize,
    /// Prompts cropped from the left to fit the scorer's context with `max_new_tokens`.
    pub cropped_prompts: usize,
    /// Tokens so cropped, over all prompts.
    pub cropped_tokens: usize,
    /// Whether its perplexities are the scorer columns; `false` when the generator scored
    /// only for MAUVE's features.
    pub columns: bool,
}
