//! Decoding with a KV cache: the prompt is run once, its cache widened to every row, and each
//! step runs only the new token of each row. Logits are read back to the host, where each
//! row samples with its own settings and random stream (see `sampling`), or beam search
//! chooses (see `beam`). From a GPU, sampling reads back only each row's shortlist (see
//! `shortlist`).
//!
//! Rows of one batch may belong to different settings: each carries its own temperature,
//! top-k, top-p and RNG, so a sweep fills large batches instead of running settings one by one,
//! and a row's sample does not depend on what else shares its batch.

use burn::tensor::{Int, Tensor, TensorData};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;

use crate::engine::beam::{BeamParams, BeamParamsError, BeamSearch, Hypothesis};
use crate::engine::model::{Gpt2, KvCache};
use crate::engine::sampling::{
    Context, SamplingParams, first_non_finite, log_prob, log_softmax_into, sample_in_context,
    shortlist_needed,
};
use crate::engine::shortlist::DeviceReadback;
use crate::engine::step_profile::{Part, StepTimer};
use crate::util::exit::{Exit, ExitStatus};

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum GenerateError {
    #[error(
        "max_new_tokens = {max_new_tokens} does not fit the model's context of {n_positions} \
         positions (at least one prompt token is needed); use max_new_tokens <= {}",
        n_positions - 1
    )]
    TooLong {
        max_new_tokens: usize,
        n_positions: usize,
    },
    #[error("token id {token} is outside the model's vocabulary of {vocab_size}")]
    BadToken { token: u32, vocab_size: usize },
    /// Logits that are not numbers poison everything computed from them (a NaN weight in a
    /// checkpoint, or an overflow in half precision), so decoding stops at the first one
    /// instead of writing NaN log-probabilities or drawing from a meaningless distribution.
    #[error(
        "the model's logits hold {value} at generation step {step}: its weights hold a NaN or an \
         infinity, or its computation overflowed (in half precision, try --dtype f32)"
    )]
    NonFinite {
        /// The row of the batch ([`Generator::sample`]), the search of the group
        /// ([`Generator::beam_searches`]), or 0 ([`Generator::score`]).
        row: usize,
        /// The generated token being chosen, from 0; for scoring, the scored token.
        step: usize,
        value: f32,
    },
    #[error(transparent)]
    Beam(#[from] BeamParamsError),
}

/// What the user passed in is at fault (a length, a token), unless the model computed a
/// non-finite value.
impl ExitStatus for GenerateError {
    fn exit(&self) -> Exit {
        match self {
            Self::NonFinite { .. } => Exit::Failed,
            _ => Exit::BadInput,
        }
    }
}

/// How many tokens [`Generator::prepare`] crops from the left of a prompt of `len` tokens so
/// that `max_new_tokens` fit in a context of `n_positions`; an empty prompt counts as its one
/// end-of-text token. Checks made before any model is loaded use it too.
pub fn cropped_tokens(len: usize, n_positions: usize, max_new_tokens: usize) -> usize {
    len.max(1)
        .saturating_sub(n_positions.saturating_sub(max_new_tokens))
}

/// One row to sample: its settings and its own random stream.
#[derive(Debug, Clone)]
pub struct SampleRow {
    pub params: SamplingParams,
    pub rng: ChaCha20Rng,
}

/// A generated continuation (the prompt not included).
#[derive(Debug, Clone, PartialEq)]
pub struct Continuation {
    /// Generated token ids, including the end-of-text token when one ended the row.
    pub tokens: Vec<u32>,
    /// Log-probability of each token under the model's unmodified distribution (T = 1, no
    /// filtering): perplexity of generated text needs no second forward pass.
    pub logprobs: Vec<f32>,
    pub ended_with_eos: bool,
}

/// A prompt made ready for a model: cropped to fit, never empty.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedPrompt {
    pub tokens: Vec<u32>,
    /// How many tokens were cut from the left to fit the context; the caller warns.
    pub cropped: usize,
}

/// Decoding on one loaded model.
pub struct Generator {
    model: Gpt2,
    /// Whether sampling reads shortlists from the device instead of whole rows: on a device
    /// the host kernels do not run on, where logits stay until read back.
    shortlists: bool,
}

/// One decoding step's logits of the last position, as sampling reads them.
enum StepLogits {
    /// Every row in full, `[rows * vocab]`: the host kernels write them there.
    Whole(Vec<f32>),
    /// What each row's setting needs, from a device.
    Short(DeviceReadback),
}

impl StepLogits {
    fn sample(
        &self,
        r: usize,
        vocab: usize,
        params: &SamplingParams,
        context: Context,
        rng: &mut ChaCha20Rng,
    ) -> (usize, f32) {
        match self {
            Self::Whole(logits) => {
                sample_in_context(&logits[r * vocab..(r + 1) * vocab], params, context, rng)
            }
            Self::Short(lists) => lists.sample(r, params, context, rng),
        }
    }

    /// A value of row `r` that is NaN or infinite, if there is one (see
    /// [`DeviceReadback::non_finite`] for what a shortlist can tell).
    fn non_finite(&self, r: usize, vocab: usize) -> Option<f32> {
        match self {
            Self::Whole(logits) => first_non_finite(&logits[r * vocab..(r + 1) * vocab]),
            Self::Short(lists) => lists.non_finite(r),
        }
    }
}

impl Generator {
    /// Takes a loaded model and prepares it for decoding.
    pub fn new(model: Gpt2) -> Self {
        let model = model.for_inference();
        Self {
            shortlists: model.host.is_none(),
            model,
        }
    }

    /// Decoding through the backend's own tensors even where the host kernels would run,
    /// reading back shortlists as from a GPU: so that path is checked on any machine.
    pub fn on_tensors(model: Gpt2) -> Self {
        Self {
            model: model.for_tensor_inference(),
            shortlists: true,
        }
    }

    pub fn model(&self) -> &Gpt2 {
        &self.model
    }

    pub fn eos(&self) -> u32 {
        self.model.config.eos_token_id
    }

    /// Fit `prompt` and `max_new_tokens` into the context. A prompt too long is cropped from
    /// the left (its end is what conditions the continuation); an empty prompt starts from
    /// end-of-text, as GPT-2 was trained to begin documents.
    pub fn prepare(
        &self,
        prompt: &[u32],
        max_new_tokens: usize,
    ) -> Result<PreparedPrompt, GenerateError> {
        let config = &self.model.config;
        if max_new_tokens >= config.n_positions {
            return Err(GenerateError::TooLong {
                max_new_tokens,
                n_positions: config.n_positions,
            });
        }
        if let Some(&token) = prompt.iter().find(|&&t| t as usize >= config.vocab_size) {
            return Err(GenerateError::BadToken {
                token,
                vocab_size: config.vocab_size,
            });
        }
        let mut tokens = if prompt.is_empty() {
            vec![config.eos_token_id]
        } else {
            prompt.to_vec()
        };
        let cropped = cropped_tokens(tokens.len(), config.n_positions, max_new_tokens);
        tokens.drain(..cropped);
        Ok(PreparedPrompt { tokens, cropped })
    }

    pub(crate) fn tokens_tensor(&self, rows: &[&[u32]]) -> Tensor<2, Int> {
        let len = rows[0].len();
        let data: Vec<i64> = rows
            .iter()
            .flat_map(|r| r.iter().map(|&t| t as i64))
            .collect();
        Tensor::from_data(
            TensorData::new(data, [rows.len(), len]),
            &self.model.device(),
        )
    }

    /// Logits `[len, vocab]` (row-major) for every position of `tokens`, run as one sequence.
    pub fn logits(&self, tokens: &[u32]) -> Vec<f32> {
        let logits = self.model.forward(self.tokens_tensor(&[tokens]));
        logits
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 logits")
    }

    /// Logits `[vocab]` for the token after `tokens`: the prefill of generation, which runs
    /// the whole prompt but reads back only the last position.
    pub fn next_logits(&self, tokens: &[u32]) -> Vec<f32> {
        let mut out = Vec::new();
        self.model.forward_last_into(
            self.tokens_tensor(&[tokens]),
            &mut KvCache::empty(),
            &mut out,
        );
        out
    }

    /// Per-token log-probabilities of `continuation` after `prompt`: for scoring text that
    /// another model (or a human) wrote. The pair must fit the context.
    pub fn score(&self, prompt: &[u32], continuation: &[u32]) -> Result<Vec<f32>, GenerateError> {
        if continuation.is_empty() {
            return Ok(Vec::new());
        }
        let prepared = self.prepare(prompt, continuation.len())?;
        let mut all = prepared.tokens.clone();
        all.extend_from_slice(continuation);
        if let Some(&token) = continuation
            .iter()
            .find(|&&t| t as usize >= self.model.config.vocab_size)
        {
            return Err(GenerateError::BadToken {
                token,
                vocab_size: self.model.config.vocab_size,
            });
        }
        let vocab = self.model.config.vocab_size;
        let logits = self.logits(&all[..all.len() - 1]);
        let start = prepared.tokens.len() - 1;
        continuation
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let row = &logits[(start + i) * vocab..(start + i + 1) * vocab];
                match first_non_finite(row) {
                    Some(value) => Err(GenerateError::NonFinite {
                        row: 0,
                        step: i,
                        value,
                    }),
                    None => Ok(log_prob(row, t as usize)),
                }
            })
            .collect()
    }

    /// Sample one continuation per row from one prompt. `on_token(row, token)` sees each
    /// token as it is chosen (for streaming output). Rows stop at end-of-text or after
    /// `max_new_tokens`. A NaN or infinite logit in any running row stops the batch with
    /// [`GenerateError::NonFinite`] naming the first such row.
    pub fn sample(
        &self,
        prompt: &PreparedPrompt,
        rows: Vec<SampleRow>,
        max_new_tokens: usize,
        on_token: impl FnMut(usize, u32),
    ) -> Result<Vec<Continuation>, GenerateError> {
        self.sample_rows(prompt, rows, max_new_tokens, true, on_token)
    }

    /// As [`Generator::sample`], but end-of-text does not stop a row: every row runs
    /// `max_new_tokens`, so a benchmark counts the same work as its peer.
    pub fn sample_full_length(
        &self,
        prompt: &PreparedPrompt,
        rows: Vec<SampleRow>,
        max_new_tokens: usize,
    ) -> Result<Vec<Continuation>, GenerateError> {
        self.sample_rows(prompt, rows, max_new_tokens, false, |_, _| {})
    }

    fn sample_rows(
        &self,
        prompt: &PreparedPrompt,
        mut rows: Vec<SampleRow>,
        max_new_tokens: usize,
        stop_at_eos: bool,
        mut on_token: impl FnMut(usize, u32),
    ) -> Result<Vec<Continuation>, GenerateError> {
        let n = rows.len();
        let mut out = vec![
            Continuation {
                tokens: Vec::with_capacity(max_new_tokens),
                logprobs: Vec::with_capacity(max_new_tokens),
                ended_with_eos: false,
            };
            n
        ];
        if n == 0 || max_new_tokens == 0 {
            return Ok(out);
        }
        let vocab = self.model.config.vocab_size;
        let eos = self.eos();
        let mut cache = KvCache::with_capacity(prompt.tokens.len() + max_new_tokens);
        // The prompt's one row of logits serves every row at the first step.
        let needs: Vec<Option<usize>> = rows
            .iter()
            .map(|row| shortlist_needed(&row.params, vocab))
            .collect();
        let first_need = needs.iter().try_fold(0, |most, &n| n.map(|n| most.max(n)));
        let mut logits = self.forward_step(
            self.tokens_tensor(&[&prompt.tokens]),
            &mut cache,
            &[first_need],
            StepLogits::Whole(Vec::new()),
        );
        // The context each penalised row has seen, prompt then generated tokens; empty for
        // the rows without penalties, which never read it.
        let prompt_len = prompt.tokens.len();
        let mut contexts: Vec<Vec<u32>> = rows
            .iter()
            .map(|row| {
                if row.params.processors.penalises() {
                    let mut context = Vec::with_capacity(prompt_len + max_new_tokens);
                    context.extend_from_slice(&prompt.tokens);
                    context
                } else {
                    Vec::new()
                }
            })
            .collect();
        // Rows still running, by original index; their cache rows are in this order.
        let mut active: Vec<usize> = (0..n).collect();
        let mut running = vec![true; n];
        let mut shared_first = true;
        cache = cache.repeat(n);

        // Every row starts from the prompt's one row of logits: it is checked once.
        if let Some(value) = logits.non_finite(0, vocab) {
            return Err(GenerateError::NonFinite {
                row: 0,
                step: 0,
                value,
            });
        }
        for step in 0..max_new_tokens {
            // Each running row samples from its own logits with its own stream; `active` is
            // ascending, so the k-th running row is the k-th row of the cache and logits.
            let mut timer = StepTimer::sample();
            let picks: Vec<Result<(u32, f32), f32>> = rows
                .iter_mut()
                .zip(&contexts)
                .enumerate()
                .filter(|(i, _)| running[*i])
                .map(|(_, row)| row)
                .collect::<Vec<_>>()
                .into_par_iter()
                .enumerate()
                .map(|(k, (row, context))| {
                    let r = if shared_first { 0 } else { k };
                    if !shared_first && let Some(value) = logits.non_finite(r, vocab) {
                        return Err(value);
                    }
                    let context = Context {
                        tokens: context,
                        prompt_len,
                    };
                    let (token, lp) = logits.sample(r, vocab, &row.params, context, &mut row.rng);
                    Ok((token as u32, lp))
                })
                .collect();
            let picks: Vec<(u32, f32)> = picks
                .into_iter()
                .zip(&active)
                .map(|(pick, &row)| {
                    pick.map_err(|value| GenerateError::NonFinite { row, step, value })
                })
                .collect::<Result<_, _>>()?;
            if let Some(timer) = &mut timer {
                timer.lap(Part::Sample);
            }
            let mut still = Vec::with_capacity(active.len());
            let mut keep_rows = Vec::with_capacity(active.len());
            let mut next_tokens = Vec::with_capacity(active.len());
            for (k, (&i, &(token, lp))) in active.iter().zip(&picks).enumerate() {
                out[i].tokens.push(token);
                out[i].logprobs.push(lp);
                if rows[i].params.processors.penalises() {
                    contexts[i].push(token);
                }
                on_token(i, token);
                if token == eos && stop_at_eos {
                    out[i].ended_with_eos = true;
                    running[i] = false;
                } else {
                    still.push(i);
                    keep_rows.push(k);
                    next_tokens.push(token);
                }
            }
            if still.is_empty() || step + 1 == max_new_tokens {
                break;
            }
            if keep_rows.len() != active.len() {
                cache = cache.select(&keep_rows);
            }
            active = still;
            shared_first = false;
            let input: Vec<[u32; 1]> = next_tokens.iter().map(|&t| [t]).collect();
            let input: Vec<&[u32]> = input.iter().map(|t| &t[..]).collect();
            let step_needs: Vec<Option<usize>> = active.iter().map(|&i| needs[i]).collect();
            logits = self.forward_step(self.tokens_tensor(&input), &mut cache, &step_needs, logits);
        }
        Ok(out)
    }

    /// Run `tokens` after `cache` and read back what sampling needs of the last position:
    /// whole rows from the host kernels (reusing the buffer of `previous`), a shortlist per
    /// row from a device. `needs[r]`: see [`shortlist_needed`].
    fn forward_step(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut KvCache,
        needs: &[Option<usize>],
        previous: StepLogits,
    ) -> StepLogits {
        let mut timer = StepTimer::forward();
        if self.shortlists {
            let logits = self.model.forward_last(tokens, cache);
            if let Some(timer) = &mut timer {
                timer.lap(Part::Issue);
                timer.wait_for(&logits.device());
            }
            let read = DeviceReadback::read(logits, needs);
            if let Some(timer) = &mut timer {
                timer.lap(Part::Readback);
                timer.rows_read(needs.len(), read.rows_in_full());
            }
            return StepLogits::Short(read);
        }
        let mut buffer = match previous {
            StepLogits::Whole(buffer) => buffer,
            StepLogits::Short(_) => Vec::new(),
        };
        self.model.forward_last_into(tokens, cache, &mut buffer);
        if let Some(timer) = &mut timer {
            timer.lap(Part::Issue);
        }
        StepLogits::Whole(buffer)
    }

    /// Beam search from one prompt, as transformers' `generate(num_beams=..)` does it.
    /// Returns the `num_return_sequences` best hypotheses, best first. A beam sampling
    /// search draws from the stream of prompt 0 (see [`Generator::beam_searches`]).
    pub fn beam_search(
        &self,
        prompt: &PreparedPrompt,
        params: &BeamParams,
        max_new_tokens: usize,
    ) -> Result<Vec<Hypothesis>, GenerateError> {
        Ok(self
            .beam_searches(prompt, 0, std::slice::from_ref(params), max_new_tokens)?
            .pop()
            .unwrap_or_default())
    }

    /// Several beam searches from one prompt at once (say, widths 2, 4 and 8): their beams
    /// share each forward batch, as the rows of sampling settings do, and a search that ends
    /// leaves the batch. Each search finds what [`Generator::beam_search`] finds alone, since
    /// a row's logits do not depend on the rows beside it. A NaN or infinite logit in any
    /// beam stops them all with [`GenerateError::NonFinite`] naming its search.
    ///
    /// `prompt_index` is the prompt's place in the experiment: a beam sampling search draws
    /// from the stream `sample_rng(seed, prompt_index, 0)`, its own whatever runs beside it.
    pub fn beam_searches(
        &self,
        prompt: &PreparedPrompt,
        prompt_index: u32,
        params: &[BeamParams],
        max_new_tokens: usize,
    ) -> Result<Vec<Vec<Hypothesis>>, GenerateError> {
        let vocab = self.model.config.vocab_size;
        let mut searches: Vec<BeamSearch> = params
            .iter()
            .map(|p| {
                BeamSearch::new(
                    p.clone(),
                    &prompt.tokens,
                    prompt_index,
                    max_new_tokens,
                    self.eos(),
                )
            })
            .collect::<Result<_, _>>()?;
        let mut cache = KvCache::with_capacity(prompt.tokens.len() + max_new_tokens);
        let mut logits = Vec::new();
        self.model.forward_last_into(
            self.tokens_tensor(&[&prompt.tokens]),
            &mut cache,
            &mut logits,
        );
        if let Some(value) = first_non_finite(&logits) {
            return Err(GenerateError::NonFinite {
                row: 0,
                step: 0,
                value,
            });
        }
        let rows: usize = params.iter().map(|p| p.num_beams).sum();
        cache = cache.repeat(rows);
        // All beams start as the prompt: one row of log-probabilities stands for all of them.
        let mut logprobs: Vec<f32> = log_softmax_rows(&logits, vocab).repeat(rows);
        // Searches still running, in the order of their rows in the cache and the logits.
        let mut running: Vec<usize> = (0..searches.len()).collect();
        let mut step = 0;
        loop {
            let (mut parents, mut tokens, mut still) = (Vec::new(), Vec::new(), Vec::new());
            let mut first_row = 0;
            for &s in &running {
                let beams = params[s].num_beams;
                let own = &logprobs[first_row * vocab..(first_row + beams) * vocab];
                if let Some(step) = searches[s].step(own, vocab) {
                    parents.extend(step.parents.iter().map(|&p| first_row + p));
                    tokens.extend(step.tokens);
                    still.push(s);
                }
                first_row += beams;
            }
            running = still;
            if running.is_empty() {
                break;
            }
            cache = cache.select(&parents);
            let input: Vec<[u32; 1]> = tokens.iter().map(|&t| [t]).collect();
            let input: Vec<&[u32]> = input.iter().map(|t| &t[..]).collect();
            self.model
                .forward_last_into(self.tokens_tensor(&input), &mut cache, &mut logits);
            step += 1;
            if let Some((row, value)) = logits
                .par_chunks(vocab)
                .enumerate()
                .find_map_first(|(r, row)| first_non_finite(row).map(|v| (r, v)))
            {
                // The search that owns the row: rows are laid out search after search.
                let mut first_row = 0;
                let search = running
                    .iter()
                    .find(|&&s| {
                        first_row += params[s].num_beams;
                        row < first_row
                    })
                    .copied()
                    .unwrap_or(0);
                return Err(GenerateError::NonFinite {
                    row: search,
                    step,
                    value,
                });
            }
            logprobs = log_softmax_rows(&logits, vocab);
        }
        Ok(searches.into_iter().map(BeamSearch::finish).collect())
    }
}

/// Row-wise log-softmax of `[rows, vocab]` logits: each value what [`log_prob`] gives, so
/// that a beam's log-probabilities are those sampling reports for the same tokens.
pub fn log_softmax_rows(logits: &[f32], vocab: usize) -> Vec<f32> {
    let mut out = vec![0f32; logits.len()];
    out.par_chunks_mut(vocab)
        .zip(logits.par_chunks(vocab))
        .for_each(|(o, l)| log_softmax_into(l, o));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::beam::{BeamSampling, EarlyStopping};
    use crate::engine::model::Gpt2Config;
    use crate::engine::sampling::{Processors, sample_rng};

    /// The count that checks report before loading a model is the count `prepare` crops.
    #[test]
    fn cropping_is_counted_as_prepare_crops() {
        let mut config = Gpt2Config::with_shape(1, 1, 8);
        config.n_positions = 8;
        config.vocab_size = 16;
        let device = burn::tensor::Device::default();
        let generator = Generator::new(Gpt2::init(&config, &device));
        for (len, max_new_tokens) in [(0, 3), (1, 7), (5, 3), (6, 3), (12, 3), (12, 7)] {
            let prompt: Vec<u32> = (0..len as u32).map(|t| t % 16).collect();
            let prepared = generator.prepare(&prompt, max_new_tokens).unwrap();
            assert_eq!(
                cropped_tokens(len, 8, max_new_tokens),
                prepared.cropped,
                "{len} tokens, {max_new_tokens} new"
            );
            assert_eq!(
                prepared.tokens.len() + max_new_tokens,
                (len.max(1)).min(8 - max_new_tokens) + max_new_tokens
            );
        }
    }

    /// General matrix kernels take another path for a single row than for several at GPT-2's
    /// width; a row's sample must not notice (see `matmul` and `model::tensor::rows_matmul`).
    /// A lone row, the same row among others, and greedy rows that outlive their batch-mates
    /// all agree bit for bit.
    #[test]
    fn a_row_samples_the_same_alone_or_in_a_batch() {
        let device = burn::tensor::Device::default();
        device.seed(7);
        let generator = Generator::new(Gpt2::init(&Gpt2Config::with_shape(1, 12, 768), &device));
        let prompt = generator.prepare(&[464, 2068, 7586], 8).unwrap();
        let row = |sample: u32, temperature: f64| SampleRow {
            params: SamplingParams {
                temperature,
                top_k: 0,
                top_p: 1.0,
                processors: Processors::OFF,
            },
            rng: sample_rng(1, 0, sample),
        };
        let alone = generator
            .sample(&prompt, vec![row(0, 1.0)], 8, |_, _| {})
            .unwrap();
        let batch = generator
            .sample(
                &prompt,
                vec![row(0, 1.0), row(1, 0.0), row(2, 1.5)],
                8,
                |_, _| {},
            )
            .unwrap();
        assert_eq!(alone[0], batch[0]);
        let greedy_alone = generator
            .sample(&prompt, vec![row(1, 0.0)], 8, |_, _| {})
            .unwrap();
        assert_eq!(greedy_alone[0], batch[1]);
    }

    /// On a device, sampling reads shortlists instead of whole rows; run here through the
    /// backend's own tensors, as on a GPU. A batch of mixed settings (greedy, top-k with and
    /// without top-p, settings that read the whole vocabulary, and rows with penalties and
    /// filters, greedy among them) draws the same tokens as from whole rows, with
    /// log-probabilities equal within rounding.
    #[test]
    fn shortlists_from_the_device_draw_what_whole_rows_draw() {
        let device = burn::tensor::Device::default();
        device.seed(11);
        let model = Gpt2::init(&Gpt2Config::with_shape(1, 4, 64), &device);
        let on_tensors = |shortlists| Generator {
            model: model.clone().for_tensor_inference(),
            shortlists,
        };
        let (short, whole) = (on_tensors(true), on_tensors(false));
        let prompt = short.prepare(&[464, 2068, 7586], 12).unwrap();
        let off = Processors::OFF;
        // Rows with processor knobs read their whole row back, beside rows that read a list.
        let knobs = Processors {
            min_p: 0.05,
            repetition_penalty: 1.3,
            no_repeat_ngram_size: 2,
            ..off
        };
        let penalised = Processors {
            repetition_penalty: 2.0,
            ..off
        };
        let settings = [
            (0.0, 0, 1.0, off),
            (1.0, 0, 1.0, off),
            (0.8, 50, 0.9, off),
            (1.0, 0, 0.9, off),
            (1.5, 5, 1.0, off),
            (0.7, 1, 1.0, off),
            (1.2, 20, 1.0, knobs),
            (0.0, 0, 1.0, penalised),
        ];
        let rows = || -> Vec<SampleRow> {
            settings
                .iter()
                .enumerate()
                .map(|(i, &(temperature, top_k, top_p, processors))| SampleRow {
                    params: SamplingParams {
                        temperature,
                        top_k,
                        top_p,
                        processors,
                    },
                    rng: sample_rng(5, 0, i as u32),
                })
                .collect()
        };
        let a = short.sample(&prompt, rows(), 12, |_, _| {}).unwrap();
        let b = whole.sample(&prompt, rows(), 12, |_, _| {}).unwrap();
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(a.tokens, b.tokens);
            assert_eq!(a.tokens.len(), 12);
            for (x, y) in a.logprobs.iter().zip(&b.logprobs) {
                assert!((x - y).abs() <= 1e-5, "{x} vs {y}");
            }
        }
    }

    /// Beam searches of several widths, length penalties and stopping rules, with penalties,
    /// in groups and sampled, run together, find what each finds alone, to the bit. In a
    /// vocabulary of 12 tokens the end-of-text token is common, so searches end at different
    /// steps and leave the batch in turn. The weights come from the backend's global
    /// generator, which tests running at the same time also draw from, so models are tried
    /// until one shows that (every one is checked).
    #[test]
    fn beam_searches_together_find_what_each_finds_alone() {
        let device = burn::tensor::Device::default();
        let config = Gpt2Config {
            vocab_size: 12,
            eos_token_id: 11,
            ..Gpt2Config::with_shape(2, 2, 32)
        };
        let params: Vec<BeamParams> = [
            (2, 1.0, EarlyStopping::Always, 1),
            (4, 0.6, EarlyStopping::Heuristic, 2),
            (3, 1.0, EarlyStopping::Never, 3),
            (1, -1.0, EarlyStopping::Heuristic, 1),
            (5, 2.0, EarlyStopping::Always, 5),
        ]
        .into_iter()
        .map(
            |(num_beams, length_penalty, early_stopping, num_return_sequences)| BeamParams {
                length_penalty,
                early_stopping,
                num_return_sequences,
                ..BeamParams::new(num_beams)
            },
        )
        .chain([
            BeamParams {
                processors: Processors {
                    repetition_penalty: 1.5,
                    no_repeat_ngram_size: 2,
                    ..Processors::OFF
                },
                ..BeamParams::new(3)
            },
            BeamParams {
                num_beam_groups: 2,
                diversity_penalty: 0.7,
                num_return_sequences: 2,
                ..BeamParams::new(4)
            },
            BeamParams {
                sampling: Some(BeamSampling {
                    temperature: 1.3,
                    top_k: 6,
                    top_p: 0.9,
                    seed: 3,
                }),
                ..BeamParams::new(2)
            },
        ])
        .collect();
        let mut ended_apart = false;
        for seed in 0..20 {
            device.seed(seed);
            let generator = Generator::new(Gpt2::init(&config, &device));
            let prompt = generator.prepare(&[1, 4, 2], 10).unwrap();
            let together = generator.beam_searches(&prompt, 0, &params, 10).unwrap();
            assert_eq!(together.len(), params.len());
            let mut lengths = Vec::new();
            for (p, found) in params.iter().zip(&together) {
                let alone = generator.beam_search(&prompt, p, 10).unwrap();
                assert_eq!(&alone, found, "seed {seed}, {p:?}");
                assert_eq!(found.len(), p.num_return_sequences);
                lengths.push(found.iter().map(|h| h.tokens.len()).max());
            }
            assert!(
                generator
                    .beam_searches(&prompt, 0, &[], 10)
                    .unwrap()
                    .is_empty()
            );
            // Some search ended early, so rows left the batch while others ran on.
            if together.iter().flatten().any(|h| h.ended_with_eos)
                && lengths.iter().any(|&l| l < Some(10))
            {
                ended_apart = true;
                break;
            }
        }
        assert!(ended_apart, "no model had a search end early");
    }

    /// Beam search and sampling report the same log-probability for the same token.
    #[test]
    fn log_softmax_rows_are_log_prob_to_the_bit() {
        let vocab = 3000;
        let logits: Vec<f32> = (0..2 * vocab)
            .map(|i| ((i * 7919 % 1013) as f32) / 37.0 - 9.0)
            .collect();
        let rows = log_softmax_rows(&logits, vocab);
        for (r, row) in logits.chunks(vocab).enumerate() {
            for t in 0..vocab {
                assert_eq!(rows[r * vocab + t].to_bits(), log_prob(row, t).to_bits());
            }
        }
    }
}
