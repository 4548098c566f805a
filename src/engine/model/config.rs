//! The shape of a model as `config.json` gives it, and the checks that refuse a config this
//! model cannot compute before any weight is allocated for it.

use serde::{Deserialize, Serialize};

use crate::engine::tokenizer::END_OF_TEXT_ID;
use crate::util::exit::{Exit, ExitStatus};

/// Caps on a config's sizes (see [`Gpt2Config::check`]).
pub const MAX_N_LAYER: usize = 1024;
pub const MAX_N_HEAD: usize = 1024;
pub const MAX_N_EMBD: usize = 65_536;
pub const MAX_N_POSITIONS: usize = 1 << 20;
pub const MAX_VOCAB_SIZE: usize = 1 << 22;

/// The shape of a GPT-2 model, as written in a Hugging Face `config.json`.
///
/// Keys follow transformers' `GPT2Config`. Those that change what the model computes are
/// either honoured (the shape, `layer_norm_epsilon`, `activation_function`, `eos_token_id`) or, when they ask for
/// something this model does not compute, refused by name; keys that only
/// matter for training or other heads (dropouts, `summary_*`, `initializer_range`,
/// `use_cache`, `dtype`) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub layer_norm_epsilon: f64,
    /// The MLP's GELU: models decode correctly only with the one they were trained with.
    #[serde(rename = "activation_function")]
    pub activation: Activation,
    /// The token that ends a text; generation stops a row when it is produced.
    pub eos_token_id: u32,
}

/// The MLP activation, by what it computes rather than by its many names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Activation {
    /// GPT-2's tanh approximation of GELU, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))):
    /// OpenAI's GPT-2 and every Hugging Face GPT-2 were trained with it.
    #[default]
    #[serde(rename = "gelu_new")]
    GeluTanh,
    /// The exact GELU, x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)): PyTorch's `nn.GELU()`, which
    /// nanoGPT's `model.py` uses. It differs from the tanh form by up to ~5e-4 per unit, enough
    /// to change close greedy and beam decisions.
    #[serde(rename = "gelu")]
    Gelu,
}

impl Activation {
    /// transformers' `activation_function` names of each, the first being the one written.
    fn names(self) -> &'static [&'static str] {
        match self {
            Activation::GeluTanh => &["gelu_new", "gelu_pytorch_tanh", "gelu_fast"],
            Activation::Gelu => &["gelu"],
        }
    }

    /// The activation an `activation_function` value names, if this model computes it.
    pub fn from_name(name: &str) -> Option<Self> {
        [Activation::GeluTanh, Activation::Gelu]
            .into_iter()
            .find(|a| a.names().contains(&name))
    }

    /// The name transformers' `GPT2Config` gives it (`activation_function`).
    pub fn name(self) -> &'static str {
        self.names()[0]
    }
}

/// Why a config was refused. A config is the user's file, so each case is theirs to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON, or not the keys of a GPT-2 config; serde's message names the key and place.
    #[error("{0}")]
    Json(serde_json::Error),
    #[error("model_type = {0:?}: only GPT-2 models (\"gpt2\") can be loaded")]
    ModelType(String),
    #[error(
        "activation_function = {0:?} is not implemented; the MLP computes GPT-2's tanh \
         GELU ({tanh}) or the exact GELU ({exact}), and a model trained with another \
         activation would decode wrongly",
        tanh = Activation::GeluTanh.names().join(", "),
        exact = Activation::Gelu.names().join(", ")
    )]
    Activation(String),
    #[error("n_inner = {n_inner} is not implemented; the MLP is 4 x n_embd = {width} wide (null)")]
    Inner { n_inner: usize, width: usize },
    #[error(
        "scale_attn_weights = false is not implemented; attention scores are always \
         divided by sqrt(head_dim)"
    )]
    UnscaledAttention,
    #[error(
        "scale_attn_by_inverse_layer_idx = true is not implemented; attention scores \
         are not scaled by layer"
    )]
    ScaledByLayer,
    #[error(
        "add_cross_attention = true is not implemented; only decoder-only GPT-2 models \
         can be loaded"
    )]
    CrossAttention,
    #[error(
        "tie_word_embeddings = false is not implemented; the LM head is always the \
         token embedding (wte)"
    )]
    UntiedHead,
    #[error("missing field `n_positions`")]
    NoPositions,
    #[error("{name} must be at least 1")]
    Zero { name: &'static str },
    #[error("{name} = {value} is larger than any GPT-2-architecture model; at most {max}")]
    TooLarge {
        name: &'static str,
        value: usize,
        max: usize,
    },
    #[error("n_embd ({n_embd}) must be a multiple of n_head ({n_head})")]
    HeadsDoNotDivide { n_embd: usize, n_head: usize },
    #[error("layer_norm_epsilon must be positive")]
    Epsilon,
}

impl ExitStatus for ConfigError {
    fn exit(&self) -> Exit {
        Exit::BadInput
    }
}

/// `config.json` as written: the official `gpt2` file carries both `n_positions` and the older
/// `n_ctx`, some older files only `n_ctx`.
///
/// The optional keys are those of transformers' `GPT2Config` that would make a model compute
/// something else than this one does; each is accepted only at the value this model
/// implements, so that a model trained differently is refused by name instead of decoding
/// as if it were plain GPT-2.
#[derive(Deserialize)]
struct RawConfig {
    vocab_size: usize,
    n_positions: Option<usize>,
    n_ctx: Option<usize>,
    n_embd: usize,
    n_layer: usize,
    n_head: usize,
    #[serde(default = "default_layer_norm_epsilon")]
    layer_norm_epsilon: f64,
    #[serde(default)]
    eos_token_id: Option<u32>,
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    activation_function: Option<String>,
    #[serde(default)]
    n_inner: Option<usize>,
    #[serde(default)]
    scale_attn_weights: Option<bool>,
    #[serde(default)]
    scale_attn_by_inverse_layer_idx: Option<bool>,
    #[serde(default)]
    add_cross_attention: Option<bool>,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
}

impl RawConfig {
    /// The first key that asks for a computation this model does not implement.
    fn unsupported(&self) -> Option<ConfigError> {
        if let Some(t) = &self.model_type
            && t != "gpt2"
        {
            return Some(ConfigError::ModelType(t.clone()));
        }
        if let Some(a) = &self.activation_function
            && Activation::from_name(a).is_none()
        {
            return Some(ConfigError::Activation(a.clone()));
        }
        if let Some(n) = self.n_inner
            && Some(n) != self.n_embd.checked_mul(4)
        {
            return Some(ConfigError::Inner {
                n_inner: n,
                width: self.n_embd.saturating_mul(4),
            });
        }
        if self.scale_attn_weights == Some(false) {
            return Some(ConfigError::UnscaledAttention);
        }
        if self.scale_attn_by_inverse_layer_idx == Some(true) {
            return Some(ConfigError::ScaledByLayer);
        }
        if self.add_cross_attention == Some(true) {
            return Some(ConfigError::CrossAttention);
        }
        if self.tie_word_embeddings == Some(false) {
            return Some(ConfigError::UntiedHead);
        }
        None
    }
}

impl TryFrom<RawConfig> for Gpt2Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        if let Some(error) = raw.unsupported() {
            return Err(error);
        }
        Ok(Self {
            vocab_size: raw.vocab_size,
            n_positions: raw
                .n_positions
                .or(raw.n_ctx)
                .ok_or(ConfigError::NoPositions)?,
            n_embd: raw.n_embd,
            n_layer: raw.n_layer,
            n_head: raw.n_head,
            layer_norm_epsilon: raw.layer_norm_epsilon,
            // transformers' GPT2Config defaults to "gelu_new".
            activation: raw
                .activation_function
                .as_deref()
                .and_then(Activation::from_name)
                .unwrap_or_default(),
            eos_token_id: raw.eos_token_id.unwrap_or(END_OF_TEXT_ID),
        })
    }
}

fn default_layer_norm_epsilon() -> f64 {
    1e-5
}

impl Gpt2Config {
    /// The config a `config.json` holds. Only the keys are read here; [`Gpt2Config::check`]
    /// judges the sizes.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        serde_json::from_str(text).map_err(ConfigError::Json)
    }

    /// The 124M-parameter `gpt2`.
    pub fn gpt2() -> Self {
        Self::with_shape(12, 12, 768)
    }

    /// `distilgpt2`: `gpt2` with six layers.
    pub fn distilgpt2() -> Self {
        Self::with_shape(6, 12, 768)
    }

    pub fn gpt2_medium() -> Self {
        Self::with_shape(24, 16, 1024)
    }

    pub fn gpt2_large() -> Self {
        Self::with_shape(36, 20, 1280)
    }

    pub fn gpt2_xl() -> Self {
        Self::with_shape(48, 25, 1600)
    }

    /// A GPT-2-vocabulary model of the given depth, heads and width, with GPT-2's context and
    /// activation.
    pub fn with_shape(n_layer: usize, n_head: usize, n_embd: usize) -> Self {
        Self {
            vocab_size: 50257,
            n_positions: 1024,
            n_embd,
            n_layer,
            n_head,
            layer_norm_epsilon: 1e-5,
            activation: Activation::GeluTanh,
            eos_token_id: END_OF_TEXT_ID,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Parameters, counting the tied LM head once.
    pub fn num_params(&self) -> usize {
        let c = self.n_embd;
        let block =
            2 * 2 * c + (c * 3 * c + 3 * c) + (c * c + c) + (c * 4 * c + 4 * c) + (4 * c * c + c);
        self.vocab_size * c + self.n_positions * c + self.n_layer * block + 2 * c
    }

    /// A config that cannot describe a working model is refused here rather than as a shape
    /// panic deep in a matmul, or as an allocation that aborts: the caps are far above any
    /// GPT-2-architecture model, and each size is also checked against the weights.
    pub fn check(&self) -> Result<(), ConfigError> {
        let sizes = [
            ("vocab_size", self.vocab_size, MAX_VOCAB_SIZE),
            ("n_positions", self.n_positions, MAX_N_POSITIONS),
            ("n_embd", self.n_embd, MAX_N_EMBD),
            ("n_layer", self.n_layer, MAX_N_LAYER),
            ("n_head", self.n_head, MAX_N_HEAD),
        ];
        for (name, value, max) in sizes {
            if value == 0 {
                return Err(ConfigError::Zero { name });
            }
            if value > max {
                return Err(ConfigError::TooLarge { name, value, max });
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err(ConfigError::HeadsDoNotDivide {
                n_embd: self.n_embd,
                n_head: self.n_head,
            });
        }
        if self.layer_norm_epsilon.is_nan() || self.layer_norm_epsilon <= 0.0 {
            return Err(ConfigError::Epsilon);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The official `gpt2` config.json carries both `n_ctx` and `n_positions`.
    #[test]
    fn reads_the_official_gpt2_config() {
        let text = r#"{"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
            "attn_pdrop": 0.1, "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256,
            "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "gpt2",
            "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024,
            "resid_pdrop": 0.1, "vocab_size": 50257}"#;
        let config: Gpt2Config = serde_json::from_str(text).unwrap();
        assert_eq!(config, Gpt2Config::gpt2());
        assert_eq!(config.num_params(), 124_439_808);
        let old: Gpt2Config = serde_json::from_str(
            r#"{"vocab_size": 10, "n_ctx": 8, "n_embd": 4, "n_layer": 1, "n_head": 2}"#,
        )
        .unwrap();
        assert_eq!(old.n_positions, 8);
        assert_eq!(old.eos_token_id, END_OF_TEXT_ID);
    }

    /// `activation_function = "relu"` and `scale_attn_weights = false` were ignored: such a
    /// model decoded as plain GPT-2. Every GPT2Config key that changes the computation is
    /// honoured or refused by name; the values this model computes are accepted.
    #[test]
    fn regression_config_keys_that_change_the_computation_are_refused_by_name() {
        let base = r#""vocab_size": 10, "n_positions": 8, "n_embd": 4, "n_layer": 1, "n_head": 2"#;
        let parse = |extra: &str| serde_json::from_str::<Gpt2Config>(&format!("{{{base}{extra}}}"));
        for ok in [
            "",
            r#", "activation_function": "gelu_new""#,
            r#", "activation_function": "gelu_pytorch_tanh""#,
            r#", "activation_function": "gelu_fast""#,
            r#", "activation_function": "gelu""#,
            r#", "n_inner": null, "scale_attn_weights": true"#,
            r#", "n_inner": 16, "scale_attn_by_inverse_layer_idx": false"#,
            r#", "add_cross_attention": false, "tie_word_embeddings": true"#,
            r#", "reorder_and_upcast_attn": true, "model_type": "gpt2", "resid_pdrop": 0.1"#,
        ] {
            assert!(parse(ok).is_ok(), "{ok}: {:?}", parse(ok).err());
        }
        for (extra, named) in [
            (
                r#", "activation_function": "relu""#,
                "activation_function = \"relu\"",
            ),
            (
                r#", "activation_function": "gelu_python""#,
                "activation_function = \"gelu_python\"",
            ),
            (r#", "n_inner": 12"#, "n_inner = 12"),
            (
                r#", "scale_attn_weights": false"#,
                "scale_attn_weights = false",
            ),
            (
                r#", "scale_attn_by_inverse_layer_idx": true"#,
                "scale_attn_by_inverse_layer_idx = true",
            ),
            (
                r#", "add_cross_attention": true"#,
                "add_cross_attention = true",
            ),
            (
                r#", "tie_word_embeddings": false"#,
                "tie_word_embeddings = false",
            ),
            (
                r#", "model_type": "gpt_bigcode""#,
                "model_type = \"gpt_bigcode\"",
            ),
        ] {
            let err = parse(extra).unwrap_err().to_string();
            assert!(err.contains(named), "{extra}: {err}");
        }
    }

    /// n_layer = 10^8 aborted on allocation before any tensor was looked at.
    #[test]
    fn regression_absurd_sizes_are_refused_by_check() {
        let mut config = Gpt2Config::gpt2();
        assert!(config.check().is_ok());
        config.n_layer = 100_000_000;
        let err = config.check().unwrap_err();
        assert!(
            err.to_string().starts_with("n_layer = 100000000 is larger"),
            "{err}"
        );
        let mut config = Gpt2Config::gpt2();
        config.vocab_size = usize::MAX;
        assert!(
            config
                .check()
                .unwrap_err()
                .to_string()
                .starts_with("vocab_size")
        );
    }

    /// The typed errors print the sentences users were shown when they were strings.
    #[test]
    fn refusals_read_as_whole_sentences() {
        let cases = [
            (
                ConfigError::Activation("relu".into()),
                "activation_function = \"relu\" is not implemented; the MLP computes GPT-2's \
                 tanh GELU (gelu_new, gelu_pytorch_tanh, gelu_fast) or the exact GELU (gelu), \
                 and a model trained with another activation would decode wrongly",
            ),
            (
                ConfigError::ModelType("gpt_bigcode".into()),
                "model_type = \"gpt_bigcode\": only GPT-2 models (\"gpt2\") can be loaded",
            ),
            (
                ConfigError::Inner {
                    n_inner: 12,
                    width: 16,
                },
                "n_inner = 12 is not implemented; the MLP is 4 x n_embd = 16 wide (null)",
            ),
            (
                ConfigError::HeadsDoNotDivide {
                    n_embd: 10,
                    n_head: 3,
                },
                "n_embd (10) must be a multiple of n_head (3)",
            ),
            (
                ConfigError::Zero { name: "n_head" },
                "n_head must be at least 1",
            ),
        ];
        for (error, want) in cases {
            assert_eq!(error.to_string(), want);
        }
        let missing =
            Gpt2Config::from_json(r#"{"vocab_size": 10, "n_embd": 4, "n_layer": 1, "n_head": 2}"#);
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .starts_with("missing field `n_positions`")
        );
    }

    /// `activation_function = "gelu"` (exact, nanoGPT's) was refused; each name now chooses
    /// what the MLP computes, and a config without the key is GPT-2's tanh GELU, as in
    /// transformers.
    #[test]
    fn activation_function_chooses_the_gelu() {
        let base = r#""vocab_size": 10, "n_positions": 8, "n_embd": 4, "n_layer": 1, "n_head": 2"#;
        let parse = |extra: &str| Gpt2Config::from_json(&format!("{{{base}{extra}}}")).unwrap();
        assert_eq!(parse("").activation, Activation::GeluTanh);
        for (name, activation) in [
            ("gelu_new", Activation::GeluTanh),
            ("gelu_pytorch_tanh", Activation::GeluTanh),
            ("gelu_fast", Activation::GeluTanh),
            ("gelu", Activation::Gelu),
        ] {
            let config = parse(&format!(r#", "activation_function": "{name}""#));
            assert_eq!(config.activation, activation, "{name}");
            let written = serde_json::to_value(&config).unwrap();
            assert_eq!(written["activation_function"], activation.name());
            let back: Gpt2Config = serde_json::from_value(written).unwrap();
            assert_eq!(back, config);
        }
    }

    #[test]
    fn preset_shapes_are_consistent() {
        for c in [
            Gpt2Config::gpt2(),
            Gpt2Config::distilgpt2(),
            Gpt2Config::gpt2_medium(),
            Gpt2Config::gpt2_large(),
            Gpt2Config::gpt2_xl(),
        ] {
            assert!(c.check().is_ok(), "{c:?}");
        }
        assert_eq!(Gpt2Config::gpt2_medium().num_params(), 354_823_168);
    }
}
