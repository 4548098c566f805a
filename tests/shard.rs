//! Sharded runs on one machine: `sweep run --shard i/N` for every i, then `sweep merge`, must
//! give the files of one unsharded run (timing aside), and a merge of an incomplete or muddled
//! set of shards must say which shard is wrong.
//!
//! These use the shipped model with a handful of short continuations, so they take seconds.

mod common;

use common::csv_without_timing;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sweep() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sweep"))
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    sweep().current_dir(dir).args(args).output().expect("runs")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A small experiment on the shipped model: greedy, four sampling settings of different
/// costs, a beam baseline and the human reference.
fn write_experiment(dir: &Path) -> PathBuf {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/shakespeare");
    let prompts = [
        ("ROMEO.\n", "It is my lady, O, it is my love!"),
        ("JULIET.\n", "Wherefore art thou Romeo?"),
        ("HAMLET.\n", "To be, or not to be, that is the question."),
    ];
    let jsonl: String = prompts
        .iter()
        .map(|(p, r)| serde_json::json!({"prompt": p, "reference": r}).to_string() + "\n")
        .collect();
    std::fs::write(dir.join("prompts.jsonl"), jsonl).unwrap();
    let toml = format!(
        r#"name = "sharded"
model = "{}"
prompts_file = "prompts.jsonl"
max_new_tokens = 6
samples = 2
batch_size = 8

[grid]
temperature = [0.0, 0.7, 1.0]
top_k = [0, 40]

[beam]
num_beams = [2]
"#,
        model.display()
    );
    std::fs::write(dir.join("exp.toml"), toml).unwrap();
    dir.join("exp.toml")
}

/// `run.json` without its clock readings.
fn run_json_without_timing(path: &Path) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let map = v.as_object_mut().unwrap();
    for key in ["started", "finished", "wall_s", "invocations"] {
        assert!(map.remove(key).is_some(), "run.json has no {key}");
    }
    for s in map["settings"].as_array_mut().unwrap() {
        let s = s.as_object_mut().unwrap();
        s.remove("wall_s");
        s.remove("tokens_per_s");
    }
    v
}

fn assert_same_results(whole: &Path, merged: &Path) {
    for file in ["samples.csv", "quality_diversity.svg", "by_temperature.svg"] {
        assert!(
            std::fs::read(whole.join(file)).unwrap() == std::fs::read(merged.join(file)).unwrap(),
            "{file} differs"
        );
    }
    assert_eq!(
        csv_without_timing(&whole.join("summary.csv")),
        csv_without_timing(&merged.join("summary.csv"))
    );
    assert_eq!(
        run_json_without_timing(&whole.join("run.json")),
        run_json_without_timing(&merged.join("run.json"))
    );
}

#[test]
fn shards_merge_into_the_files_of_an_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    write_experiment(work);
    ok(&run_in(
        work,
        &["run", "exp.toml", "--out", "results/whole", "--quiet"],
    ));
    for i in 0..3 {
        let shard = format!("{i}/3");
        ok(&run_in(
            work,
            &[
                "run",
                "exp.toml",
                "--out",
                "results/split",
                "--shard",
                &shard,
            ],
        ));
        let own = work.join(format!("results/split/shards/{i}-of-3"));
        assert!(own.join("shard.json").is_file());
        // A shard writes nothing outside its own folder.
        assert!(!work.join("results/split/summary.csv").exists());
    }
    // Each setting is in exactly one shard.
    let mut saved: Vec<String> = Vec::new();
    for i in 0..3 {
        let settings = work.join(format!("results/split/shards/{i}-of-3/settings"));
        for entry in std::fs::read_dir(settings).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if let Some(id) = name.strip_suffix(".jsonl") {
                saved.push(id.to_string());
            }
        }
    }
    saved.sort();
    let count = saved.len();
    saved.dedup();
    assert_eq!(saved.len(), count, "a setting ran in two shards: {saved:?}");
    assert_eq!(count, 7, "greedy, 4 sampling, 1 beam, human: {saved:?}");

    // A shard run again resumes instead of recomputing.
    let again = run_in(
        work,
        &[
            "run",
            "exp.toml",
            "--out",
            "results/split",
            "--shard",
            "1/3",
        ],
    );
    ok(&again);
    assert!(
        stderr(&again).contains("already done"),
        "{}",
        stderr(&again)
    );

    let merged = run_in(work, &["merge", "results/split"]);
    ok(&merged);
    assert!(
        stderr(&merged).contains("merged 3 shards"),
        "{}",
        stderr(&merged)
    );
    assert_same_results(&work.join("results/whole"), &work.join("results/split"));

    // The shard folders themselves merge the same, wherever the result goes.
    let shard_dirs: Vec<String> = (0..3)
        .map(|i| format!("results/split/shards/{i}-of-3"))
        .collect();
    let mut args = vec!["merge"];
    args.extend(shard_dirs.iter().map(String::as_str));
    args.extend(["--out", "elsewhere"]);
    ok(&run_in(work, &args));
    assert_same_results(&work.join("results/whole"), &work.join("elsewhere"));

    // Shards beside an unsharded run's files in one results folder are still found.
    copy_dir(
        &work.join("results/split/shards"),
        &work.join("results/whole/shards"),
    );
    ok(&run_in(work, &["merge", "results/whole", "--out", "again"]));
    assert_same_results(&work.join("results/whole"), &work.join("again"));
}

#[test]
fn a_missing_duplicated_unfinished_or_foreign_shard_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    write_experiment(work);
    for i in 0..2 {
        let shard = format!("{i}/2");
        ok(&run_in(
            work,
            &[
                "run", "exp.toml", "--out", "r", "--shard", &shard, "--quiet",
            ],
        ));
    }
    let shards = work.join("r/shards");

    // Missing: shard 1 never ran.
    std::fs::rename(shards.join("1-of-2"), work.join("aside")).unwrap();
    let out = run_in(work, &["merge", "r"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("missing shard: 1/2"), "{err}");
    assert!(err.contains("r/shards/1-of-2"), "{err}");
    // No `sweep slurm` wrote an array script here, so none is suggested.
    assert!(
        err.contains("--shard 1/2") && !err.contains("sbatch"),
        "{err}"
    );
    assert!(!work.join("r/summary.csv").exists());

    // Duplicated: shard 0 given twice, from two folders.
    copy_dir(&shards.join("0-of-2"), &work.join("copy/0-of-2"));
    let out = run_in(work, &["merge", "r/shards/0-of-2", "copy/0-of-2", "aside"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("shard 0/2 is given twice"), "{err}");
    assert!(
        err.contains("r/shards/0-of-2") && err.contains("copy/0-of-2"),
        "{err}"
    );

    // Unfinished: a setting of shard 1 is not saved (the task died).
    std::fs::rename(work.join("aside"), shards.join("1-of-2")).unwrap();
    let settings = shards.join("1-of-2/settings");
    let lost = std::fs::read_dir(&settings)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.ends_with(".jsonl"))
        .unwrap();
    std::fs::remove_file(settings.join(&lost)).unwrap();
    std::fs::remove_file(shards.join("1-of-2/shard.json")).unwrap();
    let out = run_in(work, &["merge", "r"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("shard 1/2") && err.contains("unfinished"),
        "{err}"
    );
    assert!(err.contains(lost.trim_end_matches(".jsonl")), "{err}");
    // Running it again finishes it, and the merge goes through.
    ok(&run_in(
        work,
        &["run", "exp.toml", "--out", "r", "--shard", "1/2", "--quiet"],
    ));
    ok(&run_in(work, &["merge", "r"]));

    // Foreign: a shard of another experiment.
    let other = std::fs::read_to_string(work.join("exp.toml"))
        .unwrap()
        .replace("max_new_tokens = 6", "max_new_tokens = 5");
    std::fs::write(work.join("other.toml"), other).unwrap();
    ok(&run_in(
        work,
        &[
            "run",
            "other.toml",
            "--out",
            "o",
            "--shard",
            "1/2",
            "--quiet",
        ],
    ));
    let out = run_in(
        work,
        &["merge", "r/shards/0-of-2", "o/shards/1-of-2", "--out", "m"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("not part of the same run") && err.contains("max_new_tokens"),
        "{err}"
    );

    // Not a shard at all.
    let out = run_in(work, &["merge", "."]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not a shard"), "{}", stderr(&out));
}

#[test]
fn a_job_array_task_runs_its_share_and_a_bad_shard_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    write_experiment(work);
    let out = sweep()
        .current_dir(work)
        .args(["run", "exp.toml", "--out", "r", "--quiet"])
        .env("SLURM_ARRAY_TASK_ID", "5")
        .env("SLURM_ARRAY_TASK_MIN", "4")
        .env("SLURM_ARRAY_TASK_MAX", "7")
        .env("SLURM_ARRAY_TASK_COUNT", "4")
        .output()
        .unwrap();
    ok(&out);
    assert!(work.join("r/shards/1-of-4/shard.json").is_file());
    assert!(!work.join("r/summary.csv").exists());

    for bad in ["4/4", "x/2", "1"] {
        let out = run_in(work, &["run", "exp.toml", "--shard", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("INDEX/COUNT"), "{}", stderr(&out));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
