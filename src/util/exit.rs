//! How a failure ends the process. Each error type says which of its cases the user fixes by
//! changing what they passed in, so that the command line only asks the error.

/// The three ways `sweep` fails, with the exit codes the README promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The run failed: a non-finite logit, a full disk, a machine fault (exit 1).
    Failed,
    /// The user fixes it by changing what they passed in: a TOML value, a path, an option,
    /// a results folder of another experiment (exit 2).
    BadInput,
    /// Stopped by Ctrl-C after saving what was done (exit 130, as a shell reports SIGINT).
    Interrupted,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Failed => 1,
            Exit::BadInput => 2,
            Exit::Interrupted => 130,
        }
    }

    /// The exit of a chain of errors: an interruption anywhere wins, then bad input anywhere,
    /// since an outer error may only add context to the inner one that decides.
    pub fn of_chain(exits: impl IntoIterator<Item = Exit>) -> Exit {
        exits.into_iter().fold(Exit::Failed, |a, b| match (a, b) {
            (Exit::Interrupted, _) | (_, Exit::Interrupted) => Exit::Interrupted,
            (Exit::BadInput, _) | (_, Exit::BadInput) => Exit::BadInput,
            _ => Exit::Failed,
        })
    }
}

/// An error that knows how it ends the process.
pub trait ExitStatus: std::error::Error {
    fn exit(&self) -> Exit;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interruption_outranks_bad_input_outranks_failure() {
        assert_eq!(Exit::of_chain([]), Exit::Failed);
        assert_eq!(
            Exit::of_chain([Exit::Failed, Exit::BadInput]),
            Exit::BadInput
        );
        assert_eq!(
            Exit::of_chain([Exit::BadInput, Exit::Interrupted, Exit::Failed]),
            Exit::Interrupted
        );
        assert_eq!(Exit::Interrupted.code(), 130);
    }
}
