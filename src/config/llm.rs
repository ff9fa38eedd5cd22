//! The one place the settings of an LLM client are resolved, and their precedence decided:
//! command-line flag > environment variable > config file > default
//! ([`LlmSettings::from_config`]).
//!
//! Also owns [`LlmOverrides`], what the command line may override. Does not own the settings
//! type itself ([`LlmSettings`] and [`ApiKey`] live in `llm`, the layer that uses them) or the
//! client.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, ResolvedConfig};
use crate::llm::{
    ApiKey, DEFAULT_CONCURRENCY, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, LlmSettings, MaxTokensField,
    StructuredOutput, ToolChoice,
};

/// The base URL used when neither flag, environment nor config gives one.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The environment variable that overrides a config's `base_url`.
pub const BASE_URL_ENV: &str = "OPENAI_BASE_URL";
/// The environment variable that overrides a config's `api_key`.
pub const API_KEY_ENV: &str = "OPENAI_API_KEY";

/// What the command line overrides (`--base-url`, `--api-key`, `--model`); the highest
/// precedence. Empty strings count as not given.
#[derive(Debug, Clone, Default)]
pub struct LlmOverrides {
    /// Overrides the base URL.
    pub base_url: Option<String>,
    /// Overrides the API key.
    pub api_key: Option<ApiKey>,
    /// Overrides the model.
    pub model: Option<String>,
}

/// The keys of an LLM section ([`LlmSection`]); `--set` may give one the file leaves out.
pub(crate) const LLM_KEYS: &[&str] = &[
    "model",
    "temperature",
    "max_tokens",
    "max_tokens_field",
    "tool_choice",
    "structured_output",
    "accept_truncated",
    "base_url",
    "api_key",
    "max_retries",
    "concurrency",
    "timeout_secs",
];

/// Whether a key path (split at dots) names an LLM section: `llm` or `llms.<name>`.
pub(crate) fn is_llm_section(path: &[&str]) -> bool {
    matches!(path, ["llm"] | ["llms", _])
}

/// An LLM section as written in the config, every key optional.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LlmSection {
    model: Option<String>,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    max_tokens_field: Option<String>,
    tool_choice: Option<String>,
    structured_output: Option<String>,
    accept_truncated: Option<bool>,
    base_url: Option<String>,
    api_key: Option<String>,
    max_retries: Option<u32>,
    concurrency: Option<usize>,
    timeout_secs: Option<f64>,
}

impl LlmSettings {
    /// Builds the settings of the client configured at `section` (`"llm"`, or a named one
    /// such as `"llms.judge"`), each value taken from the first of: `overrides`, the
    /// environment (`OPENAI_BASE_URL`, `OPENAI_API_KEY`, for every section), the config,
    /// the default. An empty value anywhere counts as not given. A missing section is an
    /// empty one.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Section`] naming the key for an unknown key in the section, a value of
    /// the wrong type, no model anywhere, a base URL that is not `http(s)://`, a concurrency
    /// of 0 or a timeout that is not a positive number of seconds.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::path::Path;
    /// use chainlog::{config::{ChainConfig, LlmOverrides}, llm::LlmSettings};
    ///
    /// let env = |name: &str| (name == "OPENAI_API_KEY").then(|| "sk-test".to_owned());
    /// let config = ChainConfig::from_yaml("llm:\n  model: gpt-4o-mini\n", Path::new("c.yaml"))?;
    /// let settings = LlmSettings::from_config(&config.resolve(&env)?, "llm", &env, &LlmOverrides::default())?;
    /// assert_eq!(settings.base_url, "https://api.openai.com/v1");
    /// assert_eq!(settings.api_key.map(|k| k.expose().to_owned()).as_deref(), Some("sk-test"));
    /// # Ok::<(), chainlog::config::ConfigError>(())
    /// ```
    pub fn from_config(
        resolved: &ResolvedConfig,
        section: &str,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &LlmOverrides,
    ) -> Result<Self, ConfigError> {
        let file = resolved
            .section::<Option<LlmSection>>(section)?
            .unwrap_or_default();
        let invalid = |field: &str, message: &str| ConfigError::Section {
            key: format!("{section}.{field}"),
            message: message.to_owned(),
        };
        let given = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());

        let model = given(&overrides.model)
            .or_else(|| given(&file.model))
            .ok_or_else(|| invalid("model", "missing: set it in the config or with --model"))?;

        let (base_url, from) = [
            (given(&overrides.base_url), "the command line"),
            (given(&env(BASE_URL_ENV)), BASE_URL_ENV),
            (given(&file.base_url), "the config"),
        ]
        .into_iter()
        .find_map(|(value, from)| value.map(|v| (v, from)))
        .unwrap_or_else(|| (DEFAULT_BASE_URL.to_owned(), "the default"));
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(invalid(
                "base_url",
                &format!("the base url from {from} must start with http:// or https://"),
            ));
        }

        let api_key = overrides
            .api_key
            .clone()
            .filter(|key| !key.expose().is_empty())
            .or_else(|| given(&env(API_KEY_ENV)).map(ApiKey::new))
            .or_else(|| file.api_key.filter(|k| !k.is_empty()).map(ApiKey::new));

        let concurrency = file.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if concurrency == 0 {
            return Err(invalid("concurrency", "must be at least 1"));
        }
        let timeout = match file.timeout_secs {
            None => DEFAULT_TIMEOUT,
            Some(secs) => Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|t| !t.is_zero())
                .ok_or_else(|| invalid("timeout_secs", "must be a positive number of seconds"))?,
        };

        let max_tokens_field = choice(
            file.max_tokens_field.as_deref(),
            MaxTokensField::ALLOWED,
            |value| serde_json::from_value(value.into()).ok(),
        )
        .map_err(|message| invalid("max_tokens_field", &message))?
        .unwrap_or_default();
        let structured_output = choice(
            file.structured_output.as_deref(),
            StructuredOutput::ALLOWED,
            |value| serde_json::from_value(value.into()).ok(),
        )
        .map_err(|message| invalid("structured_output", &message))?
        .unwrap_or_default();
        let tool_choice = choice(
            file.tool_choice.as_deref(),
            "auto, none, required",
            |value| match value {
                "auto" => Some(ToolChoice::Auto),
                "none" => Some(ToolChoice::None),
                "required" => Some(ToolChoice::Required),
                _ => None,
            },
        )
        .map_err(|message| invalid("tool_choice", &message))?;

        Ok(Self {
            model,
            temperature: file.temperature,
            max_tokens: file.max_tokens,
            max_tokens_field,
            tool_choice,
            structured_output,
            accept_truncated: file.accept_truncated.unwrap_or(false),
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            max_retries: file.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
            concurrency,
            timeout,
        })
    }
}

/// `value` read by `parse`, or a message naming it and the `allowed` values.
fn choice<T>(
    value: Option<&str>,
    allowed: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, String> {
    value
        .map(|value| parse(value).ok_or_else(|| format!("`{value}` is not one of: {allowed}")))
        .transpose()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// `LLM_KEYS` (what `--set` may add to a section) is exactly the section's keys: a key
    /// added to [`LlmSection`] and forgotten there could not be set from the command line.
    #[test]
    fn settable_keys_are_exactly_the_sections_keys() {
        let err = serde_json::from_value::<LlmSection>(serde_json::json!({"zzz": 1}))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let listed: Vec<&str> = err
            .split_once("expected one of ")
            .map(|(_, list)| list)
            .unwrap_or_default()
            .split(", ")
            .map(|key| key.trim_matches('`'))
            .collect();
        let mut listed = listed;
        let mut keys = LLM_KEYS.to_vec();
        listed.sort_unstable();
        keys.sort_unstable();
        assert_eq!(listed, keys, "{err}");
    }

    /// Every key can be given with `--set` when the file leaves it out.
    #[test]
    fn every_llm_key_can_be_set_when_the_file_leaves_it_out() {
        for set in [
            "llm.structured_output=json_object",
            "llm.tool_choice=required",
            "llm.accept_truncated=true",
            "llm.max_tokens_field=both",
        ] {
            let mut config =
                ChainConfig::from_yaml("llm:\n  model: m\n", std::path::Path::new("c.yaml"))
                    .unwrap();
            config.set(set).unwrap_or_else(|err| panic!("{set}: {err}"));
        }
    }
    use crate::config::ChainConfig;

    type Env = Vec<(&'static str, &'static str)>;

    fn lookup(env: &Env) -> impl Fn(&str) -> Option<String> + '_ {
        |name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn settings(
        yaml: &str,
        env: &Env,
        overrides: &LlmOverrides,
    ) -> Result<LlmSettings, ConfigError> {
        let env = lookup(env);
        let resolved = ChainConfig::from_yaml(yaml, Path::new("c.yaml"))?.resolve(&env)?;
        LlmSettings::from_config(&resolved, "llm", &env, overrides)
    }

    #[test]
    fn precedence_is_flag_then_env_then_file_then_default() {
        // (flag, env, file) for base_url, api_key and model; `None` = not given there.
        type Layers = (
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
        );
        let table: [(Layers, &str, Option<&str>, &str); 5] = [
            (
                (Some("flag"), Some("env"), Some("file")),
                "http://flag",
                Some("flag-key"),
                "flag-model",
            ),
            (
                (None, Some("env"), Some("file")),
                "http://env",
                Some("env-key"),
                "file-model",
            ),
            (
                (None, None, Some("file")),
                "http://file",
                Some("file-key"),
                "file-model",
            ),
            (
                (None, Some(""), Some("file")),
                "http://file",
                Some("file-key"),
                "file-model",
            ),
            ((None, None, None), DEFAULT_BASE_URL, None, "flag-model"),
        ];
        for ((flag, env, file), base_url, key, model) in table {
            let mut yaml = String::from("llm:\n");
            if let Some(file) = file {
                yaml.push_str(&format!(
                    "  base_url: http://{file}/\n  api_key: ${{FILE_KEY}}\n  model: {file}-model\n"
                ));
            }
            let mut vars: Env = vec![("FILE_KEY", "file-key")];
            if let Some(env) = env {
                let (url, key) = if env.is_empty() {
                    ("", "")
                } else {
                    ("http://env", "env-key")
                };
                vars.extend([(BASE_URL_ENV, url), (API_KEY_ENV, key)]);
            }
            let overrides = LlmOverrides {
                base_url: flag.map(|f| format!("http://{f}")),
                api_key: flag.map(|f| ApiKey::new(format!("{f}-key"))),
                model: (flag.is_some() || file.is_none()).then(|| "flag-model".to_owned()),
            };
            let got = settings(&yaml, &vars, &overrides).unwrap();
            let layers = (flag, env, file);
            assert_eq!(got.base_url, base_url, "{layers:?}");
            assert_eq!(got.api_key.as_ref().map(ApiKey::expose), key, "{layers:?}");
            assert_eq!(got.model, model, "{layers:?}");
        }
    }

    #[test]
    fn unset_values_take_their_defaults_and_set_ones_are_read() {
        let none: Env = Vec::new();
        let got = settings("llm: {model: m}\n", &none, &LlmOverrides::default()).unwrap();
        assert_eq!(
            (
                got.max_retries,
                got.concurrency,
                got.timeout,
                got.temperature,
                got.max_tokens
            ),
            (
                DEFAULT_MAX_RETRIES,
                DEFAULT_CONCURRENCY,
                DEFAULT_TIMEOUT,
                None,
                None
            )
        );
        let yaml = "llm:\n  model: m\n  temperature: 0.2\n  max_tokens: 256\n  max_retries: 0\n  concurrency: 2\n  timeout_secs: 1.5\n";
        let got = settings(yaml, &none, &LlmOverrides::default()).unwrap();
        assert_eq!(got.temperature, Some(0.2));
        assert_eq!(got.max_tokens, Some(256));
        assert_eq!((got.max_retries, got.concurrency), (0, 2));
        assert_eq!(got.timeout, Duration::from_millis(1500));
    }

    #[test]
    fn request_shape_keys_are_read() {
        let none: Env = Vec::new();
        let yaml = "llm:\n  model: m\n  max_tokens_field: both\n  tool_choice: required\n  structured_output: json_object\n  accept_truncated: true\n";
        let got = settings(yaml, &none, &LlmOverrides::default()).unwrap();
        assert_eq!(got.max_tokens_field, MaxTokensField::Both);
        assert_eq!(got.tool_choice, Some(ToolChoice::Required));
        assert_eq!(got.structured_output, StructuredOutput::JsonObject);
        assert!(got.accept_truncated);
        let defaults = settings("llm: {model: m}\n", &none, &LlmOverrides::default()).unwrap();
        assert_eq!(defaults.max_tokens_field, MaxTokensField::Auto);
        assert_eq!(defaults.structured_output, StructuredOutput::JsonSchema);
        assert!(!defaults.accept_truncated && defaults.tool_choice.is_none());
    }

    #[test]
    fn named_sections_are_read_from_their_path() {
        let yaml =
            "llm: {model: a}\nllms:\n  judge:\n    model: judge-model\n    timeout_secs: 5\n";
        let none: Env = Vec::new();
        let env = lookup(&none);
        let resolved = ChainConfig::from_yaml(yaml, Path::new("c"))
            .unwrap()
            .resolve(&env)
            .unwrap();
        let judge =
            LlmSettings::from_config(&resolved, "llms.judge", &env, &LlmOverrides::default())
                .unwrap();
        assert_eq!(
            (judge.model.as_str(), judge.timeout),
            ("judge-model", Duration::from_secs(5))
        );
    }

    #[test]
    fn bad_values_are_refused_naming_their_key() {
        let none: Env = Vec::new();
        for (yaml, key) in [
            ("llm:\n  model: m\n  modle: x\n", "llm.modle"),
            ("llm:\n  model: m\n  max_tokens: lots\n", "llm.max_tokens"),
            ("llm:\n  model: m\n  concurrency: 0\n", "llm.concurrency"),
            (
                "llm:\n  model: m\n  structured_output: xml\n",
                "llm.structured_output",
            ),
            (
                "llm:\n  model: m\n  max_tokens_field: max\n",
                "llm.max_tokens_field",
            ),
            (
                "llm:\n  model: m\n  tool_choice: always\n",
                "llm.tool_choice",
            ),
            (
                "llm:\n  model: m\n  accept_truncated: maybe\n",
                "llm.accept_truncated",
            ),
            ("llm:\n  model: m\n  timeout_secs: 0\n", "llm.timeout_secs"),
            ("llm:\n  model: m\n  timeout_secs: -1\n", "llm.timeout_secs"),
            ("llm:\n  model: m\n  base_url: ftp://x\n", "llm.base_url"),
            ("llm:\n  temperature: 0.1\n", "llm.model"),
        ] {
            let err = settings(yaml, &none, &LlmOverrides::default()).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Section { key: k, .. } if k == key),
                "{yaml}: {err:?}"
            );
        }
    }

    #[test]
    fn debug_never_shows_the_key_from_any_layer() {
        let yaml = "llm:\n  model: m\n  api_key: ${FILE_KEY}\n";
        let from_file: Env = vec![("FILE_KEY", "canary-llm-file-0001")];
        let from_env: Env = vec![("FILE_KEY", "x"), (API_KEY_ENV, "canary-llm-env-0002")];
        let flag = LlmOverrides {
            api_key: Some(ApiKey::new("canary-llm-flag-0003")),
            ..LlmOverrides::default()
        };
        for (env, overrides, canary) in [
            (&from_file, &LlmOverrides::default(), "canary-llm-file-0001"),
            (&from_env, &LlmOverrides::default(), "canary-llm-env-0002"),
            (&from_file, &flag, "canary-llm-flag-0003"),
        ] {
            let got = settings(yaml, env, overrides).unwrap();
            assert_eq!(got.api_key.as_ref().map(ApiKey::expose), Some(canary));
            let shown = format!("{got:?}");
            assert!(
                !shown.contains(canary) && shown.contains("ApiKey(***)"),
                "{shown}"
            );
        }
        assert!(!format!("{flag:?}").contains("canary-llm-flag-0003"));
    }

    #[test]
    fn base_url_loses_its_trailing_slash() {
        let got = settings(
            "llm: {model: m, base_url: 'http://localhost:8080/v1/'}\n",
            &Vec::new(),
            &LlmOverrides::default(),
        )
        .unwrap();
        assert_eq!(got.base_url, "http://localhost:8080/v1");
    }
}
