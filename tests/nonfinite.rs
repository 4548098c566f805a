//! A model whose logits are not numbers (a NaN weight, an overflow) stops the run with a
//! message naming where, writes nothing non-finite, and leaves a folder that the next run, once
//! the model is fixed, completes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sweep() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sweep"))
}

fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-hf")
}

/// A copy of the tiny model in `dir` with `value` as the first element of `tensor` (an f32
/// tensor of the safetensors file).
fn poisoned_model(dir: &Path, tensor: &str, value: f32) -> PathBuf {
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::copy(tiny_model().join("config.json"), model.join("config.json")).unwrap();
    let mut bytes = std::fs::read(tiny_model().join("model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    assert_eq!(header[tensor]["dtype"], "F32");
    let start = header[tensor]["data_offsets"][0].as_u64().unwrap() as usize + 8 + header_len;
    bytes[start..start + 4].copy_from_slice(&value.to_le_bytes());
    std::fs::write(model.join("model.safetensors"), bytes).unwrap();
    model
}

fn heal(model: &Path) {
    std::fs::copy(
        tiny_model().join("model.safetensors"),
        model.join("model.safetensors"),
    )
    .unwrap();
}

fn experiment(dir: &Path, model: &Path, body: &str) -> PathBuf {
    let path = dir.join("t.toml");
    let text = format!(
        "model = \"{}\"\nprompts = [\"a\", \"b c\"]\nmax_new_tokens = 6\nsamples = 3\n{body}",
        model.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn run(dir: &Path, toml: &Path) -> Output {
    sweep()
        .current_dir(dir)
        .args([toml.to_str().unwrap(), "--out", "out", "--quiet"])
        .output()
        .unwrap()
}

/// No saved setting holds a non-finite number (JSON writes one as `null`).
fn assert_nothing_non_finite_saved(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                for bad in ["null", "NaN", "inf"] {
                    assert!(!text.contains(bad), "{} holds {bad}", path.display());
                }
            }
        }
    }
}

#[test]
fn a_nan_weight_stops_the_run_names_where_and_the_fixed_model_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let model = poisoned_model(dir.path(), "transformer.ln_f.weight", f32::NAN);
    let toml = experiment(
        dir.path(),
        &model,
        "[grid]\ntemperature = [0.0, 0.8]\n[beam]\nnum_beams = 2\n",
    );
    for attempt in 0..2 {
        let out = run(dir.path(), &toml);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "attempt {attempt}: {stderr}");
        for part in ["greedy", "prompt 0", "NaN", "step 0", "--dtype f32"] {
            assert!(
                stderr.contains(part),
                "attempt {attempt}: no {part:?} in {stderr}"
            );
        }
        assert!(!stderr.contains("invalid type"), "{stderr}");
        assert!(!dir.path().join("out/summary.csv").exists());
        assert_nothing_non_finite_saved(&dir.path().join("out/settings"));
    }
    heal(&model);
    let out = run(dir.path(), &toml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = std::fs::read_to_string(dir.path().join("out/summary.csv")).unwrap();
    assert!(summary.contains("beam_n2_lp1") && summary.contains("sample_t0.8"));
}

#[test]
fn an_infinite_weight_stops_beam_search_naming_the_beam_setting() {
    let dir = tempfile::tempdir().unwrap();
    let model = poisoned_model(dir.path(), "transformer.ln_f.bias", f32::INFINITY);
    let toml = experiment(dir.path(), &model, "[beam]\nnum_beams = [2, 3]\n");
    let out = run(dir.path(), &toml);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("beam_n2_lp1, prompt 0"), "{stderr}");
    assert!(stderr.contains("step 0"), "{stderr}");
    assert_nothing_non_finite_saved(&dir.path().join("out/settings"));
}

#[test]
fn generate_stops_on_a_nan_logit_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let model = poisoned_model(dir.path(), "transformer.ln_f.weight", f32::NAN);
    let out = sweep()
        .current_dir(dir.path())
        .args([
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "a",
        ])
        .args(["--max-new-tokens", "4", "--temperature", "0.9"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("NaN") && stderr.contains("step 0"),
        "{stderr}"
    );
}
