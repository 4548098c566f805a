//! Parity of the logits processors with transformers, checked against
//! `tests/fixtures/warpers.json` (recorded by the fixture script; no Python needed here). Each
//! case names one processor, or `pipeline` for every set knob in transformers' order, and the
//! scores transformers returned for the given logits and context.
//!
//! A row matches when the same tokens are removed (`-inf`, written `null`), every kept logit
//! agrees to 1e-6 (relative, or absolute below 1), and the softmax of both rows agrees to 1e-6.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};
use sweep::engine::processors;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    processor: String,
    params: Map<String, Value>,
    input_ids: Vec<Vec<u32>>,
    scores: Vec<Vec<Option<f32>>>,
    expected: Vec<Vec<Option<f32>>>,
}

fn load() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/warpers.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// `null` is `-inf`, the value transformers gives a removed token.
fn row(values: &[Option<f32>]) -> Vec<f32> {
    values
        .iter()
        .map(|v| v.unwrap_or(f32::NEG_INFINITY))
        .collect()
}

fn number(params: &Map<String, Value>, key: &str, case: &str) -> f64 {
    params
        .get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{case}: params has no number `{key}`"))
}

/// Every processor whose knob is set, in the order `_get_logits_processor` builds them:
/// repetition penalty → no-repeat n-gram → temperature → top-k → top-p → min-p → typical →
/// ε → η. Keys are `generate()`'s; an unknown one fails the case rather than being skipped.
fn pipeline(logits: &mut [f32], context: &[u32], params: &Map<String, Value>, case: &str) {
    const KNOWN: [&str; 11] = [
        "repetition_penalty",
        "no_repeat_ngram_size",
        "temperature",
        "top_k",
        "top_p",
        "min_p",
        "typical_p",
        "epsilon_cutoff",
        "eta_cutoff",
        "do_sample",
        "min_tokens_to_keep",
    ];
    for key in params.keys() {
        assert!(
            KNOWN.contains(&key.as_str()),
            "{case}: unknown knob `{key}`"
        );
    }
    if let Some(n) = params.get("min_tokens_to_keep") {
        assert_eq!(n.as_u64(), Some(1), "{case}: min_tokens_to_keep must be 1");
    }
    let set = |key: &str| {
        params
            .get(key)
            .filter(|v| !v.is_null())
            .map(|_| number(params, key, case))
    };
    // The pipeline generation runs, so its order is checked against transformers' own.
    let knobs = processors::Processors {
        repetition_penalty: set("repetition_penalty").unwrap_or(1.0),
        no_repeat_ngram_size: set("no_repeat_ngram_size").map_or(0, |n| n as usize),
        min_p: set("min_p").unwrap_or(0.0),
        typical_p: set("typical_p").unwrap_or(1.0),
        epsilon_cutoff: set("epsilon_cutoff").unwrap_or(0.0),
        eta_cutoff: set("eta_cutoff").unwrap_or(0.0),
        ..processors::Processors::OFF
    };
    processors::warp(
        logits,
        set("temperature").unwrap_or(1.0),
        set("top_k").map_or(0, |k| k as usize),
        set("top_p").unwrap_or(1.0),
        &knobs,
        context,
        context.len(),
    );
}

fn apply(case: &Case, logits: &mut [f32], context: &[u32]) {
    let p = &case.params;
    let name = case.name.as_str();
    match case.processor.as_str() {
        "repetition_penalty" => {
            processors::repetition_penalty(logits, context, number(p, "penalty", name) as f32)
        }
        "no_repeat_ngram" => {
            processors::no_repeat_ngram(logits, context, number(p, "ngram_size", name) as usize)
        }
        "temperature" => processors::divide(logits, number(p, "temperature", name)),
        "top_k" => processors::top_k(logits, number(p, "top_k", name) as usize),
        "top_p" => processors::top_p(logits, number(p, "top_p", name)),
        "min_p" => processors::min_p(logits, number(p, "min_p", name) as f32),
        "typical" => processors::typical(logits, number(p, "mass", name) as f32),
        "epsilon" => processors::epsilon(logits, number(p, "epsilon", name) as f32),
        "eta" => processors::eta(logits, number(p, "epsilon", name) as f32),
        "pipeline" => pipeline(logits, context, p, name),
        other => panic!("{name}: unknown processor `{other}`"),
    }
}

fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / total).collect()
}

/// What differs between `got` and `want`, one line each; empty when they match.
fn differences(got: &[f32], want: &[f32]) -> Vec<String> {
    if got.len() != want.len() {
        return vec![format!("{} logits, expected {}", got.len(), want.len())];
    }
    let mut out = Vec::new();
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let same = if w == f32::NEG_INFINITY || g == f32::NEG_INFINITY {
            g == w
        } else {
            // NaN fails here too.
            ((g as f64 - w as f64).abs()) <= 1e-6 * (w as f64).abs().max(1.0)
        };
        if !same {
            out.push(format!("token {i}: {g} (expected {w})"));
        }
    }
    if out.is_empty() {
        for (i, (g, w)) in softmax(got).iter().zip(softmax(want)).enumerate() {
            if (g - w).abs() > 1e-6 {
                out.push(format!("token {i}: probability {g} (expected {w})"));
            }
        }
    }
    out
}

#[test]
fn every_processor_matches_transformers() {
    let fixture = load();
    assert!(!fixture.cases.is_empty(), "warpers.json has no cases");
    let mut names = HashSet::new();
    let mut failures = Vec::new();
    for case in &fixture.cases {
        assert!(
            names.insert(&case.name),
            "case name `{}` is not unique",
            case.name
        );
        assert_eq!(
            case.scores.len(),
            case.expected.len(),
            "{}: rows",
            case.name
        );
        assert_eq!(
            case.scores.len(),
            case.input_ids.len(),
            "{}: rows",
            case.name
        );
        for (r, ((scores, expected), context)) in case
            .scores
            .iter()
            .zip(&case.expected)
            .zip(&case.input_ids)
            .enumerate()
        {
            let mut got = row(scores);
            apply(case, &mut got, context);
            for line in differences(&got, &row(expected)) {
                failures.push(format!("{} (row {r}): {line}", case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The comparison itself must catch a wrong removal and a wrong value, or the test above
/// proves nothing.
#[test]
fn the_comparison_catches_removals_and_values() {
    let want = [0.0, -1.0, f32::NEG_INFINITY];
    assert!(differences(&want, &want).is_empty());
    assert!(!differences(&[0.0, f32::NEG_INFINITY, f32::NEG_INFINITY], &want).is_empty());
    assert!(!differences(&[0.0, -1.0, -9.0], &want).is_empty());
    assert!(!differences(&[0.0, -1.001, f32::NEG_INFINITY], &want).is_empty());
    assert!(!differences(&[0.0, f32::NAN, f32::NEG_INFINITY], &want).is_empty());
}
