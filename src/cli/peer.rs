//! The transformers benchmark of `bench --vs-transformers`: a Python subprocess whose JSON
//! lines are read as they come. Apart because it is the one place sweep runs another program.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::args::BenchArgs;

/// Run scripts/bench_transformers.py on the same weights and cases, printing each of its
/// results beside ours as it arrives. A missing Python or torch is a note, not an error.
pub fn bench_peer(
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
    let cases: Vec<String> = plan
        .cases
        .iter()
        .filter_map(clap::ValueEnum::to_possible_value)
        .map(|v| v.get_name().to_string())
        .collect();
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
        .args(["--cases", &cases.join(",")])
        .args(["--repeat", &plan.repeat.to_string()])
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
