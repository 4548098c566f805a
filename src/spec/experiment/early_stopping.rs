//! `early_stopping` in files: `true`, `false` or `"never"`, as transformers spells it. One
//! serde `with` module, so the TOML reader, `run.json`, `shard.json` and the settings' JSON
//! can never disagree on a spelling.

use std::fmt;

use serde::Serializer;
use serde::de::{self, Deserializer, Unexpected};

use crate::engine::beam::EarlyStopping;

/// Writes [`EarlyStopping`] the way the TOML spells it, so `run.json` reads like the input.
pub fn serialize<S: Serializer>(value: &EarlyStopping, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        EarlyStopping::Always => serializer.serialize_bool(true),
        EarlyStopping::Heuristic => serializer.serialize_bool(false),
        EarlyStopping::Never => serializer.serialize_str("never"),
    }
}

/// [`serialize`] for a setting that has no `early_stopping` (sampling, greedy): `null`.
pub fn serialize_option<S: Serializer>(
    value: &Option<EarlyStopping>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(e) => serialize(e, serializer),
        None => serializer.serialize_none(),
    }
}

/// Reads what [`serialize`] writes; anything else is refused with the spellings allowed.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<EarlyStopping, D::Error> {
    struct Visitor;

    impl de::Visitor<'_> for Visitor {
        type Value = EarlyStopping;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("true, false or \"never\"")
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(if v {
                EarlyStopping::Always
            } else {
                EarlyStopping::Heuristic
            })
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if v == "never" {
                Ok(EarlyStopping::Never)
            } else {
                Err(E::invalid_value(Unexpected::Str(v), &self))
            }
        }
    }

    d.deserialize_any(Visitor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::experiment::test_support::*;

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
    fn json_spellings_read_back_and_others_are_refused() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Beam {
            #[serde(with = "super")]
            early_stopping: EarlyStopping,
        }
        for (value, json) in [
            (EarlyStopping::Always, serde_json::json!(true)),
            (EarlyStopping::Heuristic, serde_json::json!(false)),
            (EarlyStopping::Never, serde_json::json!("never")),
        ] {
            let written = serde_json::to_value(Beam {
                early_stopping: value,
            })
            .unwrap();
            assert_eq!(written, serde_json::json!({ "early_stopping": json }));
            let read: Beam = serde_json::from_value(written).unwrap();
            assert_eq!(read.early_stopping, value);
        }
        for bad in [serde_json::json!("always"), serde_json::json!(1)] {
            let err = serde_json::from_value::<Beam>(serde_json::json!({ "early_stopping": bad }));
            assert!(err.is_err());
        }
    }
}
