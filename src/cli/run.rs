//! `sweep run` and `sweep validate`: an experiment run (whole or one shard), and the checks
//! against its model and results folder that both make before any generation.

use std::path::PathBuf;

use anyhow::{Context, Result};

use sweep::engine::checkpoint;
use sweep::engine::generate::Generator;
use sweep::engine::tokenizer::Tokenizer;
use sweep::run::runner;
use sweep::spec::experiment::Experiment;
use sweep::spec::grid::Strategy;

use super::args::RunArgs;
use super::common::{default_results, load_experiment, load_model, model_or_default};
use super::exit::BadInput;

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

pub fn validate(path: &std::path::Path) -> Result<()> {
    let exp = load_experiment(path)?;
    let (settings, folded) = runner::settings(&exp);
    let (model, inspected, footprint) = check_against_model(&exp, &settings)?;
    let results = default_results(&exp);
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
        "  settings:  {} ({} sampling, {} greedy, {} beam{}{})",
        settings.len(),
        count(Strategy::Sample),
        count(Strategy::Greedy),
        count(Strategy::Beam),
        if count(Strategy::Contrastive) > 0 {
            format!(", {} contrastive", count(Strategy::Contrastive))
        } else {
            String::new()
        },
        if count(Strategy::Human) > 0 {
            ", plus the human reference"
        } else {
            ""
        }
    );
    if folded > 0 {
        println!(
            "  greedy:    {} temperature-0 grid points fold into {} greedy setting{}",
            folded + count(Strategy::Greedy),
            count(Strategy::Greedy),
            if count(Strategy::Greedy) == 1 {
                ""
            } else {
                "s"
            }
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
    if let Some(score) = &exp.score {
        let mut parts = Vec::new();
        if let Some(scorer) = &score.model {
            let config = checkpoint::inspect(scorer)
                .with_context(|| format!("{}: [score] model", exp.source.display()))?
                .config;
            sweep::run::scoring::check_scorer(&config, "[score] model", scorer, &exp)
                .with_context(|| path.display().to_string())?;
            parts.push(format!(
                "every text under {} (n_positions {})",
                scorer.display(),
                config.n_positions
            ));
        }
        if score.mauve {
            let references = exp.prompts.iter().filter(|p| p.reference.is_some()).count();
            let clusters = score.mauve_clusters.map_or_else(
                || {
                    format!(
                        "{} clusters",
                        sweep::report::mauve::auto_clusters(references, references)
                    )
                },
                |k| format!("{k} clusters"),
            );
            parts.push(format!(
                "MAUVE of every row against {references} references ({clusters}, c = {})",
                score.mauve_scaling
            ));
        }
        println!("  score:     {}", parts.join("; "));
    }
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
    exp.prompts
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let len = tokenizer.encode(&p.text).len();
            let cropped = sweep::engine::generate::cropped_tokens(
                len,
                config.n_positions,
                exp.max_new_tokens,
            );
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

pub fn run(args: RunArgs) -> Result<()> {
    let Some(path) = args.experiment else {
        return Err(BadInput(
            "no experiment given; usage: sweep run FILE.toml (see sweep --help)".into(),
        )
        .into());
    };
    let exp = load_experiment(&path)?;
    check_against_model(&exp, &runner::settings(&exp).0)?;
    let dir = args.out.unwrap_or_else(|| default_results(&exp));
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
    // A shard generates only; the merged folder is scored as a whole.
    let scorer = match (&exp.score, &shard) {
        (Some(score), None) => Some(scorer_of(score, &model_path, &args.device, &device)?),
        _ => None,
    };
    if let Some(scorer) = &scorer {
        scorer
            .check(&exp)
            .with_context(|| path.display().to_string())?;
    }
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
        scorer,
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

pub fn score(args: super::args::ScoreArgs) -> Result<()> {
    let folder = sweep::run::scoring::Folder::open(&args.results)?;
    let (_, device) = args.device.open()?;
    let (scorer, path) = match (&args.model, &folder.exp.score) {
        (Some(path), _) => (
            load_scorer(path, "--model", true, &args.device, &device)?,
            path.clone(),
        ),
        (None, Some(score)) => {
            let scorer = scorer_of(score, folder.model_path(), &args.device, &device)?;
            let path = scorer.path.clone();
            (scorer, path)
        }
        (None, None) => {
            return Err(BadInput(format!(
                "no scorer: {}'s experiment has no [score] table; pass --model PATH",
                args.results.display()
            ))
            .into());
        }
    };
    let interrupt = std::sync::atomic::AtomicBool::new(false);
    let notes = folder.score(&scorer, args.quiet, &interrupt)?;
    if !args.quiet {
        for note in notes {
            eprintln!("{note}");
        }
        eprintln!(
            "wrote {}/summary.csv, samples.csv and run.json with the columns of scorer {}",
            args.results.display(),
            path.display()
        );
    }
    Ok(())
}

/// The scorer a `[score]` table asks for: its `model`, or else the generator's own checkpoint
/// (`generator`), which then scores only for MAUVE's features.
fn scorer_of(
    score: &sweep::spec::experiment::ScoreSpec,
    generator: &std::path::Path,
    args: &super::args::DeviceArgs,
    device: &burn::tensor::Device,
) -> Result<sweep::run::scoring::Scorer> {
    match &score.model {
        Some(path) => load_scorer(path, "[score] model", true, args, device),
        None => load_scorer(generator, "model", false, args, device),
    }
}

/// Load a scorer model, named by `key` in messages.
pub fn load_scorer(
    path: &std::path::Path,
    key: &'static str,
    columns: bool,
    args: &super::args::DeviceArgs,
    device: &burn::tensor::Device,
) -> Result<sweep::run::scoring::Scorer> {
    let loaded = super::common::load_model_at(path, device).with_context(|| key)?;
    let sha256 = sweep::util::files::sha256_file(&loaded.weights)
        .with_context(|| format!("reading {}", loaded.weights.display()))?;
    Ok(sweep::run::scoring::Scorer {
        generator: args.generator(loaded.model),
        path: path.to_path_buf(),
        sha256,
        key,
        columns,
    })
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
