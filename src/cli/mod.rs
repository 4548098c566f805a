//! Command-line arguments (clap) and what each command does with them.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use sweep::engine::backend;
use sweep::engine::checkpoint;
use sweep::engine::generate::{Generator, Row};
use sweep::engine::sampling::{SamplingParams, sample_rng};
use sweep::engine::tokenizer::{TextStream, Tokenizer};
use sweep::run::runner;
use sweep::spec::experiment::Experiment;
use sweep::spec::grid::Strategy;
use sweep::util::exit::{Exit, ExitStatus};

/// Sweep decoding settings of a GPT-2-architecture model and measure what they change.
/// The version, with the backends this binary was built with (`--backend` picks among them).
const VERSION: &str = if cfg!(feature = "tch") && cfg!(feature = "flex") {
    concat!(env!("CARGO_PKG_VERSION"), " (backends: flex, tch)")
} else if cfg!(feature = "tch") {
    concat!(env!("CARGO_PKG_VERSION"), " (backends: tch)")
} else {
    concat!(env!("CARGO_PKG_VERSION"), " (backends: flex)")
};

#[derive(Parser, Debug)]
#[command(
    name = "sweep",
    version = VERSION,
    about,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  \
        sweep experiments/temps.toml            run an experiment (= sweep run experiments/temps.toml)\n  \
        sweep validate experiments/temps.toml   check it first: grid size and tokens to generate\n  \
        sweep generate --prompt \"ROMEO.\\n\" --temperature 0.8 --top-k 50"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run an experiment TOML: every grid setting and beam baseline, scored, written as CSV.
    ///
    /// Results go to results/<name>/ (summary.csv, samples.csv, run.json). Running the same
    /// experiment again resumes: finished settings are not recomputed.
    ///
    /// Example: sweep run experiments/temps.toml --out results/temps-try2
    Run(RunArgs),
    /// Check an experiment TOML and print its grid size and how many tokens it will generate.
    ///
    /// Example: sweep validate experiments/temps.toml
    Validate {
        /// The experiment TOML.
        experiment: PathBuf,
    },
    /// Print one continuation of a prompt, streaming tokens as they come.
    ///
    /// Example: sweep generate --prompt "ROMEO.\n" --temperature 0.8 --top-k 50 --top-p 0.9
    #[command(allow_negative_numbers = true)]
    Generate(GenerateArgs),
    /// Train a GPT-2-architecture model on a text corpus (default: the shipped Shakespeare
    /// split), writing a Hugging Face GPT-2 folder that every command can load.
    ///
    /// Resumes from the last checkpoint in --out when run again with the same options.
    ///
    /// Example: sweep train --out runs/tiny --n-layer 2 --n-embd 64 --steps 200
    #[command(allow_negative_numbers = true)]
    Train(TrainArgs),
    /// Perplexity of a model on a text file: non-overlapping windows of the model's context,
    /// every token after the first of a window predicted. The model card's figure.
    ///
    /// Example: sweep eval --data data/shakespeare/valid.txt --max-tokens 16384
    #[command(allow_negative_numbers = true)]
    Eval(EvalArgs),
    /// Tokens per second of batch-1 greedy, batched sampling, beam search, a grid and prefill,
    /// with peak memory; optionally side by side with transformers on the same weights.
    ///
    /// Example: sweep bench --random gpt2 --vs-transformers
    #[command(allow_negative_numbers = true)]
    Bench(BenchArgs),
    /// Show the next-token distribution of a prompt after each stage of the sampling
    /// pipeline: softmax (T = 1), temperature, top-k, top-p, each renormalised, with the
    /// tokens that survive and the entropy.
    ///
    /// Example: sweep explain --prompt "ROMEO.\n" --temperature 0.7 --top-k 50 --top-p 0.9 --svg
    #[command(allow_negative_numbers = true)]
    Explain(ExplainArgs),
    /// Compare two results folders of `sweep run`: what differs between the runs, then every
    /// metric of the settings both have, written to compare.csv.
    ///
    /// A change is marked significant (*) when, for runs on the same prompts, the 95 % interval
    /// of the paired difference (prompts resampled or left out in both runs at once) excludes
    /// 0; for runs on different prompts, when the two runs' 95 % intervals do not overlap
    /// (mean_perplexity, distinct_2, self_bleu_4 and repetition_rate have intervals).
    ///
    /// Example: sweep compare results/temps results/temps-gpt2 --out temps-vs-gpt2.csv
    Compare(CompareArgs),
    /// Write (and with --submit, submit) Slurm batch scripts that run an experiment as a job
    /// array of shards, then merge them.
    ///
    /// The scripts go to RESULTS/slurm/: shards.sbatch (the array, one `sweep run --shard`
    /// per task), merge.sbatch (`sweep merge`, submitted with --dependency=afterok on the
    /// array) and submit.sh (submits both). Submitting again resumes every shard.
    ///
    /// Example: sweep slurm experiments/temps.toml --shards 8 --partition gpu --gpus-per-task 1 --time 02:00:00 --submit
    #[command(allow_negative_numbers = true)]
    Slurm(SlurmArgs),
    /// Check that shards of `sweep run --shard` make up one whole run, and write its
    /// summary.csv, samples.csv, run.json and plots, as an unsharded run would.
    ///
    /// Example: sweep merge results/temps
    Merge(MergeArgs),
}

#[derive(Args, Debug)]
struct MergeArgs {
    /// Results folders holding shards/ (as `sweep run --shard` writes them), or shard folders.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Where the merged results go [default: the results folder the shards lie in]
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct SlurmArgs {
    /// The experiment TOML.
    experiment: PathBuf,
    /// How many shards (array tasks) to split the experiment into.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    shards: u32,
    /// Results folder [default: results/<name>]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Slurm partition of every job.
    #[arg(long)]
    partition: Option<String>,
    /// Slurm account of every job.
    #[arg(long)]
    account: Option<String>,
    /// Time limit of each shard task, as Slurm writes it (e.g. 02:00:00).
    #[arg(long)]
    time: Option<String>,
    /// GPUs per shard task.
    #[arg(long)]
    gpus_per_task: Option<u32>,
    /// CPU cores per shard task.
    #[arg(long)]
    cpus_per_task: Option<u32>,
    /// Memory per shard task, as Slurm writes it (e.g. 16G).
    #[arg(long)]
    mem: Option<String>,
    /// Any other option for the shard tasks, as written after #SBATCH (repeatable), e.g.
    /// --sbatch-option=--qos=high.
    #[arg(long, value_name = "OPTION", allow_hyphen_values = true)]
    sbatch_option: Vec<String>,
    /// The sweep binary the jobs run [default: this one]
    #[arg(long)]
    sweep: Option<PathBuf>,
    /// Submit the array and the merge with sbatch instead of only writing the scripts.
    #[arg(long)]
    submit: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args, Debug)]
struct ExplainArgs {
    /// The text whose next token is explained (`\n` is a newline, `\\` a backslash).
    #[arg(long, default_value = "")]
    prompt: String,
    /// Model folder or .pt file [default: the shipped model]
    #[arg(long)]
    model: Option<PathBuf>,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// How many of the most probable tokens to show per stage.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u16).range(1..))]
    top: u16,
    /// Also draw the four stages as an SVG [default file: explain.svg]
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "explain.svg")]
    svg: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// The first results folder (the baseline: changes are B − A).
    a: PathBuf,
    /// The second results folder.
    b: PathBuf,
    /// Where to write the table of changes.
    #[arg(long, default_value = "compare.csv")]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Model folder to measure [default: the shipped model]
    #[arg(long)]
    model: Option<PathBuf>,
    /// Measure randomly initialised weights of this shape instead (`gpt2`, `distilgpt2`,
    /// `gpt2-medium`), written once to target/bench-<shape>/ (under the current folder) so the peer loads the same ones.
    #[arg(long)]
    random: Option<String>,
    /// Also run scripts/bench_transformers.py (transformers `generate`) on the same weights
    /// and print the ratios; skipped with a note when Python or torch is missing.
    #[arg(long)]
    vs_transformers: bool,
    /// Python interpreter for --vs-transformers.
    #[arg(long, default_value = "python3")]
    python: String,
    #[arg(long, default_value_t = 128)]
    new_tokens: usize,
    /// Rows of the sampling case; a list (`1,64,512`) measures one case per batch size.
    #[arg(long, value_delimiter = ',', default_value = "32")]
    batch: Vec<usize>,
    #[arg(long, default_value_t = 8)]
    num_beams: usize,
    /// Also sample the first batch size at this many new tokens (how cost grows with length).
    #[arg(long)]
    long_tokens: Option<usize>,
    /// Also sample the first batch size after a prompt of this many tokens (what a long
    /// prompt costs when every row continues it).
    #[arg(long)]
    long_prompt: Option<usize>,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// Model folder or .pt file [default: the shipped model]
    #[arg(long)]
    model: Option<PathBuf>,
    /// UTF-8 text to score.
    #[arg(long, default_value = "data/shakespeare/valid.txt")]
    data: PathBuf,
    /// Score only the first N tokens [default: the model card's 16384; 0 = all]
    #[arg(long, default_value_t = sweep::tools::train::CARD_EVAL_TOKENS, value_parser = whole::<usize>)]
    max_tokens: usize,
    /// Also print the add-one unigram baseline trained on this file.
    #[arg(long)]
    unigram_train: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// Training text (UTF-8).
    #[arg(long, default_value = "data/shakespeare/train.txt")]
    train: PathBuf,
    /// Validation text (UTF-8).
    #[arg(long, default_value = "data/shakespeare/valid.txt")]
    valid: PathBuf,
    /// Checkpoint folder (config.json + model.safetensors + optimizer and run state).
    #[arg(long)]
    out: PathBuf,
    /// Also write the final weights in f16 to this folder (the shipped form).
    #[arg(long)]
    export_f16: Option<PathBuf>,
    #[arg(long, default_value_t = 4, value_parser = whole::<usize>)]
    n_layer: usize,
    #[arg(long, default_value_t = 4, value_parser = whole::<usize>)]
    n_head: usize,
    #[arg(long, default_value_t = 128, value_parser = whole::<usize>)]
    n_embd: usize,
    /// Context length in tokens (the model's n_positions).
    #[arg(long, default_value_t = 256, value_parser = whole::<usize>)]
    context: usize,
    /// The step to train to. A finished run given a larger --steps trains on from where it
    /// stopped, past the end of its schedule at --min-learning-rate.
    #[arg(long, default_value_t = 2000, value_parser = whole::<usize>)]
    steps: usize,
    /// Length of the learning-rate schedule (cosine decay to --min-learning-rate at this
    /// step). Default: --steps of the run's first sitting; fixed for the run after that.
    #[arg(long, value_parser = whole::<usize>)]
    decay_steps: Option<usize>,
    /// Windows per step.
    #[arg(long, default_value_t = 16, value_parser = whole::<usize>)]
    batch_size: usize,
    /// Peak learning rate, reached after the warm-up.
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    /// Learning rate at the end of the schedule (cosine decay) and after it.
    #[arg(long, default_value_t = 1e-4)]
    min_learning_rate: f64,
    #[arg(long, default_value_t = 100, value_parser = whole::<usize>)]
    warmup_steps: usize,
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f64,
    /// Cap on each parameter's gradient norm.
    #[arg(long, default_value_t = 1.0)]
    grad_clip: f64,
    /// Steps between validation and checkpoint.
    #[arg(long, default_value_t = 100, value_parser = whole::<usize>)]
    eval_interval: usize,
    /// Validation windows per evaluation.
    #[arg(long, default_value_t = 32, value_parser = whole::<usize>)]
    eval_windows: usize,
    #[arg(long, default_value_t = 1337, value_parser = whole::<u64>)]
    seed: u64,
    /// Start over even if --out holds a checkpoint.
    #[arg(long)]
    fresh: bool,
    /// Stop at this step (checkpointed) without changing --steps; run again without it (or
    /// with a later one) to continue.
    #[arg(long, value_parser = whole::<usize>)]
    stop_at: Option<usize>,
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args, Debug, Clone)]
struct DeviceArgs {
    /// Backend to run on (those built into this binary: see `sweep --version` build features).
    #[arg(long)]
    backend: Option<String>,
    /// Device: `cpu`, or `cuda` / `cuda:N` with the tch backend.
    #[arg(long)]
    device: Option<String>,
    /// Weights and compute in f32, f16 or bf16. Half precision is for GPUs; sampling always
    /// reads f32 logits.
    #[arg(long, default_value = "f32")]
    dtype: sweep::engine::model::Precision,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The experiment TOML.
    experiment: Option<PathBuf>,
    /// Results folder [default: results/<name>]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Discard the results folder's saved results and start over; refused (nothing deleted)
    /// unless the folder is empty or holds only what sweep writes. Without it a run resumes
    /// what is saved, and refuses a folder whose samples would differ.
    #[arg(long)]
    force: bool,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
    /// Run only share INDEX of COUNT of the settings (balanced by tokens), in
    /// RESULTS/shards/INDEX-of-COUNT/; `sweep merge RESULTS` puts the shares together
    /// [default: the task's share inside a Slurm job array, else everything]
    #[arg(long, value_name = "INDEX/COUNT")]
    shard: Option<String>,
    #[command(flatten)]
    device: DeviceArgs,
}

/// The sampling pipeline's knobs, shared by `generate` and `explain`.
#[derive(Args, Debug, Clone, Copy)]
struct SamplingArgs {
    /// Divide logits by this before softmax; 0 = greedy.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Keep only the k most probable tokens; 0 = off.
    #[arg(long, default_value_t = 0, value_parser = whole::<usize>)]
    top_k: usize,
    /// Keep the smallest most-probable set of tokens whose probability reaches p; 1.0 = off.
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
}

#[derive(Args, Debug)]
struct GenerateArgs {
    /// The text to continue (`\n` is a newline).
    #[arg(long, default_value = "")]
    prompt: String,
    /// Model folder (config.json + model.safetensors) or .pt file [default: the shipped model]
    #[arg(long)]
    model: Option<PathBuf>,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[arg(long, default_value_t = 200, value_parser = whole::<usize>)]
    max_new_tokens: usize,
    #[arg(long, default_value_t = 0, value_parser = whole::<u64>)]
    seed: u64,
    #[command(flatten)]
    device: DeviceArgs,
}

impl DeviceArgs {
    /// The burn device these flags name, and its description for run records.
    fn open(&self) -> Result<(String, burn::tensor::Device)> {
        let (name, device) = backend::device(self.backend.as_deref(), self.device.as_deref())?;
        // Half precision changes the samples, so it is part of what a run record names.
        let name = match self.dtype {
            sweep::engine::model::Precision::F32 => name,
            other => format!("{name}/{}", other.name()),
        };
        Ok((name, device))
    }

    /// A decoder for `model` in the chosen precision.
    fn generator(&self, model: sweep::engine::model::Gpt2) -> Generator {
        Generator::new(model.with_precision(self.dtype))
    }
}

/// Load a model (the shipped one when none is named) onto `device`.
fn load_model(
    model: Option<PathBuf>,
    device: &burn::tensor::Device,
) -> Result<(PathBuf, checkpoint::Loaded)> {
    let path = model_or_default(model)?;
    let loaded = checkpoint::load(&path, device)
        .with_context(|| format!("loading model {}", path.display()))?;
    Ok((path, loaded))
}

/// `model`, or the shipped model (written to the user's cache folder on first use).
fn model_or_default(model: Option<PathBuf>) -> Result<PathBuf> {
    match model {
        Some(path) => Ok(path),
        None => Ok(sweep::engine::shipped::default_model()?),
    }
}

/// A text file an option names, checked before any model is loaded, so that a missing one
/// is named with its option and the fix. `default` is the option's default, which is
/// relative to the root of sweep's source tree, where the corpus is shipped.
fn check_text_file(path: &std::path::Path, flag: &str, default: Option<&str>) -> Result<()> {
    let problem = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => return Ok(()),
        Ok(_) => "is a folder, not a text file".to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no such file".to_string(),
        Err(e) => e.to_string(),
    };
    let fix = if default.is_some_and(|d| std::path::Path::new(d) == path) {
        format!(
            "the default {flag} is relative to the root of sweep's source tree, where the \
             Shakespeare corpus is shipped: run from there, or pass {flag} FILE with a UTF-8 \
             text file"
        )
    } else {
        format!("pass {flag} with the path of a UTF-8 text file")
    };
    Err(BadInput(format!("{flag} {}: {problem}; {fix}", path.display())).into())
}

/// How `err` ends the process, as the errors in its chain say (see [`ExitStatus`]).
fn exit_of(err: &anyhow::Error) -> Exit {
    use sweep::engine::{backend, checkpoint, generate};
    use sweep::{report::compare, run, spec::experiment, tools::train};
    fn status<E: ExitStatus + 'static>(e: &(dyn std::error::Error + 'static)) -> Option<Exit> {
        e.downcast_ref::<E>().map(ExitStatus::exit)
    }
    Exit::of_chain(err.chain().filter_map(|e| {
        status::<checkpoint::CheckpointError>(e)
            .or_else(|| status::<generate::GenerateError>(e))
            .or_else(|| status::<backend::BackendError>(e))
            .or_else(|| status::<train::TrainError>(e))
            .or_else(|| status::<experiment::ExperimentError>(e))
            .or_else(|| status::<compare::CompareError>(e))
            .or_else(|| status::<run::runner::RunError>(e))
            .or_else(|| status::<run::store::StoreError>(e))
            .or_else(|| status::<run::shard::ShardError>(e))
            .or_else(|| status::<run::slurm::SlurmError>(e))
            .or_else(|| status::<BadInput>(e))
    }))
}

/// A mistake in what the user passed on the command line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadInput(String);

impl ExitStatus for BadInput {
    fn exit(&self) -> Exit {
        Exit::BadInput
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Some(Command::Run(args)) => run(args),
        Some(Command::Validate { experiment }) => validate(&experiment),
        Some(Command::Generate(args)) => generate(args),
        Some(Command::Train(args)) => train(args),
        Some(Command::Eval(args)) => eval(args),
        Some(Command::Bench(args)) => bench(args),
        Some(Command::Explain(args)) => explain(args),
        Some(Command::Compare(args)) => compare(args),
        Some(Command::Slurm(args)) => slurm(args),
        Some(Command::Merge(args)) => merge(args),
        None if cli.run.experiment.is_some() => run(cli.run),
        None => {
            let _ = <Cli as clap::CommandFactory>::command().print_help();
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::from(exit_of(&err).code())
        }
    }
}

/// Parses a whole-number flag so that a negative one (accepted as a value, not taken for a
/// flag) is told what is allowed rather than "invalid digit found in string".
fn whole<T: std::str::FromStr>(text: &str) -> std::result::Result<T, String> {
    text.trim().parse::<T>().map_err(|_| {
        if text.trim().parse::<f64>().is_ok_and(|v| v < 0.0) {
            format!("{text} is negative; give a whole number, 0 or more")
        } else {
            format!("{text} is not a whole number; give one, 0 or more (e.g. 16)")
        }
    })
}

fn check_sampling(args: &SamplingArgs) -> Result<SamplingParams> {
    use sweep::spec::limits::MIN_TEMPERATURE;
    let SamplingArgs {
        temperature,
        top_k,
        top_p,
    } = *args;
    if !(temperature == 0.0 || (temperature >= MIN_TEMPERATURE && temperature.is_finite())) {
        let temperature = sweep::spec::grid::number(temperature);
        return Err(BadInput(format!(
            "--temperature {temperature}: must be 0 (greedy) or a finite number >= \
             {MIN_TEMPERATURE:e}; below that the scaled logits overflow f32 or the distribution \
             is one-hot: use 0 for greedy, or a temperature >= {MIN_TEMPERATURE:e}"
        ))
        .into());
    }
    if !(top_p > 0.0 && top_p <= 1.0) {
        let top_p = sweep::spec::grid::number(top_p);
        return Err(BadInput(format!("--top-p {top_p}: must be in (0, 1] (1.0 = off)")).into());
    }
    Ok(SamplingParams {
        temperature,
        top_k,
        top_p,
    })
}

fn generate(args: GenerateArgs) -> Result<()> {
    let params = check_sampling(&args.sampling)?;
    let (_, device) = args.device.open()?;
    let (_, loaded) = load_model(args.model, &device)?;
    let generator = args.device.generator(loaded.model);
    let tokenizer = Tokenizer::gpt2();
    // `\n` and `\\` in --prompt are decoded, as in prompts files, so a speaker line can be
    // written on the command line.
    let text = sweep::tools::explain::decode_prompt(&args.prompt);
    let prompt = generator.prepare(&tokenizer.encode(&text), args.max_new_tokens)?;
    if prompt.cropped > 0 {
        eprintln!(
            "warning: prompt cropped by {} tokens from the left to fit the context",
            prompt.cropped
        );
    }
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{text}")?;
    stdout.flush()?;
    let mut stream = TextStream::default();
    let mut write_error = None;
    let eos = generator.eos();
    let rows = vec![Row {
        params,
        rng: sample_rng(args.seed, 0, 0),
    }];
    generator.sample(&prompt, rows, args.max_new_tokens, |_, token| {
        if token == eos || write_error.is_some() {
            return;
        }
        let text = stream.push(&tokenizer, token);
        if let Err(e) = write!(stdout, "{text}").and_then(|_| stdout.flush()) {
            write_error = Some(e);
        }
    })?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    writeln!(stdout)?;
    Ok(())
}

fn train(args: TrainArgs) -> Result<()> {
    use sweep::tools::train::{TrainConfig, TrainRun};
    if args.device.dtype != sweep::engine::model::Precision::F32 {
        return Err(BadInput("--dtype: training runs in f32 only".into()).into());
    }
    check_text_file(&args.train, "--train", Some("data/shakespeare/train.txt"))?;
    check_text_file(&args.valid, "--valid", Some("data/shakespeare/valid.txt"))?;
    let (_, device) = args.device.open()?;
    let run = TrainRun {
        config: TrainConfig {
            n_layer: args.n_layer,
            n_head: args.n_head,
            n_embd: args.n_embd,
            context: args.context,
            steps: args.steps,
            decay_steps: args.decay_steps,
            batch_size: args.batch_size,
            learning_rate: args.learning_rate,
            min_learning_rate: args.min_learning_rate,
            warmup_steps: args.warmup_steps,
            weight_decay: args.weight_decay,
            grad_clip: args.grad_clip,
            eval_interval: args.eval_interval.max(1),
            eval_windows: args.eval_windows.max(1),
            seed: args.seed,
        },
        train_file: args.train,
        valid_file: args.valid,
        out: args.out,
        export_f16: args.export_f16,
        fresh: args.fresh,
        quiet: args.quiet,
        stop_at: args.stop_at,
    };
    let state = sweep::tools::train::train(&run, &device)?;
    if let Some(&(step, train_loss, valid_loss)) = state.history.last() {
        eprintln!(
            "done: step {step}, train loss {train_loss:.4}, valid loss {valid_loss:.4} (perplexity {:.2}), {:.0} s",
            valid_loss.exp(),
            state.elapsed_s
        );
    }
    Ok(())
}

fn load_experiment(path: &std::path::Path) -> Result<Experiment> {
    Ok(Experiment::load(path)?)
}

/// Checks `exp` against the model it names (or the shipped one) before any work: the model's
/// config is read and compared with its weights file's header (no weights are read), then the
/// lengths, the prompts' tokens and the memory of the largest batch are checked against it.
/// `validate` reports what this finds; `run` stops on the same errors before loading.
fn check_against_model(
    exp: &Experiment,
    settings: &[sweep::spec::grid::Setting],
) -> Result<(
    PathBuf,
    checkpoint::Inspected,
    sweep::spec::limits::Footprint,
)> {
    let model = model_or_default(exp.model.clone())?;
    let inspected = checkpoint::inspect(&model)
        .with_context(|| format!("{}: model {}", exp.source.display(), model.display()))?;
    let memory = sweep::spec::limits::Memory::of_this_machine();
    let footprint = sweep::spec::limits::check_experiment(exp, settings, &inspected.config, memory)
        .map_err(|e| sweep::spec::experiment::ExperimentError::Invalid {
            at: sweep::spec::experiment::Location {
                file: exp.source.clone(),
                position: None,
            },
            message: format!("{e} (model {})", model.display()),
        })?;
    Ok((model, inspected, footprint))
}

fn validate(path: &std::path::Path) -> Result<()> {
    let exp = load_experiment(path)?;
    let (settings, folded) = runner::settings(&exp);
    let (model, inspected, footprint) = check_against_model(&exp, &settings)?;
    let results = PathBuf::from("results").join(&exp.name);
    validate_results_folder(&exp, &settings, &inspected, &results)?;
    let cropped = cropped_prompts(&exp, &inspected.config);
    let planned = sweep::spec::grid::planned_tokens(&exp, &settings);
    let count = |s: Strategy| settings.iter().filter(|x| x.strategy == s).count();
    println!("{}: ok", path.display());
    println!("  name:      {}", exp.name);
    let config = &inspected.config;
    println!(
        "  model:     {} (n_layer {}, n_head {}, n_embd {}, n_positions {}, vocab_size {})",
        model.display(),
        config.n_layer,
        config.n_head,
        config.n_embd,
        config.n_positions,
        config.vocab_size
    );
    println!("  prompts:   {}", exp.prompts.len());
    println!(
        "  settings:  {} ({} sampling, {} greedy, {} beam{})",
        settings.len(),
        count(Strategy::Sample),
        count(Strategy::Greedy),
        count(Strategy::Beam),
        if count(Strategy::Human) > 0 {
            ", plus the human reference"
        } else {
            ""
        }
    );
    if folded > 0 {
        println!(
            "  greedy:    {} temperature-0 grid points fold into one greedy setting",
            folded + 1
        );
    }
    println!(
        "  tokens:    up to {planned} generated (max_new_tokens = {})",
        exp.max_new_tokens
    );
    let peak = footprint.peak;
    println!(
        "  memory:    about {} at the largest batch ({} of KV cache for {} positions, {} of \
         logits, {} of weights); {}",
        sweep::spec::limits::size(peak.total()),
        sweep::spec::limits::size(peak.kv_cache),
        footprint.positions,
        sweep::spec::limits::size(peak.logits),
        sweep::spec::limits::size(peak.weights),
        footprint.memory
    );
    println!("  results:   {}/", results.display());
    for (i, cropped) in cropped {
        eprintln!(
            "warning: prompt {i} cropped by {cropped} tokens from the left to fit the context"
        );
    }
    Ok(())
}

/// How many tokens `run` will crop from the left of each prompt that does not fit the
/// context beside `max_new_tokens`, as it prepares them: (prompt index, tokens cropped).
fn cropped_prompts(
    exp: &Experiment,
    config: &sweep::engine::model::Gpt2Config,
) -> Vec<(usize, usize)> {
    let tokenizer = Tokenizer::gpt2();
    let room = config.n_positions.saturating_sub(exp.max_new_tokens);
    exp.prompts
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            // An empty prompt is one end-of-text token.
            let len = tokenizer.encode(&p.text).len().max(1);
            let cropped = len.saturating_sub(room);
            (cropped > 0).then_some((i, cropped))
        })
        .collect()
}

/// What `run` would say of the default results folder, before any generation: a path that
/// is a file, or a folder holding another experiment's rows (or another format's), is an
/// error, as `run` stops on it with the same defaults; a folder locked by another process is a
/// warning, as that ends with the process.
fn validate_results_folder(
    exp: &Experiment,
    settings: &[sweep::spec::grid::Setting],
    inspected: &checkpoint::Inspected,
    results: &std::path::Path,
) -> Result<()> {
    use sweep::run::store::{Fingerprint, StoreError};
    let checked = sweep::run::store::preflight(results, |old| {
        // The backend is chosen when running, so it is taken as the folder's own.
        let sha = sweep::util::files::sha256_file(&inspected.weights).ok()?;
        Some(Fingerprint::new(exp, settings, &sha, &old.shared.backend))
    });
    match checked {
        Err(e @ StoreError::Locked { .. }) => {
            eprintln!("warning: {e}");
            Ok(())
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "{}: `sweep run` would refuse its results folder",
            exp.source.display()
        ))),
        Ok(()) => Ok(()),
    }
}

fn run(args: RunArgs) -> Result<()> {
    let Some(path) = args.experiment else {
        return Err(BadInput(
            "no experiment given; usage: sweep run FILE.toml (see sweep --help)".into(),
        )
        .into());
    };
    let exp = load_experiment(&path)?;
    check_against_model(&exp, &runner::settings(&exp).0)?;
    let dir = args
        .out
        .unwrap_or_else(|| PathBuf::from("results").join(&exp.name));
    sweep::run::store::check_folder(&dir, "--out")?;
    let shard = match &args.shard {
        Some(spec) => Some(spec.parse::<sweep::run::shard::Shard>()?),
        None => sweep::run::shard::Shard::from_slurm_env(|name| std::env::var(name).ok())?,
    };
    let (backend_name, device) = args.device.open()?;
    let (model_path, loaded) = load_model(exp.model.clone(), &device)?;
    let model_sha256 = sweep::util::files::sha256_file(&loaded.weights)
        .with_context(|| format!("reading {}", loaded.weights.display()))?;
    let generator = args.device.generator(loaded.model);
    let interrupt = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let flag = interrupt.clone();
        // A second Ctrl-C stops at once; the first lets the batches in flight end and be
        // saved. The folder's lock goes with the process either way.
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ninterrupt: stopping after the current batch (Ctrl-C again to stop now)");
        });
    }
    let opts = runner::RunOptions {
        dir,
        force: args.force,
        quiet: args.quiet,
        backend: backend_name,
        model_path,
        model_sha256,
    };
    // Input errors found while preparing the prompts belong to the experiment file.
    let in_file = |e: runner::RunError| match e {
        runner::RunError::Generate(_) => anyhow::Error::new(e).context(path.display().to_string()),
        other => other.into(),
    };
    if let Some(shard) = shard {
        return run_shard(&exp, &generator, &opts, shard, &interrupt, in_file);
    }
    let outcome = runner::run(&exp, &generator, &opts, &interrupt).map_err(in_file)?;
    if !args.quiet {
        let resumed = resumed_note(outcome.skipped);
        eprintln!(
            "wrote {}/summary.csv, samples.csv, run.json and plots: {} settings run, {} rows \
             generated{resumed}",
            outcome.dir.display(),
            outcome.ran,
            outcome.rows
        );
    }
    Ok(())
}

/// " (N already done, resumed)" when a run found finished settings, else nothing.
fn resumed_note(skipped: usize) -> String {
    if skipped > 0 {
        format!(" ({skipped} already done, resumed)")
    } else {
        String::new()
    }
}

fn run_shard(
    exp: &Experiment,
    generator: &Generator,
    opts: &runner::RunOptions,
    shard: sweep::run::shard::Shard,
    interrupt: &std::sync::atomic::AtomicBool,
    in_file: impl Fn(runner::RunError) -> anyhow::Error,
) -> Result<()> {
    use sweep::run::shard::{ShardError, run_shard};
    let outcome = run_shard(exp, generator, opts, shard, interrupt).map_err(|e| match e {
        ShardError::Run(e) => in_file(e),
        other => other.into(),
    })?;
    if !opts.quiet {
        let resumed = resumed_note(outcome.skipped);
        eprintln!(
            "shard {shard}: {} settings saved in {}, {} rows generated{resumed}; when every shard \
             is done: sweep merge {}",
            outcome.ran + outcome.skipped,
            outcome.dir.display(),
            outcome.rows,
            opts.dir.display()
        );
    }
    Ok(())
}

fn merge(args: MergeArgs) -> Result<()> {
    if let Some(out) = &args.out {
        sweep::run::store::check_folder(out, "--out")?;
    }
    let merged = sweep::run::shard::merge(&args.dirs, args.out.as_deref())?;
    for note in &merged.notes {
        eprintln!("{note}");
    }
    eprintln!(
        "merged {} shards ({} settings): wrote {}/summary.csv, samples.csv, run.json and plots",
        merged.shards,
        merged.settings,
        merged.dir.display()
    );
    Ok(())
}

fn slurm(args: SlurmArgs) -> Result<()> {
    let exp = load_experiment(&args.experiment)?;
    let shards = args.shards as usize;
    let results = args
        .out
        .unwrap_or_else(|| PathBuf::from("results").join(&exp.name));
    sweep::run::store::check_folder(&results, "--out")?;
    if args.sweep.is_none() {
        // The jobs run this binary: a backend or device it does not have would fail every
        // task, and only after the queue wait.
        args.device
            .open()
            .context("the shard jobs would run this sweep binary (--sweep PATH names another)")?;
    }
    let sweep_bin = match args.sweep {
        Some(path) => {
            std::path::absolute(&path).with_context(|| format!("--sweep {}", path.display()))?
        }
        None => std::env::current_exe().context("finding this sweep binary")?,
    };
    let mut run_args = Vec::new();
    if let Some(b) = args.device.backend {
        run_args.extend(["--backend".to_string(), b]);
    }
    if let Some(d) = args.device.device {
        run_args.extend(["--device".to_string(), d]);
    }
    if args.device.dtype != sweep::engine::model::Precision::F32 {
        run_args.extend(["--dtype".to_string(), args.device.dtype.name().to_string()]);
    }
    let job = sweep::run::slurm::Job {
        experiment: args.experiment.clone(),
        results: results.clone(),
        workdir: std::env::current_dir().context("finding the current folder")?,
        sweep: sweep_bin,
        name: exp.name.clone(),
        shards,
        partition: args.partition,
        account: args.account,
        time: args.time,
        gpus_per_task: args.gpus_per_task,
        cpus_per_task: args.cpus_per_task,
        mem: args.mem,
        sbatch_options: args.sbatch_option,
        run_args,
    };
    let scripts = job.write()?;
    let (settings, _) = runner::settings(&exp);
    let mut tokens = Vec::with_capacity(shards);
    for index in 0..shards {
        let shard = sweep::run::shard::Shard {
            index,
            count: shards,
        };
        let mine = sweep::run::shard::share(&exp, &settings, shard);
        tokens.push(format!(
            "{} ({} settings, {} tokens)",
            shard,
            mine.len(),
            sweep::spec::grid::planned_tokens(&exp, &mine)
        ));
    }
    println!(
        "{} settings in {shards} shards: {}",
        settings.len(),
        tokens.join(", ")
    );
    println!(
        "wrote {}/shards.sbatch, merge.sbatch, submit.sh",
        scripts.dir.display()
    );
    if args.submit {
        let ids = sweep::run::slurm::submit(&scripts)?;
        println!(
            "submitted the shards as job array {} and the merge as job {} (after the array succeeds)",
            ids.array, ids.merge
        );
        println!(
            "a failed task K: sbatch --array=K {}, then sweep merge {}",
            scripts.shards.display(),
            results.display()
        );
    } else {
        println!("submit with: {}", scripts.submit.display());
    }
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
    use sweep::tools::train::{evaluate, tokenize_file, unigram_perplexity};
    check_text_file(&args.data, "--data", Some("data/shakespeare/valid.txt"))?;
    if let Some(train_file) = &args.unigram_train {
        check_text_file(train_file, "--unigram-train", None)?;
    }
    let (_, device) = args.device.open()?;
    let (_, loaded) = load_model(args.model, &device)?;
    let tokens = tokenize_file(&args.data)?;
    let limit = if args.max_tokens == 0 {
        tokens.len()
    } else {
        args.max_tokens.min(tokens.len())
    };
    let context = loaded.config.n_positions;
    if limit < 2 {
        return Err(BadInput(format!(
            "{}: {limit} tokens to score; perplexity needs at least 2 (one to read, one to \
             predict): give a longer file{}",
            args.data.display(),
            if args.max_tokens != 0 && args.max_tokens < tokens.len() {
                " or a larger --max-tokens"
            } else {
                ""
            }
        ))
        .into());
    }
    // A file shorter than one context window is still worth a figure: it is scored as one
    // shorter window, and the line says so, since such a figure sees less context per token.
    let window = context.min(limit - 1);
    let model = loaded.model.with_precision(args.device.dtype);
    let loss = evaluate(&model, &tokens, window, Some(limit), 8);
    let short = if window < context {
        format!(
            " (shorter than one context window of {context}: scored as one window of {window} \
             predictions)"
        )
    } else {
        String::new()
    };
    println!(
        "{}: {limit} tokens{short}, loss {loss:.4} nats/token, perplexity {:.2}",
        args.data.display(),
        loss.exp()
    );
    if let Some(train_file) = args.unigram_train {
        let train_tokens = tokenize_file(&train_file)?;
        let ppl = unigram_perplexity(&train_tokens, &tokens[..limit], loaded.config.vocab_size);
        println!(
            "unigram baseline (add-one, trained on {}): perplexity {ppl:.2}",
            train_file.display()
        );
    }
    Ok(())
}

fn explain(args: ExplainArgs) -> Result<()> {
    use sweep::tools::explain;
    let params = check_sampling(&args.sampling)?;
    let (_, device) = args.device.open()?;
    let (_, loaded) = load_model(args.model, &device)?;
    let generator = args.device.generator(loaded.model);
    let tokenizer = Tokenizer::gpt2();
    let prompt = explain::decode_prompt(&args.prompt);
    let logits = explain::next_token_logits(&generator, &tokenizer.encode(&prompt))?;
    let stages = explain::explain(&logits, &params);
    let label = |token: usize| explain::token_label(&tokenizer, token);
    let top = usize::from(args.top);
    let title = format!(
        "next token after {}",
        explain::escape_token(prompt.as_bytes())
    );
    write!(
        std::io::stdout().lock(),
        "{title}\n\n{}",
        explain::render_terminal(&stages, top, &label)
    )?;
    if let Some(path) = args.svg {
        let svg = explain::render_svg(&stages, top, &title, &label);
        sweep::util::files::write_atomic(&path, svg.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn compare(args: CompareArgs) -> Result<()> {
    if args.out.is_dir() {
        return Err(BadInput(format!(
            "--out {}: is a folder; --out names the CSV file the table of changes is written \
             to: pass a file path, e.g. --out {}",
            args.out.display(),
            args.out.join("compare.csv").display()
        ))
        .into());
    }
    if let Some(parent) = args.out.parent()
        && !parent.as_os_str().is_empty()
        && !parent.is_dir()
    {
        return Err(BadInput(format!(
            "--out {}: the folder {} does not exist; create it, or pass a path in an existing \
             folder",
            args.out.display(),
            parent.display()
        ))
        .into());
    }
    let comparison = sweep::report::compare::compare(&args.a, &args.b)?;
    sweep::report::compare::write_csv(&args.out, &comparison.matched.changes)?;
    write!(
        std::io::stdout().lock(),
        "{}",
        sweep::report::compare::render(&comparison)
    )?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn bench(args: BenchArgs) -> Result<()> {
    use sweep::tools::bench::{BenchPlan, Measurement};
    check_bench_args(&args)?;
    let (backend_name, device) = args.device.open()?;
    let model_path = match &args.random {
        None => model_or_default(args.model.clone())?,
        Some(shape) => random_bench_model(shape, &device)?,
    };
    let loaded = checkpoint::load(&model_path, &device)
        .with_context(|| format!("loading model {}", model_path.display()))?;
    let n_positions = loaded.config.n_positions;
    let generator = args.device.generator(loaded.model);
    let plan = BenchPlan {
        new_tokens: args.new_tokens,
        batches: args.batch.clone(),
        num_beams: args.num_beams,
        long_tokens: args.long_tokens,
        long_prompt: args.long_prompt,
        prefill_tokens: BenchPlan::default().prefill_tokens.min(n_positions),
        ..BenchPlan::default()
    };
    let longest = plan.long_tokens.unwrap_or(0).max(plan.new_tokens);
    generator.prepare(&[], longest).map_err(|e| {
        BadInput(format!(
            "--new-tokens/--long-tokens: {e} (model {})",
            model_path.display()
        ))
    })?;
    if let Some(len) = plan.long_prompt
        && (len == 0 || len + plan.new_tokens > n_positions)
    {
        return Err(BadInput(format!(
            "--long-prompt {len}: with --new-tokens {} it must fit the model's context of {n_positions} \
             positions; use 1 to {}",
            plan.new_tokens,
            n_positions.saturating_sub(plan.new_tokens)
        ))
        .into());
    }
    check_bench_memory(&plan, &generator.model().config)?;

    let header = || {
        println!(
            "{:<46} {:>12} {:>14} {:>7}",
            "case", "sweep tok/s", "transformers", "ratio"
        )
    };
    eprintln!("measuring {} on {backend_name} ...", model_path.display());
    header();
    let mut ours: Vec<Measurement> = Vec::new();
    sweep::tools::bench::run(&generator, &plan, |m| {
        println!("{:<46} {:>12.1}", m.case, m.tokens_per_s);
        ours.push(m.clone());
    });
    if let Some(mib) = sweep::tools::bench::peak_memory_mib() {
        println!("peak resident memory: {mib:.0} MiB");
    }
    if let Some(long) = plan.long_tokens {
        let rate = |tokens| {
            let case = sweep::tools::bench::sample_case(plan.batches[0], tokens);
            ours.iter().find(|m| m.case == case).map(|m| m.tokens_per_s)
        };
        if let (Some(short), Some(long_rate)) = (rate(plan.new_tokens), rate(long)) {
            println!(
                "length scaling: tokens/s at {long} new tokens is {:.0} % of that at {}",
                100.0 * long_rate / short,
                plan.new_tokens
            );
        }
    }
    if args.vs_transformers {
        drop(generator);
        let peer_device = match args.device.device.as_deref() {
            Some(d) if d.starts_with("cuda") => d.to_string(),
            _ => "cpu".to_string(),
        };
        bench_peer(&args, &plan, &model_path, &peer_device, &ours, header)?;
    }
    Ok(())
}

/// The sizes `bench` is given, each refused by name when it is zero or past the caps a sweep
/// has, before a model is loaded.
fn check_bench_args(args: &BenchArgs) -> Result<()> {
    use sweep::spec::limits::{MAX_BATCH_SIZE, MAX_NEW_TOKENS, MAX_NUM_BEAMS};
    let in_range = |flag: &str, value: usize, max: usize| -> Result<()> {
        if (1..=max).contains(&value) {
            Ok(())
        } else {
            Err(BadInput(format!("{flag} {value}: must be from 1 to {max}")).into())
        }
    };
    in_range("--new-tokens", args.new_tokens, MAX_NEW_TOKENS)?;
    in_range("--num-beams", args.num_beams, MAX_NUM_BEAMS)?;
    for &batch in &args.batch {
        in_range("--batch", batch, MAX_BATCH_SIZE)?;
    }
    if let Some(long) = args.long_tokens {
        in_range("--long-tokens", long, MAX_NEW_TOKENS)?;
    }
    Ok(())
}

/// The largest batches of a bench plan (the biggest sampling batch and the beam search),
/// checked against this machine's memory with the estimate a sweep uses.
fn check_bench_memory(
    plan: &sweep::tools::bench::BenchPlan,
    config: &sweep::engine::model::Gpt2Config,
) -> Result<()> {
    use sweep::spec::limits::{BatchMemory, Memory};
    let memory = Memory::of_this_machine();
    // The bench prompt is 16 tokens; the long-prompt case replaces it.
    let prompt = plan.long_prompt.unwrap_or(0).max(16);
    let positions = prompt + plan.long_tokens.unwrap_or(0).max(plan.new_tokens);
    let widest = plan.batches.iter().copied().max().unwrap_or(1);
    BatchMemory::estimate(config, widest, positions, None)
        .check(config, positions, "--batch", widest, memory)
        .map_err(|e| BadInput(e.to_string()))?;
    BatchMemory::estimate(config, plan.num_beams, positions, Some(plan.num_beams))
        .check(config, positions, "--num-beams", plan.num_beams, memory)
        .map_err(|e| BadInput(e.to_string()))?;
    Ok(())
}

/// Random weights of a known GPT-2 shape, written once under target/ so that the peer
/// benchmark can load the very same ones.
fn random_bench_model(shape: &str, device: &burn::tensor::Device) -> Result<PathBuf> {
    let config = match shape {
        "gpt2" => sweep::engine::model::Gpt2Config::gpt2(),
        "distilgpt2" => sweep::engine::model::Gpt2Config::distilgpt2(),
        "gpt2-medium" => sweep::engine::model::Gpt2Config::gpt2_medium(),
        other => {
            return Err(BadInput(format!(
                "--random {other}: use gpt2, distilgpt2 or gpt2-medium"
            ))
            .into());
        }
    };
    let dir = PathBuf::from(format!("target/bench-{shape}"));
    if !dir.join("model.safetensors").is_file() {
        eprintln!("writing random {shape} weights to {}", dir.display());
        device.seed(0);
        let model = sweep::engine::model::Gpt2::init(&config, device);
        checkpoint::save(&model, &dir, checkpoint::SaveDtype::F32)?;
    }
    Ok(dir)
}

/// Run scripts/bench_transformers.py on the same weights and cases, printing each of its
/// results beside ours as it arrives. A missing Python or torch is a note, not an error.
fn bench_peer(
    args: &BenchArgs,
    plan: &sweep::tools::bench::BenchPlan,
    model_path: &std::path::Path,
    device: &str,
    ours: &[sweep::tools::bench::Measurement],
    header: impl Fn(),
) -> Result<()> {
    use std::io::BufRead;
    // The checkout it runs in, else the one it was built from.
    let script = [
        PathBuf::from("scripts/bench_transformers.py"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_transformers.py"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .unwrap_or_else(|| PathBuf::from("scripts/bench_transformers.py"));
    eprintln!("measuring transformers generate() on the same weights ({device}) ...");
    let batches: Vec<String> = plan.batches.iter().map(|b| b.to_string()).collect();
    let child = std::process::Command::new(&args.python)
        .arg(&script)
        .arg("--model")
        .arg(model_path)
        .args(["--new-tokens", &plan.new_tokens.to_string()])
        .args(["--batch", &batches.join(",")])
        .args(["--num-beams", &plan.num_beams.to_string()])
        .args(["--prefill-tokens", &plan.prefill_tokens.to_string()])
        .args(["--long-tokens", &plan.long_tokens.unwrap_or(0).to_string()])
        .args(["--long-prompt", &plan.long_prompt.unwrap_or(0).to_string()])
        .args(["--device", device])
        .args(["--dtype", args.device.dtype.name()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!(
                "note: transformers comparison skipped ({}: {e})",
                args.python
            );
            return Ok(());
        }
    };
    let stdout = child.stdout.take().expect("piped stdout");
    let mut printed_header = false;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("reading the transformers benchmark's output")?;
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(torch) = value["torch"].as_str() {
            println!(
                "transformers peer: torch {torch}, {} threads, {}",
                value["threads"],
                value["device"].as_str().unwrap_or("?")
            );
            continue;
        }
        let Ok(theirs) = serde_json::from_value::<sweep::tools::bench::Measurement>(value) else {
            continue;
        };
        if !printed_header {
            header();
            printed_header = true;
        }
        let mine = ours.iter().find(|m| m.case == theirs.case);
        println!(
            "{:<46} {:>12} {:>14.1} {:>7}",
            theirs.case,
            mine.map_or(String::new(), |m| format!("{:.1}", m.tokens_per_s)),
            theirs.tokens_per_s,
            mine.map_or(String::new(), |m| format!(
                "{:.2}x",
                m.tokens_per_s / theirs.tokens_per_s
            ))
        );
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        eprintln!(
            "note: transformers comparison stopped ({} failed: {})",
            args.python,
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    Ok(())
}
