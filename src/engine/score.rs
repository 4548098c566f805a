//! Teacher-forced scoring: the log-probability a model gives each token of texts someone
//! else wrote (another model, or a human), with a prompt as their shared context, and the
//! final hidden state at each text's last token (the features MAUVE compares).
//!
//! A prompt's texts are scored together: the prompt runs once, its keys and values are
//! widened to every text as in generation, and each text's tokens then run as one block.
//! Only the logits of the scored positions are computed, a block of rows at a time, so memory
//! stays bounded whatever the batch; a text's scores do not depend on which texts share its
//! batch.

use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::engine::generate::{GenerateError, Generator, PreparedPrompt};
use crate::engine::model::KvCache;
use crate::engine::sampling::{first_non_finite, log_prob};

/// Rows of logits computed at once: 192 rows of GPT-2's vocabulary are 39 MB. Each block
/// streams the whole head (154 MB for GPT-2) through the cache once, so fewer, larger blocks
/// read it less often.
const HEAD_ROWS: usize = 192;

/// One text, scored.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredText {
    /// `log p(token_t | prompt, tokens_<t)` for every token of the text (natural log).
    pub logprobs: Vec<f32>,
    /// The final hidden state (after `ln_f`) at the text's last token, or at the prompt's
    /// last token for an empty text: `[n_embd]`.
    pub feature: Vec<f32>,
}

impl Generator {
    /// Score `texts`, each a continuation of `prompt` of at most `width` tokens, `batch_size`
    /// texts per forward pass. Every pass runs `width` positions per text, the shorter texts
    /// padded: the kernels' arithmetic may depend on how many positions a pass runs, and a
    /// text's scores must not depend on the lengths of the texts beside it. The prompt must
    /// leave room for `width` tokens in the model's context (see [`Generator::prepare`],
    /// which crops it so). A NaN or infinite logit stops with [`GenerateError::NonFinite`]
    /// naming the text (`row`) and its token (`step`).
    pub fn score_texts(
        &self,
        prompt: &PreparedPrompt,
        texts: &[&[u32]],
        width: usize,
        batch_size: usize,
    ) -> Result<Vec<ScoredText>, GenerateError> {
        let config = &self.model().config;
        let (vocab, c) = (config.vocab_size, config.n_embd);
        if let Some(&token) = texts
            .iter()
            .flat_map(|t| t.iter())
            .find(|&&t| t as usize >= vocab)
        {
            return Err(GenerateError::BadToken {
                token,
                vocab_size: vocab,
            });
        }
        let longest = texts.iter().map(|t| t.len()).max().unwrap_or(0);
        assert!(longest <= width, "a text is longer than the width scored");
        if prompt.tokens.len() + width > config.n_positions {
            return Err(GenerateError::TooLong {
                max_new_tokens: width,
                n_positions: config.n_positions,
            });
        }
        let model = self.model();
        let mut cache = KvCache::with_capacity(prompt.tokens.len() + width);
        let hidden = model.forward_hidden(self.tokens_tensor(&[&prompt.tokens]), &mut cache);
        let [_, len, _] = hidden.dims();
        let last = hidden.slice([0..1, len - 1..len, 0..c]);
        let prompt_feature = host_rows(last.clone());
        let first_logits = host_rows(model.head(last));
        if let Some(value) = first_non_finite(&first_logits) {
            return Err(GenerateError::NonFinite {
                row: 0,
                step: 0,
                value,
            });
        }

        let mut out = Vec::with_capacity(texts.len());
        // Reused by every block of the head.
        let (mut gathered, mut logits) = (Vec::new(), Vec::new());
        for (chunk_index, chunk) in texts.chunks(batch_size.max(1)).enumerate() {
            let first_row = chunk_index * batch_size.max(1);
            let mut scored: Vec<ScoredText> = chunk
                .iter()
                .map(|t| ScoredText {
                    logprobs: t.first().map_or_else(Vec::new, |&first| {
                        let mut lp = Vec::with_capacity(t.len());
                        lp.push(log_prob(&first_logits, first as usize));
                        lp
                    }),
                    feature: prompt_feature.clone(),
                })
                .collect();
            if chunk.iter().all(|t| t.is_empty()) {
                out.extend(scored);
                continue;
            }
            // Each text padded with its own last token (any id would do: a
            // padded position comes after everything the text's scores read).
            let padded: Vec<Vec<u32>> = chunk
                .iter()
                .map(|t| {
                    let pad = t.last().copied().unwrap_or(prompt.tokens[0]);
                    let mut row = t.to_vec();
                    row.resize(width, pad);
                    row
                })
                .collect();
            let rows: Vec<&[u32]> = padded.iter().map(Vec::as_slice).collect();
            let mut widened = cache.repeat(chunk.len());
            let hidden = host_rows(model.forward_hidden(self.tokens_tensor(&rows), &mut widened));
            // The positions that predict a next token of their text, and each text's feature.
            let mut wanted: Vec<(usize, usize)> = Vec::new();
            for (i, text) in chunk.iter().enumerate() {
                if !text.is_empty() {
                    let at = (i * width + text.len() - 1) * c;
                    scored[i].feature = hidden[at..at + c].to_vec();
                }
                wanted.extend((1..text.len()).map(|t| (i, t)));
            }
            for block in wanted.chunks(HEAD_ROWS) {
                gathered.clear();
                for &(i, t) in block {
                    let at = (i * width + t - 1) * c;
                    gathered.extend_from_slice(&hidden[at..at + c]);
                }
                model.head_rows_into(&gathered, block.len(), &mut logits);
                // Rows in parallel, errors in order: the first bad row is the one reported.
                let rows: Vec<Result<f32, f32>> = logits
                    .par_chunks(vocab)
                    .zip(block.par_iter())
                    .map(|(row, &(i, t))| match first_non_finite(row) {
                        Some(value) => Err(value),
                        None => Ok(log_prob(row, chunk[i][t] as usize)),
                    })
                    .collect();
                for (row, &(i, t)) in rows.into_iter().zip(block) {
                    match row {
                        Ok(lp) => scored[i].logprobs.push(lp),
                        Err(value) => {
                            return Err(GenerateError::NonFinite {
                                row: first_row + i,
                                step: t,
                                value,
                            });
                        }
                    }
                }
            }
            out.extend(scored);
        }
        Ok(out)
    }
}

/// A tensor's values as f32, row-major.
fn host_rows<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 values")
}
