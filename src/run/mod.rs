//! Running an experiment: the runner, the results folder it owns, shards and Slurm scripts.

mod jobs;
pub mod runner;
pub mod scoring;
pub mod shard;
pub mod slurm;
pub mod store;
