//! Files written so that no reader and no crash ever sees half of one: every file whole under a
//! unique temporary name, fsynced and renamed into place, and its folder fsynced, as SQLite
//! commits. Also the hashes that identify files, and what to tell a user whose disk is full.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// An I/O error and the file or folder it happened at: every error of the crate that a file
/// operation causes names the path first, and says what to do about a full disk.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {error}{}", space_hint(error), path = path.display())]
pub struct PathError {
    pub path: PathBuf,
    pub error: std::io::Error,
}

/// For `map_err(io_at(path))?`: the error of an operation on `path`, which `?` turns into
/// the caller's error.
pub fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> PathError + '_ {
    move |error| PathError {
        path: path.to_path_buf(),
        error,
    }
}

/// What to do about a full disk, said after the error.
pub fn space_hint(error: &std::io::Error) -> &'static str {
    // The CSV writer wraps the disk's error in its own.
    let full = |e: &std::io::Error| e.kind() == std::io::ErrorKind::StorageFull;
    let mut inner: Option<&(dyn std::error::Error + 'static)> = error
        .get_ref()
        .map(|e| e as &(dyn std::error::Error + 'static));
    let mut wrapped_full = false;
    while let Some(e) = inner {
        let csv_io = match e.downcast_ref::<csv::Error>().map(csv::Error::kind) {
            Some(csv::ErrorKind::Io(io)) => Some(io),
            _ => None,
        };
        if e.downcast_ref::<std::io::Error>()
            .or(csv_io)
            .is_some_and(full)
        {
            wrapped_full = true;
            break;
        }
        inner = e.source();
    }
    if full(error) || wrapped_full {
        "; free some space and run the same command again: what was saved is kept"
    } else {
        ""
    }
}

/// Testing seam: with `SWEEP_FAULT_WRITE_LIMIT=N` in the environment, the store's writers fail
/// with "no space left on device" once N bytes have been written by this process (the write
/// that crosses the limit is cut there), as a full disk would. The fault tests use it where
/// they cannot mount a small filesystem; nothing else should set it.
fn write_budget() -> Option<u64> {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("SWEEP_FAULT_WRITE_LIMIT")
            .ok()
            .and_then(|v| v.trim().parse().ok())
    })
}

static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// `file.write_all(bytes)`, through the fault-injection seam.
pub fn write_all_counted(file: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(limit) = write_budget() {
        let before = WRITTEN.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        if before + bytes.len() as u64 > limit {
            let room = limit.saturating_sub(before).min(bytes.len() as u64) as usize;
            file.write_all(&bytes[..room])?;
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
    }
    file.write_all(bytes)
}

/// Make a rename or a new file in `dir` survive a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

pub fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A temporary name beside `path` that no other writer, in this process or another, uses.
fn temporary_name(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    parent_of(path).join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// A file written under a unique temporary name and renamed over `path` on `finish`, after
/// which the file and its folder are on disk. Dropped unfinished, it removes its temporary
/// file and leaves `path` as it was.
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let tmp = temporary_name(path);
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            writer: Some(BufWriter::new(file)),
        })
    }

    pub fn finish(mut self) -> std::io::Result<()> {
        let mut writer = self.writer.take().expect("finished once");
        let result = (|| {
            writer.flush()?;
            writer.get_ref().sync_all()?;
            drop(writer);
            fs::rename(&self.tmp, &self.path)?;
            sync_dir(&parent_of(&self.path))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        result
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let writer = self.writer.as_mut().expect("not finished");
        write_all_counted(writer, buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.as_mut().expect("not finished").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Write `bytes` to `path` atomically and durably (see [`AtomicFile`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)?;
    file.finish()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of bytes in memory, hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}
