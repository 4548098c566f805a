//! The results folder: its layout, what makes two runs one experiment, who may write in it,
//! and how every byte gets there without a reader or a crash ever seeing half a file.
//!
//! ```text
//! RESULTS/
//!   experiment.json        what every saved row depends on (see `Fingerprint`)
//!   sweep.lock             pid and host of the process working here (held with flock)
//!   settings/<id>.jsonl    one file per setting: a header, then one record per saved batch
//!   shards/<i>-of-<n>/     a shard's own folder, laid out like this one, plus shard.json
//!   scores/<sha12>/<id>.json   a scorer's log-probabilities and features (see `run::scoring`)
//!   summary.csv samples.csv run.json *.svg *.png   the reports, rebuilt from settings/
//! ```
//!
//! A setting's file is appended to as its batches finish: each record holds the rows one
//! batch completed for one prompt, is framed by a newline and a checksum, and is fsynced
//! before the next batch starts. A kill therefore loses at most the batches in flight, and a
//! record torn by the kill is recognised and dropped when the folder is read again. Every
//! other file is written whole under a unique temporary name, fsynced and renamed into
//! place, and the folder is fsynced, as SQLite commits: readers see the old file or the new
//! one, never a torn one.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::report::summary::Sample;
use crate::spec::experiment::Experiment;
use crate::spec::grid::{Setting, Strategy};
use crate::util::exit::{Exit, ExitStatus};
use crate::util::files::{PathError, hex, io_at, sync_dir, write_all_counted, write_atomic};

/// The layout and encoding of a results folder. Folders of another format are refused with
/// a message, never read; what each format was is in `CHANGELOG.md`.
pub const FORMAT: u32 = 2;

/// Raised whenever a change to `sweep` changes what a setting produces on the same backend
/// (a kernel that rounds differently, a fixed sampler), so that resuming never mixes settings
/// computed by two versions. Folders written before it existed read as 1. What changed in
/// each version is in `CHANGELOG.md`.
pub const NUMERICS: u32 = 5;

pub const EXPERIMENT: &str = "experiment.json";
pub const LOCK: &str = "sweep.lock";
pub const SETTINGS_DIR: &str = "settings";
pub const SHARDS_DIR: &str = "shards";
/// Texts scored under a `[score]` model or by `sweep score`, one folder per scorer (see
/// `run::scoring`).
pub const SCORES_DIR: &str = "scores";
/// What a finished shard writes last.
pub const SHARD_RECORD: &str = "shard.json";
/// The files the reports are written to, beside `settings/`.
pub const REPORTS: [&str; 11] = [
    "summary.csv",
    "samples.csv",
    "run.json",
    "quality_diversity.svg",
    "quality_diversity.png",
    "mauve_diversity.svg",
    "mauve_diversity.png",
    "coherence_diversity.svg",
    "coherence_diversity.png",
    "by_temperature.svg",
    "by_temperature.png",
];
/// What `sweep slurm` writes under `RESULTS/slurm/`.
const SLURM_DIR: &str = "slurm";
const SLURM_FILES: [&str; 3] = ["shards.sbatch", "merge.sbatch", "submit.sh"];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error(
        "{path} is a file, not a folder; {flag} names the folder the results go to (created if \
         missing): pass the path of a folder, or of one that does not exist yet"
    )]
    NotAFolder { path: PathBuf, flag: String },
    #[error(
        "{dir} is in use by another sweep process ({holder}); wait for it to end or stop it, \
         then run again, or pass --out to write elsewhere"
    )]
    Locked { dir: PathBuf, holder: String },
    #[error(
        "--force refused: {dir} is not a sweep results folder ({entry} was not written by sweep), \
         and --force deletes only an empty folder or one sweep wrote; nothing was deleted: \
         move your files out of it, or pass --out NEW_FOLDER"
    )]
    NotOurs { dir: PathBuf, entry: PathBuf },
    #[error(
        "{dir} holds results of a different experiment ({what} changed); results never mix: \
         pass --force to discard them, or --out to write elsewhere"
    )]
    Changed { dir: PathBuf, what: String },
    #[error(
        "{dir} was written by another version of sweep (results format {found}; this one reads \
         format {FORMAT}) and cannot be resumed: pass --force to discard it and start over, or \
         --out to write elsewhere"
    )]
    OtherFormat { dir: PathBuf, found: String },
    #[error(
        "{path}: unreadable ({reason}); pass --force to discard the folder's results, or --out \
         to write elsewhere"
    )]
    Unreadable { path: PathBuf, reason: String },
    #[error(
        "{path}: {reason}; this file cannot be resumed: delete it (rm '{}') and run the same \
         command again, which recomputes setting {id} alone and keeps the others",
        path.display()
    )]
    Setting {
        path: PathBuf,
        id: String,
        reason: String,
    },
    #[error(
        "setting {id}, prompt {prompt}: a log-probability is not finite (NaN or infinite), so \
         nothing was saved for it; the model's logits overflowed (with --dtype f16 or bf16, \
         try --dtype f32) or its weights hold NaN"
    )]
    NonFinite { id: String, prompt: usize },
}

/// The user fixes it by changing what they passed in or what the folder holds, unless the
/// machine or the model failed.
impl ExitStatus for StoreError {
    fn exit(&self) -> Exit {
        match self {
            StoreError::Io(_) | StoreError::NonFinite { .. } => Exit::Failed,
            _ => Exit::BadInput,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The lock

/// Exclusive use of a folder, held with `flock` on its `sweep.lock` (which names the holder):
/// the kernel releases it when the process ends however it ends, so a lock left by a killed
/// run is simply free. Where the filesystem has no `flock`, a lock naming a live process on
/// this host is respected and any other taken over.
pub struct Lock {
    file: File,
}

#[derive(Serialize, Deserialize)]
struct Holder {
    pid: u32,
    host: String,
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and the last byte is never written.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return "unknown host".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

impl Lock {
    pub fn acquire(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(LOCK);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_at(&path))?;
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let holder: Option<Holder> = serde_json::from_str(&text).ok();
        let describe = |h: &Option<Holder>| match h {
            Some(h) => format!("pid {} on {}", h.pid, h.host),
            None => "a process that has not yet written its pid".into(),
        };
        // SAFETY: flock on a file descriptor this function owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                    holder: describe(&holder),
                });
            }
            // No flock here: fall back on the pid the file names.
            if let Some(h) = &holder
                && h.host == hostname()
                && h.pid != std::process::id()
                && alive(h.pid)
            {
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                    holder: describe(&holder),
                });
            }
        }
        let me = serde_json::to_string(&Holder {
            pid: std::process::id(),
            host: hostname(),
        })
        .expect("json");
        file.set_len(0).map_err(io_at(&path))?;
        (|| {
            use std::io::{Seek, SeekFrom};
            file.seek(SeekFrom::Start(0))?;
            file.write_all(me.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()
        })()
        .map_err(io_at(&path))?;
        Ok(Self { file })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // The file stays (removing it would let a second process lock a new file while a
        // third still holds the old one); emptied, it names no holder.
        let _ = self.file.set_len(0);
    }
}

// ---------------------------------------------------------------------------------------------
// What makes two runs one experiment

/// A prompt as the fingerprint records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptKey {
    pub text: String,
    pub reference: Option<String>,
}

fn numerics_before_recorded() -> u32 {
    1
}

/// What every saved row of a folder depends on besides its own setting. The settings
/// themselves are not part of it: each setting's file records its own definition, so a
/// setting added to the experiment runs alone and a removed one stays on disk, unreported.
/// Nor is anything that leaves the samples as they are (`batch_size`, `baseline`, `name`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shared {
    #[serde(default = "numerics_before_recorded")]
    pub numerics: u32,
    pub model_sha256: String,
    /// The backend and, when not f32, the dtype.
    pub backend: String,
    pub max_new_tokens: usize,
    pub prompts: Vec<PromptKey>,
}

/// `experiment.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub format: u32,
    #[serde(flatten)]
    pub shared: Shared,
    /// The ids of the settings the last run asked for, sorted; a record, never compared.
    pub settings: Vec<String>,
}

impl Fingerprint {
    pub fn new(exp: &Experiment, settings: &[Setting], model_sha256: &str, backend: &str) -> Self {
        let mut ids: Vec<String> = settings.iter().map(Setting::id).collect();
        ids.sort();
        Self {
            format: FORMAT,
            shared: Shared {
                numerics: NUMERICS,
                model_sha256: model_sha256.to_string(),
                backend: backend.to_string(),
                max_new_tokens: exp.max_new_tokens,
                prompts: exp
                    .prompts
                    .iter()
                    .map(|p| PromptKey {
                        text: p.text.clone(),
                        reference: p.reference.clone(),
                    })
                    .collect(),
            },
            settings: ids,
        }
    }

    /// What changed between `other` (the older) and `self` that changes samples, in words;
    /// `None` when nothing does.
    pub fn difference(&self, other: &Self) -> Option<String> {
        let (a, b) = (&self.shared, &other.shared);
        if a.model_sha256 != b.model_sha256 {
            return Some("the model weights".into());
        }
        if a.numerics != b.numerics {
            return Some(format!(
                "the numerics of sweep, {} vs {}: this version computes samples differently",
                b.numerics, a.numerics
            ));
        }
        if a.backend != b.backend {
            return Some(format!("the backend: {} vs {}", b.backend, a.backend));
        }
        if a.max_new_tokens != b.max_new_tokens {
            return Some(format!(
                "`max_new_tokens`: {} vs {}",
                b.max_new_tokens, a.max_new_tokens
            ));
        }
        if a.prompts != b.prompts {
            return Some("`prompts`".into());
        }
        None
    }

    /// The key a setting's file is saved under: this fingerprint's shared part and the
    /// setting's whole definition, hashed.
    pub fn setting_key(&self, setting: &Setting) -> String {
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&self.shared).expect("json"));
        h.update(b"\n");
        h.update(serde_json::to_vec(setting).expect("json"));
        hex(&h.finalize())
    }

    /// What a setting's file must hold to be read for `setting`.
    pub fn expected(&self, setting: &Setting) -> Expected {
        let (max_rows, exact_rows) = match setting.strategy {
            Strategy::Sample | Strategy::Greedy | Strategy::Contrastive => (setting.samples, true),
            // A beam search may find fewer hypotheses than asked for.
            Strategy::Beam => (setting.samples, false),
            Strategy::Human => (1, false),
        };
        Expected {
            id: setting.id(),
            key: self.setting_key(setting),
            prompts: self.shared.prompts.len(),
            max_rows,
            exact_rows,
            max_new_tokens: self.shared.max_new_tokens,
        }
    }
}

/// Refuse a results folder path that names something other than a folder, before any work,
/// with the option (`flag`) that named it.
pub fn check_folder(path: &Path, flag: &str) -> Result<(), StoreError> {
    match fs::metadata(path) {
        Ok(m) if !m.is_dir() => Err(StoreError::NotAFolder {
            path: path.to_path_buf(),
            flag: flag.to_string(),
        }),
        _ => Ok(()),
    }
}

/// What [`Store::open`] would refuse in `dir` for `fingerprint`'s experiment, found without
/// writing anything (no lock is taken, no folder created), so that a check before the run
/// says it: a path that is not a folder, a folder another process holds, or one that holds
/// another experiment's rows.
/// `fingerprint` is given the folder's own and returns the new one (or `None` when it cannot
/// be made), so that the model's SHA-256 is computed only where a folder holds a fingerprint.
pub fn preflight(
    dir: &Path,
    fingerprint: impl FnOnce(&Fingerprint) -> Option<Fingerprint>,
) -> Result<(), StoreError> {
    check_folder(dir, "--out")?;
    if !dir.is_dir() {
        return Ok(());
    }
    let lock = dir.join(LOCK);
    if let Ok(file) = File::open(&lock) {
        // SAFETY: flock on a file descriptor this function owns; released when it closes.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK) {
            let holder = fs::read_to_string(&lock)
                .ok()
                .and_then(|t| serde_json::from_str::<Holder>(&t).ok())
                .map(|h| format!("pid {} on {}", h.pid, h.host))
                .unwrap_or_else(|| "a process that has not yet written its pid".into());
            return Err(StoreError::Locked {
                dir: dir.to_path_buf(),
                holder,
            });
        }
    }
    if let Some(old) = read_fingerprint(dir)?
        && let Some(new) = fingerprint(&old)
        && let Some(what) = new.difference(&old)
        && holds_rows(&dir.join(SETTINGS_DIR))?
    {
        return Err(StoreError::Changed {
            dir: dir.to_path_buf(),
            what,
        });
    }
    Ok(())
}

/// Read a folder's `experiment.json`: `None` when there is none.
pub fn read_fingerprint(dir: &Path) -> Result<Option<Fingerprint>, StoreError> {
    let path = dir.join(EXPERIMENT);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(PathError { path, error }.into()),
    };
    let unreadable = |reason: String| StoreError::Unreadable {
        path: path.clone(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
    match value.get("format") {
        Some(f) if f.as_u64() == Some(FORMAT as u64) => {}
        Some(f) => {
            return Err(StoreError::OtherFormat {
                dir: dir.to_path_buf(),
                found: f.to_string(),
            });
        }
        None => {
            return Err(StoreError::OtherFormat {
                dir: dir.to_path_buf(),
                found: "1".into(),
            });
        }
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| unreadable(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// A results folder

/// A results (or shard) folder opened for writing: locked for as long as it lives.
pub struct Store {
    dir: PathBuf,
    fingerprint: Fingerprint,
    /// Whether the folder held no run when it was opened (new, emptied by --force, or taken
    /// over with nothing saved): reports already there are then not this run's history.
    fresh: bool,
    _lock: Lock,
}

impl Store {
    /// Lock `dir` (creating it), check that what it holds belongs to `fingerprint`'s
    /// experiment, or with `force` empty it first (only if it is empty or sweep's), and
    /// record the fingerprint.
    pub fn open(dir: &Path, fingerprint: Fingerprint, force: bool) -> Result<Self, StoreError> {
        check_folder(dir, "--out")?;
        if force && dir.exists() {
            check_ours(dir)?;
        }
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let lock = Lock::acquire(dir)?;
        let mut fresh = force;
        if force {
            // Checked again under the lock: nothing foreign appeared meanwhile.
            check_ours(dir)?;
            clear(dir)?;
        } else if let Some(old) = read_fingerprint(dir)?
            && let Some(what) = fingerprint.difference(&old)
        {
            if holds_rows(&dir.join(SETTINGS_DIR))? {
                return Err(StoreError::Changed {
                    dir: dir.to_path_buf(),
                    what,
                });
            }
            // Nothing was saved under the old fingerprint (say, a run that stopped on a NaN
            // weight before its first batch ended, and the fixed model): nothing can mix, so
            // the folder becomes this experiment's without --force. Its header-only setting
            // files name the old fingerprint, so they go.
            let settings = dir.join(SETTINGS_DIR);
            if settings.is_dir() {
                clear(&settings)?;
            }
            fresh = true;
        } else if !dir.join(EXPERIMENT).is_file() {
            fresh = true;
        }
        let settings = dir.join(SETTINGS_DIR);
        fs::create_dir_all(&settings).map_err(io_at(&settings))?;
        let path = dir.join(EXPERIMENT);
        let json = serde_json::to_string_pretty(&fingerprint).expect("json") + "\n";
        write_atomic(&path, json.as_bytes()).map_err(io_at(&path))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            fingerprint,
            fresh,
            _lock: lock,
        })
    }

    pub fn fresh(&self) -> bool {
        self.fresh
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    pub fn settings_dir(&self) -> PathBuf {
        self.dir.join(SETTINGS_DIR)
    }

    /// Write one of the folder's whole files (a report, `shard.json`) atomically.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.dir.join(name);
        Ok(write_atomic(&path, bytes).map_err(io_at(&path))?)
    }

    /// What is saved of `setting`: `None` when nothing is. A file saved for another
    /// definition of the setting (its `samples`, say) is a changed experiment.
    pub fn read_setting(&self, setting: &Setting) -> Result<Option<SettingData>, StoreError> {
        let expected = self.fingerprint.expected(setting);
        match read_setting(&self.settings_dir(), &expected) {
            Err(StoreError::Setting { reason, .. }) if reason == OTHER_KEY => {
                Err(StoreError::Changed {
                    dir: self.dir.clone(),
                    what: format!(
                        "the definition of setting {} (its samples or num_return_sequences)",
                        expected.id
                    ),
                })
            }
            other => other,
        }
    }

    /// Start or continue saving `setting`, after what `saved` holds.
    pub fn writer(
        &self,
        setting: &Setting,
        saved: Option<&SettingData>,
    ) -> Result<SettingWriter, StoreError> {
        let expected = self.fingerprint.expected(setting);
        SettingWriter::open(&self.settings_dir(), &expected, saved)
    }
}

/// The folder shard `index` of `count` works in, under the results folder `results`.
pub fn shard_dir(results: &Path, index: usize, count: usize) -> PathBuf {
    results.join(SHARDS_DIR).join(format!("{index}-of-{count}"))
}

fn is_shard_dir_name(name: &str) -> bool {
    name.split_once("-of-").is_some_and(|(i, n)| {
        !i.is_empty()
            && !n.is_empty()
            && i.bytes().all(|b| b.is_ascii_digit())
            && n.bytes().all(|b| b.is_ascii_digit())
    })
}

fn is_temporary(name: &str) -> bool {
    name.ends_with(".tmp")
}

/// Where an entry may sit in a results folder.
#[derive(Clone, Copy)]
enum Level {
    Results,
    Settings,
    Shards,
    Slurm,
    Logs,
    /// `scores/`, one folder per scorer.
    Scores,
    Scorer,
}

/// A scorer's folder is named by the first 16 hex digits of its weights' SHA-256.
pub fn is_scorer_dir_name(name: &str) -> bool {
    name.len() == 16
        && name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The first entry under `dir` that sweep could not have written, if any: `--force` deletes
/// only what it can show is its own.
fn foreign_entry(dir: &Path, level: Level) -> Result<Option<PathBuf>, StoreError> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(io_at(dir))?
        .collect::<Result<_, _>>()
        .map_err(io_at(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type().map_err(io_at(&path))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Ok(Some(path));
        };
        let ours = if kind.is_file() {
            is_temporary(&name)
                || match level {
                    Level::Results => {
                        [EXPERIMENT, LOCK, SHARD_RECORD].contains(&name.as_str())
                            || REPORTS.contains(&name.as_str())
                    }
                    Level::Settings => name.ends_with(".jsonl") || name.ends_with(".timing.json"),
                    Level::Slurm => SLURM_FILES.contains(&name.as_str()),
                    Level::Logs => name.ends_with(".out") || name.ends_with(".err"),
                    Level::Scorer => name.ends_with(".json"),
                    Level::Shards | Level::Scores => false,
                }
        } else if kind.is_dir() {
            let inner = match (level, name.as_str()) {
                (Level::Results, SETTINGS_DIR) => Some(Level::Settings),
                (Level::Results, SHARDS_DIR) => Some(Level::Shards),
                (Level::Results, SLURM_DIR) => Some(Level::Slurm),
                (Level::Slurm, "logs") => Some(Level::Logs),
                (Level::Results, SCORES_DIR) => Some(Level::Scores),
                (Level::Scores, n) if is_scorer_dir_name(n) => Some(Level::Scorer),
                (Level::Shards, n) if is_shard_dir_name(n) => Some(Level::Results),
                _ => None,
            };
            match inner {
                Some(inner) => {
                    if let Some(found) = foreign_entry(&path, inner)? {
                        return Ok(Some(found));
                    }
                    true
                }
                None => false,
            }
        } else {
            // Links and devices are never written by sweep.
            false
        };
        if !ours {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

fn check_ours(dir: &Path) -> Result<(), StoreError> {
    if !dir.is_dir() {
        return Err(StoreError::NotOurs {
            dir: dir.to_path_buf(),
            entry: dir.to_path_buf(),
        });
    }
    match foreign_entry(dir, Level::Results)? {
        Some(entry) => Err(StoreError::NotOurs {
            dir: dir.to_path_buf(),
            entry,
        }),
        None => Ok(()),
    }
}

/// Delete everything in `dir` but the lock this process holds.
fn clear(dir: &Path) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        if entry.file_name() == LOCK {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().map_err(io_at(&path))?.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(io_at(&path))?;
    }
    Ok(sync_dir(dir).map_err(io_at(dir))?)
}

// ---------------------------------------------------------------------------------------------
// A setting's file

/// Whether any setting file in `settings_dir` holds a saved row: a line after its header.
/// Files that hold only a header (written when a setting starts) save nothing.
fn holds_rows(settings_dir: &Path) -> Result<bool, StoreError> {
    let entries = match fs::read_dir(settings_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_at(settings_dir)(e).into()),
    };
    for entry in entries {
        let path = entry.map_err(io_at(settings_dir))?.path();
        if !path.is_file() {
            continue;
        }
        let mut head = Vec::new();
        File::open(&path)
            .map_err(io_at(&path))?
            .take(1 << 16)
            .read_to_end(&mut head)
            .map_err(io_at(&path))?;
        // A header line and anything after it, or a header too long to be one.
        let after_header = head
            .iter()
            .position(|&b| b == b'\n')
            .map_or(head.len() == 1 << 16, |end| end + 1 < head.len());
        if after_header {
            return Ok(true);
        }
    }
    Ok(false)
}

const OTHER_KEY: &str = "saved for another definition of this setting";

/// What a setting's file must hold, from the experiment that reads it.
#[derive(Debug, Clone)]
pub struct Expected {
    pub id: String,
    /// [`Fingerprint::setting_key`].
    pub key: String,
    pub prompts: usize,
    /// Rows per prompt at most; exactly that many with `exact_rows`.
    pub max_rows: usize,
    pub exact_rows: bool,
    pub max_new_tokens: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: u32,
    key: String,
    setting: String,
    prompts: usize,
}

/// The rows one batch completed for one prompt.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    prompt: usize,
    /// How many rows the prompt has in all for this setting.
    of: usize,
    /// This record's share of its batch's time.
    wall_s: f64,
    samples: Vec<Sample>,
}

/// The saved part of one prompt.
#[derive(Debug, Clone, Default)]
pub struct PromptRows {
    /// Rows in all, once a record has said.
    pub of: Option<usize>,
    /// By sample index.
    pub rows: BTreeMap<usize, Sample>,
}

/// What a setting's file holds.
#[derive(Debug, Clone)]
pub struct SettingData {
    pub prompts: Vec<PromptRows>,
    pub tokens: usize,
    pub wall_s: f64,
    /// Bytes up to the end of the last whole record; a torn record after it is dropped.
    pub valid_len: usize,
}

impl SettingData {
    pub fn prompt_done(&self, p: usize) -> bool {
        let rows = &self.prompts[p];
        rows.of.is_some_and(|of| rows.rows.len() == of)
    }

    pub fn is_finished(&self) -> bool {
        (0..self.prompts.len()).all(|p| self.prompt_done(p))
    }

    /// The saved rows, by prompt then sample index: the order an uninterrupted run makes.
    pub fn samples(&self) -> Vec<Sample> {
        self.prompts
            .iter()
            .flat_map(|p| p.rows.values().cloned())
            .collect()
    }
}

fn checksum(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes)[..8])
}

fn framed(json: &[u8]) -> Vec<u8> {
    let mut line = json.to_vec();
    line.push(b'\t');
    line.extend_from_slice(checksum(json).as_bytes());
    line.push(b'\n');
    line
}

/// A line's JSON if its checksum holds.
fn unframe(line: &[u8]) -> Option<&[u8]> {
    let tab = line.iter().rposition(|&b| b == b'\t')?;
    let (json, sum) = (&line[..tab], &line[tab + 1..]);
    (sum == checksum(json).as_bytes()).then_some(json)
}

/// Read a setting's file from its bytes. A record torn at the end of the file (by a kill
/// or a full disk) is dropped; anything else that is not what `expected` asks for is an
/// error saying what, never a panic.
pub fn parse_setting(bytes: &[u8], expected: &Expected) -> Result<SettingData, String> {
    let mut lines: Vec<(usize, &[u8])> = Vec::new();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            lines.push((i + 1, &bytes[start..i]));
            start = i + 1;
        }
    }
    let torn_tail = start < bytes.len();
    let Some(&(header_end, header_line)) = lines.first() else {
        return Err("no header line (the file is empty or cut)".into());
    };
    let header: Header = unframe(header_line)
        .ok_or_else(|| "the header line's checksum does not match".to_string())
        .and_then(|json| {
            serde_json::from_slice(json).map_err(|e| format!("the header is not sweep's: {e}"))
        })?;
    if header.format != FORMAT {
        return Err(format!(
            "results format {} (this version of sweep reads {FORMAT})",
            header.format
        ));
    }
    if header.key != expected.key {
        return Err(OTHER_KEY.into());
    }
    if header.setting != expected.id || header.prompts != expected.prompts {
        return Err(format!(
            "the header names setting {} over {} prompts, not {} over {}",
            header.setting, header.prompts, expected.id, expected.prompts
        ));
    }
    let mut data = SettingData {
        prompts: vec![PromptRows::default(); expected.prompts],
        tokens: 0,
        wall_s: 0.0,
        valid_len: header_end,
    };
    let records = &lines[1..];
    for (n, &(end, line)) in records.iter().enumerate() {
        let last = n + 1 == records.len();
        let line_no = n + 2;
        let Some(json) = unframe(line) else {
            if last && !torn_tail {
                // The last write did not reach the disk whole.
                break;
            }
            return Err(format!("line {line_no}: the checksum does not match"));
        };
        let record: Record = serde_json::from_slice(json)
            .map_err(|e| format!("line {line_no}: not a record of rows: {e}"))?;
        check_record(&record, expected, &data).map_err(|e| format!("line {line_no}: {e}"))?;
        let rows = &mut data.prompts[record.prompt];
        rows.of = Some(record.of);
        data.wall_s += record.wall_s;
        for s in record.samples {
            data.tokens += s.token_ids.len();
            rows.rows.insert(s.sample_index, s);
        }
        data.valid_len = end;
    }
    Ok(data)
}

fn check_record(record: &Record, expected: &Expected, data: &SettingData) -> Result<(), String> {
    if record.prompt >= expected.prompts {
        return Err(format!(
            "prompt {} is out of range (the experiment has {})",
            record.prompt, expected.prompts
        ));
    }
    if record.of > expected.max_rows || (expected.exact_rows && record.of != expected.max_rows) {
        return Err(format!(
            "{} rows for a prompt, where the setting has {}{}",
            record.of,
            if expected.exact_rows { "" } else { "at most " },
            expected.max_rows
        ));
    }
    if !(record.wall_s.is_finite() && record.wall_s >= 0.0) {
        return Err(format!("wall_s {} is not a duration", record.wall_s));
    }
    let saved = &data.prompts[record.prompt];
    if saved.of.is_some_and(|of| of != record.of) {
        return Err(format!(
            "prompt {} is said to have {} rows, and {} before",
            record.prompt,
            record.of,
            saved.of.unwrap_or_default()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in &record.samples {
        if s.prompt_index != record.prompt {
            return Err(format!(
                "a row of prompt {} in the record of prompt {}",
                s.prompt_index, record.prompt
            ));
        }
        if s.sample_index >= record.of {
            return Err(format!(
                "sample_index {} is out of range (prompt {} has {} rows)",
                s.sample_index, record.prompt, record.of
            ));
        }
        if saved.rows.contains_key(&s.sample_index) || !seen.insert(s.sample_index) {
            return Err(format!(
                "prompt {} sample {} is saved twice",
                record.prompt, s.sample_index
            ));
        }
        if s.token_ids.len() != s.logprobs.len() {
            return Err(format!(
                "prompt {} sample {}: {} tokens but {} log-probabilities",
                record.prompt,
                s.sample_index,
                s.token_ids.len(),
                s.logprobs.len()
            ));
        }
        if s.token_ids.len() > expected.max_new_tokens {
            return Err(format!(
                "prompt {} sample {}: {} tokens, more than max_new_tokens = {}",
                record.prompt,
                s.sample_index,
                s.token_ids.len(),
                expected.max_new_tokens
            ));
        }
        if s.logprobs.iter().any(|x| !x.is_finite()) {
            return Err(format!(
                "prompt {} sample {}: a log-probability is not finite",
                record.prompt, s.sample_index
            ));
        }
    }
    Ok(())
}

/// Read `expected`'s file in `settings_dir`: `None` when there is none.
pub fn read_setting(
    settings_dir: &Path,
    expected: &Expected,
) -> Result<Option<SettingData>, StoreError> {
    let path = setting_path(settings_dir, &expected.id);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(PathError { path, error }.into()),
    };
    parse_setting(&bytes, expected)
        .map(Some)
        .map_err(|reason| StoreError::Setting {
            path,
            id: expected.id.clone(),
            reason,
        })
}

pub fn setting_path(settings_dir: &Path, id: &str) -> PathBuf {
    settings_dir.join(format!("{id}.jsonl"))
}

/// Appends a setting's records, each on disk before `append` returns.
pub struct SettingWriter {
    path: PathBuf,
    id: String,
    file: File,
    len: u64,
}

impl SettingWriter {
    fn open(
        settings_dir: &Path,
        expected: &Expected,
        saved: Option<&SettingData>,
    ) -> Result<Self, StoreError> {
        let path = setting_path(settings_dir, &expected.id);
        let len = match saved {
            Some(data) => data.valid_len as u64,
            None => {
                // The header arrives whole or not at all.
                let header = Header {
                    format: FORMAT,
                    key: expected.key.clone(),
                    setting: expected.id.clone(),
                    prompts: expected.prompts,
                };
                let line = framed(&serde_json::to_vec(&header).expect("json"));
                write_atomic(&path, &line).map_err(io_at(&path))?;
                line.len() as u64
            }
        };
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io_at(&path))?;
        // Drop a torn record before appending after it.
        if file.metadata().map_err(io_at(&path))?.len() != len {
            file.set_len(len).map_err(io_at(&path))?;
            file.sync_all().map_err(io_at(&path))?;
        }
        Ok(Self {
            path,
            id: expected.id.clone(),
            file,
            len,
        })
    }

    /// Save the rows one batch completed for prompt `prompt` (of `of` rows in all), with
    /// their share of the batch's time. Nothing non-finite is ever written.
    pub fn append(
        &mut self,
        prompt: usize,
        of: usize,
        wall_s: f64,
        samples: Vec<Sample>,
    ) -> Result<(), StoreError> {
        if samples
            .iter()
            .any(|s| s.logprobs.iter().any(|x| !x.is_finite()))
        {
            return Err(StoreError::NonFinite {
                id: self.id.clone(),
                prompt,
            });
        }
        let record = Record {
            prompt,
            of,
            wall_s: if wall_s.is_finite() {
                wall_s.max(0.0)
            } else {
                0.0
            },
            samples,
        };
        let line = framed(&serde_json::to_vec(&record).expect("json"));
        use std::io::{Seek, SeekFrom};
        let result = (|| {
            self.file.seek(SeekFrom::Start(self.len))?;
            write_all_counted(&mut self.file, &line)?;
            self.file.sync_data()
        })();
        match result {
            Ok(()) => {
                self.len += line.len() as u64;
                Ok(())
            }
            Err(error) => {
                // Leave no partial record behind (a kill here leaves one, which the reader drops).
                let _ = self.file.set_len(self.len);
                let _ = self.file.sync_all();
                Err(PathError {
                    path: self.path.clone(),
                    error,
                }
                .into())
            }
        }
    }
}
