//! Credentials recognisable by their form, wherever they appear in a text.
//!
//! Each shape finds the byte ranges of the secret part only, so masking keeps the context:
//! `Bearer ***`, `https://alice:***@host`, `?api-key=***&model=x`. The shapes:
//!
//! | shape | example | masked part |
//! |---|---|---|
//! | OpenAI-style key | `sk-proj-…` (16+ chars after `sk-`) | the key |
//! | bearer token | `Bearer abc123…` (8+ chars, a digit) | the token |
//! | GitHub token | `ghp_…`, `github_pat_…` | the token |
//! | Slack token | `xoxb-…` | the token |
//! | AWS access key id | `AKIA` + 16 | the id |
//! | PEM private key | `-----BEGIN … PRIVATE KEY-----` | the header |
//! | URL userinfo password | `postgres://u:pw@db` | `pw` |
//! | key-shaped query parameter | `?key=`, `api-key=`, `token=`, `access_token=`, `sig=` | the value |
//!
//! A password or parameter value that is exactly one environment reference (`${DB_PW}` or
//! `${DB_PW:-}`) is not a credential: it is how a config says where the secret comes from.
//!
//! Before any shape's regex runs, one Aho-Corasick pass looks for the shapes' screen literals
//! (`sk-`, `bearer`, `ghp_`…, `xox`, `AKIA`, `-----BEGIN `, `://`), compared ASCII
//! case-insensitively: a text that holds none (nearly every text) is clear. A shape added here
//! must name literals that every match of it contains (the tests check each shape's examples,
//! their case variants and the regex crate's Unicode case twins).

use std::{ops::Range, sync::LazyLock};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Captures, Regex};

use super::name::is_secret_name;

/// Finds the byte ranges of the secret parts of a text.
type Finder = Box<dyn Fn(&str) -> Vec<Range<usize>> + Send + Sync>;

/// A credential shape: how to find it and the reason given when a value matches it.
struct Shape {
    /// Literals of which every text holding this shape contains one (compared ASCII
    /// case-insensitively), for [`SCREEN`].
    screen: &'static [&'static str],
    /// The byte ranges of the secret parts of a text.
    find: Finder,
    /// Why the value is refused; never includes the value.
    reason: &'static str,
}

/// Compiles a literal pattern.
#[expect(
    clippy::expect_used,
    reason = "literal patterns; every test of this module compiles them"
)]
fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("credential patterns are valid")
}

/// A shape found by a regex whose group 1 (or whole match) is the secret, kept when `accept`
/// says so.
fn by_regex(
    screen: &'static [&'static str],
    pattern: &str,
    accept: fn(&Captures<'_>) -> bool,
    reason: &'static str,
) -> Shape {
    let regex = regex(pattern);
    Shape {
        screen,
        find: Box::new(move |text| {
            regex
                .captures_iter(text)
                .filter(|caps| accept(caps))
                .filter_map(|caps| caps.get(1).or_else(|| caps.get(0)))
                .map(|m| m.range())
                .collect()
        }),
        reason,
    }
}

/// Exactly one environment reference, with no default or an empty one.
static PURE_REFERENCE: LazyLock<Regex> =
    LazyLock::new(|| regex(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::-)?\}$"));

/// A URL, up to the first character that cannot be in one.
static URL: LazyLock<Regex> = LazyLock::new(|| regex(r#"(?i)\b[a-z][a-z0-9+.\-]*://[^\s"'<>`]+"#));

/// One `name=value` parameter of a query string.
static QUERY_PARAM: LazyLock<Regex> =
    LazyLock::new(|| regex(r"[?&;]([A-Za-z][A-Za-z0-9_.\-]*)=([^&#;]+)"));

/// Whether a query parameter's name says its value is a credential.
fn is_secret_param(name: &str) -> bool {
    let lower = name.to_ascii_lowercase().replace('-', "_");
    is_secret_name(name) || lower == "sig" || lower.ends_with("signature")
}

/// The values of key-shaped query parameters inside every URL of `text`.
fn secret_query_values(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    for url in URL.find_iter(text) {
        let Some(query_start) = url.as_str().find('?') else {
            continue;
        };
        let query = &url.as_str()[query_start..];
        for caps in QUERY_PARAM.captures_iter(query) {
            let (Some(name), Some(value)) = (caps.get(1), caps.get(2)) else {
                continue;
            };
            if is_secret_param(name.as_str()) && !PURE_REFERENCE.is_match(value.as_str()) {
                let start = url.start() + query_start + value.start();
                out.push(start..start + value.len());
            }
        }
    }
    out
}

/// The credential shapes, compiled once.
static SHAPES: LazyLock<Vec<Shape>> = LazyLock::new(|| {
    let any = |_: &Captures<'_>| true;
    vec![
        by_regex(
            &["sk-"],
            r"(?:^|[^A-Za-z0-9_])(sk-[A-Za-z0-9_-]{16,})",
            any,
            "the value looks like an api key (`sk-…`)",
        ),
        by_regex(
            &["bearer"],
            r"(?i)\bbearer\s+([A-Za-z0-9._~+/-]{8,}=*)",
            |caps| caps[1].bytes().any(|b| b.is_ascii_digit()),
            "the value looks like a bearer token (`Bearer …`)",
        ),
        by_regex(
            &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
            r"\b((?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}))",
            any,
            "the value looks like a github token (`ghp_…`)",
        ),
        by_regex(
            &["xox"],
            r"\b(xox[abprs]-[A-Za-z0-9-]{10,})",
            any,
            "the value looks like a slack token (`xox…-`)",
        ),
        by_regex(
            &["AKIA"],
            r"\b(AKIA[0-9A-Z]{16})\b",
            any,
            "the value looks like an aws access key id (`AKIA…`)",
        ),
        by_regex(
            &["-----BEGIN "],
            r"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)",
            any,
            "the value holds a pem private key",
        ),
        by_regex(
            &["://"],
            r#"(?i)\b[a-z][a-z0-9+.\-]*://[^/\s:@?#"'<>]*:([^/\s@?#"'<>]+)@"#,
            |caps| !PURE_REFERENCE.is_match(&caps[1]),
            "a url holds a password in its userinfo (`user:password@`); reference an \
             environment variable for the password (`user:${DB_PASSWORD}@`)",
        ),
        Shape {
            screen: &["://"],
            find: Box::new(secret_query_values),
            reason: "a url holds a key-shaped query parameter (`key=`, `token=`, `sig=`, …); \
                     reference an environment variable for its value",
        },
    ]
});

/// Every shape's screen literals in one automaton: a text that holds none of them (nearly
/// every text) is cleared in one pass, without a regex search per shape.
static SCREEN: LazyLock<AhoCorasick> = LazyLock::new(|| {
    #[expect(
        clippy::expect_used,
        reason = "a few short literals; every test of this module builds the automaton"
    )]
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(SHAPES.iter().flat_map(|shape| shape.screen))
        .expect("the screen literals build an automaton")
});

/// The shapes to search `text` for: every shape when it holds a screen literal, else none.
fn candidate_shapes(text: &str) -> &'static [Shape] {
    if SCREEN.is_match(text) { &SHAPES } else { &[] }
}

/// The reason `text` looks like a credential, if it does.
///
/// # Examples
///
/// ```
/// use chainlog::secret::credential_shape;
/// assert!(credential_shape("postgres://app:hunter22@db/prod").is_some());
/// assert!(credential_shape("https://x.example/v1?api-key=abc123").is_some());
/// assert!(credential_shape("postgres://app:${DB_PASSWORD}@db/prod").is_none());
/// assert!(credential_shape("https://api.openai.com/v1").is_none());
/// ```
pub fn credential_shape(text: &str) -> Option<&'static str> {
    candidate_shapes(text)
        .iter()
        .find(|shape| !(shape.find)(text).is_empty())
        .map(|shape| shape.reason)
}

/// `text` with every credential-shaped part replaced by `***` (by shape only; [`scrub`]
/// also masks the registered values).
///
/// [`scrub`]: super::scrub
///
/// # Examples
///
/// ```
/// use chainlog::secret::mask_credentials;
/// assert_eq!(
///     mask_credentials("GET https://u:pw123456@h/v1?token=abc&x=1"),
///     "GET https://u:***@h/v1?token=***&x=1"
/// );
/// ```
pub fn mask_credentials(text: &str) -> String {
    mask_ranges(text, secret_ranges(text))
}

/// The byte ranges of every credential-shaped part of `text`.
pub(super) fn secret_ranges(text: &str) -> Vec<Range<usize>> {
    candidate_shapes(text)
        .iter()
        .flat_map(|shape| (shape.find)(text))
        .collect()
}

/// `text` with each of `ranges` (in any order, possibly overlapping) replaced by `***`.
pub(super) fn mask_ranges(text: &str, mut ranges: Vec<Range<usize>>) -> String {
    if ranges.is_empty() {
        return text.to_owned();
    }
    ranges.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for range in ranges {
        if range.start < last {
            last = last.max(range.end);
            continue;
        }
        out.push_str(&text[last..range.start]);
        out.push_str("***");
        last = range.end;
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_shapes_are_found_inside_text() {
        for text in [
            "sk-abcdefghijklmnop1234",
            "key=sk-proj-abcdEFGH1234_ijkl-5678",
            "Authorization: Bearer abcd1234efgh5678",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "github_pat_11ABCDEFG0123456789_abcdefghij",
            "xoxb-1234567890-abcdefghij",
            "AKIAABCDEFGHIJKLMNOP",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIB...",
            "-----BEGIN PRIVATE KEY-----",
            "https://alice:pw@llm.internal/v1",
            "postgres://u:pw@db:5432/app",
            "redis://:hunter2@cache:6379",
            "https://x.example/v1?key=abc",
            "https://x.example/v1?model=a&api-key=abc",
            "https://x.example/v1?token=abc",
            "https://x.example/v1?access_token=abc",
            "https://blob.example/c/f?sv=2021&sig=abc%3D",
            "https://s3.example/f?X-Amz-Signature=abc",
        ] {
            assert!(credential_shape(text).is_some(), "{text} should be caught");
        }
    }

    #[test]
    fn the_screen_never_clears_a_text_a_shape_finds_something_in() {
        // Every text a shape finds a credential in holds one of that shape's screen literals,
        // in any case: screened and unscreened searches agree.
        for text in [
            "sk-abcdefghijklmnop1234",
            "x BEARER abcd1234efgh5678",
            "bEaReR abcd1234efgh5678",
            "GHP_abcdefghijklmnopqrstuvwxyz0123456789 ghs_abcdefghijklmnopqrstuvwxyz0123456789",
            "github_pat_11ABCDEFG0123456789_abcdefghij",
            "xoxp-1234567890-abcdefghij",
            "id AKIAABCDEFGHIJKLMNOP.",
            "disk-----BEGIN EC PRIVATE KEY-----",
            "HTTPS://alice:pw@llm.internal/v1",
            "see ftp://h/p?SIG=abc and mailto:x",
            "{\"url\": \"https://x.example/v1?api-key=abc\"}",
            "nothing to see here: a summary of the budget",
        ] {
            let unscreened: Vec<_> = SHAPES.iter().flat_map(|shape| (shape.find)(text)).collect();
            assert_eq!(secret_ranges(text), unscreened, "{text}");
        }
        for shape in SHAPES.iter() {
            assert!(!shape.screen.is_empty(), "{}", shape.reason);
        }
    }

    /// Every non-ASCII character the regex crate's `(?i)` takes for an ASCII letter (Unicode
    /// simple case folding: the Kelvin sign for `k`, the long s for `s`), found by asking the
    /// regex crate itself about every scalar value.
    fn unicode_twins_of_ascii_letters() -> Vec<(char, char)> {
        let letters: Vec<(char, Regex)> = ('a'..='z')
            .map(|l| (l, regex(&format!("(?i)^{l}$"))))
            .collect();
        let mut buf = [0u8; 4];
        (0x80..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .flat_map(|c| {
                let text: &str = c.encode_utf8(&mut buf);
                letters
                    .iter()
                    .filter(|(_, re)| re.is_match(text))
                    .map(|(l, _)| (*l, c))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_screen_holds_for_unicode_case_twins_and_mangled_texts() {
        let twins = unicode_twins_of_ascii_letters();
        assert_eq!(
            twins,
            [('s', '\u{17F}'), ('k', '\u{212A}')],
            "the regex crate's (?i) twins of ASCII letters"
        );
        let seeds = [
            "sk-abcdefghijklmnop1234",
            "Authorization: Bearer abcd1234efgh5678",
            "bearer\tabcd1234efgh5678==",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "gho_abcdefghijklmnopqrstuvwxyz0123",
            "ghu_abcdefghijklmnopqrstuvwxyz0123",
            "ghs_abcdefghijklmnopqrstuvwxyz0123",
            "ghr_abcdefghijklmnopqrstuvwxyz0123",
            "github_pat_11ABCDEFG0123456789_abcdefghij",
            "xoxs-1234567890-abcdefghij",
            "AKIAABCDEFGHIJKLMNOP",
            "-----BEGIN RSA PRIVATE KEY-----",
            "https://alice:pw@llm.internal/v1",
            "sk+s.k://u:secretpw@h",
            "https://x.example/v1?key=abc&ask=1",
            "https://s3.example/f?X-Amz-Signature=abc",
            "https://blob.example/c/f?sv=2021&sig=abc%3D",
        ];
        let unscreened = |text: &str| -> Vec<Range<usize>> {
            SHAPES.iter().flat_map(|shape| (shape.find)(text)).collect()
        };
        let mut checked = 0;
        for seed in seeds {
            assert!(!unscreened(seed).is_empty(), "seed {seed} should be found");
            // Each letter, one at a time and all at once, swapped for its ASCII other case and
            // for each Unicode twin the regex crate folds to it.
            for (at, ch) in seed.char_indices() {
                let lower = ch.to_ascii_lowercase();
                let mut swaps = vec![ch.to_ascii_uppercase(), lower];
                swaps.extend(twins.iter().filter(|(l, _)| *l == lower).map(|(_, c)| *c));
                for swap in swaps {
                    let text = format!("{}{swap}{}", &seed[..at], &seed[at + ch.len_utf8()..]);
                    assert_eq!(secret_ranges(&text), unscreened(&text), "{text:?}");
                    checked += 1;
                }
            }
            for (l, twin) in &twins {
                let text: String = seed
                    .chars()
                    .map(|c| {
                        if c.to_ascii_lowercase() == *l {
                            *twin
                        } else {
                            c
                        }
                    })
                    .collect();
                assert_eq!(secret_ranges(&text), unscreened(&text), "{text:?}");
                checked += 1;
            }
        }
        // Random splices of secret fragments, screen literals in odd cases and twins.
        let pieces = [
            "sk-",
            "SK-",
            "\u{17F}k-",
            "s\u{212A}-",
            "bearer ",
            "BEARER\t",
            "be",
            "arer",
            "ghp_",
            "github_pat_",
            "xoxb-",
            "AKIA",
            "-----BEGIN ",
            "PRIVATE KEY-----",
            "://",
            ":/",
            "/",
            "\u{212A}",
            "\u{17F}",
            "\u{130}",
            "\u{131}",
            "a:b@",
            "?sig=",
            "&token=",
            "abcd1234efgh5678",
            "ABCDEFGHIJKLMNOP",
            " ",
            "\n",
            "x",
            "\u{212A}\u{17F}://u:p1@h",
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..6 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push_str(pieces[(state % pieces.len() as u64) as usize]);
            }
            assert_eq!(secret_ranges(&text), unscreened(&text), "{text:?}");
            checked += 1;
        }
        assert!(checked > 20_000);
    }

    #[test]
    fn ordinary_text_is_not_credential_shaped() {
        for text in [
            "task-preprocessing-step-one",
            "disk-usage-monitoring-agent",
            "sk-short",
            "Use Bearer authentication for the gateway",
            "ghp_short",
            "AKIA is a prefix",
            "-----BEGIN PUBLIC KEY-----",
            "https://api.openai.com/v1",
            "http://localhost:8080/v1",
            "https://alice@host/v1",
            "https://alice:${ALICE_PASSWORD}@host/v1",
            "https://x.example/v1?api-key=${AZURE_KEY}",
            "https://x.example/v1?api-version=2024-06-01&model=gpt",
            "https://x.example/v1?max_tokens=5&key_field=id",
            "use ?key=value syntax in the prompt",
            "email me at a.b@example.com: thanks",
        ] {
            assert_eq!(credential_shape(text), None, "{text} should pass");
        }
    }

    #[test]
    fn masking_hides_every_credential_and_keeps_the_rest() {
        let text = "invalid type: string \"sk-abcdefghijklmnop1234\" and Bearer zz99zz99zz99, ok";
        let masked = mask_credentials(text);
        assert_eq!(masked, "invalid type: string \"***\" and Bearer ***, ok");
        assert_eq!(
            mask_credentials("error sending request for url (https://a:b1@h/v1?sig=s1&x=2)"),
            "error sending request for url (https://a:***@h/v1?sig=***&x=2)"
        );
    }
}
