//! Generating what a run still lacks: the settings' missing rows grouped into batches that
//! fill the device, each batch generated and its rows saved as it ends. Apart from `runner`,
//! which decides what is missing and writes the reports, so each reads on its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indicatif::ProgressBar;

use crate::engine::beam::{BeamParams, BeamSampling};
use crate::engine::contrastive::ContrastiveParams;
use crate::engine::generate::{GenerateError, Generator, PreparedPrompt, SampleRow};
use crate::engine::sampling::{SamplingParams, sample_rng};
use crate::engine::tokenizer::Tokenizer;
use crate::report::record::SettingTiming;
use crate::report::summary::Sample;
use crate::run::runner::RunError;
use crate::run::store::{SettingData, SettingWriter};
use crate::spec::experiment::Experiment;
use crate::spec::grid::{Setting, Strategy};

/// One generated text: its tokens, their log-probabilities, and whether end-of-text ended it.
type Text = (Vec<u32>, Vec<f32>, bool);

/// What one setting still needs, per prompt: the sample indices to generate (sampling), or
/// whether the prompt is to run at all (beam, human: their rows come from one call).
pub(super) struct Todo {
    pub(super) index: usize,
    pub(super) missing: Vec<Vec<usize>>,
    pub(super) writer: SettingWriter,
    pub(super) saved: SettingData,
}

impl Todo {
    pub(super) fn rows_left(&self) -> usize {
        self.missing.iter().map(Vec::len).sum()
    }
}

/// The settings' missing rows as batches, filled across settings: consecutive sampling
/// settings whose rows per prompt fit in one batch run together (each row keeps its own settings and random stream, so
/// the samples are those of running them apart), and so do consecutive beam settings whose
/// beams fit. Every batch's rows are saved as it ends, whatever the grouping.
pub(super) fn groups(todos: Vec<Todo>, settings: &[Setting], batch_size: usize) -> Vec<Vec<Todo>> {
    let kind = |s: &Setting| match s.strategy {
        Strategy::Sample | Strategy::Greedy => Some(Strategy::Sample),
        Strategy::Beam => Some(Strategy::Beam),
        Strategy::Contrastive => Some(Strategy::Contrastive),
        Strategy::Human => None,
    };
    let rows = |s: &Setting| match s.strategy {
        Strategy::Beam | Strategy::Contrastive => s.rows(),
        _ => s.samples,
    };
    let mut groups: Vec<Vec<Todo>> = Vec::new();
    let mut group_rows = 0;
    for todo in todos {
        let setting = &settings[todo.index];
        let open = groups.last().is_some_and(|g| {
            kind(setting).is_some()
                && kind(&settings[g[0].index]) == kind(setting)
                && group_rows + rows(setting) <= batch_size
        });
        if open {
            group_rows += rows(setting);
            groups.last_mut().expect("open group").push(todo);
        } else {
            group_rows = rows(setting);
            groups.push(vec![todo]);
        }
    }
    groups
}

/// A batch's settings in a few words for its bar: how many, and the range of each knob.
pub(super) fn describe(members: &[&Setting]) -> String {
    let knob = |value: fn(&Setting) -> Option<f64>| members.iter().map(|s| value(s)).collect();
    match members[0].strategy {
        Strategy::Human => "human references".to_owned(),
        Strategy::Beam => crate::util::progress::batch_message(
            "setting",
            members.len(),
            &[
                ("beams", knob(|s| Some(s.num_beams as f64))),
                ("lp", knob(|s| s.length_penalty)),
            ],
        ),
        Strategy::Contrastive => crate::util::progress::batch_message(
            "setting",
            members.len(),
            &[
                ("alpha", knob(|s| s.penalty_alpha)),
                ("k", knob(|s| Some(s.top_k as f64))),
            ],
        ),
        Strategy::Sample | Strategy::Greedy => crate::util::progress::batch_message(
            "setting",
            members.len(),
            &[
                ("t", knob(|s| Some(s.temperature))),
                ("k", knob(|s| Some(s.top_k as f64))),
                ("p", knob(|s| Some(s.top_p))),
            ],
        ),
    }
}

impl Strategy {
    /// Whether a prompt's rows are generated one by one (each with its own random stream),
    /// so that a resume can generate some of them; beam hypotheses and the human row come
    /// from one call per prompt.
    pub(super) fn samples_rows_apart(self) -> bool {
        matches!(self, Strategy::Sample | Strategy::Greedy)
    }
}

/// The run's counts and its settings bar.
pub(super) struct Progress<'a> {
    pub(super) settings: &'a [Setting],
    pub(super) done: usize,
    pub(super) ran: usize,
    pub(super) rows: usize,
    pub(super) quiet: bool,
    pub(super) bar: ProgressBar,
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
            let timing = SettingTiming::new(&id, saved.tokens, saved.wall_s);
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
pub(super) struct Job<'a> {
    pub(super) exp: &'a Experiment,
    pub(super) generator: &'a Generator,
    pub(super) tokenizer: &'a Tokenizer,
    pub(super) prepared: &'a [PreparedPrompt],
    pub(super) settings: &'a [Setting],
    pub(super) bar: &'a ProgressBar,
    pub(super) interrupt: &'a AtomicBool,
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
    pub(super) fn sampling(
        &self,
        group: &mut [Todo],
        progress: &mut Progress,
    ) -> Result<bool, RunError> {
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
                        SampleRow {
                            params: SamplingParams {
                                temperature: s.temperature,
                                top_k: s.top_k,
                                top_p: s.top_p,
                                processors: s.processors,
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
    pub(super) fn beams(
        &self,
        group: &mut [Todo],
        progress: &mut Progress,
    ) -> Result<bool, RunError> {
        self.one_call_per_prompt(group, progress, |p, prompt, settings| {
            let params: Vec<BeamParams> = settings
                .iter()
                .map(|s| BeamParams {
                    length_penalty: s.length_penalty.unwrap_or(1.0),
                    early_stopping: s.early_stopping.unwrap_or_default(),
                    num_return_sequences: s.samples,
                    processors: s.processors,
                    num_beam_groups: s.num_beam_groups,
                    diversity_penalty: s.diversity_penalty,
                    sampling: s.do_sample.then(|| BeamSampling {
                        temperature: s.temperature,
                        top_k: s.top_k,
                        top_p: s.top_p,
                        seed: s.seed.unwrap_or(0),
                    }),
                    ..BeamParams::new(s.num_beams)
                })
                .collect();
            let found =
                self.generator
                    .beam_searches(prompt, p as u32, &params, self.exp.max_new_tokens)?;
            Ok(found
                .into_iter()
                .map(|hyps| {
                    hyps.into_iter()
                        .map(|h| (h.tokens, h.logprobs, h.ended_with_eos))
                        .collect()
                })
                .collect())
        })
    }

    /// Contrastive searches, one continuation per prompt each, sharing each forward batch;
    /// `false` when interrupted.
    pub(super) fn contrastive(
        &self,
        group: &mut [Todo],
        progress: &mut Progress,
    ) -> Result<bool, RunError> {
        self.one_call_per_prompt(group, progress, |_, prompt, settings| {
            let params: Vec<ContrastiveParams> = settings
                .iter()
                .map(|s| ContrastiveParams {
                    penalty_alpha: s.penalty_alpha.unwrap_or(0.0),
                    top_k: s.top_k,
                })
                .collect();
            let found =
                self.generator
                    .contrastive_searches(prompt, &params, self.exp.max_new_tokens)?;
            Ok(found
                .into_iter()
                .map(|c| vec![(c.tokens, c.logprobs, c.ended_with_eos)])
                .collect())
        })
    }

    /// The settings whose texts of a prompt come from one call for all of them (beam and
    /// contrastive searches, which share its forward batches), prompt by prompt: `search`
    /// gets the prompt's index, the prompt and the settings that miss it, and returns each
    /// one's texts, best first, as (tokens, log-probabilities, ended with end-of-text). An
    /// error names a setting by its place in that list. `false` when interrupted, after
    /// saving the prompts done.
    fn one_call_per_prompt(
        &self,
        group: &mut [Todo],
        progress: &mut Progress,
        search: impl Fn(usize, &PreparedPrompt, &[&Setting]) -> Result<Vec<Vec<Text>>, GenerateError>,
    ) -> Result<bool, RunError> {
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
            let settings: Vec<&Setting> = members
                .iter()
                .map(|&g| &self.settings[group[g].index])
                .collect();
            let t0 = Instant::now();
            let found = search(p, prompt, &settings).map_err(|error| {
                // The error names a member: the setting is that member's.
                let setting_of = |search: usize| group[members.get(search).map_or(0, |&g| g)].index;
                self.decode_error(setting_of, p, error)
            })?;
            let wall_s = t0.elapsed().as_secs_f64();
            let mut made: Vec<Vec<Sample>> = vec![Vec::new(); group.len()];
            for (&g, texts) in members.iter().zip(found) {
                let s = &self.settings[group[g].index];
                self.bar.inc((self.exp.max_new_tokens * s.samples) as u64);
                for (i, (tokens, logprobs, ended_with_eos)) in texts.into_iter().enumerate() {
                    made[g].push(Sample {
                        prompt_index: p,
                        sample_index: i,
                        text: continuation_text(self.tokenizer, &tokens, eos),
                        token_ids: tokens,
                        logprobs,
                        ended_with_eos,
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
    pub(super) fn human(
        &self,
        group: &mut [Todo],
        progress: &mut Progress,
    ) -> Result<bool, RunError> {
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
