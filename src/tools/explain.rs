//! `sweep explain`: what each stage of the sampling pipeline does to one next-token
//! distribution.
//!
//! A grid says "temperature 0.7, top-k 50, top-p 0.9", but not how much of the distribution
//! each of those removes for a given prompt. This module runs the same stage functions that
//! generation uses ([`crate::engine::sampling`]) one at a time on one row of logits and keeps every
//! intermediate distribution, so the effect of each stage can be read off (and drawn) instead
//! of guessed. Everything but [`next_token_logits`] is pure.

use std::fmt::Write as _;

use crate::engine::generate::{GenerateError, Generator};
use crate::engine::processors;
use crate::engine::sampling::{self, SamplingParams};
use crate::engine::tokenizer::Tokenizer;

/// One stage's distribution over the whole vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// What the stage did, with its parameter, e.g. `top-k (k = 50)`.
    pub name: String,
    /// The probability of every token after this stage (sums to 1).
    pub probs: Vec<f64>,
    /// Tokens with nonzero probability: those a draw could still pick. At very low
    /// temperatures the far tail underflows to exactly 0 in f64; sampling cannot draw those
    /// either, so they count as gone.
    pub survivors: usize,
    /// Shannon entropy `−Σ p ln p` of `probs`, in nats.
    pub entropy_nats: f64,
}

impl Stage {
    fn new(name: String, probs: Vec<f64>) -> Self {
        Self {
            name,
            survivors: probs.iter().filter(|&&p| p > 0.0).count(),
            entropy_nats: entropy_nats(&probs),
            probs,
        }
    }

    /// The entropy in bits, for readers who think in those.
    pub fn entropy_bits(&self) -> f64 {
        self.entropy_nats / std::f64::consts::LN_2
    }
}

/// Shannon entropy in nats; zero-probability tokens contribute nothing (`0 ln 0 = 0`).
pub fn entropy_nats(probs: &[f64]) -> f64 {
    // `0.0 -` rather than negation, so that a certain outcome prints as 0, not -0.
    0.0 - probs
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| p * p.ln())
        .sum::<f64>()
}

/// The four stages of the pipeline on the same logits, in the order sampling applies them:
/// the model's own distribution (softmax at T = 1), after temperature, after top-k
/// (renormalised), after top-p (renormalised). The last stage is exactly
/// [`sampling::filtered_distribution`], the distribution a sample is drawn from.
///
/// Temperature 0 is greedy: the temperature stage is then the one-hot argmax, and the filters
/// after it keep that single token, which is why greedy ignores top-k and top-p. The
/// temperature must be ≥ 0 and top-p in (0, 1]; the CLI checks both.
///
/// With any [`Processors`](crate::engine::processors::Processors) knob on, the stages are
/// instead every stage that is on, in the order it runs (see
/// [`processors::stages`]), each applied to what the one before left; `prompt` is the
/// context the penalties see. The last stage is then
/// [`sampling::filtered_distribution_in_context`].
pub fn explain(logits: &[f32], params: &SamplingParams, prompt: &[u32]) -> Vec<Stage> {
    if !params.processors.is_off() {
        return explain_processed(logits, params, prompt);
    }
    let raw = sampling::softmax(logits);
    let (tempered_name, tempered) = if params.is_greedy() {
        let mut one_hot = vec![0.0; logits.len()];
        one_hot[sampling::argmax(logits)] = 1.0;
        ("temperature 0 (greedy: argmax)".to_string(), one_hot)
    } else {
        let t = params.temperature;
        let probs = if t == 1.0 {
            raw.clone()
        } else {
            sampling::softmax(&sampling::apply_temperature(logits, t))
        };
        (format!("temperature (T = {t})"), probs)
    };
    let k_name = if params.top_k == 0 {
        "top-k off (k = 0)".to_string()
    } else {
        format!("top-k (k = {})", params.top_k)
    };
    let after_k = sampling::top_k(&tempered, params.top_k);
    let p_name = if params.top_p >= 1.0 {
        "top-p off (p = 1)".to_string()
    } else {
        format!("top-p (p = {})", params.top_p)
    };
    let after_p = sampling::top_p(&after_k, params.top_p);
    vec![
        Stage::new("softmax (T = 1)".to_string(), raw),
        Stage::new(tempered_name, tempered),
        Stage::new(k_name, after_k),
        Stage::new(p_name, after_p),
    ]
}

fn explain_processed(logits: &[f32], params: &SamplingParams, prompt: &[u32]) -> Vec<Stage> {
    let mut stages = vec![Stage::new(
        "softmax (T = 1)".to_string(),
        sampling::softmax(logits),
    )];
    let mut row = logits.to_vec();
    let knobs = &params.processors;
    let pipeline = if params.is_greedy() {
        processors::penalty_stages(knobs)
    } else {
        processors::stages(params.temperature, params.top_k, params.top_p, knobs)
    };
    for stage in pipeline {
        stage.apply(&mut row, prompt, prompt.len());
        stages.push(Stage::new(stage.describe(), sampling::softmax(&row)));
    }
    if params.is_greedy() {
        let mut one_hot = vec![0.0; logits.len()];
        one_hot[sampling::argmax(&row)] = 1.0;
        stages.push(Stage::new(
            "temperature 0 (greedy: argmax)".to_string(),
            one_hot,
        ));
    }
    stages
}

/// The logits of the token that would follow `prompt`: the last row of one forward pass.
/// The prompt is prepared as generation prepares it (cropped from the left to the context,
/// `<|endoftext|>` when empty), so the distribution is the one `sweep run` samples from first.
pub fn next_token_logits(generator: &Generator, prompt: &[u32]) -> Result<Vec<f32>, GenerateError> {
    let prepared = generator.prepare(prompt, 1)?;
    let vocab = generator.model().config.vocab_size;
    let logits = generator.logits(&prepared.tokens);
    Ok(logits[logits.len() - vocab..].to_vec())
}

/// A prompt as typed on the command line: `\n` is a newline and `\\` a backslash, the same
/// rule as a `prompts_file` line (it is that rule's decoder), so `--prompt "ROMEO.\n"`
/// explains what follows the speaker line. Any other backslash is kept as written.
pub use crate::spec::experiment::decode_escapes as decode_prompt;

/// The `n` most probable tokens with nonzero probability, most probable first (the lower id
/// first on a tie, so the listing is stable).
pub fn top_tokens(probs: &[f64], n: usize) -> Vec<(usize, f64)> {
    let mut order: Vec<(usize, f64)> = probs
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, p)| p > 0.0)
        .collect();
    let by_prob = |a: &(usize, f64), b: &(usize, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if n < order.len() {
        order.select_nth_unstable_by(n, by_prob);
        order.truncate(n);
    }
    order.sort_by(by_prob);
    order
}

/// A token's text made visible: quoted, so leading spaces show, with newlines, tabs, other
/// control characters, quotes and backslashes escaped, and bytes that are not whole UTF-8
/// characters (a token may hold part of one) as `\xNN`.
pub fn escape_token(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    let mut rest = bytes;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, &[][..]),
            Err(e) => {
                let (good, tail) = rest.split_at(e.valid_up_to());
                (
                    std::str::from_utf8(good).expect("valid prefix"),
                    &tail[..e.error_len().unwrap_or(tail.len())],
                )
            }
        };
        for c in valid.chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in bad {
            let _ = write!(out, "\\x{b:02x}");
        }
        rest = &rest[valid.len() + bad.len()..];
    }
    out.push('"');
    out
}

/// [`escape_token`] of one GPT-2 token id.
pub fn token_label(tokenizer: &Tokenizer, token: usize) -> String {
    escape_token(&tokenizer.decode_bytes(&[token as u32]))
}

/// Width of the longest terminal bar, in character cells.
const BAR_WIDTH: usize = 40;

/// The largest probability shown in any stage: every bar, in the terminal and in the SVG, is
/// drawn on this one scale so that stages compare by length, and the longest bar fills its
/// space even when the model is unsure.
fn scale(stages: &[Stage]) -> f64 {
    stages
        .iter()
        .flat_map(|s| s.probs.iter().copied())
        .fold(0.0, f64::max)
}

/// A bar of `█` whose length is `p / scale` of `width` cells; the last partial cell is drawn
/// with an eighth-block so that small probabilities still show.
fn bar(p: f64, scale: f64, width: usize) -> String {
    if scale <= 0.0 {
        return String::new();
    }
    let eighths = (p / scale * width as f64 * 8.0).round() as usize;
    let mut s = "█".repeat(eighths / 8);
    const PARTIAL: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    s.push_str(PARTIAL[eighths % 8]);
    s
}

fn letter(i: usize) -> char {
    (b'a' + i as u8) as char
}

/// The terminal report: per stage a title line with the survivors and the entropy, then the
/// `top` most probable tokens as `rank id token probability bar`. `label` gives a token's
/// printable text (see [`token_label`]).
pub fn render_terminal(stages: &[Stage], top: usize, label: &dyn Fn(usize) -> String) -> String {
    let vocab = stages.first().map_or(0, |s| s.probs.len());
    let scale = scale(stages);
    let mut out = String::new();
    for (i, stage) in stages.iter().enumerate() {
        let rows = top_tokens(&stage.probs, top);
        let _ = writeln!(
            out,
            "({}) {}: {} of {} tokens survive, entropy {:.3} nats ({:.3} bits)",
            letter(i),
            stage.name,
            stage.survivors,
            vocab,
            stage.entropy_nats,
            stage.entropy_bits()
        );
        let labels: Vec<String> = rows.iter().map(|&(t, _)| label(t)).collect();
        let id_width = rows
            .iter()
            .map(|(t, _)| t.to_string().len())
            .max()
            .unwrap_or(1);
        let label_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        for (rank, ((token, p), text)) in rows.iter().zip(&labels).enumerate() {
            let pad = label_width - text.chars().count();
            let _ = writeln!(
                out,
                "  {:>3}  {token:>id_width$}  {text}{}  {p:.4}  {}",
                rank + 1,
                " ".repeat(pad),
                bar(*p, scale, BAR_WIDTH)
            );
        }
        if stage.survivors > rows.len() {
            let rest: f64 = 1.0 - rows.iter().map(|&(_, p)| p).sum::<f64>();
            let _ = writeln!(
                out,
                "       … {} more tokens, {:.4} together",
                stage.survivors - rows.len(),
                rest.max(0.0)
            );
        }
        out.push('\n');
    }
    out
}

/// Text as XML character data or an attribute value.
pub fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0 at all.
            c if c.is_control() && !matches!(c, '\n' | '\t') => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The same report as an SVG: one panel per stage, two to a row, each with a title
/// (stage, survivors, entropy) and one horizontal bar per token, labelled with the token on
/// the left and its probability on the right. All bars share one scale, as in the terminal.
/// Plain `rect` and `text` elements only, so any browser or editor shows it.
pub fn render_svg(
    stages: &[Stage],
    top: usize,
    title: &str,
    label: &dyn Fn(usize) -> String,
) -> String {
    const PANEL_W: f64 = 560.0;
    const LABEL_W: f64 = 170.0;
    const BAR_W: f64 = 300.0;
    const ROW_H: f64 = 22.0;
    const HEAD_H: f64 = 52.0;
    const MARGIN: f64 = 20.0;
    const TOP_H: f64 = 40.0;
    let vocab = stages.first().map_or(0, |s| s.probs.len());
    let scale = scale(stages);
    let rows_max = top.max(1) as f64;
    let panel_h = HEAD_H + rows_max * ROW_H + 16.0;
    let columns = 2usize;
    let panel_rows = stages.len().div_ceil(columns).max(1);
    let width = MARGIN * 2.0 + PANEL_W * columns as f64 + MARGIN * (columns - 1) as f64;
    let height = TOP_H + MARGIN + panel_rows as f64 * (panel_h + MARGIN);

    let mut svg = String::new();
    let _ = writeln!(svg, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(
        svg,
        r##"<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        svg,
        r##"<text x="{MARGIN}" y="28" font-size="18" font-weight="bold" fill="#222222">{}</text>"##,
        escape_xml(title)
    );
    for (i, stage) in stages.iter().enumerate() {
        let x0 = MARGIN + (i % columns) as f64 * (PANEL_W + MARGIN);
        let y0 = TOP_H + MARGIN + (i / columns) as f64 * (panel_h + MARGIN);
        let _ = writeln!(svg, r#"<g class="panel" transform="translate({x0},{y0})">"#);
        let _ = writeln!(
            svg,
            r##"  <rect x="0" y="0" width="{PANEL_W}" height="{panel_h}" fill="#f7f7f7" stroke="#cccccc"/>"##
        );
        let _ = writeln!(
            svg,
            r##"  <text x="12" y="22" font-size="15" font-weight="bold" fill="#222222">({}) {}</text>"##,
            letter(i),
            escape_xml(&stage.name)
        );
        let _ = writeln!(
            svg,
            r##"  <text x="12" y="41" font-size="13" fill="#555555">{} of {} tokens survive · entropy {:.3} nats ({:.3} bits)</text>"##,
            stage.survivors,
            vocab,
            stage.entropy_nats,
            stage.entropy_bits()
        );
        for (row, (token, p)) in top_tokens(&stage.probs, top).into_iter().enumerate() {
            let y = HEAD_H + row as f64 * ROW_H;
            let w = if scale > 0.0 { p / scale * BAR_W } else { 0.0 };
            let _ = writeln!(
                svg,
                r##"  <text x="{}" y="{}" font-size="13" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" text-anchor="end" xml:space="preserve" fill="#222222">{}</text>"##,
                LABEL_W - 8.0,
                y + 15.0,
                escape_xml(&truncate(&label(token), 18))
            );
            let _ = writeln!(
                svg,
                r##"  <rect x="{LABEL_W}" y="{}" width="{w:.2}" height="{}" fill="#4878a8"/>"##,
                y + 3.0,
                ROW_H - 6.0
            );
            let _ = writeln!(
                svg,
                r##"  <text x="{:.2}" y="{}" font-size="12" fill="#333333">{p:.4}</text>"##,
                LABEL_W + w + 6.0,
                y + 15.0
            );
        }
        let _ = writeln!(svg, "</g>");
    }
    svg.push_str("</svg>\n");
    svg
}

/// At most `max` characters, with `…` standing for the rest, so a long token cannot overrun
/// its label column.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max - 1).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sampling::Processors;

    const LOGITS: [f32; 8] = [2.0, 1.0, 0.5, 0.5, 0.5, -1.0, -3.0, 0.0];

    fn params(temperature: f64, top_k: usize, top_p: f64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            processors: Processors::OFF,
        }
    }

    #[test]
    fn entropy_of_a_uniform_distribution_is_ln_n() {
        for n in [1usize, 2, 7, 512] {
            let uniform = vec![1.0 / n as f64; n];
            assert!((entropy_nats(&uniform) - (n as f64).ln()).abs() < 1e-12);
        }
        // Zeros add nothing; a certain outcome has none.
        assert!((entropy_nats(&[0.5, 0.0, 0.5]) - 2f64.ln()).abs() < 1e-12);
        assert_eq!(entropy_nats(&[0.0, 1.0]).to_string(), "0");
        let stage = Stage::new("u".into(), vec![0.25; 4]);
        assert!((stage.entropy_bits() - 2.0).abs() < 1e-12);
    }

    #[test]
    fn every_stage_renormalises_to_one() {
        for p in [
            params(0.7, 3, 0.8),
            params(1.0, 0, 1.0),
            params(2.0, 1, 0.5),
            params(0.0, 5, 0.9),
        ] {
            let stages = explain(&LOGITS, &p, &[]);
            assert_eq!(stages.len(), 4);
            for s in &stages {
                assert_eq!(s.probs.len(), LOGITS.len());
                assert!((s.probs.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{p:?}");
            }
        }
    }

    #[test]
    fn survivors_count_what_each_filter_keeps() {
        let stages = explain(&LOGITS, &params(0.7, 2, 0.5), &[]);
        let survivors: Vec<usize> = stages.iter().map(|s| s.survivors).collect();
        // Softmax and temperature keep all 8; top-k 2 keeps 2; the first of those already
        // holds more than half of their mass, so top-p 0.5 keeps 1.
        assert_eq!(survivors, vec![8, 8, 2, 1]);
        // Top-k lands on the three-way tie at 0.5: all tied tokens stay.
        let tied = explain(&LOGITS, &params(1.0, 3, 1.0), &[]);
        assert_eq!(tied[2].survivors, 5);
        assert_eq!(tied[3].survivors, 5);
        // Filters off keep everything.
        let off = explain(&LOGITS, &params(1.3, 0, 1.0), &[]);
        assert!(off.iter().all(|s| s.survivors == 8));
        assert!(off[1].entropy_nats > off[0].entropy_nats);
    }

    #[test]
    fn the_last_stage_is_the_distribution_sampling_draws_from() {
        for p in [
            params(0.7, 3, 0.8),
            params(1.4, 0, 0.6),
            params(0.0, 2, 0.9),
        ] {
            let stages = explain(&LOGITS, &p, &[]);
            assert_eq!(
                stages[3].probs,
                sampling::filtered_distribution(&LOGITS, &p)
            );
            assert_eq!(stages[0].probs, sampling::softmax(&LOGITS));
        }
    }

    #[test]
    fn greedy_is_one_hot_at_the_argmax_from_the_temperature_stage_on() {
        let stages = explain(&LOGITS, &params(0.0, 5, 0.9), &[]);
        assert!(stages[0].survivors == 8);
        for s in &stages[1..] {
            assert_eq!(s.survivors, 1);
            assert_eq!(s.probs[0], 1.0);
            assert_eq!(s.entropy_nats, 0.0);
        }
        assert!(stages[1].name.contains("greedy"));
    }

    #[test]
    fn top_tokens_are_sorted_and_skip_zeros() {
        let probs = [0.1, 0.4, 0.0, 0.4, 0.1];
        assert_eq!(top_tokens(&probs, 3), vec![(1, 0.4), (3, 0.4), (0, 0.1)]);
        assert_eq!(top_tokens(&probs, 10).len(), 4);
        assert!(top_tokens(&probs, 0).is_empty());
    }

    #[test]
    fn tokens_are_escaped_so_whitespace_shows() {
        assert_eq!(escape_token(b"\n"), r#""\n""#);
        assert_eq!(escape_token(b" the"), r#"" the""#);
        assert_eq!(escape_token(b"a\t\"b\\"), r#""a\t\"b\\""#);
        assert_eq!(escape_token(b"\x01"), r#""\u{1}""#);
        // Half of "é" (0xc3 0xa9) and a stray continuation byte.
        assert_eq!(escape_token(b"x\xc3"), r#""x\xc3""#);
        assert_eq!(escape_token(b"\xa9y"), r#""\xa9y""#);
        assert_eq!(escape_token("é".as_bytes()), "\"é\"");
    }

    #[test]
    fn prompts_decode_newlines_and_backslashes_only() {
        assert_eq!(decode_prompt(r"ROMEO.\n"), "ROMEO.\n");
        assert_eq!(decode_prompt(r"a\\nb"), "a\\nb");
        assert_eq!(decode_prompt(r"C:\temp\"), r"C:\temp\");
        assert_eq!(decode_prompt("real\nnewline"), "real\nnewline");
    }

    #[test]
    fn xml_is_escaped() {
        assert_eq!(
            escape_xml(r#"<a & "b" 'c'>"#),
            "&lt;a &amp; &quot;b&quot; &apos;c&apos;&gt;"
        );
        assert_eq!(escape_xml("\u{1}"), "\\u{1}");
    }

    #[test]
    fn bars_are_proportional_to_probability() {
        assert_eq!(bar(1.0, 1.0, 4), "████");
        assert_eq!(bar(0.5, 1.0, 4), "██");
        assert_eq!(bar(0.5, 0.5, 4), "████");
        assert_eq!(bar(1.0 / 32.0, 1.0, 4), "▏");
        assert_eq!(bar(0.0, 1.0, 4), "");
        assert_eq!(bar(0.3, 0.0, 4), "");
    }

    #[test]
    fn reports_show_every_stage() {
        let stages = explain(&LOGITS, &params(0.7, 3, 0.8), &[]);
        let label = |t: usize| format!("\"t{t}\"");
        let text = render_terminal(&stages, 3, &label);
        for (i, s) in stages.iter().enumerate() {
            assert!(text.contains(&format!(
                "({}) {}: {} of 8 tokens survive",
                letter(i),
                s.name,
                s.survivors
            )));
        }
        assert!(text.contains("\"t0\""));
        let svg = render_svg(&stages, 3, "next token after \"a<b\"", &label);
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches(r#"class="panel""#).count(), 4);
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        assert!(svg.contains("&quot;a&lt;b&quot;"));
    }

    /// With knobs on, the stages are those that are on, in the order generation runs them,
    /// and the last one is the distribution a row samples from.
    #[test]
    fn knob_stages_run_in_order_and_end_at_the_sampled_distribution() {
        let prompt = [3u32, 3, 5];
        let p = SamplingParams {
            temperature: 1.5,
            top_k: 6,
            top_p: 1.0,
            processors: Processors {
                repetition_penalty: 1.3,
                min_p: 0.2,
                temperature_last: true,
                ..Processors::OFF
            },
        };
        let stages = explain(&LOGITS, &p, &prompt);
        let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "softmax (T = 1)",
                "repetition_penalty = 1.3",
                "top_k = 6",
                "min_p = 0.2",
                "temperature = 1.5"
            ]
        );
        let context = sampling::Context {
            tokens: &prompt,
            prompt_len: prompt.len(),
        };
        assert_eq!(
            stages.last().unwrap().probs,
            sampling::filtered_distribution_in_context(&LOGITS, &p, context)
        );
        // Greedy keeps the penalty and ends at the argmax of the penalised row.
        let greedy = SamplingParams {
            temperature: 0.0,
            ..p
        };
        let stages = explain(&LOGITS, &greedy, &prompt);
        assert_eq!(stages.len(), 3);
        assert_eq!(
            stages[2].probs,
            sampling::filtered_distribution_in_context(&LOGITS, &greedy, context)
        );
    }
}
