//! `sweep slurm --submit` on a real single-node Slurm cluster: four shards as a job array,
//! the merge after them, and the merged CSVs against an unsharded run; then one task
//! submitted again, which must resume rather than recompute.
//!
//! Runs only with `SWEEP_SLURM_TEST` set and `sbatch` on PATH (`.ci/run` installs Slurm and
//! sets it). With `SLURM_CONF` set it uses that cluster; otherwise it starts its own with
//! `tests/slurm/cluster.sh` (root, Debian's `slurm-wlm` and `munge`) and stops it at the end.

use std::io::Write;
mod common;

use common::csv_without_timing;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// How long the jobs may take before the test gives up.
const PATIENCE: Duration = Duration::from_secs(150);

fn sweep_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sweep")
}

fn cluster_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm/cluster.sh")
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// A cluster this test started, stopped when dropped, also when the test fails.
struct Cluster {
    dir: Option<PathBuf>,
    conf: PathBuf,
}

impl Cluster {
    fn get(scratch: &Path) -> Cluster {
        if let Some(conf) = std::env::var_os("SLURM_CONF") {
            return Cluster {
                dir: None,
                conf: conf.into(),
            };
        }
        let dir = scratch.join("cluster");
        let out = Command::new(cluster_script())
            .arg("start")
            .arg(&dir)
            .output()
            .expect("cluster.sh runs");
        let cluster = Cluster {
            conf: dir.join("slurm.conf"),
            dir: Some(dir),
        };
        assert!(
            out.status.success(),
            "starting the cluster failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf);
        c
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = Command::new(cluster_script()).arg("stop").arg(dir).status();
        }
    }
}

fn ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Wait until none of `jobs` is queued or running any more.
fn wait_for(cluster: &Cluster, jobs: &[&str], logs: &Path) {
    let start = Instant::now();
    loop {
        let out = cluster
            .command("squeue")
            .args(["-h", "-o", "%i %T", "-j", &jobs.join(",")])
            .output()
            .expect("squeue runs");
        let queue = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && queue.trim().is_empty() {
            return;
        }
        if start.elapsed() > PATIENCE {
            panic!(
                "jobs still queued after {PATIENCE:?}:\n{queue}\n{}",
                read_logs(logs)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn read_logs(dir: &Path) -> String {
    let mut text = String::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            text.push_str(&format!("--- {}\n", path.display()));
            text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    text
}

fn job_state(cluster: &Cluster, job: &str) -> String {
    let out = cluster
        .command("scontrol")
        .args(["show", "job", "-o", job])
        .output()
        .expect("scontrol runs");
    let text = String::from_utf8_lossy(&out.stdout);
    // One line per array task; every one must have completed.
    let states: Vec<&str> = text
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("JobState="))
        .collect();
    states.join(",")
}

fn settings_mtimes(results: &Path) -> Vec<(PathBuf, std::time::SystemTime)> {
    let mut found = Vec::new();
    for shard in std::fs::read_dir(results.join("shards")).unwrap() {
        let settings = shard.unwrap().path().join("settings");
        for entry in std::fs::read_dir(settings).unwrap() {
            let path = entry.unwrap().path();
            let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
            found.push((path, modified));
        }
    }
    found.sort();
    found
}

#[test]
fn a_job_array_of_shards_merges_into_an_unsharded_run() {
    if std::env::var_os("SWEEP_SLURM_TEST").is_none() || !on_path("sbatch") {
        // Straight to stderr, past the test harness's capture, so the skip is seen.
        let _ = writeln!(
            std::io::stderr(),
            "note: the Slurm test is skipped; it runs with SWEEP_SLURM_TEST=1 and Slurm installed \
             (apt-get install -y slurm-wlm munge; .ci/run does both)"
        );
        return;
    }
    let started = Instant::now();
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let cluster = Cluster::get(scratch.path());

    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/shakespeare");
    std::fs::write(
        work.join("exp.toml"),
        format!(
            r#"name = "onslurm"
model = "{}"
prompts = ["ROMEO.\n", "JULIET.\n"]
max_new_tokens = 8
samples = 2

[grid]
temperature = [0.0, 0.8, 1.0]
top_k = [0, 40]

[beam]
num_beams = [2]
"#,
            model.display()
        ),
    )
    .unwrap();

    let out = cluster
        .command(sweep_bin())
        .current_dir(&work)
        .args(["slurm", "exp.toml", "--shards", "4", "--cpus-per-task", "1"])
        .args(["--time", "00:10:00", "--sweep", sweep_bin(), "--submit"])
        .output()
        .unwrap();
    let said = ok("sweep slurm --submit", &out);
    // "submitted the shards as job array A and the merge as job M ..."
    let words: Vec<&str> = said.split_whitespace().collect();
    let after = |lead: &[&str]| {
        words
            .windows(lead.len() + 1)
            .find(|p| p[..lead.len()] == *lead)
            .map(|p| p[lead.len()].to_string())
            .unwrap_or_else(|| panic!("no job id after {lead:?} in {said}"))
    };
    let array = after(&["job", "array"]);
    let merge = after(&["merge", "as", "job"]);
    let results = work.join("results/onslurm");
    let logs = results.join("slurm/logs");
    wait_for(&cluster, &[&array, &merge], &logs);
    for job in [&array, &merge] {
        let state = job_state(&cluster, job);
        assert!(
            !state.is_empty() && state.split(',').all(|s| s == "COMPLETED"),
            "job {job}: {state}\n{}",
            read_logs(&logs)
        );
    }
    for i in 0..4 {
        assert!(
            results
                .join(format!("shards/{i}-of-4/shard.json"))
                .is_file()
        );
    }

    ok(
        "the unsharded run",
        &Command::new(sweep_bin())
            .current_dir(&work)
            .args(["run", "exp.toml", "--out", "results/whole", "--quiet"])
            .output()
            .unwrap(),
    );
    let whole = work.join("results/whole");
    assert_eq!(
        std::fs::read(whole.join("samples.csv")).unwrap(),
        std::fs::read(results.join("samples.csv")).unwrap(),
        "samples.csv differs"
    );
    assert_eq!(
        csv_without_timing(&whole.join("summary.csv")),
        csv_without_timing(&results.join("summary.csv"))
    );

    // A task submitted again, as after a failure, resumes: nothing is recomputed.
    let before = settings_mtimes(&results);
    let out = cluster
        .command("sbatch")
        .args(["--parsable", "--wait", "--array=2"])
        .arg(results.join("slurm/shards.sbatch"))
        .output()
        .unwrap();
    ok("sbatch --array=2 --wait", &out);
    assert_eq!(
        settings_mtimes(&results),
        before,
        "a finished setting was recomputed"
    );
    let rerun = std::fs::read_dir(&logs)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|n| n.starts_with("shard-2."))
        .count();
    assert_eq!(
        rerun,
        2,
        "the re-run task wrote its own log:\n{}",
        read_logs(&logs)
    );
    assert!(
        read_logs(&logs).contains("already done"),
        "{}",
        read_logs(&logs)
    );

    drop(cluster);
    eprintln!("the Slurm test took {:.0?}", started.elapsed());
}
