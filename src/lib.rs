//! `sweep`: run grids of decoding settings (temperature, top-k, top-p, seeds, beam search) on a
//! GPT-2-architecture model and measure what each changes.
//!
//! Data flows one way: experiment → grid → generate → metrics → report. The lower layers
//! (model, checkpoint, sampling, beam, generate) know nothing of TOML or CSV.

pub mod attention;
pub mod backend;
pub mod beam;
pub mod bench;
pub mod checkpoint;
pub mod compare;
pub mod exp;
pub mod experiment;
pub mod explain;
pub mod generate;
pub mod grid;
pub mod limits;
pub mod matmul;
pub mod metrics;
pub mod model;
pub mod plot;
pub mod progress;
pub mod report;
pub mod runner;
pub mod sampling;
pub mod shard;
pub mod shortlist;
pub mod slurm;
pub mod store;
pub mod summary;
pub mod tokenizer;
pub mod train;

use std::path::PathBuf;

/// The model shipped with `sweep`, used when an experiment or command names none: looked up
/// under the current folder first, then beside the crate's own sources.
pub fn default_model() -> PathBuf {
    let local = PathBuf::from("models/shakespeare");
    if local.exists() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/shakespeare")
}
