//! The CPU kernels decoding runs on: a vector exponential and error function, packed matrix
//! products and attention over a KV cache.

pub mod attention;
pub mod erf;
pub mod exponential;
pub mod matmul;
