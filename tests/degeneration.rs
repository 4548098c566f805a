//! Parity of `report::degeneration` with Holtzman et al.'s released metric scripts
//! (`ari-holtzman/degen`), checked against `tests/fixtures/degen.json` (recorded by
//! `make_degen_fixtures.py`; no Python needed here).
//!
//! The repetition verdicts and the hypotheses drawn for Self-BLEU are integers and must be equal.
//! The Zipf coefficients and Self-BLEU-4 scores agree to 1e-9 relative (1e-12 absolute around
//! 0): the same formulas in f64, summed in another order (numpy's pairwise sums and BLAS dot
//! products for the fit, `math.fsum` and the draw order for BLEU), differ in the last bits
//! only.

// Shared with the decoding tests; the token-id reader is theirs.
#[allow(dead_code)]
mod recorded;

use serde::Deserialize;
use sweep::report::{degeneration, metrics};

#[derive(Deserialize)]
struct Fixture {
    repetition: Vec<RepetitionCase>,
    sets: Vec<SetCase>,
    python_sample: Vec<Draw>,
}

#[derive(Deserialize)]
struct RepetitionCase {
    name: String,
    tokens: Vec<u32>,
    is_loop: bool,
    phrase_len: Option<usize>,
    repeats: Option<usize>,
}

#[derive(Deserialize)]
struct SetCase {
    name: String,
    texts: Vec<Vec<u32>>,
    zipf: Vec<ZipfCase>,
    self_bleu_4: Option<BleuCase>,
}

#[derive(Deserialize)]
struct ZipfCase {
    ranks: usize,
    /// `null` where scipy's fit is NaN.
    value: Option<f64>,
}

#[derive(Deserialize)]
struct BleuCase {
    n_sample: usize,
    value: f64,
}

#[derive(Deserialize)]
struct Draw {
    n: usize,
    k: usize,
    fourth_draw_sorted: Vec<usize>,
}

fn fixture() -> Fixture {
    serde_json::from_value(recorded::read("degen.json")).unwrap()
}

fn close(ours: f64, reference: f64) -> bool {
    (ours - reference).abs() <= 1e-9 * reference.abs().max(ours.abs()) + 1e-12
}

#[test]
fn repetition_verdicts_match_the_reference() {
    let fixture = fixture();
    for case in &fixture.repetition {
        let tail = degeneration::tail_loop(&case.tokens);
        assert_eq!(
            degeneration::ends_in_repetition(&case.tokens),
            case.is_loop,
            "{}: {tail:?}",
            case.name
        );
        if case.is_loop {
            assert_eq!(
                (Some(tail.phrase_len), Some(tail.repeats)),
                (case.phrase_len, case.repeats),
                "{}",
                case.name
            );
        }
    }
    let texts: Vec<&[u32]> = fixture
        .repetition
        .iter()
        .map(|c| c.tokens.as_slice())
        .collect();
    let loops = fixture.repetition.iter().filter(|c| c.is_loop).count();
    assert_eq!(
        degeneration::repetition_rate(&texts),
        loops as f64 / texts.len() as f64
    );
}

#[test]
fn zipf_coefficients_match_the_reference() {
    for set in &fixture().sets {
        for case in &set.zipf {
            let ours = degeneration::zipf_coefficient_ranks(&set.texts, case.ranks);
            match case.value {
                None => assert!(ours.is_nan(), "{} top {}: {ours}", set.name, case.ranks),
                Some(reference) => assert!(
                    close(ours, reference),
                    "{} top {}: {ours} vs {reference}",
                    set.name,
                    case.ranks
                ),
            }
            if case.ranks == degeneration::ZIPF_RANKS {
                let default = degeneration::zipf_coefficient(&set.texts);
                assert!(default.to_bits() == ours.to_bits(), "{}", set.name);
            }
        }
    }
}

#[test]
fn self_bleu_matches_the_reference() {
    let mut scored = 0;
    for set in &fixture().sets {
        let Some(case) = &set.self_bleu_4 else {
            continue;
        };
        let ours = degeneration::self_bleu_4(&set.texts, case.n_sample);
        assert!(
            close(ours, case.value),
            "{}: {ours} vs {}",
            set.name,
            case.value
        );
        // Scoring every text, the two Self-BLEUs are one definition.
        if case.n_sample == set.texts.len() {
            let all = metrics::self_bleu_4(&set.texts, usize::MAX, 0);
            assert!(close(all, case.value), "{}: {all}", set.name);
        }
        scored += 1;
    }
    assert!(scored >= 5);
}

#[test]
fn hypotheses_are_pythons_fourth_draw() {
    for draw in &fixture().python_sample {
        assert_eq!(
            degeneration::self_bleu_hypotheses(draw.n, draw.k),
            draw.fourth_draw_sorted,
            "random.sample(range({}), {})",
            draw.n,
            draw.k
        );
    }
}
