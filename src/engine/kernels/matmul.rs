//! Matrix products of decoding on the CPU: `x W + b` against weights packed once at load.
//!
//! Two reasons not to hand these products to the backend's matmul. The first is
//! reproducibility: general matrix kernels choose their blocking, their reduction order and
//! even their algorithm (a matrix-vector path for one row) from the shape, so a row's result
//! rounds differently depending on how many other rows share its batch, and a sample would
//! then depend on the batch size. Here every output element is one fused multiply-add chain
//! over the input features in order, `acc = fma(x[k], w[k], acc)` for k = 0, 1, ..., whatever
//! the number of rows, the tiling or the thread count. The SIMD and the scalar code compute
//! that same chain, so they agree to the bit.
//!
//! The second is speed. Decoding multiplies a few dozen rows by the same weights at every
//! step; packing the weights once into column panels lets each step stream them contiguously
//! instead of re-packing (or striding through) a row-major matrix on every call.

use rayon::prelude::*;

/// Output columns per panel: two 8-lane vectors.
const NR: usize = 16;
/// Rows per register tile: with two vectors per row, six rows use 12 of the 16 AVX registers
/// as accumulators.
const MR: usize = 6;
/// Rows per block: a block's inputs stay in cache while every panel passes over them.
const ROW_BLOCK: usize = 256;
/// Input features per slice of a panel: 8 KiB of weights, read from L1 by every row tile.
/// With the next slice on its way in and the inputs of 32 rows, that is what L1 holds.
const K_SLICE: usize = 128;
/// Multiply-adds below which splitting a product over threads costs more than it saves.
const MIN_WORK_PER_TASK: usize = 1 << 18;

/// A weight matrix `[d_in, d_out]` (with its bias) laid out for [`PackedLinear::forward`]:
/// `ceil(d_out / 16)` panels, each holding 16 output columns for every input feature in turn,
/// the last panel padded with zeros.
#[derive(Clone)]
pub struct PackedLinear {
    d_in: usize,
    d_out: usize,
    /// The panels start at `start`, the first 64-byte boundary of the buffer, so that no
    /// load of a panel row straddles two cache lines.
    panels: Vec<f32>,
    start: usize,
    bias: Option<Vec<f32>>,
}

impl PackedLinear {
    /// Pack `weight`, row-major `[d_in, d_out]` (the layout of GPT-2's `Conv1D`).
    pub fn from_in_out(weight: &[f32], d_in: usize, d_out: usize, bias: Option<Vec<f32>>) -> Self {
        assert_eq!(weight.len(), d_in * d_out, "weight is not [d_in, d_out]");
        Self::pack(d_in, d_out, bias, |k, j| weight[k * d_out + j])
    }

    /// Pack `weight`, row-major `[d_out, d_in]`: an embedding matrix used as the LM head.
    pub fn from_out_in(weight: &[f32], d_out: usize, d_in: usize, bias: Option<Vec<f32>>) -> Self {
        assert_eq!(weight.len(), d_in * d_out, "weight is not [d_out, d_in]");
        Self::pack(d_in, d_out, bias, |k, j| weight[j * d_in + k])
    }

    fn pack(
        d_in: usize,
        d_out: usize,
        bias: Option<Vec<f32>>,
        at: impl Fn(usize, usize) -> f32 + Sync,
    ) -> Self {
        if let Some(b) = &bias {
            assert_eq!(b.len(), d_out, "bias is not [d_out]");
        }
        const LINE: usize = 64 / std::mem::size_of::<f32>();
        let size = d_out.div_ceil(NR) * d_in * NR;
        let mut panels = vec![0.0f32; size + LINE];
        let start = panels.as_ptr().align_offset(64).min(LINE);
        panels[start..start + size]
            .par_chunks_mut((d_in * NR).max(1))
            .enumerate()
            .for_each(|(p, panel)| {
                for (k, lane) in panel.chunks_exact_mut(NR).enumerate() {
                    for (c, w) in lane.iter_mut().enumerate() {
                        let j = p * NR + c;
                        if j < d_out {
                            *w = at(k, j);
                        }
                    }
                }
            });
        Self {
            d_in,
            d_out,
            panels,
            start,
            bias,
        }
    }

    pub fn d_in(&self) -> usize {
        self.d_in
    }

    pub fn d_out(&self) -> usize {
        self.d_out
    }

    /// Column `j` of the weight, `[d_in]`, into `out`: for a tied LM head, the embedding of
    /// token `j`, read from the panels instead of kept twice.
    pub fn column_into(&self, j: usize, out: &mut [f32]) {
        assert!(
            j < self.d_out,
            "column {j} of a weight with {} columns",
            self.d_out
        );
        assert_eq!(out.len(), self.d_in, "output is not [d_in]");
        let panel = &self.panels[self.start + (j / NR) * self.d_in * NR..];
        for (k, o) in out.iter_mut().enumerate() {
            *o = panel[k * NR + j % NR];
        }
    }

    /// `x W + b` for `x` row-major `[rows, d_in]`; returns `[rows, d_out]` row-major.
    pub fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; rows * self.d_out];
        self.forward_into(x, rows, &mut out);
        out
    }

    /// As [`PackedLinear::forward`], into `out` (`[rows, d_out]`).
    pub fn forward_into(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        assert_eq!(x.len(), rows * self.d_in, "input is not [rows, d_in]");
        assert_eq!(out.len(), rows * self.d_out, "output is not [rows, d_out]");
        if rows == 0 || self.d_out == 0 {
            return;
        }
        // A few tasks per thread for balance, none too small to pay for its hand-off.
        let panels = self.d_out.div_ceil(NR);
        let work_per_panel = rows * self.d_in.max(1) * NR;
        let per_task = MIN_WORK_PER_TASK
            .div_ceil(work_per_panel)
            .max(panels.div_ceil(4 * rayon::current_num_threads()))
            .min(panels);
        let dst = OutPtr(out.as_mut_ptr());
        (0..panels.div_ceil(per_task))
            .into_par_iter()
            .for_each(|task| {
                let start = task * per_task;
                let end = (start + per_task).min(panels);
                // SAFETY: tasks own disjoint panel ranges, hence disjoint output columns.
                unsafe { self.panels_into(x, rows, start..end, dst) };
            });
    }

    /// Columns of panels `range` for every row.
    ///
    /// # Safety
    /// `out` points to `[rows, d_out]` floats, of which no other thread writes these columns.
    unsafe fn panels_into(
        &self,
        x: &[f32],
        rows: usize,
        range: std::ops::Range<usize>,
        out: OutPtr,
    ) {
        let k = self.d_in;
        let line = NR; // the floats of one cache line: one panel row, aligned
        let range_end = self.start + range.end * k * NR;
        let mut acc = [[0.0f32; NR]; ROW_BLOCK];
        for block in (0..rows).step_by(ROW_BLOCK) {
            let block_rows = ROW_BLOCK.min(rows - block);
            let xs = &x[block * k..(block + block_rows) * k];
            let tiles = row_tiles(block_rows);
            // Every tile after the first fetches its share of the next slice while it works
            // on one already in L1. Without this, the first tile of each slice stalls on
            // memory while the others have nothing to overlap with the wait. A lone tile
            // streams the panels once, which the hardware prefetcher follows on its own.
            let fetchers = tiles.len().saturating_sub(1);
            // A lone tile reads each slice once, so it gains nothing from slicing.
            let slice = if tiles.len() > 1 { K_SLICE } else { k.max(1) };
            for p in range.clone() {
                let panel_at = self.start + p * k * NR;
                let panel = &self.panels[panel_at..panel_at + k * NR];
                let acc = &mut acc[..block_rows];
                acc.iter_mut().for_each(|a| *a = [0.0; NR]);
                // The chains continue across slices of k, so slicing changes no result; it
                // keeps a slice of the panel in L1 while every tile of the block reads it.
                for ks in (0..k).step_by(slice) {
                    let ke = (ks + slice).min(k);
                    // The next slice: the rest of this panel, or the start of the next one,
                    // which follows it in memory; nothing past this task's panels.
                    let next = panel_at + ke * NR;
                    let next_lines = ((range_end - next) / line).min(slice);
                    let share = next_lines.div_ceil(fetchers.max(1));
                    for (t, rows) in tiles.clone().enumerate() {
                        let fetch = match t.checked_sub(1) {
                            Some(f) => {
                                let from = (f * share).min(next_lines);
                                let to = ((f + 1) * share).min(next_lines);
                                &self.panels[next + from * line..next + to * line]
                            }
                            None => &[],
                        };
                        tile_product(
                            &xs[rows.start * k..rows.end * k],
                            k,
                            ks..ke,
                            panel,
                            &mut acc[rows],
                            fetch,
                        );
                    }
                }
                let col = p * NR;
                let cols = NR.min(self.d_out - col);
                let bias = self.bias.as_ref().map(|b| &b[col..col + cols]);
                for (i, a) in acc.iter().enumerate() {
                    // SAFETY: row block + i < rows and columns col..col + cols < d_out.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(
                            out.0.add((block + i) * self.d_out + col),
                            cols,
                        )
                    };
                    match bias {
                        Some(b) => {
                            for ((d, a), b) in dst.iter_mut().zip(a).zip(b) {
                                *d = a + b;
                            }
                        }
                        None => dst.copy_from_slice(&a[..cols]),
                    }
                }
            }
        }
    }
}

/// The shape only: printing a model should not print its weights.
impl std::fmt::Debug for PackedLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedLinear({} -> {})", self.d_in, self.d_out)
    }
}

/// The output buffer, shared by tasks that write disjoint columns of it.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: only used by `forward_into`, whose tasks write disjoint columns.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// The row tiles of a block of `rows`: as few as [`MR`] rows allow, and as even as possible.
/// A short last tile (32 = 5 x 6 + 2) would run at half the speed per row, because its few
/// accumulators cannot hide the latency of their multiply-adds; 32 = 6 + 6 + 5 + 5 + 5 + 5
/// keeps every tile busy. Which rows share a tile changes no result. Plain arithmetic, since
/// it is walked for every slice of every panel.
fn row_tiles(rows: usize) -> impl ExactSizeIterator<Item = std::ops::Range<usize>> + Clone {
    let tiles = rows.div_ceil(MR);
    let (base, extra) = (rows / tiles.max(1), rows % tiles.max(1));
    // The first `extra` tiles take one row more.
    let start = move |t: usize| t * base + t.min(extra);
    (0..tiles).map(move |t| start(t)..start(t + 1))
}

/// Continue `tile[i][c] += x[i][kk] * panel[kk][c]` for kk in `ks` in order, one fused
/// multiply-add at a time, for the `tile.len()` (at most [`MR`]) rows of `x` (`[rows, k]`).
/// Meanwhile, ask for the cache lines of `fetch` (a hint only: it changes no result).
fn tile_product(
    x: &[f32],
    k: usize,
    ks: std::ops::Range<usize>,
    panel: &[f32],
    tile: &mut [[f32; NR]],
    fetch: &[f32],
) {
    let rows = tile.len();
    assert!(rows <= MR && x.len() == rows * k && panel.len() == k * NR && ks.end <= k);
    #[cfg(target_arch = "x86_64")]
    if simd::available() {
        // SAFETY: the CPU has AVX2 and FMA; the lengths are checked above.
        unsafe {
            match rows {
                1 => simd::tile::<1>(x, k, ks, panel, tile, fetch),
                2 => simd::tile::<2>(x, k, ks, panel, tile, fetch),
                3 => simd::tile::<3>(x, k, ks, panel, tile, fetch),
                4 => simd::tile::<4>(x, k, ks, panel, tile, fetch),
                5 => simd::tile::<5>(x, k, ks, panel, tile, fetch),
                6 => simd::tile::<6>(x, k, ks, panel, tile, fetch),
                _ => {}
            }
        }
        return;
    }
    let _ = fetch; // a hint the portable code has no way to give
    for (i, acc) in tile.iter_mut().enumerate() {
        let xs = &x[i * k..(i + 1) * k];
        for (c, a) in acc.iter_mut().enumerate() {
            for kk in ks.clone() {
                *a = xs[kk].mul_add(panel[kk * NR + c], *a);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::NR;
    use std::arch::x86_64::*;
    use std::ops::Range;

    /// The standard library caches the detection, so asking at every tile costs a load.
    pub fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// The register tile of [`super::tile_product`] for `R` rows.
    ///
    /// # Safety
    /// The CPU supports AVX2 and FMA, `tile.len() == R`, `x.len() == R * k`,
    /// `panel.len() == k * NR` and `ks.end <= k`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile<const R: usize>(
        x: &[f32],
        k: usize,
        ks: Range<usize>,
        panel: &[f32],
        tile: &mut [[f32; NR]],
        fetch: &[f32],
    ) {
        debug_assert!(tile.len() == R && x.len() == R * k && panel.len() == k * NR);
        let (x, w) = (x.as_ptr(), panel.as_ptr());
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for (a, t) in acc.iter_mut().zip(tile.iter()) {
            // SAFETY: each row of `tile` holds NR = 16 floats.
            unsafe {
                a[0] = _mm256_loadu_ps(t.as_ptr());
                a[1] = _mm256_loadu_ps(t.as_ptr().add(8));
            }
        }
        // One line of `fetch` per step, in the first steps; the rest run without.
        let fetching = ks.start + (fetch.len() / NR).min(ks.len());
        let step = |kk: usize, acc: &mut [[__m256; 2]; R]| {
            // SAFETY: kk < k, so these reads stay inside `panel` and `x` (lengths above).
            unsafe {
                let w0 = _mm256_loadu_ps(w.add(kk * NR));
                let w1 = _mm256_loadu_ps(w.add(kk * NR + 8));
                for (i, a) in acc.iter_mut().enumerate() {
                    let xv = _mm256_broadcast_ss(&*x.add(i * k + kk));
                    a[0] = _mm256_fmadd_ps(xv, w0, a[0]);
                    a[1] = _mm256_fmadd_ps(xv, w1, a[1]);
                }
            }
        };
        for kk in ks.start..fetching {
            // SAFETY: (kk - ks.start) * NR < fetch.len(), by `fetching`.
            _mm_prefetch::<_MM_HINT_T0>(unsafe { fetch.as_ptr().add((kk - ks.start) * NR) }.cast());
            step(kk, &mut acc);
        }
        for kk in fetching..ks.end {
            step(kk, &mut acc);
        }
        for (a, t) in acc.iter().zip(tile.iter_mut()) {
            // SAFETY: each row of `tile` holds NR = 16 floats.
            unsafe {
                _mm256_storeu_ps(t.as_mut_ptr(), a[0]);
                _mm256_storeu_ps(t.as_mut_ptr().add(8), a[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    /// Uniform in [-1, 1).
    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| (rng.next_u32() >> 8) as f32 / (1u32 << 23) as f32 - 1.0)
            .collect()
    }

    /// The same chain of fused multiply-adds, written as plainly as possible.
    fn reference(
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        rows: usize,
        k: usize,
        n: usize,
    ) -> Vec<f32> {
        let mut out = vec![0.0; rows * n];
        for i in 0..rows {
            for j in 0..n {
                let mut acc = 0.0f32;
                for kk in 0..k {
                    acc = x[i * k + kk].mul_add(w[kk * n + j], acc);
                }
                out[i * n + j] = acc + b.map_or(0.0, |b| b[j]);
            }
        }
        out
    }

    #[test]
    fn equals_the_plain_fma_chain_to_the_bit() {
        // Odd sizes: partial panels, uneven row tiles, partial slices of k, more than one
        // row block, and enough panels to split over threads.
        for &(rows, k, n) in &[
            (1, 7, 5),
            (7, 33, 37),
            (53, 64, 100),
            (13, 768, 50),
            (32, 300, 170),
            (260, 130, 33),
            (6, 1000, 2000),
        ] {
            let x = random(rows * k, 1);
            let w = random(k * n, 2);
            let b = random(n, 3);
            let packed = PackedLinear::from_in_out(&w, k, n, Some(b.clone()));
            assert_eq!(
                packed.forward(&x, rows),
                reference(&x, &w, Some(&b), rows, k, n),
                "{rows} x {k} x {n}"
            );
        }
    }

    #[test]
    fn a_row_is_the_same_alone_or_among_others() {
        let (k, n) = (768, 300);
        let x = random(50 * k, 4);
        let packed = PackedLinear::from_in_out(&random(k * n, 5), k, n, None);
        let all = packed.forward(&x, 50);
        for rows in [1, 2, 5, 6, 7, 49] {
            let some = packed.forward(&x[..rows * k], rows);
            assert_eq!(some[..], all[..rows * n], "first {rows} rows");
        }
        let last = packed.forward(&x[49 * k..], 1);
        assert_eq!(last[..], all[49 * n..]);
    }

    #[test]
    fn row_tiles_cover_the_rows_in_as_few_and_even_tiles_as_fit() {
        let tiles = |rows| row_tiles(rows).collect::<Vec<_>>();
        assert_eq!(tiles(32), [0..6, 6..12, 12..17, 17..22, 22..27, 27..32]);
        assert!(tiles(0).is_empty());
        for rows in 1..=300 {
            assert_eq!(row_tiles(rows).len(), rows.div_ceil(MR), "{rows} rows");
            let tiles = tiles(rows);
            assert_eq!(tiles.len(), rows.div_ceil(MR), "{rows} rows");
            assert_eq!(tiles.first().unwrap().start, 0);
            assert_eq!(tiles.last().unwrap().end, rows);
            assert!(tiles.windows(2).all(|w| w[0].end == w[1].start));
            let lens: Vec<usize> = tiles.iter().map(|t| t.len()).collect();
            let (min, max) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
            assert!(*max <= MR && max - min <= 1, "{rows} rows: {lens:?}");
        }
    }

    #[test]
    fn packs_a_transposed_matrix_the_same_way() {
        let (k, n) = (20, 35);
        let w = random(k * n, 6);
        let mut wt = vec![0.0; k * n];
        for kk in 0..k {
            for j in 0..n {
                wt[j * k + kk] = w[kk * n + j];
            }
        }
        let x = random(3 * k, 7);
        assert_eq!(
            PackedLinear::from_in_out(&w, k, n, None).forward(&x, 3),
            PackedLinear::from_out_in(&wt, n, k, None).forward(&x, 3)
        );
    }

    #[test]
    fn is_close_to_a_double_precision_product() {
        let (rows, k, n) = (4, 3072, 40);
        let x = random(rows * k, 8);
        let w = random(k * n, 9);
        let got = PackedLinear::from_in_out(&w, k, n, None).forward(&x, rows);
        for i in 0..rows {
            for j in 0..n {
                let exact: f64 = (0..k)
                    .map(|kk| x[i * k + kk] as f64 * w[kk * n + j] as f64)
                    .sum();
                assert!((got[i * n + j] as f64 - exact).abs() < 1e-3, "{i},{j}");
            }
        }
    }
}
