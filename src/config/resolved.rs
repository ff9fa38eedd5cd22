//! [`ResolvedConfig`]: the config with its `${ENV}` references substituted, as a chain reads
//! it at run time — typed sections, single values, and a `Debug` that hides secrets.
//!
//! It holds resolved secrets, so it is deliberately not `Serialize`: nothing can write it to
//! an artifact or a log by accident; and it registers them with the scrubber
//! ([`crate::secret::register`]) as it resolves them. What gets logged is the [`ChainConfig`](super::ChainConfig).

use std::{
    collections::BTreeSet,
    fmt,
    path::{Path, PathBuf},
    sync::LazyLock,
};

use regex::Regex;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{ConfigError, document, env, secret};

/// Stands in for a value that is missing, so a missing key can still deserialize as `None`.
static NULL: Value = Value::Null;

/// Parts of serde messages that quote the input value, and what replaces them.
#[expect(
    clippy::expect_used,
    reason = "literal patterns; every section test compiles them"
)]
static QUOTED_VALUES: LazyLock<[(Regex, &'static str); 3]> = LazyLock::new(|| {
    let re = |pattern: &str| Regex::new(pattern).expect("message patterns are valid");
    [
        (re(r#"string "(?:[^"\\]|\\.)*""#), "string"),
        (
            re(r"(integer|floating point|boolean|character) `[^`]*`"),
            "$1",
        ),
        (re(r"unknown variant `[^`]*`"), "unknown variant"),
    ]
});

/// The config with every reference substituted. Made by
/// [`ChainConfig::resolve`](super::ChainConfig::resolve).
///
/// # Examples
///
/// ```
/// use std::path::Path;
/// use chainlog::config::ChainConfig;
///
/// let config = ChainConfig::from_yaml(
///     "chain:\n  chunk_chars: ${CHUNK:-2000}\n  api_key: ${MY_KEY}\n",
///     Path::new("c.yaml"),
/// )?;
/// let resolved = config.resolve(&|name| (name == "MY_KEY").then(|| "s3cr3t-canary".to_owned()))?;
/// assert_eq!(resolved.section::<usize>("chain.chunk_chars")?, 2000);
/// assert!(!format!("{resolved:?}").contains("s3cr3t-canary"));
/// # Ok::<(), chainlog::config::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct ResolvedConfig {
    /// The file the config came from.
    origin: PathBuf,
    /// The resolved document.
    root: Value,
    /// Key paths whose values `Debug` hides.
    sensitive: BTreeSet<String>,
}

impl ResolvedConfig {
    /// Resolves a checked document (see [`ChainConfig::resolve`](super::ChainConfig::resolve)).
    ///
    /// # Errors
    ///
    /// [`ConfigError::MissingEnv`] for the first unset variable without a default.
    pub(crate) fn resolve(
        origin: PathBuf,
        document: &Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut sensitive = BTreeSet::new();
        let root = resolve_node(document, "", false, env, &mut sensitive)?;
        // A path the config's `not_secret` list names holds no secret by its name.
        let exempt = secret::not_secret_paths(document)?;
        sensitive.retain(|path| {
            !secret::is_exempt(path, &exempt)
                || matches!(document::lookup(&root, path),
                    Some(Value::String(text)) if secret::credential_shape(text).is_some())
        });
        // The process now holds these values: the scrubber masks them in any text from
        // outside (a provider may echo a key back).
        for path in &sensitive {
            if let Some(Value::String(text)) = document::lookup(&root, path) {
                crate::secret::register(text);
            }
        }
        Ok(Self {
            origin,
            root,
            sensitive,
        })
    }

    /// The file the config came from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The resolved value at a dotted key path (`llm.model`, `stop.0`).
    pub fn get(&self, path: &str) -> Option<&Value> {
        document::lookup(&self.root, path)
    }

    /// The value at `key` (a dotted path) deserialized as `T`. A missing key reads as null,
    /// so `Option<T>` gives `None`; any other `T` gets an error saying the key is missing.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Section`] naming the full key path of the offending value
    /// (`chain.chunk_chars`) and what is wrong with it, without repeating the value.
    pub fn section<T: DeserializeOwned>(&self, key: &str) -> Result<T, ConfigError> {
        let value = self.get(key);
        serde_path_to_error::deserialize(value.unwrap_or(&NULL)).map_err(|err| {
            if value.is_none() {
                return ConfigError::Section {
                    key: key.to_owned(),
                    message: "missing from the config".to_owned(),
                };
            }
            let mut path = key.to_owned();
            for segment in err.path().iter() {
                use serde_path_to_error::Segment;
                match segment {
                    Segment::Seq { index } => path = document::join(&path, &index.to_string()),
                    Segment::Map { key } | Segment::Enum { variant: key } => {
                        path = document::join(&path, key);
                    }
                    Segment::Unknown => path = document::join(&path, "?"),
                }
            }
            let mut message = err.inner().to_string();
            if let Some(rest) = message.strip_prefix("unknown field `")
                && let Some((field, rest)) = rest.split_once('`')
            {
                // The path usually ends at the unknown field already; name it once either way.
                if path.rsplit('.').next() != Some(field) {
                    path = document::join(&path, field);
                }
                message = format!("unknown key{rest}");
            }
            ConfigError::Section {
                key: path,
                message: without_values(&message),
            }
        })
    }
}

/// The resolved copy of `value`; records in `sensitive` the key paths whose values must not
/// be shown (secret-named keys, references to secret-named variables, credential shapes).
fn resolve_node(
    value: &Value,
    key_path: &str,
    secret_named: bool,
    env: &dyn Fn(&str) -> Option<String>,
    sensitive: &mut BTreeSet<String>,
) -> Result<Value, ConfigError> {
    if secret_named && !value.is_object() && !value.is_array() {
        sensitive.insert(key_path.to_owned());
    }
    Ok(match value {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (key, child) in map {
                let path = document::join(key_path, key);
                let named = secret::is_secret_child(map, key);
                out.insert(
                    key.clone(),
                    resolve_node(child, &path, named, env, sensitive)?,
                );
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, child)| {
                    let path = document::join(key_path, &i.to_string());
                    resolve_node(child, &path, secret_named, env, sensitive)
                })
                .collect::<Result<_, _>>()?,
        ),
        Value::String(text) => {
            let references = env::references(text);
            let resolved = env::substitute(text, key_path, env)?;
            if references.iter().any(|r| secret::is_secret_name(r.name))
                || secret::credential_shape(&resolved).is_some()
            {
                sensitive.insert(key_path.to_owned());
            }
            if env::whole_reference(text).is_some() && !secret_named {
                typed_scalar(resolved)
            } else {
                Value::String(resolved)
            }
        }
        other => other.clone(),
    })
}

/// `text` read as a YAML scalar (`256` → number, `true` → boolean, `` → null), or the
/// string itself when it reads as anything else.
fn typed_scalar(text: String) -> Value {
    match serde_norway::from_str::<Value>(&text) {
        Ok(value) if !value.is_object() && !value.is_array() => value,
        _ => Value::String(text),
    }
}

/// A deserializer's message with every quoted input value removed and anything
/// credential-shaped masked.
fn without_values(message: &str) -> String {
    let mut message = message.to_owned();
    for (pattern, replacement) in QUOTED_VALUES.iter() {
        message = pattern.replace_all(&message, *replacement).into_owned();
    }
    secret::mask_credentials(&message)
}

/// Shows the document with sensitive values as `"***"`.
impl fmt::Debug for ResolvedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.root.clone();
        for path in &self.sensitive {
            if let Some(slot) = lookup_mut(&mut shown, path) {
                *slot = Value::String("***".to_owned());
            }
        }
        f.debug_struct("ResolvedConfig")
            .field("origin", &self.origin)
            .field("values", &format_args!("{shown}"))
            .finish()
    }
}

/// The mutable slot at a dotted key path.
fn lookup_mut<'a>(root: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    path.split('.').try_fold(root, |node, segment| match node {
        Value::Object(map) => map.get_mut(segment),
        Value::Array(items) => items.get_mut(segment.parse::<usize>().ok()?),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::config::ChainConfig;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct ChainParams {
        chunk_chars: usize,
        #[serde(default)]
        stop: Vec<String>,
    }

    const REFERENCES: &str = "\
llm:
  base_url: ${OPENAI_BASE_URL:-https://api.openai.com/v1}
  api_key: ${OPENAI_API_KEY}
chain:
  greeting: hello ${USER_NAME:-there}
";

    fn example_config() -> ChainConfig {
        ChainConfig::from_yaml(REFERENCES, Path::new("c.yaml")).unwrap()
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn resolved(yaml: &str, env: &[(&str, &str)]) -> ResolvedConfig {
        ChainConfig::from_yaml(yaml, Path::new("c.yaml"))
            .unwrap()
            .resolve(&env_of(env))
            .unwrap()
    }

    #[test]
    fn section_reads_a_typed_struct_and_a_single_value() {
        let config = resolved(
            "chain:\n  chunk_chars: ${CHUNK:-2000}\n  stop: [END]\n",
            &[],
        );
        assert_eq!(
            config.section::<ChainParams>("chain").unwrap(),
            ChainParams {
                chunk_chars: 2000,
                stop: vec!["END".to_owned()]
            }
        );
        assert_eq!(config.section::<usize>("chain.chunk_chars").unwrap(), 2000);
        assert_eq!(config.get("chain.stop.0"), Some(&json!("END")));
        assert_eq!(config.get("chain.stop.1"), None);
    }

    #[test]
    fn section_type_error_names_the_nested_key_without_the_value() {
        let config = resolved("chain:\n  chunk_chars: canary-type-0001\n", &[]);
        for err in [
            config.section::<ChainParams>("chain").unwrap_err(),
            config.section::<usize>("chain.chunk_chars").unwrap_err(),
        ] {
            assert_eq!(
                err.to_string(),
                "config key `chain.chunk_chars`: invalid type: string, expected usize"
            );
            assert!(!format!("{err:?}").contains("canary-type-0001"));
        }
        let nested = resolved("chain:\n  chunk_chars: 1\n  stop: [a, 7]\n", &[]);
        let err = nested.section::<ChainParams>("chain").unwrap_err();
        assert_eq!(
            err.to_string(),
            "config key `chain.stop.1`: invalid type: integer, expected a string"
        );
    }

    #[test]
    fn section_unknown_key_is_named_in_the_path() {
        let config = resolved("chain:\n  chunk_chars: 1\n  chunk_char: 2\n", &[]);
        let err = config.section::<ChainParams>("chain").unwrap_err();
        let ConfigError::Section { key, message } = &err else {
            panic!("expected Section, got {err:?}");
        };
        assert_eq!(key, "chain.chunk_char");
        assert_eq!(message, "unknown key, expected `chunk_chars` or `stop`");
    }

    #[test]
    fn missing_section_is_none_as_an_option_and_an_error_otherwise() {
        let config = resolved("llm: {model: m}\n", &[]);
        assert_eq!(
            config.section::<Option<ChainParams>>("chain").unwrap(),
            None
        );
        let err = config.section::<ChainParams>("chain").unwrap_err();
        assert_eq!(
            err.to_string(),
            "config key `chain`: missing from the config"
        );
    }

    #[test]
    fn debug_hides_secret_named_keys_secret_variables_and_credential_shapes() {
        let config = resolved(
            "llm:\n  model: gpt-4o-mini\n  api_key: ${OPENAI_API_KEY}\n\
             hub:\n  hf_token: ${HF}\n\
             headers:\n  x_custom: ${MY_SECRET_TOKEN}\n\
             note: ${NOTE}\n\
             creds:\n  credentials:\n    - ${C1}\n",
            &[
                ("OPENAI_API_KEY", "canary-dbg-0001"),
                ("HF", "canary-dbg-0002"),
                ("MY_SECRET_TOKEN", "canary-dbg-0003"),
                ("NOTE", "sk-canaryDbg0004abcdefghij"),
                ("C1", "canary-dbg-0005"),
            ],
        );
        let shown = format!("{config:?}");
        for canary in [
            "canary-dbg-0001",
            "canary-dbg-0002",
            "canary-dbg-0003",
            "canaryDbg0004",
            "canary-dbg-0005",
        ] {
            assert!(!shown.contains(canary), "{canary} leaked: {shown}");
        }
        assert!(shown.contains("gpt-4o-mini"), "{shown}");
        assert_eq!(config.get("llm.api_key"), Some(&json!("canary-dbg-0001")));
    }

    #[test]
    fn messages_quoting_values_lose_the_values() {
        assert_eq!(
            without_values(r#"invalid value: string "a \"quoted\" canary", expected x"#),
            "invalid value: string, expected x"
        );
        assert_eq!(
            without_values("invalid value: integer `300`, expected u8"),
            "invalid value: integer, expected u8"
        );
        assert_eq!(
            without_values("unknown variant `canary`, expected `a` or `b`"),
            "unknown variant, expected `a` or `b`"
        );
    }

    #[test]
    fn resolve_substitutes_whole_embedded_and_default_references() {
        let env = env_of(&[("OPENAI_API_KEY", "k"), ("USER_NAME", "ada")]);
        let resolved = example_config().resolve(&env).unwrap();
        assert_eq!(resolved.get("llm.api_key"), Some(&json!("k")));
        assert_eq!(
            resolved.get("llm.base_url"),
            Some(&json!("https://api.openai.com/v1"))
        );
        assert_eq!(resolved.get("chain.greeting"), Some(&json!("hello ada")));
        let defaulted = example_config()
            .resolve(&env_of(&[("OPENAI_API_KEY", "k")]))
            .unwrap();
        assert_eq!(defaulted.get("chain.greeting"), Some(&json!("hello there")));
    }

    #[test]
    fn resolve_names_the_missing_variable_and_its_key() {
        let err = example_config().resolve(&env_of(&[])).unwrap_err();
        let ConfigError::MissingEnv { name, key_path } = &err else {
            panic!("expected MissingEnv, got {err:?}");
        };
        assert_eq!(
            (name.as_str(), key_path.as_str()),
            ("OPENAI_API_KEY", "llm.api_key")
        );
        assert!(
            err.to_string().contains("`OPENAI_API_KEY`")
                && err.to_string().contains("`llm.api_key`")
        );
    }

    #[test]
    fn whole_references_are_typed_except_under_secret_names() {
        let config = ChainConfig::from_yaml(
            "n: ${N:-256}\nflag: ${F}\nempty: ${E:-}\ntext: x${N:-1}\napi_key: ${K}\n",
            Path::new("c"),
        )
        .unwrap();
        let resolved = config
            .resolve(&env_of(&[("F", "true"), ("K", "12345")]))
            .unwrap();
        assert_eq!(resolved.get("n"), Some(&json!(256)));
        assert_eq!(resolved.get("flag"), Some(&json!(true)));
        assert_eq!(resolved.get("empty"), Some(&json!(null)));
        assert_eq!(resolved.get("text"), Some(&json!("x1")));
        assert_eq!(resolved.get("api_key"), Some(&json!("12345")));
    }
}
