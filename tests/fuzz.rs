//! Mutation fuzzing of every reader that takes a file a user hands to `sweep`: the experiment
//! TOML, the prompts files (`.txt` and `.jsonl`), a model's `config.json`, safetensors weights
//! and PyTorch checkpoints (`.pt`).
//!
//! Seeds are the real files (the shipped experiments, prompts and model, the test fixtures);
//! each case mutates one (bit flips, truncation, splices between seeds, inserted tokens such as
//! huge numbers, `nan`, `-0`, NUL, deep nesting, long runs without whitespace, duplicate keys)
//! and runs the reader on a worker thread under `catch_unwind` with a time limit. A reader must
//! answer every input with `Ok` or an error value: a panic or a case that outlives the limit
//! fails the test, and the input is saved under the test's scratch folder to reproduce it.
//!
//! `SWEEP_FUZZ_CASES` sets the cases per reader (default [`DEFAULT_CASES`], which keeps this
//! file near a minute in CI); `SWEEP_FUZZ_SEED` changes the mutations. Binary formats are
//! mutated mostly in their headers (the safetensors JSON header, the pickle and the zip
//! directory of a `.pt`), where the parsing is, so each case stays fast on real-sized models.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, LazyLock, Once};
use std::thread;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde_json::Value;
use sweep::engine::checkpoint;
use sweep::engine::model::Gpt2Config;
use sweep::spec::experiment::{BEAM_KEYS, Experiment, GRID_KEYS, TOP_KEYS};

/// Cases per reader when `SWEEP_FUZZ_CASES` is not set.
const DEFAULT_CASES: usize = 5000;

/// A case that runs longer than this is a hang. The slowest honest case (the shipped 14 MB
/// model, loaded whole) takes well under a second in a release build.
const CASE_LIMIT: Duration = Duration::from_secs(10);

/// The main thread's stack in the real binary, so that a deep recursion that the binary
/// survives does not count as a crash here, and one it does not survive still does.
const WORKER_STACK: usize = 8 << 20;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> Vec<u8> {
    let path = root().join(relative);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn cases() -> usize {
    match std::env::var("SWEEP_FUZZ_CASES") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SWEEP_FUZZ_CASES = {v:?} is not a number of cases")),
        Err(_) => DEFAULT_CASES,
    }
}

fn base_seed() -> u64 {
    std::env::var("SWEEP_FUZZ_SEED")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(17)
}

// ---------------------------------------------------------------------------------------
// Cases and how they run.

/// What a case hands to which reader. Files are written into a fresh folder first.
#[derive(Clone)]
enum Call {
    /// `Experiment::from_str` on the text, as if read from `experiments/fuzz.toml` (relative
    /// paths in it resolve from the crate root, where the shipped data lives).
    Toml(String),
    /// `Experiment::load` on a file of the case folder.
    Experiment(&'static str),
    /// `checkpoint::read_config` on a file of the case folder.
    ReadConfig(&'static str),
    /// `checkpoint::load` on a path in the case folder (`""`: the folder itself).
    Load(&'static str),
    /// `checkpoint::load_with_config` on a path in the case folder, with an explicit config.
    LoadWithConfig(&'static str, Gpt2Config),
}

#[derive(Clone)]
struct Case {
    files: Vec<(&'static str, Vec<u8>)>,
    call: Call,
}

enum Outcome {
    Accepted,
    Rejected(String),
}

impl Case {
    fn run(&self, dir: &Path, device: &burn::tensor::Device) -> Outcome {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).expect("case folder");
        for (name, bytes) in &self.files {
            fs::write(dir.join(name), bytes).expect("case file");
        }
        let result: Result<(), String> = match &self.call {
            Call::Toml(text) => Experiment::from_str(text, Path::new("experiments/fuzz.toml"))
                .map(drop)
                .map_err(|e| e.to_string()),
            Call::Experiment(name) => Experiment::load(&dir.join(name))
                .map(drop)
                .map_err(|e| e.to_string()),
            Call::ReadConfig(name) => checkpoint::read_config(&dir.join(name))
                .map(drop)
                .map_err(|e| e.to_string()),
            Call::Load(name) => checkpoint::load(&dir.join(name), device)
                .map(drop)
                .map_err(|e| e.to_string()),
            Call::LoadWithConfig(name, config) => {
                checkpoint::load_with_config(&dir.join(name), Some(config.clone()), device)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        };
        match result {
            Ok(()) => Outcome::Accepted,
            Err(message) => {
                // An error must say something; an empty line helps nobody.
                assert!(!message.trim().is_empty(), "an error with an empty message");
                Outcome::Rejected(message.replace(&dir.display().to_string(), "<case>"))
            }
        }
    }
}

enum Verdict {
    Done(Outcome),
    Panicked(String),
}

type Job = Box<dyn FnOnce(&Path, &burn::tensor::Device) -> Outcome + Send>;

thread_local! {
    /// The last panic message of this thread, recorded by the hook installed in [`quiet_panics`].
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Panics on fuzz workers are expected and counted, so they are recorded instead of printed;
/// every other thread keeps the default report.
fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let on_worker = thread::current()
                .name()
                .is_some_and(|n| n.starts_with("fuzz-"));
            if on_worker {
                LAST_PANIC.with(|p| *p.borrow_mut() = info.to_string());
            } else {
                default(info);
            }
        }));
    });
}

/// A thread that runs cases one after another, each in a fresh folder. A worker stuck in a
/// case is abandoned (it cannot be stopped) and replaced.
struct Worker {
    jobs: mpsc::Sender<Job>,
    verdicts: mpsc::Receiver<Verdict>,
    _scratch: tempfile::TempDir,
}

impl Worker {
    fn spawn(reader: &str) -> Worker {
        let scratch = tempfile::tempdir().expect("scratch folder");
        let dir = scratch.path().join("case");
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (verdict_tx, verdicts) = mpsc::channel();
        thread::Builder::new()
            .name(format!("fuzz-{reader}"))
            .stack_size(WORKER_STACK)
            .spawn(move || {
                let device = sweep::engine::backend::device(None, None)
                    .expect("default backend")
                    .1;
                for job in job_rx {
                    let verdict = match panic::catch_unwind(AssertUnwindSafe(|| job(&dir, &device)))
                    {
                        Ok(outcome) => Verdict::Done(outcome),
                        Err(_) => Verdict::Panicked(LAST_PANIC.with(|p| p.borrow().clone())),
                    };
                    if verdict_tx.send(verdict).is_err() {
                        break;
                    }
                }
            })
            .expect("worker thread");
        Worker {
            jobs,
            verdicts,
            _scratch: scratch,
        }
    }
}

/// Counts of one reader's campaign, and the inputs that broke it.
struct Campaign {
    reader: &'static str,
    worker: Worker,
    started: Instant,
    inputs: usize,
    accepted: usize,
    rejected: usize,
    panics: Vec<String>,
    hangs: Vec<String>,
    /// The longest a case took, and which.
    slowest: (Duration, String),
    /// Rejections by the start of their message, digits elided, for `SWEEP_FUZZ_VERBOSE`.
    reasons: BTreeMap<String, usize>,
}

impl Campaign {
    fn new(reader: &'static str) -> Campaign {
        quiet_panics();
        Campaign {
            reader,
            worker: Worker::spawn(reader),
            started: Instant::now(),
            inputs: 0,
            accepted: 0,
            rejected: 0,
            panics: Vec::new(),
            hangs: Vec::new(),
            reasons: BTreeMap::new(),
            slowest: (Duration::ZERO, String::new()),
        }
    }

    fn run(&mut self, label: &str, case: Case) {
        self.inputs += 1;
        let case = Arc::new(case);
        let job_case = Arc::clone(&case);
        let job: Job = Box::new(move |dir, device| job_case.run(dir, device));
        if self.worker.jobs.send(job).is_err() {
            // The worker died outside `catch_unwind`: treat as a panic and start another.
            let saved = self.save(label, &case);
            self.panics
                .push(format!("{label}: the worker thread died; input in {saved}"));
            self.worker = Worker::spawn(self.reader);
            return;
        }
        let started = Instant::now();
        let verdict = self.worker.verdicts.recv_timeout(CASE_LIMIT);
        let took = started.elapsed();
        if took > self.slowest.0 {
            self.slowest = (took, label.to_string());
        }
        match verdict {
            Ok(Verdict::Done(Outcome::Accepted)) => self.accepted += 1,
            Ok(Verdict::Done(Outcome::Rejected(message))) => {
                self.rejected += 1;
                *self.reasons.entry(reason(&message)).or_default() += 1;
            }
            Ok(Verdict::Panicked(message)) => {
                let saved = self.save(label, &case);
                self.panics
                    .push(format!("{label}: {message}; input in {saved}"));
            }
            Err(RecvTimeoutError::Timeout) => {
                let saved = self.save(label, &case);
                self.hangs.push(format!(
                    "{label}: still running after {CASE_LIMIT:?}; input in {saved}"
                ));
                self.worker = Worker::spawn(self.reader);
            }
            Err(RecvTimeoutError::Disconnected) => {
                let saved = self.save(label, &case);
                self.panics
                    .push(format!("{label}: the worker thread died; input in {saved}"));
                self.worker = Worker::spawn(self.reader);
            }
        }
    }

    /// Writes the case's files where a failing run can be reproduced from.
    fn save(&self, label: &str, case: &Case) -> String {
        let safe: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("fuzz-failures")
            .join(format!("{}-{safe}", self.reader));
        let _ = fs::create_dir_all(&dir);
        for (name, bytes) in &case.files {
            let _ = fs::write(dir.join(name), bytes);
        }
        if let Call::Toml(text) = &case.call {
            let _ = fs::write(dir.join("experiment.toml"), text);
        }
        dir.display().to_string()
    }

    /// Prints the counts and fails on any panic or hang.
    fn finish(self) {
        let seconds = self.started.elapsed().as_secs_f64();
        println!(
            "fuzz {}: {} inputs, {} accepted, {} rejected, {} panics, {} hangs, {:.1} s \
             (slowest case {:.2} s: {})",
            self.reader,
            self.inputs,
            self.accepted,
            self.rejected,
            self.panics.len(),
            self.hangs.len(),
            seconds,
            self.slowest.0.as_secs_f64(),
            self.slowest.1
        );
        if std::env::var_os("SWEEP_FUZZ_VERBOSE").is_some() {
            let mut reasons: Vec<_> = self.reasons.iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(a.1));
            for (reason, count) in reasons.iter().take(40) {
                println!("  {count:>7}  {reason}");
            }
        }
        if self.panics.is_empty() && self.hangs.is_empty() {
            return;
        }
        let mut report = format!(
            "{}: {} panics and {} hangs in {} inputs\n",
            self.reader,
            self.panics.len(),
            self.hangs.len(),
            self.inputs
        );
        for line in self.panics.iter().chain(&self.hangs).take(20) {
            let _ = writeln!(report, "  {line}");
        }
        panic!("{report}");
    }
}

/// What kind of rejection a message is: its start, with numbers and quoted values elided.
fn reason(message: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in message.chars() {
        match c {
            '"' | '`' => {
                quoted = !quoted;
                out.push(c);
            }
            _ if quoted => {}
            '0'..='9' => {
                if !out.ends_with('#') {
                    out.push('#');
                }
            }
            _ => out.push(c),
        }
        if out.chars().count() >= 90 {
            break;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Mutations.

/// Numbers at the edges of what the readers parse: signed and unsigned limits, floats that
/// overflow or underflow, the special values, and spellings TOML or JSON may not allow.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "0.0",
    "-0.0",
    "1e308",
    "-1e308",
    "1e309",
    "1e-300",
    "5e-324",
    "3e-39",
    "nan",
    "-nan",
    "inf",
    "-inf",
    "+inf",
    "NaN",
    "Infinity",
    "2147483648",
    "4294967296",
    "100000000",
    "1e8",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "0x7fffffff",
    "0o777",
    "0b1",
    "1_000",
    "1.",
    ".5",
    "1e",
    "00",
];

const TOML_TOKENS: &[&str] = &[
    "[grid]\n",
    "[[grid]]\n",
    "[beam]\n",
    "[[beam]]\n",
    "\nname = \"x\"\n",
    "\nname = \"\"\n",
    "\nname = \"..\"\n",
    "\nsamples = 4\n",
    "\nbaseline = 4\n",
    "\nmax_new_tokens = 3\n",
    "\ntemperature = [0.0, 0.5, 0.5]\n",
    "\ntop_k = -1\n",
    "\ntop_p = 0\n",
    "\nseed = [1, 2]\n",
    "\nnum_beams = [4, 8]\n",
    "\nlength_penalty = nan\n",
    "\nearly_stopping = \"never\"\n",
    "\nnum_return_sequences = 9\n",
    "\nprompts = []\n",
    "\nprompts = [\"\"]\n",
    "\nprompts_file = \"data/heldout.jsonl\"\n",
    "\nprompts_file = \"\"\n",
    "\nprompts_file = \"/\"\n",
    "\nmodel = \"models/shakespeare\"\n",
    "\ngrid = []\n",
    "\ngrid = [{}]\n",
    "\ngrid = 1\n",
    "\nbeam = {num_beams = 2}\n",
    "\na.b.c = 1\n",
    "[",
    "]",
    "{",
    "}",
    "[[",
    "]]",
    "=",
    ",",
    ".",
    "\"",
    "'",
    "\"\"\"",
    "'''",
    "\n",
    "\r\n",
    "\r",
    "#",
    "\t",
    "\0",
    "\\",
    "\\u0000",
    "\\U0010FFFF",
    "\\ud800",
    "é",
    "✓",
    "😀",
    "\u{feff}",
    "\u{202e}",
    "true",
    "false",
    "\"never\"",
    "1979-05-27T07:32:00Z",
    "07:32:00",
];

const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "\n",
    "\r",
    "null",
    "true",
    "false",
    "\"prompt\"",
    "\"reference\"",
    "\"prompt\": \"\"",
    "\"prompt\": 5",
    "\"prompt\": null",
    "\"reference\": null",
    "\"reference\": \"\"",
    "\"reference\": [\"a\"]",
    "\"prompt\": \"a\", \"prompt\": \"b\"",
    "\"n_layer\": 2",
    "\"n_embd\": 0",
    "\"n_head\": 3",
    "\"vocab_size\": 1",
    "\"n_positions\": null",
    "\"n_ctx\": 64",
    "\"layer_norm_epsilon\": -1",
    "\"eos_token_id\": 4294967296",
    "\"activation_function\": \"relu\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\udfff\\ud800\"",
    "\\",
    "\\u",
    "\0",
    "é",
    "😀",
    "\u{feff}",
    "\\n",
    "\\\\",
];

/// Tokens a `.txt` prompts file treats specially (escapes, blank lines) or that are rare.
const TEXT_TOKENS: &[&str] = &[
    "\n",
    "\n\n",
    "\r\n",
    " ",
    "\t",
    "\\n",
    "\\\\",
    "\\",
    "\\x",
    "\0",
    "é",
    "😀",
    "\u{feff}",
    "\u{202e}",
    "<|endoftext|>",
    "<|endoftext",
    "|>",
];

struct Mutator {
    rng: ChaCha8Rng,
}

impl Mutator {
    fn new(reader: &str) -> Mutator {
        let tag = reader
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        Mutator {
            rng: ChaCha8Rng::seed_from_u64(base_seed() ^ tag),
        }
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.rng.next_u64() % n as u64) as usize
        }
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }

    /// A length, mostly small, sometimes large: 1..=8 half the time, up to 64 or 4096 else.
    fn length(&mut self) -> usize {
        match self.below(8) {
            0..=3 => 1 + self.below(8),
            4..=6 => 1 + self.below(64),
            _ => 1 + self.below(4096),
        }
    }

    /// A length for a long run: 1,000 to 1,000,000, log-uniform.
    fn long(&mut self) -> usize {
        let exponent = 3.0 + 3.0 * (self.below(1001) as f64 / 1000.0);
        10f64.powf(exponent) as usize
    }

    /// A position in `0..=len`, inside one of `focus` most of the time.
    fn position(&mut self, len: usize, focus: &[Range<usize>]) -> usize {
        if !focus.is_empty() && self.chance(90) {
            let range = self.pick(focus);
            let start = range.start.min(len);
            let end = range.end.min(len);
            if end > start {
                return start + self.below(end - start + 1);
            }
        }
        self.below(len + 1)
    }

    /// `seed` after one to four random edits.
    fn mutate(
        &mut self,
        seed: &[u8],
        others: &[Vec<u8>],
        tokens: &[&str],
        focus: &[Range<usize>],
    ) -> Vec<u8> {
        let mut data = seed.to_vec();
        let rounds = 1 + self.below(2) + self.below(2) + self.below(2);
        for _ in 0..rounds {
            self.edit(&mut data, others, tokens, focus);
        }
        data
    }

    fn edit(
        &mut self,
        data: &mut Vec<u8>,
        others: &[Vec<u8>],
        tokens: &[&str],
        focus: &[Range<usize>],
    ) {
        let len = data.len();
        let at = self.position(len, focus);
        match self.below(14) {
            // A bit flip.
            0 if len > 0 => {
                let i = at.min(len - 1);
                data[i] ^= 1 << self.below(8);
            }
            // A byte that means something to a parser.
            1 if len > 0 => {
                let i = at.min(len - 1);
                data[i] = self.pick(b"\0\x01\x7f\x80\xff\"'[]{}=,:.\n\\#0-9eE");
            }
            // A random byte.
            2 if len > 0 => {
                let i = at.min(len - 1);
                data[i] = self.rng.next_u64() as u8;
            }
            // Delete a range.
            3 => {
                let end = (at + self.length()).min(len);
                data.drain(at..end);
            }
            // Copy a range of the input somewhere else in it.
            4 if len > 0 => {
                let from = self.below(len);
                let end = (from + self.length()).min(len);
                let chunk = data[from..end].to_vec();
                data.splice(at..at, chunk);
            }
            // Truncate.
            5 => data.truncate(at),
            // Insert a token of the format.
            6 | 7 => {
                let token = self.pick(tokens).as_bytes().to_vec();
                data.splice(at..at, token);
            }
            // Splice with another seed: this input's head, the other's tail or middle.
            8 if !others.is_empty() => {
                let other = self.pick(others);
                let from = self.below(other.len() + 1);
                if self.chance(50) {
                    data.truncate(at);
                    data.extend_from_slice(&other[from..]);
                } else {
                    let end = (from + self.length()).min(other.len());
                    data.splice(at..at, other[from..end].iter().copied());
                }
            }
            // Replace the number at or after the position with an edge value.
            9 => {
                let number = self.pick(NUMBERS).as_bytes().to_vec();
                let start = (at..len).find(|&i| data[i].is_ascii_digit()).unwrap_or(at);
                let end = (start..len)
                    .find(|&i| !(data[i].is_ascii_digit() || b".eE+-_".contains(&data[i])))
                    .unwrap_or(len);
                data.splice(start..end, number);
            }
            // Repeat the line the position is in: duplicate keys, duplicate prompts.
            10 => {
                let start = data[..at]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                let end = data[at..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(len, |i| at + i + 1);
                let line = data[start..end].to_vec();
                data.splice(end..end, line);
            }
            // A long run without whitespace.
            11 => {
                let unit: &[u8] =
                    self.pick(&[&b"a"[..], b"9", b"\xc3\xa9", b"\\", b"\"", b"-", b"ab"]);
                let run = unit.repeat(self.long() / unit.len());
                data.splice(at..at, run);
            }
            // Deep nesting.
            12 => {
                let open: &[u8] = self.pick(&[&b"["[..], b"{", b"{\"a\":", b"[[", b"a={", b"x=["]);
                let depth = match self.below(3) {
                    0 => 64 + self.below(128),
                    1 => 1000,
                    _ => 100_000,
                };
                data.splice(at..at, open.repeat(depth));
            }
            // A long list of distinct numbers, to catch work that grows with its square.
            13 => {
                let n = match self.below(3) {
                    0 => 1000,
                    1 => 20_000,
                    _ => 100_000,
                };
                let mut list = String::from("[");
                for i in 0..n {
                    let _ = write!(list, "{}{i}", if i == 0 { "" } else { "," });
                }
                list.push(']');
                data.splice(at..at, list.into_bytes());
            }
            // Arms whose guard failed (empty input): grow it instead.
            _ => {
                let token = self.pick(tokens).as_bytes().to_vec();
                data.splice(at..at, token);
            }
        }
    }
}

/// A valid JSON value at the edges of what a config field may hold.
fn edge_value(m: &mut Mutator) -> Value {
    let numbers = [
        "0",
        "1",
        "-1",
        "3",
        "63",
        "2147483648",
        "4294967296",
        "9007199254740993",
        "9223372036854775807",
        "18446744073709551615",
        "1e308",
        "-0.0",
        "0.5",
        "1e-300",
    ];
    match m.below(6) {
        0..=2 => serde_json::from_str(m.pick(&numbers)).expect("a JSON number"),
        3 => Value::Null,
        4 => Value::String(
            m.pick(&["", "relu", "gelu", "x".repeat(10_000).as_str()])
                .to_owned(),
        ),
        _ => serde_json::json!([1, {"a": null}]),
    }
}

// ---------------------------------------------------------------------------------------
// Seeds.

/// The experiments that ship, and a few that use every key and both grid forms.
fn toml_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = fs::read_dir(root().join("experiments"))
        .expect("experiments/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| fs::read(p).expect("experiment"))
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 4, "the shipped experiments are the seeds");
    let extra = [
        "name = \"all\"\nmodel = \"models/shakespeare\"\nprompts = [\"ROMEO:\", \"JULIET:\"]\n\
         max_new_tokens = 8\nsamples = 2\nbatch_size = 4\nbaseline = 2\n\
         [grid]\ntemperature = [0.0, 0.7]\ntop_k = [0, 40]\ntop_p = [0.9, 1.0]\nseed = [1, 2]\n\
         [beam]\nnum_beams = [2, 4]\nlength_penalty = [0.5, 1.0]\nearly_stopping = \"never\"\n\
         num_return_sequences = 2\n",
        "prompts = [\"a\"]\nmax_new_tokens = 4\nsamples = 1\n\
         [[grid]]\ntemperature = 0.7\ntop_k = 50\n[[grid]]\ntemperature = 1.0\ntop_p = 0.95\n",
        "prompts_file = \"data/heldout.jsonl\"\nmax_new_tokens = 2\n\
         grid = [{temperature = [0.0]}, {temperature = 1, seed = [3]}]\nsamples = 1\n\
         beam = {num_beams = 1, early_stopping = true}\n",
    ];
    seeds.extend(extra.iter().map(|s| s.as_bytes().to_vec()));
    seeds
}

/// Lines of the shipped held-out text as `.txt` prompts files, and the shipped JSON lines.
fn text_seeds() -> Vec<Vec<u8>> {
    let text = read("data/shakespeare/heldout.txt");
    let mut seeds = Vec::new();
    for start in [0, text.len() / 3, text.len() / 2, text.len() - 3000] {
        // Whole lines of about 2 kB from `start`.
        let from = text[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(start, |i| start + i + 1);
        let to = (from + 2000).min(text.len());
        let to = text[to..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(text.len(), |i| to + i + 1);
        seeds.push(text[from..to].to_vec());
    }
    seeds.push(b"ROMEO:\nJULIET:\\nO Romeo\n\n  \nC:\\\\path\\n\n".to_vec());
    seeds
}

fn jsonl_seeds() -> Vec<Vec<u8>> {
    let all = read("data/heldout.jsonl");
    let lines: Vec<&[u8]> = all
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut seeds = vec![all.clone()];
    seeds.push(lines[..3].join(&b'\n'));
    seeds.push(lines[lines.len() - 2..].join(&b'\n'));
    seeds.push(
        b"{\"prompt\": \"ROMEO:\", \"reference\": \"But soft!\", \"id\": 1}\n\n\
          {\"prompt\": \"JULIET:\\n\", \"reference\": null}\n{\"prompt\": \"\\u00e9\\ud83d\\ude00\"}\n"
            .to_vec(),
    );
    seeds
}

/// A model folder as files: `config.json` and the weights, under fixed names.
struct ModelSeed {
    config: Vec<u8>,
    weights: Vec<u8>,
}

fn safetensors_seeds() -> Vec<ModelSeed> {
    [
        "tests/fixtures/tiny-hf",
        "tests/fixtures/tiny-bf16",
        "tests/fixtures/tiny-bare-f16",
        "models/shakespeare",
    ]
    .iter()
    .map(|dir| ModelSeed {
        config: read(&format!("{dir}/config.json")),
        weights: read(&format!("{dir}/model.safetensors")),
    })
    .collect()
}

/// The byte range of a safetensors file's length prefix and JSON header.
fn safetensors_header(bytes: &[u8]) -> Range<usize> {
    let n = bytes
        .get(..8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    0..(8 + n as usize).min(bytes.len())
}

// ---------------------------------------------------------------------------------------
// Structure-aware mutations: edits that keep a file parseable at its outer layer, so the
// inner checks (shapes, dtypes, offsets, config fields) see the odd values.

/// A safetensors file with one entry of its JSON header changed and the length prefix kept
/// right; `None` when the header does not parse (then plain byte edits apply).
fn mutate_safetensors_header(m: &mut Mutator, bytes: &[u8]) -> Option<Vec<u8>> {
    let header = safetensors_header(bytes);
    let mut json: serde_json::Map<String, Value> =
        serde_json::from_slice(bytes.get(8..header.end)?).ok()?;
    let names: Vec<String> = json
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    let name = m.pick(&names);
    let mut entry = json.get(&name)?.clone();
    match m.below(11) {
        0 => {
            let dtype = m.pick(&[
                "F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "f32", "",
            ]);
            entry["dtype"] = dtype.into();
        }
        // A dtype of the same width, so the sizes still agree and the file parses.
        9 => {
            let same_width: &[&str] = match entry["dtype"].as_str()? {
                "F32" => &["I32", "U32", "F32"],
                _ => &["F16", "BF16", "I16", "U16"],
            };
            entry["dtype"] = m.pick(same_width).into();
        }
        // The same elements in another shape: dimensions swapped, flattened or split, so
        // the file parses and only the config can tell.
        10 => {
            let shape: Vec<u64> = entry["shape"]
                .as_array()?
                .iter()
                .map(Value::as_u64)
                .collect::<Option<_>>()?;
            let count: u64 = shape.iter().product();
            let reshaped = match m.below(4) {
                0 => shape.iter().rev().copied().collect(),
                1 => vec![count],
                2 if count.is_multiple_of(2) => vec![2, count / 2],
                _ => [&[1u64][..], &shape].concat(),
            };
            entry["shape"] = reshaped.into();
        }
        1 | 2 => {
            let shape = entry["shape"].as_array_mut()?;
            let dim = m.below(shape.len() + 1);
            let value: u64 = m.pick(&[0, 1, 2, 3, 63, 65, 4096, 1 << 32, 1 << 62, u64::MAX]);
            match m.below(3) {
                0 if dim < shape.len() => shape[dim] = value.into(),
                1 => shape.insert(dim, value.into()),
                _ if !shape.is_empty() => {
                    shape.remove(dim.min(shape.len() - 1));
                }
                _ => shape.push(value.into()),
            }
        }
        3 => {
            let offsets = entry["data_offsets"].as_array_mut()?;
            let i = m
                .below(offsets.len().max(1))
                .min(offsets.len().saturating_sub(1));
            let old = offsets.get(i)?.as_u64()?;
            let new = match m.below(5) {
                0 => 0,
                1 => old.wrapping_add(1),
                2 => old.saturating_sub(4),
                3 => u64::MAX,
                _ => old.wrapping_add(1 << 20),
            };
            offsets[i] = new.into();
        }
        4 => {
            // Another name for the tensor: a wrapper prefix, a layer that does not exist, the
            // untied head, a mask buffer.
            let renamed = match m.below(6) {
                0 => format!("transformer.{name}"),
                1 => format!("_orig_mod.module.{name}"),
                2 => name.replace(".0.", ".99."),
                3 => "lm_head.weight".to_string(),
                4 => "h.0.attn.bias".to_string(),
                _ => name.trim_start_matches("transformer.").to_string(),
            };
            json.remove(&name);
            json.insert(renamed, entry);
            return Some(rebuild_safetensors(bytes, header.end, &json));
        }
        5 => {
            json.remove(&name);
            return Some(rebuild_safetensors(bytes, header.end, &json));
        }
        6 => {
            json.insert(format!("{name}.copy"), entry.clone());
        }
        7 => {
            json.insert(
                "__metadata__".into(),
                serde_json::json!({"format": edge_value(m)}),
            );
        }
        _ => entry = edge_value(m),
    }
    json.insert(name, entry);
    Some(rebuild_safetensors(bytes, header.end, &json))
}

fn rebuild_safetensors(
    bytes: &[u8],
    data_start: usize,
    header: &serde_json::Map<String, Value>,
) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("header JSON");
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[data_start..]);
    out
}

/// A config with one field set to an edge value, removed, or added.
fn mutate_config_fields(m: &mut Mutator, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut json: serde_json::Map<String, Value> = serde_json::from_slice(bytes).ok()?;
    let keys = [
        "vocab_size",
        "n_positions",
        "n_ctx",
        "n_embd",
        "n_layer",
        "n_head",
        "layer_norm_epsilon",
        "eos_token_id",
        "activation_function",
        "scale_attn_weights",
        "tie_word_embeddings",
    ];
    let key = m.pick(&keys).to_string();
    match m.below(4) {
        0 => {
            json.remove(&key);
        }
        1 => {
            // A small change, the likeliest honest mistake: one more or one less.
            let old = json.get(&key).and_then(Value::as_u64).unwrap_or(1);
            let new = if m.chance(50) {
                old + 1
            } else {
                old.saturating_sub(1)
            };
            json.insert(key, new.into());
        }
        _ => {
            json.insert(key, edge_value(m));
        }
    }
    Some(serde_json::to_vec_pretty(&json).expect("config JSON"))
}

/// A TOML value at the edges of what an experiment key may hold.
fn edge_toml(m: &mut Mutator) -> toml::Value {
    use toml::Value as T;
    let scalar = |m: &mut Mutator| -> T {
        match m.below(4) {
            0 => T::Integer(m.pick(&[
                0,
                1,
                -1,
                2,
                4,
                1 << 31,
                1 << 32,
                1 << 53,
                i64::MAX,
                i64::MIN,
            ])),
            1 => T::Float(m.pick(&[
                0.0,
                -0.0,
                0.5,
                1.0,
                1.5,
                3e-39,
                1e-300,
                5e-324,
                1e308,
                f64::MAX,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NAN,
            ])),
            2 => T::String(m.pick(&[
                String::new(),
                " ".into(),
                ".".into(),
                "..".into(),
                "/".into(),
                "a/b".into(),
                "\0".into(),
                "é😀\u{202e}".into(),
                "never".into(),
                "data/heldout.jsonl".into(),
                "models/shakespeare".into(),
                "tests/fixtures/tiny-hf".into(),
                "x".repeat(100_000),
            ])),
            _ => T::Boolean(m.chance(50)),
        }
    };
    match m.below(8) {
        0..=3 => scalar(m),
        4 => {
            let v = scalar(m);
            T::Array(vec![v.clone(), v])
        }
        5 => {
            let n = m.pick(&[0, 1, 3, 1000, 100_000]);
            T::Array((0..n).map(|i| T::Integer(i as i64)).collect())
        }
        6 => T::Array(vec![scalar(m), scalar(m), T::Array(vec![scalar(m)])]),
        _ => {
            let mut table = toml::Table::new();
            table.insert(m.pick(&GRID_AND_BEAM_KEYS).into(), scalar(m));
            if m.chance(50) {
                T::Array(vec![T::Table(table.clone()), T::Table(table)])
            } else {
                T::Table(table)
            }
        }
    }
}

/// Every key of `[grid]` and `[beam]`: either table gets either kind, so some cases are
/// unknown keys.
static GRID_AND_BEAM_KEYS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| GRID_KEYS.iter().chain(BEAM_KEYS).copied().collect());

/// An experiment with one key, at the top or inside a `[grid]` or `[beam]` table, set to an
/// edge value or removed, written back as TOML; `None` when the seed does not parse.
fn mutate_toml_keys(m: &mut Mutator, seed: &[u8]) -> Option<String> {
    let mut table: toml::Table = std::str::from_utf8(seed).ok()?.parse().ok()?;
    let sub = m.pick(&["", "grid", "beam"]);
    let in_sub = matches!(
        table.get(sub),
        Some(toml::Value::Table(_) | toml::Value::Array(_))
    );
    let (target, keys) = match table.get_mut(sub) {
        Some(toml::Value::Table(t)) => (t, &GRID_AND_BEAM_KEYS[..]),
        Some(toml::Value::Array(a)) if !a.is_empty() => {
            let i = m.below(a.len());
            (a[i].as_table_mut()?, &GRID_AND_BEAM_KEYS[..])
        }
        _ => (&mut table, TOP_KEYS),
    };
    let _ = in_sub;
    let key = m.pick(keys);
    if m.chance(15) {
        target.remove(key);
    } else {
        let value = edge_toml(m);
        target.insert(key.into(), value);
    }
    toml::to_string(&table).ok()
}

/// The byte ranges of a `.pt` zip worth mutating: the pickle (first entry) and the central
/// directory at the end.
fn pt_focus(bytes: &[u8]) -> Vec<Range<usize>> {
    let find = |sig: &[u8], from: usize| {
        bytes[from..]
            .windows(sig.len())
            .position(|w| w == sig)
            .map(|i| from + i)
    };
    let second_entry = find(b"PK\x03\x04", 4).unwrap_or(bytes.len());
    let directory = find(b"PK\x01\x02", 0).unwrap_or(bytes.len());
    vec![0..second_entry, directory..bytes.len()]
}

/// CRC-32 (IEEE), as zip stores it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Rewrites the checksum of a `.pt`'s first entry (the pickle) after an edit of the same
/// length, in the central directory and the data descriptor, so that the edit reaches the
/// unpickler instead of stopping at the checksum. Leaves the file as is when its layout does
/// not parse.
fn fix_pickle_crc(bytes: &mut [u8]) -> Option<()> {
    let u16_at = |b: &[u8], i: usize| -> Option<usize> {
        Some(usize::from(u16::from_le_bytes(
            b.get(i..i + 2)?.try_into().ok()?,
        )))
    };
    let u32_at = |b: &[u8], i: usize| -> Option<usize> {
        Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?) as usize)
    };
    let directory = bytes.windows(4).position(|w| w == b"PK\x01\x02")?;
    let size = u32_at(bytes, directory + 20)?;
    let local = u32_at(bytes, directory + 42)?;
    let start = local + 30 + u16_at(bytes, local + 26)? + u16_at(bytes, local + 28)?;
    let crc = crc32(bytes.get(start..start + size)?).to_le_bytes();
    bytes
        .get_mut(directory + 16..directory + 20)?
        .copy_from_slice(&crc);
    let descriptor = start + size;
    if bytes.get(descriptor..descriptor + 4) == Some(b"PK\x07\x08") {
        bytes
            .get_mut(descriptor + 4..descriptor + 8)?
            .copy_from_slice(&crc);
    } else if let Some(slot) = bytes.get_mut(descriptor..descriptor + 4) {
        slot.copy_from_slice(&crc);
    }
    Some(())
}

/// Same-length edits of a `.pt`'s pickle: the integers (shapes, strides, offsets, sizes) and
/// the opcodes that build tuples, lists and dicts.
fn mutate_pickle(m: &mut Mutator, bytes: &[u8], pickle: Range<usize>) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..1 + m.below(3) {
        let at = pickle.start + m.below(pickle.len().max(1));
        if m.chance(60) {
            // The next integer opcode at or after `at`, given an edge value of its width.
            let Some(i) = (at..pickle.end).find(|&i| matches!(out[i], b'K' | b'M' | b'J')) else {
                continue;
            };
            let width = match out[i] {
                b'K' => 1,
                b'M' => 2,
                _ => 4,
            };
            let value: u32 = m.pick(&[
                0,
                1,
                2,
                63,
                64,
                65,
                255,
                511,
                512,
                0xffff,
                0x7fff_ffff,
                0xffff_ffff,
            ]);
            let end = (i + 1 + width).min(out.len());
            let le = value.to_le_bytes();
            out[i + 1..end].copy_from_slice(&le[..end - i - 1]);
        } else if at < out.len() {
            out[at] = m.pick(b")(t0N]}eusRbhq\x85\x86\x87.");
        }
    }
    let _ = fix_pickle_crc(&mut out);
    out
}

// ---------------------------------------------------------------------------------------
// The campaigns.

#[test]
fn fuzz_experiment_toml() {
    let seeds = toml_seeds();
    let mut m = Mutator::new("toml");
    let mut campaign = Campaign::new("toml");
    for (label, text) in fixed_toml() {
        campaign.run(
            label,
            Case {
                files: Vec::new(),
                call: Call::Toml(text),
            },
        );
    }
    for i in 0..cases() {
        let seed = m.pick(&seeds);
        let text = match m.chance(50).then(|| mutate_toml_keys(&mut m, &seed)) {
            Some(Some(text)) => text,
            _ => {
                let bytes = m.mutate(&seed, &seeds, TOML_TOKENS, &[]);
                String::from_utf8_lossy(&bytes).into_owned()
            }
        };
        campaign.run(
            &format!("case-{i}"),
            Case {
                files: Vec::new(),
                call: Call::Toml(text),
            },
        );
    }
    campaign.finish();
}

/// Inputs that once broke the experiment reader, kept as fixed cases.
fn fixed_toml() -> Vec<(&'static str, String)> {
    let list = |n: usize| {
        let values: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        values.join(",")
    };
    let head = "prompts = [\"a\"]\nmax_new_tokens = 3\nsamples = 1\n";
    vec![
        (
            "temperature-list-300000",
            format!("{head}[grid]\ntemperature = [{}]\n", list(300_000)),
        ),
        (
            "seed-list-300000",
            format!("{head}[grid]\nseed = [{}]\n", list(300_000)),
        ),
    ]
}

/// An experiment file naming the prompts file of the case.
fn prompts_case(file: &'static str, bytes: Vec<u8>) -> Case {
    let toml = format!("prompts_file = \"{file}\"\nmax_new_tokens = 3\n[beam]\nnum_beams = 1\n");
    Case {
        files: vec![("experiment.toml", toml.into_bytes()), (file, bytes)],
        call: Call::Experiment("experiment.toml"),
    }
}

#[test]
fn fuzz_prompts_txt() {
    let seeds = text_seeds();
    let mut m = Mutator::new("prompts-txt");
    let mut campaign = Campaign::new("prompts-txt");
    for i in 0..cases() {
        let seed = m.pick(&seeds);
        let bytes = m.mutate(&seed, &seeds, TEXT_TOKENS, &[]);
        campaign.run(&format!("case-{i}"), prompts_case("prompts.txt", bytes));
    }
    campaign.finish();
}

#[test]
fn fuzz_prompts_jsonl() {
    let seeds = jsonl_seeds();
    let mut m = Mutator::new("prompts-jsonl");
    let mut campaign = Campaign::new("prompts-jsonl");
    for i in 0..cases() {
        let seed = m.pick(&seeds);
        let bytes = m.mutate(&seed, &seeds, JSON_TOKENS, &[]);
        campaign.run(&format!("case-{i}"), prompts_case("prompts.jsonl", bytes));
    }
    campaign.finish();
}

/// `config.json` alone (`read_config`), and beside the weights it describes (`load`).
#[test]
fn fuzz_model_config() {
    let models = safetensors_seeds();
    let configs: Vec<Vec<u8>> = models
        .iter()
        .map(|s| s.config.clone())
        .chain([read("tests/fixtures/nanogpt-sd/config.json")])
        .collect();
    let mut m = Mutator::new("config");
    let mut campaign = Campaign::new("config");
    for (label, config) in fixed_configs(&models[0].config) {
        let case = Case {
            files: vec![
                ("config.json", config),
                ("model.safetensors", models[0].weights.clone()),
            ],
            call: Call::Load(""),
        };
        campaign.run(label, case);
    }
    for i in 0..cases() {
        // The tiny models mostly; the shipped one, 14 MB, one case in fifty.
        let which = if m.chance(2) { 3 } else { m.below(3) };
        let seed = &models[which];
        let config = if m.chance(50) {
            mutate_config_fields(&mut m, &seed.config).unwrap_or_else(|| seed.config.clone())
        } else {
            m.mutate(&seed.config, &configs, JSON_TOKENS, &[])
        };
        let case = if m.chance(70) {
            Case {
                files: vec![("config.json", config)],
                call: Call::ReadConfig("config.json"),
            }
        } else {
            Case {
                files: vec![
                    ("config.json", config),
                    ("model.safetensors", seed.weights.clone()),
                ],
                call: Call::Load(""),
            }
        };
        campaign.run(&format!("case-{i}"), case);
    }
    campaign.finish();
}

/// Configs that once broke the loader, kept as fixed cases beside tiny-hf's weights.
fn fixed_configs(config: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let with_layers = |n: &str| {
        let mut json: Value = serde_json::from_slice(config).expect("tiny-hf config");
        json["n_layer"] = serde_json::from_str(n).expect("a number");
        serde_json::to_vec(&json).expect("config JSON")
    };
    vec![
        // More layers than memory can hold even as empty slots: a capacity overflow panic.
        ("n-layer-u64-max", with_layers("18446744073709551615")),
        ("n-layer-2e62", with_layers("4611686018427387904")),
        // Slots for 1e8 layers, reserved before any tensor was checked, aborted the process.
        ("n-layer-1e8", with_layers("100000000")),
    ]
}

#[test]
fn fuzz_safetensors() {
    let models = safetensors_seeds();
    let all_weights: Vec<Vec<u8>> = models
        .iter()
        .filter(|s| s.weights.len() < 1 << 20)
        .map(|s| s.weights.clone())
        .collect();
    let mut m = Mutator::new("safetensors");
    let mut campaign = Campaign::new("safetensors");
    for i in 0..cases() {
        let which = if m.chance(2) { 3 } else { m.below(3) };
        let seed = &models[which];
        let weights = if m.chance(50) {
            mutate_safetensors_header(&mut m, &seed.weights).unwrap_or_else(|| seed.weights.clone())
        } else {
            let header = safetensors_header(&seed.weights);
            m.mutate(&seed.weights, &all_weights, JSON_TOKENS, &[header])
        };
        // Beside its config, or as a bare file with the config given by the caller.
        let case = if m.chance(80) {
            Case {
                files: vec![
                    ("config.json", seed.config.clone()),
                    ("model.safetensors", weights),
                ],
                call: Call::Load(""),
            }
        } else {
            let config: Gpt2Config =
                serde_json::from_slice(&seed.config).expect("the seed config loads");
            Case {
                files: vec![("weights.safetensors", weights)],
                call: Call::LoadWithConfig("weights.safetensors", config),
            }
        };
        campaign.run(&format!("case-{i}"), case);
    }
    campaign.finish();
}

#[test]
fn fuzz_pytorch() {
    // nanoGPT's ckpt.pt (config in `model_args`) and a bare state dict beside a config.json.
    let ckpt = read("tests/fixtures/nanogpt/ckpt.pt");
    let state_dict = read("tests/fixtures/nanogpt-sd/model.pt");
    let sd_config = read("tests/fixtures/nanogpt-sd/config.json");
    let seeds = [ckpt.clone(), state_dict.clone()];
    let mut m = Mutator::new("pytorch");
    let mut campaign = Campaign::new("pytorch");
    for (label, bytes) in fixed_pytorch(&ckpt) {
        campaign.run(
            label,
            Case {
                files: vec![("ckpt.pt", bytes)],
                call: Call::Load("ckpt.pt"),
            },
        );
    }
    for i in 0..cases() {
        let bare = m.chance(50);
        let seed = if bare { &state_dict } else { &ckpt };
        let focus = pt_focus(seed);
        let bytes = if m.chance(60) {
            mutate_pickle(&mut m, seed, focus[0].clone())
        } else {
            m.mutate(seed, &seeds, JSON_TOKENS, &focus)
        };
        let case = if bare {
            if m.chance(80) {
                Case {
                    files: vec![("config.json", sd_config.clone()), ("model.pt", bytes)],
                    call: Call::Load("model.pt"),
                }
            } else {
                let config: Gpt2Config = serde_json::from_slice(&sd_config).expect("config");
                Case {
                    files: vec![("model.pt", bytes)],
                    call: Call::LoadWithConfig("model.pt", config),
                }
            }
        } else {
            Case {
                files: vec![("ckpt.pt", bytes)],
                call: Call::Load("ckpt.pt"),
            }
        };
        campaign.run(&format!("case-{i}"), case);
    }
    campaign.finish();
}

/// Checkpoints that once broke the `.pt` reader, kept as fixed cases.
fn fixed_pytorch(ckpt: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    // `wte.weight` stored as a scalar: its shape tuple (512, 64), pickled as
    // `M\x00\x02 K@ \x86`, replaced by an empty tuple of the same length (`N0N0(t`: None
    // pushed and popped twice, then an empty tuple).
    let mut scalar_wte = ckpt.to_vec();
    let key = b"wte.weight";
    let at = scalar_wte
        .windows(key.len())
        .position(|w| w == key)
        .expect("ckpt.pt names wte.weight");
    let shape = b"M\x00\x02K@\x86";
    let offset = at
        + scalar_wte[at..]
            .windows(shape.len())
            .position(|w| w == shape)
            .expect("the shape of wte.weight");
    scalar_wte[offset..offset + shape.len()].copy_from_slice(b"N0N0(t");
    // Its stride (64, 1), `K@ K\x01 \x86` right after the memo `q\n`, is emptied too.
    let stride = offset + shape.len() + 2;
    assert_eq!(&scalar_wte[stride..stride + 5], b"K@K\x01\x86");
    scalar_wte[stride..stride + 5].copy_from_slice(b"N0N0)");
    fix_pickle_crc(&mut scalar_wte).expect("the zip layout of ckpt.pt");
    vec![("scalar-wte", scalar_wte)]
}
