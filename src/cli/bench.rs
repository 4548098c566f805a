//! `sweep bench`: tokens per second of the decoding cases, with their sizes checked first.

use std::path::PathBuf;

use anyhow::Result;

use sweep::engine::checkpoint;

use super::args::BenchArgs;
use super::common::{load_model_at, model_or_default};
use super::exit::BadInput;
use super::peer::bench_peer;

pub fn bench(args: BenchArgs) -> Result<()> {
    use sweep::tools::bench::{BenchPlan, Measurement};
    check_bench_args(&args)?;
    let (backend_name, device) = args.device.open()?;
    let model_path = match &args.random {
        None => model_or_default(args.model.clone())?,
        Some(shape) => random_bench_model(shape, &device)?,
    };
    let loaded = load_model_at(&model_path, &device)?;
    let n_positions = loaded.config.n_positions;
    let generator = args.device.generator(loaded.model);
    let plan = BenchPlan {
        repeat: args.repeat,
        profile: args.profile,
        cases: if args.cases.is_empty() {
            BenchPlan::default().cases
        } else {
            args.cases.clone()
        },
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

    if args.filters {
        eprintln!("measuring {} on {backend_name} ...", model_path.display());
        println!(
            "{:<46} {:>12} {:>14}",
            "case", "sweep tok/s", "time vs top-p"
        );
        let mut reference = None;
        sweep::tools::bench::run_filters(&generator, &plan, |m| {
            let base = *reference.get_or_insert(m.seconds);
            println!(
                "{:<46} {:>12.1} {:>13.2}x",
                m.case,
                m.tokens_per_s,
                m.seconds / base
            );
        });
        return Ok(());
    }
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
        if let Some(profile) = &m.profile {
            println!("{}", profile_line(profile));
        }
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

/// A profiled case's mean step, in the order a step runs.
fn profile_line(profile: &sweep::engine::step_profile::StepProfile) -> String {
    let ([issue, device, readback, sample], ops) = profile.per_step();
    let ops = ops.map_or(String::new(), |(ops, views)| {
        format!("; {ops:.0} libtorch ops, {views:.0} of them views")
    });
    let whole = if profile.rows_in_full > 0 {
        format!(
            "; {} of {} rows read back whole",
            profile.rows_in_full, profile.rows
        )
    } else {
        String::new()
    };
    format!(
        "  per step ({} steps): issue {issue:.2} ms, device after issue {device:.2} ms, \
         read-back {readback:.2} ms, sampling {sample:.2} ms{ops}{whole}",
        profile.steps
    )
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
    in_range("--repeat", args.repeat, 100)?;
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
