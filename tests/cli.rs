//! The real binary on real files: experiments that run, experiments that are wrong, runs that
//! are interrupted and resumed, and samples that must not depend on batch size or threads.
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

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn experiment(model: &Path, extra: &str) -> String {
    format!(
        r#"name = "t"
model = "{}"
prompts = ["a", "b c", "x"]
max_new_tokens = 24
samples = 5
batch_size = 4
{extra}
"#,
        model.display()
    )
}

const GRID: &str = r#"
[grid]
temperature = [0.0, 0.8, 1.3]
top_k = [0, 20]
top_p = [0.9, 1.0]
seed = [1, 2]

[beam]
num_beams = [2, 4]
length_penalty = [1.0, 0.6]
"#;

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

fn column(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

/// The CSVs with timing columns blanked, for comparing runs.
fn without_timing(path: &Path) -> Vec<Vec<String>> {
    let (header, mut rows) = read_csv(path);
    if let Some(i) = header.iter().position(|h| h == "tokens_per_s") {
        for r in &mut rows {
            r[i].clear();
        }
    }
    rows
}

#[test]
fn a_good_experiment_writes_consistent_csvs() {
    let dir = tempfile::tempdir().unwrap();
    let toml = write(dir.path(), "t.toml", &experiment(&tiny_model(), GRID));
    let out = run_in(dir.path(), &[toml.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = dir.path().join("results/t");
    let (header, rows) = read_csv(&results.join("summary.csv"));
    for name in [
        "setting",
        "strategy",
        "temperature",
        "top_k",
        "top_p",
        "seed",
        "num_beams",
        "length_penalty",
        "samples",
        "mean_perplexity",
        "corpus_perplexity",
        "distinct_1",
        "distinct_2",
        "distinct_3",
        "mean_tokens",
        "eos_rate",
        "tokens_per_s",
        "distinct_2_vs_beam",
    ] {
        column(&header, name);
    }
    // 3 temperatures × 2 × 2 × 2 seeds, the 8 greedy points folded into one, plus 4 beams.
    let strategies: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(strategies.iter().filter(|s| **s == "sample").count(), 16);
    assert_eq!(strategies.iter().filter(|s| **s == "greedy").count(), 1);
    assert_eq!(strategies.iter().filter(|s| **s == "beam").count(), 4);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("8 grid points share one greedy setting")
    );

    // Recompute distinct-2 and mean perplexity of every setting from samples.csv.
    let (sh, samples) = read_csv(&results.join("samples.csv"));
    let (s_setting, s_text, s_ppl) = (
        column(&sh, "setting"),
        column(&sh, "text"),
        column(&sh, "perplexity"),
    );
    for row in &rows {
        let mine: Vec<&Vec<String>> = samples.iter().filter(|s| s[s_setting] == row[0]).collect();
        assert_eq!(mine.len().to_string(), row[column(&header, "samples")]);
        let mut bigrams = std::collections::HashSet::new();
        let mut total = 0;
        for s in &mine {
            let words: Vec<&str> = s[s_text].split_whitespace().collect();
            for w in words.windows(2) {
                bigrams.insert((w[0].to_string(), w[1].to_string()));
                total += 1;
            }
        }
        let cell = &row[column(&header, "distinct_2")];
        if total == 0 {
            // No bigrams: undefined, not 0.
            assert_eq!(cell, "", "{}: distinct_2 without bigrams", row[0]);
        } else {
            let distinct_2 = bigrams.len() as f64 / total as f64;
            let reported: f64 = cell.parse().unwrap();
            assert!(
                (distinct_2 - reported).abs() < 1e-5,
                "{}: distinct_2 {distinct_2} vs {reported}",
                row[0]
            );
        }
        let ppl: f64 = mine
            .iter()
            .map(|s| s[s_ppl].parse::<f64>().unwrap())
            .sum::<f64>()
            / mine.len() as f64;
        let reported: f64 = row[column(&header, "mean_perplexity")].parse().unwrap();
        assert!(
            (ppl - reported).abs() / reported < 1e-4,
            "{}: mean_perplexity",
            row[0]
        );
    }
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["model"]["sha256"].as_str().unwrap().len(), 64);
    assert!(run["experiment"]["grid"]["temperature"].is_array());
}

#[test]
fn bad_experiments_exit_2_name_the_place_and_leave_no_results() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model();
    let cases = [
        (
            "unknown_key.toml",
            experiment(&model, "[grid]\ntempreature = 0.5\n"),
            ":8:1",
            "tempreature",
        ),
        (
            "negative_t.toml",
            experiment(&model, "[grid]\ntemperature = [0.5, -1.0]\n"),
            ":8:",
            "temperature",
        ),
        (
            "top_p.toml",
            experiment(&model, "[grid]\ntop_p = 1.5\n"),
            ":8:",
            "top_p",
        ),
        (
            "zero_samples.toml",
            experiment(&model, "[grid]\n").replace("samples = 5", "samples = 0"),
            ":5:",
            "samples",
        ),
        (
            "wrong_type.toml",
            experiment(&model, "[grid]\ntop_k = \"many\"\n"),
            ":8:",
            "expected an integer",
        ),
        (
            "no_model.toml",
            experiment(Path::new("no/such/model"), "[grid]\n"),
            ":2:",
            "no/such/model",
        ),
        (
            "no_prompts_file.toml",
            experiment(&model, "[grid]\n").replace(
                "prompts = [\"a\", \"b c\", \"x\"]",
                "prompts_file = \"missing.txt\"",
            ),
            ":3:",
            "missing.txt",
        ),
    ];
    for (name, text, place, word) in cases {
        let toml = write(dir.path(), name, &text);
        let out = run_in(dir.path(), &[toml.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{name}{place}")),
            "{name}: no file:line:col in {stderr}"
        );
        assert!(stderr.contains(word), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(
            !dir.path().join("results").exists(),
            "{name} left a results folder"
        );
    }
}

#[test]
fn an_interrupted_run_resumes_to_the_same_csvs() {
    let dir = tempfile::tempdir().unwrap();
    let toml = write(dir.path(), "t.toml", &experiment(&tiny_model(), GRID));
    let toml = toml.to_str().unwrap();

    let full = run_in(dir.path(), &[toml, "--out", "full"]);
    assert!(full.status.success());

    // Kill a run as soon as its first setting is saved, then run again.
    let mut child = sweep()
        .current_dir(dir.path())
        .args([toml, "--out", "cut"])
        .spawn()
        .unwrap();
    let settings = dir.path().join("cut/settings");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let saved = std::fs::read_dir(&settings)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .any(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
            })
            .unwrap_or(false);
        if saved || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    let again = run_in(dir.path(), &[toml, "--out", "cut"]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    for file in ["summary.csv", "samples.csv"] {
        assert_eq!(
            without_timing(&dir.path().join("full").join(file)),
            without_timing(&dir.path().join("cut").join(file)),
            "{file} differs after resume"
        );
    }
    // Nothing left to do: a third run recomputes nothing.
    let third = run_in(dir.path(), &[toml, "--out", "cut"]);
    assert!(String::from_utf8_lossy(&third.stderr).contains("0 settings run"));
}

#[test]
fn a_changed_experiment_is_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let toml = write(
        dir.path(),
        "t.toml",
        &experiment(&tiny_model(), "[grid]\ntemperature = 0.8\n"),
    );
    assert!(
        run_in(dir.path(), &[toml.to_str().unwrap()])
            .status
            .success()
    );
    // The length of the continuations changes every sample.
    write(
        dir.path(),
        "t.toml",
        &experiment(&tiny_model(), "[grid]\ntemperature = 0.9\n")
            .replace("max_new_tokens = 24", "max_new_tokens = 20"),
    );
    let out = run_in(dir.path(), &[toml.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    let out = run_in(dir.path(), &[toml.to_str().unwrap(), "--force"]);
    assert!(out.status.success());
    let (_, rows) = read_csv(&dir.path().join("results/t/summary.csv"));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0], "sample_t0.9_k0_p1_s0");
    // Without a change, a run resumes (nothing to do) and `--force` recomputes.
    let again = run_in(dir.path(), &[toml.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("0 settings run"));
    let forced = run_in(dir.path(), &[toml.to_str().unwrap(), "--force"]);
    let stderr = String::from_utf8_lossy(&forced.stderr);
    assert!(
        forced.status.success() && stderr.contains("1 setting"),
        "{stderr}"
    );
    assert!(!stderr.contains("0 settings run"), "{stderr}");
}

/// Results written by a version of sweep that computed samples differently are not resumed.
#[test]
fn results_of_other_numerics_are_not_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let toml = write(
        dir.path(),
        "t.toml",
        &experiment(&tiny_model(), "[grid]\ntemperature = 0.8\n"),
    );
    let toml = toml.to_str().unwrap();
    assert!(run_in(dir.path(), &[toml]).status.success());
    // A folder from before numerics were recorded.
    let fingerprint = dir.path().join("results/t/experiment.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&fingerprint).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("numerics");
    std::fs::write(&fingerprint, json.to_string()).unwrap();
    let out = run_in(dir.path(), &[toml]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("numerics of sweep"), "{stderr}");
    assert!(run_in(dir.path(), &[toml, "--force"]).status.success());
}

/// Same seed ⇒ same samples whatever the batch size or thread count; another seed differs.
#[test]
fn samples_do_not_depend_on_batch_size_or_threads() {
    let dir = tempfile::tempdir().unwrap();
    let grid = "[grid]\ntemperature = [0.7, 1.0]\ntop_k = [0, 40]\ntop_p = [0.9, 1.0]\nseed = 3\n";
    let texts = |batch: usize, threads: &str, seed: u64, out: &str| {
        let text = experiment(
            &tiny_model(),
            &grid.replace("seed = 3", &format!("seed = {seed}")),
        )
        .replace("samples = 5", "samples = 32")
        .replace("batch_size = 4", &format!("batch_size = {batch}"));
        let toml = write(dir.path(), &format!("{out}.toml"), &text);
        let result = sweep()
            .current_dir(dir.path())
            .env("RAYON_NUM_THREADS", threads)
            .args([toml.to_str().unwrap(), "--out", out, "--quiet"])
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        let (header, rows) = read_csv(&dir.path().join(out).join("samples.csv"));
        let ids = column(&header, "token_ids");
        rows.into_iter().map(|r| r[ids].clone()).collect::<Vec<_>>()
    };
    let reference = texts(1, "1", 3, "b1");
    assert_eq!(reference.len(), 8 * 3 * 32);
    assert_eq!(texts(7, "2", 3, "b7"), reference);
    assert_eq!(texts(32, "1", 3, "b32"), reference);
    assert_eq!(texts(32, "2", 3, "b32t2"), reference);
    let other = texts(32, "2", 4, "seed4");
    let same = other.iter().zip(&reference).filter(|(a, b)| a == b).count();
    assert!(
        same < reference.len() / 4,
        "a different seed gave {same} identical samples"
    );
}

#[test]
fn slurm_refuses_a_backend_or_device_this_binary_lacks() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "exp.toml", &experiment(&tiny_model(), GRID));
    for flags in [&["--backend", "nosuch"][..], &["--device", "tpu"][..]] {
        let out = run_in(
            dir.path(),
            &[&["slurm", "exp.toml", "--shards", "2"][..], flags].concat(),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(flags[1]), "{flags:?}: {stderr}");
        assert!(stderr.contains("this sweep binary"), "{flags:?}: {stderr}");
        assert!(!dir.path().join("results/t/slurm").exists(), "{flags:?}");
    }
    // The same call with flags it has writes the scripts.
    let out = run_in(dir.path(), &["slurm", "exp.toml", "--shards", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let array = std::fs::read_to_string(dir.path().join("results/t/slurm/shards.sbatch")).unwrap();
    assert!(array.contains("--shard"), "{array}");
}

#[test]
fn validate_prints_the_grid_size_and_token_budget() {
    let dir = tempfile::tempdir().unwrap();
    let toml = write(dir.path(), "t.toml", &experiment(&tiny_model(), GRID));
    let out = run_in(dir.path(), &["validate", toml.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("settings:  21 (16 sampling, 1 greedy, 4 beam)"),
        "{stdout}"
    );
    assert!(stdout.contains("tokens:"), "{stdout}");
    assert!(!dir.path().join("results").exists());
}

#[test]
fn generate_streams_one_continuation() {
    let out = sweep()
        .args([
            "generate",
            "--prompt",
            "a",
            "--max-new-tokens",
            "12",
            "--temperature",
            "0",
        ])
        .arg("--model")
        .arg(tiny_model())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with('a') && text.len() > 2, "{text}");
    let bad = sweep()
        .args(["generate", "--top-p", "1.5"])
        .arg("--model")
        .arg(tiny_model())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// Every case of `sweep bench` runs and prints a rate, the long-prompt one included; a prompt
/// that does not fit beside the new tokens is refused before anything is measured.
#[test]
fn bench_measures_every_case_and_refuses_a_prompt_too_long() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model();
    let model = model.to_str().unwrap();
    let common = [
        "bench",
        "--model",
        model,
        "--new-tokens",
        "4",
        "--batch",
        "2",
    ];
    let out = run_in(
        dir.path(),
        &[&common[..], &["--long-prompt", "60"]].concat(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for case in [
        "greedy, batch 1",
        "sample T0.8 k50 p0.9, 2 x 4",
        "sample T0.8 k50 p0.9, 2 x 4, prompt 60",
        "beam search, 8 beams",
        "grid of 16 settings x 8 samples",
        "prefill, 64 tokens",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(case) && l[case.len()..].starts_with("  "))
            .unwrap_or_else(|| panic!("no line for {case:?} in\n{stdout}"));
        let rate: f64 = line.split_whitespace().last().unwrap().parse().unwrap();
        assert!(rate > 0.0, "{line}");
    }
    // --cases measures only the kinds named (each twice with --repeat 2, the faster kept).
    let out = run_in(
        dir.path(),
        &[&common[..], &["--cases", "score,greedy", "--repeat", "2"]].concat(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let cases: Vec<&str> = stdout
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("peak resident memory"))
        .collect();
    assert_eq!(cases.len(), 2, "{stdout}");
    assert!(cases[0].starts_with("greedy, batch 1  "), "{stdout}");
    assert!(
        cases[1].starts_with("score 2 texts x (16 + 4) tokens  "),
        "{stdout}"
    );
    // --profile prints under a sampling case where its steps' time went: the prompt's pass
    // and three more steps for four new tokens. Beam search is not profiled.
    let out = run_in(
        dir.path(),
        &[&common[..], &["--cases", "sample,beam", "--profile"]].concat(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[1].starts_with("sample T0.8 k50 p0.9, 2 x 4  "),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("  per step (4 steps): issue "),
        "{stdout}"
    );
    for part in ["issue", "device after issue", "read-back", "sampling"] {
        let ms: f64 = lines[2]
            .split(&format!("{part} "))
            .nth(1)
            .and_then(|rest| rest.split(" ms").next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{part} in {}", lines[2]));
        assert!(ms >= 0.0, "{}", lines[2]);
    }
    assert!(lines[3].starts_with("beam search, "), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.contains("per step")).count(),
        1,
        "{stdout}"
    );
    // 61 + 4 > the tiny model's 64 positions.
    let out = run_in(
        dir.path(),
        &[&common[..], &["--long-prompt", "61"]].concat(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--long-prompt 61"), "{stderr}");
    assert!(stderr.contains("use 1 to 60"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
