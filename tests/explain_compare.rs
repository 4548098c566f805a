//! `sweep explain` and `sweep compare` through the real binary.
//!
//! These use the tiny random model of `tests/fixtures/tiny-hf` (512-token vocabulary), so
//! prompts are made of single characters whose GPT-2 ids fit in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sweep() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sweep"))
}

fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-hf")
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    sweep().current_dir(dir).args(args).output().expect("runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `(survivors, vocabulary)` of each stage line `(x) name: N of V tokens survive, ...`.
fn survivors(stdout: &str) -> Vec<(usize, usize)> {
    stdout
        .lines()
        .filter(|l| l.starts_with('(') && l.contains("tokens survive"))
        .map(|l| {
            let after = &l[l.find("): ").expect("stage title") + 3..];
            let words: Vec<&str> = after.split_whitespace().collect();
            assert_eq!(words[1], "of", "{l}");
            (words[0].parse().unwrap(), words[2].parse().unwrap())
        })
        .collect()
}

fn explain(dir: &Path, extra: &[&str]) -> Output {
    let model = tiny_model();
    let mut args = vec!["explain", "--model", model.to_str().unwrap()];
    args.extend_from_slice(extra);
    run_in(dir, &args)
}

#[test]
fn explain_shows_four_stages_that_shrink() {
    let dir = tempfile::tempdir().unwrap();
    let out = explain(
        dir.path(),
        &[
            "--prompt",
            "b c",
            "--temperature",
            "0.7",
            "--top-k",
            "5",
            "--top-p",
            "0.9",
            "--top",
            "8",
        ],
    );
    let stdout = ok(&out);
    for title in [
        "(a) softmax (T = 1)",
        "(b) temperature (T = 0.7)",
        "(c) top-k (k = 5)",
        "(d) top-p (p = 0.9)",
    ] {
        assert!(stdout.contains(title), "{title} missing:\n{stdout}");
    }
    let counts = survivors(&stdout);
    assert_eq!(counts.len(), 4, "{stdout}");
    assert!(counts.iter().all(|&(_, v)| v == 512));
    assert_eq!(counts[0].0, 512);
    assert_eq!(counts[1].0, 512);
    assert_eq!(counts[2].0, 5);
    assert!((1..=5).contains(&counts[3].0), "{counts:?}");
    assert!(stdout.contains("nats") && stdout.contains("bits"));
    assert!(stdout.contains('█'));
    // Stage (c) lists exactly its 5 survivors, and their probabilities sum to 1.
    let stage_c: Vec<&str> = stdout
        .split("(c) ")
        .nth(1)
        .unwrap()
        .split("(d) ")
        .next()
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(stage_c.len(), 5, "{stage_c:?}");
    let total: f64 = stage_c
        .iter()
        .map(|l| {
            l.split_whitespace()
                .find(|w| w.contains('.') && w.parse::<f64>().is_ok())
                .unwrap()
                .parse::<f64>()
                .unwrap()
        })
        .sum();
    assert!((total - 1.0).abs() < 1e-3, "{total}");
    // No --svg, no file.
    assert!(!dir.path().join("explain.svg").exists());
}

#[test]
fn explain_greedy_is_one_token_from_the_temperature_stage_on() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = ok(&explain(
        dir.path(),
        &["--prompt", "a", "--temperature", "0", "--top-k", "50"],
    ));
    let counts: Vec<usize> = survivors(&stdout).into_iter().map(|(s, _)| s).collect();
    assert_eq!(counts, vec![512, 1, 1, 1], "{stdout}");
    assert!(stdout.contains("greedy"), "{stdout}");
}

#[test]
fn explain_writes_an_svg_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    // --svg alone: explain.svg in the current folder.
    let out = explain(
        dir.path(),
        &["--prompt", "a", "--top-k", "5", "--top", "4", "--svg"],
    );
    ok(&out);
    let svg = std::fs::read_to_string(dir.path().join("explain.svg")).unwrap();
    assert!(svg.starts_with("<?xml"), "{svg}");
    assert!(svg.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("class=\"panel\"").count(), 4);
    // Balanced elements and no raw markup characters inside texts: well-formed enough for a
    // browser. The title quotes the prompt, escaped for XML.
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    assert_eq!(svg.matches("<g ").count(), svg.matches("</g>").count());
    assert!(svg.contains("&quot;a&quot;"), "{svg}");
    for text in svg.split("<text").skip(1) {
        let body = &text[text.find('>').unwrap() + 1..text.find("</text>").unwrap()];
        assert!(!body.contains('<') && !body.contains('"'), "{body}");
    }
    // Four tokens per stage with top-k 5 and --top 4: a label and a probability each.
    assert!(svg.matches("<rect").count() >= 2 + 4 * 4);

    // --svg FILE: that file.
    ok(&explain(
        dir.path(),
        &["--prompt", "x", "--svg", "chart.svg", "--top", "3"],
    ));
    assert!(dir.path().join("chart.svg").is_file());
}

#[test]
fn explain_rejects_bad_settings_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--top-p", "0"][..],
        &["--temperature", "-1"],
        &["--top", "0"],
    ] {
        let out = explain(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

fn experiment(name: &str, top_k: &str) -> String {
    experiment_with(name, top_k, &["a", "b c"], 10)
}

fn experiment_with(name: &str, top_k: &str, prompts: &[&str], max_new_tokens: usize) -> String {
    format!(
        r#"name = "{name}"
model = "{}"
prompts = {prompts:?}
max_new_tokens = {max_new_tokens}
samples = 6
batch_size = 8

[grid]
temperature = [0.0, 0.9]
top_k = {top_k}
seed = 1

[beam]
num_beams = 2
"#,
        tiny_model().display()
    )
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// Two runs of the tiny model that differ in one grid value (top_k 20 vs 30).
fn two_runs(dir: &Path) {
    two_runs_of(
        dir,
        [experiment("a", "[0, 20]"), experiment("b", "[0, 30]")],
    );
}

/// Runs of two experiments into `runs/a` and `runs/b`.
fn two_runs_of(dir: &Path, experiments: [String; 2]) {
    for (name, text) in ["a", "b"].into_iter().zip(experiments) {
        let toml = dir.join(format!("{name}.toml"));
        std::fs::write(&toml, text).unwrap();
        ok(&run_in(
            dir,
            &[
                "run",
                toml.to_str().unwrap(),
                "--out",
                &format!("runs/{name}"),
                "--quiet",
            ],
        ));
    }
}

const METRICS: [&str; 20] = [
    "mean_perplexity",
    "corpus_perplexity",
    "distinct_1",
    "distinct_2",
    "distinct_3",
    "self_bleu_4",
    "self_bleu_4_tokens",
    "zipf_coefficient",
    "repetition_rate",
    "seq_rep_4",
    "rep_2",
    "rep_3",
    "rep_4",
    "diversity",
    "compression_ratio",
    "mean_tokens",
    "eos_rate",
    "scorer_mean_perplexity",
    "scorer_corpus_perplexity",
    "coherence",
];

#[test]
fn compare_shows_what_differs_and_writes_matched_rows() {
    let dir = tempfile::tempdir().unwrap();
    two_runs(dir.path());
    let out = run_in(dir.path(), &["compare", "runs/a", "runs/b"]);
    let stdout = ok(&out);

    // The header: same model, backend and build; the grid's top_k differs.
    assert!(stdout.contains("model sha256   same:"), "{stdout}");
    assert!(stdout.contains("backend        same:"), "{stdout}");
    let top_k_line = stdout
        .lines()
        .find(|l| l.contains("experiment.grid.top_k"))
        .unwrap_or_else(|| panic!("no top_k difference in\n{stdout}"));
    assert!(
        top_k_line.contains("[0,20]") && top_k_line.contains("[0,30]"),
        "{top_k_line}"
    );
    assert!(!stdout.contains("experiment.grid.temperature"), "{stdout}");
    assert!(stdout.contains("experiment.name"), "{stdout}");
    // Settings only one run has.
    assert!(
        stdout.contains("only in A: sample_t0.9_k20_p1_s1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("only in B: sample_t0.9_k30_p1_s1"),
        "{stdout}"
    );

    // compare.csv in the current folder: every metric of the three shared settings.
    let csv_path = dir.path().join("compare.csv");
    let raw = std::fs::read(&csv_path).unwrap();
    assert!(raw.windows(2).any(|w| w == b"\r\n"));
    let (header, rows) = read_csv(&csv_path);
    assert_eq!(
        header,
        [
            "setting",
            "metric",
            "a",
            "b",
            "change",
            "change_lo",
            "change_hi",
            "significant",
            "test"
        ]
    );
    let shared = ["greedy", "sample_t0.9_k0_p1_s1", "beam_n2_lp1"];
    assert_eq!(rows.len(), shared.len() * METRICS.len());
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], shared[i / METRICS.len()]);
        assert_eq!(row[1], METRICS[i % METRICS.len()]);
    }
    // Same model, prompts and seeds: the shared settings are identical, so every change is 0,
    // and the runs share their prompts, so a paired test judges it: the difference is 0 on
    // every prompt, its interval is [0, 0], which does not exclude 0.
    assert!(
        stdout.contains("test: paired, over the 2 prompts both runs share"),
        "{stdout}"
    );
    let (sh, summary) = read_csv(&dir.path().join("runs/a/summary.csv"));
    let col = |name: &str| sh.iter().position(|h| h == name);
    let mut paired = 0;
    for row in &rows {
        let source = summary.iter().find(|r| r[0] == row[0]).unwrap();
        // A metric the runs do not have (the scorer's, without one) is empty on both sides.
        let cell = col(&row[1]).map_or("", |c| source[c].as_str());
        assert_eq!(row[2], cell, "{row:?}");
        assert_eq!(row[2], row[3], "{row:?}");
        if !row[2].is_empty() {
            assert_eq!(row[4], "0", "{row:?}");
        }
        match row[7].as_str() {
            "false" => {
                paired += 1;
                assert!(row[8].starts_with("paired_"), "{row:?}");
                assert_eq!((row[5].as_str(), row[6].as_str()), ("0", "0"), "{row:?}");
            }
            // Undefined on one prompt's texts (e.g. Self-BLEU of greedy's single text):
            // no verdict.
            "" => assert_eq!(row[8], "", "{row:?}"),
            other => panic!("significant = {other} for identical runs: {row:?}"),
        }
    }
    // The sampling setting's texts define every metric but the scorer's (there is none); the
    // others' single texts per prompt leave some undefined.
    let sampled = rows
        .iter()
        .filter(|r| r[0] == "sample_t0.9_k0_p1_s1" && r[7] == "false")
        .count();
    assert_eq!(sampled, METRICS.len() - 3, "{rows:?}");
    assert!(paired >= 2 * 16, "{paired} paired verdicts");
    assert!(
        !stdout.lines().any(|l| l.trim_end().ends_with('*')),
        "{stdout}"
    );

    // --out chooses the file; the reverse comparison swaps the only-in lists.
    let out = run_in(
        dir.path(),
        &["compare", "runs/b", "runs/a", "--out", "b-vs-a.csv"],
    );
    let stdout = ok(&out);
    assert!(dir.path().join("b-vs-a.csv").is_file());
    assert!(
        stdout.contains("only in A: sample_t0.9_k30_p1_s1"),
        "{stdout}"
    );
}

/// Runs whose prompts differ cannot be paired: a change is significant when the runs'
/// intervals do not overlap, and the output says that this is the test used.
#[test]
fn compare_marks_disjoint_intervals_significant() {
    let dir = tempfile::tempdir().unwrap();
    two_runs_of(
        dir.path(),
        [
            experiment_with("a", "[0, 20]", &["a", "b c"], 10),
            experiment_with("b", "[0, 30]", &["a", "b d"], 10),
        ],
    );
    // Move B's greedy perplexity interval far above A's: a significant change.
    let path = dir.path().join("runs/b/summary.csv");
    let (header, mut rows) = read_csv(&path);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let greedy = rows.iter_mut().find(|r| r[0] == "greedy").unwrap();
    greedy[col("mean_perplexity")] = "1000".into();
    greedy[col("mean_perplexity_lo")] = "900".into();
    greedy[col("mean_perplexity_hi")] = "1100".into();
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(&header).unwrap();
    for r in &rows {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
    drop(w);

    let stdout = ok(&run_in(dir.path(), &["compare", "runs/a", "runs/b"]));
    assert!(
        stdout.contains(
            "test: unpaired, whether the runs' 95 % intervals overlap (the runs' prompts differ)"
        ),
        "{stdout}"
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("greedy") && l.contains("mean_perplexity"))
        .unwrap();
    assert!(line.trim_end().ends_with('*'), "{line}");
    let (_, out) = read_csv(&dir.path().join("compare.csv"));
    let row = out
        .iter()
        .find(|r| r[0] == "greedy" && r[1] == "mean_perplexity")
        .unwrap();
    assert_eq!(row[3], "1000");
    assert_eq!(row[7], "true");
    assert_eq!(row[8], "interval_overlap");
    assert_eq!((row[5].as_str(), row[6].as_str()), ("", ""));
    // Only the metrics with intervals in summary.csv get a verdict.
    for row in &out {
        let has_interval = matches!(
            row[1].as_str(),
            "mean_perplexity" | "distinct_2" | "self_bleu_4" | "repetition_rate"
        );
        if !has_interval {
            assert_eq!((row[7].as_str(), row[8].as_str()), ("", ""), "{row:?}");
        }
    }
    let a: f64 = row[2].parse().unwrap();
    let change: f64 = row[4].parse().unwrap();
    assert!((change - (1000.0 - a)).abs() < 1e-6, "{row:?}");
}

/// Runs on the same eight prompts that differ in length: the paired test finds the change in
/// `mean_tokens` on every shared setting, with an interval of the difference that excludes 0,
/// where the unpaired rule has no interval to decide with. Without one run's samples.csv the
/// comparison falls back to the unpaired rule and says why.
#[test]
fn compare_pairs_runs_on_the_same_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = ["a", "b", "c", "d", "e", "f", "g", "b c"];
    two_runs_of(
        dir.path(),
        [
            experiment_with("a", "[0]", &prompts, 4),
            experiment_with("b", "[0]", &prompts, 24),
        ],
    );
    let stdout = ok(&run_in(dir.path(), &["compare", "runs/a", "runs/b"]));
    assert!(
        stdout.contains("test: paired, over the 8 prompts both runs share"),
        "{stdout}"
    );
    assert!(stdout.contains("experiment.max_new_tokens"), "{stdout}");
    let (header, rows) = read_csv(&dir.path().join("compare.csv"));
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let tokens: Vec<&Vec<String>> = rows.iter().filter(|r| r[1] == "mean_tokens").collect();
    assert_eq!(tokens.len(), 3, "{rows:?}");
    for row in tokens {
        let lo: f64 = row[col("change_lo")].parse().unwrap();
        let change: f64 = row[col("change")].parse().unwrap();
        assert!(lo > 0.0 && lo <= change, "{row:?}");
        assert_eq!(row[col("significant")], "true", "{row:?}");
        assert_eq!(row[col("test")], "paired_bootstrap", "{row:?}");
    }
    let line = stdout
        .lines()
        .skip_while(|l| !l.starts_with("greedy"))
        .find(|l| l.contains("mean_tokens"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.trim_end().ends_with('*'), "{line}");
    let d2 = rows
        .iter()
        .find(|r| r[0] == "sample_t0.9_k0_p1_s1" && r[1] == "distinct_2")
        .unwrap();
    assert_eq!(d2[col("test")], "paired_jackknife", "{d2:?}");

    std::fs::remove_file(dir.path().join("runs/b/samples.csv")).unwrap();
    let stdout = ok(&run_in(dir.path(), &["compare", "runs/a", "runs/b"]));
    let line = stdout
        .lines()
        .find(|l| l.starts_with("test: unpaired"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("samples.csv is missing"), "{line}");
    let (_, rows) = read_csv(&dir.path().join("compare.csv"));
    assert!(
        rows.iter()
            .all(|r| r[8].is_empty() || r[8] == "interval_overlap")
    );
    assert!(rows.iter().any(|r| r[8] == "interval_overlap"));
}

#[test]
fn compare_of_a_missing_folder_or_summary_exits_2_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let out = run_in(dir.path(), &["compare", "no-such-run", "empty"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no-such-run"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let out = run_in(dir.path(), &["compare", "empty", "empty"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("summary.csv"), "{stderr}");
    assert!(!dir.path().join("compare.csv").exists());
}
