//! Progress bars on a terminal; plain, occasional log lines when stderr is a file or pipe
//! (a cluster job's log, CI), where redrawn bars would be noise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar of `len` steps labelled `label`.
pub fn bar(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if std::io::stderr().is_terminal() {
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>10} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} (eta {eta}) {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_prefix(label.to_string());
    bar
}

/// Print a line above `bar` on a terminal, or to stderr as a plain line otherwise; nothing
/// when `quiet`.
pub fn println(bar: &ProgressBar, quiet: bool, line: impl AsRef<str>) {
    if quiet {
        return;
    }
    if bar.is_hidden() {
        eprintln!("{}", line.as_ref());
    } else {
        bar.println(line.as_ref());
    }
}
