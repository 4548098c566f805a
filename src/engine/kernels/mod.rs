//! The CPU kernels decoding runs on: a vector exponential, packed matrix products and
//! attention over a KV cache.

pub mod attention;
pub mod exponential;
pub mod matmul;
