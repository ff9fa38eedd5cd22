//! MLflow's own limits on names and values (`mlflow/utils/validation.py` in 3.17.2), shared by
//! both stores and by `log`, which checks every name and alias before the run exists so a
//! refused value never leaves a partial run. Every refusal is a [`StoreError::Invalid`] with code
//! `INVALID_PARAMETER_VALUE` naming the key or name.
//!
//! Over-long param and tag values are handled as MLflow handles them (`_validate_length_limit`
//! with `truncate=True`): cut to the limit with a warning, or refused when
//! `MLFLOW_TRUNCATE_LONG_VALUES` is `false` — the same on the SQLite and the REST store.

use crate::store::StoreError;

/// MLflow's error code for a value it refuses.
const INVALID_PARAMETER_VALUE: &str = "INVALID_PARAMETER_VALUE";

/// MLflow's switch between cutting over-long values (the default) and refusing them.
pub const TRUNCATE_LONG_VALUES_VAR: &str = "MLFLOW_TRUNCATE_LONG_VALUES";

/// MLflow refuses a value in `operation` (`INVALID_PARAMETER_VALUE`).
pub(crate) fn invalid(operation: &str, message: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        operation: operation.to_owned(),
        code: INVALID_PARAMETER_VALUE.to_owned(),
        message: message.into(),
    }
}

/// Longest param value MLflow accepts (`MAX_PARAM_VAL_LENGTH`), in characters.
pub(crate) const MAX_PARAM_VALUE: usize = 6000;
/// Longest run tag value (`MAX_TAG_VAL_LENGTH`), in characters.
pub(crate) const MAX_TAG_VALUE: usize = 8000;
/// Longest param or tag key (`MAX_ENTITY_KEY_LENGTH`), in characters.
pub(crate) const MAX_KEY: usize = 250;
/// Longest experiment name (`MAX_EXPERIMENT_NAME_LENGTH`).
const MAX_EXPERIMENT_NAME: usize = 500;
/// Longest registered model tag value, which bounds a prompt's text
/// (`MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH`).
pub(crate) const MAX_REGISTRY_TAG_VALUE: usize = 100_000;
/// Longest alias (`MAX_REGISTERED_MODEL_ALIAS_LENGTH`).
const MAX_ALIAS: usize = 255;

/// What a key names, for messages and limits.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyKind {
    /// A run param (value ≤ [`MAX_PARAM_VALUE`]).
    Param,
    /// A run tag (value ≤ [`MAX_TAG_VALUE`]).
    Tag,
}

impl KeyKind {
    fn noun(self) -> &'static str {
        match self {
            Self::Param => "param",
            Self::Tag => "tag",
        }
    }

    fn max_value(self) -> usize {
        match self {
            Self::Param => MAX_PARAM_VALUE,
            Self::Tag => MAX_TAG_VALUE,
        }
    }
}

/// Checks a run param or tag and returns the value to store: the key's characters
/// (`^[/\w.\- :]*$`), that it is a normalized relative path and its length; the value cut to
/// its limit with a warning (or refused, see [`TRUNCATE_LONG_VALUES_VAR`]).
pub(crate) fn key_value<'a>(
    operation: &str,
    kind: KeyKind,
    key: &str,
    value: &'a str,
) -> Result<&'a str, StoreError> {
    let noun = kind.noun();
    if !key
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '/' | '.' | '-' | ' ' | ':'))
    {
        return Err(invalid(
            operation,
            format!(
                "{noun} key `{key}` is invalid: names may only contain alphanumerics, \
                 underscores (_), dashes (-), periods (.), spaces ( ), colon(:) and slashes (/)"
            ),
        ));
    }
    if !is_normalized_relative_path(key) {
        return Err(invalid(
            operation,
            format!(
                "{noun} key `{key}` is invalid: it would resolve to a different path \
                 (empty, `.`/`..` parts, a leading or doubled `/`)"
            ),
        ));
    }
    let key_len = key.chars().count();
    if key_len > MAX_KEY {
        return Err(invalid(
            operation,
            format!("{noun} key `{key}` has {key_len} characters; the limit is {MAX_KEY}"),
        ));
    }
    fit_value(operation, kind, key, value)
}

/// `value` within its limit: as is, cut to the limit with a warning (MLflow's default), or —
/// when `MLFLOW_TRUNCATE_LONG_VALUES=false` — refused naming the key.
fn fit_value<'a>(
    operation: &str,
    kind: KeyKind,
    key: &str,
    value: &'a str,
) -> Result<&'a str, StoreError> {
    fit_value_or_refuse(truncation_disabled(), operation, kind, key, value)
}

fn fit_value_or_refuse<'a>(
    refuse: bool,
    operation: &str,
    kind: KeyKind,
    key: &str,
    value: &'a str,
) -> Result<&'a str, StoreError> {
    let max = kind.max_value();
    let Some((end, _)) = value.char_indices().nth(max) else {
        return Ok(value);
    };
    let noun = kind.noun();
    let value_len = value.chars().count();
    if refuse {
        return Err(invalid(
            operation,
            format!(
                "{noun} `{key}` has a value of {value_len} characters; the limit is {max} \
                 ({TRUNCATE_LONG_VALUES_VAR}=false)"
            ),
        ));
    }
    tracing::warn!(
        key,
        chars = value_len,
        limit = max,
        "{noun} value is truncated to {max} characters to meet MLflow's length limit \
         (set {TRUNCATE_LONG_VALUES_VAR}=false to refuse instead)"
    );
    Ok(&value[..end])
}

/// `MLFLOW_TRUNCATE_LONG_VALUES` set to a false value, as MLflow's boolean variables read.
fn truncation_disabled() -> bool {
    std::env::var(TRUNCATE_LONG_VALUES_VAR)
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "0"))
}

/// MLflow's `path_not_unique` negated: `posixpath.normpath(name) == name`, and not `.`, `..…`
/// or absolute.
fn is_normalized_relative_path(name: &str) -> bool {
    !name.starts_with('/') && name.split('/').all(|part| !matches!(part, "" | "." | ".."))
}

/// An experiment name: non-empty, at most 500 characters.
pub(crate) fn experiment_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() {
        return Err(invalid("experiments/create", "experiment name is empty"));
    }
    let len = name.chars().count();
    if len > MAX_EXPERIMENT_NAME {
        return Err(invalid(
            "experiments/create",
            format!("experiment name has {len} characters; the limit is {MAX_EXPERIMENT_NAME}"),
        ));
    }
    Ok(())
}

/// A logged model name: non-empty, none of `/ : . % " '`.
pub(crate) fn logged_model_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.contains(['/', ':', '.', '%', '"', '\'']) {
        return Err(invalid(
            "logged-models/create",
            format!(
                "logged model name `{name}` is invalid: it must be non-empty and cannot contain \
                 / : . % \" '"
            ),
        ));
    }
    Ok(())
}

/// A registered model name: not blank, no `/` or `:`, a normalized relative path.
pub(crate) fn registered_model_name(operation: &str, name: &str) -> Result<(), StoreError> {
    if name.trim().is_empty() || name.contains(['/', ':']) || !is_normalized_relative_path(name) {
        return Err(invalid(
            operation,
            format!(
                "registered model name `{name}` is invalid: it must be non-blank and cannot contain / or :"
            ),
        ));
    }
    Ok(())
}

/// A prompt name: `^[a-zA-Z0-9_.-]+$`.
pub(crate) fn prompt_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(invalid(
            "prompts/create",
            format!(
                "prompt name `{name}` is invalid: it may only contain alphanumerics, \
                 underscores (_), periods (.) and dashes (-)"
            ),
        ));
    }
    Ok(())
}

/// An alias to set: `^[\w\-]+$`, at most 255 characters, not `latest` (any case) and not a
/// version alias (`v1`, `V2`, …).
pub(crate) fn alias(alias: &str) -> Result<(), StoreError> {
    const OP: &str = "registered-models/alias";
    if alias.is_empty()
        || !alias
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-'))
    {
        return Err(invalid(
            OP,
            format!(
                "alias `{alias}` is invalid: names may only contain alphanumerics, \
                 underscores (_) and dashes (-)"
            ),
        ));
    }
    let len = alias.chars().count();
    if len > MAX_ALIAS {
        return Err(invalid(
            OP,
            format!("alias `{alias}` has {len} characters; the limit is {MAX_ALIAS}"),
        ));
    }
    if alias.eq_ignore_ascii_case("latest") {
        return Err(invalid(
            OP,
            "'latest' alias name (case insensitive) is reserved",
        ));
    }
    let mut chars = alias.chars();
    if matches!(chars.next(), Some('v' | 'V'))
        && alias.len() > 1
        && chars.all(|c| c.is_ascii_digit())
    {
        return Err(invalid(
            OP,
            format!("version alias name `{alias}` is reserved"),
        ));
    }
    Ok(())
}

/// Every name `log` will give the store — the experiment, the logged model, the registered
/// model and its alias — checked with MLflow's rules before anything is written, so a name the
/// store would refuse never leaves a run or a model behind.
///
/// # Errors
///
/// The first refused name, as the store would word it.
pub(crate) fn names_to_log(
    experiment: &str,
    logged_model: &str,
    registered_model: Option<&str>,
    alias_to_set: Option<&str>,
) -> Result<(), StoreError> {
    experiment_name(experiment)?;
    logged_model_name(logged_model)?;
    if let Some(name) = registered_model {
        registered_model_name("registered-models/create", name)?;
    }
    if let Some(to_set) = alias_to_set {
        alias(to_set)?;
    }
    Ok(())
}

/// `pairs` as they will be stored: every key checked, every value fitted to its limit
/// ([`key_value`]).
///
/// # Errors
///
/// The first key MLflow would refuse, or an over-long value when truncation is off.
pub(crate) fn fitted_pairs(
    operation: &str,
    kind: KeyKind,
    pairs: &[(String, String)],
) -> Result<Vec<(String, String)>, StoreError> {
    pairs
        .iter()
        .map(|(key, value)| {
            let value = key_value(operation, kind, key, value)?;
            Ok((key.clone(), value.to_owned()))
        })
        .collect()
}

/// A version number as MLflow stores it (a positive integer).
pub(crate) fn version(operation: &str, name: &str, version: &str) -> Result<i64, StoreError> {
    match version.parse::<i64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(invalid(
            operation,
            format!("version `{version}` of `{name}` is not a positive integer"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_value_over_6000_characters_is_cut_or_refused_naming_the_key() {
        let value = "é".repeat(MAX_PARAM_VALUE + 1);
        let err = fit_value_or_refuse(true, "runs/log-batch", KeyKind::Param, "llm/prompt", &value)
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`llm/prompt`"), "{text}");
        assert!(text.contains("6000"), "{text}");
        assert!(text.contains(TRUNCATE_LONG_VALUES_VAR), "{text}");
        let cut = fit_value_or_refuse(
            false,
            "runs/log-batch",
            KeyKind::Param,
            "llm/prompt",
            &value,
        )
        .unwrap();
        assert_eq!(cut.chars().count(), MAX_PARAM_VALUE);
        key_value(
            "runs/log-batch",
            KeyKind::Param,
            "k",
            &"é".repeat(MAX_PARAM_VALUE),
        )
        .unwrap();
    }

    #[test]
    fn tag_value_limit_is_8000_characters() {
        key_value(
            "runs/log-batch",
            KeyKind::Tag,
            "t",
            &"x".repeat(MAX_TAG_VALUE),
        )
        .unwrap();
        let long = "x".repeat(MAX_TAG_VALUE + 1);
        assert!(fit_value_or_refuse(true, "runs/log-batch", KeyKind::Tag, "t", &long).is_err());
    }

    #[test]
    fn key_over_250_characters_is_refused() {
        let key = "k".repeat(MAX_KEY + 1);
        let err = key_value("runs/log-batch", KeyKind::Tag, &key, "v").unwrap_err();
        assert!(err.to_string().contains("250"));
    }

    #[test]
    fn keys_follow_mlflow_characters_and_path_rules() {
        for good in ["llm/model", "mlflow.runName", "a b:c-d_e", "ünï"] {
            key_value("op", KeyKind::Param, good, "v").unwrap();
        }
        for bad in [
            "", "/abs", "a//b", "a/", "./a", "a/../b", "..", "a$b", "a\nb",
        ] {
            assert!(
                key_value("op", KeyKind::Param, bad, "v").is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn reserved_and_malformed_aliases_are_refused() {
        alias("champion").unwrap();
        alias("v1x").unwrap();
        for bad in ["", "latest", "LATEST", "v1", "V23", "a.b", "a b"] {
            assert!(self::alias(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_to_log_refuse_what_the_store_would() {
        names_to_log("demo", "summarize", Some("summarizer"), Some("champion")).unwrap();
        names_to_log("demo", "summarize", None, None).unwrap();
        for (registered, alias) in [
            (Some("team/summarizer"), None),
            (Some("a:b"), None),
            (Some("ok"), Some("latest")),
            (Some("ok"), Some("v1")),
            (Some("ok"), Some("has space")),
        ] {
            let err = names_to_log("demo", "summarize", registered, alias).unwrap_err();
            let text = err.to_string();
            let named = registered.filter(|r| text.contains(r)).is_some()
                || alias.is_some_and(|a| text.contains(a));
            assert!(named, "{text}");
        }
        assert!(names_to_log("", "summarize", None, None).is_err());
        assert!(names_to_log("demo", "my.chain", None, None).is_err());
    }

    #[test]
    fn names_follow_mlflow_rules() {
        logged_model_name("chain").unwrap();
        assert!(logged_model_name("my.chain").is_err());
        registered_model_name("op", "reg-model").unwrap();
        assert!(registered_model_name("op", "a/b").is_err());
        assert!(registered_model_name("op", " ").is_err());
        prompt_name("summarize.v2_x-y").unwrap();
        assert!(prompt_name("bad name").is_err());
        experiment_name("demo").unwrap();
        assert!(experiment_name("").is_err());
        assert_eq!(version("op", "m", "3").unwrap(), 3);
        assert!(version("op", "m", "0").is_err());
        assert!(version("op", "m", "x").is_err());
    }
}
