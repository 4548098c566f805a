//! Contrastive search (Su et al. 2022, "A Contrastive Framework for Neural Text Generation"),
//! as transformers' `generate(penalty_alpha=α, top_k=k)` runs it (4.55, the last release with
//! it built in).
//!
//! Each step takes the k most probable next tokens, runs the model on every one of them (the
//! row's cache widened k times, one forward pass for all candidates of all searches), and
//! keeps the candidate with the largest
//!
//! (1 − α) · p(candidate) − α · max_j cos(h_candidate, h_j),
//!
//! where h is the final hidden state (after `ln_f`) and j runs over every earlier position,
//! prompt and generated, with the hidden state the model gave it when it consumed it. The
//! kept candidate's pass already holds the next step's logits and its cache row, so a step
//! costs one forward pass of k rows per search.

use burn::tensor::{Int, Tensor, TensorData};
use rayon::prelude::*;

use crate::engine::generate::{Continuation, GenerateError, Generator, PreparedPrompt};
use crate::engine::model::KvCache;
use crate::engine::sampling::{argmax, first_non_finite, log_softmax_into};

/// One contrastive-search setting, named as in transformers' `generate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContrastiveParams {
    /// α, the weight of the degeneration penalty; 0 is greedy search.
    pub penalty_alpha: f64,
    /// How many of the most probable tokens are candidates at each step; 0 counts as 1 (the
    /// experiment's checks reject it before a search runs).
    pub top_k: usize,
}

impl ContrastiveParams {
    /// The candidates a step runs. With α = 0 the penalty cannot change the choice, which is
    /// the most probable token, so only that one runs (transformers then runs greedy search,
    /// with the same result); a k beyond the vocabulary is the vocabulary.
    fn candidates(&self, vocab: usize) -> usize {
        if self.penalty_alpha == 0.0 {
            1
        } else {
            self.top_k.clamp(1, vocab.max(1))
        }
    }
}

/// One search in progress.
struct Search {
    alpha: f64,
    /// Candidates per step ([`ContrastiveParams::candidates`]).
    k: usize,
    out: Continuation,
    /// The distribution of the next token: the logits of the candidate chosen last.
    logits: Vec<f32>,
    /// Log-softmax of `logits`, reused from step to step.
    log_probs: Vec<f32>,
    /// This step's candidates, most probable first, with their log-probabilities.
    candidates: Vec<(u32, f32)>,
    /// The unit-length final hidden state of each generated token, `[len, n_embd]`: what the
    /// penalty compares the next candidates with, besides the prompt's. Only a search whose
    /// choice the penalty can change keeps them.
    generated: Vec<f32>,
    /// Its row in the cache and the pass that follows: the chosen candidate of the last pass.
    row: usize,
}

impl Search {
    /// Whether the penalty takes part in the choice; otherwise the choice is the most
    /// probable token, known before the candidate runs.
    fn penalised(&self) -> bool {
        self.k > 1
    }
}

/// A candidate pass's logits `[rows, vocab]`: on the host whole, on a device left there until
/// the chosen rows are known.
enum PassLogits {
    Host(Vec<f32>),
    Device(Box<Tensor<2>>),
}

impl PassLogits {
    /// Rows `rows` of the pass, in that order.
    fn rows(&self, rows: &[usize], vocab: usize) -> Vec<Vec<f32>> {
        match self {
            Self::Host(all) => rows
                .iter()
                .map(|&r| all[r * vocab..(r + 1) * vocab].to_vec())
                .collect(),
            Self::Device(all) if !rows.is_empty() => {
                let ids: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
                let ids =
                    Tensor::<1, Int>::from_data(TensorData::new(ids, [rows.len()]), &all.device());
                let chosen: Vec<f32> = all
                    .clone()
                    .select(0, ids)
                    .into_data()
                    .try_into_vec::<f32>()
                    .expect("f32 logits");
                chosen.chunks_exact(vocab).map(<[f32]>::to_vec).collect()
            }
            Self::Device(_) => Vec::new(),
        }
    }
}

impl Generator {
    /// Contrastive search from one prompt with one setting.
    pub fn contrastive_search(
        &self,
        prompt: &PreparedPrompt,
        params: ContrastiveParams,
        max_new_tokens: usize,
    ) -> Result<Continuation, GenerateError> {
        let mut found = self.contrastive_searches(prompt, &[params], max_new_tokens)?;
        Ok(found.pop().expect("one search"))
    }

    /// One continuation per entry of `params`, all searches sharing each forward batch (its
    /// rows are every running search's candidates), each finding what it finds alone, since a
    /// row's results do not depend on the rows beside it. A search stops at end-of-text (kept)
    /// or after `max_new_tokens`. `logprobs` are each chosen token's log-probability under the
    /// model's own distribution (T = 1). A NaN or infinite logit in a distribution a search
    /// reads stops them all with [`GenerateError::NonFinite`] naming its search.
    pub fn contrastive_searches(
        &self,
        prompt: &PreparedPrompt,
        params: &[ContrastiveParams],
        max_new_tokens: usize,
    ) -> Result<Vec<Continuation>, GenerateError> {
        let model = self.model();
        let (vocab, c) = (model.config.vocab_size, model.config.n_embd);
        let eos = self.eos();
        let empty = Continuation {
            tokens: Vec::new(),
            logprobs: Vec::new(),
            ended_with_eos: false,
        };
        if params.is_empty() || max_new_tokens == 0 {
            return Ok(vec![empty; params.len()]);
        }
        let mut cache = KvCache::with_capacity(prompt.tokens.len() + max_new_tokens);
        let (mut hidden, mut logits) = (Vec::new(), Vec::new());
        model.forward_with_hidden_into(
            self.tokens_tensor(&[&prompt.tokens]),
            &mut cache,
            &mut hidden,
            &mut logits,
        );
        if let Some(value) = first_non_finite(&logits) {
            return Err(GenerateError::NonFinite {
                row: 0,
                step: 0,
                value,
            });
        }
        // Every search compares its candidates with the prompt's positions: kept once.
        let prompt_hidden = unit_rows(&hidden, c);
        let mut searches: Vec<Search> = params
            .iter()
            .map(|p| Search {
                alpha: p.penalty_alpha,
                k: p.candidates(vocab),
                out: Continuation {
                    tokens: Vec::with_capacity(max_new_tokens),
                    logprobs: Vec::with_capacity(max_new_tokens),
                    ended_with_eos: false,
                },
                logits: logits.clone(),
                log_probs: vec![0.0; vocab],
                candidates: Vec::new(),
                generated: Vec::new(),
                row: 0,
            })
            .collect();
        // Searches still running, in the order of their rows in the cache.
        let mut running: Vec<usize> = (0..searches.len()).collect();
        for step in 0..max_new_tokens {
            // The candidates; a search the penalty cannot sway chooses now, and leaves before
            // the pass if that ends it.
            let checked: Vec<Result<(), f32>> = searches
                .par_iter_mut()
                .enumerate()
                .filter(|(s, _)| running.contains(s))
                .map(|(_, search)| {
                    // The prompt's logits were checked once for every search.
                    if step > 0
                        && let Some(value) = first_non_finite(&search.logits)
                    {
                        return Err(value);
                    }
                    search.find_candidates();
                    Ok(())
                })
                .collect();
            for (&s, check) in running.iter().zip(checked) {
                check.map_err(|value| GenerateError::NonFinite {
                    row: s,
                    step,
                    value,
                })?;
            }
            let mut passing = Vec::with_capacity(running.len());
            for &s in &running {
                let search = &mut searches[s];
                if !search.penalised() {
                    let (token, lp) = search.candidates[0];
                    if search.push(token, lp, eos, max_new_tokens) {
                        continue;
                    }
                }
                passing.push(s);
            }
            if passing.is_empty() {
                break;
            }
            // One pass over every candidate of every search, each after its search's row.
            let parents: Vec<usize> = passing
                .iter()
                .flat_map(|&s| std::iter::repeat_n(searches[s].row, searches[s].k))
                .collect();
            cache = if step == 0 {
                cache.repeat(parents.len())
            } else {
                cache.select(&parents)
            };
            let input: Vec<[u32; 1]> = passing
                .iter()
                .flat_map(|&s| searches[s].candidates.iter().map(|&(t, _)| [t]))
                .collect();
            let input: Vec<&[u32]> = input.iter().map(|t| &t[..]).collect();
            let pass_logits =
                self.candidate_pass(self.tokens_tensor(&input), &mut cache, &mut hidden);
            let candidate_hidden = unit_rows(&hidden, c);
            // Each search's choice among its rows, from the first row it owns.
            let mut first_rows = Vec::with_capacity(passing.len());
            let mut first = 0;
            for &s in &passing {
                first_rows.push(first);
                first += searches[s].k;
            }
            let choices: Vec<usize> = passing
                .par_iter()
                .zip(&first_rows)
                .map(|(&s, &first)| {
                    let search = &searches[s];
                    if !search.penalised() {
                        return 0;
                    }
                    let own = &candidate_hidden[first * c..(first + search.k) * c];
                    search.choose(own, &prompt_hidden, c)
                })
                .collect();
            let mut still = Vec::with_capacity(passing.len());
            let mut next_rows = Vec::with_capacity(passing.len());
            for ((&s, &first), &j) in passing.iter().zip(&first_rows).zip(&choices) {
                let search = &mut searches[s];
                search.row = first + j;
                if search.penalised() {
                    let (token, lp) = search.candidates[j];
                    search
                        .generated
                        .extend_from_slice(&candidate_hidden[(first + j) * c..(first + j + 1) * c]);
                    if search.push(token, lp, eos, max_new_tokens) {
                        continue;
                    }
                }
                still.push(s);
                next_rows.push(first + j);
            }
            for (&s, row) in still.iter().zip(pass_logits.rows(&next_rows, vocab)) {
                searches[s].logits = row;
            }
            running = still;
            if running.is_empty() {
                break;
            }
        }
        Ok(searches.into_iter().map(|s| s.out).collect())
    }

    /// Run each candidate after its row of `cache`, leaving their final hidden states
    /// (`[rows * n_embd]`) in `hidden` and returning their logits.
    fn candidate_pass(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut KvCache,
        hidden: &mut Vec<f32>,
    ) -> PassLogits {
        let model = self.model();
        if model.host.is_some() {
            let mut logits = Vec::new();
            model.forward_with_hidden_into(tokens, cache, hidden, &mut logits);
            return PassLogits::Host(logits);
        }
        let (all, logits) = model.forward_with_hidden(tokens, cache);
        *hidden = all
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 hidden states");
        PassLogits::Device(Box::new(logits))
    }
}

impl Search {
    /// This step's candidates: the `k` most probable tokens, most probable first (the first
    /// on a tie, as `torch.argmax` and `torch.topk` on the CPU take them), with their
    /// log-probabilities.
    fn find_candidates(&mut self) {
        log_softmax_into(&self.logits, &mut self.log_probs);
        let lp = &self.log_probs;
        self.candidates.clear();
        if self.k == 1 {
            let t = argmax(&self.logits);
            self.candidates.push((t as u32, lp[t]));
            return;
        }
        let logits = &self.logits;
        let order = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
        if self.k < ids.len() {
            ids.select_nth_unstable_by(self.k - 1, order);
            ids.truncate(self.k);
        }
        ids.sort_unstable_by(order);
        self.candidates
            .extend(ids.into_iter().map(|t| (t, lp[t as usize])));
    }

    /// The index of the winning candidate given their unit hidden states (`[k, n_embd]`):
    /// the largest (1 − α) p − α max cos against the prompt's and the generated positions,
    /// the first of equal scores as `torch.max` takes it.
    fn choose(&self, candidates: &[f32], prompt: &[f32], c: usize) -> usize {
        let mut best = (0, f64::NEG_INFINITY);
        for (j, (h, &(_, lp))) in candidates.chunks_exact(c).zip(&self.candidates).enumerate() {
            let penalty = prompt
                .chunks_exact(c)
                .chain(self.generated.chunks_exact(c))
                .map(|context| dot(h, context))
                .fold(f32::NEG_INFINITY, f32::max);
            let score = (1.0 - self.alpha) * (lp as f64).exp() - self.alpha * penalty as f64;
            if score > best.1 {
                best = (j, score);
            }
        }
        best.0
    }

    /// Append a chosen token; whether that ends the search.
    fn push(&mut self, token: u32, lp: f32, eos: u32, max_new_tokens: usize) -> bool {
        self.out.tokens.push(token);
        self.out.logprobs.push(lp);
        if token == eos {
            self.out.ended_with_eos = true;
        }
        token == eos || self.out.tokens.len() == max_new_tokens
    }
}

/// Each row of `rows` (`[n, c]`) scaled to unit length, so that a cosine is one dot product.
fn unit_rows(rows: &[f32], c: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows.chunks_exact(c) {
        let norm = row.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
        out.extend(row.iter().map(|&x| (x as f64 / norm) as f32));
    }
    out
}

/// Dot product in eight interleaved partial sums, which the compiler vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in ca.clone().zip(cb.clone()) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(alpha: f64, k: usize, logits: Vec<f32>) -> Search {
        Search {
            alpha,
            k,
            out: Continuation {
                tokens: Vec::new(),
                logprobs: Vec::new(),
                ended_with_eos: false,
            },
            log_probs: vec![0.0; logits.len()],
            logits,
            candidates: Vec::new(),
            generated: Vec::new(),
            row: 0,
        }
    }

    /// Candidates come most probable first, the lower id first among equals, with the
    /// log-probabilities sampling reports.
    #[test]
    fn candidates_are_the_most_probable_lowest_id_first_on_ties() {
        let logits = vec![0.5, 2.0, -1.0, 2.0, 1.0, 2.0, 0.0];
        let mut s = search(0.5, 4, logits.clone());
        s.find_candidates();
        let ids: Vec<u32> = s.candidates.iter().map(|&(t, _)| t).collect();
        assert_eq!(ids, [1, 3, 5, 4]);
        for &(t, lp) in &s.candidates {
            let want = crate::engine::sampling::log_prob(&logits, t as usize);
            assert_eq!(lp.to_bits(), want.to_bits());
        }
        let mut all = search(0.5, 7, logits);
        all.find_candidates();
        let ids: Vec<u32> = all.candidates.iter().map(|&(t, _)| t).collect();
        assert_eq!(ids, [1, 3, 5, 4, 0, 6, 2]);
    }

    /// The score by hand: two candidates, p = 0.6 and 0.4 (logits ln 0.6, ln 0.4), against a
    /// context of e0 (the prompt) and −e1, e1 (generated). Candidate 0 lies along e0 (penalty
    /// 1), candidate 1 at 45° to e1 and e2 (penalty cos 45° = 0.7071, from e1, not −e1). α = 0.1: 0.9·0.6 − 0.1 = 0.44 beats
    /// 0.9·0.4 − 0.0707 = 0.2893; α = 0.5: 0.3 − 0.5 = −0.2 loses to 0.2 − 0.3536 = −0.1536.
    #[test]
    fn the_score_trades_probability_against_the_closest_context_position() {
        let c = 3;
        let prompt = unit_rows(&[2.0, 0.0, 0.0], c);
        let generated = unit_rows(&[0.0, -3.0, 0.0, 0.0, 0.5, 0.0], c);
        let candidates = unit_rows(&[4.0, 0.0, 0.0, 0.0, 1.0, 1.0], c);
        let logits = vec![0.6f32.ln(), 0.4f32.ln()];
        for (alpha, want) in [(0.1, 0), (0.5, 1), (0.0, 0), (1.0, 1)] {
            let mut s = search(alpha, 2, logits.clone());
            s.generated = generated.clone();
            s.find_candidates();
            assert_eq!(s.choose(&candidates, &prompt, c), want, "alpha {alpha}");
        }
        // Equal scores: the first candidate, as torch.max takes it.
        let mut s = search(1.0, 2, logits);
        s.find_candidates();
        let twins = unit_rows(&[1.0, 1.0, 0.0, 1.0, 1.0, 0.0], c);
        assert_eq!(s.choose(&twins, &prompt, c), 0);
    }
}
