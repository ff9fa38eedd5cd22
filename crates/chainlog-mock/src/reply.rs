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
    #[serde(default = "empty_object", deserialize_with = "object_only")]
    pub arguments: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

fn object_only<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    match Value::deserialize(deserializer)? {
        value @ Value::Object(_) => Ok(value),
        _ => Err(serde::de::Error::custom(
            "tool call `arguments` must be a mapping",
        )),
    }
}

fn error_status<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    let status = u16::deserialize(deserializer)?;
    if (400..=599).contains(&status) {
        Ok(status)
    } else {
        Err(serde::de::Error::custom(format!(
            "error status {status} is not between 400 and 599"
        )))
    }
}

/// An error reply, as a rules file writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorReply {
    /// HTTP status (400–599).
    #[serde(deserialize_with = "error_status")]
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
///
/// Read by a hand-written visitor so that each mistake is reported while its key is being
/// read — at its own line in the rules file.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The reply.
    pub reply: Reply,
    /// Latency for this step; the rules file's (or server's) default when absent.
    pub latency: Option<Latency>,
}

/// The keys a step may have.
const STEP_KEYS: &[&str] = &["text", "tool_calls", "json", "error", "fault", "latency"];

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StepVisitor)
    }
}

struct StepVisitor;

impl<'de> serde::de::Visitor<'de> for StepVisitor {
    type Value = Step;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a reply: one of `text`, `tool_calls`, `json`, `error`, `fault`")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Step, A::Error> {
        use serde::de::Error;
        let mut reply: Option<Reply> = None;
        let mut latency = None;
        while let Some(key) = map.next_key::<String>()? {
            let next = match key.as_str() {
                "text" => Reply::Text(map.next_value()?),
                "tool_calls" => {
                    let calls: Vec<ToolCallReply> = map.next_value()?;
                    if calls.is_empty() {
                        return Err(A::Error::custom("`tool_calls` must list at least one call"));
                    }
                    Reply::ToolCalls(calls)
                }
                "json" => Reply::Json(map.next_value()?),
                "error" => Reply::Error(map.next_value()?),
                "fault" => Reply::Fault(map.next_value()?),
                "latency" => {
                    latency = Some(map.next_value()?);
                    continue;
                }
                other => return Err(A::Error::unknown_field(other, STEP_KEYS)),
            };
            if reply.is_some() {
                return Err(A::Error::custom(format!(
                    "a reply takes exactly one of `text`, `tool_calls`, `json`, `error`, `fault`; `{key}` is a second one"
                )));
            }
            reply = Some(next);
        }
        let reply = reply.ok_or_else(|| {
            A::Error::custom("a reply needs one of `text`, `tool_calls`, `json`, `error`, `fault`")
        })?;
        Ok(Step { reply, latency })
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
