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

/// Output columns per panel: one 16-lane AVX-512 vector, or two 8-lane AVX2 ones.
const NR: usize = 16;
/// Rows per block at most: a block's inputs stay in cache while every panel passes over them.
const ROW_BLOCK: usize = 256;
/// Bytes of inputs per block: with a task's panels beside them, what L2 holds. 256 rows of
/// GPT-2 small's 768 features fit; of the MLP's 3,072, only 84 rows do, and re-reading a
/// block from L3 for every panel costs that product about an eighth of its speed.
const BLOCK_BYTES: usize = 1 << 20;
/// Input features per slice of a panel: 8 KiB of weights, read from L1 by every row tile.
/// With the next slice on its way in and the inputs of the tile's rows, that is what L1 holds.
const K_SLICE: usize = 128;
/// Multiply-adds below which splitting a product over threads costs more than it saves.
const MIN_WORK_PER_TASK: usize = 1 << 18;
/// The most panels a register tile spans.
const MAX_GROUP: usize = 2;

/// The code that runs a register tile, chosen once per product from what the CPU has. All
/// of them compute the same chains of fused multiply-adds, so they agree to the bit; they
/// differ in how many chains run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// 12 rows by two panels: 24 of the 32 vector registers as accumulators.
    Avx512,
    /// 6 rows by one panel (two vectors per row): 12 of the 16 vector registers.
    Avx2,
    /// Plain loops, for other CPUs.
    Portable,
}

impl Kernel {
    /// The fastest this CPU runs. The standard library caches the detection.
    fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return Kernel::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Kernel::Avx2;
            }
        }
        Kernel::Portable
    }

    /// Rows per register tile.
    fn rows(self) -> usize {
        match self {
            Kernel::Avx512 => 12,
            Kernel::Avx2 | Kernel::Portable => 6,
        }
    }

    /// Panels per register tile: each row of the tile covers this many panels' columns.
    fn group(self) -> usize {
        match self {
            Kernel::Avx512 => 2,
            Kernel::Avx2 | Kernel::Portable => 1,
        }
    }
}

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
        self.forward_with(Kernel::best(), x, rows, out);
    }

    fn forward_with(&self, kernel: Kernel, x: &[f32], rows: usize, out: &mut [f32]) {
        assert_eq!(x.len(), rows * self.d_in, "input is not [rows, d_in]");
        assert_eq!(out.len(), rows * self.d_out, "output is not [rows, d_out]");
        if rows == 0 || self.d_out == 0 {
            return;
        }
        // A few tasks per thread for balance, none too small to pay for its hand-off, and
        // each a whole number of tile groups.
        let panels = self.d_out.div_ceil(NR);
        let work_per_panel = rows * self.d_in.max(1) * NR;
        let per_task = MIN_WORK_PER_TASK
            .div_ceil(work_per_panel)
            .max(panels.div_ceil(4 * rayon::current_num_threads()))
            .next_multiple_of(kernel.group())
            .min(panels);
        let dst = OutPtr(out.as_mut_ptr());
        (0..panels.div_ceil(per_task))
            .into_par_iter()
            .for_each(|task| {
                let start = task * per_task;
                let end = (start + per_task).min(panels);
                // SAFETY: tasks own disjoint panel ranges, hence disjoint output columns.
                unsafe { self.panels_into(kernel, x, rows, start..end, dst) };
            });
    }

    /// Columns of panels `range` for every row.
    ///
    /// # Safety
    /// `out` points to `[rows, d_out]` floats, of which no other thread writes these columns.
    unsafe fn panels_into(
        &self,
        kernel: Kernel,
        x: &[f32],
        rows: usize,
        range: std::ops::Range<usize>,
        out: OutPtr,
    ) {
        let k = self.d_in;
        let line = NR; // the floats of one cache line: one panel row, aligned
        let panel_at = |p: usize| self.start + p * k * NR;
        let range_end = panel_at(range.end);
        let group = kernel.group();
        // Row i's accumulators for panel j of a group are `acc[i * group + j]`.
        let mut acc = [[0.0f32; NR]; ROW_BLOCK * MAX_GROUP];
        // A whole number of the widest tiles, so that blocks split into even tiles.
        let row_block = (BLOCK_BYTES / (4 * k.max(1)) / 12 * 12).clamp(12, ROW_BLOCK);
        for block in (0..rows).step_by(row_block) {
            let block_rows = row_block.min(rows - block);
            let xs = &x[block * k..(block + block_rows) * k];
            let tiles = row_tiles(block_rows, kernel.rows());
            // Every tile after the first fetches its share of the next slice while it works
            // on one already in L1. Without this, the first tile of each slice stalls on
            // memory while the others have nothing to overlap with the wait. A lone tile
            // streams the panels once, which the hardware prefetcher follows on its own.
            let fetchers = tiles.len().saturating_sub(1);
            // A lone tile reads each slice once, so it gains nothing from slicing.
            let slice = if tiles.len() > 1 { K_SLICE } else { k.max(1) };
            for first in range.clone().step_by(group) {
                let g = group.min(range.end - first);
                let panels = &self.panels[panel_at(first)..panel_at(first + g)];
                let acc = &mut acc[..block_rows * g];
                acc.iter_mut().for_each(|a| *a = [0.0; NR]);
                // The chains continue across slices of k, so slicing changes no result; it
                // keeps a slice of the panels in L1 while every tile of the block reads it.
                for ks in (0..k).step_by(slice) {
                    let ke = (ks + slice).min(k);
                    // The next slice of each panel: the rest of it, or after its last slice
                    // the start of the matching panel of the next group; nothing past this
                    // task's panels.
                    let next: [&[f32]; MAX_GROUP] = std::array::from_fn(|j| {
                        let at = if ke < k {
                            panel_at(first + j) + ke * NR
                        } else {
                            panel_at(first + g + j)
                        };
                        if j >= g || at >= range_end {
                            return &[][..];
                        }
                        let lines = ((range_end - at) / line).min(slice);
                        &self.panels[at..at + lines * line]
                    });
                    for (t, rows) in tiles.clone().enumerate() {
                        let fetch = match t.checked_sub(1) {
                            Some(f) => next.map(|next| {
                                let lines = next.len() / line;
                                let share = lines.div_ceil(fetchers.max(1));
                                let from = (f * share).min(lines);
                                let to = ((f + 1) * share).min(lines);
                                &next[from * line..to * line]
                            }),
                            None => [&[][..]; MAX_GROUP],
                        };
                        tile_product(
                            kernel,
                            &xs[rows.start * k..rows.end * k],
                            k,
                            ks..ke,
                            panels,
                            &mut acc[rows.start * g..rows.end * g],
                            fetch,
                        );
                    }
                }
                for j in 0..g {
                    let col = (first + j) * NR;
                    let cols = NR.min(self.d_out - col);
                    let bias = self.bias.as_ref().map(|b| &b[col..col + cols]);
                    for (i, a) in acc.iter().skip(j).step_by(g).enumerate() {
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

/// The row tiles of a block of `rows`, at most `mr` rows each: as few tiles as that allows,
/// and as even as possible. A short last tile (32 = 5 x 6 + 2) would run at half the speed per
/// row, because its few accumulators cannot hide the latency of their multiply-adds;
/// 32 = 6 + 6 + 5 + 5 + 5 + 5 keeps every tile busy. Which rows share a tile changes no
/// result. Plain arithmetic, since it is walked for every slice of every panel.
fn row_tiles(
    rows: usize,
    mr: usize,
) -> impl ExactSizeIterator<Item = std::ops::Range<usize>> + Clone {
    let tiles = rows.div_ceil(mr);
    let (base, extra) = (rows / tiles.max(1), rows % tiles.max(1));
    // The first `extra` tiles take one row more.
    let start = move |t: usize| t * base + t.min(extra);
    (0..tiles).map(move |t| start(t)..start(t + 1))
}

/// Continue `tile[i * g + j][c] += x[i][kk] * panel_j[kk][c]` for kk in `ks` in order, one
/// fused multiply-add at a time, for the rows of `x` (`[rows, k]`, at most the kernel's
/// rows) and the `g` panels that `panels` holds one after another (at most the kernel's
/// group). Meanwhile, ask for the cache lines of `fetch` (a hint only: it changes no result).
fn tile_product(
    kernel: Kernel,
    x: &[f32],
    k: usize,
    ks: std::ops::Range<usize>,
    panels: &[f32],
    tile: &mut [[f32; NR]],
    fetch: [&[f32]; MAX_GROUP],
) {
    let g = panels.len() / (k * NR).max(1);
    let rows = tile.len() / g.max(1);
    assert!(
        rows <= kernel.rows()
            && g <= kernel.group()
            && panels.len() == g * k * NR
            && tile.len() == rows * g
            && x.len() == rows * k
            && ks.end <= k
    );
    #[cfg(target_arch = "x86_64")]
    {
        /// The kernel instantiated for the tile's rows (and panels), one arm per shape.
        macro_rules! dispatch {
            ($m:ident, $g:literal, [$($r:literal),*]) => {
                match rows {
                    // SAFETY: `Kernel::best` chose this kernel because the CPU has its
                    // features; the lengths are checked above.
                    $($r => unsafe { $m::tile::<$r, $g>(x, k, ks, panels, tile, fetch) },)*
                    _ => unreachable!("a tile of {rows} rows"),
                }
            };
        }
        match (kernel, g) {
            (Kernel::Avx512, 1) => {
                dispatch!(avx512, 1, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
            }
            (Kernel::Avx512, _) => {
                dispatch!(avx512, 2, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
            }
            (Kernel::Avx2, _) => dispatch!(avx2, 1, [1, 2, 3, 4, 5, 6]),
            (Kernel::Portable, _) => portable_tile(x, k, ks, panels, tile),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    portable_tile(x, k, ks, panels, tile);
}

/// [`tile_product`] as plain loops (no prefetch: a hint it has no way to give).
fn portable_tile(
    x: &[f32],
    k: usize,
    ks: std::ops::Range<usize>,
    panels: &[f32],
    tile: &mut [[f32; NR]],
) {
    let g = panels.len() / (k * NR).max(1);
    for (t, acc) in tile.iter_mut().enumerate() {
        let (i, j) = (t / g, t % g);
        let xs = &x[i * k..(i + 1) * k];
        let panel = &panels[j * k * NR..(j + 1) * k * NR];
        for (c, a) in acc.iter_mut().enumerate() {
            for kk in ks.clone() {
                *a = xs[kk].mul_add(panel[kk * NR + c], *a);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{MAX_GROUP, NR};
    use std::arch::x86_64::*;
    use std::ops::Range;

    /// The register tile of [`super::tile_product`] for `R` rows and `G` panels.
    ///
    /// # Safety
    /// The CPU supports AVX-512F, `tile.len() == R * G`, `x.len() == R * k`,
    /// `panels.len() == G * k * NR` and `ks.end <= k`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile<const R: usize, const G: usize>(
        x: &[f32],
        k: usize,
        ks: Range<usize>,
        panels: &[f32],
        tile: &mut [[f32; NR]],
        fetch: [&[f32]; MAX_GROUP],
    ) {
        debug_assert!(tile.len() == R * G && x.len() == R * k && panels.len() == G * k * NR);
        let (x, w) = (x.as_ptr(), panels.as_ptr());
        let mut acc = [[_mm512_setzero_ps(); G]; R];
        for (i, a) in acc.iter_mut().enumerate() {
            for (j, a) in a.iter_mut().enumerate() {
                // SAFETY: each row of `tile` holds NR = 16 floats.
                *a = unsafe { _mm512_loadu_ps(tile[i * G + j].as_ptr()) };
            }
        }
        let step = |kk: usize, acc: &mut [[__m512; G]; R]| {
            // SAFETY: kk < k, so these reads stay inside `panels` and `x` (lengths above).
            unsafe {
                let mut wv = [_mm512_setzero_ps(); G];
                for (j, wv) in wv.iter_mut().enumerate() {
                    *wv = _mm512_loadu_ps(w.add(j * k * NR + kk * NR));
                }
                for (i, a) in acc.iter_mut().enumerate() {
                    let xv = _mm512_set1_ps(*x.add(i * k + kk));
                    for (a, wv) in a.iter_mut().zip(wv) {
                        *a = _mm512_fmadd_ps(xv, wv, *a);
                    }
                }
            }
        };
        // One line of each `fetch` per step, in the first steps; the rest run without.
        let lines = fetch.map(|f| f.len() / NR);
        let fetching = ks.start + lines.iter().copied().max().unwrap_or(0).min(ks.len());
        for kk in ks.start..fetching {
            let n = kk - ks.start;
            for (f, &lines) in fetch.iter().zip(&lines) {
                if n < lines {
                    // SAFETY: n * NR < f.len(), by `lines`.
                    _mm_prefetch::<_MM_HINT_T0>(unsafe { f.as_ptr().add(n * NR) }.cast());
                }
            }
            step(kk, &mut acc);
        }
        for kk in fetching..ks.end {
            step(kk, &mut acc);
        }
        for (i, a) in acc.iter().enumerate() {
            for (j, a) in a.iter().enumerate() {
                // SAFETY: each row of `tile` holds NR = 16 floats.
                unsafe { _mm512_storeu_ps(tile[i * G + j].as_mut_ptr(), *a) };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{MAX_GROUP, NR};
    use std::arch::x86_64::*;
    use std::ops::Range;

    /// The register tile of [`super::tile_product`] for `R` rows of one panel (`G` = 1).
    ///
    /// # Safety
    /// The CPU supports AVX2 and FMA, `G == 1`, `tile.len() == R`, `x.len() == R * k`,
    /// `panel.len() == k * NR` and `ks.end <= k`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile<const R: usize, const G: usize>(
        x: &[f32],
        k: usize,
        ks: Range<usize>,
        panel: &[f32],
        tile: &mut [[f32; NR]],
        fetch: [&[f32]; MAX_GROUP],
    ) {
        debug_assert!(G == 1 && tile.len() == R && x.len() == R * k && panel.len() == k * NR);
        let fetch = fetch[0];
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

    /// Every kernel this CPU can run: each must give the plain chain's bits.
    fn kernels() -> Vec<Kernel> {
        let mut kernels = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                kernels.push(Kernel::Avx2);
            }
            if is_x86_feature_detected!("avx512f") {
                kernels.push(Kernel::Avx512);
            }
        }
        kernels
    }

    fn forward_with(packed: &PackedLinear, kernel: Kernel, x: &[f32], rows: usize) -> Vec<f32> {
        let mut out = vec![0.0; rows * packed.d_out()];
        packed.forward_with(kernel, x, rows, &mut out);
        out
    }

    #[test]
    fn every_kernel_equals_the_plain_fma_chain_to_the_bit() {
        // Odd sizes: partial panels, an odd panel count (a group of one), uneven row tiles,
        // partial slices of k, more than one row block (of 256 rows, and of 84 for a long
        // k), and enough panels to split over threads.
        for &(rows, k, n) in &[
            (1, 7, 5),
            (7, 33, 37),
            (53, 64, 100),
            (13, 768, 50),
            (32, 300, 170),
            (260, 130, 33),
            (6, 1000, 2000),
            (25, 129, 16 * 7),
            (100, 3000, 40),
        ] {
            let x = random(rows * k, 1);
            let w = random(k * n, 2);
            let b = random(n, 3);
            let packed = PackedLinear::from_in_out(&w, k, n, Some(b.clone()));
            let expected = reference(&x, &w, Some(&b), rows, k, n);
            for kernel in kernels() {
                assert_eq!(
                    forward_with(&packed, kernel, &x, rows),
                    expected,
                    "{kernel:?}: {rows} x {k} x {n}"
                );
            }
        }
    }

    #[test]
    fn a_row_is_the_same_alone_or_among_others() {
        let (k, n) = (768, 300);
        let x = random(50 * k, 4);
        let packed = PackedLinear::from_in_out(&random(k * n, 5), k, n, None);
        for kernel in kernels() {
            let all = forward_with(&packed, kernel, &x, 50);
            for rows in [1, 2, 5, 6, 7, 11, 12, 13, 49] {
                let some = forward_with(&packed, kernel, &x[..rows * k], rows);
                assert_eq!(some[..], all[..rows * n], "{kernel:?}: first {rows} rows");
            }
            let last = forward_with(&packed, kernel, &x[49 * k..], 1);
            assert_eq!(last[..], all[49 * n..], "{kernel:?}");
        }
    }

    #[test]
    fn row_tiles_cover_the_rows_in_as_few_and_even_tiles_as_fit() {
        let tiles = |rows, mr| row_tiles(rows, mr).collect::<Vec<_>>();
        assert_eq!(tiles(32, 6), [0..6, 6..12, 12..17, 17..22, 22..27, 27..32]);
        assert_eq!(tiles(32, 12), [0..11, 11..22, 22..32]);
        assert!(tiles(0, 6).is_empty());
        for mr in [6, 12] {
            for rows in 1..=300 {
                assert_eq!(row_tiles(rows, mr).len(), rows.div_ceil(mr), "{rows} rows");
                let tiles = tiles(rows, mr);
                assert_eq!(tiles.first().unwrap().start, 0);
                assert_eq!(tiles.last().unwrap().end, rows);
                assert!(tiles.windows(2).all(|w| w[0].end == w[1].start));
                let lens: Vec<usize> = tiles.iter().map(|t| t.len()).collect();
                let (min, max) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
                assert!(*max <= mr && max - min <= 1, "{rows} rows: {lens:?}");
            }
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
