//! Beam search with the semantics of Hugging Face transformers' `generate(num_beams=..)`.

/// When beam search may stop before `max_new_tokens`, exactly as transformers'
/// `early_stopping` (`True`, `False`, `"never"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarlyStopping {
    /// Stop as soon as `num_beams` hypotheses have finished (`early_stopping = true`).
    Always,
    /// Stop when no running beam can beat the worst finished hypothesis, judged at the
    /// current length (`early_stopping = false`, transformers' default heuristic).
    #[default]
    Heuristic,
    /// Stop only when no running beam can beat the worst finished hypothesis at any length
    /// up to the maximum (`early_stopping = "never"`).
    Never,
}

/// Beam-search settings, named as in transformers' `generate`.
#[derive(Debug, Clone, PartialEq)]
pub struct BeamParams {
    pub num_beams: usize,
    /// A finished hypothesis scores `sum of log-probs / generated_length ^ length_penalty`;
    /// above 0 favours longer text, below 0 shorter.
    pub length_penalty: f64,
    pub early_stopping: EarlyStopping,
    pub num_return_sequences: usize,
}

impl BeamParams {
    pub fn new(num_beams: usize) -> Self {
        Self {
            num_beams,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Heuristic,
            num_return_sequences: 1,
        }
    }
}

/// A finished beam.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    /// Generated tokens, ending with end-of-text when that finished it.
    pub tokens: Vec<u32>,
    /// Each token's log-probability under the model (T = 1, no filtering).
    pub logprobs: Vec<f32>,
    /// The length-penalised score beams are ranked by (transformers' `sequences_scores`).
    pub score: f32,
    pub ended_with_eos: bool,
}

/// What the model must run next: for each new beam, the old beam it continues (to reorder
/// the KV cache) and the token it appends.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub parents: Vec<usize>,
    pub tokens: Vec<u32>,
}

/// Masks out candidates, as transformers adds −1e9 in f32 rather than removing them.
const MASK: f32 = -1.0e9;

#[derive(Debug, Clone)]
struct Beam {
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    score: f32,
}

#[derive(Debug, Clone)]
struct Slot {
    beam: Beam,
    score: f32,
    finished: bool,
}

/// The best `keep` continuations `(score, beam, token)` over all beams, best first: by
/// accumulated log-probability `logprobs[beam][token] + scores[beam]` (in f32), then beam, then
/// token. A beam contributes at most `keep` of them, its own best in that order, so each row
/// is scanned once for those instead of every (beam, token) pair being collected and
/// partially sorted.
fn best_continuations(
    logprobs: &[f32],
    vocab: usize,
    scores: &[f32],
    keep: usize,
) -> Vec<(f32, usize, u32)> {
    let by_score = |a: &(f32, usize, u32), b: &(f32, usize, u32)| {
        b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2)))
    };
    let mut candidates: Vec<(f32, usize, u32)> = Vec::with_capacity(scores.len() * keep + 1);
    for (b, &score) in scores.iter().enumerate() {
        let row = &logprobs[b * vocab..(b + 1) * vocab];
        // This row's best so far, best first. Tokens come in ascending order, so a newcomer
        // loses every tie and enters only with a strictly higher score than the last kept.
        let mut best: Vec<(f32, usize, u32)> = Vec::with_capacity(keep + 1);
        for (t, &lp) in row.iter().enumerate() {
            let s = lp + score;
            if best.len() == keep {
                if s.total_cmp(&best[keep - 1].0).is_le() {
                    continue;
                }
                best.pop();
            }
            let c = (s, b, t as u32);
            let at = best.partition_point(|x| by_score(x, &c).is_lt());
            best.insert(at, c);
        }
        candidates.extend(best);
    }
    candidates.sort_by(by_score);
    candidates.truncate(keep);
    candidates
}

/// The beam-search state machine, independent of the model: fed each step's log-probabilities
/// of the running beams, it says which beams continue with which token.
///
/// It follows transformers' vectorised beam search (5.x) step for step, in f32 as it does:
/// each step keeps the best `2 · num_beams` continuations over all beams; those that end (on
/// end-of-text, or on reaching `max_new_tokens`) and rank among the first `num_beams` enter
/// the pool of finished hypotheses, scored by `sum_logprobs / generated_len^length_penalty`
/// where `generated_len` counts the new token; the best `num_beams` that did not end run on.
/// Search stops when the pool can no longer improve (per `early_stopping`), when the pool is
/// full and `early_stopping` is `Always`, or at `max_new_tokens`.
pub struct BeamSearch {
    params: BeamParams,
    max_new_tokens: usize,
    eos: u32,
    running: Vec<Beam>,
    pool: Vec<Slot>,
    generated: usize,
    improvement_possible: bool,
}

impl BeamSearch {
    pub fn new(params: BeamParams, max_new_tokens: usize, eos: u32) -> Self {
        let n = params.num_beams;
        // All beams start as the prompt; only the first may expand at the first step, or the
        // first step would pick the same continuation `num_beams` times.
        let running = (0..n)
            .map(|i| Beam {
                tokens: Vec::new(),
                logprobs: Vec::new(),
                score: if i == 0 { 0.0 } else { MASK },
            })
            .collect::<Vec<_>>();
        let pool = (0..n)
            .map(|_| Slot {
                beam: running[0].clone(),
                score: MASK,
                finished: false,
            })
            .collect();
        Self {
            params,
            max_new_tokens,
            eos,
            running,
            pool,
            generated: 0,
            improvement_possible: true,
        }
    }

    /// Advance by one token. `logprobs` is `[num_beams, vocab]`, row `b` the log-softmax of
    /// running beam `b`'s next-token logits. Returns `None` when the search has ended.
    pub fn step(&mut self, logprobs: &[f32], vocab: usize) -> Option<Step> {
        let n = self.params.num_beams;
        let keep = 2 * n;
        let generated = self.generated + 1;
        let at_max = generated >= self.max_new_tokens;

        let scores: Vec<f32> = self.running.iter().map(|beam| beam.score).collect();
        let candidates = best_continuations(logprobs, vocab, &scores, keep);
        let ended: Vec<bool> = candidates
            .iter()
            .map(|&(_, _, t)| at_max || t == self.eos)
            .collect();
        let extend = |&(score, b, t): &(f32, usize, u32), beams: &[Beam]| {
            let parent = &beams[b];
            let mut tokens = parent.tokens.clone();
            tokens.push(t);
            let mut lps = parent.logprobs.clone();
            lps.push(logprobs[b * vocab + t as usize]);
            Beam {
                tokens,
                logprobs: lps,
                score,
            }
        };

        // Finished hypotheses: only those ranked among the first `num_beams` may enter.
        let penalty = (generated as f64).powf(self.params.length_penalty) as f32;
        let pool_full = self.pool.iter().all(|s| s.finished);
        let mut merged: Vec<Slot> = self.pool.clone();
        for (i, c) in candidates.iter().enumerate() {
            let enters = ended[i] && i < n;
            let mut score = c.0 / penalty;
            if pool_full && self.params.early_stopping == EarlyStopping::Always {
                score += MASK;
            }
            if !self.improvement_possible {
                score += MASK;
            }
            if !enters {
                score += MASK;
            }
            merged.push(Slot {
                beam: extend(c, &self.running),
                score,
                finished: enters,
            });
        }
        let mut order: Vec<usize> = (0..merged.len()).collect();
        order.sort_by(|&a, &b| merged[b].score.total_cmp(&merged[a].score).then(a.cmp(&b)));
        self.pool = order[..n].iter().map(|&i| merged[i].clone()).collect();

        // Beams that run on: the best `num_beams` continuations that did not end.
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        let running_score = |i: usize| candidates[i].0 + if ended[i] { MASK } else { 0.0 };
        order.sort_by(|&a, &b| {
            running_score(b)
                .total_cmp(&running_score(a))
                .then(a.cmp(&b))
        });
        let parents: Vec<usize> = order[..n].iter().map(|&i| candidates[i].1).collect();
        let next: Vec<Beam> = order[..n]
            .iter()
            .map(|&i| {
                let mut beam = extend(&candidates[i], &self.running);
                beam.score = running_score(i);
                beam
            })
            .collect();
        self.running = next;
        self.generated = generated;

        // Could a running beam still beat the worst finished hypothesis?
        let best_len = if self.params.early_stopping == EarlyStopping::Never
            && self.params.length_penalty > 0.0
        {
            self.max_new_tokens
        } else {
            generated
        };
        let best_possible =
            self.running[0].score / (best_len as f64).powf(self.params.length_penalty) as f32;
        let worst = self
            .pool
            .iter()
            .map(|s| s.score)
            .fold(f32::INFINITY, f32::min);
        let beatable = self
            .pool
            .iter()
            .any(|s| best_possible > if s.finished { worst } else { MASK });
        self.improvement_possible &= beatable;

        let pool_full = self.pool.iter().all(|s| s.finished);
        let stop = !self.improvement_possible
            || (pool_full && self.params.early_stopping == EarlyStopping::Always)
            || ended.iter().all(|&e| e);
        if stop {
            return None;
        }
        Some(Step {
            parents,
            tokens: self
                .running
                .iter()
                .map(|b| *b.tokens.last().expect("one token"))
                .collect(),
        })
    }

    /// The best `num_return_sequences` finished hypotheses, best first.
    pub fn finish(self) -> Vec<Hypothesis> {
        let eos = self.eos;
        self.pool
            .into_iter()
            .filter(|s| s.finished)
            .take(self.params.num_return_sequences)
            .map(|s| Hypothesis {
                ended_with_eos: s.beam.tokens.last() == Some(&eos),
                tokens: s.beam.tokens,
                logprobs: s.beam.logprobs,
                score: s.score,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the plain definition (every pair collected, sorted, cut), on rows with ties,
    /// a masked beam (whose scores collapse to a few f32 values) and a beam of -inf.
    #[test]
    fn best_continuations_are_the_best_of_all_pairs() {
        let vocab = 300;
        let scores = [0.0f32, -3.5, MASK, -0.25, f32::NEG_INFINITY];
        let mut logprobs = Vec::new();
        for b in 0..scores.len() {
            logprobs.extend((0..vocab).map(|t| -(((t * 37 + b * 11) % 97) as f32) / 9.0));
        }
        for keep in [1, 2, 6, 16, 40, 297] {
            let mut all: Vec<(f32, usize, u32)> = (0..scores.len())
                .flat_map(|b| (0..vocab).map(move |t| (b, t)))
                .map(|(b, t)| (logprobs[b * vocab + t] + scores[b], b, t as u32))
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
            all.truncate(keep);
            let got = best_continuations(&logprobs, vocab, &scores, keep);
            let bits = |v: &[(f32, usize, u32)]| -> Vec<(u32, usize, u32)> {
                v.iter().map(|&(s, b, t)| (s.to_bits(), b, t)).collect()
            };
            assert_eq!(bits(&got), bits(&all), "keep = {keep}");
        }
    }
}
