//! Splitting one experiment across several processes or machines, and putting the pieces
//! back together.
//!
//! A shard is `INDEX/COUNT`: the settings are dealt out by expected cost, so COUNT shards
//! finish at about the same time, and every process that knows COUNT computes the same deal
//! without talking to the others. Shard `i` of `n` works in `RESULTS/shards/<i>-of-<n>/` (the
//! layout of an ordinary results folder: `experiment.json` and `settings/`), so no two shards
//! ever write the same file and each resumes on its own. When it has saved its last setting it
//! writes `shard.json`, which records the experiment exactly as resolved, so that the merge
//! needs nothing but the folders. The merge checks the shards against each other and writes
//! the reports through the same code as an unsharded run, so the files are the same.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::engine::generate::Generator;
use crate::run::runner::{self, Report, RunError, RunOptions, RunOutcome};
use crate::run::store::{self, Fingerprint};
use crate::spec::experiment::Experiment;
use crate::spec::grid::{self, Setting};
use crate::util::exit::{Exit, ExitStatus};
use crate::util::files::{PathError, io_at};

/// The file a finished shard writes last.
pub const RECORD: &str = store::SHARD_RECORD;
/// The folder under a results folder that holds the shards.
pub const SHARDS_DIR: &str = store::SHARDS_DIR;

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error(
        "--shard {spec}: {reason}; write it as INDEX/COUNT with 0 <= INDEX < COUNT, e.g. --shard 0/4"
    )]
    BadSpec { spec: String, reason: String },
    #[error("{reason}; pass --shard INDEX/COUNT to say which share this process runs")]
    BadEnvironment { reason: String },
    #[error(transparent)]
    Io(#[from] PathError),
    #[error(
        "{dir}: not a shard (no {RECORD}, and not a {SHARDS_DIR}/<i>-of-<n> folder) and no \
         {SHARDS_DIR}/ folder in it; pass the results folder of `sweep run --shard` or its \
         {SHARDS_DIR}/<i>-of-<n> folders"
    )]
    NotAShard { dir: PathBuf },
    #[error(
        "{dir} does not exist; pass the results folder of `sweep run --shard` (the --out of the \
         shards, by default results/<name>) or its {SHARDS_DIR}/<i>-of-<n> folders"
    )]
    NoSuchFolder { dir: PathBuf },
    #[error(
        "{dir} is a file; pass the results folder of `sweep run --shard` or its \
         {SHARDS_DIR}/<i>-of-<n> folders"
    )]
    NotAFolder { dir: PathBuf },
    #[error(
        "{dir} holds an unsharded run (experiment.json but no {SHARDS_DIR}/ folder): there is \
         nothing to merge, `sweep run` wrote its reports itself; merge is for the results \
         folder of `sweep run --shard I/N`"
    )]
    Unsharded { dir: PathBuf },
    #[error("{path}: {reason}; run that shard again to rewrite it")]
    Unreadable { path: PathBuf, reason: String },
    #[error(
        "{dir}: no shard has finished yet ({RECORD} is written when a shard's last setting is saved)"
    )]
    NothingFinished { dir: PathBuf },
    #[error(
        "{b} is not part of the same run as {a} ({what} differs); merge only shards of one \
         experiment, model and backend"
    )]
    Mismatch {
        a: PathBuf,
        b: PathBuf,
        what: String,
    },
    #[error(
        "{a} is shard {a_shard} but {b} is shard {b_shard}: the shards come from different splits; \
         merge the shards of one --shards count"
    )]
    Split {
        a: PathBuf,
        a_shard: Shard,
        b: PathBuf,
        b_shard: Shard,
    },
    #[error("shard {shard} is given twice: {a} and {b}; remove one")]
    Duplicate {
        shard: Shard,
        a: PathBuf,
        b: PathBuf,
    },
    #[error(
        "missing shard{}: {}; run {} (`sweep run {} --out {} --shard {}`{}), then merge again",
        if missing.len() == 1 { "" } else { "s" },
        list(missing.iter().map(|(s, dir)| format!("{s} ({})", dir.display()))),
        if missing.len() == 1 { "it" } else { "them" },
        experiment.display(),
        results.display(),
        missing[0].0,
        match script {
            Some(script) => format!(
                ", or on Slurm `sbatch --array={} {}`",
                missing.iter().map(|(s, _)| s.index.to_string()).collect::<Vec<_>>().join(","),
                script.display()
            ),
            None => String::new(),
        },
    )]
    Missing {
        missing: Vec<(Shard, PathBuf)>,
        experiment: PathBuf,
        results: PathBuf,
        /// The array script of `sweep slurm`, named only where one was written.
        script: Option<PathBuf>,
    },
    #[error(
        "shard {shard} in {dir} is unfinished: {} of its {total} settings are not saved ({}); \
         run it again to finish it (it resumes), then merge again",
        missing.len(),
        list(missing.iter().cloned()),
    )]
    Unfinished {
        shard: Shard,
        dir: PathBuf,
        total: usize,
        missing: Vec<String>,
    },
    #[error(
        "the shards lie in different results folders; pass --out DIR to say where the merged \
         results go"
    )]
    NoOut,
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Everything but the machine's failures and the run's own is fixed by changing what was
/// passed in.
impl ExitStatus for ShardError {
    fn exit(&self) -> Exit {
        match self {
            ShardError::Io(_) => Exit::Failed,
            ShardError::Run(e) => e.exit(),
            _ => Exit::BadInput,
        }
    }
}

/// At most a few names, then how many more, so a long list stays one readable line.
fn list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    const SHOWN: usize = 6;
    if items.len() <= SHOWN {
        items.join(", ")
    } else {
        format!(
            "{} and {} more",
            items[..SHOWN].join(", "),
            items.len() - SHOWN
        )
    }
}

/// One share of an experiment: `index` of `count`, counting from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| ShardError::BadSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (index, count) = spec.split_once('/').ok_or_else(|| bad("no `/`"))?;
        let index: usize = index
            .trim()
            .parse()
            .map_err(|_| bad("INDEX is not a whole number"))?;
        let count: usize = count
            .trim()
            .parse()
            .map_err(|_| bad("COUNT is not a whole number"))?;
        Shard::new(index, count).ok_or_else(|| bad("INDEX must be below COUNT"))
    }
}

impl Shard {
    pub fn new(index: usize, count: usize) -> Option<Self> {
        (index < count).then_some(Self { index, count })
    }

    /// The shard a Slurm job-array task stands for, from its environment: `None` outside a
    /// job array. The array must be contiguous (`--array=0-7`, `--array=1-8`), since the
    /// task's place in it is its share.
    pub fn from_slurm_env(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ShardError> {
        let Some(id) = var("SLURM_ARRAY_TASK_ID") else {
            return Ok(None);
        };
        let number = |name: &str| -> Result<Option<usize>, ShardError> {
            match var(name) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| ShardError::BadEnvironment {
                        reason: format!("{name}={v} is not a whole number"),
                    }),
            }
        };
        let id = number("SLURM_ARRAY_TASK_ID")?.ok_or_else(|| ShardError::BadEnvironment {
            reason: format!("SLURM_ARRAY_TASK_ID={id} is not a whole number"),
        })?;
        let min = number("SLURM_ARRAY_TASK_MIN")?;
        let max = number("SLURM_ARRAY_TASK_MAX")?;
        let task_count = number("SLURM_ARRAY_TASK_COUNT")?;
        let (index, count) = match (min, max, task_count) {
            (Some(min), Some(max), count) if min <= id && id <= max => {
                let span = max - min + 1;
                if count.is_some_and(|c| c != span) {
                    return Err(ShardError::BadEnvironment {
                        reason: format!(
                            "the job array is not contiguous ({} tasks between {min} and {max})",
                            count.unwrap_or_default()
                        ),
                    });
                }
                (id - min, span)
            }
            (None, None, Some(count)) => (id, count),
            _ => {
                return Err(ShardError::BadEnvironment {
                    reason: format!(
                        "SLURM_ARRAY_TASK_ID={id} but SLURM_ARRAY_TASK_MIN/MAX or \
                         SLURM_ARRAY_TASK_COUNT are missing or do not contain it"
                    ),
                });
            }
        };
        Shard::new(index, count)
            .map(Some)
            .ok_or_else(|| ShardError::BadEnvironment {
                reason: format!("SLURM_ARRAY_TASK_ID={id} is outside an array of {count} tasks"),
            })
    }

    /// The shard's folder name under `shards/`.
    pub fn dir_name(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }

    /// Reads a [`Shard::dir_name`] back.
    pub fn from_dir_name(name: &str) -> Option<Self> {
        let (index, count) = name.split_once("-of-")?;
        Shard::new(index.parse().ok()?, count.parse().ok()?)
    }
}

/// Deal items with these costs into `count` shards: the costliest first, each to the shard
/// with the least cost so far (the lowest index on a tie), items of equal cost in the order
/// of their keys. This is greedy longest-processing-time scheduling: the busiest shard ends
/// up at most one item's cost above the least busy one, and the deal depends only on the
/// keys and costs, never on the order they are given in.
pub fn assign<K: Ord>(items: &[(K, u64)], count: usize) -> Vec<usize> {
    assert!(count > 0, "at least one shard");
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| {
        items[b]
            .1
            .cmp(&items[a].1)
            .then(items[a].0.cmp(&items[b].0))
    });
    let mut load = vec![0u64; count];
    let mut shard_of = vec![0; items.len()];
    for i in order {
        let least = (0..count).min_by_key(|&s| (load[s], s)).expect("count > 0");
        load[least] = load[least].saturating_add(items[i].1);
        shard_of[i] = least;
    }
    shard_of
}

/// The settings `shard` runs, in the experiment's order.
pub fn share(exp: &Experiment, settings: &[Setting], shard: Shard) -> Vec<Setting> {
    let items: Vec<(String, u64)> = settings
        .iter()
        .map(|s| (s.id(), grid::planned_tokens(exp, std::slice::from_ref(s))))
        .collect();
    assign(&items, shard.count)
        .into_iter()
        .zip(settings)
        .filter(|(s, _)| *s == shard.index)
        .map(|(_, setting)| setting.clone())
        .collect()
}

/// What a finished shard leaves for the merge.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardRecord {
    pub shard: Shard,
    /// The experiment as resolved, TOML path included: the merge rebuilds it from here.
    pub experiment: serde_json::Value,
    pub model_path: PathBuf,
    pub model_sha256: String,
    pub backend: String,
    /// The ids of the settings this shard ran.
    pub settings: Vec<String>,
    pub started: String,
    pub finished: String,
    pub wall_s: f64,
}

/// The folder shard `shard` of the results folder `results` works in.
pub fn shard_dir(results: &Path, shard: Shard) -> PathBuf {
    store::shard_dir(results, shard.index, shard.count)
}

/// Run `shard`'s share of `exp`, resuming in its folder under `opts.dir`.
pub fn run_shard(
    exp: &Experiment,
    generator: &Generator,
    opts: &RunOptions,
    shard: Shard,
    interrupt: &AtomicBool,
) -> Result<RunOutcome, ShardError> {
    let started = SystemTime::now();
    let (settings, folded_greedy) = runner::settings(exp);
    let mine = share(exp, &settings, shard);
    let dir = shard_dir(&opts.dir, shard);
    let shard_opts = RunOptions {
        dir: dir.clone(),
        force: opts.force,
        quiet: opts.quiet,
        backend: opts.backend.clone(),
        model_path: opts.model_path.clone(),
        model_sha256: opts.model_sha256.clone(),
        // The merged folder is scored as a whole (`sweep score`), not shard by shard.
        scorer: None,
    };
    // The shard's folder stays locked until its record is written.
    let (outcome, store) =
        runner::run_settings(exp, generator, &shard_opts, &mine, folded_greedy, interrupt)?;
    let finished = SystemTime::now();
    let record = ShardRecord {
        shard,
        experiment: serde_json::to_value(exp).expect("experiment serialises"),
        model_path: opts.model_path.clone(),
        model_sha256: opts.model_sha256.clone(),
        backend: opts.backend.clone(),
        settings: mine.iter().map(Setting::id).collect(),
        started: humantime::format_rfc3339_seconds(started).to_string(),
        finished: humantime::format_rfc3339_seconds(finished).to_string(),
        wall_s: finished
            .duration_since(started)
            .unwrap_or_default()
            .as_secs_f64(),
    };
    let json = serde_json::to_string_pretty(&record).expect("json") + "\n";
    store
        .write_file(RECORD, json.as_bytes())
        .map_err(RunError::from)?;
    Ok(outcome)
}

/// What a merge wrote.
#[derive(Debug)]
pub struct Merged {
    pub dir: PathBuf,
    pub shards: usize,
    pub settings: usize,
    /// What the reports have to say (the baseline chosen, beams that a length penalty did
    /// not change), as a whole run prints it.
    pub notes: Vec<String>,
}

/// A shard folder found by [`merge`]; `record` is `None` while it has not finished.
struct Found {
    dir: PathBuf,
    shard: Shard,
    record: Option<ShardRecord>,
}

/// Check that `inputs` (results folders with `shards/`, or shard folders) are every shard of
/// one run, each finished, and write the reports to `out` (by default the results folder the
/// shards lie in).
pub fn merge(inputs: &[PathBuf], out: Option<&Path>) -> Result<Merged, ShardError> {
    let mut found = Vec::new();
    for input in inputs {
        for dir in shard_dirs(input)? {
            found.push(read_shard(&dir)?);
        }
    }
    let Some(first) = found.iter().find(|f| f.record.is_some()) else {
        let dir = inputs.first().cloned().unwrap_or_default();
        return Err(ShardError::NothingFinished { dir });
    };
    let record = first.record.clone().expect("finished");
    let exp = read_experiment(&record.experiment).ok_or_else(|| ShardError::Unreadable {
        path: first.dir.join(RECORD),
        reason: "the experiment in it is not one this version of sweep writes".into(),
    })?;
    let (settings, _) = runner::settings(&exp);
    let fingerprint = Fingerprint::new(&exp, &settings, &record.model_sha256, &record.backend);
    let mut by_index: BTreeMap<usize, &Found> = BTreeMap::new();
    for f in &found {
        if f.shard.count != first.shard.count {
            return Err(ShardError::Split {
                a: first.dir.clone(),
                a_shard: first.shard,
                b: f.dir.clone(),
                b_shard: f.shard,
            });
        }
        let theirs = match &f.record {
            Some(r) => read_experiment(&r.experiment).map(|e| {
                Fingerprint::new(&e, &runner::settings(&e).0, &r.model_sha256, &r.backend)
            }),
            // An unfinished shard has its fingerprint but not yet its record.
            None => store::read_fingerprint(&f.dir).map_err(RunError::from)?,
        };
        if let Some(what) = theirs.and_then(|t| fingerprint.difference(&t)) {
            return Err(ShardError::Mismatch {
                a: first.dir.clone(),
                b: f.dir.clone(),
                what,
            });
        }
        if let Some(other) = by_index.insert(f.shard.index, f) {
            return Err(ShardError::Duplicate {
                shard: f.shard,
                a: other.dir.clone(),
                b: f.dir.clone(),
            });
        }
    }
    let out = match out {
        Some(out) => out.to_path_buf(),
        None => common_results_dir(&found).ok_or(ShardError::NoOut)?,
    };
    let count = first.shard.count;
    let missing: Vec<(Shard, PathBuf)> = (0..count)
        .filter(|i| !by_index.contains_key(i))
        .map(|index| {
            let shard = Shard { index, count };
            (shard, shard_dir(&out, shard))
        })
        .collect();
    if !missing.is_empty() {
        let script = out.join("slurm/shards.sbatch");
        return Err(ShardError::Missing {
            missing,
            experiment: exp.source.clone(),
            script: script.is_file().then_some(script),
            results: out,
        });
    }

    let items: Vec<(String, u64)> = settings
        .iter()
        .map(|s| (s.id(), grid::planned_tokens(&exp, std::slice::from_ref(s))))
        .collect();
    let deal = assign(&items, count);
    let mut sources = Vec::with_capacity(settings.len());
    for (index, f) in &by_index {
        let mine: Vec<&String> = items
            .iter()
            .zip(&deal)
            .filter(|(_, s)| *s == index)
            .map(|((id, _), _)| id)
            .collect();
        let mut unsaved: Vec<String> = Vec::new();
        for (setting, _) in settings.iter().zip(&deal).filter(|(_, s)| **s == *index) {
            let expected = fingerprint.expected(setting);
            let saved = store::read_setting(&f.dir.join(store::SETTINGS_DIR), &expected)
                .map_err(RunError::from)?;
            if !saved.is_some_and(|d| d.is_finished()) {
                unsaved.push(expected.id);
            }
        }
        // A shard stopped between saving its last setting and writing its record is whole:
        // its fingerprint was checked above, and the record adds only its times.
        if !unsaved.is_empty() {
            return Err(ShardError::Unfinished {
                shard: f.shard,
                dir: f.dir.clone(),
                total: mine.len(),
                missing: unsaved,
            });
        }
    }
    for shard in &deal {
        sources.push(by_index[shard].dir.join(store::SETTINGS_DIR));
    }

    let records: Vec<&ShardRecord> = by_index
        .values()
        .filter_map(|f| f.record.as_ref())
        .collect();
    let parse = |t: &str| humantime::parse_rfc3339(t).ok();
    let started = records
        .iter()
        .filter_map(|r| parse(&r.started))
        .min()
        .unwrap_or_else(SystemTime::now);
    let finished = records
        .iter()
        .filter_map(|r| parse(&r.finished))
        .max()
        .unwrap_or_else(SystemTime::now);
    // The shards may have run side by side: the run took from the first start to the last end.
    let wall_s = finished
        .duration_since(started)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64();
    fs::create_dir_all(&out).map_err(io_at(&out))?;
    // Nothing else writes the reports while the merge does.
    let _lock = store::Lock::acquire(&out).map_err(RunError::from)?;
    let notes = runner::write_reports(&Report {
        exp: &exp,
        settings: &settings,
        sources: &sources,
        dir: &out,
        model_path: &record.model_path,
        model_sha256: &record.model_sha256,
        backend: &record.backend,
        started,
        finished,
        wall_s,
        scorer: None,
    })?;
    Ok(Merged {
        dir: out,
        shards: count,
        settings: settings.len(),
        notes,
    })
}

/// The shard folders `input` names: itself, or those under its `shards/`.
fn shard_dirs(input: &Path) -> Result<Vec<PathBuf>, ShardError> {
    let shards = input.join(SHARDS_DIR);
    let unfinished_shard = input.join("experiment.json").is_file()
        && input
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(Shard::from_dir_name)
            .is_some();
    // A results folder may hold an unsharded run's experiment.json beside its shards/.
    if input.join(RECORD).is_file() || (unfinished_shard && !shards.is_dir()) {
        return Ok(vec![input.to_path_buf()]);
    }
    if !shards.is_dir() {
        let dir = input.to_path_buf();
        return Err(match fs::metadata(input) {
            Err(_) => ShardError::NoSuchFolder { dir },
            Ok(m) if !m.is_dir() => ShardError::NotAFolder { dir },
            Ok(_) if input.join("experiment.json").is_file() => ShardError::Unsharded { dir },
            Ok(_) => ShardError::NotAShard { dir },
        });
    }
    let mut dirs: Vec<PathBuf> = fs::read_dir(&shards)
        .map_err(io_at(&shards))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(ShardError::NotAShard {
            dir: input.to_path_buf(),
        });
    }
    Ok(dirs)
}

fn read_shard(dir: &Path) -> Result<Found, ShardError> {
    let path = dir.join(RECORD);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let record: ShardRecord =
                serde_json::from_str(&text).map_err(|e| ShardError::Unreadable {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            Ok(Found {
                dir: dir.to_path_buf(),
                shard: record.shard,
                record: Some(record),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let shard = dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(Shard::from_dir_name)
                .ok_or_else(|| ShardError::NotAShard {
                    dir: dir.to_path_buf(),
                })?;
            Ok(Found {
                dir: dir.to_path_buf(),
                shard,
                record: None,
            })
        }
        Err(error) => Err(PathError { path, error }.into()),
    }
}

/// The results folder every shard lies in (`<it>/shards/<i>-of-<n>`), if there is one.
fn common_results_dir(found: &[Found]) -> Option<PathBuf> {
    let mut parents = found.iter().map(|f| {
        let parent = f.dir.parent()?;
        (parent.file_name()? == SHARDS_DIR).then(|| parent.parent().map(Path::to_path_buf))?
    });
    let first = parents.next()??;
    parents.all(|p| p.as_ref() == Some(&first)).then_some(first)
}

/// The experiment as `shard.json` holds it; `None` unless it serialises back to the very same
/// JSON, which makes the merged `run.json` the one an unsharded run writes.
fn read_experiment(value: &serde_json::Value) -> Option<Experiment> {
    let exp = serde_json::from_value::<Experiment>(value.clone()).ok()?;
    (serde_json::to_value(&exp).ok()? == *value).then_some(exp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(text: &str) -> Experiment {
        Experiment::from_str(text, Path::new("t.toml")).unwrap()
    }

    fn items(costs: &[u64]) -> Vec<(String, u64)> {
        costs
            .iter()
            .enumerate()
            .map(|(i, &c)| (format!("s{i:02}"), c))
            .collect()
    }

    fn loads(items: &[(String, u64)], deal: &[usize], count: usize) -> Vec<u64> {
        let mut load = vec![0; count];
        for ((_, cost), &s) in items.iter().zip(deal) {
            load[s] += cost;
        }
        load
    }

    #[test]
    fn every_item_goes_to_exactly_one_shard_in_range() {
        let items = items(&[5, 1, 9, 9, 3, 7, 2, 2, 8, 4, 6]);
        for count in 1..=14 {
            let deal = assign(&items, count);
            assert_eq!(deal.len(), items.len());
            assert!(deal.iter().all(|&s| s < count));
        }
    }

    #[test]
    fn the_deal_is_deterministic_and_ignores_input_order() {
        let forward = items(&[5, 1, 9, 9, 3, 7, 2, 2, 8, 4, 6]);
        let deal = assign(&forward, 4);
        assert_eq!(deal, assign(&forward, 4));
        let mut reversed = forward.clone();
        reversed.reverse();
        let mut deal_reversed = assign(&reversed, 4);
        deal_reversed.reverse();
        assert_eq!(deal, deal_reversed);
    }

    #[test]
    fn shards_balance_tokens_not_setting_counts() {
        // One costly setting and many cheap ones: dealing by count would put half the cheap
        // ones beside the costly one.
        let mut costs = vec![100];
        costs.extend(std::iter::repeat_n(10, 10));
        let items = items(&costs);
        let deal = assign(&items, 2);
        assert_eq!(loads(&items, &deal, 2), vec![100, 100]);
        assert_eq!(deal.iter().filter(|&&s| s == 0).count(), 1);

        // Greedy longest-processing-time: the spread is at most the largest single cost.
        let items = self::items(&[17, 3, 99, 42, 42, 8, 8, 8, 1, 64, 23, 5, 77, 12]);
        for count in 1..=6 {
            let load = loads(&items, &assign(&items, count), count);
            let spread = load.iter().max().unwrap() - load.iter().min().unwrap();
            assert!(spread <= 99, "{count} shards: {load:?}");
        }
        let load = loads(&items, &assign(&items, 3), 3);
        assert!(
            load.iter().max().unwrap() - load.iter().min().unwrap() <= 17,
            "{load:?}"
        );
    }

    #[test]
    fn ties_are_broken_by_id() {
        let items = vec![
            ("b".to_string(), 5),
            ("a".to_string(), 5),
            ("c".to_string(), 5),
        ];
        // a first (shard 0), then b (shard 1), then c (shard 0 again: both at 5, lowest index).
        assert_eq!(assign(&items, 2), vec![1, 0, 0]);
    }

    #[test]
    fn shares_of_an_experiment_partition_its_settings() {
        let exp = experiment(
            "prompts = [\"a\", \"b\"]\nmax_new_tokens = 8\nsamples = 4\n\
             [grid]\ntemperature = [0, 0.7, 1.0]\ntop_k = [0, 40]\nseed = [1, 2]\n\
             [beam]\nnum_beams = [2, 8]\n",
        );
        let (settings, _) = runner::settings(&exp);
        for count in [1, 2, 3, 5, 40] {
            let mut seen: Vec<String> = Vec::new();
            for index in 0..count {
                let mine = share(&exp, &settings, Shard { index, count });
                // Each share keeps the experiment's order.
                let positions: Vec<usize> = mine
                    .iter()
                    .map(|s| settings.iter().position(|x| x == s).unwrap())
                    .collect();
                assert!(positions.windows(2).all(|w| w[0] < w[1]));
                seen.extend(mine.iter().map(Setting::id));
            }
            seen.sort();
            let mut all: Vec<String> = settings.iter().map(Setting::id).collect();
            all.sort();
            assert_eq!(seen, all, "{count} shards");
        }
    }

    #[test]
    fn shard_specs_parse_and_bad_ones_say_how_to_write_them() {
        assert_eq!(
            "2/4".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 4 }
        );
        for bad in ["4/4", "2", "a/4", "1/0", "-1/3"] {
            let err = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(err.contains("INDEX/COUNT"), "{bad}: {err}");
            assert!(err.contains(bad), "{bad}: {err}");
        }
        assert_eq!(Shard::from_dir_name("3-of-8"), Shard::new(3, 8));
        assert_eq!(Shard::from_dir_name("8-of-8"), None);
    }

    #[test]
    fn slurm_array_variables_name_the_shard() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Shard::from_slurm_env(env(&[])).unwrap(), None);
        let zero_based = env(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(Shard::from_slurm_env(zero_based).unwrap(), Shard::new(2, 4));
        let one_based = env(&[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "8"),
        ]);
        assert_eq!(Shard::from_slurm_env(one_based).unwrap(), Shard::new(0, 8));
        let count_only = env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "5"),
        ]);
        assert_eq!(Shard::from_slurm_env(count_only).unwrap(), Shard::new(3, 5));
        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "6"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        let err = Shard::from_slurm_env(stepped).unwrap_err().to_string();
        assert!(
            err.contains("not contiguous") && err.contains("--shard"),
            "{err}"
        );
    }

    #[test]
    fn experiments_read_back_from_json_as_they_were() {
        for text in [
            "prompts = [\"a\"]\nmax_new_tokens = 8\nsamples = 4\n[grid]\ntemperature = [0, 0.7]\n",
            "prompts = [\"a\"]\nmax_new_tokens = 8\nsamples = 2\n[[grid]]\ntop_k = [40]\n\
             [[grid]]\ntop_p = 0.95\n[beam]\nnum_beams = [2, 4]\nearly_stopping = \"never\"\n",
            "prompts = [\"a\", \"b\"]\nmax_new_tokens = 3\nbaseline = 2\n[beam]\nnum_beams = 2\n\
             early_stopping = true\nlength_penalty = [0.5, 1.0]\n",
        ] {
            let exp = experiment(text);
            let json = serde_json::to_value(&exp).unwrap();
            assert_eq!(read_experiment(&json), Some(exp), "{text}");
        }
        assert_eq!(read_experiment(&serde_json::json!({"name": "x"})), None);
    }
}
