//! Parity of `report::diversity` with the reference code of the papers, checked against
//! `tests/fixtures/diversity.json` (recorded by `make_diversity_fixtures.py`; no Python needed
//! here): SimCTG's `measure_repetition_and_diversity` and the `diversity` package's gzip
//! `compression_ratio`.
//!
//! Counts and byte sizes must be identical. The references round what they return, so the
//! unrounded values are compared with what the fixture recorded beside the rounded ones (to a
//! few ulp: the JSON reader may be one ulp off), and the rounded returns must be what ours
//! rounds to.

#[allow(dead_code, reason = "the token-id reader serves the decoding fixtures")]
mod recorded;

use serde::Deserialize;
use std::collections::BTreeMap;
use sweep::report::diversity::{
    CompressionSizes, NgramCount, SIMCTG_ORDERS, SimctgRepetition, compression_ratio,
    compression_sizes, simctg_repetition, simctg_text_counts,
};

#[derive(Deserialize)]
struct Fixture {
    generator: BTreeMap<String, serde_json::Value>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    texts: Vec<String>,
    simctg: Simctg,
    compression: Compression,
}

#[derive(Deserialize)]
struct Simctg {
    counts: BTreeMap<String, Count>,
    rep: BTreeMap<String, Option<f64>>,
    /// `[rep_2, rep_3, rep_4]` in percent rounded to two decimals, and the diversity built from
    /// them; absent when the reference raised ZeroDivisionError.
    rounded: Option<[f64; 4]>,
    error: Option<String>,
    /// The reference's output with its `round` replaced by the identity.
    percent_unrounded: Option<[f64; 4]>,
}

#[derive(Deserialize)]
struct Count {
    unique: usize,
    total: usize,
}

#[derive(Deserialize)]
struct Compression {
    original_size: usize,
    compressed_size: usize,
    compressed_size_range: [usize; 2],
    rounded: f64,
}

fn fixture() -> Fixture {
    serde_json::from_value(recorded::read("diversity.json")).unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

fn reps(r: &SimctgRepetition) -> [f64; 3] {
    [r.rep_2, r.rep_3, r.rep_4]
}

#[test]
fn fixture_records_the_mtime_we_write() {
    let f = fixture();
    assert_eq!(
        f.generator["gzip_mtime"].as_u64(),
        Some(u64::from(sweep::report::diversity::GZIP_MTIME))
    );
    assert!(f.cases.len() >= 40, "{} cases", f.cases.len());
}

#[test]
fn simctg_counts_match_exactly() {
    for case in fixture().cases {
        let summed = case
            .texts
            .iter()
            .map(|t| simctg_text_counts(t))
            .fold([NgramCount::default(); 3], |acc, one| {
                [acc[0] + one[0], acc[1] + one[1], acc[2] + one[2]]
            });
        for (i, n) in SIMCTG_ORDERS.iter().enumerate() {
            let want = &case.simctg.counts[&n.to_string()];
            assert_eq!(
                (summed[i].unique, summed[i].total),
                (want.unique, want.total),
                "{}: {n}-gram counts",
                case.name
            );
        }
    }
}

#[test]
fn simctg_repetition_matches_the_reference() {
    let mut rounded_cases = 0;
    let mut worst_diversity_gap = 0.0_f64;
    for case in fixture().cases {
        let ours = simctg_repetition(&case.texts);
        let s = &case.simctg;
        for (i, n) in SIMCTG_ORDERS.iter().enumerate() {
            match s.rep[&n.to_string()] {
                Some(want) => assert!(
                    close(reps(&ours)[i], want, 4.0 * f64::EPSILON),
                    "{}: rep_{n} {} vs {want}",
                    case.name,
                    reps(&ours)[i]
                ),
                None => assert!(reps(&ours)[i].is_nan(), "{}: rep_{n}", case.name),
            }
        }
        match (s.rounded, s.percent_unrounded) {
            (Some(rounded), Some(unrounded)) => {
                rounded_cases += 1;
                for (i, rep) in reps(&ours).into_iter().enumerate() {
                    // Python's round(x, 2) of the percentage.
                    assert!(
                        close(100.0 * rep, rounded[i], 0.005 + 1e-9),
                        "{}: {} rounds to {}",
                        case.name,
                        100.0 * rep,
                        rounded[i]
                    );
                    assert!(close(100.0 * rep, unrounded[i], 1e-12), "{}", case.name);
                }
                assert!(
                    close(ours.diversity, unrounded[3], 1e-14),
                    "{}: diversity {} vs unrounded {}",
                    case.name,
                    ours.diversity,
                    unrounded[3]
                );
                let gap = (ours.diversity - rounded[3]).abs();
                assert!(gap <= 1.5e-4, "{}: diversity {gap}", case.name);
                worst_diversity_gap = worst_diversity_gap.max(gap);
            }
            (None, None) => {
                let error = s.error.as_deref().unwrap_or_default();
                assert!(error.starts_with("ZeroDivisionError"), "{}", case.name);
                assert!(ours.diversity.is_nan(), "{}: diversity", case.name);
            }
            _ => panic!("{}: rounded and unrounded disagree on failing", case.name),
        }
    }
    assert!(
        rounded_cases >= 20,
        "only {rounded_cases} cases with values"
    );
    eprintln!("largest |diversity − reference's rounded-rep diversity|: {worst_diversity_gap:e}");
}

/// Fixtures on which flate2's zlib-rs deflate and the zlib 1.2.13 of the reference write
/// different sizes, by how many bytes. On `unicode_spaces` (63 bytes, mostly multi-byte
/// whitespace) zlib-rs stores the inner member's bytes (a 68-byte deflate block) where zlib codes
/// them with fixed Huffman codes (66 bytes). The reference's own size moves by up to 3 bytes with
/// the clock it writes into the inner header (`compressed_size_range`).
const ZLIB_RS_DIFFERS: [(&str, usize); 1] = [("unicode_spaces", 2)];

/// The largest relative difference of the ratio on those fixtures: 2 bytes of 120.
const RATIO_TOLERANCE: f64 = 2.0 / 118.0;

#[test]
fn compression_matches_the_reference_byte_for_byte() {
    let mut differing = Vec::new();
    for case in fixture().cases {
        let c = &case.compression;
        let sizes = compression_sizes(&case.texts);
        let ours = compression_ratio(&case.texts);
        let want = CompressionSizes {
            original: c.original_size,
            compressed: c.compressed_size,
        };
        if let Some(&(_, bytes)) = ZLIB_RS_DIFFERS.iter().find(|(name, _)| *name == case.name) {
            differing.push(case.name.clone());
            assert_eq!(sizes.original, want.original, "{}", case.name);
            assert!(
                sizes.compressed.abs_diff(want.compressed) <= bytes,
                "{}",
                case.name
            );
            let relative = (ours - want.ratio()).abs() / want.ratio();
            assert!(relative <= RATIO_TOLERANCE, "{}: {relative}", case.name);
            continue;
        }
        assert_eq!(sizes, want, "{}", case.name);
        let [lo, hi] = c.compressed_size_range;
        assert!(lo <= sizes.compressed && sizes.compressed <= hi);
        if c.original_size == 0 {
            assert!(ours.is_nan(), "{}", case.name);
            assert_eq!(c.rounded, 0.0);
        } else {
            // Python's round(x, 3).
            assert!(
                close(ours, c.rounded, 0.0005 + 1e-12),
                "{}: {ours} vs {}",
                case.name,
                c.rounded
            );
        }
    }
    assert_eq!(differing.len(), ZLIB_RS_DIFFERS.len(), "{differing:?}");
}
