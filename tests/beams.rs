//! Greedy decoding and beam search with penalties, group (diverse) beam search and beam
//! sampling, against what transformers records in `tests/fixtures/decoding.json` (made by
//! `tests/fixtures/make_decoding_fixtures.py`; no Python needed here).

use serde_json::Value;
use sweep::engine::beam::{
    BeamParams, BeamParamsError, BeamSampling, EarlyStopping, draw_without_replacement, process_row,
};
use sweep::engine::checkpoint;
use sweep::engine::generate::{Generator, SampleRow, log_softmax_rows};
use sweep::engine::sampling::{Processors, SamplingParams, sample_rng};

mod recorded;
use recorded::{fixtures, ids, read};

/// A row of scores, `null` standing for `-inf`.
fn row(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().map_or(f32::NEG_INFINITY, |x| x as f32))
        .collect()
}

fn generator() -> Generator {
    let device = burn::tensor::Device::default();
    Generator::new(
        checkpoint::load(&fixtures().join("tiny-hf"), &device)
            .unwrap()
            .model,
    )
}

fn prompts() -> Vec<Vec<u32>> {
    read("expected.json")["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids)
        .collect()
}

fn usize_of(case: &Value, key: &str) -> usize {
    case[key].as_u64().unwrap() as usize
}

fn f64_of(case: &Value, key: &str) -> f64 {
    case[key].as_f64().unwrap()
}

fn penalties(case: &Value) -> Processors {
    Processors {
        repetition_penalty: f64_of(case, "repetition_penalty"),
        no_repeat_ngram_size: usize_of(case, "no_repeat_ngram_size"),
        ..Processors::OFF
    }
}

fn early_stopping(v: &Value) -> EarlyStopping {
    match v {
        Value::Bool(true) => EarlyStopping::Always,
        Value::Bool(false) => EarlyStopping::Heuristic,
        Value::String(s) if s == "never" => EarlyStopping::Never,
        other => panic!("unknown early_stopping {other}"),
    }
}

/// The beam settings of a recorded beam or group case.
fn beam_params(case: &Value) -> BeamParams {
    BeamParams {
        length_penalty: f64_of(case, "length_penalty"),
        early_stopping: early_stopping(&case["early_stopping"]),
        num_return_sequences: usize_of(case, "num_return_sequences"),
        processors: penalties(case),
        num_beam_groups: case["num_beam_groups"].as_u64().unwrap_or(1) as usize,
        diversity_penalty: case["diversity_penalty"].as_f64().unwrap_or(0.0),
        ..BeamParams::new(usize_of(case, "num_beams"))
    }
}

/// Each recorded search, token for token, and its scores within 1e-5 relative.
fn check_searches(cases: &[Value], what: &str) -> usize {
    let g = generator();
    let prompts = prompts();
    let mut ended_by_eos = 0;
    for case in cases {
        let params = beam_params(case);
        let max_new = usize_of(case, "max_new_tokens");
        let prompt = g
            .prepare(&prompts[usize_of(case, "prompt")], max_new)
            .unwrap();
        let found = g.beam_search(&prompt, &params, max_new).unwrap();
        let got: Vec<Vec<u32>> = found.iter().map(|h| h.tokens.clone()).collect();
        let expected: Vec<Vec<u32>> = case["sequences"]
            .as_array()
            .unwrap()
            .iter()
            .map(ids)
            .collect();
        assert_eq!(
            got, expected,
            "{what} {params:?}, prompt {}",
            case["prompt"]
        );
        for (h, theirs) in found.iter().zip(case["scores"].as_array().unwrap()) {
            let theirs = theirs.as_f64().unwrap();
            let diff = (h.score as f64 - theirs).abs();
            assert!(
                diff <= 1e-5 * theirs.abs().max(1.0),
                "{what} {params:?}: score {} vs {theirs}",
                h.score
            );
            assert_eq!(h.logprobs.len(), h.tokens.len());
            ended_by_eos += h.ended_with_eos as usize;
        }
    }
    ended_by_eos
}

/// Greedy decoding with a repetition penalty and n-gram blocking is sampling at T = 0 with
/// those penalties: transformers penalises the logits, then takes the argmax.
#[test]
fn greedy_with_penalties_matches_transformers() {
    let g = generator();
    let prompts = prompts();
    let cases = read("decoding.json")["greedy"].as_array().unwrap().clone();
    assert!(cases.len() >= 12);
    for case in &cases {
        let max_new = usize_of(case, "max_new_tokens");
        let prompt = g
            .prepare(&prompts[usize_of(case, "prompt")], max_new)
            .unwrap();
        let params = SamplingParams {
            processors: penalties(case),
            ..SamplingParams::GREEDY
        };
        let rows = vec![SampleRow {
            params,
            rng: sample_rng(0, 0, 0),
        }];
        let out = g.sample(&prompt, rows, max_new, |_, _| {}).unwrap();
        assert_eq!(out[0].tokens, ids(&case["tokens"]), "greedy {case}");
    }
}

/// transformers 5's beam search with `repetition_penalty` and `no_repeat_ngram_size`, which it
/// applies to each beam's log-probabilities with that beam's context.
#[test]
fn beam_search_with_penalties_matches_transformers() {
    let cases = read("decoding.json")["beam"].as_array().unwrap().clone();
    assert!(cases.len() >= 8);
    let ended = check_searches(&cases, "beam");
    assert!(ended > 0, "some hypothesis must end on end-of-text");
}

/// Group (diverse) beam search as transformers 4.55 runs it, with the search built in.
#[test]
fn group_beam_search_matches_transformers_4_55() {
    let cases = read("decoding.json")["group_beam"]
        .as_array()
        .unwrap()
        .clone();
    assert!(cases.len() >= 7);
    let ended = check_searches(&cases, "group");
    assert!(ended > 0, "some hypothesis must end on end-of-text");
}

/// The beam settings of a recorded beam sampling case.
fn sampling_params(case: &Value, seed: u64) -> BeamParams {
    let knobs = &case["knobs"];
    let get = |key: &str, off: f64| knobs[key].as_f64().unwrap_or(off);
    BeamParams {
        processors: Processors {
            repetition_penalty: get("repetition_penalty", 1.0),
            no_repeat_ngram_size: get("no_repeat_ngram_size", 0.0) as usize,
            min_p: get("min_p", 0.0),
            typical_p: get("typical_p", 1.0),
            epsilon_cutoff: get("epsilon_cutoff", 0.0),
            eta_cutoff: get("eta_cutoff", 0.0),
            ..Processors::OFF
        },
        sampling: Some(BeamSampling {
            temperature: get("temperature", 1.0),
            top_k: get("top_k", 0.0) as usize,
            top_p: get("top_p", 1.0),
            seed,
        }),
        ..BeamParams::new(usize_of(case, "num_beams"))
    }
}

/// Our processed rows of one recorded step: the model on each row's context (the prompt and
/// that beam's tokens, as transformers passed them), log-softmax, then the processors.
fn our_step(g: &Generator, params: &BeamParams, prompt_len: usize, step: &Value) -> Vec<Vec<f32>> {
    step["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|context| {
            let context = ids(context);
            let logits = g.next_logits(&context);
            let mut row = log_softmax_rows(&logits, logits.len());
            process_row(params, &mut row, &context, prompt_len);
            row
        })
        .collect()
}

/// The deterministic half of beam sampling: given the same beams, the scores the draw is made
/// from (penalties, temperature, and the filters keeping two tokens each) are transformers'.
#[test]
fn beam_sampling_processes_scores_as_transformers() {
    let g = generator();
    let prompts = prompts();
    let cases = read("decoding.json")["beam_sampling"]
        .as_array()
        .unwrap()
        .clone();
    assert!(cases.len() >= 6);
    let mut kept_two = 0;
    for case in &cases {
        let params = sampling_params(case, 0);
        let prompt_len = prompts[usize_of(case, "prompt")].len();
        for (s, step) in case["steps"].as_array().unwrap().iter().enumerate() {
            let ours = our_step(&g, &params, prompt_len, step);
            for (r, theirs) in step["scores"].as_array().unwrap().iter().enumerate() {
                let theirs = row(theirs);
                let survivors = theirs.iter().filter(|x| x.is_finite()).count();
                kept_two += (survivors == 2) as usize;
                for (t, (a, b)) in ours[r].iter().zip(&theirs).enumerate() {
                    let what = format!("{}, step {s}, beam {r}, token {t}", case["knobs"]);
                    assert_eq!(a.is_finite(), b.is_finite(), "{what}: {a} vs {b}");
                    if a.is_finite() {
                        assert!((a - b).abs() <= 1e-5, "{what}: {a} vs {b}");
                    }
                }
            }
        }
    }
    assert!(
        kept_two > 0,
        "some filter must have been held to two tokens"
    );
}

/// The χ² statistic of `observed` counts against `probs` (summing to 1) over `n` draws, with
/// the categories expected fewer than 5 times pooled; and its degrees of freedom.
fn chi_squared(observed: &[u64], probs: &[f64], n: u64) -> (f64, usize) {
    let (mut stat, mut bins) = (0.0, 0);
    let (mut pooled_o, mut pooled_e) = (0.0, 0.0);
    for (&o, &p) in observed.iter().zip(probs) {
        let e = p * n as f64;
        if e >= 5.0 {
            stat += (o as f64 - e).powi(2) / e;
            bins += 1;
        } else {
            pooled_o += o as f64;
            pooled_e += e;
        }
    }
    if pooled_e >= 5.0 {
        stat += (pooled_o - pooled_e).powi(2) / pooled_e;
        bins += 1;
    } else {
        assert!(
            pooled_o <= 10.0,
            "{pooled_o} draws of categories expected {pooled_e}"
        );
    }
    (stat, bins - 1)
}

/// The χ² value a statistic exceeds with probability 1e-4 (Wilson–Hilferty).
fn chi_squared_critical(df: usize) -> f64 {
    let k = df as f64;
    let z = 3.719;
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

/// The random half of beam sampling, which cannot be aligned with torch's draws: at the second
/// recorded step (several beams running), the first candidate we draw follows softmax of the
/// accumulated scores transformers computes, and so does the second given the first
/// (successive sampling without replacement, what `torch.multinomial` does), by χ² tests over
/// 30,000 searches' streams.
#[test]
fn beam_sampling_draws_follow_transformers_scores() {
    let g = generator();
    let prompts = prompts();
    let cases = read("decoding.json")["beam_sampling"]
        .as_array()
        .unwrap()
        .clone();
    let draws: u64 = 30_000;
    let mut most_bins = 0;
    for case in &cases {
        let params = sampling_params(case, 0);
        let prompt_len = prompts[usize_of(case, "prompt")].len();
        let steps = case["steps"].as_array().unwrap();
        let (first, second) = (&steps[0], &steps[1]);
        // A beam's score after one step is its token's processed score: every beam started
        // as the prompt, and only beam 0 could expand.
        let accumulated = |rows: &[Vec<f32>], first_rows: &[Vec<f32>]| -> Vec<f32> {
            let contexts = second["input_ids"].as_array().unwrap();
            rows.iter()
                .zip(contexts)
                .flat_map(|(row, context)| {
                    let token = *ids(context).last().unwrap() as usize;
                    let score = first_rows[0][token];
                    row.iter().map(move |&x| x + score)
                })
                .collect()
        };
        let theirs_rows = |step: &Value| -> Vec<Vec<f32>> {
            step["scores"].as_array().unwrap().iter().map(row).collect()
        };
        let theirs = accumulated(&theirs_rows(second), &theirs_rows(first));
        let ours = accumulated(
            &our_step(&g, &params, prompt_len, second),
            &our_step(&g, &params, prompt_len, first),
        );
        // Expected: softmax of transformers' accumulated scores, then the second draw's law.
        let max = theirs.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let weights: Vec<f64> = theirs.iter().map(|&s| (s as f64 - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        let p: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let support: Vec<usize> = (0..p.len()).filter(|&i| p[i] > 0.0).collect();
        let mut p_second = vec![0.0; p.len()];
        if support.len() > 1 {
            for &i in &support {
                for &j in &support {
                    if i != j {
                        p_second[j] += p[i] * p[j] / (1.0 - p[i]);
                    }
                }
            }
        }
        let mut first_counts = vec![0u64; p.len()];
        let mut second_counts = vec![0u64; p.len()];
        for seed in 0..draws {
            let mut rng = sample_rng(seed, 0, 0);
            let picks = draw_without_replacement(&ours, 2, &mut rng);
            assert_ne!(picks[0], picks[1]);
            first_counts[picks[0]] += 1;
            second_counts[picks[1]] += 1;
        }
        for (name, counts, probs) in [
            ("first", &first_counts, &p),
            ("second", &second_counts, &p_second),
        ] {
            if support.len() < 2 && name == "second" {
                continue;
            }
            let (stat, df) = chi_squared(counts, probs, draws);
            if df == 0 {
                continue;
            }
            most_bins = most_bins.max(df);
            let critical = chi_squared_critical(df);
            assert!(
                stat < critical,
                "{}: {name} draw χ² = {stat:.1} on {df} df, critical {critical:.1}",
                case["knobs"]
            );
        }
    }
    assert!(
        most_bins >= 40,
        "the tests need wide distributions, not {most_bins} bins"
    );
}

/// A sampling search draws from its own stream (seed, prompt index), whatever shares its
/// batch: alone and among deterministic, group and other sampling searches it finds the same;
/// another seed or prompt index draws something else.
#[test]
fn beam_sampling_depends_only_on_seed_and_prompt() {
    let g = generator();
    let prompt = g.prepare(&prompts()[1], 12).unwrap();
    let sampled = |seed: u64| BeamParams {
        num_return_sequences: 2,
        processors: Processors {
            repetition_penalty: 1.2,
            min_p: 0.02,
            ..Processors::OFF
        },
        sampling: Some(BeamSampling {
            temperature: 1.2,
            top_k: 0,
            top_p: 0.95,
            seed,
        }),
        ..BeamParams::new(3)
    };
    let group = BeamParams {
        num_beam_groups: 2,
        diversity_penalty: 0.5,
        ..BeamParams::new(4)
    };
    let alone = g.beam_searches(&prompt, 5, &[sampled(1)], 12).unwrap();
    let together = g
        .beam_searches(
            &prompt,
            5,
            &[BeamParams::new(2), sampled(2), group, sampled(1)],
            12,
        )
        .unwrap();
    assert_eq!(alone[0], together[3]);
    assert_eq!(alone[0].len(), 2);
    let mut differ = 0;
    for seed in 2..6 {
        let other = g.beam_searches(&prompt, 5, &[sampled(seed)], 12).unwrap();
        differ += (other[0] != alone[0]) as usize;
    }
    let elsewhere = g.beam_searches(&prompt, 6, &[sampled(1)], 12).unwrap();
    differ += (elsewhere[0] != alone[0]) as usize;
    assert!(
        differ >= 4,
        "only {differ} of 5 other streams drew differently"
    );
}

/// What transformers refuses is refused before any search runs.
#[test]
fn settings_transformers_refuses_are_refused() {
    let sampling = BeamSampling {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        seed: 0,
    };
    let cases = [
        (
            BeamParams {
                num_beam_groups: 3,
                diversity_penalty: 1.0,
                ..BeamParams::new(4)
            },
            BeamParamsError::GroupsDoNotDivide {
                groups: 3,
                beams: 4,
            },
        ),
        (
            BeamParams {
                num_beam_groups: 2,
                ..BeamParams::new(4)
            },
            BeamParamsError::Diversity {
                groups: 2,
                penalty: 0.0,
            },
        ),
        (
            BeamParams {
                diversity_penalty: 0.5,
                ..BeamParams::new(4)
            },
            BeamParamsError::Diversity {
                groups: 1,
                penalty: 0.5,
            },
        ),
        (
            BeamParams {
                num_beam_groups: 2,
                diversity_penalty: 1.0,
                sampling: Some(sampling),
                ..BeamParams::new(4)
            },
            BeamParamsError::SampledGroups,
        ),
        (
            BeamParams {
                sampling: Some(BeamSampling {
                    temperature: 0.0,
                    ..sampling
                }),
                ..BeamParams::new(2)
            },
            BeamParamsError::Temperature(0.0),
        ),
    ];
    let g = generator();
    let prompt = g.prepare(&[1, 2, 3], 4).unwrap();
    for (params, error) in cases {
        assert_eq!(params.check(), Err(error.clone()));
        let refused = g.beam_search(&prompt, &params, 4).unwrap_err();
        assert_eq!(refused, error.into());
    }
}
