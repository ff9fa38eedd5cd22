//! Answering a chat request: the deterministic default reply
//! ([`ChatRequest::default_decision`]) and writing a reply in OpenAI's wire format
//! ([`ChatRequest::render`]) — one `chat.completion` or an SSE stream of
//! `chat.completion.chunk`s — with the usage object and timestamps they carry.

use axum::response::Response;
use serde_json::{Value, json};

use super::request::{ChatRequest, ResponseFormat, ToolChoice};
use crate::{
    fault::{Fault, Latency},
    reply::{Decision, Reply, ToolCallReply},
    respond::{self, SseEvent},
    schema_fill::value_for_schema,
    synth,
};

impl ChatRequest {
    /// The deterministic default reply.
    ///
    /// A forced tool (`tool_choice` naming it, or `"required"`) is called with arguments that
    /// fit its schema; with `"auto"`, a tool is called when the last message is the user's
    /// (so agent loops run against the default) and text follows tool results; a
    /// `json_schema` format gets JSON that fits the schema.
    pub fn default_decision(&self, latency: Latency) -> Decision {
        let last_is_user = self.messages.last().is_some_and(|m| m.role == "user");
        let tool = match &self.tool_choice {
            ToolChoice::Function(name) => self.tools.iter().find(|t| &t.name == name),
            ToolChoice::Required => self.tools.get(self.seed as usize % self.tools.len().max(1)),
            ToolChoice::Auto if last_is_user => {
                self.tools.get(self.seed as usize % self.tools.len().max(1))
            }
            ToolChoice::Auto | ToolChoice::None => None,
        };
        let reply = match (tool, &self.response_format) {
            (Some(tool), _) => Reply::ToolCalls(vec![ToolCallReply {
                name: tool.name.clone(),
                arguments: value_for_schema(&tool.parameters, self.seed),
            }]),
            (None, ResponseFormat::JsonSchema(schema)) => {
                Reply::Json(value_for_schema(schema, self.seed))
            }
            (None, ResponseFormat::JsonObject) => Reply::Json(
                json!({ "reply": synth::default_text_reply(self.last_user_text(), self.seed, 0) }),
            ),
            (None, ResponseFormat::Text) => Reply::Text(synth::default_text_reply(
                self.last_user_text(),
                self.seed,
                0,
            )),
        };
        Decision {
            reply,
            latency,
            answered_by: "default".to_owned(),
        }
    }

    fn last_user_text(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map_or("", |m| m.text.as_str())
    }

    fn prompt_tokens(&self) -> u64 {
        self.messages
            .iter()
            .map(|m| synth::count_tokens(&m.text) + 3)
            .sum::<u64>()
            + 3
    }

    /// Writes `reply` (text, tool calls or JSON) as a completion or a stream.
    pub fn render(&self, reply: &Reply, latency: Latency, fault: Option<Fault>) -> Response {
        let choice = self.choice(reply);
        let created = unix_now();
        let id = format!("chatcmpl-{}", synth::id_from(self.seed, created));
        let completion_tokens = choice.tokens * self.n as u64;
        let usage = usage(self.prompt_tokens(), completion_tokens);
        if self.stream {
            return respond::sse(self.chunks(&id, created, &choice, usage), latency, fault);
        }
        let choices: Vec<Value> = (0..self.n)
            .map(|index| {
                json!({
                    "index": index,
                    "message": choice.message,
                    "logprobs": null,
                    "finish_reason": choice.finish_reason,
                })
            })
            .collect();
        let body = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": self.model,
            "choices": choices,
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_chainlog_mock",
        });
        respond::json(&body, fault.as_ref())
    }

    /// The message, its stream pieces and its finish reason.
    fn choice(&self, reply: &Reply) -> RenderedChoice {
        match reply {
            Reply::ToolCalls(calls) => {
                let calls: Vec<(String, String, String)> = calls
                    .iter()
                    .enumerate()
                    .map(|(index, call)| {
                        (
                            format!("call_{}", synth::id_from(self.seed, index as u64 + 1)),
                            call.name.clone(),
                            call.arguments.to_string(),
                        )
                    })
                    .collect();
                let tool_calls: Vec<Value> = calls
                    .iter()
                    .map(|(id, name, arguments)| {
                        json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
                    })
                    .collect();
                let tokens = calls.iter().map(|c| synth::count_tokens(&c.2)).sum();
                RenderedChoice {
                    message: json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": tool_calls, "annotations": []}),
                    text: None,
                    calls,
                    finish_reason: "tool_calls",
                    tokens,
                }
            }
            Reply::Text(_) | Reply::Json(_) | Reply::Error(_) | Reply::Fault(_) => {
                let raw = match reply {
                    Reply::Json(value) => value.to_string(),
                    Reply::Text(text) => text.clone(),
                    _ => String::new(),
                };
                let (text, stopped) = synth::apply_stop(&raw, &self.stop);
                let (text, cut) = synth::truncate_to_tokens(&text, self.max_tokens);
                let finish_reason = if cut && !stopped { "length" } else { "stop" };
                RenderedChoice {
                    message: json!({"role": "assistant", "content": text, "refusal": null, "annotations": []}),
                    tokens: synth::count_tokens(&text),
                    text: Some(text),
                    calls: Vec::new(),
                    finish_reason,
                }
            }
        }
    }

    /// The SSE chunks of a streamed answer, `[DONE]` included.
    fn chunks(
        &self,
        id: &str,
        created: u64,
        choice: &RenderedChoice,
        usage: Value,
    ) -> Vec<SseEvent> {
        let usage_field = if self.include_usage {
            Some(Value::Null)
        } else {
            None
        };
        // Every chunk shares this envelope; only the choices (and the last one's usage) differ.
        let envelope = |choices: Value, usage: Option<&Value>| {
            let mut chunk = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model,
                "service_tier": "default",
                "system_fingerprint": "fp_chainlog_mock",
                "choices": choices,
            });
            if let (Some(usage), Some(object)) = (usage, chunk.as_object_mut()) {
                object.insert("usage".to_owned(), usage.clone());
            }
            chunk
        };
        let chunk = |index: usize, delta: Value, finish: Option<&str>| {
            envelope(
                json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}]),
                usage_field.as_ref(),
            )
        };
        let mut events = Vec::new();
        for index in 0..self.n {
            let first = match &choice.text {
                Some(_) => json!({"role": "assistant", "content": "", "refusal": null}),
                None => json!({"role": "assistant", "content": null, "refusal": null}),
            };
            events.push(SseEvent::data(&chunk(index, first, None), false));
            if let Some(text) = &choice.text {
                for piece in synth::stream_pieces(text) {
                    events.push(SseEvent::data(
                        &chunk(index, json!({"content": piece}), None),
                        true,
                    ));
                }
            }
            for (call_index, (call_id, name, arguments)) in choice.calls.iter().enumerate() {
                let head = json!({"tool_calls": [{"index": call_index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]});
                events.push(SseEvent::data(&chunk(index, head, None), true));
                for fragment in argument_fragments(arguments) {
                    let delta = if self.repeat_tool_call_head {
                        json!({"tool_calls": [{"index": call_index, "id": call_id, "type": "function", "function": {"name": name, "arguments": fragment}}]})
                    } else {
                        json!({"tool_calls": [{"index": call_index, "function": {"arguments": fragment}}]})
                    };
                    events.push(SseEvent::data(&chunk(index, delta, None), true));
                }
            }
            events.push(SseEvent::data(
                &chunk(index, json!({}), Some(choice.finish_reason)),
                false,
            ));
        }
        if self.include_usage {
            let last = envelope(json!([]), Some(&usage));
            events.push(SseEvent::data(&last, false));
        }
        events.push(SseEvent::done());
        events
    }
}

/// A rendered choice, shared by all `n` choices.
struct RenderedChoice {
    message: Value,
    /// The content when the reply is text; `None` for tool calls.
    text: Option<String>,
    /// `(id, name, arguments)` of each tool call.
    calls: Vec<(String, String, String)>,
    finish_reason: &'static str,
    tokens: u64,
}

/// Splits tool arguments into a few fragments, as OpenAI streams them.
fn argument_fragments(arguments: &str) -> Vec<&str> {
    const FRAGMENT: usize = 16;
    let mut fragments = Vec::new();
    let mut start = 0;
    while start < arguments.len() {
        let mut end = (start + FRAGMENT).min(arguments.len());
        while !arguments.is_char_boundary(end) {
            end += 1;
        }
        fragments.push(&arguments[start..end]);
        start = end;
    }
    fragments
}

/// OpenAI's usage object.
pub fn usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    })
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{ChatRequest, argument_fragments};
    use crate::{fault::Latency, reply::Reply, wire::ApiError};

    fn parse(body: Value) -> Result<ChatRequest, ApiError> {
        ChatRequest::parse(body.as_object().unwrap())
    }

    #[test]
    fn default_calls_a_forced_tool_with_schema_valid_arguments() {
        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}}, "required": ["city", "days"], "additionalProperties": false});
        let request = parse(json!({
            "model": "m",
            "messages": [{"role": "user", "content": "weather?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": schema}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        }))
        .unwrap();
        let Reply::ToolCalls(calls) = request.default_decision(Latency::default()).reply else {
            panic!("expected a tool call");
        };
        assert_eq!(calls[0].name, "get_weather");
        assert!(jsonschema::is_valid(&schema, &calls[0].arguments));
    }

    #[test]
    fn default_answers_text_after_a_tool_result() {
        let request = parse(json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            ],
            "tools": [{"type": "function", "function": {"name": "f"}}],
        }))
        .unwrap();
        assert!(matches!(
            request.default_decision(Latency::default()).reply,
            Reply::Text(_)
        ));
    }

    #[test]
    fn argument_fragments_rejoin() {
        let args = r#"{"city":"Zürich","days":3,"note":"ünïcödé text"}"#;
        assert_eq!(argument_fragments(args).concat(), args);
        assert!(argument_fragments(args).len() > 1);
    }
}
