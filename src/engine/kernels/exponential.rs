//! `exp` for f32, eight lanes at a time: decoding takes an exponential of every logit of every
//! row at each step (the softmax of sampling and the log-probability of the pick) and of every
//! hidden unit of every MLP (GELU), and the C library's scalar `expf` was a visible share of a
//! step.
//!
//! The function is the classic one: split x = n ln 2 + r with |r| <= ln 2 / 2, take a degree-7
//! polynomial for e^r, and scale by 2^n. The scalar [`exp`] and the vector code perform the
//! same operations in the same order (fused where one is fused, plain where one is plain), so
//! they agree to the bit and a result never depends on which of them ran or where a slice was
//! split into vectors. It is within 2 ulp of the exact value where the result is a normal
//! float; below e^-87 it returns 0, above e^88.37 infinity, and NaN for NaN: a NaN logit must
//! stay visible to the check that stops a run on it, not turn into a large finite weight.

/// Above this, 2^n would leave the exponent range: the result is infinite.
const MAX_X: f32 = 88.37;
/// Below this the result is under the smallest normal float: it is flushed to 0.
const MIN_X: f32 = -87.0;
/// ln 2 in two parts, the first with few enough bits that n * LN2_HI is exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Taylor-like coefficients of e^r on [-ln 2 / 2, ln 2 / 2], highest order first; the terms
/// 1 + r are added last.
const P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// e^x (see the module documentation for its accuracy and range).
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x > MAX_X {
        return f32::INFINITY;
    }
    if x < MIN_X {
        return 0.0;
    }
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    let mut p = P[0];
    for &c in &P[1..] {
        p = p.mul_add(r, c);
    }
    let y = p.mul_add(r * r, r) + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `out[i] = exp((values[i] - shift) * scale)`: the weights of a softmax at a temperature,
/// with `shift` the largest value.
pub fn exp_shifted_into(values: &[f32], shift: f32, scale: f32, out: &mut [f32]) {
    assert_eq!(
        values.len(),
        out.len(),
        "exp input and output differ in length"
    );
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if simd::available() {
        // SAFETY: the CPU has AVX2 and FMA; the lengths are equal.
        done = unsafe { simd::exp_shifted_into(values, shift, scale, out) };
    }
    for (o, &v) in out[done..].iter_mut().zip(&values[done..]) {
        *o = exp((v - shift) * scale);
    }
}

/// `values[i] = exp(values[i] - shift)`, in place: [`exp_shifted_into`] at scale 1 without a
/// second buffer.
pub fn exp_in_place_shifted(values: &mut [f32], shift: f32) {
    for v in values.iter_mut() {
        *v -= shift;
    }
    exp_in_place(values);
}

/// `values[i] = exp(values[i])`.
pub fn exp_in_place(values: &mut [f32]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if simd::available() {
        // SAFETY: the CPU has AVX2 and FMA.
        done = unsafe { simd::exp_in_place(values) };
    }
    for v in &mut values[done..] {
        *v = exp(*v);
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{LN2_HI, LN2_LO, MAX_X, MIN_X, P};
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// [`super::exp`] on eight lanes.
    #[target_feature(enable = "avx2,fma")]
    fn exp8(x: __m256) -> __m256 {
        let too_big = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(MAX_X));
        let too_small = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(MIN_X));
        let xc = _mm256_max_ps(
            _mm256_min_ps(x, _mm256_set1_ps(MAX_X)),
            _mm256_set1_ps(MIN_X),
        );
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(xc, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), xc);
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), r);
        let mut p = _mm256_set1_ps(P[0]);
        for &c in &P[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let y = _mm256_add_ps(
            _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r),
            _mm256_set1_ps(1.0),
        );
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        )));
        let out = _mm256_mul_ps(y, scale);
        let out = _mm256_blendv_ps(out, _mm256_set1_ps(f32::INFINITY), too_big);
        let out = _mm256_blendv_ps(out, _mm256_setzero_ps(), too_small);
        // The clamps above would turn a NaN lane into a finite number.
        let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
        _mm256_blendv_ps(out, x, nan)
    }

    /// The whole vectors of [`super::exp_shifted_into`]; returns how many values were done.
    ///
    /// # Safety
    /// The CPU supports AVX2 and FMA, and `out` is as long as `values`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_shifted_into(
        values: &[f32],
        shift: f32,
        scale: f32,
        out: &mut [f32],
    ) -> usize {
        let (shift, scale) = (_mm256_set1_ps(shift), _mm256_set1_ps(scale));
        let whole = values.len() / 8 * 8;
        for i in (0..whole).step_by(8) {
            // SAFETY: i + 8 <= whole <= the length of both slices.
            unsafe {
                let v = _mm256_loadu_ps(values.as_ptr().add(i));
                let y = exp8(_mm256_mul_ps(_mm256_sub_ps(v, shift), scale));
                _mm256_storeu_ps(out.as_mut_ptr().add(i), y);
            }
        }
        whole
    }

    /// The whole vectors of [`super::exp_in_place`]; returns how many values were done.
    ///
    /// # Safety
    /// The CPU supports AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_in_place(values: &mut [f32]) -> usize {
        let whole = values.len() / 8 * 8;
        for i in (0..whole).step_by(8) {
            // SAFETY: i + 8 <= whole <= the length of the slice.
            unsafe {
                let p = values.as_mut_ptr().add(i);
                _mm256_storeu_ps(p, exp8(_mm256_loadu_ps(p)));
            }
        }
        whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 997th float between the range's ends, plus the ends and a few special points.
    fn points() -> Vec<f32> {
        let mut xs: Vec<f32> = (0..200_000)
            .map(|i| -90.0 + 180.0 * (i as f32 / 200_000.0))
            .collect();
        xs.extend([
            0.0, -0.0, 1.0, -1.0, MAX_X, MIN_X, 88.5, -87.2, -1e-30, 1e-30,
        ]);
        xs.extend([f32::INFINITY, f32::NEG_INFINITY, f32::MAX, f32::MIN]);
        xs
    }

    #[test]
    fn nan_stays_nan_in_the_scalar_and_the_vector_code() {
        let quiet = f32::NAN;
        let negative = -f32::NAN;
        let payload = f32::from_bits(0x7fc0_1234);
        for nan in [quiet, negative, payload] {
            assert!(exp(nan).is_nan());
            // A NaN in every lane position of a vector, and in the scalar tail.
            for at in 0..11 {
                let mut v = vec![0.5f32; 11];
                v[at] = nan;
                let mut shifted = vec![0.0; v.len()];
                exp_shifted_into(&v, 0.25, 1.0, &mut shifted);
                exp_in_place(&mut v);
                assert!(v[at].is_nan(), "exp_in_place, NaN at {at}");
                assert!(shifted[at].is_nan(), "exp_shifted_into, NaN at {at}");
                let others = v.iter().enumerate().filter(|&(i, _)| i != at);
                assert!(
                    others
                        .clone()
                        .all(|(_, y)| y.to_bits() == exp(0.5).to_bits())
                );
            }
        }
    }

    #[test]
    fn is_within_two_ulp_of_the_exact_value() {
        for x in points() {
            let got = exp(x);
            if x > MAX_X {
                assert_eq!(got, f32::INFINITY, "x={x}");
            } else if x < MIN_X {
                assert_eq!(got, 0.0, "x={x}");
            } else {
                let want = (x as f64).exp();
                let ulp = (want as f32).to_bits().abs_diff(got.to_bits());
                assert!(ulp <= 2, "x={x}: {got} vs {want} ({ulp} ulp)");
            }
        }
    }

    #[test]
    fn the_vector_code_agrees_with_the_scalar_code_to_the_bit() {
        let xs = points();
        let mut all = xs.clone();
        exp_in_place(&mut all);
        let mut shifted = vec![0.0; xs.len()];
        exp_shifted_into(&xs, 1.5, 0.7, &mut shifted);
        for (i, &x) in xs.iter().enumerate() {
            assert_eq!(all[i].to_bits(), exp(x).to_bits(), "x={x}");
            let y = (x - 1.5) * 0.7;
            assert_eq!(shifted[i].to_bits(), exp(y).to_bits(), "x={x}");
        }
        // The same value gives the same result in any position of a vector or the tail.
        for len in 1..20 {
            let mut v = vec![-3.25f32; len];
            exp_in_place(&mut v);
            assert!(v.iter().all(|&y| y.to_bits() == exp(-3.25).to_bits()));
        }
    }
}
