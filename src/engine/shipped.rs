//! The shipped default model: compiled into the binary, so that a copied or installed `sweep`
//! needs no source tree beside it.

use std::path::{Path, PathBuf};

use crate::util::files;

const SHIPPED_CONFIG: &[u8] = include_bytes!("../../models/shakespeare/config.json");
const SHIPPED_WEIGHTS: &[u8] = include_bytes!("../../models/shakespeare/model.safetensors");

/// Why the shipped model could not be written where a loader can read it.
#[derive(Debug, thiserror::Error)]
#[error(
    "the shipped model could not be written to {cache} ({cache_error}) nor to {temp} \
     ({temp_error}); set XDG_CACHE_HOME to a writable folder, or pass a model folder \
     (--model, or `model` in the experiment)"
)]
pub struct DefaultModelError {
    cache: PathBuf,
    cache_error: std::io::Error,
    temp: PathBuf,
    temp_error: std::io::Error,
}

/// The model used when an experiment or command names none: the one compiled into the
/// binary, written once into the user's cache folder ($XDG_CACHE_HOME or ~/.cache, then
/// sweep/models/shakespeare-<first 12 hex of the weights' SHA-256>/), or a temporary folder
/// where there is no home. Loaders read files, and the weights' SHA-256 is what run
/// fingerprints compare, so the files are written byte for byte and checked on every reuse.
pub fn default_model() -> Result<PathBuf, DefaultModelError> {
    static DONE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(dir) = DONE.get() {
        return Ok(dir.clone());
    }
    let sha = files::sha256_bytes(SHIPPED_WEIGHTS);
    let name = format!("shakespeare-{}", &sha[..12]);
    let cache_root = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        });
    let temp = std::env::temp_dir().join("sweep-models").join(&name);
    let cache_error = match &cache_root {
        Some(root) => {
            let dir = root.join("sweep").join("models").join(&name);
            match materialise(&dir, &sha) {
                Ok(()) => return Ok(DONE.get_or_init(|| dir).clone()),
                Err(e) => (dir, e),
            }
        }
        None => (
            PathBuf::from("~/.cache"),
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "neither XDG_CACHE_HOME nor HOME is set",
            ),
        ),
    };
    match materialise(&temp, &sha) {
        Ok(()) => Ok(DONE.get_or_init(|| temp).clone()),
        Err(temp_error) => Err(DefaultModelError {
            cache: cache_error.0,
            cache_error: cache_error.1,
            temp,
            temp_error,
        }),
    }
}

/// Make `dir` hold the shipped model, rewriting (atomically) whichever file is missing or
/// differs, so a torn or edited copy is never loaded as the shipped one.
fn materialise(dir: &Path, weights_sha: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let config = dir.join("config.json");
    if std::fs::read(&config).ok().as_deref() != Some(SHIPPED_CONFIG) {
        files::write_atomic(&config, SHIPPED_CONFIG)?;
    }
    let weights = dir.join("model.safetensors");
    let intact = std::fs::metadata(&weights).is_ok_and(|m| m.len() == SHIPPED_WEIGHTS.len() as u64)
        && files::sha256_file(&weights).is_ok_and(|s| s == weights_sha);
    if !intact {
        files::write_atomic(&weights, SHIPPED_WEIGHTS)?;
    }
    Ok(())
}
