//! The TOML reader's messages made helpful: positions as line and column, the key and table a
//! value belongs to, "did you mean" for a misspelt key, and an example of what to write.

use std::ops::Range;

use crate::spec::experiment::Position;
use crate::spec::experiment::schema::{BEAM_KEYS, CONTRASTIVE_KEYS, GRID_KEYS, TOP_KEYS};

/// The 1-based line and character column of byte `offset` in `text`.
pub(super) fn position_of(text: &str, offset: usize) -> Position {
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
pub(super) fn friendlier_message(message: &str) -> String {
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
    } else if allowed == CONTRASTIVE_KEYS {
        " in [contrastive]"
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
        Some("contrastive") => CONTRASTIVE_KEYS,
        Some(_) => &[],
    }
}

/// Rewrites the TOML reader's messages that do not say which key they are about ("invalid
/// type: sequence, expected an integer", "duplicate key") to name it, its table and the fix.
pub(super) fn name_the_key(text: &str, span: Option<Range<usize>>, message: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::experiment::ExperimentError;
    use crate::spec::experiment::test_support::*;

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
            shown.ends_with(
                "allowed keys: temperature, top_k, top_p, seed, min_p, typical_p, \
                 epsilon_cutoff, eta_cutoff, top_n_sigma, repetition_penalty, frequency_penalty, \
                 presence_penalty, no_repeat_ngram_size, temperature_last"
            ),
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
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("top-k", "top_k"), 1);
        assert_eq!(edit_distance("seeds", "seed"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("tempreature", "temperature"), 2);
    }
}
