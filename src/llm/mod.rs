//! The LLM client layer: chainlog's own chat request and response types, the [`LlmClient`]
//! trait chains call, and its implementations.
//!
//! Owns the provider-neutral model of a chat call ([`ChatRequest`] → [`ChatResponse`], or a
//! [`ChatStream`] of [`StreamEvent`]s), tool definitions and calls ([`ToolSpec`], [`ToolCall`]),
//! structured output ([`chat_json`]) and the error a call ends with ([`LlmError`], which says
//! whether a retry makes sense). Provider wire types never leave the implementations.
//!
//! Implementations:
//!
//! - [`OpenAiClient`] (`openai`): OpenAI and any OpenAI-compatible server (the mock included),
//!   over async-openai, with retries (`retry`), a per-client concurrency limit, a per-attempt
//!   timeout, and a `llm.chat` tracing span per call carrying usage and latency.
//! - [`ScriptedClient`] (`scripted`): queued replies and recorded requests, for unit tests of
//!   chains.
//!
//! Also owns [`LlmSettings`] (`settings`), the one type for everything a client is made from,
//! and [`ApiKey`], whose `Debug` never shows the key.
//!
//! It does not own prompts (rendering happens before a request is built), settings resolution
//! (the config module turns a chain's YAML and the environment into [`LlmSettings`]) or chains.

mod json;
mod openai;
mod retry;
mod scripted;
mod settings;

use std::{pin::Pin, time::Duration};

use async_trait::async_trait;
use futures::Stream;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use json::{StructuredOutput, chat_json, json_schema_for};
pub use openai::OpenAiClient;
pub use scripted::ScriptedClient;
pub use settings::{
    ApiKey, DEFAULT_CONCURRENCY, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, LlmSettings, MaxTokensField,
};

/// A chat model behind some API. Chains hold an `Arc<dyn LlmClient>` chosen at run time.
#[async_trait]
pub trait LlmClient: Send + Sync + std::fmt::Debug {
    /// Sends one chat request and waits for the whole reply.
    ///
    /// # Errors
    ///
    /// [`LlmError`]; [`LlmError::is_retryable`] says whether trying again later makes sense.
    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError>;

    /// Sends one chat request and streams the reply: [`StreamEvent::Text`] deltas as they
    /// come, then one [`StreamEvent::Done`] with the assembled response.
    ///
    /// # Errors
    ///
    /// [`LlmError`] when the stream cannot be opened; failures after that arrive as stream
    /// items.
    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, LlmError>;

    /// The model this client asks for.
    fn model(&self) -> &str;

    /// Calls in flight through this client now, against its limit (`llm.concurrency`);
    /// `None` for clients without a limit (scripted ones).
    fn calls(&self) -> Option<CallLoad> {
        None
    }

    /// How [`chat_json`] asks this client for structured output; `json_schema` unless
    /// configured (`llm.structured_output`).
    fn structured_output(&self) -> StructuredOutput {
        StructuredOutput::JsonSchema
    }
}

/// Calls in flight against a limit: what a progress bar shows as `calls 8/8`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallLoad {
    /// Calls holding a slot now (waiting for a reply, or retrying).
    pub in_flight: usize,
    /// Slots there are (`llm.concurrency`).
    pub limit: usize,
}

impl std::ops::Add for CallLoad {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            in_flight: self.in_flight + other.in_flight,
            limit: self.limit + other.limit,
        }
    }
}

/// The items of a streamed reply.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, LlmError>> + Send>>;

/// One item of a [`ChatStream`].
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A piece of the reply's text, in order.
    Text(String),
    /// The end: the whole reply, as [`LlmClient::chat`] would have returned it.
    Done(ChatResponse),
}

/// A chat request. The model, and defaults for temperature and max tokens, come from the
/// client; a value set here wins.
///
/// # Examples
///
/// ```
/// use chainlog::llm::{ChatMessage, ChatRequest, ToolChoice, ToolSpec};
/// let request = ChatRequest::new(vec![
///     ChatMessage::system("You answer briefly."),
///     ChatMessage::user("Weather in Paris?"),
/// ])
/// .with_temperature(0.0)
/// .with_tools(vec![ToolSpec::new(
///     "get_weather",
///     "Current weather",
///     serde_json::json!({"type": "object"}),
/// )])
/// .with_tool_choice(ToolChoice::Auto);
/// assert_eq!(request.messages.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Sampling temperature; the client's default when `None`.
    pub temperature: Option<f32>,
    /// Most tokens to generate; the client's default when `None`.
    pub max_tokens: Option<u32>,
    /// Tools the model may call.
    pub tools: Vec<ToolSpec>,
    /// Whether and which tool must be called; the provider's default when `None`.
    pub tool_choice: Option<ToolChoice>,
    /// Structured output.
    pub response_format: Option<ResponseFormat>,
    /// Sequences where generation stops.
    pub stop: Vec<String>,
}

impl ChatRequest {
    /// A request with these messages and nothing else set.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        Self {
            messages,
            ..Self::default()
        }
    }

    /// Sets the temperature.
    pub fn with_temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Sets the most tokens to generate.
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// Offers these tools.
    pub fn with_tools(mut self, tools: Vec<ToolSpec>) -> Self {
        self.tools = tools;
        self
    }

    /// Sets the tool choice.
    pub fn with_tool_choice(mut self, tool_choice: ToolChoice) -> Self {
        self.tool_choice = Some(tool_choice);
        self
    }

    /// Asks for structured output.
    pub fn with_response_format(mut self, response_format: ResponseFormat) -> Self {
        self.response_format = Some(response_format);
        self
    }

    /// Sets the stop sequences.
    pub fn with_stop(mut self, stop: Vec<String>) -> Self {
        self.stop = stop;
        self
    }

    /// Appends a message (for tool loops: the assistant's reply, then tool results).
    pub fn push(&mut self, message: ChatMessage) {
        self.messages.push(message);
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatMessage {
    /// Instructions.
    System(String),
    /// What the user says.
    User(String),
    /// An earlier reply: text, tool calls, or both.
    Assistant {
        /// The reply's text.
        content: Option<String>,
        /// The tools it called.
        tool_calls: Vec<ToolCall>,
    },
    /// The result of a tool call.
    Tool {
        /// The [`ToolCall::id`] this answers.
        tool_call_id: String,
        /// The result, usually JSON text.
        content: String,
    },
}

impl ChatMessage {
    /// A system message.
    pub fn system(text: impl Into<String>) -> Self {
        Self::System(text.into())
    }

    /// A user message.
    pub fn user(text: impl Into<String>) -> Self {
        Self::User(text.into())
    }

    /// An assistant message with text only.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self::Assistant {
            content: Some(text.into()),
            tool_calls: Vec::new(),
        }
    }

    /// The result of the tool call `tool_call_id`.
    pub fn tool_result(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self::Tool {
            tool_call_id: tool_call_id.into(),
            content: content.into(),
        }
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// The function's name (`a-zA-Z0-9_-`, at most 64).
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// Its arguments as a JSON Schema object.
    pub parameters: Value,
}

impl ToolSpec {
    /// A tool with a hand-written parameter schema.
    pub fn new(name: impl Into<String>, description: impl Into<String>, parameters: Value) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            parameters,
        }
    }

    /// A tool whose arguments are `T`, its schema generated by schemars in OpenAI's strict
    /// form (see [`json_schema_for`]).
    ///
    /// # Examples
    ///
    /// ```
    /// #[derive(serde::Deserialize, schemars::JsonSchema)]
    /// struct WeatherArgs { city: String }
    /// use chainlog::llm::ToolSpec;
    /// let tool = ToolSpec::from_type::<WeatherArgs>("get_weather", "Current weather");
    /// assert_eq!(tool.parameters["required"], serde_json::json!(["city"]));
    /// ```
    pub fn from_type<T: JsonSchema>(
        name: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self::new(name, description, json_schema_for::<T>())
    }
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool may be called.
    None,
    /// Some tool must be called.
    Required,
    /// This function must be called.
    Function(String),
}

/// Structured output.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    /// Any JSON object.
    JsonObject,
    /// A JSON object, with a schema sent as `{"type": "json_object", "schema": ...}`: the form
    /// llama.cpp's server (and vLLM, Fireworks, Together) constrains output with. OpenAI does
    /// not take a schema here; use [`JsonSchema`](Self::JsonSchema) there.
    JsonObjectWithSchema {
        /// The JSON Schema.
        schema: Value,
    },
    /// JSON valid for `schema`.
    JsonSchema {
        /// The schema's name (`a-zA-Z0-9_-`, at most 64).
        name: String,
        /// The JSON Schema.
        schema: Value,
        /// OpenAI's strict mode: the reply is guaranteed to fit (the schema must then follow
        /// its rules, which [`json_schema_for`] does).
        strict: bool,
    },
}

/// A tool call the model made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The call's id, quoted back by the tool result.
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

impl ToolCall {
    /// Parses the arguments into `T`.
    ///
    /// # Errors
    ///
    /// [`LlmError::Schema`] naming `T`, the tool and what did not fit.
    ///
    /// # Examples
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct WeatherArgs { city: String }
    /// let call = chainlog::llm::ToolCall {
    ///     id: "call_1".into(),
    ///     name: "get_weather".into(),
    ///     arguments: r#"{"city":"Paris"}"#.into(),
    /// };
    /// assert_eq!(call.parse_arguments::<WeatherArgs>()?.city, "Paris");
    /// # Ok::<(), chainlog::llm::LlmError>(())
    /// ```
    pub fn parse_arguments<T: DeserializeOwned>(&self) -> Result<T, LlmError> {
        serde_json::from_str(&self.arguments).map_err(|err| LlmError::Schema {
            type_name: json::short_type_name::<T>(),
            message: format!(
                "the arguments of tool `{}` (call {}) do not fit: {err}",
                self.name, self.id
            ),
        })
    }
}

/// A whole reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// The reply's text, if any.
    pub content: Option<String>,
    /// The tools the model called.
    pub tool_calls: Vec<ToolCall>,
    /// Why generation stopped (`stop`, `length`, `tool_calls`, ...), when the provider said.
    /// [`OpenAiClient`] never returns `length`, `content_filter` or `error` (see
    /// [`check_complete`]) unless `accept_truncated` lets a `length` through.
    pub finish_reason: Option<String>,
    /// Tokens used; `None` when the provider did not say (unknown, which is not zero).
    pub usage: Option<Usage>,
    /// The model that answered (the one asked for when the provider did not say).
    pub model: String,
    /// The whole call, retries and waiting for a concurrency slot included.
    pub latency: Duration,
    /// HTTP attempts made (1 without retries).
    pub attempts: u32,
}

impl ChatResponse {
    /// A text reply with unknown usage, one attempt and no latency (for scripts and tests).
    pub fn from_text(text: impl Into<String>) -> Self {
        Self {
            content: Some(text.into()),
            finish_reason: Some("stop".to_owned()),
            ..Self::empty()
        }
    }

    /// A tool-calling reply with unknown usage, one attempt and no latency (for scripts and
    /// tests).
    pub fn from_tool_calls(tool_calls: Vec<ToolCall>) -> Self {
        Self {
            tool_calls,
            finish_reason: Some("tool_calls".to_owned()),
            ..Self::empty()
        }
    }

    fn empty() -> Self {
        Self {
            content: None,
            tool_calls: Vec::new(),
            finish_reason: None,
            usage: None,
            model: String::new(),
            latency: Duration::ZERO,
            attempts: 1,
        }
    }

    /// The text, or `""` when there is none.
    pub fn text(&self) -> &str {
        self.content.as_deref().unwrap_or_default()
    }

    /// This reply as the assistant message to append before tool results.
    pub fn to_assistant_message(&self) -> ChatMessage {
        ChatMessage::Assistant {
            content: self.content.clone(),
            tool_calls: self.tool_calls.clone(),
        }
    }
}

/// Token usage of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
}

impl std::ops::Add for Usage {
    type Output = Usage;

    fn add(self, other: Usage) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens + other.prompt_tokens,
            completion_tokens: self.completion_tokens + other.completion_tokens,
            total_tokens: self.total_tokens + other.total_tokens,
        }
    }
}

/// Why an LLM call failed. Provider status codes and messages are kept; the API key never
/// appears.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// A failure that may pass: rate limits (429), server errors (5xx), dropped connections —
    /// after the client's own retries ran out.
    #[error("the provider failed{}: {message}", status_note(*.status, None))]
    Transient {
        /// The HTTP status, when there was a response.
        status: Option<u16>,
        /// The provider's message.
        message: String,
    },
    /// A failure no retry will fix: a bad request, a bad key, `insufficient_quota`.
    #[error(
        "the provider refused the request{}: {message}",
        status_note(*.status, .code.as_deref())
    )]
    Permanent {
        /// The HTTP status, when there was a response.
        status: Option<u16>,
        /// The provider's error code (`insufficient_quota`, `invalid_api_key`, ...).
        code: Option<String>,
        /// The provider's message.
        message: String,
    },
    /// No answer within the per-attempt timeout, on the last attempt.
    #[error("no answer within {} ms", .after.as_millis())]
    Timeout {
        /// The timeout.
        after: Duration,
    },
    /// The provider answered with something that is not a chat reply.
    #[error("invalid reply from the provider: {message}")]
    InvalidResponse {
        /// What is wrong.
        message: String,
    },
    /// The reply (or a tool call's arguments) does not fit the expected type.
    #[error("the reply does not fit `{type_name}`: {message}")]
    Schema {
        /// The type expected.
        type_name: String,
        /// What did not fit.
        message: String,
    },
    /// The provider answered, but the reply is not a whole answer: cut off by the token
    /// limit, stopped by a content filter, ended with `finish_reason: error`, or empty with no
    /// tool calls. See [`check_complete`].
    #[error("incomplete reply: {message}")]
    Incomplete {
        /// The reply's finish reason, when the provider gave one.
        finish_reason: Option<String>,
        /// What is missing, e.g. `ended with finish_reason=error after 5 characters`.
        message: String,
    },
    /// The call was cancelled before it finished.
    #[error("the call was cancelled")]
    Cancelled,
}

/// Refuses a reply that is not a whole answer; `Ok` for every other one.
///
/// - `finish_reason: length`: cut off by the token limit (`max_tokens`, when the request set
///   one, is named), unless `accept_truncated` (then the text so far passes, if there is any);
/// - `content_filter` and `error`: stopped by the provider;
/// - no text (`null`, absent or `""`) and no tool calls, whatever the finish reason.
///
/// Any other finish reason (`stop`, `tool_calls`, `eos`, none at all) passes.
///
/// # Errors
///
/// [`LlmError::Incomplete`] naming the finish reason and how much text came, e.g.
/// `incomplete reply: cut off by max_tokens=20 after 87 characters (finish_reason=length);
/// llm.accept_truncated: true accepts truncated text`.
///
/// # Examples
///
/// ```
/// use chainlog::llm::{ChatResponse, check_complete};
/// let cut = ChatResponse { finish_reason: Some("length".into()), ..ChatResponse::from_text("Hello") };
/// let err = check_complete(&cut, Some(20), false).unwrap_err();
/// assert!(err.to_string().starts_with("incomplete reply: cut off by max_tokens=20 after 5 characters"));
/// assert!(check_complete(&cut, Some(20), true).is_ok());
/// ```
pub fn check_complete(
    response: &ChatResponse,
    max_tokens: Option<u32>,
    accept_truncated: bool,
) -> Result<(), LlmError> {
    let chars = response
        .content
        .as_deref()
        .map_or(0, |text| text.chars().count());
    let incomplete = |message: String| {
        Err(LlmError::Incomplete {
            finish_reason: response.finish_reason.clone(),
            message,
        })
    };
    let empty = chars == 0 && response.tool_calls.is_empty();
    match response.finish_reason.as_deref() {
        Some("length") if !accept_truncated || empty => {
            let limit = match max_tokens {
                Some(max) => format!("max_tokens={max}"),
                None => "the server's token limit".to_owned(),
            };
            return incomplete(format!(
                "cut off by {limit} after {chars} characters (finish_reason=length); \
                 llm.accept_truncated: true accepts truncated text"
            ));
        }
        Some(reason @ ("content_filter" | "error")) => {
            return incomplete(format!(
                "ended with finish_reason={reason} after {chars} characters"
            ));
        }
        _ => {}
    }
    if empty {
        let shown = match &response.content {
            None => "(null)",
            Some(_) => "(\"\")",
        };
        let reason = response
            .finish_reason
            .as_deref()
            .map_or_else(String::new, |reason| format!(", finish_reason={reason}"));
        return incomplete(format!("empty content {shown} with no tool calls{reason}"));
    }
    Ok(())
}

impl LlmError {
    /// Whether the same call might succeed if made again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, LlmError::Transient { .. } | LlmError::Timeout { .. })
    }

    /// The HTTP status of the provider's answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            LlmError::Transient { status, .. } | LlmError::Permanent { status, .. } => *status,
            _ => None,
        }
    }
}

/// ` (http 429, insufficient_quota)`, ` (http 503)` or nothing.
fn status_note(status: Option<u16>, code: Option<&str>) -> String {
    match (status, code) {
        (Some(status), Some(code)) => format!(" (http {status}, {code})"),
        (Some(status), None) => format!(" (http {status})"),
        (None, Some(code)) => format!(" ({code})"),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_keep_status_code_and_provider_message() {
        let quota = LlmError::Permanent {
            status: Some(429),
            code: Some("insufficient_quota".into()),
            message: "You exceeded your current quota.".into(),
        };
        assert_eq!(
            quota.to_string(),
            "the provider refused the request (http 429, insufficient_quota): You exceeded your current quota."
        );
        assert!(!quota.is_retryable());
        let overloaded = LlmError::Transient {
            status: Some(503),
            message: "overloaded".into(),
        };
        assert_eq!(
            overloaded.to_string(),
            "the provider failed (http 503): overloaded"
        );
        assert!(overloaded.is_retryable());
        let timeout = LlmError::Timeout {
            after: Duration::from_millis(300),
        };
        assert_eq!(timeout.to_string(), "no answer within 300 ms");
        assert!(timeout.is_retryable());
        assert!(!LlmError::Cancelled.is_retryable());
    }

    #[test]
    fn parse_arguments_names_the_tool_and_the_type() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct WeatherArgs {
            city: String,
        }
        let call = ToolCall {
            id: "call_7".into(),
            name: "get_weather".into(),
            arguments: r#"{"town":"Paris"}"#.into(),
        };
        let err = call.parse_arguments::<WeatherArgs>().unwrap_err();
        let LlmError::Schema { type_name, message } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(type_name, "WeatherArgs");
        assert!(message.contains("get_weather"), "{message}");
        assert!(message.contains("city"), "{message}");
    }

    #[test]
    fn assistant_message_carries_text_and_tool_calls() {
        let call = ToolCall {
            id: "c".into(),
            name: "f".into(),
            arguments: "{}".into(),
        };
        let response = ChatResponse::from_tool_calls(vec![call.clone()]);
        assert_eq!(
            response.to_assistant_message(),
            ChatMessage::Assistant {
                content: None,
                tool_calls: vec![call]
            }
        );
        assert_eq!(response.text(), "");
    }
}
