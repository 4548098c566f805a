//! How an error ends the process: the exit code its chain asks for, and the error for a
//! mistake in the command line, which the library's errors do not cover.

use sweep::util::exit::{Exit, ExitStatus};

/// How `err` ends the process, as the errors in its chain say (see [`ExitStatus`]).
pub fn exit_of(err: &anyhow::Error) -> Exit {
    use sweep::engine::{backend, checkpoint, generate};
    use sweep::{report::compare, run, spec::experiment, tools::train};
    fn status<E: ExitStatus + 'static>(e: &(dyn std::error::Error + 'static)) -> Option<Exit> {
        e.downcast_ref::<E>().map(ExitStatus::exit)
    }
    Exit::of_chain(err.chain().filter_map(|e| {
        status::<checkpoint::CheckpointError>(e)
            .or_else(|| status::<generate::GenerateError>(e))
            .or_else(|| status::<backend::BackendError>(e))
            .or_else(|| status::<train::TrainError>(e))
            .or_else(|| status::<experiment::ExperimentError>(e))
            .or_else(|| status::<compare::CompareError>(e))
            .or_else(|| status::<run::runner::RunError>(e))
            .or_else(|| status::<run::store::StoreError>(e))
            .or_else(|| status::<run::scoring::ScoreError>(e))
            .or_else(|| status::<run::scoring::FolderError>(e))
            .or_else(|| status::<run::shard::ShardError>(e))
            .or_else(|| status::<run::slurm::SlurmError>(e))
            .or_else(|| status::<BadInput>(e))
    }))
}

/// A mistake in what the user passed on the command line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

impl ExitStatus for BadInput {
    fn exit(&self) -> Exit {
        Exit::BadInput
    }
}
