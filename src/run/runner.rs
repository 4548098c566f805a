//! Running an experiment: grid → generate → metrics → report.
//!
//! Rows are saved as their batches finish, into the setting's file in the results folder
//! (see `store`), so an interrupted run loses at most the batches in flight, and running the
//! same experiment again generates only the rows that are missing. Each row's random stream
//! is keyed by (seed, prompt, sample), so the rows generated after a resume are those an
//! uninterrupted run makes, and the final CSVs, always built from the saved files, are the
//! same (timing columns aside). A changed experiment never mixes with old results: what the
//! samples depend on must match the folder's `experiment.json`, or the run refuses unless
//! forced.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Instant, SystemTime};

use crate::engine::generate::Generator;
use crate::engine::tokenizer::Tokenizer;
use crate::report::baseline::{Beams, pick_baseline, same_beams_warnings};
use crate::report::record::{self, Invocation, Record, ScorerRecord, SettingTiming};
use crate::report::summary::{MauveMetrics, Metrics, ScorerMetrics};
use crate::report::tables::{self, SamplesWriter, SummaryRow};
use crate::run::jobs::{self, Job, Progress, Todo};
use crate::run::scoring;
use crate::run::store::{Fingerprint, SettingData, Store, StoreError};
use crate::spec::experiment::Experiment;
use crate::spec::grid::{self, Setting, Strategy};
use crate::util::exit::{Exit, ExitStatus};
use crate::util::files::{PathError, io_at};
use crate::util::progress::Bars;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "{} saved setting file{} cannot be read (the other settings were run and saved, the \
         reports were not written): {}",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" },
        errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; also ")
    )]
    Unreadable { errors: Vec<StoreError> },
    #[error(transparent)]
    Generate(#[from] crate::engine::generate::GenerateError),
    #[error(transparent)]
    Score(crate::run::scoring::ScoreError),
    #[error("MAUVE of {setting}: {error}")]
    Mauve {
        setting: String,
        error: crate::report::mauve::MauveError,
    },
    #[error(
        "interrupted while scoring; the settings scored so far are saved in {dir} — run the \
         same command again to resume"
    )]
    ScoringInterrupted { dir: PathBuf },
    /// Decoding failed on what the model computed; the batches in flight were not saved, so
    /// once the cause is fixed the same command resumes.
    #[error("{setting}, prompt {prompt}: {error}; nothing non-finite was saved")]
    Decode {
        setting: String,
        prompt: usize,
        error: crate::engine::generate::GenerateError,
    },
    #[error(
        "interrupted; {done} of {total} settings are finished and saved in {dir}, and the rows \
         generated so far of the others ({rows} in this run) — run the same command again to \
         resume"
    )]
    Interrupted {
        dir: PathBuf,
        done: usize,
        total: usize,
        rows: usize,
    },
}

/// The user fixes a bad input by changing what they passed in or what the results folder
/// holds, as opposed to a failure of the run.
impl ExitStatus for RunError {
    fn exit(&self) -> Exit {
        match self {
            RunError::Store(e) => e.exit(),
            RunError::Unreadable { .. } => Exit::BadInput,
            RunError::Generate(e) => e.exit(),
            RunError::Score(e) => e.exit(),
            RunError::Mauve { error, .. } => error.exit(),
            RunError::Interrupted { .. } | RunError::ScoringInterrupted { .. } => Exit::Interrupted,
            RunError::Io(_) | RunError::Decode { .. } => Exit::Failed,
        }
    }
}

pub struct RunOptions {
    pub dir: PathBuf,
    pub force: bool,
    pub quiet: bool,
    pub backend: String,
    pub model_path: PathBuf,
    pub model_sha256: String,
    /// The `[score]` model, loaded; every text is scored under it once generated.
    pub scorer: Option<crate::run::scoring::Scorer>,
}

pub struct RunOutcome {
    pub dir: PathBuf,
    /// Settings that generated rows in this run.
    pub ran: usize,
    /// Settings already finished when it started.
    pub skipped: usize,
    pub folded_greedy: usize,
    /// Rows (continuations, beam hypotheses, scored references) generated in this run.
    pub rows: usize,
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
    // The folder stays locked until the reports are written.
    let (outcome, store) = run_settings(exp, generator, opts, &settings, folded_greedy, interrupt)?;
    let sources = vec![store.settings_dir(); settings.len()];
    let scored = match &opts.scorer {
        Some(scorer) => Some(crate::run::scoring::score_settings(
            &crate::run::scoring::Texts {
                exp,
                settings: &settings,
                sources: &sources,
                fingerprint: store.fingerprint(),
            },
            &opts.dir,
            scorer,
            opts.quiet,
            interrupt,
        )?),
        None => None,
    };
    let notes = write_run_reports(
        &Report {
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
            scorer: scored.as_ref(),
        },
        Some(Invocation {
            settings_run: outcome.ran,
            rows: outcome.rows,
            fresh: store.fresh(),
        }),
    )?;
    if !opts.quiet {
        for note in notes {
            eprintln!("{note}");
        }
    }
    Ok(outcome)
}

/// Generate and save what `opts.dir` does not hold yet of `settings`, without writing the
/// reports: a shard runs its share of an experiment this way, and the reports are written
/// once every share is in. Returns the opened store, whose lock the caller holds while it
/// writes the rest.
pub fn run_settings(
    exp: &Experiment,
    generator: &Generator,
    opts: &RunOptions,
    settings: &[Setting],
    folded_greedy: usize,
    interrupt: &AtomicBool,
) -> Result<(RunOutcome, Store), RunError> {
    let dir = &opts.dir;
    // Everything that can be wrong with the input is checked before anything is written.
    let tokenizer = Tokenizer::gpt2();
    let mut prepared = Vec::with_capacity(exp.prompts.len());
    for prompt in &exp.prompts {
        let p = generator.prepare(&tokenizer.encode(&prompt.text), exp.max_new_tokens)?;
        prepared.push(p);
    }
    if settings.iter().any(|s| s.strategy == Strategy::Human) {
        // The references are scored last: a token the model lacks must stop the run before
        // it starts, not after the rest has run.
        for reference in exp.prompts.iter().filter_map(|p| p.reference.as_ref()) {
            generator.prepare(&tokenizer.encode(reference), 0)?;
        }
    }
    let fingerprint = Fingerprint::new(exp, settings, &opts.model_sha256, &opts.backend);
    let store = Store::open(dir, fingerprint, opts.force)?;

    // What is saved already. A file that cannot be read is left as it is, reported at the
    // end, and does not stop the other settings.
    let mut unreadable = Vec::new();
    let mut todos: Vec<Todo> = Vec::new();
    let mut skipped = 0;
    for (index, setting) in settings.iter().enumerate() {
        let saved = match store.read_setting(setting) {
            Ok(saved) => saved,
            Err(e @ StoreError::Setting { .. }) => {
                unreadable.push(e);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if saved.as_ref().is_some_and(SettingData::is_finished) {
            skipped += 1;
            continue;
        }
        let missing: Vec<Vec<usize>> = (0..exp.prompts.len())
            .map(|p| match &saved {
                Some(data) if data.prompt_done(p) => Vec::new(),
                Some(data) if setting.strategy.samples_rows_apart() => (0..setting.samples)
                    .filter(|i| !data.prompts[p].rows.contains_key(i))
                    .collect(),
                _ if setting.strategy.samples_rows_apart() => (0..setting.samples).collect(),
                _ => vec![0],
            })
            .collect();
        todos.push(Todo {
            index,
            missing,
            writer: store.writer(setting, saved.as_ref())?,
            saved: saved.unwrap_or_else(|| SettingData {
                prompts: vec![Default::default(); exp.prompts.len()],
                tokens: 0,
                wall_s: 0.0,
                valid_len: 0,
            }),
        });
    }

    let bars = Bars::new(opts.quiet);
    let sweep_bar = bars.overall(settings.len() as u64);
    sweep_bar.inc(skipped as u64);
    if folded_greedy > 0 && settings.iter().any(|s| s.strategy == Strategy::Greedy) {
        crate::util::progress::println(
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
            crate::util::progress::println(
                &sweep_bar,
                opts.quiet,
                format!(
                    "warning: prompt {i} cropped by {} tokens from the left to fit the context",
                    p.cropped
                ),
            );
        }
    }

    let groups = jobs::groups(todos, settings, exp.batch_size);

    let mut progress = Progress {
        settings,
        done: skipped,
        ran: 0,
        rows: 0,
        quiet: opts.quiet,
        bar: sweep_bar,
    };
    for mut group in groups {
        let planned: usize = group
            .iter()
            .map(|t| match settings[t.index].strategy {
                Strategy::Human => t.rows_left(),
                _ => t.rows_left() * exp.max_new_tokens,
            })
            .sum();
        let members: Vec<&Setting> = group.iter().map(|t| &settings[t.index]).collect();
        let unit = match members[0].strategy {
            Strategy::Human => "references",
            _ => "tokens",
        };
        let setting_bar = bars.batch(planned as u64, unit, &jobs::describe(&members));
        progress.ran += group.len();
        let job = Job {
            exp,
            generator,
            tokenizer: &tokenizer,
            prepared: &prepared,
            settings,
            bar: &setting_bar,
            interrupt,
        };
        let finished = match settings[group[0].index].strategy {
            Strategy::Sample | Strategy::Greedy => job.sampling(&mut group, &mut progress),
            Strategy::Beam => job.beams(&mut group, &mut progress),
            Strategy::Contrastive => job.contrastive(&mut group, &mut progress),
            Strategy::Human => job.human(&mut group, &mut progress),
        };
        setting_bar.finish_and_clear();
        if !finished? {
            progress.bar.finish_and_clear();
            return Err(RunError::Interrupted {
                dir: dir.clone(),
                done: progress.done,
                total: settings.len(),
                rows: progress.rows,
            });
        }
    }
    // Left drawn at its end, every setting counted, above what the run says next.
    progress.bar.finish();
    if !unreadable.is_empty() {
        return Err(RunError::Unreadable { errors: unreadable });
    }
    let outcome = RunOutcome {
        dir: dir.clone(),
        ran: progress.ran,
        skipped,
        folded_greedy,
        rows: progress.rows,
    };
    Ok((outcome, store))
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
    /// The model the texts were scored under (their scores are in `dir`'s `scores/`).
    pub scorer: Option<&'a ScorerRecord>,
}

/// Build `summary.csv`, `samples.csv`, `run.json` and the plots from the saved settings,
/// for a merge of shards: the merge is recorded as the run's one invocation, spanning the
/// shards, with no counts (the shards generated the rows). Returns the lines to tell the
/// user (the baseline picked, warnings).
pub fn write_reports(report: &Report<'_>) -> Result<Vec<String>, RunError> {
    write_run_reports(report, None)
}

/// Build `summary.csv`, `samples.csv`, `run.json` and the plots from the saved settings.
/// Both a whole run and a merge of shards write through here, which is what makes their
/// files the same. A run (`invocation` given) keeps the invocations of the folder's earlier
/// `run.json`: a rerun that found everything saved adds itself to the list but keeps the
/// run's times, which describe the generation, not the rereading.
pub fn write_run_reports(
    report: &Report<'_>,
    invocation: Option<Invocation>,
) -> Result<Vec<String>, RunError> {
    let Report {
        exp,
        settings,
        sources,
        dir,
        ..
    } = *report;
    let prompts: Vec<String> = exp.prompts.iter().map(|p| p.text.clone()).collect();
    let fingerprint = Fingerprint::new(exp, settings, report.model_sha256, report.backend);
    let samples_path = dir.join("samples.csv");
    let knobs = tables::knob_columns(settings);
    let scored = report.scorer.is_some_and(|s| s.columns);
    let mauve_spec = exp
        .score
        .as_ref()
        .filter(|s| s.mauve && report.scorer.is_some());
    // MAUVE compares each row with the human row, which comes last: features are kept until
    // every row is read.
    let mut features: Vec<Option<Vec<Vec<f32>>>> = Vec::with_capacity(settings.len());
    let mut samples_csv =
        SamplesWriter::create(&samples_path, &knobs, scored).map_err(io_at(&samples_path))?;
    let mut metrics = Vec::with_capacity(settings.len());
    let mut scorer_metrics: Vec<Option<ScorerMetrics>> = Vec::with_capacity(settings.len());
    let mut unscored = Vec::new();
    let mut timings = Vec::with_capacity(settings.len());
    let mut beam_scores = Vec::with_capacity(settings.len());
    // To tell when the length penalties of a width changed nothing.
    let mut beams: Vec<Option<Beams>> = Vec::with_capacity(settings.len());
    for (setting, source) in settings.iter().zip(sources) {
        let expected = fingerprint.expected(setting);
        let data = crate::run::store::read_setting(source, &expected)?
            .filter(SettingData::is_finished)
            .ok_or_else(|| StoreError::Setting {
                path: crate::run::store::setting_path(source, &expected.id),
                id: expected.id.clone(),
                reason: "the setting is not finished".into(),
            })?;
        let samples = data.samples();
        let timing = Some(SettingTiming::new(&expected.id, data.tokens, data.wall_s));
        beams.push((setting.strategy == Strategy::Beam).then(|| Beams {
            tokens: samples.iter().map(|s| s.token_ids.clone()).collect(),
            any_ended: samples.iter().any(|s| s.ended_with_eos),
        }));
        let scores = report.scorer.and_then(|s| {
            let found = scoring::read_scores(
                &scoring::scorer_dir(dir, &s.sha256),
                &s.sha256,
                setting,
                &samples,
            );
            if found.is_none() {
                unscored.push(expected.id.clone());
            }
            found
        });
        let logprobs = scores.as_ref().filter(|_| scored).map(|s| &s.logprobs);
        samples_csv
            .write(setting, &prompts, &samples, logprobs.map(Vec::as_slice))
            .map_err(io_at(&samples_path))?;
        scorer_metrics.push(logprobs.map(|l| ScorerMetrics::compute(&samples, l)));
        features.push(scores.filter(|_| mauve_spec.is_some()).map(|s| s.features));
        metrics.push(Metrics::compute(&samples));
        // Rank beam settings by their best hypotheses' mean log-probability per token.
        let best: Vec<f64> = samples
            .iter()
            .filter(|s| s.sample_index == 0)
            .map(|s| {
                s.logprobs.iter().map(|&x| x as f64).sum::<f64>() / s.logprobs.len().max(1) as f64
            })
            .collect();
        beam_scores.push(crate::report::metrics::mean(&best));
        timings.push(timing);
    }
    samples_csv.finish().map_err(io_at(&samples_path))?;

    let mut mauve: Vec<Option<MauveMetrics>> = vec![None; settings.len()];
    let human = settings.iter().position(|s| s.strategy == Strategy::Human);
    if let (Some(spec), Some(h)) = (mauve_spec, human)
        && let Some(q) = &features[h]
    {
        for (i, setting) in settings.iter().enumerate() {
            if let (false, Some(p)) = (i == h, &features[i]) {
                let m = MauveMetrics::compute(p, q, spec.mauve_scaling, spec.mauve_clusters)
                    .map_err(|error| RunError::Mauve {
                        setting: setting.id(),
                        error,
                    })?;
                mauve[i] = Some(m);
            }
        }
    }
    let (baseline, mut notes) = pick_baseline(exp, settings, &beam_scores);
    if !unscored.is_empty() {
        notes.push(format!(
            "warning: {} settings have no scores under the scorer, and empty scorer columns: {} \
             (sweep score {} scores them)",
            unscored.len(),
            unscored.join(", "),
            dir.display()
        ));
    }
    notes.extend(same_beams_warnings(settings, &beams));
    let rows: Vec<SummaryRow<'_>> = settings
        .iter()
        .zip(&metrics)
        .zip(&timings)
        .zip(&scorer_metrics)
        .zip(&mauve)
        .map(
            |((((setting, metrics), timing), scorer), mauve)| SummaryRow {
                setting,
                metrics,
                scorer: scorer.as_ref(),
                mauve: mauve.as_ref(),
                tokens_per_s: if setting.strategy == Strategy::Human {
                    f64::NAN
                } else {
                    timing.as_ref().map_or(f64::NAN, |t| t.tokens_per_s)
                },
            },
        )
        .collect();
    let summary_path = dir.join("summary.csv");
    tables::write_summary(&summary_path, &rows, baseline, &knobs).map_err(io_at(&summary_path))?;
    // Plots are a convenience: failing to draw them must not fail the run or lose the CSVs.
    let plot_rows: Vec<crate::report::plot::PlotRow> = settings
        .iter()
        .zip(&metrics)
        .zip(scorer_metrics.iter().zip(&mauve))
        .map(|((s, m), (scorer, mauve))| {
            crate::report::plot::PlotRow::new(s, m).with_scores(scorer.as_ref(), mauve.as_ref())
        })
        .collect();
    if let Err(e) = crate::report::plot::write_plots(dir, &plot_rows) {
        eprintln!("warning: plots not written: {e}");
    }

    let run_path = dir.join("run.json");
    let record = Record {
        exp,
        settings,
        model_path: report.model_path,
        model_sha256: report.model_sha256,
        backend: report.backend,
        started: report.started,
        finished: report.finished,
        wall_s: report.wall_s,
        baseline,
        timings: &timings,
        scorer: report.scorer,
    };
    record::write(&run_path, &record, invocation.as_ref()).map_err(io_at(&run_path))?;
    Ok(notes)
}
