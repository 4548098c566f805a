//! The burn module: the model as it trains, loads and runs on any backend, and the forward
//! passes that decoding drives; on the CPU it hands them to its `HostModel`.

use std::sync::Arc;

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, sigmoid, softmax};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, DType, Device, FloatDType, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::cache::{KvCache, append};
use super::config::{Activation, Gpt2Config};
use super::host::HostModel;

#[derive(Module, Debug)]
pub struct Attention {
    /// Query, key and value projections in one matrix, `[n_embd, 3 * n_embd]`.
    pub c_attn: Linear,
    pub c_proj: Linear,
    pub n_head: usize,
}

impl Attention {
    /// `x` holds the new positions as rows `[batch * new, n_embd]`, `new` for each batch row in
    /// turn; `past` the cached ones, which the new positions all see. Within the new positions
    /// attention is causal. On a device every tensor operation costs host time to issue,
    /// views included, so a decoding step (`new` = 1) takes the fewest: its rows are already
    /// `[batch, heads, 1, head_dim]` in memory.
    fn forward(
        &self,
        x: Tensor<2>,
        cache: Option<(Tensor<4>, Tensor<4>)>,
        pass: Pass,
        bias_rows: Option<&BiasRows>,
    ) -> (Tensor<2>, (Tensor<4>, Tensor<4>)) {
        let bias = |i: usize| bias_rows.and_then(|b| b[i].as_ref());
        let Pass {
            batch,
            past,
            reserve,
            ..
        } = pass;
        let [rows, n_embd] = x.dims();
        let (new, n_head) = (rows / batch, self.n_head);
        let head_dim = n_embd / n_head;
        let qkv = linear(&self.c_attn, x, bias(0));
        // Query, key or value `i` as `[batch, n_head, new, head_dim]`.
        let part = |i: usize| {
            let t = qkv.clone().slice([0..rows, i * n_embd..(i + 1) * n_embd]);
            if new == 1 {
                t.reshape([batch, n_head, 1, head_dim])
            } else {
                t.reshape([batch, new, n_head, head_dim]).swap_dims(1, 2)
            }
        };
        let (cache_k, cache_v) = match cache {
            Some((ck, cv)) => (Some(ck), Some(cv)),
            None => (None, None),
        };
        let cache_k = append(cache_k, part(1), past, reserve);
        let cache_v = append(cache_v, part(2), past, reserve);
        let q = part(0);
        let total = past + new;
        let held = |cache: &Tensor<4>| {
            if cache.dims()[2] == total {
                cache.clone()
            } else {
                cache.clone().slice([0..batch, 0..n_head, 0..total])
            }
        };
        let (k, v) = (held(&cache_k), held(&cache_v));
        let y = if past == 0 || new == 1 {
            // One fused kernel where the backend has one (libtorch's
            // `scaled_dot_product_attention`). A lone new position sees every key; new
            // positions on an empty cache form the square causal case, where the backends'
            // causal alignments agree (libtorch's is top-left, burn's bottom-right).
            let options = AttentionModuleOptions {
                is_causal: new > 1,
                ..Default::default()
            };
            attention(q, k, v, None, None, options)
        } else {
            // New positions after cached ones: an explicit mask, built here because burn-tch
            // hands a boolean mask to libtorch unchanged, where `true` means the opposite.
            let scores = q
                .matmul(k.swap_dims(2, 3))
                .mul_scalar(1.0 / (head_dim as f64).sqrt());
            let mask = causal_mask(new, total, &scores.device());
            let scores = scores.mask_fill(
                mask.unsqueeze::<4>().expand([batch, n_head, new, total]),
                f32::NEG_INFINITY,
            );
            softmax(scores, 3).matmul(v)
        };
        let y = if new == 1 {
            y.reshape([rows, n_embd])
        } else {
            y.swap_dims(1, 2).reshape([rows, n_embd])
        };
        (linear(&self.c_proj, y, bias(1)), (cache_k, cache_v))
    }
}

/// `true` where query `i` (the `i`-th of the `new` last positions) may not see key `j`.
fn causal_mask(new: usize, total: usize, device: &Device) -> Tensor<2, Bool> {
    let past = total - new;
    let mask: Vec<bool> = (0..new)
        .flat_map(|i| (0..total).map(move |j| j > past + i))
        .collect();
    Tensor::from_data(TensorData::new(mask, [new, total]), device)
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub c_fc: Linear,
    pub c_proj: Linear,
}

impl Mlp {
    fn forward(
        &self,
        x: Tensor<2>,
        activation: Activation,
        bias_rows: Option<&BiasRows>,
    ) -> Tensor<2> {
        let bias = |i: usize| bias_rows.and_then(|b| b[i].as_ref());
        let h = linear(&self.c_fc, x, bias(2));
        let h = match activation {
            Activation::GeluTanh => gelu_new(h),
            Activation::Gelu => gelu(h),
        };
        linear(&self.c_proj, h, bias(3))
    }
}

/// Floating-point type of a model's weights and compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    F16,
    Bf16,
}

impl Precision {
    fn float_dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
            Precision::Bf16 => FloatDType::BF16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!("unknown dtype `{other}`; use f32, f16 or bf16")),
        }
    }
}

/// `x W + b` for rows `x` `[rows, d_in]`, through [`rows_matmul`], so that a row's result does
/// not depend on how many rows share the batch (burn's `Linear::forward` does not promise
/// that); `b` from `bias_row` when decoding has made one. The host path uses [`PackedLinear`]
/// instead.
///
/// [`PackedLinear`]: crate::engine::kernels::matmul::PackedLinear
fn linear(layer: &Linear, x: Tensor<2>, bias_row: Option<&Tensor<2>>) -> Tensor<2> {
    let y = rows_matmul(x, layer.weight.val());
    match (bias_row, &layer.bias) {
        (Some(row), _) => y + row.clone(),
        (None, Some(bias)) => y + bias.val().unsqueeze::<2>(),
        (None, None) => y,
    }
}

/// A block's linear biases as rows `[1, d_out]`, in the order c_attn, the attention's c_proj,
/// c_fc, the MLP's c_proj: made once for decoding, so that adding one to many rows is one
/// operation, where a bias `[d_out]` takes a view first.
pub(crate) type BiasRows = [Option<Tensor<2>>; 4];

/// `x W` for `x` `[rows, d_in]`, computing each row exactly as it would be computed among
/// any number of other rows. CPU kernels take a separate matrix-vector path for a single row,
/// whose sums round differently; a lone row is therefore run as two, so that a sample does not
/// depend on how many other rows happen to share its batch.
fn rows_matmul(x: Tensor<2>, weight: Tensor<2>) -> Tensor<2> {
    if x.dims()[0] != 1 {
        return x.matmul(weight);
    }
    let d_out = weight.dims()[1];
    Tensor::cat(vec![x.clone(), x], 0)
        .matmul(weight)
        .slice([0..1, 0..d_out])
}

/// A tensor's values on the host, row-major.
pub(super) fn host_rows<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    x.into_data().try_into_vec::<f32>().expect("f32 values")
}

/// GPT-2's `gelu_new`, the tanh approximation of GELU (the exact erf GELU drifts by ~5e-4):
/// 0.5 x (1 + tanh(z)) with z = sqrt(2/pi) (x + 0.044715 x^3). Written as the identical
/// x sigmoid(2z) with x^3 as products, since CPU backends compute `tanh` and `powf` an order
/// of magnitude slower than `exp`.
pub fn gelu_new<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let two_c = 2.0 * (2.0 / std::f64::consts::PI).sqrt();
    let z2 = x.clone() * (x.clone() * x.clone() * (0.044715 * two_c) + two_c);
    x * sigmoid(z2)
}

#[derive(Module, Debug)]
pub struct Block {
    pub ln_1: LayerNorm,
    pub attn: Attention,
    pub ln_2: LayerNorm,
    pub mlp: Mlp,
}

/// What every block of one forward pass shares: `batch` rows of new positions after `past`
/// cached ones, with room for `reserve` positions in a cache the pass makes.
#[derive(Debug, Clone, Copy)]
struct Pass {
    batch: usize,
    past: usize,
    reserve: usize,
    activation: Activation,
}

impl Block {
    fn forward(
        &self,
        x: Tensor<2>,
        cache: Option<(Tensor<4>, Tensor<4>)>,
        pass: Pass,
        bias_rows: Option<&BiasRows>,
    ) -> (Tensor<2>, (Tensor<4>, Tensor<4>)) {
        let (a, kv) = self
            .attn
            .forward(self.ln_1.forward(x.clone()), cache, pass, bias_rows);
        let x = x + a;
        let x = x.clone()
            + self
                .mlp
                .forward(self.ln_2.forward(x), pass.activation, bias_rows);
        (x, kv)
    }
}

#[derive(Module, Debug)]
pub struct Gpt2 {
    /// Token embedding `[vocab_size, n_embd]`, also the LM head.
    pub wte: Param<Tensor<2>>,
    /// Position embedding `[n_positions, n_embd]`.
    pub wpe: Param<Tensor<2>>,
    pub h: Vec<Block>,
    pub ln_f: LayerNorm,
    /// `wte` transposed once for inference (see [`Gpt2::for_inference`]).
    #[module(skip)]
    pub lm_head: Option<Tensor<2>>,
    /// Each block's [`BiasRows`] for decoding on tensors; empty in training, where the biases
    /// change.
    #[module(skip)]
    pub(crate) bias_rows: Vec<BiasRows>,
    /// The model as decoding runs it on the CPU, on the host's batch-invariant kernels (see
    /// [`Gpt2::for_inference`]); `None` on other devices and in training.
    #[module(skip)]
    pub host: Option<Arc<HostModel>>,
    #[module(skip)]
    pub config: Gpt2Config,
}

impl Gpt2 {
    /// A freshly initialised model, as GPT-2 and nanoGPT initialise one: N(0, 0.02) weights,
    /// residual projections scaled by 1/sqrt(2 n_layer), zero biases, unit LayerNorms.
    pub fn init(config: &Gpt2Config, device: &Device) -> Self {
        use burn::nn::Initializer;
        let c = config.n_embd;
        let normal = |std: f64| Initializer::Normal { mean: 0.0, std };
        let residual_std = 0.02 / (2.0 * config.n_layer as f64).sqrt();
        let linear = |d_in, d_out, std| {
            LinearConfig::new(d_in, d_out)
                .with_initializer(normal(std))
                .init(device)
        };
        // A fresh parameter, not the initialised one mapped to zeros: a mapped value is a new
        // tensor outside the autodiff graph, and the bias would never train.
        let zero_bias = |mut l: Linear| {
            let d_out = l.weight.dims()[1];
            l.bias = Some(Initializer::Zeros.init([d_out], device));
            l
        };
        let ln = || {
            LayerNormConfig::new(c)
                .with_epsilon(config.layer_norm_epsilon)
                .init(device)
        };
        let h = (0..config.n_layer)
            .map(|_| Block {
                ln_1: ln(),
                attn: Attention {
                    c_attn: zero_bias(linear(c, 3 * c, 0.02)),
                    c_proj: zero_bias(linear(c, c, residual_std)),
                    n_head: config.n_head,
                },
                ln_2: ln(),
                mlp: Mlp {
                    c_fc: zero_bias(linear(c, 4 * c, 0.02)),
                    c_proj: zero_bias(linear(4 * c, c, residual_std)),
                },
            })
            .collect();
        Self {
            wte: normal(0.02).init([config.vocab_size, c], device),
            wpe: normal(0.01).init([config.n_positions, c], device),
            h,
            ln_f: ln(),
            lm_head: None,
            bias_rows: Vec::new(),
            host: None,
            config: config.clone(),
        }
    }

    /// Prepare for decoding. On the CPU (in f32), the model is copied into a
    /// [`HostModel`], which then runs every forward pass of this model on the host;
    /// elsewhere the tied head is materialised as a contiguous `[n_embd, vocab]`.
    ///
    /// The tensor path keeps the `[in, out]` row-major layout on purpose. Read through a
    /// transposed view, general matmul kernels run the big products faster, but a row's result
    /// then depends on how many rows share the product, and samples must not depend on the batch.
    /// Training must not call this, since the copies do not follow updates to the weights.
    pub fn for_inference(mut self) -> Self {
        let wte = self.wte.val();
        let (device, dtype) = (wte.device(), wte.dtype());
        if crate::engine::backend::is_host(&device) && dtype == DType::F32 {
            self.host = Some(Arc::new(HostModel::new(&self)));
            return self;
        }
        self.for_tensor_inference()
    }

    /// Prepare for decoding through the backend's tensors, as on a GPU, whatever the device.
    pub fn for_tensor_inference(mut self) -> Self {
        let wte = self.wte.val();
        let (device, dtype) = (wte.device(), wte.dtype());
        self.lm_head = Some(Tensor::from_data(
            wte.transpose().into_data(),
            (&device, dtype),
        ));
        let row = |l: &Linear| l.bias.as_ref().map(|b| b.val().unsqueeze::<2>());
        self.bias_rows = self
            .h
            .iter()
            .map(|b| {
                [
                    row(&b.attn.c_attn),
                    row(&b.attn.c_proj),
                    row(&b.mlp.c_fc),
                    row(&b.mlp.c_proj),
                ]
            })
            .collect();
        self.host = None;
        self
    }

    pub fn device(&self) -> Device {
        self.wte.val().device()
    }

    /// Run `tokens` `[batch, new]` after the positions held in `cache`, appending theirs.
    /// Returns the final hidden states `[batch, new, n_embd]` (after `ln_f`).
    pub fn forward_hidden(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3> {
        let [batch, new] = tokens.dims();
        if let Some(host) = &self.host {
            let device = tokens.device();
            let hidden = host.forward(&host_tokens(tokens), batch, cache);
            let c = self.config.n_embd;
            return Tensor::from_data(TensorData::new(hidden, [batch, new, c]), &device);
        }
        self.forward_rows(tokens, cache)
            .reshape([batch, new, self.config.n_embd])
    }

    /// [`Gpt2::forward_hidden`] on the backend's tensors, as rows `[batch * new, n_embd]`:
    /// the blocks run on rows, so that a linear layer is one product without reshapes.
    fn forward_rows(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<2> {
        let [batch, new] = tokens.dims();
        let c = self.config.n_embd;
        let past = cache.len();
        let positions = self.wpe.val().slice(past..past + new);
        let mut x = (burn::tensor::module::embedding(self.wte.val(), tokens)
            + positions.unsqueeze::<3>())
        .reshape([batch * new, c]);
        // Taken out of the cache so each layer's tensors are uniquely owned and written in place.
        let mut held = cache.take_tensor_layers().into_iter();
        let mut layers = Vec::with_capacity(self.h.len());
        let pass = Pass {
            batch,
            past,
            reserve: cache.capacity(),
            activation: self.config.activation,
        };
        for (i, block) in self.h.iter().enumerate() {
            let (y, kv) = block.forward(x, held.next(), pass, self.bias_rows.get(i));
            x = y;
            layers.push(kv);
        }
        cache.store_tensor_layers(layers, new);
        self.ln_f.forward(x)
    }

    /// Cast weights (and so all compute) to `precision`. Half precision is for GPUs: it
    /// halves memory traffic there, while CPU backends gain nothing from it.
    pub fn with_precision(self, precision: Precision) -> Self {
        struct Cast(FloatDType);
        impl ModuleMapper for Cast {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let dtype = self.0;
                param.map(|t| t.cast(dtype))
            }
        }
        match precision {
            Precision::F32 => self,
            other => self.map(&mut Cast(other.float_dtype())),
        }
    }

    /// Logits `[batch, new, vocab]` from hidden states, always f32: sampling and scoring read
    /// them on the host as f32 whatever the model computes in.
    pub fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        let [batch, new, c] = hidden.dims();
        if let Some(host) = &self.host {
            let device = hidden.device();
            let logits = host.lm_head.forward(&host_rows(hidden), batch * new);
            let vocab = host.lm_head.d_out();
            return Tensor::from_data(TensorData::new(logits, [batch, new, vocab]), &device);
        }
        let logits = self.head_rows(hidden.reshape([batch * new, c]));
        let vocab = logits.dims()[1];
        logits.reshape([batch, new, vocab])
    }

    /// [`Gpt2::head`] of rows `[rows, n_embd]` on the backend's tensors.
    fn head_rows(&self, rows: Tensor<2>) -> Tensor<2> {
        let w = match &self.lm_head {
            Some(w) => w.clone(),
            None => self.wte.val().transpose(),
        };
        let logits = rows_matmul(rows, w);
        if logits.dtype() == DType::F32 {
            logits
        } else {
            logits.cast(FloatDType::F32)
        }
    }

    /// The logits `[rows * vocab]` (f32) of `rows` final hidden states given on the host
    /// (`[rows * n_embd]`), into `out`, reusing its memory: teacher-forced scoring runs the
    /// head over thousands of positions a few dozen at a time, and on the CPU a fresh buffer
    /// for each would cost more in page faults than its copy.
    pub fn head_rows_into(&self, hidden: &[f32], rows: usize, out: &mut Vec<f32>) {
        if let Some(host) = &self.host {
            out.resize(rows * host.lm_head.d_out(), 0.0);
            host.lm_head.forward_into(hidden, rows, out);
            return;
        }
        let c = self.config.n_embd;
        let hidden = Tensor::from_data(
            TensorData::new(hidden.to_vec(), [1, rows, c]),
            &self.device(),
        );
        let logits = self.head(hidden);
        let vocab = logits.dims()[2];
        read_rows_into(logits.reshape([rows, vocab]), out);
    }

    /// Logits for every position of `tokens` `[batch, len]`, with no cache: training and scoring.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let mut cache = KvCache::empty();
        self.head(self.forward_hidden(tokens, &mut cache))
    }

    /// Logits of the last of the new positions only (decoding never needs the others, and the
    /// head is the largest matmul of a small model), written to `out` (`[batch * vocab]`,
    /// row-major) on the host, where sampling reads them, reusing its memory. On the CPU (a
    /// [`HostModel`]) the head writes there directly; from a device they come back as
    /// [`read_rows_into`] reads them.
    pub fn forward_last_into(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut KvCache,
        out: &mut Vec<f32>,
    ) {
        if let Some(host) = &self.host {
            let [batch, new] = tokens.dims();
            let hidden = host.forward(&host_tokens(tokens), batch, cache);
            host.last_logits_into(&hidden, batch, new, out);
            return;
        }
        read_rows_into(self.forward_last(tokens, cache), out);
    }

    /// [`Gpt2::forward_last_into`] that also hands back the final hidden states (after
    /// `ln_f`) of every new position, `[batch * new * n_embd]` row-major in f32, into `hidden`:
    /// what contrastive search compares candidates by. Both come back to the host whole, on
    /// any device.
    pub fn forward_with_hidden_into(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut KvCache,
        hidden: &mut Vec<f32>,
        logits: &mut Vec<f32>,
    ) {
        if let Some(host) = &self.host {
            let [batch, new] = tokens.dims();
            *hidden = host.forward(&host_tokens(tokens), batch, cache);
            host.last_logits_into(hidden, batch, new, logits);
            return;
        }
        let (all, last) = self.forward_with_hidden(tokens, cache);
        *hidden = host_rows(all);
        read_rows_into(last, logits);
    }

    /// The final hidden states `[batch, new, n_embd]` of every new position, cast to f32, and
    /// the logits `[batch, vocab]` (f32) of the last, both left on the model's device: on a
    /// GPU, contrastive search reads back the hidden states, which are small, and then only
    /// the logits of the candidates it chose.
    pub fn forward_with_hidden(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut KvCache,
    ) -> (Tensor<3>, Tensor<2>) {
        let hidden = self.forward_hidden(tokens, cache);
        let logits = self.last_logits(last_position(hidden.clone()));
        let hidden = if hidden.dtype() == DType::F32 {
            hidden
        } else {
            hidden.cast(FloatDType::F32)
        };
        (hidden, logits)
    }

    /// Logits `[batch, vocab]` (f32) of the last of the new positions, left on the model's
    /// device: on a GPU, sampling takes from them only what it needs (see `shortlist`).
    pub fn forward_last(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<2> {
        if self.host.is_some() || tokens.dims()[1] > 1 {
            return self.last_logits(last_position(self.forward_hidden(tokens, cache)));
        }
        // A decoding step's rows are already the last positions.
        self.head_rows(self.forward_rows(tokens, cache))
    }

    /// Logits `[batch, vocab]` (f32) of hidden states `[batch, n_embd]`, one position a row.
    fn last_logits(&self, last: Tensor<2>) -> Tensor<2> {
        if self.host.is_none() {
            return self.head_rows(last);
        }
        let [batch, c] = last.dims();
        let logits = self.head(last.reshape([batch, 1, c]));
        let vocab = logits.dims()[2];
        logits.reshape([batch, vocab])
    }
}

/// The last position `[batch, n_embd]` of hidden states `[batch, new, n_embd]`.
fn last_position(hidden: Tensor<3>) -> Tensor<2> {
    let [batch, new, c] = hidden.dims();
    hidden
        .slice([0..batch, new - 1..new, 0..c])
        .reshape([batch, c])
}

/// Rows `[batch, vocab]` of f32 logits read back to `out` (row-major), reusing its memory.
/// From a device they come back in chunks of rows small enough for the allocator to recycle
/// (see `main.rs`), instead of a fresh buffer of the whole size at every step.
fn read_rows_into(logits: Tensor<2>, out: &mut Vec<f32>) {
    const CHUNK_BYTES: usize = 8 << 20;
    let [batch, vocab] = logits.dims();
    out.clear();
    let per_chunk = (CHUNK_BYTES / (4 * vocab.max(1))).max(1);
    out.reserve(batch * vocab);
    if batch <= per_chunk {
        out.extend_from_slice(&host_rows(logits));
        return;
    }
    for start in (0..batch).step_by(per_chunk) {
        let end = (start + per_chunk).min(batch);
        out.extend_from_slice(&host_rows(logits.clone().slice([start..end, 0..vocab])));
    }
}

/// Token ids of an integer tensor, row-major.
pub(super) fn host_tokens(tokens: Tensor<2, Int>) -> Vec<i64> {
    tokens
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("integer token ids")
}
