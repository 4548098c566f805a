//! Progress bars on a terminal; plain, occasional log lines when stderr is a file or pipe
//! (a cluster job's log, CI), where redrawn bars would be noise. The bar styles and the short
//! messages they show are pure functions of the terminal's width, so they are tested here.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

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

/// A run's two bars on a terminal: the settings finished of all, and the batch in flight
/// below it. Both are drawn by one `MultiProgress` from the moment they exist, so neither is
/// ever drawn on its own first (which left copies of the bar on the screen). Without a
/// terminal, or when quiet, the bars are hidden and [`println()`] writes plain lines.
pub struct Bars {
    multi: Option<MultiProgress>,
    width: usize,
}

impl Bars {
    pub fn new(quiet: bool) -> Self {
        let multi = (!quiet && std::io::stderr().is_terminal()).then(MultiProgress::new);
        Self {
            multi,
            width: terminal_width(),
        }
    }

    /// The bar of settings finished, of `len` in all.
    pub fn overall(&self, len: u64) -> ProgressBar {
        let bar = self.add(len, overall_template(self.width), "settings");
        bar.set_prefix("sweep");
        bar
    }

    /// The bar of one batch of settings, counting `unit`s (tokens, references) of `len`,
    /// with `message` saying which settings it runs, cut to the room the terminal leaves.
    pub fn batch(&self, len: u64, unit: &str, message: &str) -> ProgressBar {
        let template = batch_template(self.width);
        let bar = self.add(len, template, unit);
        bar.set_message(fit(
            message,
            self.width.saturating_sub(fixed_width(template, unit)),
        ));
        bar
    }

    fn add(&self, len: u64, template: &str, unit: &str) -> ProgressBar {
        let Some(multi) = &self.multi else {
            return ProgressBar::hidden();
        };
        let bar = multi.add(ProgressBar::new(len));
        let unit = unit.to_owned();
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("valid template")
                .with_key(
                    "rate",
                    move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{} {unit}/s", rate_text(state.per_sec()));
                    },
                )
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    }
}

/// Columns of the terminal on stderr; 80 when it cannot be told.
fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ only writes the `winsize` it is given.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 {
        size.ws_col as usize
    } else {
        80
    }
}

/// The overall bar's template for a terminal `width` columns wide: the parts that fit, most
/// useful first, so that the line never wraps.
pub fn overall_template(width: usize) -> &'static str {
    // No ETA here: settings finish in batches, so their rate says little until the end; the
    // batch bar's ETA, from tokens, is the one to read.
    if width >= 72 {
        "{prefix:.bold} [{bar:24.cyan/blue}] {pos}/{len} settings · {elapsed_precise}"
    } else if width >= 30 {
        "{pos}/{len} settings · {elapsed}"
    } else {
        "{pos}/{len}"
    }
}

/// The batch bar's template for a terminal `width` columns wide; the message takes what room
/// is left.
pub fn batch_template(width: usize) -> &'static str {
    if width >= 100 {
        "[{bar:20.cyan/blue}] {percent:>3}% · {rate} · eta {eta} · {wide_msg}"
    } else if width >= 72 {
        "{percent:>3}% · {rate} · eta {eta} · {wide_msg}"
    } else if width >= 40 {
        "{percent:>3}% · {rate} · {wide_msg}"
    } else {
        "{percent:>3}% {wide_msg}"
    }
}

/// The columns a template's parts other than its message take, with the widest values they
/// commonly show (a 5-digit rate of `unit`s, a 3-character ETA, 4-digit counts); a wider
/// value takes its room from the message, which the bar then cuts.
fn fixed_width(template: &str, unit: &str) -> usize {
    let mut text = template.to_owned();
    for (key, widest) in [
        ("{prefix:.bold}", "sweep".to_owned()),
        ("{bar:24.cyan/blue}", " ".repeat(24)),
        ("{bar:20.cyan/blue}", " ".repeat(20)),
        ("{percent:>3}", "100".to_owned()),
        ("{rate}", format!("12345 {unit}/s")),
        ("{eta}", "59m".to_owned()),
        ("{elapsed_precise}", "00:00:00".to_owned()),
        ("{elapsed}", "59m".to_owned()),
        ("{pos}", "9999".to_owned()),
        ("{len}", "9999".to_owned()),
        ("{wide_msg}", String::new()),
    ] {
        text = text.replace(key, &widest);
    }
    text.chars().count()
}

/// A speed as a whole number, or with one decimal below 10 (a slow CPU run).
fn rate_text(per_sec: f64) -> String {
    if !per_sec.is_finite() {
        "0".to_owned()
    } else if per_sec < 10.0 {
        format!("{per_sec:.1}")
    } else {
        format!("{per_sec:.0}")
    }
}

/// `text` cut to `width` characters, ending in "…" where it was cut.
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut cut: String = text.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

/// A number as short as it reads: `1`, `0.7`, `200`.
fn short_number(x: f64) -> String {
    let text = format!("{x}");
    match text.strip_suffix(".0") {
        Some(whole) => whole.to_owned(),
        None => text,
    }
}

/// A batch's settings in a few words: how many, then for each knob its value, or the range
/// of its values, where the settings have one (`None` for a knob the setting lacks).
/// `("t", …)` becomes `t 1` or `t 0.7–1`, knobs in the order given: the ids themselves,
/// one per setting, would not fit on a line.
pub fn batch_message(what: &str, count: usize, knobs: &[(&str, Vec<Option<f64>>)]) -> String {
    let mut parts = vec![format!(
        "{count} {what}{}",
        if count == 1 { "" } else { "s" }
    )];
    for (name, values) in knobs {
        let values: Vec<f64> = values.iter().flatten().copied().collect();
        let Some(low) = values.iter().copied().reduce(f64::min) else {
            continue;
        };
        let high = values.iter().copied().fold(low, f64::max);
        if low == high {
            parts.push(format!("{name} {}", short_number(low)));
        } else {
            parts.push(format!(
                "{name} {}–{}",
                short_number(low),
                short_number(high)
            ));
        }
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_said_by_its_count_and_the_ranges_of_its_knobs() {
        let message = batch_message(
            "setting",
            16,
            &[
                ("t", vec![Some(1.0); 16]),
                (
                    "k",
                    (0..16)
                        .map(|i| Some(if i < 8 { 0.0 } else { 200.0 }))
                        .collect(),
                ),
                ("p", vec![Some(0.7), Some(1.0), Some(0.9)]),
            ],
        );
        assert_eq!(message, "16 settings · t 1 · k 0–200 · p 0.7–1");
    }

    #[test]
    fn a_knob_no_setting_has_is_left_out_and_one_setting_is_singular() {
        let message = batch_message(
            "setting",
            1,
            &[("beams", vec![Some(4.0)]), ("lp", vec![None])],
        );
        assert_eq!(message, "1 setting · beams 4");
    }

    #[test]
    fn a_message_is_cut_to_the_width_with_an_ellipsis() {
        assert_eq!(fit("16 settings · t 1", 40), "16 settings · t 1");
        assert_eq!(fit("16 settings · t 1", 17), "16 settings · t 1");
        assert_eq!(fit("16 settings · t 1", 10), "16 settin…");
        assert_eq!(fit("k 0–200", 4), "k 0…");
        assert_eq!(fit("anything", 0), "");
    }

    #[test]
    fn every_template_leaves_room_in_its_width() {
        for width in [20, 30, 39, 40, 71, 72, 99, 100, 200] {
            for template in [overall_template(width), batch_template(width)] {
                assert!(
                    fixed_width(template, "references") <= width.max(16),
                    "{template} does not fit in {width} columns"
                );
                ProgressStyle::with_template(template).expect("valid template");
            }
        }
    }

    #[test]
    fn speeds_read_as_whole_numbers_above_ten() {
        assert_eq!(rate_text(1234.56), "1235");
        assert_eq!(rate_text(3.21), "3.2");
        assert_eq!(rate_text(f64::NAN), "0");
    }
}
