//! `POST /v1/responses`: the Responses API, plain and as a stream of typed SSE events.
//!
//! Owns the mapping from a Responses request to the chat request the default reply is derived
//! from (so both endpoints answer the same question the same way) and the Responses wire
//! format of the answer: a `response` object, or `response.created` … `response.completed`.

use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{
    chat::{ChatRequest, Message, ResponseFormat, Tool, parse_tool_choice, unix_now},
    fault::{Fault, Latency},
    reply::Reply,
    respond::{self, SseEvent},
    rules::{Endpoint, RequestView},
    synth,
    wire::{ApiError, json_kind, optional_bool, optional_u64, required_str},
};

/// A checked Responses API request, kept as the chat request it amounts to.
#[derive(Debug, Clone)]
pub struct ResponsesRequest {
    chat: ChatRequest,
    instructions: Option<String>,
    tools: Value,
    text_format: Value,
    /// Echoed back as sent (`tool_choice`, `temperature`, `top_p`), as OpenAI does.
    echoed: [Value; 3],
}

impl ResponsesRequest {
    /// Checks a request body.
    ///
    /// # Errors
    ///
    /// A 400 naming the parameter at fault.
    pub fn parse(body: &Map<String, Value>) -> Result<Self, ApiError> {
        let model = required_str(body, "model")?.to_owned();
        let instructions = match body.get("instructions") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(other) => {
                return Err(ApiError::invalid(
                    "instructions",
                    format!("`instructions` must be a string, not {}", json_kind(other)),
                ));
            }
        };
        let mut messages: Vec<Message> = instructions
            .iter()
            .map(|text| Message {
                role: "system".to_owned(),
                text: text.clone(),
            })
            .collect();
        messages.extend(parse_input(body.get("input"))?);
        let tools = parse_tools(body.get("tools"))?;
        let tool_choice = parse_tool_choice(body.get("tool_choice"), &tools)?;
        let text_format = body
            .get("text")
            .and_then(|text| text.get("format"))
            .cloned()
            .unwrap_or_else(|| json!({"type": "text"}));
        let response_format = match text_format.get("type").and_then(Value::as_str) {
            Some("text") | None => ResponseFormat::Text,
            Some("json_object") => ResponseFormat::JsonObject,
            Some("json_schema") => ResponseFormat::JsonSchema(
                text_format
                    .get("schema")
                    .cloned()
                    .unwrap_or_else(|| json!({})),
            ),
            Some(other) => {
                return Err(ApiError::invalid(
                    "text.format.type",
                    format!(
                        "`text.format.type` must be text, json_object or json_schema, not `{other}`"
                    ),
                ));
            }
        };
        let stream = optional_bool(body, "stream")?;
        let max_tokens = optional_u64(body, "max_output_tokens")?;
        let seed = synth::seed_of(&[
            model.as_bytes(),
            body.get("input")
                .map(Value::to_string)
                .unwrap_or_default()
                .as_bytes(),
            instructions.as_deref().unwrap_or_default().as_bytes(),
            body.get("tools")
                .map(Value::to_string)
                .unwrap_or_default()
                .as_bytes(),
            text_format.to_string().as_bytes(),
        ]);
        Ok(Self {
            chat: ChatRequest {
                model,
                messages,
                tools,
                tool_choice,
                response_format,
                stream,
                include_usage: false,
                n: 1,
                stop: Vec::new(),
                max_tokens,
                seed,
                repeat_tool_call_head: false,
            },
            instructions,
            tools: body.get("tools").cloned().unwrap_or_else(|| json!([])),
            text_format,
            echoed: [
                body.get("tool_choice")
                    .cloned()
                    .unwrap_or_else(|| json!("auto")),
                body.get("temperature")
                    .cloned()
                    .unwrap_or_else(|| json!(1.0)),
                body.get("top_p").cloned().unwrap_or_else(|| json!(1.0)),
            ],
        })
    }

    /// What rules see of this request.
    pub fn view(&self) -> RequestView<'_> {
        RequestView {
            endpoint: Endpoint::Responses,
            ..self.chat.view()
        }
    }

    /// The deterministic default reply (the same as chat's for the same question).
    pub fn default_decision(&self, latency: Latency) -> super::reply::Decision {
        self.chat.default_decision(latency)
    }

    /// Writes `reply` as a `response` object or as a stream of events.
    pub fn render(&self, reply: &Reply, latency: Latency, fault: Option<Fault>) -> Response {
        let created = unix_now();
        let id = format!("resp_{}", synth::id_from(self.chat.seed, created));
        let (items, output_tokens, cut) = self.output_items(reply);
        let input_tokens: u64 = self
            .chat
            .messages
            .iter()
            .map(|m| synth::count_tokens(&m.text) + 3)
            .sum();
        let usage = json!({
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        });
        let status = if cut { "incomplete" } else { "completed" };
        let finished = self.response_object(&id, created, status, &items, usage.clone(), cut);
        if !self.chat.stream {
            return respond::json(&finished, fault.as_ref());
        }
        let started = self.response_object(&id, created, "in_progress", &[], Value::Null, false);
        let mut events = EventLog::default();
        events.push("response.created", json!({"response": started}), false);
        events.push("response.in_progress", json!({"response": started}), false);
        for (output_index, item) in items.iter().enumerate() {
            stream_item(&mut events, output_index, item);
        }
        let last = if cut {
            "response.incomplete"
        } else {
            "response.completed"
        };
        events.push(last, json!({"response": finished}), false);
        respond::sse(events.events, latency, fault)
    }

    /// The output items of a reply, its token count and whether `max_output_tokens` cut it.
    fn output_items(&self, reply: &Reply) -> (Vec<Value>, u64, bool) {
        let seed = self.chat.seed;
        match reply {
            Reply::ToolCalls(calls) => {
                let items: Vec<Value> = calls
                    .iter()
                    .enumerate()
                    .map(|(index, call)| {
                        json!({
                            "type": "function_call",
                            "id": format!("fc_{}", synth::id_from(seed, index as u64 + 1)),
                            "call_id": format!("call_{}", synth::id_from(seed, index as u64 + 1)),
                            "name": call.name,
                            "arguments": call.arguments.to_string(),
                            "status": "completed",
                        })
                    })
                    .collect();
                let tokens = calls
                    .iter()
                    .map(|c| synth::count_tokens(&c.arguments.to_string()))
                    .sum();
                (items, tokens, false)
            }
            other => {
                let raw = match other {
                    Reply::Json(value) => value.to_string(),
                    Reply::Text(text) => text.clone(),
                    _ => String::new(),
                };
                let (text, cut) = synth::truncate_to_tokens(&raw, self.chat.max_tokens);
                let tokens = synth::count_tokens(&text);
                let item = json!({
                    "type": "message",
                    "id": format!("msg_{}", synth::id_from(seed, 0)),
                    "status": if cut { "incomplete" } else { "completed" },
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
                });
                (vec![item], tokens, cut)
            }
        }
    }

    fn response_object(
        &self,
        id: &str,
        created: u64,
        status: &str,
        output: &[Value],
        usage: Value,
        cut: bool,
    ) -> Value {
        json!({
            "id": id,
            "object": "response",
            "created_at": created,
            "completed_at": if status == "in_progress" { Value::Null } else { created.into() },
            "status": status,
            "background": false,
            "error": null,
            "incomplete_details": if cut { json!({"reason": "max_output_tokens"}) } else { Value::Null },
            "instructions": self.instructions,
            "max_output_tokens": self.chat.max_tokens,
            "model": self.chat.model,
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": null,
            "reasoning": {"effort": null, "summary": null},
            "service_tier": "default",
            "store": true,
            "temperature": self.echoed[1],
            "text": {"format": self.text_format},
            "tool_choice": self.echoed[0],
            "tools": self.tools,
            "top_p": self.echoed[2],
            "truncation": "disabled",
            "usage": usage,
            "metadata": {},
        })
    }
}

/// Streamed events with their `sequence_number`s.
#[derive(Default)]
struct EventLog {
    events: Vec<SseEvent>,
}

impl EventLog {
    fn push(&mut self, kind: &str, mut payload: Value, content: bool) {
        if let Some(object) = payload.as_object_mut() {
            object.insert("type".to_owned(), kind.into());
            object.insert("sequence_number".to_owned(), self.events.len().into());
        }
        self.events.push(SseEvent::named(kind, &payload, content));
    }
}

/// The events of one output item: added, its deltas, done.
fn stream_item(events: &mut EventLog, output_index: usize, item: &Value) {
    let item_id = item["id"].clone();
    let mut opening = item.clone();
    if let Some(object) = opening.as_object_mut() {
        object.insert("status".to_owned(), "in_progress".into());
        if object.contains_key("content") {
            object.insert("content".to_owned(), json!([]));
        }
        if object.contains_key("arguments") {
            object.insert("arguments".to_owned(), "".into());
        }
    }
    events.push(
        "response.output_item.added",
        json!({"output_index": output_index, "item": opening}),
        false,
    );
    if item["type"] == "function_call" {
        let arguments = item["arguments"].as_str().unwrap_or_default();
        events.push(
            "response.function_call_arguments.delta",
            json!({"item_id": item_id, "output_index": output_index, "delta": arguments}),
            true,
        );
        events.push(
            "response.function_call_arguments.done",
            json!({"item_id": item_id, "output_index": output_index, "arguments": arguments, "name": item["name"]}),
            false,
        );
    } else {
        let text = item["content"][0]["text"].as_str().unwrap_or_default();
        let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
        events.push(
            "response.content_part.added",
            json!({"item_id": item_id, "output_index": output_index, "content_index": 0, "part": part("")}),
            false,
        );
        for piece in synth::stream_pieces(text) {
            events.push(
                "response.output_text.delta",
                json!({"item_id": item_id, "output_index": output_index, "content_index": 0, "delta": piece, "logprobs": []}),
                true,
            );
        }
        events.push(
            "response.output_text.done",
            json!({"item_id": item_id, "output_index": output_index, "content_index": 0, "text": text, "logprobs": []}),
            false,
        );
        events.push(
            "response.content_part.done",
            json!({"item_id": item_id, "output_index": output_index, "content_index": 0, "part": part(text)}),
            false,
        );
    }
    events.push(
        "response.output_item.done",
        json!({"output_index": output_index, "item": item}),
        false,
    );
}

/// `input`: a string (one user message) or a list of message and tool-output items.
fn parse_input(value: Option<&Value>) -> Result<Vec<Message>, ApiError> {
    match value {
        None | Some(Value::Null) => Err(ApiError::invalid("input", "you must provide `input`")),
        Some(Value::String(text)) => Ok(vec![Message {
            role: "user".to_owned(),
            text: text.clone(),
        }]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let kind = item
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("message");
                match kind {
                    "message" => {
                        let role = item.get("role").and_then(Value::as_str).ok_or_else(|| {
                            ApiError::invalid(
                                format!("input[{index}].role"),
                                format!("`input[{index}].role` is missing"),
                            )
                        })?;
                        let text = match item.get("content") {
                            Some(Value::String(text)) => text.clone(),
                            Some(Value::Array(parts)) => parts
                                .iter()
                                .filter_map(|p| p.get("text").and_then(Value::as_str))
                                .collect(),
                            _ => String::new(),
                        };
                        Ok(Message {
                            role: role.to_owned(),
                            text,
                        })
                    }
                    "function_call_output" => Ok(Message {
                        role: "tool".to_owned(),
                        text: item
                            .get("output")
                            .map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_owned))
                            .unwrap_or_default(),
                    }),
                    _ => Ok(Message {
                        role: "assistant".to_owned(),
                        text: String::new(),
                    }),
                }
            })
            .collect(),
        Some(other) => Err(ApiError::invalid(
            "input",
            format!(
                "`input` must be a string or an array of items, not {}",
                json_kind(other)
            ),
        )),
    }
}

/// Responses tools are flat: `{"type": "function", "name": ..., "parameters": ...}`.
fn parse_tools(value: Option<&Value>) -> Result<Vec<Tool>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => Ok(list
            .iter()
            .filter(|tool| tool.get("type").and_then(Value::as_str) == Some("function"))
            .filter_map(|tool| {
                Some(Tool {
                    name: tool.get("name")?.as_str()?.to_owned(),
                    parameters: tool
                        .get("parameters")
                        .cloned()
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                })
            })
            .collect()),
        Some(other) => Err(ApiError::invalid(
            "tools",
            format!("`tools` must be an array, not {}", json_kind(other)),
        )),
    }
}
