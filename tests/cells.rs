//! What each cell of the reports holds: parameters only where they apply, undefined metrics
//! as empty cells, a human row without a speed, a `run.json` that keeps the run's times
//! across reruns, and the beam baseline as named or as picked (and said so).
//!
//! These use the tiny random model of `tests/fixtures/tiny-hf` (512-token vocabulary), so
//! prompts are made of single characters whose GPT-2 ids fit in it.

mod common;
use common::csv_rows;
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

/// One prompt with a human reference; one token per text, so that no text has a bigram.
/// Three length penalties of one width, which cannot differ on one-token texts.
fn experiment(dir: &Path, baseline: &str) -> PathBuf {
    std::fs::write(
        dir.join("p.jsonl"),
        "{\"prompt\": \"a\", \"reference\": \"b c d\"}\n",
    )
    .unwrap();
    let toml = format!(
        r#"name = "t"
model = "{}"
prompts_file = "p.jsonl"
max_new_tokens = 1
samples = 2
batch_size = 8
baseline = {baseline}

[grid]
temperature = [0.0, 0.8]
top_k = [0, 20]
seed = [1]

[beam]
num_beams = [2]
length_penalty = [0.5, 1.0, 2.0]
"#,
        tiny_model().display()
    );
    let path = dir.join("t.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn run_json(results: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(results.join("run.json")).unwrap()).unwrap()
}

const PARAMETERS: [&str; 6] = [
    "temperature",
    "top_k",
    "top_p",
    "seed",
    "num_beams",
    "length_penalty",
];

/// The parameters a strategy has; every other parameter cell must be empty.
fn applies(strategy: &str) -> &'static [&'static str] {
    match strategy {
        "sample" => &["temperature", "top_k", "top_p", "seed"],
        "greedy" => &["temperature"],
        "beam" => &["num_beams", "length_penalty"],
        "human" => &[],
        other => panic!("unknown strategy {other}"),
    }
}

fn check_parameters(file: &str, rows: &[std::collections::HashMap<String, String>]) {
    for row in rows {
        let strategy = row["strategy"].as_str();
        for p in PARAMETERS {
            let cell = &row[p];
            if applies(strategy).contains(&p) {
                assert!(!cell.is_empty(), "{file} {}: {p} is empty", row["setting"]);
            } else {
                assert_eq!(cell, "", "{file} {}: {p} does not apply", row["setting"]);
            }
        }
        if strategy == "greedy" {
            assert_eq!(row["temperature"], "0", "{file}: greedy is temperature 0");
        }
    }
}

// Beam rows once read `temperature 0, top_k 0, top_p 1` and sampling rows `num_beams 1`, so
// a filter on `temperature == 0` took every beam row for greedy; greedy texts without a
// bigram read `distinct_2 = 0`; the human row had a speed and a "1 texts" line.
#[test]
fn parameters_and_undefined_metrics_are_empty_cells() {
    let dir = tempfile::tempdir().unwrap();
    let toml = experiment(dir.path(), "2");
    let stderr = ok(&run_in(dir.path(), &[toml.to_str().unwrap()]));
    let results = dir.path().join("results/t");

    let summary = csv_rows(&results.join("summary.csv"));
    let strategies: Vec<&str> = summary.iter().map(|r| r["strategy"].as_str()).collect();
    for s in ["sample", "greedy", "beam", "human"] {
        assert!(strategies.contains(&s), "no {s} row: {strategies:?}");
    }
    check_parameters("summary.csv", &summary);
    check_parameters("samples.csv", &csv_rows(&results.join("samples.csv")));

    for row in &summary {
        // One token per text: no bigrams or trigrams anywhere, so both are undefined.
        for m in ["distinct_2", "distinct_3"] {
            assert_eq!(row[m], "", "{}: {m} has no n-grams", row["setting"]);
        }
        let speed = &row["tokens_per_s"];
        if row["strategy"] == "human" {
            assert_eq!(speed, "", "the human row generates nothing");
        } else {
            assert!(!speed.is_empty(), "{}: no tokens_per_s", row["setting"]);
        }
    }
    let run = run_json(&results);
    let human = run["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["strategy"] == "human")
        .unwrap();
    assert!(human["tokens_per_s"].is_null(), "{human}");

    assert!(!stderr.contains("1 texts"), "{stderr}");
    let human_line = stderr
        .lines()
        .find(|l| l.contains("] human:"))
        .unwrap_or_else(|| panic!("no human line: {stderr}"));
    assert!(human_line.contains("1 reference scored"), "{human_line}");
    assert!(!human_line.contains("tokens/s"), "{human_line}");
}

// A beam width with several length penalties gave a baseline picked without a word, and the
// identical beams of one-length hypotheses looked like three results.
#[test]
fn the_baseline_is_a_width_or_a_setting_and_the_pick_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let toml = experiment(dir.path(), "2");
    let stderr = ok(&run_in(dir.path(), &[toml.to_str().unwrap()]));
    let results = dir.path().join("results/t");
    let picked = run_json(&results)["baseline"].as_str().unwrap().to_owned();
    // One-token beams score alike: a tie goes to the first length penalty written.
    assert_eq!(picked, "beam_n2_lp0.5");
    assert!(
        stderr.contains(&format!("baseline: {picked} (")),
        "the pick is not said: {stderr}"
    );
    assert!(
        stderr.contains(", tied, so the first in [beam] order"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the highest mean log-probability per token"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "warning: length_penalty 0.5, 1, 2 give the same beams for num_beams = 2: no \
             hypothesis ended before max_new_tokens"
        ),
        "{stderr}"
    );

    // Named by its id: that setting, whichever scores best, and nothing to explain.
    let dir = tempfile::tempdir().unwrap();
    let toml = experiment(dir.path(), "\"beam_n2_lp2\"");
    let stderr = ok(&run_in(dir.path(), &[toml.to_str().unwrap()]));
    assert!(!stderr.contains("baseline: "), "{stderr}");
    let results = dir.path().join("results/t");
    for row in csv_rows(&results.join("summary.csv")) {
        assert_eq!(row["baseline"], "beam_n2_lp2");
    }
    let run = run_json(&results);
    assert_eq!(run["baseline"], "beam_n2_lp2");
    assert_eq!(run["experiment"]["baseline"], "beam_n2_lp2");

    // An id the beam table does not make is bad input, naming the ones it does.
    let dir = tempfile::tempdir().unwrap();
    let toml = experiment(dir.path(), "\"beam_n4_lp1\"");
    let out = run_in(dir.path(), &[toml.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("baseline = \"beam_n4_lp1\" is not a beam setting of this experiment")
            && stderr.contains("beam_n2_lp0.5, beam_n2_lp1, beam_n2_lp2"),
        "{stderr}"
    );
    assert!(!dir.path().join("results/t").exists());
}

// A rerun that found everything saved replaced the run's times with its own 0.02 s, and
// `experiment.model` and `experiment.baseline` were null though run.json fills in defaults.
#[test]
fn a_rerun_that_ran_nothing_keeps_the_run_times_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let toml = experiment(dir.path(), "2");
    ok(&run_in(dir.path(), &[toml.to_str().unwrap()]));
    let results = dir.path().join("results/t");
    let first = run_json(&results);
    assert_eq!(first["invocations"].as_array().unwrap().len(), 1);
    assert!(
        first["experiment"]["model"]
            .as_str()
            .unwrap()
            .ends_with("tiny-hf")
    );
    assert_eq!(first["experiment"]["baseline"], first["baseline"]);
    assert!(first["baseline"].as_str().unwrap().starts_with("beam_n2_"));

    // The clock readings have one-second resolution: make a new one visible.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ok(&run_in(dir.path(), &[toml.to_str().unwrap()]));
    let second = run_json(&results);
    for key in ["started", "finished", "wall_s"] {
        assert_eq!(
            second[key], first[key],
            "{key} changed by a rerun that ran nothing"
        );
    }
    let invocations = second["invocations"].as_array().unwrap();
    assert_eq!(invocations.len(), 2);
    assert_eq!(invocations[0], first["invocations"][0]);
    let settings = first["settings"].as_array().unwrap().len();
    assert_eq!(invocations[0]["settings_run"], settings);
    assert!(invocations[0]["rows"].as_u64().unwrap() > 0);
    assert_eq!(invocations[1]["settings_run"], 0);
    assert_eq!(invocations[1]["rows"], 0);
    assert_ne!(invocations[1]["started"], invocations[0]["started"]);

    // Starting over (--force), or in a folder that holds only a copied run.json, is a new
    // run: the old record is not its history.
    ok(&run_in(dir.path(), &[toml.to_str().unwrap(), "--force"]));
    let forced = run_json(&results);
    assert_eq!(forced["invocations"].as_array().unwrap().len(), 1);
    assert_ne!(forced["started"], first["started"]);
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(results.join("run.json"), copy.join("run.json")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ok(&run_in(
        dir.path(),
        &[toml.to_str().unwrap(), "--out", copy.to_str().unwrap()],
    ));
    let fresh = run_json(&copy);
    assert_eq!(fresh["invocations"].as_array().unwrap().len(), 1);
    assert_ne!(fresh["started"], forced["started"]);
}
