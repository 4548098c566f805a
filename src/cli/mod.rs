//! The command line: flags parsed in `args`, one file per command (or small group), and
//! `main`, which dispatches to them and turns an error into its exit code.

mod args;
mod bench;
mod cluster;
mod common;
mod compare;
mod exit;
mod explain;
mod generate;
mod peer;
mod run;
mod train;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use exit::exit_of;

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Some(Command::Run(args)) => run::run(args),
        Some(Command::Validate { experiment }) => run::validate(&experiment),
        Some(Command::Score(args)) => run::score(args),
        Some(Command::Generate(args)) => generate::generate(args),
        Some(Command::Train(args)) => train::train(args),
        Some(Command::Eval(args)) => train::eval(args),
        Some(Command::Bench(args)) => bench::bench(args),
        Some(Command::Explain(args)) => explain::explain(args),
        Some(Command::Compare(args)) => compare::compare(args),
        Some(Command::Slurm(args)) => cluster::slurm(args),
        Some(Command::Merge(args)) => cluster::merge(args),
        None if cli.run.experiment.is_some() => run::run(cli.run),
        None => {
            let _ = <Cli as clap::CommandFactory>::command().print_help();
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::from(exit_of(&err).code())
        }
    }
}
