//! Every flag of every command (clap), whose doc comments are the `--help` text, and the
//! value parsers they share; apart from the commands so that the interface reads in one place.

// The doc comments here are `--help` text, where `<name>` is a placeholder, not HTML.
#![allow(rustdoc::invalid_html_tags)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run an experiment TOML: every grid setting and beam baseline, scored, written as CSV.
    ///
    /// Results go to results/<name>/ (summary.csv, samples.csv, run.json). Running the same
    /// experiment again resumes: finished settings are not recomputed.
    ///
    /// Example: sweep run experiments/temps.toml --out results/temps-try2
    Run(RunArgs),
    /// Score a finished results folder's texts (and human references) under another model,
    /// without generating again: adds the scorer's columns to summary.csv and samples.csv and
    /// records the scorer in run.json. Resumes where an interrupted call stopped.
    ///
    /// Example: sweep score results/temps --model models/gpt2-medium
    Score(ScoreArgs),
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
pub struct MergeArgs {
    /// Results folders holding shards/ (as `sweep run --shard` writes them), or shard folders.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where the merged results go [default: the results folder the shards lie in]
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SlurmArgs {
    /// The experiment TOML.
    pub experiment: PathBuf,
    /// How many shards (array tasks) to split the experiment into.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub shards: u32,
    /// Results folder [default: results/<name>]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Slurm partition of every job.
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm account of every job.
    #[arg(long)]
    pub account: Option<String>,
    /// Time limit of each shard task, as Slurm writes it (e.g. 02:00:00).
    #[arg(long)]
    pub time: Option<String>,
    /// GPUs per shard task.
    #[arg(long)]
    pub gpus_per_task: Option<u32>,
    /// CPU cores per shard task.
    #[arg(long)]
    pub cpus_per_task: Option<u32>,
    /// Memory per shard task, as Slurm writes it (e.g. 16G).
    #[arg(long)]
    pub mem: Option<String>,
    /// Any other option for the shard tasks, as written after #SBATCH (repeatable), e.g.
    /// --sbatch-option=--qos=high.
    #[arg(long, value_name = "OPTION", allow_hyphen_values = true)]
    pub sbatch_option: Vec<String>,
    /// The sweep binary the jobs run [default: this one]
    #[arg(long)]
    pub sweep: Option<PathBuf>,
    /// Submit the array and the merge with sbatch instead of only writing the scripts.
    #[arg(long)]
    pub submit: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The text whose next token is explained (`\n` is a newline, `\\` a backslash).
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Model folder or .pt file [default: the shipped model]
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// How many of the most probable tokens to show per stage.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u16).range(1..))]
    pub top: u16,
    /// Also draw the stages as an SVG [default file: explain.svg]
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "explain.svg")]
    pub svg: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The first results folder (the baseline: changes are B − A).
    pub a: PathBuf,
    /// The second results folder.
    pub b: PathBuf,
    /// Where to write the table of changes.
    #[arg(long, default_value = "compare.csv")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model folder to measure [default: the shipped model]
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Measure randomly initialised weights of this shape instead (`gpt2`, `distilgpt2`,
    /// `gpt2-medium`), written once to target/bench-<shape>/ (under the current folder) so the peer loads the same ones.
    #[arg(long)]
    pub random: Option<String>,
    /// Also run scripts/bench_transformers.py (transformers `generate`) on the same weights
    /// and print the ratios; skipped with a note when Python or torch is missing.
    #[arg(long)]
    pub vs_transformers: bool,
    /// Python interpreter for --vs-transformers.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Run each case this many times and report the fastest, here and in the peer: on a
    /// shared machine a run is only ever slowed by its neighbours.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Run each sampling case once more with each step timed in parts (issuing the forward
    /// pass, the device finishing it, reading back, sampling) and, with libtorch, its
    /// operations counted; printed under the case. The profiled run waits for the device at
    /// every step, so it is not the timed one.
    #[arg(long)]
    pub profile: bool,
    /// Measure only these kinds of case (`--cases score,prefill`) [default: all]
    #[arg(long, value_enum, value_delimiter = ',')]
    pub cases: Vec<sweep::tools::bench::Case>,
    #[arg(long, default_value_t = 128)]
    pub new_tokens: usize,
    /// Rows of the sampling case; a list (`1,64,512`) measures one case per batch size.
    #[arg(long, value_delimiter = ',', default_value = "32")]
    pub batch: Vec<usize>,
    #[arg(long, default_value_t = 8)]
    pub num_beams: usize,
    /// Also sample the first batch size at this many new tokens (how cost grows with length).
    #[arg(long)]
    pub long_tokens: Option<usize>,
    /// Also sample the first batch size after a prompt of this many tokens (what a long
    /// prompt costs when every row continues it).
    #[arg(long)]
    pub long_prompt: Option<usize>,
    /// Measure the logits processors instead: the first batch size with top-p alone, then
    /// each other filter and penalty alone, with each one's cost per step relative to top-p.
    #[arg(long, conflicts_with_all = ["vs_transformers", "long_tokens", "long_prompt", "cases"])]
    pub filters: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model folder or .pt file [default: the shipped model]
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// UTF-8 text to score.
    #[arg(long, default_value = "data/shakespeare/valid.txt")]
    pub data: PathBuf,
    /// Score only the first N tokens [default: the model card's 16384; 0 = all]
    #[arg(long, default_value_t = sweep::tools::train::CARD_EVAL_TOKENS, value_parser = whole::<usize>)]
    pub max_tokens: usize,
    /// Also print the add-one unigram baseline trained on this file.
    #[arg(long)]
    pub unigram_train: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training text (UTF-8).
    #[arg(long, default_value = "data/shakespeare/train.txt")]
    pub train: PathBuf,
    /// Validation text (UTF-8).
    #[arg(long, default_value = "data/shakespeare/valid.txt")]
    pub valid: PathBuf,
    /// Checkpoint folder (config.json + model.safetensors + optimizer and run state).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the final weights in f16 to this folder (the shipped form).
    #[arg(long)]
    pub export_f16: Option<PathBuf>,
    #[arg(long, default_value_t = 4, value_parser = whole::<usize>)]
    pub n_layer: usize,
    #[arg(long, default_value_t = 4, value_parser = whole::<usize>)]
    pub n_head: usize,
    #[arg(long, default_value_t = 128, value_parser = whole::<usize>)]
    pub n_embd: usize,
    /// Context length in tokens (the model's n_positions).
    #[arg(long, default_value_t = 256, value_parser = whole::<usize>)]
    pub context: usize,
    /// The step to train to. A finished run given a larger --steps trains on from where it
    /// stopped, past the end of its schedule at --min-learning-rate.
    #[arg(long, default_value_t = 2000, value_parser = whole::<usize>)]
    pub steps: usize,
    /// Length of the learning-rate schedule (cosine decay to --min-learning-rate at this
    /// step). Default: --steps of the run's first sitting; fixed for the run after that.
    #[arg(long, value_parser = whole::<usize>)]
    pub decay_steps: Option<usize>,
    /// Windows per step.
    #[arg(long, default_value_t = 16, value_parser = whole::<usize>)]
    pub batch_size: usize,
    /// Peak learning rate, reached after the warm-up.
    #[arg(long, default_value_t = 1e-3)]
    pub learning_rate: f64,
    /// Learning rate at the end of the schedule (cosine decay) and after it.
    #[arg(long, default_value_t = 1e-4)]
    pub min_learning_rate: f64,
    #[arg(long, default_value_t = 100, value_parser = whole::<usize>)]
    pub warmup_steps: usize,
    #[arg(long, default_value_t = 0.1)]
    pub weight_decay: f64,
    /// Cap on each parameter's gradient norm.
    #[arg(long, default_value_t = 1.0)]
    pub grad_clip: f64,
    /// Steps between validation and checkpoint.
    #[arg(long, default_value_t = 100, value_parser = whole::<usize>)]
    pub eval_interval: usize,
    /// Validation windows per evaluation.
    #[arg(long, default_value_t = 32, value_parser = whole::<usize>)]
    pub eval_windows: usize,
    #[arg(long, default_value_t = 1337, value_parser = whole::<u64>)]
    pub seed: u64,
    /// Start over even if --out holds a checkpoint.
    #[arg(long)]
    pub fresh: bool,
    /// Stop at this step (checkpointed) without changing --steps; run again without it (or
    /// with a later one) to continue.
    #[arg(long, value_parser = whole::<usize>)]
    pub stop_at: Option<usize>,
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Backend to run on (those built into this binary: see `sweep --version` build features).
    #[arg(long)]
    pub backend: Option<String>,
    /// Device: `cpu`, or `cuda` / `cuda:N` with the tch backend.
    #[arg(long)]
    pub device: Option<String>,
    /// Weights and compute in f32, f16 or bf16. Half precision is for GPUs; sampling always
    /// reads f32 logits.
    #[arg(long, default_value = "f32")]
    pub dtype: sweep::engine::model::Precision,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The experiment TOML.
    pub experiment: Option<PathBuf>,
    /// Results folder [default: results/<name>]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Discard the results folder's saved results and start over; refused (nothing deleted)
    /// unless the folder is empty or holds only what sweep writes. Without it a run resumes
    /// what is saved, and refuses a folder whose samples would differ.
    #[arg(long)]
    pub force: bool,
    /// Print nothing but errors.
    #[arg(long)]
    pub quiet: bool,
    /// Run only share INDEX of COUNT of the settings (balanced by tokens), in
    /// RESULTS/shards/INDEX-of-COUNT/; `sweep merge RESULTS` puts the shares together
    /// [default: the task's share inside a Slurm job array, else everything]
    #[arg(long, value_name = "INDEX/COUNT")]
    pub shard: Option<String>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// The results folder of a finished run (or merge).
    pub results: PathBuf,
    /// The scorer's checkpoint [default: the experiment's [score] model]
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Print nothing but errors.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// The sampling pipeline's knobs, shared by `generate` and `explain`.
#[derive(Args, Debug, Clone, Copy)]
pub struct SamplingArgs {
    /// Divide logits by this before softmax; 0 = greedy.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Keep only the k most probable tokens; 0 = off.
    #[arg(long, default_value_t = 0, value_parser = whole::<usize>)]
    pub top_k: usize,
    /// Keep the smallest most-probable set of tokens whose probability reaches p; 1.0 = off.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Keep tokens with probability at least min_p times the most likely one's; 0 = off.
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f64,
    /// Locally typical sampling: keep this mass of the tokens closest to the entropy; 1.0 = off.
    #[arg(long, default_value_t = 1.0)]
    pub typical_p: f64,
    /// ε-sampling: drop tokens with probability below this; 0 = off.
    #[arg(long, default_value_t = 0.0)]
    pub epsilon_cutoff: f64,
    /// η-sampling: drop tokens below min(η, √η·exp(−entropy)); 0 = off.
    #[arg(long, default_value_t = 0.0)]
    pub eta_cutoff: f64,
    /// Top-nσ: keep logits within n standard deviations of the largest; 0 = off.
    #[arg(long, default_value_t = 0.0)]
    pub top_n_sigma: f64,
    /// CTRL repetition penalty on prompt and generated tokens; 1.0 = off.
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f64,
    /// Subtract this times each token's count in the generated text (OpenAI); 0 = off.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub frequency_penalty: f64,
    /// Subtract this once from every token already generated (OpenAI); 0 = off.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub presence_penalty: f64,
    /// Never repeat an n-gram of this size from prompt and generated text; 0 = off.
    #[arg(long, default_value_t = 0, value_parser = whole::<usize>)]
    pub no_repeat_ngram_size: usize,
    /// Apply the temperature after every filter (llama.cpp's order) instead of first.
    #[arg(long)]
    pub temperature_last: bool,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The text to continue (`\n` is a newline).
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Model folder (config.json + model.safetensors) or .pt file [default: the shipped model]
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[arg(long, default_value_t = 200, value_parser = whole::<usize>)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = 0, value_parser = whole::<u64>)]
    pub seed: u64,
    #[command(flatten)]
    pub device: DeviceArgs,
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
