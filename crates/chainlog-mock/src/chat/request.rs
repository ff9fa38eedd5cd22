//! The chat request: its shape ([`ChatRequest`], [`Message`], [`Tool`], [`ToolChoice`],
//! [`ResponseFormat`]), checking a body into it ([`ChatRequest::parse`], every fault a 400
//! naming the parameter) and what rules see of it.

use serde_json::{Map, Value, json};

use crate::{
    rules::{Endpoint, RequestView},
    synth,
    wire::{ApiError, json_kind, optional_bool, optional_u64, required_str},
};

/// Roles OpenAI accepts in `messages`.
const ROLES: &[&str] = &[
    "developer",
    "system",
    "user",
    "assistant",
    "tool",
    "function",
];

/// A message as the mock needs it: its role and its text.
#[derive(Debug, Clone)]
pub struct Message {
    /// `user`, `assistant`, ...
    pub role: String,
    /// The text content (text parts joined), empty when there is none.
    pub text: String,
}

/// A tool the request offers.
#[derive(Debug, Clone)]
pub struct Tool {
    /// The function name.
    pub name: String,
    /// Its JSON Schema (an empty object schema when absent).
    pub parameters: Value,
}

/// The request's `tool_choice`.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    /// `"none"`, or no tools offered.
    None,
    /// `"auto"` (the default with tools).
    Auto,
    /// `"required"`: some tool must be called.
    Required,
    /// This function must be called.
    Function(String),
}

/// The request's `response_format`.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON valid against this schema.
    JsonSchema(Value),
}

/// A checked chat completion request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// `model`.
    pub model: String,
    /// `messages`.
    pub messages: Vec<Message>,
    /// `tools`.
    pub tools: Vec<Tool>,
    /// `tool_choice`.
    pub tool_choice: ToolChoice,
    /// `response_format`.
    pub response_format: ResponseFormat,
    /// `stream`.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// `n`.
    pub n: usize,
    /// `stop`.
    pub stop: Vec<String>,
    /// `max_completion_tokens` or the deprecated `max_tokens`.
    pub max_tokens: Option<u64>,
    /// Seed of the deterministic default, from model, messages, tools and format.
    pub seed: u64,
    /// Streamed tool-call fragments repeat id, type and name (a profile's quirk).
    pub repeat_tool_call_head: bool,
}

impl ChatRequest {
    /// Checks a request body.
    ///
    /// # Errors
    ///
    /// A 400 naming the parameter at fault.
    pub fn parse(body: &Map<String, Value>) -> Result<Self, ApiError> {
        let model = required_str(body, "model")?.to_owned();
        let messages = parse_messages(body.get("messages"))?;
        let tools = parse_tools(body.get("tools"))?;
        let tool_choice = parse_tool_choice(body.get("tool_choice"), &tools)?;
        let response_format = parse_response_format(body.get("response_format"))?;
        let stream = optional_bool(body, "stream")?;
        let include_usage = match body.get("stream_options") {
            None | Some(Value::Null) => false,
            Some(_) if !stream => {
                return Err(ApiError::invalid(
                    "stream_options",
                    "`stream_options` is only allowed when `stream` is true",
                ));
            }
            Some(Value::Object(options)) => optional_bool(options, "include_usage")
                .map_err(|err| err.with_param("stream_options.include_usage"))?,
            Some(other) => {
                return Err(ApiError::invalid(
                    "stream_options",
                    format!(
                        "`stream_options` must be an object, not {}",
                        json_kind(other)
                    ),
                ));
            }
        };
        let n = optional_u64(body, "n")?.unwrap_or(1);
        if !(1..=128).contains(&n) {
            return Err(ApiError::invalid(
                "n",
                format!("`n` must be between 1 and 128, not {n}"),
            ));
        }
        for (key, max) in [("temperature", 2.0), ("top_p", 1.0)] {
            if let Some(value) = body.get(key).filter(|v| !v.is_null()) {
                match value.as_f64() {
                    Some(number) if (0.0..=max).contains(&number) => {}
                    _ => {
                        return Err(ApiError::invalid(
                            key,
                            format!("`{key}` must be a number between 0 and {max}, not {value}"),
                        ));
                    }
                }
            }
        }
        let stop = parse_stop(body.get("stop"))?;
        let max_tokens = match optional_u64(body, "max_completion_tokens")? {
            Some(max) => Some(max),
            None => optional_u64(body, "max_tokens")?,
        };
        let seed = synth::seed_of(&[
            model.as_bytes(),
            body.get("messages")
                .map(Value::to_string)
                .unwrap_or_default()
                .as_bytes(),
            body.get("tools")
                .map(Value::to_string)
                .unwrap_or_default()
                .as_bytes(),
            body.get("response_format")
                .map(Value::to_string)
                .unwrap_or_default()
                .as_bytes(),
        ]);
        Ok(Self {
            model,
            messages,
            tools,
            tool_choice,
            response_format,
            stream,
            include_usage,
            n: n as usize,
            stop,
            max_tokens,
            seed,
            repeat_tool_call_head: false,
        })
    }

    /// What rules see of this request.
    pub fn view(&self) -> RequestView<'_> {
        RequestView {
            endpoint: Endpoint::Chat,
            model: &self.model,
            messages: self
                .messages
                .iter()
                .map(|m| (m.role.as_str(), m.text.clone()))
                .collect(),
            tools_offered: !self.tools.is_empty(),
        }
    }
}

fn parse_messages(value: Option<&Value>) -> Result<Vec<Message>, ApiError> {
    let list = match value {
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "messages",
                "you must provide a `messages` parameter",
            ));
        }
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(ApiError::invalid(
                "messages",
                format!(
                    "`messages` must be an array of messages, not {}",
                    json_kind(other)
                ),
            ));
        }
    };
    if list.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must contain at least one message",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(index, message)| parse_message(index, message))
        .collect()
}

fn parse_message(index: usize, message: &Value) -> Result<Message, ApiError> {
    let at = |field: &str| format!("messages[{index}]{field}");
    let Value::Object(message) = message else {
        return Err(ApiError::invalid(
            at(""),
            format!("`{}` must be an object, not {}", at(""), json_kind(message)),
        ));
    };
    let role = match message.get("role") {
        Some(Value::String(role)) if ROLES.contains(&role.as_str()) => role.clone(),
        Some(other) => {
            return Err(ApiError::invalid(
                at(".role"),
                format!(
                    "`{}` must be one of {}, not {other}",
                    at(".role"),
                    ROLES.join(", ")
                ),
            ));
        }
        None => {
            return Err(ApiError::invalid(
                at(".role"),
                format!("`{}` is missing", at(".role")),
            ));
        }
    };
    let text = match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        None | Some(Value::Null) if role == "assistant" => String::new(),
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                at(".content"),
                format!("`{}` is required for a {role} message", at(".content")),
            ));
        }
        Some(other) => {
            return Err(ApiError::invalid(
                at(".content"),
                format!(
                    "`{}` must be a string or an array of parts, not {}",
                    at(".content"),
                    json_kind(other)
                ),
            ));
        }
    };
    if role == "tool" && !message.get("tool_call_id").is_some_and(Value::is_string) {
        return Err(ApiError::invalid(
            at(".tool_call_id"),
            format!("`{}` is required for a tool message", at(".tool_call_id")),
        ));
    }
    Ok(Message { role, text })
}

fn parse_tools(value: Option<&Value>) -> Result<Vec<Tool>, ApiError> {
    let list = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(ApiError::invalid(
                "tools",
                format!("`tools` must be an array, not {}", json_kind(other)),
            ));
        }
    };
    list.iter()
        .enumerate()
        .map(|(index, tool)| {
            let function = tool
                .get("function")
                .filter(|_| tool.get("type").and_then(Value::as_str) == Some("function"));
            let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
            match (function, name) {
                (Some(function), Some(name)) => Ok(Tool {
                    name: name.to_owned(),
                    parameters: function
                        .get("parameters")
                        .cloned()
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                }),
                _ => Err(ApiError::invalid(
                    format!("tools[{index}]"),
                    format!("`tools[{index}]` must be {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}"),
                )),
            }
        })
        .collect()
}

/// `tool_choice` of either endpoint: a mode string, or an object naming a function — nested
/// as Chat Completions writes it (`{"function": {"name"}}`) or flat as the Responses API does
/// (`{"name"}`). A named function must be among `tools`.
///
/// # Errors
///
/// A 400 naming `tool_choice`.
pub(crate) fn parse_tool_choice(
    value: Option<&Value>,
    tools: &[Tool],
) -> Result<ToolChoice, ApiError> {
    let choice = match value {
        None | Some(Value::Null) if tools.is_empty() => ToolChoice::None,
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(mode)) => match mode.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!(
                        "`tool_choice` must be none, auto, required or a function, not `{other}`"
                    ),
                ));
            }
        },
        Some(Value::Object(object)) => {
            let name = object
                .get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| object.get("name"))
                .and_then(Value::as_str);
            match name {
                Some(name) => ToolChoice::Function(name.to_owned()),
                None => {
                    return Err(ApiError::invalid(
                        "tool_choice",
                        "`tool_choice` must name a function: {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    ));
                }
            }
        }
        Some(other) => {
            return Err(ApiError::invalid(
                "tool_choice",
                format!(
                    "`tool_choice` must be a string or an object, not {}",
                    json_kind(other)
                ),
            ));
        }
    };
    match &choice {
        ToolChoice::Required if tools.is_empty() => Err(ApiError::invalid(
            "tool_choice",
            "`tool_choice` is `required` but no `tools` are given",
        )),
        ToolChoice::Function(name) if !tools.iter().any(|t| &t.name == name) => {
            Err(ApiError::invalid(
                "tool_choice",
                format!("`tool_choice` names function `{name}`, which is not in `tools`"),
            ))
        }
        _ => Ok(choice),
    }
}

fn parse_response_format(value: Option<&Value>) -> Result<ResponseFormat, ApiError> {
    let Some(format) = value.filter(|v| !v.is_null()) else {
        return Ok(ResponseFormat::Text);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        // llama.cpp's server (and vLLM) constrain a `json_object` with a nested `schema`.
        Some("json_object") => Ok(match format.get("schema") {
            Some(schema) if schema.is_object() => ResponseFormat::JsonSchema(schema.clone()),
            _ => ResponseFormat::JsonObject,
        }),
        Some("json_schema") => {
            let spec = format.get("json_schema");
            if spec
                .and_then(|s| s.get("name"))
                .and_then(Value::as_str)
                .is_none()
            {
                return Err(ApiError::invalid(
                    "response_format.json_schema.name",
                    "`response_format.json_schema.name` is required",
                ));
            }
            Ok(ResponseFormat::JsonSchema(
                spec.and_then(|s| s.get("schema"))
                    .cloned()
                    .unwrap_or_else(|| json!({})),
            ))
        }
        _ => Err(ApiError::invalid(
            "response_format.type",
            "`response_format.type` must be text, json_object or json_schema",
        )),
    }
}

fn parse_stop(value: Option<&Value>) -> Result<Vec<String>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(stop)) => Ok(vec![stop.clone()]),
        Some(Value::Array(list)) if list.len() <= 4 => list
            .iter()
            .map(|s| {
                s.as_str().map(str::to_owned).ok_or_else(|| {
                    ApiError::invalid("stop", "`stop` must be a string or an array of strings")
                })
            })
            .collect(),
        Some(_) => Err(ApiError::invalid(
            "stop",
            "`stop` must be a string or an array of up to 4 strings",
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::ChatRequest;
    use crate::wire::ApiError;

    fn parse(body: Value) -> Result<ChatRequest, ApiError> {
        ChatRequest::parse(body.as_object().unwrap())
    }

    #[test]
    fn malformed_requests_name_the_parameter() {
        let cases = [
            (json!({"messages": []}), "model"),
            (json!({"model": "m"}), "messages"),
            (json!({"model": "m", "messages": "hi"}), "messages"),
            (
                json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].tool_call_id",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}),
                "n",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}),
                "temperature",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}),
                "tool_choice",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": true}}),
                "stream_options",
            ),
        ];
        for (body, param) in cases {
            let err = parse(body.clone()).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param), "{body}: {}", err.message);
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
        }
    }
}
