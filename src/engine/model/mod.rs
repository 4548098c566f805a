//! GPT-2, read top to bottom like the paper: token + position embeddings, `n_layer`
//! pre-LayerNorm blocks of causal self-attention and a `gelu_new` MLP, a final LayerNorm, and
//! an LM head tied to the token embedding.
//!
//! The model knows nothing of files, TOML or sampling: `checkpoint` fills its weights,
//! `generate` drives it. Linear weights are stored `[in, out]`, the layout of Hugging Face's
//! `Conv1D`, so GPT-2 checkpoints load without a transpose.

use std::sync::Arc;

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Bool, DType, Device, FloatDType, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::engine::kernels::attention::{self, LayerCache};
use crate::engine::kernels::matmul::PackedLinear;

/// The end-of-text token of the GPT-2 BPE vocabulary.
pub const GPT2_EOS: u32 = 50256;

/// Caps on a config's sizes (see [`Gpt2Config::check`]).
pub const MAX_N_LAYER: usize = 1024;
pub const MAX_N_HEAD: usize = 1024;
pub const MAX_N_EMBD: usize = 65_536;
pub const MAX_N_POSITIONS: usize = 1 << 20;
pub const MAX_VOCAB_SIZE: usize = 1 << 22;

/// The shape of a GPT-2 model, as written in a Hugging Face `config.json`.
///
/// Keys follow transformers' `GPT2Config`. Those that change what the model computes are
/// either honoured (the shape, `layer_norm_epsilon`, `eos_token_id`) or, when they ask for
/// something this model does not compute, refused by name; keys that only
/// matter for training or other heads (dropouts, `summary_*`, `initializer_range`,
/// `use_cache`, `dtype`) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub layer_norm_epsilon: f64,
    /// The token that ends a text; generation stops a row when it is produced.
    pub eos_token_id: u32,
}

/// `config.json` as written: the official `gpt2` file carries both `n_positions` and the older
/// `n_ctx`, some older files only `n_ctx`.
///
/// The optional keys are those of transformers' `GPT2Config` that would make a model compute
/// something else than this one does; each is accepted only at the value this model
/// implements, so that a model trained differently is refused by name instead of decoding
/// as if it were plain GPT-2.
#[derive(Deserialize)]
struct RawConfig {
    vocab_size: usize,
    n_positions: Option<usize>,
    n_ctx: Option<usize>,
    n_embd: usize,
    n_layer: usize,
    n_head: usize,
    #[serde(default = "default_layer_norm_epsilon")]
    layer_norm_epsilon: f64,
    #[serde(default)]
    eos_token_id: Option<u32>,
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    activation_function: Option<String>,
    #[serde(default)]
    n_inner: Option<usize>,
    #[serde(default)]
    scale_attn_weights: Option<bool>,
    #[serde(default)]
    scale_attn_by_inverse_layer_idx: Option<bool>,
    #[serde(default)]
    add_cross_attention: Option<bool>,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
}

/// The MLP activations that are GPT-2's tanh approximation of GELU, which is what this model
/// computes: transformers' `gelu_new`, `gelu_pytorch_tanh` and `gelu_fast` are one formula.
const TANH_GELU: &[&str] = &["gelu_new", "gelu_pytorch_tanh", "gelu_fast"];

impl RawConfig {
    /// The first key that asks for a computation this model does not implement.
    fn unsupported(&self) -> Option<String> {
        if let Some(t) = &self.model_type
            && t != "gpt2"
        {
            return Some(format!(
                "model_type = {t:?}: only GPT-2 models (\"gpt2\") can be loaded"
            ));
        }
        if let Some(a) = &self.activation_function
            && !TANH_GELU.contains(&a.as_str())
        {
            return Some(format!(
                "activation_function = {a:?} is not implemented; the MLP computes GPT-2's tanh \
                 GELU ({}), and a model trained with another activation would decode wrongly",
                TANH_GELU.join(", ")
            ));
        }
        if let Some(n) = self.n_inner
            && Some(n) != self.n_embd.checked_mul(4)
        {
            return Some(format!(
                "n_inner = {n} is not implemented; the MLP is 4 x n_embd = {} wide (null)",
                self.n_embd.saturating_mul(4)
            ));
        }
        if self.scale_attn_weights == Some(false) {
            return Some(
                "scale_attn_weights = false is not implemented; attention scores are always \
                 divided by sqrt(head_dim)"
                    .into(),
            );
        }
        if self.scale_attn_by_inverse_layer_idx == Some(true) {
            return Some(
                "scale_attn_by_inverse_layer_idx = true is not implemented; attention scores \
                 are not scaled by layer"
                    .into(),
            );
        }
        if self.add_cross_attention == Some(true) {
            return Some(
                "add_cross_attention = true is not implemented; only decoder-only GPT-2 models \
                 can be loaded"
                    .into(),
            );
        }
        if self.tie_word_embeddings == Some(false) {
            return Some(
                "tie_word_embeddings = false is not implemented; the LM head is always the \
                 token embedding (wte)"
                    .into(),
            );
        }
        None
    }
}

impl TryFrom<RawConfig> for Gpt2Config {
    type Error = String;

    fn try_from(raw: RawConfig) -> Result<Self, String> {
        if let Some(message) = raw.unsupported() {
            return Err(message);
        }
        Ok(Self {
            vocab_size: raw.vocab_size,
            n_positions: raw
                .n_positions
                .or(raw.n_ctx)
                .ok_or("missing field `n_positions`")?,
            n_embd: raw.n_embd,
            n_layer: raw.n_layer,
            n_head: raw.n_head,
            layer_norm_epsilon: raw.layer_norm_epsilon,
            eos_token_id: raw.eos_token_id.unwrap_or(GPT2_EOS),
        })
    }
}

fn default_layer_norm_epsilon() -> f64 {
    1e-5
}

impl Gpt2Config {
    /// The 124M-parameter `gpt2`.
    pub fn gpt2() -> Self {
        Self::with_shape(12, 12, 768)
    }

    /// `distilgpt2`: `gpt2` with six layers.
    pub fn distilgpt2() -> Self {
        Self::with_shape(6, 12, 768)
    }

    pub fn gpt2_medium() -> Self {
        Self::with_shape(24, 16, 1024)
    }

    pub fn gpt2_large() -> Self {
        Self::with_shape(36, 20, 1280)
    }

    pub fn gpt2_xl() -> Self {
        Self::with_shape(48, 25, 1600)
    }

    /// A GPT-2-vocabulary model of the given depth, heads and width, with GPT-2's context.
    pub fn with_shape(n_layer: usize, n_head: usize, n_embd: usize) -> Self {
        Self {
            vocab_size: 50257,
            n_positions: 1024,
            n_embd,
            n_layer,
            n_head,
            layer_norm_epsilon: 1e-5,
            eos_token_id: GPT2_EOS,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Parameters, counting the tied LM head once.
    pub fn num_params(&self) -> usize {
        let c = self.n_embd;
        let block =
            2 * 2 * c + (c * 3 * c + 3 * c) + (c * c + c) + (c * 4 * c + 4 * c) + (4 * c * c + c);
        self.vocab_size * c + self.n_positions * c + self.n_layer * block + 2 * c
    }

    /// A config that cannot describe a working model is refused here rather than as a shape
    /// panic deep in a matmul, or as an allocation that aborts: the caps are far above any
    /// GPT-2-architecture model, and each size is also checked against the weights.
    pub fn check(&self) -> Result<(), String> {
        let sizes = [
            ("vocab_size", self.vocab_size, MAX_VOCAB_SIZE),
            ("n_positions", self.n_positions, MAX_N_POSITIONS),
            ("n_embd", self.n_embd, MAX_N_EMBD),
            ("n_layer", self.n_layer, MAX_N_LAYER),
            ("n_head", self.n_head, MAX_N_HEAD),
        ];
        for (name, value, max) in sizes {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
            if value > max {
                return Err(format!(
                    "{name} = {value} is larger than any GPT-2-architecture model; at most {max}"
                ));
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err(format!(
                "n_embd ({}) must be a multiple of n_head ({})",
                self.n_embd, self.n_head
            ));
        }
        if self.layer_norm_epsilon.is_nan() || self.layer_norm_epsilon <= 0.0 {
            return Err("layer_norm_epsilon must be positive".into());
        }
        Ok(())
    }
}

/// Keys and values of every layer for the positions seen so far, `[batch, n_head, len, head_dim]`.
///
/// A prompt is run once; its cache is then repeated for every sample of that prompt, and each
/// decoding step appends one position instead of re-running the prefix.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Per layer, keys and values `[batch, n_head, capacity, head_dim]`; positions `len..`
    /// are room not yet written.
    layers: Vec<(Tensor<4>, Tensor<4>)>,
    /// The same in host memory, for a model with a [`HostModel`] (then `layers` is empty).
    host: Vec<LayerCache>,
    len: usize,
    /// Positions to reserve when the first tokens arrive.
    capacity: usize,
}

impl KvCache {
    pub fn empty() -> Self {
        Self::with_capacity(0)
    }

    /// A cache that reserves room for `capacity` positions up front, so that each decoding
    /// step writes its position in place instead of copying the whole cache to grow it (a
    /// copy per step makes generation quadratic in length).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            layers: Vec::new(),
            host: Vec::new(),
            len: 0,
            capacity,
        }
    }

    /// Positions already held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn batch_size(&self) -> usize {
        match self.host.first() {
            Some(layer) => layer.batch_size(),
            None => self.layers.first().map_or(0, |(k, _)| k.dims()[0]),
        }
    }

    /// Rows `indices` of this cache, in that order (rows may repeat): how beams are reordered,
    /// finished rows dropped and a one-row prompt cache widened to many samples.
    pub fn select(&self, indices: &[usize]) -> Self {
        if !self.host.is_empty() {
            return Self {
                layers: Vec::new(),
                host: self
                    .host
                    .iter()
                    .map(|l| l.select(indices, self.len))
                    .collect(),
                len: self.len,
                capacity: self.capacity,
            };
        }
        let Some((k, _)) = self.layers.first() else {
            return Self::with_capacity(self.capacity);
        };
        let device = k.device();
        let ids: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [indices.len()]), &device);
        Self {
            layers: self
                .layers
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone().select(0, ids.clone()),
                        v.clone().select(0, ids.clone()),
                    )
                })
                .collect(),
            host: Vec::new(),
            len: self.len,
            capacity: self.capacity,
        }
    }

    /// This one-row cache repeated `n` times. On the host the rows share the positions held,
    /// which are kept once; on tensors only those positions are copied. The room reserved
    /// after them is left unwritten, since attention never reads past `len`.
    pub fn repeat(&self, n: usize) -> Self {
        if !self.host.is_empty() {
            return Self {
                layers: Vec::new(),
                host: self.host.iter().map(|l| l.widen(n, self.len)).collect(),
                len: self.len,
                capacity: self.capacity,
            };
        }
        let len = self.len;
        let widen = |t: &Tensor<4>| {
            let [_, heads, room, dim] = t.dims();
            let held = t
                .clone()
                .slice([0..1, 0..heads, 0..len, 0..dim])
                .repeat_dim(0, n);
            if room == len {
                return held;
            }
            Tensor::empty([n, heads, room, dim], (&t.device(), t.dtype()))
                .slice_assign([0..n, 0..heads, 0..len, 0..dim], held)
        };
        Self {
            layers: self
                .layers
                .iter()
                .map(|(k, v)| (widen(k), widen(v)))
                .collect(),
            host: Vec::new(),
            len: self.len,
            capacity: self.capacity,
        }
    }
}

/// Write `new` `[batch, n_head, n, head_dim]` at positions `past..past + n` of a layer's
/// cache tensor, growing it (by doubling) only when the reserved room runs out.
fn append(cache: Option<Tensor<4>>, new: Tensor<4>, past: usize, reserve: usize) -> Tensor<4> {
    let [batch, heads, n, dim] = new.dims();
    let needed = past + n;
    let cache = match cache {
        Some(c) if c.dims()[2] >= needed => c,
        Some(c) => {
            let room = Tensor::zeros(
                [batch, heads, needed.max(2 * past) - past, dim],
                (&c.device(), c.dtype()),
            );
            Tensor::cat(
                vec![c.slice([0..batch, 0..heads, 0..past, 0..dim]), room],
                2,
            )
        }
        // Nothing to reserve (training, scoring): the new keys are the whole cache.
        None if reserve <= needed => return new,
        None => Tensor::zeros([batch, heads, reserve, dim], (&new.device(), new.dtype())),
    };
    cache.slice_assign([0..batch, 0..heads, past..needed, 0..dim], new)
}

#[derive(Module, Debug)]
pub struct Attention {
    /// Query, key and value projections in one matrix, `[n_embd, 3 * n_embd]`.
    pub c_attn: Linear,
    pub c_proj: Linear,
    pub n_head: usize,
}

impl Attention {
    /// `x` holds the new positions `[batch, new, n_embd]`; `past` the cached ones, which the new
    /// positions all see. Within the new positions attention is causal.
    fn forward(
        &self,
        x: Tensor<3>,
        cache: Option<(Tensor<4>, Tensor<4>)>,
        past: usize,
        reserve: usize,
    ) -> (Tensor<3>, (Tensor<4>, Tensor<4>)) {
        let [batch, new, n_embd] = x.dims();
        let head_dim = n_embd / self.n_head;
        let heads = |t: Tensor<3>| {
            t.reshape([batch, new, self.n_head, head_dim])
                .swap_dims(1, 2)
        };
        let qkv = linear(&self.c_attn, x);
        let mut parts = qkv.chunk(3, 2).into_iter();
        let (q, k, v) = (
            heads(parts.next().unwrap()),
            heads(parts.next().unwrap()),
            heads(parts.next().unwrap()),
        );
        let (cache_k, cache_v) = match cache {
            Some((ck, cv)) => (Some(ck), Some(cv)),
            None => (None, None),
        };
        let cache_k = append(cache_k, k, past, reserve);
        let cache_v = append(cache_v, v, past, reserve);
        let total = past + new;
        let held = [0..batch, 0..self.n_head, 0..total, 0..head_dim];
        let (k, v) = (
            cache_k.clone().slice(held.clone()),
            cache_v.clone().slice(held),
        );
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (head_dim as f64).sqrt());
        let scores = if new > 1 {
            let mask = causal_mask(new, total, &scores.device());
            scores.mask_fill(
                mask.unsqueeze::<4>()
                    .expand([batch, self.n_head, new, total]),
                f32::NEG_INFINITY,
            )
        } else {
            scores
        };
        let y = softmax(scores, 3).matmul(v);
        let y = y.swap_dims(1, 2).reshape([batch, new, n_embd]);
        (linear(&self.c_proj, y), (cache_k, cache_v))
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
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        linear(&self.c_proj, gelu_new(linear(&self.c_fc, x)))
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

/// `x W + b` with the rows of `x` folded into one 2-D product through [`rows_matmul`], so
/// that a row's result does not depend on how many rows share the batch (burn's
/// `Linear::forward` does not promise that). The host path uses [`PackedLinear`] instead.
fn linear(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [batch, len, d_in] = x.dims();
    let weight = layer.weight.val();
    let d_out = weight.dims()[1];
    let y = rows_matmul(x.reshape([batch * len, d_in]), weight);
    let y = match &layer.bias {
        Some(bias) => y + bias.val().unsqueeze::<2>(),
        None => y,
    };
    y.reshape([batch, len, d_out])
}

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
fn host_rows<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    x.into_data().try_into_vec::<f32>().expect("f32 values")
}

/// GPT-2's `gelu_new`, the tanh approximation of GELU (the exact erf GELU drifts by ~1e-3):
/// 0.5 x (1 + tanh(z)) with z = sqrt(2/pi) (x + 0.044715 x^3). Written as the identical
/// x sigmoid(2z) with x^3 as products, since CPU backends compute `tanh` and `powf` an order
/// of magnitude slower than `exp`.
pub fn gelu_new(x: Tensor<3>) -> Tensor<3> {
    let two_c = 2.0 * (2.0 / std::f64::consts::PI).sqrt();
    let z2 = x.clone() * (x.clone() * x.clone() * (0.044715 * two_c) + two_c);
    x * sigmoid(z2)
}

/// [`gelu_new`] on host values, in the same form: x sigmoid(2z) = x / (1 + exp(-2z)), with
/// the exponentials taken a slice at a time by [`crate::engine::kernels::exponential`].
pub fn gelu_new_in_place(values: &mut [f32]) {
    use rayon::prelude::*;
    const SLICE: usize = 512;
    let two_c = (2.0 * (2.0 / std::f64::consts::PI).sqrt()) as f32;
    let cubic = 0.044715 * two_c;
    values.par_chunks_mut(1 << 14).for_each(|chunk| {
        let mut e = [0.0f32; SLICE];
        for xs in chunk.chunks_mut(SLICE) {
            let e = &mut e[..xs.len()];
            for (e, &x) in e.iter_mut().zip(xs.iter()) {
                *e = -(x * (x * x * cubic + two_c));
            }
            crate::engine::kernels::exponential::exp_in_place(e);
            for (x, e) in xs.iter_mut().zip(e.iter()) {
                *x /= 1.0 + e;
            }
        }
    });
}

#[derive(Module, Debug)]
pub struct Block {
    pub ln_1: LayerNorm,
    pub attn: Attention,
    pub ln_2: LayerNorm,
    pub mlp: Mlp,
}

impl Block {
    fn forward(
        &self,
        x: Tensor<3>,
        cache: Option<(Tensor<4>, Tensor<4>)>,
        past: usize,
        reserve: usize,
    ) -> (Tensor<3>, (Tensor<4>, Tensor<4>)) {
        let (a, kv) = self
            .attn
            .forward(self.ln_1.forward(x.clone()), cache, past, reserve);
        let x = x + a;
        let x = x.clone() + self.mlp.forward(self.ln_2.forward(x));
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
        let device = tokens.device();
        if let Some(host) = &self.host {
            let hidden = host.forward(&host_tokens(tokens), batch, cache);
            let c = self.config.n_embd;
            return Tensor::from_data(TensorData::new(hidden, [batch, new, c]), &device);
        }
        let past = cache.len();
        let positions = Tensor::<1, Int>::arange(past as i64..(past + new) as i64, &device);
        let mut x = burn::tensor::module::embedding(self.wte.val(), tokens)
            + self.wpe.val().select(0, positions).unsqueeze::<3>();
        // Taken out of the cache so each layer's tensors are uniquely owned and written in place.
        let mut held = std::mem::take(&mut cache.layers).into_iter();
        let mut layers = Vec::with_capacity(self.h.len());
        for block in &self.h {
            let (y, kv) = block.forward(x, held.next(), past, cache.capacity);
            x = y;
            layers.push(kv);
        }
        cache.layers = layers;
        cache.len = past + new;
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
        let w = match &self.lm_head {
            Some(w) => w.clone(),
            None => self.wte.val().transpose(),
        };
        let vocab = w.dims()[1];
        let logits = rows_matmul(hidden.reshape([batch * new, c]), w).reshape([batch, new, vocab]);
        if logits.dtype() == DType::F32 {
            logits
        } else {
            logits.cast(FloatDType::F32)
        }
    }

    /// Logits for every position of `tokens` `[batch, len]`, with no cache: training and scoring.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let mut cache = KvCache::empty();
        self.head(self.forward_hidden(tokens, &mut cache))
    }

    /// Logits of the last of the new positions only (decoding never needs the others, and the
    /// head is the largest matmul of a small model), written to `out` (`[batch * vocab]`,
    /// row-major) on the host, where sampling reads them, reusing its memory. On the CPU (a
    /// [`HostModel`]) the head writes there directly. From a device they come back in chunks
    /// of rows small enough for the allocator to recycle (see `main.rs`), instead of a fresh
    /// buffer of the whole size at every step.
    pub fn forward_last_into(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut KvCache,
        out: &mut Vec<f32>,
    ) {
        const CHUNK_BYTES: usize = 8 << 20;
        if let Some(host) = &self.host {
            let [batch, new] = tokens.dims();
            let hidden = host.forward(&host_tokens(tokens), batch, cache);
            // In a decoding step (one new position) the hidden rows already are the last ones.
            let last = if new == 1 {
                hidden
            } else {
                let c = self.config.n_embd;
                hidden
                    .chunks_exact(new * c)
                    .flat_map(|row| &row[(new - 1) * c..])
                    .copied()
                    .collect()
            };
            out.resize(batch * host.lm_head.d_out(), 0.0);
            host.lm_head.forward_into(&last, batch, out);
            return;
        }
        let logits = self.forward_last(tokens, cache);
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

    /// Logits `[batch, vocab]` (f32) of the last of the new positions, left on the model's
    /// device: on a GPU, sampling takes from them only what it needs (see `shortlist`).
    pub fn forward_last(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<2> {
        let last = self.forward_last_hidden(tokens, cache);
        let [batch, c] = last.dims();
        let logits = self.head(last.reshape([batch, 1, c]));
        let vocab = logits.dims()[2];
        logits.reshape([batch, vocab])
    }

    /// Final hidden states `[batch, n_embd]` of the last new position of each row.
    fn forward_last_hidden(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<2> {
        let hidden = self.forward_hidden(tokens, cache);
        let [batch, new, c] = hidden.dims();
        hidden
            .slice([0..batch, new - 1..new, 0..c])
            .reshape([batch, c])
    }
}

/// The model for decoding on the CPU: every projection and the head packed for the host
/// kernels of [`crate::engine::kernels::matmul`], attention over a host cache ([`crate::engine::kernels::attention`]), and the
/// layer norms, GELU and residual adds between them on plain rows. It computes what the tensor
/// path computes, but a decoding step then builds no tensor at all: for the few rows of a step,
/// the small ops between the products cost more as backend calls than as loops, and a loop
/// over one row at a time cannot depend on the batch.
pub struct HostModel {
    /// Position embedding `[n_positions, n_embd]`.
    wpe: Vec<f32>,
    blocks: Vec<HostBlock>,
    ln_f: HostLayerNorm,
    /// The tied LM head; its columns are also the token embeddings.
    lm_head: PackedLinear,
    n_head: usize,
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
    fn new(model: &Gpt2) -> Self {
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
        }
    }

    /// [`Gpt2::forward_hidden`] on the host: `tokens` `[batch, new]` after the positions held
    /// in `cache`, appending theirs; returns the final hidden states `[batch, new, n_embd]`.
    fn forward(&self, tokens: &[i64], batch: usize, cache: &mut KvCache) -> Vec<f32> {
        let c = self.lm_head.d_in();
        let rows = tokens.len();
        let new = rows / batch.max(1);
        let past = cache.len;
        if cache.host.is_empty() {
            let room = cache.capacity.max(past + new);
            cache.host = (0..self.blocks.len())
                .map(|_| LayerCache::new(batch, self.n_head, c / self.n_head, room))
                .collect();
        }
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
        for (block, layer) in self.blocks.iter().zip(&mut cache.host) {
            block.ln_1.forward_into(&x, &mut normed);
            block.c_attn.forward_into(&normed, rows, &mut qkv);
            let heads = attention::attend(&qkv, new, past, layer);
            block.attn_proj.forward_into(&heads, rows, &mut projected);
            add_in_place(&mut x, &projected);
            block.ln_2.forward_into(&x, &mut normed);
            block.c_fc.forward_into(&normed, rows, &mut hidden);
            gelu_new_in_place(&mut hidden);
            block.mlp_proj.forward_into(&hidden, rows, &mut projected);
            add_in_place(&mut x, &projected);
        }
        cache.len = past + new;
        self.ln_f.forward_into(&x, &mut normed);
        normed
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

/// Token ids of an integer tensor, row-major.
fn host_tokens(tokens: Tensor<2, Int>) -> Vec<i64> {
    tokens
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("integer token ids")
}

/// Printing a model should not print its weights twice over.
impl std::fmt::Debug for HostModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostModel({} blocks)", self.blocks.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The official `gpt2` config.json carries both `n_ctx` and `n_positions`.
    #[test]
    fn reads_the_official_gpt2_config() {
        let text = r#"{"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
            "attn_pdrop": 0.1, "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256,
            "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "gpt2",
            "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024,
            "resid_pdrop": 0.1, "vocab_size": 50257}"#;
        let config: Gpt2Config = serde_json::from_str(text).unwrap();
        assert_eq!(config, Gpt2Config::gpt2());
        assert_eq!(config.num_params(), 124_439_808);
        let old: Gpt2Config = serde_json::from_str(
            r#"{"vocab_size": 10, "n_ctx": 8, "n_embd": 4, "n_layer": 1, "n_head": 2}"#,
        )
        .unwrap();
        assert_eq!(old.n_positions, 8);
        assert_eq!(old.eos_token_id, GPT2_EOS);
    }

    /// `activation_function = "relu"` and `scale_attn_weights = false` were ignored: such a
    /// model decoded as plain GPT-2. Every GPT2Config key that changes the computation is
    /// honoured or refused by name; the values this model computes are accepted.
    #[test]
    fn regression_config_keys_that_change_the_computation_are_refused_by_name() {
        let base = r#""vocab_size": 10, "n_positions": 8, "n_embd": 4, "n_layer": 1, "n_head": 2"#;
        let parse = |extra: &str| serde_json::from_str::<Gpt2Config>(&format!("{{{base}{extra}}}"));
        for ok in [
            "",
            r#", "activation_function": "gelu_new""#,
            r#", "activation_function": "gelu_pytorch_tanh""#,
            r#", "activation_function": "gelu_fast""#,
            r#", "n_inner": null, "scale_attn_weights": true"#,
            r#", "n_inner": 16, "scale_attn_by_inverse_layer_idx": false"#,
            r#", "add_cross_attention": false, "tie_word_embeddings": true"#,
            r#", "reorder_and_upcast_attn": true, "model_type": "gpt2", "resid_pdrop": 0.1"#,
        ] {
            assert!(parse(ok).is_ok(), "{ok}: {:?}", parse(ok).err());
        }
        for (extra, named) in [
            (
                r#", "activation_function": "relu""#,
                "activation_function = \"relu\"",
            ),
            (
                r#", "activation_function": "gelu""#,
                "activation_function = \"gelu\"",
            ),
            (r#", "n_inner": 12"#, "n_inner = 12"),
            (
                r#", "scale_attn_weights": false"#,
                "scale_attn_weights = false",
            ),
            (
                r#", "scale_attn_by_inverse_layer_idx": true"#,
                "scale_attn_by_inverse_layer_idx = true",
            ),
            (
                r#", "add_cross_attention": true"#,
                "add_cross_attention = true",
            ),
            (
                r#", "tie_word_embeddings": false"#,
                "tie_word_embeddings = false",
            ),
            (
                r#", "model_type": "gpt_bigcode""#,
                "model_type = \"gpt_bigcode\"",
            ),
        ] {
            let err = parse(extra).unwrap_err().to_string();
            assert!(err.contains(named), "{extra}: {err}");
        }
    }

    /// n_layer = 10^8 aborted on allocation before any tensor was looked at.
    #[test]
    fn regression_absurd_sizes_are_refused_by_check() {
        let mut config = Gpt2Config::gpt2();
        assert!(config.check().is_ok());
        config.n_layer = 100_000_000;
        let err = config.check().unwrap_err();
        assert!(err.starts_with("n_layer = 100000000 is larger"), "{err}");
        let mut config = Gpt2Config::gpt2();
        config.vocab_size = usize::MAX;
        assert!(config.check().unwrap_err().starts_with("vocab_size"));
    }

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

    /// The host path (packed weights, host cache and norms) against the tensor path on the
    /// same weights, through a prompt and two decoding steps of two rows. The layer norms are
    /// given random scales and shifts, which a fresh model (ones and zeros) would not test.
    #[test]
    fn the_host_path_computes_what_the_tensor_path_computes() {
        use burn::tensor::Distribution;
        let device = Device::default();
        if !crate::engine::backend::is_host(&device) {
            return;
        }
        device.seed(11);
        let mut model = Gpt2::init(&Gpt2Config::with_shape(2, 4, 64), &device);
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
        let prompt = vec![464, 2068, 7586, 21831, 50256];
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

    #[test]
    fn preset_shapes_are_consistent() {
        for c in [
            Gpt2Config::gpt2(),
            Gpt2Config::distilgpt2(),
            Gpt2Config::gpt2_medium(),
            Gpt2Config::gpt2_large(),
            Gpt2Config::gpt2_xl(),
        ] {
            assert!(c.check().is_ok(), "{c:?}");
        }
        assert_eq!(Gpt2Config::gpt2_medium().num_params(), 354_823_168);
    }
}
