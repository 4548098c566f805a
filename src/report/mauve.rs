//! MAUVE (Pillutla et al. 2021, "MAUVE: Measuring the Gap Between Neural Text and Human Text
//! using Divergence Frontiers"), computed as `mauve-text` 0.4 computes it, so that a value here
//! can stand beside the papers' tables.
//!
//! The pipeline, with the reference's rules:
//! 1. **Quantisation** ([`quantize`]): the features of Q (human) and P (model) are stacked, Q
//!    first, and each row is scaled to unit l2 norm (a zero row is left as it is). PCA on the
//!    stacked rows keeps the fewest leading components whose cumulative explained-variance ratio
//!    reaches 0.9 (`argmax(cumsum(ratio) >= 0.9) + 1`). k-means in that space, with
//!    [`auto_clusters`] clusters unless given, 5 restarts from `k` distinct random rows, keeps
//!    the restart of lowest objective (sum of squared distances).
//! 2. **Histograms** ([`histogram`]): the share of each side's texts in each cluster.
//! 3. **Divergence curve** ([`divergence_curve`]): for 25 mixture weights `w` evenly spaced in
//!    `[1e-6, 1 − 1e-6]`, with `R = w·P + (1 − w)·Q`, the point
//!    `(exp(−c·KL(Q‖R)), exp(−c·KL(P‖R)))`, plus the end points `(1, 0)` and `(0, 1)`;
//!    `c` is the scaling, 5 by default.
//! 4. **Area** ([`mauve_from_histograms`]): the mean of the trapezoid areas under the curve
//!    with its points sorted by x, and with them sorted by y and the axes swapped.
//!
//! Steps 2–4 are exact: from the same cluster labels the value is the reference's to rounding.
//! Step 1 is not reproducible bit for bit: the reference starts k-means from faiss' random
//! draws. Here they come from ChaCha8 streams (restart `r` on stream `r` of `seed`), so a
//! result is repeatable and independent of the thread count, and agrees with the reference's
//! as two of its seeds agree with each other.

use nalgebra::{DMatrix, SymmetricEigen};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use rayon::prelude::*;

use crate::engine::kernels::matmul::PackedLinear;
use crate::report::metrics::{cluster_bootstrap_ci, prompt_clusters, uniform_below};

/// Points of the divergence curve between its two end points: the reference's
/// `divergence_curve_discretization_size`.
pub const CURVE_POINTS: usize = 25;

/// The smallest and largest mixture weight of the curve (the reference's `1e-6`): a weight of
/// exactly 0 or 1 would make one of the two divergences infinite.
const WEIGHT_MARGIN: f64 = 1e-6;

/// Relative change of a split cluster's centroid coordinates (faiss' `EPS`, 1/1024): the two
/// halves start apart, so the next assignment divides the points between them.
const SPLIT_EPS: f32 = 1.0 / 1024.0;

/// Why MAUVE cannot be computed from the given input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MauveError {
    #[error("MAUVE needs texts on both sides, but {side} has none")]
    NoTexts { side: &'static str },
    #[error("{side} features have {values} values, not a whole number of rows of {dim}")]
    Ragged {
        side: &'static str,
        values: usize,
        dim: usize,
    },
    #[error("{side} feature row {row} has {len} values where the first has {dim}")]
    RaggedRow {
        side: &'static str,
        row: usize,
        len: usize,
        dim: usize,
    },
    #[error("features have dimension {p} for the model's texts and {q} for the references")]
    Dimensions { p: usize, q: usize },
    #[error("{side} feature row {row} is not finite")]
    NotFinite { side: &'static str, row: usize },
    #[error("MAUVE with {clusters} clusters needs at least {clusters} texts in all, got {texts}")]
    TooFewTexts { texts: usize, clusters: usize },
    #[error("MAUVE needs at least 1 cluster")]
    NoClusters,
    #[error("{side} label {label} at text {text} is not below the cluster count {clusters}")]
    Label {
        side: &'static str,
        text: usize,
        label: usize,
        clusters: usize,
    },
    #[error("{side} has {labels} labels but {prompts} prompt indices")]
    Prompts {
        side: &'static str,
        labels: usize,
        prompts: usize,
    },
    #[error("invalid MAUVE option {name} = {value}: {rule}")]
    Option {
        name: &'static str,
        value: String,
        rule: &'static str,
    },
}

/// Features a model computed that are not numbers, or too few texts for the clusters asked
/// for: the input is at fault (the experiment file's `[score]` table, or the model).
impl crate::util::exit::ExitStatus for MauveError {
    fn exit(&self) -> crate::util::exit::Exit {
        crate::util::exit::Exit::BadInput
    }
}

/// Feature vectors of one side, row-major `[texts, dim]`.
#[derive(Debug, Clone, Copy)]
pub struct Features<'a> {
    values: &'a [f32],
    dim: usize,
}

impl<'a> Features<'a> {
    /// `side` names the texts in errors (`"p"` for the model's, `"q"` for the references).
    pub fn new(side: &'static str, values: &'a [f32], dim: usize) -> Result<Self, MauveError> {
        if values.is_empty() {
            return Err(MauveError::NoTexts { side });
        }
        if dim == 0 || !values.len().is_multiple_of(dim) {
            return Err(MauveError::Ragged {
                side,
                values: values.len(),
                dim,
            });
        }
        Ok(Self { values, dim })
    }

    pub fn texts(&self) -> usize {
        self.values.len() / self.dim
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }
}

/// Rows of equal length as one row-major buffer and their length, for [`Features::new`].
pub fn flatten(side: &'static str, rows: &[Vec<f32>]) -> Result<(Vec<f32>, usize), MauveError> {
    let dim = rows.first().map_or(0, Vec::len);
    if let Some(row) = rows.iter().position(|r| r.len() != dim) {
        return Err(MauveError::RaggedRow {
            side,
            row,
            len: rows[row].len(),
            dim,
        });
    }
    Ok((rows.concat(), dim))
}

/// The reference's defaults (`compute_mauve`'s keyword arguments).
#[derive(Debug, Clone, PartialEq)]
pub struct MauveOptions {
    /// `c` in `exp(−c·KL)`: `mauve_scaling_factor`, 5. It changes the value, not the ranking
    /// of two settings against one reference; papers report it with c = 5.
    pub scaling: f64,
    /// k-means clusters; `None` is [`auto_clusters`] (`num_buckets = 'auto'`).
    pub clusters: Option<usize>,
    /// Seed of the k-means starts (the reference's `seed`, 25).
    pub seed: u64,
    /// k-means runs from different starts, the lowest objective kept (`kmeans_num_redo`, 5).
    pub restarts: usize,
    /// Lloyd iterations at most per run (`kmeans_max_iter`, 500).
    pub max_iterations: usize,
    /// Share of the variance the PCA keeps (`kmeans_explained_var`, 0.9).
    pub explained_variance: f64,
}

impl Default for MauveOptions {
    fn default() -> Self {
        Self {
            scaling: 5.0,
            clusters: None,
            seed: 25,
            restarts: 5,
            max_iterations: 500,
            explained_variance: 0.9,
        }
    }
}

/// MAUVE and how it was reached.
#[derive(Debug, Clone, PartialEq)]
pub struct MauveResult {
    pub mauve: f64,
    pub clusters: usize,
    /// PCA components kept.
    pub components: usize,
    /// The cluster of each model text, in input order.
    pub labels_p: Vec<usize>,
    /// The cluster of each reference text, in input order.
    pub labels_q: Vec<usize>,
    /// Sum of squared distances to the centroids of the kept k-means run (in PCA space).
    pub objective: f64,
}

/// The cluster labels of both sides and what produced them.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized {
    pub labels_p: Vec<usize>,
    pub labels_q: Vec<usize>,
    pub clusters: usize,
    pub components: usize,
    pub objective: f64,
}

/// The reference's default cluster count, `max(2, round(min(n_p, n_q) / 10))`: a tenth of the
/// SMALLER side, not of all texts, rounded half to even as Python's `round` does (25 texts
/// give 2 clusters, 35 give 4).
pub fn auto_clusters(texts_p: usize, texts_q: usize) -> usize {
    let tenth = texts_p.min(texts_q) as f64 / 10.0;
    (tenth.round_ties_even() as usize).max(2)
}

/// MAUVE of the model's texts `p` against the references `q`, from their features.
pub fn mauve(p: Features, q: Features, options: &MauveOptions) -> Result<MauveResult, MauveError> {
    let quantized = quantize(p, q, options)?;
    let value = mauve_from_labels(
        &quantized.labels_p,
        &quantized.labels_q,
        quantized.clusters,
        options.scaling,
    )?;
    Ok(MauveResult {
        mauve: value,
        clusters: quantized.clusters,
        components: quantized.components,
        labels_p: quantized.labels_p,
        labels_q: quantized.labels_q,
        objective: quantized.objective,
    })
}

fn check_options(options: &MauveOptions) -> Result<(), MauveError> {
    let bad = |name, value: String, rule| Err(MauveError::Option { name, value, rule });
    if !(options.scaling.is_finite() && options.scaling > 0.0) {
        return bad(
            "mauve_scaling",
            options.scaling.to_string(),
            "must be a positive number",
        );
    }
    if !(options.explained_variance > 0.0 && options.explained_variance < 1.0) {
        return bad(
            "explained_variance",
            options.explained_variance.to_string(),
            "must lie strictly between 0 and 1",
        );
    }
    if options.restarts == 0 {
        return bad("restarts", "0".into(), "must be at least 1");
    }
    if options.max_iterations == 0 {
        return bad("max_iterations", "0".into(), "must be at least 1");
    }
    Ok(())
}

/// Step 1 of MAUVE: l2 normalisation, PCA, k-means; see the module documentation.
pub fn quantize(p: Features, q: Features, options: &MauveOptions) -> Result<Quantized, MauveError> {
    check_options(options)?;
    for (side, f) in [("p", &p), ("q", &q)] {
        if f.texts() == 0 {
            return Err(MauveError::NoTexts { side });
        }
        if let Some(row) = (0..f.texts()).find(|&i| f.row(i).iter().any(|v| !v.is_finite())) {
            return Err(MauveError::NotFinite { side, row });
        }
    }
    if p.dim != q.dim {
        return Err(MauveError::Dimensions { p: p.dim, q: q.dim });
    }
    let clusters = options
        .clusters
        .unwrap_or_else(|| auto_clusters(p.texts(), q.texts()));
    let texts = p.texts() + q.texts();
    if clusters == 0 {
        return Err(MauveError::NoClusters);
    }
    if texts < clusters {
        return Err(MauveError::TooFewTexts { texts, clusters });
    }

    let dim = p.dim;
    let rows = (0..q.texts())
        .map(|i| q.row(i))
        .chain((0..p.texts()).map(|i| p.row(i)));
    let mut data = Vec::with_capacity(texts * dim);
    for row in rows {
        let norm = row
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt();
        // sklearn's `normalize` leaves a zero row as it is.
        let scale = if norm == 0.0 { 1.0 } else { norm };
        data.extend(row.iter().map(|&v| f64::from(v) / scale));
    }
    let (projected, components) = pca(&data, texts, dim, options.explained_variance);
    let (labels, objective) = kmeans(
        &projected,
        texts,
        components,
        clusters,
        options.restarts,
        options.max_iterations,
        options.seed,
    );
    let (labels_q, labels_p) = labels.split_at(q.texts());
    Ok(Quantized {
        labels_p: labels_p.to_vec(),
        labels_q: labels_q.to_vec(),
        clusters,
        components,
        objective,
    })
}

/// The rows (`[n, d]`, f64) centred and projected on the fewest principal axes whose
/// explained-variance ratios sum to `explained_variance` (f32, `[n, m]`), and `m`.
///
/// sklearn's `PCA` takes the SVD of the centred rows; the eigen-decomposition of their
/// covariance gives the same axes (up to sign, which no distance sees) and the same variances.
fn pca(data: &[f64], n: usize, d: usize, explained_variance: f64) -> (Vec<f32>, usize) {
    let mut x = DMatrix::from_row_slice(n, d, data);
    let mean: Vec<f64> = (0..d).map(|j| x.column(j).sum() / n as f64).collect();
    for (j, &m) in mean.iter().enumerate() {
        x.column_mut(j).add_scalar_mut(-m);
    }
    let covariance = (x.transpose() * &x) / (n.max(2) - 1) as f64;
    let eigen = SymmetricEigen::new(covariance);
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
    let variances: Vec<f64> = order
        .iter()
        .map(|&i| eigen.eigenvalues[i].max(0.0))
        .collect();
    let total: f64 = variances.iter().sum();
    // As the reference: the first index where the cumulative ratio reaches the target (0 when
    // none does, e.g. when every row is the same and the ratios are 0/0).
    let mut cumulative = 0.0;
    let last = variances
        .iter()
        .position(|v| {
            cumulative += v / total;
            cumulative >= explained_variance
        })
        .unwrap_or(0);
    let m = last + 1;
    let axes = DMatrix::from_fn(d, m, |r, c| eigen.eigenvectors[(r, order[c])]);
    let projected = x * axes;
    let mut out = Vec::with_capacity(n * m);
    for i in 0..n {
        out.extend(projected.row(i).iter().map(|&v| v as f32));
    }
    (out, m)
}

/// Best of `restarts` k-means runs on the rows of `z` (`[n, m]`): each row's cluster and the
/// objective (sum of squared distances to the centroids).
///
/// A run starts from `k` distinct rows drawn at random, as faiss does, and alternates nearest-
/// centroid assignment and centroid means. A cluster left empty takes half of a larger one
/// (faiss' `split_clusters`: a cluster drawn with probability proportional to its size − 1,
/// its centroid copied and the two pushed apart). faiss always runs all its iterations; a run
/// here stops as soon as an assignment repeats with no cluster split, because from then on
/// every further iteration would compute the same centroids and the same assignment. The
/// objective that picks the run is that of the final assignment to the final centroids
/// (faiss takes its last iteration's, the same number once a run has converged).
fn kmeans(
    z: &[f32],
    n: usize,
    m: usize,
    k: usize,
    restarts: usize,
    max_iterations: usize,
    seed: u64,
) -> (Vec<usize>, f64) {
    let norms: Vec<f64> = z
        .chunks_exact(m)
        .map(|row| row.iter().map(|&v| f64::from(v) * f64::from(v)).sum())
        .collect();
    let mut best: Option<(Vec<usize>, f64)> = None;
    for restart in 0..restarts {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(restart as u64);
        let (labels, objective) = kmeans_run(z, &norms, n, m, k, max_iterations, &mut rng);
        // Strictly lower: ties keep the earlier run, whatever the thread count.
        if best.as_ref().is_none_or(|(_, b)| objective < *b) {
            best = Some((labels, objective));
        }
    }
    best.expect("at least one restart")
}

fn kmeans_run(
    z: &[f32],
    norms: &[f64],
    n: usize,
    m: usize,
    k: usize,
    max_iterations: usize,
    rng: &mut ChaCha8Rng,
) -> (Vec<usize>, f64) {
    // The first k of a uniform random permutation (a partial Fisher–Yates shuffle).
    let mut perm: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = i + uniform_below(rng, n - i);
        perm.swap(i, j);
    }
    let mut centroids: Vec<f32> = perm[..k]
        .iter()
        .flat_map(|&i| z[i * m..(i + 1) * m].iter().copied())
        .collect();
    let mut labels = vec![usize::MAX; n];
    let mut split = false;
    for _ in 0..max_iterations {
        let (next, objective) = assign(z, norms, n, m, k, &centroids);
        if next == labels && !split {
            return (labels, objective);
        }
        labels = next;
        split = update_centroids(z, n, m, k, &labels, &mut centroids, rng);
    }
    assign(z, norms, n, m, k, &centroids)
}

/// Each row's nearest centroid (the first of equals) and the sum of squared distances.
/// `‖x − c‖² = ‖x‖² − 2 (x·c − ‖c‖²/2)`, so the nearest centroid is the largest
/// `x·c − ‖c‖²/2`: one matrix product, on the project's kernels, whose results do not
/// depend on the thread count.
fn assign(
    z: &[f32],
    norms: &[f64],
    n: usize,
    m: usize,
    k: usize,
    centroids: &[f32],
) -> (Vec<usize>, f64) {
    let bias: Vec<f32> = centroids
        .chunks_exact(m)
        .map(|c| -0.5 * c.iter().map(|v| v * v).sum::<f32>())
        .collect();
    let scores = PackedLinear::from_out_in(centroids, k, m, Some(bias)).forward(z, n);
    let best: Vec<(usize, f32)> = scores
        .par_chunks_exact(k)
        .map(|row| {
            let mut best = (0, row[0]);
            for (j, &s) in row.iter().enumerate().skip(1) {
                if s > best.1 {
                    best = (j, s);
                }
            }
            best
        })
        .collect();
    let objective = best
        .iter()
        .zip(norms)
        .map(|(&(_, s), &norm)| (norm - 2.0 * f64::from(s)).max(0.0))
        .sum();
    (best.into_iter().map(|(j, _)| j).collect(), objective)
}

/// Centroids as the means of their rows (f64 sums in row order); returns whether an empty
/// cluster had to be split off another.
fn update_centroids(
    z: &[f32],
    n: usize,
    m: usize,
    k: usize,
    labels: &[usize],
    centroids: &mut [f32],
    rng: &mut ChaCha8Rng,
) -> bool {
    let mut sums = vec![0.0f64; k * m];
    let mut counts = vec![0usize; k];
    for i in 0..n {
        let c = labels[i];
        counts[c] += 1;
        for (s, &v) in sums[c * m..(c + 1) * m]
            .iter_mut()
            .zip(&z[i * m..(i + 1) * m])
        {
            *s += f64::from(v);
        }
    }
    for c in 0..k {
        if counts[c] > 0 {
            let count = counts[c] as f64;
            for (dst, &s) in centroids[c * m..(c + 1) * m]
                .iter_mut()
                .zip(&sums[c * m..(c + 1) * m])
            {
                *dst = (s / count) as f32;
            }
        }
    }
    let mut split = false;
    for empty in 0..k {
        if counts[empty] != 0 {
            continue;
        }
        let spare: usize = counts.iter().map(|&c| c.saturating_sub(1)).sum();
        if spare == 0 {
            break;
        }
        let mut draw = uniform_below(rng, spare);
        let donor = counts
            .iter()
            .position(|&c| {
                let s = c.saturating_sub(1);
                if draw < s {
                    true
                } else {
                    draw -= s;
                    false
                }
            })
            .expect("a cluster with spare rows");
        for j in 0..m {
            let v = centroids[donor * m + j];
            let (up, down) = (v * (1.0 + SPLIT_EPS), v * (1.0 - SPLIT_EPS));
            let (to_empty, to_donor) = if j.is_multiple_of(2) {
                (up, down)
            } else {
                (down, up)
            };
            centroids[empty * m + j] = to_empty;
            centroids[donor * m + j] = to_donor;
        }
        counts[empty] = counts[donor] / 2;
        counts[donor] -= counts[empty];
        split = true;
    }
    split
}

fn check_labels(side: &'static str, labels: &[usize], clusters: usize) -> Result<(), MauveError> {
    if labels.is_empty() {
        return Err(MauveError::NoTexts { side });
    }
    match labels.iter().position(|&l| l >= clusters) {
        Some(text) => Err(MauveError::Label {
            side,
            text,
            label: labels[text],
            clusters,
        }),
        None => Ok(()),
    }
}

/// The share of `labels` in each of `clusters` clusters: `counts / counts.sum()`, as the
/// reference divides its `np.histogram` counts. No labels gives NaN shares.
///
/// # Panics
/// If a label is not below `clusters` ([`mauve_from_labels`] checks this first).
pub fn histogram(labels: &[usize], clusters: usize) -> Vec<f64> {
    let mut counts = vec![0usize; clusters];
    for &l in labels {
        counts[l] += 1;
    }
    let total = labels.len() as f64;
    counts.iter().map(|&c| c as f64 / total).collect()
}

/// MAUVE from cluster labels (`labels_p` of the model's texts, `labels_q` of the references,
/// each below `clusters`): steps 2–4 of the module documentation, exact.
pub fn mauve_from_labels(
    labels_p: &[usize],
    labels_q: &[usize],
    clusters: usize,
    scaling: f64,
) -> Result<f64, MauveError> {
    check_options(&MauveOptions {
        scaling,
        ..MauveOptions::default()
    })?;
    check_labels("p", labels_p, clusters)?;
    check_labels("q", labels_q, clusters)?;
    Ok(mauve_from_histograms(
        &histogram(labels_p, clusters),
        &histogram(labels_q, clusters),
        scaling,
    ))
}

/// The reference's mixture weights, `np.linspace(1e-6, 1 − 1e-6, 25)` to the bit: `i·step +
/// start`, the last one set to the stop.
fn mixture_weights() -> [f64; CURVE_POINTS] {
    let (start, stop) = (WEIGHT_MARGIN, 1.0 - WEIGHT_MARGIN);
    let step = (stop - start) / (CURVE_POINTS - 1) as f64;
    let mut w = [0.0; CURVE_POINTS];
    for (i, w) in w.iter_mut().enumerate() {
        *w = i as f64 * step + start;
    }
    w[CURVE_POINTS - 1] = stop;
    w
}

/// KL(a‖b) of two histograms: infinite when `a` has mass where `b` has none; otherwise the
/// sum over the bins where both have mass, in bin order, summed as numpy sums.
fn kl(a: &[f64], b: &[f64]) -> f64 {
    if a.iter().zip(b).any(|(&x, &y)| x != 0.0 && y == 0.0) {
        return f64::INFINITY;
    }
    let terms: Vec<f64> = a
        .iter()
        .zip(b)
        .filter(|&(&x, &y)| x != 0.0 && y != 0.0)
        .map(|(&x, &y)| x * (x / y).ln())
        .collect();
    numpy_sum(&terms)
}

/// The divergence curve of P against Q: `(1, 0)`, then for each mixture weight `w`
/// (ascending) the point `(exp(−c·KL(Q‖R)), exp(−c·KL(P‖R)))` with `R = w·P + (1 − w)·Q`,
/// then `(0, 1)`.
pub fn divergence_curve(p_hist: &[f64], q_hist: &[f64], scaling: f64) -> Vec<(f64, f64)> {
    let mut curve = Vec::with_capacity(CURVE_POINTS + 2);
    curve.push((0.0, f64::INFINITY));
    for w in mixture_weights() {
        let r: Vec<f64> = p_hist
            .iter()
            .zip(q_hist)
            .map(|(&p, &q)| w * p + (1.0 - w) * q)
            .collect();
        curve.push((kl(q_hist, &r), kl(p_hist, &r)));
    }
    curve.push((f64::INFINITY, 0.0));
    curve
        .into_iter()
        .map(|(x, y)| ((-scaling * x).exp(), (-scaling * y).exp()))
        .collect()
}

/// MAUVE of two histograms: the mean of the area under the divergence curve and the area
/// under it with the axes swapped, each by the trapezoid rule over its points sorted by the
/// abscissa (`sklearn.metrics.auc`).
///
/// One deliberate difference: points with EQUAL abscissae are ordered by descending
/// ordinate, the order of a curve that falls as it moves right. The reference sorts with
/// numpy's unstable `argsort`, whose order among equal values depends on numpy's build; this
/// only matters when P and Q have the same histogram, where every mixture lands on (1, 1)
/// next to the end point (1, 0), and it makes that case 1 (numpy gives 1 there too, by
/// chance of its sort).
pub fn mauve_from_histograms(p_hist: &[f64], q_hist: &[f64], scaling: f64) -> f64 {
    let curve = divergence_curve(p_hist, q_hist, scaling);
    let swapped: Vec<(f64, f64)> = curve.iter().map(|&(x, y)| (y, x)).collect();
    0.5 * (area(curve) + area(swapped))
}

/// `np.trapezoid(y, x)` over the points sorted by x (ties: descending y).
fn area(mut points: Vec<(f64, f64)>) -> f64 {
    points.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let terms: Vec<f64> = points
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
        .collect();
    numpy_sum(&terms)
}

/// `np.sum` of a contiguous f64 array, in numpy's order: pairwise, with 8 running partial sums
/// in blocks of up to 128 values, added to 0.
fn numpy_sum(values: &[f64]) -> f64 {
    fn pairwise(a: &[f64]) -> f64 {
        let n = a.len();
        if n < 8 {
            a.iter().fold(0.0, |s, &v| s + v)
        } else if n <= 128 {
            let mut r = [0.0f64; 8];
            r.copy_from_slice(&a[..8]);
            let whole = n - n % 8;
            for chunk in a[8..whole].chunks_exact(8) {
                for (r, &v) in r.iter_mut().zip(chunk) {
                    *r += v;
                }
            }
            let mut sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
            for &v in &a[whole..] {
                sum += v;
            }
            sum
        } else {
            let half = n / 2;
            let half = half - half % 8;
            pairwise(&a[..half]) + pairwise(&a[half..])
        }
    }
    0.0 + pairwise(values)
}

/// 95 % interval of MAUVE by the prompt-clustered percentile bootstrap, with the cluster
/// labels held fixed (quantising once, as the estimate did, and resampling the histograms).
///
/// `prompts_p[i]` and `prompts_q[j]` are the prompt of model text `i` and reference `j`, on
/// one numbering. Each resample draws prompts with replacement and takes every text of a drawn
/// prompt, the model's and the references' together, so the interval reflects how much MAUVE
/// depends on which prompts were drawn. Seeded and repeatable as
/// [`crate::report::metrics::cluster_bootstrap_ci`]; a resample with no text on one side is
/// dropped. It leaves out the variation of the k-means itself (another seed moves MAUVE by a
/// few hundredths on a few hundred texts), which a fixed-label bootstrap cannot see.
/// Resampling adds noise to both histograms, which on average makes them less alike, so the
/// interval lies mostly below the estimate (0.44–0.73 around 0.69 on 300 texts a side in
/// `tests/mauve.rs`): it says how far MAUVE could move, not where it is centred. Fewer
/// than 2 prompts gives `(NaN, NaN)`.
#[allow(clippy::too_many_arguments)]
pub fn mauve_interval(
    labels_p: &[usize],
    labels_q: &[usize],
    clusters: usize,
    prompts_p: &[usize],
    prompts_q: &[usize],
    scaling: f64,
    resamples: usize,
    seed: u64,
) -> Result<(f64, f64), MauveError> {
    mauve_from_labels(labels_p, labels_q, clusters, scaling)?;
    for (side, labels, prompts) in [("p", labels_p, prompts_p), ("q", labels_q, prompts_q)] {
        if labels.len() != prompts.len() {
            return Err(MauveError::Prompts {
                side,
                labels: labels.len(),
                prompts: prompts.len(),
            });
        }
    }
    let n_p = labels_p.len();
    let prompt_of: Vec<usize> = prompts_p.iter().chain(prompts_q).copied().collect();
    let groups = prompt_clusters(&prompt_of);
    Ok(cluster_bootstrap_ci(
        &groups,
        |texts| {
            let (mut p, mut q) = (Vec::new(), Vec::new());
            for &t in texts {
                if t < n_p {
                    p.push(labels_p[t]);
                } else {
                    q.push(labels_q[t - n_p]);
                }
            }
            if p.is_empty() || q.is_empty() {
                return f64::NAN;
            }
            mauve_from_histograms(&histogram(&p, clusters), &histogram(&q, clusters), scaling)
        },
        resamples,
        seed,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::RngCore;

    #[test]
    fn auto_clusters_is_a_tenth_of_the_smaller_side_rounded_half_to_even() {
        assert_eq!(auto_clusters(300, 1000), 30);
        assert_eq!(auto_clusters(25, 25), 2);
        assert_eq!(auto_clusters(35, 40), 4);
        assert_eq!(auto_clusters(5, 100), 2);
        assert_eq!(auto_clusters(2500, 2500), 250);
    }

    #[test]
    fn linspace_matches_numpy_end_points() {
        let w = mixture_weights();
        assert_eq!(w[0], 1e-6);
        assert_eq!(w[24], 1.0 - 1e-6);
        assert!(w.windows(2).all(|p| p[0] < p[1]));
    }

    #[test]
    fn numpy_sum_is_exact_on_integers() {
        for n in [0usize, 1, 7, 8, 9, 100, 128, 129, 1000] {
            let v: Vec<f64> = (0..n).map(|i| i as f64).collect();
            assert_eq!(numpy_sum(&v), (n * n.saturating_sub(1) / 2) as f64);
        }
    }

    #[test]
    fn identical_histograms_give_one_and_disjoint_ones_almost_zero() {
        let h = histogram(&[0, 1, 1, 2, 3, 3, 3], 5);
        assert!((mauve_from_histograms(&h, &h, 5.0) - 1.0).abs() < 1e-12);
        let p = histogram(&[0, 1], 4);
        let q = histogram(&[2, 3], 4);
        assert!(mauve_from_histograms(&p, &q, 5.0) < 0.01);
    }

    #[test]
    fn bad_input_is_named() {
        let err = mauve_from_labels(&[0, 3], &[1], 3, 5.0).unwrap_err();
        assert!(err.to_string().contains("label 3"), "{err}");
        let p = [0.0f32; 6];
        let q = [1.0f32; 8];
        let err = mauve(
            Features::new("p", &p, 3).unwrap(),
            Features::new("q", &q, 4).unwrap(),
            &MauveOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err, MauveError::Dimensions { p: 3, q: 4 });
        assert!(Features::new("p", &p, 4).is_err());
        let err = mauve(
            Features::new("p", &p, 3).unwrap(),
            Features::new("q", &p, 3).unwrap(),
            &MauveOptions {
                clusters: Some(5),
                ..MauveOptions::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            err,
            MauveError::TooFewTexts {
                texts: 4,
                clusters: 5
            }
        );
        assert!(flatten("q", &[vec![1.0, 2.0], vec![1.0]]).is_err());
        assert_eq!(
            Features::new("q", &[], 0).unwrap_err(),
            MauveError::NoTexts { side: "q" }
        );
    }

    #[test]
    fn kmeans_finds_well_separated_clusters_whatever_the_threads() {
        // Four tight blobs in 3 dimensions, 10 points each.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let centres = [
            [5.0, 0.0, 0.0],
            [0.0, 5.0, 0.0],
            [0.0, 0.0, 5.0],
            [-5.0, -5.0, 0.0],
        ];
        let mut z = Vec::new();
        for i in 0..40 {
            for c in centres[i % 4] {
                z.push(c + (rng.next_u32() as f32 / u32::MAX as f32 - 0.5) * 0.1);
            }
        }
        let (labels, _) = kmeans(&z, 40, 3, 4, 5, 100, 7);
        for i in 4..40 {
            assert_eq!(labels[i], labels[i % 4]);
        }
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        assert_eq!(one.install(|| kmeans(&z, 40, 3, 4, 5, 100, 7)).0, labels);
    }

    #[test]
    fn interval_holds_the_estimate_and_is_repeatable() {
        let labels_p: Vec<usize> = (0..200).map(|i| (i * 7) % 10).collect();
        let labels_q: Vec<usize> = (0..200).map(|i| (i * 3) % 10 / 2).collect();
        let prompts: Vec<usize> = (0..200).map(|i| i / 4).collect();
        let value = mauve_from_labels(&labels_p, &labels_q, 10, 5.0).unwrap();
        let ci = mauve_interval(&labels_p, &labels_q, 10, &prompts, &prompts, 5.0, 200, 3).unwrap();
        assert!(ci.0 <= value && value <= ci.1, "{ci:?} {value}");
        let again =
            mauve_interval(&labels_p, &labels_q, 10, &prompts, &prompts, 5.0, 200, 3).unwrap();
        assert_eq!(ci, again);
        let err = mauve_interval(
            &labels_p,
            &labels_q,
            10,
            &prompts[1..],
            &prompts,
            5.0,
            10,
            3,
        );
        assert!(err.is_err());
    }
}
