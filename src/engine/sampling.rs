//! The sampling pipeline, one function per stage in the order the textbook (and transformers'
//! `generate`) applies them:
//!
//! temperature → softmax → top-k → renormalise → top-p → renormalise → draw.
//!
//! Everything here works on one row of logits read back from the model, so it is independent
//! of the model and of the backend. [`filtered_distribution`] is the plain reference: each
//! stage a separate full-vocabulary pass. [`sample_token`] draws from exactly that
//! distribution without materialising it — partial selection instead of a vocabulary sort —
//! and is what generation runs.

use crate::engine::kernels::exponential;
use crate::engine::processors;
pub use crate::engine::processors::Processors;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// One sampling setting. `temperature == 0` means greedy (argmax); `top_k == 0` and
/// `top_p == 1.0` switch those filters off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    pub temperature: f64,
    pub top_k: usize,
    pub top_p: f64,
    /// Penalties and the other truncation filters; with all of them off a row takes the
    /// fast path of [`sample_token`], which never materialises the filtered row.
    pub processors: Processors,
}

impl SamplingParams {
    pub const GREEDY: Self = Self {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        processors: Processors::OFF,
    };

    /// Pure ancestral sampling: T = 1, no filters.
    pub const PURE: Self = Self {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        processors: Processors::OFF,
    };

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// The random stream of one sample.
///
/// A sample's stream depends only on `(seed, prompt_index, sample_index)`, never on batch
/// composition, thread count or the order settings run in, so any sample can be regenerated
/// alone. ChaCha20 is a fixed, documented algorithm: key = `seed` as 8 little-endian bytes
/// followed by 24 zero bytes, stream id = `prompt_index · 2³² + sample_index`. Each decoding
/// step consumes one `u64`, turned into a uniform in [0, 1) by its top 53 bits.
pub fn sample_rng(seed: u64, prompt_index: u32, sample_index: u32) -> ChaCha20Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut rng = ChaCha20Rng::from_seed(key);
    rng.set_stream(((prompt_index as u64) << 32) | sample_index as u64);
    rng
}

/// A uniform draw in [0, 1) with 53 random bits.
pub fn uniform(rng: &mut impl RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Logits divided by the temperature. Greedy (T = 0) is not a distribution, so it is handled
/// by [`argmax`] instead; here T must be positive.
pub fn apply_temperature(logits: &[f32], temperature: f64) -> Vec<f32> {
    assert!(temperature > 0.0, "temperature must be positive here");
    logits
        .iter()
        .map(|&l| (l as f64 / temperature) as f32)
        .collect()
}

/// Softmax in f64, shifted by the maximum so that large logits do not overflow.
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / total).collect()
}

/// `log softmax(logits)[token]`: the log-probability of `token` under the model's own
/// distribution (T = 1, no filtering), which is what perplexity is computed from.
pub fn log_prob(logits: &[f32], token: usize) -> f32 {
    // Exponentials in f32 (each within 2 ulp, see `kernels::exponential`), summed in f64:
    // this runs over the whole vocabulary for every generated token, and f64 `exp` would
    // double its cost.
    let max = max_of(logits);
    ((logits[token] - max) as f64 - exp_sum(logits, max).ln()) as f32
}

/// The largest value of a row, NaN ignored (as `f32::max` ignores it), in sixteen lanes: one
/// chain of comparisons over a vocabulary waits on each before the next. The maximum is
/// exact in any order; only which of +0 and -0 comes back may differ, and both shift a row
/// alike (every difference `x - max` is the same but for the sign of a zero, whose
/// exponential is 1 either way).
pub fn max_of(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = row.chunks_exact(16);
    for chunk in &mut chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(x);
        }
    }
    let rest = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    lanes.into_iter().fold(rest, f32::max)
}

/// [`log_prob`] of every token of a row at once, into `out`: the same values, bit for bit.
pub fn log_softmax_into(logits: &[f32], out: &mut [f32]) {
    let max = max_of(logits);
    let ln_total = exp_sum(logits, max).ln();
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = ((l - max) as f64 - ln_total) as f32;
    }
}

/// The first value of `row` that is NaN or ±infinity. Every sampling filter, the draw and
/// the log-probability assume finite logits; this is the check that holds them to it, and it
/// runs on every row of every step, so the scan that finds none is a branch-free fold.
pub fn first_non_finite(row: &[f32]) -> Option<f32> {
    const EXPONENT: u32 = 0x7f80_0000;
    let any = row
        .iter()
        .fold(false, |any, &x| any | (x.to_bits() & EXPONENT == EXPONENT));
    if any {
        row.iter().copied().find(|x| !x.is_finite())
    } else {
        None
    }
}

/// The index of the largest logit; the first one on a tie, as `torch.argmax` returns.
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best
}

/// Keep the `k` most probable tokens and every token tied with the k-th, then renormalise.
/// `k == 0` or `k >= vocab` keeps everything (transformers clamps k to the vocabulary).
pub fn top_k(probs: &[f64], k: usize) -> Vec<f64> {
    if k == 0 || k >= probs.len() {
        return probs.to_vec();
    }
    let threshold = kth_largest(probs, k);
    renormalise(
        probs
            .iter()
            .map(|&p| if p >= threshold { p } else { 0.0 })
            .collect(),
    )
}

/// Keep the smallest most-probable prefix whose mass reaches `p`: a token survives when the
/// mass of the tokens strictly more probable than it is below `p`, so the token that crosses
/// `p` is kept (transformers' `TopPLogitsWarper`) and at least one token always survives.
/// Then renormalise. `p >= 1` keeps everything.
pub fn top_p(probs: &[f64], p: f64) -> Vec<f64> {
    if p >= 1.0 {
        return probs.to_vec();
    }
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let mut kept = vec![0.0; probs.len()];
    let mut above = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        if rank > 0 && above >= p {
            break;
        }
        kept[i] = probs[i];
        above += probs[i];
    }
    renormalise(kept)
}

/// The whole pipeline as separate full-vocabulary passes: the distribution a row samples
/// from. Greedy returns the one-hot distribution of the argmax.
pub fn filtered_distribution(logits: &[f32], params: &SamplingParams) -> Vec<f64> {
    if params.is_greedy() {
        let mut one_hot = vec![0.0; logits.len()];
        one_hot[argmax(logits)] = 1.0;
        return one_hot;
    }
    let scaled = apply_temperature(logits, params.temperature);
    let probs = softmax(&scaled);
    let probs = top_k(&probs, params.top_k);
    top_p(&probs, params.top_p)
}

fn renormalise(mut probs: Vec<f64>) -> Vec<f64> {
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    probs
}

fn kth_largest(values: &[f64], k: usize) -> f64 {
    let mut copy = values.to_vec();
    let (_, kth, _) = copy.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    *kth
}

/// Draw one token from [`filtered_distribution`]`(logits, params)`.
///
/// Instead of a full softmax-sort-cumsum per stage, the top-k survivors are found by partial
/// selection and only the top-p candidates are sorted, growing the sorted prefix until it
/// holds the mass `p`. Greedy consumes no randomness, so a greedy row's stream is unused.
pub fn sample_token(logits: &[f32], params: &SamplingParams, rng: &mut impl RngCore) -> usize {
    if params.is_greedy() {
        return argmax(logits);
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    draw(logits, max, params, rng).0
}

/// [`sample_token`] together with the token's [`log_prob`], sharing the work the two have in
/// common: the maximum logit always, and the whole-vocabulary sum of exponentials when the
/// row samples at T = 1 without top-k (its candidate mass is that sum). The result is
/// identical to calling the two separately.
pub fn sample_with_log_prob(
    logits: &[f32],
    params: &SamplingParams,
    rng: &mut impl RngCore,
) -> (usize, f32) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (token, total) = if params.is_greedy() {
        (argmax(logits), None)
    } else {
        draw(logits, max, params, rng)
    };
    let total = total.unwrap_or_else(|| exp_sum(logits, max));
    let lp = ((logits[token] - max) as f64 - total.ln()) as f32;
    (token, lp)
}

/// The tokens a row has seen, for the penalties: the prompt as the model sees it, then the
/// generated tokens.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    pub tokens: &'a [u32],
    /// Where the generated tokens start in `tokens`.
    pub prompt_len: usize,
}

/// The distribution a row with [`Processors`] on samples from: the pipeline of
/// [`processors::warp`](crate::engine::processors::warp), then a softmax over the survivors.
/// Greedy decoding applies only the penalties and puts all mass on the argmax of what they
/// leave, as transformers' greedy search does. With every knob off this is
/// [`filtered_distribution`].
pub fn filtered_distribution_in_context(
    logits: &[f32],
    params: &SamplingParams,
    context: Context,
) -> Vec<f64> {
    if params.processors.is_off() {
        return filtered_distribution(logits, params);
    }
    let mut row = logits.to_vec();
    if params.is_greedy() {
        processors::penalise(
            &mut row,
            &params.processors,
            context.tokens,
            context.prompt_len,
        );
        let mut one_hot = vec![0.0; logits.len()];
        one_hot[argmax(&row)] = 1.0;
        return one_hot;
    }
    warp_row(&mut row, params, context);
    softmax(&row)
}

fn warp_row(row: &mut [f32], params: &SamplingParams, context: Context) {
    processors::warp(
        row,
        params.temperature,
        params.top_k,
        params.top_p,
        &params.processors,
        context.tokens,
        context.prompt_len,
    );
}

/// [`sample_with_log_prob`] for a row that may have [`Processors`] on: the token is drawn from
/// [`filtered_distribution_in_context`], the log-probability is still the model's own (T = 1,
/// no penalty, no filter), so perplexity means the same for every setting. With every knob
/// off this is [`sample_with_log_prob`], draw for draw. The processed row's survivors are
/// drawn in vocabulary order with one uniform, as [`sample_token`] draws.
pub fn sample_in_context(
    logits: &[f32],
    params: &SamplingParams,
    context: Context,
    rng: &mut impl RngCore,
) -> (usize, f32) {
    if params.processors.is_off() {
        return sample_with_log_prob(logits, params, rng);
    }
    let mut row = logits.to_vec();
    let token = if params.is_greedy() {
        processors::penalise(
            &mut row,
            &params.processors,
            context.tokens,
            context.prompt_len,
        );
        argmax(&row)
    } else {
        warp_row(&mut row, params, context);
        draw_processed(&mut row, rng)
    };
    (token, log_prob(logits, token))
}

/// The draw of [`sample_in_context`] from a processed row, whose removed tokens are `-inf`:
/// weights exp(l − max) (a removed token's is exactly 0), one uniform, the first token whose
/// running sum passes it. The row is overwritten with the weights.
fn draw_processed(row: &mut [f32], rng: &mut impl RngCore) -> usize {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    exponential::exp_in_place_shifted(row, max);
    let total = LaneSum::of(row.iter().map(|&w| w as f64));
    let target = uniform(rng) * total;
    let mut acc = 0.0;
    for (i, &w) in row.iter().enumerate() {
        acc += w as f64;
        if target < acc {
            return i;
        }
    }
    // Rounding can leave `target` a hair above the last partial sum.
    row.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

/// Σ exp(l - max) over the vocabulary, f32 exponentials summed in f64 (see `log_prob`).
fn exp_sum(logits: &[f32], max: f32) -> f64 {
    const CHUNK: usize = 1024;
    let mut weights = [0.0f32; CHUNK];
    let mut sum = LaneSum::default();
    for chunk in logits.chunks(CHUNK) {
        let weights = &mut weights[..chunk.len()];
        exponential::exp_shifted_into(chunk, max, 1.0, weights);
        weights.iter().for_each(|&w| sum.add(w as f64));
    }
    sum.total()
}

/// A sum in f64 over four interleaved lanes (the i-th value goes to lane i mod 4), added
/// together at the end. The order is fixed by position alone, so a row's sum never depends
/// on anything else; four lanes instead of one chain let the additions overlap.
#[derive(Default)]
struct LaneSum {
    lanes: [f64; 4],
    count: usize,
}

impl LaneSum {
    fn add(&mut self, value: f64) {
        self.lanes[self.count % 4] += value;
        self.count += 1;
    }

    fn total(&self) -> f64 {
        (self.lanes[0] + self.lanes[1]) + (self.lanes[2] + self.lanes[3])
    }

    fn of(values: impl IntoIterator<Item = f64>) -> f64 {
        let mut sum = Self::default();
        values.into_iter().for_each(|v| sum.add(v));
        sum.total()
    }
}

/// The sampling draw of [`sample_token`] for a non-greedy row, given the row's maximum logit.
/// Also returns the whole-vocabulary [`exp_sum`] when it was computed on the way.
fn draw(
    logits: &[f32],
    max: f32,
    params: &SamplingParams,
    rng: &mut impl RngCore,
) -> (usize, Option<f64>) {
    let t = params.temperature;
    let inv_t = (1.0 / t) as f32;
    // f32 exponentials, f64 sums: see `log_prob`.
    let weight = |l: f32| exponential::exp((l - max) * inv_t) as f64;

    // Top-k candidates: every token whose logit reaches the k-th largest logit.
    let vocab = logits.len();
    let filtered_by_k = params.top_k > 0 && params.top_k < vocab;
    let candidates: Vec<(usize, f64)> = if filtered_by_k {
        let kth = kth_largest_logit(logits, params.top_k);
        logits
            .iter()
            .enumerate()
            .filter(|&(_, &l)| l >= kth)
            .map(|(i, &l)| (i, weight(l)))
            .collect()
    } else {
        let mut weights = vec![0.0f32; vocab];
        exponential::exp_shifted_into(logits, max, inv_t, &mut weights);
        weights.iter().map(|&w| w as f64).enumerate().collect()
    };
    let mass = LaneSum::of(candidates.iter().map(|&(_, w)| w));
    // At T = 1 over the whole vocabulary, each weight is exactly exp(l - max), in order.
    let whole = (!filtered_by_k && inv_t == 1.0).then_some(mass);
    (draw_among(candidates, mass, params.top_p, rng), whole)
}

/// The last stages of the pipeline on the candidates that survived top-k, in vocabulary
/// order with their unnormalised weights (`mass` their sum): top-p, then the draw.
fn draw_among(
    mut candidates: Vec<(usize, f64)>,
    mass: f64,
    top_p: f64,
    rng: &mut impl RngCore,
) -> usize {
    if top_p < 1.0 {
        let kept = nucleus(&mut candidates, mass * top_p);
        candidates.truncate(kept);
    }
    let total = LaneSum::of(candidates.iter().map(|&(_, w)| w));
    let target = uniform(rng) * total;
    let mut acc = 0.0;
    for &(i, w) in &candidates {
        acc += w;
        if target < acc {
            return i;
        }
    }
    // Rounding can leave `target` a hair above the last partial sum.
    candidates.last().map(|&(i, _)| i).unwrap_or(0)
}

/// The most probable logits of one row, largest first, with their token ids, and the row's
/// Σ exp(l - max) over the whole vocabulary: what a device sends back instead of the row.
#[derive(Debug, Clone, Copy)]
pub struct Shortlist<'a> {
    pub logits: &'a [f32],
    pub tokens: &'a [u32],
    pub exp_sum: f64,
}

impl Shortlist<'_> {
    /// Whether the list holds every token whose logit reaches the `n`-th largest, and so the
    /// whole top-`n` with its ties: some entry after the `n`-th must be strictly smaller.
    pub fn holds_top(&self, n: usize) -> bool {
        let values = self.logits;
        n < values.len()
            && values[0].is_finite()
            && !values.iter().any(|v| v.is_nan())
            && values[values.len() - 1] < values[n - 1]
    }
}

/// [`sample_with_log_prob`] for a row given only its [`Shortlist`]: the same token as the
/// whole row gives, with the log-probability's normaliser taken from `exp_sum`. `None` (no
/// randomness consumed) when the list cannot decide: a row without top-k needs the whole
/// vocabulary, and a tie that may run past the end of the list needs the row.
pub fn sample_from_shortlist(
    list: &Shortlist,
    vocab: usize,
    params: &SamplingParams,
    rng: &mut impl RngCore,
) -> Option<(usize, f32)> {
    let needed = shortlist_needed(params, vocab)?;
    if !list.holds_top(needed) {
        return None;
    }
    let max = list.logits[0];
    let token = if params.is_greedy() {
        // The first of a tie, as `argmax` takes it.
        let ties = list.logits.iter().take_while(|&&l| l >= max).count();
        list.tokens[..ties]
            .iter()
            .copied()
            .min()
            .expect("one entry") as usize
    } else {
        let kth = list.logits[needed - 1];
        let inv_t = (1.0 / params.temperature) as f32;
        let mut candidates: Vec<(usize, f64)> = list
            .logits
            .iter()
            .zip(list.tokens)
            .take_while(|&(&l, _)| l >= kth)
            .map(|(&l, &t)| (t as usize, exponential::exp((l - max) * inv_t) as f64))
            .collect();
        // Vocabulary order, as `draw` meets them, so that sums and the draw agree bit for bit.
        candidates.sort_unstable_by_key(|&(t, _)| t);
        let mass = LaneSum::of(candidates.iter().map(|&(_, w)| w));
        draw_among(candidates, mass, params.top_p, rng)
    };
    let logit = list.logits[list.tokens.iter().position(|&t| t as usize == token)?];
    let lp = ((logit - max) as f64 - list.exp_sum.ln()) as f32;
    Some((token, lp))
}

/// How many of a row's largest logits its sampler reads: 1 for greedy, `top_k` with top-k,
/// `None` for a row that reads the whole vocabulary. A [`Shortlist`] must hold one entry
/// more, to show that no tie runs past them.
pub fn shortlist_needed(params: &SamplingParams, vocab: usize) -> Option<usize> {
    if !params.processors.is_off() {
        // Penalties move tokens up from anywhere in the row, and the filters read its whole
        // distribution.
        None
    } else if params.is_greedy() {
        Some(1)
    } else if params.top_k > 0 && params.top_k < vocab {
        Some(params.top_k)
    } else {
        None
    }
}

/// The `k`-th largest of `values` (1 ≤ k ≤ len) in `f32::total_cmp` order. For the usual small
/// k, one pass keeps the k largest seen so far in a min-heap: most values lose a single
/// comparison against its minimum, which beats copying the row and partially sorting it.
fn kth_largest_logit(values: &[f32], k: usize) -> f32 {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    // Monotonic map of f32 to u32 that orders as `total_cmp` does.
    let key = |x: f32| {
        let bits = x.to_bits();
        if bits >> 31 == 1 {
            !bits
        } else {
            bits | (1 << 31)
        }
    };
    if k > 1024 || k * 8 > values.len() {
        let mut copy = values.to_vec();
        let (_, kth, _) = copy.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        return *kth;
    }
    let mut heap: BinaryHeap<Reverse<u32>> = values[..k].iter().map(|&x| Reverse(key(x))).collect();
    let mut least = heap.peek().expect("k >= 1").0;
    for &x in &values[k..] {
        let kx = key(x);
        if kx > least {
            heap.pop();
            heap.push(Reverse(kx));
            least = heap.peek().expect("k >= 1").0;
        }
    }
    let bits = if least >> 31 == 1 {
        least & !(1 << 31)
    } else {
        !least
    };
    f32::from_bits(bits)
}

/// Sort the most probable candidates to the front (by weight, then index) and return how many
/// form the nucleus: the prefix up to and including the token where the mass above reaches
/// `threshold`. Only a growing prefix is sorted, since the nucleus is usually small.
fn nucleus(candidates: &mut [(usize, f64)], threshold: f64) -> usize {
    let by_weight = |a: &(usize, f64), b: &(usize, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let n = candidates.len();
    let mut prefix = 64.min(n);
    loop {
        if prefix < n {
            candidates.select_nth_unstable_by(prefix - 1, by_weight);
        }
        candidates[..prefix].sort_by(by_weight);
        let mut above = 0.0;
        for (rank, &(_, w)) in candidates[..prefix].iter().enumerate() {
            if rank > 0 && above >= threshold {
                return rank;
            }
            above += w;
        }
        if prefix == n || above >= threshold {
            return prefix;
        }
        prefix = (prefix * 4).min(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lane-wise maximum is the one-chain fold's, NaN ignored, at every length.
    #[test]
    fn max_of_is_the_fold() {
        let fold = |row: &[f32]| row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut state = 7u32;
        let mut next = || {
            state = state.wrapping_mul(1664525).wrapping_add(1013904223);
            (state >> 8) as f32 / (1u32 << 24) as f32 * 40.0 - 20.0
        };
        for len in [0, 1, 15, 16, 17, 100, 50257] {
            let mut row: Vec<f32> = (0..len).map(|_| next()).collect();
            assert_eq!(max_of(&row).to_bits(), fold(&row).to_bits(), "{len}");
            if len > 3 {
                row[len / 2] = f32::NAN;
                row[len - 1] = f32::NAN;
                assert_eq!(
                    max_of(&row).to_bits(),
                    fold(&row).to_bits(),
                    "{len} with NaN"
                );
            }
        }
        assert_eq!(max_of(&[f32::NAN; 20]), f32::NEG_INFINITY);
        assert_eq!(max_of(&[]), f32::NEG_INFINITY);
        assert_eq!(max_of(&[-0.0, 0.0, -1.0]), 0.0);
    }

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    const LOGITS: [f32; 8] = [2.0, 1.0, 0.5, 0.5, 0.5, -1.0, -3.0, 0.0];

    /// The fused draw gives exactly what `sample_token` then `log_prob` give, for every kind
    /// of row (greedy, T = 1 with and without filters, other temperatures).
    #[test]
    fn sample_with_log_prob_equals_the_two_calls() {
        let logits: Vec<f32> = (0..500)
            .map(|i| ((i * 37 % 101) as f32) / 13.0 - 3.0)
            .collect();
        let settings = [
            SamplingParams::GREEDY,
            SamplingParams::PURE,
            SamplingParams {
                temperature: 1.0,
                top_k: 0,
                top_p: 0.9,
                processors: Processors::OFF,
            },
            SamplingParams {
                temperature: 1.0,
                top_k: 40,
                top_p: 1.0,
                processors: Processors::OFF,
            },
            SamplingParams {
                temperature: 0.7,
                top_k: 0,
                top_p: 1.0,
                processors: Processors::OFF,
            },
            SamplingParams {
                temperature: 1.3,
                top_k: 10,
                top_p: 0.8,
                processors: Processors::OFF,
            },
        ];
        for params in settings {
            for seed in 0..20 {
                let mut a = sample_rng(seed, 0, 0);
                let mut b = sample_rng(seed, 0, 0);
                let token = sample_token(&logits, &params, &mut a);
                let expected = (token, log_prob(&logits, token));
                assert_eq!(
                    sample_with_log_prob(&logits, &params, &mut b),
                    expected,
                    "{params:?}"
                );
            }
        }
    }

    #[test]
    fn kth_largest_logit_agrees_with_a_sort() {
        let mut values: Vec<f32> = (0..5000)
            .map(|i| ((i * 7919 % 1013) as f32 - 500.0) / 7.0)
            .collect();
        values.extend([f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0, 3.0, 3.0, 3.0]);
        let mut sorted = values.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        for k in [1, 2, 3, 10, 50, 200, 640, 1024, 1025, 4000, values.len()] {
            assert_eq!(
                kth_largest_logit(&values, k).to_bits(),
                sorted[k - 1].to_bits(),
                "k = {k}"
            );
        }
    }

    #[test]
    fn filters_keep_their_input_and_at_least_one_token_and_sum_to_one() {
        let probs = softmax(&LOGITS);
        let before = probs.clone();
        for k in [0, 1, 2, 3, 8, 100] {
            let out = top_k(&probs, k);
            assert!(out.iter().filter(|&&p| p > 0.0).count() >= 1);
            assert!((out.iter().sum::<f64>() - 1.0).abs() < 1e-6);
        }
        for p in [1e-12, 0.1, 0.5, 0.9, 0.999, 1.0] {
            let out = top_p(&probs, p);
            assert!(out.iter().filter(|&&x| x > 0.0).count() >= 1);
            assert!((out.iter().sum::<f64>() - 1.0).abs() < 1e-6);
        }
        assert_eq!(probs, before);
    }

    #[test]
    fn top_k_keeps_ties_with_the_kth_value() {
        // k = 3 lands on a three-way tie at 0.5: all three stay, five tokens in all.
        let out = top_k(&softmax(&LOGITS), 3);
        let kept: Vec<usize> = (0..8).filter(|&i| out[i] > 0.0).collect();
        assert_eq!(kept, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn top_p_keeps_the_token_that_crosses_p() {
        let probs = vec![0.5, 0.25, 0.125, 0.125];
        // 0.5 + 0.25 reaches 0.75 exactly: the third token is not needed.
        assert!(close(
            &top_p(&probs, 0.75),
            &[2.0 / 3.0, 1.0 / 3.0, 0.0, 0.0],
            1e-12
        ));
        // Just above the boundary the crossing token 0.125 joins.
        let out = top_p(&probs, 0.7500001);
        assert!(out[2] > 0.0 && out[3] == 0.0);
        // p → 0 keeps the single most probable token.
        assert!(close(&top_p(&probs, 1e-9), &[1.0, 0.0, 0.0, 0.0], 0.0));
    }

    #[test]
    fn first_non_finite_finds_nan_and_both_infinities_anywhere() {
        assert_eq!(first_non_finite(&[]), None);
        let finite = [f32::MAX, f32::MIN, 0.0, -0.0, f32::MIN_POSITIVE, 1e-45];
        assert_eq!(first_non_finite(&finite), None);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 17, 98] {
                let mut row = vec![0.5f32; 100];
                row[at] = bad;
                // A later one is not the first.
                row[99] = if bad.is_nan() {
                    f32::INFINITY
                } else {
                    f32::NAN
                };
                let found = first_non_finite(&row).expect("found");
                assert_eq!(found.to_bits(), bad.to_bits(), "{bad} at {at}");
            }
        }
    }

    #[test]
    fn greedy_is_the_argmax_and_takes_the_first_of_a_tie() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        let d = filtered_distribution(&[1.0, 3.0, 3.0, 2.0], &SamplingParams::GREEDY);
        assert_eq!(d, vec![0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn temperature_sharpens_and_flattens() {
        let cold = filtered_distribution(
            &LOGITS,
            &SamplingParams {
                temperature: 0.5,
                ..SamplingParams::PURE
            },
        );
        let hot = filtered_distribution(
            &LOGITS,
            &SamplingParams {
                temperature: 2.0,
                ..SamplingParams::PURE
            },
        );
        let plain = softmax(&LOGITS);
        assert!(cold[0] > plain[0] && plain[0] > hot[0]);
    }

    #[test]
    fn log_prob_matches_log_of_softmax() {
        let probs = softmax(&LOGITS);
        for (i, p) in probs.iter().enumerate() {
            assert!((log_prob(&LOGITS, i) as f64 - p.ln()).abs() < 1e-6);
        }
    }

    #[test]
    fn rng_streams_depend_only_on_seed_prompt_and_sample() {
        let draw = |s, p, i| sample_rng(s, p, i).next_u64();
        assert_eq!(draw(1, 2, 3), draw(1, 2, 3));
        assert_ne!(draw(1, 2, 3), draw(1, 2, 4));
        assert_ne!(draw(1, 2, 3), draw(1, 3, 3));
        assert_ne!(draw(1, 2, 3), draw(2, 2, 3));
        // Pinned value: a change of algorithm or key layout changes every sample ever drawn.
        assert_eq!(draw(0, 0, 0), 10_393_729_187_455_219_830);
    }

    /// 100,000 draws through the fast path land on the reference distribution.
    /// 100,000 draws of `draw` follow `expected`: every token's frequency within five standard
    /// errors of its probability, and nothing drawn outside the support.
    fn assert_draws_follow(expected: &[f64], what: &str, mut draw: impl FnMut() -> usize) {
        let draws = 100_000;
        let mut counts = vec![0usize; expected.len()];
        for _ in 0..draws {
            counts[draw()] += 1;
        }
        for (i, (&c, &p)) in counts.iter().zip(expected).enumerate() {
            let freq = c as f64 / draws as f64;
            let tol = 5.0 * (p * (1.0 - p) / draws as f64).sqrt() + 1e-9;
            assert!((freq - p).abs() <= tol, "{what} token {i}: {freq} vs {p}");
            if p == 0.0 {
                assert_eq!(c, 0, "{what} drew filtered token {i}");
            }
        }
    }

    #[test]
    fn sampling_frequencies_match_the_filtered_distribution() {
        let logits: Vec<f32> = (0..300)
            .map(|i| ((i * 37 % 101) as f32) / 17.0 - 3.0)
            .collect();
        let cases = [
            SamplingParams::PURE,
            SamplingParams {
                temperature: 0.7,
                top_k: 20,
                top_p: 1.0,
                processors: Processors::OFF,
            },
            SamplingParams {
                temperature: 1.3,
                top_k: 0,
                top_p: 0.8,
                processors: Processors::OFF,
            },
            SamplingParams {
                temperature: 0.9,
                top_k: 50,
                top_p: 0.9,
                processors: Processors::OFF,
            },
        ];
        for params in cases {
            let expected = filtered_distribution(&logits, &params);
            let mut rng = sample_rng(7, 0, 0);
            assert_draws_follow(&expected, &format!("{params:?}"), || {
                sample_token(&logits, &params, &mut rng)
            });
        }
    }

    /// Rows with knobs on draw from [`filtered_distribution_in_context`]: the frequencies of
    /// 100,000 draws within five standard errors of it, nothing drawn that it removed, and
    /// the penalties reading the context they are given.
    #[test]
    fn processed_rows_draw_from_the_processed_distribution() {
        let logits: Vec<f32> = (0..300)
            .map(|i| ((i * 37 % 101) as f32) / 17.0 - 3.0)
            .collect();
        let context: Vec<u32> = vec![5, 17, 5, 99, 17, 5, 250];
        let with = |temperature, top_k, top_p, processors| SamplingParams {
            temperature,
            top_k,
            top_p,
            processors,
        };
        let cases = [
            with(
                1.0,
                0,
                1.0,
                Processors {
                    min_p: 0.2,
                    ..Processors::OFF
                },
            ),
            with(
                1.5,
                40,
                0.95,
                Processors {
                    typical_p: 0.7,
                    repetition_penalty: 1.5,
                    ..Processors::OFF
                },
            ),
            with(
                0.8,
                0,
                1.0,
                Processors {
                    eta_cutoff: 0.01,
                    frequency_penalty: 0.4,
                    presence_penalty: 0.3,
                    no_repeat_ngram_size: 2,
                    ..Processors::OFF
                },
            ),
            with(
                2.0,
                0,
                1.0,
                Processors {
                    epsilon_cutoff: 0.005,
                    top_n_sigma: 1.0,
                    temperature_last: true,
                    ..Processors::OFF
                },
            ),
        ];
        let context = Context {
            tokens: &context,
            prompt_len: 3,
        };
        for params in cases {
            let expected = filtered_distribution_in_context(&logits, &params, context);
            assert!((expected.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert_ne!(
                expected,
                filtered_distribution(&logits, &params),
                "{params:?}"
            );
            let mut rng = sample_rng(7, 0, 0);
            assert_draws_follow(&expected, &format!("{params:?}"), || {
                let (token, lp) = sample_in_context(&logits, &params, context, &mut rng);
                // The reported log-probability is the model's own, whatever the knobs.
                assert_eq!(lp, log_prob(&logits, token));
                token
            });
        }
        // no_repeat_ngram_size = 2 after "... 5 250": the bigram (5 17) was seen, but the
        // context ends in 250, never followed by anything, so nothing is banned; ending in 5,
        // token 17 and 99 are.
        let ban = with(
            1.0,
            0,
            1.0,
            Processors {
                no_repeat_ngram_size: 2,
                ..Processors::OFF
            },
        );
        let ends_in_5 = [5u32, 17, 5, 99, 17, 5];
        let d = filtered_distribution_in_context(
            &logits,
            &ban,
            Context {
                tokens: &ends_in_5,
                prompt_len: 6,
            },
        );
        let banned: Vec<usize> = (0..d.len()).filter(|&i| d[i] == 0.0).collect();
        assert_eq!(banned, [17, 99]);
    }

    /// Greedy with penalties takes the argmax of the penalised row, and ignores the filters.
    #[test]
    fn greedy_applies_only_the_penalties() {
        let logits = [3.0f32, 2.9, -1.0, 0.5];
        let penalised = SamplingParams {
            processors: Processors {
                repetition_penalty: 1.1,
                min_p: 0.9,
                ..Processors::OFF
            },
            ..SamplingParams::GREEDY
        };
        let context = Context {
            tokens: &[0, 0],
            prompt_len: 1,
        };
        // 3.0 / 1.1 = 2.727 < 2.9: token 1 wins; min_p would have kept token 0 alone.
        let mut rng = sample_rng(1, 0, 0);
        assert_eq!(
            sample_in_context(&logits, &penalised, context, &mut rng),
            (1, log_prob(&logits, 1))
        );
        let d = filtered_distribution_in_context(&logits, &penalised, context);
        assert_eq!(d, [0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn nucleus_grows_past_its_first_prefix() {
        // A flat distribution over 1,024 tokens (exact binary probabilities): p = 0.5 needs 512.
        let logits = vec![0.0f32; 1024];
        let params = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.5,
            processors: Processors::OFF,
        };
        let d = filtered_distribution(&logits, &params);
        assert_eq!(d.iter().filter(|&&p| p > 0.0).count(), 512);
        let mut rng = sample_rng(1, 0, 0);
        for _ in 0..2000 {
            assert!(sample_token(&logits, &params, &mut rng) < 512);
        }
    }
}
