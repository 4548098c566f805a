//! One summary row per setting: the metrics of `metrics` applied to that setting's samples.

use serde::{Deserialize, Serialize};

use crate::report::{degeneration, diversity, mauve, metrics};

/// One generated (or human-written) continuation, as stored per setting and in `samples.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub prompt_index: usize,
    pub sample_index: usize,
    /// The continuation's text (end-of-text not included).
    pub text: String,
    pub token_ids: Vec<u32>,
    /// Per-token log-probabilities under the model (T = 1, no filtering).
    pub logprobs: Vec<f32>,
    pub ended_with_eos: bool,
}

impl Sample {
    /// Perplexity of the continuation given the prompt.
    pub fn perplexity(&self) -> f64 {
        metrics::perplexity(&self.logprobs)
    }
}

/// A setting's metrics. Undefined values (e.g. Self-BLEU of a single text) are NaN and are
/// written as empty cells.
///
/// Each `_lo`/`_hi` pair is a 95 % interval that treats the prompt as the unit: the texts of
/// one prompt are correlated, so counting them as independent gives intervals far too
/// narrow. `mean_perplexity` gets a prompt-level (cluster) percentile bootstrap, which
/// follows the skew of perplexities; `distinct_2`, `self_bleu_4` and `repetition_rate` get a
/// leave-one-prompt-out jackknife: the two set-level statistics because a bootstrap's copies
/// of a text would count as repetitions of it (the interval then misses the estimate), and
/// the share of looping texts because it covered closer to 95 % than the bootstrap in the
/// simulation of `tests/intervals.rs`, which checks all four (a share of exactly 0 or 1
/// gets an exact bound instead, see `share_at_a_bound`). With a single prompt there is
/// no prompt-to-prompt spread to estimate, and the intervals are NaN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub samples: usize,
    pub mean_perplexity: f64,
    pub mean_perplexity_lo: f64,
    pub mean_perplexity_hi: f64,
    pub corpus_perplexity: f64,
    pub distinct_1: f64,
    pub distinct_2: f64,
    pub distinct_2_lo: f64,
    pub distinct_2_hi: f64,
    pub distinct_3: f64,
    pub self_bleu_4: f64,
    pub self_bleu_4_lo: f64,
    pub self_bleu_4_hi: f64,
    /// Holtzman et al.'s Self-BLEU-4, on token ids (see `degeneration::self_bleu_4`).
    pub self_bleu_4_tokens: f64,
    pub zipf_coefficient: f64,
    pub repetition_rate: f64,
    pub repetition_rate_lo: f64,
    pub repetition_rate_hi: f64,
    /// Welleck et al.'s seq-rep-4, averaged over texts.
    pub seq_rep_4: f64,
    /// Su et al.'s rep-n and diversity (see `diversity::simctg_repetition`).
    pub rep_2: f64,
    pub rep_3: f64,
    pub rep_4: f64,
    pub diversity: f64,
    pub compression_ratio: f64,
    pub mean_tokens: f64,
    pub eos_rate: f64,
}

/// Self-BLEU-4 is exact up to this many samples; above it a seeded subsample of hypotheses is
/// scored, each still against every other sample.
pub const SELF_BLEU_MAX_EXACT: usize = 500;

/// Seed of every bootstrap and subsample, so a summary is repeatable.
pub const METRICS_SEED: u64 = 0x5eed;

/// Every metric [`Metrics::get`] knows, in `summary.csv` order.
pub const METRICS: [&str; 17] = [
    "mean_perplexity",
    "corpus_perplexity",
    "distinct_1",
    "distinct_2",
    "distinct_3",
    "self_bleu_4",
    "self_bleu_4_tokens",
    "zipf_coefficient",
    "repetition_rate",
    "seq_rep_4",
    "rep_2",
    "rep_3",
    "rep_4",
    "diversity",
    "compression_ratio",
    "mean_tokens",
    "eos_rate",
];

/// Metric names that a sampling row is compared on against the beam baseline, in CSV order.
pub const COMPARED: [&str; 9] = [
    "mean_perplexity",
    "corpus_perplexity",
    "distinct_1",
    "distinct_2",
    "distinct_3",
    "self_bleu_4",
    "zipf_coefficient",
    "repetition_rate",
    "mean_tokens",
];

impl Metrics {
    pub fn compute(samples: &[Sample]) -> Self {
        let words: Vec<Vec<&str>> = samples.iter().map(|s| metrics::words(&s.text)).collect();
        let tokens: Vec<&[u32]> = samples.iter().map(|s| s.token_ids.as_slice()).collect();
        let perplexities: Vec<f64> = samples.iter().map(Sample::perplexity).collect();
        let logprobs: Vec<&[f32]> = samples.iter().map(|s| s.logprobs.as_slice()).collect();
        let loops: Vec<f64> = tokens
            .iter()
            .map(|t| f64::from(u8::from(degeneration::ends_in_repetition(t))))
            .collect();
        let n = samples.len();
        let prompts: Vec<usize> = samples.iter().map(|s| s.prompt_index).collect();
        let clusters = metrics::prompt_clusters(&prompts);
        let mean_of = |values: &[f64], keep: &[usize]| {
            keep.iter().map(|&i| values[i]).sum::<f64>() / keep.len() as f64
        };

        let mean_perplexity = metrics::mean_perplexity(&perplexities);
        let (ppl_lo, ppl_hi) = holding(
            mean_perplexity,
            metrics::cluster_bootstrap_ci(
                &clusters,
                |keep| mean_of(&perplexities, keep),
                metrics::BOOTSTRAP_RESAMPLES,
                METRICS_SEED,
            ),
        );
        let repetition_rate = degeneration::repetition_rate(&tokens);
        let (rep_lo, rep_hi) = holding(
            repetition_rate,
            share_at_a_bound(repetition_rate, clusters.len()).unwrap_or_else(|| {
                clip01(metrics::jackknife_ci(&clusters, |keep| {
                    mean_of(&loops, keep)
                }))
            }),
        );
        let distinct_2 = metrics::distinct_n(&words, 2);
        let (d2_lo, d2_hi) = holding(
            distinct_2,
            clip01(metrics::jackknife_ci(&clusters, |keep| {
                let kept: Vec<&Vec<&str>> = keep.iter().map(|&i| &words[i]).collect();
                metrics::distinct_n(&kept, 2)
            })),
        );
        // The hypotheses are drawn once, on the whole set, so that leaving a prompt out changes
        // the references and drops that prompt's hypotheses but redraws nothing.
        let hypotheses = metrics::hypothesis_subset(n, SELF_BLEU_MAX_EXACT, METRICS_SEED);
        let groups = metrics::jackknife_groups(&clusters);
        let (self_bleu_4, leave_out) = metrics::self_bleu_4_leave_group_out(
            &words,
            &metrics::group_of(&groups, n),
            groups.len(),
            &hypotheses,
        );
        let (b_lo, b_hi) = holding(
            self_bleu_4,
            clip01(metrics::jackknife_interval(self_bleu_4, &leave_out)),
        );
        let total_tokens: usize = tokens.iter().map(|t| t.len()).sum();
        let texts: Vec<&str> = samples.iter().map(|s| s.text.as_str()).collect();
        let simctg = diversity::simctg_repetition(&texts);
        Self {
            samples: n,
            mean_perplexity,
            mean_perplexity_lo: ppl_lo,
            mean_perplexity_hi: ppl_hi,
            corpus_perplexity: metrics::corpus_perplexity(&logprobs),
            distinct_1: metrics::distinct_n(&words, 1),
            distinct_2,
            distinct_2_lo: d2_lo,
            distinct_2_hi: d2_hi,
            distinct_3: metrics::distinct_n(&words, 3),
            self_bleu_4,
            self_bleu_4_lo: b_lo,
            self_bleu_4_hi: b_hi,
            self_bleu_4_tokens: degeneration::self_bleu_4(
                &tokens,
                degeneration::SELF_BLEU_HYPOTHESES,
            ),
            zipf_coefficient: degeneration::zipf_coefficient(&tokens),
            repetition_rate,
            repetition_rate_lo: rep_lo,
            repetition_rate_hi: rep_hi,
            seq_rep_4: metrics::mean_rep_4(&tokens),
            rep_2: simctg.rep_2,
            rep_3: simctg.rep_3,
            rep_4: simctg.rep_4,
            diversity: simctg.diversity,
            compression_ratio: diversity::compression_ratio(&texts),
            // Shares of no texts are undefined, not 0.
            mean_tokens: total_tokens as f64 / n as f64,
            eos_rate: samples.iter().filter(|s| s.ended_with_eos).count() as f64 / n as f64,
        }
    }

    /// The value of a metric by its CSV name.
    pub fn get(&self, name: &str) -> f64 {
        match name {
            "mean_perplexity" => self.mean_perplexity,
            "corpus_perplexity" => self.corpus_perplexity,
            "distinct_1" => self.distinct_1,
            "distinct_2" => self.distinct_2,
            "distinct_3" => self.distinct_3,
            "self_bleu_4" => self.self_bleu_4,
            "self_bleu_4_tokens" => self.self_bleu_4_tokens,
            "zipf_coefficient" => self.zipf_coefficient,
            "repetition_rate" => self.repetition_rate,
            "seq_rep_4" => self.seq_rep_4,
            "rep_2" => self.rep_2,
            "rep_3" => self.rep_3,
            "rep_4" => self.rep_4,
            "diversity" => self.diversity,
            "compression_ratio" => self.compression_ratio,
            "mean_tokens" => self.mean_tokens,
            "eos_rate" => self.eos_rate,
            _ => f64::NAN,
        }
    }
}

/// A setting's texts scored under a second model (`[score] model`), the way decoding papers
/// score under a larger model than the one that wrote the text. `coherence` is Su & Collier's
/// (2022, "Contrastive Search Is What You Need For Neural Text Generation", Eq. 4): the mean
/// log-probability per continuation token under the scorer, averaged over texts, so higher is
/// more coherent and `exp(−coherence)` is the geometric mean of the texts' perplexities. Texts
/// with no tokens have no perplexity and are left out of every mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorerMetrics {
    pub scorer_mean_perplexity: f64,
    pub scorer_mean_perplexity_lo: f64,
    pub scorer_mean_perplexity_hi: f64,
    pub scorer_corpus_perplexity: f64,
    pub coherence: f64,
}

/// The columns of [`ScorerMetrics`], in `summary.csv` order.
pub const SCORER_METRICS: [&str; 5] = [
    "scorer_mean_perplexity",
    "scorer_mean_perplexity_lo",
    "scorer_mean_perplexity_hi",
    "scorer_corpus_perplexity",
    "coherence",
];

impl ScorerMetrics {
    /// From the scorer's per-token log-probabilities of each text (`logprobs[i]` for
    /// `samples[i]`), with the same prompt-clustered bootstrap as `mean_perplexity`.
    pub fn compute(samples: &[Sample], logprobs: &[Vec<f32>]) -> Self {
        assert_eq!(samples.len(), logprobs.len(), "one score per text");
        let scored: Vec<usize> = (0..samples.len())
            .filter(|&i| !logprobs[i].is_empty())
            .collect();
        let perplexities: Vec<f64> = scored
            .iter()
            .map(|&i| metrics::perplexity(&logprobs[i]))
            .collect();
        let mean_logprob: Vec<f64> = scored
            .iter()
            .map(|&i| {
                let lp = &logprobs[i];
                lp.iter().map(|&x| f64::from(x)).sum::<f64>() / lp.len() as f64
            })
            .collect();
        let prompts: Vec<usize> = scored.iter().map(|&i| samples[i].prompt_index).collect();
        let clusters = metrics::prompt_clusters(&prompts);
        let mean_perplexity = metrics::mean_perplexity(&perplexities);
        let (lo, hi) = holding(
            mean_perplexity,
            metrics::cluster_bootstrap_ci(
                &clusters,
                |keep| keep.iter().map(|&i| perplexities[i]).sum::<f64>() / keep.len() as f64,
                metrics::BOOTSTRAP_RESAMPLES,
                METRICS_SEED,
            ),
        );
        Self {
            scorer_mean_perplexity: mean_perplexity,
            scorer_mean_perplexity_lo: lo,
            scorer_mean_perplexity_hi: hi,
            scorer_corpus_perplexity: metrics::corpus_perplexity(logprobs),
            coherence: metrics::mean(&mean_logprob),
        }
    }

    /// The values, in [`SCORER_METRICS`] order.
    pub fn values(&self) -> [f64; 5] {
        [
            self.scorer_mean_perplexity,
            self.scorer_mean_perplexity_lo,
            self.scorer_mean_perplexity_hi,
            self.scorer_corpus_perplexity,
            self.coherence,
        ]
    }
}

/// MAUVE (Pillutla et al. 2021) of a row's texts against the human references, by
/// `mauve::mauve` on the texts' final hidden states, and the clusters it used.
///
/// There is no interval. A prompt bootstrap of the histograms (labels fixed,
/// `mauve::mauve_interval`) adds sampling noise to both histograms, which makes them less
/// alike: its intervals lie mostly below the estimate (0.44–0.73 around 0.69 on 300 texts a
/// side), and it cannot see the spread between k-means starts, which is of the same size. An
/// interval that does not cover its estimate's target is not printed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MauveMetrics {
    pub mauve: f64,
    pub mauve_clusters: usize,
}

impl MauveMetrics {
    /// `p`: the row's texts' features; `q`: the references'.
    pub fn compute(
        p: &[Vec<f32>],
        q: &[Vec<f32>],
        scaling: f64,
        clusters: Option<usize>,
    ) -> Result<Self, mauve::MauveError> {
        let (p, dim) = mauve::flatten("the model's texts", p)?;
        let (q, dim_q) = mauve::flatten("the references", q)?;
        let options = mauve::MauveOptions {
            scaling,
            clusters,
            ..Default::default()
        };
        let result = mauve::mauve(
            mauve::Features::new("the model's texts", &p, dim)?,
            mauve::Features::new("the references", &q, dim_q)?,
            &options,
        )?;
        Ok(Self {
            mauve: result.mauve,
            mauve_clusters: result.clusters,
        })
    }
}

/// The interval of a share that is exactly 0 or 1 over `prompts` prompts (at least 2): no
/// prompt varies, so the jackknife's would be the point itself, claiming a certainty that
/// a few dozen prompts cannot give. Instead, the exact (Clopper–Pearson) 97.5 % bound for
/// "0 of `prompts` prompts had any looping text": `1 − 0.025^(1/prompts)` (0.109 for 32
/// prompts). It bounds the share of texts too, which cannot exceed the share of prompts
/// with any such text; symmetrically for a share of 1.
fn share_at_a_bound(share: f64, prompts: usize) -> Option<(f64, f64)> {
    if prompts < 2 {
        return None;
    }
    let bound = 0.025_f64.powf(1.0 / prompts as f64);
    if share == 0.0 {
        Some((0.0, 1.0 - bound))
    } else if share == 1.0 {
        Some((bound, 1.0))
    } else {
        None
    }
}

/// A share's interval cut to `[0, 1]`: the jackknife's normal interval can reach past the
/// ends, which no share can. An undefined interval stays undefined (`f64::max` would turn
/// NaN into the bound).
fn clip01((lo, hi): (f64, f64)) -> (f64, f64) {
    if lo.is_nan() || hi.is_nan() {
        (f64::NAN, f64::NAN)
    } else {
        (lo.max(0.0), hi.min(1.0))
    }
}

/// The interval widened, if need be, to hold its estimate; NaN unless all three are finite.
/// The jackknife's interval is centred on the estimate and a prompt bootstrap's percentile
/// interval of a mean all but always holds it; this makes "always" exact, whatever the last
/// bits of a sum in another order or a heavily skewed handful of prompts do.
fn holding(estimate: f64, (lo, hi): (f64, f64)) -> (f64, f64) {
    if estimate.is_finite() && lo.is_finite() && hi.is_finite() {
        (lo.min(estimate), hi.max(estimate))
    } else {
        (f64::NAN, f64::NAN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(prompt_index: usize, tokens: Vec<u32>) -> Sample {
        Sample {
            prompt_index,
            sample_index: 0,
            text: tokens
                .iter()
                .map(|t| format!("w{t}"))
                .collect::<Vec<_>>()
                .join(" "),
            logprobs: vec![-1.0; tokens.len()],
            token_ids: tokens,
            ended_with_eos: false,
        }
    }

    #[test]
    fn a_share_of_zero_or_one_gets_the_prompt_level_exact_bound() {
        let none: Vec<Sample> = (0..32)
            .map(|p| sample(p, vec![p as u32, 1, 2, 3]))
            .collect();
        let m = Metrics::compute(&none);
        assert_eq!(m.repetition_rate, 0.0);
        assert_eq!(m.repetition_rate_lo, 0.0);
        assert!((m.repetition_rate_hi - 0.1088).abs() < 1e-4, "{m:?}");
        let all: Vec<Sample> = (0..8)
            .map(|p| sample(p, vec![p as u32, 7, 1, 9, 7, 1, 9]))
            .collect();
        let m = Metrics::compute(&all);
        assert_eq!(m.repetition_rate, 1.0);
        assert!((m.repetition_rate_lo - 0.025_f64.powf(1.0 / 8.0)).abs() < 1e-12);
        assert_eq!(m.repetition_rate_hi, 1.0);
        // One prompt: nothing to say.
        let m = Metrics::compute(&none[..1]);
        assert!(m.repetition_rate_lo.is_nan() && m.repetition_rate_hi.is_nan());
    }

    #[test]
    fn clipping_keeps_undefined_intervals_undefined() {
        let (lo, hi) = clip01((f64::NAN, f64::NAN));
        assert!(lo.is_nan() && hi.is_nan());
        assert_eq!(clip01((-0.1, 1.2)), (0.0, 1.0));
        assert_eq!(holding(0.5, (0.6, 0.7)), (0.5, 0.7));
        let (lo, hi) = holding(f64::NAN, (0.1, 0.2));
        assert!(lo.is_nan() && hi.is_nan());
    }
}
