//! Commands beside a sweep: training a model, benchmarks, and the pipeline explainer.

pub mod bench;
pub mod explain;
pub mod train;
