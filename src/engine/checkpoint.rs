//! Loading and saving GPT-2 weights in the layouts people download.
//!
//! - A Hugging Face folder: `config.json` + `model.safetensors`, names bare (`wte.weight`, as
//!   in the official `gpt2` download) or prefixed `transformer.` (saved from
//!   `GPT2LMHeadModel`); f32, f16 or bf16; `Conv1D` weights stored `[in, out]`.
//! - A nanoGPT-style PyTorch file (`.pt`, `.pth`, `.bin`): a plain state dict, or nanoGPT's
//!   `ckpt.pt` with the state dict under `model` and the shape under `model_args`; keys may
//!   carry torch.compile's `_orig_mod.` prefix; `nn.Linear` weights stored `[out, in]`.
//!
//! Every tensor is checked against the config before the model is built, so a mismatched
//! file is reported by name instead of failing inside a matmul.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::engine::model::{Activation, Attention, Block, ConfigError, Gpt2, Gpt2Config, Mlp};
use crate::util::exit::{Exit, ExitStatus};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "{path}: not a GPT-2 checkpoint; expected a folder with config.json and model.safetensors, \
         a .safetensors file, or a PyTorch .pt/.pth/.bin file"
    )]
    UnknownFormat { path: PathBuf },
    #[error("{path}: cannot read the file: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("{path}: invalid config: {error}")]
    Config { path: PathBuf, error: ConfigError },
    #[error(
        "{path}: no model config; put the Hugging Face config.json of this model beside it \
         (or use a nanoGPT ckpt.pt that stores `model_args`)"
    )]
    NoConfig { path: PathBuf },
    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` has shape {actual:?}, but the config needs {expected:?}")]
    Shape {
        path: PathBuf,
        name: String,
        actual: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{path}: tensor `{name}` is {dtype}; supported dtypes are f32, f16 and bf16")]
    Dtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    #[error(
        "{path}: tensor `{name}` does not belong to a GPT-2 with this config ({config}); \
         check that config.json matches the weights"
    )]
    Unexpected {
        path: PathBuf,
        name: String,
        config: String,
    },
    #[error(
        "{path}: `lm_head.weight` differs from `wte.weight`; only GPT-2's tied LM head is supported"
    )]
    UntiedHead { path: PathBuf },
    #[error(
        "{path}: the config gives n_layer = {config}, but the weights hold {found} layers \
         ({detail}); check that config.json (or the checkpoint's model_args) matches the weights"
    )]
    LayerCount {
        path: PathBuf,
        config: usize,
        found: usize,
        detail: String,
    },
}

/// A checkpoint that cannot be read is the user's to fix: another path, another file.
impl ExitStatus for CheckpointError {
    fn exit(&self) -> Exit {
        Exit::BadInput
    }
}

type Result<T> = std::result::Result<T, CheckpointError>;

/// A loaded model with where it came from.
pub struct Loaded {
    pub model: Gpt2,
    pub config: Gpt2Config,
    /// The weights file actually read (for checksums in run records).
    pub weights: PathBuf,
}

/// Load a model from a folder or file, reading `config.json` beside the weights (or a
/// nanoGPT checkpoint's `model_args`).
pub fn load(path: &Path, device: &Device) -> Result<Loaded> {
    load_with_config(path, None, device)
}

/// Load a model, with an explicit config for a bare state dict that has none beside it.
///
/// A state dict in the nn.Linear layout is nanoGPT's, whose MLP computes the exact GELU, so
/// it gets that activation whatever `config` says: the presets (`Gpt2Config::gpt2()`, ...)
/// describe the shape, and carry GPT-2's tanh GELU.
pub fn load_with_config(
    path: &Path,
    config: Option<Gpt2Config>,
    device: &Device,
) -> Result<Loaded> {
    let weights = weights_file(path)?;
    let resolve = |shapes: &Shapes| resolve_config(&weights, config.clone(), shapes);
    let (tensors, config) = if is_torch(&weights) {
        read_pytorch(&weights, resolve)?
    } else {
        read_safetensors(&weights, resolve)?
    };
    let model = build(&weights, tensors, &config, device)?;
    Ok(Loaded {
        model,
        config,
        weights,
    })
}

/// A model's config and weights file, checked against each other without reading the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspected {
    pub config: Gpt2Config,
    pub weights: PathBuf,
}

/// The config of the model at `path` (`config.json` beside the weights, or a nanoGPT
/// checkpoint's `model_args`), checked and compared with the shapes in the weights file's
/// header, reading no tensor data: what `sweep validate` and a run's checks before loading need.
pub fn inspect(path: &Path) -> Result<Inspected> {
    let weights = weights_file(path)?;
    let shapes = if is_torch(&weights) {
        let reader = open_pytorch(&weights)?;
        canonical_shapes(
            reader
                .tensors()
                .iter()
                .map(|(name, t)| (name.as_str(), t.shape())),
        )
    } else {
        safetensors_header_shapes(&weights)?
    };
    let config = resolve_config(&weights, None, &shapes)?;
    Ok(Inspected { config, weights })
}

fn is_torch(weights: &Path) -> bool {
    matches!(
        weights.extension().and_then(|e| e.to_str()),
        Some("pt" | "pth" | "bin" | "ckpt")
    )
}

/// The names (as written) and shapes of a weights file's tensors by canonical name, without
/// the ignored buffers.
type Shapes = BTreeMap<String, (String, Vec<usize>)>;

fn canonical_shapes<'a>(tensors: impl Iterator<Item = (&'a str, &'a [usize])>) -> Shapes {
    tensors
        .map(|(name, shape)| (canonical_name(name), (name.to_owned(), shape.to_vec())))
        .filter(|(name, _)| !is_ignored(name))
        .collect()
}

/// The config to build with: `explicit`, else `config.json` beside the weights, else a
/// nanoGPT checkpoint's `model_args`; checked, and compared with the file's shapes, so that
/// nothing is allocated for sizes the file does not hold.
///
/// The activation is config.json's when the config comes from there. Otherwise the layout tells: weights in
/// the nn.Linear layout were written by nanoGPT (or code like it), whose `nn.GELU()` is the
/// exact GELU; Hugging Face's Conv1D layout is GPT-2's, with its tanh GELU.
fn resolve_config(
    weights: &Path,
    explicit: Option<Gpt2Config>,
    shapes: &Shapes,
) -> Result<Gpt2Config> {
    let beside = weights.with_file_name("config.json");
    // The file a config error points at: config.json when the config came from there.
    let (mut config, source) = match explicit {
        Some(c) => (c, weights),
        None if beside.is_file() => (read_config(&beside)?, beside.as_path()),
        None if is_torch(weights) => (
            nanogpt_config(weights, shapes).ok_or_else(|| CheckpointError::NoConfig {
                path: weights.to_path_buf(),
            })?,
            weights,
        ),
        None => {
            return Err(CheckpointError::NoConfig {
                path: weights.to_path_buf(),
            });
        }
    };
    config.check().map_err(|error| CheckpointError::Config {
        path: source.to_path_buf(),
        error,
    })?;
    check_shapes(weights, shapes, &config)?;
    if source != beside && is_linear_layout(shapes.get("h.0.attn.c_attn.weight"), config.n_embd) {
        config.activation = Activation::Gelu;
    }
    Ok(config)
}

/// Whether the fused QKV matrix (canonical name `h.0.attn.c_attn.weight`) is stored in the
/// nn.Linear layout `[out, in]` rather than Conv1D's `[in, out]`; it is never square, so its
/// shape tells which layout the whole file uses.
fn is_linear_layout(c_attn: Option<&(String, Vec<usize>)>, n_embd: usize) -> bool {
    c_attn.is_some_and(|(_, shape)| shape[..] == [3 * n_embd, n_embd])
}

/// The sizes a config allocates by: the embeddings' shapes (vocab_size, n_positions, n_embd)
/// and the number of blocks (n_layer) must be those of the file. Every other tensor is
/// checked by name and shape while the model is built.
fn check_shapes(path: &Path, shapes: &Shapes, config: &Gpt2Config) -> Result<()> {
    let c = config.n_embd;
    for (name, expected) in [
        ("wte.weight", [config.vocab_size, c]),
        ("wpe.weight", [config.n_positions, c]),
    ] {
        match shapes.get(name) {
            None => {
                return Err(CheckpointError::MissingTensor {
                    path: path.to_path_buf(),
                    name: name.to_owned(),
                });
            }
            Some((original, actual)) if actual[..] != expected[..] => {
                return Err(CheckpointError::Shape {
                    path: path.to_path_buf(),
                    name: original.clone(),
                    actual: actual.clone(),
                    expected: expected.to_vec(),
                });
            }
            Some(_) => {}
        }
    }
    let layer_of =
        |name: &str| -> Option<usize> { name.strip_prefix("h.")?.split('.').next()?.parse().ok() };
    let found = shapes
        .keys()
        .filter_map(|name| layer_of(name))
        .max()
        .map_or(0, |last| last + 1);
    if found == config.n_layer {
        return Ok(());
    }
    let detail = if found < config.n_layer {
        format!("tensors of h.{found}. are missing")
    } else {
        let beyond = shapes
            .iter()
            .find(|(name, _)| layer_of(name).is_some_and(|l| l >= config.n_layer))
            .map_or_else(String::new, |(_, (original, _))| original.clone());
        format!("`{beyond}` is beyond the last layer")
    };
    Err(CheckpointError::LayerCount {
        path: path.to_path_buf(),
        config: config.n_layer,
        found,
        detail,
    })
}

/// The shapes in a `.safetensors` header: an 8-byte length, then that much JSON. Only the
/// header is read, so a large model is inspected in no time.
fn safetensors_header_shapes(path: &Path) -> Result<Shapes> {
    use std::io::Read;
    let io = |error| CheckpointError::Io {
        path: path.to_path_buf(),
        error,
    };
    let unreadable = |message: String| CheckpointError::Unreadable {
        path: path.to_path_buf(),
        message,
    };
    let mut file = fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(io)?;
    let len = u64::from_le_bytes(len);
    // safetensors itself refuses headers over 100 MB.
    if len > 100_000_000 || len > file_len.saturating_sub(8) {
        return Err(unreadable(format!(
            "the header claims {len} bytes; the file is {file_len} bytes"
        )));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(io)?;
    #[derive(Deserialize)]
    struct Info {
        shape: Vec<usize>,
    }
    let mut entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| unreadable(e.to_string()))?;
    entries.remove("__metadata__");
    let mut named = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        let info: Info = serde_json::from_value(value)
            .map_err(|e| unreadable(format!("tensor `{name}`: {e}")))?;
        named.push((name, info.shape));
    }
    Ok(canonical_shapes(
        named.iter().map(|(n, s)| (n.as_str(), s.as_slice())),
    ))
}

/// The weights file behind a path: a folder's `model.safetensors` (or `pytorch_model.bin`),
/// or the file itself.
pub fn weights_file(path: &Path) -> Result<PathBuf> {
    if path.is_dir() {
        for name in ["model.safetensors", "pytorch_model.bin", "ckpt.pt"] {
            let candidate = path.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
        return Err(CheckpointError::UnknownFormat {
            path: path.to_path_buf(),
        });
    }
    if !path.exists() {
        return Err(CheckpointError::Io {
            path: path.to_path_buf(),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        });
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors" | "pt" | "pth" | "bin" | "ckpt") => Ok(path.to_path_buf()),
        _ => Err(CheckpointError::UnknownFormat {
            path: path.to_path_buf(),
        }),
    }
}

pub fn read_config(path: &Path) -> Result<Gpt2Config> {
    let text = fs::read_to_string(path).map_err(|error| CheckpointError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    Gpt2Config::from_json(&text).map_err(|error| CheckpointError::Config {
        path: path.to_path_buf(),
        error,
    })
}

/// A tensor read from a file, widened to f32.
struct Raw {
    shape: Vec<usize>,
    values: Vec<f32>,
}

fn widen(path: &Path, name: &str, dtype: &str, bytes: &[u8]) -> Result<Vec<f32>> {
    let values = match dtype {
        "f32" => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        "f16" => bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        "bf16" => bytes
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => {
            return Err(CheckpointError::Dtype {
                path: path.to_path_buf(),
                name: name.to_string(),
                dtype: other.to_string(),
            });
        }
    };
    Ok(values)
}

/// The tensors of a `.safetensors` file, read once `resolve` has accepted a config for the
/// shapes in its header.
fn read_safetensors(
    path: &Path,
    resolve: impl FnOnce(&Shapes) -> Result<Gpt2Config>,
) -> Result<(BTreeMap<String, Raw>, Gpt2Config)> {
    let bytes = fs::read(path).map_err(|error| CheckpointError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| CheckpointError::Unreadable {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let views = file.tensors();
    let config = resolve(&canonical_shapes(
        views
            .iter()
            .map(|(name, view)| (name.as_str(), view.shape())),
    ))?;
    let mut out = BTreeMap::new();
    for (name, view) in views {
        if is_ignored(&canonical_name(&name)) {
            continue;
        }
        let dtype = match view.dtype() {
            Dtype::F32 => "f32".to_string(),
            Dtype::F16 => "f16".to_string(),
            Dtype::BF16 => "bf16".to_string(),
            other => format!("{other:?}").to_lowercase(),
        };
        let values = widen(path, &name, &dtype, view.data())?;
        out.insert(
            name,
            Raw {
                shape: view.shape().to_vec(),
                values,
            },
        );
    }
    Ok((out, config))
}

/// nanoGPT's `model_args`.
#[derive(Deserialize)]
struct NanoGptArgs {
    n_layer: usize,
    n_head: usize,
    n_embd: usize,
    block_size: usize,
    vocab_size: usize,
}

fn open_pytorch(path: &Path) -> Result<pytorch_reader::PytorchReader> {
    pytorch_reader::PytorchReader::new(path).map_err(|e| CheckpointError::Unreadable {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// A nanoGPT checkpoint's `model_args` as a config. nanoGPT may pad its vocabulary (50304 for
/// speed): the stored embedding, not the args, says how many rows it has.
fn nanogpt_config(path: &Path, shapes: &Shapes) -> Option<Gpt2Config> {
    use pytorch_reader::PytorchReader;
    let vocab = shapes
        .get("wte.weight")
        .and_then(|(_, shape)| shape.first().copied());
    PytorchReader::load_config::<NanoGptArgs, _>(path, Some("model_args"))
        .ok()
        .map(|a| Gpt2Config {
            n_positions: a.block_size,
            vocab_size: vocab.unwrap_or(a.vocab_size),
            ..Gpt2Config::with_shape(a.n_layer, a.n_head, a.n_embd)
        })
}

/// The tensors of a PyTorch file, read once `resolve` has accepted a config for the shapes
/// its pickle declares.
fn read_pytorch(
    path: &Path,
    resolve: impl FnOnce(&Shapes) -> Result<Gpt2Config>,
) -> Result<(BTreeMap<String, Raw>, Gpt2Config)> {
    use pytorch_reader::DType;
    let unreadable = |e: &dyn std::fmt::Display| CheckpointError::Unreadable {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let reader = open_pytorch(path)?;
    let config = resolve(&canonical_shapes(
        reader
            .tensors()
            .iter()
            .map(|(name, t)| (name.as_str(), t.shape())),
    ))?;
    let mut out = BTreeMap::new();
    for (name, tensor) in reader.tensors() {
        if is_ignored(&canonical_name(name)) {
            continue;
        }
        let dtype = match tensor.dtype() {
            DType::F32 => "f32".to_string(),
            DType::F16 => "f16".to_string(),
            DType::BF16 => "bf16".to_string(),
            other => format!("{other:?}").to_lowercase(),
        };
        let bytes = tensor.read().map_err(|e| unreadable(&e))?;
        let values = widen(path, name, &dtype, &bytes)?;
        out.insert(
            name.clone(),
            Raw {
                shape: tensor.shape().to_vec(),
                values,
            },
        );
    }
    Ok((out, config))
}

/// Strip the wrappers different savers put around GPT-2's own names: nanoGPT's checkpoint
/// dict (`model.`), torch.compile (`_orig_mod.`), DataParallel (`module.`) and
/// `GPT2LMHeadModel` (`transformer.`).
fn canonical_name(name: &str) -> String {
    let mut name = name;
    loop {
        let stripped = [
            "model.",
            "_orig_mod.",
            "module.",
            "transformer.",
            "state_dict.",
        ]
        .iter()
        .find_map(|p| name.strip_prefix(p));
        match stripped {
            Some(rest) => name = rest,
            None => return name.to_string(),
        }
    }
}

/// Buffers that carry no weights: the causal masks old GPT-2 files store per layer.
fn is_ignored(canonical: &str) -> bool {
    canonical.ends_with(".attn.bias") || canonical.ends_with(".attn.masked_bias")
}

/// Build the model, checking every tensor against the config.
fn build(
    path: &Path,
    raw: BTreeMap<String, Raw>,
    config: &Gpt2Config,
    device: &Device,
) -> Result<Gpt2> {
    let mut tensors: HashMap<String, Raw> = HashMap::new();
    let mut originals: HashMap<String, String> = HashMap::new();
    for (name, t) in raw {
        let canonical = canonical_name(&name);
        originals.insert(canonical.clone(), name);
        tensors.insert(canonical, t);
    }
    let c = config.n_embd;
    let describe = format!(
        "n_layer={}, n_head={}, n_embd={}, n_positions={}, vocab_size={}",
        config.n_layer, config.n_head, config.n_embd, config.n_positions, config.vocab_size
    );

    // nn.Linear stores [out, in]; Conv1D stores [in, out]. The fused QKV matrix is never
    // square, so its shape tells which layout the whole file uses.
    let linear_layout = tensors
        .get("h.0.attn.c_attn.weight")
        .is_some_and(|t| t.shape == [3 * c, c]);
    // nanoGPT's `bias=False` models have no bias tensors at all.
    let has_biases = tensors.contains_key("h.0.attn.c_attn.bias") || !linear_layout;

    let mut store = Store {
        path,
        tensors,
        originals,
    };
    let t1 = |v: Vec<f32>| {
        let n = v.len();
        Param::from_tensor(Tensor::<1>::from_data(TensorData::new(v, [n]), device))
    };
    let t2 = |v: Vec<f32>, shape: [usize; 2]| {
        Param::from_tensor(Tensor::<2>::from_data(TensorData::new(v, shape), device))
    };
    let linear = |store: &mut Store, prefix: &str, d_in: usize, d_out: usize| -> Result<Linear> {
        let weight = if linear_layout {
            let w = store.take(&format!("{prefix}.weight"), &[d_out, d_in])?;
            transpose(&w, d_out, d_in)
        } else {
            store.take(&format!("{prefix}.weight"), &[d_in, d_out])?
        };
        let bias = if has_biases {
            store.take(&format!("{prefix}.bias"), &[d_out])?
        } else {
            vec![0.0; d_out]
        };
        Ok(Linear {
            weight: t2(weight, [d_in, d_out]),
            bias: Some(t1(bias)),
        })
    };
    let wte = store.take("wte.weight", &[config.vocab_size, c])?;
    let wpe = store.take("wpe.weight", &[config.n_positions, c])?;
    // Grown layer by layer, not reserved from `n_layer`: the config is not yet trusted, and
    // an absurd count fails below at its first missing tensor instead of in the allocator.
    let mut h = Vec::new();
    let mut norms: Vec<(Vec<f32>, Vec<f32>)> = Vec::new();
    for i in 0..config.n_layer {
        let p = format!("h.{i}");
        let c_attn = linear(&mut store, &format!("{p}.attn.c_attn"), c, 3 * c)?;
        let attn_proj = linear(&mut store, &format!("{p}.attn.c_proj"), c, c)?;
        let c_fc = linear(&mut store, &format!("{p}.mlp.c_fc"), c, 4 * c)?;
        let mlp_proj = linear(&mut store, &format!("{p}.mlp.c_proj"), 4 * c, c)?;
        h.push((c_attn, attn_proj, c_fc, mlp_proj));
    }
    for i in 0..config.n_layer {
        for ln in ["ln_1", "ln_2"] {
            let name = format!("h.{i}.{ln}");
            let gamma = store.take(&format!("{name}.weight"), &[c])?;
            let beta = if has_biases {
                store.take(&format!("{name}.bias"), &[c])?
            } else {
                vec![0.0; c]
            };
            norms.push((gamma, beta));
        }
    }
    let ln_f_gamma = store.take("ln_f.weight", &[c])?;
    let ln_f_beta = if has_biases {
        store.take("ln_f.bias", &[c])?
    } else {
        vec![0.0; c]
    };
    if let Some(head) = store.tensors.remove("lm_head.weight")
        && head.values != wte
    {
        return Err(CheckpointError::UntiedHead {
            path: path.to_path_buf(),
        });
    }
    if let Some(name) = store.tensors.keys().min() {
        return Err(CheckpointError::Unexpected {
            path: path.to_path_buf(),
            name: store.original(name),
            config: describe,
        });
    }

    let layer_norm = |(gamma, beta): (Vec<f32>, Vec<f32>)| -> LayerNorm {
        let mut ln = LayerNormConfig::new(c)
            .with_epsilon(config.layer_norm_epsilon)
            .init(device);
        ln.gamma = t1(gamma);
        ln.beta = Some(t1(beta));
        ln
    };
    let mut norms = norms.into_iter();
    let blocks = h
        .into_iter()
        .map(|(c_attn, attn_proj, c_fc, mlp_proj)| Block {
            ln_1: layer_norm(norms.next().unwrap()),
            attn: Attention {
                c_attn,
                c_proj: attn_proj,
                n_head: config.n_head,
            },
            ln_2: layer_norm(norms.next().unwrap()),
            mlp: Mlp {
                c_fc,
                c_proj: mlp_proj,
            },
        })
        .collect();
    Ok(Gpt2 {
        wte: t2(wte, [config.vocab_size, c]),
        wpe: t2(wpe, [config.n_positions, c]),
        h: blocks,
        ln_f: layer_norm((ln_f_gamma, ln_f_beta)),
        lm_head: None,
        bias_rows: Vec::new(),
        host: None,
        config: config.clone(),
    })
}

/// The tensors of a file by canonical name, handed out once each.
struct Store<'a> {
    path: &'a Path,
    tensors: HashMap<String, Raw>,
    originals: HashMap<String, String>,
}

impl Store<'_> {
    /// The name as written in the file, for messages.
    fn original(&self, canonical: &str) -> String {
        self.originals
            .get(canonical)
            .cloned()
            .unwrap_or_else(|| canonical.to_string())
    }

    fn take(&mut self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let raw = self
            .tensors
            .remove(name)
            .ok_or_else(|| CheckpointError::MissingTensor {
                path: self.path.to_path_buf(),
                name: name.to_string(),
            })?;
        if raw.shape != expected {
            return Err(CheckpointError::Shape {
                path: self.path.to_path_buf(),
                name: self.original(name),
                actual: raw.shape,
                expected: expected.to_vec(),
            });
        }
        Ok(raw.values)
    }
}

fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

/// The precision weights are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveDtype {
    F32,
    F16,
}

/// Write `model` as a Hugging Face GPT-2 folder (`config.json` + `model.safetensors`, names
/// prefixed `transformer.` as `GPT2LMHeadModel.save_pretrained` writes them), so anything
/// that reads GPT-2 — this tool or transformers — loads it. Files are written to temporary
/// names and renamed, so an interrupted save never leaves a half-written checkpoint.
pub fn save(model: &Gpt2, dir: &Path, dtype: SaveDtype) -> Result<()> {
    let io = |error| CheckpointError::Io {
        path: dir.to_path_buf(),
        error,
    };
    fs::create_dir_all(dir).map_err(io)?;
    let mut named: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut push1 = |name: String, t: Tensor<1>| {
        let shape = t.dims().to_vec();
        named.push((
            name,
            shape,
            t.into_data().try_into_vec::<f32>().expect("f32 weights"),
        ));
    };
    let mut vec2: Vec<(String, Tensor<2>)> = vec![
        ("transformer.wte.weight".into(), model.wte.val()),
        ("transformer.wpe.weight".into(), model.wpe.val()),
    ];
    let ln = |name: &str, ln: &LayerNorm, push1: &mut dyn FnMut(String, Tensor<1>)| {
        push1(format!("{name}.weight"), ln.gamma.val());
        if let Some(b) = &ln.beta {
            push1(format!("{name}.bias"), b.val());
        }
    };
    for (i, block) in model.h.iter().enumerate() {
        let p = format!("transformer.h.{i}");
        ln(&format!("{p}.ln_1"), &block.ln_1, &mut push1);
        ln(&format!("{p}.ln_2"), &block.ln_2, &mut push1);
        for (name, linear) in [
            ("attn.c_attn", &block.attn.c_attn),
            ("attn.c_proj", &block.attn.c_proj),
            ("mlp.c_fc", &block.mlp.c_fc),
            ("mlp.c_proj", &block.mlp.c_proj),
        ] {
            vec2.push((format!("{p}.{name}.weight"), linear.weight.val()));
            if let Some(b) = &linear.bias {
                push1(format!("{p}.{name}.bias"), b.val());
            }
        }
    }
    ln("transformer.ln_f", &model.ln_f, &mut push1);
    for (name, t) in vec2 {
        let shape = t.dims().to_vec();
        named.push((
            name,
            shape,
            t.into_data().try_into_vec::<f32>().expect("f32 weights"),
        ));
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));

    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = named
        .into_iter()
        .map(|(name, shape, values)| {
            let bytes = match dtype {
                SaveDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                SaveDtype::F16 => values
                    .iter()
                    .flat_map(|&v| f16::from_f32(v).to_le_bytes())
                    .collect(),
            };
            (name, shape, bytes)
        })
        .collect();
    let st_dtype = match dtype {
        SaveDtype::F32 => Dtype::F32,
        SaveDtype::F16 => Dtype::F16,
    };
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = encoded
        .iter()
        .map(|(name, shape, bytes)| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(st_dtype, shape.clone(), bytes)
                    .expect("shape matches data"),
            )
        })
        .collect();
    let mut metadata = HashMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    let bytes =
        safetensors::serialize(views, Some(metadata)).map_err(|e| CheckpointError::Unreadable {
            path: dir.join("model.safetensors"),
            message: e.to_string(),
        })?;
    let config = model_config_json(&model.config);
    crate::util::files::write_atomic(&dir.join("model.safetensors"), &bytes).map_err(io)?;
    crate::util::files::write_atomic(&dir.join("config.json"), config.as_bytes()).map_err(io)?;
    Ok(())
}

/// `config.json` with the keys transformers needs to load the folder as `GPT2LMHeadModel`.
fn model_config_json(config: &Gpt2Config) -> String {
    let value = serde_json::json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": config.activation.name(),
        "vocab_size": config.vocab_size,
        "n_positions": config.n_positions,
        "n_ctx": config.n_positions,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "bos_token_id": config.eos_token_id,
        "eos_token_id": config.eos_token_id,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "tie_word_embeddings": true,
    });
    serde_json::to_string_pretty(&value).expect("json") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanogpt() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nanogpt/ckpt.pt")
    }

    /// n_layer = 10^8 in a `.pt`'s model_args (or config.json) aborted on allocation before
    /// any tensor was checked. The config is now bounded, and compared with the sizes the
    /// file declares, before anything is read or allocated for it.
    #[test]
    fn regression_a_config_is_checked_against_the_header_before_allocating() {
        let pt = nanogpt();
        let inspected = inspect(&pt).unwrap();
        assert_eq!(inspected.weights, pt);
        assert_eq!(
            (inspected.config.n_layer, inspected.config.vocab_size),
            (2, 512)
        );
        let reader = open_pytorch(&pt).unwrap();
        let shapes = canonical_shapes(
            reader
                .tensors()
                .iter()
                .map(|(name, t)| (name.as_str(), t.shape())),
        );
        let with = |n_layer: usize| Gpt2Config {
            n_layer,
            ..inspected.config.clone()
        };
        let err = resolve_config(&pt, Some(with(100_000_000)), &shapes).unwrap_err();
        assert!(
            err.to_string()
                .contains("invalid config: n_layer = 100000000 is larger"),
            "{err}"
        );
        let device = Device::default();
        assert!(matches!(
            load_with_config(&pt, Some(with(100_000_000)), &device),
            Err(CheckpointError::Config { .. })
        ));
        let err = resolve_config(&pt, Some(with(3)), &shapes).unwrap_err();
        assert!(
            matches!(
                err,
                CheckpointError::LayerCount {
                    config: 3,
                    found: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("tensors of h.2. are missing"),
            "{err}"
        );
        let err = resolve_config(&pt, Some(with(1)), &shapes).unwrap_err();
        assert!(err.to_string().contains(".h.1."), "{err}");
        let wide = Gpt2Config {
            n_positions: 1 << 20,
            ..inspected.config.clone()
        };
        assert!(matches!(
            resolve_config(&pt, Some(wide), &shapes),
            Err(CheckpointError::Shape { ref name, .. }) if name.ends_with("wpe.weight")
        ));
    }

    /// Every nanoGPT model decoded with GPT-2's tanh GELU, though nanoGPT trains with the
    /// exact one. What the weights' own files say decides; failing that, the layout.
    #[test]
    fn regression_nanogpt_layouts_get_the_exact_gelu() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let device = Device::default();
        let activation = |path: &Path, config: Option<Gpt2Config>| {
            let loaded = load_with_config(path, config, &device).unwrap();
            assert_eq!(loaded.model.config, loaded.config);
            loaded.config.activation
        };
        let shape = Gpt2Config {
            vocab_size: 512,
            n_positions: 64,
            eos_token_id: 511,
            ..Gpt2Config::with_shape(2, 4, 64)
        };
        assert_eq!(shape.activation, Activation::GeluTanh);
        // model_args; config.json ("gelu"); the HF folder ("gelu_new").
        assert_eq!(
            inspect(&nanogpt()).unwrap().config.activation,
            Activation::Gelu
        );
        assert_eq!(activation(&nanogpt(), None), Activation::Gelu);
        let sd = fixtures.join("nanogpt-sd/model.pt");
        assert_eq!(activation(&sd, None), Activation::Gelu);
        assert_eq!(
            activation(&fixtures.join("tiny-hf"), None),
            Activation::GeluTanh
        );
        // Bare state dicts with an explicit config: the layout decides.
        let tmp = tempfile::tempdir().unwrap();
        let bare = tmp.path().join("model.pt");
        fs::copy(&sd, &bare).unwrap();
        assert_eq!(activation(&bare, Some(shape.clone())), Activation::Gelu);
        let conv1d = tmp.path().join("model.safetensors");
        fs::copy(fixtures.join("tiny-hf/model.safetensors"), &conv1d).unwrap();
        assert_eq!(
            activation(&conv1d, Some(shape.clone())),
            Activation::GeluTanh
        );
        // A config.json beside a state dict decides, even against its layout.
        let config = fs::read_to_string(fixtures.join("nanogpt-sd/config.json")).unwrap();
        let tanh = config.replace(
            r#""activation_function": "gelu""#,
            r#""activation_function": "gelu_new""#,
        );
        assert_ne!(tanh, config);
        fs::write(tmp.path().join("config.json"), tanh).unwrap();
        assert_eq!(activation(&bare, None), Activation::GeluTanh);
        // Saving writes the activation, so the saved folder decodes as the model did.
        let model = load(&nanogpt(), &device).unwrap().model;
        let out = tmp.path().join("saved");
        save(&model, &out, SaveDtype::F32).unwrap();
        assert_eq!(activation(&out, None), Activation::Gelu);
    }

    #[test]
    fn a_safetensors_header_is_read_without_the_data() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-hf");
        let inspected = inspect(&dir).unwrap();
        assert_eq!(inspected.config.n_layer, 2);
        let shapes = safetensors_header_shapes(&inspected.weights).unwrap();
        assert_eq!(shapes["wte.weight"].1, [512, 64]);
        // A header that claims more than the file holds is refused, not allocated.
        let tmp = tempfile::tempdir().unwrap();
        let bad = tmp.path().join("model.safetensors");
        let mut bytes = u64::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        fs::write(&bad, bytes).unwrap();
        assert!(matches!(
            safetensors_header_shapes(&bad),
            Err(CheckpointError::Unreadable { .. })
        ));
    }
}
