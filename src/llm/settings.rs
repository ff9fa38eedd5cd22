//! [`LlmSettings`]: everything one LLM client is made from — model, sampling defaults,
//! endpoint, key, retries, concurrency and timeout — and [`ApiKey`], the key newtype whose
//! `Debug` never shows it.
//!
//! This is the one settings type: [`OpenAiClient::new`](super::OpenAiClient::new) takes it,
//! and the config module builds it (`LlmSettings::from_config`, which ranks command-line
//! flags, environment variables, the config file and defaults). Does not own that
//! resolution: this layer knows nothing of configs or the environment.

use std::{fmt, time::Duration};

use secrecy::{ExposeSecret, SecretString};

use super::{StructuredOutput, ToolChoice};

/// Retries after the first attempt, unless configured.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// Requests in flight per client, unless configured.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Per-request timeout, unless configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// An API key. Its `Debug` prints `ApiKey(***)`; [`expose`](Self::expose) is the one way to
/// the text.
///
/// # Examples
///
/// ```
/// # use chainlog::llm::ApiKey;
/// let key = ApiKey::new("sk-canary");
/// assert_eq!(format!("{key:?}"), "ApiKey(***)");
/// assert_eq!(key.expose(), "sk-canary");
/// ```
#[derive(Clone)]
pub struct ApiKey(SecretString);

impl ApiKey {
    /// Wraps a key, and registers it with the scrubber ([`crate::secret::register`]) so a
    /// provider that echoes it back cannot make it show.
    pub fn new(key: impl Into<String>) -> Self {
        Self::from(SecretString::from(key.into()))
    }

    /// The key's text, for the one place that sends it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The key as a [`SecretString`], for clients that take one.
    pub fn as_secret(&self) -> &SecretString {
        &self.0
    }
}

impl From<SecretString> for ApiKey {
    fn from(secret: SecretString) -> Self {
        crate::secret::register(secret.expose_secret());
        Self(secret)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// The settings of one LLM client. Its `Debug` shows the key as `ApiKey(***)`.
///
/// Build it with [`new`](Self::new) and struct update syntax, or from a chain's config with
/// `LlmSettings::from_config` (in the config module).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use chainlog::llm::{ApiKey, LlmSettings};
///
/// let settings = LlmSettings {
///     api_key: Some(ApiKey::new("sk-canary")),
///     timeout: Duration::from_secs(5),
///     ..LlmSettings::new("gpt-4o-mini", "http://127.0.0.1:8089/v1")
/// };
/// assert_eq!((settings.max_retries, settings.concurrency), (3, 8));
/// assert!(!format!("{settings:?}").contains("sk-canary"));
/// ```
#[derive(Clone)]
pub struct LlmSettings {
    /// The model name sent with every request.
    pub model: String,
    /// Default sampling temperature (a request's own wins); the provider's default when
    /// `None`.
    pub temperature: Option<f32>,
    /// Default most tokens to generate (a request's own wins), sent in the field
    /// [`max_tokens_field`](Self::max_tokens_field) names; the provider's default when `None`.
    pub max_tokens: Option<u32>,
    /// Which request field carries the token limit.
    pub max_tokens_field: MaxTokensField,
    /// The tool choice sent with requests that offer tools and set none themselves; the
    /// provider's default (`auto` on OpenAI) when `None`.
    pub tool_choice: Option<ToolChoice>,
    /// How [`chat_json`](super::chat_json) asks for structured output.
    pub structured_output: StructuredOutput,
    /// Whether a reply cut off by the token limit (`finish_reason: length`) is returned as it
    /// is instead of failing with [`LlmError::Incomplete`](super::LlmError::Incomplete).
    pub accept_truncated: bool,
    /// The OpenAI-compatible base URL, `/v1` included: `https://api.openai.com/v1`.
    pub base_url: String,
    /// The bearer key; `None` (or an empty key) sends no `Authorization` header, for local
    /// servers that need none.
    pub api_key: Option<ApiKey>,
    /// Retries after the first attempt (429, 5xx, connection errors, timeouts).
    pub max_retries: u32,
    /// Calls in flight at once through this client and its clones (0 counts as 1; the config
    /// refuses it).
    pub concurrency: usize,
    /// How long one HTTP attempt may take, and the longest pause between two chunks of a
    /// stream; zero means no timeout (the config refuses it).
    pub timeout: Duration,
}

impl LlmSettings {
    /// Settings for `model` at `base_url`: no key, no temperature or token defaults,
    /// [`DEFAULT_MAX_RETRIES`] retries, [`DEFAULT_CONCURRENCY`] calls at once and a
    /// [`DEFAULT_TIMEOUT`] timeout.
    pub fn new(model: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            temperature: None,
            max_tokens: None,
            max_tokens_field: MaxTokensField::Auto,
            tool_choice: None,
            structured_output: StructuredOutput::JsonSchema,
            accept_truncated: false,
            base_url: base_url.into(),
            api_key: None,
            max_retries: DEFAULT_MAX_RETRIES,
            concurrency: DEFAULT_CONCURRENCY,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// The request field that carries the token limit (`llm.max_tokens_field`).
///
/// OpenAI deprecated `max_tokens` for `max_completion_tokens`, and its reasoning models
/// (o1, o3, gpt-5) refuse `max_tokens` with a 400. Most OpenAI-compatible servers read only
/// `max_tokens`: llama.cpp's server ignores `max_completion_tokens` (generation is then
/// unbounded), older vLLM and Ollama versions do too, and some servers refuse unknown fields.
/// No one field works everywhere, and sending both is refused by OpenAI's reasoning models, so
/// the default, [`Auto`](Self::Auto), picks by host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    /// `max_completion_tokens` for OpenAI's own API (`api.openai.com`) and Azure OpenAI
    /// (`*.openai.azure.com`), `max_tokens` for every other server.
    #[default]
    Auto,
    /// Always `max_tokens`.
    MaxTokens,
    /// Always `max_completion_tokens`.
    MaxCompletionTokens,
    /// Both fields, with the same value (for proxies that pass either on).
    Both,
}

impl MaxTokensField {
    /// The allowed config values, for error messages.
    pub const ALLOWED: &'static str = "auto, max_tokens, max_completion_tokens, both";

    /// Whether `(max_tokens, max_completion_tokens)` are sent to a server at `base_url`.
    pub fn fields(self, base_url: &str) -> (bool, bool) {
        match self {
            Self::MaxTokens => (true, false),
            Self::MaxCompletionTokens => (false, true),
            Self::Both => (true, true),
            Self::Auto => {
                let host = reqwest::Url::parse(base_url)
                    .ok()
                    .and_then(|url| url.host_str().map(str::to_ascii_lowercase))
                    .unwrap_or_default();
                let openai = host == "api.openai.com" || host.ends_with(".openai.azure.com");
                (!openai, openai)
            }
        }
    }
}

// Written by hand, not derived, so the key stays hidden even if `ApiKey`'s own `Debug` ever
// changed: the field shows only whether there is a key.
impl fmt::Debug for LlmSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmSettings")
            .field("model", &self.model)
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .field("max_tokens_field", &self.max_tokens_field)
            .field("tool_choice", &self.tool_choice)
            .field("structured_output", &self.structured_output)
            .field("accept_truncated", &self.accept_truncated)
            // A base URL from the environment may carry a password (`https://u:pw@host`).
            .field("base_url", &crate::secret::mask_credentials(&self.base_url))
            .field(
                "api_key",
                &self.api_key.as_ref().map(|_| format_args!("ApiKey(***)")),
            )
            .field("max_retries", &self.max_retries)
            .field("concurrency", &self.concurrency)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", ApiKey::new("canary-apikey-0001")),
            "ApiKey(***)"
        );
        assert_eq!(format!("{:?}", Some(ApiKey::new("x"))), "Some(ApiKey(***))");
    }

    #[test]
    fn settings_debug_never_shows_the_key() {
        let canary = "canary-llm-settings-0001";
        let settings = LlmSettings {
            api_key: Some(ApiKey::new(canary)),
            ..LlmSettings::new("m", "http://localhost/v1")
        };
        for shown in [format!("{settings:?}"), format!("{settings:#?}")] {
            assert!(!shown.contains(canary), "{shown}");
            assert!(shown.contains("ApiKey(***)"), "{shown}");
            assert!(shown.contains("http://localhost/v1"), "{shown}");
        }
        let keyless = format!("{:?}", LlmSettings::new("m", "http://localhost/v1"));
        assert!(keyless.contains("api_key: None"), "{keyless}");
    }

    #[test]
    fn new_takes_the_defaults() {
        let settings = LlmSettings::new("gpt-4o-mini", "http://localhost/v1");
        assert_eq!(settings.model, "gpt-4o-mini");
        assert_eq!(settings.base_url, "http://localhost/v1");
        assert!(settings.api_key.is_none());
        assert_eq!(
            (
                settings.temperature,
                settings.max_tokens,
                settings.max_retries,
                settings.concurrency,
                settings.timeout
            ),
            (
                None,
                None,
                DEFAULT_MAX_RETRIES,
                DEFAULT_CONCURRENCY,
                DEFAULT_TIMEOUT
            )
        );
    }
}
