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
//! **False positives.** A top-level `not_secret` list of key paths exempts the values at those
//! paths (and the elements of a list there) from rule 1 — never a whole subtree, and never
//! rule 2: a value shaped like a credential is refused even at a listed path.
//!
//! ```yaml
//! chain:
//!   label_key: region        # a field name, not a credential
//! not_secret: [chain.label_key]
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
    // `not_secret` ends in `_secret` but lists key paths, never secrets.
    if key == NOT_SECRET_KEY {
        return false;
    }
    if key == "value" {
        return PAIR_LABELS.iter().any(|label| {
            map.get(*label)
                .and_then(Value::as_str)
                .is_some_and(is_secret_name)
        });
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
            message: "must be a list of key paths, as in `not_secret: [chain.label_key]`"
                .to_owned(),
        });
    };
    let mut paths = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = || document::join(NOT_SECRET_KEY, &i.to_string());
        let Some(path) = item.as_str() else {
            return Err(ConfigError::Section {
                key: key(),
                message: "must be a key path such as `chain.label_key`".to_owned(),
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

/// Whether `key_path` is exempt from the *name* rule: the `not_secret` list itself, a path it
/// lists, or an element of a list at such a path (`path.0`). Never a whole subtree, and never
/// the shape rule: a value shaped like a key is refused even at a listed path.
pub(crate) fn is_exempt(key_path: &str, exempt: &[String]) -> bool {
    let at = |path: &str| {
        key_path == path
            || key_path
                .strip_prefix(path)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|index| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
    };
    let in_list = key_path
        .strip_prefix(NOT_SECRET_KEY)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'));
    in_list || exempt.iter().any(|path| at(path))
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
            // A password in any URL's userinfo, wherever the URL is.
            (
                "llm:\n  base_url: https://alice:canary0018@llm.internal/v1\n",
                "llm.base_url",
                "canary0018",
            ),
            (
                "db:\n  url: postgres://app:canary0019@db:5432/prod\n",
                "db.url",
                "canary0019",
            ),
            (
                "cache: redis://:canary0020@cache:6379/0\n",
                "cache",
                "canary0020",
            ),
            (
                "llm:\n  base_url: ${LLM_URL:-https://u:canary0021@h/v1}\n",
                "llm.base_url",
                "canary0021",
            ),
            // Key-shaped query parameters.
            (
                "endpoint: https://maps.example/api?key=canary0022&q=x\n",
                "endpoint",
                "canary0022",
            ),
            (
                "azure:\n  url: https://x.openai.azure.com/v1?api-version=1&api-key=canary0023\n",
                "azure.url",
                "canary0023",
            ),
            (
                "hook: https://hooks.example/x?token=canary0024\n",
                "hook",
                "canary0024",
            ),
            (
                "feed: https://api.example/feed?access_token=canary0025\n",
                "feed",
                "canary0025",
            ),
            (
                "blob: https://acct.blob.example/c/f.txt?sv=2022&sig=canary0026%3D\n",
                "blob",
                "canary0026",
            ),
            // Secret-looking names beyond `api_key`/`token`/`password`.
            (
                "openai_key_2: canary0027abcdef\n",
                "openai_key_2",
                "canary0027",
            ),
            (
                "chain:\n  key: canary0028abcdef\n",
                "chain.key",
                "canary0028",
            ),
            (
                "search:\n  serp_key: canary0029\n",
                "search.serp_key",
                "canary0029",
            ),
            ("db:\n  pass: canary0030\n", "db.pass", "canary0030"),
            ("db:\n  passwd: canary0031\n", "db.passwd", "canary0031"),
            (
                "webhook_secret: canary0032\n",
                "webhook_secret",
                "canary0032",
            ),
            (
                "credentials_json: canary0033\n",
                "credentials_json",
                "canary0033",
            ),
            (
                "github:\n  refresh_token: canary0034\n",
                "github.refresh_token",
                "canary0034",
            ),
            (
                "signing:\n  private_key: canary0035\n",
                "signing.private_key",
                "canary0035",
            ),
            (
                "hub:\n  HF_TOKEN: canary0036\n",
                "hub.HF_TOKEN",
                "canary0036",
            ),
            // Literal values inside lists, and maps inside lists.
            (
                "api_keys:\n  - ${KEY_ONE}\n  - canary0037\n",
                "api_keys.1",
                "canary0037",
            ),
            (
                "pool:\n  - name: a\n    token: canary0038\n",
                "pool.0.token",
                "canary0038",
            ),
            (
                "headers:\n  - name: x-api-key\n    value: canary0039\n",
                "headers.0.value",
                "canary0039",
            ),
            (
                "headers:\n  - {key: Authorization, value: canary0040}\n",
                "headers.0.value",
                "canary0040",
            ),
            (
                "mirrors:\n  - [https://u:canary0041@m1/x]\n",
                "mirrors.0.0",
                "canary0041",
            ),
            // A literal default under a secret-looking key.
            (
                "search:\n  serp_key: ${SERP_KEY:-canary0042}\n",
                "search.serp_key",
                "canary0042",
            ),
            (
                "db:\n  url: postgres://u:${DB_PW:-canary0043}@db/x\n",
                "db.url",
                "canary0043",
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
    fn common_non_secrets_are_accepted() {
        for yaml in [
            "llm:\n  max_tokens: 256\n  max_completion_tokens: 300\n",
            "chain:\n  token_limit: 4000\n  tokenizer: cl100k_base\n",
            "chain:\n  key_field: id\n  keys: [id, name]\n",
            "chain:\n  sort_key: title\n  output_key: answer\n  memory_key: history\n",
            "model:\n  eos_token: \"</s>\"\n  pad_token: \"<pad>\"\n",
            "signing:\n  public_key: ssh-ed25519 AAAAC3Nza\n",
            "llm:\n  base_url: https://api.openai.com/v1\n",
            "llm:\n  base_url: http://localhost:8080/v1?api-version=2024-06-01\n",
            "db:\n  url: postgres://app:${DB_PASSWORD}@db:5432/prod\n",
            "azure:\n  url: https://x.example/v1?api-key=${AZURE_OPENAI_API_KEY}\n",
            "auth:\n  enabled: true\n  token: ${HF_TOKEN}\n",
            "headers:\n  - name: x-request-source\n    value: chainlog\n",
            "headers:\n  - {name: x-api-key, value: \"${GATEWAY_KEY}\"}\n",
            "chain:\n  note: write ?key=value pairs\n",
            "chain:\n  contact: https://alice@example.com/team\n",
            "chain:\n  credentials_path: /etc/app/creds.json\n",
            "chain:\n  first_pass: true\n",
        ] {
            let result = ChainConfig::from_yaml(yaml, Path::new("c.yaml"));
            assert!(result.is_ok(), "{yaml}: {result:?}");
        }
    }

    #[test]
    fn not_secret_exempts_listed_paths_and_round_trips() {
        let yaml = "chain:\n  label_key: region\n  lookup:\n    pass: first\nnot_secret: [chain.label_key, chain.lookup.pass]\n";
        let config = ChainConfig::from_yaml(yaml, Path::new("c.yaml")).unwrap();
        let logged = config.to_yaml();
        assert!(logged.contains("not_secret"), "{logged}");
        let again = ChainConfig::from_yaml(&logged, Path::new("model_config.yaml")).unwrap();
        assert_eq!(again.as_value(), config.as_value());
        let mut changed = again.clone();
        changed.set("chain.label_key=country").unwrap();
        // Without the list, the same document is refused, naming the first path.
        let err = ChainConfig::from_yaml("chain:\n  label_key: region\n", Path::new("c.yaml"))
            .unwrap_err();
        assert!(
            matches!(&err, ConfigError::LiteralSecret { key_path, .. } if key_path == "chain.label_key"),
            "{err:?}"
        );
    }

    /// `not_secret` exempts exact paths from the name rule only: not a subtree, not a value
    /// shaped like a key; and its own entries are never treated as secrets.
    #[test]
    fn not_secret_is_exact_and_never_covers_a_key_shaped_value() {
        let canary = format!("sk-{}", "CANARY0123456789abcdefghij");
        for (yaml, path) in [
            (
                "chain:\n  lookup:\n    api_key: literal-value\nnot_secret: [chain]\n".to_owned(),
                "chain.lookup.api_key",
            ),
            (
                format!("chain:\n  helper: {canary}\nnot_secret: [chain.helper]\n"),
                "chain.helper",
            ),
        ] {
            let err = ChainConfig::from_yaml(&yaml, Path::new("c.yaml")).unwrap_err();
            assert!(
                matches!(&err, ConfigError::LiteralSecret { key_path, .. } if key_path == path),
                "{yaml}: {err:?}"
            );
            assert_hidden(&err, &canary);
        }
        let config = ChainConfig::from_yaml(
            "chain:\n  label_key: region\nnot_secret: [chain.label_key]\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        let resolved = config.resolve(&|_: &str| None).unwrap();
        assert!(
            !format!("{resolved:?}").contains("***"),
            "a not_secret entry was hidden as a secret: {resolved:?}"
        );
    }

    #[test]
    fn not_secret_must_name_existing_keys() {
        for (yaml, key) in [
            ("chain:\n  a: 1\nnot_secret: [chain.b]\n", "not_secret.0"),
            ("chain:\n  a: 1\nnot_secret: chain.a\n", "not_secret"),
            ("chain:\n  a: 1\nnot_secret: [3]\n", "not_secret.0"),
            ("not_secret: [not_secret]\n", "not_secret.0"),
        ] {
            let err = ChainConfig::from_yaml(yaml, Path::new("c.yaml")).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Section { key: k, .. } if k == key),
                "{yaml}: {err:?}"
            );
        }
    }

    #[test]
    fn set_keeps_the_rules_and_the_exemptions() {
        let mut config = ChainConfig::from_yaml(
            "chain:\n  label_key: region\n  serp_key: ${SERP_KEY}\nnot_secret: [chain.label_key]\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        config.set("chain.label_key=country").unwrap();
        let err = config.set("chain.serp_key=canary-set-0044").unwrap_err();
        assert_hidden(&err, "canary-set-0044");
        let err = config.set("not_secret.0=chain.nope").unwrap_err();
        assert!(matches!(err, ConfigError::Section { .. }), "{err:?}");
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
