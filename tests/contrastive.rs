//! Contrastive search against transformers 4.55's `generate(penalty_alpha=α, top_k=k)`, from
//! fixtures that `tests/fixtures/make_contrastive_fixtures.py` recorded (no Python needed
//! here): token for token on the host kernels and through the backend's tensors, and
//! settings run together find what each finds alone.

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use serde_json::Value;
use sweep::engine::checkpoint;
use sweep::engine::contrastive::ContrastiveParams;
use sweep::engine::generate::{Continuation, GenerateError, Generator};
use sweep::engine::model::Gpt2;

mod recorded;
use recorded::{fixtures, ids, read};

fn recorded() -> Value {
    read("contrastive.json")
}

/// The device under test, as in `parity.rs`: the default backend, or `SWEEP_TEST_BACKEND` /
/// `SWEEP_TEST_DEVICE`.
fn device() -> burn::tensor::Device {
    let backend = std::env::var("SWEEP_TEST_BACKEND").ok();
    let device = std::env::var("SWEEP_TEST_DEVICE").ok();
    sweep::engine::backend::device(backend.as_deref(), device.as_deref())
        .unwrap()
        .1
}

fn load() -> Gpt2 {
    checkpoint::load(&fixtures().join("tiny-hf"), &device())
        .unwrap()
        .model
}

/// Decoding as it runs here, and through the backend's own tensors (what a GPU runs).
fn generators() -> [Generator; 2] {
    [Generator::new(load()), Generator::on_tensors(load())]
}

fn params(case: &Value) -> ContrastiveParams {
    ContrastiveParams {
        penalty_alpha: case["penalty_alpha"].as_f64().unwrap(),
        top_k: case["top_k"].as_u64().unwrap() as usize,
    }
}

fn check(found: &Continuation, case: &Value) {
    assert_eq!(found.tokens, ids(&case["tokens"]), "tokens, case {case}");
    let want = case["logprobs"].as_array().unwrap();
    for (got, want) in found.logprobs.iter().zip(want) {
        let want = want.as_f64().unwrap();
        assert!(
            (*got as f64 - want).abs() <= 1e-4,
            "log-prob {got} against {want}, case {case}"
        );
    }
    assert_eq!(found.ended_with_eos, found.tokens.last() == Some(&511));
}

#[test]
fn the_fixtures_cover_what_they_claim() {
    let rec = recorded();
    assert!(
        rec["generator"]["transformers"]
            .as_str()
            .unwrap()
            .starts_with("4.55")
    );
    let cases = rec["cases"].as_array().unwrap();
    assert!(cases.len() >= 90, "{} cases", cases.len());
    let penalised = |c: &&Value| params(c).penalty_alpha > 0.0 && params(c).top_k > 1;
    // Searches the penalty steers, some ending on end-of-text and some running the full length.
    assert!(
        cases
            .iter()
            .filter(penalised)
            .any(|c| ids(&c["tokens"]).last() == Some(&511))
    );
    assert!(
        cases
            .iter()
            .filter(penalised)
            .any(|c| ids(&c["tokens"]).len() == 24)
    );
    for c in cases {
        assert!(c["min_score_gap"].as_f64().unwrap() > 1e-4);
    }
}

/// Each case alone, as transformers ran it.
#[test]
fn contrastive_search_matches_transformers_token_for_token() {
    let rec = recorded();
    let prompts: Vec<Vec<u32>> = rec["prompts"].as_array().unwrap().iter().map(ids).collect();
    for g in generators() {
        for case in rec["cases"].as_array().unwrap() {
            let prompt = &prompts[case["prompt"].as_u64().unwrap() as usize];
            let max_new = case["max_new_tokens"].as_u64().unwrap() as usize;
            let prepared = g.prepare(prompt, max_new).unwrap();
            let found = g
                .contrastive_search(&prepared, params(case), max_new)
                .unwrap();
            check(&found, case);
        }
    }
}

/// Every setting of a prompt in one batch (searches leave it as they end, at different
/// steps) finds, to the bit, what it finds alone, and what transformers found.
#[test]
fn contrastive_searches_together_find_what_each_finds_alone() {
    let rec = recorded();
    let prompts: Vec<Vec<u32>> = rec["prompts"].as_array().unwrap().iter().map(ids).collect();
    let cases = rec["cases"].as_array().unwrap();
    let settings: Vec<ContrastiveParams> = [0.0, 0.4, 0.6, 1.0]
        .into_iter()
        .flat_map(|penalty_alpha| {
            [1, 4, 8].map(|top_k| ContrastiveParams {
                penalty_alpha,
                top_k,
            })
        })
        .collect();
    for g in generators() {
        for (p, prompt) in prompts.iter().enumerate() {
            let prepared = g.prepare(prompt, 24).unwrap();
            let together = g.contrastive_searches(&prepared, &settings, 24).unwrap();
            assert_eq!(together.len(), settings.len());
            for (s, found) in settings.iter().zip(&together) {
                let alone = g.contrastive_search(&prepared, *s, 24).unwrap();
                assert_eq!(&alone, found, "prompt {p}, {s:?}");
                let case = cases
                    .iter()
                    .find(|c| c["prompt"].as_u64() == Some(p as u64) && params(c) == *s);
                if let Some(case) = case {
                    check(found, case);
                }
            }
        }
        let prepared = g.prepare(&prompts[0], 24).unwrap();
        assert!(
            g.contrastive_searches(&prepared, &[], 24)
                .unwrap()
                .is_empty()
        );
        let none = g.contrastive_searches(&prepared, &settings, 0).unwrap();
        assert!(
            none.iter()
                .all(|c| c.tokens.is_empty() && !c.ended_with_eos)
        );
    }
}

/// A top-k beyond the vocabulary takes every token as a candidate, as one of exactly the
/// vocabulary's size does.
#[test]
fn a_top_k_beyond_the_vocabulary_is_the_vocabulary() {
    let g = Generator::new(load());
    let prepared = g.prepare(&[3, 1, 4], 6).unwrap();
    let at = |top_k| ContrastiveParams {
        penalty_alpha: 0.6,
        top_k,
    };
    let found = g
        .contrastive_searches(&prepared, &[at(512), at(5000)], 6)
        .unwrap();
    assert_eq!(found[0], found[1]);
}

/// A NaN that reaches the logits stops the searches with the step and the search it was
/// found in: from the prompt's position at step 0; from the first generated position (a
/// poisoned position embedding, which only the candidates read) at step 1.
#[test]
fn non_finite_logits_stop_the_search() {
    let prompt = [7u32, 8, 9];
    let settings = [
        ContrastiveParams {
            penalty_alpha: 0.5,
            top_k: 3,
        },
        ContrastiveParams {
            penalty_alpha: 0.0,
            top_k: 4,
        },
    ];
    for (position, step) in [(2, 0), (3, 1)] {
        let poisoned = || {
            let mut model = load();
            let wpe = model.wpe.val();
            let dims = wpe.dims();
            let mut values: Vec<f32> = wpe.clone().into_data().try_into_vec().unwrap();
            values[position * dims[1]] = f32::NAN;
            model.wpe = Param::from_tensor(Tensor::from_data(
                TensorData::new(values, dims),
                &wpe.device(),
            ));
            model
        };
        for g in [
            Generator::new(poisoned()),
            Generator::on_tensors(poisoned()),
        ] {
            let prepared = g.prepare(&prompt, 5).unwrap();
            match g.contrastive_searches(&prepared, &settings, 5) {
                Err(GenerateError::NonFinite {
                    row: 0,
                    step: s,
                    value,
                }) => {
                    assert_eq!(s, step);
                    assert!(value.is_nan());
                }
                other => panic!("position {position}: {other:?}"),
            }
        }
    }
}
