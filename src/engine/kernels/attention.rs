//! Causal self-attention of decoding on the CPU, over a KV cache held in plain memory.
//!
//! On the host the model's projections already produce plain `f32` rows (see `matmul`), so
//! attention reads queries, keys and values straight from them instead of going back through
//! tensors. Each (row, head) is one task: its scores, softmax and weighted sum of values are
//! computed in a fixed order, so a row's result does not depend on the batch it shares, and
//! the cost of a step grows only with the positions actually held.

use std::sync::Arc;

use rayon::prelude::*;

/// Keys and values of one layer. The first positions may be shared by every row (a prompt
/// widened to many samples): they are held once, so that neither memory nor the bytes each
/// step reads grow with the prompt times the rows. Each row's own positions follow them in
/// `k` and `v`, `[batch, n_head, room, head_dim]` each; own positions past the cache's length
/// are room not yet written.
#[derive(Clone)]
pub struct LayerCache {
    shared: Option<Arc<Shared>>,
    k: Vec<f32>,
    v: Vec<f32>,
    batch: usize,
    heads: usize,
    dim: usize,
    room: usize,
}

/// The positions every row of a [`LayerCache`] shares: keys and values `[n_head, len,
/// head_dim]`.
struct Shared {
    k: Vec<f32>,
    v: Vec<f32>,
    len: usize,
}

impl std::fmt::Debug for LayerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LayerCache([{}, {}, {}, {}])",
            self.batch, self.heads, self.room, self.dim
        )
    }
}

impl LayerCache {
    /// An empty cache with room for `room` positions, zeroed. Fresh pages from the system
    /// cost nothing until written; memory the allocator reuses is cleared once here.
    pub fn new(batch: usize, heads: usize, dim: usize, room: usize) -> Self {
        let size = batch * heads * room * dim;
        Self {
            shared: None,
            k: vec![0.0; size],
            v: vec![0.0; size],
            batch,
            heads,
            dim,
            room,
        }
    }

    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Positions held once for every row.
    fn shared_len(&self) -> usize {
        self.shared.as_ref().map_or(0, |s| s.len)
    }

    /// Rows `indices` (rows may repeat) of a cache holding `len` positions. The shared
    /// positions stay shared; of each row's own, only those held are copied.
    pub fn select(&self, indices: &[usize], len: usize) -> Self {
        let mut out = Self::new(indices.len(), self.heads, self.dim, self.room);
        out.shared = self.shared.clone();
        let head = self.room * self.dim;
        let held = (len - self.shared_len()) * self.dim;
        for (to, &from) in indices.iter().enumerate() {
            for h in 0..self.heads {
                let src = (from * self.heads + h) * head;
                let dst = (to * self.heads + h) * head;
                out.k[dst..dst + held].copy_from_slice(&self.k[src..src + held]);
                out.v[dst..dst + held].copy_from_slice(&self.v[src..src + held]);
            }
        }
        out
    }

    /// This one-row cache of `len` positions as `n` rows that share those positions, with the
    /// room left after them for each row's own.
    pub fn widen(&self, n: usize, len: usize) -> Self {
        if self.batch != 1 || self.shared.is_some() {
            return self.select(&vec![0; n], len);
        }
        let (head, held) = (self.room * self.dim, len * self.dim);
        let part = |all: &[f32]| -> Vec<f32> {
            (0..self.heads)
                .flat_map(|h| &all[h * head..h * head + held])
                .copied()
                .collect()
        };
        let mut out = Self::new(n, self.heads, self.dim, self.room - len);
        out.shared = Some(Arc::new(Shared {
            k: part(&self.k),
            v: part(&self.v),
            len,
        }));
        out
    }

    /// Make room for `needed` own positions, doubling, keeping the first `len`.
    fn reserve(&mut self, needed: usize, len: usize) {
        if needed <= self.room {
            return;
        }
        let room = needed.max(2 * self.room);
        let mut grown = Self::new(self.batch, self.heads, self.dim, room);
        grown.shared = self.shared.take();
        for bh in 0..self.batch * self.heads {
            let (src, dst) = (bh * self.room * self.dim, bh * room * self.dim);
            let held = len * self.dim;
            grown.k[dst..dst + held].copy_from_slice(&self.k[src..src + held]);
            grown.v[dst..dst + held].copy_from_slice(&self.v[src..src + held]);
        }
        *self = grown;
    }
}

/// Attention of `new` positions per row after `past` cached ones. `qkv` holds the rows'
/// projections `[batch * new, 3 * n_embd]` (queries, keys, values, heads side by side), whose
/// keys and values are appended to `cache`; returns the heads' outputs `[batch * new, n_embd]`.
/// The `i`-th new position sees the cached positions and new positions up to itself.
pub fn attend(qkv: &[f32], new: usize, past: usize, cache: &mut LayerCache) -> Vec<f32> {
    let (batch, heads, dim) = (cache.batch, cache.heads, cache.dim);
    let c = heads * dim;
    assert_eq!(
        qkv.len(),
        batch * new * 3 * c,
        "qkv is not [batch * new, 3 * n_embd]"
    );
    // Positions are numbered from the first shared one; a row's own start after those.
    let shared = cache.shared_len();
    assert!(
        past >= shared,
        "the new positions come after the shared ones"
    );
    let own = past - shared;
    cache.reserve(own + new, own);
    let room = cache.room;
    // Each row's keys and values into its part of the cache, rows on every thread.
    let per_row = heads * room * dim;
    cache
        .k
        .par_chunks_mut(per_row)
        .zip(cache.v.par_chunks_mut(per_row))
        .enumerate()
        .with_min_len(4)
        .for_each(|(b, (k, v))| {
            for i in 0..new {
                let row = &qkv[(b * new + i) * 3 * c..(b * new + i + 1) * 3 * c];
                for h in 0..heads {
                    let at = (h * room + own + i) * dim;
                    k[at..at + dim].copy_from_slice(&row[c + h * dim..c + (h + 1) * dim]);
                    v[at..at + dim].copy_from_slice(&row[2 * c + h * dim..2 * c + (h + 1) * dim]);
                }
            }
        });
    let scale = 1.0 / (dim as f32).sqrt();
    let cache = &*cache;
    // Task t is head t / batch of row t % batch: consecutive tasks read the same head's
    // shared positions, which can then stay in a near cache between them.
    let row_head = |t: usize| (t % batch, t / batch);
    let held = |t: usize| {
        let (b, h) = row_head(t);
        let at = (b * heads + h) * room;
        at * dim..(at + own + new) * dim
    };
    let outputs: Vec<Vec<f32>> = (0..batch * heads)
        .into_par_iter()
        .map(|t| {
            let (b, h) = row_head(t);
            let own = held(t);
            let common = h * shared * dim..(h + 1) * shared * dim;
            let (keys, values) = match &cache.shared {
                Some(s) => (
                    [&s.k[common.clone()], &cache.k[own.clone()]],
                    [&s.v[common], &cache.v[own]],
                ),
                None => ([&[][..], &cache.k[own.clone()]], [&[][..], &cache.v[own]]),
            };
            let queries = (0..new).map(|i| {
                let at = (b * new + i) * 3 * c + h * dim;
                &qkv[at..at + dim]
            });
            // A thread mostly takes the tasks in order, so the next one's own keys and
            // values are what it will read next (see `head_outputs`).
            let next = match t + 1 < batch * heads {
                true => [&cache.k[held(t + 1)], &cache.v[held(t + 1)]],
                false => [&[][..], &[][..]],
            };
            head_outputs(queries, keys, values, dim, past, scale, next)
        })
        .collect();
    let mut y = vec![0.0f32; batch * new * c];
    for (t, out) in outputs.iter().enumerate() {
        let (b, h) = row_head(t);
        for i in 0..new {
            let at = (b * new + i) * c + h * dim;
            y[at..at + dim].copy_from_slice(&out[i * dim..(i + 1) * dim]);
        }
    }
    y
}

/// One head of one row: for the `i`-th query, softmax(q · k_j × scale) over positions
/// j ≤ past + i, then the weighted sum of their values. Keys and values come in two parts,
/// the shared positions and then the row's own, read in that order as one sequence.
///
/// While the first query reads its keys and values, it asks for the cache lines of `next`
/// (the keys and values of the task that follows) at the same pace. A decoding step reads
/// every row's cache once, from memory, in streams of a few kilobytes per head; without the
/// hint each stream starts cold and the hardware prefetcher ramps up anew (measured in
/// `results/bench/README.md`). A hint changes no result.
fn head_outputs<'a>(
    queries: impl ExactSizeIterator<Item = &'a [f32]>,
    keys: [&[f32]; 2],
    values: [&[f32]; 2],
    dim: usize,
    past: usize,
    scale: f32,
    next: [&[f32]; 2],
) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    {
        // A prompt's pass or a text scored whole: many queries read the same keys, which
        // then pay for being laid out sixteen positions to a vector.
        if queries.len() >= MANY_QUERIES
            && dim == simd::HEAD_DIM
            && std::is_x86_feature_detected!("avx512f")
        {
            let queries: Vec<&[f32]> = queries.collect();
            // SAFETY: the CPU has AVX-512F; the head size is 64.
            return unsafe { simd::many_queries_64(&queries, keys, values, past, scale) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { head_outputs_avx2(queries, keys, values, dim, past, scale, next) };
        }
    }
    head_outputs_portable(queries, keys, values, dim, past, scale, next)
}

/// Queries of one head from which [`simd::many_queries_64`] takes over: below this, laying
/// the keys out again costs more than it saves.
#[cfg(target_arch = "x86_64")]
const MANY_QUERIES: usize = 4;

/// The same code compiled for AVX2: vectorised wider, with the same operations in the same
/// order (no fused multiply-adds), so the results are identical.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn head_outputs_avx2<'a>(
    queries: impl Iterator<Item = &'a [f32]>,
    keys: [&[f32]; 2],
    values: [&[f32]; 2],
    dim: usize,
    past: usize,
    scale: f32,
    next: [&[f32]; 2],
) -> Vec<f32> {
    head_outputs_portable(queries, keys, values, dim, past, scale, next)
}

#[inline(always)]
fn head_outputs_portable<'a>(
    queries: impl Iterator<Item = &'a [f32]>,
    keys: [&[f32]; 2],
    values: [&[f32]; 2],
    dim: usize,
    past: usize,
    scale: f32,
    next: [&[f32]; 2],
) -> Vec<f32> {
    let mut out = Vec::new();
    let mut weights = Vec::with_capacity((keys[0].len() + keys[1].len()) / dim.max(1));
    let mut acc = vec![0.0f32; dim];
    let first = keys[0].len() / dim.max(1);
    for (i, q) in queries.enumerate() {
        // Later queries of a prompt read the same positions again, from cache.
        let next = if i == 0 { next } else { [&[][..], &[][..]] };
        let seen = past + i + 1;
        let from_first = seen.min(first);
        let keys = [
            &keys[0][..from_first * dim],
            &keys[1][..(seen - from_first) * dim],
        ];
        weights.clear();
        // Four keys at a time: four independent chains instead of one, each key's product
        // computed exactly as `dot` computes it alone, so how keys group changes nothing.
        for keys in keys {
            let mut quads = keys.chunks_exact(4 * dim);
            for quad in &mut quads {
                let (k01, k23) = quad.split_at(2 * dim);
                let (k0, k1) = k01.split_at(dim);
                let (k2, k3) = k23.split_at(dim);
                prefetch(next[0], weights.len() * dim..(weights.len() + 4) * dim);
                weights.extend(dot4(q, [k0, k1, k2, k3]).map(|d| d * scale));
            }
            for k in quads.remainder().chunks_exact(dim) {
                weights.push(dot(q, k) * scale);
            }
        }
        let max = weights.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        weights.iter_mut().for_each(|w| *w -= max);
        crate::engine::kernels::exponential::exp_in_place(&mut weights);
        let total: f32 = weights.iter().fold(0.0, |total, w| total + w);
        acc.iter_mut().for_each(|a| *a = 0.0);
        let (shared_weights, own_weights) = weights.split_at(from_first);
        let shared_values = &values[0][..shared_weights.len() * dim];
        let own_values = &values[1][..own_weights.len() * dim];
        weighted_sum(&mut acc, shared_weights, shared_values, next[1]);
        let next_own = next[1].get(shared_weights.len() * dim..).unwrap_or(&[]);
        weighted_sum(&mut acc, own_weights, own_values, next_own);
        out.extend(acc.iter().map(|a| a / total));
    }
    out
}

/// `acc += w_j v_j` for each value row `v_j` in turn (`values` is `[weights.len(), dim]`),
/// each element as `acc + (w × v)`, two roundings, in row order. Meanwhile, ask for `next`
/// at the same pace (see [`head_outputs`]).
#[inline(always)]
fn weighted_sum(acc: &mut [f32], weights: &[f32], values: &[f32], next: &[f32]) {
    let dim = acc.len();
    assert_eq!(
        values.len(),
        weights.len() * dim,
        "values are not [weights, dim]"
    );
    #[cfg(target_arch = "x86_64")]
    if dim == simd::HEAD_DIM && std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2; the lengths are checked above.
        return unsafe { simd::weighted_sum_64(acc, weights, values, next) };
    }
    for (j, (w, v)) in weights.iter().zip(values.chunks_exact(dim)).enumerate() {
        prefetch(next, j * dim..(j + 1) * dim);
        for (a, x) in acc.iter_mut().zip(v) {
            *a += w * x;
        }
    }
}

/// Ask for the cache lines of `data[range]` (clipped to `data`); a hint only.
#[inline(always)]
fn prefetch(data: &[f32], range: std::ops::Range<usize>) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        const LINE: usize = 64 / std::mem::size_of::<f32>();
        for at in range.step_by(LINE).take_while(|&at| at < data.len()) {
            // SAFETY: every x86-64 CPU has SSE; `at` is inside `data`, and a prefetch reads
            // nothing architecturally.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(data.as_ptr().add(at).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, range);
}

/// Dot product in eight interleaved partial sums, added up in a fixed order at the end: the
/// compiler can vectorise it, and the order does not depend on the data or the machine.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in ca.clone().zip(cb.clone()) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    reduce(lanes, ca.remainder(), cb.remainder())
}

/// [`dot`] of `a` with four vectors at once, each computed exactly as `dot` computes it.
/// Written out with AVX where the CPU has it, since the compiler does not vectorise the four
/// chains together on its own.
#[inline(always)]
fn dot4(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    assert!(
        b.iter().all(|b| b.len() == a.len()),
        "dot4 of unequal lengths"
    );
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2; the lengths are equal.
        return unsafe { simd::dot4(a, b) };
    }
    b.map(|b| dot(a, b))
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// The head size of every GPT-2.
    pub const HEAD_DIM: usize = 64;

    /// [`super::weighted_sum`] for 64-float heads, with the 64 sums in eight registers
    /// instead of loaded and stored again for every value row: the same additions in the
    /// same order, so the same bits. It matters where the values are in cache (a long
    /// prompt's shared positions, a prompt's own pass); from memory, the reads set the pace.
    ///
    /// # Safety
    /// The CPU supports AVX2, `acc.len() == 64` and `values.len() == 64 * weights.len()`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn weighted_sum_64(acc: &mut [f32], weights: &[f32], values: &[f32], next: &[f32]) {
        debug_assert!(acc.len() == HEAD_DIM && values.len() == HEAD_DIM * weights.len());
        let mut sums = [_mm256_setzero_ps(); HEAD_DIM / 8];
        for (l, sum) in sums.iter_mut().enumerate() {
            // SAFETY: acc holds 64 floats.
            *sum = unsafe { _mm256_loadu_ps(acc.as_ptr().add(8 * l)) };
        }
        for (j, &w) in weights.iter().enumerate() {
            super::prefetch(next, j * HEAD_DIM..(j + 1) * HEAD_DIM);
            let w = _mm256_set1_ps(w);
            // SAFETY: row j of `values` holds 64 floats (length checked by the caller).
            let row = unsafe { values.as_ptr().add(j * HEAD_DIM) };
            for (l, sum) in sums.iter_mut().enumerate() {
                let x = unsafe { _mm256_loadu_ps(row.add(8 * l)) };
                *sum = _mm256_add_ps(*sum, _mm256_mul_ps(w, x));
            }
        }
        for (l, sum) in sums.iter().enumerate() {
            // SAFETY: acc holds 64 floats.
            unsafe { _mm256_storeu_ps(acc.as_mut_ptr().add(8 * l), *sum) };
        }
    }

    /// [`super::head_outputs_portable`] for many queries of a 64-float head, on AVX-512:
    /// the same operations in the same order for every query, so the same bits, but the
    /// scores of sixteen positions at a time. The keys are laid out feature-major first,
    /// so that feature `d` of sixteen positions is one vector; lane j of the accumulator
    /// for `l` then takes `q[l + 8m] * k_j[l + 8m]` for m = 0, 1, ... in turn, exactly
    /// `lanes[l]` of [`super::dot`] for key j, and the eight accumulators are added up in
    /// [`super::reduce`]'s tree. The softmax is the portable code's, and the weighted sum
    /// [`weighted_sum_64`]'s additions in 16-lane registers (element by element, so the
    /// width changes nothing).
    ///
    /// # Safety
    /// The CPU supports AVX-512F, every query holds 64 floats, keys and values hold
    /// `past + queries.len()` positions of 64 floats (shared, then own).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn many_queries_64(
        queries: &[&[f32]],
        keys: [&[f32]; 2],
        values: [&[f32]; 2],
        past: usize,
        scale: f32,
    ) -> Vec<f32> {
        const D: usize = HEAD_DIM;
        const LANES: usize = 16;
        let held = (keys[0].len() + keys[1].len()) / D;
        assert!(
            queries.iter().all(|q| q.len() == D)
                && keys.iter().chain(&values).all(|p| p.len() % D == 0)
                && values[0].len() + values[1].len() == held * D
                && past + queries.len() <= held,
            "queries, keys and values are not 64-float rows of the positions seen"
        );
        let padded = held.next_multiple_of(LANES);
        let mut transposed = vec![0.0f32; D * padded];
        for (j, key) in keys[0]
            .chunks_exact(D)
            .chain(keys[1].chunks_exact(D))
            .enumerate()
        {
            for (d, &x) in key.iter().enumerate() {
                transposed[d * padded + j] = x;
            }
        }
        let values = [values[0], values[1]].concat();
        // The products of `dot`'s tail, of which a 64-float head has none.
        let tail = _mm512_set1_ps(std::iter::empty::<f32>().sum());
        let mut weights = vec![0.0f32; padded];
        let mut out = Vec::with_capacity(queries.len() * D);
        for (i, q) in queries.iter().enumerate() {
            let seen = past + i + 1;
            for j0 in (0..seen).step_by(LANES) {
                let mut lanes = [_mm512_setzero_ps(); 8];
                for m in 0..D / 8 {
                    for (l, lane) in lanes.iter_mut().enumerate() {
                        let d = 8 * m + l;
                        // SAFETY: d < 64 and j0 + 16 <= padded: inside `transposed`.
                        let k =
                            unsafe { _mm512_loadu_ps(transposed.as_ptr().add(d * padded + j0)) };
                        *lane = _mm512_add_ps(*lane, _mm512_mul_ps(_mm512_set1_ps(q[d]), k));
                    }
                }
                let pairs = [0, 1, 2, 3].map(|p| _mm512_add_ps(lanes[p], lanes[p + 4]));
                let dot = _mm512_add_ps(
                    _mm512_add_ps(
                        _mm512_add_ps(pairs[0], pairs[2]),
                        _mm512_add_ps(pairs[1], pairs[3]),
                    ),
                    tail,
                );
                let scores = _mm512_mul_ps(dot, _mm512_set1_ps(scale));
                // SAFETY: j0 + 16 <= padded, the length of `weights`.
                unsafe { _mm512_storeu_ps(weights.as_mut_ptr().add(j0), scores) };
            }
            let weights = &mut weights[..seen];
            let max = weights.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            weights.iter_mut().for_each(|w| *w -= max);
            crate::engine::kernels::exponential::exp_in_place(weights);
            let total: f32 = weights.iter().fold(0.0, |total, w| total + w);
            let mut sums = [_mm512_setzero_ps(); D / LANES];
            for (j, &w) in weights.iter().enumerate() {
                let w = _mm512_set1_ps(w);
                for (l, sum) in sums.iter_mut().enumerate() {
                    // SAFETY: j < seen <= held, so row j of `values` holds 64 floats.
                    let x = unsafe { _mm512_loadu_ps(values.as_ptr().add(j * D + LANES * l)) };
                    *sum = _mm512_add_ps(*sum, _mm512_mul_ps(w, x));
                }
            }
            let total = _mm512_set1_ps(total);
            let mut row = [0.0f32; D];
            for (l, sum) in sums.iter().enumerate() {
                // SAFETY: `row` holds 64 floats.
                unsafe {
                    _mm512_storeu_ps(row.as_mut_ptr().add(LANES * l), _mm512_div_ps(*sum, total))
                };
            }
            out.extend_from_slice(&row);
        }
        out
    }

    /// [`super::dot4`] on AVX: lane l of each accumulator is the `lanes[l]` of [`super::dot`],
    /// added to in the same order, without fusing.
    ///
    /// # Safety
    /// The CPU supports AVX2, and every `b[j]` is as long as `a`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot4(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
        let whole = a.len() / 8 * 8;
        let mut acc = [_mm256_setzero_ps(); 4];
        for at in (0..whole).step_by(8) {
            // SAFETY: at + 8 <= whole <= the length of `a` and of every `b[j]`.
            unsafe {
                let x = _mm256_loadu_ps(a.as_ptr().add(at));
                for (acc, b) in acc.iter_mut().zip(&b) {
                    let y = _mm256_loadu_ps(b.as_ptr().add(at));
                    *acc = _mm256_add_ps(*acc, _mm256_mul_ps(x, y));
                }
            }
        }
        [0, 1, 2, 3].map(|j| {
            let mut lanes = [0.0f32; 8];
            // SAFETY: `lanes` holds eight floats.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[j]) };
            super::reduce(lanes, &a[whole..], &b[j][whole..])
        })
    }
}

/// The end of [`dot`]: the eight partial sums in a fixed tree, then the products of the tail.
#[inline(always)]
fn reduce(lanes: [f32; 8], a_tail: &[f32], b_tail: &[f32]) -> f32 {
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    let pairs = [
        lanes[0] + lanes[4],
        lanes[1] + lanes[5],
        lanes[2] + lanes[6],
        lanes[3] + lanes[7],
    ];
    (pairs[0] + pairs[2]) + (pairs[1] + pairs[3]) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// Plain attention in f64 over explicit key and value lists.
    fn reference(q: &[f32], keys: &[Vec<f32>], values: &[Vec<f32>]) -> Vec<f64> {
        let scale = 1.0 / (q.len() as f64).sqrt();
        let scores: Vec<f64> = keys
            .iter()
            .map(|k| {
                q.iter()
                    .zip(k)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>()
                    * scale
            })
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = e.iter().sum();
        (0..q.len())
            .map(|d| {
                e.iter()
                    .zip(values)
                    .map(|(w, v)| w * v[d] as f64)
                    .sum::<f64>()
                    / total
            })
            .collect()
    }

    /// The register version for GPT-2's 64-float heads against the plain loop, bit for bit,
    /// and a head size it does not take.
    #[test]
    fn weighted_sum_is_the_plain_loop_to_the_bit() {
        for (rows, dim) in [(0, 64), (1, 64), (37, 64), (5, 48)] {
            let weights = values(rows, 3);
            let rows_of_values = values(rows * dim, 4);
            let mut got = values(dim, 5);
            let mut want = got.clone();
            weighted_sum(&mut got, &weights, &rows_of_values, &rows_of_values);
            for (w, v) in weights.iter().zip(rows_of_values.chunks_exact(dim)) {
                for (a, x) in want.iter_mut().zip(v) {
                    *a += w * x;
                }
            }
            assert_eq!(got, want, "{rows} rows of {dim}");
        }
    }

    /// Many queries at once against the one-query code, bit for bit: shared and own
    /// positions, counts of positions that fill sixteen-lane vectors or not.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn many_queries_at_once_equal_one_at_a_time() {
        if !std::is_x86_feature_detected!("avx512f") {
            return;
        }
        let dim = simd::HEAD_DIM;
        for (shared, own_past, new) in
            [(0, 0, 4), (16, 0, 128), (5, 3, 9), (0, 30, 17), (33, 0, 64)]
        {
            let past = shared + own_past;
            let held = past + new;
            let queries = values(new * dim, 7);
            let (keys, vals) = (values(held * dim, 8), values(held * dim, 9));
            let (ks, ko) = keys.split_at(shared * dim);
            let (vs, vo) = vals.split_at(shared * dim);
            let rows: Vec<&[f32]> = queries.chunks_exact(dim).collect();
            let scale = 0.125;
            // SAFETY: the CPU has AVX-512F; the sizes are as the function requires.
            let got = unsafe { simd::many_queries_64(&rows, [ks, ko], [vs, vo], past, scale) };
            let want = head_outputs_portable(
                rows.iter().copied(),
                [ks, ko],
                [vs, vo],
                dim,
                past,
                scale,
                [&[][..], &[][..]],
            );
            assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "{shared} shared, {own_past} own, {new} new"
            );
        }
    }

    #[test]
    fn four_dot_products_at_once_equal_four_alone() {
        for dim in [64, 70, 5] {
            let q = values(dim, 1);
            let keys: Vec<Vec<f32>> = (0..4).map(|j| values(dim, 2 + j)).collect();
            let four = dot4(&q, [&keys[0], &keys[1], &keys[2], &keys[3]]);
            for (got, k) in four.iter().zip(&keys) {
                assert_eq!(got.to_bits(), dot(&q, k).to_bits(), "dim {dim}");
            }
        }
    }

    /// A prompt of three positions, then two decoding steps, against plain causal attention.
    #[test]
    fn matches_plain_causal_attention_as_positions_arrive() {
        let (batch, heads, dim) = (2, 3, 12);
        let c = heads * dim;
        let mut cache = LayerCache::new(batch, heads, dim, 1);
        let mut rows: Vec<Vec<Vec<f32>>> = vec![Vec::new(); batch];
        let mut past = 0;
        for (step, new) in [3usize, 1, 1].into_iter().enumerate() {
            let qkv = values(batch * new * 3 * c, step as u32 + 1);
            let y = attend(&qkv, new, past, &mut cache);
            for (b, seen) in rows.iter_mut().enumerate() {
                for i in 0..new {
                    let row = &qkv[(b * new + i) * 3 * c..(b * new + i + 1) * 3 * c];
                    seen.push(row.to_vec());
                    for h in 0..heads {
                        let part = |p: usize, r: &Vec<f32>| {
                            r[p * c + h * dim..p * c + (h + 1) * dim].to_vec()
                        };
                        let keys: Vec<Vec<f32>> = seen.iter().map(|r| part(1, r)).collect();
                        let vals: Vec<Vec<f32>> = seen.iter().map(|r| part(2, r)).collect();
                        let want = reference(&part(0, &row.to_vec()), &keys, &vals);
                        let got =
                            &y[(b * new + i) * c + h * dim..(b * new + i) * c + (h + 1) * dim];
                        for (g, w) in got.iter().zip(&want) {
                            assert!(
                                (*g as f64 - w).abs() < 1e-5,
                                "step {step} row {b} head {h}: {g} vs {w}"
                            );
                        }
                    }
                }
            }
            past += new;
        }
    }

    /// Rows widened from one prompt row share its positions instead of copying them, and
    /// attend exactly as copied rows do: after steps that outgrow the room, after rows are
    /// reordered and dropped, and with prompts of every length modulo the four-key groups.
    #[test]
    fn shared_prompt_positions_attend_as_copied_ones() {
        let (heads, dim) = (2, 64);
        let c = heads * dim;
        for prompt in [1, 3, 4, 6] {
            let mut one = LayerCache::new(1, heads, dim, prompt + 1);
            let _ = attend(&values(prompt * 3 * c, 1), prompt, 0, &mut one);
            let mut shared = one.widen(3, prompt);
            let mut copied = one.select(&[0, 0, 0], prompt);
            assert_eq!(shared.shared_len(), prompt);
            assert_eq!(copied.shared_len(), 0);
            let mut past = prompt;
            for step in 0..7 {
                let qkv = values(shared.batch_size() * 3 * c, 10 + step);
                let a = attend(&qkv, 1, past, &mut shared);
                let b = attend(&qkv, 1, past, &mut copied);
                assert_eq!(a, b, "prompt {prompt}, step {step}");
                past += 1;
                if step == 3 {
                    shared = shared.select(&[2, 0], past);
                    copied = copied.select(&[2, 0], past);
                }
            }
            // Widening a widened row keeps one shared part and copies the rest.
            let again = shared.select(&[1], past).widen(2, past);
            assert_eq!(again.shared_len(), prompt);
        }
    }

    /// A row's output is the same whatever other rows share the batch.
    #[test]
    fn a_row_attends_the_same_alone_or_among_others() {
        let (heads, dim, new) = (2, 64, 4);
        let c = heads * dim;
        let qkv = values(3 * new * 3 * c, 9);
        let mut all = LayerCache::new(3, heads, dim, 8);
        let y_all = attend(&qkv, new, 0, &mut all);
        let mut one = LayerCache::new(1, heads, dim, 8);
        let row = 2;
        let y_one = attend(
            &qkv[row * new * 3 * c..(row + 1) * new * 3 * c],
            new,
            0,
            &mut one,
        );
        assert_eq!(y_one[..], y_all[row * new * c..(row + 1) * new * c]);
        // Selecting rows keeps what they hold.
        let mut picked = all.select(&[row, row], new);
        let step = values(3 * c, 10).repeat(2);
        let y = attend(&step, 1, new, &mut picked);
        assert_eq!(y[..c], y[c..]);
        let y_alone = attend(&step[..3 * c], 1, new, &mut one);
        assert_eq!(y_alone[..], y[..c]);
    }
}
