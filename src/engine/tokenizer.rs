//! GPT-2 BPE through tiktoken-rs, whose `r50k_base` vocabulary is GPT-2's and ships inside
//! the crate, so no tokenizer file is ever downloaded.
//!
//! tiktoken's pre-tokenizer regex and BPE are fast on text, but not on pathological runs: a
//! run of one kind of character is a single BPE piece, merged in time quadratic in its length
//! (400,000 letters take over a minute), and a run of about a million spaces overflows the
//! regex engine's backtracking stack, which tiktoken turns into a panic. So a run longer than
//! [`MAX_RUN_BYTES`] is cut into pieces that are encoded one after another. Text without such
//! a run is encoded exactly as tiktoken encodes it; a longer run may be tokenized differently
//! at each cut (a token that would have spanned the cut is two tokens).

use tiktoken_rs::CoreBPE;

/// The longest run of whitespace, or of non-whitespace, encoded in one piece. Ordinary text
/// never comes near it: GPT-2's longest tokens are under 130 bytes.
pub const MAX_RUN_BYTES: usize = 512;

/// The special token that `encode` recognises in text; never cut in two.
const END_OF_TEXT: &str = "<|endoftext|>";

/// The id of `<|endoftext|>` in GPT-2's vocabulary, its last: the token that ends a text, and
/// the model's end-of-text id when its config names none.
pub const END_OF_TEXT_ID: u32 = 50256;

/// The GPT-2 byte-level BPE tokenizer.
pub struct Tokenizer {
    bpe: &'static CoreBPE,
}

impl Default for Tokenizer {
    fn default() -> Self {
        Self::gpt2()
    }
}

impl Tokenizer {
    pub fn gpt2() -> Self {
        Self {
            bpe: tiktoken_rs::r50k_base_singleton(),
        }
    }

    /// Token ids of `text`. `<|endoftext|>` written in the text is the special token, as a
    /// prompt that starts a new document expects. Time is linear in the length of the text
    /// (see the module documentation for how long runs are cut).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let cuts = cuts(text);
        if cuts.is_empty() {
            return self.bpe.encode_with_special_tokens(text);
        }
        let mut tokens = Vec::new();
        let mut start = 0;
        for end in cuts.into_iter().chain([text.len()]) {
            tokens.extend(self.bpe.encode_with_special_tokens(&text[start..end]));
            start = end;
        }
        tokens
    }

    /// The bytes of `tokens`. A single token can hold part of a UTF-8 character, so text is
    /// made from the bytes of a whole sequence, not token by token.
    pub fn decode_bytes(&self, tokens: &[u32]) -> Vec<u8> {
        self.bpe
            ._decode_native_and_split(
                tokens
                    .iter()
                    .copied()
                    .filter(|&t| t <= END_OF_TEXT_ID)
                    .collect(),
            )
            .flatten()
            .collect()
    }

    /// Text of `tokens`; bytes that do not form UTF-8 become U+FFFD.
    pub fn decode(&self, tokens: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(tokens)).into_owned()
    }
}

/// Which kind of character the pre-tokenizer groups: tiktoken's pieces are runs of letters, of
/// digits or of other symbols, each with at most one leading space, or runs of whitespace.
fn kind(c: char) -> u8 {
    if c.is_whitespace() {
        0
    } else if c.is_alphabetic() {
        1
    } else if c.is_numeric() {
        2
    } else {
        3
    }
}

/// Byte offsets at which to cut `text` so that no run of whitespace, or of non-whitespace, is
/// longer than [`MAX_RUN_BYTES`]; empty for ordinary text. A non-whitespace run is cut where
/// the kind of character changes when it can be (the pre-tokenizer splits there anyway, so
/// the tokens do not change), never right after an apostrophe (`'s`, `'ll` are one piece),
/// and never inside `<|endoftext|>`.
fn cuts(text: &str) -> Vec<usize> {
    let mut cuts = Vec::new();
    // Where the current stretch (a run, or its part since the last cut) begins.
    let mut start = 0;
    let mut whitespace = None;
    // The last place in the stretch where the kind changes, if any.
    let mut boundary = None;
    let mut previous = None;
    for (i, c) in text.char_indices() {
        let ws = c.is_whitespace();
        if whitespace != Some(ws) {
            whitespace = Some(ws);
            start = i;
            boundary = None;
        } else if let Some(p) = previous
            && !ws
            && kind(p) != kind(c)
            && p != '\''
        {
            boundary = Some(i);
        }
        previous = Some(c);
        if i + c.len_utf8() - start <= MAX_RUN_BYTES {
            continue;
        }
        // `c` would make the stretch too long: cut before it, or at the last change of kind.
        let mut at = boundary.filter(|&b| b > start).unwrap_or(i);
        if let Some(special) = special_around(text, at) {
            // Before the special token, or after it when the stretch begins with it.
            at = if special > start {
                special
            } else {
                special + END_OF_TEXT.len()
            };
        }
        cuts.push(at);
        start = at;
        boundary = None;
    }
    cuts
}

/// The start of an `<|endoftext|>` that `at` would cut in two.
fn special_around(text: &str, at: usize) -> Option<usize> {
    let mut from = at.saturating_sub(END_OF_TEXT.len() - 1);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let mut to = (at + END_OF_TEXT.len()).min(text.len());
    while !text.is_char_boundary(to) {
        to += 1;
    }
    let window = &text[from..to];
    window
        .match_indices(END_OF_TEXT)
        .map(|(offset, _)| from + offset)
        .find(|&s| s < at && at < s + END_OF_TEXT.len())
}

/// Prints a token stream as text without splitting a UTF-8 character across two writes.
#[derive(Default)]
pub struct TextStream {
    tokens: Vec<u32>,
    printed: usize,
}

impl TextStream {
    /// Add a token; returns the text that became complete.
    pub fn push(&mut self, tokenizer: &Tokenizer, token: u32) -> String {
        self.tokens.push(token);
        let bytes = tokenizer.decode_bytes(&self.tokens);
        let complete = match std::str::from_utf8(&bytes[self.printed..]) {
            Ok(s) => s.len(),
            Err(e) => e.valid_up_to(),
        };
        let out =
            String::from_utf8_lossy(&bytes[self.printed..self.printed + complete]).into_owned();
        self.printed += complete;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text_and_knows_gpt2_ids() {
        let t = Tokenizer::gpt2();
        let ids = t.encode("ROMEO:\nBut soft!");
        assert_eq!(t.decode(&ids), "ROMEO:\nBut soft!");
        // " the" is id 262 and "<|endoftext|>" 50256 in GPT-2's vocabulary.
        assert_eq!(t.encode(" the"), vec![262]);
        assert_eq!(t.encode("<|endoftext|>"), vec![END_OF_TEXT_ID]);
    }

    /// Text without a run longer than the bound is tokenized exactly as tiktoken does: the
    /// shipped corpus (train, valid, heldout), prompts and references.
    #[test]
    fn ordinary_text_is_tokenized_exactly_as_tiktoken_does() {
        let t = Tokenizer::gpt2();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut texts = vec![std::fs::read_to_string(root.join("data/heldout.jsonl")).unwrap()];
        for line in texts[0].clone().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            texts.push(v["prompt"].as_str().unwrap().to_owned());
            texts.push(v["reference"].as_str().unwrap().to_owned());
        }
        for file in ["train.txt", "valid.txt", "heldout.txt"] {
            let path = root.join("data/shakespeare").join(file);
            texts.push(std::fs::read_to_string(path).unwrap());
        }
        texts.push("it's <|endoftext|>ROMEO:\n  \t x'll 12345 naïve — café ✓".to_owned());
        for text in &texts {
            assert!(cuts(text).is_empty());
            assert_eq!(t.encode(text), t.bpe.encode_with_special_tokens(text));
        }
    }

    /// A run of a million characters handed to tiktoken whole panics (spaces: the regex's
    /// backtracking stack) or takes minutes (letters: quadratic BPE merging); cut into bounded
    /// pieces, it is encoded in linear time and still decodes to the same text.
    #[test]
    fn regression_a_million_character_run_tokenizes_quickly() {
        let t = Tokenizer::gpt2();
        for unit in ["a", " ", "!", "7", "é", "a1!", "<|endoftext|>"] {
            let text = format!("ROMEO: {}", unit.repeat(1_000_000 / unit.len()));
            let started = std::time::Instant::now();
            let tokens = t.encode(&text);
            let seconds = started.elapsed().as_secs_f64();
            assert!(seconds < 10.0, "{unit:?}: {seconds:.1} s");
            if unit == "<|endoftext|>" {
                // Every special token survives the cuts whole.
                let specials = tokens.iter().filter(|&&id| id == END_OF_TEXT_ID).count();
                assert_eq!(specials, 1_000_000 / unit.len());
            } else {
                assert_eq!(t.decode(&tokens), text, "{unit:?}");
            }
        }
    }

    #[test]
    fn cuts_bound_every_run_and_prefer_a_change_of_kind() {
        let long = "a".repeat(3 * MAX_RUN_BYTES);
        assert_eq!(
            cuts(&long),
            [MAX_RUN_BYTES, 2 * MAX_RUN_BYTES],
            "a run of one kind is cut at the bound"
        );
        // Letters then digits: cut where the digits begin, which changes no token.
        let mixed = format!("{}{}", "a".repeat(400), "1".repeat(400));
        assert_eq!(cuts(&mixed), [400]);
        let t = Tokenizer::gpt2();
        assert_eq!(t.encode(&mixed), t.bpe.encode_with_special_tokens(&mixed));
        // Never right after an apostrophe: `'s` stays one piece.
        let quoted = format!("{}'s{}", "!".repeat(300), "s".repeat(300));
        assert!(!cuts(&quoted).contains(&301), "{:?}", cuts(&quoted));
        // Never inside <|endoftext|>, even when a change of kind lies inside it.
        let special = format!("{}<|endoftext|>{}", "a".repeat(505), "a".repeat(100));
        for at in cuts(&special) {
            assert!(!(506..518).contains(&at), "cut at {at}");
        }
        // Multi-byte characters are cut at a character boundary.
        let wide = "é".repeat(MAX_RUN_BYTES);
        assert!(cuts(&wide).iter().all(|&at| wide.is_char_boundary(at)));
    }

    #[test]
    fn stream_never_splits_a_character() {
        let t = Tokenizer::gpt2();
        let ids = t.encode("naïve — café ✓");
        let mut stream = TextStream::default();
        let text: String = ids.iter().map(|&id| stream.push(&t, id)).collect();
        assert_eq!(text, "naïve — café ✓");
    }
}
