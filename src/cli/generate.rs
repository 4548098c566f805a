//! `sweep generate`: one continuation of a prompt, streamed to the terminal.

use std::io::Write;

use anyhow::Result;

use sweep::engine::generate::SampleRow;
use sweep::engine::sampling::sample_rng;
use sweep::engine::tokenizer::{TextStream, Tokenizer};

use super::args::GenerateArgs;
use super::common::{check_sampling, load_model};

pub fn generate(args: GenerateArgs) -> Result<()> {
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
    let rows = vec![SampleRow {
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
