//! `sweep`: run grids of decoding settings (temperature, top-k, top-p, seeds, beam search) on a
//! GPT-2-architecture model and measure what each changes.
//!
//! Data flows one way: experiment → grid → generate → metrics → report, and the folders are
//! its layers, each importing only from those listed before it:
//!
//! - [`util`]: progress bars and atomic files, used everywhere;
//! - [`engine`]: the model and its kernels, checkpoints, the tokenizer, sampling, beam search
//!   and generation; it knows nothing of TOML or CSV;
//! - [`spec`]: what to run: the experiment file, its grid of settings, and the limits checked
//!   before any work;
//! - [`tools`]: commands beside a sweep (training, benchmarks, the pipeline explainer);
//! - [`report`]: metrics, summaries, CSV and run records, plots, comparisons of runs;
//! - [`run`]: the runner, the results folder it owns, shards and Slurm scripts.
//!
//! The command line (`src/cli/`) sits on top, in the binary.

pub mod engine;
pub mod report;
pub mod run;
pub mod spec;
pub mod tools;
pub mod util;
