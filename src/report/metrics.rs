//! Scores for a set of sampled continuations: diversity (distinct-n, Self-BLEU, Zipf),
//! degeneration (repetition loops, seq-rep-n), fluency (perplexity), and confidence
//! intervals for any of them that treat the prompt as the unit ([`cluster_bootstrap_ci`],
//! [`jackknife_ci`]).
//!
//! Pure math over sequences: token ids (`u32`) or words (`&str`, see [`words`]). Functions
//! that take a set of samples accept any `&[S]` with `S: AsRef<[T]>`, so `&[Vec<u32>]`,
//! `&[Vec<&str>]` and the `&[&Vec<_>]` handed out by [`bootstrap_ci_by`] all work.
//!
//! Conventions:
//! - A score that is undefined on its input (no tokens, fewer than two samples, ...)
//!   is NaN, so a missing value cannot pass for a real 0; each function documents its
//!   cases.
//! - Results are deterministic: hash maps are only used to count and look up, never
//!   iterated into a floating-point sum; sums run in sample order; randomness comes from
//!   ChaCha8 streams seeded by the caller, independent of the rayon thread count.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;

/// Whitespace-separated words: the tokenisation under distinct-n, Self-BLEU and Zipf
/// when they are computed on text, as in Texygen (Zhu et al. 2018), which splits on
/// whitespace. Unicode whitespace counts; punctuation stays attached to its word.
pub fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

/// Arithmetic mean; NaN for an empty slice (0/0).
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// distinct-n (Li et al. 2016, "A Diversity-Promoting Objective Function for Neural
/// Conversation Models"): unique n-grams ÷ total n-grams, pooled over ALL samples of a
/// setting, so a phrase reused across samples lowers it. N-grams never cross sample
/// boundaries. Li et al. scale by the number of generated tokens; dividing by the number
/// of n-grams instead (the common implementation) makes distinct-n exactly 1 for fully
/// diverse text; the denominators differ by `n − 1` per sample. No n-grams at all (every
/// sample shorter than `n`) gives NaN: a ratio of nothing, which a 0 would present as
/// "wholly repetitive" (greedy one-word texts were once reported as `distinct_2 = 0`).
///
/// # Panics
/// If `n == 0`.
pub fn distinct_n<S: AsRef<[T]>, T: Eq + Hash>(samples: &[S], n: usize) -> f64 {
    assert!(n > 0, "distinct-n needs n >= 1");
    let mut unique = HashSet::new();
    let mut total = 0_usize;
    for sample in samples {
        for gram in sample.as_ref().windows(n) {
            unique.insert(gram);
            total += 1;
        }
    }
    if total == 0 {
        f64::NAN
    } else {
        unique.len() as f64 / total as f64
    }
}

/// Perplexity of one sample, `exp(−(1/T) Σ log p(x_t | x_<t))`, from its per-token
/// natural-log probabilities. Accumulated in f64 so long samples lose no precision.
/// No tokens gives NaN (the mean of nothing).
pub fn perplexity(logprobs: &[f32]) -> f64 {
    let nll: f64 = logprobs.iter().map(|&lp| -f64::from(lp)).sum();
    (nll / logprobs.len() as f64).exp()
}

/// Mean of per-sample perplexities: what Hugging Face `evaluate`'s `perplexity` metric
/// reports as `mean_perplexity`. Dominated by the worst samples, since perplexity is
/// convex in the NLL; compare with [`corpus_perplexity`]. Empty gives NaN.
pub fn mean_perplexity(per_sample: &[f64]) -> f64 {
    mean(per_sample)
}

/// Corpus perplexity: `exp` of the token-weighted mean NLL over all samples, i.e. every
/// token counts once whatever sample it is in (the language-modelling convention for a
/// test corpus). No tokens at all gives NaN.
pub fn corpus_perplexity<S: AsRef<[f32]>>(samples: &[S]) -> f64 {
    let mut nll = 0.0_f64;
    let mut tokens = 0_usize;
    for sample in samples {
        let logprobs = sample.as_ref();
        nll -= logprobs.iter().map(|&lp| f64::from(lp)).sum::<f64>();
        tokens += logprobs.len();
    }
    (nll / tokens as f64).exp()
}

/// seq-rep-n (Welleck et al. 2019, "Neural Text Generation with Unlikelihood
/// Training"): `1 − |unique n-grams| ÷ |n-grams|` within one sample; 0 when no n-gram
/// repeats. A sample shorter than `n` has no n-grams and gives NaN.
///
/// # Panics
/// If `n == 0`.
pub fn rep_n<T: Eq + Hash>(tokens: &[T], n: usize) -> f64 {
    assert!(n > 0, "seq-rep-n needs n >= 1");
    let unique: HashSet<&[T]> = tokens.windows(n).collect();
    let total = tokens.windows(n).len();
    1.0 - unique.len() as f64 / total as f64
}

/// Mean seq-rep-n over samples, skipping samples shorter than `n` (they have no
/// n-grams, so no repetition rate). NaN when every sample is skipped.
///
/// # Panics
/// If `n == 0`.
pub fn mean_rep_n<S: AsRef<[T]>, T: Eq + Hash>(samples: &[S], n: usize) -> f64 {
    assert!(n > 0, "seq-rep-n needs n >= 1");
    let rates: Vec<f64> = samples
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| s.len() >= n)
        .map(|s| rep_n(s, n))
        .collect();
    mean(&rates)
}

/// Mean seq-rep-4, the order Welleck et al. 2019 report; see [`mean_rep_n`].
pub fn mean_rep_4<S: AsRef<[T]>, T: Eq + Hash>(samples: &[S]) -> f64 {
    mean_rep_n(samples, 4)
}

/// BLEU-4: n-gram orders 1..=4 with uniform weights 1/4.
const BLEU_ORDERS: usize = 4;

/// NLTK `SmoothingFunction().method1`'s `epsilon`: a zero clipped count `0/d` becomes
/// `0.1/d` (Chen & Cherry 2014, smoothing 1).
const SMOOTHING_EPSILON: f64 = 0.1;

/// Self-BLEU-4 (Zhu et al. 2018, "Texygen"): the mean BLEU-4 of each sample, as the
/// hypothesis, against all the setting's OTHER samples as references. Higher means the
/// samples resemble each other (less diverse). See [`self_bleu_4_scores`] for the exact
/// BLEU definition and the subsampling; this is their mean. Fewer than 2 samples (or
/// `max_exact == 0`) gives NaN.
pub fn self_bleu_4<S: AsRef<[T]>, T: Eq + Hash>(samples: &[S], max_exact: usize, seed: u64) -> f64 {
    mean(&self_bleu_4_scores(samples, max_exact, seed))
}

/// Per-hypothesis Self-BLEU-4 scores, in ascending sample index order. Each is NLTK 3.x
/// `sentence_bleu(others, hypothesis, weights=(0.25,)*4,
/// smoothing_function=SmoothingFunction().method1)`, which Texygen calls:
/// - modified precision `p_n = Σ_g min(c_hyp(g), max_ref c_ref(g)) / max(1, #hyp n-grams)`
///   (Papineni et al. 2002: counts clipped by the largest count in any one reference);
/// - BLEU is 0 when no unigram matches; otherwise method1 smoothing replaces a zero
///   numerator by `0.1` (keeping the denominator);
/// - brevity penalty `exp(1 − r/c)` when `c ≤ r` (1 when `c > r`, 0 when `c = 0`), with
///   `r` the reference length closest to the hypothesis length `c`, the shorter on a tie;
/// - BLEU = `BP · exp(Σ_n ¼ log p_n)`.
///
/// Exact Self-BLEU is quadratic in the number of samples. With more than `max_exact`
/// samples, only a uniformly drawn subset of `max_exact` hypotheses is scored (ChaCha8
/// seeded with `seed`), each still against ALL other samples, so each score is exact and
/// only the mean is estimated. Empty when there are fewer than 2 samples.
pub fn self_bleu_4_scores<S: AsRef<[T]>, T: Eq + Hash>(
    samples: &[S],
    max_exact: usize,
    seed: u64,
) -> Vec<f64> {
    if samples.len() < 2 {
        return Vec::new();
    }
    let ids = intern(samples);
    let hypotheses = hypothesis_subset(samples.len(), max_exact, seed);
    bleu_scores(&ids, &hypotheses)
}

/// Self-BLEU-4 of the samples `keep` (sorted indices into `samples`): the mean BLEU-4 of each
/// of `hypotheses` (sorted indices) that `keep` holds, against the other samples of `keep`.
/// This is what a leave-some-out resampling needs: fixing the hypotheses once (e.g. the
/// [`hypothesis_subset`] of the whole set) keeps the subsampling out of the spread between
/// subsets. NaN when `keep` has fewer than 2 samples or holds none of `hypotheses`.
pub fn self_bleu_4_among<S: AsRef<[T]>, T: Eq + Hash>(
    samples: &[S],
    keep: &[usize],
    hypotheses: &[usize],
) -> f64 {
    if keep.len() < 2 {
        return f64::NAN;
    }
    let kept: Vec<&[T]> = keep.iter().map(|&i| samples[i].as_ref()).collect();
    let local: Vec<usize> = keep
        .iter()
        .enumerate()
        .filter(|(_, i)| hypotheses.binary_search(i).is_ok())
        .map(|(position, _)| position)
        .collect();
    mean(&bleu_scores(&intern(&kept), &local))
}

/// BLEU-4 of each of `hypotheses` (indices into `ids`) against all the other samples.
fn bleu_scores(ids: &[Vec<u32>], hypotheses: &[usize]) -> Vec<f64> {
    // One order at a time, each index dropped before the next is built: an index holds every
    // distinct n-gram of the setting, and keeping four would make peak memory grow with the
    // number of samples.
    let mut matches = vec![[0_u64; BLEU_ORDERS]; hypotheses.len()];
    for k in 0..BLEU_ORDERS {
        let order = OrderIndex::build(ids, k + 1);
        matches
            .par_iter_mut()
            .zip(hypotheses)
            .for_each(|(m, &h)| m[k] = order.clipped_matches(h));
    }
    let mut lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
    lengths.sort_unstable();
    hypotheses
        .par_iter()
        .zip(&matches)
        .map(|(&h, matches)| {
            let hyp_len = ids[h].len();
            let mut totals = [0_u64; BLEU_ORDERS];
            for (k, total) in totals.iter_mut().enumerate() {
                *total = (hyp_len + 1).saturating_sub(k + 1) as u64;
            }
            let ref_len = closest_other_length(&lengths, hyp_len);
            sentence_bleu_4(matches, &totals, hyp_len, ref_len)
        })
        .collect()
}

/// [`self_bleu_4_among`] of the whole set and of the set without each group in turn, in one
/// pass (`group_of[i] < groups` is sample `i`'s group; `hypotheses` sorted). Equal, score
/// for score, to calling it `groups + 1` times, at the cost of about one call: each
/// hypothesis' clipped counts against "every other sample but group c" follow, for all c
/// at once, from each n-gram's largest count in each group, since leaving a group out only
/// lowers an n-gram's reference maximum when that group held it. This is what keeps a
/// leave-one-prompt-out jackknife of Self-BLEU (quadratic when done naively) cheap.
pub fn self_bleu_4_leave_group_out<S: AsRef<[T]>, T: Eq + Hash>(
    samples: &[S],
    group_of: &[usize],
    groups: usize,
    hypotheses: &[usize],
) -> (f64, Vec<f64>) {
    let ids = intern(samples);
    let n = ids.len();
    let mut sizes = vec![0_usize; groups];
    for &g in group_of {
        sizes[g] += 1;
    }
    // Per hypothesis and order: clipped matches against all other samples, and how many of
    // them are lost when each group is left out.
    let mut matches = vec![[0_u64; BLEU_ORDERS]; hypotheses.len()];
    let mut lost = vec![vec![[0_u64; BLEU_ORDERS]; groups]; hypotheses.len()];
    for k in 0..BLEU_ORDERS {
        let order = GroupedOrderIndex::build(&ids, group_of, k + 1);
        matches
            .par_iter_mut()
            .zip(lost.par_iter_mut())
            .zip(hypotheses)
            .for_each(|((m, l), &h)| {
                m[k] = order.clipped_matches(h, group_of[h], |g, d| l[g][k] += d)
            });
    }
    let lengths = LengthCounts::new(&ids, group_of, groups);
    let mut sorted_lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
    sorted_lengths.sort_unstable();
    let totals_of = |h: usize| {
        let mut totals = [0_u64; BLEU_ORDERS];
        for (k, total) in totals.iter_mut().enumerate() {
            *total = (ids[h].len() + 1).saturating_sub(k + 1) as u64;
        }
        totals
    };
    let whole: Vec<f64> = hypotheses
        .iter()
        .zip(&matches)
        .map(|(&h, m)| {
            let ref_len = closest_other_length(&sorted_lengths, ids[h].len());
            sentence_bleu_4(m, &totals_of(h), ids[h].len(), ref_len)
        })
        .collect();
    let estimate = if n < 2 { f64::NAN } else { mean(&whole) };
    let leave_out = (0..groups)
        .into_par_iter()
        .map(|c| {
            if n - sizes[c] < 2 {
                return f64::NAN;
            }
            let scores: Vec<f64> = hypotheses
                .iter()
                .enumerate()
                .filter(|&(_, &h)| group_of[h] != c)
                .map(|(i, &h)| {
                    let mut m = matches[i];
                    for (mk, lk) in m.iter_mut().zip(&lost[i][c]) {
                        *mk -= lk;
                    }
                    let ref_len = lengths.closest_without(ids[h].len(), c);
                    sentence_bleu_4(&m, &totals_of(h), ids[h].len(), ref_len)
                })
                .collect();
            mean(&scores)
        })
        .collect();
    (estimate, leave_out)
}

/// Counts of every n-gram of one order per sample, and per n-gram the two largest counts
/// within each group that holds it.
struct GroupedOrderIndex {
    /// Per sample: `(n-gram id, count)`, sorted by id.
    counts: Vec<Vec<(u32, u32)>>,
    /// Per n-gram id: `(group, top two counts in that group)`, groups in first-seen order.
    tops: Vec<Vec<(u32, TopTwo)>>,
}

impl GroupedOrderIndex {
    fn build(ids: &[Vec<u32>], group_of: &[usize], n: usize) -> Self {
        let mut gram_ids: HashMap<u128, u32> = HashMap::new();
        let mut counts = Vec::with_capacity(ids.len());
        let mut tops: Vec<Vec<(u32, TopTwo)>> = Vec::new();
        let mut grams = Vec::new();
        for (sample, words) in ids.iter().enumerate() {
            let runs = gram_counts(words, n, &mut gram_ids, &mut grams);
            tops.resize_with(gram_ids.len(), Vec::new);
            let group = group_of[sample] as u32;
            for &(gram, count) in &runs {
                let entries = &mut tops[gram as usize];
                match entries.iter_mut().find(|(g, _)| *g == group) {
                    Some((_, top)) => top.add(sample as u32, count),
                    None => {
                        let mut top = TopTwo::default();
                        top.add(sample as u32, count);
                        entries.push((group, top));
                    }
                }
            }
            counts.push(runs);
        }
        Self { counts, tops }
    }

    /// Σ over the hypothesis' n-grams of min(its count, max count in any other sample), and,
    /// through `lose(group, matches)`, what that sum loses when `group` is left out too.
    /// Per n-gram the reference maximum is the larger of the best other group's maximum and
    /// the hypothesis' own group's maximum without it; leaving out a group other than the
    /// hypothesis' only matters when it is that best group, and then the runner-up group
    /// takes its place.
    fn clipped_matches(
        &self,
        hypothesis: usize,
        own_group: usize,
        mut lose: impl FnMut(usize, u64),
    ) -> u64 {
        let (h, own) = (hypothesis as u32, own_group as u32);
        let mut total = 0;
        for &(gram, count) in &self.counts[hypothesis] {
            let (mut own_max, mut best, mut best_group, mut runner_up) = (0, 0, u32::MAX, 0);
            for &(group, top) in &self.tops[gram as usize] {
                if group == own {
                    own_max = top.max_excluding(h);
                } else if top.first > best {
                    runner_up = best;
                    best = top.first;
                    best_group = group;
                } else if top.first > runner_up {
                    runner_up = top.first;
                }
            }
            let with_all = count.min(best.max(own_max));
            let without_best = count.min(runner_up.max(own_max));
            total += u64::from(with_all);
            if with_all > without_best {
                lose(best_group as usize, u64::from(with_all - without_best));
            }
        }
        total
    }
}

/// Sample lengths, overall and per group, to find NLTK's closest reference length when a
/// group is left out.
struct LengthCounts {
    /// Distinct lengths, ascending, with their counts.
    all: Vec<(usize, usize)>,
    /// Per group: `(length, count)`, ascending.
    per_group: Vec<Vec<(usize, usize)>>,
}

impl LengthCounts {
    fn new(ids: &[Vec<u32>], group_of: &[usize], groups: usize) -> Self {
        let count = |lengths: &mut Vec<usize>| -> Vec<(usize, usize)> {
            lengths.sort_unstable();
            lengths
                .chunk_by(|a, b| a == b)
                .map(|run| (run[0], run.len()))
                .collect()
        };
        let mut per_group: Vec<Vec<usize>> = vec![Vec::new(); groups];
        for (words, &g) in ids.iter().zip(group_of) {
            per_group[g].push(words.len());
        }
        let mut all: Vec<usize> = ids.iter().map(Vec::len).collect();
        Self {
            all: count(&mut all),
            per_group: per_group.iter_mut().map(count).collect(),
        }
    }

    /// [`closest_other_length`] over the samples outside group `left_out` (the hypothesis,
    /// of length `hyp_len`, is in another group and is not a reference).
    fn closest_without(&self, hyp_len: usize, left_out: usize) -> usize {
        let group = &self.per_group[left_out];
        let available = |i: usize| {
            let (len, count) = self.all[i];
            let gone = group
                .binary_search_by_key(&len, |&(l, _)| l)
                .map_or(0, |j| group[j].1);
            count - gone - usize::from(len == hyp_len) > 0
        };
        let at = self.all.partition_point(|&(l, _)| l < hyp_len);
        if at < self.all.len() && self.all[at].0 == hyp_len && available(at) {
            return hyp_len;
        }
        let shorter = (0..at).rev().find(|&i| available(i)).map(|i| self.all[i].0);
        let first_longer = if at < self.all.len() && self.all[at].0 == hyp_len {
            at + 1
        } else {
            at
        };
        let longer = (first_longer..self.all.len())
            .find(|&i| available(i))
            .map(|i| self.all[i].0);
        match (shorter, longer) {
            (Some(s), Some(l)) if hyp_len - s <= l - hyp_len => s,
            (_, Some(l)) => l,
            (Some(s), None) => s,
            (None, None) => hyp_len,
        }
    }
}

/// Replaces each distinct word by a dense `u32` id (first-appearance order), so n-grams
/// of up to 4 words pack exactly into a `u128` key: no hash-collision approximations.
fn intern<S: AsRef<[T]>, T: Eq + Hash>(samples: &[S]) -> Vec<Vec<u32>> {
    let mut vocabulary: HashMap<&T, u32> = HashMap::new();
    samples
        .iter()
        .map(|sample| {
            sample
                .as_ref()
                .iter()
                .map(|word| {
                    let next = vocabulary.len() as u32;
                    *vocabulary.entry(word).or_insert(next)
                })
                .collect()
        })
        .collect()
}

/// The two largest per-sample counts of one n-gram, and which sample holds the largest.
/// "Max count over all references except the hypothesis" is then O(1): the top count,
/// or the runner-up if the hypothesis itself holds the top. Equal top counts in two
/// samples leave `second == first`, so ties are exact.
#[derive(Debug, Clone, Copy, Default)]
struct TopTwo {
    first: u32,
    first_sample: u32,
    second: u32,
}

impl TopTwo {
    fn add(&mut self, sample: u32, count: u32) {
        if count > self.first {
            self.second = self.first;
            self.first = count;
            self.first_sample = sample;
        } else if count > self.second {
            self.second = count;
        }
    }

    fn max_excluding(&self, sample: u32) -> u32 {
        if self.first_sample == sample {
            self.second
        } else {
            self.first
        }
    }
}

/// Counts of every n-gram of one order, per sample and across samples.
struct OrderIndex {
    /// Per sample: `(n-gram id, count)`, sorted by id.
    counts: Vec<Vec<(u32, u32)>>,
    /// Per n-gram id.
    top: Vec<TopTwo>,
}

impl OrderIndex {
    fn build(ids: &[Vec<u32>], n: usize) -> Self {
        let mut gram_ids: HashMap<u128, u32> = HashMap::new();
        let mut counts = Vec::with_capacity(ids.len());
        let mut top: Vec<TopTwo> = Vec::new();
        let mut grams = Vec::new();
        for (sample, words) in ids.iter().enumerate() {
            let runs = gram_counts(words, n, &mut gram_ids, &mut grams);
            top.resize(gram_ids.len(), TopTwo::default());
            for &(gram, count) in &runs {
                top[gram as usize].add(sample as u32, count);
            }
            counts.push(runs);
        }
        Self { counts, top }
    }

    /// Σ over the hypothesis' n-grams of min(its count, max count in any other sample).
    fn clipped_matches(&self, hypothesis: usize) -> u64 {
        let h = hypothesis as u32;
        self.counts[hypothesis]
            .iter()
            .map(|&(gram, count)| u64::from(count.min(self.top[gram as usize].max_excluding(h))))
            .sum()
    }
}

/// `(n-gram id, count)` of every n-gram of `words`, sorted by id; ids are given out in
/// first-seen order through `gram_ids`, shared by all samples. `grams` is scratch space.
fn gram_counts(
    words: &[u32],
    n: usize,
    gram_ids: &mut HashMap<u128, u32>,
    grams: &mut Vec<u32>,
) -> Vec<(u32, u32)> {
    grams.clear();
    for gram in words.windows(n) {
        let key = gram.iter().fold(0_u128, |k, &w| (k << 32) | u128::from(w));
        let next = gram_ids.len() as u32;
        grams.push(*gram_ids.entry(key).or_insert(next));
    }
    grams.sort_unstable();
    run_lengths(grams)
}

/// `(value, multiplicity)` of each run in a sorted slice.
fn run_lengths(sorted: &[u32]) -> Vec<(u32, u32)> {
    sorted
        .chunk_by(|a, b| a == b)
        .map(|run| (run[0], run.len() as u32))
        .collect()
}

/// NLTK's `closest_ref_length` against all samples but the hypothesis: `sorted_lengths`
/// holds every sample's length (the hypothesis' included, at least two entries), so one
/// occurrence of `hyp_len` is the hypothesis itself. Ties go to the shorter length.
fn closest_other_length(sorted_lengths: &[usize], hyp_len: usize) -> usize {
    let lo = sorted_lengths.partition_point(|&l| l < hyp_len);
    let hi = sorted_lengths.partition_point(|&l| l <= hyp_len);
    if hi - lo >= 2 {
        return hyp_len;
    }
    let shorter = lo.checked_sub(1).map(|i| sorted_lengths[i]);
    let longer = sorted_lengths.get(hi).copied();
    match (shorter, longer) {
        (Some(s), Some(l)) if hyp_len - s <= l - hyp_len => s,
        (_, Some(l)) => l,
        (Some(s), None) => s,
        (None, None) => hyp_len,
    }
}

/// Papineni et al. 2002 brevity penalty as NLTK computes it.
fn brevity_penalty(ref_len: usize, hyp_len: usize) -> f64 {
    if hyp_len > ref_len {
        1.0
    } else if hyp_len == 0 {
        0.0
    } else {
        (1.0 - ref_len as f64 / hyp_len as f64).exp()
    }
}

/// Sentence BLEU-4 from clipped match counts and hypothesis n-gram totals per order,
/// with NLTK's rules: 0 without a unigram match, method1 smoothing, denominators ≥ 1.
fn sentence_bleu_4(
    matches: &[u64; BLEU_ORDERS],
    totals: &[u64; BLEU_ORDERS],
    hyp_len: usize,
    ref_len: usize,
) -> f64 {
    if matches[0] == 0 {
        return 0.0;
    }
    let log_precision: f64 = matches
        .iter()
        .zip(totals)
        .map(|(&m, &t)| {
            let denominator = t.max(1) as f64;
            let numerator = if m == 0 { SMOOTHING_EPSILON } else { m as f64 };
            (numerator / denominator).ln() / BLEU_ORDERS as f64
        })
        .sum();
    brevity_penalty(ref_len, hyp_len) * log_precision.exp()
}

/// Indices of the hypotheses to score: all of them, or a uniform `max_exact`-subset
/// (partial Fisher–Yates), sorted so the mean sums in sample order.
pub fn hypothesis_subset(n: usize, max_exact: usize, seed: u64) -> Vec<usize> {
    let mut indices: Vec<usize> = (0..n).collect();
    if n <= max_exact {
        return indices;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in 0..max_exact {
        let j = i + uniform_below(&mut rng, n - i);
        indices.swap(i, j);
    }
    indices.truncate(max_exact);
    indices.sort_unstable();
    indices
}

/// Unbiased uniform integer in `0..bound` (Lemire 2019, "Fast Random Integer Generation
/// in an Interval": multiply-shift with rejection of the biased low zone).
pub(crate) fn uniform_below(rng: &mut impl RngCore, bound: usize) -> usize {
    assert!(bound > 0, "empty range");
    let bound = bound as u64;
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let product = u128::from(rng.next_u64()) * u128::from(bound);
        if product as u64 >= threshold {
            return (product >> 64) as usize;
        }
    }
}

/// Resample count recommended for cheap statistics (means of per-sample values,
/// distinct-n, repetition rate, Zipf): the usual 1,000 for a 95 % percentile interval
/// (Efron & Tibshirani 1993 suggest ≥ 1,000 for percentile intervals; fewer makes the
/// 2.5 % / 97.5 % tails noisy). Set-level statistics (distinct-n, Self-BLEU) are better
/// served by [`jackknife_ci`], which needs no resamples.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

/// 95 % percentile bootstrap CI (Efron 1979) of `statistic` over `values`, each value on its
/// own: right for independent values only; texts of one prompt are not, see
/// [`cluster_bootstrap_ci`]. Resample
/// `values` with replacement `resamples` times, take the 2.5th and 97.5th percentiles of
/// the statistic (linear interpolation, numpy's default). Resample `r` draws from ChaCha8
/// seeded with `seed` on stream `r`, so the interval is repeatable and independent of
/// the thread count. Resamples whose statistic is NaN are dropped; no values, no
/// resamples, or all NaN gives `(NaN, NaN)`. See [`BOOTSTRAP_RESAMPLES`].
pub fn bootstrap_ci(
    values: &[f64],
    statistic: impl Fn(&[f64]) -> f64 + Sync,
    resamples: usize,
    seed: u64,
) -> (f64, f64) {
    percentile_interval(bootstrap_distribution(
        values.len(),
        resamples,
        seed,
        |picks| {
            let resample: Vec<f64> = picks.iter().map(|&i| values[i]).collect();
            statistic(&resample)
        },
    ))
}

/// [`bootstrap_ci`] for a statistic of a whole set of items, e.g. `distinct_n` or
/// `self_bleu_4` recomputed on each resampled set of samples.
///
/// Caveat: a resample with replacement holds each item about 1.6 times on average (only
/// ~63 % distinct), and set-level diversity scores see those copies as real repeats:
/// distinct-n drops and Self-BLEU rises (a duplicated hypothesis finds itself among its
/// references, BLEU 1). The interval is then shifted away from the point estimate, often
/// entirely: use [`jackknife_ci`] for such statistics.
pub fn bootstrap_ci_by<T: Sync>(
    items: &[T],
    statistic: impl Fn(&[&T]) -> f64 + Sync,
    resamples: usize,
    seed: u64,
) -> (f64, f64) {
    percentile_interval(bootstrap_distribution(
        items.len(),
        resamples,
        seed,
        |picks| {
            let resample: Vec<&T> = picks.iter().map(|&i| &items[i]).collect();
            statistic(&resample)
        },
    ))
}

/// The statistic on each of `resamples` resamples of `0..n`, in resample order.
fn bootstrap_distribution(
    n: usize,
    resamples: usize,
    seed: u64,
    statistic: impl Fn(&[usize]) -> f64 + Sync,
) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    (0..resamples)
        .into_par_iter()
        .map(|r| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(r as u64);
            let picks: Vec<usize> = (0..n).map(|_| uniform_below(&mut rng, n)).collect();
            statistic(&picks)
        })
        .collect()
}

/// Central 95 % of the bootstrap distribution, NaN statistics dropped.
fn percentile_interval(mut statistics: Vec<f64>) -> (f64, f64) {
    statistics.retain(|s| !s.is_nan());
    if statistics.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    statistics.sort_unstable_by(f64::total_cmp);
    (
        quantile_sorted(&statistics, 0.025),
        quantile_sorted(&statistics, 0.975),
    )
}

/// Sample indices grouped by the prompt they answer (`prompt_of[i]` is sample `i`'s prompt),
/// one cluster per distinct prompt in ascending prompt order, each cluster in sample order.
/// Samples of one prompt share its topic and difficulty, so they are correlated; the
/// intervals below resample or leave out whole clusters, never single samples.
pub fn prompt_clusters(prompt_of: &[usize]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..prompt_of.len()).collect();
    order.sort_by_key(|&i| (prompt_of[i], i));
    order
        .chunk_by(|&a, &b| prompt_of[a] == prompt_of[b])
        .map(<[usize]>::to_vec)
        .collect()
}

/// 95 % percentile cluster bootstrap (Davison & Hinkley 1997, §3.8, "resampling
/// clusters"): each resample draws as many clusters as there are, with replacement, and
/// `statistic` sees the sample indices of the drawn clusters (a cluster drawn twice, twice).
/// Seeded like [`bootstrap_ci`], so repeatable and independent of the thread count.
///
/// Meant for means of per-sample values, which a repeated sample does not distort. For
/// set-level statistics (distinct-n, Self-BLEU) a drawn copy of a text counts as a
/// repetition of itself and the interval slides away from the estimate; use
/// [`jackknife_ci`] for those. Fewer than 2 clusters gives `(NaN, NaN)`: with one prompt
/// the prompt-to-prompt spread cannot be estimated at all.
pub fn cluster_bootstrap_ci(
    clusters: &[Vec<usize>],
    statistic: impl Fn(&[usize]) -> f64 + Sync,
    resamples: usize,
    seed: u64,
) -> (f64, f64) {
    if clusters.len() < 2 {
        return (f64::NAN, f64::NAN);
    }
    percentile_interval(bootstrap_distribution(
        clusters.len(),
        resamples,
        seed,
        |picks| {
            let indices: Vec<usize> = picks
                .iter()
                .flat_map(|&c| clusters[c].iter().copied())
                .collect();
            statistic(&indices)
        },
    ))
}

/// At most this many leave-out groups in [`jackknife_ci`]: beyond it, consecutive clusters
/// are left out together, which bounds the cost at this many recomputations of the
/// statistic (Self-BLEU is recomputed once per group) while keeping enough degrees of
/// freedom that the t quantile is within 2 % of the normal one.
pub const JACKKNIFE_MAX_GROUPS: usize = 64;

/// 95 % delete-a-cluster jackknife interval (Efron & Stein 1981; Shao & Tu 1995, §2.1):
/// `θ̂ ± t_{0.975, G−1} · √((G−1)/G · Σ_g (θ̂_(g) − θ̄)²)`, where `θ̂_(g)` is `statistic`
/// on every sample outside group `g`, and the groups are the clusters (consecutive
/// clusters merged into [`JACKKNIFE_MAX_GROUPS`] groups when there are more). Centred on
/// the estimate itself, so it always holds it, and no text is ever duplicated, so
/// set-level statistics are not distorted. `statistic` receives sorted indices.
/// Fewer than 2 groups, or a statistic undefined on the whole set or on any leave-out
/// subset, gives `(NaN, NaN)`. Deterministic: the leave-out values are summed in group
/// order whatever the thread count.
pub fn jackknife_ci(
    clusters: &[Vec<usize>],
    statistic: impl Fn(&[usize]) -> f64 + Sync,
) -> (f64, f64) {
    let groups = jackknife_groups(clusters);
    if groups.len() < 2 {
        return (f64::NAN, f64::NAN);
    }
    let gather = |skip: Option<usize>| {
        let mut indices: Vec<usize> = groups
            .iter()
            .enumerate()
            .filter(|&(j, _)| Some(j) != skip)
            .flat_map(|(_, group)| group.iter().copied())
            .collect();
        indices.sort_unstable();
        indices
    };
    let estimate = statistic(&gather(None));
    let leave_out: Vec<f64> = (0..groups.len())
        .into_par_iter()
        .map(|j| statistic(&gather(Some(j))))
        .collect();
    jackknife_interval(estimate, &leave_out)
}

/// The interval of [`jackknife_ci`] from the estimate and the statistic without each group
/// in turn, for statistics that compute all the leave-out values at once.
pub fn jackknife_interval(estimate: f64, leave_out: &[f64]) -> (f64, f64) {
    let g = leave_out.len();
    if g < 2 || !estimate.is_finite() || leave_out.iter().any(|x| !x.is_finite()) {
        return (f64::NAN, f64::NAN);
    }
    let centre = mean(leave_out);
    let squares: f64 = leave_out.iter().map(|x| (x - centre) * (x - centre)).sum();
    let half = t_quantile_975(g - 1) * ((g - 1) as f64 / g as f64 * squares).sqrt();
    (estimate - half, estimate + half)
}

/// The leave-out groups of [`jackknife_ci`]: one per cluster, or [`JACKKNIFE_MAX_GROUPS`]
/// runs of consecutive clusters whose sizes differ by at most one cluster.
pub fn jackknife_groups(clusters: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let p = clusters.len();
    let g = p.min(JACKKNIFE_MAX_GROUPS);
    (0..g)
        .map(|j| clusters[j * p / g..(j + 1) * p / g].concat())
        .collect()
}

/// Each sample's group index, from the groups' members (e.g. [`jackknife_groups`]).
pub fn group_of(groups: &[Vec<usize>], samples: usize) -> Vec<usize> {
    let mut of = vec![0; samples];
    for (g, members) in groups.iter().enumerate() {
        for &i in members {
            of[i] = g;
        }
    }
    of
}

/// Student's t quantile at 0.975 with `df` degrees of freedom: exact to 7 digits from a
/// table up to 30, then the Cornish–Fisher expansion in `1/df` (Abramowitz & Stegun
/// 26.7.5), within 1e-5 from 30 on. `df == 0` gives NaN.
pub fn t_quantile_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706_204_7,
        4.302_652_7,
        3.182_446_3,
        2.776_445_1,
        2.570_581_8,
        2.446_911_9,
        2.364_624_3,
        2.306_004_1,
        2.262_157_2,
        2.228_138_9,
        2.200_985_2,
        2.178_812_8,
        2.160_368_7,
        2.144_786_7,
        2.131_449_5,
        2.119_905_3,
        2.109_815_5,
        2.100_922_0,
        2.093_024_1,
        2.085_963_4,
        2.079_613_8,
        2.073_873_1,
        2.068_657_6,
        2.063_898_6,
        2.059_538_6,
        2.055_529_4,
        2.051_830_5,
        2.048_407_1,
        2.045_229_6,
        2.042_272_5,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        _ => {
            let z = 1.959_963_984_540_054_f64;
            let v = df as f64;
            let (z2, z3) = (z * z, z * z * z);
            let (z5, z7, z9) = (z3 * z2, z3 * z2 * z2, z3 * z3 * z3);
            z + (z3 + z) / (4.0 * v)
                + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * v * v)
                + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * v.powi(3))
                + (79.0 * z9 + 776.0 * z7 + 1482.0 * z5 - 1920.0 * z3 - 945.0 * z)
                    / (92_160.0 * v.powi(4))
        }
    }
}

/// Quantile `q` of sorted data by linear interpolation between order statistics
/// (Hyndman & Fan 1996 type 7, numpy's default): position `q·(m−1)`.
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let lower = position.floor() as usize;
    let fraction = position - lower as f64;
    let (a, b) = (sorted[lower], sorted[position.ceil() as usize]);
    if fraction == 0.0 || a == b {
        a
    } else {
        a + (b - a) * fraction
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: f64 = 1e-12;

    fn split_all<'a>(texts: &[&'a str]) -> Vec<Vec<&'a str>> {
        texts.iter().map(|t| words(t)).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= TOL * b.abs().max(1.0)
    }

    #[test]
    fn words_split_on_any_whitespace() {
        assert_eq!(words("  a\tb\nc  d, "), vec!["a", "b", "c", "d,"]);
        assert!(words(" \n ").is_empty());
    }

    #[test]
    fn distinct_n_pools_samples_without_crossing_boundaries() {
        let samples = vec![vec!["a", "b", "a", "b"], vec!["a", "b"]];
        // Bigrams: ab ba ab | ab -> {ab, ba} of 4.
        assert_eq!(distinct_n(&samples, 2), 0.5);
        assert_eq!(distinct_n(&samples, 1), 2.0 / 6.0);
        // "b c" would appear if n-grams crossed samples: 2 of 2, not 3 of 3.
        let separate = vec![vec!["a", "b"], vec!["c", "d"]];
        assert_eq!(distinct_n(&separate, 2), 1.0);
        assert_eq!(
            distinct_n(&[vec!["x", "y", "z"], vec!["x", "y", "z"]], 3),
            0.5
        );
    }

    #[test]
    fn distinct_n_without_ngrams_is_undefined() {
        assert!(distinct_n(&[vec![1_u32, 2]], 3).is_nan());
        assert!(distinct_n::<Vec<u32>, u32>(&[], 1).is_nan());
        // One sample long enough is enough to define it.
        assert_eq!(distinct_n(&[vec![1_u32], vec![1, 2, 3]], 3), 1.0);
    }

    #[test]
    fn perplexity_is_exp_mean_nll() {
        let lp = [0.5_f64.ln() as f32, 0.25_f64.ln() as f32];
        // NLL = (ln 2 + 2 ln 2) / 2 -> 2^1.5.
        assert!((perplexity(&lp) - 2.0_f64.powf(1.5)).abs() < 1e-6);
        assert!((perplexity(&[0.0]) - 1.0).abs() < TOL);
        assert!(perplexity(&[]).is_nan());
    }

    #[test]
    fn mean_and_corpus_perplexity_weight_differently() {
        let half = 0.5_f64.ln() as f32;
        let quarter = 0.25_f64.ln() as f32;
        let samples: Vec<Vec<f32>> = vec![vec![half], vec![quarter; 3]];
        let per_sample: Vec<f64> = samples.iter().map(|s| perplexity(s)).collect();
        // Per-sample 2 and 4 -> mean 3; corpus NLL 7 ln 2 over 4 tokens -> 2^(7/4).
        assert!((mean_perplexity(&per_sample) - 3.0).abs() < 1e-6);
        assert!((corpus_perplexity(&samples) - 2.0_f64.powf(1.75)).abs() < 1e-6);
        let slices: Vec<&[f32]> = samples.iter().map(Vec::as_slice).collect();
        assert_eq!(corpus_perplexity(&slices), corpus_perplexity(&samples));
        assert!(mean_perplexity(&[]).is_nan());
        assert!(corpus_perplexity(&[Vec::<f32>::new()]).is_nan());
    }

    #[test]
    fn rep_n_counts_repeated_ngrams_within_a_sample() {
        // Bigrams 12 23 31 12 23: 3 unique of 5.
        assert!(close(rep_n(&[1, 2, 3, 1, 2, 3], 2), 0.4));
        assert_eq!(rep_n(&[1, 2, 3, 4], 4), 0.0);
        assert!(close(rep_n(&[7; 5], 1), 0.8));
        assert!(rep_n(&[1, 2, 3], 4).is_nan());
    }

    #[test]
    fn mean_rep_skips_samples_without_ngrams() {
        let samples = vec![vec![1, 2, 3, 4, 1, 2, 3, 4], vec![1, 2], vec![5, 6, 7, 8]];
        // 4-grams of the first: 1234 2341 3412 4123 1234 -> 1 - 4/5; second skipped.
        assert!(close(mean_rep_4(&samples), (0.2 + 0.0) / 2.0));
        assert!(mean_rep_4(&[vec![1, 2]]).is_nan());
    }

    #[test]
    fn self_bleu_matches_nltk_with_brevity_penalty_and_short_samples() {
        let samples = split_all(&[
            "the cat sat on the mat",
            "the cat sat on a mat",
            "a dog ran in the park today",
            "the cat",
        ]);
        let nltk = [
            0.537284965911771,
            0.5623413251903491,
            0.039281465090051315,
            0.04279677428117006,
        ];
        let scores = self_bleu_4_scores(&samples, usize::MAX, 0);
        for (got, want) in scores.iter().zip(nltk) {
            assert!(close(*got, want), "{got} vs {want}");
        }
        assert!(close(self_bleu_4(&samples, 100, 0), 0.29542613261833534));
    }

    #[test]
    fn self_bleu_matches_nltk_with_clipping_ties_and_empty_sample() {
        let samples = split_all(&[
            "the the the the the the the",
            "the cat is on the mat",
            "there is a cat on the mat",
            "",
            "on the mat the cat is",
        ]);
        let nltk = [
            0.039281465090051315,
            0.33980884896942454,
            0.18575057999133598,
            0.0,
            0.33980884896942454,
        ];
        let scores = self_bleu_4_scores(&samples, usize::MAX, 0);
        for (got, want) in scores.iter().zip(nltk) {
            assert!(close(*got, want), "{got} vs {want}");
        }
        assert!(close(self_bleu_4(&samples, 5, 0), 0.18092994860404726));
    }

    #[test]
    fn self_bleu_duplicates_and_disjoint_samples() {
        // NLTK: [1.0, 1.0, 0] and [0, 0].
        let dup = split_all(&["a b c d e", "a b c d e", "x y z"]);
        assert!(close(self_bleu_4(&dup, 10, 0), 2.0 / 3.0));
        let disjoint = split_all(&["one two three", "four five six seven eight nine ten eleven"]);
        assert_eq!(self_bleu_4(&disjoint, 10, 0), 0.0);
    }

    #[test]
    fn self_bleu_needs_two_samples() {
        assert!(self_bleu_4(&[vec!["a", "b"]], 10, 0).is_nan());
        assert!(self_bleu_4::<Vec<&str>, &str>(&[], 10, 0).is_nan());
        assert!(self_bleu_4(&[vec!["a"], vec!["a"]], 0, 0).is_nan());
    }

    /// NLTK's algorithm written out directly (quadratic, no precomputation).
    fn naive_sentence_bleu(refs: &[&Vec<u32>], hyp: &[u32]) -> f64 {
        let counts = |s: &[u32], n: usize| {
            let mut m: HashMap<Vec<u32>, u32> = HashMap::new();
            for g in s.windows(n) {
                *m.entry(g.to_vec()).or_default() += 1;
            }
            m
        };
        let mut matches = [0_u64; 4];
        let mut totals = [0_u64; 4];
        for n in 1..=4 {
            let ref_counts: Vec<_> = refs.iter().map(|r| counts(r, n)).collect();
            for (g, c) in counts(hyp, n) {
                let max_ref = ref_counts
                    .iter()
                    .map(|rc| rc.get(&g).copied().unwrap_or(0))
                    .max();
                matches[n - 1] += u64::from(c.min(max_ref.unwrap_or(0)));
                totals[n - 1] += u64::from(c);
            }
        }
        let ref_len = refs
            .iter()
            .map(|r| r.len())
            .min_by_key(|&l| (l.abs_diff(hyp.len()), l))
            .unwrap();
        sentence_bleu_4(&matches, &totals, hyp.len(), ref_len)
    }

    fn random_samples(count: usize, max_len: usize, vocab: usize, seed: u64) -> Vec<Vec<u32>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..count)
            .map(|_| {
                let len = uniform_below(&mut rng, max_len + 1);
                // Skewed toward small ids so n-grams repeat within and across samples.
                (0..len)
                    .map(|_| {
                        let bucket = uniform_below(&mut rng, vocab) + 1;
                        uniform_below(&mut rng, bucket) as u32
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn fast_self_bleu_equals_naive_nltk_algorithm() {
        for seed in 0..5 {
            let samples = random_samples(40, 14, 6, seed);
            let fast = self_bleu_4_scores(&samples, usize::MAX, 0);
            for (h, got) in fast.iter().enumerate() {
                let refs: Vec<&Vec<u32>> = samples
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i != h)
                    .map(|(_, s)| s)
                    .collect();
                let want = naive_sentence_bleu(&refs, &samples[h]);
                assert!(close(*got, want), "seed {seed} sample {h}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn capped_self_bleu_scores_a_seeded_subset_against_all_samples() {
        let samples = random_samples(30, 12, 5, 7);
        let all = self_bleu_4_scores(&samples, usize::MAX, 0);
        let picked = hypothesis_subset(samples.len(), 10, 42);
        assert_eq!(picked.len(), 10);
        assert!(picked.windows(2).all(|w| w[0] < w[1]));
        let want: Vec<f64> = picked.iter().map(|&i| all[i]).collect();
        assert_eq!(self_bleu_4_scores(&samples, 10, 42), want);
        assert_eq!(self_bleu_4(&samples, 10, 42), mean(&want));
        assert_ne!(hypothesis_subset(samples.len(), 10, 43), picked);
    }

    #[test]
    fn top_two_excludes_only_the_holder() {
        let mut t = TopTwo::default();
        for (sample, count) in [(0, 2), (1, 5), (2, 3)] {
            t.add(sample, count);
        }
        assert_eq!(
            (t.max_excluding(1), t.max_excluding(0), t.max_excluding(2)),
            (3, 5, 5)
        );
        t.add(3, 5); // tie at the top
        assert_eq!(t.max_excluding(1), 5);
    }

    #[test]
    fn closest_other_length_follows_nltk_tie_rule() {
        // Hypothesis length 5 appears once (itself): 3 and 7 tie -> shorter.
        assert_eq!(closest_other_length(&[3, 5, 7], 5), 3);
        assert_eq!(closest_other_length(&[3, 5, 6], 5), 6);
        assert_eq!(closest_other_length(&[3, 5, 5, 9], 5), 5);
        assert_eq!(closest_other_length(&[5, 9], 5), 9);
        assert_eq!(closest_other_length(&[1, 5], 5), 1);
    }

    #[test]
    fn brevity_penalty_cases() {
        assert_eq!(brevity_penalty(6, 7), 1.0);
        assert_eq!(brevity_penalty(6, 0), 0.0);
        assert!(close(brevity_penalty(6, 2), (-2.0_f64).exp()));
        assert_eq!(brevity_penalty(4, 4), 1.0);
    }

    #[test]
    fn uniform_below_stays_in_range_and_covers_it() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut seen = [0_u32; 7];
        for _ in 0..7000 {
            seen[uniform_below(&mut rng, 7)] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
        assert_eq!(uniform_below(&mut rng, 1), 0);
    }

    #[test]
    fn quantile_interpolates_like_numpy() {
        let sorted = [1.0, 2.0, 3.0, 4.0, 5.0];
        // numpy.percentile([1..5], [2.5, 97.5]) = [1.1, 4.9].
        assert!(close(quantile_sorted(&sorted, 0.025), 1.1));
        assert!(close(quantile_sorted(&sorted, 0.975), 4.9));
        assert_eq!(quantile_sorted(&[0.1; 3], 0.3), 0.1);
        assert_eq!(quantile_sorted(&[f64::INFINITY; 2], 0.5), f64::INFINITY);
    }

    #[test]
    fn bootstrap_ci_of_constant_is_degenerate_and_of_mean_is_plausible() {
        assert_eq!(bootstrap_ci(&[0.25; 20], mean, 200, 3), (0.25, 0.25));
        // Mean of 0..100: σ/√n ≈ 2.89, so ≈ 49.5 ± 5.7.
        let values: Vec<f64> = (0..100).map(f64::from).collect();
        let (lo, hi) = bootstrap_ci(&values, mean, 1000, 3);
        assert!(
            (42.0..46.5).contains(&lo) && (52.5..57.0).contains(&hi),
            "{lo} {hi}"
        );
    }

    #[test]
    fn bootstrap_is_repeatable_and_thread_count_independent() {
        let values: Vec<f64> = (0..50).map(|i| f64::from(i * i % 17)).collect();
        let run = |threads: usize, seed: u64| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| bootstrap_ci(&values, mean, 300, seed))
        };
        assert_eq!(run(1, 9), run(3, 9));
        assert_ne!(run(2, 9), run(2, 10));
    }

    #[test]
    fn bootstrap_ci_by_resamples_whole_samples() {
        let samples = random_samples(30, 20, 8, 1);
        let (lo, hi) = bootstrap_ci_by(&samples, |s| distinct_n(s, 2), 200, 5);
        assert!(lo <= hi && lo > 0.0 && hi <= 1.0, "{lo} {hi}");
        let (lo, hi) = bootstrap_ci_by(&samples, |s| self_bleu_4(s, 10, 0), 20, 5);
        assert!(lo <= hi && (0.0..=1.0).contains(&lo), "{lo} {hi}");
        // The documented duplicate bias: distinct-1 of two disjoint samples is 1, but half
        // the resamples hold one sample twice (0.5), so the interval reaches down to 0.5.
        let two = vec![vec![1_u32, 2], vec![3, 4]];
        assert_eq!(distinct_n(&two, 1), 1.0);
        assert_eq!(
            bootstrap_ci_by(&two, |s| distinct_n(s, 1), 200, 0),
            (0.5, 1.0)
        );
    }

    #[test]
    fn bootstrap_of_nothing_is_nan() {
        let (lo, hi) = bootstrap_ci(&[], mean, 100, 0);
        assert!(lo.is_nan() && hi.is_nan());
        let (lo, hi) = bootstrap_ci(&[1.0, 2.0], mean, 0, 0);
        assert!(lo.is_nan() && hi.is_nan());
        let (lo, hi) = bootstrap_ci(&[1.0, 2.0], |_| f64::NAN, 10, 0);
        assert!(lo.is_nan() && hi.is_nan());
    }

    #[test]
    fn prompt_clusters_group_by_prompt_in_prompt_order() {
        assert_eq!(
            prompt_clusters(&[2, 0, 2, 1, 0]),
            vec![vec![1, 4], vec![3], vec![0, 2]]
        );
        assert!(prompt_clusters(&[]).is_empty());
    }

    #[test]
    fn t_quantiles_match_tables() {
        // R: qt(0.975, c(1, 10, 30, 31, 40, 63, 120, 1000)).
        for (df, want) in [
            (1, 12.706_204_74),
            (10, 2.228_138_85),
            (30, 2.042_272_46),
            (31, 2.039_513_45),
            (40, 2.021_075_39),
            (63, 1.998_340_54),
            (120, 1.979_930_41),
            (1000, 1.962_339_11),
        ] {
            let got = t_quantile_975(df);
            assert!((got - want).abs() < 2e-5, "df {df}: {got} vs {want}");
        }
        assert!(t_quantile_975(0).is_nan());
    }

    #[test]
    fn jackknife_of_a_mean_is_the_t_interval_of_cluster_means() {
        // Equal clusters: the delete-one jackknife SE of the mean is s/√P of the cluster
        // means, so the interval is the classic t interval on P − 1 df.
        let values = [1.0, 3.0, 2.0, 6.0, 5.0, 5.0, 9.0, 7.0];
        let clusters = prompt_clusters(&[0, 0, 1, 1, 2, 2, 3, 3]);
        let mean_of = |i: &[usize]| i.iter().map(|&i| values[i]).sum::<f64>() / i.len() as f64;
        let (lo, hi) = jackknife_ci(&clusters, mean_of);
        let means = [2.0, 4.0, 5.0, 8.0];
        let m = mean(&means);
        let s2 = means.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / 3.0;
        let half = t_quantile_975(3) * (s2 / 4.0).sqrt();
        assert!(close(lo, m - half) && close(hi, m + half), "{lo} {hi}");
        // One cluster, or an undefined statistic: no interval.
        let (lo, hi) = jackknife_ci(&[vec![0, 1]], mean_of);
        assert!(lo.is_nan() && hi.is_nan());
        let (lo, hi) = jackknife_ci(&clusters, |i| if i.len() < 8 { f64::NAN } else { 1.0 });
        assert!(lo.is_nan() && hi.is_nan());
    }

    #[test]
    fn jackknife_merges_clusters_beyond_the_cap_and_sees_sorted_indices() {
        let clusters: Vec<Vec<usize>> = (0..100).map(|p| vec![2 * p, 2 * p + 1]).collect();
        let groups = jackknife_groups(&clusters);
        assert_eq!(groups.len(), JACKKNIFE_MAX_GROUPS);
        assert_eq!(groups.concat(), (0..200).collect::<Vec<_>>());
        assert!(groups.iter().all(|g| g.len() == 2 || g.len() == 4));
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let (lo, hi) = jackknife_ci(&clusters, |i| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            assert!(i.windows(2).all(|w| w[0] < w[1]));
            i.len() as f64
        });
        assert_eq!(calls.into_inner(), JACKKNIFE_MAX_GROUPS + 1);
        assert!(lo < 200.0 && hi > 200.0, "{lo} {hi}");
    }

    #[test]
    fn cluster_bootstrap_resamples_whole_prompts() {
        // Two prompts whose texts agree within but differ between: resampling texts one by
        // one would give a narrow interval around 5.5, resampling prompts spans 1 to 10.
        let values = [1.0, 1.0, 1.0, 10.0, 10.0, 10.0];
        let clusters = prompt_clusters(&[0, 0, 0, 1, 1, 1]);
        let mean_of = |i: &[usize]| i.iter().map(|&i| values[i]).sum::<f64>() / i.len() as f64;
        assert_eq!(
            cluster_bootstrap_ci(&clusters, mean_of, 400, 1),
            (1.0, 10.0)
        );
        let (lo, hi) = cluster_bootstrap_ci(&clusters[..1], mean_of, 400, 1);
        assert!(lo.is_nan() && hi.is_nan());
    }

    #[test]
    fn cluster_intervals_are_repeatable_and_thread_count_independent() {
        let samples = random_samples(40, 12, 6, 4);
        let clusters = prompt_clusters(&(0..40).map(|i| i % 9).collect::<Vec<_>>());
        let all: Vec<usize> = (0..40).collect();
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    (
                        cluster_bootstrap_ci(&clusters, |i| i.len() as f64 * 0.5, 300, 9),
                        jackknife_ci(&clusters, |i| {
                            let kept: Vec<&Vec<u32>> = i.iter().map(|&i| &samples[i]).collect();
                            distinct_n(&kept, 2)
                        }),
                        jackknife_ci(&clusters, |i| self_bleu_4_among(&samples, i, &all)),
                    )
                })
        };
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn leave_group_out_self_bleu_equals_recomputing_it_without_each_group() {
        for seed in 0..6 {
            let samples = random_samples(45, 14, 6, seed);
            let groups = 7;
            // Uneven, interleaved groups; one group of a single sample.
            let group_of: Vec<usize> = (0..45)
                .map(|i| {
                    if i == 44 {
                        6
                    } else {
                        (i * 5 + seed as usize) % 6
                    }
                })
                .collect();
            let hypotheses = if seed % 2 == 0 {
                (0..45).collect()
            } else {
                hypothesis_subset(45, 20, seed)
            };
            let all: Vec<usize> = (0..45).collect();
            let (whole, leave_out) =
                self_bleu_4_leave_group_out(&samples, &group_of, groups, &hypotheses);
            assert_eq!(whole, self_bleu_4_among(&samples, &all, &hypotheses));
            for (c, got) in leave_out.iter().enumerate() {
                let keep: Vec<usize> = all.iter().copied().filter(|&i| group_of[i] != c).collect();
                let want = self_bleu_4_among(&samples, &keep, &hypotheses);
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "seed {seed} group {c}: {got} vs {want}"
                );
            }
        }
        // Leaving out all but one sample: undefined.
        let two = vec![vec![1_u32, 2], vec![1, 2]];
        let (whole, leave_out) = self_bleu_4_leave_group_out(&two, &[0, 1], 2, &[0, 1]);
        assert_eq!(whole, self_bleu_4(&two, 10, 0));
        assert!(leave_out.iter().all(|x| x.is_nan()));
    }

    #[test]
    fn self_bleu_among_all_is_self_bleu_and_among_fewer_drops_references() {
        let samples = random_samples(30, 12, 5, 8);
        let all: Vec<usize> = (0..30).collect();
        let hypotheses = hypothesis_subset(30, 10, 3);
        assert_eq!(
            self_bleu_4_among(&samples, &all, &hypotheses),
            self_bleu_4(&samples, 10, 3)
        );
        let keep: Vec<usize> = (0..30).filter(|i| i % 3 != 0).collect();
        let kept: Vec<&Vec<u32>> = keep.iter().map(|&i| &samples[i]).collect();
        assert!(close(
            self_bleu_4_among(&samples, &keep, &all),
            self_bleu_4(&kept, usize::MAX, 0)
        ));
        assert!(self_bleu_4_among(&samples, &[4], &all).is_nan());
        assert!(self_bleu_4_among(&samples, &[0, 3], &[1]).is_nan());
    }

    /// Timing check for the brief's target: `cargo test --release -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing, run by hand"]
    fn self_bleu_timing_1000_samples_of_200_words() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        // Zipf-like vocabulary of 20k words so n-grams recur as in real text.
        let vocab: Vec<String> = (0..20_000).map(|i| format!("w{i}")).collect();
        let texts: Vec<Vec<&str>> = (0..1000)
            .map(|_| {
                (0..200)
                    .map(|_| {
                        let bucket = uniform_below(&mut rng, vocab.len()) + 1;
                        vocab[uniform_below(&mut rng, bucket)].as_str()
                    })
                    .collect()
            })
            .collect();
        let mut fastest = f64::INFINITY;
        for _ in 0..5 {
            let start = std::time::Instant::now();
            let score = self_bleu_4(&texts, 1000, 0);
            let seconds = start.elapsed().as_secs_f64();
            println!("self_bleu_4: 1000 x 200 words -> {score:.6} in {seconds:.3} s");
            fastest = fastest.min(seconds);
        }
        assert!(fastest < 3.0);
    }
}
