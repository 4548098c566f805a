//! Prompts files (`.txt`, one prompt per line, and `.jsonl` with references) and the escape
//! rule a text prompt is written in, which `explain --prompt` shares.

use std::path::Path;

use serde::Deserialize;

use crate::spec::experiment::{ExperimentError, Location, Position, Prompt};

/// The extensions a prompts file may have; its format is chosen by them, so any other one
/// is refused rather than read as text (a CSV's header would become a prompt).
pub const PROMPTS_EXTENSIONS: &[&str] = &["txt", "jsonl"];

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
pub(super) fn read_prompts_file(path: &Path) -> Result<Vec<Prompt>, ExperimentError> {
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
/// so Windows paths and the like in prompts survive. A `prompts_file` line and a prompt typed
/// on the command line follow this one rule.
pub fn decode_escapes(line: &str) -> String {
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
    use crate::spec::experiment::Experiment;
    use crate::spec::experiment::test_support::*;

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

    /// An empty reference would blank the human row's perplexity without a word, and a file
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
    fn prompts_files_need_a_known_extension() {
        let text = "prompts_file = \"p.csv\"\nmax_new_tokens = 4\n";
        let msg = fails_at(text, 1, 16, "supported extensions: .txt");
        assert!(msg.contains(".jsonl"), "{msg}");
    }
}
