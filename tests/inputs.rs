//! Inputs that used to crash, hang or be silently accepted are exit-2 errors before any work,
//! from `validate` as from `run`: each test drives the real binary on real files and checks
//! the message names the key (or file, line and column) and the fix.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

fn sweep() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sweep"))
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tiny_model() -> PathBuf {
    root().join("tests/fixtures/tiny-hf")
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    sweep().current_dir(dir).args(args).output().expect("runs")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a bad-input exit (2) whose message contains every one of `needles`, and no panic.
#[track_caller]
fn refused(out: &Output, needles: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "wanted {needle:?} in {err}");
    }
    err
}

/// `validate` and `run` on the same TOML both refuse it with `needles`, and `run` leaves no
/// results folder behind.
#[track_caller]
fn both_refuse(dir: &Path, toml: &str, needles: &[&str]) {
    let path = write(dir, "t.toml", toml);
    let path = path.to_str().unwrap();
    refused(&run_in(dir, &["validate", path]), needles);
    let out = dir.join("out");
    refused(
        &run_in(dir, &["run", path, "--out", out.to_str().unwrap()]),
        needles,
    );
    assert!(!out.exists(), "run wrote {}", out.display());
}

fn experiment(model: &Path, top: &str, tables: &str) -> String {
    format!(
        "name = \"t\"\nmodel = \"{}\"\n{top}\n{tables}\n",
        model.display()
    )
}

/// A model folder: `config` as config.json, and a safetensors file whose header declares
/// `shapes` but holds no data. `validate` reads only headers, and `run` must refuse before it
/// reads the weights, so such a folder stands for a model too large to ship with the tests.
fn header_only_model(
    dir: &Path,
    config: serde_json::Value,
    shapes: &[(&str, &[usize])],
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in shapes {
        let bytes = shape.iter().product::<usize>() * 4;
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    std::fs::write(dir.join("model.safetensors"), file).unwrap();
    dir.to_path_buf()
}

/// A copy of the tiny model with `edit` applied to its config.json.
fn tiny_with_config(dir: &Path, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(
        tiny_model().join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny_model().join("config.json")).unwrap())
            .unwrap();
    edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir.to_path_buf()
}

/// Below 1e-6, 1/T overflows f32 (below about 3e-39) or the distribution is one-hot: such a
/// temperature was neither greedy nor an error.
#[test]
fn regression_a_tiny_temperature_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let toml = experiment(
        &tiny_model(),
        "prompts = [\"a\"]\nmax_new_tokens = 4\nsamples = 2",
        "[grid]\ntemperature = [0.5, 1e-7]",
    );
    // Line 7 (the name, model and three top keys come first), after "temperature = [0.5, ".
    both_refuse(
        dir.path(),
        &toml,
        &[
            "t.toml:7:21: temperature = 1e-7 is out of range",
            "use 0 for greedy, or a temperature >= 1e-6",
        ],
    );
    for command in ["generate", "explain"] {
        let out = sweep()
            .args([
                command,
                "--prompt",
                "a",
                "--temperature",
                "1e-300",
                "--model",
            ])
            .arg(tiny_model())
            .output()
            .unwrap();
        refused(
            &out,
            &[
                "--temperature 1e-300",
                "use 0 for greedy, or a temperature >= 1e-6",
            ],
        );
    }
    // 1e-6 itself and 0 run.
    let toml = experiment(
        &tiny_model(),
        "prompts = [\"a\"]\nmax_new_tokens = 4\nsamples = 2",
        "[grid]\ntemperature = [0, 1e-6]",
    );
    let path = write(dir.path(), "ok.toml", &toml);
    let out = run_in(dir.path(), &["validate", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `samples` >= 2^31 and `num_beams` >= ~25,000 aborted on allocation, after `validate` had
/// accepted them.
#[test]
fn regression_absurd_sizes_are_refused_by_name_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model();
    let cases = [
        (
            "prompts = [\"a\"]\nmax_new_tokens = 4\nsamples = 2147483648",
            "[grid]",
            "samples = 2147483648 is out of range; samples must be an integer from 1 to 1000000",
        ),
        (
            "prompts = [\"a\"]\nmax_new_tokens = 4",
            "[beam]\nnum_beams = [4, 25000]",
            "num_beams = 25000 is out of range; num_beams must be an integer from 1 to 10000",
        ),
        (
            "prompts = [\"a\"]\nmax_new_tokens = 4\nsamples = 2\nbatch_size = 1000000",
            "[grid]",
            "batch_size = 1000000 is out of range; batch_size must be an integer from 1 to 65536",
        ),
        (
            "prompts = [\"a\"]\nmax_new_tokens = 4611686018427387904",
            "[beam]\nnum_beams = 2",
            "max_new_tokens = 4611686018427387904 is out of range",
        ),
        (
            "prompts = [\"a\"]\nmax_new_tokens = 4",
            "[beam]\nnum_beams = 4\nnum_return_sequences = 5",
            "num_return_sequences = 5 is out of range",
        ),
        // The tiny model's context is 64 positions: validate now checks what run checks.
        (
            "prompts = [\"a\"]\nmax_new_tokens = 64",
            "[beam]\nnum_beams = 2",
            "max_new_tokens = 64 does not fit the model's context of 64 positions",
        ),
    ];
    for (top, tables, needle) in cases {
        both_refuse(dir.path(), &experiment(&model, top, tables), &[needle]);
    }
}

/// A grid of 10^8 settings made `validate` expand it for 57 s and then abort.
#[test]
fn regression_a_huge_grid_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let list = |n: usize, scale: f64| {
        (1..=n)
            .map(|i| format!("{}", i as f64 * scale))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ints = (0..100)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let toml = experiment(
        &tiny_model(),
        "prompts = [\"a\"]\nmax_new_tokens = 4\nsamples = 2",
        &format!(
            "[grid]\ntemperature = [{}]\ntop_k = [{ints}]\ntop_p = [{}]\nseed = [{ints}]",
            list(100, 0.01),
            list(100, 0.01)
        ),
    );
    let started = Instant::now();
    both_refuse(
        dir.path(),
        &toml,
        &[
            "the experiment has 100000000 settings",
            "temperature 100 x top_k 100 x top_p 100 x seed 100",
            "at most 100000",
        ],
    );
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
}

/// What a batch needs is estimated from the model's config (read from the header, not the
/// weights) and refused when the machine cannot hold it, naming the value to lower.
#[test]
fn a_batch_that_cannot_fit_in_memory_names_the_value_to_lower() {
    let dir = tempfile::tempdir().unwrap();
    // One layer, but a context of 2^20 positions: each row's KV cache is 512 MiB at full
    // length, so 4096 rows need 2 TiB, more than any machine running these tests.
    let model = header_only_model(
        &dir.path().join("long"),
        serde_json::json!({"vocab_size": 50257, "n_positions": 1048576, "n_embd": 64,
                           "n_layer": 1, "n_head": 4}),
        &[
            ("wte.weight", &[50257, 64]),
            ("wpe.weight", &[1048576, 64]),
            ("h.0.ln_1.weight", &[64]),
        ],
    );
    let toml = experiment(
        &model,
        "prompts = [\"a\"]\nmax_new_tokens = 1000000\nsamples = 4096\nbatch_size = 4096",
        "[grid]",
    );
    both_refuse(
        dir.path(),
        &toml,
        &[
            "batch_size = 4096 needs about ",
            "of KV cache",
            "n_layer 1, n_embd 64, vocab_size 50257, 1000001 positions",
            ": lower batch_size",
        ],
    );
    // A beam search: its width is the number of rows.
    let toml = experiment(
        &model,
        "prompts = [\"a\"]\nmax_new_tokens = 1000000",
        "[beam]\nnum_beams = 9000",
    );
    both_refuse(
        dir.path(),
        &toml,
        &["num_beams = 9000 needs about ", ": lower num_beams"],
    );
    // The texts of one setting are held in memory until it is saved.
    let prompts = vec!["\"a\""; 2000].join(", ");
    let toml = experiment(
        &tiny_model(),
        &format!("prompts = [{prompts}]\nmax_new_tokens = 60\nsamples = 1000000\nbatch_size = 4"),
        "[grid]",
    );
    both_refuse(
        dir.path(),
        &toml,
        &[
            "samples = 1000000 needs about ",
            "2000 prompts x 60 tokens",
            ": lower samples",
        ],
    );
    // validate reports the estimate of what fits.
    let toml = experiment(
        &tiny_model(),
        "prompts = [\"a\"]\nmax_new_tokens = 8\nsamples = 4",
        "[grid]",
    );
    let path = write(dir.path(), "fits.toml", &toml);
    let out = run_in(dir.path(), &["validate", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout.contains("n_layer 2, n_head 4, n_embd 64"),
        "{stdout}"
    );
    assert!(stdout.contains("memory:    about "), "{stdout}");
}

/// n_layer = 10^8 in config.json aborted on allocation before any tensor was checked, and
/// `activation_function = "relu"` or `scale_attn_weights = false` were silently ignored.
#[test]
fn regression_model_configs_are_bounded_and_checked_against_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit, &[&str]); 5] = [
        (
            "huge",
            |c| c["n_layer"] = 100_000_000.into(),
            &["config.json: invalid config: n_layer = 100000000 is larger"],
        ),
        (
            "more",
            |c| c["n_layer"] = 3.into(),
            &["the config gives n_layer = 3, but the weights hold 2 layers"],
        ),
        (
            "relu",
            |c| c["activation_function"] = "relu".into(),
            &["activation_function = \"relu\" is not implemented"],
        ),
        (
            "unscaled",
            |c| c["scale_attn_weights"] = false.into(),
            &["scale_attn_weights = false is not implemented"],
        ),
        (
            "inner",
            |c| c["n_inner"] = 100.into(),
            &["n_inner = 100 is not implemented"],
        ),
    ];
    for (name, edit, needles) in cases {
        let model = tiny_with_config(&dir.path().join(name), edit);
        let toml = experiment(
            &model,
            "prompts = [\"a\"]\nmax_new_tokens = 4",
            "[beam]\nnum_beams = 2",
        );
        let started = Instant::now();
        both_refuse(dir.path(), &toml, needles);
        assert!(
            started.elapsed().as_secs() < 20,
            "{name}: {:?}",
            started.elapsed()
        );
        // The other commands load models the same way.
        let out = sweep()
            .args([
                "generate",
                "--prompt",
                "a",
                "--max-new-tokens",
                "2",
                "--model",
            ])
            .arg(&model)
            .output()
            .unwrap();
        refused(&out, needles);
    }
}

/// A prompt or reference with a run of a million characters without whitespace panicked
/// inside tiktoken (a stack overflow in its regex) and 400,000 characters took 83 s.
#[test]
fn regression_a_million_character_run_is_tokenized_quickly() {
    let dir = tempfile::tempdir().unwrap();
    for unit in ["a", " ", "!", "7"] {
        let run = unit.repeat(1_000_000);
        let jsonl =
            serde_json::json!({"prompt": format!("ROMEO:{run}"), "reference": run}).to_string();
        write(dir.path(), "p.jsonl", &jsonl);
        // The shipped model knows GPT-2's whole vocabulary.
        let model = root().join("models/shakespeare");
        let toml = experiment(
            &model,
            "prompts_file = \"p.jsonl\"\nmax_new_tokens = 2",
            "[grid]\ntemperature = 0",
        );
        let path = write(dir.path(), "long.toml", &toml);
        let started = Instant::now();
        let out = run_in(dir.path(), &["validate", path.to_str().unwrap()]);
        assert!(out.status.success(), "{unit:?}: {}", stderr(&out));
        assert!(
            started.elapsed().as_secs() < 30,
            "{unit:?}: {:?}",
            started.elapsed()
        );
    }
    // And a run crops such a prompt and finishes.
    let out_dir = dir.path().join("out");
    let path = dir.path().join("long.toml");
    let out = run_in(
        dir.path(),
        &[
            "run",
            path.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `top_p = 1e-300` or `length_penalty = 1e308` made setting ids hundreds of digits long,
/// and the run failed with "File name too long" after generating everything.
#[test]
fn regression_extreme_floats_give_short_distinct_setting_files() {
    let dir = tempfile::tempdir().unwrap();
    let toml = experiment(
        &tiny_model(),
        "prompts = [\"a\"]\nmax_new_tokens = 3\nsamples = 1",
        "[grid]\ntemperature = 1\ntop_p = [1e-300, 2e-300]\n\
         [beam]\nnum_beams = 2\nlength_penalty = [1e308, -1e308, 1.0]",
    );
    let path = write(dir.path(), "t.toml", &toml);
    let out_dir = dir.path().join("out");
    let out = run_in(
        dir.path(),
        &[
            "run",
            path.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = std::fs::read_to_string(out_dir.join("summary.csv")).unwrap();
    for id in [
        "beam_n2_lp-1e308",
        "beam_n2_lp1,",
        "beam_n2_lp1e308",
        "sample_t1_k0_p1e-300_s0",
        "sample_t1_k0_p2e-300_s0",
    ] {
        assert!(summary.contains(id), "{id} in {summary}");
    }
}

/// `sweep bench --num-beams 0` panicked; zero or absurd sizes are refused before a model is
/// loaded.
#[test]
fn regression_bench_refuses_zero_and_absurd_sizes() {
    for (args, needle) in [
        (
            &["--num-beams", "0"][..],
            "--num-beams 0: must be from 1 to 10000",
        ),
        (
            &["--num-beams", "25000"][..],
            "--num-beams 25000: must be from 1 to 10000",
        ),
        (
            &["--batch", "4,0"][..],
            "--batch 0: must be from 1 to 65536",
        ),
        (
            &["--batch", "100000"][..],
            "--batch 100000: must be from 1 to 65536",
        ),
        (&["--new-tokens", "0"][..], "--new-tokens 0: must be from 1"),
        (
            &["--long-tokens", "0"][..],
            "--long-tokens 0: must be from 1",
        ),
        (&["--repeat", "0"][..], "--repeat 0: must be from 1 to 100"),
    ] {
        let out = sweep()
            .arg("bench")
            .args(args)
            .arg("--model")
            .arg(tiny_model())
            .output()
            .unwrap();
        refused(&out, &[needle]);
    }
}

/// An empty reference silently blanked the human row's perplexity; references given for only
/// some prompts scored the human row on other prompts than the generated ones.
#[test]
fn regression_references_are_never_empty_and_all_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let toml = experiment(
        &tiny_model(),
        "prompts_file = \"p.jsonl\"\nmax_new_tokens = 3",
        "[beam]\nnum_beams = 2",
    );
    write(
        dir.path(),
        "p.jsonl",
        "{\"prompt\": \"a\", \"reference\": \"b\"}\n{\"prompt\": \"c\", \"reference\": \"\"}\n",
    );
    both_refuse(
        dir.path(),
        &toml,
        &["p.jsonl:2:1: \"reference\" is empty", "leave the key out"],
    );
    write(
        dir.path(),
        "p.jsonl",
        "{\"prompt\": \"a\", \"reference\": \"b\"}\n{\"prompt\": \"c\"}\n{\"prompt\": \"d\", \"reference\": \"e\"}\n",
    );
    both_refuse(
        dir.path(),
        &toml,
        &[
            "p.jsonl:2:1: this prompt has no \"reference\", but 2 of the 3 prompts have one",
            "give every prompt a reference, or none",
        ],
    );
    // A reference the model's vocabulary cannot hold is named before any work.
    write(
        dir.path(),
        "p.jsonl",
        "{\"prompt\": \"a\", \"reference\": \" Shakespeare\"}\n",
    );
    both_refuse(
        dir.path(),
        &toml,
        &[
            "the reference of prompt 0 has token id",
            "vocabulary of 512",
        ],
    );
}
