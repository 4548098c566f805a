//! The experiment TOML as written, before any check. Every field is optional and spanned so
//! that missing keys and bad values get our own messages, pointing at the value.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, Unexpected};
use toml::Spanned;

use crate::engine::beam::EarlyStopping;
use crate::spec::experiment::early_stopping;

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
    "contrastive",
    "score",
];
pub const GRID_KEYS: &[&str] = &[
    "temperature",
    "top_k",
    "top_p",
    "seed",
    "min_p",
    "typical_p",
    "epsilon_cutoff",
    "eta_cutoff",
    "top_n_sigma",
    "repetition_penalty",
    "frequency_penalty",
    "presence_penalty",
    "no_repeat_ngram_size",
    "temperature_last",
];
pub const BEAM_KEYS: &[&str] = &[
    "num_beams",
    "length_penalty",
    "early_stopping",
    "num_return_sequences",
    "num_beam_groups",
    "diversity_penalty",
    "repetition_penalty",
    "no_repeat_ngram_size",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "seed",
    "min_p",
    "typical_p",
    "epsilon_cutoff",
    "eta_cutoff",
    "top_n_sigma",
    "temperature_last",
];
pub const CONTRASTIVE_KEYS: &[&str] = &["penalty_alpha", "top_k"];

/// `baseline` before its check: a number (kept signed for the message) or a setting id.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RawBaseline {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an experiment table")]
pub(super) struct RawExperiment {
    pub(super) name: Option<Spanned<String>>,
    pub(super) model: Option<Spanned<String>>,
    pub(super) prompts: Option<Spanned<RawPrompts>>,
    pub(super) prompts_file: Option<Spanned<String>>,
    pub(super) max_new_tokens: Option<Spanned<Int>>,
    pub(super) samples: Option<Spanned<Int>>,
    pub(super) batch_size: Option<Spanned<Int>>,
    pub(super) baseline: Option<Spanned<RawBaseline>>,
    pub(super) grid: Option<Spanned<RawGrids>>,
    pub(super) beam: Option<Spanned<RawBeam>>,
    pub(super) contrastive: Option<Spanned<RawContrastive>>,
    pub(super) score: Option<Spanned<RawScore>>,
}

/// `prompts` as written: a list of strings, or one string (a one-element list, as a scalar
/// is everywhere a list is expected).
pub(super) enum RawPrompts {
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
    pub(super) fn into_list(raw: Spanned<RawPrompts>) -> Spanned<Vec<Spanned<String>>> {
        let span = raw.span();
        let list = match raw.into_inner() {
            RawPrompts::One(text) => vec![Spanned::new(span.clone(), text)],
            RawPrompts::Many(items) => items,
        };
        Spanned::new(span, list)
    }
}

/// `grid` as written: a `[grid]` table, or an array of tables (`[[grid]]`, or inline).
pub(super) enum RawGrids {
    One(Box<RawGrid>),
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
                RawGrid::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|g| RawGrids::One(Box::new(g)))
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
pub(super) struct RawGrid {
    pub(super) temperature: Option<Spanned<OneOrMany<Num>>>,
    pub(super) top_k: Option<Spanned<OneOrMany<Int>>>,
    pub(super) top_p: Option<Spanned<OneOrMany<Num>>>,
    pub(super) seed: Option<Spanned<OneOrMany<Int>>>,
    pub(super) min_p: Option<Spanned<OneOrMany<Num>>>,
    pub(super) typical_p: Option<Spanned<OneOrMany<Num>>>,
    pub(super) epsilon_cutoff: Option<Spanned<OneOrMany<Num>>>,
    pub(super) eta_cutoff: Option<Spanned<OneOrMany<Num>>>,
    pub(super) top_n_sigma: Option<Spanned<OneOrMany<Num>>>,
    pub(super) repetition_penalty: Option<Spanned<OneOrMany<Num>>>,
    pub(super) frequency_penalty: Option<Spanned<OneOrMany<Num>>>,
    pub(super) presence_penalty: Option<Spanned<OneOrMany<Num>>>,
    pub(super) no_repeat_ngram_size: Option<Spanned<OneOrMany<Int>>>,
    pub(super) temperature_last: Option<Spanned<OneOrMany<Flag>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [beam] table")]
pub(super) struct RawBeam {
    pub(super) num_beams: Option<Spanned<OneOrMany<Int>>>,
    pub(super) length_penalty: Option<Spanned<OneOrMany<Num>>>,
    pub(super) early_stopping: Option<Spanned<RawEarlyStopping>>,
    pub(super) num_return_sequences: Option<Spanned<Int>>,
    pub(super) num_beam_groups: Option<Spanned<OneOrMany<Int>>>,
    pub(super) diversity_penalty: Option<Spanned<OneOrMany<Num>>>,
    pub(super) repetition_penalty: Option<Spanned<OneOrMany<Num>>>,
    pub(super) no_repeat_ngram_size: Option<Spanned<OneOrMany<Int>>>,
    pub(super) do_sample: Option<Spanned<OneOrMany<Flag>>>,
    pub(super) temperature: Option<Spanned<OneOrMany<Num>>>,
    pub(super) top_k: Option<Spanned<OneOrMany<Int>>>,
    pub(super) top_p: Option<Spanned<OneOrMany<Num>>>,
    pub(super) seed: Option<Spanned<OneOrMany<Int>>>,
    pub(super) min_p: Option<Spanned<OneOrMany<Num>>>,
    pub(super) typical_p: Option<Spanned<OneOrMany<Num>>>,
    pub(super) epsilon_cutoff: Option<Spanned<OneOrMany<Num>>>,
    pub(super) eta_cutoff: Option<Spanned<OneOrMany<Num>>>,
    pub(super) top_n_sigma: Option<Spanned<OneOrMany<Num>>>,
    pub(super) temperature_last: Option<Spanned<OneOrMany<Flag>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [contrastive] table")]
pub(super) struct RawContrastive {
    pub(super) penalty_alpha: Option<Spanned<OneOrMany<Num>>>,
    pub(super) top_k: Option<Spanned<OneOrMany<Int>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [score] table")]
pub(super) struct RawScore {
    pub(super) model: Option<Spanned<String>>,
    pub(super) mauve: Option<Spanned<bool>>,
    pub(super) mauve_scaling: Option<Spanned<Num>>,
    pub(super) mauve_clusters: Option<Spanned<Int>>,
}

/// A TOML integer. Kept signed so that `top_k = -1` reaches the range check and gets a
/// message saying what is allowed, instead of serde's "expected usize".
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Int(pub(super) i64);

/// A TOML number; integers are accepted too, so `temperature = 1` means 1.0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Num(pub(super) f64);

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Flag(pub(super) bool);

/// The numeric element types of lists, with how to describe them in type errors.
pub(super) trait Scalar: Copy {
    const EXPECTING: &'static str;
    const EXPECTING_LIST: &'static str;
    fn from_i64(v: i64) -> Option<Self>;
    fn from_f64(v: f64) -> Option<Self>;
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
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

impl Scalar for Flag {
    const EXPECTING: &'static str = "true or false";
    const EXPECTING_LIST: &'static str = "true, false or a list of them";
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
    fn from_bool(v: bool) -> Option<Self> {
        Some(Flag(v))
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

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        T::from_bool(v).ok_or_else(|| E::invalid_type(Unexpected::Bool(v), &self))
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

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor::<Flag, false>(PhantomData))
    }
}

/// A list key written either as a list or as a single value (a one-element list).
pub(super) enum OneOrMany<T> {
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

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                de::Visitor::visit_bool(self.scalar(), v).map(OneOrMany::One)
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
pub(super) struct RawEarlyStopping(pub(super) EarlyStopping);

impl<'de> Deserialize<'de> for RawEarlyStopping {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        early_stopping::deserialize(d).map(RawEarlyStopping)
    }
}

#[cfg(test)]
mod tests {
    use crate::spec::experiment::test_support::*;

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
}
