//! `sweep train` and `sweep eval`: a model trained on a corpus, and its perplexity on a text.

use anyhow::Result;

use super::args::{EvalArgs, TrainArgs};
use super::common::{check_text_file, load_model};
use super::exit::BadInput;

pub fn train(args: TrainArgs) -> Result<()> {
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

pub fn eval(args: EvalArgs) -> Result<()> {
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
