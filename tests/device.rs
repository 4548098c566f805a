//! The decoding path a GPU runs (the backend's tensors, read back as shortlists), on the
//! device under test: the default backend, or `SWEEP_TEST_BACKEND` / `SWEEP_TEST_DEVICE`
//! (`tch` and `cuda` on a GPU). Rows must not depend on the batch around them there either,
//! and with libtorch the operations a decoding step dispatches are counted and pinned.

use sweep::engine::generate::{Continuation, Generator, SampleRow};
#[cfg(feature = "tch")]
use sweep::engine::libtorch::Dispatched;
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

/// libtorch operations of one decoding step of `rows` rows, each reading back a shortlist of
/// `top_k` + 1: uploading the step's tokens, the forward pass and the read-back.
#[cfg(feature = "tch")]
fn ops_per_step(n_layer: usize, rows: usize, top_k: usize) -> Dispatched {
    use burn::tensor::{Int, Tensor, TensorData};
    use sweep::engine::libtorch::{OpCounting, dispatched};
    use sweep::engine::model::KvCache;
    use sweep::engine::shortlist::DeviceReadback;
    let model = model(n_layer).for_tensor_inference();
    let device = model.device();
    let tokens = |ids: Vec<i64>, shape: [usize; 2]| {
        Tensor::<2, Int>::from_data(TensorData::new(ids, shape), &device)
    };
    let mut cache = KvCache::with_capacity(16);
    model.forward_last(tokens(vec![464, 2068, 7586], [1, 3]), &mut cache);
    let mut cache = cache.repeat(rows);
    // A first step, so that the one counted is like every later one.
    model.forward_last(tokens(vec![11; rows], [rows, 1]), &mut cache);
    let _counting = OpCounting::start();
    let before = dispatched();
    let logits = model.forward_last(tokens(vec![13; rows], [rows, 1]), &mut cache);
    DeviceReadback::read(logits, &vec![Some(top_k); rows]);
    dispatched() - before
}

/// A decoding step's operations, pinned: on a GPU each costs host time to issue, views
/// included, and a step of a small batch is bound by that time. Per block, 49, 21 of them
/// computing: two layer norms; four linear layers (a product and a bias row added); keys and
/// values each copied into the cache in place (through a view and four narrows); one fused
/// attention; two residual adds; GELU's six element-wise operations. The other views:
/// queries, keys and values cut from the fused product (two slices and a reshape each), the
/// positions held read back (four each for keys and values), the heads merged. Outside the
/// blocks, 24, 16 of them computing: the step's tokens uploaded, the embeddings, the last
/// layer norm, the head, and the shortlist with its two copies back. A change that adds
/// operations to every step shows here, and so does one that makes the count depend on the
/// number of rows.
#[cfg(feature = "tch")]
#[test]
fn a_decoding_step_dispatches_a_fixed_number_of_operations() {
    if !std::env::var("SWEEP_TEST_BACKEND").is_ok_and(|b| b == "tch") {
        return;
    }
    let (one, two) = (ops_per_step(1, 8, 50), ops_per_step(2, 8, 50));
    let per_block = two - one;
    let outside = one - per_block;
    println!("per block {per_block:?}, outside the blocks {outside:?}");
    assert_eq!(
        ops_per_step(2, 64, 50),
        two,
        "the count depends on the rows"
    );
    assert_eq!(per_block, Dispatched { ops: 49, views: 28 });
    assert_eq!(outside, Dispatched { ops: 24, views: 8 });
}
