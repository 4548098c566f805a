//! `sweep train`: train a small GPT-2 on a text corpus with burn's autodiff, writing
//! checkpoints in the Hugging Face layout the loader reads, so a trained model is a drop-in
//! everywhere.
//!
//! nanoGPT's recipe: AdamW, linear warm-up then cosine decay of the learning rate, gradient
//! clipping, random windows of the training tokens, periodic validation on fixed windows.
//! Resuming continues from the last checkpoint with the optimizer state; batch windows are
//! drawn from a stream keyed by (seed, step), so a resumed run sees the batches an
//! uninterrupted one would have. The learning-rate schedule has its own length, fixed when a
//! run starts: a run given more `steps` later trains on past the schedule's end at the floor
//! learning rate, as nanoGPT does past `lr_decay_iters`, and matches a run planned that way.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::engine::checkpoint::{self, SaveDtype};
use crate::engine::model::{Gpt2, Gpt2Config};
use crate::util::exit::{Exit, ExitStatus};

/// Everything that decides a training run; stored beside its checkpoints so a resume can
/// refuse a changed recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    /// Context length (`n_positions`) of the model and of training windows.
    pub context: usize,
    /// The step training stops at. Not part of the recipe: a finished run may be given more.
    pub steps: usize,
    /// Length of the learning-rate schedule (cosine decay to `min_learning_rate` at this
    /// step, the floor after it). `None`: the `steps` of the run's first sitting, or on a
    /// resume the saved run's schedule.
    #[serde(default)]
    pub decay_steps: Option<usize>,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub min_learning_rate: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    /// Per-parameter gradient norm cap.
    pub grad_clip: f64,
    pub eval_interval: usize,
    pub eval_windows: usize,
    pub seed: u64,
}

/// Progress and results of a run, rewritten at every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub step: usize,
    pub config: TrainConfig,
    pub train_file: PathBuf,
    pub valid_file: PathBuf,
    pub train_tokens: usize,
    pub valid_tokens: usize,
    pub elapsed_s: f64,
    /// (step, train loss, validation loss) at each evaluation.
    pub history: Vec<(usize, f64, f64)>,
    /// The ids the optimizer state in `optimizer.bin` is keyed by, one per parameter in the
    /// model's visiting order: a model read back from its checkpoint gets fresh ids, and
    /// without these its Adam moments would silently start from zero.
    #[serde(default)]
    pub param_ids: Vec<u64>,
    /// The running mean of the training loss that `history` reports, carried across sittings
    /// so that a resumed run reports what an uninterrupted one would.
    #[serde(default)]
    pub train_loss_ema: Option<f64>,
}

/// Ids of the model's parameters in visiting order.
fn param_ids(model: &Gpt2) -> Vec<u64> {
    struct Ids(Vec<u64>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.id.val());
        }
    }
    let mut ids = Ids(Vec::new());
    model.visit(&mut ids);
    ids.0
}

/// `model` with its parameters given `ids` in visiting order (one per parameter), so a saved
/// optimizer state finds them.
fn with_param_ids(model: Gpt2, ids: &[u64]) -> Gpt2 {
    struct Assign<'a>(std::slice::Iter<'a, u64>);
    impl ModuleMapper for Assign<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, value, mapper) = param.consume();
            let id = self.0.next().map_or(id, |&saved| ParamId::from(saved));
            Param::from_mapped_value(id, value, mapper)
        }
    }
    model.map(&mut Assign(ids.iter()))
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: too little text: {tokens} tokens, but a training window needs {needed}")]
    TooShort {
        path: PathBuf,
        tokens: usize,
        needed: usize,
    },
    #[error(
        "{path} holds a run with a different recipe: {changes}; pass the same options to \
         resume, or use another --out (or --fresh to start over){hint}"
    )]
    ChangedRecipe {
        path: PathBuf,
        /// Each option that differs, as `--name saved (now given)`.
        changes: String,
        /// How to get what the user probably wanted, when a changed option has a known remedy.
        hint: String,
    },
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("invalid option: {0}")]
    Invalid(String),
}

/// Options and corpora are the user's to fix; reading and writing the run folder is not.
impl ExitStatus for TrainError {
    fn exit(&self) -> Exit {
        match self {
            TrainError::Invalid(_)
            | TrainError::ChangedRecipe { .. }
            | TrainError::TooShort { .. } => Exit::BadInput,
            TrainError::Io { .. } | TrainError::Checkpoint(_) => Exit::Failed,
        }
    }
}

/// Names every option whose saved value differs from the one given, because "a different
/// recipe" alone leaves the user diffing command lines by hand. `steps` is not compared: it
/// only says where this sitting stops.
fn changed_recipe(out: &Path, saved: &TrainConfig, given: &TrainConfig) -> Option<TrainError> {
    let as_map = |c: &TrainConfig| match serde_json::to_value(c) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.remove("steps");
            map
        }
        _ => serde_json::Map::new(),
    };
    let (old, new) = (as_map(saved), as_map(given));
    let changes: Vec<String> = old
        .iter()
        .filter(|(key, value)| new.get(*key) != Some(value))
        .map(|(key, value)| {
            let now = new.get(key).map(|v| v.to_string()).unwrap_or_default();
            format!("--{} {value} (now {now})", key.replace('_', "-"))
        })
        .collect();
    if changes.is_empty() {
        return None;
    }
    // Steps already taken followed the saved schedule, so a new schedule length would make a
    // run that no single uninterrupted run matches.
    let hint = if saved.decay_steps != given.decay_steps {
        format!(
            "; --decay-steps is the length of the learning-rate schedule the saved steps              followed ({}): to train longer, give only a larger --steps (steps past the              schedule run at --min-learning-rate), or start a new schedule with --fresh",
            saved.schedule_length()
        )
    } else {
        String::new()
    };
    Some(TrainError::ChangedRecipe {
        path: out.to_owned(),
        changes: changes.join(", "),
        hint,
    })
}

impl TrainConfig {
    /// The step at which the cosine decay reaches `min_learning_rate`.
    pub fn schedule_length(&self) -> usize {
        self.decay_steps.unwrap_or(self.steps)
    }
}

/// Mean next-token cross-entropy (nats) of `logits` `[batch, len, vocab]` against `targets`
/// `[batch, len]`.
pub fn cross_entropy(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<1> {
    let [batch, len, vocab] = logits.dims();
    let logp = log_softmax(logits.reshape([batch * len, vocab]), 1);
    let picked = logp.gather(1, targets.reshape([batch * len, 1]));
    picked.mean().neg()
}

/// The learning rate at `step`: linear warm-up to `learning_rate`, then cosine decay to
/// `min_learning_rate` at the end of the schedule, and that floor after it.
pub fn learning_rate(config: &TrainConfig, step: usize) -> f64 {
    if step < config.warmup_steps {
        return config.learning_rate * (step + 1) as f64 / config.warmup_steps as f64;
    }
    let span = config
        .schedule_length()
        .saturating_sub(config.warmup_steps)
        .max(1);
    let progress = ((step - config.warmup_steps) as f64 / span as f64).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    config.min_learning_rate + cosine * (config.learning_rate - config.min_learning_rate)
}

/// Tokens of a text file with the GPT-2 tokenizer.
pub fn tokenize_file(path: &Path) -> Result<Vec<u32>, TrainError> {
    let text = fs::read_to_string(path).map_err(|error| TrainError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(crate::engine::tokenizer::Tokenizer::gpt2().encode(&text))
}

/// `batch` windows of `len + 1` tokens at offsets drawn from the stream for `(seed, step)`.
fn batch_windows(tokens: &[u32], batch: usize, len: usize, seed: u64, step: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(step as u64);
    let span = (tokens.len() - len - 1) as u64;
    (0..batch)
        .map(|_| (rng.next_u64() % (span + 1)) as usize)
        .collect()
}

/// Evenly spaced validation windows: the same every evaluation, so losses compare.
pub fn eval_windows(tokens: &[u32], windows: usize, len: usize) -> Vec<usize> {
    let span = tokens.len() - len - 1;
    let n = windows.clamp(1, span / len + 1);
    (0..n).map(|i| i * span / n).collect()
}

fn to_tensors(
    tokens: &[u32],
    offsets: &[usize],
    len: usize,
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let mut inputs = Vec::with_capacity(offsets.len() * len);
    let mut targets = Vec::with_capacity(offsets.len() * len);
    for &o in offsets {
        inputs.extend(tokens[o..o + len].iter().map(|&t| t as i64));
        targets.extend(tokens[o + 1..o + len + 1].iter().map(|&t| t as i64));
    }
    let shape = [offsets.len(), len];
    (
        Tensor::from_data(TensorData::new(inputs, shape), device),
        Tensor::from_data(TensorData::new(targets, shape), device),
    )
}

/// How much of the validation split a model card's perplexity covers: enough to be stable
/// to well under 1 %, little enough to recompute in a test.
pub const CARD_EVAL_TOKENS: usize = 16_384;

/// Mean cross-entropy (nats per token) of `model` over non-overlapping windows of `len + 1`
/// tokens covering the first `max_tokens` tokens of `tokens` (all of them if `None`). Each
/// window predicts its last `len` tokens. Deterministic: this is the figure a model card quotes.
pub fn evaluate(
    model: &Gpt2,
    tokens: &[u32],
    len: usize,
    max_tokens: Option<usize>,
    batch: usize,
) -> f64 {
    let limit = max_tokens.unwrap_or(tokens.len()).min(tokens.len());
    let tokens = &tokens[..limit];
    let offsets: Vec<usize> = (0..)
        .map(|i| i * len)
        .take_while(|&o| o + len < tokens.len())
        .collect();
    let device = model.device();
    let mut total = 0.0;
    let mut count = 0usize;
    for chunk in offsets.chunks(batch) {
        let (inputs, targets) = to_tensors(tokens, chunk, len, &device);
        let loss: f32 = cross_entropy(model.forward(inputs), targets).into_scalar();
        total += loss as f64 * (chunk.len() * len) as f64;
        count += chunk.len() * len;
    }
    total / count.max(1) as f64
}

/// Perplexity of a unigram model (add-one smoothed counts of the training tokens over the
/// whole vocabulary) on `valid`: the baseline a trained model must clearly beat.
pub fn unigram_perplexity(train: &[u32], valid: &[u32], vocab: usize) -> f64 {
    let mut counts = vec![1.0f64; vocab];
    for &t in train {
        counts[t as usize] += 1.0;
    }
    let total: f64 = counts.iter().sum();
    let nll: f64 = valid
        .iter()
        .map(|&t| -(counts[t as usize] / total).ln())
        .sum();
    (nll / valid.len() as f64).exp()
}

/// Options of one training run.
pub struct TrainRun {
    pub config: TrainConfig,
    pub train_file: PathBuf,
    pub valid_file: PathBuf,
    pub out: PathBuf,
    /// Also write an f16 copy of the final weights here (the shipped form).
    pub export_f16: Option<PathBuf>,
    pub fresh: bool,
    pub quiet: bool,
    /// Stop (with a checkpoint) once this step is reached, without changing `steps` (the
    /// progress bar's end): training can then run in several sittings.
    pub stop_at: Option<usize>,
}

/// Train, resuming from `out` when it holds a checkpoint of the same recipe.
pub fn train(run: &TrainRun, device: &Device) -> Result<TrainState, TrainError> {
    let config = &run.config;
    if config.n_head == 0 || !config.n_embd.is_multiple_of(config.n_head) {
        return Err(TrainError::Invalid(format!(
            "--n-embd {} must be a multiple of --n-head {}",
            config.n_embd, config.n_head
        )));
    }
    if config.steps == 0
        || config.batch_size == 0
        || config.context < 2
        || config.decay_steps == Some(0)
    {
        return Err(TrainError::Invalid(
            "--steps, --decay-steps and --batch-size must be at least 1, --context at least 2"
                .into(),
        ));
    }
    let train_tokens = tokenize_file(&run.train_file)?;
    let valid_tokens = tokenize_file(&run.valid_file)?;
    for (path, tokens) in [
        (&run.train_file, &train_tokens),
        (&run.valid_file, &valid_tokens),
    ] {
        if tokens.len() < config.context + 2 {
            return Err(TrainError::TooShort {
                path: path.clone(),
                tokens: tokens.len(),
                needed: config.context + 2,
            });
        }
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| TrainError::Io { path, error }
    };
    fs::create_dir_all(&run.out).map_err(io(&run.out))?;
    let state_path = run.out.join("train_state.json");
    let optim_path = run.out.join("optimizer.bin");
    let model_config = Gpt2Config {
        n_positions: config.context,
        ..Gpt2Config::with_shape(config.n_layer, config.n_head, config.n_embd)
    };

    let autodiff = device.clone().autodiff();
    let mut resume: Option<TrainState> = if run.fresh {
        None
    } else {
        fs::read_to_string(&state_path)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
    };
    // The schedule is the saved run's unless one is given; steps taken so far followed it.
    let config = &TrainConfig {
        decay_steps: Some(match (&resume, config.decay_steps) {
            (_, Some(given)) => given,
            (Some(state), None) => state.config.schedule_length(),
            (None, None) => config.steps,
        }),
        ..config.clone()
    };
    if let Some(state) = &mut resume {
        let saved = TrainConfig {
            decay_steps: Some(state.config.schedule_length()),
            ..state.config.clone()
        };
        if let Some(error) = changed_recipe(&run.out, &saved, config) {
            return Err(error);
        }
        if config.steps > state.step && state.step >= saved.schedule_length() && !run.quiet {
            eprintln!(
                "{}: extending a finished run from step {} to {}: its learning-rate schedule \
                 ended at step {}, so the new steps run at --min-learning-rate {}",
                run.out.display(),
                state.step,
                config.steps,
                saved.schedule_length(),
                config.min_learning_rate
            );
        }
        state.config = config.clone();
    }
    let mut optim = AdamWConfig::new()
        .with_beta_2(0.95)
        .with_epsilon(1e-8)
        .with_weight_decay(config.weight_decay as f32)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(config.grad_clip as f32)))
        .init();
    let (mut model, mut state) = match resume {
        Some(state) => {
            let loaded = checkpoint::load(&run.out, &autodiff)?;
            let matched = param_ids(&loaded.model).len() == state.param_ids.len();
            let model = if matched && optim_path.is_file() {
                optim = optim.load(&optim_path).map_err(|e| TrainError::Io {
                    path: optim_path.clone(),
                    error: std::io::Error::other(e.to_string()),
                })?;
                with_param_ids(loaded.model, &state.param_ids)
            } else {
                eprintln!(
                    "{}: the optimizer state cannot be matched to the checkpoint's \
                     parameters; AdamW's moments start again from zero",
                    run.out.display()
                );
                loaded.model
            };
            (model, state)
        }
        None => {
            autodiff.seed(config.seed);
            (
                Gpt2::init(&model_config, &autodiff),
                TrainState {
                    step: 0,
                    config: config.clone(),
                    train_file: run.train_file.clone(),
                    valid_file: run.valid_file.clone(),
                    train_tokens: train_tokens.len(),
                    valid_tokens: valid_tokens.len(),
                    elapsed_s: 0.0,
                    history: Vec::new(),
                    param_ids: Vec::new(),
                    train_loss_ema: None,
                },
            )
        }
    };

    let eval_offsets = eval_windows(&valid_tokens, config.eval_windows, config.context);
    let bar = if run.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        crate::util::progress::bar(config.steps as u64, "training")
    };
    bar.set_position(state.step as u64);
    let started = Instant::now();
    let elapsed_before = state.elapsed_s;
    let mut recent_loss = state.train_loss_ema.unwrap_or(f64::NAN);
    let tokens_per_step = (config.batch_size * config.context) as f64;
    let mut steps_here = 0usize;
    let last_step = run.stop_at.unwrap_or(config.steps).min(config.steps);
    while state.step < last_step {
        let step = state.step;
        let offsets = batch_windows(
            &train_tokens,
            config.batch_size,
            config.context,
            config.seed,
            step,
        );
        let (inputs, targets) = to_tensors(&train_tokens, &offsets, config.context, &autodiff);
        let loss = cross_entropy(model.forward(inputs), targets);
        let loss_value: f32 = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(learning_rate(config, step), model, grads);
        recent_loss = if recent_loss.is_nan() {
            loss_value as f64
        } else {
            0.9 * recent_loss + 0.1 * loss_value as f64
        };
        state.step += 1;
        steps_here += 1;
        let secs = started.elapsed().as_secs_f64();
        bar.set_position(state.step as u64);
        bar.set_message(format!(
            "loss {:.3} · {:.0} tok/s",
            recent_loss,
            tokens_per_step * steps_here as f64 / secs.max(1e-9)
        ));
        // Without a terminal the bar is hidden; a log (CI, a cluster job) gets a line instead.
        if bar.is_hidden() && !run.quiet && state.step % 25 == 0 {
            eprintln!(
                "step {:>6}/{}  loss {:.3}  {:.0} tokens/s",
                state.step,
                config.steps,
                recent_loss,
                tokens_per_step * steps_here as f64 / secs.max(1e-9)
            );
        }
        if state.step % config.eval_interval == 0 || state.step == last_step {
            let valid = model.valid();
            let valid_loss = eval_loss(&valid, &valid_tokens, &eval_offsets, config.context);
            state.history.push((state.step, recent_loss, valid_loss));
            state.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
            crate::util::progress::println(
                &bar,
                run.quiet,
                format!(
                    "step {:>6}  train loss {:.4}  valid loss {:.4}  (ppl {:.1})  lr {:.2e}",
                    state.step,
                    recent_loss,
                    valid_loss,
                    valid_loss.exp(),
                    learning_rate(config, state.step - 1)
                ),
            );
            checkpoint::save(&valid, &run.out, SaveDtype::F32)?;
            state.param_ids = param_ids(&model);
            state.train_loss_ema = Some(recent_loss);
            optim.save(&optim_path).map_err(|e| TrainError::Io {
                path: optim_path.clone(),
                error: std::io::Error::other(e.to_string()),
            })?;
            let json = serde_json::to_string_pretty(&state).expect("json");
            crate::util::files::write_atomic(&state_path, json.as_bytes())
                .map_err(io(&state_path))?;
        }
    }
    bar.finish_and_clear();
    if let Some(dir) = &run.export_f16 {
        checkpoint::save(&model.valid(), dir, SaveDtype::F16)?;
    }
    Ok(state)
}

fn eval_loss(model: &Gpt2, tokens: &[u32], offsets: &[usize], len: usize) -> f64 {
    let device = model.device();
    let mut total = 0.0;
    for chunk in offsets.chunks(8) {
        let (inputs, targets) = to_tensors(tokens, chunk, len, &device);
        let loss: f32 = cross_entropy(model.forward(inputs), targets).into_scalar();
        total += loss as f64 * chunk.len() as f64;
    }
    total / offsets.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TrainConfig {
        TrainConfig {
            n_layer: 1,
            n_head: 1,
            n_embd: 8,
            context: 8,
            steps: 100,
            decay_steps: None,
            batch_size: 1,
            learning_rate: 1e-3,
            min_learning_rate: 1e-4,
            warmup_steps: 10,
            weight_decay: 0.1,
            grad_clip: 1.0,
            eval_interval: 10,
            eval_windows: 2,
            seed: 0,
        }
    }

    #[test]
    fn learning_rate_warms_up_then_decays_to_the_floor() {
        let c = config();
        assert!((learning_rate(&c, 0) - 1e-4).abs() < 1e-12);
        assert!((learning_rate(&c, 9) - 1e-3).abs() < 1e-12);
        assert!((learning_rate(&c, 10) - 1e-3).abs() < 1e-12);
        assert!(learning_rate(&c, 55) < 1e-3 && learning_rate(&c, 55) > 1e-4);
        assert!((learning_rate(&c, 100) - 1e-4).abs() < 1e-12);
        // Past the schedule's end the floor holds; a schedule may be longer than the run.
        assert!((learning_rate(&c, 150) - 1e-4).abs() < 1e-12);
        let long = TrainConfig {
            decay_steps: Some(200),
            ..config()
        };
        assert!(learning_rate(&long, 100) > 5e-4);
        assert!((learning_rate(&long, 200) - 1e-4).abs() < 1e-12);
    }

    #[test]
    fn unigram_baseline_is_the_vocabulary_size_for_uniform_counts() {
        // No training tokens: add-one counts are uniform, perplexity = vocabulary size.
        assert!((unigram_perplexity(&[], &[0, 1, 2], 10) - 10.0).abs() < 1e-9);
        // A token seen often is cheaper than one never seen.
        assert!(unigram_perplexity(&[3; 100], &[3], 10) < unigram_perplexity(&[3; 100], &[4], 10));
    }

    #[test]
    fn batches_depend_only_on_seed_and_step() {
        let tokens: Vec<u32> = (0..1000).collect();
        assert_eq!(
            batch_windows(&tokens, 4, 8, 1, 5),
            batch_windows(&tokens, 4, 8, 1, 5)
        );
        assert_ne!(
            batch_windows(&tokens, 4, 8, 1, 5),
            batch_windows(&tokens, 4, 8, 1, 6)
        );
        assert!(
            batch_windows(&tokens, 64, 8, 1, 5)
                .iter()
                .all(|&o| o + 9 <= 1000)
        );
    }
}
