//! Training: a tiny model's loss falls; a resumed run continues; the shipped model scores the
//! validation perplexity its model card states.

use std::path::Path;

use sweep::tools::train::{TrainConfig, TrainRun, evaluate, tokenize_file, train};

fn device() -> burn::tensor::Device {
    sweep::engine::backend::device(None, None).unwrap().1
}

fn corpus(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/shakespeare/valid.txt"),
    )
    .unwrap();
    let (a, b) = text.split_at(60_000);
    let (b, _) = b.split_at(b.char_indices().nth(8_000).unwrap().0);
    let train_file = dir.join("train.txt");
    let valid_file = dir.join("valid.txt");
    std::fs::write(&train_file, a).unwrap();
    std::fs::write(&valid_file, b).unwrap();
    (train_file, valid_file)
}

fn tiny_config(steps: usize) -> TrainConfig {
    TrainConfig {
        n_layer: 1,
        n_head: 2,
        n_embd: 32,
        context: 32,
        steps,
        decay_steps: None,
        batch_size: 4,
        learning_rate: 1e-2,
        min_learning_rate: 1e-3,
        warmup_steps: 2,
        weight_decay: 0.0,
        grad_clip: 1.0,
        eval_interval: 10,
        eval_windows: 4,
        seed: 7,
    }
}

#[test]
fn a_tiny_model_learns_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let (train_file, valid_file) = corpus(tmp.path());
    let mut run = TrainRun {
        config: tiny_config(20),
        train_file,
        valid_file,
        out: tmp.path().join("run"),
        export_f16: None,
        fresh: false,
        quiet: true,
        stop_at: Some(10),
    };
    // Two sittings: stop at step 10, then continue to the end of the schedule.
    let half = train(&run, &device()).unwrap();
    assert_eq!(half.step, 10);
    run.stop_at = None;
    let state = train(&run, &device()).unwrap();
    assert_eq!(state.history[0], half.history[0]);
    let first = state.history.first().unwrap().2;
    let last = state.history.last().unwrap().2;
    // An untrained model sits near ln(50257) ≈ 10.8 nats.
    assert!(
        first < 10.5 && last < first - 0.3,
        "validation loss {first} → {last}"
    );
    assert_eq!(state.step, 20);

    // A changed recipe is refused, and so is another schedule length for the saved steps.
    run.config.n_embd = 64;
    assert!(train(&run, &device()).is_err());
    run.config = tiny_config(20);
    run.config.decay_steps = Some(30);
    assert!(
        train(&run, &device()).is_err(),
        "the saved steps followed a 20-step schedule"
    );
    run.config = tiny_config(20);
    let again = train(&run, &device()).unwrap();
    assert_eq!(
        again.history.len(),
        state.history.len(),
        "a finished run does no more steps"
    );

    // The finished run, given more steps, trains on at the floor learning rate: exactly the
    // run planned from the start as 30 steps on a 20-step schedule.
    run.config = tiny_config(30);
    let extended = train(&run, &device()).unwrap();
    assert_eq!(extended.step, 30);
    assert_eq!(extended.config.decay_steps, Some(20));
    assert_eq!(extended.history[..state.history.len()], state.history[..]);
    let planned = TrainRun {
        config: TrainConfig {
            decay_steps: Some(20),
            ..tiny_config(30)
        },
        out: tmp.path().join("planned"),
        stop_at: None,
        train_file: run.train_file.clone(),
        valid_file: run.valid_file.clone(),
        export_f16: None,
        fresh: false,
        quiet: true,
    };
    let planned = train(&planned, &device()).unwrap();
    assert_eq!(planned.history, extended.history);
    // Bit for bit: the optimizer's moments and every parameter's training survive the sittings.
    let weights =
        |dir: &str| std::fs::read(tmp.path().join(dir).join("model.safetensors")).unwrap();
    assert!(weights("planned") == weights("run"));
}

/// The model card's validation perplexity is reproducible from the shipped weights.
#[test]
fn the_shipped_model_matches_its_model_card() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let card = std::fs::read_to_string(root.join("models/shakespeare/README.md")).unwrap();
    let line = card
        .lines()
        .find(|l| l.starts_with("| validation perplexity"))
        .expect("model card states the validation perplexity");
    let stated: f64 = line
        .trim_end_matches('|')
        .rsplit('|')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let loaded =
        sweep::engine::checkpoint::load(&root.join("models/shakespeare"), &device()).unwrap();
    let tokens = tokenize_file(&root.join("data/shakespeare/valid.txt")).unwrap();
    let context = loaded.config.n_positions;
    let loss = evaluate(
        &loaded.model,
        &tokens,
        context,
        Some(sweep::tools::train::CARD_EVAL_TOKENS),
        8,
    );
    let ppl = loss.exp();
    assert!(
        (ppl - stated).abs() / stated < 0.01,
        "perplexity {ppl} vs model card {stated}"
    );
}
