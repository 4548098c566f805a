//! What sampling needs of a decoding step's logits, taken on the device.
//!
//! A GPU computes the logits of hundreds of rows at once. Reading every row back (50,257 f32,
//! 103 MB a step at 512 rows) and scanning it on the host costs more than the forward pass.
//! So on a device each row sends back only its largest logits with their token ids, and its
//! Σ exp(l − max) for the log-probability (see [`sampling::Shortlist`]). A row whose tie may
//! run past the end of its list reads a wider one ([`WIDER`]); a row comes back in full only
//! when its setting reads the whole vocabulary (no top-k) or when the tie runs past that too.
//! The token a row draws is the one the whole row would give.
//!
//! The sum is taken in fixed point: each exp(l − max), at most 1, is truncated to a multiple
//! of 2⁻⁴⁶ and summed as an integer. Integer sums do not depend on the order a device reduces
//! in, so a row's log-probability does not depend on the batch around it. Over GPT-2's 50,257
//! tokens the truncation moves the sum by less than 1e-9 of itself.

use burn::tensor::{Int, IntDType, Tensor, TensorData};
use rand_core::RngCore;

use crate::engine::sampling::{
    self, Context, SamplingParams, sample_from_shortlist, sample_in_context,
};
#[cfg(test)]
use crate::engine::sampling::{Processors, sample_with_log_prob};

/// 2⁴⁶: exp(l − max) ≤ 1 in fixed point, with room for a 2¹⁷-token vocabulary in an i64.
const FIXED_ONE: f64 = (1u64 << 46) as f64;
/// Larger vocabularies could overflow the sum; their rows come back whole.
const MAX_VOCAB: usize = 1 << 17;

/// One step's logits on the host: a shortlist per row, and the rows that came back in full.
pub struct DeviceReadback {
    vocab: usize,
    width: usize,
    logits: Vec<f32>,
    tokens: Vec<u32>,
    exp_sums: Vec<f64>,
    /// For each row, where its list starts in `wide_logits`/`wide_tokens` (of `wide_width`
    /// entries each), if a tie ran past its first list and a wider one holds it.
    wide_at: Vec<Option<usize>>,
    wide_width: usize,
    wide_logits: Vec<f32>,
    wide_tokens: Vec<u32>,
    /// For each row, where its full logits start in `full`, if it came back in full.
    full_at: Vec<Option<usize>>,
    full: Vec<f32>,
}

/// How much wider the second list of a row whose tie ran past its first one is. Half
/// precision rounds logits onto few values, so ties at the k-th place are common there (most
/// rows of a bf16 GPT-2 at top-k 50); a list four times as wide holds nearly all of them, for
/// a fraction of what the whole row costs to read back and scan.
const WIDER: usize = 4;

impl DeviceReadback {
    /// Read back what sampling needs of `logits` `[rows, vocab]` (on any device).
    /// `needs[r]` is how many of row r's largest logits its sampler reads
    /// ([`sampling::shortlist_needed`]); `None` reads the whole row.
    pub fn read(logits: Tensor<2>, needs: &[Option<usize>]) -> Self {
        let [rows, vocab] = logits.dims();
        assert_eq!(rows, needs.len(), "one need per row");
        // One more than any row reads, to show that no tie runs past the list.
        let width = match needs.iter().flatten().max() {
            Some(&n) if vocab <= MAX_VOCAB => (n + 1).min(vocab),
            _ => 0,
        };
        let mut out = Self {
            vocab,
            width,
            logits: Vec::new(),
            tokens: Vec::new(),
            exp_sums: Vec::new(),
            wide_at: vec![None; rows],
            wide_width: 0,
            wide_logits: Vec::new(),
            wide_tokens: Vec::new(),
            full_at: vec![None; rows],
            full: Vec::new(),
        };
        if width > 0 {
            let tokens = logits.clone().argtopk(width, 1);
            let values = logits.clone().gather(1, tokens.clone());
            let max = values.clone().slice([0..rows, 0..1]);
            let fixed = (logits.clone() - max)
                .exp()
                .mul_scalar(FIXED_ONE)
                .cast(IntDType::I64)
                .sum_dim(1);
            out.logits = floats(values);
            // Ids and sums come back in one copy: from a GPU each copy waits for the device.
            let ids_and_sums = ints(Tensor::cat(vec![tokens.cast(IntDType::I64), fixed], 1));
            for row in ids_and_sums.chunks_exact(width + 1) {
                out.tokens.extend(row[..width].iter().map(|&t| t as u32));
                out.exp_sums.push(row[width] as f64 / FIXED_ONE);
            }
        }
        let short = |out: &Self, r: usize| match needs[r] {
            Some(n) => !out.row(r).holds_top(n),
            None => false,
        };
        let tied: Vec<usize> = (0..rows).filter(|&r| short(&out, r)).collect();
        // No first list (a vocabulary too large for the sum) means no wider one either.
        if !tied.is_empty() && width > 0 && width < vocab {
            out.wide_width = (WIDER * width).min(vocab);
            let picked = logits.clone().select(0, row_ids(&tied, &logits.device()));
            let tokens = picked.clone().argtopk(out.wide_width, 1);
            out.wide_logits = floats(picked.gather(1, tokens.clone()));
            out.wide_tokens = ints(tokens).into_iter().map(|t| t as u32).collect();
            for (i, &r) in tied.iter().enumerate() {
                out.wide_at[r] = Some(i * out.wide_width);
            }
        }
        let in_full: Vec<usize> = (0..rows)
            .filter(|&r| needs[r].is_none() || short(&out, r))
            .collect();
        if !in_full.is_empty() {
            let picked = if in_full.len() == rows {
                logits
            } else {
                let ids = row_ids(&in_full, &logits.device());
                logits.select(0, ids)
            };
            out.full = floats(picked);
            for (i, &r) in in_full.iter().enumerate() {
                out.full_at[r] = Some(i * vocab);
            }
        }
        out
    }

    fn row(&self, r: usize) -> sampling::Shortlist<'_> {
        let (logits, tokens, span) = match self.wide_at[r] {
            Some(at) => (
                &self.wide_logits,
                &self.wide_tokens,
                at..at + self.wide_width,
            ),
            None => (
                &self.logits,
                &self.tokens,
                r * self.width..(r + 1) * self.width,
            ),
        };
        sampling::Shortlist {
            logits: logits.get(span.clone()).unwrap_or(&[]),
            tokens: tokens.get(span).unwrap_or(&[]),
            exp_sum: self.exp_sums.get(r).copied().unwrap_or(f64::NAN),
        }
    }

    /// Row `r`'s token and its log-probability, as [`sample_in_context`] on the whole row
    /// would choose it. `params` must read no more of the row than its need in [`Self::read`].
    pub fn sample(
        &self,
        r: usize,
        params: &SamplingParams,
        context: Context,
        rng: &mut impl RngCore,
    ) -> (usize, f32) {
        if let Some(at) = self.full_at[r] {
            return sample_in_context(&self.full[at..at + self.vocab], params, context, rng);
        }
        sample_from_shortlist(&self.row(r), self.vocab, params, rng)
            .expect("a row's shortlist was checked against its need when read")
    }

    /// A NaN or infinite value of row `r`, if the read shows one. A row that holds NaN or
    /// +inf among its largest values always comes back in full (see
    /// [`sampling::Shortlist::holds_top`]) and is scanned whole; a shortlist's own values and
    /// its sum are checked (the largest value contributes exactly 1 to the sum, so a sum
    /// below 1 means the device summed a NaN). A -inf beyond the list is a zero weight and
    /// cannot be seen from here.
    pub fn non_finite(&self, r: usize) -> Option<f32> {
        if let Some(at) = self.full_at[r] {
            return sampling::first_non_finite(&self.full[at..at + self.vocab]);
        }
        let row = self.row(r);
        if let Some(value) = sampling::first_non_finite(row.logits) {
            return Some(value);
        }
        (!(row.exp_sum >= 1.0 && row.exp_sum.is_finite())).then_some(f32::NAN)
    }

    /// How many rows came back in full.
    pub fn rows_in_full(&self) -> usize {
        self.full_at.iter().flatten().count()
    }
}

/// Row indices as a tensor on `device`, for `select`.
fn row_ids(rows: &[usize], device: &burn::tensor::Device) -> Tensor<1, Int> {
    let ids: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    Tensor::from_data(TensorData::new(ids, [rows.len()]), device)
}

fn floats<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    x.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 values")
}

fn ints<const D: usize>(x: Tensor<D, Int>) -> Vec<i64> {
    x.into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("i64 values")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sampling::{sample_rng, shortlist_needed};

    fn settings() -> Vec<SamplingParams> {
        let mut out = vec![SamplingParams::GREEDY, SamplingParams::PURE];
        for (temperature, top_k, top_p) in [
            (1.0, 1, 1.0),
            (0.8, 50, 0.9),
            (1.3, 5, 1.0),
            (0.7, 3, 0.5),
            (1.0, 0, 0.9),
            (1.0, 200, 0.95),
        ] {
            out.push(SamplingParams {
                temperature,
                top_k,
                top_p,
                processors: Processors::OFF,
            });
        }
        out
    }

    /// A NaN or +inf anywhere in a row is seen from what the device sends back for a top-k
    /// row, whether it lies among the largest values or beyond them; finite rows are clean.
    #[test]
    fn non_finite_values_are_seen_from_a_shortlist_read() {
        let vocab = 500;
        let row = |r: usize| -> Vec<f32> {
            (0..vocab)
                .map(|i| ((i * 7919 + r * 104_729) % 1013) as f32 / 97.0 - 5.0)
                .collect()
        };
        let mut rows: Vec<Vec<f32>> = (0..5).map(row).collect();
        rows[1][7] = f32::NAN; // beyond the list: its largest values are finite
        rows[2][3] = f32::INFINITY; // the largest value
        rows[3][499] = f32::NAN; // the last token
        let device = burn::tensor::Device::default();
        let tensor =
            Tensor::<2>::from_data(TensorData::new(rows.concat(), [rows.len(), vocab]), &device);
        let need = shortlist_needed(
            &SamplingParams {
                temperature: 1.0,
                top_k: 5,
                top_p: 1.0,
                processors: Processors::OFF,
            },
            vocab,
        );
        assert!(need.is_some(), "a top-k row reads a shortlist");
        let lists = DeviceReadback::read(tensor, &vec![need; rows.len()]);
        let seen: Vec<bool> = (0..rows.len())
            .map(|r| lists.non_finite(r).is_some())
            .collect();
        assert_eq!(seen, [false, true, true, true, false]);
    }

    /// Rows with ties at the top and at the k-th place, ties longer than any list, and plain
    /// rows: every setting draws from a shortlist the token its whole row gives, with a
    /// log-probability within rounding of the host's, and rows that cannot be decided from
    /// their list come back in full.
    #[test]
    fn a_shortlist_draws_what_the_whole_row_draws() {
        let vocab = 1000;
        let mut rows: Vec<Vec<f32>> = (0..6)
            .map(|r| {
                (0..vocab)
                    .map(|i| ((i * 7919 + r * 104_729) % 1013) as f32 / 97.0 - 5.0)
                    .collect()
            })
            .collect();
        // A tie for the maximum, with the later index first in the row's own order.
        rows[1][10] = 20.0;
        rows[1][3] = 20.0;
        // A tie at every place: longer than any list.
        rows[2] = vec![0.5; vocab];
        // Many ties around the 50th place.
        for i in 0..120 {
            rows[3][i * 8] = 9.0 + (i / 40) as f32;
        }
        let device = burn::tensor::Device::default();
        let flat: Vec<f32> = rows.concat();
        for params in settings() {
            let need = shortlist_needed(&params, vocab);
            let tensor =
                Tensor::<2>::from_data(TensorData::new(flat.clone(), [rows.len(), vocab]), &device);
            let lists = DeviceReadback::read(tensor, &vec![need; rows.len()]);
            match need {
                None => assert_eq!(lists.rows_in_full(), rows.len()),
                Some(_) => assert!(lists.rows_in_full() >= 1, "the flat row: {params:?}"),
            }
            for (r, row) in rows.iter().enumerate() {
                for seed in 0..10 {
                    let mut a = sample_rng(seed, 0, r as u32);
                    let mut b = a.clone();
                    let (token, lp) = lists.sample(r, &params, Context::default(), &mut a);
                    let (want, want_lp) = sample_with_log_prob(row, &params, &mut b);
                    assert_eq!(token, want, "row {r}, {params:?}, seed {seed}");
                    assert!((lp - want_lp).abs() <= 1e-5, "{lp} vs {want_lp}");
                    // Both consumed the same randomness.
                    assert_eq!(a.next_u64(), b.next_u64());
                }
            }
        }
    }

    /// A row whose tie at the k-th place runs past its list reads a list four times as wide
    /// before it reads the whole row, and draws what the whole row draws; a tie longer than
    /// that still brings the whole row.
    #[test]
    fn a_tie_past_the_list_widens_it_before_the_whole_row() {
        let vocab = 2000;
        let mut rows: Vec<Vec<f32>> = (0..3)
            .map(|r| {
                (0..vocab)
                    .map(|i| ((i * 7919 + r * 104_729) % 1013) as f32 / 500.0 - 5.0)
                    .collect()
            })
            .collect();
        // 30 above, then 60 tied: the tie covers places 31 to 90 (past 51, within 204).
        for i in 0..90 {
            rows[0][i * 11] = if i < 30 { 10.0 + i as f32 } else { 9.0 };
        }
        // 30 above, then 300 tied: past 204 too.
        for i in 0..330 {
            rows[1][i * 5] = if i < 30 { 10.0 + i as f32 } else { 9.0 };
        }
        let params = SamplingParams {
            temperature: 0.9,
            top_k: 50,
            top_p: 0.95,
            processors: Processors::OFF,
        };
        let need = shortlist_needed(&params, vocab);
        let device = burn::tensor::Device::default();
        let tensor =
            Tensor::<2>::from_data(TensorData::new(rows.concat(), [rows.len(), vocab]), &device);
        let lists = DeviceReadback::read(tensor, &[need; 3]);
        assert_eq!(
            lists.wide_at.iter().flatten().count(),
            2,
            "rows 0 and 1 widen"
        );
        assert_eq!(
            lists.full_at.iter().flatten().count(),
            1,
            "row 1 comes back whole"
        );
        assert!(lists.full_at[1].is_some() && lists.wide_at[0].is_some());
        for (r, row) in rows.iter().enumerate() {
            for seed in 0..20 {
                let mut a = sample_rng(seed, 0, r as u32);
                let mut b = a.clone();
                let (token, lp) = lists.sample(r, &params, Context::default(), &mut a);
                let (want, want_lp) = sample_with_log_prob(row, &params, &mut b);
                assert_eq!(token, want, "row {r}, seed {seed}");
                assert!((lp - want_lp).abs() <= 1e-5, "{lp} vs {want_lp}");
            }
        }
    }

    /// Rows read from a batch of several settings at once, as a grid runs them: each row's
    /// need sets the list width, and a row needing less reads a prefix of its list.
    #[test]
    fn rows_of_mixed_settings_share_one_read() {
        let vocab = 500;
        // Distinct values: no row falls back to the whole row for a tie.
        let row: Vec<f32> = (0..vocab)
            .map(|i| ((i * 7919 % 10_007) as f32) / 900.0)
            .collect();
        let params = settings();
        let needs: Vec<Option<usize>> = params.iter().map(|p| shortlist_needed(p, vocab)).collect();
        let device = burn::tensor::Device::default();
        let tensor = Tensor::<2>::from_data(
            TensorData::new(row.repeat(params.len()), [params.len(), vocab]),
            &device,
        );
        let lists = DeviceReadback::read(tensor, &needs);
        assert_eq!(
            lists.rows_in_full(),
            needs.iter().filter(|n| n.is_none()).count()
        );
        for (r, p) in params.iter().enumerate() {
            let mut a = sample_rng(3, 1, r as u32);
            let mut b = a.clone();
            assert_eq!(
                lists.sample(r, p, Context::default(), &mut a).0,
                sample_with_log_prob(&row, p, &mut b).0
            );
        }
    }

    /// The fixed-point sum is Σ exp(l − max) to well within what an f32 log-probability shows.
    #[test]
    fn the_fixed_point_sum_is_the_exponential_sum() {
        let vocab = 50_257;
        let row: Vec<f32> = (0..vocab)
            .map(|i| ((i * 7919 % 10_007) as f32) / 700.0 - 8.0)
            .collect();
        let device = burn::tensor::Device::default();
        let tensor = Tensor::<2>::from_data(TensorData::new(row.clone(), [1, vocab]), &device);
        let lists = DeviceReadback::read(tensor, &[Some(10)]);
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let exact: f64 = row.iter().map(|&l| (l as f64 - max).exp()).sum();
        let got = lists.row(0).exp_sum;
        assert!(((got - exact) / exact).abs() < 1e-6, "{got} vs {exact}");
    }

    /// A vocabulary whose fixed-point sum could overflow an i64 comes back whole, and still
    /// samples as the whole row does.
    #[test]
    fn a_vocabulary_too_large_for_the_sum_comes_back_whole() {
        let vocab = MAX_VOCAB + 1;
        let row: Vec<f32> = (0..vocab)
            .map(|i| ((i * 7919 % 10_007) as f32) / 900.0)
            .collect();
        let device = burn::tensor::Device::default();
        let tensor = Tensor::<2>::from_data(TensorData::new(row.clone(), [1, vocab]), &device);
        let lists = DeviceReadback::read(tensor, &[Some(50)]);
        assert_eq!(lists.rows_in_full(), 1);
        assert!(lists.wide_at[0].is_none(), "no wider list is read");
        let params = SamplingParams {
            temperature: 0.8,
            top_k: 50,
            top_p: 0.9,
            processors: Processors::OFF,
        };
        let mut a = sample_rng(2, 0, 0);
        let mut b = a.clone();
        assert_eq!(
            lists.sample(0, &params, Context::default(), &mut a),
            sample_with_log_prob(&row, &params, &mut b)
        );
    }
}
