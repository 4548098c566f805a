//! Runs that are killed, interrupted, starved of disk or raced, on the real binary: whatever
//! happens, the finished work stays, the resume generates only what is missing, and the CSVs
//! end up those of a run nothing happened to (timing aside).
//!
//! The experiment is grouped (two sampling settings share every batch) and long enough on
//! the tiny model of `tests/fixtures/tiny-hf` that kills land in the middle of it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::csv_without_timing;

fn sweep() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sweep"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const PROMPTS: usize = 24;
const SAMPLING_SETTINGS: usize = 6;
const SAMPLES: usize = 4;

/// Sampling (6 settings × 4 samples, two settings to a batch of 8), one beam setting and the
/// human row, over 24 prompts: (6 + 1 + 1) × 16 records of rows.
fn write_experiment(dir: &Path) -> PathBuf {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-hf");
    let letters = "abcdefghijklmnopqrstuvwx";
    let jsonl: String = letters
        .chars()
        .map(|c| {
            serde_json::json!({"prompt": c.to_string(), "reference": format!("{c}\nx\ny")})
                .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(dir.join("prompts.jsonl"), jsonl).unwrap();
    let toml = format!(
        r#"name = "faults"
model = "{}"
prompts_file = "prompts.jsonl"
max_new_tokens = 60
samples = {SAMPLES}
batch_size = 8

[grid]
temperature = [0.7, 1.0, 1.3]
top_k = [0, 20]
seed = 5

[beam]
num_beams = [2]
"#,
        model.display()
    );
    let path = dir.join("faults.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

const RECORDS_TOTAL: usize = (SAMPLING_SETTINGS + 2) * PROMPTS;
const ROWS_TOTAL: usize = (SAMPLING_SETTINGS * SAMPLES + 2) * PROMPTS;

/// Complete lines (records) and the rows they hold, over every setting file in `dir`;
/// a torn last line is not counted, as the reader drops it.
fn saved(dir: &Path) -> (usize, usize) {
    let Ok(entries) = std::fs::read_dir(dir.join("settings")) else {
        return (0, 0);
    };
    let (mut records, mut rows) = (0, 0);
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        let text = std::fs::read(&path).unwrap_or_default();
        let complete = match text.iter().rposition(|&b| b == b'\n') {
            Some(end) => &text[..end],
            None => continue,
        };
        for line in complete.split(|&b| b == b'\n').skip(1) {
            let Some(tab) = line.iter().rposition(|&b| b == b'\t') else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<serde_json::Value>(&line[..tab]) else {
                continue;
            };
            records += 1;
            rows += record["samples"].as_array().map_or(0, Vec::len);
        }
    }
    (records, rows)
}

fn start(work: &Path, out: &str) -> Child {
    sweep()
        .current_dir(work)
        .args(["run", "faults.toml", "--out", out, "--quiet"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait until `dir` holds more than `records` records (the child is working), or it exits.
fn wait_for_progress(child: &mut Child, dir: &Path, records: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while saved(dir).0 <= records && Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn run_to_end(work: &Path, out: &str) -> Output {
    sweep()
        .current_dir(work)
        .args(["run", "faults.toml", "--out", out])
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let err = stderr(out);
    assert!(out.status.success(), "{err}");
    err
}

/// "..., N rows generated ..." from a run's last line.
fn rows_generated(stderr: &str) -> usize {
    let words: Vec<&str> = stderr.split_whitespace().collect();
    let at = words
        .windows(2)
        .position(|w| w[1] == "rows" && w[0].parse::<usize>().is_ok())
        .unwrap_or_else(|| panic!("no row count in {stderr}"));
    words[at].parse().unwrap()
}

fn assert_same_csvs(a: &Path, b: &Path) {
    for file in ["summary.csv", "samples.csv"] {
        assert_eq!(
            csv_without_timing(&a.join(file)),
            csv_without_timing(&b.join(file)),
            "{file} differs"
        );
    }
}

/// A small deterministic generator for the kill points.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn reference(work: &Path) -> PathBuf {
    let whole = work.join("whole");
    let err = ok(&run_to_end(work, "whole"));
    assert_eq!(rows_generated(&err), ROWS_TOTAL, "{err}");
    assert_eq!(saved(&whole), (RECORDS_TOTAL, ROWS_TOTAL));
    whole
}

#[test]
fn twenty_kills_then_a_resume_give_the_uninterrupted_csvs() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    write_experiment(work);
    let whole = reference(work);

    let cut = work.join("cut");
    let mut rng = Lcg(17);
    for kill in 0..20 {
        let before = saved(&cut).0;
        let mut child = start(work, "cut");
        wait_for_progress(&mut child, &cut, before);
        std::thread::sleep(Duration::from_micros(rng.below(6_000)));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let (records, _) = saved(&cut);
        assert!(
            status.code().is_none() && records < RECORDS_TOTAL,
            "kill {kill} came after the run had ended ({records} of {RECORDS_TOTAL} records)"
        );
        assert!(!cut.join("summary.csv").exists(), "kill {kill}");
    }
    let (records, rows) = saved(&cut);
    let err = ok(&run_to_end(work, "cut"));
    assert_eq!(rows_generated(&err), ROWS_TOTAL - rows, "{err}");
    assert!(records > 20, "the kills left only {records} records");
    assert_same_csvs(&whole, &cut);
}

#[test]
fn a_resume_after_a_kill_at_two_thirds_generates_only_the_last_third() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    write_experiment(work);
    let whole = reference(work);

    let cut = work.join("cut");
    let mut child = start(work, "cut");
    wait_for_progress(&mut child, &cut, RECORDS_TOTAL * 2 / 3 - 1);
    let _ = child.kill();
    assert!(
        child.wait().unwrap().code().is_none(),
        "the run ended first"
    );
    let (records, rows) = saved(&cut);
    assert!(
        (RECORDS_TOTAL * 2 / 3..RECORDS_TOTAL).contains(&records),
        "{records}"
    );
    let err = ok(&run_to_end(work, "cut"));
    let generated = rows_generated(&err);
    assert_eq!(generated, ROWS_TOTAL - rows, "{err}");
    assert!(generated <= ROWS_TOTAL / 3 + SAMPLES * 2, "{generated}");
    assert_same_csvs(&whole, &cut);
}

#[test]
fn ctrl_c_exits_130_keeps_the_finished_work_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    write_experiment(work);
    let whole = reference(work);

    let cut = work.join("cut");
    let mut child = start(work, "cut");
    wait_for_progress(&mut child, &cut, RECORDS_TOTAL / 3);
    // SAFETY: signals a child this test started and has not yet reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted") && err.contains("run the same command again"),
        "{err}"
    );
    assert!(!cut.join("summary.csv").exists());
    let (records, rows) = saved(&cut);
    assert!(
        (RECORDS_TOTAL / 3 + 1..RECORDS_TOTAL).contains(&records),
        "{records}"
    );
    let err = ok(&run_to_end(work, "cut"));
    assert_eq!(rows_generated(&err), ROWS_TOTAL - rows, "{err}");
    assert_same_csvs(&whole, &cut);
}

#[test]
fn a_full_disk_is_a_clear_error_leaves_no_partial_file_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    write_experiment(work);
    let whole = reference(work);
    let size = |dir: &Path| -> u64 {
        std::fs::read_dir(dir.join("settings"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    // Room for about half of the rows, then for all of them but the reports.
    for limit in [size(&whole) / 2, size(&whole) + 2000] {
        let cut = work.join(format!("cut{limit}"));
        let out = sweep()
            .current_dir(work)
            .args(["run", "faults.toml", "--out"])
            .arg(&cut)
            .env("SWEEP_FAULT_WRITE_LIMIT", limit.to_string())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("No space left on device") && err.contains("free some space"),
            "{err}"
        );
        // No temporary file, and no setting file with a partial record.
        for folder in [cut.clone(), cut.join("settings")] {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                assert!(
                    !name.ends_with(".tmp"),
                    "{name} left in {}",
                    folder.display()
                );
                if name.ends_with(".jsonl") {
                    let bytes = std::fs::read(folder.join(&name)).unwrap();
                    assert_eq!(bytes.last(), Some(&b'\n'), "{name} ends mid-record");
                }
            }
        }
        assert!(!cut.join("summary.csv").exists() || limit > size(&whole));
        let (_, rows) = saved(&cut);
        let err = ok(&run_to_end(work, cut.to_str().unwrap()));
        assert_eq!(rows_generated(&err), ROWS_TOTAL - rows, "{err}");
        assert_same_csvs(&whole, &cut);
    }
}

#[test]
fn a_second_run_on_a_folder_in_use_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    write_experiment(work);
    let whole = reference(work);

    let shared = work.join("shared");
    let mut first = start(work, "shared");
    wait_for_progress(&mut first, &shared, 0);
    let second = run_to_end(work, "shared");
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(2), "{err}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(
        err.contains(&format!("pid {}", first.id())) && err.contains(host.trim()),
        "{err}"
    );
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_csvs(&whole, &shared);
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` where this process may not mount one (not root, or in a container that
    /// forbids it); the fault-injection seam above covers those.
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Self(at.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_tmpfs_is_a_clear_error_leaves_no_partial_file_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    write_experiment(work);
    let Some(disk) = Tmpfs::mount(&work.join("disk"), "256k") else {
        eprintln!("note: no tmpfs could be mounted here; the full-disk seam test stands in");
        return;
    };
    let whole = reference(work);
    let out = run_to_end(work, "disk/r");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("No space left on device") && err.contains("free some space"),
        "{err}"
    );
    let cut = work.join("disk/r");
    for folder in [cut.clone(), cut.join("settings")] {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                !name.ends_with(".tmp"),
                "{name} left in {}",
                folder.display()
            );
            if name.ends_with(".jsonl") {
                let bytes = std::fs::read(folder.join(&name)).unwrap();
                assert_eq!(bytes.last(), Some(&b'\n'), "{name} ends mid-record");
            }
        }
    }
    let (_, rows) = saved(&cut);
    assert!((1..ROWS_TOTAL).contains(&rows), "{rows} rows saved");
    disk.resize("8m");
    let err = ok(&run_to_end(work, "disk/r"));
    assert_eq!(rows_generated(&err), ROWS_TOTAL - rows, "{err}");
    assert_same_csvs(&whole, &cut);
}
