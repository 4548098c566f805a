//! The decoding engine: a GPT-2 and its kernels, checkpoints, the tokenizer, the sampling
//! pipeline, beam search and generation. Nothing here reads TOML or writes CSV.

pub mod backend;
pub mod beam;
pub mod checkpoint;
pub mod contrastive;
pub mod generate;
pub mod kernels;
#[cfg(feature = "tch")]
pub mod libtorch;
pub mod model;
pub mod processors;
pub mod sampling;
pub mod score;
pub mod shipped;
pub mod shortlist;
pub mod step_profile;
pub mod tokenizer;
