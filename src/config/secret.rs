//! Secret detection in chain configs: the rules a value must pass at load time and on every
//! `--set`, and the `not_secret` list that exempts a value the rules mistake for a secret.
//!
//! The rules (the names and shapes themselves live in [`crate::secret`]):
//!
//! 1. **Secret-named keys** (`api_key`, `key`, `*_key`, `token`, `*_token`, `secret`,
//!    `*_secret`, `password`, `pass`, `passwd`, `credential*`, `auth`, … in any case and
//!    spelling: `openai_api_key`, `hfToken`, `x-api-key`) may hold only a pure environment
//!    reference (`${NAME}`, or `${NAME:-}` with an *empty* default), `null`, a boolean, an
//!    empty string, or a mapping whose own keys are checked in turn. A non-empty default is
//!    a literal secret too: it would be written to the artifact. The elements of a list
//!    under a secret-named key are held to the same rule (`api_keys: [${K1}, ${K2}]`), and
//!    so is the `value` of a name/value pair whose `name` (or `key`, `header`) is
//!    secret-named (`headers: [{name: x-api-key, value: ${GATEWAY_KEY}}]`).
//! 2. **Credential-shaped values** anywhere, in lists and nested maps too, and inside
//!    reference defaults: OpenAI-style `sk-…`, `Bearer …`, GitHub `ghp_…`, Slack `xox?-…`,
//!    AWS `AKIA…`, PEM private keys, a password in any URL's userinfo
//!    (`https://user:pw@host`, `postgres://u:pw@db`) and key-shaped query parameters
//!    (`?key=`, `api-key=`, `token=`, `access_token=`, `sig=`, …) — unless the password or
//!    parameter is itself a reference (`postgres://u:${DB_PASSWORD}@db`).
//!
//! A refusal names the key path and the rule, never the value.
//!
//! **False positives.** A top-level `not_secret` list of key paths exempts those values (and
//! everything under them) from both rules:
//!
//! ```yaml
//! chain:
//!   sort_key: title          # a lookup key, not a credential
//! not_secret: [chain.sort_key]
//! ```
//!
//! It is an ordinary key of the document, so it is logged with the config and honoured again
//! when the logged `model_config.yaml` is read back. Each path must name a key the config
//! has, so a typo cannot exempt nothing silently.
//!
//! Owns no public type; [`ConfigError::LiteralSecret`] is what a broken rule becomes.

use serde_json::{Map, Value};

use super::{ConfigError, document, env};
pub(crate) use crate::secret::{credential_shape, is_secret_name, mask_credentials};

/// The top-level key that lists key paths exempt from the secret rules.
pub(crate) const NOT_SECRET_KEY: &str = "not_secret";

/// The fields that name a name/value pair (`{name: x-api-key, value: …}`).
const PAIR_LABELS: &[&str] = &["name", "key", "header"];

/// Whether the child `key` of `map` holds a secret: its own name says so, or it is the
/// `value` of a name/value pair whose name is secret-named. In such a pair the label field
/// (`name`, `key`, `header`) holds a name, not a secret.
pub(crate) fn is_secret_child(map: &Map<String, Value>, key: &str) -> bool {
    if key == "value" {
        return PAIR_LABELS
            .iter()
            .any(|label| map.get(*label).and_then(Value::as_str).is_some_and(is_secret_name));
    }
    if PAIR_LABELS.contains(&key) && map.contains_key("value") {
        return false;
    }
    is_secret_name(key)
}

/// The key paths the document's top-level `not_secret` list exempts.
///
/// # Errors
///
/// [`ConfigError::Section`] when `not_secret` is not a list of strings, or one of them names
/// no key of the document.
pub(crate) fn not_secret_paths(root: &Value) -> Result<Vec<String>, ConfigError> {
    let Some(list) = root.get(NOT_SECRET_KEY) else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = list else {
        return Err(ConfigError::Section {
            key: NOT_SECRET_KEY.to_owned(),
            message: "must be a list of key paths, as in `not_secret: [chain.sort_key]`"
                .to_owned(),
        });
    };
    let mut paths = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = || document::join(NOT_SECRET_KEY, &i.to_string());
        let Some(path) = item.as_str() else {
            return Err(ConfigError::Section {
                key: key(),
                message: "must be a key path such as `chain.sort_key`".to_owned(),
            });
        };
        if path.split('.').next() == Some(NOT_SECRET_KEY) || document::lookup(root, path).is_none()
        {
            return Err(ConfigError::Section {
                key: key(),
                message: format!("`{}` names no key of this config", mask_credentials(path)),
            });
        }
        paths.push(path.to_owned());
    }
    Ok(paths)
}

/// Whether `key_path` is exempt from the secret rules: the `not_secret` list itself, or a
/// path it lists, or anything under one.
pub(crate) fn is_exempt(key_path: &str, exempt: &[String]) -> bool {
    let under = |prefix: &str| {
        key_path == prefix
            || key_path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.'))
    };
    under(NOT_SECRET_KEY) || exempt.iter().any(|path| under(path))
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
