//! What the binary says when the user gets something wrong: every message names the key or
//! option, its place and the fix, and exits 2; and what it accepts that it used to refuse.
//!
//! These use the tiny random model of `tests/fixtures/tiny-hf` (512-token vocabulary, context
//! 64), so prompts and texts are made of characters whose GPT-2 ids fit in it.

use std::path::{Path, PathBuf};
use std::process::Output;

fn sweep(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sweep"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("runs")
}

fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-hf")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Validates `text` written as `t.toml` and returns (exit code, stderr).
fn validate(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!("model = {:?}\n{text}", tiny_model().display().to_string());
    std::fs::write(dir.path().join("t.toml"), toml).unwrap();
    std::fs::write(dir.path().join("p.csv"), "prompt\na\n").unwrap();
    let out = sweep(dir.path(), &["validate", "t.toml"]);
    (out.status.code(), stderr(&out))
}

/// Asserts a refusal with exit 2 whose message holds every needle.
fn refused(text: &str, needles: &[&str]) {
    let (code, err) = validate(text);
    assert_eq!(code, Some(2), "{text}\n{err}");
    for needle in needles {
        assert!(
            err.contains(needle),
            "{text}\nmissing {needle:?} in:\n{err}"
        );
    }
}

#[test]
fn toml_type_errors_name_the_key_its_place_and_the_fix() {
    // Each line number counts the model line written first by `validate`.
    refused(
        "prompts = [\"a\"]\nmax_new_tokens = [16, 32]\nsamples = 1\n[grid]\ntemperature = 1\n",
        &[
            "t.toml:3:18:",
            "`max_new_tokens`",
            "takes one value, not a list",
            "max_new_tokens = 64",
        ],
    );
    refused(
        "prompts = [\"a\"]\nmax_new_tokens = 4\nsamples = 1\n[grid]\ntop_k = \"x\"\n",
        &["t.toml:6:9:", "`top_k` in [grid]", "top_k = [0, 40]"],
    );
    refused(
        "prompts = [\"a\"]\nmax_new_tokens = 4\nsamples = 1\n[[grid]]\ntop_k = [1, 2.5]\n",
        &["t.toml:6:13:", "`top_k` in [[grid]]", "expected an integer"],
    );
    // A list element on a later line of a multi-line list still names its key.
    refused(
        "prompts = [\n  \"a\",\n  3,\n]\nmax_new_tokens = 4\n[beam]\nnum_beams = 2\n",
        &["t.toml:4:3:", "`prompts`", "expected a string"],
    );
    // An `=` inside a string is not taken for the key's.
    refused(
        "prompts = [\"a=b\", 3]\nmax_new_tokens = 4\n[beam]\nnum_beams = 2\n",
        &["`prompts`", "prompts = ["],
    );
}

#[test]
fn toml_duplicates_name_the_key_and_say_to_keep_one() {
    refused(
        "prompts = [\"a\"]\nmax_new_tokens = 4\nsamples = 1\nsamples = 2\n[grid]\ntop_k = 3\n",
        &[
            "t.toml:5:1:",
            "`samples` is given twice at the top level (first at line 4)",
            "keep one",
        ],
    );
    refused(
        "prompts = [\"a\"]\nmax_new_tokens = 4\nsamples = 1\n[grid]\ntemperature = 1\n\
         [[grid]]\ntop_k = 3\n",
        &[
            "t.toml:7:",
            "[grid] and [[grid]] are both used",
            "use one form",
        ],
    );
}

#[test]
fn a_single_prompt_string_is_a_one_element_list() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "model = {:?}\nprompts = \"a\\n\"\nmax_new_tokens = 4\n[beam]\nnum_beams = 2\n",
        tiny_model().display().to_string()
    );
    std::fs::write(dir.path().join("t.toml"), toml).unwrap();
    let out = sweep(dir.path(), &["validate", "t.toml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout.contains("prompts:   1"), "{stdout}");
    refused(
        "prompts = \"\"\nmax_new_tokens = 4\n[beam]\nnum_beams = 2\n",
        &["t.toml:2:11:", "prompts[0] is empty"],
    );
}

#[test]
fn prompts_files_of_unknown_kinds_are_refused_with_the_kinds() {
    refused(
        "prompts_file = \"p.csv\"\nmax_new_tokens = 4\n[beam]\nnum_beams = 2\n",
        &["t.toml:2:16:", "prompts_file = \"p.csv\"", ".txt", ".jsonl"],
    );
}

#[test]
fn negative_numbers_reach_the_check_that_says_what_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model().display().to_string();
    let out = sweep(
        dir.path(),
        &["generate", "--model", &model, "--temperature", "-1"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--temperature -1: must be 0 (greedy)"),
        "{}",
        stderr(&out)
    );
    let out = sweep(
        dir.path(),
        &["generate", "--model", &model, "--top-k", "-5"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("-5 is negative; give a whole number, 0 or more"),
        "{}",
        stderr(&out)
    );
    let out = sweep(
        dir.path(),
        &["explain", "--model", &model, "--top-p", "-0.5"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--top-p -0.5"), "{}", stderr(&out));
}

#[test]
fn eval_scores_a_file_shorter_than_one_window_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model().display().to_string();
    std::fs::write(dir.path().join("short.txt"), "a b c d e f g h").unwrap();
    let out = sweep(
        dir.path(),
        &["eval", "--model", &model, "--data", "short.txt"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout.contains("short.txt: 8 tokens (shorter than one context window of 64: scored as one window of 7 predictions)"),
        "{stdout}"
    );
    assert!(stdout.contains("perplexity"), "{stdout}");
    std::fs::write(dir.path().join("one.txt"), "a").unwrap();
    let out = sweep(
        dir.path(),
        &["eval", "--model", &model, "--data", "one.txt"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("at least 2"), "{}", stderr(&out));
}

#[test]
fn train_names_the_options_that_differ_from_the_saved_run() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/shakespeare/valid.txt"),
    )
    .unwrap();
    let end = text.char_indices().nth(4_000).unwrap().0;
    std::fs::write(dir.path().join("t.txt"), &text[..end]).unwrap();
    let args = |steps: &'static str, seed: &'static str| {
        vec![
            "train",
            "--train",
            "t.txt",
            "--valid",
            "t.txt",
            "--out",
            "run",
            "--n-layer",
            "1",
            "--n-head",
            "2",
            "--n-embd",
            "16",
            "--context",
            "16",
            "--batch-size",
            "2",
            "--eval-interval",
            "2",
            "--eval-windows",
            "1",
            "--quiet",
            "--steps",
            steps,
            "--seed",
            seed,
        ]
    };
    let out = sweep(dir.path(), &args("2", "1"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = sweep(dir.path(), &args("3", "2"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--seed 1 (now 2)"), "{err}");
    assert!(
        !err.contains("--n-layer") && !err.contains("--steps"),
        "{err}"
    );

    // Another schedule length for steps already taken is named, with the way to train longer.
    let mut longer = args("3", "1");
    longer.extend(["--decay-steps", "3"]);
    let out = sweep(dir.path(), &longer);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    for needle in [
        "--decay-steps 2 (now 3)",
        "give only a larger --steps",
        "--fresh",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }

    // More steps alone extend the finished run, and it says at what learning rate.
    let mut more = args("3", "1");
    more.retain(|a| *a != "--quiet");
    let out = sweep(dir.path(), &more);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("extending a finished run from step 2 to 3")
            && err.contains("--min-learning-rate"),
        "{err}"
    );
    assert!(err.contains("done: step 3"), "{err}");
}

/// A shipped experiment copied to another folder names repository paths: the error says where
/// relative paths are looked up and how to point the file at them.
#[test]
fn a_copied_experiment_says_how_to_point_it_at_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/temps.toml");
    std::fs::copy(&shipped, dir.path().join("temps.toml")).unwrap();
    let out = sweep(dir.path(), &["validate", "temps.toml"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for needle in [
        "does not exist; tried",
        "looked up in the current folder, then beside the TOML file",
        "absolute path",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}
