//! Batch scripts that run an experiment's shards as a Slurm job array and merge them after.
//!
//! Three files go to `RESULTS/slurm/`: `shards.sbatch` (the array, one task per shard),
//! `merge.sbatch` (one small job) and `submit.sh`, which submits the array and then the merge
//! with `--dependency=afterok:<array>`, so the merge starts only when every task succeeded.
//! Each task passes its shard to `sweep run` as `--shard $SLURM_ARRAY_TASK_ID/N` rather than
//! leaving it to the array's size, so that re-running one failed task with
//! `sbatch --array=K shards.sbatch` is still shard K of N. The scripts run from the folder
//! they were written in, with the paths as they were given, so the jobs resolve the experiment
//! and the model exactly as `sweep run` there would, and `run.json` records the same paths.

use crate::util::exit::{Exit, ExitStatus};
use crate::util::files::{PathError, io_at};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("--shards {0}: need at least 1 shard")]
    NoShards(usize),
    #[error(
        "--{flag} {value:?}: a line break or NUL cannot go into a batch script; pass one value per flag"
    )]
    BadValue { flag: &'static str, value: String },
    #[error("could not run `{command}`: {error} (is Slurm installed and on PATH?)")]
    Spawn {
        command: String,
        error: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Submit { command: String, stderr: String },
}

/// Changing the command line fixes a missing shard count or a bad value.
impl ExitStatus for SlurmError {
    fn exit(&self) -> Exit {
        match self {
            SlurmError::NoShards(_) | SlurmError::BadValue { .. } => Exit::BadInput,
            _ => Exit::Failed,
        }
    }
}

/// Everything the batch scripts say.
#[derive(Debug, Clone)]
pub struct Job {
    /// The experiment TOML, as given (relative to `workdir`).
    pub experiment: PathBuf,
    /// The results folder, as given (relative to `workdir`).
    pub results: PathBuf,
    /// Where the jobs run: the folder `sweep slurm` ran in.
    pub workdir: PathBuf,
    /// The `sweep` binary the jobs run.
    pub sweep: PathBuf,
    /// The experiment's name, for job names.
    pub name: String,
    pub shards: usize,
    pub partition: Option<String>,
    pub account: Option<String>,
    /// Slurm's `--time` of each shard task.
    pub time: Option<String>,
    pub gpus_per_task: Option<u32>,
    pub cpus_per_task: Option<u32>,
    pub mem: Option<String>,
    /// Further `#SBATCH` options for the shard tasks, each as written, e.g. `--qos=high`.
    pub sbatch_options: Vec<String>,
    /// Extra arguments of `sweep run`, e.g. `--backend tch --device cuda`.
    pub run_args: Vec<String>,
}

/// The written scripts.
#[derive(Debug, Clone)]
pub struct Scripts {
    pub dir: PathBuf,
    pub shards: PathBuf,
    pub merge: PathBuf,
    pub submit: PathBuf,
}

/// `text` as one word for sh.
pub fn quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn path_word(path: &Path) -> String {
    quote(&path.to_string_lossy())
}

impl Job {
    fn check(&self) -> Result<(), SlurmError> {
        if self.shards == 0 {
            return Err(SlurmError::NoShards(0));
        }
        let values = [
            ("partition", self.partition.as_deref()),
            ("account", self.account.as_deref()),
            ("time", self.time.as_deref()),
            ("mem", self.mem.as_deref()),
        ];
        let extra = self
            .sbatch_options
            .iter()
            .map(|o| ("sbatch-option", Some(o.as_str())));
        for (flag, value) in values.into_iter().chain(extra) {
            if let Some(v) = value.filter(|v| v.contains(['\n', '\r', '\0'])) {
                return Err(SlurmError::BadValue {
                    flag,
                    value: v.to_string(),
                });
            }
        }
        Ok(())
    }

    /// The folder the scripts and the job logs go to, as an absolute path (Slurm opens log
    /// files before the job changes folder).
    pub fn script_dir(&self) -> PathBuf {
        self.workdir.join(&self.results).join("slurm")
    }

    fn header(&self, out: &mut String, job_name: &str, log: &str) {
        let dir = self.script_dir();
        let _ = writeln!(out, "#!/bin/bash");
        let _ = writeln!(out, "#SBATCH --job-name={}", quote(job_name));
        let _ = writeln!(
            out,
            "#SBATCH --output={}",
            path_word(&dir.join("logs").join(log))
        );
        let _ = writeln!(out, "#SBATCH --chdir={}", path_word(&self.workdir));
        if let Some(p) = &self.partition {
            let _ = writeln!(out, "#SBATCH --partition={}", quote(p));
        }
        if let Some(a) = &self.account {
            let _ = writeln!(out, "#SBATCH --account={}", quote(a));
        }
    }

    /// The job array: one task per shard.
    pub fn shards_script(&self) -> String {
        let mut s = String::new();
        self.header(&mut s, &format!("sweep-{}", self.name), "shard-%a.%A.out");
        let _ = writeln!(s, "#SBATCH --array=0-{}", self.shards - 1);
        let _ = writeln!(s, "#SBATCH --ntasks=1");
        if let Some(t) = &self.time {
            let _ = writeln!(s, "#SBATCH --time={}", quote(t));
        }
        if let Some(g) = self.gpus_per_task {
            let _ = writeln!(s, "#SBATCH --gpus-per-task={g}");
        }
        if let Some(c) = self.cpus_per_task {
            let _ = writeln!(s, "#SBATCH --cpus-per-task={c}");
        }
        if let Some(m) = &self.mem {
            let _ = writeln!(s, "#SBATCH --mem={}", quote(m));
        }
        for option in &self.sbatch_options {
            let _ = writeln!(s, "#SBATCH {option}");
        }
        let _ = writeln!(
            s,
            "# One shard of {} per task. A task that fails can be run again on its own with\n\
             #   sbatch --array=K {}\n\
             # it resumes: the settings it had finished are not computed again.",
            self.shards,
            path_word(&self.script_dir().join("shards.sbatch"))
        );
        let _ = writeln!(s, "set -euo pipefail");
        let mut command = vec![
            path_word(&self.sweep),
            "run".to_string(),
            path_word(&self.experiment),
            "--out".to_string(),
            path_word(&self.results),
            "--shard".to_string(),
            format!("\"${{SLURM_ARRAY_TASK_ID}}/{}\"", self.shards),
        ];
        command.extend(self.run_args.iter().map(|a| quote(a)));
        let _ = writeln!(s, "exec {}", command.join(" "));
        s
    }

    /// The merge, submitted to wait for the whole array.
    pub fn merge_script(&self) -> String {
        let mut s = String::new();
        self.header(
            &mut s,
            &format!("sweep-{}-merge", self.name),
            "merge.%j.out",
        );
        let _ = writeln!(s, "#SBATCH --ntasks=1");
        // A merge whose array failed can never start; it is dropped rather than left queued.
        let _ = writeln!(s, "#SBATCH --kill-on-invalid-dep=yes");
        let _ = writeln!(s, "set -euo pipefail");
        let _ = writeln!(
            s,
            "exec {} merge {}",
            path_word(&self.sweep),
            path_word(&self.results)
        );
        s
    }

    /// Submits the array, then the merge after it.
    pub fn submit_script(&self) -> String {
        let dir = self.script_dir();
        format!(
            "#!/bin/sh\n\
             # Submit the shards of {name} as a job array and the merge after them.\n\
             set -eu\n\
             array=$(sbatch --parsable {shards})\n\
             array=${{array%%;*}}\n\
             merge=$(sbatch --parsable --dependency=afterok:\"$array\" {merge})\n\
             echo \"submitted shards as job $array and the merge as job ${{merge%%;*}}\"\n",
            name = self.name,
            shards = path_word(&dir.join("shards.sbatch")),
            merge = path_word(&dir.join("merge.sbatch")),
        )
    }

    /// Write the three scripts (and the logs folder) under [`Job::script_dir`].
    pub fn write(&self) -> Result<Scripts, SlurmError> {
        self.check()?;
        let dir = self.script_dir();
        let logs = dir.join("logs");
        fs::create_dir_all(&logs).map_err(io_at(&logs))?;
        let scripts = Scripts {
            shards: dir.join("shards.sbatch"),
            merge: dir.join("merge.sbatch"),
            submit: dir.join("submit.sh"),
            dir,
        };
        for (path, text) in [
            (&scripts.shards, self.shards_script()),
            (&scripts.merge, self.merge_script()),
            (&scripts.submit, self.submit_script()),
        ] {
            crate::util::files::write_atomic(path, text.as_bytes()).map_err(io_at(path))?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(io_at(path))?;
        }
        Ok(scripts)
    }
}

/// The ids Slurm gave the submitted jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub array: String,
    pub merge: String,
}

/// Submit the array, then the merge depending on it, with `sbatch`.
pub fn submit(scripts: &Scripts) -> Result<Submitted, SlurmError> {
    let array = sbatch(&[], &scripts.shards)?;
    let merge = sbatch(&[format!("--dependency=afterok:{array}")], &scripts.merge)?;
    Ok(Submitted { array, merge })
}

fn sbatch(args: &[String], script: &Path) -> Result<String, SlurmError> {
    let mut command = Command::new("sbatch");
    command.arg("--parsable").args(args).arg(script);
    let shown = format!(
        "sbatch --parsable {}{}",
        args.iter().map(|a| format!("{a} ")).collect::<String>(),
        script.display()
    );
    let output = command.output().map_err(|error| SlurmError::Spawn {
        command: shown.clone(),
        error,
    })?;
    if !output.status.success() {
        return Err(SlurmError::Submit {
            command: shown,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    // `--parsable` prints `id` or `id;cluster`.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() {
        return Err(SlurmError::Submit {
            command: shown,
            stderr: "no job id in its output".into(),
        });
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            experiment: "experiments/temps.toml".into(),
            results: "results/temps".into(),
            workdir: "/home/me/sweep".into(),
            sweep: "/home/me/sweep/target/release/sweep".into(),
            name: "temps".into(),
            shards: 4,
            partition: Some("gpu".into()),
            account: None,
            time: Some("02:00:00".into()),
            gpus_per_task: Some(1),
            cpus_per_task: Some(8),
            mem: None,
            sbatch_options: vec!["--qos=high".into()],
            run_args: vec!["--backend".into(), "tch".into()],
        }
    }

    #[test]
    fn the_array_runs_one_shard_per_task() {
        let s = job().shards_script();
        for line in [
            "#SBATCH --array=0-3",
            "#SBATCH --partition=gpu",
            "#SBATCH --gpus-per-task=1",
            "#SBATCH --cpus-per-task=8",
            "#SBATCH --time=02:00:00",
            "#SBATCH --qos=high",
            "#SBATCH --chdir=/home/me/sweep",
            "#SBATCH --output=/home/me/sweep/results/temps/slurm/logs/shard-%a.%A.out",
            "exec /home/me/sweep/target/release/sweep run experiments/temps.toml --out results/temps --shard \"${SLURM_ARRAY_TASK_ID}/4\" --backend tch",
        ] {
            assert!(s.lines().any(|l| l == line), "no line {line:?} in\n{s}");
        }
        assert!(s.starts_with("#!/bin/bash\n"));
    }

    #[test]
    fn the_merge_waits_for_the_array() {
        let j = job();
        let merge = j.merge_script();
        assert!(merge.contains("exec /home/me/sweep/target/release/sweep merge results/temps\n"));
        assert!(merge.contains("#SBATCH --kill-on-invalid-dep=yes"));
        assert!(!merge.contains("--gpus-per-task"));
        let submit = j.submit_script();
        assert!(
            submit.contains("sbatch --parsable /home/me/sweep/results/temps/slurm/shards.sbatch")
        );
        assert!(submit.contains(
            "--dependency=afterok:\"$array\" /home/me/sweep/results/temps/slurm/merge.sbatch"
        ));
    }

    #[test]
    fn odd_paths_are_quoted_and_line_breaks_refused() {
        assert_eq!(quote("it's here"), r"'it'\''s here'");
        assert_eq!(quote("plain/path-1.toml"), "plain/path-1.toml");
        assert_eq!(quote(""), "''");
        let mut j = job();
        j.experiment = "my experiments/a b.toml".into();
        assert!(
            j.shards_script()
                .contains(" run 'my experiments/a b.toml' ")
        );
        j.partition = Some("gpu\n#SBATCH --x".into());
        assert!(matches!(
            j.check(),
            Err(SlurmError::BadValue {
                flag: "partition",
                ..
            })
        ));
        j.partition = None;
        j.shards = 0;
        assert_eq!(j.check().unwrap_err().exit(), Exit::BadInput);
    }
}
