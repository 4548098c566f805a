//! `sweep compare`: two results folders side by side, written to a CSV of changes.

use std::io::Write;

use anyhow::Result;

use super::args::CompareArgs;
use super::exit::BadInput;

pub fn compare(args: CompareArgs) -> Result<()> {
    if args.out.is_dir() {
        return Err(BadInput(format!(
            "--out {}: is a folder; --out names the CSV file the table of changes is written \
             to: pass a file path, e.g. --out {}",
            args.out.display(),
            args.out.join("compare.csv").display()
        ))
        .into());
    }
    if let Some(parent) = args.out.parent()
        && !parent.as_os_str().is_empty()
        && !parent.is_dir()
    {
        return Err(BadInput(format!(
            "--out {}: the folder {} does not exist; create it, or pass a path in an existing \
             folder",
            args.out.display(),
            parent.display()
        ))
        .into());
    }
    let comparison = sweep::report::compare::compare(&args.a, &args.b)?;
    sweep::report::compare::write_csv(&args.out, &comparison.matched.changes)?;
    write!(
        std::io::stdout().lock(),
        "{}",
        sweep::report::compare::render(&comparison)
    )?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
