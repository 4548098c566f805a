//! Running an experiment: grid → generate → metrics → report, one setting at a time.
//!
//! Each finished setting is saved at once (`settings/<id>.jsonl`, written atomically), so an
//! interrupted run loses at most the setting in progress, and running the same experiment again
//! skips what is done. The final CSVs are always built from those saved files, so a resumed run
//! writes exactly what an uninterrupted one would (timing columns aside). A changed experiment
//! never mixes with old results: its fingerprint (resolved TOML, model checksum, backend) must
//! match the folder's, or the run refuses unless forced.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use indicatif::{MultiProgress, ProgressBar};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::beam::BeamParams;
use crate::experiment::Experiment;
use crate::generate::{Generator, Row};
use crate::grid::{self, Setting, Strategy};
use crate::report::{self, SamplesWriter, SummaryRow};
use crate::sampling::{SamplingParams, sample_rng};
use crate::summary::{Metrics, Sample};
use crate::tokenizer::Tokenizer;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "{dir} holds results of a different experiment ({what} changed); results never mix: \
         pass --force to discard them, or --out to write elsewhere"
    )]
    Changed { dir: PathBuf, what: String },
    #[error(transparent)]
    Generate(#[from] crate::generate::GenerateError),
    /// Decoding failed on what the model computed; nothing of the settings in flight was
    /// saved, so once the cause is fixed the same command resumes.
    #[error("{setting}, prompt {prompt}: {error}; nothing non-finite was saved")]
    Decode {
        setting: String,
        prompt: usize,
        error: crate::generate::GenerateError,
    },
    #[error(
        "interrupted; {done} of {total} settings are saved in {dir} — run the same command again to resume"
    )]
    Interrupted {
        dir: PathBuf,
        done: usize,
        total: usize,
    },
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |error| RunError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Raised whenever a change to `sweep` changes what a setting produces on the same backend
/// (a kernel that rounds differently, a fixed sampler), so that resuming never mixes settings
/// computed by two versions. Folders written before it existed read as 1. Version 4: beam
/// search's log-softmax sums f32 exponentials in f64, as sampling's `log_prob` does (it took
/// f64 exponentials), which moves the last bits of some beams' log-probabilities; and on a
/// device (GPU, or half precision) a sampled token's log-probability takes its normaliser
/// from the device's fixed-point sum (see `shortlist`). Sampling on the CPU is as in 3.
pub const NUMERICS: u32 = 4;

fn numerics_before_recorded() -> u32 {
    1
}

/// What makes two runs the same experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub experiment: serde_json::Value,
    pub model_sha256: String,
    pub backend: String,
    #[serde(default = "numerics_before_recorded")]
    pub numerics: u32,
}

impl Fingerprint {
    pub fn new(exp: &Experiment, model_sha256: &str, backend: &str) -> Self {
        let mut experiment = serde_json::to_value(exp).expect("experiment serialises");
        // Where the TOML lives does not change what it asks for.
        if let Some(map) = experiment.as_object_mut() {
            map.remove("source");
        }
        Self {
            experiment,
            model_sha256: model_sha256.to_string(),
            backend: backend.to_string(),
            numerics: NUMERICS,
        }
    }

    /// What changed between `other` (the older) and `self`, in words; `None` when nothing.
    pub fn difference(&self, other: &Self) -> Option<String> {
        if self.model_sha256 != other.model_sha256 {
            return Some("the model weights".into());
        }
        if self.numerics != other.numerics {
            return Some(format!(
                "the numerics of sweep, {} vs {}: this version computes samples differently",
                other.numerics, self.numerics
            ));
        }
        if self.backend != other.backend {
            return Some(format!(
                "the backend: {} vs {}",
                other.backend, self.backend
            ));
        }
        if self.experiment != other.experiment {
            let a = self.experiment.as_object();
            let b = other.experiment.as_object();
            if let (Some(a), Some(b)) = (a, b) {
                let keys: Vec<&String> = a
                    .keys()
                    .chain(b.keys())
                    .filter(|k| a.get(*k) != b.get(*k))
                    .collect();
                if let Some(k) = keys.first() {
                    return Some(format!("`{k}`"));
                }
            }
            return Some("the experiment".into());
        }
        None
    }
}

/// Timing of one finished setting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettingTiming {
    pub setting: String,
    pub tokens: usize,
    pub wall_s: f64,
    pub tokens_per_s: f64,
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

pub struct RunOptions {
    pub dir: PathBuf,
    pub force: bool,
    pub quiet: bool,
    pub backend: String,
    pub model_path: PathBuf,
    pub model_sha256: String,
}

pub struct RunOutcome {
    pub dir: PathBuf,
    pub ran: usize,
    pub skipped: usize,
    pub folded_greedy: usize,
}

/// The settings of an experiment, with the human reference last when prompts carry one.
pub fn settings(exp: &Experiment) -> (Vec<Setting>, usize) {
    let expansion = grid::expand(exp);
    let mut settings = expansion.settings;
    if exp.prompts.iter().any(|p| p.reference.is_some()) {
        settings.push(Setting::single(Strategy::Human));
    }
    (settings, expansion.folded_greedy)
}

/// Run `exp`, resuming in `opts.dir`.
pub fn run(
    exp: &Experiment,
    generator: &Generator,
    opts: &RunOptions,
    interrupt: &AtomicBool,
) -> Result<RunOutcome, RunError> {
    let started = SystemTime::now();
    let wall = Instant::now();
    let (settings, folded_greedy) = settings(exp);
    let outcome = run_settings(exp, generator, opts, &settings, folded_greedy, interrupt)?;
    let sources = vec![opts.dir.join("settings"); settings.len()];
    write_reports(&Report {
        exp,
        settings: &settings,
        sources: &sources,
        dir: &opts.dir,
        model_path: &opts.model_path,
        model_sha256: &opts.model_sha256,
        backend: &opts.backend,
        started,
        finished: SystemTime::now(),
        wall_s: wall.elapsed().as_secs_f64(),
    })?;
    Ok(outcome)
}

/// Generate and save those of `settings` that `opts.dir` does not hold yet, without writing
/// the reports: a shard runs its share of an experiment this way, and the reports are
/// written once every share is in.
pub fn run_settings(
    exp: &Experiment,
    generator: &Generator,
    opts: &RunOptions,
    settings: &[Setting],
    folded_greedy: usize,
    interrupt: &AtomicBool,
) -> Result<RunOutcome, RunError> {
    let dir = &opts.dir;
    let settings_dir = dir.join("settings");
    // Everything that can be wrong with the input is checked before anything is written.
    let tokenizer = Tokenizer::gpt2();
    let mut prepared = Vec::with_capacity(exp.prompts.len());
    for prompt in &exp.prompts {
        let p = generator.prepare(&tokenizer.encode(&prompt.text), exp.max_new_tokens)?;
        prepared.push(p);
    }
    let fingerprint = Fingerprint::new(exp, &opts.model_sha256, &opts.backend);
    let fingerprint_path = dir.join("experiment.json");
    if opts.force && dir.exists() {
        fs::remove_dir_all(dir).map_err(io_at(dir))?;
    } else if let Ok(text) = fs::read_to_string(&fingerprint_path) {
        let old: Option<Fingerprint> = serde_json::from_str(&text).ok();
        let changed = match &old {
            Some(old) => fingerprint.difference(old),
            None => Some("an unreadable experiment.json".into()),
        };
        if let Some(what) = changed {
            return Err(RunError::Changed {
                dir: dir.clone(),
                what,
            });
        }
    }
    fs::create_dir_all(&settings_dir).map_err(io_at(&settings_dir))?;
    let json = serde_json::to_string_pretty(&fingerprint).expect("json");
    crate::checkpoint::write_atomic(&fingerprint_path, json.as_bytes())
        .map_err(io_at(&fingerprint_path))?;

    let multi = MultiProgress::new();
    let sweep_bar = if opts.quiet {
        ProgressBar::hidden()
    } else {
        multi.add(crate::progress::bar(settings.len() as u64, "sweep"))
    };
    if folded_greedy > 0 && settings.iter().any(|s| s.strategy == Strategy::Greedy) {
        crate::progress::println(
            &sweep_bar,
            opts.quiet,
            format!(
                "greedy (temperature 0) is deterministic: {} grid points share one greedy setting, generated once per prompt",
                folded_greedy + 1
            ),
        );
    }
    for (i, p) in prepared.iter().enumerate() {
        if p.cropped > 0 {
            crate::progress::println(
                &sweep_bar,
                opts.quiet,
                format!(
                    "warning: prompt {i} cropped by {} tokens from the left to fit the context",
                    p.cropped
                ),
            );
        }
    }

    let mut ran = 0;
    let mut skipped = 0;
    // Batches are filled across settings: consecutive sampling settings whose rows per prompt
    // fit in one batch run together (each row keeps its own settings and random stream, so
    // the samples are those of running them apart), and so do consecutive beam settings whose
    // beams fit. An interruption loses that group only.
    let kind = |s: &Setting| match s.strategy {
        Strategy::Sample | Strategy::Greedy => Some(Strategy::Sample),
        Strategy::Beam => Some(Strategy::Beam),
        Strategy::Human => None,
    };
    let rows = |s: &Setting| match s.strategy {
        Strategy::Beam => s.num_beams,
        _ => s.samples,
    };
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_rows = 0;
    for (i, setting) in settings.iter().enumerate() {
        if settings_dir
            .join(format!("{}.jsonl", setting.id()))
            .is_file()
        {
            skipped += 1;
            sweep_bar.inc(1);
            continue;
        }
        let open = groups.last().is_some_and(|g| {
            kind(setting).is_some()
                && kind(&settings[g[0]]) == kind(setting)
                && group_rows + rows(setting) <= exp.batch_size
        });
        if open {
            groups.last_mut().expect("open group").push(i);
            group_rows += rows(setting);
        } else {
            groups.push(vec![i]);
            group_rows = rows(setting);
        }
    }
    let mut done = skipped;
    for group in groups {
        let members: Vec<&Setting> = group.iter().map(|&i| &settings[i]).collect();
        let planned: usize = members
            .iter()
            .map(|s| match s.strategy {
                Strategy::Human => exp.prompts.len(),
                _ => s.samples * exp.prompts.len() * exp.max_new_tokens,
            })
            .sum();
        let setting_bar = if opts.quiet {
            ProgressBar::hidden()
        } else {
            multi.add(crate::progress::bar(planned as u64, "setting"))
        };
        let ids: Vec<String> = members.iter().map(|s| s.id()).collect();
        setting_bar.set_message(ids.join(", "));
        let t0 = Instant::now();
        let run_group = match members[0].strategy {
            Strategy::Sample | Strategy::Greedy => run_sampling_group,
            Strategy::Beam => run_beam_group,
            Strategy::Human => run_human,
        };
        let outcome = run_group(
            exp,
            generator,
            &tokenizer,
            &prepared,
            &members,
            &setting_bar,
            interrupt,
        );
        let Some(results) = outcome? else {
            setting_bar.finish_and_clear();
            sweep_bar.finish_and_clear();
            return Err(RunError::Interrupted {
                dir: dir.clone(),
                done,
                total: settings.len(),
            });
        };
        // Settings that shared batches share their throughput.
        let wall_s = t0.elapsed().as_secs_f64();
        let group_tokens: usize = results.iter().flatten().map(|s| s.token_ids.len()).sum();
        for (id, samples) in ids.iter().zip(&results) {
            let tokens: usize = samples.iter().map(|s| s.token_ids.len()).sum();
            let timing = SettingTiming {
                setting: id.clone(),
                tokens,
                wall_s: wall_s * tokens as f64 / group_tokens.max(1) as f64,
                tokens_per_s: group_tokens as f64 / wall_s.max(1e-9),
            };
            save_setting(&settings_dir, id, samples, &timing)?;
            ran += 1;
            done += 1;
            sweep_bar.inc(1);
            crate::progress::println(
                &sweep_bar,
                opts.quiet || !sweep_bar.is_hidden(),
                format!(
                    "[{done}/{}] {id}: {} texts, {tokens} tokens, {:.0} tokens/s",
                    settings.len(),
                    samples.len(),
                    timing.tokens_per_s
                ),
            );
        }
        setting_bar.finish_and_clear();
    }
    sweep_bar.finish_and_clear();
    Ok(RunOutcome {
        dir: dir.clone(),
        ran,
        skipped,
        folded_greedy,
    })
}

/// Generate the texts of several beam settings for every prompt, their beams sharing
/// batches; `None` when interrupted.
fn run_beam_group(
    exp: &Experiment,
    generator: &Generator,
    tokenizer: &Tokenizer,
    prepared: &[crate::generate::PreparedPrompt],
    group: &[&Setting],
    bar: &ProgressBar,
    interrupt: &AtomicBool,
) -> Result<Option<Vec<Vec<Sample>>>, RunError> {
    let eos = generator.eos();
    let params: Vec<BeamParams> = group
        .iter()
        .map(|s| BeamParams {
            num_beams: s.num_beams,
            length_penalty: s.length_penalty.unwrap_or(1.0),
            early_stopping: s.early_stopping.unwrap_or_default(),
            num_return_sequences: s.samples,
        })
        .collect();
    let mut results: Vec<Vec<Sample>> = vec![Vec::new(); group.len()];
    for (p, prompt) in prepared.iter().enumerate() {
        if interrupt.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let found = generator
            .beam_searches(prompt, &params, exp.max_new_tokens)
            .map_err(|error| decode_error(group, |search| search, p, error))?;
        for ((setting, hyps), samples) in group.iter().zip(found).zip(&mut results) {
            bar.inc((exp.max_new_tokens * setting.samples) as u64);
            for (i, h) in hyps.into_iter().enumerate() {
                samples.push(Sample {
                    prompt_index: p,
                    sample_index: i,
                    text: continuation_text(tokenizer, &h.tokens, eos),
                    token_ids: h.tokens,
                    logprobs: h.logprobs,
                    ended_with_eos: h.ended_with_eos,
                });
            }
        }
    }
    Ok(Some(results))
}

/// A decoding error of `prompt` as the error of the setting it belongs to: `setting_of`
/// maps the row (or search) the error names to that setting.
fn decode_error(
    group: &[&Setting],
    setting_of: impl Fn(usize) -> usize,
    prompt: usize,
    error: crate::generate::GenerateError,
) -> RunError {
    let row = match &error {
        crate::generate::GenerateError::NonFinite { row, .. } => *row,
        _ => 0,
    };
    let setting = group.get(setting_of(row)).unwrap_or(&group[0]);
    RunError::Decode {
        setting: setting.id(),
        prompt,
        error,
    }
}

/// The human reference texts, scored by the model, as the group of the one human setting
/// (it is never grouped with others); `None` when interrupted.
fn run_human(
    exp: &Experiment,
    generator: &Generator,
    tokenizer: &Tokenizer,
    prepared: &[crate::generate::PreparedPrompt],
    group: &[&Setting],
    bar: &ProgressBar,
    interrupt: &AtomicBool,
) -> Result<Option<Vec<Vec<Sample>>>, RunError> {
    debug_assert_eq!(group.len(), 1, "the human setting runs alone");
    let mut samples = Vec::new();
    for (p, prompt) in prepared.iter().enumerate() {
        if interrupt.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let Some(reference) = &exp.prompts[p].reference else {
            continue;
        };
        // The human text is cut to the generated length, so that length-sensitive metrics
        // (distinct-n, Self-BLEU, Zipf) compare like with like.
        let mut tokens = tokenizer.encode(reference);
        tokens.truncate(exp.max_new_tokens);
        let logprobs = generator
            .score(&prompt.tokens, &tokens)
            .map_err(|error| decode_error(group, |_| 0, p, error))?;
        bar.inc(1);
        samples.push(Sample {
            prompt_index: p,
            sample_index: 0,
            text: tokenizer.decode(&tokens),
            token_ids: tokens,
            logprobs,
            ended_with_eos: false,
        });
    }
    Ok(Some(vec![samples]))
}

/// Generate the texts of several sampling settings for every prompt, their rows sharing
/// batches; `None` when interrupted.
fn run_sampling_group(
    exp: &Experiment,
    generator: &Generator,
    tokenizer: &Tokenizer,
    prepared: &[crate::generate::PreparedPrompt],
    group: &[&Setting],
    bar: &ProgressBar,
    interrupt: &AtomicBool,
) -> Result<Option<Vec<Vec<Sample>>>, RunError> {
    let eos = generator.eos();
    let mut results: Vec<Vec<Sample>> = vec![Vec::new(); group.len()];
    for (p, prompt) in prepared.iter().enumerate() {
        // (setting in the group, sample index), in the order samples are stored.
        let rows: Vec<(usize, usize)> = group
            .iter()
            .enumerate()
            .flat_map(|(g, s)| (0..s.samples).map(move |i| (g, i)))
            .collect();
        for chunk in rows.chunks(exp.batch_size.max(1)) {
            if interrupt.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let batch = chunk
                .iter()
                .map(|&(g, i)| {
                    let s = group[g];
                    Row {
                        params: SamplingParams {
                            temperature: s.temperature,
                            top_k: s.top_k,
                            top_p: s.top_p,
                        },
                        rng: sample_rng(s.seed.unwrap_or(0), p as u32, i as u32),
                    }
                })
                .collect();
            let out = generator
                .sample(prompt, batch, exp.max_new_tokens, |_, _| bar.inc(1))
                .map_err(|error| {
                    decode_error(group, |row| chunk.get(row).map_or(0, |&(g, _)| g), p, error)
                })?;
            for (&(g, i), c) in chunk.iter().zip(out) {
                results[g].push(Sample {
                    prompt_index: p,
                    sample_index: i,
                    text: continuation_text(tokenizer, &c.tokens, eos),
                    token_ids: c.tokens,
                    logprobs: c.logprobs,
                    ended_with_eos: c.ended_with_eos,
                });
            }
        }
    }
    Ok(Some(results))
}

/// The text of a continuation, without the end-of-text token that ended it.
fn continuation_text(tokenizer: &Tokenizer, tokens: &[u32], eos: u32) -> String {
    match tokens.last() {
        Some(&t) if t == eos => tokenizer.decode(&tokens[..tokens.len() - 1]),
        _ => tokenizer.decode(tokens),
    }
}

fn save_setting(
    dir: &Path,
    id: &str,
    samples: &[Sample],
    timing: &SettingTiming,
) -> Result<(), RunError> {
    let timing_path = dir.join(format!("{id}.timing.json"));
    let json = serde_json::to_string_pretty(timing).expect("json");
    crate::checkpoint::write_atomic(&timing_path, json.as_bytes()).map_err(io_at(&timing_path))?;
    // The samples file is what marks a setting done, so it is renamed into place last.
    let path = dir.join(format!("{id}.jsonl"));
    let mut file = report::AtomicFile::create(&path).map_err(io_at(&path))?;
    for s in samples {
        let line = serde_json::to_string(s).expect("json");
        writeln!(file, "{line}").map_err(io_at(&path))?;
    }
    file.finish().map_err(io_at(&path))
}

fn load_setting(dir: &Path, id: &str) -> Result<(Vec<Sample>, Option<SettingTiming>), RunError> {
    let path = dir.join(format!("{id}.jsonl"));
    let file = fs::File::open(&path).map_err(io_at(&path))?;
    let mut samples = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(io_at(&path))?;
        let sample: Sample = serde_json::from_str(&line).map_err(|e| RunError::Io {
            path: path.clone(),
            error: std::io::Error::other(e.to_string()),
        })?;
        samples.push(sample);
    }
    let timing = fs::read_to_string(dir.join(format!("{id}.timing.json")))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    Ok((samples, timing))
}

/// What the reports of a run are built from.
pub struct Report<'a> {
    pub exp: &'a Experiment,
    pub settings: &'a [Setting],
    /// The folder holding each setting's saved results, in `settings` order: one run's own
    /// `settings/`, or the shards' for a merge.
    pub sources: &'a [PathBuf],
    /// Where the reports go.
    pub dir: &'a Path,
    pub model_path: &'a Path,
    pub model_sha256: &'a str,
    pub backend: &'a str,
    pub started: SystemTime,
    pub finished: SystemTime,
    pub wall_s: f64,
}

/// Build `summary.csv`, `samples.csv`, `run.json` and the plots from the saved settings.
/// Both a whole run and a merge of shards write through here, which is what makes their
/// files the same.
pub fn write_reports(report: &Report<'_>) -> Result<(), RunError> {
    let Report {
        exp,
        settings,
        sources,
        dir,
        ..
    } = *report;
    let prompts: Vec<String> = exp.prompts.iter().map(|p| p.text.clone()).collect();
    let samples_path = dir.join("samples.csv");
    let mut samples_csv = SamplesWriter::create(&samples_path).map_err(io_at(&samples_path))?;
    let mut metrics = Vec::with_capacity(settings.len());
    let mut timings = Vec::with_capacity(settings.len());
    let mut beam_scores = Vec::with_capacity(settings.len());
    for (setting, source) in settings.iter().zip(sources) {
        let (samples, timing) = load_setting(source, &setting.id())?;
        samples_csv
            .write(setting, &prompts, &samples)
            .map_err(io_at(&samples_path))?;
        metrics.push(Metrics::compute(&samples));
        // Rank beam widths by their best hypotheses' mean total log-probability per token.
        let best: Vec<f64> = samples
            .iter()
            .filter(|s| s.sample_index == 0)
            .map(|s| {
                s.logprobs.iter().map(|&x| x as f64).sum::<f64>() / s.logprobs.len().max(1) as f64
            })
            .collect();
        beam_scores.push(crate::metrics::mean(&best));
        timings.push(timing);
    }
    samples_csv.finish().map_err(io_at(&samples_path))?;

    let baseline = settings
        .iter()
        .enumerate()
        .filter(|(_, s)| s.strategy == Strategy::Beam)
        .filter(|(_, s)| exp.baseline.is_none_or(|n| s.num_beams == n))
        .max_by(|a, b| beam_scores[a.0].total_cmp(&beam_scores[b.0]))
        .map(|(i, _)| i);
    let rows: Vec<SummaryRow<'_>> = settings
        .iter()
        .zip(&metrics)
        .zip(&timings)
        .map(|((setting, metrics), timing)| SummaryRow {
            setting,
            metrics,
            tokens_per_s: if setting.strategy == Strategy::Human {
                f64::NAN
            } else {
                timing.as_ref().map_or(f64::NAN, |t| t.tokens_per_s)
            },
        })
        .collect();
    let summary_path = dir.join("summary.csv");
    report::write_summary(&summary_path, &rows, baseline).map_err(io_at(&summary_path))?;
    // Plots are a convenience: failing to draw them must not fail the run or lose the CSVs.
    let plot_rows: Vec<crate::plot::PlotRow> = settings
        .iter()
        .zip(&metrics)
        .map(|(s, m)| crate::plot::PlotRow::new(s, m))
        .collect();
    if let Err(e) = crate::plot::write_plots(dir, &plot_rows) {
        eprintln!("warning: plots not written: {e}");
    }

    let record = serde_json::json!({
        "sweep_version": env!("CARGO_PKG_VERSION"),
        "git_commit": option_env!("SWEEP_GIT_COMMIT"),
        "experiment": exp,
        "model": {
            "path": report.model_path,
            "sha256": report.model_sha256,
        },
        "backend": report.backend,
        "started": humantime::format_rfc3339_seconds(report.started).to_string(),
        "finished": humantime::format_rfc3339_seconds(report.finished).to_string(),
        "wall_s": report.wall_s,
        "baseline": baseline.map(|i| settings[i].id()),
        "settings": settings.iter().zip(&timings).map(|(s, t)| serde_json::json!({
            "setting": s.id(),
            "strategy": s.strategy.as_str(),
            "tokens": t.as_ref().map(|t| t.tokens),
            "wall_s": t.as_ref().map(|t| t.wall_s),
            "tokens_per_s": t.as_ref().map(|t| t.tokens_per_s),
        })).collect::<Vec<_>>(),
    });
    let run_path = dir.join("run.json");
    let text = serde_json::to_string_pretty(&record).expect("json") + "\n";
    crate::checkpoint::write_atomic(&run_path, text.as_bytes()).map_err(io_at(&run_path))
}
