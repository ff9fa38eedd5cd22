//! [`ConfigError`]: everything that can be wrong with a chain config, worded so that no
//! message ever carries a configured value — only file names, key paths and variable names.

use std::path::PathBuf;

/// Why a chain config could not be loaded, changed, resolved or read.
///
/// No variant holds a configured value: a message names the file, the key path or the
/// environment variable, so an error can be logged or shown without leaking a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("failed to read config `{}`", path.display())]
    Read {
        /// The file asked for.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid YAML.
    #[error("invalid yaml in config `{}`{}: {message}", path.display(), at(*line, *column))]
    Parse {
        /// The file (or the name the text was given).
        path: PathBuf,
        /// 1-based line of the error, when the parser knows it.
        line: Option<usize>,
        /// 1-based column of the error, when the parser knows it.
        column: Option<usize>,
        /// The parser's message, with anything shaped like a secret masked.
        message: String,
    },
    /// The top level of the document is not a mapping.
    #[error("config `{}` must be a yaml mapping of keys at the top level", path.display())]
    NotAMapping {
        /// The file.
        path: PathBuf,
    },
    /// A value is, or contains, a literal secret.
    #[error(
        "config key `{key_path}` holds a literal secret ({reason}); reference an environment \
         variable instead, as in `api_key: ${{OPENAI_API_KEY}}`"
    )]
    LiteralSecret {
        /// Where the secret is.
        key_path: String,
        /// Which rule it broke; never the value.
        reason: &'static str,
    },
    /// A `${` that does not start a well-formed reference.
    #[error(
        "config key `{key_path}` has a malformed reference: write `${{NAME}}` or \
         `${{NAME:-default}}` (NAME is letters, digits and `_`), or `$${{` for a literal `${{`"
    )]
    BadReference {
        /// Where the reference is.
        key_path: String,
    },
    /// A referenced environment variable is not set and the reference has no default.
    #[error(
        "environment variable `{name}` is not set (config key `{key_path}` references it \
         without a default)"
    )]
    MissingEnv {
        /// The variable.
        name: String,
        /// The key that references it.
        key_path: String,
    },
    /// A `--set` names a key the config does not have.
    #[error("unknown config key `{path}`{}", known_keys(known))]
    UnknownKey {
        /// The key path asked for.
        path: String,
        /// The keys that do exist where the path stopped matching.
        known: Vec<String>,
    },
    /// A `--set` assignment is malformed or not allowed. Holds the key only, never the value.
    #[error("invalid --set{}: {reason}", key.as_ref().map(|k| format!(" for `{k}`")).unwrap_or_default())]
    BadAssignment {
        /// The key path, when the assignment had one.
        key: Option<String>,
        /// What is wrong.
        reason: &'static str,
    },
    /// A section or key does not have the shape its reader expects.
    #[error("config key `{key}`: {message}")]
    Section {
        /// The full key path of the offending value.
        key: String,
        /// What is wrong, without the value.
        message: String,
    },
    /// The config could not be written back as YAML.
    #[error("failed to write config as yaml: {message}")]
    Serialize {
        /// The serializer's message.
        message: String,
    },
}

/// ` at line L, column C` when the location is known.
fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    }
}

/// ` (known keys here: a, b, c)` when there are any.
fn known_keys(known: &[String]) -> String {
    if known.is_empty() {
        String::new()
    } else {
        format!(" (known keys here: {})", known.join(", "))
    }
}
