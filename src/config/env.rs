//! `${NAME}` and `${NAME:-default}` references inside config strings: finding them, checking
//! their syntax, listing the variables they name, and substituting them at run time.
//!
//! A reference may be the whole value (`api_key: ${OPENAI_API_KEY}`) or embedded in a string
//! (`url: http://${HOST:-localhost}:8080`). `${NAME:-default}` uses the default when the
//! variable is unset *or empty*, as the shell does. `$${` writes a literal `${`. Any other
//! `${` is a [`ConfigError::BadReference`], found at load time rather than at run time.
//! Owns no type of its own: secret rules live in `secret`, the document walk in `document`.

use std::sync::LazyLock;

use regex::Regex;

use super::ConfigError;

/// One token of a config string's `$`-syntax, in order of precedence: an escaped `$${`, a
/// well-formed reference, or a `${` that starts neither.
#[expect(
    clippy::expect_used,
    reason = "a literal pattern, exercised by every test here"
)]
static TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")
        .expect("the reference pattern is valid")
});

/// A well-formed reference found in a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reference<'a> {
    /// The environment variable's name.
    pub(crate) name: &'a str,
    /// The text after `:-`, when the reference has one (possibly empty).
    pub(crate) default: Option<&'a str>,
}

/// One piece of a config string.
enum Piece<'a> {
    /// Text copied as is.
    Text(&'a str),
    /// A reference.
    Ref(Reference<'a>),
    /// `${` that is not a reference.
    Malformed,
}

/// Splits `text` into literal text and references; `$${` becomes the literal `${`.
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut last = 0;
    for caps in TOKEN.captures_iter(text) {
        let Some(whole) = caps.get(0) else { continue };
        out.push(Piece::Text(&text[last..whole.start()]));
        last = whole.end();
        if whole.as_str() == "$${" {
            out.push(Piece::Text("${"));
        } else if let Some(name) = caps.get(1) {
            out.push(Piece::Ref(Reference {
                name: name.as_str(),
                default: caps.get(2).map(|d| d.as_str()),
            }));
        } else {
            out.push(Piece::Malformed);
        }
    }
    out.push(Piece::Text(&text[last..]));
    out
}

/// The references in `text`, in order.
pub(crate) fn references(text: &str) -> Vec<Reference<'_>> {
    pieces(text)
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Ref(reference) => Some(reference),
            _ => None,
        })
        .collect()
}

/// The reference `text` consists of, when it is exactly one reference and nothing else.
pub(crate) fn whole_reference(text: &str) -> Option<Reference<'_>> {
    let caps = TOKEN.captures(text)?;
    let whole = caps.get(0)?;
    if whole.start() != 0 || whole.end() != text.len() {
        return None;
    }
    Some(Reference {
        name: caps.get(1)?.as_str(),
        default: caps.get(2).map(|d| d.as_str()),
    })
}

/// Refuses a `${` that starts no well-formed reference.
///
/// # Errors
///
/// [`ConfigError::BadReference`] naming `key_path`.
pub(crate) fn check_syntax(text: &str, key_path: &str) -> Result<(), ConfigError> {
    if pieces(text).iter().any(|p| matches!(p, Piece::Malformed)) {
        return Err(ConfigError::BadReference {
            key_path: key_path.to_owned(),
        });
    }
    Ok(())
}

/// `text` with every reference replaced by its variable's value (or default).
///
/// # Errors
///
/// [`ConfigError::MissingEnv`] for an unset variable without a default;
/// [`ConfigError::BadReference`] for a malformed `${`.
pub(crate) fn substitute(
    text: &str,
    key_path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for piece in pieces(text) {
        match piece {
            Piece::Text(literal) => out.push_str(literal),
            Piece::Ref(reference) => out.push_str(&lookup(reference, key_path, env)?),
            Piece::Malformed => {
                return Err(ConfigError::BadReference {
                    key_path: key_path.to_owned(),
                });
            }
        }
    }
    Ok(out)
}

/// The value of one reference: the variable when set and non-empty, else the default, else
/// the empty value of a set-but-empty variable.
fn lookup(
    reference: Reference<'_>,
    key_path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    match (env(reference.name), reference.default) {
        (Some(value), Some(default)) if value.is_empty() => Ok(default.to_owned()),
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(ConfigError::MissingEnv {
            name: reference.name.to_owned(),
            key_path: key_path.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.org".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_whole_and_embedded_references() -> Result<(), ConfigError> {
        assert_eq!(substitute("${HOST}", "k", &env)?, "example.org");
        assert_eq!(
            substitute("http://${HOST}:8080/${HOST}", "k", &env)?,
            "http://example.org:8080/example.org"
        );
        Ok(())
    }

    #[test]
    fn default_applies_to_unset_and_empty_variables() -> Result<(), ConfigError> {
        assert_eq!(substitute("${NOPE:-fallback}", "k", &env)?, "fallback");
        assert_eq!(substitute("${EMPTY:-fallback}", "k", &env)?, "fallback");
        assert_eq!(substitute("${HOST:-fallback}", "k", &env)?, "example.org");
        assert_eq!(substitute("${NOPE:-}", "k", &env)?, "");
        assert_eq!(substitute("${EMPTY}", "k", &env)?, "");
        Ok(())
    }

    #[test]
    fn missing_variable_names_variable_and_key() {
        let err = substitute("x ${NOPE} y", "llm.base_url", &env).map(|_| ());
        let Err(ConfigError::MissingEnv { name, key_path }) = err else {
            panic!("expected MissingEnv, got {err:?}");
        };
        assert_eq!((name.as_str(), key_path.as_str()), ("NOPE", "llm.base_url"));
    }

    #[test]
    fn dollar_dollar_brace_is_a_literal() -> Result<(), ConfigError> {
        assert_eq!(substitute("cost $${HOST}", "k", &env)?, "cost ${HOST}");
        assert!(references("$${HOST}").is_empty());
        check_syntax("$${not a ref", "k")
    }

    #[test]
    fn malformed_reference_is_refused_with_its_key() {
        for text in ["${OPENAI_API_KEY", "${1BAD}", "${BAD NAME}", "a ${}"] {
            let err = check_syntax(text, "llm.api_key");
            assert!(
                matches!(&err, Err(ConfigError::BadReference { key_path }) if key_path == "llm.api_key"),
                "{text}: {err:?}"
            );
        }
    }

    #[test]
    fn whole_reference_only_matches_a_lone_reference() {
        assert_eq!(
            whole_reference("${A:-}"),
            Some(Reference {
                name: "A",
                default: Some("")
            })
        );
        assert_eq!(whole_reference("x${A}"), None);
        assert_eq!(whole_reference("${A}${B}"), None);
        assert_eq!(whole_reference("$${A}"), None);
    }
}
