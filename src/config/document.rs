//! [`ChainConfig`]: the chain config as written — loaded from YAML, checked for secrets,
//! changed by `--set`, and written back with its `${ENV}` references intact.
//!
//! This is the document that is logged to MLflow (`model_config.yaml`, the MLmodel's inline
//! config, flattened run params), so every way into it — load, [`ChainConfig::from_value`],
//! [`ChainConfig::set`] — runs the secret check. Resolving references against the
//! environment happens only in [`ChainConfig::resolve`], which hands back a separate
//! [`ResolvedConfig`]. Does not own the secret rules (`secret`), the reference syntax (`env`)
//! or typed reads (`resolved`, `llm`).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use serde::{Serialize, Serializer};
use serde_json::Value;

use super::{ConfigError, ResolvedConfig, env, secret};

/// Where a chain's default config lives, relative to the crate root.
pub const DEFAULT_CONFIG_DIR: &str = "chains";

/// At most this many sibling keys are listed in an [`ConfigError::UnknownKey`].
const MAX_KNOWN_KEYS: usize = 24;

/// A chain config as written: a YAML mapping whose values may hold `${ENV}` references and
/// never hold a literal secret.
///
/// Keys are kept sorted, so [`to_yaml`](Self::to_yaml) and [`sha256`](Self::sha256) are
/// canonical: two documents with the same content give the same text and hash, whatever the
/// key order or comments of their files.
///
/// # Examples
///
/// ```
/// use std::path::Path;
/// use chainlog::config::ChainConfig;
///
/// let mut config = ChainConfig::from_yaml(
///     "llm:\n  model: gpt-4o-mini\n  api_key: ${OPENAI_API_KEY}\n",
///     Path::new("chains/summarize.yaml"),
/// )?;
/// config.set("llm.model=gpt-4o")?;
/// assert!(config.to_yaml().contains("${OPENAI_API_KEY}"));
/// assert!(config.set("llm.api_key=sk-abcdefghijklmnop1234").is_err());
/// # Ok::<(), chainlog::config::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// The file it came from (or the name its text was given), for error messages.
    origin: PathBuf,
    /// The document: always a mapping at the top.
    root: Value,
    /// The canonical YAML text of `root`, kept in step with it so writing and hashing
    /// cannot fail after construction.
    yaml: String,
}

impl ChainConfig {
    /// The default config file of a chain: `chains/<chain>.yaml`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use chainlog::config::ChainConfig;
    /// assert_eq!(
    ///     ChainConfig::default_path("summarize"),
    ///     std::path::Path::new("chains/summarize.yaml")
    /// );
    /// ```
    pub fn default_path(chain: &str) -> PathBuf {
        Path::new(DEFAULT_CONFIG_DIR).join(format!("{chain}.yaml"))
    }

    /// Loads the config a command line asks for: `file` (from `--config`) or else the
    /// chain's default file, then every `--set` assignment in order.
    ///
    /// # Errors
    ///
    /// Those of [`from_path`](Self::from_path) and [`set`](Self::set).
    pub fn load(
        chain: &str,
        file: Option<&Path>,
        assignments: &[impl AsRef<str>],
    ) -> Result<Self, ConfigError> {
        let path = file.map_or_else(|| Self::default_path(chain), Path::to_path_buf);
        let mut config = Self::from_path(&path)?;
        for assignment in assignments {
            config.set(assignment.as_ref())?;
        }
        Ok(config)
    }

    /// Reads and checks a YAML config file.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] when the file cannot be read, and those of
    /// [`from_yaml`](Self::from_yaml).
    pub fn from_path(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }

    /// Parses and checks YAML text; `origin` names it in errors. An empty document is an
    /// empty config.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] (with line and column) for invalid YAML or a duplicate key,
    /// and those of [`from_value`](Self::from_value).
    pub fn from_yaml(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let parse_error = |err: serde_norway::Error| {
            let location = err.location();
            let (line, column) = (
                location.as_ref().map(serde_norway::Location::line),
                location.as_ref().map(serde_norway::Location::column),
            );
            let mut message = err.to_string();
            if let (Some(line), Some(column)) = (line, column) {
                // The location is in its own fields; say it once.
                message = message.replacen(&format!(" at line {line} column {column}"), "", 1);
            }
            ConfigError::Parse {
                path: origin.to_path_buf(),
                line,
                column,
                message: secret::mask_credentials(&message),
            }
        };
        // A first pass through YAML's own value type refuses duplicate keys, which a JSON map
        // would silently collapse to the last one.
        serde_norway::from_str::<serde_norway::Value>(text).map_err(parse_error)?;
        let root: Value = serde_norway::from_str(text).map_err(parse_error)?;
        Self::from_value(root, origin)
    }

    /// Checks a config already parsed, such as the inline config of an MLmodel file.
    ///
    /// # Errors
    ///
    /// [`ConfigError::NotAMapping`] unless `root` is a mapping (or null),
    /// [`ConfigError::LiteralSecret`] for a secret, [`ConfigError::BadReference`] for a
    /// malformed `${`.
    pub fn from_value(root: Value, origin: &Path) -> Result<Self, ConfigError> {
        let root = match root {
            Value::Null => Value::Object(serde_json::Map::new()),
            Value::Object(_) => root,
            _ => {
                return Err(ConfigError::NotAMapping {
                    path: origin.to_path_buf(),
                });
            }
        };
        let exempt = secret::not_secret_paths(&root)?;
        visit(&root, "", false, &mut |value, key_path, secret_named| {
            check(value, key_path, secret_named, &exempt)
        })?;
        let yaml = to_canonical_yaml(&root)?;
        Ok(Self {
            origin: origin.to_path_buf(),
            root,
            yaml,
        })
    }

    /// The file this config came from, or the name its text was given.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The document as a JSON value tree, references unresolved.
    pub fn as_value(&self) -> &Value {
        &self.root
    }

    /// The canonical YAML text (sorted keys, no comments); references stay references.
    pub fn to_yaml(&self) -> String {
        self.yaml.clone()
    }

    /// The SHA-256 of [`to_yaml`](Self::to_yaml), as lowercase hex.
    pub fn sha256(&self) -> String {
        crate::digest::sha256_hex(self.yaml.as_bytes())
    }

    /// Applies one `key.path=value` assignment (a `--set`). The value is read as a YAML
    /// scalar, so `0.5` is a number, `true` a boolean and `"0.5"` a string; an empty value
    /// is null. The key path must already exist and name a value, not a section — except a
    /// key of an LLM section (`llm.concurrency`, `llms.<name>.timeout_secs`) that the file
    /// leaves to its default, which is added; array
    /// elements are addressed by index (`stop.0`). The new value passes the same secret check
    /// as the file.
    ///
    /// # Errors
    ///
    /// [`ConfigError::BadAssignment`] for a malformed assignment or a value that is not a
    /// scalar, [`ConfigError::UnknownKey`] for a key path not in the config,
    /// [`ConfigError::LiteralSecret`] and [`ConfigError::BadReference`] as at load. None of
    /// them repeats the value.
    pub fn set(&mut self, assignment: &str) -> Result<(), ConfigError> {
        let bad = |key: Option<&str>, reason| ConfigError::BadAssignment {
            key: key.map(secret::mask_credentials),
            reason,
        };
        let Some((key, raw)) = assignment.split_once('=') else {
            return Err(bad(None, "expected `key.path=value`"));
        };
        let key = key.trim();
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(bad(None, "the key path is empty or has an empty segment"));
        }
        let value: Value = serde_norway::from_str(raw).map_err(|_| {
            bad(
                Some(key),
                "the value is not valid yaml; quote it to set a string",
            )
        })?;
        if value.is_object() || value.is_array() {
            return Err(bad(
                Some(key),
                "the value must be one yaml scalar (string, number, boolean or null)",
            ));
        }
        let mut root = self.root.clone();
        let exempt = secret::not_secret_paths(&root)?;
        let (slot, secret_named) = lookup_for_set(&mut root, key)?;
        if slot.is_object() || slot.is_array() {
            return Err(bad(Some(key), "this key is a section; set one of its keys"));
        }
        check(&value, key, secret_named, &exempt)?;
        *slot = value;
        // A changed `not_secret` entry must still name a key.
        secret::not_secret_paths(&root)?;
        self.yaml = to_canonical_yaml(&root)?;
        self.root = root;
        Ok(())
    }

    /// Every leaf as a `(key path, value)` pair, keys joined with `sep` (`"llm/model"`),
    /// sorted by key. Strings are as written (references unresolved), other scalars in their
    /// YAML spelling (`null`, `true`, `0.2`), arrays and empty mappings as compact JSON.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::path::Path;
    /// # use chainlog::config::ChainConfig;
    /// let yaml = "llm: {model: gpt-4o-mini, max_tokens: 256}";
    /// let config = ChainConfig::from_yaml(yaml, Path::new("c.yaml"))?;
    /// let flat = config.flatten("/");
    /// assert_eq!(flat[0], ("llm/max_tokens".to_owned(), "256".to_owned()));
    /// assert_eq!(flat[1], ("llm/model".to_owned(), "gpt-4o-mini".to_owned()));
    /// # Ok::<(), chainlog::config::ConfigError>(())
    /// ```
    pub fn flatten(&self, sep: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        flatten_into(&self.root, "", sep, &mut out);
        out
    }

    /// The names of the environment variables the config references, for
    /// `environment_variables.txt`.
    pub fn references(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let _ = visit(&self.root, "", false, &mut |value, _, _| {
            if let Value::String(text) = value {
                names.extend(env::references(text).iter().map(|r| r.name.to_owned()));
            }
            Ok(())
        });
        names
    }

    /// Substitutes every reference from `env` (pass `&|name| std::env::var(name).ok()` for
    /// the process environment). A value that is one whole reference is read as a YAML
    /// scalar (`max_tokens: ${MAX_TOKENS:-256}` gives a number) except under secret-named
    /// keys, which always get strings; an embedded reference always gives a string.
    ///
    /// # Errors
    ///
    /// [`ConfigError::MissingEnv`] naming the first variable that is unset without a default
    /// and the key that references it.
    pub fn resolve(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ResolvedConfig, ConfigError> {
        ResolvedConfig::resolve(self.origin.clone(), &self.root, env)
    }
}

/// Serializes as the document itself (references unresolved), for embedding it in another
/// file such as the MLmodel.
impl Serialize for ChainConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.root.serialize(serializer)
    }
}

/// `parent.child`, or `child` at the top.
pub(crate) fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

/// The value at a dotted key path (`llm.model`, `stop.0`), if there is one.
pub(crate) fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(root, |node, segment| match node {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
        _ => None,
    })
}

/// The slot at an existing key path, and whether its key is secret-named.
fn lookup_for_set<'a>(
    root: &'a mut Value,
    path: &str,
) -> Result<(&'a mut Value, bool), ConfigError> {
    let mut node = root;
    let mut secret_named = false;
    let segments: Vec<&str> = path.split('.').collect();
    for (depth, segment) in segments.iter().copied().enumerate() {
        let known = known_keys(node);
        // An LLM setting the file leaves to its default (`llm.concurrency`) may still be set.
        let settable_default = depth + 1 == segments.len()
            && super::llm::is_llm_section(&segments[..depth])
            && super::llm::LLM_KEYS.contains(&segment);
        let next = match node {
            Value::Object(map) => {
                secret_named = secret::is_secret_child(map, segment);
                if settable_default {
                    Some(map.entry(segment).or_insert(Value::Null))
                } else {
                    map.get_mut(segment)
                }
            }
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        };
        node = next.ok_or_else(|| ConfigError::UnknownKey {
            path: secret::mask_credentials(path),
            known,
        })?;
    }
    Ok((node, secret_named))
}

/// The keys (or indices) directly under `node`, for an [`ConfigError::UnknownKey`].
fn known_keys(node: &Value) -> Vec<String> {
    match node {
        Value::Object(map) => map.keys().take(MAX_KNOWN_KEYS).cloned().collect(),
        Value::Array(items) => (0..items.len().min(MAX_KNOWN_KEYS))
            .map(|i| i.to_string())
            .collect(),
        _ => Vec::new(),
    }
}

/// Calls `f` on every node, depth first, with its key path and whether its key is
/// secret-named (a sequence's elements inherit the sequence's key; see
/// `secret::is_secret_child` for name/value pairs).
fn visit(
    value: &Value,
    key_path: &str,
    secret_named: bool,
    f: &mut dyn FnMut(&Value, &str, bool) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    f(value, key_path, secret_named)?;
    match value {
        Value::Object(map) => map.iter().try_for_each(|(key, child)| {
            visit(
                child,
                &join(key_path, key),
                secret::is_secret_child(map, key),
                f,
            )
        }),
        Value::Array(items) => items.iter().enumerate().try_for_each(|(i, child)| {
            visit(child, &join(key_path, &i.to_string()), secret_named, f)
        }),
        _ => Ok(()),
    }
}

/// The load-time check of one value: reference syntax, then both secret rules (the name rule
/// not at a path the `not_secret` list (`exempt`) names).
fn check(
    value: &Value,
    key_path: &str,
    secret_named: bool,
    exempt: &[String],
) -> Result<(), ConfigError> {
    if let Value::String(text) = value {
        env::check_syntax(text, key_path)?;
    }
    // `not_secret` lifts the name rule at exact paths; a key-shaped value is refused anyway.
    let named = secret_named && !secret::is_exempt(key_path, exempt);
    secret::check_value(value, key_path, named)
}

/// YAML text of a document; keys come out sorted because `serde_json::Map` is a `BTreeMap`.
fn to_canonical_yaml(root: &Value) -> Result<String, ConfigError> {
    serde_norway::to_string(root).map_err(|err| ConfigError::Serialize {
        message: err.to_string(),
    })
}

/// Appends the leaves under `value` to `out`.
fn flatten_into(value: &Value, prefix: &str, sep: &str, out: &mut Vec<(String, String)>) {
    let text = match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}{sep}{key}")
                };
                flatten_into(child, &path, sep, out);
            }
            return;
        }
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    out.push((prefix.to_owned(), text));
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    const EXAMPLE: &str = "\
llm:
  model: gpt-4o-mini
  temperature: 0.2
  max_tokens: 256
  base_url: ${OPENAI_BASE_URL:-https://api.openai.com/v1}
  api_key: ${OPENAI_API_KEY}
  max_retries: 3
  concurrency: 8
  timeout_secs: 60
prompts:
  summary: summarize.hbs          # relative to prompts/
chain:
  chunk_chars: 2000
  stop: [END, STOP]
  greeting: hello ${USER_NAME:-there}
";

    fn example() -> ChainConfig {
        ChainConfig::from_yaml(EXAMPLE, Path::new("chains/summarize.yaml")).unwrap()
    }

    /// Asserts that neither the error's message nor its `Debug` carries `canary`.
    fn assert_hidden(err: &ConfigError, canary: &str) {
        assert!(!err.to_string().contains(canary), "message leaks: {err}");
        assert!(!format!("{err:?}").contains(canary), "debug leaks: {err:?}");
    }

    #[test]
    fn to_yaml_keeps_references_and_reloads_to_the_same_document() {
        let config = example();
        let yaml = config.to_yaml();
        assert!(yaml.contains("${OPENAI_API_KEY}"), "{yaml}");
        assert!(
            yaml.contains("${OPENAI_BASE_URL:-https://api.openai.com/v1}"),
            "{yaml}"
        );
        let again = ChainConfig::from_yaml(&yaml, Path::new("again.yaml")).unwrap();
        assert_eq!(again.as_value(), config.as_value());
        assert_eq!(again.to_yaml(), yaml);
    }

    #[test]
    fn sha256_is_stable_across_key_order_and_comments_and_follows_changes() {
        let a = ChainConfig::from_yaml("b: 1\na: {y: 2, x: 3}\n", Path::new("a")).unwrap();
        let b = ChainConfig::from_yaml("# comment\na:\n  x: 3\n  y: 2\nb: 1\n", Path::new("b"))
            .unwrap();
        assert_eq!(a.sha256(), b.sha256());
        assert_eq!(a.sha256().len(), 64);
        assert!(a.sha256().bytes().all(|c| c.is_ascii_hexdigit()));
        let mut c = a.clone();
        c.set("a.x=4").unwrap();
        assert_ne!(c.sha256(), a.sha256());
    }

    #[test]
    fn parse_error_names_file_line_and_column() {
        let err = ChainConfig::from_yaml(
            "llm:\n  model: gpt\n   bad: [\n",
            Path::new("chains/x.yaml"),
        )
        .unwrap_err();
        let ConfigError::Parse { line, column, .. } = &err else {
            panic!("expected Parse, got {err:?}");
        };
        assert!(line.is_some() && column.is_some(), "{err:?}");
        let message = err.to_string();
        assert!(
            message.starts_with("invalid yaml in config `chains/x.yaml` at line "),
            "{message}"
        );
        assert_eq!(
            message.matches("line").count(),
            1,
            "location said once: {message}"
        );
    }

    #[test]
    fn duplicate_keys_are_refused_rather_than_collapsed() {
        let err = ChainConfig::from_yaml("llm:\n  model: a\n  model: b\n", Path::new("d.yaml"))
            .unwrap_err();
        assert!(
            matches!(err, ConfigError::Parse { line: Some(2), .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("duplicate"), "{err}");
    }

    #[test]
    fn empty_document_is_an_empty_config_and_a_list_is_refused() {
        let empty = ChainConfig::from_yaml("", Path::new("e.yaml")).unwrap();
        assert_eq!(empty.as_value(), &json!({}));
        let err = ChainConfig::from_yaml("- a\n- b\n", Path::new("l.yaml")).unwrap_err();
        assert!(matches!(err, ConfigError::NotAMapping { .. }), "{err:?}");
    }

    #[test]
    fn malformed_reference_is_refused_at_load() {
        let err = ChainConfig::from_yaml("llm:\n  api_key: ${OPENAI_API_KEY\n", Path::new("c"))
            .unwrap_err();
        assert!(
            matches!(&err, ConfigError::BadReference { key_path } if key_path == "llm.api_key"),
            "{err:?}"
        );
    }

    #[test]
    fn set_parses_the_value_as_a_yaml_scalar() {
        let mut config = example();
        config.set("llm.temperature=0.5").unwrap();
        config.set("llm.max_tokens=").unwrap();
        config.set("llm.model=\"0.5\"").unwrap();
        config.set("chain.chunk_chars=true").unwrap();
        config.set("chain.stop.1=END2").unwrap();
        let root = config.as_value();
        assert_eq!(root["llm"]["temperature"], json!(0.5));
        assert_eq!(root["llm"]["max_tokens"], json!(null));
        assert_eq!(root["llm"]["model"], json!("0.5"));
        assert_eq!(root["chain"]["chunk_chars"], json!(true));
        assert_eq!(root["chain"]["stop"], json!(["END", "END2"]));
        assert!(config.to_yaml().contains("temperature: 0.5"));
    }

    #[test]
    fn set_refuses_an_unknown_key_and_lists_the_keys_there() {
        let mut config = example();
        let err = config.set("llm.modle=gpt-4o").unwrap_err();
        // A known LLM setting the file leaves to its default may be set all the same.
        let mut with_limit =
            ChainConfig::from_yaml("llm:\n  model: m\nchain: {}\n", Path::new("c.yaml")).unwrap();
        with_limit.set("llm.concurrency=64").unwrap();
        assert_eq!(with_limit.as_value()["llm"]["concurrency"], 64);
        assert!(with_limit.set("chain.concurrency=64").is_err());
        let ConfigError::UnknownKey { path, known } = &err else {
            panic!("expected UnknownKey, got {err:?}");
        };
        assert_eq!(path, "llm.modle");
        assert!(known.contains(&"model".to_owned()), "{known:?}");
        assert!(
            err.to_string()
                .contains("known keys here: api_key, base_url"),
            "{err}"
        );
        assert!(config.set("nothere.x=1").is_err());
        assert!(config.set("chain.stop.7=x").is_err());
    }

    #[test]
    fn set_refuses_secrets_without_echoing_them_and_leaves_the_config_unchanged() {
        let mut config = example();
        let before = config.sha256();
        for (assignment, canary) in [
            ("llm.api_key=canary-set-0001", "canary-set-0001"),
            (
                "llm.api_key=${OPENAI_API_KEY:-canary-set-0002}",
                "canary-set-0002",
            ),
            ("llm.model=sk-canarySet0003abcdefghij", "canarySet0003"),
        ] {
            let err = config.set(assignment).unwrap_err();
            assert!(matches!(err, ConfigError::LiteralSecret { .. }), "{err:?}");
            assert_hidden(&err, canary);
        }
        assert_eq!(config.sha256(), before);
        config.set("llm.api_key=${OTHER_KEY}").unwrap();
    }

    #[test]
    fn malformed_assignments_never_echo_the_value() {
        let mut config = example();
        for (assignment, canary) in [
            ("canary-noeq-0001", "canary-noeq-0001"),
            ("llm.model={a: canary-map-0002}", "canary-map-0002"),
            ("llm.model=[canary-seq-0003", "canary-seq-0003"),
            ("llm=canary-section-0004", "canary-section-0004"),
            ("llm..model=canary-empty-0005", "canary-empty-0005"),
        ] {
            let err = config.set(assignment).unwrap_err();
            assert!(
                matches!(err, ConfigError::BadAssignment { .. }),
                "{assignment}: {err:?}"
            );
            assert_hidden(&err, canary);
        }
    }

    #[test]
    fn flatten_joins_keys_and_keeps_references_as_written() {
        let flat: HashMap<_, _> = example().flatten("/").into_iter().collect();
        assert_eq!(flat["llm/model"], "gpt-4o-mini");
        assert_eq!(flat["llm/temperature"], "0.2");
        assert_eq!(flat["llm/api_key"], "${OPENAI_API_KEY}");
        assert_eq!(
            flat["llm/base_url"],
            "${OPENAI_BASE_URL:-https://api.openai.com/v1}"
        );
        assert_eq!(flat["chain/stop"], r#"["END","STOP"]"#);
        assert_eq!(flat["prompts/summary"], "summarize.hbs");
        let dotted = example().flatten(".");
        assert!(dotted.iter().any(|(k, _)| k == "chain.chunk_chars"));
        assert_eq!(example().flatten("/"), example().flatten("/"));
    }

    #[test]
    fn references_lists_every_variable_once() {
        let names: Vec<_> = example().references().into_iter().collect();
        assert_eq!(names, ["OPENAI_API_KEY", "OPENAI_BASE_URL", "USER_NAME"]);
    }

    #[test]
    fn serializes_as_the_unresolved_document() {
        let config = example();
        assert_eq!(serde_json::to_value(&config).unwrap(), *config.as_value());
    }

    #[test]
    fn load_reads_the_given_file_then_applies_assignments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("custom.yaml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let config = ChainConfig::load("summarize", Some(&path), &["llm.model=gpt-4o"]).unwrap();
        assert_eq!(config.as_value()["llm"]["model"], json!("gpt-4o"));
        assert_eq!(config.origin(), path);
        let missing = dir.path().join("missing.yaml");
        let err = ChainConfig::load("x", Some(&missing), &[] as &[&str]).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.yaml"));
    }
}
