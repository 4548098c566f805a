//! The processor knobs (`min_p`, `typical_p`, ..., `temperature_last`) through the real binary:
//! their ids and columns, the rule that a sample depends only on (seed, prompt, sample) whatever
//! shares its batch, and n-gram blocking holding in what was written.
//!
//! These use the tiny random model of `tests/fixtures/tiny-hf` (512-token vocabulary), so
//! prompts are made of single characters whose GPT-2 ids fit in it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-hf")
}

fn experiment(grid: &str, batch_size: usize) -> String {
    format!(
        "name = \"t\"\nmodel = \"{}\"\nprompts = [\"a\", \"b c\", \"x\"]\nmax_new_tokens = 24\n\
         samples = 6\nbatch_size = {batch_size}\n{grid}\n",
        tiny_model().display()
    )
}

struct Run {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    summary_header: Vec<String>,
    summary: Vec<Vec<String>>,
}

impl Run {
    fn cell<'a>(&self, row: &'a [String], name: &str) -> &'a str {
        let i = self
            .header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"));
        &row[i]
    }

    /// token_ids by (setting, prompt_index, sample_index).
    fn samples(&self) -> HashMap<(String, String, String), String> {
        self.rows
            .iter()
            .map(|r| {
                (
                    (
                        self.cell(r, "setting").to_owned(),
                        self.cell(r, "prompt_index").to_owned(),
                        self.cell(r, "sample_index").to_owned(),
                    ),
                    self.cell(r, "token_ids").to_owned(),
                )
            })
            .collect()
    }
}

fn read(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

fn run(dir: &Path, name: &str, text: &str, threads: &str) -> Run {
    let toml = dir.join(format!("{name}.toml"));
    std::fs::write(&toml, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sweep"))
        .current_dir(dir)
        .env("RAYON_NUM_THREADS", threads)
        .args([toml.to_str().unwrap(), "--out", name, "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (header, rows) = read(&dir.join(name).join("samples.csv"));
    let (summary_header, summary) = read(&dir.join(name).join("summary.csv"));
    Run {
        header,
        rows,
        summary_header,
        summary,
    }
}

const KNOBS: &str = "[grid]\ntemperature = [0, 1.2]\ntop_k = [0, 40]\nmin_p = [0, 0.1]\n\
                     repetition_penalty = [1, 1.4]\nno_repeat_ngram_size = [0, 2]\n\
                     temperature_last = [false, true]\nseed = 5\n";

/// Ids name only the knobs that are on; each knob the experiment turns on gets a column,
/// written where the strategy has it and empty where it has none.
#[test]
fn knobs_get_ids_and_columns() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(dir.path(), "k", &experiment(KNOBS, 16), "2");
    let settings: Vec<String> = r.summary.iter().map(|row| row[0].clone()).collect();
    // 2 top_k × 16 knob combinations at T = 1.2, and greedy folded by its penalties to 4.
    assert_eq!(settings.len(), 4 + 2 * 16, "{settings:?}");
    for id in [
        "greedy",
        "greedy_rp1.4_nrng2",
        "sample_t1.2_k0_p1_s5",
        "sample_t1.2_k40_p1_minp0.1_rp1.4_nrng2_tlast_s5",
    ] {
        assert!(
            settings.iter().any(|s| s == id),
            "{id} missing: {settings:?}"
        );
    }
    let knob_columns = [
        "min_p",
        "repetition_penalty",
        "no_repeat_ngram_size",
        "temperature_last",
    ];
    let after = r.header.iter().position(|h| h == "length_penalty").unwrap();
    assert_eq!(r.header[after + 1..after + 5], knob_columns);
    let after = r
        .summary_header
        .iter()
        .position(|h| h == "length_penalty")
        .unwrap();
    assert_eq!(r.summary_header[after + 1..after + 5], knob_columns);
    for row in &r.rows {
        let id = r.cell(row, "setting");
        let cells: Vec<&str> = knob_columns.iter().map(|c| r.cell(row, c)).collect();
        match id {
            "greedy" => assert_eq!(cells, ["", "1", "0", ""]),
            "greedy_rp1.4_nrng2" => assert_eq!(cells, ["", "1.4", "2", ""]),
            "sample_t1.2_k0_p1_s5" => assert_eq!(cells, ["0", "1", "0", "false"]),
            "sample_t1.2_k40_p1_minp0.1_rp1.4_nrng2_tlast_s5" => {
                assert_eq!(cells, ["0.1", "1.4", "2", "true"])
            }
            _ => {}
        }
    }

    // No repeated bigram in a continuation with no_repeat_ngram_size = 2 (the prompt's
    // bigrams are banned too, but the prompt's ids are not in the file).
    let mut checked = 0;
    for row in &r.rows {
        if r.cell(row, "no_repeat_ngram_size") != "2" {
            continue;
        }
        let ids: Vec<&str> = r.cell(row, "token_ids").split(' ').collect();
        let mut seen = HashSet::new();
        for pair in ids.windows(2) {
            assert!(
                seen.insert(pair.to_vec()),
                "{}: bigram {pair:?} twice in {ids:?}",
                r.cell(row, "setting")
            );
        }
        checked += 1;
    }
    assert!(checked > 100, "{checked}");
    // Without the ban, continuations of this model do repeat bigrams, which is what makes
    // the check above able to fail.
    let repeated = r
        .rows
        .iter()
        .filter(|row| r.cell(row, "no_repeat_ngram_size") == "0")
        .filter(|row| {
            let ids: Vec<&str> = r.cell(row, "token_ids").split(' ').collect();
            let mut seen = HashSet::new();
            ids.windows(2).any(|p| !seen.insert(p.to_vec()))
        })
        .count();
    assert!(repeated >= 5, "{repeated}");
}

/// A sample depends only on (seed, prompt, sample): the same with batch size 1 and 64, with
/// one thread or two, and for plain settings the same as in a run without any knob.
#[test]
fn knob_samples_do_not_depend_on_batch_threads_or_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let grid = "[grid]\ntemperature = [0.9, 1.5]\ntop_p = [0.9, 1.0]\nmin_p = [0, 0.05]\n\
                typical_p = [1, 0.8]\neta_cutoff = [0, 0.003]\nfrequency_penalty = [0, 0.5]\n\
                temperature_last = [false, true]\nseed = 2\n";
    let reference = run(dir.path(), "b1", &experiment(grid, 1), "1").samples();
    assert_eq!(reference.len(), 2 * 2 * 32 * 3 * 6);
    assert_eq!(
        run(dir.path(), "b64", &experiment(grid, 64), "2").samples(),
        reference
    );
    assert_eq!(
        run(dir.path(), "b7", &experiment(grid, 7), "1").samples(),
        reference
    );
    let plain = run(
        dir.path(),
        "plain",
        &experiment(
            "[grid]\ntemperature = [0.9, 1.5]\ntop_p = [0.9, 1.0]\nseed = 2\n",
            64,
        ),
        "2",
    )
    .samples();
    assert_eq!(plain.len(), 2 * 2 * 3 * 6);
    for (key, tokens) in &plain {
        assert_eq!(reference.get(key), Some(tokens), "{key:?}");
    }
    // The knobs change what is drawn: most samples of a knob setting differ from plain ones.
    let differ = reference
        .iter()
        .filter(|((id, _, _), _)| id.starts_with("sample_t1.5_k0_p1_typ0.8"))
        .filter(|((_, p, s), tokens)| {
            plain.get(&("sample_t1.5_k0_p1_s2".to_owned(), p.clone(), s.clone())) != Some(tokens)
        })
        .count();
    assert!(differ > 30, "{differ}");
}

/// An experiment without knobs writes exactly the columns it always did.
#[test]
fn no_knob_no_column() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        "plain",
        &experiment("[grid]\ntemperature = [0, 1]\n[beam]\nnum_beams = 2\n", 8),
        "2",
    );
    assert_eq!(
        r.header,
        [
            "setting",
            "strategy",
            "temperature",
            "top_k",
            "top_p",
            "seed",
            "num_beams",
            "length_penalty",
            "prompt_index",
            "sample_index",
            "prompt",
            "text",
            "token_ids",
            "num_tokens",
            "perplexity",
            "ended_with_eos"
        ]
    );
    assert_eq!(r.summary_header[..8], r.header[..8]);
    assert_eq!(r.summary_header[8], "samples");
}

/// `[beam]`'s groups, penalties and beam sampling, and `[contrastive]`, through the binary:
/// their ids and columns, and the same rows whatever the batch size.
#[test]
fn beam_variants_and_contrastive_search_run_as_settings() {
    let dir = tempfile::tempdir().unwrap();
    let tables = "[beam]\nnum_beams = 4\nnum_beam_groups = [1, 2]\ndiversity_penalty = [0, 0.5]\n\
                  repetition_penalty = [1, 1.3]\ndo_sample = [false, true]\ntemperature = 0.8\n\
                  seed = 3\n[contrastive]\npenalty_alpha = [0, 0.6]\ntop_k = [2, 4]\n";
    let a = run(dir.path(), "a", &experiment(tables, 4), "1");
    let settings: Vec<String> = a.summary.iter().map(|row| row[0].clone()).collect();
    assert_eq!(
        settings,
        [
            "beam_n4_lp1",
            "beam_n4_lp1_t0.8_k0_p1_s3",
            "beam_n4_lp1_rp1.3",
            "beam_n4_lp1_t0.8_k0_p1_rp1.3_s3",
            "beam_n4_lp1_g2_dp0.5",
            "beam_n4_lp1_g2_dp0.5_rp1.3",
            "contrastive_a0_k2",
            "contrastive_a0_k4",
            "contrastive_a0.6_k2",
            "contrastive_a0.6_k4",
        ]
    );
    let after = a.header.iter().position(|h| h == "length_penalty").unwrap();
    assert_eq!(
        a.header[after + 1..after + 6],
        [
            "repetition_penalty",
            "num_beam_groups",
            "diversity_penalty",
            "do_sample",
            "penalty_alpha"
        ]
    );
    for row in &a.rows {
        let id = a.cell(row, "setting");
        let cells = [
            "temperature",
            "top_k",
            "seed",
            "num_beam_groups",
            "do_sample",
            "penalty_alpha",
        ]
        .map(|c| a.cell(row, c));
        match id {
            "beam_n4_lp1_t0.8_k0_p1_s3" => {
                assert_eq!(cells, ["0.8", "0", "3", "1", "true", ""])
            }
            "beam_n4_lp1_g2_dp0.5" => assert_eq!(cells, ["", "", "", "2", "false", ""]),
            "contrastive_a0.6_k4" => assert_eq!(cells, ["", "4", "", "", "", "0.6"]),
            _ => {}
        }
    }
    // α = 0 is greedy whatever k: both rows are the greedy continuation.
    let of = |id: &str| -> Vec<String> {
        a.rows
            .iter()
            .filter(|r| a.cell(r, "setting") == id)
            .map(|r| a.cell(r, "token_ids").to_owned())
            .collect()
    };
    assert_eq!(of("contrastive_a0_k2"), of("contrastive_a0_k4"));
    assert_eq!(of("contrastive_a0.6_k4").len(), 3);
    let b = run(dir.path(), "b", &experiment(tables, 64), "2");
    assert_eq!(a.samples(), b.samples());
}

/// Bad values of the new tables are exit-2 errors that name the file, line and column.
#[test]
fn bad_beam_and_contrastive_values_name_their_place() {
    let dir = tempfile::tempdir().unwrap();
    for (table, place, needle) in [
        (
            "[beam]\nnum_beams = [4, 6]\nnum_beam_groups = [1, 4]\ndiversity_penalty = 0.5\n",
            ":9:19:",
            "num_beam_groups = 4 does not divide num_beams = 6",
        ),
        (
            "[beam]\nnum_beams = 4\ntemperature = 0.7\n",
            ":9:15:",
            "temperature in [beam] applies to beam sampling only",
        ),
        (
            "[contrastive]\npenalty_alpha = 0.6\ntop_k = 0\n",
            ":9:9:",
            "top_k = 0 is out of range; top_k must be an integer >= 1",
        ),
        (
            "[contrastive]\npenalty_alpha = 1.5\ntop_k = 4\n",
            ":8:17:",
            "penalty_alpha = 1.5 is out of range",
        ),
        (
            "[grid]\ntypical_p = 0\n",
            ":8:13:",
            "typical_p = 0 is out of range",
        ),
    ] {
        let toml = dir.path().join("bad.toml");
        std::fs::write(&toml, experiment(table, 4)).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_sweep"))
            .current_dir(dir.path())
            .args([toml.to_str().unwrap(), "--quiet"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&format!("bad.toml{place}")), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert!(!dir.path().join("results").exists());
    }
}

/// `sweep generate` and `sweep explain` take the knobs as flags: a bad value is refused by
/// flag name before a model is loaded, and `explain` lists the stages that are on, in order.
#[test]
fn generate_and_explain_take_the_knobs_as_flags() {
    let sweep = || Command::new(env!("CARGO_BIN_EXE_sweep"));
    for (flag, value, message) in [
        ("--min-p", "1.5", "--min-p 1.5: min_p must be in [0, 1]"),
        (
            "--typical-p",
            "0",
            "--typical-p 0: typical_p must be in (0, 1]",
        ),
        (
            "--epsilon-cutoff",
            "-0.1",
            "--epsilon-cutoff -0.1: epsilon_cutoff must be in [0, 1)",
        ),
        (
            "--repetition-penalty",
            "0",
            "--repetition-penalty 0: repetition_penalty must be a finite number > 0",
        ),
    ] {
        let out = sweep()
            .args(["generate", "--model", "/nonexistent", flag, value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(message), "{stderr}");
    }
    let out = sweep()
        .args([
            "generate",
            "--prompt",
            "a",
            "--max-new-tokens",
            "12",
            "--min-p",
            "0.1",
            "--repetition-penalty",
            "1.3",
            "--no-repeat-ngram-size",
            "2",
            "--frequency-penalty",
            "-0.5",
            "--temperature-last",
        ])
        .arg("--model")
        .arg(tiny_model())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sweep()
        .args([
            "explain",
            "--prompt",
            "a b",
            "--temperature",
            "1.5",
            "--top-k",
            "40",
            "--min-p",
            "0.05",
            "--repetition-penalty",
            "1.2",
            "--temperature-last",
            "--top",
            "2",
        ])
        .arg("--model")
        .arg(tiny_model())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let order = [
        "softmax (T = 1)",
        "repetition_penalty = 1.2",
        "top_k = 40",
        "min_p = 0.05",
        "temperature = 1.5",
    ];
    let places: Vec<usize> = order
        .iter()
        .map(|s| {
            text.find(s)
                .unwrap_or_else(|| panic!("{s} missing:\n{text}"))
        })
        .collect();
    assert!(places.windows(2).all(|w| w[0] < w[1]), "{text}");
}
