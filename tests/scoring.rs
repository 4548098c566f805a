//! Scoring under a second model, through the binary: `[score] model` in a run and `sweep
//! score` on a finished folder. The generator as its own scorer must give its own
//! perplexities back exactly; another scorer changes the scorer columns and nothing else;
//! prompts too long for the scorer are cropped and counted; a scorer that cannot read the
//! texts is refused before anything is written.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

const SWEEP: &str = env!("CARGO_BIN_EXE_sweep");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn sweep(args: &[&str]) -> std::process::Output {
    Command::new(SWEEP).args(args).output().unwrap()
}

/// Run experiment `exp` into `out`, quietly.
fn run_to(exp: &Path, out: &Path) {
    #[rustfmt::skip]
    ok(&["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"]);
}

/// `sweep score OUT --model SCORER`, quietly.
fn score_with(out: &Path, scorer: &Path) {
    #[rustfmt::skip]
    ok(&["score", out.to_str().unwrap(), "--model", scorer.to_str().unwrap(), "--quiet"]);
}

fn ok(args: &[&str]) {
    let out = sweep(args);
    assert!(
        out.status.success(),
        "sweep {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A one-step model with GPT-2's vocabulary and a context of `context` positions: a scorer
/// unlike the shipped model.
fn untrained_scorer(dir: &Path, context: usize) -> PathBuf {
    let out = dir.join(format!("scorer{context}"));
    let context = context.to_string();
    #[rustfmt::skip]
    ok(&["train", "--out", out.to_str().unwrap(), "--n-layer", "1", "--n-head", "2",
        "--n-embd", "32", "--context", &context, "--steps", "1", "--batch-size", "2", "--quiet"]);
    out
}

fn experiment(dir: &Path, score: Option<&Path>) -> PathBuf {
    let model = root().join("models/shakespeare");
    let prompts = root().join("data/heldout.jsonl");
    let mut text = format!(
        "model = {model:?}\nprompts_file = {prompts:?}\nmax_new_tokens = 24\nsamples = 3\n\
         batch_size = 5\n[grid]\ntemperature = [0.0, 1.0]\nseed = 7\n[beam]\nnum_beams = 3\n"
    );
    if let Some(scorer) = score {
        text += &format!("[score]\nmodel = {scorer:?}\n");
    }
    let path = dir.join("e.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    common::csv_rows(path)
}

fn number(cell: &str) -> f64 {
    cell.parse().unwrap()
}

fn run_json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap()
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn the_generator_as_its_own_scorer_gives_its_own_perplexities() {
    let tmp = tempfile::tempdir().unwrap();
    let shipped = root().join("models/shakespeare");
    let exp = experiment(tmp.path(), Some(&shipped));
    let out = tmp.path().join("out");
    run_to(&exp, &out);

    let samples = rows(&out.join("samples.csv"));
    // Greedy 32 + sampling 96 + beam 32 + human 32.
    assert_eq!(samples.len(), 192);
    for s in &samples {
        assert_eq!(s["scorer_perplexity"], s["perplexity"], "{s:?}");
    }
    for row in rows(&out.join("summary.csv")) {
        for (ours, theirs) in [
            ("scorer_mean_perplexity", "mean_perplexity"),
            ("scorer_mean_perplexity_lo", "mean_perplexity_lo"),
            ("scorer_mean_perplexity_hi", "mean_perplexity_hi"),
            ("scorer_corpus_perplexity", "corpus_perplexity"),
        ] {
            assert_eq!(row[ours], row[theirs], "{}: {ours}", row["setting"]);
        }
        // Coherence is the mean log-probability per token, averaged over texts: minus the
        // mean log-perplexity of the setting's texts.
        let per_text: Vec<f64> = samples
            .iter()
            .filter(|s| s["setting"] == row["setting"])
            .map(|s| -number(&s["perplexity"]).ln())
            .collect();
        let expected = per_text.iter().sum::<f64>() / per_text.len() as f64;
        let coherence = number(&row["coherence"]);
        assert!(
            (coherence - expected).abs() < 1e-5,
            "{}: coherence {coherence}, expected {expected}",
            row["setting"]
        );
        assert!(coherence < 0.0);
    }
    let scorer = &run_json(&out)["scorer"];
    assert_eq!(scorer["cropped_prompts"], 0);
    assert_eq!(scorer["n_positions"], 256);
    let sha = sweep::util::files::sha256_file(&shipped.join("model.safetensors")).unwrap();
    assert_eq!(scorer["sha256"], sha.as_str());

    // Without [score], the columns are not there at all.
    let plain = tmp.path().join("plain");
    let exp = experiment(tmp.path(), None);
    run_to(&exp, &plain);
    let header = std::fs::read_to_string(plain.join("summary.csv")).unwrap();
    assert!(!header.lines().next().unwrap().contains("scorer"));
    assert!(!header.lines().next().unwrap().contains("coherence"));
    assert!(run_json(&plain)["scorer"].is_null());
    assert!(!plain.join("scores").exists());
    assert!(!plain.join("coherence_diversity.svg").exists());
    assert!(!plain.join("mauve_diversity.svg").exists());
    // Adding [score] to a finished run regenerates nothing: the scorer is not part of what
    // the rows depend on.
    let generated = files(&plain.join("settings"));
    let scored = experiment(tmp.path(), Some(&shipped));
    run_to(&scored, &plain);
    assert_eq!(files(&plain.join("settings")), generated);
    assert_eq!(rows(&plain.join("summary.csv")).len(), 4);
    assert!(rows(&plain.join("summary.csv"))[0].contains_key("coherence"));
    // With the scorer's columns, coherence is plotted against diversity.
    let svg = std::fs::read_to_string(out.join("coherence_diversity.svg")).unwrap();
    assert!(svg.contains("coherence, mean log-probability per token"));
}

#[test]
fn sweep_score_rescores_a_finished_folder_without_generating() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = experiment(tmp.path(), None);
    let out = tmp.path().join("out");
    run_to(&exp, &out);
    let before = rows(&out.join("summary.csv"));
    let settings_before = files(&out.join("settings"));

    // Context 40 crops every prompt longer than 40 − 24 = 16 tokens.
    let scorer = untrained_scorer(tmp.path(), 40);
    score_with(&out, &scorer);
    assert_eq!(files(&out.join("settings")), settings_before);
    let after = rows(&out.join("summary.csv"));
    assert_eq!(after.len(), before.len());
    for (a, b) in after.iter().zip(&before) {
        for (key, value) in b {
            if key != "tokens_per_s" {
                assert_eq!(&a[key], value, "{key} changed");
            }
        }
        // An untrained model finds every text about equally unlikely: near the vocabulary size.
        let scored = number(&a["scorer_mean_perplexity"]);
        assert!((20_000.0..100_000.0).contains(&scored), "{scored}");
        assert_ne!(a["scorer_mean_perplexity"], a["mean_perplexity"]);
    }
    let record = run_json(&out);
    let tokenizer = sweep::engine::tokenizer::Tokenizer::gpt2();
    let prompts: Vec<usize> = std::fs::read_to_string(root().join("data/heldout.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            tokenizer.encode(v["prompt"].as_str().unwrap()).len()
        })
        .collect();
    let cropped: usize = prompts.iter().map(|&n| n.saturating_sub(16)).sum();
    assert!(cropped > 0);
    assert_eq!(record["scorer"]["cropped_tokens"], cropped);
    assert_eq!(
        record["scorer"]["cropped_prompts"],
        prompts.iter().filter(|&&n| n > 16).count()
    );
    assert_eq!(record["scorer"]["n_positions"], 40);
    assert_eq!(record["invocations"].as_array().unwrap().len(), 2);

    // A second call finds every setting scored and scores nothing again; a lost setting's
    // scores are made again, the same.
    let scores = files(&out.join("scores"));
    assert_eq!(scores.len(), 4);
    std::fs::remove_file(&scores[0].0).unwrap();
    score_with(&out, &scorer);
    assert_eq!(files(&out.join("scores")), scores);
    assert_eq!(rows(&out.join("summary.csv")), after);
}

#[test]
fn a_scorer_that_cannot_read_the_texts_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    // Another vocabulary.
    let tiny = root().join("tests/fixtures/tiny-hf");
    let exp = experiment(tmp.path(), Some(&tiny));
    let out = tmp.path().join("out");
    let run = sweep(&["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2));
    let message = String::from_utf8_lossy(&run.stderr);
    assert!(message.contains("[score] model"), "{message}");
    assert!(message.contains("vocabulary of 512 tokens"), "{message}");
    assert!(!out.exists());

    // A context that cannot hold max_new_tokens.
    let short = untrained_scorer(tmp.path(), 20);
    let exp = experiment(tmp.path(), None);
    run_to(&exp, &out);
    let before = files(&out);
    let score = sweep(&[
        "score",
        out.to_str().unwrap(),
        "--model",
        short.to_str().unwrap(),
    ]);
    assert_eq!(score.status.code(), Some(2));
    let message = String::from_utf8_lossy(&score.stderr);
    assert!(message.contains("--model"), "{message}");
    assert!(message.contains("context of 20 positions"), "{message}");
    assert_eq!(files(&out), before);

    // No scorer named anywhere.
    let none = sweep(&["score", out.to_str().unwrap()]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("pass --model"));
}

fn mauve_experiment(dir: &Path, batch_size: usize, score: &str) -> PathBuf {
    let model = root().join("models/shakespeare");
    let prompts = root().join("data/heldout.jsonl");
    let text = format!(
        "model = {model:?}\nprompts_file = {prompts:?}\nmax_new_tokens = 24\nsamples = 2\n\
         batch_size = {batch_size}\n[grid]\ntemperature = [0.0, 1.0]\nseed = 7\n\
         [beam]\nnum_beams = 3\n[score]\n{score}\n"
    );
    let path = dir.join(format!("m{batch_size}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn mauve_ranks_sampling_above_greedy_and_beam_whatever_the_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let mut summaries = Vec::new();
    for batch in [3, 64] {
        let exp = mauve_experiment(tmp.path(), batch, "mauve = true");
        let out = tmp.path().join(format!("out{batch}"));
        run_to(&exp, &out);
        summaries.push(rows(&out.join("summary.csv")));
        // The generator gave the features: no scorer columns.
        let header = std::fs::read_to_string(out.join("summary.csv")).unwrap();
        assert!(!header.lines().next().unwrap().contains("scorer_"));
        assert_eq!(run_json(&out)["scorer"]["columns"], false);
        // MAUVE gets its plot against diversity; without a scorer's columns, coherence does not.
        let svg = std::fs::read_to_string(out.join("mauve_diversity.svg")).unwrap();
        assert!(svg.contains("MAUVE against the human text"));
        assert!(out.join("mauve_diversity.png").is_file());
        assert!(!out.join("coherence_diversity.svg").exists());
    }
    let without_timing = |rows: &[std::collections::HashMap<String, String>]| {
        rows.iter()
            .map(|r| {
                let mut r = r.clone();
                r.remove("tokens_per_s");
                let mut cells: Vec<(String, String)> = r.into_iter().collect();
                cells.sort();
                cells
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(without_timing(&summaries[0]), without_timing(&summaries[1]));
    let mauve = |id: &str| {
        let row = summaries[0]
            .iter()
            .find(|r| r["setting"] == id)
            .unwrap_or_else(|| panic!("no row {id}: {:?}", summaries[0]));
        // 32 references: a tenth, rounded, is 3 clusters.
        assert_eq!(row["mauve_clusters"], "3");
        number(&row["mauve"])
    };
    let (greedy, sample, beam) = (
        mauve("greedy"),
        mauve("sample_t1_k0_p1_s7"),
        mauve("beam_n3_lp1"),
    );
    for m in [greedy, sample, beam] {
        assert!((0.0..=1.0).contains(&m), "{m}");
    }
    assert!(
        sample > greedy + 0.2 && sample > beam + 0.2,
        "{greedy} {sample} {beam}"
    );
    let human = summaries[0]
        .iter()
        .find(|r| r["setting"] == "human")
        .unwrap();
    assert_eq!(human["mauve"], "");
}

#[test]
fn bad_score_tables_are_refused_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let refused = |toml: &str, key: &str| {
        let path = tmp.path().join("bad.toml");
        std::fs::write(&path, toml).unwrap();
        let out = tmp.path().join("out");
        let run = sweep(&[
            "run",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let message = String::from_utf8_lossy(&run.stderr).to_string();
        assert_eq!(run.status.code(), Some(2), "{message}");
        assert!(message.contains(key), "{key}: {message}");
        assert!(!out.exists(), "{message}");
        let validate = sweep(&["validate", path.to_str().unwrap()]);
        assert_eq!(validate.status.code(), Some(2));
    };
    let model = root().join("models/shakespeare");
    let head = format!("model = {model:?}\nmax_new_tokens = 8\n");
    // MAUVE without references.
    refused(
        &format!("{head}prompts = [\"a\", \"b\"]\n[beam]\nnum_beams = 2\n[score]\nmauve = true\n"),
        "mauve = true needs human references",
    );
    let prompts = root().join("data/heldout.jsonl");
    let head = format!("{head}prompts_file = {prompts:?}\n[beam]\nnum_beams = 2\n");
    refused(
        &format!("{head}[score]\nmauve = true\nmauve_clusters = 33\n"),
        "mauve_clusters = 33",
    );
    refused(
        &format!("{head}[score]\nmauve = true\nmauve_scaling = 0\n"),
        "mauve_scaling = 0",
    );
    refused(&format!("{head}[score]\n"), "[score] asks for nothing");
    refused(
        &format!("{head}[score]\nmodel = \"nowhere\"\n"),
        "[score] model = \"nowhere\" does not exist",
    );
}
