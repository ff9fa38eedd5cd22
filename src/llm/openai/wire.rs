//! OpenAI's chat completions wire format as [`OpenAiClient`](super::OpenAiClient) speaks it:
//! our [`ChatRequest`] → async-openai's typed request; replies, stream chunks and error bodies
//! → lenient serde types of our own → [`ChatResponse`] or [`LlmError`].
//!
//! Every reply field but `choices` may be missing or null; see the parent module for why.

use std::time::Duration;

use async_openai::{
    error::OpenAIError,
    types::chat::{
        ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
        ChatCompletionNamedToolChoice, ChatCompletionRequestAssistantMessage,
        ChatCompletionRequestAssistantMessageContent, ChatCompletionRequestMessage,
        ChatCompletionRequestSystemMessage, ChatCompletionRequestSystemMessageContent,
        ChatCompletionRequestToolMessage, ChatCompletionRequestToolMessageContent,
        ChatCompletionRequestUserMessage, ChatCompletionRequestUserMessageContent,
        ChatCompletionStreamOptions, ChatCompletionTool, ChatCompletionToolChoiceOption,
        ChatCompletionTools, CreateChatCompletionRequest, FunctionCall, FunctionName,
        FunctionObject, ResponseFormatJsonSchema, StopConfiguration, ToolChoiceOptions,
    },
};
use serde::Deserialize;
use serde_json::Value;

use super::Inner;
use crate::llm::{
    ChatMessage, ChatRequest, ChatResponse, LlmError, ResponseFormat, ToolCall, ToolChoice, Usage,
    json::excerpt, retry::AttemptTimedOut,
};

/// The serialized request body for `request`: [`to_request`], plus the schema of a
/// [`ResponseFormat::JsonObjectWithSchema`] as `response_format.schema`.
///
/// # Errors
///
/// [`LlmError::Permanent`] (`invalid_request`) when the body cannot be serialized.
pub(super) fn to_body(
    inner: &Inner,
    request: &ChatRequest,
    stream: bool,
) -> Result<bytes::Bytes, LlmError> {
    let invalid = |err: serde_json::Error| LlmError::Permanent {
        status: None,
        code: Some("invalid_request".to_owned()),
        message: format!("the request cannot be serialized: {err}"),
    };
    let body = serde_json::to_vec(&to_request(inner, request, stream)).map_err(invalid)?;
    let Some(ResponseFormat::JsonObjectWithSchema { schema }) = &request.response_format else {
        return Ok(body.into());
    };
    // Through the text, not `to_value`: an `f32` temperature must stay `0.2`, not become
    // `0.20000000298023224`.
    let mut value: Value = serde_json::from_slice(&body).map_err(invalid)?;
    value["response_format"]["schema"] = schema.clone();
    serde_json::to_vec(&value).map(Into::into).map_err(invalid)
}

/// The request body for `request`, with the client's model and defaults.
pub(super) fn to_request(
    inner: &Inner,
    request: &ChatRequest,
    stream: bool,
) -> CreateChatCompletionRequest {
    let max_tokens = request.max_tokens.or(inner.max_tokens);
    let (legacy, completion) = inner.max_tokens_fields;
    #[expect(
        deprecated,
        reason = "most OpenAI-compatible servers read only `max_tokens`"
    )]
    CreateChatCompletionRequest {
        model: inner.model.clone(),
        messages: request.messages.iter().map(to_message).collect(),
        temperature: request.temperature.or(inner.temperature),
        max_tokens: max_tokens.filter(|_| legacy),
        max_completion_tokens: max_tokens.filter(|_| completion),
        tools: (!request.tools.is_empty()).then(|| {
            request
                .tools
                .iter()
                .map(|tool| {
                    ChatCompletionTools::Function(ChatCompletionTool {
                        function: FunctionObject {
                            name: tool.name.clone(),
                            description: (!tool.description.is_empty())
                                .then(|| tool.description.clone()),
                            parameters: Some(tool.parameters.clone()),
                            strict: None,
                        },
                    })
                })
                .collect()
        }),
        tool_choice: request
            .tool_choice
            .as_ref()
            .or(inner
                .tool_choice
                .as_ref()
                .filter(|_| !request.tools.is_empty()))
            .map(to_tool_choice),
        response_format: request.response_format.as_ref().map(to_response_format),
        stop: (!request.stop.is_empty())
            .then(|| StopConfiguration::StringArray(request.stop.clone())),
        stream: stream.then_some(true),
        stream_options: stream.then_some(ChatCompletionStreamOptions {
            include_usage: Some(true),
            include_obfuscation: None,
        }),
        ..CreateChatCompletionRequest::default()
    }
}

fn to_message(message: &ChatMessage) -> ChatCompletionRequestMessage {
    match message {
        ChatMessage::System(text) => {
            ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
                content: ChatCompletionRequestSystemMessageContent::Text(text.clone()),
                name: None,
            })
        }
        ChatMessage::User(text) => {
            ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
                content: ChatCompletionRequestUserMessageContent::Text(text.clone()),
                name: None,
            })
        }
        ChatMessage::Assistant {
            content,
            tool_calls,
        } => {
            // Always a string: OpenAI wants content unless there are tool calls, and some
            // servers (llama.cpp's chat templates) answer 500 to a null or absent content
            // even with tool calls; `""` is accepted everywhere.
            let content = Some(content.clone().unwrap_or_default());
            ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
                content: content.map(ChatCompletionRequestAssistantMessageContent::Text),
                tool_calls: (!tool_calls.is_empty()).then(|| {
                    tool_calls
                        .iter()
                        .map(|call| {
                            ChatCompletionMessageToolCalls::Function(
                                ChatCompletionMessageToolCall {
                                    id: call.id.clone(),
                                    function: FunctionCall {
                                        name: call.name.clone(),
                                        arguments: call.arguments.clone(),
                                    },
                                },
                            )
                        })
                        .collect()
                }),
                ..ChatCompletionRequestAssistantMessage::default()
            })
        }
        ChatMessage::Tool {
            tool_call_id,
            content,
        } => ChatCompletionRequestMessage::Tool(ChatCompletionRequestToolMessage {
            content: ChatCompletionRequestToolMessageContent::Text(content.clone()),
            tool_call_id: tool_call_id.clone(),
        }),
    }
}

fn to_tool_choice(choice: &ToolChoice) -> ChatCompletionToolChoiceOption {
    match choice {
        ToolChoice::Auto => ChatCompletionToolChoiceOption::Mode(ToolChoiceOptions::Auto),
        ToolChoice::None => ChatCompletionToolChoiceOption::Mode(ToolChoiceOptions::None),
        ToolChoice::Required => ChatCompletionToolChoiceOption::Mode(ToolChoiceOptions::Required),
        ToolChoice::Function(name) => {
            ChatCompletionToolChoiceOption::Function(ChatCompletionNamedToolChoice {
                function: FunctionName { name: name.clone() },
            })
        }
    }
}

fn to_response_format(format: &ResponseFormat) -> async_openai::types::chat::ResponseFormat {
    use async_openai::types::chat::ResponseFormat as Wire;
    match format {
        ResponseFormat::JsonObject | ResponseFormat::JsonObjectWithSchema { .. } => {
            Wire::JsonObject
        }
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        } => Wire::JsonSchema {
            json_schema: ResponseFormatJsonSchema {
                description: None,
                name: name.clone(),
                schema: schema.clone(),
                strict: Some(*strict),
            },
        },
    }
}

/// A `chat.completion` as we read it.
#[derive(Debug, Deserialize)]
pub(super) struct Reply {
    model: Option<String>,
    choices: Option<Vec<Choice>>,
    usage: Option<WireUsage>,
    /// Some proxies answer errors with a 200 and this.
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: Option<Message>,
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Message {
    /// A string, or (some servers) an array of text parts.
    content: Option<Value>,
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    id: Option<String>,
    function: Option<WireFunction>,
}

#[derive(Debug, Deserialize)]
struct WireFunction {
    name: Option<String>,
    /// A JSON string per the spec; some servers send an object.
    arguments: Option<Value>,
}

/// `usage`, every count optional.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(super) struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
}

impl WireUsage {
    pub(super) fn to_usage(self) -> Usage {
        let prompt_tokens = self.prompt_tokens.unwrap_or_default();
        let completion_tokens = self.completion_tokens.unwrap_or_default();
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: self
                .total_tokens
                .unwrap_or(prompt_tokens + completion_tokens),
        }
    }
}

/// Our response from a reply: its first choice, usage (`None` when absent) and model (the one
/// asked for when absent).
pub(super) fn to_response(
    reply: Reply,
    requested_model: &str,
    latency: Duration,
    attempts: u32,
) -> Result<ChatResponse, LlmError> {
    let Some(choice) = reply.choices.unwrap_or_default().into_iter().next() else {
        let message = match reply.error {
            Some(error) => format!(
                "the reply has no choices but an error: {}",
                excerpt(&error.to_string())
            ),
            None => "the reply has no choices".to_owned(),
        };
        return Err(LlmError::InvalidResponse { message });
    };
    let message = choice.message.unwrap_or_default();
    let tool_calls = message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(index, call)| {
            let function = call.function;
            ToolCall {
                id: call.id.unwrap_or_else(|| format!("call_{index}")),
                name: function
                    .as_ref()
                    .and_then(|f| f.name.clone())
                    .unwrap_or_default(),
                arguments: function
                    .and_then(|f| f.arguments)
                    .map(arguments_text)
                    .unwrap_or_else(|| "{}".to_owned()),
            }
        })
        .collect();
    Ok(ChatResponse {
        content: message.content.and_then(content_text),
        tool_calls,
        finish_reason: choice.finish_reason,
        usage: reply.usage.map(WireUsage::to_usage),
        model: reply
            .model
            .filter(|model| !model.is_empty())
            .unwrap_or_else(|| requested_model.to_owned()),
        latency,
        attempts,
    })
}

/// Text content: a string, or the text parts of an array joined.
fn content_text(content: Value) -> Option<String> {
    match content {
        Value::String(text) => Some(text),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect(),
        ),
        _ => None,
    }
}

/// Tool-call arguments as JSON text, whether sent as a string or as an object.
pub(super) fn arguments_text(arguments: Value) -> String {
    match arguments {
        Value::String(text) => text,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One `chat.completion.chunk` as we read it.
#[derive(Debug, Deserialize)]
pub(super) struct Chunk {
    pub model: Option<String>,
    pub choices: Option<Vec<ChunkChoice>>,
    pub usage: Option<WireUsage>,
    /// An error sent instead of a chunk.
    pub error: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ChunkChoice {
    pub index: Option<u32>,
    pub delta: Option<Delta>,
    pub finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Delta {
    pub content: Option<String>,
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

/// A fragment of a streamed tool call: the first one carries id and name.
#[derive(Debug, Deserialize)]
pub(super) struct ToolCallDelta {
    pub index: Option<u32>,
    pub id: Option<String>,
    pub function: Option<FunctionDelta>,
}

#[derive(Debug, Deserialize)]
pub(super) struct FunctionDelta {
    pub name: Option<String>,
    pub arguments: Option<Value>,
}

/// The reply in a successful response's body.
pub(super) async fn read_reply(
    response: reqwest::Response,
) -> Result<(Reply, bytes::Bytes), LlmError> {
    let body = response.bytes().await.map_err(|err| LlmError::Transient {
        status: None,
        message: error_chain(&err),
    })?;
    let reply = serde_json::from_slice(&body).map_err(|err| LlmError::InvalidResponse {
        message: format!(
            "the body is not a chat completion ({err}): {}",
            excerpt(&String::from_utf8_lossy(&body))
        ),
    })?;
    Ok((reply, body))
}

/// `response` as the `chat.completion` body OpenAI would have sent: what a streamed reply's
/// trace keeps as its output (the chunks assembled).
pub(super) fn completion_json(response: &ChatResponse) -> serde_json::Value {
    let tool_calls: Vec<serde_json::Value> = response
        .tool_calls
        .iter()
        .map(|call| {
            serde_json::json!({
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            })
        })
        .collect();
    let mut message = serde_json::json!({"role": "assistant", "content": response.content});
    if !tool_calls.is_empty() {
        message["tool_calls"] = serde_json::Value::Array(tool_calls);
    }
    let mut body = serde_json::json!({
        "object": "chat.completion",
        "model": response.model,
        "choices": [{"index": 0, "message": message, "finish_reason": response.finish_reason}],
    });
    if let Some(usage) = response.usage {
        body["usage"] = serde_json::json!({
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        });
    }
    body
}

/// The error a non-success response stands for. 429 (unless the quota is spent) and 5xx are
/// transient — they come here once retries ran out — and everything else is permanent.
pub(super) async fn error_from_response(response: reqwest::Response) -> LlmError {
    let status = response.status();
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(err) => {
            return LlmError::Transient {
                status: Some(status.as_u16()),
                message: error_chain(&err),
            };
        }
    };
    let (message, code) = provider_error(&body)
        .unwrap_or_else(|| (String::from_utf8_lossy(&body).trim().to_owned(), None));
    let code = code.map(|code| excerpt(&code));
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("no message").to_owned()
    } else {
        excerpt(&message)
    };
    let quota = code.as_deref() == Some(INSUFFICIENT_QUOTA);
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS && !quota || status.is_server_error() {
        LlmError::Transient {
            status: Some(status.as_u16()),
            message,
        }
    } else {
        LlmError::Permanent {
            status: Some(status.as_u16()),
            code,
            message,
        }
    }
}

const INSUFFICIENT_QUOTA: &str = "insufficient_quota";

/// The message and code of an error body: OpenAI's `{"error": {"message", "type", "code"}}`
/// (the code is `code`, else `type`; `insufficient_quota` wins wherever it is), or the
/// `{"error": "text"}`, `{"message": ..}` and `{"detail": ..}` some servers send.
pub(super) fn provider_error(body: &[u8]) -> Option<(String, Option<String>)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let text = |value: &Value| value.as_str().map(str::to_owned);
    let error = &value["error"];
    if let Some(message) = text(&error["message"]) {
        let code = text(&error["code"]);
        let kind = text(&error["type"]);
        let code = if kind.as_deref() == Some(INSUFFICIENT_QUOTA) {
            kind
        } else {
            code.or(kind)
        };
        return Some((message, code));
    }
    let message = text(error)
        .or_else(|| text(&value["message"]))
        .or_else(|| text(&value["detail"]))
        .or_else(|| value.get("detail").map(Value::to_string))?;
    Some((message, None))
}

/// The message of an `error` value (an object with `message`, or text).
pub(super) fn error_message(error: &Value) -> String {
    let message = error["message"]
        .as_str()
        .or_else(|| error.as_str())
        .map_or_else(|| error.to_string(), str::to_owned);
    excerpt(&message)
}

/// A failure below HTTP (or our attempt timeout) as the caller sees it.
pub(super) fn to_llm_error(error: OpenAIError) -> LlmError {
    match error {
        OpenAIError::Boxed(error) => match error.downcast::<AttemptTimedOut>() {
            Ok(timeout) => LlmError::Timeout {
                after: timeout.after,
            },
            Err(error) => LlmError::Transient {
                status: None,
                message: error_chain(error.as_ref()),
            },
        },
        OpenAIError::Reqwest(error) if error.is_builder() => LlmError::Permanent {
            status: None,
            code: Some("invalid_request".to_owned()),
            message: error_chain(&error),
        },
        OpenAIError::Reqwest(error) => LlmError::Transient {
            status: None,
            message: error_chain(&error),
        },
        other => LlmError::Permanent {
            status: None,
            code: None,
            message: crate::secret::scrub(&other.to_string()),
        },
    }
}

/// An error and its sources, `: `-joined (reqwest's own message says little: "error sending
/// request"), scrubbed of secrets (a URL in it may carry credentials).
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    crate::secret::scrub(&message)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn reply(body: Value) -> Result<ChatResponse, LlmError> {
        let reply: Reply = serde_json::from_value(body).unwrap();
        to_response(reply, "asked-model", Duration::ZERO, 1)
    }

    #[test]
    fn minimal_reply_is_enough() {
        let response = reply(json!({"choices":[{"message":{"content":"hi"}}]})).unwrap();
        assert_eq!(response.text(), "hi");
        assert_eq!(response.model, "asked-model");
        assert_eq!(response.usage, None, "absent usage is unknown, not zero");
        assert_eq!(response.finish_reason, None);
    }

    #[test]
    fn odd_tool_calls_are_read() {
        let response = reply(json!({
            "model": "served-model",
            "choices":[{"message":{"content":null,"tool_calls":[
                {"function":{"name":"get_weather","arguments":{"city":"Paris"}}},
                {"id":"call_x","type":"function","function":{"name":"noop","arguments":"{}"}}
            ]},"finish_reason":null}],
            "usage":{"prompt_tokens":3,"completion_tokens":4}
        }))
        .unwrap();
        assert_eq!(response.content, None);
        assert_eq!(response.model, "served-model");
        assert_eq!(response.tool_calls[0].id, "call_0");
        assert_eq!(response.tool_calls[0].arguments, r#"{"city":"Paris"}"#);
        assert_eq!(response.tool_calls[1].id, "call_x");
        assert_eq!(response.usage.unwrap().total_tokens, 7);
    }

    #[test]
    fn reply_without_choices_is_invalid() {
        let err = reply(json!({"error":{"message":"upstream down"}})).unwrap_err();
        assert!(err.to_string().contains("upstream down"), "{err}");
        assert!(matches!(err, LlmError::InvalidResponse { .. }));
    }

    #[test]
    fn error_bodies_give_message_and_code() {
        let openai = br#"{"error":{"message":"quota","type":"insufficient_quota","param":null,"code":null}}"#;
        assert_eq!(
            provider_error(openai),
            Some(("quota".into(), Some("insufficient_quota".into())))
        );
        let coded =
            br#"{"error":{"message":"slow","type":"requests","code":"rate_limit_exceeded"}}"#;
        assert_eq!(
            provider_error(coded),
            Some(("slow".into(), Some("rate_limit_exceeded".into())))
        );
        assert_eq!(
            provider_error(br#"{"error":"model not found"}"#),
            Some(("model not found".into(), None))
        );
        assert_eq!(
            provider_error(br#"{"detail":"Not Found"}"#),
            Some(("Not Found".into(), None))
        );
        assert_eq!(provider_error(b"<html>502 Bad Gateway</html>"), None);
    }
}
