//! Logits processors beyond temperature, top-k and top-p: penalties, n-gram blocking and the
//! truncation warpers of the decoding literature. Each one edits a single row of logits in
//! place and removes a token by setting it to `-inf`, exactly as the transformers class of the
//! same name does to `scores` (`transformers/generation/logits_process.py`, with
//! `min_tokens_to_keep = 1`). Two have no transformers peer and cite their own source.
//!
//! Exponentials are taken in f32, as transformers' softmax takes them; sums, entropies and
//! comparisons are made in f64, so the decisions are transformers' wherever its f32 sums cannot
//! flip them. Decisions at exact ties (equal logits, a ratio of exactly 1) are made the way
//! transformers makes them.
//!
//! A NaN logit is left for the caller (the sampler rejects non-finite rows); these functions
//! never panic on one, but what they remove from such a row is unspecified.

use serde::Serialize;

/// The knobs beyond temperature, top-k and top-p, each with the value that switches it off.
/// They come in two kinds, which decoding treats differently:
///
/// - *penalties* (`repetition_penalty`, `frequency_penalty`, `presence_penalty`,
///   `no_repeat_ngram_size`) change the scores from the tokens already in the context; as in
///   transformers they apply to greedy decoding and beam search too;
/// - *truncation filters* (`min_p`, `typical_p`, `epsilon_cutoff`, `eta_cutoff`,
///   `top_n_sigma`) remove unlikely tokens before a draw, and so apply only to sampling.
///
/// `temperature_last` moves the temperature after every filter (see [`warp`]).
///
/// Serialised, a knob that is off is left out, so a setting without any keeps the exact form
/// (and so the saved-results key) it has always had.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Processors {
    #[serde(skip_serializing_if = "is_one")]
    pub repetition_penalty: f64,
    #[serde(skip_serializing_if = "is_zero")]
    pub frequency_penalty: f64,
    #[serde(skip_serializing_if = "is_zero")]
    pub presence_penalty: f64,
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub no_repeat_ngram_size: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub min_p: f64,
    #[serde(skip_serializing_if = "is_one")]
    pub typical_p: f64,
    #[serde(skip_serializing_if = "is_zero")]
    pub epsilon_cutoff: f64,
    #[serde(skip_serializing_if = "is_zero")]
    pub eta_cutoff: f64,
    #[serde(skip_serializing_if = "is_zero")]
    pub top_n_sigma: f64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub temperature_last: bool,
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn is_zero_usize(v: &usize) -> bool {
    *v == 0
}

impl Processors {
    /// Every knob off: decoding is plain temperature, top-k and top-p.
    pub const OFF: Self = Self {
        repetition_penalty: 1.0,
        frequency_penalty: 0.0,
        presence_penalty: 0.0,
        no_repeat_ngram_size: 0,
        min_p: 0.0,
        typical_p: 1.0,
        epsilon_cutoff: 0.0,
        eta_cutoff: 0.0,
        top_n_sigma: 0.0,
        temperature_last: false,
    };

    pub fn is_off(&self) -> bool {
        *self == Self::OFF
    }

    /// Whether a penalty is on: the scores then depend on the row's context.
    pub fn penalises(&self) -> bool {
        self.repetition_penalty != 1.0
            || self.frequency_penalty != 0.0
            || self.presence_penalty != 0.0
            || self.no_repeat_ngram_size > 0
    }

    /// These knobs with the truncation filters and `temperature_last` off: what greedy
    /// decoding and beam search keep of a setting.
    pub fn penalties_only(&self) -> Self {
        Self {
            repetition_penalty: self.repetition_penalty,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            no_repeat_ngram_size: self.no_repeat_ngram_size,
            ..Self::OFF
        }
    }
}

/// One stage of the pipeline with its parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stage {
    RepetitionPenalty(f64),
    FrequencyPresence { frequency: f64, presence: f64 },
    NoRepeatNgram(usize),
    Temperature(f64),
    TopK(usize),
    TopP(f64),
    MinP(f64),
    Typical(f64),
    Epsilon(f64),
    Eta(f64),
    TopNSigma(f64),
}

impl Stage {
    /// Applies the stage to one row in place. `context` is the prompt the model sees followed
    /// by the generated tokens; `prompt_len` says where the generated ones start (the OpenAI
    /// penalties count only those).
    pub fn apply(&self, logits: &mut [f32], context: &[u32], prompt_len: usize) {
        match *self {
            Stage::RepetitionPenalty(penalty) => {
                repetition_penalty(logits, context, penalty as f32)
            }
            Stage::FrequencyPresence {
                frequency,
                presence,
            } => frequency_presence(
                logits,
                &context[prompt_len.min(context.len())..],
                frequency as f32,
                presence as f32,
            ),
            Stage::NoRepeatNgram(n) => no_repeat_ngram(logits, context, n),
            Stage::Temperature(t) => divide(logits, t),
            Stage::TopK(k) => top_k(logits, k),
            Stage::TopP(p) => top_p(logits, p),
            Stage::MinP(p) => min_p(logits, p as f32),
            Stage::Typical(mass) => typical(logits, mass as f32),
            Stage::Epsilon(e) => epsilon(logits, e as f32),
            Stage::Eta(e) => eta(logits, e as f32),
            Stage::TopNSigma(n) => top_n_sigma(logits, n as f32),
        }
    }

    /// The stage as its knob is written, e.g. `min_p = 0.1`.
    pub fn describe(&self) -> String {
        match *self {
            Stage::RepetitionPenalty(v) => format!("repetition_penalty = {v}"),
            Stage::FrequencyPresence {
                frequency,
                presence,
            } => format!("frequency_penalty = {frequency}, presence_penalty = {presence}"),
            Stage::NoRepeatNgram(n) => format!("no_repeat_ngram_size = {n}"),
            Stage::Temperature(t) => format!("temperature = {t}"),
            Stage::TopK(k) => format!("top_k = {k}"),
            Stage::TopP(p) => format!("top_p = {p}"),
            Stage::MinP(p) => format!("min_p = {p}"),
            Stage::Typical(p) => format!("typical_p = {p}"),
            Stage::Epsilon(e) => format!("epsilon_cutoff = {e}"),
            Stage::Eta(e) => format!("eta_cutoff = {e}"),
            Stage::TopNSigma(n) => format!("top_n_sigma = {n}"),
        }
    }
}

/// The penalties that are on, in transformers' order: repetition penalty, then the OpenAI
/// frequency and presence penalties (which transformers lacks; they sit beside the other
/// count-based penalty), then no-repeat n-gram blocking, last so that no later subtraction can
/// lift a banned token back from `-inf`. These are all greedy decoding applies.
pub fn penalty_stages(knobs: &Processors) -> Vec<Stage> {
    let mut stages = Vec::new();
    if knobs.repetition_penalty != 1.0 {
        stages.push(Stage::RepetitionPenalty(knobs.repetition_penalty));
    }
    if knobs.frequency_penalty != 0.0 || knobs.presence_penalty != 0.0 {
        stages.push(Stage::FrequencyPresence {
            frequency: knobs.frequency_penalty,
            presence: knobs.presence_penalty,
        });
    }
    if knobs.no_repeat_ngram_size > 0 {
        stages.push(Stage::NoRepeatNgram(knobs.no_repeat_ngram_size));
    }
    stages
}

/// Every stage of the sampling pipeline that is on, in the order it runs:
///
/// - `temperature_last = false` (transformers' `_get_logits_processor` order): penalties →
///   temperature → top-k → top-p → min-p → typical → ε → η → top-nσ. transformers has no
///   top-nσ; it runs last so that it cuts on the logits the other filters left.
/// - `temperature_last = true` (llama.cpp's order, and the min-p paper's high-temperature
///   runs): penalties → top-k → top-p → min-p → typical → ε → η → top-nσ → temperature, so
///   every filter sees the untempered distribution and the temperature only reshapes the
///   survivors.
///
/// `temperature` must be positive (greedy decoding runs [`penalty_stages`] and an argmax). A
/// temperature of 1 is still listed, as the identity it is.
pub fn stages(temperature: f64, top_k: usize, top_p: f64, knobs: &Processors) -> Vec<Stage> {
    let mut stages = penalty_stages(knobs);
    if !knobs.temperature_last {
        stages.push(Stage::Temperature(temperature));
    }
    if top_k > 0 {
        stages.push(Stage::TopK(top_k));
    }
    if top_p < 1.0 {
        stages.push(Stage::TopP(top_p));
    }
    if knobs.min_p > 0.0 {
        stages.push(Stage::MinP(knobs.min_p));
    }
    if knobs.typical_p < 1.0 {
        stages.push(Stage::Typical(knobs.typical_p));
    }
    if knobs.epsilon_cutoff > 0.0 {
        stages.push(Stage::Epsilon(knobs.epsilon_cutoff));
    }
    if knobs.eta_cutoff > 0.0 {
        stages.push(Stage::Eta(knobs.eta_cutoff));
    }
    if knobs.top_n_sigma > 0.0 {
        stages.push(Stage::TopNSigma(knobs.top_n_sigma));
    }
    if knobs.temperature_last {
        stages.push(Stage::Temperature(temperature));
    }
    stages
}

/// The penalties of [`penalty_stages`] on one row, in place.
pub fn penalise(logits: &mut [f32], knobs: &Processors, context: &[u32], prompt_len: usize) {
    for stage in penalty_stages(knobs) {
        stage.apply(logits, context, prompt_len);
    }
}

/// The whole pipeline of [`stages`] on one row, in place, before the draw.
pub fn warp(
    logits: &mut [f32],
    temperature: f64,
    top_k: usize,
    top_p: f64,
    knobs: &Processors,
    context: &[u32],
    prompt_len: usize,
) {
    for stage in stages(temperature, top_k, top_p, knobs) {
        stage.apply(logits, context, prompt_len);
    }
}

/// `TemperatureLogitsWarper`: every logit divided by `temperature`, in f32. 1 is off.
pub fn divide(logits: &mut [f32], temperature: f64) {
    if temperature == 1.0 {
        return;
    }
    let t = temperature as f32;
    for l in logits.iter_mut() {
        *l /= t;
    }
}

/// `TopKLogitsWarper`: remove every logit below the k-th largest, so ties with it stay.
/// `k = 0` or `k` at least the row's length is off.
pub fn top_k(logits: &mut [f32], k: usize) {
    if k == 0 || k >= logits.len() {
        return;
    }
    let mut copy = logits.to_vec();
    let (_, &mut kth, _) = copy.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    for l in logits.iter_mut() {
        if *l < kth {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// `TopPLogitsWarper`: with the tokens sorted by logit ascending (stably, as torch's CPU sort),
/// remove those whose cumulative probability is at most 1 − p, always keeping the largest.
/// Sums are f32, as torch's. `p >= 1` is off.
pub fn top_p(logits: &mut [f32], p: f64) {
    if p >= 1.0 || logits.is_empty() {
        return;
    }
    let max = max_logit(logits);
    if !max.is_finite() {
        return;
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[a].total_cmp(&logits[b]));
    let exps: Vec<f32> = order.iter().map(|&i| (logits[i] - max).exp()).collect();
    let total: f32 = exps.iter().sum();
    let threshold = 1.0 - p as f32;
    let mut cumulative = 0.0f32;
    let last = order.len() - 1;
    let mut remove = Vec::new();
    for (rank, (&i, e)) in order.iter().zip(&exps).enumerate() {
        cumulative += e / total;
        if cumulative > threshold {
            break;
        }
        if rank != last {
            remove.push(i);
        }
    }
    for i in remove {
        logits[i] = f32::NEG_INFINITY;
    }
}

/// The largest logit, ignoring NaN; `-inf` for an empty or all-`-inf` row.
fn max_logit(logits: &[f32]) -> f32 {
    logits.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// A row's distribution in f64, from one exponential per token: with s = l − max and
/// Z = Σ e^s, p = e^s / Z, log p = s − ln Z, and the entropy is H = ln Z − Σ p·s. A removed
/// token (`-inf`) has p = 0, log p = −inf and contributes nothing to H, as in transformers'
/// `nansum` and `Categorical.entropy`.
struct Distribution {
    shifted: Vec<f64>,
    probs: Vec<f64>,
    ln_total: f64,
}

impl Distribution {
    /// `None` when the row has no finite maximum (nothing to filter).
    fn of(logits: &[f32]) -> Option<Self> {
        let max = max_logit(logits);
        if !max.is_finite() {
            return None;
        }
        let shifted: Vec<f64> = logits.iter().map(|&l| l as f64 - max as f64).collect();
        // Exponentials in f32 (within 2 ulp, see `kernels::exponential`; transformers takes
        // its softmax in f32), everything after in f64.
        let mut weights = vec![0f32; logits.len()];
        crate::engine::kernels::exponential::exp_shifted_into(logits, max, 1.0, &mut weights);
        let mut probs: Vec<f64> = weights.iter().map(|&w| w as f64).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        Some(Self {
            shifted,
            probs,
            ln_total: total.ln(),
        })
    }

    fn entropy(&self) -> f64 {
        self.ln_total
            - self
                .probs
                .iter()
                .zip(&self.shifted)
                .filter(|(p, _)| **p > 0.0)
                .map(|(p, s)| p * s)
                .sum::<f64>()
    }
}

/// The CTRL repetition penalty (Keskar et al. 2019, `RepetitionPenaltyLogitsProcessor`): every
/// token that occurs in `context` (prompt and generated tokens alike) has its logit divided by
/// `penalty` when positive and multiplied by it when negative, so a penalty above 1 always
/// lowers it. A token repeated in the context is penalised once, not once per occurrence.
/// Arithmetic is f32, as transformers does it. Token ids outside the row are ignored.
pub fn repetition_penalty(logits: &mut [f32], context: &[u32], penalty: f32) {
    // The distinct tokens of the context, without a vocabulary-sized table per row and step.
    let mut distinct = context.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    for token in distinct {
        if let Some(l) = logits.get_mut(token as usize) {
            *l = if *l < 0.0 { *l * penalty } else { *l / penalty };
        }
    }
}

/// No-repeat n-gram blocking (fairseq's rule, `NoRepeatNGramLogitsProcessor`): ban every token
/// that would complete an n-gram already present in `context`, which is the prompt and the
/// generated tokens together. The last `n - 1` tokens are matched against the first `n - 1`
/// of every n-token window, and a matching window bans its last token. `ngram_size == 0` is
/// off; a context shorter than `ngram_size` has no complete n-gram and bans nothing; with
/// `ngram_size == 1` every token of the context is banned.
pub fn no_repeat_ngram(logits: &mut [f32], context: &[u32], ngram_size: usize) {
    if ngram_size == 0 || context.len() < ngram_size {
        return;
    }
    let prefix = &context[context.len() + 1 - ngram_size..];
    for window in context.windows(ngram_size) {
        let (head, last) = window.split_at(ngram_size - 1);
        if head == prefix
            && let Some(l) = logits.get_mut(last[0] as usize)
        {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// Min-p sampling (Nguyen et al. 2024, "Turning Up the Heat", `MinPLogitsWarper`): remove the
/// tokens whose probability is below `min_p` times the most likely token's. The ratio
/// p_i / p_max is exp(l_i − l_max), so no normalising sum is needed; a token tied with the
/// maximum has ratio exactly 1 and is kept even at `min_p = 1`. The most likely token is
/// always kept (the first one, if `min_p` is above 1 and the maximum is tied).
pub fn min_p(logits: &mut [f32], min_p: f32) {
    let max = max_logit(logits);
    if !max.is_finite() {
        return;
    }
    let keep = logits.iter().position(|&l| l == max);
    // In f32, as transformers' softmax: a token whose exp(l − max) rounds to exactly min_p
    // (say l − max = f32(ln 0.25)) sits on the cut and stays, where f64 would put it a hair
    // below and remove it. Only values near the cut need the exponential; f32's is within
    // 1e-6 relative, far inside the 1e-3 margin, elsewhere the comparison of l − max with
    // ln min_p decides the same way.
    let cut = (min_p as f64).ln();
    for (i, l) in logits.iter_mut().enumerate() {
        let x = *l - max;
        let below = if (x as f64) < cut - 1e-3 {
            true
        } else if (x as f64) > cut + 1e-3 {
            false
        } else {
            x.exp() < min_p
        };
        if Some(i) != keep && below {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// Locally typical sampling (Meister et al. 2023, "Locally Typical Sampling",
/// `TypicalLogitsWarper`): rank tokens by how far their surprisal −log p is from the
/// distribution's entropy H, and keep the closest ones until their probabilities add up to
/// `mass`. transformers' exact rule: with the tokens sorted by |−log p − H| ascending and `c`
/// the cumulative probability in that order, `last` is the number of positions with c < mass
/// (at most the last index); every token farther from H than the token at `last` is removed,
/// so tokens tied with it stay, and the closest token always stays. `mass >= 1` is off, as in
/// transformers, which adds no typical warper for `typical_p = 1`.
pub fn typical(logits: &mut [f32], mass: f32) {
    if mass >= 1.0 {
        return;
    }
    let Some(d) = Distribution::of(logits) else {
        return;
    };
    let h = d.entropy();
    // |−log p − H|; a removed token has surprisal +inf and a distance of +inf.
    let distance: Vec<f64> = d
        .shifted
        .iter()
        .map(|&s| (d.ln_total - s - h).abs())
        .collect();
    let Some(threshold) = typical_threshold(&distance, &d.probs, mass as f64) else {
        // The mass is never reached (rounding, with mass near 1): everything stays.
        return;
    };
    for (l, &dist) in logits.iter_mut().zip(&distance) {
        if dist > threshold {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// The distance of the token at which transformers' sorted cumulative sum first reaches
/// `mass`: the smallest distance D with Σ p over distances ≤ D at least `mass`, found by
/// repeated partition around a median instead of a sort of the vocabulary (linear time; the
/// sums are the same up to the order of addition). Tokens tied at D all stay, as they do
/// after transformers' sort, and so does the closest token, whose distance is at most D.
fn typical_threshold(distance: &[f64], probs: &[f64], mass: f64) -> Option<f64> {
    let mut candidates: Vec<u32> = (0..distance.len() as u32)
        .filter(|&i| probs[i as usize] > 0.0)
        .collect();
    let mut below = 0.0;
    let sum = |set: &[u32]| set.iter().map(|&i| probs[i as usize]).sum::<f64>();
    while !candidates.is_empty() {
        let middle = candidates.len() / 2;
        let (_, &mut pivot, _) = candidates.select_nth_unstable_by(middle, |&a, &b| {
            distance[a as usize].total_cmp(&distance[b as usize])
        });
        let pivot = distance[pivot as usize];
        let (within, beyond): (Vec<u32>, Vec<u32>) = candidates
            .iter()
            .partition(|&&i| distance[i as usize] <= pivot);
        if below + sum(&within) >= mass {
            let closer: Vec<u32> = within
                .into_iter()
                .filter(|&i| distance[i as usize] < pivot)
                .collect();
            if below + sum(&closer) >= mass {
                candidates = closer;
            } else {
                return Some(pivot);
            }
        } else {
            below += sum(&within);
            candidates = beyond;
        }
    }
    None
}

/// ε-sampling (Hewitt et al. 2022, "Truncation Sampling as Language Model Desmoothing",
/// `EpsilonLogitsWarper`): remove the tokens with probability below `epsilon`, except the most
/// likely token and every token tied with it, so an `epsilon` above p_max leaves the argmax.
pub fn epsilon(logits: &mut [f32], epsilon: f32) {
    let Some(d) = Distribution::of(logits) else {
        return;
    };
    cut_below(logits, &d.probs, epsilon as f64);
}

/// η-sampling (Hewitt et al. 2022, `EtaLogitsWarper`): ε-sampling with a cutoff that adapts to
/// the entropy H of the row, min(η, √η·exp(−H)): a flat row (high H) cuts less. The most likely
/// token and its ties are always kept.
pub fn eta(logits: &mut [f32], eta: f32) {
    let Some(d) = Distribution::of(logits) else {
        return;
    };
    let eta = eta as f64;
    let cutoff = eta.min(eta.sqrt() * (-d.entropy()).exp());
    cut_below(logits, &d.probs, cutoff);
}

/// Remove tokens with probability below `cutoff`, keeping every token whose logit equals the
/// maximum (transformers' `scores < topk(scores, 1)` guard).
fn cut_below(logits: &mut [f32], probs: &[f64], cutoff: f64) {
    let max = max_logit(logits);
    for (l, &p) in logits.iter_mut().zip(probs) {
        if p < cutoff && *l < max {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// Top-nσ (Tang et al. 2024, "Top-nσ: Not All Logits Are You Need"; llama.cpp's
/// `top_n_sigma` sampler): keep the logits at least max − n·σ, where σ is the population
/// standard deviation of the finite logits, as llama.cpp computes it. Working on logits rather
/// than probabilities makes the cut independent of temperature. `n <= 0` is off, as in
/// llama.cpp. transformers has no peer.
pub fn top_n_sigma(logits: &mut [f32], n: f32) {
    // A NaN n is off too.
    if n.is_nan() || n <= 0.0 {
        return;
    }
    let finite = || logits.iter().filter(|l| l.is_finite()).map(|&l| l as f64);
    let count = finite().count();
    if count == 0 {
        return;
    }
    let max = finite().fold(f64::NEG_INFINITY, f64::max);
    let mean = finite().sum::<f64>() / count as f64;
    let variance = finite().map(|l| (l - mean) * (l - mean)).sum::<f64>() / count as f64;
    let threshold = max - n as f64 * variance.sqrt();
    for l in logits.iter_mut() {
        if (*l as f64) < threshold {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// OpenAI's frequency and presence penalties, as the OpenAI API reference and vLLM define them:
/// l −= frequency·count + presence·[count > 0], where count is how often the token occurs in
/// `generated` (the generated tokens only, never the prompt). Positive values discourage
/// repetition, negative ones encourage it; the subtraction is additive, unlike
/// [`repetition_penalty`]. Arithmetic is f32, in vLLM's order (frequency, then presence).
/// transformers has no peer. Token ids outside the row are ignored.
pub fn frequency_presence(logits: &mut [f32], generated: &[u32], frequency: f32, presence: f32) {
    let mut sorted = generated.to_vec();
    sorted.sort_unstable();
    for run in sorted.chunk_by(|a, b| a == b) {
        if let Some(l) = logits.get_mut(run[0] as usize) {
            *l -= frequency * run.len() as f32;
            *l -= presence;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEG: f32 = f32::NEG_INFINITY;

    fn removed(row: &[f32]) -> Vec<usize> {
        (0..row.len()).filter(|&i| row[i] == NEG).collect()
    }

    #[test]
    fn repetition_penalty_divides_positive_multiplies_negative_once() {
        // CTRL (Keskar et al. 2019, eq. 2) as transformers applies it: l / θ for l ≥ 0, l · θ
        // for l < 0, each token at most once however often it occurs.
        let mut row = vec![3.0, -1.0, 0.5, 2.0, 0.0];
        repetition_penalty(&mut row, &[0, 1, 0, 0, 1, 4, 99], 2.0);
        assert_eq!(row, vec![1.5, -2.0, 0.5, 2.0, 0.0]);
    }

    #[test]
    fn no_repeat_ngram_bans_completions_including_prompt_tokens() {
        // Context 5 6 7 5 6, bigrams: (6 7) already seen, so after 6 token 7 is banned.
        let mut row = vec![0.0; 10];
        no_repeat_ngram(&mut row, &[5, 6, 7, 5, 6], 2);
        assert_eq!(removed(&row), vec![7]);
        // Trigrams: prefix (5 6) was followed by 7.
        let mut row = vec![0.0; 10];
        no_repeat_ngram(&mut row, &[5, 6, 7, 5, 6], 3);
        assert_eq!(removed(&row), vec![7]);
        // n = 1 bans every token seen; a context shorter than n bans nothing.
        let mut row = vec![0.0; 10];
        no_repeat_ngram(&mut row, &[2, 4, 2], 1);
        assert_eq!(removed(&row), vec![2, 4]);
        let mut row = vec![0.0; 10];
        no_repeat_ngram(&mut row, &[2, 4], 3);
        assert!(removed(&row).is_empty());
        // A run 3 3: the prefix (3) matches the window (3 3), which bans 3.
        let mut row = vec![0.0; 10];
        no_repeat_ngram(&mut row, &[3, 3], 2);
        assert_eq!(removed(&row), vec![3]);
    }

    #[test]
    fn min_p_keeps_ratios_at_least_min_p_and_ties_at_one() {
        // p_i / p_max = exp(l_i − l_max): ln 0.5 ≈ −0.693, so −0.6 stays and −0.8 goes.
        let mut row = vec![0.0, -0.6, -0.8, 0.0, -5.0];
        min_p(&mut row, 0.5);
        assert_eq!(removed(&row), vec![2, 4]);
        let mut row = vec![1.0, 1.0, 0.999];
        min_p(&mut row, 1.0);
        assert_eq!(removed(&row), vec![2]);
        let mut row = vec![1.0, -3.0];
        min_p(&mut row, 0.0);
        assert!(removed(&row).is_empty());
    }

    #[test]
    fn typical_keeps_the_tokens_closest_to_the_entropy() {
        // Probabilities 0.5, 0.25, 0.125, 0.125 (logits ln p): H = 1.75 ln 2 nats.
        // Distances |−ln p − H| in units of ln 2: 0.75, 0.25, 1.25, 1.25. Sorted: 0.25 (p 0.25),
        // 0.75 (p 0.5), 1.25, 1.25; cumulative 0.25, 0.75, 0.875, 1.0.
        let row: Vec<f32> = [0.5f64, 0.25, 0.125, 0.125]
            .iter()
            .map(|p| p.ln() as f32)
            .collect();
        // mass 0.5: one position below it, so the threshold is the second-closest token's
        // distance: tokens 0 and 1 stay.
        let mut r = row.clone();
        typical(&mut r, 0.5);
        assert_eq!(removed(&r), vec![2, 3]);
        // mass 0.8: two positions below it (0.875 is not), threshold 1.25: the tied pair
        // stays together.
        let mut r = row.clone();
        typical(&mut r, 0.8);
        assert!(removed(&r).is_empty());
        // mass → 0: only the closest token (token 1, not the argmax) stays.
        let mut r = row.clone();
        typical(&mut r, 1e-9);
        assert_eq!(removed(&r), vec![0, 2, 3]);
    }

    #[test]
    fn epsilon_and_eta_keep_the_argmax_and_its_ties() {
        // Probabilities 0.4, 0.4, 0.15, 0.05.
        let row: Vec<f32> = [0.4f64, 0.4, 0.15, 0.05]
            .iter()
            .map(|p| p.ln() as f32)
            .collect();
        let mut r = row.clone();
        epsilon(&mut r, 0.1);
        assert_eq!(removed(&r), vec![3]);
        // ε above p_max removes everything but the (tied) maximum.
        let mut r = row.clone();
        epsilon(&mut r, 0.9);
        assert_eq!(removed(&r), vec![2, 3]);
        // η = 0.5: H ≈ 1.1674 nats, √0.5·e^−H ≈ 0.2200 < 0.5, so the cutoff is 0.2200.
        let mut r = row.clone();
        eta(&mut r, 0.5);
        assert_eq!(removed(&r), vec![2, 3]);
        // η = 0.01: cutoff min(0.01, 0.0311) = 0.01 removes nothing.
        let mut r = row.clone();
        eta(&mut r, 0.01);
        assert!(removed(&r).is_empty());
    }

    #[test]
    fn eta_cuts_less_on_a_flat_row() {
        // 32 equal logits: H = ln 32, √η·e^−H = √0.09 / 32 ≈ 0.0094 < 1/32, so nothing goes.
        let mut r = vec![0.25f32; 32];
        eta(&mut r, 0.09);
        assert!(removed(&r).is_empty());
    }

    #[test]
    fn top_n_sigma_keeps_logits_within_n_population_sigmas_of_the_max() {
        // Tang et al. 2024 / llama.cpp: logits 4, 2, 0, −2 have mean 1 and population σ = √5
        // ≈ 2.236. n = 1: threshold 4 − 2.236 = 1.764 keeps 4 and 2. n = 2: 4 − 4.472 = −0.472
        // keeps 4, 2 and 0. The −inf entry is left out of σ and stays removed.
        let row = vec![4.0, 2.0, 0.0, -2.0, NEG];
        let mut r = row.clone();
        top_n_sigma(&mut r, 1.0);
        assert_eq!(removed(&r), vec![2, 3, 4]);
        let mut r = row.clone();
        top_n_sigma(&mut r, 2.0);
        assert_eq!(removed(&r), vec![3, 4]);
        let mut r = row.clone();
        top_n_sigma(&mut r, 0.0);
        assert_eq!(r[..4], row[..4]);
    }

    #[test]
    fn frequency_presence_subtracts_per_count_and_once_per_token() {
        // OpenAI API reference / vLLM: l −= f·count + p·[count > 0]. Token 1 occurs 3 times,
        // token 2 once: 1 − (0.5·3 + 0.25) = −0.75, 1 − (0.5 + 0.25) = 0.25.
        let mut row = vec![1.0, 1.0, 1.0];
        frequency_presence(&mut row, &[1, 2, 1, 1, 7], 0.5, 0.25);
        assert_eq!(row, vec![1.0, -0.75, 0.25]);
    }

    /// `temperature_last` (llama.cpp's sampler chain, where `temp` runs after the
    /// truncation samplers; Nguyen et al. 2024, section 4, apply min-p before temperature for
    /// their high-temperature results). Logits 2, 1, 0, −1 at T = 2 with min_p = 0.3:
    /// temperature first, the ratios to the maximum are e^{−0.5k} = 1, 0.607, 0.368, 0.223, so
    /// three tokens pass; temperature last, they are e^{−k} = 1, 0.368, 0.135, 0.050, so two
    /// pass, and T = 2 then spreads the survivors to 1 : e^{−0.5} (0.622, 0.378).
    #[test]
    fn temperature_last_filters_the_untempered_row() {
        let knobs = Processors {
            min_p: 0.3,
            ..Processors::OFF
        };
        let mut first = vec![2.0f32, 1.0, 0.0, -1.0];
        warp(&mut first, 2.0, 0, 1.0, &knobs, &[], 0);
        assert_eq!(removed(&first), vec![3]);
        let mut last = vec![2.0f32, 1.0, 0.0, -1.0];
        let knobs = Processors {
            temperature_last: true,
            ..knobs
        };
        warp(&mut last, 2.0, 0, 1.0, &knobs, &[], 0);
        assert_eq!(removed(&last), vec![2, 3]);
        assert_eq!(last[..2], [1.0, 0.5]);
        // The survivors' probabilities are 1 : e^{−0.5}.
        let max = last[0] as f64;
        let weights: Vec<f64> = last.iter().map(|&l| (l as f64 - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        assert!((weights[0] / total - 0.6225).abs() < 1e-4, "{last:?}");
        assert!((weights[1] / total - 0.3775).abs() < 1e-4, "{last:?}");
        // The order of the stages, as documented.
        let every = Processors {
            repetition_penalty: 1.2,
            frequency_penalty: 0.1,
            no_repeat_ngram_size: 2,
            min_p: 0.1,
            typical_p: 0.9,
            epsilon_cutoff: 1e-4,
            eta_cutoff: 1e-3,
            top_n_sigma: 2.0,
            ..Processors::OFF
        };
        let names = |stages: Vec<Stage>| -> Vec<String> {
            stages
                .iter()
                .map(|s| s.describe().split(' ').next().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            names(stages(0.7, 50, 0.9, &every)),
            [
                "repetition_penalty",
                "frequency_penalty",
                "no_repeat_ngram_size",
                "temperature",
                "top_k",
                "top_p",
                "min_p",
                "typical_p",
                "epsilon_cutoff",
                "eta_cutoff",
                "top_n_sigma"
            ]
        );
        let last = names(stages(
            0.7,
            50,
            0.9,
            &Processors {
                temperature_last: true,
                ..every
            },
        ));
        assert_eq!(last[3], "top_k");
        assert_eq!(last.last().unwrap(), "temperature");
    }

    #[test]
    fn nan_and_empty_rows_do_not_panic() {
        let nan_row = vec![f32::NAN, 1.0, 0.0, f32::NAN];
        let mut r = nan_row.clone();
        repetition_penalty(&mut r, &[0, 1], 1.3);
        no_repeat_ngram(&mut r, &[0, 1, 0], 2);
        min_p(&mut r, 0.1);
        typical(&mut r, 0.5);
        epsilon(&mut r, 0.1);
        eta(&mut r, 0.1);
        top_n_sigma(&mut r, 1.0);
        frequency_presence(&mut r, &[0], 0.1, 0.1);
        let mut all_nan = vec![f32::NAN; 3];
        typical(&mut all_nan, 0.5);
        min_p(&mut all_nan, 0.5);
        let mut empty: Vec<f32> = vec![];
        typical(&mut empty, 0.5);
        min_p(&mut empty, 0.5);
        top_n_sigma(&mut empty, 1.0);
        eta(&mut empty, 0.1);
        let mut all_removed = vec![NEG; 3];
        typical(&mut all_removed, 0.5);
        eta(&mut all_removed, 0.1);
    }
}
