//! What the mock answers with: [`Reply`] (text, tool calls, JSON, an error or a fault), the
//! rules-file step that names one ([`Step`]), and [`Decision`], a reply with its latency and
//! the journal label of whatever chose it.
//!
//! Choosing a reply belongs to `rules`, `cassette` and `synth`; writing it in an endpoint's
//! wire format belongs to `chat` and `responses`.

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    fault::{Fault, Latency},
    wire::ApiError,
};

/// A reply in endpoint-neutral terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Assistant text.
    Text(String),
    /// One or more tool calls.
    ToolCalls(Vec<ToolCallReply>),
    /// A JSON value, sent as the assistant's text content.
    Json(Value),
    /// An error answer with OpenAI's body.
    Error(ErrorReply),
    /// A fault (status faults, hangs, broken bodies).
    Fault(Fault),
}

/// A tool call the mock makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCallReply {
    /// The function's name.
    pub name: String,
    /// The arguments: a JSON object (sent as a JSON string, as OpenAI does).
    #[serde(default = "empty_object")]
    pub arguments: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// An error reply, as a rules file writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorReply {
    /// HTTP status (400–599).
    pub status: u16,
    /// OpenAI's `message`.
    pub message: String,
    /// OpenAI's `type`; `invalid_request_error` when not given.
    #[serde(rename = "type", default = "invalid_request")]
    pub kind: String,
    /// OpenAI's `code`.
    #[serde(default)]
    pub code: Option<String>,
    /// OpenAI's `param`.
    #[serde(default)]
    pub param: Option<String>,
}

fn invalid_request() -> String {
    "invalid_request_error".to_owned()
}

impl ErrorReply {
    /// The answer this error reply gives.
    pub fn to_api_error(&self) -> ApiError {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError {
            status,
            message: self.message.clone(),
            kind: self.kind.clone(),
            param: self.param.clone(),
            code: self.code.clone(),
            headers: Vec::new(),
        }
    }
}

/// One answer of a rule: exactly one of `text`, `tool_calls`, `json`, `error` or `fault`,
/// and optionally the latency to answer with.
///
/// ```yaml
/// text: "It is sunny in Paris."
/// latency: { fixed_ms: 50 }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawStep")]
pub struct Step {
    /// The reply.
    pub reply: Reply,
    /// Latency for this step; the rules file's (or server's) default when absent.
    pub latency: Option<Latency>,
}

/// The rules-file shape of a [`Step`], before the one-reply check.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    text: Option<String>,
    tool_calls: Option<Vec<ToolCallReply>>,
    json: Option<Value>,
    error: Option<ErrorReply>,
    fault: Option<Fault>,
    latency: Option<Latency>,
}

impl TryFrom<RawStep> for Step {
    type Error = String;

    fn try_from(raw: RawStep) -> Result<Self, Self::Error> {
        let mut replies = Vec::new();
        if let Some(text) = raw.text {
            replies.push(Reply::Text(text));
        }
        if let Some(calls) = raw.tool_calls {
            if calls.is_empty() {
                return Err("`tool_calls` must list at least one call".to_owned());
            }
            if let Some(call) = calls.iter().find(|call| !call.arguments.is_object()) {
                return Err(format!(
                    "the arguments of tool call `{}` must be a mapping",
                    call.name
                ));
            }
            replies.push(Reply::ToolCalls(calls));
        }
        if let Some(json) = raw.json {
            replies.push(Reply::Json(json));
        }
        if let Some(error) = raw.error {
            if !(400..=599).contains(&error.status) {
                return Err(format!(
                    "error status {} is not between 400 and 599",
                    error.status
                ));
            }
            replies.push(Reply::Error(error));
        }
        if let Some(fault) = raw.fault {
            replies.push(Reply::Fault(fault));
        }
        match replies.len() {
            1 => Ok(Step {
                reply: replies.remove(0),
                latency: raw.latency,
            }),
            0 => Err(
                "a reply needs one of `text`, `tool_calls`, `json`, `error`, `fault`".to_owned(),
            ),
            _ => Err(
                "a reply takes exactly one of `text`, `tool_calls`, `json`, `error`, `fault`"
                    .to_owned(),
            ),
        }
    }
}

/// A chosen reply, the latency to answer with, and what chose it (for the journal).
#[derive(Debug, Clone)]
pub struct Decision {
    /// The reply.
    pub reply: Reply,
    /// The latency to apply.
    pub latency: Latency,
    /// What answered: `rule:<name>#<step>`, `cassette:#<n>`, `default`, `header:<fault>`.
    pub answered_by: String,
}
