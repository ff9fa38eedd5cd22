//! Secret detection: which key names hold secrets, which values look like credentials, and
//! masking of anything credential-shaped in a message.
//!
//! Two rules, applied at load time and on every `--set`:
//!
//! 1. **Secret-named keys** (`api_key`, `token`, `password`, … and suffixes such as
//!    `openai_api_key`, `hfToken`, `x-api-key`) may hold only a pure environment reference
//!    (`${NAME}`, or `${NAME:-}` with an *empty* default), `null`, a boolean, an empty
//!    string, or a mapping whose own keys are checked in turn. A non-empty default is a
//!    literal secret too: it would be written to the artifact.
//! 2. **Credential-shaped values** anywhere (OpenAI-style `sk-…`, `Bearer …`, GitHub
//!    `ghp_…`, Slack `xox?-…`, AWS `AKIA…`, PEM private keys), including inside reference
//!    defaults.
//!
//! Owns no public type; [`ConfigError::LiteralSecret`] is what a broken rule becomes.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::{ConfigError, env};

/// Key names (after [`normalize`]) that hold secrets, alone or as a `_`-separated suffix.
const SECRET_WORDS: &[&str] = &[
    "api_key",
    "apikey",
    "token",
    "access_token",
    "secret",
    "client_secret",
    "password",
    "passwd",
    "credential",
    "credentials",
    "private_key",
    "access_key",
    "auth",
    "authorization",
];

/// Words that are secret-named even glued to a prefix without a separator
/// (`openaiapikey`); the short, common ones (`token`, `auth`) need a separator.
const GLUED_SECRET_WORDS: &[&str] = &["api_key", "apikey", "password", "passwd", "secret"];

/// Whether a key (or environment variable) name says it holds a secret.
pub(crate) fn is_secret_name(name: &str) -> bool {
    let name = normalize(name);
    SECRET_WORDS.iter().any(|word| {
        name.strip_suffix(word)
            .is_some_and(|rest| rest.is_empty() || rest.ends_with('_'))
    }) || GLUED_SECRET_WORDS.iter().any(|word| name.ends_with(word))
}

/// Lowercase snake case: `hfToken` → `hf_token`, `x-api-key` → `x_api_key`.
fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut after_lower = false;
    for c in name.chars() {
        if c.is_uppercase() && after_lower {
            out.push('_');
        }
        after_lower = c.is_lowercase() || c.is_ascii_digit();
        if c == '-' || c == '.' || c.is_whitespace() {
            out.push('_');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// A credential shape: its pattern and the reason given when a value matches it.
struct Shape {
    /// Finds the credential; group 1, when present, is what [`Shape::accept`] judges.
    regex: Regex,
    /// Extra test on group 1, for shapes a regex alone would over-match.
    accept: fn(&str) -> bool,
    /// Shown in [`ConfigError::LiteralSecret`]; never includes the value.
    reason: &'static str,
}

impl Shape {
    /// The byte ranges of `text` that match this shape.
    fn find(&self, text: &str) -> Vec<std::ops::Range<usize>> {
        self.regex
            .captures_iter(text)
            .filter(|caps| {
                caps.get(1)
                    .is_none_or(|token| (self.accept)(token.as_str()))
            })
            .filter_map(|caps| caps.get(1).or_else(|| caps.get(0)))
            .map(|m| m.range())
            .collect()
    }
}

/// The credential shapes, compiled once.
#[expect(
    clippy::expect_used,
    reason = "literal patterns; every test of this module compiles them"
)]
static SHAPES: LazyLock<Vec<Shape>> = LazyLock::new(|| {
    let any = |_: &str| true;
    let shape = |pattern: &str, accept: fn(&str) -> bool, reason| Shape {
        regex: Regex::new(pattern).expect("credential patterns are valid"),
        accept,
        reason,
    };
    vec![
        shape(
            r"(?:^|[^A-Za-z0-9_])(sk-[A-Za-z0-9_-]{16,})",
            any,
            "the value looks like an api key (`sk-…`)",
        ),
        shape(
            r"(?i)\bbearer\s+([A-Za-z0-9._~+/-]{8,}=*)",
            |token| token.bytes().any(|b| b.is_ascii_digit()),
            "the value looks like a bearer token (`Bearer …`)",
        ),
        shape(
            r"\b((?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}))",
            any,
            "the value looks like a github token (`ghp_…`)",
        ),
        shape(
            r"\b(xox[abprs]-[A-Za-z0-9-]{10,})",
            any,
            "the value looks like a slack token (`xox…-`)",
        ),
        shape(
            r"\b(AKIA[0-9A-Z]{16})\b",
            any,
            "the value looks like an aws access key id (`AKIA…`)",
        ),
        shape(
            r"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)",
            any,
            "the value holds a pem private key",
        ),
    ]
});

/// The reason `text` looks like a credential, if it does.
pub(crate) fn credential_shape(text: &str) -> Option<&'static str> {
    SHAPES
        .iter()
        .find(|shape| !shape.find(text).is_empty())
        .map(|shape| shape.reason)
}

/// `text` with every credential-shaped part replaced by `***`, for messages written by
/// parsers and deserializers that may quote the input.
pub(crate) fn mask_credentials(text: &str) -> String {
    let mut ranges: Vec<_> = SHAPES.iter().flat_map(|shape| shape.find(text)).collect();
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

/// Checks one value (not its children) against both rules.
///
/// `secret_named` says whether the key holding it — or, for a sequence element, the key
/// holding the sequence — is secret-named.
///
/// # Errors
///
/// [`ConfigError::LiteralSecret`] naming `key_path`.
pub(crate) fn check_value(
    value: &Value,
    key_path: &str,
    secret_named: bool,
) -> Result<(), ConfigError> {
    let refuse = |reason| {
        Err(ConfigError::LiteralSecret {
            key_path: key_path.to_owned(),
            reason,
        })
    };
    match value {
        Value::String(text) => {
            if let Some(reason) = credential_shape(text) {
                return refuse(reason);
            }
            if secret_named && !text.is_empty() {
                match env::whole_reference(text) {
                    Some(reference) if reference.default.is_none_or(str::is_empty) => {}
                    Some(_) => {
                        return refuse(
                            "a reference default on a secret-named key is itself a literal \
                             secret; leave it empty (`${NAME:-}`)",
                        );
                    }
                    None => {
                        return refuse(
                            "a secret-named key may hold only a reference such as `${NAME}`",
                        );
                    }
                }
            }
            Ok(())
        }
        Value::Number(_) if secret_named => {
            refuse("a secret-named key may hold only a reference such as `${NAME}`")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::config::ChainConfig;

    /// Asserts that neither the error's message nor its `Debug` carries `canary`.
    fn assert_hidden(err: &ConfigError, canary: &str) {
        assert!(!err.to_string().contains(canary), "message leaks: {err}");
        assert!(!format!("{err:?}").contains(canary), "debug leaks: {err:?}");
    }

    #[test]
    fn secret_names_match_words_and_suffixes_in_any_case() {
        for name in [
            "api_key",
            "API_KEY",
            "apiKey",
            "api-key",
            "x-api-key",
            "apikey",
            "openai_api_key",
            "OpenAIApiKey",
            "hf_token",
            "hfToken",
            "token",
            "access_token",
            "secret",
            "client_secret",
            "password",
            "db_passwd",
            "credential",
            "credentials",
            "private_key",
            "access_key",
            "auth",
            "basic_auth",
            "Authorization",
            "OPENAI_API_KEY",
        ] {
            assert!(is_secret_name(name), "{name} should be secret-named");
        }
    }

    #[test]
    fn ordinary_names_are_not_secret_named() {
        for name in [
            "max_tokens",
            "maxTokens",
            "tokenizer",
            "token_limit",
            "author",
            "oauth_enabled",
            "model",
            "base_url",
            "keys",
            "secretary_name",
            "OPENAI_BASE_URL",
        ] {
            assert!(!is_secret_name(name), "{name} should not be secret-named");
        }
    }

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
        ] {
            assert!(credential_shape(text).is_some(), "{text} should be caught");
        }
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
        ] {
            assert_eq!(credential_shape(text), None, "{text} should pass");
        }
    }

    #[test]
    fn masking_hides_every_credential_and_keeps_the_rest() {
        let text = "invalid type: string \"sk-abcdefghijklmnop1234\" and Bearer zz99zz99zz99, ok";
        let masked = mask_credentials(text);
        assert_eq!(masked, "invalid type: string \"***\" and Bearer ***, ok");
    }

    #[test]
    fn secret_named_key_accepts_only_references_without_defaults() {
        let ok = [
            json!("${OPENAI_API_KEY}"),
            json!("${OPENAI_API_KEY:-}"),
            json!(""),
            json!(null),
            json!(true),
        ];
        for value in ok {
            assert!(check_value(&value, "llm.api_key", true).is_ok(), "{value}");
        }
        let refused = [
            json!("plain-canary-value"),
            json!("${OPENAI_API_KEY:-canary-default}"),
            json!("prefix ${OPENAI_API_KEY}"),
            json!(123456),
        ];
        for value in refused {
            let err = check_value(&value, "llm.api_key", true);
            assert!(
                matches!(&err, Err(ConfigError::LiteralSecret { key_path, .. }) if key_path == "llm.api_key"),
                "{value}: {err:?}"
            );
        }
    }

    #[test]
    fn every_secret_rule_refuses_at_load_without_showing_the_value() {
        let cases = [
            (
                "llm:\n  api_key: canary-0001\n",
                "llm.api_key",
                "canary-0001",
            ),
            (
                "openai_api_key: canary-0002\n",
                "openai_api_key",
                "canary-0002",
            ),
            (
                "hub:\n  hfToken: canary-0003\n",
                "hub.hfToken",
                "canary-0003",
            ),
            ("db:\n  password: 9021000417\n", "db.password", "9021000417"),
            (
                "llm:\n  api_key: ${OPENAI_API_KEY:-canary-0005}\n",
                "llm.api_key",
                "canary-0005",
            ),
            (
                "llm:\n  token: x${HF}canary-0006\n",
                "llm.token",
                "canary-0006",
            ),
            (
                "credentials:\n  - canary-0007\n",
                "credentials.0",
                "canary-0007",
            ),
            (
                "chain:\n  note: use sk-canary0008abcdefghijkl\n",
                "chain.note",
                "canary0008",
            ),
            ("x: sk-proj-canary0009ABCDEFGH\n", "x", "canary0009"),
            (
                "headers:\n  x_header: Bearer canary0010token\n",
                "headers.x_header",
                "canary0010",
            ),
            (
                "gh: ghp_canary0011abcdefghijklmnopqrstu\n",
                "gh",
                "canary0011",
            ),
            ("slack: xoxb-canary0012-abcdef\n", "slack", "canary0012"),
            ("aws: AKIACANARY0013ABCDEF\n", "aws", "CANARY0013"),
            (
                "material: |\n  -----BEGIN PRIVATE KEY-----\n  canary0014\n",
                "material",
                "canary0014",
            ),
            (
                "base_url: ${X:-https://sk-canary0015abcdefghijkl.example}\n",
                "base_url",
                "canary0015",
            ),
            (
                "stop:\n  - ghp_canary0016abcdefghijklmnopqrstu\n",
                "stop.0",
                "canary0016",
            ),
            (
                "Authorization: Basic canary0017\n",
                "Authorization",
                "canary0017",
            ),
        ];
        for (yaml, expected_path, canary) in cases {
            let err = ChainConfig::from_yaml(yaml, Path::new("c.yaml")).unwrap_err();
            let ConfigError::LiteralSecret { key_path, .. } = &err else {
                panic!("{yaml}: expected LiteralSecret, got {err:?}");
            };
            assert_eq!(key_path, expected_path, "{yaml}");
            assert_hidden(&err, canary);
        }
    }

    #[test]
    fn references_null_and_sections_are_accepted_under_secret_names() {
        for yaml in [
            "llm:\n  api_key: ${OPENAI_API_KEY}\n",
            "llm:\n  api_key: ${OPENAI_API_KEY:-}\n",
            "llm:\n  api_key:\n",
            "auth:\n  enabled: true\n  token: ${HF_TOKEN}\n",
            "llm:\n  max_tokens: 256\n",
        ] {
            assert!(
                ChainConfig::from_yaml(yaml, Path::new("c.yaml")).is_ok(),
                "{yaml}"
            );
        }
    }
}
