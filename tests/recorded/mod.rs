//! Reading the recorded transformers fixtures of `tests/fixtures`, shared by the tests that
//! replay them.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// `tests/fixtures` of this checkout, or `SWEEP_TEST_FIXTURES` for a test binary run from
/// another checkout (as on a GPU machine that is sent only the binaries).
pub fn fixtures() -> PathBuf {
    match std::env::var_os("SWEEP_TEST_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"),
    }
}

/// A JSON fixture file, parsed.
pub fn read(name: &str) -> Value {
    let path = fixtures().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// A JSON list of token ids.
pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}
