//! GPT-2, read top to bottom like the paper: token + position embeddings, `n_layer`
//! pre-LayerNorm blocks of causal self-attention and a GELU MLP (GPT-2's tanh `gelu_new`, or
//! the exact GELU nanoGPT trains with), a final LayerNorm, and an LM head tied to the token
//! embedding.
//!
//! The model knows nothing of files, TOML or sampling: `checkpoint` fills its weights,
//! `generate` drives it. Linear weights are stored `[in, out]`, the layout of Hugging Face's
//! `Conv1D`, so GPT-2 checkpoints load without a transpose.
//!
//! `config` holds the shape read from `config.json`, `tensor` the burn module that trains and
//! runs on any device, `host` the copy of it that decodes on the CPU, and `cache` the keys and
//! values either of them keeps between decoding steps.

mod cache;
mod config;
mod host;
mod tensor;

pub use cache::KvCache;
pub use config::{
    Activation, ConfigError, Gpt2Config, MAX_N_EMBD, MAX_N_HEAD, MAX_N_LAYER, MAX_N_POSITIONS,
    MAX_VOCAB_SIZE,
};
pub use host::{HostModel, gelu_in_place, gelu_new_in_place};
pub use tensor::{Attention, Block, Gpt2, Mlp, Precision, gelu_new};
