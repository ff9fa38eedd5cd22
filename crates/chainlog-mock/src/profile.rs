//! [`Profile`]: the quirks of a real OpenAI-compatible server the mock plays, so chains are
//! tested against the servers users run, not only against OpenAI's wire format.
//!
//! Owns the profile names, the checks a profile adds to a chat request, and the changes it makes
//! to answers. A profile is chosen with `chainlog mock --profile NAME`,
//! [`MockConfig::with_profile`](super::MockConfig::with_profile), or `profile: NAME` at the top
//! of a rules file.
//!
//! # Profiles and their sources
//!
//! - `openai` (the default): OpenAI's own API reference.
//! - `llama.cpp`: llama.cpp's `llama-server` (ggml-org/llama.cpp `tools/server`: README,
//!   `server-common.cpp` `oaicompat_chat_params_parse`, `server.cpp`) as llama-cpp-python 0.3
//!   and llama-server builds before September 2024 answer:
//!   - an assistant message whose `content` is null or absent is refused with a 500 (the chat
//!     template reads `message.content`: `'dict object' has no attribute 'content'`), also
//!     when it carries tool calls;
//!   - `max_completion_tokens` is ignored; only `max_tokens` bounds the output;
//!   - `response_format: json_schema` is refused with a 500 (`response_format type must be
//!     one of "text" or "json_object", but got: json_schema`); `json_object` with a nested
//!     `schema` constrains the output to it;
//!   - streamed tool-call deltas repeat the call's `id`, `type` and `name` in every fragment;
//!   - streams carry no usage, whatever `stream_options` asks;
//!   - a malformed request is a 500 (`server_error`), not a 400 (the request parser throws);
//!   - `/v1/models` entries have no `created`.

use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::wire::ApiError;

/// A real server's behaviour the mock imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// OpenAI's API as documented.
    #[default]
    OpenAi,
    /// llama.cpp's `llama-server` (see the module docs).
    LlamaCpp,
}

/// A profile name that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mock profile `{name}` (profiles: {})", Profile::NAMES.join(", "))]
pub struct UnknownProfile {
    /// The name asked for.
    pub name: String,
}

impl Profile {
    /// Every profile's name.
    pub const NAMES: &'static [&'static str] = &["openai", "llama.cpp"];

    /// The profile called `name` (`llamacpp` and `llama-cpp` are accepted for `llama.cpp`).
    ///
    /// # Errors
    ///
    /// [`UnknownProfile`], whose message lists the profiles that exist.
    ///
    /// # Examples
    ///
    /// ```
    /// use chainlog_mock::Profile;
    /// assert_eq!(Profile::from_name("llama.cpp"), Ok(Profile::LlamaCpp));
    /// let err = Profile::from_name("vllm").unwrap_err();
    /// assert_eq!(err.to_string(), "unknown mock profile `vllm` (profiles: openai, llama.cpp)");
    /// ```
    pub fn from_name(name: &str) -> Result<Self, UnknownProfile> {
        match name.to_ascii_lowercase().as_str() {
            "openai" => Ok(Self::OpenAi),
            "llama.cpp" | "llamacpp" | "llama-cpp" => Ok(Self::LlamaCpp),
            _ => Err(UnknownProfile {
                name: name.to_owned(),
            }),
        }
    }

    /// The profile's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::LlamaCpp => "llama.cpp",
        }
    }

    /// Checks and adjusts a chat request body before it is parsed: what this server refuses,
    /// and what it ignores (removed here).
    pub(crate) fn prepare_chat(self, body: &mut Map<String, Value>) -> Result<(), ApiError> {
        if self != Self::LlamaCpp {
            return Ok(());
        }
        body.remove("max_completion_tokens");
        let messages = body.get("messages").and_then(Value::as_array);
        for message in messages.into_iter().flatten() {
            let assistant = message.get("role").and_then(Value::as_str) == Some("assistant");
            if assistant && message.get("content").is_none_or(Value::is_null) {
                return Err(server_error(
                    "'dict object' has no attribute 'content'".to_owned(),
                ));
            }
        }
        let format = body
            .get("response_format")
            .and_then(|format| format.get("type"))
            .and_then(Value::as_str);
        if let Some(kind) = format.filter(|kind| !matches!(*kind, "text" | "json_object")) {
            return Err(server_error(format!(
                "response_format type must be one of \"text\" or \"json_object\", but got: {kind}"
            )));
        }
        Ok(())
    }

    /// A request error as this server answers it (llama.cpp: a 500 for a malformed request).
    pub(crate) fn request_error(self, error: ApiError) -> ApiError {
        match self {
            Self::LlamaCpp if error.status == StatusCode::BAD_REQUEST => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                error.message,
            ),
            _ => error,
        }
    }

    /// Whether streams carry a usage chunk when asked.
    pub(crate) fn streams_usage(self) -> bool {
        self != Self::LlamaCpp
    }

    /// Whether every streamed tool-call fragment repeats the call's id, type and name.
    pub(crate) fn repeats_tool_call_head(self) -> bool {
        self == Self::LlamaCpp
    }

    /// Whether `/v1/models` entries carry `created`.
    pub(crate) fn lists_created(self) -> bool {
        self != Self::LlamaCpp
    }
}

fn server_error(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
}
