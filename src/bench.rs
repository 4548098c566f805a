//! `sweep bench`: tokens per second of the decoding paths a sweep uses, on one model, with
//! the peak resident memory. A benchmark, not a test: machines are noisy, so compare against
//! a peer measured in the same run (`--vs-transformers`), not against remembered numbers.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::beam::BeamParams;
use crate::generate::{Generator, Row};
use crate::sampling::{SamplingParams, sample_rng};

/// One measured case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub case: String,
    /// Tokens generated (or, for prefill, read) in the timed region.
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
}

fn measure(case: &str, run: impl FnOnce() -> usize) -> Measurement {
    let start = Instant::now();
    let tokens = run();
    let seconds = start.elapsed().as_secs_f64();
    Measurement {
        case: case.to_string(),
        tokens,
        seconds,
        tokens_per_s: tokens as f64 / seconds.max(1e-9),
    }
}

/// What to measure; the defaults are the cases the README quotes.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    pub new_tokens: usize,
    pub batch: usize,
    pub num_beams: usize,
    pub prefill_tokens: usize,
    /// The grid case: temperatures × top-k values, `grid_samples` rows each.
    pub grid_temperatures: Vec<f64>,
    pub grid_top_k: Vec<usize>,
    pub grid_samples: usize,
}

impl Default for BenchPlan {
    fn default() -> Self {
        Self {
            new_tokens: 128,
            batch: 32,
            num_beams: 8,
            prefill_tokens: 512,
            grid_temperatures: vec![0.7, 0.9, 1.0, 1.2],
            grid_top_k: vec![0, 10, 50, 200],
            grid_samples: 8,
        }
    }
}

/// A fixed prompt of `len` ordinary token ids.
fn prompt(len: usize, vocab: usize) -> Vec<u32> {
    (0..len)
        .map(|i| ((i * 7919 + 13) % vocab.min(50000)) as u32)
        .collect()
}

/// Run every case of `plan`. End-of-text is never sampled early here: rows are forced to run
/// the full length by ignoring it, so every case generates the same number of tokens as its
/// peer.
pub fn run(generator: &Generator, plan: &BenchPlan) -> Vec<Measurement> {
    let vocab = generator.model().config.vocab_size;
    let p = generator
        .prepare(&prompt(16, vocab), plan.new_tokens)
        .expect("bench prompt fits");
    let rows = |n: usize, params: SamplingParams, seed: u64| -> Vec<Row> {
        (0..n)
            .map(|i| Row {
                params,
                rng: sample_rng(seed, 0, i as u32),
            })
            .collect()
    };
    let count = |out: Vec<crate::generate::Continuation>| out.iter().map(|c| c.tokens.len()).sum();
    let mut results = Vec::new();
    // Warm-up: first calls pay for allocation and thread start.
    let _ = generator.sample(&p, rows(2, SamplingParams::PURE, 0), 4, |_, _| {});

    results.push(measure("greedy, batch 1", || {
        count(generator.sample(
            &p,
            rows(1, SamplingParams::GREEDY, 0),
            plan.new_tokens,
            |_, _| {},
        ))
    }));
    let nucleus = SamplingParams {
        temperature: 0.8,
        top_k: 50,
        top_p: 0.9,
    };
    results.push(measure(
        &format!("sample T0.8 k50 p0.9, {} x {}", plan.batch, plan.new_tokens),
        || count(generator.sample(&p, rows(plan.batch, nucleus, 1), plan.new_tokens, |_, _| {})),
    ));
    results.push(measure(
        &format!("beam search, {} beams", plan.num_beams),
        || {
            let mut params = BeamParams::new(plan.num_beams);
            params.early_stopping = crate::beam::EarlyStopping::Never;
            params.length_penalty = 0.0;
            generator
                .beam_search(&p, &params, plan.new_tokens)
                .first()
                .map_or(0, |h| h.tokens.len())
                * plan.num_beams
        },
    ));
    let settings: Vec<SamplingParams> = plan
        .grid_temperatures
        .iter()
        .flat_map(|&t| {
            plan.grid_top_k.iter().map(move |&k| SamplingParams {
                temperature: t,
                top_k: k,
                top_p: 1.0,
            })
        })
        .collect();
    results.push(measure(
        &format!(
            "grid of {} settings x {} samples, batched together",
            settings.len(),
            plan.grid_samples
        ),
        || {
            let all: Vec<Row> = settings
                .iter()
                .enumerate()
                .flat_map(|(s, &params)| rows(plan.grid_samples, params, s as u64))
                .collect();
            count(generator.sample(&p, all, plan.new_tokens, |_, _| {}))
        },
    ));
    let long = prompt(plan.prefill_tokens, vocab);
    results.push(measure(&format!("prefill, {} tokens", long.len()), || {
        let _ = generator.logits(&long);
        long.len()
    }));
    results
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`); `None` elsewhere.
pub fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
