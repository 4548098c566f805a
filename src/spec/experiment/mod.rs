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

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, Unexpected};
use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

use crate::engine::beam::EarlyStopping;
use crate::spec::limits::{
    MAX_BATCH_SIZE, MAX_NEW_TOKENS, MAX_NUM_BEAMS, MAX_SAMPLES, MAX_SETTINGS, MIN_TEMPERATURE,
};
use crate::util::exit::{Exit, ExitStatus};

/// Rows per forward batch when `batch_size` is not given.
pub const DEFAULT_BATCH_SIZE: usize = 64;

/// A checked experiment with every default filled in and every path resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    #[serde(rename = "grid", serialize_with = "serialize_grids")]
    pub grids: Vec<GridSpec>,
    /// Beam-search baselines; `None` when the file has no `[beam]`.
    pub beam: Option<BeamSpec>,
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

/// `baseline` before its check: a number (kept signed for the message) or a setting id.
#[derive(Debug, Clone, PartialEq)]
enum RawBaseline {
    Width(i64),
    Setting(String),
}

impl<'de> Deserialize<'de> for RawBaseline {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = RawBaseline;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a num_beams integer or a beam setting id such as \"beam_n4_lp1\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawBaseline, E> {
                Ok(RawBaseline::Width(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawBaseline, E> {
                Ok(RawBaseline::Width(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawBaseline, E> {
                Ok(RawBaseline::Setting(v.to_owned()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// One prompt and, when the prompts came from JSON lines, the human continuation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prompt {
    pub text: String,
    /// What a person wrote after `text`, to compare generated continuations against.
    pub reference: Option<String>,
}

/// One `[grid]` (or `[[grid]]`) table's lists, defaults filled in, in the order written
/// (which is the sweep order).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GridSpec {
    /// Softmax temperatures; 0 means greedy (argmax), any other is at least
    /// [`MIN_TEMPERATURE`].
    pub temperature: Vec<f64>,
    /// Keep only the k most likely tokens; 0 means off.
    pub top_k: Vec<usize>,
    /// Keep the smallest set of tokens whose probability reaches p; 1.0 means off.
    pub top_p: Vec<f64>,
    /// Sampler seeds; each seed is a separate setting so runs can be repeated exactly.
    pub seed: Vec<u64>,
}

/// The `[beam]` table, defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BeamSpec {
    /// Beam widths, in the order written.
    pub num_beams: Vec<usize>,
    /// transformers' `length_penalty`: finished scores are divided by `length ^ length_penalty`.
    pub length_penalty: Vec<f64>,
    /// Written to JSON as in the TOML: `true`, `false` or `"never"`.
    #[serde(serialize_with = "serialize_early_stopping")]
    pub early_stopping: EarlyStopping,
    /// Finished hypotheses kept per prompt; at most the smallest `num_beams`.
    pub num_return_sequences: usize,
}

/// Writes [`Experiment::grids`]: `null`, one table, or a list of tables (see there).
fn serialize_grids<S: Serializer>(grids: &[GridSpec], serializer: S) -> Result<S::Ok, S::Error> {
    match grids {
        [] => serializer.serialize_none(),
        [one] => one.serialize(serializer),
        many => many.serialize(serializer),
    }
}

/// Writes [`EarlyStopping`] the way the TOML spells it, so `run.json` reads like the input.
pub fn serialize_early_stopping<S: Serializer>(
    value: &EarlyStopping,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        EarlyStopping::Always => serializer.serialize_bool(true),
        EarlyStopping::Heuristic => serializer.serialize_bool(false),
        EarlyStopping::Never => serializer.serialize_str("never"),
    }
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

// ---------------------------------------------------------------------------------------
// The file as written. Every field is optional and spanned so that missing keys and bad
// values get our own messages, pointing at the value.

/// The keys of an experiment's top level, `[grid]` and `[beam]`, as the reader accepts them.
pub const TOP_KEYS: &[&str] = &[
    "name",
    "model",
    "prompts",
    "prompts_file",
    "max_new_tokens",
    "samples",
    "batch_size",
    "baseline",
    "grid",
    "beam",
];
/// The extensions a prompts file may have; its format is chosen by them, so any other one
/// is refused rather than read as text (a CSV's header would become a prompt).
pub const PROMPTS_EXTENSIONS: &[&str] = &["txt", "jsonl"];
pub const GRID_KEYS: &[&str] = &["temperature", "top_k", "top_p", "seed"];
pub const BEAM_KEYS: &[&str] = &[
    "num_beams",
    "length_penalty",
    "early_stopping",
    "num_return_sequences",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an experiment table")]
struct RawExperiment {
    name: Option<Spanned<String>>,
    model: Option<Spanned<String>>,
    prompts: Option<Spanned<RawPrompts>>,
    prompts_file: Option<Spanned<String>>,
    max_new_tokens: Option<Spanned<Int>>,
    samples: Option<Spanned<Int>>,
    batch_size: Option<Spanned<Int>>,
    baseline: Option<Spanned<RawBaseline>>,
    grid: Option<Spanned<RawGrids>>,
    beam: Option<Spanned<RawBeam>>,
}

/// `prompts` as written: a list of strings, or one string (a one-element list, as a scalar
/// is everywhere a list is expected).
enum RawPrompts {
    One(String),
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for RawPrompts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> de::Visitor<'de> for Visitor {
            type Value = RawPrompts;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawPrompts::One(v.to_owned()))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<String>>()? {
                    items.push(item);
                }
                Ok(RawPrompts::Many(items))
            }
        }

        d.deserialize_any(Visitor)
    }
}

impl RawPrompts {
    /// The prompts as a list, a lone string spanning what it was written as.
    fn into_list(raw: Spanned<RawPrompts>) -> Spanned<Vec<Spanned<String>>> {
        let span = raw.span();
        let list = match raw.into_inner() {
            RawPrompts::One(text) => vec![Spanned::new(span.clone(), text)],
            RawPrompts::Many(items) => items,
        };
        Spanned::new(span, list)
    }
}

/// `grid` as written: a `[grid]` table, or an array of tables (`[[grid]]`, or inline).
enum RawGrids {
    One(RawGrid),
    Many(Vec<RawGrid>),
}

impl<'de> Deserialize<'de> for RawGrids {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> de::Visitor<'de> for Visitor {
            type Value = RawGrids;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a [grid] table or an array of [[grid]] tables")
            }

            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawGrid::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawGrids::One)
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut tables = Vec::new();
                while let Some(table) = seq.next_element::<RawGrid>()? {
                    tables.push(table);
                }
                Ok(RawGrids::Many(tables))
            }
        }

        d.deserialize_any(Visitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [grid] table")]
struct RawGrid {
    temperature: Option<Spanned<OneOrMany<Num>>>,
    top_k: Option<Spanned<OneOrMany<Int>>>,
    top_p: Option<Spanned<OneOrMany<Num>>>,
    seed: Option<Spanned<OneOrMany<Int>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [beam] table")]
struct RawBeam {
    num_beams: Option<Spanned<OneOrMany<Int>>>,
    length_penalty: Option<Spanned<OneOrMany<Num>>>,
    early_stopping: Option<Spanned<RawEarlyStopping>>,
    num_return_sequences: Option<Spanned<Int>>,
}

/// A TOML integer. Kept signed so that `top_k = -1` reaches the range check and gets a
/// message saying what is allowed, instead of serde's "expected usize".
#[derive(Debug, Clone, Copy, PartialEq)]
struct Int(i64);

/// A TOML number; integers are accepted too, so `temperature = 1` means 1.0.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Num(f64);

/// The numeric element types of lists, with how to describe them in type errors.
trait Scalar: Copy {
    const EXPECTING: &'static str;
    const EXPECTING_LIST: &'static str;
    fn from_i64(v: i64) -> Option<Self>;
    fn from_f64(v: f64) -> Option<Self>;
}

impl Scalar for Int {
    const EXPECTING: &'static str = "an integer";
    const EXPECTING_LIST: &'static str = "an integer or a list of integers";
    fn from_i64(v: i64) -> Option<Self> {
        Some(Int(v))
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
}

impl Scalar for Num {
    const EXPECTING: &'static str = "a number";
    const EXPECTING_LIST: &'static str = "a number or a list of numbers";
    fn from_i64(v: i64) -> Option<Self> {
        Some(Num(v as f64))
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(Num(v))
    }
}

/// Accepts a bare number of type `T`; with `LIST`, says "or a list" in type errors.
struct ScalarVisitor<T, const LIST: bool>(PhantomData<T>);

impl<'de, T: Scalar, const LIST: bool> de::Visitor<'de> for ScalarVisitor<T, LIST> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if LIST {
            T::EXPECTING_LIST
        } else {
            T::EXPECTING
        })
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::from_i64(v).ok_or_else(|| E::invalid_type(Unexpected::Signed(v), &self))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        i64::try_from(v)
            .ok()
            .and_then(T::from_i64)
            .ok_or_else(|| E::invalid_type(Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        T::from_f64(v).ok_or_else(|| E::invalid_type(Unexpected::Float(v), &self))
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor::<Int, false>(PhantomData))
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor::<Num, false>(PhantomData))
    }
}

/// A list key written either as a list or as a single value (a one-element list).
enum OneOrMany<T> {
    One(T),
    Many(Vec<Spanned<T>>),
}

impl<'de, T: Scalar + Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<T>(PhantomData<T>);

        impl<T: Scalar> Visitor<T> {
            fn scalar(&self) -> ScalarVisitor<T, true> {
                ScalarVisitor(PhantomData)
            }
        }

        impl<'de, T: Scalar + Deserialize<'de>> de::Visitor<'de> for Visitor<T> {
            type Value = OneOrMany<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(T::EXPECTING_LIST)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                de::Visitor::visit_i64(self.scalar(), v).map(OneOrMany::One)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                de::Visitor::visit_u64(self.scalar(), v).map(OneOrMany::One)
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                de::Visitor::visit_f64(self.scalar(), v).map(OneOrMany::One)
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<T>>()? {
                    items.push(item);
                }
                Ok(OneOrMany::Many(items))
            }
        }

        d.deserialize_any(Visitor(PhantomData))
    }
}

/// `early_stopping` as transformers spells it: `true`, `false` or `"never"`.
struct RawEarlyStopping(EarlyStopping);

impl<'de> Deserialize<'de> for RawEarlyStopping {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl de::Visitor<'_> for Visitor {
            type Value = RawEarlyStopping;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or \"never\"")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(RawEarlyStopping(if v {
                    EarlyStopping::Always
                } else {
                    EarlyStopping::Heuristic
                }))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == "never" {
                    Ok(RawEarlyStopping(EarlyStopping::Never))
                } else {
                    Err(E::invalid_value(Unexpected::Str(v), &self))
                }
            }
        }

        d.deserialize_any(Visitor)
    }
}

// ---------------------------------------------------------------------------------------
// Checking and resolving.

/// What resolving needs to know besides the parsed file.
struct Ctx<'a> {
    text: &'a str,
    source: &'a Path,
    cwd: &'a Path,
}

impl Ctx<'_> {
    fn location(&self, span: Option<Range<usize>>) -> Location {
        Location {
            file: self.source.to_owned(),
            position: span.map(|s| position_of(self.text, s.start)),
        }
    }

    /// The value as the user wrote it, so messages quote `1.50` rather than `1.5`.
    fn written(&self, span: &Range<usize>) -> &str {
        self.text.get(span.clone()).unwrap_or("?").trim()
    }

    fn invalid(&self, span: Option<Range<usize>>, message: String) -> ExperimentError {
        ExperimentError::Invalid {
            at: self.location(span),
            message,
        }
    }

    /// `key = value is out of range; <allowed>` at the value.
    fn out_of_range(&self, key: &str, span: &Range<usize>, allowed: &str) -> ExperimentError {
        let value = self.written(span);
        self.invalid(
            Some(span.clone()),
            format!("{key} = {value} is out of range; {allowed}"),
        )
    }

    /// A scalar integer from 1 to `max`.
    fn bounded(
        &self,
        key: &str,
        value: &Spanned<Int>,
        max: usize,
        allowed: &str,
    ) -> Result<usize, ExperimentError> {
        match usize::try_from(value.get_ref().0) {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(self.out_of_range(key, &value.span(), allowed)),
        }
    }

    /// Checks a list key: not empty, every value allowed by `check`, no value twice.
    fn list<T: Scalar, U: Copy + ValueKey>(
        &self,
        key: &str,
        raw: Spanned<OneOrMany<T>>,
        allowed: &str,
        check: impl Fn(T) -> Option<U>,
    ) -> Result<Vec<U>, ExperimentError> {
        let span = raw.span();
        let items = match raw.into_inner() {
            OneOrMany::One(v) => vec![Spanned::new(span.clone(), v)],
            OneOrMany::Many(items) => items,
        };
        if items.is_empty() {
            return Err(self.invalid(
                Some(span),
                format!("{key} = [] is empty; give at least one value ({allowed})"),
            ));
        }
        // A list longer than the cap on settings could never run; refusing it here also keeps
        // the checks below from working through millions of values.
        if items.len() > MAX_SETTINGS {
            return Err(self.invalid(
                Some(span),
                format!(
                    "{key} lists {} values; an experiment runs at most {MAX_SETTINGS} settings, \
                     so give fewer values",
                    items.len()
                ),
            ));
        }
        let mut values: Vec<U> = Vec::with_capacity(items.len());
        // Where each value was first written, by value: duplicates are found in linear time.
        let mut first_at: std::collections::HashMap<u64, usize> =
            std::collections::HashMap::with_capacity(items.len());
        for item in items {
            let item_span = item.span();
            let Some(value) = check(*item.get_ref()) else {
                return Err(self.out_of_range(key, &item_span, allowed));
            };
            if let Some(&first) = first_at.get(&value.key()) {
                let Position { line, column } = position_of(self.text, first);
                return Err(self.invalid(
                    Some(item_span.clone()),
                    format!(
                        "{key} lists {} twice (first at {line}:{column}); each value may appear once",
                        self.written(&item_span)
                    ),
                ));
            }
            first_at.insert(value.key(), item_span.start);
            values.push(value);
        }
        Ok(values)
    }

    /// Finds a file named in the TOML: as given (the current directory), then beside the TOML.
    fn find_file(
        &self,
        key: &'static str,
        raw: &Spanned<String>,
    ) -> Result<PathBuf, ExperimentError> {
        let value = raw.get_ref();
        if value.trim().is_empty() {
            return Err(self.invalid(Some(raw.span()), format!("{key} is empty; give a path")));
        }
        let given = Path::new(value);
        let mut tried = vec![self.cwd.join(given)];
        if given.is_relative() {
            let beside = self.source.parent().unwrap_or(Path::new("")).join(given);
            if beside != tried[0] {
                tried.push(beside);
            }
        }
        match tried.iter().find(|p| p.exists()) {
            Some(found) => Ok(found.clone()),
            None => Err(ExperimentError::MissingFile {
                at: self.location(Some(raw.span())),
                key,
                value: value.clone(),
                tried,
            }),
        }
    }

    fn resolve(&self, raw: RawExperiment) -> Result<Experiment, ExperimentError> {
        let name = self.name(raw.name.as_ref())?;
        let model = raw
            .model
            .as_ref()
            .map(|m| self.find_file("model", m))
            .transpose()?;
        let prompts = self.prompts(
            raw.prompts.map(RawPrompts::into_list),
            raw.prompts_file.as_ref(),
        )?;

        let max_new_tokens = match &raw.max_new_tokens {
            Some(v) => self.bounded(
                "max_new_tokens",
                v,
                MAX_NEW_TOKENS,
                &format!(
                    "max_new_tokens must be an integer from 1 to {MAX_NEW_TOKENS} (and below the \
                     model's context)"
                ),
            )?,
            None => {
                return Err(self.invalid(
                    None,
                    "missing max_new_tokens: how many tokens to generate per continuation, \
                     e.g. max_new_tokens = 200"
                        .to_owned(),
                ));
            }
        };
        let batch_size = match &raw.batch_size {
            Some(v) => self.bounded(
                "batch_size",
                v,
                MAX_BATCH_SIZE,
                &format!("batch_size must be an integer from 1 to {MAX_BATCH_SIZE}"),
            )?,
            None => DEFAULT_BATCH_SIZE,
        };

        let mut grid_span = None;
        let grids = match raw.grid {
            None => Vec::new(),
            Some(g) => {
                let span = g.span();
                grid_span = Some(span.clone());
                match g.into_inner() {
                    RawGrids::One(table) => vec![self.grid(table)?],
                    RawGrids::Many(tables) if tables.is_empty() => {
                        return Err(self.invalid(
                            Some(span),
                            "grid = [] is empty; give at least one [[grid]] table, or leave \
                             grid out for beam search only"
                                .to_owned(),
                        ));
                    }
                    RawGrids::Many(tables) => tables
                        .into_iter()
                        .map(|t| self.grid(t))
                        .collect::<Result<_, _>>()?,
                }
            }
        };
        let beam_span = raw.beam.as_ref().map(|b| b.span());
        let beam = raw.beam.map(|b| self.beam(b)).transpose()?;
        self.count_settings(&grids, grid_span, beam.as_ref(), beam_span)?;
        if grids.is_empty() && beam.is_none() {
            return Err(self.invalid(
                None,
                "no settings: add a [grid] table (sampling and greedy), a [beam] table \
                 (beam-search baselines), or both"
                    .to_owned(),
            ));
        }

        let samples_allowed = format!(
            "samples must be an integer from 1 to {MAX_SAMPLES} (continuations per prompt and \
             sampling setting)"
        );
        let samples = match &raw.samples {
            Some(v) => self.bounded("samples", v, MAX_SAMPLES, &samples_allowed)?,
            None if grids.iter().any(|g| g.temperature.iter().any(|&t| t > 0.0)) => {
                return Err(self.invalid(
                    None,
                    "missing samples: the grid has sampling settings (temperature > 0); \
                     give samples = N, the continuations per prompt and sampling setting"
                        .to_owned(),
                ));
            }
            None => 1,
        };

        let baseline = match &raw.baseline {
            None => None,
            Some(b) => {
                let span = b.span();
                let value = self.written(&span);
                let Some(beam) = &beam else {
                    return Err(self.invalid(
                        Some(span),
                        format!(
                            "baseline = {value} needs a [beam] table; baseline picks which \
                             num_beams the difference columns compare to"
                        ),
                    ));
                };
                match b.get_ref() {
                    RawBaseline::Width(n) => match usize::try_from(*n) {
                        Ok(n) if beam.num_beams.contains(&n) => Some((Baseline::Width(n), span)),
                        _ => {
                            return Err(self.invalid(
                                Some(span),
                                format!(
                                    "baseline = {value} is not among num_beams {:?}; baseline \
                                     must be one of them or a beam setting id, or left out to \
                                     use the best-scoring beam setting",
                                    beam.num_beams
                                ),
                            ));
                        }
                    },
                    RawBaseline::Setting(id) => Some((Baseline::Setting(id.clone()), span)),
                }
            }
        };

        let mut exp = Experiment {
            name,
            source: self.source.to_owned(),
            model,
            prompts,
            max_new_tokens,
            samples,
            batch_size,
            baseline: None,
            grids,
            beam,
        };
        if let Some((baseline, span)) = baseline {
            // A setting id is checked against the ids the beam table expands to, which the
            // grid alone knows how to spell.
            if let Baseline::Setting(id) = &baseline {
                let ids: Vec<String> = crate::spec::grid::expand(&exp)
                    .settings
                    .iter()
                    .filter(|s| s.strategy == crate::spec::grid::Strategy::Beam)
                    .map(crate::spec::grid::Setting::id)
                    .collect();
                if !ids.contains(id) {
                    let value = self.written(&span);
                    return Err(self.invalid(
                        Some(span),
                        format!(
                            "baseline = {value} is not a beam setting of this experiment; \
                             baseline must be one of {} or a num_beams integer",
                            ids.join(", ")
                        ),
                    ));
                }
            }
            exp.baseline = Some(baseline);
        }
        Ok(exp)
    }

    /// Refuses a grid too big to run, from the lengths of its lists alone: expanding one of
    /// 10^8 settings would take minutes and gigabytes before anything could be said about it.
    /// Grid points are counted before temperature-0 points fold into one greedy setting.
    fn count_settings(
        &self,
        grids: &[GridSpec],
        grid_span: Option<Range<usize>>,
        beam: Option<&BeamSpec>,
        beam_span: Option<Range<usize>>,
    ) -> Result<(), ExperimentError> {
        let product = |lens: &[usize]| {
            lens.iter()
                .fold(1u128, |acc, &n| acc.saturating_mul(n as u128))
        };
        let mut parts = Vec::new();
        let mut grid_points = 0u128;
        for (i, g) in grids.iter().enumerate() {
            let lens = [
                g.temperature.len(),
                g.top_k.len(),
                g.top_p.len(),
                g.seed.len(),
            ];
            let n = product(&lens);
            grid_points = grid_points.saturating_add(n);
            let table = if grids.len() == 1 {
                "[grid]".to_owned()
            } else {
                format!("[[grid]] table {}", i + 1)
            };
            parts.push(format!(
                "{table}: {n} = temperature {} x top_k {} x top_p {} x seed {}",
                lens[0], lens[1], lens[2], lens[3]
            ));
        }
        let beam_points = beam.map_or(0, |b| product(&[b.num_beams.len(), b.length_penalty.len()]));
        if let Some(b) = beam {
            parts.push(format!(
                "[beam]: {beam_points} = num_beams {} x length_penalty {}",
                b.num_beams.len(),
                b.length_penalty.len()
            ));
        }
        let total = grid_points.saturating_add(beam_points);
        if total <= MAX_SETTINGS as u128 {
            return Ok(());
        }
        if parts.len() > 4 {
            let more = parts.len() - 3;
            parts.truncate(3);
            parts.push(format!("and {more} more tables"));
        }
        let span = if grid_points >= beam_points {
            grid_span
        } else {
            beam_span
        };
        Err(self.invalid(
            span,
            format!(
                "the experiment has {total} settings ({}); at most {MAX_SETTINGS} are allowed: \
                 give fewer values, or split it into several experiments",
                parts.join("; ")
            ),
        ))
    }

    fn name(&self, raw: Option<&Spanned<String>>) -> Result<String, ExperimentError> {
        let (name, span) = match raw {
            Some(n) => (n.get_ref().clone(), Some(n.span())),
            None => (
                self.source
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                None,
            ),
        };
        // The name becomes a folder under results/, so it must be exactly one path component.
        let bad = name.trim().is_empty()
            || name == "."
            || name == ".."
            || name.contains(['/', '\\'])
            || name.chars().any(char::is_control);
        if bad {
            return Err(self.invalid(
                span,
                format!(
                    "name = {name:?} is not a usable folder name; name must be non-empty, not \
                     \".\" or \"..\", and contain no / or \\ (results go to results/<name>/)"
                ),
            ));
        }
        Ok(name)
    }

    fn prompts(
        &self,
        inline: Option<Spanned<Vec<Spanned<String>>>>,
        file: Option<&Spanned<String>>,
    ) -> Result<Vec<Prompt>, ExperimentError> {
        match (inline, file) {
            (Some(_), Some(file)) => Err(self.invalid(
                Some(file.span()),
                "prompts and prompts_file are both given; give only one of them".to_owned(),
            )),
            (None, None) => Err(self.invalid(
                None,
                "missing prompts: give prompts = [\"...\"] or prompts_file = \"prompts.txt\" \
                 (or a .jsonl file)"
                    .to_owned(),
            )),
            (Some(list), None) => {
                let span = list.span();
                let list = list.into_inner();
                if list.is_empty() {
                    return Err(self.invalid(
                        Some(span),
                        "prompts = [] is empty; give at least one prompt".to_owned(),
                    ));
                }
                list.into_iter()
                    .enumerate()
                    .map(|(i, p)| {
                        if p.get_ref().is_empty() {
                            Err(self.invalid(
                                Some(p.span()),
                                format!(
                                    "prompts[{i}] is empty; a prompt needs at least one character"
                                ),
                            ))
                        } else {
                            Ok(Prompt {
                                text: p.into_inner(),
                                reference: None,
                            })
                        }
                    })
                    .collect()
            }
            (None, Some(file)) => {
                let value = file.get_ref();
                let known = Path::new(value)
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| PROMPTS_EXTENSIONS.iter().any(|k| e.eq_ignore_ascii_case(k)));
                if !value.trim().is_empty() && !known {
                    return Err(self.invalid(
                        Some(file.span()),
                        format!(
                            "prompts_file = {value:?}: unknown kind of prompts file; supported \
                             extensions: .txt (one prompt per line) and .jsonl (JSON lines with \
                             \"prompt\" and optional \"reference\"); rename the file to one of them"
                        ),
                    ));
                }
                let path = self.find_file("prompts_file", file)?;
                let prompts = read_prompts_file(&path)?;
                if prompts.is_empty() {
                    return Err(self.invalid(
                        Some(file.span()),
                        format!(
                            "prompts_file = {:?} contains no prompts ({} is empty or only blank lines)",
                            file.get_ref(),
                            path.display()
                        ),
                    ));
                }
                Ok(prompts)
            }
        }
    }

    fn grid(&self, raw: RawGrid) -> Result<GridSpec, ExperimentError> {
        let temperature = match raw.temperature {
            Some(t) => self.list(
                "temperature",
                t,
                &format!(
                    "temperature must be 0 (greedy) or a finite number >= {MIN_TEMPERATURE:e}; \
                     below that the scaled logits overflow f32 or the distribution is one-hot: \
                     use 0 for greedy, or a temperature >= {MIN_TEMPERATURE:e}"
                ),
                |Num(v)| (v == 0.0 || (v.is_finite() && v >= MIN_TEMPERATURE)).then_some(v + 0.0),
            )?,
            None => vec![1.0],
        };
        let top_k = match raw.top_k {
            Some(k) => self.list(
                "top_k",
                k,
                "top_k must be an integer >= 0 (0 = off)",
                |Int(v)| usize::try_from(v).ok(),
            )?,
            None => vec![0],
        };
        let top_p = match raw.top_p {
            Some(p) => self.list(
                "top_p",
                p,
                "top_p must be in (0, 1] (1.0 = off)",
                |Num(v)| (v > 0.0 && v <= 1.0).then_some(v),
            )?,
            None => vec![1.0],
        };
        let seed = match raw.seed {
            Some(s) => self.list("seed", s, "seed must be an integer >= 0", |Int(v)| {
                u64::try_from(v).ok()
            })?,
            None => vec![0],
        };
        Ok(GridSpec {
            temperature,
            top_k,
            top_p,
            seed,
        })
    }

    fn beam(&self, raw: Spanned<RawBeam>) -> Result<BeamSpec, ExperimentError> {
        let table_span = raw.span();
        let raw = raw.into_inner();
        let num_beams = match raw.num_beams {
            Some(n) => self.list(
                "num_beams",
                n,
                &format!("num_beams must be an integer from 1 to {MAX_NUM_BEAMS}"),
                |Int(v)| {
                    usize::try_from(v)
                        .ok()
                        .filter(|n| (1..=MAX_NUM_BEAMS).contains(n))
                },
            )?,
            None => {
                return Err(self.invalid(
                    Some(table_span),
                    "[beam] is missing num_beams: the beam widths to run, e.g. num_beams = [4, 8]"
                        .to_owned(),
                ));
            }
        };
        let length_penalty = match raw.length_penalty {
            Some(lp) => self.list(
                "length_penalty",
                lp,
                "length_penalty must be a finite number (1.0 = transformers' default)",
                // `+ 0.0` turns -0.0 into 0.0, so ids and JSON never show "-0".
                |Num(v)| v.is_finite().then_some(v + 0.0),
            )?,
            None => vec![1.0],
        };
        let early_stopping = raw
            .early_stopping
            .map(|e| e.into_inner().0)
            .unwrap_or_default();
        let smallest = num_beams.iter().copied().min().unwrap_or(1);
        let num_return_sequences = match &raw.num_return_sequences {
            None => 1,
            Some(n) => match usize::try_from(n.get_ref().0) {
                Ok(k) if (1..=smallest).contains(&k) => k,
                _ => {
                    return Err(self.out_of_range(
                        "num_return_sequences",
                        &n.span(),
                        &format!(
                            "num_return_sequences must be an integer from 1 to the smallest \
                             num_beams ({smallest})"
                        ),
                    ));
                }
            },
        };
        Ok(BeamSpec {
            num_beams,
            length_penalty,
            early_stopping,
            num_return_sequences,
        })
    }
}

/// A list value's identity for finding duplicates: equal values, and only those, share a key.
trait ValueKey {
    fn key(&self) -> u64;
}

impl ValueKey for f64 {
    fn key(&self) -> u64 {
        // `+ 0.0` makes -0 and 0 one value, as `==` does; lists never hold NaN.
        (self + 0.0).to_bits()
    }
}

impl ValueKey for usize {
    fn key(&self) -> u64 {
        *self as u64
    }
}

impl ValueKey for u64 {
    fn key(&self) -> u64 {
        *self
    }
}

/// The 1-based line and character column of byte `offset` in `text`.
fn position_of(text: &str, offset: usize) -> Position {
    let offset = offset.min(text.len());
    // A span never splits a character, but be safe: step back to a boundary.
    let offset = (0..=offset)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Position {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

/// Rewrites serde's "unknown field" message in TOML words, names the table, and suggests the
/// closest allowed key, because a misspelt key is the most common mistake in these files.
fn friendlier_message(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_owned();
    };
    let Some((key, rest)) = rest.split_once('`') else {
        return message.to_owned();
    };
    // The allowed names are the backquoted words after the key.
    let allowed: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let table = if allowed == GRID_KEYS {
        " in [grid]"
    } else if allowed == BEAM_KEYS {
        " in [beam]"
    } else if allowed == TOP_KEYS {
        " at the top level"
    } else {
        ""
    };
    let suggestion = allowed
        .iter()
        .map(|a| (edit_distance(key, a), *a))
        .filter(|&(d, a)| d <= (a.len() / 3).max(1))
        .min()
        .map(|(_, a)| format!("did you mean `{a}`? "))
        .unwrap_or_default();
    format!(
        "unknown key `{key}`{table}; {suggestion}allowed keys: {}",
        allowed.join(", ")
    )
}

/// What each key's value looks like, for the fix in a type error.
fn example_of(key: &str) -> Option<&'static str> {
    Some(match key {
        "name" => "name = \"temps\"",
        "model" => "model = \"models/shakespeare\"",
        "prompts" => "prompts = [\"ROMEO.\\n\", \"JULIET.\\n\"] (or one string)",
        "prompts_file" => "prompts_file = \"prompts.txt\"",
        "max_new_tokens" => "max_new_tokens = 64",
        "samples" => "samples = 4",
        "batch_size" => "batch_size = 16",
        "baseline" => "baseline = 4",
        "temperature" => "temperature = [0.7, 1.0] (or one number)",
        "top_k" => "top_k = [0, 40] (or one integer)",
        "top_p" => "top_p = [0.9, 1.0] (or one number)",
        "seed" => "seed = [0, 1] (or one integer)",
        "num_beams" => "num_beams = [2, 4] (or one integer)",
        "length_penalty" => "length_penalty = [0.5, 1.0, 2.0] (or one number)",
        "early_stopping" => "early_stopping = true (or false, or \"never\")",
        "num_return_sequences" => "num_return_sequences = 1",
        "grid" => "[grid] with temperature = [0.7, 1.0] on the lines below",
        "beam" => "[beam] with num_beams = [2, 4] on the lines below",
        _ => return None,
    })
}

/// The keys that take one value: a list there is a mistake worth its own sentence, since
/// every grid key does take a list.
const SINGLE_VALUE_KEYS: &[&str] = &[
    "name",
    "model",
    "prompts_file",
    "max_new_tokens",
    "samples",
    "batch_size",
    "baseline",
    "num_return_sequences",
];

/// The table header (`[grid]`, `[[grid]]`, `[beam]`) in force at byte `offset`, or `None`
/// at the top level.
fn table_at(text: &str, offset: usize) -> Option<&str> {
    let header = text[..offset.min(text.len())]
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with('['))?;
    let close = if header.starts_with("[[") { "]]" } else { "]" };
    Some(
        header
            .find(close)
            .map_or(header, |end| &header[..end + close.len()]),
    )
}

/// The bare key assigned last before `offset` (on its line, or on the line a multi-line list
/// began), so that the value or list element serde complained about is tied to its key.
fn key_before(text: &str, offset: usize) -> Option<&str> {
    let offset = (0..=offset.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))?;
    let line = text[..offset]
        .rsplit('\n')
        .find(|l| assignment(l).is_some())?;
    let key = line[..assignment(line)?].trim_end();
    let start = key
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .map_or(0, |i| i + 1);
    let key = &key[start..];
    (!key.is_empty()).then_some(key)
}

/// The byte index of the last `=` of `line` outside quoted strings.
fn assignment(line: &str) -> Option<usize> {
    let mut quote = None;
    let mut escaped = false;
    let mut last = None;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => break,
            None if c == '=' => last = Some(i),
            None => {}
        }
    }
    last
}

/// The allowed keys of a table header, to tell whether a key found on a line belongs to it.
fn keys_of(table: Option<&str>) -> &'static [&'static str] {
    match table.map(|t| t.trim_matches(|c| c == '[' || c == ']').trim()) {
        None => TOP_KEYS,
        Some("grid") => GRID_KEYS,
        Some("beam") => BEAM_KEYS,
        Some(_) => &[],
    }
}

/// Rewrites the TOML reader's messages that do not say which key they are about ("invalid
/// type: sequence, expected an integer", "duplicate key") to name it, its table and the fix.
fn name_the_key(text: &str, span: Option<Range<usize>>, message: &str) -> String {
    let Some(span) = span else {
        return message.to_owned();
    };
    let table = table_at(text, span.start);
    if message.starts_with("duplicate key") {
        let written = text
            .get(span.clone())
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        let line = text[..span.start.min(text.len())]
            .rsplit('\n')
            .next()
            .unwrap_or("");
        if (written == "grid" || written == "beam") && line.trim_start().starts_with('[') {
            let both = text.lines().any(|l| l.trim_start().starts_with("[["));
            return if written == "beam" {
                "[beam] is given twice; put every beam key in one [beam] table".to_owned()
            } else if both {
                "[grid] and [[grid]] are both used; use one form: a single [grid] table, or \
                 only [[grid]] tables, one per grid"
                    .to_owned()
            } else {
                "[grid] is given twice; put its keys in one [grid] table, or write each grid \
                 as a [[grid]] table"
                    .to_owned()
            };
        }
        if written.is_empty() {
            return message.to_owned();
        }
        let place = match table {
            None => " at the top level".to_owned(),
            Some(t) => format!(" in {t}"),
        };
        let first = text[..span.start.min(text.len())]
            .lines()
            .enumerate()
            .filter(|(_, l)| {
                l.trim_start()
                    .strip_prefix(written)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            })
            .map(|(i, _)| i + 1)
            .last();
        let first = first
            .map(|l| format!(" (first at line {l})"))
            .unwrap_or_default();
        return format!("`{written}` is given twice{place}{first}; keep one of them");
    }
    if !(message.starts_with("invalid type") || message.starts_with("invalid value")) {
        return message.to_owned();
    }
    let Some(key) = key_before(text, span.start) else {
        return message.to_owned();
    };
    let place = if keys_of(table).contains(&key) {
        match table {
            None => String::new(),
            Some(t) => format!(" in {t}"),
        }
    } else {
        String::new()
    };
    let list = message.starts_with("invalid type: sequence");
    let why = if list && SINGLE_VALUE_KEYS.contains(&key) {
        if key == "max_new_tokens" {
            "; max_new_tokens takes one value, not a list (it is not a grid axis: write one \
             experiment file per length)"
        } else {
            "; it takes one value, not a list"
        }
    } else {
        ""
    };
    match example_of(key) {
        Some(example) => format!("`{key}`{place}: {message}{why}; write e.g. {example}"),
        None => format!("`{key}`{place}: {message}{why}"),
    }
}

/// Levenshtein distance in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

// ---------------------------------------------------------------------------------------
// Prompts files.

/// One line of a JSON-lines prompts file. Other fields (ids, sources) are allowed and
/// ignored, since held-out sets usually carry them.
#[derive(Deserialize)]
struct JsonPrompt {
    prompt: String,
    #[serde(default)]
    reference: Option<String>,
}

/// Reads a prompts file: JSON lines when the extension is `.jsonl`, otherwise one prompt per
/// line with `\n` and `\\` decoded (so a prompt can span lines). Blank lines are skipped in
/// both, so a trailing newline or a spacer line never becomes an empty prompt.
fn read_prompts_file(path: &Path) -> Result<Vec<Prompt>, ExperimentError> {
    let text = std::fs::read_to_string(path).map_err(|error| ExperimentError::Io {
        path: path.to_owned(),
        error,
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let jsonl = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"));
    let at = |line: usize, column: usize| Location {
        file: path.to_owned(),
        position: Some(Position { line, column }),
    };
    let mut prompts = Vec::new();
    // The line of each prompt, for messages about a prompt without a reference.
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = index + 1;
        let prompt = if jsonl {
            let parsed: JsonPrompt =
                serde_json::from_str(line).map_err(|e| ExperimentError::Parse {
                    at: at(line_no, e.column().max(1)),
                    message: json_message(&e),
                })?;
            if parsed.prompt.is_empty() {
                return Err(ExperimentError::Invalid {
                    at: at(line_no, 1),
                    message: "\"prompt\" is empty; a prompt needs at least one character"
                        .to_owned(),
                });
            }
            if parsed.reference.as_deref() == Some("") {
                return Err(ExperimentError::Invalid {
                    at: at(line_no, 1),
                    message: "\"reference\" is empty; give the human continuation's text, or \
                              leave the key out for a prompt without one"
                        .to_owned(),
                });
            }
            Prompt {
                text: parsed.prompt,
                reference: parsed.reference,
            }
        } else {
            Prompt {
                text: decode_escapes(line),
                reference: None,
            }
        };
        prompts.push(prompt);
        lines.push(line_no);
    }
    // The human row is scored over the prompts that have a reference; with only some of them
    // it would silently compare a different set of prompts than the generated rows.
    let with_reference = prompts.iter().filter(|p| p.reference.is_some()).count();
    if with_reference > 0 && with_reference < prompts.len() {
        let first = prompts
            .iter()
            .position(|p| p.reference.is_none())
            .expect("some prompt has no reference");
        return Err(ExperimentError::Invalid {
            at: at(lines[first], 1),
            message: format!(
                "this prompt has no \"reference\", but {with_reference} of the {} prompts have \
                 one; give every prompt a reference, or none",
                prompts.len()
            ),
        });
    }
    Ok(prompts)
}

/// serde_json's message without its " at line L column C" tail, which would repeat (and,
/// since each line is parsed alone, contradict) the file position we report.
fn json_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let tail = format!(" at line {} column {}", e.line(), e.column());
    full.strip_suffix(&tail).unwrap_or(&full).to_owned()
}

/// Decodes `\n` to a newline and `\\` to a backslash; any other backslash is kept as written,
/// so Windows paths and the like in prompts survive.
fn decode_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('n') => {
                    out.push('\n');
                    chars.next();
                    continue;
                }
                Some('\\') => {
                    out.push('\\');
                    chars.next();
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMPTS: &str = "prompts = [\"ROMEO:\", \"JULIET:\"]\nmax_new_tokens = 10\nsamples = 4\n";

    fn parse(text: &str) -> Result<Experiment, ExperimentError> {
        Experiment::from_str(text, Path::new("experiments/bad.toml"))
    }

    /// The one grid table of an experiment that should have exactly one.
    #[track_caller]
    fn only(grids: Vec<GridSpec>) -> GridSpec {
        assert_eq!(grids.len(), 1, "{grids:?}");
        grids.into_iter().next().unwrap()
    }

    /// Asserts that `text` fails with a message at `line:column` containing `needle`.
    #[track_caller]
    fn fails_at(text: &str, line: usize, column: usize, needle: &str) -> String {
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

    #[test]
    fn full_example_resolves_with_every_field() {
        let text = r#"
name = "temps"
prompts = ["ROMEO:", "JULIET:"]
max_new_tokens = 200
samples = 64
batch_size = 32
baseline = 8
[grid]
temperature = [0.0, 0.5, 0.8, 1.0, 1.5]
top_k = [0, 50]
top_p = [0.9, 1.0]
seed = [1, 2]
[beam]
num_beams = [4, 8]
length_penalty = 1.0
early_stopping = "never"
num_return_sequences = 2
"#;
        let exp = parse(text).unwrap();
        assert_eq!(exp.name, "temps");
        assert_eq!(exp.source, Path::new("experiments/bad.toml"));
        assert_eq!(exp.model, None);
        assert_eq!(exp.prompts.len(), 2);
        assert_eq!(exp.prompts[1].text, "JULIET:");
        assert_eq!(
            (exp.max_new_tokens, exp.samples, exp.batch_size),
            (200, 64, 32)
        );
        assert_eq!(exp.baseline, Some(Baseline::Width(8)));
        let grid = only(exp.grids);
        assert_eq!(grid.temperature, vec![0.0, 0.5, 0.8, 1.0, 1.5]);
        assert_eq!(grid.top_k, vec![0, 50]);
        assert_eq!(grid.top_p, vec![0.9, 1.0]);
        assert_eq!(grid.seed, vec![1, 2]);
        let beam = exp.beam.unwrap();
        assert_eq!(beam.num_beams, vec![4, 8]);
        assert_eq!(beam.length_penalty, vec![1.0]);
        assert_eq!(beam.early_stopping, EarlyStopping::Never);
        assert_eq!(beam.num_return_sequences, 2);
    }

    #[test]
    fn scalars_are_one_element_lists() {
        let text = format!(
            "{PROMPTS}[grid]\ntemperature = 0.7\ntop_k = 40\ntop_p = 0.95\nseed = 3\n\
             [beam]\nnum_beams = 4\nlength_penalty = 0.5\n"
        );
        let exp = parse(&text).unwrap();
        let grid = only(exp.grids);
        assert_eq!(grid.temperature, vec![0.7]);
        assert_eq!(grid.top_k, vec![40]);
        assert_eq!(grid.top_p, vec![0.95]);
        assert_eq!(grid.seed, vec![3]);
        let beam = exp.beam.unwrap();
        assert_eq!(beam.num_beams, vec![4]);
        assert_eq!(beam.length_penalty, vec![0.5]);
    }

    #[test]
    fn integers_are_accepted_as_floats() {
        let exp = parse(&format!(
            "{PROMPTS}[grid]\ntemperature = [0, 1]\ntop_p = 1\n"
        ))
        .unwrap();
        let grid = only(exp.grids);
        assert_eq!(grid.temperature, vec![0.0, 1.0]);
        assert_eq!(grid.top_p, vec![1.0]);
    }

    #[test]
    fn defaults_fill_absent_keys() {
        let exp = parse(&format!("{PROMPTS}[grid]\n")).unwrap();
        assert_eq!(exp.name, "bad");
        assert_eq!(exp.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(exp.baseline, None);
        assert_eq!(
            only(exp.grids),
            GridSpec {
                temperature: vec![1.0],
                top_k: vec![0],
                top_p: vec![1.0],
                seed: vec![0],
            }
        );
        assert!(exp.beam.is_none());

        let exp = parse(&format!("{PROMPTS}[beam]\nnum_beams = 2\n")).unwrap();
        assert!(
            exp.grids.is_empty(),
            "no [grid] with [beam] means beam only"
        );
        let beam = exp.beam.unwrap();
        assert_eq!(beam.length_penalty, vec![1.0]);
        assert_eq!(beam.early_stopping, EarlyStopping::Heuristic);
        assert_eq!(beam.num_return_sequences, 1);
    }

    #[test]
    fn early_stopping_spellings() {
        for (written, want) in [
            ("true", EarlyStopping::Always),
            ("false", EarlyStopping::Heuristic),
            ("\"never\"", EarlyStopping::Never),
        ] {
            let text = format!("{PROMPTS}[beam]\nnum_beams = 2\nearly_stopping = {written}\n");
            assert_eq!(parse(&text).unwrap().beam.unwrap().early_stopping, want);
        }
        fails_at(
            &format!("{PROMPTS}[beam]\nnum_beams = 2\nearly_stopping = \"sometimes\"\n"),
            6,
            18,
            "expected true, false or \"never\"",
        );
    }

    #[test]
    fn samples_is_required_only_when_something_samples() {
        let base = "prompts = [\"a\"]\nmax_new_tokens = 5\n";
        let err = parse(&format!("{base}[grid]\ntemperature = [0, 0.5]\n")).unwrap_err();
        assert_eq!(
            err.location().unwrap().position,
            None,
            "a missing key has no position"
        );
        assert!(
            err.to_string()
                .starts_with("experiments/bad.toml: missing samples"),
            "{err}"
        );
        let exp = parse(&format!("{base}[grid]\ntemperature = 0\n")).unwrap();
        assert_eq!(exp.samples, 1);
        let exp = parse(&format!("{base}[beam]\nnum_beams = 3\n")).unwrap();
        assert_eq!(exp.samples, 1);
    }

    #[test]
    fn the_documented_example_message_is_exact() {
        let text = "name = \"t\"\nprompts = [\"a\"]\nmax_new_tokens = 5\nsamples = 2\n\n[grid]\ntop_p = [0.9, 1.5]\n";
        let err = parse(text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "experiments/bad.toml:7:15: top_p = 1.5 is out of range; top_p must be in (0, 1] (1.0 = off)"
        );
        assert!(matches!(err, ExperimentError::Invalid { .. }));
    }

    #[test]
    fn out_of_range_values_point_at_the_value() {
        // PROMPTS is three lines, so the first table line is 4 and its first key line 5.
        let grid = |line: &str| format!("{PROMPTS}[grid]\n{line}\n");
        fails_at(
            &grid("temperature = -0.5"),
            5,
            15,
            "temperature = -0.5 is out of range; temperature must be 0 (greedy) or a finite number >= 1e-6",
        );
        fails_at(
            &grid("temperature = [1.0, inf]"),
            5,
            21,
            "temperature = inf is out of range",
        );
        fails_at(
            &grid("temperature = nan"),
            5,
            15,
            "temperature = nan is out of range",
        );
        fails_at(
            &grid("top_p = [0.0]"),
            5,
            10,
            "top_p = 0.0 is out of range; top_p must be in (0, 1]",
        );
        fails_at(
            &grid("top_k = [50, -1]"),
            5,
            14,
            "top_k = -1 is out of range; top_k must be an integer >= 0 (0 = off)",
        );
        fails_at(
            &grid("seed = -3"),
            5,
            8,
            "seed = -3 is out of range; seed must be an integer >= 0",
        );

        let top = |first: &str, rest: &str| format!("prompts = [\"a\"]\n{first}\n{rest}[grid]\n");
        fails_at(
            &top("samples = 0", "max_new_tokens = 3\n"),
            2,
            11,
            "samples = 0 is out of range; samples must be an integer from 1 to 1000000",
        );
        fails_at(
            &top("max_new_tokens = 0", "samples = 1\n"),
            2,
            18,
            "max_new_tokens = 0 is out of range; max_new_tokens must be an integer from 1 to 1000000",
        );
        fails_at(
            &top("batch_size = 0", "max_new_tokens = 3\nsamples = 1\n"),
            2,
            14,
            "batch_size = 0 is out of range; batch_size must be an integer from 1 to 65536",
        );

        let beam = |lines: &str| format!("{PROMPTS}[beam]\n{lines}\n");
        fails_at(
            &beam("num_beams = [4, 0]"),
            5,
            17,
            "num_beams = 0 is out of range; num_beams must be an integer from 1 to 10000",
        );
        fails_at(
            &beam("num_beams = [4, 8]\nnum_return_sequences = 0"),
            6,
            24,
            "num_return_sequences must be an integer from 1 to the smallest num_beams (4)",
        );
        fails_at(
            &beam("num_beams = [8, 4]\nnum_return_sequences = 5"),
            6,
            24,
            "num_return_sequences = 5 is out of range",
        );
        fails_at(
            &beam("num_beams = 2\nlength_penalty = [1.0, -inf]"),
            6,
            24,
            "length_penalty = -inf is out of range; length_penalty must be a finite number",
        );
    }

    #[test]
    fn empty_lists_are_rejected_at_the_list() {
        let grid = |line: &str| format!("{PROMPTS}[grid]\n{line}\n");
        fails_at(
            &grid("temperature = []"),
            5,
            15,
            "temperature = [] is empty; give at least one value",
        );
        fails_at(&grid("seed = []"), 5, 8, "seed = [] is empty");
        fails_at(
            &format!("{PROMPTS}[beam]\nnum_beams = []\n"),
            5,
            13,
            "num_beams = [] is empty",
        );
        let text = "prompts = []\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n";
        fails_at(
            text,
            1,
            11,
            "prompts = [] is empty; give at least one prompt",
        );
        let text = "prompts = [\"a\", \"\"]\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n";
        fails_at(text, 1, 17, "prompts[1] is empty");
    }

    #[test]
    fn duplicates_name_the_value_and_both_places() {
        let grid = |line: &str| format!("{PROMPTS}[grid]\n{line}\n");
        fails_at(
            &grid("top_k = [0, 50, 50]"),
            5,
            17,
            "top_k lists 50 twice (first at 5:13)",
        );
        // 0.50 and 0.5 are the same temperature even though written differently.
        fails_at(
            &grid("temperature = [0.5, 0.50]"),
            5,
            21,
            "temperature lists 0.50 twice (first at 5:16)",
        );
        fails_at(
            &format!("{PROMPTS}[beam]\nnum_beams = [4, 4]\n"),
            5,
            17,
            "num_beams lists 4 twice",
        );
        fails_at(
            &format!("{PROMPTS}[beam]\nnum_beams = 4\nlength_penalty = [0.0, -0.0]\n"),
            6,
            24,
            "length_penalty lists -0.0 twice",
        );
    }

    #[test]
    fn wrong_types_are_parse_errors_at_the_value() {
        let grid = |line: &str| format!("{PROMPTS}[grid]\n{line}\n");
        let shown = fails_at(
            &grid("top_k = 1.5"),
            5,
            9,
            "expected an integer or a list of integers",
        );
        assert!(shown.contains("1.5"), "{shown}");
        fails_at(&grid("top_k = [1, 2.5]"), 5, 13, "expected an integer");
        fails_at(
            &grid("temperature = \"hot\""),
            5,
            15,
            "expected a number or a list of numbers",
        );
        fails_at(
            &grid("temperature = [1, \"x\"]"),
            5,
            19,
            "expected a number",
        );
        fails_at("max_new_tokens = \"ten\"\n", 1, 18, "expected an integer");
        fails_at("grid = 3\n", 1, 8, "expected a [grid] table");
        let err = parse("name = \"x\n").unwrap_err();
        assert!(matches!(err, ExperimentError::Parse { .. }), "{err:?}");
        assert_eq!(err.location().unwrap().position.unwrap().line, 1);
    }

    #[test]
    fn unknown_keys_are_named_with_their_table_and_place() {
        let shown = fails_at(
            &format!("{PROMPTS}temprature = 1\n"),
            4,
            1,
            "unknown key `temprature` at the top level",
        );
        assert!(
            shown.contains("allowed keys: name, model, prompts"),
            "{shown}"
        );
        let shown = fails_at(
            &format!("{PROMPTS}[grid]\ntop_k = 0\n  tempreature = [1.0]\n"),
            6,
            3,
            "unknown key `tempreature` in [grid]; did you mean `temperature`?",
        );
        assert!(
            shown.ends_with("allowed keys: temperature, top_k, top_p, seed"),
            "{shown}"
        );
        fails_at(
            &format!("{PROMPTS}[beam]\nnum_beams = 2\nbeams = 3\n"),
            6,
            1,
            "unknown key `beams` in [beam]",
        );
        fails_at(
            &format!("{PROMPTS}grid = {{ top-k = 5 }}\n"),
            4,
            10,
            "unknown key `top-k` in [grid]; did you mean `top_k`?",
        );
        // No suggestion when nothing is close.
        let shown = fails_at(
            &format!("{PROMPTS}[grid]\nzzz = 1\n"),
            5,
            1,
            "unknown key `zzz`",
        );
        assert!(!shown.contains("did you mean"), "{shown}");
    }

    #[test]
    fn prompts_must_come_from_exactly_one_place() {
        let text = "prompts = [\"a\"]\nprompts_file = \"p.txt\"\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n";
        fails_at(text, 2, 16, "prompts and prompts_file are both given");
        let err = parse("max_new_tokens = 3\n[beam]\nnum_beams = 1\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("experiments/bad.toml: missing prompts"),
            "{err}"
        );
    }

    #[test]
    fn an_experiment_needs_settings_and_lengths() {
        let err = parse("prompts = [\"a\"]\nmax_new_tokens = 3\n").unwrap_err();
        assert!(err.to_string().contains("no settings"), "{err}");
        let err = parse("prompts = [\"a\"]\n[beam]\nnum_beams = 1\n").unwrap_err();
        assert!(err.to_string().contains("missing max_new_tokens"), "{err}");
        fails_at(
            &format!("{PROMPTS}\n[beam]\nlength_penalty = 1.0\n"),
            5,
            1,
            "[beam] is missing num_beams",
        );
    }

    #[test]
    fn baseline_must_be_a_beam_width() {
        let text = format!("baseline = 3\n{PROMPTS}[beam]\nnum_beams = [4, 8]\n");
        fails_at(&text, 1, 12, "baseline = 3 is not among num_beams [4, 8]");
        let text = format!("baseline = 4\n{PROMPTS}[grid]\n");
        fails_at(&text, 1, 12, "baseline = 4 needs a [beam] table");
        let text = format!("baseline = 8\n{PROMPTS}[beam]\nnum_beams = [4, 8]\n");
        assert_eq!(parse(&text).unwrap().baseline, Some(Baseline::Width(8)));
        let text = format!(
            "baseline = \"beam_n8_lp2\"\n{PROMPTS}[beam]\nnum_beams = [4, 8]\nlength_penalty = [1, 2]\n"
        );
        assert_eq!(
            parse(&text).unwrap().baseline,
            Some(Baseline::Setting("beam_n8_lp2".into()))
        );
        let text = format!("baseline = \"beam_n8_lp3\"\n{PROMPTS}[beam]\nnum_beams = [4, 8]\n");
        fails_at(&text, 1, 12, "is not a beam setting of this experiment");
    }

    #[test]
    fn names_must_be_a_single_folder() {
        fails_at(
            &format!("name = \"a/b\"\n{PROMPTS}[grid]\n"),
            1,
            8,
            "not a usable folder name",
        );
        fails_at(
            &format!("name = \"..\"\n{PROMPTS}[grid]\n"),
            1,
            8,
            "not a usable folder name",
        );
        let exp = Experiment::from_str(&format!("{PROMPTS}[grid]\n"), Path::new("x/my run.toml"))
            .unwrap();
        assert_eq!(exp.name, "my run");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        // Byte 5 is the `1`; counting bytes would say column 6.
        assert_eq!(position_of("é = 1", 5), Position { line: 1, column: 5 });
        assert_eq!(position_of("a\nbc", 3), Position { line: 2, column: 2 });
        assert_eq!(position_of("ab", 0), Position { line: 1, column: 1 });
        let text = format!("name = \"héllo\"\n{PROMPTS}[grid]\ntop_p = [\"é\", 2]\n");
        fails_at(&text, 6, 10, "expected a number");
    }

    #[test]
    fn escapes_in_text_prompts_are_decoded() {
        assert_eq!(decode_escapes(r"a\nb"), "a\nb");
        assert_eq!(decode_escapes(r"a\\nb"), "a\\nb");
        assert_eq!(decode_escapes(r"C:\temp\\"), "C:\\temp\\");
        assert_eq!(decode_escapes(r"end\"), "end\\");
    }

    #[test]
    fn text_prompts_file_one_per_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("prompts.txt"),
            "\u{feff}ROMEO:\r\n\r\nFirst line\\nSecond line\n  \nback\\\\slash\n",
        )
        .unwrap();
        let source = dir.path().join("e.toml");
        let text = "prompts_file = \"prompts.txt\"\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n";
        let exp = Experiment::from_str(text, &source).unwrap();
        let texts: Vec<&str> = exp.prompts.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, ["ROMEO:", "First line\nSecond line", "back\\slash"]);
        assert!(exp.prompts.iter().all(|p| p.reference.is_none()));

        std::fs::write(dir.path().join("prompts.txt"), "\n \n").unwrap();
        let err = Experiment::from_str(text, &source).unwrap_err();
        assert!(err.to_string().contains("contains no prompts"), "{err}");
        assert_eq!(
            err.location().unwrap().position,
            Some(Position {
                line: 1,
                column: 16
            })
        );
    }

    /// An empty reference used to blank the human row's perplexity without a word; a file
    /// where only some prompts have one would score the human row on other prompts than the
    /// generated rows.
    #[test]
    fn regression_references_are_all_or_none_and_never_empty() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("p.jsonl");
        let source = dir.path().join("e.toml");
        let text = "prompts_file = \"p.jsonl\"\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n";
        std::fs::write(
            &jsonl,
            "{\"prompt\": \"a\", \"reference\": \"x\"}\n{\"prompt\": \"b\", \"reference\": \"\"}\n",
        )
        .unwrap();
        let shown = Experiment::from_str(text, &source).unwrap_err().to_string();
        assert!(
            shown.starts_with(&format!("{}:2:1: \"reference\" is empty", jsonl.display())),
            "{shown}"
        );
        assert!(shown.contains("leave the key out"), "{shown}");
        std::fs::write(
            &jsonl,
            "{\"prompt\": \"a\", \"reference\": \"x\"}\n\n{\"prompt\": \"b\"}\n{\"prompt\": \"c\", \"reference\": \"y\"}\n{\"prompt\": \"d\"}\n",
        )
        .unwrap();
        let shown = Experiment::from_str(text, &source).unwrap_err().to_string();
        assert!(
            shown.starts_with(&format!(
                "{}:3:1: this prompt has no \"reference\"",
                jsonl.display()
            )),
            "{shown}"
        );
        assert!(shown.contains("2 of the 4 prompts"), "{shown}");
    }

    #[test]
    fn regression_tiny_temperatures_are_refused_with_the_fix() {
        let grid = |line: &str| format!("{PROMPTS}[grid]\n{line}\n");
        let shown = fails_at(
            &grid("temperature = [0.5, 1e-7]"),
            5,
            21,
            "temperature = 1e-7 is out of range",
        );
        assert!(
            shown.contains("use 0 for greedy, or a temperature >= 1e-6"),
            "{shown}"
        );
        fails_at(&grid("temperature = 1e-300"), 5, 15, "temperature = 1e-300");
        let exp = parse(&grid("temperature = [0, 1e-6, -0.0]"));
        // -0.0 is 0, listed twice.
        assert!(exp.is_err());
        let exp = parse(&grid("temperature = [0, 1e-6]")).unwrap();
        assert_eq!(only(exp.grids).temperature, vec![0.0, 1e-6]);
    }

    #[test]
    fn regression_sizes_are_capped_by_name_at_the_value() {
        fails_at(
            "prompts = [\"a\"]\nmax_new_tokens = 5\nsamples = 2\nbatch_size = 65537\n[grid]\n",
            4,
            14,
            "batch_size = 65537 is out of range; batch_size must be an integer from 1 to 65536",
        );
        fails_at(
            "prompts = [\"a\"]\nmax_new_tokens = 5\nsamples = 2147483648\n[grid]\n",
            3,
            11,
            "samples = 2147483648 is out of range; samples must be an integer from 1 to 1000000",
        );
        fails_at(
            "prompts = [\"a\"]\nmax_new_tokens = 4611686018427387904\n[grid]\ntemperature = 0\n",
            2,
            18,
            "max_new_tokens = 4611686018427387904 is out of range",
        );
        fails_at(
            &format!("{PROMPTS}[beam]\nnum_beams = [4, 25000]\n"),
            5,
            17,
            "num_beams = 25000 is out of range; num_beams must be an integer from 1 to 10000",
        );
    }

    /// A grid of 10^8 settings made `validate` expand it for a minute and then abort; it is
    /// refused from the lengths of its lists, at once.
    #[test]
    fn regression_a_huge_grid_is_counted_before_it_is_expanded() {
        let values = |n: usize| {
            (1..=n)
                .map(|i| format!("{}", i as f64 / 1000.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let seeds = (0..100)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let text = format!(
            "{PROMPTS}[grid]\ntemperature = [{}]\ntop_k = [{seeds}]\ntop_p = [{}]\nseed = [{seeds}]\n",
            values(100),
            values(100)
        );
        let started = std::time::Instant::now();
        let shown = parse(&text).unwrap_err().to_string();
        assert!(
            shown.starts_with("experiments/bad.toml:")
                && shown.contains(": the experiment has 100000000 settings"),
            "{shown}"
        );
        assert!(started.elapsed().as_secs_f64() < 5.0);
        assert!(
            shown.contains("temperature 100 x top_k 100 x top_p 100 x seed 100"),
            "{shown}"
        );
        assert!(shown.contains("at most 100000"), "{shown}");
        // At the cap is fine.
        let text = format!(
            "{PROMPTS}[grid]\ntemperature = [{}]\nseed = [{}]\n",
            values(1000),
            (0..100)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert!(parse(&text).is_ok());
        // A list of many values is checked for duplicates in linear time.
        let many = (0..100_000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let started = std::time::Instant::now();
        assert!(parse(&format!("{PROMPTS}[grid]\nseed = [{many}]\n")).is_ok());
        assert!(started.elapsed().as_secs_f64() < 5.0);
    }

    #[test]
    fn jsonl_prompts_carry_references() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("heldout.jsonl");
        std::fs::write(
            &jsonl,
            "{\"prompt\": \"ROMEO:\", \"reference\": \" But soft!\"}\n\n{\"prompt\": \"JULIET:\", \"id\": 7, \"reference\": \"x\"}\n{\"prompt\": \"a\\nb\", \"reference\": \" c\"}\n",
        )
        .unwrap();
        let source = dir.path().join("e.toml");
        let text = "prompts_file = \"heldout.jsonl\"\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n";
        let exp = Experiment::from_str(text, &source).unwrap();
        assert_eq!(
            exp.prompts,
            vec![
                Prompt {
                    text: "ROMEO:".into(),
                    reference: Some(" But soft!".into())
                },
                Prompt {
                    text: "JULIET:".into(),
                    reference: Some("x".into())
                },
                Prompt {
                    text: "a\nb".into(),
                    reference: Some(" c".into())
                },
            ]
        );
        // Without any reference (null is none) is fine too.
        std::fs::write(
            &jsonl,
            "{\"prompt\": \"a\"}\n{\"prompt\": \"b\", \"reference\": null}\n",
        )
        .unwrap();
        let exp = Experiment::from_str(text, &source).unwrap();
        assert!(exp.prompts.iter().all(|p| p.reference.is_none()));

        std::fs::write(&jsonl, "{\"prompt\": \"ok\"}\n{\"text\": \"no prompt\"}\n").unwrap();
        let err = Experiment::from_str(text, &source).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("{}:2:", jsonl.display())),
            "{shown}"
        );
        assert!(shown.contains("missing field `prompt`"), "{shown}");
        assert!(!shown.contains("at line"), "{shown}");

        std::fs::write(&jsonl, "{\"prompt\": \"ok\"}\n{\"prompt\": 5}\n").unwrap();
        let err = Experiment::from_str(text, &source).unwrap_err();
        assert!(matches!(err, ExperimentError::Parse { .. }));
        assert!(err.to_string().contains(":2:"), "{err}");
    }

    #[test]
    fn relative_paths_try_the_current_directory_then_the_toml_folder() {
        let cwd = tempfile::tempdir().unwrap();
        let exps = tempfile::tempdir().unwrap();
        let source = exps.path().join("e.toml");
        std::fs::create_dir(exps.path().join("m")).unwrap();
        std::fs::write(exps.path().join("p.txt"), "from toml folder\n").unwrap();
        let text =
            "model = \"m\"\nprompts_file = \"p.txt\"\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n";

        // Only beside the TOML: found there.
        let exp = Experiment::parse(text, &source, cwd.path()).unwrap();
        assert_eq!(exp.model, Some(exps.path().join("m")));
        assert_eq!(exp.prompts[0].text, "from toml folder");

        // Also in the current directory: the current directory wins.
        std::fs::write(cwd.path().join("p.txt"), "from cwd\n").unwrap();
        let exp = Experiment::parse(text, &source, cwd.path()).unwrap();
        assert_eq!(exp.prompts[0].text, "from cwd");

        // Nowhere: both tried paths are reported, at the value.
        let text =
            "model = \"gone\"\nprompts = [\"a\"]\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n";
        let err = Experiment::parse(text, &source, cwd.path()).unwrap_err();
        let ExperimentError::MissingFile { key, tried, at, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*key, "model");
        assert_eq!(
            tried,
            &vec![cwd.path().join("gone"), exps.path().join("gone")]
        );
        assert_eq!(at.position, Some(Position { line: 1, column: 9 }));
        let shown = err.to_string();
        assert!(
            shown.contains("model = \"gone\" does not exist; tried"),
            "{shown}"
        );
        assert!(
            shown.contains(&format!(
                "{} and {}",
                tried[0].display(),
                tried[1].display()
            )),
            "{shown}"
        );
    }

    #[test]
    fn same_folder_is_tried_once_and_paths_stay_relative() {
        // A TOML in the current directory: both candidates are the same path.
        let text =
            "prompts_file = \"does-not-exist.txt\"\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n";
        let err = Experiment::from_str(text, Path::new("e.toml")).unwrap_err();
        let ExperimentError::MissingFile { tried, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(tried, &vec![PathBuf::from("does-not-exist.txt")]);
        // Found through the real current directory (the crate root under cargo test): the
        // path stays as written, so run.json is portable.
        let text =
            "model = \"src\"\nprompts = [\"a\"]\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n";
        let exp = Experiment::from_str(text, Path::new("elsewhere/e.toml")).unwrap();
        assert_eq!(exp.model, Some(PathBuf::from("src")));
        fails_at(
            "model = \"\"\nprompts = [\"a\"]\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n",
            1,
            9,
            "model is empty",
        );
    }

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

    /// Holtzman et al.'s Table 1 as `[[grid]]` tables (the README's example).
    const TABLE_1: &str = "[[grid]]\ntemperature = [0.0, 1.0, 0.9]\n\
                           [[grid]]\ntop_k = [40, 640]\n\
                           [[grid]]\ntop_k = 40\ntemperature = 0.7\n\
                           [[grid]]\ntop_p = 0.95\n";

    #[test]
    fn grid_may_be_an_array_of_tables_each_with_defaults() {
        let exp = parse(&format!("{PROMPTS}{TABLE_1}")).unwrap();
        let spec = |t: &[f64], k: &[usize], p: &[f64]| GridSpec {
            temperature: t.to_vec(),
            top_k: k.to_vec(),
            top_p: p.to_vec(),
            seed: vec![0],
        };
        assert_eq!(
            exp.grids,
            vec![
                spec(&[0.0, 1.0, 0.9], &[0], &[1.0]),
                spec(&[1.0], &[40, 640], &[1.0]),
                spec(&[0.7], &[40], &[1.0]),
                spec(&[1.0], &[0], &[0.95]),
            ]
        );
        // One [[grid]] table is the same experiment as a [grid] table, and so is an inline
        // array of tables.
        let one = parse(&format!("{PROMPTS}[[grid]]\ntop_k = 5\n")).unwrap();
        let table = parse(&format!("{PROMPTS}[grid]\ntop_k = 5\n")).unwrap();
        assert_eq!(one, table);
        let inline = parse(&format!(
            "{PROMPTS}grid = [{{ temperature = [0.0, 1.0, 0.9] }}, {{ top_k = [40, 640] }}, \
             {{ top_k = 40, temperature = 0.7 }}, {{ top_p = 0.95 }}]\n"
        ))
        .unwrap();
        assert_eq!(inline.grids, exp.grids);
        // With [beam] after the tables.
        let exp = parse(&format!("{PROMPTS}{TABLE_1}[beam]\nnum_beams = 4\n")).unwrap();
        assert_eq!(exp.grids.len(), 4);
        assert_eq!(exp.beam.unwrap().num_beams, vec![4]);
    }

    #[test]
    fn duplicates_across_grid_tables_are_allowed_within_a_list_they_are_not() {
        let text = format!("{PROMPTS}[[grid]]\ntop_k = [0, 40]\n[[grid]]\ntop_k = [40, 0]\n");
        assert_eq!(parse(&text).unwrap().grids.len(), 2);
        // PROMPTS is three lines: the second table's header is line 6, its key line 7.
        fails_at(
            &format!("{PROMPTS}[[grid]]\ntop_k = 40\n[[grid]]\ntop_k = [40, 640, 40]\n"),
            7,
            19,
            "top_k lists 40 twice (first at 7:10)",
        );
    }

    #[test]
    fn errors_in_a_later_grid_table_point_into_it() {
        let tables = |second: &str| format!("{PROMPTS}[[grid]]\ntop_p = 0.9\n[[grid]]\n{second}\n");
        fails_at(
            &tables("temperature = 0.5\ntop_p = [0.9, 1.5]"),
            8,
            15,
            "top_p = 1.5 is out of range; top_p must be in (0, 1]",
        );
        fails_at(&tables("top_k = -1"), 7, 9, "top_k = -1 is out of range");
        fails_at(
            &tables("temperature = []"),
            7,
            15,
            "temperature = [] is empty",
        );
        fails_at(
            &tables("top_k = \"many\""),
            7,
            9,
            "expected an integer or a list of integers",
        );
        fails_at(
            &tables("tempreature = 0.5"),
            7,
            1,
            "unknown key `tempreature` in [grid]; did you mean `temperature`?",
        );
        fails_at(
            &format!("{PROMPTS}grid = [{{ top_k = 1 }}, {{ top_p = 2 }}]\n"),
            4,
            34,
            "top_p = 2 is out of range",
        );
        fails_at(
            &format!("{PROMPTS}grid = []\n"),
            4,
            8,
            "grid = [] is empty; give at least one [[grid]] table",
        );
        fails_at(
            &format!("{PROMPTS}grid = [1]\n"),
            4,
            9,
            "expected a [grid] table",
        );
        // [grid] and [[grid]] in one file is a TOML error, still with a place.
        let err = parse(&format!(
            "{PROMPTS}[grid]\ntop_k = 1\n[[grid]]\ntop_k = 2\n"
        ))
        .unwrap_err();
        assert!(matches!(err, ExperimentError::Parse { .. }), "{err:?}");
        assert!(err.location().unwrap().position.is_some(), "{err}");
    }

    #[test]
    fn samples_is_required_when_any_grid_table_samples() {
        let base = "prompts = [\"a\"]\nmax_new_tokens = 5\n";
        let err = parse(&format!(
            "{base}[[grid]]\ntemperature = 0\n[[grid]]\ntemperature = 0\ntop_k = 5\n[[grid]]\ntemperature = [0, 0.5]\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("missing samples"), "{err}");
        let exp = parse(&format!(
            "{base}[[grid]]\ntemperature = 0\n[[grid]]\ntemperature = 0\ntop_k = 5\n"
        ))
        .unwrap();
        assert_eq!(exp.samples, 1);
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
    fn known_key_lists_match_the_structs() {
        // friendlier_message names the table by comparing serde's list with these; if a field
        // is added to a struct but not here, the table name silently disappears.
        for (table, keys) in [
            ("", TOP_KEYS),
            ("[grid]\n", GRID_KEYS),
            ("[beam]\n", BEAM_KEYS),
        ] {
            let text = format!("{table}bogus_key = 1\n");
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.contains(&format!("allowed keys: {}", keys.join(", "))),
                "{err}"
            );
            assert!(
                err.contains(" in [") || err.contains("at the top level"),
                "{err}"
            );
        }
    }

    #[test]
    fn type_errors_and_duplicates_name_their_key() {
        let msg = fails_at(
            "prompts = [\"a\"] # x = y\nmax_new_tokens = [1, 2] # a = b\n",
            2,
            18,
            "`max_new_tokens`: invalid type: sequence",
        );
        assert!(msg.contains("takes one value, not a list"), "{msg}");
        let msg = fails_at(
            "prompts = [\"a\"]\nmax_new_tokens = 4\n[beam]\nnum_beams = [2, \"x\"]\n",
            4,
            17,
            "`num_beams` in [beam]:",
        );
        assert!(msg.contains("num_beams = [2, 4]"), "{msg}");
        fails_at(
            "prompts = [\"a\"]\nmax_new_tokens = 4\n[beam]\nnum_beams = 2\n[beam]\n",
            5,
            2,
            "[beam] is given twice",
        );
        fails_at(
            "prompts = [\"a\"]\nmax_new_tokens = 4\n[grid]\ntop_k = 2\n[grid]\n",
            5,
            2,
            "[grid] is given twice",
        );
        fails_at(
            "prompts = [\"a\"]\nmax_new_tokens = 4\n[grid]\ntop_k = 2\ntop_k = 3\n",
            5,
            1,
            "`top_k` is given twice in [grid] (first at line 4)",
        );
    }

    #[test]
    fn the_key_before_a_value_skips_strings_and_comments() {
        let text = "prompts = [\"a=b\", \"c\"]";
        assert_eq!(key_before(text, text.find("\"c").unwrap()), Some("prompts"));
        let text = "grid = { top_k = \"x\" }";
        assert_eq!(key_before(text, text.find("\"x").unwrap()), Some("top_k"));
        let text = "seed = [\n  1,\n  'x',\n]";
        assert_eq!(key_before(text, text.find("'x").unwrap()), Some("seed"));
        assert_eq!(key_before("[grid]\n", 7), None);
    }

    #[test]
    fn prompts_files_need_a_known_extension() {
        let text = "prompts_file = \"p.csv\"\nmax_new_tokens = 4\n";
        let msg = fails_at(text, 1, 16, "supported extensions: .txt");
        assert!(msg.contains(".jsonl"), "{msg}");
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("top-k", "top_k"), 1);
        assert_eq!(edit_distance("seeds", "seed"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("tempreature", "temperature"), 2);
    }
}
