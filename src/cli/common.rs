//! Checks and loaders that several commands share: the device flags opened, a model or an
//! experiment loaded, a text file or the sampling flags checked.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use sweep::engine::backend;
use sweep::engine::checkpoint;
use sweep::engine::generate::Generator;
use sweep::engine::sampling::{Processors, SamplingParams};
use sweep::spec::experiment::Experiment;

use super::args::{DeviceArgs, SamplingArgs};
use super::exit::BadInput;

impl DeviceArgs {
    /// The burn device these flags name, and its description for run records.
    pub fn open(&self) -> Result<(String, burn::tensor::Device)> {
        let (name, device) = backend::device(self.backend.as_deref(), self.device.as_deref())?;
        // Half precision changes the samples, so it is part of what a run record names.
        let name = match self.dtype {
            sweep::engine::model::Precision::F32 => name,
            other => format!("{name}/{}", other.name()),
        };
        Ok((name, device))
    }

    /// A decoder for `model` in the chosen precision.
    pub fn generator(&self, model: sweep::engine::model::Gpt2) -> Generator {
        Generator::new(model.with_precision(self.dtype))
    }
}

/// Load a model (the shipped one when none is named) onto `device`.
pub fn load_model(
    model: Option<PathBuf>,
    device: &burn::tensor::Device,
) -> Result<(PathBuf, checkpoint::Loaded)> {
    let path = model_or_default(model)?;
    let loaded = load_model_at(&path, device)?;
    Ok((path, loaded))
}

/// Load the model at `path` onto `device`, the error naming the path.
pub fn load_model_at(path: &Path, device: &burn::tensor::Device) -> Result<checkpoint::Loaded> {
    checkpoint::load(path, device).with_context(|| format!("loading model {}", path.display()))
}

/// `model`, or the shipped model (written to the user's cache folder on first use).
pub fn model_or_default(model: Option<PathBuf>) -> Result<PathBuf> {
    match model {
        Some(path) => Ok(path),
        None => Ok(sweep::engine::shipped::default_model()?),
    }
}

/// A text file an option names, checked before any model is loaded, so that a missing one
/// is named with its option and the fix. `default` is the option's default, which is
/// relative to the root of sweep's source tree, where the corpus is shipped.
pub fn check_text_file(path: &std::path::Path, flag: &str, default: Option<&str>) -> Result<()> {
    let problem = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => return Ok(()),
        Ok(_) => "is a folder, not a text file".to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no such file".to_string(),
        Err(e) => e.to_string(),
    };
    let fix = if default.is_some_and(|d| std::path::Path::new(d) == path) {
        format!(
            "the default {flag} is relative to the root of sweep's source tree, where the \
             Shakespeare corpus is shipped: run from there, or pass {flag} FILE with a UTF-8 \
             text file"
        )
    } else {
        format!("pass {flag} with the path of a UTF-8 text file")
    };
    Err(BadInput(format!("{flag} {}: {problem}; {fix}", path.display())).into())
}

/// The sampling flags as the pipeline takes them, each refused by name when out of range,
/// before a model is loaded.
pub fn check_sampling(args: &SamplingArgs) -> Result<SamplingParams> {
    use sweep::spec::limits;
    let SamplingArgs {
        temperature,
        top_k,
        top_p,
        ..
    } = *args;
    if !limits::valid_temperature(temperature) {
        let temperature = sweep::spec::grid::number(temperature);
        let rule = limits::temperature_rule();
        return Err(BadInput(format!("--temperature {temperature}: {rule}")).into());
    }
    if !limits::valid_top_p(top_p) {
        let top_p = sweep::spec::grid::number(top_p);
        let rule = limits::TOP_P_RULE;
        return Err(BadInput(format!("--top-p {top_p}: {rule}")).into());
    }
    let processors = Processors {
        min_p: args.min_p,
        typical_p: args.typical_p,
        epsilon_cutoff: args.epsilon_cutoff,
        eta_cutoff: args.eta_cutoff,
        top_n_sigma: args.top_n_sigma,
        repetition_penalty: args.repetition_penalty,
        frequency_penalty: args.frequency_penalty,
        presence_penalty: args.presence_penalty,
        no_repeat_ngram_size: args.no_repeat_ngram_size,
        temperature_last: args.temperature_last,
    };
    for (key, value) in [
        ("min_p", processors.min_p),
        ("typical_p", processors.typical_p),
        ("epsilon_cutoff", processors.epsilon_cutoff),
        ("eta_cutoff", processors.eta_cutoff),
        ("top_n_sigma", processors.top_n_sigma),
        ("repetition_penalty", processors.repetition_penalty),
        ("frequency_penalty", processors.frequency_penalty),
        ("presence_penalty", processors.presence_penalty),
    ] {
        let (check, rule) = limits::knob_rule(key);
        if !check(value) {
            let flag = key.replace('_', "-");
            let value = sweep::spec::grid::number(value);
            return Err(BadInput(format!("--{flag} {value}: {key} {rule}")).into());
        }
    }
    Ok(SamplingParams {
        temperature,
        top_k,
        top_p,
        processors,
    })
}

pub fn load_experiment(path: &std::path::Path) -> Result<Experiment> {
    Ok(Experiment::load(path)?)
}

/// Where an experiment's results go without --out; one definition, so that `validate` checks
/// the folder `run` and `slurm` would use.
pub fn default_results(exp: &Experiment) -> PathBuf {
    PathBuf::from("results").join(&exp.name)
}
