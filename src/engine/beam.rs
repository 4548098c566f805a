//! Beam search with the semantics of Hugging Face transformers' `generate(num_beams=..)`:
//! plain beam search and beam sampling as transformers 5 runs them, and group (diverse) beam
//! search as transformers 4.55 runs it (later releases load it from the Hub instead).
//!
//! In every variant the logits processors see the log-softmax of the model's logits, not the
//! logits (`log_probs = logits_processor(input_ids, log_softmax(logits))` in transformers), and
//! their output is what a beam accumulates: a repetition penalty multiplies a log-probability
//! (always negative) by the penalty, a temperature divides it, a filter sets it to `-inf`, and
//! nothing is renormalised afterwards. `input_ids` is the prompt as the model sees it followed
//! by that beam's tokens. The log-probabilities a [`Hypothesis`] reports are still the model's
//! own, as sampling reports them.

use rand_chacha::ChaCha20Rng;

use crate::engine::processors::{self, Processors};
use crate::engine::sampling::{sample_rng, uniform};

/// When beam search may stop before `max_new_tokens`, exactly as transformers'
/// `early_stopping` (`True`, `False`, `"never"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarlyStopping {
    /// Stop as soon as `num_beams` hypotheses have finished (`early_stopping = true`).
    Always,
    /// Stop when no running beam can beat the worst finished hypothesis, judged at the
    /// current length (`early_stopping = false`, transformers' default heuristic).
    #[default]
    Heuristic,
    /// Stop only when no running beam can beat the worst finished hypothesis at any length
    /// up to the maximum (`early_stopping = "never"`).
    Never,
}

/// Beam-search settings, named as in transformers' `generate`.
#[derive(Debug, Clone, PartialEq)]
pub struct BeamParams {
    pub num_beams: usize,
    /// A finished hypothesis scores `sum of log-probs / generated_length ^ length_penalty`;
    /// above 0 favours longer text, below 0 shorter.
    pub length_penalty: f64,
    pub early_stopping: EarlyStopping,
    pub num_return_sequences: usize,
    /// The penalties apply to every search; the truncation filters only with `sampling`.
    pub processors: Processors,
    /// Diverse beam search (Vijayakumar et al. 2016) splits the beams into this many groups,
    /// each a beam search of `num_beams / num_beam_groups` beams; 1 is plain beam search.
    pub num_beam_groups: usize,
    /// How much a group's scores drop per beam of an earlier group that chose the same token
    /// at the same step (transformers' `HammingDiversityLogitsProcessor`): positive with
    /// groups, 0 without.
    pub diversity_penalty: f64,
    /// Beam sampling: candidates are drawn instead of taken best first.
    pub sampling: Option<BeamSampling>,
}

/// Beam sampling (`do_sample = True` with `num_beams > 1`): each step draws `2 · num_beams`
/// continuations without replacement, in proportion to their accumulated processed scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeamSampling {
    pub temperature: f64,
    /// 0 is off.
    pub top_k: usize,
    /// 1 is off.
    pub top_p: f64,
    /// With the prompt's index, names the search's random stream (see
    /// [`sample_rng`](crate::engine::sampling::sample_rng)).
    pub seed: u64,
}

/// Settings transformers refuses, and so do we.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BeamParamsError {
    #[error("num_beams must be at least 1")]
    NoBeams,
    #[error("num_beam_groups = {groups} must divide num_beams = {beams}")]
    GroupsDoNotDivide { groups: usize, beams: usize },
    #[error("group beam search cannot sample (do_sample with num_beam_groups > 1)")]
    SampledGroups,
    /// transformers refuses both: groups without a penalty would be identical, and a
    /// penalty without groups has nothing to compare.
    #[error(
        "num_beam_groups > 1 needs a positive diversity_penalty, and a diversity_penalty needs \
         num_beam_groups > 1 (num_beam_groups = {groups}, diversity_penalty = {penalty})"
    )]
    Diversity { groups: usize, penalty: f64 },
    #[error("num_return_sequences = {asked} is more than num_beams = {beams}")]
    TooManyReturned { asked: usize, beams: usize },
    #[error("beam sampling needs a positive temperature, not {0}")]
    Temperature(f64),
}

impl BeamParams {
    pub fn new(num_beams: usize) -> Self {
        Self {
            num_beams,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Heuristic,
            num_return_sequences: 1,
            processors: Processors::OFF,
            num_beam_groups: 1,
            diversity_penalty: 0.0,
            sampling: None,
        }
    }

    pub fn check(&self) -> Result<(), BeamParamsError> {
        if self.num_beams == 0 {
            return Err(BeamParamsError::NoBeams);
        }
        if self.num_beam_groups == 0 || !self.num_beams.is_multiple_of(self.num_beam_groups) {
            return Err(BeamParamsError::GroupsDoNotDivide {
                groups: self.num_beam_groups,
                beams: self.num_beams,
            });
        }
        if self.num_beam_groups > 1 && self.sampling.is_some() {
            return Err(BeamParamsError::SampledGroups);
        }
        let grouped = self.num_beam_groups > 1;
        if grouped != (self.diversity_penalty > 0.0) || self.diversity_penalty.is_nan() {
            return Err(BeamParamsError::Diversity {
                groups: self.num_beam_groups,
                penalty: self.diversity_penalty,
            });
        }
        if self.num_return_sequences > self.num_beams {
            return Err(BeamParamsError::TooManyReturned {
                asked: self.num_return_sequences,
                beams: self.num_beams,
            });
        }
        if let Some(s) = self.sampling
            && (s.temperature.is_nan() || s.temperature <= 0.0)
        {
            return Err(BeamParamsError::Temperature(s.temperature));
        }
        Ok(())
    }
}

/// A finished beam.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    /// Generated tokens, ending with end-of-text when that finished it.
    pub tokens: Vec<u32>,
    /// Each token's log-probability under the model (T = 1, no filtering).
    pub logprobs: Vec<f32>,
    /// The length-penalised score beams are ranked by (transformers' `sequences_scores`): the
    /// sum of the processed scores (log-probabilities after any penalty, temperature or
    /// diversity penalty) over the generated length to the `length_penalty`.
    pub score: f32,
    pub ended_with_eos: bool,
}

/// What the model must run next: for each new beam, the old beam it continues (to reorder
/// the KV cache) and the token it appends.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub parents: Vec<usize>,
    pub tokens: Vec<u32>,
}

/// Masks out candidates, as transformers adds −1e9 in f32 rather than removing them.
const MASK: f32 = -1.0e9;

#[derive(Debug, Clone)]
struct Beam {
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    score: f32,
}

#[derive(Debug, Clone)]
struct Slot {
    beam: Beam,
    score: f32,
    finished: bool,
}

/// The best `keep` continuations `(score, beam, token)` over all beams, best first: by
/// accumulated log-probability `logprobs[beam][token] + scores[beam]` (in f32), then beam, then
/// token. A beam contributes at most `keep` of them, its own best in that order, so each row
/// is scanned once for those instead of every (beam, token) pair being collected and
/// partially sorted.
fn best_continuations(
    logprobs: &[f32],
    vocab: usize,
    scores: &[f32],
    keep: usize,
) -> Vec<(f32, usize, u32)> {
    let mut candidates: Vec<(f32, usize, u32)> = Vec::with_capacity(scores.len() * keep + 1);
    for (b, &score) in scores.iter().enumerate() {
        let row = &logprobs[b * vocab..(b + 1) * vocab];
        // This row's best so far, best first. Tokens come in ascending order, so a newcomer
        // loses every tie and enters only with a strictly higher score than the last kept.
        let mut best: Vec<(f32, usize, u32)> = Vec::with_capacity(keep + 1);
        for (t, &lp) in row.iter().enumerate() {
            let s = lp + score;
            if best.len() == keep {
                if s.total_cmp(&best[keep - 1].0).is_le() {
                    continue;
                }
                best.pop();
            }
            let c = (s, b, t as u32);
            let at = best.partition_point(|x| by_score(x, &c).is_lt());
            best.insert(at, c);
        }
        candidates.extend(best);
    }
    candidates.sort_by(by_score);
    candidates.truncate(keep);
    candidates
}

/// What the logits processors make of one beam's row of log-probabilities, in place: the
/// penalties (with `context`, the prompt as the model sees it then the beam's tokens, whose
/// generated part starts at `prompt_len`), then with sampling the warpers.
pub fn process_row(params: &BeamParams, row: &mut [f32], context: &[u32], prompt_len: usize) {
    let knobs = &params.processors;
    if knobs.penalises() {
        processors::penalise(row, knobs, context, prompt_len);
    }
    if let Some(sampling) = &params.sampling {
        warp(row, sampling, knobs);
    }
}

/// transformers keeps at least this many tokens in every warper of a beam sampling search
/// (`min_tokens_to_keep = 1 + number of end-of-text ids`), so that a beam can always continue
/// with something other than end-of-text.
const BEAM_MIN_KEEP: usize = 2;

/// The sampling warpers in transformers' order (`_get_logits_processor`): temperature, top-k,
/// top-p, min-p, typical, ε, η, each keeping [`BEAM_MIN_KEEP`] tokens the way that warper
/// chooses them; then top-nσ, which transformers lacks (see [`processors::warp`]).
/// `temperature_last` moves the temperature after every filter, as in sampling.
fn warp(row: &mut [f32], sampling: &BeamSampling, knobs: &Processors) {
    if !knobs.temperature_last {
        processors::divide(row, sampling.temperature);
    }
    if sampling.top_k > 0 {
        processors::top_k(row, sampling.top_k.max(BEAM_MIN_KEEP));
    }
    if sampling.top_p < 1.0 {
        keeping(row, largest_two, |r| processors::top_p(r, sampling.top_p));
    }
    if knobs.min_p > 0.0 {
        keeping(row, largest_two, |r| {
            processors::min_p(r, knobs.min_p as f32)
        });
    }
    if knobs.typical_p < 1.0 {
        keeping(row, most_typical_two, |r| {
            processors::typical(r, knobs.typical_p as f32)
        });
    }
    if knobs.epsilon_cutoff > 0.0 {
        keeping(row, up_to_second, |r| {
            processors::epsilon(r, knobs.epsilon_cutoff as f32)
        });
    }
    if knobs.eta_cutoff > 0.0 {
        keeping(row, up_to_second, |r| {
            processors::eta(r, knobs.eta_cutoff as f32)
        });
    }
    if knobs.top_n_sigma > 0.0 {
        processors::top_n_sigma(row, knobs.top_n_sigma as f32);
    }
    if knobs.temperature_last {
        processors::divide(row, sampling.temperature);
    }
}

/// Run `filter` on `row`, then give back the tokens `protected` names in the row as it was.
fn keeping(row: &mut [f32], protected: fn(&[f32]) -> Vec<usize>, filter: impl FnOnce(&mut [f32])) {
    let before = row.to_vec();
    filter(row);
    for i in protected(&before) {
        row[i] = before[i];
    }
}

/// The two largest values, as the last two of a stable ascending sort (top-p's
/// `sorted_indices_to_remove[..., -min_tokens_to_keep:] = 0`; min-p sorts descending, and
/// differs only on exact ties): of equal values the later index ranks higher.
fn largest_two(row: &[f32]) -> Vec<usize> {
    let mut best: Vec<usize> = Vec::with_capacity(BEAM_MIN_KEEP + 1);
    for (i, &x) in row.iter().enumerate() {
        let at = best.partition_point(|&j| row[j].total_cmp(&x).is_gt());
        if at < BEAM_MIN_KEEP {
            best.insert(at, i);
            best.truncate(BEAM_MIN_KEEP);
        }
    }
    best
}

/// Every token at least the second-largest value (ε and η: `scores < topk(scores,
/// min_tokens_to_keep)[0][..., -1]` is the only way to be removed).
fn up_to_second(row: &[f32]) -> Vec<usize> {
    let Some(&second) = largest_two(row).get(BEAM_MIN_KEEP - 1) else {
        return (0..row.len()).collect();
    };
    let second = row[second];
    (0..row.len()).filter(|&i| row[i] >= second).collect()
}

/// The two tokens whose surprisal is closest to the row's entropy (typical sampling keeps the
/// first `min_tokens_to_keep` of that order).
fn most_typical_two(row: &[f32]) -> Vec<usize> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return Vec::new();
    }
    let total: f64 = row.iter().map(|&l| (l as f64 - max as f64).exp()).sum();
    let log_probs: Vec<f64> = row
        .iter()
        .map(|&l| l as f64 - max as f64 - total.ln())
        .collect();
    let entropy: f64 = -log_probs
        .iter()
        .filter(|lp| lp.is_finite())
        .map(|&lp| lp.exp() * lp)
        .sum::<f64>();
    let distance: Vec<f64> = log_probs.iter().map(|&lp| (-lp - entropy).abs()).collect();
    let mut closest: Vec<usize> = Vec::with_capacity(BEAM_MIN_KEEP + 1);
    for (i, d) in distance.iter().enumerate() {
        let at = closest.partition_point(|&j| distance[j].total_cmp(d).is_le());
        if at < BEAM_MIN_KEEP {
            closest.insert(at, i);
            closest.truncate(BEAM_MIN_KEEP);
        }
    }
    closest
}

/// `count` distinct indices of `scores` drawn without replacement, each draw in proportion to
/// `exp(score)` among those not yet drawn, in the order drawn: the distribution of transformers'
/// `torch.multinomial(softmax(scores), count)` (torch draws all at once by exponential races,
/// which gives the same successive-sampling law, but its draws cannot be reproduced here).
/// Each draw takes one uniform from `rng`. When fewer than `count` scores have a positive
/// weight (a `-inf`, or a score ~1e9 below the best), the rest are the best remaining by score,
/// ties to the lower index, where torch's choice among zero weights is arbitrary.
pub fn draw_without_replacement(scores: &[f32], count: usize, rng: &mut ChaCha20Rng) -> Vec<usize> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut weights: Vec<f64> = scores
        .iter()
        .map(|&s| {
            if max.is_finite() {
                (s as f64 - max).exp()
            } else {
                0.0
            }
        })
        .collect();
    let mut drawn = Vec::with_capacity(count);
    while drawn.len() < count.min(scores.len()) {
        let total: f64 = weights.iter().sum();
        if total > 0.0 {
            let target = uniform(rng) * total;
            let mut acc = 0.0;
            // Rounding can leave `target` a hair above the last partial sum: the last token of
            // positive weight takes it.
            let mut pick = weights
                .iter()
                .rposition(|&w| w > 0.0)
                .expect("positive mass");
            for (i, &w) in weights.iter().enumerate() {
                acc += w;
                if w > 0.0 && target < acc {
                    pick = i;
                    break;
                }
            }
            weights[pick] = 0.0;
            drawn.push(pick);
        } else {
            let rest = (0..scores.len())
                .filter(|i| !drawn.contains(i))
                .min_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)))
                .expect("an index left");
            drawn.push(rest);
        }
    }
    drawn
}

/// Best first by score, then by beam and token.
fn by_score(a: &(f32, usize, u32), b: &(f32, usize, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2)))
}

/// Beam sampling's candidates: `keep` continuations `(score, beam, token)` drawn without
/// replacement by accumulated score `scores[beam] + processed[beam][token]` (f32), then
/// sorted best first as transformers sorts them.
fn sampled_continuations(
    processed: &[f32],
    vocab: usize,
    scores: &[f32],
    keep: usize,
    rng: &mut ChaCha20Rng,
) -> Vec<(f32, usize, u32)> {
    let accumulated: Vec<f32> = processed
        .chunks(vocab)
        .zip(scores)
        .flat_map(|(row, &s)| row.iter().map(move |&l| l + s))
        .collect();
    let mut candidates: Vec<(f32, usize, u32)> = draw_without_replacement(&accumulated, keep, rng)
        .into_iter()
        .map(|i| (accumulated[i], i / vocab, (i % vocab) as u32))
        .collect();
    candidates.sort_by(by_score);
    candidates
}

/// The beam-search state machine, independent of the model: fed each step's log-probabilities
/// of the running beams, it says which beams continue with which token.
///
/// With one group it follows transformers' vectorised beam search (5.x) step for step, in f32
/// as it does: each step keeps the best `2 · num_beams` continuations over all beams (or draws
/// them, with sampling); those that end (on end-of-text, or on reaching `max_new_tokens`) and
/// rank among the first `num_beams` enter the pool of finished hypotheses, scored by
/// `sum_logprobs / generated_len^length_penalty` where `generated_len` counts the new token;
/// the best `num_beams` that did not end run on. Search stops when the pool can no longer
/// improve (per `early_stopping`), when the pool is full and `early_stopping` is `Always`, or
/// at `max_new_tokens`.
///
/// With several groups it follows transformers 4.55's `_group_beam_search` and its
/// `BeamSearchScorer`, whose bookkeeping differs: see [`Group`].
pub struct BeamSearch {
    params: BeamParams,
    /// The prompt as the model sees it, the start of every beam's context.
    prompt: Vec<u32>,
    max_new_tokens: usize,
    eos: u32,
    rng: Option<ChaCha20Rng>,
    generated: usize,
    state: State,
}

enum State {
    Joint {
        running: Vec<Beam>,
        pool: Vec<Slot>,
        improvement_possible: bool,
    },
    Groups(Vec<Group>),
}

/// One group of a diverse beam search, with the legacy `BeamHypotheses` bookkeeping: a list of
/// at most `group_size` finished hypotheses in the order they were added, scored in f64 from
/// the f32 sum; a new one enters while the list is short or when it beats the worst, which then
/// leaves. An end-of-text candidate ranked at or beyond `group_size` is dropped; the first
/// `group_size` other candidates run on. A group is done when its list is full and (per
/// `early_stopping`) the best candidate of the step cannot beat the worst; a done group stays
/// done, and its beams only mark time (choosing end-of-text, which later groups' diversity
/// penalty sees, as transformers pads them). At `max_new_tokens` the running beams of the
/// groups not done are added as they are.
struct Group {
    running: Vec<Beam>,
    finished: Vec<(f64, Beam)>,
    worst: f64,
    done: bool,
}

impl Group {
    fn add(&mut self, beam: Beam, sum: f64, generated: usize, params: &BeamParams, size: usize) {
        let score = sum / (generated as f64).powf(params.length_penalty);
        if self.finished.len() < size || score > self.worst {
            self.finished.push((score, beam));
            if self.finished.len() > size {
                let mut order: Vec<usize> = (0..self.finished.len()).collect();
                order.sort_by(|&a, &b| {
                    self.finished[a]
                        .0
                        .total_cmp(&self.finished[b].0)
                        .then(a.cmp(&b))
                });
                self.worst = self.finished[order[1]].0;
                self.finished.remove(order[0]);
            } else {
                self.worst = self.worst.min(score);
            }
        }
    }

    fn is_done(
        &self,
        best: f64,
        generated: usize,
        max_new_tokens: usize,
        params: &BeamParams,
        size: usize,
    ) -> bool {
        if self.finished.len() < size {
            return false;
        }
        let lp = params.length_penalty;
        let attainable = match params.early_stopping {
            EarlyStopping::Always => return true,
            EarlyStopping::Never if lp > 0.0 => best / (max_new_tokens as f64).powf(lp),
            _ => best / (generated as f64).powf(lp),
        };
        self.worst >= attainable
    }
}

/// Beams that all start as the prompt: only the first of each `size` may expand at the first
/// step, or it would pick the same continuation `size` times.
fn starting_beams(n: usize, size: usize) -> Vec<Beam> {
    (0..n)
        .map(|i| Beam {
            tokens: Vec::new(),
            logprobs: Vec::new(),
            score: if i % size == 0 { 0.0 } else { MASK },
        })
        .collect()
}

/// `beam` followed by `token`, whose raw log-probability is `logprob`, scored `score`.
fn extended(beam: &Beam, token: u32, logprob: f32, score: f32) -> Beam {
    let mut tokens = Vec::with_capacity(beam.tokens.len() + 1);
    tokens.extend_from_slice(&beam.tokens);
    tokens.push(token);
    let mut logprobs = Vec::with_capacity(beam.logprobs.len() + 1);
    logprobs.extend_from_slice(&beam.logprobs);
    logprobs.push(logprob);
    Beam {
        tokens,
        logprobs,
        score,
    }
}

impl BeamSearch {
    /// A search from `prompt` (the tokens the model sees). `prompt_index` names, with the
    /// sampling seed, the random stream of a beam sampling search: stream
    /// `sample_rng(seed, prompt_index, 0)`, one per search.
    pub fn new(
        params: BeamParams,
        prompt: &[u32],
        prompt_index: u32,
        max_new_tokens: usize,
        eos: u32,
    ) -> Result<Self, BeamParamsError> {
        params.check()?;
        let n = params.num_beams;
        let state = if params.num_beam_groups > 1 {
            let size = n / params.num_beam_groups;
            State::Groups(
                (0..params.num_beam_groups)
                    .map(|_| Group {
                        running: starting_beams(size, size),
                        finished: Vec::new(),
                        worst: 1e9,
                        done: false,
                    })
                    .collect(),
            )
        } else {
            let running = starting_beams(n, n);
            let pool = (0..n)
                .map(|_| Slot {
                    beam: running[0].clone(),
                    score: MASK,
                    finished: false,
                })
                .collect();
            State::Joint {
                running,
                pool,
                improvement_possible: true,
            }
        };
        Ok(Self {
            rng: params.sampling.map(|s| sample_rng(s.seed, prompt_index, 0)),
            params,
            prompt: prompt.to_vec(),
            max_new_tokens,
            eos,
            generated: 0,
            state,
        })
    }

    /// Whether the processors change a row at all.
    fn processes(&self) -> bool {
        self.params.processors.penalises() || self.params.sampling.is_some()
    }

    /// Run the processors on the rows of `beams`, in place.
    fn process(&self, beams: &[Beam], rows: &mut [f32], vocab: usize) {
        let mut context = self.prompt.clone();
        for (beam, row) in beams.iter().zip(rows.chunks_mut(vocab)) {
            context.truncate(self.prompt.len());
            context.extend_from_slice(&beam.tokens);
            process_row(&self.params, row, &context, self.prompt.len());
        }
    }

    /// Advance by one token. `logprobs` is `[num_beams, vocab]`, row `b` the log-softmax of
    /// running beam `b`'s next-token logits. Returns `None` when the search has ended.
    pub fn step(&mut self, logprobs: &[f32], vocab: usize) -> Option<Step> {
        if matches!(self.state, State::Groups(_)) {
            self.step_groups(logprobs, vocab)
        } else {
            self.step_joint(logprobs, vocab)
        }
    }

    fn step_joint(&mut self, logprobs: &[f32], vocab: usize) -> Option<Step> {
        let n = self.params.num_beams;
        let keep = 2 * n;
        let generated = self.generated + 1;
        let at_max = generated >= self.max_new_tokens;
        let State::Joint { running, .. } = &self.state else {
            unreachable!("a joint search")
        };
        let scores: Vec<f32> = running.iter().map(|beam| beam.score).collect();
        let processed = self.processes().then(|| {
            let mut rows = logprobs.to_vec();
            self.process(running, &mut rows, vocab);
            rows
        });
        let processed = processed.as_deref().unwrap_or(logprobs);
        let candidates = match &mut self.rng {
            Some(rng) => sampled_continuations(processed, vocab, &scores, keep, rng),
            None => best_continuations(processed, vocab, &scores, keep),
        };
        let State::Joint {
            running,
            pool,
            improvement_possible,
        } = &mut self.state
        else {
            unreachable!("a joint search")
        };
        let ended: Vec<bool> = candidates
            .iter()
            .map(|&(_, _, t)| at_max || t == self.eos)
            .collect();
        let extend = |&(score, b, t): &(f32, usize, u32)| {
            extended(&running[b], t, logprobs[b * vocab + t as usize], score)
        };

        // Finished hypotheses: only those ranked among the first `num_beams` may enter.
        let penalty = (generated as f64).powf(self.params.length_penalty) as f32;
        let pool_full = pool.iter().all(|s| s.finished);
        let mut merged: Vec<Slot> = pool.clone();
        for (i, c) in candidates.iter().enumerate() {
            let enters = ended[i] && i < n;
            let mut score = c.0 / penalty;
            if pool_full && self.params.early_stopping == EarlyStopping::Always {
                score += MASK;
            }
            if !*improvement_possible {
                score += MASK;
            }
            if !enters {
                score += MASK;
            }
            merged.push(Slot {
                beam: extend(c),
                score,
                finished: enters,
            });
        }
        let mut order: Vec<usize> = (0..merged.len()).collect();
        order.sort_by(|&a, &b| merged[b].score.total_cmp(&merged[a].score).then(a.cmp(&b)));
        *pool = order[..n].iter().map(|&i| merged[i].clone()).collect();

        // Beams that run on: the best `num_beams` continuations that did not end.
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        let running_score = |i: usize| candidates[i].0 + if ended[i] { MASK } else { 0.0 };
        order.sort_by(|&a, &b| {
            running_score(b)
                .total_cmp(&running_score(a))
                .then(a.cmp(&b))
        });
        let parents: Vec<usize> = order[..n].iter().map(|&i| candidates[i].1).collect();
        let next: Vec<Beam> = order[..n]
            .iter()
            .map(|&i| {
                let mut beam = extend(&candidates[i]);
                beam.score = running_score(i);
                beam
            })
            .collect();
        *running = next;
        self.generated = generated;

        // Could a running beam still beat the worst finished hypothesis?
        let best_len = if self.params.early_stopping == EarlyStopping::Never
            && self.params.length_penalty > 0.0
        {
            self.max_new_tokens
        } else {
            generated
        };
        let best_possible =
            running[0].score / (best_len as f64).powf(self.params.length_penalty) as f32;
        let worst = pool.iter().map(|s| s.score).fold(f32::INFINITY, f32::min);
        let beatable = pool
            .iter()
            .any(|s| best_possible > if s.finished { worst } else { MASK });
        *improvement_possible &= beatable;

        let pool_full = pool.iter().all(|s| s.finished);
        let stop = !*improvement_possible
            || (pool_full && self.params.early_stopping == EarlyStopping::Always)
            || ended.iter().all(|&e| e);
        if stop {
            return None;
        }
        Some(Step {
            parents,
            tokens: running
                .iter()
                .map(|b| *b.tokens.last().expect("one token"))
                .collect(),
        })
    }

    /// One step of every group in turn, each group's scores lowered for the tokens the groups
    /// before it chose at this step.
    fn step_groups(&mut self, logprobs: &[f32], vocab: usize) -> Option<Step> {
        let n = self.params.num_beams;
        let size = n / self.params.num_beam_groups;
        let generated = self.generated + 1;
        let State::Groups(groups) = &mut self.state else {
            unreachable!("a group search")
        };
        let mut groups = std::mem::take(groups);
        let mut parents = Vec::with_capacity(n);
        let mut tokens: Vec<u32> = Vec::with_capacity(n);
        for (g, group) in groups.iter_mut().enumerate() {
            let first = g * size;
            if group.done {
                parents.extend(std::iter::repeat_n(first, size));
                tokens.extend(std::iter::repeat_n(self.eos, size));
                continue;
            }
            let own = &logprobs[first * vocab..(first + size) * vocab];
            // transformers 4.55 runs the diversity penalty before every other processor, and
            // only when it is positive.
            let mut rows = own.to_vec();
            if self.params.diversity_penalty > 0.0 && g > 0 {
                diversity(&mut rows, vocab, &tokens, self.params.diversity_penalty);
            }
            if self.processes() {
                self.process(&group.running, &mut rows, vocab);
            }
            let scores: Vec<f32> = group.running.iter().map(|b| b.score).collect();
            let candidates = best_continuations(&rows, vocab, &scores, 2 * size);
            let mut next: Vec<(f32, usize, u32)> = Vec::with_capacity(size);
            for (rank, &(score, b, t)) in candidates.iter().enumerate() {
                if t == self.eos {
                    if rank < size {
                        let lp = own[b * vocab + t as usize];
                        let beam = extended(&group.running[b], t, lp, score);
                        group.add(beam, score as f64, generated, &self.params, size);
                    }
                } else {
                    next.push((score, b, t));
                }
                if next.len() == size {
                    break;
                }
            }
            // `2 · size` candidates hold at most `size` end-of-text tokens, one per beam.
            assert_eq!(next.len(), size, "too few candidates to run on");
            let best = candidates[0].0 as f64;
            group.done = group.is_done(best, generated, self.max_new_tokens, &self.params, size);
            parents.extend(next.iter().map(|&(_, b, _)| first + b));
            tokens.extend(next.iter().map(|&(_, _, t)| t));
            group.running = next
                .iter()
                .map(|&(score, b, t)| {
                    extended(&group.running[b], t, own[b * vocab + t as usize], score)
                })
                .collect();
        }
        let all_done = groups.iter().all(|g| g.done);
        self.state = State::Groups(groups);
        self.generated = generated;
        if all_done || generated >= self.max_new_tokens {
            return None;
        }
        Some(Step { parents, tokens })
    }

    /// The best `num_return_sequences` finished hypotheses, best first.
    pub fn finish(self) -> Vec<Hypothesis> {
        let eos = self.eos;
        let hypothesis = |beam: Beam, score: f32| Hypothesis {
            ended_with_eos: beam.tokens.last() == Some(&eos),
            tokens: beam.tokens,
            logprobs: beam.logprobs,
            score,
        };
        match self.state {
            State::Joint { pool, .. } => pool
                .into_iter()
                .filter(|s| s.finished)
                .take(self.params.num_return_sequences)
                .map(|s| hypothesis(s.beam, s.score))
                .collect(),
            State::Groups(mut groups) => {
                let size = self.params.num_beams / self.params.num_beam_groups;
                for group in groups.iter_mut().filter(|g| !g.done) {
                    for beam in std::mem::take(&mut group.running) {
                        let sum = beam.score as f64;
                        let len = beam.tokens.len();
                        group.add(beam, sum, len, &self.params, size);
                    }
                }
                // Python's stable ascending sort, read from the end: among equal scores the
                // one added last comes first.
                let mut all: Vec<(f64, Beam)> =
                    groups.into_iter().flat_map(|g| g.finished).collect();
                let mut order: Vec<usize> = (0..all.len()).collect();
                order.sort_by(|&a, &b| all[b].0.total_cmp(&all[a].0).then(b.cmp(&a)));
                order.truncate(self.params.num_return_sequences);
                order
                    .into_iter()
                    .map(|i| {
                        let (score, beam) = std::mem::replace(
                            &mut all[i],
                            (
                                0.0,
                                Beam {
                                    tokens: Vec::new(),
                                    logprobs: Vec::new(),
                                    score: 0.0,
                                },
                            ),
                        );
                        hypothesis(beam, score as f32)
                    })
                    .collect()
            }
        }
    }
}

/// transformers' `HammingDiversityLogitsProcessor`: every row of a group loses
/// `penalty · count` on each token, `count` being how many beams of the earlier groups chose
/// it at this step (`earlier`). In f32, as transformers computes it.
fn diversity(rows: &mut [f32], vocab: usize, earlier: &[u32], penalty: f64) {
    let mut counts = vec![0u32; vocab];
    for &t in earlier {
        if let Some(c) = counts.get_mut(t as usize) {
            *c += 1;
        }
    }
    let penalty = penalty as f32;
    for row in rows.chunks_mut(vocab) {
        for (l, &c) in row.iter_mut().zip(&counts) {
            if c > 0 {
                *l -= penalty * c as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the plain definition (every pair collected, sorted, cut), on rows with ties,
    /// a masked beam (whose scores collapse to a few f32 values) and a beam of -inf.
    #[test]
    fn best_continuations_are_the_best_of_all_pairs() {
        let vocab = 300;
        let scores = [0.0f32, -3.5, MASK, -0.25, f32::NEG_INFINITY];
        let mut logprobs = Vec::new();
        for b in 0..scores.len() {
            logprobs.extend((0..vocab).map(|t| -(((t * 37 + b * 11) % 97) as f32) / 9.0));
        }
        for keep in [1, 2, 6, 16, 40, 297] {
            let mut all: Vec<(f32, usize, u32)> = (0..scores.len())
                .flat_map(|b| (0..vocab).map(move |t| (b, t)))
                .map(|(b, t)| (logprobs[b * vocab + t] + scores[b], b, t as u32))
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
            all.truncate(keep);
            let got = best_continuations(&logprobs, vocab, &scores, keep);
            let bits = |v: &[(f32, usize, u32)]| -> Vec<(u32, usize, u32)> {
                v.iter().map(|&(s, b, t)| (s.to_bits(), b, t)).collect()
            };
            assert_eq!(bits(&got), bits(&all), "keep = {keep}");
        }
    }

    fn removed(row: &[f32]) -> Vec<usize> {
        (0..row.len())
            .filter(|&i| row[i] == f32::NEG_INFINITY)
            .collect()
    }

    fn sampling(temperature: f64, top_k: usize, top_p: f64) -> BeamSampling {
        BeamSampling {
            temperature,
            top_k,
            top_p,
            seed: 0,
        }
    }

    /// transformers' beam sampling keeps two tokens in every warper (`min_tokens_to_keep = 2`
    /// with one end-of-text id), each the way that warper ranks tokens.
    #[test]
    fn beam_sampling_filters_keep_two_tokens() {
        // Probabilities 0.7, 0.2, 0.06, 0.04, as log-probabilities, as the processors see them.
        let row: Vec<f32> = [0.7f64, 0.2, 0.06, 0.04]
            .iter()
            .map(|p| p.ln() as f32)
            .collect();
        let warped = |s: BeamSampling, knobs: Processors| {
            let mut r = row.clone();
            warp(&mut r, &s, &knobs);
            r
        };
        // top-k 1 is top-k 2; top-p 0.1 keeps the best two; min-p 0.9, ε 0.5 and η 0.9 too.
        assert_eq!(
            removed(&warped(sampling(1.0, 1, 1.0), Processors::OFF)),
            [2, 3]
        );
        assert_eq!(
            removed(&warped(sampling(1.0, 0, 0.1), Processors::OFF)),
            [2, 3]
        );
        for knobs in [
            Processors {
                min_p: 0.9,
                ..Processors::OFF
            },
            Processors {
                epsilon_cutoff: 0.5,
                ..Processors::OFF
            },
            Processors {
                eta_cutoff: 0.9,
                ..Processors::OFF
            },
        ] {
            assert_eq!(
                removed(&warped(sampling(1.0, 0, 1.0), knobs)),
                [2, 3],
                "{knobs:?}"
            );
        }
        // Typical keeps the two tokens whose surprisal is closest to the entropy (H ≈ 0.887
        // nats): token 0 (0.357 away) and token 1 (0.722), not by probability.
        let typical = Processors {
            typical_p: 1e-6,
            ..Processors::OFF
        };
        assert_eq!(removed(&warped(sampling(1.0, 0, 1.0), typical)), [2, 3]);
        // The survivors are divided by the temperature and not renormalised.
        let hot = warped(sampling(2.0, 1, 1.0), Processors::OFF);
        assert_eq!(hot[0], row[0] / 2.0);
        assert_eq!(hot[1], row[1] / 2.0);
    }

    /// Typical sampling's second token need not be the second most probable.
    #[test]
    fn typical_keeps_the_two_closest_to_the_entropy() {
        // Probabilities 0.5, 0.3, 0.1, 0.1: H ≈ 1.168; surprisals 0.693, 1.204, 2.303, 2.303;
        // distances 0.475, 0.036, 1.135, 1.135: tokens 1 and 0.
        let row: Vec<f32> = [0.5f64, 0.3, 0.1, 0.1]
            .iter()
            .map(|p| p.ln() as f32)
            .collect();
        assert_eq!(most_typical_two(&row), [1, 0]);
        let row: Vec<f32> = [0.05f64, 0.05, 0.3, 0.6]
            .iter()
            .map(|p| p.ln() as f32)
            .collect();
        // H ≈ 0.999; distances 2.00, 2.00, 0.205, 0.488: tokens 2 and 3.
        assert_eq!(most_typical_two(&row), [2, 3]);
        // Ties: the later of two equal maxima ranks first, as in a stable ascending sort read
        // from the end; ε and η keep every token tied with the second.
        assert_eq!(largest_two(&[1.0, 3.0, 3.0, 2.0]), [2, 1]);
        assert_eq!(up_to_second(&[2.0, 3.0, 1.0, 2.0]), [0, 1, 3]);
    }

    /// Draws are distinct, never of zero weight while weight remains, and then the best of
    /// what is left.
    #[test]
    fn drawing_without_replacement_exhausts_the_weight_first() {
        let scores = [0.0, f32::NEG_INFINITY, -1.0, MASK, -0.5, f32::NEG_INFINITY];
        for seed in 0..50 {
            let mut rng = sample_rng(seed, 0, 0);
            let picks = draw_without_replacement(&scores, 6, &mut rng);
            let mut first: Vec<usize> = picks[..3].to_vec();
            first.sort();
            assert_eq!(first, [0, 2, 4]);
            assert_eq!(&picks[3..], [3, 1, 5]);
        }
    }

    /// The legacy hypothesis list: the worst leaves when a better one comes, and `worst` is
    /// then the second worst; a full list beats nothing it cannot.
    #[test]
    fn group_hypotheses_keep_the_best_of_their_size() {
        let params = BeamParams {
            length_penalty: 1.0,
            ..BeamParams::new(2)
        };
        let beam = |t: u32| Beam {
            tokens: vec![t],
            logprobs: vec![0.0],
            score: 0.0,
        };
        let mut group = Group {
            running: Vec::new(),
            finished: Vec::new(),
            worst: 1e9,
            done: false,
        };
        group.add(beam(1), -4.0, 2, &params, 2);
        group.add(beam(2), -3.0, 1, &params, 2);
        assert_eq!(group.worst, -3.0);
        group.add(beam(3), -8.0, 2, &params, 2);
        assert_eq!(group.finished.len(), 2);
        group.add(beam(4), -1.0, 1, &params, 2);
        let kept: Vec<u32> = group.finished.iter().map(|(_, b)| b.tokens[0]).collect();
        assert_eq!(kept, [1, 4]);
        assert_eq!(group.worst, -2.0);
        // Heuristic: a best candidate of -5.0 over 2 tokens (-2.5) cannot beat -2.0: done;
        // -3.0 (-1.5) could.
        assert!(group.is_done(-5.0, 2, 10, &params, 2));
        assert!(!group.is_done(-3.0, 2, 10, &params, 2));
        // "never" with a positive length penalty judges at the longest length: -3.0 / 10.
        let never = BeamParams {
            early_stopping: EarlyStopping::Never,
            ..params.clone()
        };
        assert!(!group.is_done(-5.0, 2, 10, &never, 2));
    }
}
