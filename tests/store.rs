//! The results folder on the real binary: what `--force` may delete, what a resume accepts
//! as the same experiment, and what happens to a saved setting file that cannot be read;
//! and the setting-file reader under mutated input.
//!
//! These use the tiny random model of `tests/fixtures/tiny-hf` (512-token vocabulary).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

fn sweep() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sweep"))
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    sweep().current_dir(dir).args(args).output().expect("runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: &Output) -> String {
    let err = stderr(out);
    assert!(out.status.success(), "{err}");
    err
}

fn write_toml(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("t.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "t"
model = "{}"
prompts = ["a", "b c", "x"]
max_new_tokens = 12
samples = 3
batch_size = 4
{extra}
"#,
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/tiny-hf")
                .display()
        ),
    )
    .unwrap();
    path
}

fn summary_settings(dir: &Path) -> Vec<String> {
    let mut reader = csv::Reader::from_path(dir.join("summary.csv")).unwrap();
    reader
        .records()
        .map(|r| r.unwrap()[0].to_string())
        .collect()
}

#[test]
fn force_refuses_a_folder_that_holds_anything_sweep_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    write_toml(work, "[grid]\ntemperature = 0.8\n");
    std::fs::write(work.join("notes.txt"), "mine").unwrap();
    let out = run_in(work, &["run", "t.toml", "--out", ".", "--force"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--force refused") && err.contains("--out") && err.contains("notes.txt"),
        "{err}"
    );
    // Nothing touched: the user's files are there, and nothing was added.
    assert_eq!(
        std::fs::read_to_string(work.join("notes.txt")).unwrap(),
        "mine"
    );
    let mut names: Vec<String> = std::fs::read_dir(work)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["notes.txt", "t.toml"]);

    // A results folder with a user's file in it is refused the same way.
    ok(&run_in(work, &["run", "t.toml", "--out", "r"]));
    std::fs::write(work.join("r/settings/keep.txt"), "mine").unwrap();
    let out = run_in(work, &["run", "t.toml", "--out", "r", "--force"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("keep.txt"), "{}", stderr(&out));
    assert!(work.join("r/settings/keep.txt").is_file());
    assert!(work.join("r/summary.csv").is_file());

    // A folder sweep wrote, and an empty one, are started over.
    std::fs::remove_file(work.join("r/settings/keep.txt")).unwrap();
    let err = ok(&run_in(work, &["run", "t.toml", "--out", "r", "--force"]));
    assert!(err.contains("1 settings run"), "{err}");
    std::fs::create_dir(work.join("empty")).unwrap();
    ok(&run_in(
        work,
        &["run", "t.toml", "--out", "empty", "--force"],
    ));
}

#[test]
fn what_leaves_samples_alone_may_change_between_a_run_and_its_resume() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    write_toml(work, "[grid]\ntemperature = 0.8\n");
    ok(&run_in(work, &["run", "t.toml"]));
    let samples = std::fs::read(work.join("results/t/samples.csv")).unwrap();
    // A smaller batch (after running out of memory) resumes: nothing to do.
    let text = std::fs::read_to_string(work.join("t.toml"))
        .unwrap()
        .replace("batch_size = 4", "batch_size = 1");
    std::fs::write(work.join("t.toml"), text).unwrap();
    let err = ok(&run_in(work, &["run", "t.toml"]));
    assert!(err.contains("0 settings run, 0 rows generated"), "{err}");
    assert_eq!(
        std::fs::read(work.join("results/t/samples.csv")).unwrap(),
        samples
    );

    // What does change samples is refused, naming it.
    let text = std::fs::read_to_string(work.join("t.toml"))
        .unwrap()
        .replace("max_new_tokens = 12", "max_new_tokens = 10");
    std::fs::write(work.join("t.toml"), text).unwrap();
    let out = run_in(work, &["run", "t.toml"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("max_new_tokens") && err.contains("--force"),
        "{err}"
    );
    // So is another number of samples per prompt, which the setting's file records.
    write_toml(work, "[grid]\ntemperature = 0.8\n");
    let text = std::fs::read_to_string(work.join("t.toml"))
        .unwrap()
        .replace("samples = 3", "samples = 4");
    std::fs::write(work.join("t.toml"), text).unwrap();
    let out = run_in(work, &["run", "t.toml"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("sample_t0.8_k0_p1_s0"), "{err}");
}

#[test]
fn an_added_setting_runs_alone_and_a_removed_one_leaves_the_reports() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    write_toml(work, "[grid]\ntemperature = 0.8\n");
    ok(&run_in(work, &["run", "t.toml", "--out", "r"]));
    write_toml(work, "[grid]\ntemperature = [0.8, 1.2]\n");
    let err = ok(&run_in(work, &["run", "t.toml", "--out", "r"]));
    assert!(
        err.contains("1 settings run, 9 rows generated (1 already done"),
        "{err}"
    );
    assert_eq!(
        summary_settings(&work.join("r")),
        ["sample_t0.8_k0_p1_s0", "sample_t1.2_k0_p1_s0"]
    );
    // The same two settings from scratch give the same files.
    ok(&run_in(work, &["run", "t.toml", "--out", "fresh"]));
    assert_eq!(
        std::fs::read(work.join("r/samples.csv")).unwrap(),
        std::fs::read(work.join("fresh/samples.csv")).unwrap()
    );

    write_toml(work, "[grid]\ntemperature = 1.2\n");
    let err = ok(&run_in(work, &["run", "t.toml", "--out", "r"]));
    assert!(err.contains("0 settings run"), "{err}");
    assert_eq!(summary_settings(&work.join("r")), ["sample_t1.2_k0_p1_s0"]);
    assert!(work.join("r/settings/sample_t0.8_k0_p1_s0.jsonl").is_file());
}

#[test]
fn a_folder_of_an_older_format_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    write_toml(work, "[grid]\ntemperature = 0.8\n");
    std::fs::create_dir_all(work.join("old/settings")).unwrap();
    std::fs::write(
        work.join("old/experiment.json"),
        r#"{"experiment": {"name": "t"}, "model_sha256": "00", "backend": "flex", "numerics": 4}"#,
    )
    .unwrap();
    std::fs::write(
        work.join("old/settings/sample_t0.8_k0_p1_s0.jsonl"),
        r#"{"prompt_index":0,"sample_index":0,"text":"","token_ids":[],"logprobs":[],"ended_with_eos":false}"#,
    )
    .unwrap();
    let out = run_in(work, &["run", "t.toml", "--out", "old"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("another version of sweep") && err.contains("--force"),
        "{err}"
    );
    ok(&run_in(work, &["run", "t.toml", "--out", "old", "--force"]));
}

#[test]
fn a_lock_left_by_a_dead_process_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    write_toml(work, "[grid]\ntemperature = 0.8\n");
    std::fs::create_dir_all(work.join("r")).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    std::fs::write(
        work.join("r/sweep.lock"),
        serde_json::json!({"pid": 999_999_999u32, "host": host.trim()}).to_string(),
    )
    .unwrap();
    ok(&run_in(work, &["run", "t.toml", "--out", "r"]));
    // Released on exit.
    assert_eq!(
        std::fs::read_to_string(work.join("r/sweep.lock")).unwrap(),
        ""
    );
}

/// A record line as the store writes it: JSON, a tab, the JSON's checksum.
fn frame(json: &[u8]) -> Vec<u8> {
    let sum: String = Sha256::digest(json)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut line = json.to_vec();
    line.push(b'\t');
    line.extend_from_slice(sum.as_bytes());
    line.push(b'\n');
    line
}

/// Replace line `n` (counting from 0) of a setting file with `json`, framed.
fn with_line(bytes: &[u8], n: usize, json: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        if i == n {
            out.extend(frame(json));
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

fn record_json(bytes: &[u8], n: usize) -> serde_json::Value {
    let line = bytes.split(|&b| b == b'\n').nth(n).unwrap();
    let tab = line.iter().rposition(|&b| b == b'\t').unwrap();
    serde_json::from_slice(&line[..tab]).unwrap()
}

#[test]
fn an_unreadable_setting_file_is_named_with_its_fix_and_the_others_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    write_toml(work, "[grid]\ntemperature = [0.8, 1.2]\n");
    ok(&run_in(work, &["run", "t.toml", "--out", "r"]));
    let whole = std::fs::read(work.join("r/samples.csv")).unwrap();
    let bad = work.join("r/settings/sample_t0.8_k0_p1_s0.jsonl");
    let other = work.join("r/settings/sample_t1.2_k0_p1_s0.jsonl");
    let good = std::fs::read(&bad).unwrap();

    let mut out_of_range = record_json(&good, 1);
    out_of_range["samples"][0]["sample_index"] = 99.into();
    let mut null_logprob = record_json(&good, 2);
    null_logprob["samples"][1]["logprobs"][0] = serde_json::Value::Null;
    let mut wrong_prompt = record_json(&good, 1);
    wrong_prompt["prompt"] = 7.into();
    let mut flipped = good.clone();
    let middle = good.iter().position(|&b| b == b'\n').unwrap() + 30;
    flipped[middle] ^= 0x20;
    let cases: [(&str, Vec<u8>); 5] = [
        (
            "sample_index 99 is out of range",
            with_line(&good, 1, out_of_range.to_string().as_bytes()),
        ),
        (
            "line 3",
            with_line(&good, 2, null_logprob.to_string().as_bytes()),
        ),
        (
            "prompt 7 is out of range",
            with_line(&good, 1, wrong_prompt.to_string().as_bytes()),
        ),
        ("line 2: the checksum does not match", flipped),
        ("results format 1", {
            let mut header = record_json(&good, 0);
            header["format"] = 1.into();
            with_line(&good, 0, header.to_string().as_bytes())
        }),
    ];
    for (said, bytes) in cases {
        std::fs::write(&bad, &bytes).unwrap();
        std::fs::remove_file(&other).unwrap();
        let out = run_in(work, &["run", "t.toml", "--out", "r"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{said}: {err}");
        assert!(
            err.contains(said)
                && err.contains("rm 'r/settings/sample_t0.8_k0_p1_s0.jsonl'")
                && err.contains("recomputes setting sample_t0.8_k0_p1_s0 alone"),
            "{said}: {err}"
        );
        // The other setting was recomputed, the bad file left as it was.
        assert!(other.is_file(), "{said}");
        assert_eq!(std::fs::read(&bad).unwrap(), bytes, "{said}");
    }
    // Doing what the message says recomputes that setting alone.
    std::fs::remove_file(&bad).unwrap();
    let err = ok(&run_in(work, &["run", "t.toml", "--out", "r"]));
    assert!(err.contains("1 settings run, 9 rows generated"), "{err}");
    assert_eq!(std::fs::read(work.join("r/samples.csv")).unwrap(), whole);
}

/// A small deterministic generator for the mutations.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Mutate one JSON value somewhere inside `v`: a number changed, negated or made huge, a
/// string or list emptied, a value nulled or given another type.
fn mutate_json(v: &mut serde_json::Value, rng: &mut Lcg) {
    use serde_json::Value;
    match v {
        Value::Object(map) if !map.is_empty() && rng.below(4) != 0 => {
            let key = map.keys().nth(rng.below(map.len())).unwrap().clone();
            if rng.below(10) == 0 {
                map.remove(&key);
            } else {
                mutate_json(map.get_mut(&key).unwrap(), rng);
            }
        }
        Value::Array(items) if !items.is_empty() && rng.below(4) != 0 => {
            let i = rng.below(items.len());
            match rng.below(6) {
                0 => {
                    items.remove(i);
                }
                1 => {
                    let copy = items[i].clone();
                    items.push(copy);
                }
                _ => mutate_json(&mut items[i], rng),
            }
        }
        _ => {
            *v = match rng.below(8) {
                0 => Value::Null,
                1 => (-1).into(),
                2 => u64::MAX.into(),
                3 => 1e300.into(),
                4 => "".into(),
                5 => Value::Array(Vec::new()),
                6 => (rng.below(100)).into(),
                _ => serde_json::json!({"x": 1}),
            }
        }
    }
}

/// The reader never panics on a mutated setting file: truncated, bytes flipped, pieces
/// spliced in, or a record's JSON changed and framed with a valid checksum (so the checks
/// behind the checksum are reached). `SWEEP_FUZZ_CASES` sets the number of cases.
#[test]
fn the_setting_reader_rejects_mutations_without_panicking() {
    let cases: usize = std::env::var("SWEEP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let toml = write_toml(work, "[grid]\ntemperature = 0.8\n\n[beam]\nnum_beams = 2\n");
    ok(&run_in(work, &["run", "t.toml", "--out", "r"]));
    let exp = sweep::spec::experiment::Experiment::load(&toml).unwrap();
    let (settings, _) = sweep::run::runner::settings(&exp);
    let fingerprint = sweep::run::store::read_fingerprint(&work.join("r"))
        .unwrap()
        .unwrap();
    let seeds: Vec<(Vec<u8>, sweep::run::store::Expected)> = settings
        .iter()
        .map(|s| {
            let expected = fingerprint.expected(s);
            let bytes = std::fs::read(sweep::run::store::setting_path(
                &work.join("r/settings"),
                &expected.id,
            ))
            .unwrap();
            let data = sweep::run::store::parse_setting(&bytes, &expected).unwrap();
            assert!(data.is_finished(), "{}", expected.id);
            (bytes, expected)
        })
        .collect();

    let mut rng = Lcg(2024);
    let (mut accepted, mut rejected) = (0, 0);
    for _ in 0..cases {
        let (bytes, expected) = &seeds[rng.below(seeds.len())];
        let mut m = bytes.clone();
        for _ in 0..=rng.below(3) {
            match rng.below(5) {
                0 => m.truncate(rng.below(m.len() + 1)),
                1 => {
                    for _ in 0..=rng.below(4) {
                        if !m.is_empty() {
                            let i = rng.below(m.len());
                            m[i] ^= 1 << rng.below(8);
                        }
                    }
                }
                2 => {
                    // Splice a piece of the file (or of another) somewhere else.
                    let (from, _) = &seeds[rng.below(seeds.len())];
                    let a = rng.below(from.len());
                    let b = (a + rng.below(200)).min(from.len());
                    let at = rng.below(m.len() + 1);
                    m.splice(at..at, from[a..b].iter().copied());
                }
                _ => {
                    let lines = m.split(|&b| b == b'\n').count().saturating_sub(1);
                    if lines > 0 {
                        let n = rng.below(lines);
                        let line = m.split(|&b| b == b'\n').nth(n).unwrap();
                        if let Some(tab) = line.iter().rposition(|&b| b == b'\t')
                            && let Ok(mut v) =
                                serde_json::from_slice::<serde_json::Value>(&line[..tab])
                        {
                            mutate_json(&mut v, &mut rng);
                            m = with_line(&m, n, v.to_string().as_bytes());
                        }
                    }
                }
            }
        }
        match sweep::run::store::parse_setting(&m, expected) {
            Ok(data) => {
                accepted += 1;
                // Whatever is accepted is whole and in range.
                for (p, rows) in data.prompts.iter().enumerate() {
                    for (i, s) in &rows.rows {
                        assert!(s.prompt_index == p && s.sample_index == *i);
                        assert!(s.logprobs.iter().all(|x| x.is_finite()));
                    }
                }
            }
            Err(reason) => {
                rejected += 1;
                assert!(!reason.is_empty());
            }
        }
    }
    eprintln!("{cases} mutated setting files: {accepted} read, {rejected} rejected, 0 panics");
    assert!(accepted > 0 && rejected > 0);
}

/// What a crash leaves at the end of a setting's file (a cut record, and blocks the disk
/// allocated but never wrote) is dropped: the resume generates that record's rows again and
/// appends after the last whole record.
#[test]
fn a_torn_record_at_the_end_is_dropped_and_generated_again() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    write_toml(work, "[grid]\ntemperature = [0.8, 1.2]\n");
    ok(&run_in(work, &["run", "t.toml", "--out", "r"]));
    let whole = std::fs::read(work.join("r/samples.csv")).unwrap();
    let path = work.join("r/settings/sample_t1.2_k0_p1_s0.jsonl");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 7);
    bytes.extend([0u8; 300]);
    std::fs::write(&path, &bytes).unwrap();
    let err = ok(&run_in(work, &["run", "t.toml", "--out", "r"]));
    assert!(
        err.contains("1 settings run, 3 rows generated (1 already done"),
        "{err}"
    );
    assert_eq!(std::fs::read(work.join("r/samples.csv")).unwrap(), whole);
    let repaired = std::fs::read(&path).unwrap();
    assert!(!repaired.contains(&0), "the torn bytes are still there");
    assert_eq!(repaired.iter().filter(|&&b| b == b'\n').count(), 4);
}
