//! How big a sweep may be: fixed caps on the sizes an experiment names, and an estimate of
//! the memory a decoding batch needs, checked against this machine's before any work.
//!
//! The caps are far above any sensible run; they exist so that a typo (`samples = 10000000000`)
//! is an error naming the key instead of an allocation that aborts the process. What a model
//! can actually hold depends on its shape, so the memory a batch needs is estimated from the
//! model's config and refused when it exceeds the machine's memory, naming the value to lower.

use std::fmt;

use crate::engine::generate::GenerateError;
use crate::engine::model::Gpt2Config;
use crate::engine::tokenizer::Tokenizer;
use crate::spec::experiment::Experiment;
use crate::spec::grid::{Setting, Strategy};

/// Settings (grid points, counted before temperature-0 points fold into greedy) per experiment.
pub const MAX_SETTINGS: usize = 100_000;
/// Continuations per prompt and sampling setting.
pub const MAX_SAMPLES: usize = 1_000_000;
/// Rows per forward batch.
pub const MAX_BATCH_SIZE: usize = 65_536;
/// Beams per search: beam search ranks `2 × num_beams` candidates out of every beam's
/// vocabulary, so its memory grows with the square of the width.
pub const MAX_NUM_BEAMS: usize = 10_000;
/// Tokens per continuation; the model's context is the real bound, checked against the model.
pub const MAX_NEW_TOKENS: usize = 1_000_000;
/// The smallest temperature above 0. Logits are divided by T in f32: below about 3e-39 the
/// division overflows, and long before that the distribution is one-hot in f32, so tiny
/// temperatures would be neither greedy nor sampling. 0 is the exact greedy.
pub const MIN_TEMPERATURE: f64 = 1e-6;

/// Whether `temperature` is 0 (greedy) or a finite value at or above [`MIN_TEMPERATURE`]: the
/// one rule for the experiment file and the command line.
pub fn valid_temperature(temperature: f64) -> bool {
    temperature == 0.0 || (temperature.is_finite() && temperature >= MIN_TEMPERATURE)
}

/// What a temperature outside [`valid_temperature`] is told.
pub fn temperature_rule() -> String {
    format!(
        "must be 0 (greedy) or a finite number >= {MIN_TEMPERATURE:e}; below that the scaled \
         logits overflow f32 or the distribution is one-hot: use 0 for greedy, or a temperature \
         >= {MIN_TEMPERATURE:e}"
    )
}

/// Whether `top_p` is in (0, 1], 1 being off.
pub fn valid_top_p(top_p: f64) -> bool {
    top_p > 0.0 && top_p <= 1.0
}

/// What a `top_p` outside [`valid_top_p`] is told.
pub const TOP_P_RULE: &str = "must be in (0, 1] (1.0 = off)";

/// A knob's TOML key, the check of a value and the rule a message quotes.
pub type KnobRule = (&'static str, fn(f64) -> bool, &'static str);

/// The allowed values of each processor knob with a number value, by TOML key, and the rule
/// a message quotes: the same for `[grid]`, `[beam]` and `sweep generate`'s flags. Values are
/// those transformers accepts (its processors refuse the others), with 0 or 1 the "off".
pub const KNOB_RULES: [KnobRule; 8] = [
    (
        "min_p",
        |v| (0.0..=1.0).contains(&v),
        "must be in [0, 1] (0 = off)",
    ),
    (
        "typical_p",
        |v| v > 0.0 && v <= 1.0,
        "must be in (0, 1] (1.0 = off)",
    ),
    (
        "epsilon_cutoff",
        |v| (0.0..1.0).contains(&v),
        "must be in [0, 1) (0 = off)",
    ),
    (
        "eta_cutoff",
        |v| (0.0..1.0).contains(&v),
        "must be in [0, 1) (0 = off)",
    ),
    (
        "top_n_sigma",
        |v| v.is_finite() && v >= 0.0,
        "must be a finite number >= 0 (0 = off)",
    ),
    (
        "repetition_penalty",
        |v| v.is_finite() && v > 0.0,
        "must be a finite number > 0 (1.0 = off; above 1 discourages repeats)",
    ),
    (
        "frequency_penalty",
        |v| v.is_finite(),
        "must be a finite number (0 = off; OpenAI allows -2 to 2)",
    ),
    (
        "presence_penalty",
        |v| v.is_finite(),
        "must be a finite number (0 = off; OpenAI allows -2 to 2)",
    ),
];

/// The check and the rule of a processor knob with a number value (see [`KNOB_RULES`]).
pub fn knob_rule(key: &str) -> (fn(f64) -> bool, &'static str) {
    KNOB_RULES
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, check, rule)| (check, rule))
        .unwrap_or_else(|| panic!("no rule for {key}"))
}
/// Memory assumed when the machine's cannot be read (no `/proc/meminfo`).
pub const ASSUMED_MEMORY: u64 = 16 << 30;
/// Bytes one generated token of a finished text takes while its setting is held in memory:
/// the id and log-probability (4 + 4), its text and its share of the JSON line it is saved as.
const BYTES_PER_KEPT_TOKEN: u64 = 24;
/// Bytes of one beam candidate (score, beam, token) as beam search ranks them.
const BYTES_PER_BEAM_CANDIDATE: u64 = 16;

/// The memory of this machine, and whether it was read or assumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub bytes: u64,
    /// `false` when `/proc/meminfo` could not be read and [`ASSUMED_MEMORY`] stands in.
    pub measured: bool,
}

impl Memory {
    /// `MemTotal` of `/proc/meminfo`, or [`ASSUMED_MEMORY`] where there is none. Total, not
    /// available, memory: what is free now says little about what is free in an hour, and a
    /// refusal must mean the run could never fit.
    pub fn of_this_machine() -> Self {
        let total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib.saturating_mul(1024))
            });
        match total {
            Some(bytes) if bytes > 0 => Self {
                bytes,
                measured: true,
            },
            _ => Self {
                bytes: ASSUMED_MEMORY,
                measured: false,
            },
        }
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.measured {
            write!(f, "this machine has {}", size(self.bytes))
        } else {
            write!(
                f,
                "this machine's memory is unknown (no /proc/meminfo), so {} is assumed",
                size(self.bytes)
            )
        }
    }
}

/// Bytes for messages: KiB below a MiB, MiB below a GiB, GiB with one decimal below 10.
pub fn size(bytes: u64) -> String {
    let mib = bytes as f64 / (1u64 << 20) as f64;
    let gib = mib / 1024.0;
    if mib < 1.0 {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    } else if gib < 1.0 {
        format!("{mib:.0} MiB")
    } else if gib < 10.0 {
        format!("{gib:.1} GiB")
    } else {
        format!("{gib:.0} GiB")
    }
}

/// What one decoding batch holds in memory, in bytes. This is the one estimate `validate`,
/// `run` and `bench` check against the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMemory {
    /// Keys and values of every layer for every row and position:
    /// 2 × n_layer × rows × positions × n_embd × 4 bytes.
    pub kv_cache: u64,
    /// One f32 logit per row and vocabulary entry, and the log-probabilities beside them.
    pub logits: u64,
    /// Beam search's ranked candidates: `2 × num_beams` per beam, each 16 bytes.
    pub beam_candidates: u64,
    /// The model's weights in f32.
    pub weights: u64,
}

impl BatchMemory {
    /// The memory of decoding `rows` rows of `positions` positions (prompt and new tokens);
    /// `num_beams` adds the candidates of a beam search of that width.
    pub fn estimate(
        config: &Gpt2Config,
        rows: usize,
        positions: usize,
        num_beams: Option<usize>,
    ) -> Self {
        let m = |a: u64, b: u64| a.saturating_mul(b);
        let rows = rows as u64;
        let kv_cache = m(
            m(m(2 * 4, config.n_layer as u64), rows),
            m(positions as u64, config.n_embd as u64),
        );
        let logits = m(m(2 * 4, rows), config.vocab_size as u64);
        let beam_candidates = num_beams.map_or(0, |n| {
            let n = n as u64;
            m(m(n, 2 * n), BYTES_PER_BEAM_CANDIDATE)
        });
        let weights = m(config.num_params() as u64, 4);
        Self {
            kv_cache,
            logits,
            beam_candidates,
            weights,
        }
    }

    pub fn total(&self) -> u64 {
        self.kv_cache
            .saturating_add(self.logits)
            .saturating_add(self.beam_candidates)
            .saturating_add(self.weights)
    }

    /// `Err` naming `key = value` and what to lower when the batch cannot fit in `memory`.
    pub fn check(
        &self,
        config: &Gpt2Config,
        positions: usize,
        key: &str,
        value: usize,
        memory: Memory,
    ) -> Result<(), TooBig> {
        if self.total() <= memory.bytes {
            return Ok(());
        }
        let mut parts = vec![format!("{} of KV cache", size(self.kv_cache))];
        parts.push(format!("{} of logits", size(self.logits)));
        if self.beam_candidates > 0 {
            parts.push(format!("{} of beam candidates", size(self.beam_candidates)));
        }
        parts.push(format!("{} of weights", size(self.weights)));
        Err(TooBig {
            key: key.to_owned(),
            value,
            message: format!(
                "needs about {} ({}) for this model (n_layer {}, n_embd {}, vocab_size {}, \
                 {positions} positions)",
                size(self.total()),
                parts.join(", "),
                config.n_layer,
                config.n_embd,
                config.vocab_size
            ),
            memory,
        })
    }
}

/// A size that cannot fit in this machine's memory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} = {value} {message}; {memory}: lower {key}")]
pub struct TooBig {
    pub key: String,
    pub value: usize,
    pub message: String,
    pub memory: Memory,
}

/// Why an experiment cannot run on a model, found before the weights are read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// `max_new_tokens` leaves no room for a prompt: what generation itself would refuse.
    #[error(transparent)]
    Context(#[from] GenerateError),
    #[error(
        "{what} {index} has token id {token}, outside the model's vocabulary of {vocab_size}; \
         the model was trained with a smaller vocabulary than GPT-2's: use text it knows"
    )]
    BadToken {
        what: &'static str,
        index: usize,
        token: u32,
        vocab_size: usize,
    },
    #[error(transparent)]
    TooBig(#[from] TooBig),
}

/// What an experiment needs of a machine, once it fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// The largest batch of the sweep.
    pub peak: BatchMemory,
    /// Positions of the longest prompt (after cropping to the context) plus `max_new_tokens`.
    pub positions: usize,
    pub memory: Memory,
}

/// Checks that `exp` can run on a model of `config` in `memory`: the lengths fit the context,
/// every prompt and reference is in the vocabulary, and neither the largest batch nor the
/// texts of one setting exceed the memory. The same checks run before `sweep run` loads the
/// weights and in `sweep validate`.
pub fn check_experiment(
    exp: &Experiment,
    settings: &[Setting],
    config: &Gpt2Config,
    memory: Memory,
) -> Result<Footprint, FitError> {
    if exp.max_new_tokens >= config.n_positions {
        return Err(FitError::Context(GenerateError::TooLong {
            max_new_tokens: exp.max_new_tokens,
            n_positions: config.n_positions,
        }));
    }
    let tokenizer = Tokenizer::gpt2();
    let in_vocab = |what, index, tokens: &[u32]| match tokens
        .iter()
        .find(|&&t| t as usize >= config.vocab_size)
    {
        Some(&token) => Err(FitError::BadToken {
            what,
            index,
            token,
            vocab_size: config.vocab_size,
        }),
        None => Ok(()),
    };
    let room = config.n_positions - exp.max_new_tokens;
    let mut longest_prompt = 1;
    for (i, prompt) in exp.prompts.iter().enumerate() {
        let tokens = tokenizer.encode(&prompt.text);
        in_vocab("prompt", i, &tokens)?;
        longest_prompt = longest_prompt.max(tokens.len().min(room));
        if let Some(reference) = &prompt.reference {
            in_vocab("the reference of prompt", i, &tokenizer.encode(reference))?;
        }
    }
    let positions = longest_prompt + exp.max_new_tokens;

    // Sampling rows share batches of at most batch_size rows; beams of one search are never
    // split, so a search wider than batch_size runs alone with all its beams.
    let sampling_rows: usize = settings
        .iter()
        .filter(|s| matches!(s.strategy, Strategy::Sample | Strategy::Greedy))
        .map(|s| s.samples)
        .fold(0, usize::saturating_add);
    let widest = settings
        .iter()
        .filter(|s| s.strategy == Strategy::Beam)
        .map(|s| s.num_beams)
        .max();
    let beam_rows: usize = settings
        .iter()
        .filter(|s| s.strategy == Strategy::Beam)
        .map(|s| s.num_beams)
        .fold(0, usize::saturating_add);

    let mut peak: Option<BatchMemory> = None;
    if sampling_rows > 0 {
        let rows = sampling_rows.min(exp.batch_size);
        let batch = BatchMemory::estimate(config, rows, positions, None);
        let (key, value) = if rows == exp.batch_size {
            ("batch_size", exp.batch_size)
        } else {
            ("samples", exp.samples)
        };
        batch.check(config, positions, key, value, memory)?;
        peak = Some(batch);
    }
    if let Some(widest) = widest {
        let rows = widest.max(beam_rows.min(exp.batch_size));
        let batch = BatchMemory::estimate(config, rows, positions, Some(widest));
        let (key, value) = if rows == widest {
            ("num_beams", widest)
        } else {
            ("batch_size", exp.batch_size)
        };
        batch.check(config, positions, key, value, memory)?;
        if peak.is_none_or(|p| batch.total() > p.total()) {
            peak = Some(batch);
        }
    }

    // A setting's texts are held until it is saved: samples × prompts × max_new_tokens tokens.
    let kept = (exp.samples as u64)
        .saturating_mul(exp.prompts.len() as u64)
        .saturating_mul(exp.max_new_tokens as u64)
        .saturating_mul(BYTES_PER_KEPT_TOKEN);
    let weights = BatchMemory::estimate(config, 0, 0, None).weights;
    if sampling_rows > 0 && kept.saturating_add(weights) > memory.bytes {
        return Err(TooBig {
            key: "samples".into(),
            value: exp.samples,
            message: format!(
                "needs about {} to hold one setting's texts ({} prompts x {} tokens each)",
                size(kept),
                exp.prompts.len(),
                exp.max_new_tokens
            ),
            memory,
        }
        .into());
    }
    Ok(Footprint {
        peak: peak.unwrap_or_else(|| BatchMemory::estimate(config, 0, positions, None)),
        positions,
        memory,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const GIB: u64 = 1 << 30;

    fn memory(gib: u64) -> Memory {
        Memory {
            bytes: gib * GIB,
            measured: true,
        }
    }

    fn experiment(body: &str) -> (Experiment, Vec<Setting>) {
        let exp = Experiment::from_str(body, Path::new("x.toml")).unwrap();
        let settings = crate::spec::grid::expand(&exp).settings;
        (exp, settings)
    }

    #[test]
    fn kv_cache_follows_the_formula() {
        let config = Gpt2Config::gpt2();
        let m = BatchMemory::estimate(&config, 4096, 384, None);
        assert_eq!(m.kv_cache, 2 * 12 * 4096 * 384 * 768 * 4);
        assert_eq!(m.logits, 2 * 4096 * 50257 * 4);
        assert_eq!(m.beam_candidates, 0);
        assert_eq!(m.weights, 124_439_808 * 4);
        let beams = BatchMemory::estimate(&config, 100, 384, Some(100));
        assert_eq!(beams.beam_candidates, 100 * 200 * 16);
    }

    #[test]
    fn a_batch_too_big_names_the_value_to_lower() {
        let config = Gpt2Config::gpt2();
        let (exp, settings) = experiment(
            "prompts = [\"a\"]\nmax_new_tokens = 256\nsamples = 8192\nbatch_size = 4096\n[grid]\n",
        );
        let err = check_experiment(&exp, &settings, &config, memory(23)).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with("batch_size = 4096 needs about "),
            "{shown}"
        );
        assert!(shown.contains("KV cache"), "{shown}");
        assert!(shown.contains("n_layer 12, n_embd 768"), "{shown}");
        assert!(
            shown.ends_with("this machine has 23 GiB: lower batch_size"),
            "{shown}"
        );
        // The same sweep in small batches fits.
        let (exp, settings) = experiment(
            "prompts = [\"a\"]\nmax_new_tokens = 256\nsamples = 8192\nbatch_size = 64\n[grid]\n",
        );
        let fit = check_experiment(&exp, &settings, &config, memory(23)).unwrap();
        assert_eq!(fit.positions, 1 + 256);
    }

    #[test]
    fn a_wide_beam_names_num_beams_and_counts_its_candidates() {
        let config = Gpt2Config::gpt2();
        let (exp, settings) =
            experiment("prompts = [\"a\"]\nmax_new_tokens = 10\n[beam]\nnum_beams = 10000\n");
        let err = check_experiment(&exp, &settings, &config, memory(8)).unwrap_err();
        let shown = err.to_string();
        assert!(shown.starts_with("num_beams = 10000 needs"), "{shown}");
        assert!(shown.contains("beam candidates"), "{shown}");
        assert!(shown.ends_with("lower num_beams"), "{shown}");
    }

    #[test]
    fn lengths_and_tokens_must_fit_the_model() {
        let mut config = Gpt2Config::with_shape(2, 4, 64);
        config.n_positions = 64;
        let (exp, settings) =
            experiment("prompts = [\"a\"]\nmax_new_tokens = 64\n[grid]\ntemperature = 0\n");
        assert_eq!(
            check_experiment(&exp, &settings, &config, memory(1)).unwrap_err(),
            FitError::Context(GenerateError::TooLong {
                max_new_tokens: 64,
                n_positions: 64
            })
        );
        config.vocab_size = 512;
        let (exp, settings) = experiment(
            "prompts = [\"a\", \" Shakespeare\"]\nmax_new_tokens = 8\n[grid]\ntemperature = 0\n",
        );
        let err = check_experiment(&exp, &settings, &config, memory(1)).unwrap_err();
        assert!(
            matches!(err, FitError::BadToken { index: 1, token, vocab_size: 512, .. } if token >= 512),
            "{err:?}"
        );
    }

    #[test]
    fn memory_is_read_or_assumed() {
        let m = Memory::of_this_machine();
        assert!(m.bytes > 0);
        if !m.measured {
            assert_eq!(m.bytes, ASSUMED_MEMORY);
        }
        assert!(memory(23).to_string().contains("23 GiB"));
        let assumed = Memory {
            bytes: ASSUMED_MEMORY,
            measured: false,
        };
        assert!(assumed.to_string().contains("16 GiB is assumed"));
    }
}
