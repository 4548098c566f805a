//! Loading fails with one clear error naming the file and the tensor, never a panic; saving
//! and loading back gives the same model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use sweep::engine::checkpoint::{self, SaveDtype};
use sweep::engine::generate::Generator;

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-hf")
}

fn device() -> burn::tensor::Device {
    sweep::engine::backend::device(None, None).unwrap().1
}

/// A copy of tiny-hf whose tensors went through `edit` (name → (dtype, shape, bytes)).
fn edited(
    dir: &Path,
    config_edit: impl Fn(&mut serde_json::Value),
    edit: impl Fn(&mut HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>),
) -> PathBuf {
    let bytes = std::fs::read(tiny().join("model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: HashMap<String, (Dtype, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("model.safetensors"), out).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny().join("config.json")).unwrap())
            .unwrap();
    config_edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir.to_path_buf()
}

fn load_error(path: &Path) -> String {
    match checkpoint::load(path, &device()) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_missing_tensor_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = edited(
        tmp.path(),
        |_| {},
        |t| {
            t.remove("transformer.h.1.mlp.c_fc.bias");
        },
    );
    let err = load_error(&dir);
    assert!(
        err.contains("model.safetensors")
            && err.contains("h.1.mlp.c_fc.bias")
            && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn a_misshaped_tensor_is_named_with_both_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = edited(
        tmp.path(),
        |_| {},
        |t| {
            let (d, _, b) = t.remove("transformer.wpe.weight").unwrap();
            t.insert("transformer.wpe.weight".into(), (d, vec![32, 128], b));
        },
    );
    let err = load_error(&dir);
    assert!(
        err.contains("transformer.wpe.weight")
            && err.contains("[32, 128]")
            && err.contains("[64, 64]"),
        "{err}"
    );
}

#[test]
fn an_unsupported_dtype_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = edited(
        tmp.path(),
        |_| {},
        |t| {
            let (_, s, b) = t.remove("transformer.ln_f.bias").unwrap();
            t.insert("transformer.ln_f.bias".into(), (Dtype::I32, s, b));
        },
    );
    let err = load_error(&dir);
    assert!(
        err.contains("transformer.ln_f.bias") && err.contains("i32") && err.contains("f16"),
        "{err}"
    );
}

#[test]
fn a_config_that_contradicts_the_tensors_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let more = edited(
        &tmp.path().join("more"),
        |c| c["n_layer"] = 3.into(),
        |_| {},
    );
    let err = load_error(&more);
    assert!(err.contains("h.2.") && err.contains("missing"), "{err}");
    let fewer = edited(
        &tmp.path().join("fewer"),
        |c| c["n_layer"] = 1.into(),
        |_| {},
    );
    let err = load_error(&fewer);
    assert!(
        err.contains("transformer.h.1.") && err.contains("config.json"),
        "{err}"
    );
    let heads = edited(
        &tmp.path().join("heads"),
        |c| c["n_head"] = 5.into(),
        |_| {},
    );
    let err = load_error(&heads);
    assert!(err.contains("n_head"), "{err}");
}

#[test]
fn missing_files_and_folders_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let err = load_error(&tmp.path().join("nowhere"));
    assert!(err.contains("nowhere"), "{err}");
    let err = load_error(tmp.path());
    assert!(err.contains("config.json and model.safetensors"), "{err}");
    std::fs::write(
        tmp.path().join("model.safetensors"),
        b"not a safetensors file",
    )
    .unwrap();
    let err = load_error(tmp.path());
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn saved_checkpoints_load_back_to_identical_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let loaded = checkpoint::load(&tiny(), &device()).unwrap();
    checkpoint::save(&loaded.model, tmp.path(), SaveDtype::F32).unwrap();
    let original = Generator::new(loaded.model);
    let reloaded = Generator::new(checkpoint::load(tmp.path(), &device()).unwrap().model);
    let prompt = [1u32, 50, 300, 7, 511];
    assert_eq!(original.logits(&prompt), reloaded.logits(&prompt));
    // f16 weights round: close, not identical.
    let half = tmp.path().join("half");
    checkpoint::save(original.model(), &half, SaveDtype::F16).unwrap();
    let h = Generator::new(checkpoint::load(&half, &device()).unwrap().model);
    let diff = original
        .logits(&prompt)
        .iter()
        .zip(h.logits(&prompt))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        diff > 0.0 && diff < 0.05,
        "f16 round trip changed logits by {diff}"
    );
}
