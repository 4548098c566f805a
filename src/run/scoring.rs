//! Scoring a results folder's saved texts under a second model: the `[score]` model of a run,
//! or the one `sweep score` names.
//!
//! ```text
//! RESULTS/scores/<first 16 hex digits of the scorer's SHA-256>/<setting id>.json
//! ```
//!
//! A setting's file is written whole, atomically, once all its texts are scored, and names
//! the scorer and a digest of the texts it scored: a kill loses at most the setting in
//! progress, a rerun skips what is scored, and texts that changed are scored again. Scores
//! never touch `settings/`, so rescoring under another model regenerates nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::generate::{GenerateError, Generator, PreparedPrompt};
use crate::engine::tokenizer::Tokenizer;
use crate::report::record::ScorerRecord;
use crate::report::summary::Sample;
use crate::run::runner::RunError;
use crate::run::store::{self, Fingerprint, SCORES_DIR, SettingData, StoreError};
use crate::spec::experiment::Experiment;
use crate::spec::grid::Setting;
use crate::util::exit::{Exit, ExitStatus};
use crate::util::files::{hex, io_at, write_atomic};

/// GPT-2 BPE's vocabulary: every text is encoded with it, so a scorer must know its tokens.
const GPT2_VOCAB: usize = 50_257;

/// A scorer that cannot score this experiment's texts.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error(
        "{key} = {path} has a vocabulary of {vocab_size} tokens; sweep's texts are GPT-2 BPE \
         ({GPT2_VOCAB} tokens): give a checkpoint with GPT-2's vocabulary"
    )]
    Vocabulary {
        key: &'static str,
        path: PathBuf,
        vocab_size: usize,
    },
    #[error(
        "{key} = {path} has a context of {n_positions} positions, too few for texts of \
         max_new_tokens = {max_new_tokens} after at least one prompt token: give a scorer with \
         a longer context, or lower max_new_tokens"
    )]
    Context {
        key: &'static str,
        path: PathBuf,
        n_positions: usize,
        max_new_tokens: usize,
    },
}

impl ExitStatus for ScoreError {
    fn exit(&self) -> Exit {
        Exit::BadInput
    }
}

/// The model texts are scored under, and how the user named it.
pub struct Scorer {
    pub generator: Generator,
    pub path: PathBuf,
    pub sha256: String,
    /// The key or flag that named it, for messages: `[score] model`, `--model`, or `model`
    /// when the generator itself gives MAUVE's features.
    pub key: &'static str,
    /// Whether its perplexities are written as the scorer columns; not when the generator
    /// scores only for MAUVE's features (its perplexities are the run's own).
    pub columns: bool,
}

impl Scorer {
    /// Refuse a scorer that cannot read GPT-2 tokens or fit the experiment's texts, before
    /// anything is scored.
    pub fn check(&self, exp: &Experiment) -> Result<(), ScoreError> {
        check_scorer(&self.generator.model().config, self.key, &self.path, exp)
    }

    /// The folder of this scorer's scores in results folder `dir`.
    pub fn dir(&self, dir: &Path) -> PathBuf {
        scorer_dir(dir, &self.sha256)
    }
}

/// Whether a model of `config`, named by `key` = `path`, can score `exp`'s texts: it must know
/// GPT-2's tokens and fit `max_new_tokens` after one prompt token. `validate` asks it of a
/// checkpoint's config before any weights are read.
pub fn check_scorer(
    config: &crate::engine::model::Gpt2Config,
    key: &'static str,
    path: &Path,
    exp: &Experiment,
) -> Result<(), ScoreError> {
    if config.vocab_size < GPT2_VOCAB {
        return Err(ScoreError::Vocabulary {
            key,
            path: path.to_path_buf(),
            vocab_size: config.vocab_size,
        });
    }
    if exp.max_new_tokens >= config.n_positions {
        return Err(ScoreError::Context {
            key,
            path: path.to_path_buf(),
            n_positions: config.n_positions,
            max_new_tokens: exp.max_new_tokens,
        });
    }
    Ok(())
}

pub fn scorer_dir(dir: &Path, sha256: &str) -> PathBuf {
    dir.join(SCORES_DIR).join(&sha256[..16.min(sha256.len())])
}

/// One setting's scores, as saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedScores {
    scorer_sha256: String,
    setting: String,
    /// Digest of the scored texts' prompts, indices and token ids, in order.
    texts_sha256: String,
    /// The scorer's log-probabilities of each text's tokens, in the order of
    /// [`SettingData::samples`].
    logprobs: Vec<Vec<f32>>,
    /// Each text's final hidden state at its last token: MAUVE's features.
    features: Vec<Vec<f32>>,
}

/// One setting's texts as the scorer read them, in the order of [`SettingData::samples`].
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub logprobs: Vec<Vec<f32>>,
    pub features: Vec<Vec<f32>>,
}

/// Digest of what a setting's scores depend on.
fn texts_digest(samples: &[Sample]) -> String {
    let mut h = Sha256::new();
    for s in samples {
        h.update((s.prompt_index as u64).to_le_bytes());
        h.update((s.sample_index as u64).to_le_bytes());
        h.update((s.token_ids.len() as u64).to_le_bytes());
        for t in &s.token_ids {
            h.update(t.to_le_bytes());
        }
    }
    hex(&h.finalize())
}

/// The scorer's log-probabilities of `samples` (one setting's), if `dir` holds them for
/// exactly these texts.
pub fn read_scores(
    scores_dir: &Path,
    sha256: &str,
    setting: &Setting,
    samples: &[Sample],
) -> Option<Scores> {
    let path = scores_dir.join(format!("{}.json", setting.id()));
    let text = std::fs::read_to_string(path).ok()?;
    let saved: SavedScores = serde_json::from_str(&text).ok()?;
    (saved.scorer_sha256 == sha256
        && saved.setting == setting.id()
        && saved.texts_sha256 == texts_digest(samples)
        && saved.logprobs.len() == samples.len()
        && saved.features.len() == samples.len())
    .then_some(Scores {
        logprobs: saved.logprobs,
        features: saved.features,
    })
}

/// The scorer's prompts: each cropped from the left so that `max_new_tokens` fit its context.
fn prepare(
    exp: &Experiment,
    scorer: &Scorer,
) -> Result<(Vec<PreparedPrompt>, ScorerRecord), GenerateError> {
    let tokenizer = Tokenizer::gpt2();
    let prepared: Vec<PreparedPrompt> = exp
        .prompts
        .iter()
        .map(|p| {
            scorer
                .generator
                .prepare(&tokenizer.encode(&p.text), exp.max_new_tokens)
        })
        .collect::<Result<_, _>>()?;
    let record = ScorerRecord {
        path: scorer.path.clone(),
        sha256: scorer.sha256.clone(),
        n_positions: scorer.generator.model().config.n_positions,
        cropped_prompts: prepared.iter().filter(|p| p.cropped > 0).count(),
        cropped_tokens: prepared.iter().map(|p| p.cropped).sum(),
        columns: scorer.columns,
    };
    Ok((prepared, record))
}

/// Where the settings' texts are and what they belong to.
pub struct Texts<'a> {
    pub exp: &'a Experiment,
    pub settings: &'a [Setting],
    /// The folder holding each setting's saved rows, in `settings` order.
    pub sources: &'a [PathBuf],
    pub fingerprint: &'a Fingerprint,
}

/// Score every finished setting's texts that `dir` holds no scores for yet under `scorer`.
/// Returns the scorer's record for `run.json`.
pub fn score_settings(
    texts: &Texts<'_>,
    dir: &Path,
    scorer: &Scorer,
    quiet: bool,
    interrupt: &AtomicBool,
) -> Result<ScorerRecord, RunError> {
    let exp = texts.exp;
    scorer.check(exp).map_err(RunError::Score)?;
    let (prepared, record) = prepare(exp, scorer)?;
    let out = scorer.dir(dir);
    std::fs::create_dir_all(&out).map_err(io_at(&out))?;
    let bars = crate::util::progress::Bars::new(quiet);
    let overall = bars.overall(texts.settings.len() as u64);
    if record.cropped_prompts > 0 {
        crate::util::progress::println(
            &overall,
            quiet,
            format!(
                "warning: {} prompts cropped by {} tokens in all from the left to fit the \
                 scorer's context of {} positions",
                record.cropped_prompts, record.cropped_tokens, record.n_positions
            ),
        );
    }
    // The settings still to score, in groups of about GROUP_TEXTS texts. A group is scored one
    // prompt at a time, every setting's texts of that prompt in one batch (a prompt with one
    // text per setting would otherwise run alone, and its prompt once per setting), and each
    // of its settings is saved when the group ends: a kill loses at most one group.
    const GROUP_TEXTS: usize = 4096;
    let mut groups: Vec<Vec<(&Setting, Vec<Sample>)>> = vec![Vec::new()];
    let mut in_group = 0;
    for (setting, source) in texts.settings.iter().zip(texts.sources) {
        let samples = finished_samples(texts.fingerprint, setting, source)?;
        if read_scores(&out, &scorer.sha256, setting, &samples).is_some() {
            overall.inc(1);
            continue;
        }
        if in_group > 0 && in_group + samples.len() > GROUP_TEXTS {
            groups.push(Vec::new());
            in_group = 0;
        }
        in_group += samples.len();
        groups.last_mut().expect("a group").push((setting, samples));
    }
    for group in groups.into_iter().filter(|g| !g.is_empty()) {
        if interrupt.load(Ordering::Relaxed) {
            return Err(RunError::ScoringInterrupted {
                dir: dir.to_path_buf(),
            });
        }
        let ids: Vec<String> = group.iter().map(|(s, _)| s.id()).collect();
        let total: usize = group.iter().map(|(_, samples)| samples.len()).sum();
        let bar = bars.batch(
            total as u64,
            "texts",
            &format!("scoring {}", ids.join(", ")),
        );
        let mut scores: Vec<Scores> = group
            .iter()
            .map(|(_, samples)| Scores {
                logprobs: vec![Vec::new(); samples.len()],
                features: vec![Vec::new(); samples.len()],
            })
            .collect();
        for (p, prompt) in prepared.iter().enumerate() {
            let rows: Vec<(usize, usize)> = group
                .iter()
                .enumerate()
                .flat_map(|(g, (_, samples))| {
                    (0..samples.len())
                        .filter(move |&i| samples[i].prompt_index == p)
                        .map(move |i| (g, i))
                })
                .collect();
            if rows.is_empty() {
                continue;
            }
            let views: Vec<&[u32]> = rows
                .iter()
                .map(|&(g, i)| group[g].1[i].token_ids.as_slice())
                .collect();
            let scored = scorer
                .generator
                .score_texts(prompt, &views, exp.max_new_tokens, exp.batch_size)
                .map_err(|error| RunError::Decode {
                    setting: format!("scoring {}", ids[rows[error_row(&error)].0]),
                    prompt: p,
                    error,
                })?;
            for (&(g, i), s) in rows.iter().zip(scored) {
                scores[g].logprobs[i] = s.logprobs;
                scores[g].features[i] = s.feature;
            }
            bar.inc(rows.len() as u64);
        }
        bar.finish_and_clear();
        for ((setting, samples), scores) in group.iter().zip(scores) {
            let saved = SavedScores {
                scorer_sha256: scorer.sha256.clone(),
                setting: setting.id(),
                texts_sha256: texts_digest(samples),
                logprobs: scores.logprobs,
                features: scores.features,
            };
            let path = out.join(format!("{}.json", setting.id()));
            let json = serde_json::to_string(&saved).expect("json") + "\n";
            write_atomic(&path, json.as_bytes()).map_err(io_at(&path))?;
            overall.inc(1);
        }
    }
    overall.finish_and_clear();
    Ok(record)
}

/// The text of a batch that a scoring error names.
fn error_row(error: &GenerateError) -> usize {
    match error {
        GenerateError::NonFinite { row, .. } => *row,
        _ => 0,
    }
}

/// A finished setting's saved texts.
pub fn finished_samples(
    fingerprint: &Fingerprint,
    setting: &Setting,
    source: &Path,
) -> Result<Vec<Sample>, RunError> {
    let expected = fingerprint.expected(setting);
    let data = store::read_setting(source, &expected)?
        .filter(SettingData::is_finished)
        .ok_or_else(|| StoreError::Setting {
            path: store::setting_path(source, &expected.id),
            id: expected.id.clone(),
            reason: "the setting is not finished".into(),
        })?;
    Ok(data.samples())
}

/// A finished results folder, as `sweep score` finds it.
pub struct Folder {
    pub dir: PathBuf,
    pub exp: Experiment,
    pub settings: Vec<Setting>,
    /// Each setting's saved rows: the folder's `settings/`, or a shard's for a merged folder.
    pub sources: Vec<PathBuf>,
    pub fingerprint: Fingerprint,
    model_path: PathBuf,
    model_sha256: String,
    backend: String,
}

/// Why a folder cannot be rescored.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error(
        "{dir} holds no finished run ({what}); sweep score rescores a folder that `sweep run` \
         (or `sweep merge`) finished: run the experiment first"
    )]
    NotARun { dir: PathBuf, what: String },
    #[error(
        "{dir}: setting {id} has no saved rows in settings/ or any shard; run the experiment again to finish it"
    )]
    Missing { dir: PathBuf, id: String },
}

impl ExitStatus for FolderError {
    fn exit(&self) -> Exit {
        Exit::BadInput
    }
}

impl Folder {
    /// Read what a finished run (or merge) left in `dir`.
    pub fn open(dir: &Path) -> Result<Self, FolderError> {
        let not_a_run = |what: &str| FolderError::NotARun {
            dir: dir.to_path_buf(),
            what: what.to_owned(),
        };
        let fingerprint = store::read_fingerprint(dir)
            .ok()
            .flatten()
            .ok_or_else(|| not_a_run("no readable experiment.json"))?;
        let run_path = dir.join("run.json");
        let run: serde_json::Value = std::fs::read_to_string(&run_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| not_a_run("no readable run.json"))?;
        let exp = serde_json::from_value::<Experiment>(run["experiment"].clone())
            .map_err(|e| not_a_run(&format!("run.json's experiment: {e}")))?;
        let text = |key: &str, inner: Option<&str>| {
            let v = match inner {
                Some(k) => &run[key][k],
                None => &run[key],
            };
            v.as_str().map(str::to_owned)
        };
        let (Some(model_path), Some(model_sha256), Some(backend)) = (
            text("model", Some("path")),
            text("model", Some("sha256")),
            text("backend", None),
        ) else {
            return Err(not_a_run("run.json names no model or backend"));
        };
        let (settings, _) = crate::run::runner::settings(&exp);
        let shards: Vec<PathBuf> = std::fs::read_dir(dir.join(store::SHARDS_DIR))
            .map(|entries| {
                let mut dirs: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path().join(store::SETTINGS_DIR))
                    .collect();
                dirs.sort();
                dirs
            })
            .unwrap_or_default();
        let mut sources = Vec::with_capacity(settings.len());
        for setting in &settings {
            let id = setting.id();
            let own = dir.join(store::SETTINGS_DIR);
            let found = std::iter::once(&own)
                .chain(&shards)
                .find(|d| store::setting_path(d, &id).is_file())
                .ok_or_else(|| FolderError::Missing {
                    dir: dir.to_path_buf(),
                    id: id.clone(),
                })?;
            sources.push(found.clone());
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            exp,
            settings,
            sources,
            fingerprint,
            model_path: PathBuf::from(model_path),
            model_sha256,
            backend,
        })
    }

    /// The generator's checkpoint, as `run.json` records it.
    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    /// Score every text under `scorer` (resuming what an earlier call scored), then rewrite
    /// the reports with its columns and record it in `run.json`. Returns the lines to tell
    /// the user. Holds the folder's lock throughout.
    pub fn score(
        &self,
        scorer: &Scorer,
        quiet: bool,
        interrupt: &AtomicBool,
    ) -> Result<Vec<String>, RunError> {
        scorer.check(&self.exp).map_err(RunError::Score)?;
        let _lock = store::Lock::acquire(&self.dir)?;
        let started = std::time::SystemTime::now();
        let wall = std::time::Instant::now();
        let record = score_settings(
            &Texts {
                exp: &self.exp,
                settings: &self.settings,
                sources: &self.sources,
                fingerprint: &self.fingerprint,
            },
            &self.dir,
            scorer,
            quiet,
            interrupt,
        )?;
        crate::run::runner::write_run_reports(
            &crate::run::runner::Report {
                exp: &self.exp,
                settings: &self.settings,
                sources: &self.sources,
                dir: &self.dir,
                model_path: &self.model_path,
                model_sha256: &self.model_sha256,
                backend: &self.backend,
                started,
                finished: std::time::SystemTime::now(),
                wall_s: wall.elapsed().as_secs_f64(),
                scorer: Some(&record),
            },
            Some(crate::report::record::Invocation {
                settings_run: 0,
                rows: 0,
                fresh: false,
            }),
        )
    }
}
