//! The decoding path a GPU runs (the backend's tensors, read back as shortlists), on the
//! device under test: the default backend, or `SWEEP_TEST_BACKEND` / `SWEEP_TEST_DEVICE`
//! (`tch` and `cuda` on a GPU). Rows must not depend on the batch around them there either,
//! and with libtorch the operations a decoding step dispatches are counted and pinned.

use sweep::engine::generate::{Continuation, Generator, SampleRow};
use sweep::engine::model::{Gpt2, Gpt2Config};
use sweep::engine::sampling::{Processors, SamplingParams, sample_rng};

fn device() -> burn::tensor::Device {
    let backend = std::env::var("SWEEP_TEST_BACKEND").ok();
    let device = std::env::var("SWEEP_TEST_DEVICE").ok();
    sweep::engine::backend::device(backend.as_deref(), device.as_deref())
        .unwrap()
        .1
}

/// A random GPT-2 with the real vocabulary, so that the head and the shortlists have
/// GPT-2's width.
fn model(n_layer: usize) -> Gpt2 {
    let device = device();
    device.seed(7);
    Gpt2::init(&Gpt2Config::with_shape(n_layer, 4, 64), &device)
}

/// Rows of several settings, sampled and greedy, with and without truncation; a row's seed
/// is its index, so a row alone and the same row in a batch draw from the same stream.
fn rows(indices: impl Iterator<Item = usize>) -> Vec<SampleRow> {
    let settings = [
        (1.0, 0, 1.0),
        (0.8, 50, 0.9),
        (0.0, 0, 1.0),
        (1.3, 5, 1.0),
        (1.0, 0, 0.8),
    ];
    indices
        .map(|i| {
            let (temperature, top_k, top_p) = settings[i % settings.len()];
            SampleRow {
                params: SamplingParams {
                    temperature,
                    top_k,
                    top_p,
                    processors: Processors::OFF,
                },
                rng: sample_rng(3, 0, i as u32),
            }
        })
        .collect()
}

/// Every row of a batch of 24, and of batches of 7 and 3 beside it, draws the tokens and the
/// log-probabilities it draws alone, to the bit.
#[test]
fn a_row_draws_the_same_whatever_the_batch_around_it() {
    let g = Generator::on_tensors(model(2));
    let prompt = g.prepare(&[464, 2068, 7586, 21831], 16).unwrap();
    let run = |indices: std::ops::Range<usize>| -> Vec<Continuation> {
        g.sample_full_length(&prompt, rows(indices), 16).unwrap()
    };
    let all = run(0..24);
    let alone: Vec<Continuation> = (0..24).flat_map(|i| run(i..i + 1)).collect();
    let sevens: Vec<Continuation> = (0..24)
        .step_by(7)
        .flat_map(|i| run(i..(i + 7).min(24)))
        .collect();
    let threes: Vec<Continuation> = (0..24).step_by(3).flat_map(|i| run(i..i + 3)).collect();
    for (name, other) in [
        ("alone", &alone),
        ("in sevens", &sevens),
        ("in threes", &threes),
    ] {
        for (i, (a, b)) in all.iter().zip(other.iter()).enumerate() {
            assert_eq!(a.tokens, b.tokens, "row {i}: batch of 24 vs {name}");
            let (a, b): (Vec<u32>, Vec<u32>) = (
                a.logprobs.iter().map(|x| x.to_bits()).collect(),
                b.logprobs.iter().map(|x| x.to_bits()).collect(),
            );
            assert_eq!(a, b, "row {i}: log-probabilities, batch of 24 vs {name}");
        }
    }
    // Sampled rows differ from each other: the rows are not all one greedy path.
    assert_ne!(all[0].tokens, all[5].tokens);
}

/// libtorch operations one decoding step of `rows` rows dispatches, as the difference between
/// runs of 6 and 5 new tokens.
#[cfg(feature = "tch")]
fn ops_per_step(n_layer: usize, rows: usize, top_k: usize) -> u64 {
    use sweep::engine::libtorch::ops_dispatched;
    let g = Generator::on_tensors(model(n_layer));
    let prompt = g.prepare(&[464, 2068, 7586], 8).unwrap();
    let row = |i| SampleRow {
        params: SamplingParams {
            temperature: 0.8,
            top_k,
            top_p: 0.9,
            processors: Processors::OFF,
        },
        rng: sample_rng(1, 0, i as u32),
    };
    let ops = |new| {
        let before = ops_dispatched();
        g.sample_full_length(&prompt, (0..rows).map(row).collect(), new)
            .unwrap();
        ops_dispatched() - before
    };
    ops(6) - ops(5)
}

/// A decoding step's operations, pinned. Per block, 76: two layer norms; four linear layers
/// of five (two reshapes, the product, the bias, a reshape); splitting Q, K and V into heads
/// (nine slices, three reshapes and transposes); writing K and V in place (a view, four
/// narrows and a copy each); reading back the positions held (eight slices); one fused
/// attention; merging heads (a transpose and two reshapes); two residual adds; GELU's six
/// element-wise operations. Per step outside the blocks, 37: the embeddings, the last layer
/// norm, the head, and the shortlist with its read-back. Most of them are views, which launch
/// nothing on a GPU. A change that adds operations to every step shows here, and so does one
/// that makes the count depend on the number of rows.
#[cfg(feature = "tch")]
#[test]
fn a_decoding_step_dispatches_a_fixed_number_of_operations() {
    if !std::env::var("SWEEP_TEST_BACKEND").is_ok_and(|b| b == "tch") {
        return;
    }
    let (one, two) = (ops_per_step(1, 8, 50), ops_per_step(2, 8, 50));
    let per_block = two - one;
    let per_step = one - per_block;
    println!("per block {per_block}, per step outside the blocks {per_step}");
    assert_eq!(
        ops_per_step(2, 64, 50),
        two,
        "the count depends on the rows"
    );
    assert_eq!((per_block, per_step), (76, 37));
}
