//! One summary row per setting: the metrics of `metrics` applied to that setting's samples.

use serde::{Deserialize, Serialize};

use crate::metrics;

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
    pub zipf_coefficient: f64,
    pub repetition_rate: f64,
    pub rep_4: f64,
    pub mean_tokens: f64,
    pub eos_rate: f64,
}

/// Self-BLEU-4 is exact up to this many samples; above it a seeded subsample of hypotheses is
/// scored, each still against every other sample.
pub const SELF_BLEU_MAX_EXACT: usize = 500;

/// Seed of every bootstrap and subsample, so a summary is repeatable.
pub const METRICS_SEED: u64 = 0x5eed;

/// Every metric [`Metrics::get`] knows, in `summary.csv` order.
pub const METRICS: [&str; 11] = [
    "mean_perplexity",
    "corpus_perplexity",
    "distinct_1",
    "distinct_2",
    "distinct_3",
    "self_bleu_4",
    "zipf_coefficient",
    "repetition_rate",
    "rep_4",
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
        let n = samples.len();
        let (ppl_lo, ppl_hi) = metrics::bootstrap_ci(
            &perplexities,
            metrics::mean,
            metrics::BOOTSTRAP_RESAMPLES,
            METRICS_SEED,
        );
        let (d2_lo, d2_hi) = metrics::bootstrap_ci_by(
            &words,
            |s| metrics::distinct_n(s, 2),
            metrics::BOOTSTRAP_RESAMPLES,
            METRICS_SEED,
        );
        // Self-BLEU's interval resamples the per-hypothesis scores, holding references fixed:
        // resampling whole sample sets would let a duplicated text find itself as a reference.
        let bleu_scores = metrics::self_bleu_4_scores(&words, SELF_BLEU_MAX_EXACT, METRICS_SEED);
        let self_bleu_4 = metrics::mean(&bleu_scores);
        let (b_lo, b_hi) = metrics::bootstrap_ci(
            &bleu_scores,
            metrics::mean,
            metrics::BOOTSTRAP_RESAMPLES,
            METRICS_SEED,
        );
        let total_tokens: usize = tokens.iter().map(|t| t.len()).sum();
        Self {
            samples: n,
            mean_perplexity: metrics::mean_perplexity(&perplexities),
            mean_perplexity_lo: ppl_lo,
            mean_perplexity_hi: ppl_hi,
            corpus_perplexity: metrics::corpus_perplexity(&logprobs),
            distinct_1: metrics::distinct_n(&words, 1),
            distinct_2: metrics::distinct_n(&words, 2),
            distinct_2_lo: d2_lo,
            distinct_2_hi: d2_hi,
            distinct_3: metrics::distinct_n(&words, 3),
            self_bleu_4,
            self_bleu_4_lo: b_lo,
            self_bleu_4_hi: b_hi,
            zipf_coefficient: metrics::zipf_coefficient(&words),
            repetition_rate: metrics::repetition_rate(&tokens),
            rep_4: metrics::mean_rep_4(&tokens),
            mean_tokens: total_tokens as f64 / n.max(1) as f64,
            eos_rate: samples.iter().filter(|s| s.ended_with_eos).count() as f64 / n.max(1) as f64,
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
            "zipf_coefficient" => self.zipf_coefficient,
            "repetition_rate" => self.repetition_rate,
            "rep_4" => self.rep_4,
            "mean_tokens" => self.mean_tokens,
            "eos_rate" => self.eos_rate,
            _ => f64::NAN,
        }
    }
}
