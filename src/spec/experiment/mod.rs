//! Experiment files: the TOML a user writes to describe a sweep, checked and resolved.
//!
//! An experiment names a model, a set of prompts and grids of decoding settings:
//!
//! ```toml
//! name = "temps"                    # results/temps/ unless --out; default: the file stem
//! model = "models/shakespeare"      # optional: default is the shipped model
//! prompts = ["ROMEO:", "JULIET:"]   # or prompts_file = "prompts.txt" / "heldout.jsonl"
//! max_new_tokens = 200
//! samples = 64                      # samples per sampling setting and prompt
//! batch_size = 64                   # optional, default 64
//! baseline = 8                      # optional: the num_beams the difference columns compare to
//! [grid]                            # the cartesian product of every list
//! temperature = [0.0, 0.5, 0.8]     # 0 = greedy
//! top_k = [0, 50]                   # 0 = off
//! top_p = [0.9, 1.0]                # 1.0 = off
//! seed = [1, 2]
//! [beam]                            # optional beam-search baselines
//! num_beams = [4, 8]
//! length_penalty = 1.0              # scalar or list
//! early_stopping = false            # true | false | "never"
//! num_return_sequences = 1          # <= the smallest num_beams
//! ```
//!
//! `[grid]` may also be written as an array of tables, `[[grid]]`, to list a few hand-picked
//! products instead of one big one: each table is its own cartesian product (absent keys take
//! the same defaults), and the sampling settings are the union of them all, in file order, a
//! setting that an earlier table already produced being kept once.
//!
//! A sweep can run for hours, so everything that can be checked before the model is loaded
//! is checked here, and every mistake is reported as `file:line:column: message` pointing at
//! the offending value and saying what is allowed. Sizes are capped (see [`crate::spec::limits`]),
//! and the grid's size is counted from its lists before anything is expanded; what depends on
//! the model (its context, vocabulary and the memory of a batch) is checked by
//! [`crate::spec::limits::check_experiment`] once its config is read. [`Experiment`] is the fully resolved
//! result, every default filled in; the runner serialises it into `run.json` and compares its
//! canonical JSON to notice that a TOML changed between runs.
//!
//! The reading is split by concern: `schema` holds the TOML as written, `resolve` checks it
//! and fills in defaults, `diagnostics` words the TOML reader's errors, [`prompts`] reads
//! prompts files and [`early_stopping`] is the one place that spells that key.

mod diagnostics;
pub mod early_stopping;
pub mod prompts;
mod resolve;
mod schema;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::engine::beam::EarlyStopping;
use crate::engine::processors::Processors;
use crate::util::exit::{Exit, ExitStatus};

use diagnostics::{friendlier_message, name_the_key};
pub use prompts::{PROMPTS_EXTENSIONS, decode_escapes};
use resolve::Ctx;
use schema::RawExperiment;
pub use schema::{BEAM_KEYS, GRID_KEYS, TOP_KEYS};

/// Rows per forward batch when `batch_size` is not given.
pub const DEFAULT_BATCH_SIZE: usize = 64;

/// A checked experiment with every default filled in and every path resolved. It reads back
/// from the JSON it writes (`run.json`, `shard.json`), so a merge rebuilds the very experiment
/// the shards ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Names the results folder (`results/<name>/`); the TOML file stem when not given.
    pub name: String,
    /// The TOML path as given on the command line, for messages and `run.json`.
    pub source: PathBuf,
    /// The resolved model path; `None` means the shipped default, which the caller resolves.
    pub model: Option<PathBuf>,
    /// The prompts, in file order.
    pub prompts: Vec<Prompt>,
    /// Tokens generated per continuation (an upper bound: generation may end at EOS).
    pub max_new_tokens: usize,
    /// Continuations per prompt for each sampling setting. It is required when a grid has
    /// a temperature above 0, and 1 when nothing samples (it would mean nothing there).
    pub samples: usize,
    /// Rows per forward batch.
    pub batch_size: usize,
    /// The beam setting the difference columns compare to; `None` means the best-scoring
    /// beam setting of all.
    pub baseline: Option<Baseline>,
    /// Sampling and greedy settings: one entry for a `[grid]` table, one per table, in file
    /// order, for `[[grid]]`; empty when the file has no grid (beam-only). Serialised under
    /// the key `grid`: `null` when empty, the table itself when there is one (so a `[grid]`
    /// file and its fingerprint read as before), a list of tables when there are several.
    #[serde(
        rename = "grid",
        serialize_with = "serialize_grids",
        deserialize_with = "deserialize_grids",
        default
    )]
    pub grids: Vec<GridSpec>,
    /// Beam-search baselines; `None` when the file has no `[beam]`.
    pub beam: Option<BeamSpec>,
    /// Contrastive search; `None` (and left out of `experiment.json`) without `[contrastive]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contrastive: Option<ContrastiveSpec>,
    /// A second model every text is scored under; `None` (and left out) without `[score]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<ScoreSpec>,
}

/// The `[score]` table: the model that scores every generated text and every human reference
/// (teacher-forced, the prompt as context), as decoding papers score under a larger model
/// than the one that wrote the text, and MAUVE against the references. Changing it changes no
/// sample, so it is not part of what a results folder's rows depend on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreSpec {
    /// The scorer's checkpoint, resolved like the top-level `model`; `None` scores nothing but
    /// MAUVE's features, under the generator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
    /// MAUVE of every row against the human references.
    #[serde(default)]
    pub mauve: bool,
    /// `c` in MAUVE's `exp(−c·KL)`.
    #[serde(default = "default_mauve_scaling")]
    pub mauve_scaling: f64,
    /// k-means clusters; `None` is a tenth of the smaller side, as `mauve-text` chooses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mauve_clusters: Option<usize>,
}

pub(crate) fn default_mauve_scaling() -> f64 {
    5.0
}

/// The `[contrastive]` table: contrastive search (Su et al. 2022) at every (penalty_alpha,
/// top_k) pair, `penalty_alpha` outer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContrastiveSpec {
    /// The weight α of the degeneration penalty, in [0, 1]; 0 is greedy.
    pub penalty_alpha: Vec<f64>,
    /// Candidates re-ranked per step, at least 1.
    pub top_k: Vec<usize>,
}

/// `baseline` as written: a beam width, of which the best-scoring setting is taken when
/// several length penalties share it, or one beam setting by its id. Serialised as written
/// (a number or a string), so the files of a run that names a width read as before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Baseline {
    Width(usize),
    Setting(String),
}

/// One prompt and, when the prompts came from JSON lines, the human continuation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prompt {
    pub text: String,
    /// What a person wrote after `text`, to compare generated continuations against.
    pub reference: Option<String>,
}

/// One `[grid]` (or `[[grid]]`) table's lists, defaults filled in, in the order written
/// (which is the sweep order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridSpec {
    /// Softmax temperatures; 0 means greedy (argmax), any other is at least
    /// [`MIN_TEMPERATURE`](crate::spec::limits::MIN_TEMPERATURE).
    pub temperature: Vec<f64>,
    /// Keep only the k most likely tokens; 0 means off.
    pub top_k: Vec<usize>,
    /// Keep the smallest set of tokens whose probability reaches p; 1.0 means off.
    pub top_p: Vec<f64>,
    /// Sampler seeds; each seed is a separate setting so runs can be repeated exactly.
    pub seed: Vec<u64>,
    /// The knobs of [`Processors`](crate::engine::processors::Processors), each a list whose
    /// default is the one value that switches it off. A list left at its default is left out
    /// of `experiment.json`, so experiments without them are written as before.
    #[serde(default = "zero", skip_serializing_if = "is_zero")]
    pub min_p: Vec<f64>,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub typical_p: Vec<f64>,
    #[serde(default = "zero", skip_serializing_if = "is_zero")]
    pub epsilon_cutoff: Vec<f64>,
    #[serde(default = "zero", skip_serializing_if = "is_zero")]
    pub eta_cutoff: Vec<f64>,
    #[serde(default = "zero", skip_serializing_if = "is_zero")]
    pub top_n_sigma: Vec<f64>,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub repetition_penalty: Vec<f64>,
    #[serde(default = "zero", skip_serializing_if = "is_zero")]
    pub frequency_penalty: Vec<f64>,
    #[serde(default = "zero", skip_serializing_if = "is_zero")]
    pub presence_penalty: Vec<f64>,
    #[serde(default = "no_ngrams", skip_serializing_if = "is_no_ngrams")]
    pub no_repeat_ngram_size: Vec<usize>,
    #[serde(default = "not_last", skip_serializing_if = "is_not_last")]
    pub temperature_last: Vec<bool>,
}

/// The table `[grid]` with no keys: one sampling setting at T = 1, no filter, seed 0.
impl Default for GridSpec {
    fn default() -> Self {
        Self {
            temperature: vec![1.0],
            top_k: vec![0],
            top_p: vec![1.0],
            seed: vec![0],
            min_p: zero(),
            typical_p: one(),
            epsilon_cutoff: zero(),
            eta_cutoff: zero(),
            top_n_sigma: zero(),
            repetition_penalty: one(),
            frequency_penalty: zero(),
            presence_penalty: zero(),
            no_repeat_ngram_size: no_ngrams(),
            temperature_last: not_last(),
        }
    }
}

impl GridSpec {
    /// Every combination of the processor knobs, in the sweep order: `min_p` outermost, then
    /// `typical_p`, `epsilon_cutoff`, `eta_cutoff`, `top_n_sigma`, `repetition_penalty`,
    /// `frequency_penalty`, `presence_penalty`, `no_repeat_ngram_size`, `temperature_last`.
    pub fn processors(&self) -> Vec<Processors> {
        let mut out = vec![Processors::OFF];
        macro_rules! times {
            ($field:ident) => {
                out = out
                    .iter()
                    .flat_map(|p| {
                        self.$field
                            .iter()
                            .map(move |&v| Processors { $field: v, ..*p })
                    })
                    .collect();
            };
        }
        times!(min_p);
        times!(typical_p);
        times!(epsilon_cutoff);
        times!(eta_cutoff);
        times!(top_n_sigma);
        times!(repetition_penalty);
        times!(frequency_penalty);
        times!(presence_penalty);
        times!(no_repeat_ngram_size);
        times!(temperature_last);
        out
    }

    /// The number of values of each processor knob, by TOML key.
    pub fn processor_lengths(&self) -> [(&'static str, usize); 10] {
        [
            ("min_p", self.min_p.len()),
            ("typical_p", self.typical_p.len()),
            ("epsilon_cutoff", self.epsilon_cutoff.len()),
            ("eta_cutoff", self.eta_cutoff.len()),
            ("top_n_sigma", self.top_n_sigma.len()),
            ("repetition_penalty", self.repetition_penalty.len()),
            ("frequency_penalty", self.frequency_penalty.len()),
            ("presence_penalty", self.presence_penalty.len()),
            ("no_repeat_ngram_size", self.no_repeat_ngram_size.len()),
            ("temperature_last", self.temperature_last.len()),
        ]
    }
}

fn zero() -> Vec<f64> {
    vec![0.0]
}
fn one() -> Vec<f64> {
    vec![1.0]
}
fn no_ngrams() -> Vec<usize> {
    vec![0]
}
fn not_last() -> Vec<bool> {
    vec![false]
}
fn is_zero(v: &[f64]) -> bool {
    v == [0.0]
}
fn is_one(v: &[f64]) -> bool {
    v == [1.0]
}
fn is_no_ngrams(v: &[usize]) -> bool {
    v == [0]
}
fn is_not_last(v: &[bool]) -> bool {
    v == [false]
}

/// The `[beam]` table, defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeamSpec {
    /// Beam widths, in the order written.
    pub num_beams: Vec<usize>,
    /// transformers' `length_penalty`: finished scores are divided by `length ^ length_penalty`.
    pub length_penalty: Vec<f64>,
    /// Written to JSON as in the TOML: `true`, `false` or `"never"`.
    #[serde(with = "early_stopping")]
    pub early_stopping: EarlyStopping,
    /// Finished hypotheses kept per prompt; at most the smallest `num_beams`.
    pub num_return_sequences: usize,
    /// Group (diverse) beam search: groups per search, each dividing every `num_beams`; 1 is
    /// plain beam search. Each list below is left out of `experiment.json` at its default.
    #[serde(default = "one_group", skip_serializing_if = "is_one_group")]
    pub num_beam_groups: Vec<usize>,
    /// The Hamming diversity penalty between groups; it applies where `num_beam_groups > 1`,
    /// which needs it positive.
    #[serde(default = "zero", skip_serializing_if = "is_zero")]
    pub diversity_penalty: Vec<f64>,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub repetition_penalty: Vec<f64>,
    #[serde(default = "no_ngrams", skip_serializing_if = "is_no_ngrams")]
    pub no_repeat_ngram_size: Vec<usize>,
    /// Beam sampling: `true` draws the candidates from the warped distribution.
    #[serde(default = "not_last", skip_serializing_if = "is_not_last")]
    pub do_sample: Vec<bool>,
    /// The warpers and seeds of beam sampling (`temperature`, `top_k`, `top_p`, `seed` and the
    /// truncation filters, as in `[grid]`); `None` without `do_sample = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<GridSpec>,
}

fn one_group() -> Vec<usize> {
    vec![1]
}
fn is_one_group(v: &[usize]) -> bool {
    v == [1]
}

/// Writes [`Experiment::grids`]: `null`, one table, or a list of tables (see there).
fn serialize_grids<S: Serializer>(grids: &[GridSpec], serializer: S) -> Result<S::Ok, S::Error> {
    match grids {
        [] => serializer.serialize_none(),
        [one] => one.serialize(serializer),
        many => many.serialize(serializer),
    }
}

/// Reads what [`serialize_grids`] writes.
fn deserialize_grids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<GridSpec>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Grids {
        One(Box<GridSpec>),
        Many(Vec<GridSpec>),
    }
    Ok(match Option::<Grids>::deserialize(d)? {
        None => Vec::new(),
        Some(Grids::One(one)) => vec![*one],
        Some(Grids::Many(many)) => many,
    })
}

/// A 1-based line and column (in characters) inside a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Where an error is: a file and, when known, the position of the offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    /// `None` for errors about something missing, which has no place in the file.
    pub position: Option<Position>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(Position { line, column }) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        Ok(())
    }
}

/// Why an experiment could not be loaded. Every message is one complete line (the cause is
/// part of it), because the CLI prints these straight to the user.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// A file could not be read: the TOML itself or its prompts file.
    #[error("cannot read {}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    /// The TOML (or a JSON-lines prompts file) is malformed, has an unknown key, or a value
    /// of the wrong type.
    #[error("{at}: {message}")]
    Parse { at: Location, message: String },
    /// A value is well-formed but not allowed, or a required key is missing.
    #[error("{at}: {message}")]
    Invalid { at: Location, message: String },
    /// `model` or `prompts_file` names a path that exists in none of the places tried.
    #[error(
        "{at}: {key} = {value:?} does not exist; tried {}; a relative path is looked up in the \
         current folder, then beside the TOML file: run from the folder it is relative to, or \
         write its absolute path",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and ")
    )]
    MissingFile {
        at: Location,
        key: &'static str,
        value: String,
        tried: Vec<PathBuf>,
    },
}

/// Every experiment error names a value in a file the user wrote.
impl ExitStatus for ExperimentError {
    fn exit(&self) -> Exit {
        Exit::BadInput
    }
}

impl ExperimentError {
    /// The file and position the error points at, when it points into a file.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Self::Io { .. } => None,
            Self::Parse { at, .. } | Self::Invalid { at, .. } | Self::MissingFile { at, .. } => {
                Some(at)
            }
        }
    }
}

impl Experiment {
    /// Reads, checks and resolves an experiment file. Relative paths inside it are looked up
    /// in the current directory first, then beside the TOML.
    pub fn load(path: &Path) -> Result<Experiment, ExperimentError> {
        let text = std::fs::read_to_string(path).map_err(|error| ExperimentError::Io {
            path: path.to_owned(),
            error,
        })?;
        Self::from_str(&text, path)
    }

    /// Parses experiment text as if it had been read from `source` (used for messages, the
    /// default name and resolving relative paths).
    pub fn from_str(text: &str, source: &Path) -> Result<Experiment, ExperimentError> {
        Self::parse(text, source, Path::new(""))
    }

    /// [`Experiment::from_str`] with an explicit stand-in for the current directory, so tests
    /// can check path resolution without changing the process's directory. `cwd = ""` means
    /// the real one and keeps relative paths relative.
    fn parse(text: &str, source: &Path, cwd: &Path) -> Result<Experiment, ExperimentError> {
        let ctx = Ctx { text, source, cwd };
        let raw: RawExperiment = toml::from_str(text).map_err(|e| ExperimentError::Parse {
            at: ctx.location(e.span()),
            message: name_the_key(text, e.span(), &friendlier_message(e.message())),
        })?;
        ctx.resolve(raw)
    }
}

/// What the test modules of every file here share: a valid start of a file, and parsing as
/// if from `experiments/bad.toml`.
#[cfg(test)]
mod test_support {
    use super::*;

    pub(super) const PROMPTS: &str =
        "prompts = [\"ROMEO:\", \"JULIET:\"]\nmax_new_tokens = 10\nsamples = 4\n";

    pub(super) fn parse(text: &str) -> Result<Experiment, ExperimentError> {
        Experiment::from_str(text, Path::new("experiments/bad.toml"))
    }

    /// The one grid table of an experiment that should have exactly one.
    #[track_caller]
    pub(super) fn only(grids: Vec<GridSpec>) -> GridSpec {
        assert_eq!(grids.len(), 1, "{grids:?}");
        grids.into_iter().next().unwrap()
    }

    /// Asserts that `text` fails with a message at `line:column` containing `needle`.
    #[track_caller]
    pub(super) fn fails_at(text: &str, line: usize, column: usize, needle: &str) -> String {
        let err = parse(text).expect_err("should fail");
        let shown = err.to_string();
        let prefix = format!("experiments/bad.toml:{line}:{column}: ");
        assert!(
            shown.starts_with(&prefix),
            "wanted {prefix:?}, got {shown:?}"
        );
        assert!(shown.contains(needle), "wanted {needle:?} in {shown:?}");
        shown
    }

    /// Holtzman et al.'s Table 1 as `[[grid]]` tables (the README's example).
    pub(super) const TABLE_1: &str = "[[grid]]\ntemperature = [0.0, 1.0, 0.9]\n\
                           [[grid]]\ntop_k = [40, 640]\n\
                           [[grid]]\ntop_k = 40\ntemperature = 0.7\n\
                           [[grid]]\ntop_p = 0.95\n";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::experiment::test_support::*;

    #[test]
    fn load_reads_the_file_and_names_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("temps.toml");
        let err = Experiment::load(&path).unwrap_err();
        assert!(matches!(&err, ExperimentError::Io { path: p, .. } if *p == path));
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read {}: ", path.display())),
            "{err}"
        );

        std::fs::write(&path, format!("{PROMPTS}[grid]\ntemperature = 0.8\n")).unwrap();
        let exp = Experiment::load(&path).unwrap();
        assert_eq!(exp.name, "temps");
        assert_eq!(exp.source, path);
    }

    #[test]
    fn resolved_experiment_serialises_with_defaults_and_toml_spellings() {
        let text = format!(
            "{PROMPTS}[grid]\ntop_k = 5\n[beam]\nnum_beams = 2\nearly_stopping = \"never\"\n"
        );
        let json: serde_json::Value = serde_json::to_value(parse(&text).unwrap()).unwrap();
        assert_eq!(json["name"], "bad");
        assert_eq!(json["batch_size"], 64);
        assert_eq!(json["model"], serde_json::Value::Null);
        assert_eq!(json["grid"]["temperature"], serde_json::json!([1.0]));
        assert_eq!(json["grid"]["top_k"], serde_json::json!([5]));
        assert_eq!(json["beam"]["early_stopping"], "never");
        assert_eq!(json["beam"]["length_penalty"], serde_json::json!([1.0]));
        assert_eq!(
            json["prompts"][0],
            serde_json::json!({"text": "ROMEO:", "reference": null})
        );
        // Equivalent spellings give the same canonical JSON, so they don't count as a change.
        let a = parse(&format!("{PROMPTS}[grid]\ntemperature = 1\n")).unwrap();
        let b = parse(&format!(
            "{PROMPTS}[grid]\ntemperature = [1.0]\ntop_k = [0]\n"
        ))
        .unwrap();
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
    }

    #[test]
    fn several_grid_tables_serialise_as_a_list_under_grid() {
        let exp = parse(&format!("{PROMPTS}{TABLE_1}")).unwrap();
        let json = serde_json::to_value(&exp).unwrap();
        let list = json["grid"].as_array().expect("a list");
        assert_eq!(list.len(), 4);
        assert_eq!(list[1]["top_k"], serde_json::json!([40, 640]));
        assert_eq!(list[3]["top_p"], serde_json::json!([0.95]));
        assert!(json.get("grids").is_none());
        // A single table keeps the object form; no grid is null.
        let one = parse(&format!("{PROMPTS}[[grid]]\n")).unwrap();
        assert!(serde_json::to_value(&one).unwrap()["grid"].is_object());
        let none = parse(&format!("{PROMPTS}[beam]\nnum_beams = 2\n")).unwrap();
        assert!(serde_json::to_value(&none).unwrap()["grid"].is_null());
    }

    #[test]
    fn shipped_experiments_read_back_from_their_json() {
        let mut seen = 0;
        for entry in std::fs::read_dir("experiments").unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let exp = Experiment::load(&path).unwrap();
            let json = serde_json::to_value(&exp).unwrap();
            let back: Experiment = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(back, exp, "{}", path.display());
            assert_eq!(serde_json::to_value(&back).unwrap(), json);
            seen += 1;
        }
        assert!(seen >= 4, "only {seen} experiments found");
    }

    #[test]
    fn json_of_every_grid_form_reads_back_and_strays_are_refused() {
        for text in [
            format!("{PROMPTS}[beam]\nnum_beams = 2\nearly_stopping = true\n"),
            format!("{PROMPTS}[grid]\ntop_k = 5\n"),
            format!("{PROMPTS}{TABLE_1}[beam]\nnum_beams = [2, 4]\nearly_stopping = \"never\"\n"),
        ] {
            let exp = parse(&text).unwrap();
            let json = serde_json::to_value(&exp).unwrap();
            assert_eq!(
                serde_json::from_value::<Experiment>(json).unwrap(),
                exp,
                "{text}"
            );
        }
        let mut json = serde_json::to_value(parse(&format!("{PROMPTS}[grid]\n")).unwrap()).unwrap();
        json["grid"]["top_q"] = serde_json::json!([1]);
        assert!(serde_json::from_value::<Experiment>(json).is_err());
        assert!(serde_json::from_value::<Experiment>(serde_json::json!({"name": "x"})).is_err());
    }
}
