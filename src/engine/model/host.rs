//! The model as it decodes on the CPU: a copy of the burn module's weights packed for the
//! host kernels, kept apart because it shares no code with the tensor path, only its results.

use burn::nn::{LayerNorm, Linear};

use super::cache::KvCache;
use super::config::Activation;
use super::tensor::{Gpt2, host_rows};
use crate::engine::kernels::attention::{self, LayerCache};
use crate::engine::kernels::matmul::PackedLinear;

/// [`gelu_new`] on host values, in the same form: x sigmoid(2z) = x / (1 + exp(-2z)), with
/// the exponentials taken a slice at a time by [`crate::engine::kernels::exponential`].
///
/// [`gelu_new`]: super::gelu_new
pub fn gelu_new_in_place(values: &mut [f32]) {
    let two_c = (2.0 * (2.0 / std::f64::consts::PI).sqrt()) as f32;
    let cubic = 0.044715 * two_c;
    through_slices(
        values,
        |x| -(x * (x * x * cubic + two_c)),
        crate::engine::kernels::exponential::exp_in_place,
        |x, e| x / (1.0 + e),
    );
}

/// The exact GELU, x (1 + erf(x / sqrt 2)) / 2 as burn's `gelu` and PyTorch's `nn.GELU()`
/// write it, on host values, with the error functions taken a slice at a time by
/// [`crate::engine::kernels::erf`] (within 2e-7 of erf, so within ~1e-7 |x| of the exact GELU).
pub fn gelu_in_place(values: &mut [f32]) {
    let sqrt_half = std::f32::consts::FRAC_1_SQRT_2;
    through_slices(
        values,
        |x| x * sqrt_half,
        crate::engine::kernels::erf::erf_in_place,
        |x, e| 0.5 * x * (1.0 + e),
    );
}

/// `x ← after(x, kernel(before(x)))` for every value, with `kernel` run on slices of 512
/// values (the vector kernels' unit) and the slices spread over rayon's pool: the shape both
/// GELUs share.
fn through_slices(
    values: &mut [f32],
    before: impl Fn(f32) -> f32 + Sync,
    kernel: fn(&mut [f32]),
    after: impl Fn(f32, f32) -> f32 + Sync,
) {
    use rayon::prelude::*;
    const SLICE: usize = 512;
    values.par_chunks_mut(1 << 14).for_each(|chunk| {
        let mut e = [0.0f32; SLICE];
        for xs in chunk.chunks_mut(SLICE) {
            let e = &mut e[..xs.len()];
            for (e, &x) in e.iter_mut().zip(xs.iter()) {
                *e = before(x);
            }
            kernel(e);
            for (x, e) in xs.iter_mut().zip(e.iter()) {
                *x = after(*x, *e);
            }
        }
    });
}

/// The model for decoding on the CPU: every projection and the head packed for the host
/// kernels of [`crate::engine::kernels::matmul`], attention over a host cache
/// ([`crate::engine::kernels::attention`]), and the layer norms, GELU and residual adds
/// between them on plain rows. It computes what the tensor path computes, but a decoding step
/// then builds no tensor at all: for the few rows of a step, the small ops between the
/// products cost more as backend calls than as loops, and a loop over one row at a time
/// cannot depend on the batch.
pub struct HostModel {
    /// Position embedding `[n_positions, n_embd]`.
    wpe: Vec<f32>,
    blocks: Vec<HostBlock>,
    ln_f: HostLayerNorm,
    /// The tied LM head; its columns are also the token embeddings.
    pub(super) lm_head: PackedLinear,
    n_head: usize,
    activation: Activation,
}

struct HostBlock {
    ln_1: HostLayerNorm,
    c_attn: PackedLinear,
    attn_proj: PackedLinear,
    ln_2: HostLayerNorm,
    c_fc: PackedLinear,
    mlp_proj: PackedLinear,
}

impl HostModel {
    pub(super) fn new(model: &Gpt2) -> Self {
        let pack = |layer: &Linear| {
            let [d_in, d_out] = layer.weight.val().dims();
            PackedLinear::from_in_out(
                &host_rows(layer.weight.val()),
                d_in,
                d_out,
                layer.bias.as_ref().map(|b| host_rows(b.val())),
            )
        };
        let norm = |ln: &LayerNorm| HostLayerNorm {
            gamma: host_rows(ln.gamma.val()),
            beta: ln.beta.as_ref().map(|b| host_rows(b.val())),
            epsilon: model.config.layer_norm_epsilon,
        };
        let [vocab, c] = model.wte.val().dims();
        Self {
            wpe: host_rows(model.wpe.val()),
            blocks: model
                .h
                .iter()
                .map(|b| HostBlock {
                    ln_1: norm(&b.ln_1),
                    c_attn: pack(&b.attn.c_attn),
                    attn_proj: pack(&b.attn.c_proj),
                    ln_2: norm(&b.ln_2),
                    c_fc: pack(&b.mlp.c_fc),
                    mlp_proj: pack(&b.mlp.c_proj),
                })
                .collect(),
            ln_f: norm(&model.ln_f),
            lm_head: PackedLinear::from_out_in(&host_rows(model.wte.val()), vocab, c, None),
            n_head: model.config.n_head,
            activation: model.config.activation,
        }
    }

    /// [`Gpt2::forward_hidden`] on the host: `tokens` `[batch, new]` after the positions held
    /// in `cache`, appending theirs; returns the final hidden states `[batch, new, n_embd]`.
    pub(super) fn forward(&self, tokens: &[i64], batch: usize, cache: &mut KvCache) -> Vec<f32> {
        let c = self.lm_head.d_in();
        let rows = tokens.len();
        let new = rows / batch.max(1);
        let past = cache.len();
        let layers = cache.host_layers(|capacity| {
            let room = capacity.max(past + new);
            (0..self.blocks.len())
                .map(|_| LayerCache::new(batch, self.n_head, c / self.n_head, room))
                .collect()
        });
        let mut x = vec![0.0f32; rows * c];
        for (r, (x, &token)) in x.chunks_exact_mut(c).zip(tokens).enumerate() {
            let position = past + r % new;
            self.lm_head.column_into(token as usize, x);
            for (x, p) in x
                .iter_mut()
                .zip(&self.wpe[position * c..(position + 1) * c])
            {
                *x += p;
            }
        }
        // Buffers reused by every layer.
        let mut normed = vec![0.0f32; rows * c];
        let mut qkv = vec![0.0f32; rows * 3 * c];
        let mut projected = vec![0.0f32; rows * c];
        let mut hidden = vec![0.0f32; rows * 4 * c];
        for (block, layer) in self.blocks.iter().zip(layers) {
            block.ln_1.forward_into(&x, &mut normed);
            block.c_attn.forward_into(&normed, rows, &mut qkv);
            let heads = attention::attend(&qkv, new, past, layer);
            block.attn_proj.forward_into(&heads, rows, &mut projected);
            add_in_place(&mut x, &projected);
            block.ln_2.forward_into(&x, &mut normed);
            block.c_fc.forward_into(&normed, rows, &mut hidden);
            match self.activation {
                Activation::GeluTanh => gelu_new_in_place(&mut hidden),
                Activation::Gelu => gelu_in_place(&mut hidden),
            }
            block.mlp_proj.forward_into(&hidden, rows, &mut projected);
            add_in_place(&mut x, &projected);
        }
        cache.advance(new);
        self.ln_f.forward_into(&x, &mut normed);
        normed
    }

    /// The logits `[batch * vocab]` of the last of the `new` positions of each row of
    /// `hidden` (`[batch, new, n_embd]`, from [`HostModel::forward`]) into `out`, reusing its
    /// memory: the head runs on those rows only.
    pub(super) fn last_logits_into(
        &self,
        hidden: &[f32],
        batch: usize,
        new: usize,
        out: &mut Vec<f32>,
    ) {
        let c = self.lm_head.d_in();
        // In a decoding step (one new position) the hidden rows already are the last ones.
        let gathered: Vec<f32>;
        let last = if new == 1 {
            hidden
        } else {
            gathered = hidden
                .chunks_exact(new * c)
                .flat_map(|row| &row[(new - 1) * c..])
                .copied()
                .collect();
            &gathered
        };
        out.resize(batch * self.lm_head.d_out(), 0.0);
        self.lm_head.forward_into(last, batch, out);
    }
}

/// burn's `LayerNorm` on host rows. Mean and variance are summed in f64, so their rounding
/// does not depend on how a backend splits the sums.
struct HostLayerNorm {
    gamma: Vec<f32>,
    beta: Option<Vec<f32>>,
    epsilon: f64,
}

impl HostLayerNorm {
    /// Normalise each row of `x` (`[rows, n]`, n = the norm's width) into `out`.
    fn forward_into(&self, x: &[f32], out: &mut [f32]) {
        use rayon::prelude::*;
        let n = self.gamma.len();
        assert_eq!(
            x.len(),
            out.len(),
            "layer norm input and output differ in size"
        );
        out.par_chunks_mut(n)
            .zip(x.par_chunks(n))
            .with_min_len(16)
            .for_each(|(out, x)| {
                let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
                let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
                let inv_std = 1.0 / (var + self.epsilon).sqrt();
                for (k, (o, &v)) in out.iter_mut().zip(x).enumerate() {
                    let scaled = ((v as f64 - mean) * inv_std) as f32 * self.gamma[k];
                    *o = match &self.beta {
                        Some(beta) => scaled + beta[k],
                        None => scaled,
                    };
                }
            });
    }
}

/// `x += y`, elementwise: the residual connection.
fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (x, y) in x.iter_mut().zip(y) {
        *x += y;
    }
}

/// Printing a model should not print its weights twice over.
impl std::fmt::Debug for HostModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostModel({} blocks)", self.blocks.len())
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::tensor::{Device, Int, Tensor, TensorData};

    use super::super::{Gpt2Config, gelu_new};
    use super::*;
    use crate::engine::kernels::erf::erf;
    use crate::engine::tokenizer::END_OF_TEXT_ID;

    #[test]
    fn gelu_new_matches_the_tanh_form() {
        let device = Device::default();
        let xs: Vec<f32> = (-80..=80).map(|i| i as f32 / 8.0).collect();
        let x = Tensor::<1>::from_floats(xs.as_slice(), &device).reshape([1, 1, xs.len()]);
        let got: Vec<f32> = gelu_new(x.clone()).into_data().try_to_vec::<f32>().unwrap();
        let want: Vec<f32> = burn::tensor::activation::gelu_approximate(x)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let mut host = xs.clone();
        gelu_new_in_place(&mut host);
        for (((g, h), w), x) in got.iter().zip(&host).zip(&want).zip(&xs) {
            assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "x={x}: {g} vs {w}");
            assert!((h - w).abs() <= 1e-5 * (1.0 + w.abs()), "x={x}: {h} vs {w}");
        }
    }

    /// The exact GELU of the host path against burn's, from -10 to 10 (with 0, ±tiny and the
    /// points where the error function changes formula), and beyond.
    #[test]
    fn gelu_matches_burns_exact_gelu() {
        let device = Device::default();
        let mut xs: Vec<f32> = (-1000..=1000).map(|i| i as f32 / 100.0).collect();
        xs.extend([0.0, -0.0, 1e-30, -1e-30, 1e-7, -1e-7, 1e-3, -1e-3]);
        xs.extend([std::f32::consts::SQRT_2, -std::f32::consts::SQRT_2]);
        xs.extend([30.0, -30.0, 1e4, -1e4]);
        let x = Tensor::<1>::from_floats(xs.as_slice(), &device);
        let want: Vec<f32> = burn::tensor::activation::gelu(x)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let mut host = xs.clone();
        gelu_in_place(&mut host);
        for ((h, w), x) in host.iter().zip(&want).zip(&xs) {
            assert!((h - w).abs() <= 1e-6 * (1.0 + w.abs()), "x={x}: {h} vs {w}");
            // And to the bit what the scalar error function gives.
            let exact = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            assert_eq!(h.to_bits(), exact.to_bits(), "x={x}");
        }
        assert_eq!(host[1000], 0.0);
        // gelu(-10) = -7.6e-23, where erf is -1 in f32.
        assert!(
            host[0] <= 0.0 && host[0] > -1e-20,
            "gelu(-10) = {}",
            host[0]
        );
    }

    /// The host path (packed weights, host cache and norms) against the tensor path on the
    /// same weights, through a prompt and two decoding steps of two rows, with either GELU.
    /// The layer norms are given random scales and shifts, which a fresh model (ones and
    /// zeros) would not test.
    #[test]
    fn the_host_path_computes_what_the_tensor_path_computes() {
        for activation in [Activation::GeluTanh, Activation::Gelu] {
            host_and_tensor_paths_agree(activation);
        }
    }

    fn host_and_tensor_paths_agree(activation: Activation) {
        use burn::tensor::Distribution;
        let device = Device::default();
        if !crate::engine::backend::is_host(&device) {
            return;
        }
        device.seed(11);
        let config = Gpt2Config {
            activation,
            ..Gpt2Config::with_shape(2, 4, 64)
        };
        let mut model = Gpt2::init(&config, &device);
        let random =
            |n| Param::from_tensor(Tensor::random([n], Distribution::Normal(1.0, 0.3), &device));
        for ln in model
            .h
            .iter_mut()
            .flat_map(|b| [&mut b.ln_1, &mut b.ln_2])
            .chain([&mut model.ln_f])
        {
            ln.gamma = random(64);
            ln.beta = Some(random(64));
        }
        let host = model.clone().for_inference();
        assert!(host.host.is_some() && model.host.is_none());
        let tokens = |ids: Vec<i64>, rows: usize| {
            let len = ids.len() / rows;
            Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, len]), &device)
        };
        let close = |a: Tensor<3>, b: Tensor<3>| {
            let (a, b) = (host_rows(a), host_rows(b));
            assert_eq!(a.len(), b.len());
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(worst < 1e-4, "host and tensor paths differ by {worst}");
        };
        let prompt = vec![464, 2068, 7586, 21831, i64::from(END_OF_TEXT_ID)];
        let (mut tensor_cache, mut host_cache) =
            (KvCache::with_capacity(6), KvCache::with_capacity(6));
        close(
            model.forward_hidden(tokens(prompt.clone(), 1), &mut tensor_cache),
            host.forward_hidden(tokens(prompt, 1), &mut host_cache),
        );
        let (mut tensor_cache, mut host_cache) = (tensor_cache.repeat(2), host_cache.repeat(2));
        for step in [vec![11, 13], vec![50, 7]] {
            close(
                model.forward_hidden(tokens(step.clone(), 2), &mut tensor_cache),
                host.forward_hidden(tokens(step, 2), &mut host_cache),
            );
        }
        assert_eq!(host_cache.len(), 7);
        let mut logits = Vec::new();
        host.forward_last_into(tokens(vec![3, 4], 2), &mut host_cache, &mut logits);
        let want = model.head(model.forward_hidden(tokens(vec![3, 4], 2), &mut tensor_cache));
        let want = host_rows(want);
        let worst = logits
            .iter()
            .zip(&want)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(
            logits.len() == want.len() && worst < 1e-4,
            "logits differ by {worst}"
        );
    }

    /// The hidden states handed back beside the logits are, to the bit, those of
    /// `forward_hidden`, and the logits those of `forward_last_into`, on either path; and the
    /// two paths agree, for a prompt and for a step of two rows.
    #[test]
    fn hidden_states_come_back_beside_the_last_logits() {
        let device = Device::default();
        if !crate::engine::backend::is_host(&device) {
            return;
        }
        device.seed(5);
        let model = Gpt2::init(&Gpt2Config::with_shape(2, 4, 64), &device);
        let tokens = |ids: Vec<i64>, rows: usize| {
            let len = ids.len() / rows;
            Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, len]), &device)
        };
        let mut seen = Vec::new();
        for m in [
            model.clone().for_inference(),
            model.clone().for_tensor_inference(),
        ] {
            let mut caches: [KvCache; 3] = std::array::from_fn(|_| KvCache::with_capacity(8));
            let mut got = Vec::new();
            for (i, (input, rows)) in [(vec![5, 9, 2, 7], 1), (vec![11, 3], 2)]
                .into_iter()
                .enumerate()
            {
                if i == 1 {
                    caches = caches.map(|c| c.repeat(2));
                }
                let (mut hidden, mut logits) = (Vec::new(), Vec::new());
                let [with, plain, last] = &mut caches;
                m.forward_with_hidden_into(
                    tokens(input.clone(), rows),
                    with,
                    &mut hidden,
                    &mut logits,
                );
                let want = host_rows(m.forward_hidden(tokens(input.clone(), rows), plain));
                let mut want_logits = Vec::new();
                m.forward_last_into(tokens(input, rows), last, &mut want_logits);
                assert_eq!(hidden, want);
                assert_eq!(logits, want_logits);
                got.push((hidden, logits));
            }
            seen.push(got);
        }
        for ((h1, l1), (h2, l2)) in seen[0].iter().zip(&seen[1]) {
            for (a, b) in h1.iter().zip(h2).chain(l1.iter().zip(l2)) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
    }

    /// A row is normalised to the same bits alone or among others (the rows of a block are
    /// split over threads), and that is the plain two-pass norm in f64.
    #[test]
    fn host_layer_norm_of_a_row_does_not_depend_on_its_neighbours() {
        let n = 37;
        let wave = |i: usize, f: f32| ((i as f32) * f).sin() * 3.0 + 0.5;
        let norm = HostLayerNorm {
            gamma: (0..n).map(|i| wave(i, 0.7)).collect(),
            beta: Some((0..n).map(|i| wave(i, 1.3)).collect()),
            epsilon: 1e-5,
        };
        let rows = 11;
        let x: Vec<f32> = (0..rows * n)
            .map(|i| wave(i, 0.37) * (1 + i % 5) as f32)
            .collect();
        let mut all = vec![0.0; rows * n];
        norm.forward_into(&x, &mut all);
        for r in 0..rows {
            let row = &x[r * n..(r + 1) * n];
            let mut alone = vec![0.0; n];
            norm.forward_into(row, &mut alone);
            assert_eq!(alone[..], all[r * n..(r + 1) * n], "row {r}");
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            for k in 0..n {
                let want = ((row[k] as f64 - mean) / (var + 1e-5).sqrt()) as f32 * norm.gamma[k]
                    + norm.beta.as_ref().unwrap()[k];
                assert!(
                    (alone[k] - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "row {r}, {k}"
                );
            }
        }
    }
}
