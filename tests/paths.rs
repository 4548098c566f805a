//! Paths and files as a user names them: `validate` finds what `run` would refuse before any
//! generation, a path of the wrong kind or a missing file is exit 2 with the option and the
//! fix, `merge` says what is wrong with the folder it is given, and the shipped model works
//! from any folder with nothing but the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sweep() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sweep"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tiny_model() -> PathBuf {
    root().join("tests/fixtures/tiny-hf")
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    sweep().current_dir(dir).args(args).output().expect("runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// A small experiment on the tiny model (context 64) in `dir`, named `t`.
fn write_experiment(dir: &Path, prompts: &[&str], max_new_tokens: usize) -> PathBuf {
    let prompts: Vec<String> = prompts.iter().map(|p| format!("{p:?}")).collect();
    let toml = format!(
        "name = \"t\"\nmodel = \"{}\"\nprompts = [{}]\nmax_new_tokens = {max_new_tokens}\n\
         samples = 2\n\n[grid]\ntemperature = [0.0, 1.0]\n",
        tiny_model().display(),
        prompts.join(", ")
    );
    let path = dir.join("t.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// The "prompt i cropped by N tokens" lines of an output, in order.
fn crop_warnings(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("cropped by"))
        .map(|l| {
            let at = l.find("prompt ").expect("names the prompt");
            l[at..].to_string()
        })
        .collect()
}

#[test]
fn validate_reports_the_cropping_that_run_does() {
    let dir = tempfile::tempdir().unwrap();
    // 30 + 40 new tokens overflow the context of 64 by 6 tokens; "a " is one token each.
    let long = "a ".repeat(40);
    write_experiment(dir.path(), &["b", long.trim_end()], 30);
    let validated = run_in(dir.path(), &["validate", "t.toml"]);
    assert_eq!(code(&validated), Some(0), "{}", stderr(&validated));
    let said = crop_warnings(&stderr(&validated));
    assert_eq!(said.len(), 1, "{}", stderr(&validated));
    assert!(said[0].starts_with("prompt 1 cropped by "), "{said:?}");
    let ran = run_in(dir.path(), &["run", "t.toml", "--quiet"]);
    assert_eq!(code(&ran), Some(0), "{}", stderr(&ran));
    let ran = run_in(dir.path(), &["run", "t.toml", "--force"]);
    assert_eq!(crop_warnings(&stderr(&ran)), said, "{}", stderr(&ran));
}

#[test]
fn validate_refuses_a_results_folder_that_run_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    write_experiment(dir.path(), &["a", "b"], 4);
    // A file where the results folder goes.
    std::fs::create_dir(dir.path().join("results")).unwrap();
    std::fs::write(dir.path().join("results/t"), "notes").unwrap();
    let out = run_in(dir.path(), &["validate", "t.toml"]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("results/t is a file, not a folder"),
        "{}",
        stderr(&out)
    );
    let out = run_in(dir.path(), &["run", "t.toml"]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("results/t is a file, not a folder"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(dir.path().join("results/t")).unwrap();

    // Results of the experiment before an edit that changes its samples.
    let out = run_in(dir.path(), &["run", "t.toml", "--quiet"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let out = run_in(dir.path(), &["validate", "t.toml"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    write_experiment(dir.path(), &["a", "b"], 5);
    let out = run_in(dir.path(), &["validate", "t.toml"]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("`sweep run` would refuse") && said.contains("`max_new_tokens`: 4 vs 5"),
        "{said}"
    );
    assert!(said.contains("--force") && said.contains("--out"), "{said}");

    // A folder another process holds: a warning, since it ends with that process.
    write_experiment(dir.path(), &["a", "b"], 4);
    let lock = sweep::run::store::Lock::acquire(&dir.path().join("results/t")).unwrap();
    let out = run_in(dir.path(), &["validate", "t.toml"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning:") && stderr(&out).contains("in use by another sweep"),
        "{}",
        stderr(&out)
    );
    drop(lock);
}

#[test]
fn paths_of_the_wrong_kind_are_bad_input_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write_experiment(dir.path(), &["a"], 4);
    let exp = exp.to_str().unwrap();
    std::fs::write(dir.path().join("cmp1.csv"), "a,b\n").unwrap();
    std::fs::create_dir(dir.path().join("folder")).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", exp, "--out", "cmp1.csv"],
            "cmp1.csv is a file, not a folder; --out",
        ),
        (
            vec!["merge", "folder", "--out", "cmp1.csv"],
            "cmp1.csv is a file, not a folder; --out",
        ),
        (
            vec!["slurm", exp, "--shards", "2", "--out", "cmp1.csv"],
            "cmp1.csv is a file, not a folder; --out",
        ),
        (
            vec!["compare", "folder", "folder", "--out", "folder"],
            "--out folder: is a folder; --out names the CSV file",
        ),
        (
            vec!["compare", "folder", "folder", "--out", "nowhere/c.csv"],
            "the folder nowhere does not exist",
        ),
        (
            vec!["train", "--train", "missing.txt", "--out", "m"],
            "--train missing.txt: no such file; pass --train",
        ),
        (
            vec!["eval", "--data", "missing.txt"],
            "--data missing.txt: no such file; pass --data",
        ),
        (
            vec!["eval", "--data", "folder"],
            "--data folder: is a folder, not a text file",
        ),
        // The defaults name the shipped corpus, found only from the source tree's root.
        (
            vec!["eval"],
            "--data data/shakespeare/valid.txt: no such file; the default --data is relative \
             to the root of sweep's source tree",
        ),
        (
            vec!["train", "--out", "m"],
            "--train data/shakespeare/train.txt: no such file; the default --train",
        ),
    ];
    for (args, message) in cases {
        let out = run_in(dir.path(), &args);
        assert_eq!(code(&out), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("os error"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(!dir.path().join("m").exists(), "nothing written");
}

#[test]
fn merge_says_what_the_folder_it_is_given_is() {
    let dir = tempfile::tempdir().unwrap();
    write_experiment(dir.path(), &["a", "b"], 4);
    let out = run_in(dir.path(), &["merge", "results/missing"]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("results/missing does not exist"),
        "{}",
        stderr(&out)
    );

    let out = run_in(dir.path(), &["run", "t.toml", "--quiet"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let out = run_in(dir.path(), &["merge", "results/t"]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("results/t holds an unsharded run"), "{said}");
    assert!(!said.contains("no experiment.json"), "{said}");

    // One shard of two: no Slurm script was written, so none is suggested.
    let out = run_in(
        dir.path(),
        &["run", "t.toml", "--quiet", "--out", "sh", "--shard", "0/2"],
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let out = run_in(dir.path(), &["merge", "sh"]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("missing shard: 1/2"), "{said}");
    assert!(said.contains("--shard 1/2"), "{said}");
    assert!(!said.contains("sbatch"), "{said}");

    // Once `sweep slurm` has written its scripts, the array script is named.
    let out = run_in(
        dir.path(),
        &["slurm", "t.toml", "--shards", "2", "--out", "sh"],
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let out = run_in(dir.path(), &["merge", "sh"]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("sbatch --array=1 sh/slurm/shards.sbatch"),
        "{}",
        stderr(&out)
    );
}

/// The cached copy of the shipped model under `cache` (an XDG cache root).
fn cached_model(cache: &Path) -> PathBuf {
    let models = cache.join("sweep/models");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&models)
        .unwrap_or_else(|e| panic!("{}: {e}", models.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.pop().unwrap()
}

#[test]
fn the_shipped_model_works_with_nothing_but_the_binary() {
    let bin_dir = tempfile::tempdir().unwrap();
    let bin = bin_dir.path().join("sweep");
    std::fs::copy(env!("CARGO_BIN_EXE_sweep"), &bin).unwrap();
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let in_work = |args: &[&str]| {
        Command::new(&bin)
            .current_dir(work.path())
            .env("HOME", home.path())
            .env_remove("XDG_CACHE_HOME")
            .args(args)
            .output()
            .unwrap()
    };
    let generate = [
        "generate",
        "--prompt",
        "ROMEO.\\n",
        "--max-new-tokens",
        "8",
        "--temperature",
        "0",
    ];
    let out = in_work(&generate);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let first = out.stdout.clone();
    assert!(first.starts_with(b"ROMEO.\n") && first.len() > 8);

    let cached = cached_model(&home.path().join(".cache"));
    let shipped = root().join("models/shakespeare/model.safetensors");
    let sha = sweep::util::files::sha256_file(&shipped).unwrap();
    assert_eq!(
        sweep::util::files::sha256_file(&cached.join("model.safetensors")).unwrap(),
        sha
    );
    assert!(
        cached.ends_with(format!("shakespeare-{}", &sha[..12])),
        "{}",
        cached.display()
    );

    // A torn copy is found on reuse and written again.
    std::fs::write(cached.join("model.safetensors"), b"torn").unwrap();
    let out = in_work(&generate);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, first);
    assert_eq!(
        sweep::util::files::sha256_file(&cached.join("model.safetensors")).unwrap(),
        sha
    );

    let text = "First Citizen:\nBefore we proceed any further, hear me speak.\n".repeat(40);
    std::fs::write(work.path().join("text.txt"), text).unwrap();
    let out = in_work(&["eval", "--data", "text.txt"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("perplexity"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // An experiment that names no model.
    std::fs::write(
        work.path().join("e.toml"),
        "name = \"e\"\nprompts = [\"ROMEO.\\n\"]\nmax_new_tokens = 4\n[grid]\ntemperature = 0\n",
    )
    .unwrap();
    let out = in_work(&["validate", "e.toml"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("n_positions 256"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
