//! GPT-2 BPE through tiktoken-rs, whose `r50k_base` vocabulary is GPT-2's and ships inside
//! the crate, so no tokenizer file is ever downloaded.

use tiktoken_rs::CoreBPE;

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
    /// prompt that starts a new document expects.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.bpe.encode_with_special_tokens(text)
    }

    /// The bytes of `tokens`. A single token can hold part of a UTF-8 character, so text is
    /// made from the bytes of a whole sequence, not token by token.
    pub fn decode_bytes(&self, tokens: &[u32]) -> Vec<u8> {
        self.bpe
            ._decode_native_and_split(tokens.iter().copied().filter(|&t| t <= 50256).collect())
            .flatten()
            .collect()
    }

    /// Text of `tokens`; bytes that do not form UTF-8 become U+FFFD.
    pub fn decode(&self, tokens: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(tokens)).into_owned()
    }
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
        assert_eq!(t.encode("<|endoftext|>"), vec![50256]);
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
