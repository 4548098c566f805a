//! `sweep explain`: the next-token distribution of a prompt after each sampling stage.

use std::io::Write;

use anyhow::{Context, Result};

use sweep::engine::tokenizer::Tokenizer;

use super::args::ExplainArgs;
use super::common::{check_sampling, load_model};

pub fn explain(args: ExplainArgs) -> Result<()> {
    use sweep::tools::explain;
    let params = check_sampling(&args.sampling)?;
    let (_, device) = args.device.open()?;
    let (_, loaded) = load_model(args.model, &device)?;
    let generator = args.device.generator(loaded.model);
    let tokenizer = Tokenizer::gpt2();
    let prompt = explain::decode_prompt(&args.prompt);
    let tokens = tokenizer.encode(&prompt);
    let logits = explain::next_token_logits(&generator, &tokens)?;
    // The penalties see the prompt as the model does.
    let context = generator.prepare(&tokens, 1)?.tokens;
    let stages = explain::explain(&logits, &params, &context);
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
