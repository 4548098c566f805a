//! `sweep slurm` and `sweep merge`: an experiment split into Slurm array tasks, and the
//! shards put back together as one run.

use anyhow::{Context, Result};

use sweep::run::runner;

use super::args::{MergeArgs, SlurmArgs};
use super::common::{default_results, load_experiment};

pub fn merge(args: MergeArgs) -> Result<()> {
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

pub fn slurm(args: SlurmArgs) -> Result<()> {
    let exp = load_experiment(&args.experiment)?;
    let shards = args.shards as usize;
    let results = args.out.unwrap_or_else(|| default_results(&exp));
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
