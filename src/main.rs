//! The `sweep` command line: argument parsing and dispatch only; the work lives in the
//! library.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
