//! Diversity as decoding papers report it, computed exactly as the code those numbers come
//! from: rep-n and diversity of SimCTG (Su et al. 2022, "A Contrastive Framework for Neural
//! Text Generation"), and the gzip compression ratio of Shaib et al. 2024 ("Standardizing the
//! Measurement of Text Diversity"). The fixtures of `tests/diversity.rs` hold the reference
//! code's own outputs.
//!
//! These differ on purpose from the metrics of the same names elsewhere
//! ([`crate::report::metrics::mean_rep_n`] is Welleck et al.'s seq-rep-n, a mean over texts):
//! a table can be compared with a paper only if every quirk of the paper's code is kept, so
//! they are kept here and named in each function's documentation.
//!
//! Same conventions as [`crate::report::metrics`]: undefined is NaN, results are deterministic
//! (hash sets only count).

use std::collections::HashSet;
use std::io::Write;

use flate2::Compression;
use flate2::Crc;
use flate2::write::DeflateEncoder;

/// The n-gram orders SimCTG reports.
pub const SIMCTG_ORDERS: [usize; 3] = [2, 3, 4];

/// The words of a text as Python's `str.split()` cuts them, which is how SimCTG tokenises.
/// Python's whitespace is Unicode's White_Space (Rust's [`char::is_whitespace`]) plus the four
/// ASCII information separators U+001C..U+001F, so a text holding those has more words here
/// than under `split_whitespace`.
pub fn simctg_words(text: &str) -> Vec<&str> {
    text.split(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
        .filter(|w| !w.is_empty())
        .collect()
}

/// How many n-grams a text has and how many of them are distinct.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NgramCount {
    pub unique: usize,
    pub total: usize,
}

impl NgramCount {
    /// `1 − unique ÷ total`; NaN when there are no n-grams.
    pub fn repetition(self) -> f64 {
        if self.total == 0 {
            f64::NAN
        } else {
            1.0 - self.unique as f64 / self.total as f64
        }
    }
}

impl std::ops::Add for NgramCount {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self {
            unique: self.unique + other.unique,
            total: self.total + other.total,
        }
    }
}

/// The n-grams of one text as SimCTG's `eval_text` counts them: consecutive words, distinct
/// within this text only. Its loop runs `while end_idx < len(token_list)`, so the text's LAST
/// n-gram is never counted: a text of `w` words has `max(w − n, 0)` n-grams, not `w − n + 1`,
/// and a text of exactly `n` words has none. ("a b c a b" has the 2-grams "a b", "b c",
/// "c a": no repeat, because the repeated "a b" is the last.)
///
/// # Panics
/// If `n == 0`.
pub fn simctg_ngram_count(words: &[&str], n: usize) -> NgramCount {
    assert!(n > 0, "rep-n needs n >= 1");
    let grams = words.windows(n).take(words.len().saturating_sub(n));
    let total = grams.len();
    let unique: HashSet<&[&str]> = grams.collect();
    NgramCount {
        unique: unique.len(),
        total,
    }
}

/// One text's counts for n = 2, 3, 4 ([`SIMCTG_ORDERS`]); summing texts' counts with `+`
/// and handing the sums to [`SimctgRepetition::from_counts`] gives [`simctg_repetition`], so a
/// resampled set of texts needs no recount.
pub fn simctg_text_counts(text: &str) -> [NgramCount; 3] {
    let words = simctg_words(text);
    SIMCTG_ORDERS.map(|n| simctg_ngram_count(&words, n))
}

/// rep-2, rep-3, rep-4 and diversity of a set of texts, as fractions in [0, 1].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimctgRepetition {
    pub rep_2: f64,
    pub rep_3: f64,
    pub rep_4: f64,
    /// `(1 − rep_2)(1 − rep_3)(1 − rep_4)`.
    pub diversity: f64,
}

impl SimctgRepetition {
    /// From the n = 2, 3, 4 counts summed over the texts.
    pub fn from_counts(counts: [NgramCount; 3]) -> Self {
        let [rep_2, rep_3, rep_4] = counts.map(NgramCount::repetition);
        Self {
            rep_2,
            rep_3,
            rep_4,
            diversity: (1.0 - rep_2) * (1.0 - rep_3) * (1.0 - rep_4),
        }
    }
}

/// SimCTG's `measure_repetition_and_diversity` (`simctg/evaluation.py`, the evaluation behind
/// Su et al. 2022 and Su & Collier 2022): `rep_n = 1 − Σ unique ÷ Σ total`, where each text's
/// n-grams are made distinct within that text ([`simctg_ngram_count`], which also skips each
/// text's last n-gram as the reference does) and both counts are summed over the texts, so a
/// phrase that recurs in two texts is no repetition, but a long looping text outweighs a short
/// one. `diversity = (1 − rep_2)(1 − rep_3)(1 − rep_4)`. Words are Python's
/// ([`simctg_words`]).
///
/// The reference prints percentages rounded to two decimals, `round(100 · rep_n, 2)`, and
/// computes its diversity, a fraction, from those rounded percentages; papers print that
/// diversity ×100 (Su & Collier's human-text diversity of 93.62 is 0.9362). Nothing is rounded
/// here: `100 · rep_n` rounds to the printed rep-n, and `diversity` is within 1.5e-4 of the
/// reference's (each factor moves by at most 5e-5 in its rounding).
///
/// A `rep_n` whose total is 0 (every text has at most `n` words) is NaN, and so is
/// `diversity`; the reference raises ZeroDivisionError then.
pub fn simctg_repetition<S: AsRef<str>>(texts: &[S]) -> SimctgRepetition {
    let counts = texts
        .iter()
        .map(|t| simctg_text_counts(t.as_ref()))
        .fold([NgramCount::default(); 3], |acc, one| {
            [acc[0] + one[0], acc[1] + one[1], acc[2] + one[2]]
        });
    SimctgRepetition::from_counts(counts)
}

/// The modification time written into the gzip headers. The reference writes the clock's time
/// there, and the inner member's copy is compressed again, so its result moves with the time it
/// runs at (by up to 3 bytes of compressed size on the fixtures); a fixed time keeps ours
/// reproducible. The fixtures are recorded with the same value (14 November 2023).
pub const GZIP_MTIME: u32 = 1_700_000_000;

/// The name `diversity`'s `compression_ratio` gives its compressed file: `GzipFile` writes it,
/// without `.gz`, into the outer member's header.
const GZIP_FILE_NAME: &[u8] = b"compressed";

/// The sizes behind [`compression_ratio`], in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressionSizes {
    /// The texts joined with single spaces, UTF-8.
    pub original: usize,
    /// What the reference writes to disk for them (see [`compression_ratio`]).
    pub compressed: usize,
}

impl CompressionSizes {
    /// `original ÷ compressed`; NaN when the joined texts are empty.
    pub fn ratio(self) -> f64 {
        if self.original == 0 {
            f64::NAN
        } else {
            self.original as f64 / self.compressed as f64
        }
    }
}

/// The sizes [`compression_ratio`] divides.
pub fn compression_sizes<S: AsRef<str>>(texts: &[S]) -> CompressionSizes {
    let joined = texts
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<&str>>()
        .join(" ");
    let inner = gzip_member(joined.as_bytes(), None);
    let outer = gzip_member(&inner, Some(GZIP_FILE_NAME));
    CompressionSizes {
        original: joined.len(),
        compressed: outer.len(),
    }
}

/// The compression ratio of Shaib et al. 2024, as their package `diversity` (0.3.1) computes
/// `compression_ratio(texts, algorithm="gzip")`: the size of the texts joined with single spaces
/// (UTF-8: the reference writes them in the locale's encoding), divided by the size of their compressed file. Higher means more redundant, i.e. less
/// diverse. That file is compressed TWICE: `gzip.compress` (level 9, a 10-byte header with the
/// current time, OS byte 255) makes a gzip member, which `gzip.GzipFile` (level 9, a header
/// naming the file `compressed`) compresses again; the second step adds about 30 bytes, which
/// weighs on short texts. Both steps are reproduced, with the times in the headers fixed at
/// [`GZIP_MTIME`]. Deflate is flate2's zlib-rs backend, a port of zlib-ng whose level 9 makes
/// zlib's choices on 43 of the 44 fixtures (byte-identical sizes to the zlib 1.2.13 they were
/// made with); on 63 bytes of mostly multi-byte whitespace it stores a block that zlib codes
/// with fixed Huffman codes, 2 bytes more, a ratio 1.7 % lower. The reference's own size moves
/// by as much with its clock.
///
/// The reference rounds the ratio to three decimals; this does not. Nothing to compress (no
/// texts, or one empty text) gives NaN, where the reference returns 0.
pub fn compression_ratio<S: AsRef<str>>(texts: &[S]) -> f64 {
    compression_sizes(texts).ratio()
}

/// One gzip member (RFC 1952) of `data`, as Python's gzip module writes it at level 9 (XFL 2,
/// OS 255, no extra fields), with an FNAME field when `name` is given.
fn gzip_member(data: &[u8], name: Option<&[u8]>) -> Vec<u8> {
    const FNAME: u8 = 0x08;
    const XFL_BEST: u8 = 2;
    const OS_UNKNOWN: u8 = 255;
    let mut out = vec![0x1f, 0x8b, 8, if name.is_some() { FNAME } else { 0 }];
    out.extend_from_slice(&GZIP_MTIME.to_le_bytes());
    out.extend_from_slice(&[XFL_BEST, OS_UNKNOWN]);
    if let Some(name) = name {
        out.extend_from_slice(name);
        out.push(0);
    }
    let mut deflate = DeflateEncoder::new(out, Compression::best());
    deflate
        .write_all(data)
        .expect("writing to a Vec cannot fail");
    let mut out = deflate.finish().expect("writing to a Vec cannot fail");
    let mut crc = Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE is the length modulo 2^32.
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(text: &str, n: usize) -> (usize, usize) {
        let c = simctg_ngram_count(&simctg_words(text), n);
        (c.unique, c.total)
    }

    #[test]
    fn words_split_like_python() {
        assert_eq!(simctg_words("  a\tb\n\nc  "), ["a", "b", "c"]);
        assert_eq!(simctg_words("a\u{1c}b\u{1f}c"), ["a", "b", "c"]);
        assert_eq!(
            simctg_words("a\u{a0}b\u{3000}c\u{85}d"),
            ["a", "b", "c", "d"]
        );
        // Zero-width space and BOM are not whitespace to Python either.
        assert_eq!(
            simctg_words("a\u{200b}b \u{feff}c"),
            ["a\u{200b}b", "\u{feff}c"]
        );
        assert!(simctg_words(" \r\n ").is_empty());
    }

    #[test]
    fn the_last_ngram_of_each_text_is_skipped() {
        // 2-grams counted: "a b", "b c", "c a"; the repeated "a b" is last, so not counted.
        assert_eq!(counts("a b c a b", 2), (3, 3));
        // "a b", "b a", "a b", "b c", "c d" ("d e" skipped): the early repeat counts.
        assert_eq!(counts("a b a b c d e", 2), (4, 5));
        // w words give w − n n-grams; exactly n words give none.
        assert_eq!(counts("a b c d e", 4), (1, 1));
        assert_eq!(counts("a b c d", 4), (0, 0));
        assert_eq!(counts("a b", 4), (0, 0));
        assert_eq!(counts("", 2), (0, 0));
        assert_eq!(counts("the the the the the", 2), (1, 3));
    }

    #[test]
    fn counts_are_per_text_then_summed() {
        // The same text twice repeats nothing: each is made distinct on its own.
        let r = simctg_repetition(&["a b c d e f", "a b c d e f"]);
        assert_eq!(
            (r.rep_2, r.rep_3, r.rep_4, r.diversity),
            (0.0, 0.0, 0.0, 1.0)
        );
        // "x y x y x y": 2-grams xy yx xy yx (2 unique of 4), 3-grams xyx yxy xyx (2 of 3),
        // 4-grams xyxy yxyx (2 of 2); "p q r s t": 3/3, 2/2, 1/1.
        let r = simctg_repetition(&["x y x y x y", "p q r s t"]);
        assert_eq!(r.rep_2, 1.0 - 5.0 / 7.0);
        assert_eq!(r.rep_3, 1.0 - 4.0 / 5.0);
        assert_eq!(r.rep_4, 0.0);
        assert_eq!(r.diversity, (5.0 / 7.0) * (1.0 - (1.0 - 4.0 / 5.0)));
        let summed = simctg_text_counts("x y x y x y")
            .into_iter()
            .zip(simctg_text_counts("p q r s t"))
            .map(|(a, b)| a + b)
            .collect::<Vec<_>>();
        assert_eq!(SimctgRepetition::from_counts(summed.try_into().unwrap()), r);
    }

    #[test]
    fn no_ngrams_is_nan() {
        let none: [&str; 0] = [];
        let r = simctg_repetition(&none);
        assert!(r.rep_2.is_nan() && r.rep_3.is_nan() && r.rep_4.is_nan());
        assert!(r.diversity.is_nan());
        // Four words: one 2-gram and one 3-gram (the last of each skipped), no 4-gram.
        let r = simctg_repetition(&["to be or not"]);
        assert_eq!((r.rep_2, r.rep_3), (0.0, 0.0));
        assert!(r.rep_4.is_nan() && r.diversity.is_nan());
    }

    #[test]
    fn gzip_members_are_well_formed() {
        let data = b"to be or not to be";
        let member = gzip_member(data, Some(GZIP_FILE_NAME));
        assert_eq!(member[..4], [0x1f, 0x8b, 8, 8]);
        assert_eq!(member[10..21], *b"compressed\0");
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&member[..]), &mut back)
            .unwrap();
        assert_eq!(back, data);
        assert_eq!(gzip_member(data, None)[3], 0);
    }

    #[test]
    fn compression_ratio_joins_with_spaces_and_is_nan_without_text() {
        let sizes = compression_sizes(&["ab", "", "cd"]);
        assert_eq!(sizes.original, "ab  cd".len());
        assert_eq!(
            compression_ratio(&["ab", "", "cd"]),
            6.0 / sizes.compressed as f64
        );
        assert!(compression_ratio::<&str>(&[]).is_nan());
        assert!(compression_ratio(&[""]).is_nan());
        assert!(compression_ratio(&["", ""]).is_finite());
        // Redundant text compresses well; both gzip steps cost about 18 + 29 bytes of framing.
        let loop_text = "the king is dead ".repeat(200);
        assert!(compression_ratio(&[loop_text.as_str()]) > 20.0);
    }
}
