//! The deterministic default: replies, tool arguments, embeddings and token counts derived
//! from the request alone, so the same request always gets the same answer.
//!
//! Owns the seed of a request and what is made from it. JSON that fits a schema comes from
//! `schema_fill`; which of these a request gets is decided by the endpoint.

use sha2::{Digest, Sha256};

/// Words of the last user message quoted in a default text reply.
const SNIPPET_WORDS: usize = 12;

/// A stable 64-bit seed from the parts of a request that decide its reply.
pub fn seed_of(parts: &[&[u8]]) -> u64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// The default text reply: a short tag from the seed and the start of the user's message.
///
/// # Examples
///
/// ```
/// # use chainlog_mock::default_text_reply;
/// let reply = default_text_reply("Summarise this text about whales", 7, 0);
/// assert_eq!(reply, default_text_reply("Summarise this text about whales", 7, 0));
/// assert!(reply.contains("Summarise this text about whales"));
/// ```
pub fn default_text_reply(last_user_text: &str, seed: u64, choice: usize) -> String {
    let mut words = last_user_text.split_whitespace();
    let mut snippet: Vec<&str> = words.by_ref().take(SNIPPET_WORDS).collect();
    if words.next().is_some() {
        snippet.push("…");
    }
    let tag = seed.wrapping_add(choice as u64) & 0xff_ffff;
    if snippet.is_empty() {
        format!("Mock reply {tag:06x}.")
    } else {
        format!("Mock reply {tag:06x}: {}", snippet.join(" "))
    }
}

/// An approximate token count (about four characters a token, punctuation a token each), the
/// same for the same text. Good enough to make usage figures move with the text.
pub fn count_tokens(text: &str) -> u64 {
    let mut tokens = 0u64;
    let mut run = 0u64;
    for ch in text.chars() {
        if ch.is_alphanumeric() {
            run += 1;
        } else {
            tokens += run.div_ceil(4);
            run = 0;
            if !ch.is_whitespace() {
                tokens += 1;
            }
        }
    }
    tokens + run.div_ceil(4)
}

/// Splits text into stream pieces: each word with the whitespace before it.
pub fn stream_pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    for (index, ch) in text.char_indices() {
        if ch.is_whitespace() {
            if in_word {
                pieces.push(&text[start..index]);
                start = index;
                in_word = false;
            }
        } else {
            in_word = true;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// Keeps the longest run of whole stream pieces whose [`count_tokens`] fits in `max_tokens`;
/// says whether it cut anything. Usage counted on the result never exceeds the limit.
pub fn truncate_to_tokens(text: &str, max_tokens: Option<u64>) -> (String, bool) {
    let Some(max) = max_tokens else {
        return (text.to_owned(), false);
    };
    let mut used = 0;
    let mut end = 0;
    for piece in stream_pieces(text) {
        let tokens = count_tokens(piece);
        if used + tokens > max {
            return (text[..end].to_owned(), true);
        }
        used += tokens;
        end += piece.len();
    }
    (text.to_owned(), false)
}

/// Cuts `text` before the first stop sequence it contains; says whether it did.
pub fn apply_stop(text: &str, stops: &[String]) -> (String, bool) {
    let cut = stops
        .iter()
        .filter(|stop| !stop.is_empty())
        .filter_map(|stop| text.find(stop.as_str()))
        .min();
    match cut {
        Some(at) => (text[..at].to_owned(), true),
        None => (text.to_owned(), false),
    }
}

/// A deterministic unit-length embedding of `text` with `dimensions` components.
pub fn embedding(text: &str, dimensions: usize) -> Vec<f32> {
    let mut state = seed_of(&[text.as_bytes()]) | 1;
    let mut vector: Vec<f32> = (0..dimensions)
        .map(|_| {
            // xorshift64*: cheap, stable across platforms and versions.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let bits = state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
            (bits as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    vector
}

/// A short hex id from a seed, for `chatcmpl-…`, `call_…` and the like.
pub fn id_from(seed: u64, salt: u64) -> String {
    format!("{:016x}", seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_reply_is_deterministic_and_quotes_the_user() {
        let a = default_text_reply("one two three", 42, 0);
        assert_eq!(a, default_text_reply("one two three", 42, 0));
        assert_ne!(a, default_text_reply("one two three", 42, 1));
        assert!(a.ends_with("one two three"), "{a}");
        let long = "w ".repeat(40);
        assert!(default_text_reply(&long, 1, 0).ends_with('…'));
    }

    #[test]
    fn stream_pieces_rejoin_to_the_text() {
        let text = "Hello,  world! How are you?";
        assert_eq!(stream_pieces(text).concat(), text);
        assert_eq!(stream_pieces(text).len(), 5);
    }

    #[test]
    fn stop_and_max_tokens_cut_the_reply() {
        assert_eq!(
            apply_stop("a b STOP c", &["STOP".into()]),
            ("a b ".into(), true)
        );
        assert_eq!(truncate_to_tokens("a b c d", Some(2)), ("a b".into(), true));
        assert_eq!(truncate_to_tokens("a b", Some(5)), ("a b".into(), false));
    }

    #[test]
    fn embeddings_are_unit_length_and_stable() {
        let v = embedding("hello", 64);
        assert_eq!(v.len(), 64);
        assert_eq!(v, embedding("hello", 64));
        assert_ne!(v, embedding("hellp", 64));
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }

    #[test]
    fn token_counts_grow_with_text() {
        assert_eq!(count_tokens(""), 0);
        assert_eq!(count_tokens("hello"), 2);
        assert!(count_tokens("hello world, how are you?") > count_tokens("hello"));
    }
}
