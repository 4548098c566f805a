//! `sweep bench`: tokens per second of the decoding paths a sweep uses, on one model, with
//! the peak resident memory. A benchmark, not a test: machines are noisy, so compare against
//! a peer measured in the same run (`--vs-transformers`), not against remembered numbers.
//!
//! The case names are shared with `scripts/bench_transformers.py`, which runs the same cases
//! with transformers `generate()`; results are matched by name.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::engine::beam::{BeamParams, EarlyStopping};
use crate::engine::contrastive::ContrastiveParams;
use crate::engine::generate::{Continuation, Generator, PreparedPrompt, SampleRow};
use crate::engine::sampling::{Processors, SamplingParams, sample_rng};
use crate::engine::step_profile::{self, StepProfile};

/// One measured case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub case: String,
    /// Tokens generated (or, for prefill, read) in the timed region.
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
    /// Where a step's time went, from one more run (`--profile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<StepProfile>,
}

/// The fastest of `plan.repeat` runs of `run`: on a shared machine a run is slowed by
/// whatever else runs beside it, never sped up, so the fastest is the least disturbed.
fn measure(case: String, plan: &BenchPlan, mut run: impl FnMut() -> usize) -> Measurement {
    let mut best: Option<(usize, f64)> = None;
    for _ in 0..plan.repeat.max(1) {
        let start = Instant::now();
        let tokens = run();
        let seconds = start.elapsed().as_secs_f64();
        if best.is_none_or(|(_, fastest)| seconds < fastest) {
            best = Some((tokens, seconds));
        }
    }
    let (tokens, seconds) = best.expect("at least one run");
    Measurement {
        case,
        tokens,
        seconds,
        tokens_per_s: tokens as f64 / seconds.max(1e-9),
        profile: None,
    }
}

/// [`measure`] for a case that samples step by step, which `plan.profile` profiles in one
/// more run (see [`step_profile`]).
fn measure_steps(case: String, plan: &BenchPlan, mut run: impl FnMut() -> usize) -> Measurement {
    let mut measured = measure(case, plan, &mut run);
    if plan.profile {
        step_profile::start();
        run();
        measured.profile = Some(step_profile::finish());
    }
    measured
}

/// The kinds of case `sweep bench` measures, so a run can measure only some of them; their
/// names (`--cases`, and the peer script's) are clap's, in kebab case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Case {
    Greedy,
    /// The sampling cases, with `long_tokens` and `long_prompt` when asked for.
    Sample,
    Beam,
    Contrastive,
    Grid,
    Prefill,
    Score,
}

/// What to measure; the defaults are the cases the README quotes.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    /// The kinds of case to run, in their fixed order whatever the order here.
    pub cases: Vec<Case>,
    /// Runs of each case; the fastest is reported.
    pub repeat: usize,
    /// Profile the sampling cases' steps in one more run.
    pub profile: bool,
    pub new_tokens: usize,
    /// Rows of the sampling case, one case per entry.
    pub batches: Vec<usize>,
    pub num_beams: usize,
    pub prefill_tokens: usize,
    /// The grid case: temperatures × top-k values, `grid_samples` rows each.
    pub grid_temperatures: Vec<f64>,
    pub grid_top_k: Vec<usize>,
    pub grid_samples: usize,
    /// Also sample the first batch at this many new tokens, to show how cost grows with length.
    pub long_tokens: Option<usize>,
    /// Also sample the first batch after a prompt of this many tokens: a sweep draws many
    /// samples of each prompt, so what a long prompt costs per row matters.
    pub long_prompt: Option<usize>,
}

impl Default for BenchPlan {
    fn default() -> Self {
        Self {
            cases: <Case as clap::ValueEnum>::value_variants().to_vec(),
            repeat: 1,
            profile: false,
            new_tokens: 128,
            batches: vec![32],
            num_beams: 8,
            prefill_tokens: 512,
            grid_temperatures: vec![0.7, 0.9, 1.0, 1.2],
            grid_top_k: vec![0, 10, 50, 200],
            grid_samples: 8,
            long_tokens: None,
            long_prompt: None,
        }
    }
}

/// The sampling settings of the batch cases (the values of Holtzman et al.'s common setup).
pub const NUCLEUS: SamplingParams = SamplingParams {
    temperature: 0.8,
    top_k: 50,
    top_p: 0.9,
    processors: Processors::OFF,
};

/// Case names, shared with the peer script.
pub fn greedy_case() -> String {
    "greedy, batch 1".into()
}

pub fn sample_case(batch: usize, new_tokens: usize) -> String {
    format!("sample T0.8 k50 p0.9, {batch} x {new_tokens}")
}

pub fn prompt_case(batch: usize, new_tokens: usize, prompt_tokens: usize) -> String {
    format!("sample T0.8 k50 p0.9, {batch} x {new_tokens}, prompt {prompt_tokens}")
}

pub fn beam_case(num_beams: usize) -> String {
    format!("beam search, {num_beams} beams")
}

pub fn contrastive_case() -> String {
    "contrastive search, alpha 0.6 k 4".into()
}

pub fn grid_case(settings: usize, samples: usize) -> String {
    format!("grid of {settings} settings x {samples} samples")
}

pub fn prefill_case(tokens: usize) -> String {
    format!("prefill, {tokens} tokens")
}

pub fn score_case(texts: usize, prompt: usize, tokens: usize) -> String {
    format!("score {texts} texts x ({prompt} + {tokens}) tokens")
}

/// Fixed texts to score, `rows` × `len` ordinary token ids, each row different (the peer
/// builds the same ones).
fn texts(rows: usize, len: usize, vocab: usize) -> Vec<Vec<u32>> {
    (0..rows)
        .map(|r| {
            (0..len)
                .map(|i| ((r * 131 + i * 7919 + 29) % vocab.min(50000)) as u32)
                .collect()
        })
        .collect()
}

/// A fixed prompt of `len` ordinary token ids (the peer builds the same one).
fn prompt(len: usize, vocab: usize) -> Vec<u32> {
    (0..len)
        .map(|i| ((i * 7919 + 13) % vocab.min(50000)) as u32)
        .collect()
}

/// Run every case of `plan`, handing each result to `report` as soon as it is measured, so
/// an interrupted run still shows what it finished. Rows here never stop at end-of-text (the
/// peer disables it too), so both sides generate the same number of tokens.
pub fn run(generator: &Generator, plan: &BenchPlan, mut report: impl FnMut(&Measurement)) {
    let vocab = generator.model().config.vocab_size;
    let longest = plan.long_tokens.unwrap_or(0).max(plan.new_tokens);
    let p = generator
        .prepare(&prompt(16, vocab), longest)
        .expect("bench prompt fits");
    let rows = |n: usize, params: SamplingParams, seed: u64| -> Vec<SampleRow> {
        (0..n)
            .map(|i| SampleRow {
                params,
                rng: sample_rng(seed, 0, i as u32),
            })
            .collect()
    };
    let sample_after = |p: &PreparedPrompt, rows: Vec<SampleRow>, new_tokens: usize| -> usize {
        let out: Vec<Continuation> = generator
            .sample_full_length(p, rows, new_tokens)
            .expect("a random model's logits are finite");
        out.iter().map(|c| c.tokens.len()).sum()
    };
    let sample = |rows: Vec<SampleRow>, new_tokens: usize| sample_after(&p, rows, new_tokens);
    // Warm-up: first calls pay for allocation and thread start.
    let _ = sample(rows(2, SamplingParams::PURE, 0), 4);

    let mut emit = |m: Measurement| report(&m);
    let wants = |case: Case| plan.cases.contains(&case);
    if wants(Case::Greedy) {
        emit(measure_steps(greedy_case(), plan, || {
            sample(rows(1, SamplingParams::GREEDY, 0), plan.new_tokens)
        }));
    }
    for &batch in plan.batches.iter().filter(|_| wants(Case::Sample)) {
        emit(measure_steps(
            sample_case(batch, plan.new_tokens),
            plan,
            || sample(rows(batch, NUCLEUS, 1), plan.new_tokens),
        ));
    }
    if let (true, Some(long), Some(&batch)) =
        (wants(Case::Sample), plan.long_tokens, plan.batches.first())
    {
        emit(measure_steps(sample_case(batch, long), plan, || {
            sample(rows(batch, NUCLEUS, 1), long)
        }));
    }
    if let (true, Some(len), Some(&batch)) =
        (wants(Case::Sample), plan.long_prompt, plan.batches.first())
    {
        emit(measure_steps(
            prompt_case(batch, plan.new_tokens, len),
            plan,
            || {
                // The prompt's pass is part of the cost: it runs once, for every row.
                let long = generator
                    .prepare(&prompt(len, vocab), plan.new_tokens)
                    .expect("long prompt fits");
                sample_after(&long, rows(batch, NUCLEUS, 1), plan.new_tokens)
            },
        ));
    }
    if wants(Case::Beam) {
        emit(measure(beam_case(plan.num_beams), plan, || {
            let mut params = BeamParams::new(plan.num_beams);
            params.early_stopping = EarlyStopping::Never;
            params.length_penalty = 0.0;
            generator
                .beam_search(&p, &params, plan.new_tokens)
                .expect("a random model's logits are finite")
                .first()
                .map_or(0, |h| h.tokens.len())
                * plan.num_beams
        }));
    }
    if wants(Case::Contrastive) {
        emit(measure(contrastive_case(), plan, || {
            let params = ContrastiveParams {
                penalty_alpha: 0.6,
                top_k: 4,
            };
            generator
                .contrastive_search(&p, params, plan.new_tokens)
                .expect("a random model's logits are finite")
                .tokens
                .len()
        }));
    }
    if wants(Case::Grid) {
        let settings: Vec<SamplingParams> = plan
            .grid_temperatures
            .iter()
            .flat_map(|&t| {
                plan.grid_top_k.iter().map(move |&k| SamplingParams {
                    temperature: t,
                    top_k: k,
                    top_p: 1.0,
                    processors: Processors::OFF,
                })
            })
            .collect();
        emit(measure_steps(
            grid_case(settings.len(), plan.grid_samples),
            plan,
            || {
                // All settings' rows in one batch, as a sweep runs them.
                let all: Vec<SampleRow> = settings
                    .iter()
                    .enumerate()
                    .flat_map(|(s, &params)| rows(plan.grid_samples, params, s as u64))
                    .collect();
                sample(all, plan.new_tokens)
            },
        ));
    }
    if wants(Case::Prefill) {
        let long = prompt(
            plan.prefill_tokens
                .min(generator.model().config.n_positions),
            vocab,
        );
        // The prompt pass of generation: every position runs, the last one's logits come back.
        emit(measure(prefill_case(long.len()), plan, || {
            let _ = generator.next_logits(&long);
            long.len()
        }));
    }
    // Teacher-forced scoring, as `[score]` runs it: one prompt's texts in one batch, the
    // prompt run once; the scored tokens are counted.
    if let (true, Some(&batch)) = (wants(Case::Score), plan.batches.first()) {
        let scored = texts(batch, plan.new_tokens, vocab);
        let views: Vec<&[u32]> = scored.iter().map(Vec::as_slice).collect();
        emit(measure(
            score_case(batch, p.tokens.len(), plan.new_tokens),
            plan,
            || {
                generator
                    .score_texts(&p, &views, plan.new_tokens, batch)
                    .expect("a random model's logits are finite")
                    .iter()
                    .map(|s| s.logprobs.len())
                    .sum()
            },
        ));
    }
}

/// One filter or penalty alone on top of plain sampling at T = 1, at a common strength, for
/// [`run_filters`]; the first entry is top-p, the reference the others are measured against,
/// the second no filter at all.
pub fn filter_cases() -> Vec<(String, SamplingParams)> {
    let plain = SamplingParams::PURE;
    let with = |processors: Processors| SamplingParams {
        processors,
        ..plain
    };
    let off = Processors::OFF;
    vec![
        (
            "top_p 0.9".into(),
            SamplingParams {
                top_p: 0.9,
                ..plain
            },
        ),
        ("no filter".into(), plain),
        ("min_p 0.1".into(), with(Processors { min_p: 0.1, ..off })),
        (
            "typical_p 0.9".into(),
            with(Processors {
                typical_p: 0.9,
                ..off
            }),
        ),
        (
            "epsilon_cutoff 0.0003".into(),
            with(Processors {
                epsilon_cutoff: 3e-4,
                ..off
            }),
        ),
        (
            "eta_cutoff 0.001".into(),
            with(Processors {
                eta_cutoff: 1e-3,
                ..off
            }),
        ),
        (
            "top_n_sigma 1".into(),
            with(Processors {
                top_n_sigma: 1.0,
                ..off
            }),
        ),
        (
            "repetition_penalty 1.2".into(),
            with(Processors {
                repetition_penalty: 1.2,
                ..off
            }),
        ),
        (
            "frequency/presence_penalty 0.5".into(),
            with(Processors {
                frequency_penalty: 0.5,
                presence_penalty: 0.5,
                ..off
            }),
        ),
        (
            "no_repeat_ngram_size 3".into(),
            with(Processors {
                no_repeat_ngram_size: 3,
                ..off
            }),
        ),
        (
            "min_p 0.1, temperature_last, T 1.5".into(),
            SamplingParams {
                temperature: 1.5,
                ..with(Processors {
                    min_p: 0.1,
                    temperature_last: true,
                    ..off
                })
            },
        ),
    ]
}

/// Each of [`filter_cases`] on the first batch size of `plan` (its whole decoding, forward
/// passes included, as a sweep pays it), top-p first, so that each filter's cost per step can
/// be read against top-p's measured in the same run.
pub fn run_filters(generator: &Generator, plan: &BenchPlan, mut report: impl FnMut(&Measurement)) {
    let vocab = generator.model().config.vocab_size;
    let p = generator
        .prepare(&prompt(16, vocab), plan.new_tokens)
        .expect("bench prompt fits");
    let batch = plan.batches.first().copied().unwrap_or(32);
    let rows = |params: SamplingParams| -> Vec<SampleRow> {
        (0..batch)
            .map(|i| SampleRow {
                params,
                rng: sample_rng(1, 0, i as u32),
            })
            .collect()
    };
    let sample = |rows: Vec<SampleRow>, new_tokens: usize| -> usize {
        generator
            .sample_full_length(&p, rows, new_tokens)
            .expect("a random model's logits are finite")
            .iter()
            .map(|c| c.tokens.len())
            .sum()
    };
    let _ = sample(rows(SamplingParams::PURE), 4);
    for (name, params) in filter_cases() {
        report(&measure(
            format!("{name}, {batch} x {}", plan.new_tokens),
            plan,
            || sample(rows(params), plan.new_tokens),
        ));
    }
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`); `None` elsewhere.
pub fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
