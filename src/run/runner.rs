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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use indicatif::{MultiProgress, ProgressBar};
use serde::{Deserialize, Serialize};

use crate::engine::beam::BeamParams;
use crate::engine::generate::{Generator, PreparedPrompt, Row};
use crate::engine::sampling::{SamplingParams, sample_rng};
use crate::engine::tokenizer::Tokenizer;
use crate::report::summary::{Metrics, Sample};
use crate::report::tables::{self, SamplesWriter, SummaryRow};
use crate::run::store::{Fingerprint, SettingData, SettingWriter, Store, StoreError};
use crate::spec::experiment::Experiment;
use crate::spec::grid::{self, Setting, Strategy};
use crate::util::exit::{Exit, ExitStatus};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{path}: {error}{}", crate::util::files::space_hint(error))]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
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
            RunError::Interrupted { .. } => Exit::Interrupted,
            RunError::Io { .. } | RunError::Decode { .. } => Exit::Failed,
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |error| RunError::Io {
        path: path.to_path_buf(),
        error,
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

impl SettingTiming {
    /// Settings that shared batches share their time by tokens, so each one's throughput is
    /// that of the batches it ran in.
    fn of(id: &str, data: &SettingData) -> Self {
        Self {
            setting: id.to_string(),
            tokens: data.tokens,
            wall_s: data.wall_s,
            tokens_per_s: data.tokens as f64 / data.wall_s.max(1e-9),
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

/// What one setting still needs, per prompt: the sample indices to generate (sampling), or
/// whether the prompt is to run at all (beam, human: their rows come from one call).
struct Todo {
    index: usize,
    missing: Vec<Vec<usize>>,
    writer: SettingWriter,
    saved: SettingData,
}

impl Todo {
    fn rows_left(&self) -> usize {
        self.missing.iter().map(Vec::len).sum()
    }
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

    let multi = MultiProgress::new();
    let sweep_bar = if opts.quiet {
        ProgressBar::hidden()
    } else {
        multi.add(crate::util::progress::bar(settings.len() as u64, "sweep"))
    };
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

    // Batches are filled across settings: consecutive sampling settings whose rows per prompt
    // fit in one batch run together (each row keeps its own settings and random stream, so
    // the samples are those of running them apart), and so do consecutive beam settings whose
    // beams fit. Every batch's rows are saved as it ends, whatever the grouping.
    let kind = |s: &Setting| match s.strategy {
        Strategy::Sample | Strategy::Greedy => Some(Strategy::Sample),
        Strategy::Beam => Some(Strategy::Beam),
        Strategy::Human => None,
    };
    let rows = |s: &Setting| match s.strategy {
        Strategy::Beam => s.num_beams,
        _ => s.samples,
    };
    let mut groups: Vec<Vec<Todo>> = Vec::new();
    let mut group_rows = 0;
    for todo in todos {
        let setting = &settings[todo.index];
        let open = groups.last().is_some_and(|g| {
            kind(setting).is_some()
                && kind(&settings[g[0].index]) == kind(setting)
                && group_rows + rows(setting) <= exp.batch_size
        });
        if open {
            group_rows += rows(setting);
            groups.last_mut().expect("open group").push(todo);
        } else {
            group_rows = rows(setting);
            groups.push(vec![todo]);
        }
    }

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
        let setting_bar = if opts.quiet {
            ProgressBar::hidden()
        } else {
            multi.add(crate::util::progress::bar(planned as u64, "setting"))
        };
        let ids: Vec<String> = group.iter().map(|t| settings[t.index].id()).collect();
        setting_bar.set_message(ids.join(", "));
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
    progress.bar.finish_and_clear();
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

impl Strategy {
    /// Whether a prompt's rows are generated one by one (each with its own random stream),
    /// so that a resume can generate some of them; beam hypotheses and the human row come
    /// from one call per prompt.
    fn samples_rows_apart(self) -> bool {
        matches!(self, Strategy::Sample | Strategy::Greedy)
    }
}

/// The run's counts and its settings bar.
struct Progress<'a> {
    settings: &'a [Setting],
    done: usize,
    ran: usize,
    rows: usize,
    quiet: bool,
    bar: ProgressBar,
}

impl Progress<'_> {
    /// Save the rows a batch made for one setting and prompt; say so when that finishes the
    /// setting.
    fn save(
        &mut self,
        todo: &mut Todo,
        prompt: usize,
        of: usize,
        wall_s: f64,
        samples: Vec<Sample>,
    ) -> Result<(), RunError> {
        self.rows += samples.len();
        let saved = &mut todo.saved;
        saved.wall_s += wall_s;
        saved.prompts[prompt].of = Some(of);
        for s in &samples {
            saved.tokens += s.token_ids.len();
            todo.missing[prompt].retain(|&i| i != s.sample_index);
            saved.prompts[prompt].rows.insert(s.sample_index, s.clone());
        }
        if !todo.missing[prompt].is_empty() && saved.prompts[prompt].rows.len() == of {
            todo.missing[prompt].clear();
        }
        todo.writer.append(prompt, of, wall_s, samples)?;
        if saved.is_finished() {
            self.done += 1;
            self.bar.inc(1);
            let id = self.settings[todo.index].id();
            let timing = SettingTiming::of(&id, saved);
            let texts: usize = saved.prompts.iter().map(|p| p.rows.len()).sum();
            let plural =
                |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
            // The human row generates nothing: its time is spent scoring references, which
            // is no generation speed.
            let what = if self.settings[todo.index].strategy == Strategy::Human {
                format!(
                    "{} scored, {}",
                    plural(texts, "reference"),
                    plural(timing.tokens, "token")
                )
            } else {
                format!(
                    "{}, {}, {:.0} tokens/s",
                    plural(texts, "text"),
                    plural(timing.tokens, "token"),
                    timing.tokens_per_s
                )
            };
            crate::util::progress::println(
                &self.bar,
                self.quiet || !self.bar.is_hidden(),
                format!("[{}/{}] {id}: {what}", self.done, self.settings.len()),
            );
        }
        Ok(())
    }
}

/// What every group's generation needs.
struct Job<'a> {
    exp: &'a Experiment,
    generator: &'a Generator,
    tokenizer: &'a Tokenizer,
    prepared: &'a [PreparedPrompt],
    settings: &'a [Setting],
    bar: &'a ProgressBar,
    interrupt: &'a AtomicBool,
}

impl Job<'_> {
    fn interrupted(&self) -> bool {
        self.interrupt.load(Ordering::SeqCst)
    }

    /// A decoding error of prompt `p` as the error of the setting it belongs to:
    /// `setting_of` maps the row (or search) that the error names to that setting's index.
    fn decode_error(
        &self,
        setting_of: impl Fn(usize) -> usize,
        p: usize,
        error: crate::engine::generate::GenerateError,
    ) -> RunError {
        match error {
            crate::engine::generate::GenerateError::NonFinite { row, .. } => RunError::Decode {
                setting: self.settings[setting_of(row)].id(),
                prompt: p,
                error,
            },
            other => RunError::Generate(other),
        }
    }

    /// The missing rows of several sampling settings, for every prompt, sharing batches;
    /// `false` when interrupted (after saving the batch in flight).
    fn sampling(&self, group: &mut [Todo], progress: &mut Progress) -> Result<bool, RunError> {
        let eos = self.generator.eos();
        for (p, prompt) in self.prepared.iter().enumerate() {
            // (member of the group, sample index), in the order samples are stored.
            let rows: Vec<(usize, usize)> = group
                .iter()
                .enumerate()
                .flat_map(|(g, t)| t.missing[p].iter().map(move |&i| (g, i)))
                .collect();
            for chunk in rows.chunks(self.exp.batch_size.max(1)) {
                if self.interrupted() {
                    return Ok(false);
                }
                let batch = chunk
                    .iter()
                    .map(|&(g, i)| {
                        let s = &self.settings[group[g].index];
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
                let t0 = Instant::now();
                let out = self
                    .generator
                    .sample(prompt, batch, self.exp.max_new_tokens, |_, _| {
                        self.bar.inc(1)
                    })
                    .map_err(|error| {
                        // The error names a row of the batch: the setting is that row's.
                        let setting_of =
                            |row: usize| group[chunk.get(row).map_or(0, |&(g, _)| g)].index;
                        self.decode_error(setting_of, p, error)
                    })?;
                let wall_s = t0.elapsed().as_secs_f64();
                let mut made: Vec<Vec<Sample>> = vec![Vec::new(); group.len()];
                for (&(g, i), c) in chunk.iter().zip(out) {
                    made[g].push(Sample {
                        prompt_index: p,
                        sample_index: i,
                        text: continuation_text(self.tokenizer, &c.tokens, eos),
                        token_ids: c.tokens,
                        logprobs: c.logprobs,
                        ended_with_eos: c.ended_with_eos,
                    });
                }
                let mut members: Vec<usize> = chunk.iter().map(|&(g, _)| g).collect();
                members.dedup();
                let of: Vec<usize> = group
                    .iter()
                    .map(|t| self.settings[t.index].samples)
                    .collect();
                save_shares(group, &members, made, &of, wall_s, p, progress)?;
            }
        }
        Ok(true)
    }

    /// The beam settings' hypotheses for every prompt some of them miss, their beams sharing
    /// batches; `false` when interrupted.
    fn beams(&self, group: &mut [Todo], progress: &mut Progress) -> Result<bool, RunError> {
        let eos = self.generator.eos();
        for (p, prompt) in self.prepared.iter().enumerate() {
            let members: Vec<usize> = (0..group.len())
                .filter(|&g| !group[g].missing[p].is_empty())
                .collect();
            if members.is_empty() {
                continue;
            }
            if self.interrupted() {
                return Ok(false);
            }
            let params: Vec<BeamParams> = members
                .iter()
                .map(|&g| {
                    let s = &self.settings[group[g].index];
                    BeamParams {
                        num_beams: s.num_beams,
                        length_penalty: s.length_penalty.unwrap_or(1.0),
                        early_stopping: s.early_stopping.unwrap_or_default(),
                        num_return_sequences: s.samples,
                    }
                })
                .collect();
            let t0 = Instant::now();
            let found = self
                .generator
                .beam_searches(prompt, &params, self.exp.max_new_tokens)
                .map_err(|error| {
                    // The error names a search of `params`: the setting is that member's.
                    let setting_of =
                        |search: usize| group[members.get(search).map_or(0, |&g| g)].index;
                    self.decode_error(setting_of, p, error)
                })?;
            let wall_s = t0.elapsed().as_secs_f64();
            let mut made: Vec<Vec<Sample>> = vec![Vec::new(); group.len()];
            for (&g, hyps) in members.iter().zip(found) {
                let s = &self.settings[group[g].index];
                self.bar.inc((self.exp.max_new_tokens * s.samples) as u64);
                for (i, h) in hyps.into_iter().enumerate() {
                    made[g].push(Sample {
                        prompt_index: p,
                        sample_index: i,
                        text: continuation_text(self.tokenizer, &h.tokens, eos),
                        token_ids: h.tokens,
                        logprobs: h.logprobs,
                        ended_with_eos: h.ended_with_eos,
                    });
                }
            }
            let of: Vec<usize> = made.iter().map(Vec::len).collect();
            save_shares(group, &members, made, &of, wall_s, p, progress)?;
        }
        Ok(true)
    }

    /// The human reference texts, scored by the model, one prompt at a time; `false` when
    /// interrupted.
    fn human(&self, group: &mut [Todo], progress: &mut Progress) -> Result<bool, RunError> {
        debug_assert_eq!(group.len(), 1, "the human setting runs alone");
        let todo = &mut group[0];
        let index = todo.index;
        for (p, prompt) in self.prepared.iter().enumerate() {
            if todo.missing[p].is_empty() {
                continue;
            }
            if self.interrupted() {
                return Ok(false);
            }
            let Some(reference) = &self.exp.prompts[p].reference else {
                progress.save(todo, p, 0, 0.0, Vec::new())?;
                continue;
            };
            // The human text is cut to the generated length, so that length-sensitive
            // metrics (distinct-n, Self-BLEU, Zipf) compare like with like.
            let t0 = Instant::now();
            let mut tokens = self.tokenizer.encode(reference);
            tokens.truncate(self.exp.max_new_tokens);
            let logprobs = self
                .generator
                .score(&prompt.tokens, &tokens)
                .map_err(|error| self.decode_error(|_| index, p, error))?;
            self.bar.inc(1);
            let sample = Sample {
                prompt_index: p,
                sample_index: 0,
                text: self.tokenizer.decode(&tokens),
                token_ids: tokens,
                logprobs,
                ended_with_eos: false,
            };
            progress.save(todo, p, 1, t0.elapsed().as_secs_f64(), vec![sample])?;
        }
        Ok(true)
    }
}

/// Save what one batch made for prompt `p`: `made[g]` for each member `g` of the group that
/// took part, `of[g]` rows in all for the prompt, each with its share of the batch's time by
/// tokens.
fn save_shares(
    group: &mut [Todo],
    members: &[usize],
    mut made: Vec<Vec<Sample>>,
    of: &[usize],
    wall_s: f64,
    p: usize,
    progress: &mut Progress,
) -> Result<(), RunError> {
    let tokens = |s: &[Sample]| s.iter().map(|s| s.token_ids.len()).sum::<usize>();
    let total: usize = members.iter().map(|&g| tokens(&made[g])).sum();
    for &g in members {
        let samples = std::mem::take(&mut made[g]);
        let share = if total == 0 {
            wall_s / members.len() as f64
        } else {
            wall_s * tokens(&samples) as f64 / total as f64
        };
        progress.save(&mut group[g], p, of[g], share, samples)?;
    }
    Ok(())
}

/// The text of a continuation, without the end-of-text token that ended it.
fn continuation_text(tokenizer: &Tokenizer, tokens: &[u32], eos: u32) -> String {
    match tokens.last() {
        Some(&t) if t == eos => tokenizer.decode(&tokens[..tokens.len() - 1]),
        _ => tokenizer.decode(tokens),
    }
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

/// What one invocation of `sweep run` did, for `run.json`'s list of invocations.
pub struct Invocation {
    pub settings_run: usize,
    pub rows: usize,
    /// Whether the run started on a folder holding no run of its own (new, or emptied by
    /// --force): a `run.json` already there, say one kept as a reference, is not its history.
    pub fresh: bool,
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
    let mut samples_csv = SamplesWriter::create(&samples_path).map_err(io_at(&samples_path))?;
    let mut metrics = Vec::with_capacity(settings.len());
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
        let timing = Some(SettingTiming::of(&expected.id, &data));
        beams.push((setting.strategy == Strategy::Beam).then(|| Beams {
            tokens: samples.iter().map(|s| s.token_ids.clone()).collect(),
            any_ended: samples.iter().any(|s| s.ended_with_eos),
        }));
        samples_csv
            .write(setting, &prompts, &samples)
            .map_err(io_at(&samples_path))?;
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

    let (baseline, mut notes) = pick_baseline(exp, settings, &beam_scores);
    notes.extend(same_beams_warnings(settings, &beams));
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
    tables::write_summary(&summary_path, &rows, baseline).map_err(io_at(&summary_path))?;
    // Plots are a convenience: failing to draw them must not fail the run or lose the CSVs.
    let plot_rows: Vec<crate::report::plot::PlotRow> = settings
        .iter()
        .zip(&metrics)
        .map(|(s, m)| crate::report::plot::PlotRow::new(s, m))
        .collect();
    if let Err(e) = crate::report::plot::write_plots(dir, &plot_rows) {
        eprintln!("warning: plots not written: {e}");
    }

    let run_path = dir.join("run.json");
    let stamp = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let this = serde_json::json!({
        "started": stamp(report.started),
        "finished": stamp(report.finished),
        "wall_s": report.wall_s,
        "settings_run": invocation.as_ref().map(|i| i.settings_run),
        "rows": invocation.as_ref().map(|i| i.rows),
    });
    let times = RunTimes {
        started: stamp(report.started),
        finished: stamp(report.finished),
        wall_s: report.wall_s,
    };
    let (times, invocations) = match &invocation {
        Some(inv) => {
            let previous = if inv.fresh {
                None
            } else {
                previous_run(&run_path)
            };
            RunTimes::after(previous, times, inv.settings_run > 0, this)
        }
        None => (times, vec![this]),
    };
    // `run.json` promises every default filled in: the model actually loaded and the
    // baseline actually used, where the experiment left them out or named a width.
    let mut experiment = serde_json::to_value(exp).expect("json");
    experiment["model"] = serde_json::json!(report.model_path);
    experiment["baseline"] = serde_json::json!(baseline.map(|i| settings[i].id()));
    let record = serde_json::json!({
        "sweep_version": env!("CARGO_PKG_VERSION"),
        "git_commit": option_env!("SWEEP_GIT_COMMIT"),
        "experiment": experiment,
        "model": {
            "path": report.model_path,
            "sha256": report.model_sha256,
        },
        "backend": report.backend,
        "started": times.started,
        "finished": times.finished,
        "wall_s": times.wall_s,
        "invocations": invocations,
        "baseline": baseline.map(|i| settings[i].id()),
        "settings": settings.iter().zip(&timings).map(|(s, t)| {
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
    let text = serde_json::to_string_pretty(&record).expect("json") + "\n";
    crate::util::files::write_atomic(&run_path, text.as_bytes()).map_err(io_at(&run_path))?;
    Ok(notes)
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

/// The mean log-probability per token of a beam setting's best hypotheses, as a phrase.
fn score_text(score: f64) -> String {
    format!("{score:.4}")
}

/// The beam setting the `*_vs_beam` columns subtract, and a line saying which and why when
/// there was a choice. Among several candidates (every beam setting, or those of the width
/// `baseline` names), the one whose best hypotheses have the highest mean log-probability
/// per token wins: the same score beam search maximises, without the length penalty that
/// differs between the candidates.
fn pick_baseline(
    exp: &Experiment,
    settings: &[Setting],
    scores: &[f64],
) -> (Option<usize>, Vec<String>) {
    use crate::spec::experiment::Baseline;
    let beam = |s: &Setting| s.strategy == Strategy::Beam;
    if let Some(Baseline::Setting(id)) = &exp.baseline {
        let found = settings.iter().position(|s| beam(s) && s.id() == *id);
        return (found, Vec::new());
    }
    let candidates: Vec<usize> = (0..settings.len())
        .filter(|&i| beam(&settings[i]))
        .filter(|&i| match exp.baseline {
            Some(Baseline::Width(n)) => settings[i].num_beams == n,
            _ => true,
        })
        .collect();
    let best = candidates
        .iter()
        .copied()
        // On a tie (identical beams, say) the first in `[beam]` order, not the last.
        .max_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)));
    let mut notes = Vec::new();
    if let Some(best) = best
        && candidates.len() > 1
    {
        let among = match exp.baseline {
            Some(Baseline::Width(n)) => format!("the beam settings with num_beams = {n}"),
            _ => "the beam settings".to_owned(),
        };
        let others: Vec<String> = candidates
            .iter()
            .filter(|&&i| i != best)
            .map(|&i| format!("{} {}", settings[i].id(), score_text(scores[i])))
            .collect();
        let tied = candidates
            .iter()
            .filter(|&&i| i != best && scores[i] == scores[best])
            .count();
        let tie = if tied > 0 {
            ", tied, so the first in [beam] order"
        } else {
            ""
        };
        notes.push(format!(
            "baseline: {} ({}), the highest mean log-probability per token of the best \
             hypotheses among {among}{tie} (others: {}); name a setting id in baseline to \
             choose",
            settings[best].id(),
            score_text(scores[best]),
            others.join(", ")
        ));
    }
    (best, notes)
}

/// A beam setting's hypotheses (token ids, in saved order), and whether any of them ended
/// at end-of-text.
struct Beams {
    tokens: Vec<Vec<u32>>,
    any_ended: bool,
}

/// A warning for each beam width whose length penalties all gave the same hypotheses, so
/// that the rows differ in name only. As in transformers, the penalty only ranks finished
/// hypotheses by length; when none ends before `max_new_tokens`, all have one length and
/// the penalty cannot change anything.
fn same_beams_warnings(settings: &[Setting], beams: &[Option<Beams>]) -> Vec<String> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, s) in settings.iter().enumerate() {
        if beams[i].is_none() {
            continue;
        }
        let same_search = |j: &usize| {
            let o = &settings[*j];
            o.num_beams == s.num_beams
                && o.early_stopping == s.early_stopping
                && o.samples == s.samples
        };
        match groups.iter_mut().find(|g| same_search(&g[0])) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
        .into_iter()
        .filter(|g| g.len() > 1)
        .filter_map(|g| {
            let first = beams[g[0]].as_ref()?;
            let all_same = g
                .iter()
                .all(|&i| beams[i].as_ref().is_some_and(|b| b.tokens == first.tokens));
            if !all_same {
                return None;
            }
            let penalties: Vec<String> = g
                .iter()
                .map(|&i| tables::number(settings[i].length_penalty.unwrap_or(1.0), 6))
                .collect();
            let why = if first.any_ended {
                "the penalty reordered no finished hypotheses"
            } else {
                "no hypothesis ended before max_new_tokens, so all have one length and the \
                 penalty, which only ranks finished hypotheses by length, cannot change them \
                 (as in transformers)"
            };
            Some(format!(
                "warning: length_penalty {} give the same beams for num_beams = {}: {why}",
                penalties.join(", "),
                settings[g[0]].num_beams
            ))
        })
        .collect()
}
