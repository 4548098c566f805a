//! The error function for f32, a slice at a time: the exact GELU that nanoGPT models are
//! trained with, x (1 + erf(x / sqrt 2)) / 2, takes one for every hidden unit of every MLP.
//!
//! Away from 0 it is Abramowitz and Stegun's formula 7.1.26 (Handbook of Mathematical
//! Functions, 1964, p. 299): erf(a) = 1 - t P(t) e^(-a^2) with t = 1 / (1 + p a) and P of
//! degree 4, within 1.5e-7 of the exact value for a >= 0 (the same formula PyTorch's
//! vectorised CPU `erf` takes). Near 0 the 1 - ... cancels the digits that matter, so for
//! |x| < [`SERIES_BELOW`] it takes instead the Maclaurin series 2/sqrt(pi) (x - x^3/3 + ...)
//! to x^21, whose truncation is below 2e-9 there. Overall it is within 2e-7 of the exact
//! value, odd (erf(-x) = -erf(x)), 1 beyond about 4, and NaN for NaN.
//!
//! The exponentials are taken by [`super::exponential`], whose scalar and vector code agree to
//! the bit; the rest is the same plain f32 arithmetic in [`erf`] and [`erf_in_place`], so the
//! two agree to the bit as well.

use super::exponential::{exp, exp_in_place};

/// Below this |x| the series is used (see the module documentation).
const SERIES_BELOW: f32 = 1.0;
/// Abramowitz and Stegun 7.1.26, as printed there (the last digits round away in f32).
const P: f32 = 0.327_591_1;
#[allow(clippy::excessive_precision)]
const A: [f32; 5] = [
    0.254_829_592,
    -0.284_496_736,
    1.421_413_741,
    -1.453_152_027,
    1.061_405_429,
];
/// (-1)^n 2 / (sqrt(pi) n! (2n + 1)), the Maclaurin coefficients of erf, for n = 0..=10.
const SERIES: [f32; 11] = [
    std::f32::consts::FRAC_2_SQRT_PI,
    -0.376_126_4,
    0.112_837_92,
    -0.026_866_17,
    0.005_223_977,
    -8.548_327e-4,
    1.205_533_3e-4,
    -1.492_565e-5,
    1.646_211_4e-6,
    -1.636_584_5e-7,
    1.480_719_3e-8,
];

/// erf(x) (see the module documentation for its accuracy).
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    finish(x, exp(-(a * a)))
}

/// `values[i] = erf(values[i])`.
pub fn erf_in_place(values: &mut [f32]) {
    const SLICE: usize = 512;
    let mut e = [0.0f32; SLICE];
    for xs in values.chunks_mut(SLICE) {
        let e = &mut e[..xs.len()];
        for (e, &x) in e.iter_mut().zip(xs.iter()) {
            *e = -(x * x);
        }
        exp_in_place(e);
        for (x, &e) in xs.iter_mut().zip(e.iter()) {
            *x = finish(*x, e);
        }
    }
}

/// erf(x) from x and e = e^(-x^2); both branches are computed, so that a loop of it has no
/// jump and compiles to vector selects.
#[inline(always)]
fn finish(x: f32, e: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let mut p = A[4];
    for &c in A[..4].iter().rev() {
        p = p * t + c;
    }
    let tail = 1.0 - p * t * e;
    let z = a * a;
    let mut s = SERIES[10];
    for &c in SERIES[..10].iter().rev() {
        s = s * z + c;
    }
    let series = s * a;
    let y = if a < SERIES_BELOW { series } else { tail };
    // NaN fails the comparison and takes the tail, which is NaN as well.
    y.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf in f64 to ~1e-12: its Maclaurin series below 3, the asymptotic series of erfc above
    /// (whose smallest term there is ~1e-10 of erfc(3) = 2e-5).
    fn reference(x: f64) -> f64 {
        let a = x.abs();
        let y = if a < 3.0 {
            let (mut term, mut sum, mut n) = (a, 0.0, 0.0);
            while term.abs() > 1e-18 {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -a * a / n;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let (mut term, mut sum) = (1.0, 0.0);
            for n in 0..9 {
                sum += term;
                term *= -(2.0 * n as f64 + 1.0) / (2.0 * a * a);
            }
            1.0 - sum * (-a * a).exp() / (a * std::f64::consts::PI.sqrt())
        };
        y.copysign(x)
    }

    fn points() -> Vec<f32> {
        let mut xs: Vec<f32> = (-100_000..=100_000).map(|i| i as f32 / 10_000.0).collect();
        xs.extend([
            0.0,
            -0.0,
            1e-30,
            -1e-30,
            1e-7,
            -1e-7,
            SERIES_BELOW,
            -SERIES_BELOW,
        ]);
        xs.extend([f32::MAX, f32::MIN, f32::INFINITY, f32::NEG_INFINITY]);
        xs
    }

    #[test]
    fn is_within_2e_7_of_the_exact_value() {
        let mut worst = (0.0, 0.0);
        for x in points() {
            let got = erf(x);
            let want = if x.is_finite() {
                reference(x as f64)
            } else {
                1f64.copysign(x as f64)
            };
            let error = (got as f64 - want).abs();
            if error > worst.0 {
                worst = (error, x);
            }
        }
        eprintln!("erf: worst |error| {:e} at x = {}", worst.0, worst.1);
        assert!(worst.0 <= 2e-7, "|error| {} at x = {}", worst.0, worst.1);
        assert_eq!(erf(0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(erf(-0.0).to_bits(), (-0.0f32).to_bits());
        assert!(erf(f32::NAN).is_nan());
    }

    #[test]
    fn the_slice_code_agrees_with_the_scalar_code_to_the_bit() {
        let xs = points();
        let mut all = xs.clone();
        erf_in_place(&mut all);
        for (&x, y) in xs.iter().zip(&all) {
            assert_eq!(y.to_bits(), erf(x).to_bits(), "x={x}");
        }
        for at in 0..11 {
            let mut v = vec![0.75f32; 11];
            v[at] = f32::NAN;
            erf_in_place(&mut v);
            assert!(v[at].is_nan(), "NaN at {at}");
            assert!(
                v.iter()
                    .enumerate()
                    .all(|(i, y)| i == at || y.to_bits() == erf(0.75).to_bits())
            );
        }
    }
}
