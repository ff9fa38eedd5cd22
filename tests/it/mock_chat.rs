//! `POST /v1/chat/completions` of the mock, driven by async-openai (the client chainlog uses):
//! the deterministic default reply, `n`, `stop`, `max_completion_tokens`, streaming with usage,
//! forced / required / auto tool calls (plain and streamed, raw SSE checked too), the tool
//! result round trip, `json_object` and `json_schema` output — and what the journal keeps.

use std::time::Duration;

use async_openai::{
    Client,
    config::OpenAIConfig,
    types::chat::{
        ChatCompletionMessageToolCalls, ChatCompletionRequestMessage,
        ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequest,
        CreateChatCompletionRequestArgs, CreateChatCompletionResponse,
        CreateChatCompletionStreamResponse, FinishReason, Role,
    },
};
use chainlog::mock::{MockConfig, MockServer};
use futures::StreamExt;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

async fn start() -> MockServer {
    MockServer::start(MockConfig::default())
        .await
        .expect("mock server starts")
}

fn client(server: &MockServer) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_base(server.base_url())
            .with_api_key("sk-test"),
    )
}

/// A typed request from its wire JSON (what async-openai serializes is what the mock sees).
fn request(body: Value) -> CreateChatCompletionRequest {
    serde_json::from_value(body).expect("a valid async-openai chat request")
}

/// The JSON async-openai puts on the wire for `request`.
fn wire(request: &CreateChatCompletionRequest) -> Value {
    serde_json::from_slice(&serde_json::to_vec(request).unwrap()).unwrap()
}

fn text_of(response: &CreateChatCompletionResponse, choice: usize) -> String {
    response.choices[choice]
        .message
        .content
        .clone()
        .expect("the choice has text content")
}

/// `(name, arguments)` of each function tool call of a choice.
fn calls_of(response: &CreateChatCompletionResponse) -> Vec<(String, String, String)> {
    response.choices[0]
        .message
        .tool_calls
        .as_ref()
        .expect("the choice has tool calls")
        .iter()
        .map(|call| match call {
            ChatCompletionMessageToolCalls::Function(call) => (
                call.id.clone(),
                call.function.name.clone(),
                call.function.arguments.clone(),
            ),
            ChatCompletionMessageToolCalls::Custom(other) => {
                panic!("expected a function call, got {other:?}")
            }
        })
        .collect()
}

fn assert_valid(schema: &Value, instance: &Value) {
    let validator = jsonschema::validator_for(schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|error| format!("{error} at {}", error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{instance:#} does not fit {schema:#}: {errors:?}"
    );
}

/// Collects a whole stream; panics on an item error or a stream that does not end.
async fn collect_stream(
    client: &Client<OpenAIConfig>,
    request: CreateChatCompletionRequest,
) -> Vec<CreateChatCompletionStreamResponse> {
    let mut stream = client
        .chat()
        .create_stream(request)
        .await
        .expect("the stream opens");
    let mut chunks = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = stream.next().await {
            chunks.push(chunk.expect("every chunk parses"));
        }
    })
    .await
    .expect("the stream ends (after [DONE])");
    chunks
}

/// `data:` payloads of a raw SSE body, `[DONE]` included.
fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            frame
                .lines()
                .filter_map(|line| line.strip_prefix("data: "))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

fn weather_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "minLength": 1},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "hourly": {"type": "boolean"}
        },
        "required": ["city", "unit", "days", "hourly"],
        "additionalProperties": false
    })
}

fn time_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "timezone": {"type": "string", "pattern": "^[A-Z][a-z]+/[A-Z][a-z]+$"},
            "format": {"type": "string", "enum": ["12h", "24h"]}
        },
        "required": ["timezone", "format"],
        "additionalProperties": false
    })
}

fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather forecast", "parameters": weather_schema(), "strict": true}},
        {"type": "function", "function": {"name": "get_time", "description": "Local time", "parameters": time_schema(), "strict": true}}
    ])
}

fn schema_of(tool: &str) -> Value {
    match tool {
        "get_weather" => weather_schema(),
        "get_time" => time_schema(),
        other => panic!("the mock called a tool that was not offered: {other}"),
    }
}

/// A schema with nested objects, arrays, enums, `$defs`/`$ref`, `anyOf` and bounds.
fn order_schema() -> Value {
    json!({
        "type": "object",
        "$defs": {
            "address": {
                "type": "object",
                "properties": {
                    "street": {"type": "string", "minLength": 1},
                    "city": {"type": "string"},
                    "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
                    "country": {"$ref": "#/$defs/country"}
                },
                "required": ["street", "city", "zip", "country"],
                "additionalProperties": false
            },
            "country": {"type": "string", "enum": ["DE", "FR", "CH"]},
            "line": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "pattern": "^SKU-[0-9]{4}$"},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
                    "price": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000}
                },
                "required": ["sku", "quantity", "price"],
                "additionalProperties": false
            }
        },
        "properties": {
            "order_id": {"type": "string", "format": "uuid"},
            "status": {"type": "string", "enum": ["pending", "shipped", "delivered"]},
            "customer": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 2, "maxLength": 40},
                    "email": {"type": "string", "format": "email"},
                    "shipping": {"$ref": "#/$defs/address"},
                    "billing": {"anyOf": [{"$ref": "#/$defs/address"}, {"type": "null"}]}
                },
                "required": ["name", "email", "shipping", "billing"],
                "additionalProperties": false
            },
            "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}, "minItems": 1, "maxItems": 5},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["gift", "express", "fragile"]}, "uniqueItems": true},
            "priority": {"type": "integer", "enum": [1, 2, 3]},
            "paid": {"type": "boolean"}
        },
        "required": ["order_id", "status", "customer", "lines", "tags", "priority", "paid"],
        "additionalProperties": false
    })
}

// ---------------------------------------------------------------------------------------------
// Plain completions
// ---------------------------------------------------------------------------------------------

/// Proves the default reply of a plain chat completion: one assistant choice whose text quotes
/// the user's message, finish reason `stop`, usage with `total = prompt + completion`, the
/// model echoed — and that the same request gets the same text again (determinism), while the
/// journal records both requests as answered by the default.
#[tokio::test]
async fn plain_chat_quotes_the_user_and_is_deterministic() {
    let server = start().await;
    let client = client(&server);
    let req = CreateChatCompletionRequestArgs::default()
        .model("gpt-4o-mini")
        .messages(vec![
            ChatCompletionRequestMessage::System("You are terse.".into()),
            ChatCompletionRequestUserMessageArgs::default()
                .content("Summarise the plot of Hamlet")
                .build()
                .unwrap()
                .into(),
        ])
        .build()
        .unwrap();

    let first = client.chat().create(req.clone()).await.unwrap();
    let second = client.chat().create(req).await.unwrap();

    assert_eq!(first.object, "chat.completion");
    assert_eq!(first.model, "gpt-4o-mini");
    assert_eq!(first.choices.len(), 1);
    let choice = &first.choices[0];
    assert_eq!(choice.index, 0);
    assert_eq!(choice.message.role, Role::Assistant);
    assert_eq!(choice.finish_reason, Some(FinishReason::Stop));
    assert!(choice.message.tool_calls.is_none());
    let text = text_of(&first, 0);
    assert!(text.starts_with("Mock reply "), "{text}");
    assert!(text.contains("Summarise the plot of Hamlet"), "{text}");
    assert_eq!(text, text_of(&second, 0), "same request, same reply");

    let usage = first.usage.expect("usage");
    assert!(usage.prompt_tokens > 0 && usage.completion_tokens > 0);
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );
    assert_eq!(second.usage.unwrap(), usage);

    let journal = server.requests();
    assert_eq!(journal.len(), 2);
    for entry in &journal {
        assert_eq!(entry.method, "POST");
        assert_eq!(entry.path, "/v1/chat/completions");
        assert_eq!(entry.answered_by, "default");
        assert_eq!(entry.status, 200);
    }
    assert!(journal[0].seq < journal[1].seq);
}

/// Proves that a different question gets a different default reply (the reply is derived from
/// the request, not constant).
#[tokio::test]
async fn different_questions_get_different_replies() {
    let server = start().await;
    let client = client(&server);
    let ask = |text: &str| {
        request(json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}))
    };
    let a = client.chat().create(ask("What is a fjord?")).await.unwrap();
    let b = client.chat().create(ask("What is a delta?")).await.unwrap();
    assert_ne!(text_of(&a, 0), text_of(&b, 0));
    assert!(text_of(&b, 0).contains("What is a delta?"));
}

/// Proves that `n: 3` yields three choices indexed 0, 1, 2, each a finished assistant message,
/// and that completion tokens are counted for all three.
#[tokio::test]
async fn n_three_returns_three_choices() {
    let server = start().await;
    let client = client(&server);
    let body =
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Name a colour"}]});
    let single = client.chat().create(request(body.clone())).await.unwrap();
    let mut with_n = body;
    with_n["n"] = json!(3);
    let three = client.chat().create(request(with_n)).await.unwrap();

    assert_eq!(three.choices.len(), 3);
    for (index, choice) in three.choices.iter().enumerate() {
        assert_eq!(choice.index as usize, index);
        assert_eq!(choice.finish_reason, Some(FinishReason::Stop));
        assert!(
            choice
                .message
                .content
                .as_deref()
                .unwrap()
                .contains("Name a colour")
        );
    }
    let one = single.usage.unwrap();
    let all = three.usage.unwrap();
    assert_eq!(all.prompt_tokens, one.prompt_tokens);
    assert_eq!(all.completion_tokens, 3 * one.completion_tokens);
    assert_eq!(all.total_tokens, all.prompt_tokens + all.completion_tokens);
    assert_eq!(server.requests()[1].body["n"], 3);
}

/// Proves that a `stop` sequence cuts the reply just before its first occurrence, with finish
/// reason `stop`, and that the kept part is exactly the uncut reply's prefix.
#[tokio::test]
async fn stop_sequence_cuts_the_reply() {
    let server = start().await;
    let client = client(&server);
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "alpha beta HALT gamma delta"}]});
    let full = text_of(
        &client.chat().create(request(body.clone())).await.unwrap(),
        0,
    );
    let mut stopped = body;
    stopped["stop"] = json!(["HALT", "never-there"]);
    let response = client.chat().create(request(stopped)).await.unwrap();

    let text = text_of(&response, 0);
    let at = full
        .find("HALT")
        .expect("the uncut reply quotes the stop word");
    assert_eq!(text, full[..at]);
    assert!(!text.contains("HALT") && !text.contains("gamma"), "{text}");
    assert_eq!(response.choices[0].finish_reason, Some(FinishReason::Stop));
}

/// Proves that `max_completion_tokens` cuts the reply short with finish reason `length`, and the
/// cut text is a prefix of the uncut reply.
#[tokio::test]
async fn max_completion_tokens_cuts_with_finish_reason_length() {
    let server = start().await;
    let client = client(&server);
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three four five six seven eight"}]});
    let full = text_of(
        &client.chat().create(request(body.clone())).await.unwrap(),
        0,
    );
    let mut limited = body;
    limited["max_completion_tokens"] = json!(4);
    let response = client.chat().create(request(limited)).await.unwrap();

    let text = text_of(&response, 0);
    assert!(text.len() < full.len(), "{text:?} vs {full:?}");
    assert!(
        full.starts_with(&text),
        "{text:?} is not a prefix of {full:?}"
    );
    assert_eq!(
        response.choices[0].finish_reason,
        Some(FinishReason::Length)
    );
    let usage = response.usage.unwrap();
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );
}

/// Proves that a reply cut by `max_completion_tokens` never reports more completion tokens than
/// the limit allowed (OpenAI's invariant: `usage.completion_tokens <= max_completion_tokens`).
#[tokio::test]
async fn length_cut_reply_reports_no_more_tokens_than_the_limit() {
    let server = start().await;
    let client = client(&server);
    let response = client
        .chat()
        .create(request(json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "one two three four five six seven eight"}],
            "max_completion_tokens": 3
        })))
        .await
        .unwrap();
    assert_eq!(
        response.choices[0].finish_reason,
        Some(FinishReason::Length)
    );
    let usage = response.usage.clone().unwrap();
    assert!(
        usage.completion_tokens <= 3,
        "max_completion_tokens 3, but usage.completion_tokens = {} for {:?}",
        usage.completion_tokens,
        text_of(&response, 0)
    );
}

// ---------------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------------

/// Proves a streamed completion with `include_usage` through async-openai's `create_stream`:
/// the first delta carries the assistant role, the deltas add up to exactly the plain reply to
/// the same request, the last choice chunk says `stop`, a final chunk has empty `choices` and
/// the usage (equal to the plain reply's), no other chunk has usage, and the stream ends.
#[tokio::test]
async fn stream_with_usage_adds_up_to_the_plain_reply() {
    let server = start().await;
    let client = client(&server);
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Tell me a short story about a lighthouse keeper"}]});
    let plain = client.chat().create(request(body.clone())).await.unwrap();
    let mut streamed = body;
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let chunks = collect_stream(&client, request(streamed)).await;

    assert!(chunks.len() >= 4, "{chunks:?}");
    let first = &chunks[0];
    assert_eq!(first.object, "chat.completion.chunk");
    assert_eq!(first.choices[0].delta.role, Some(Role::Assistant));
    let ids: std::collections::HashSet<_> = chunks.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids.len(), 1, "every chunk carries the same id");

    let (last, body_chunks) = chunks.split_last().unwrap();
    assert!(last.choices.is_empty(), "usage chunk has no choices");
    let usage = last.usage.clone().expect("the final chunk carries usage");
    assert_eq!(usage, plain.usage.clone().unwrap());
    assert!(body_chunks.iter().all(|c| c.usage.is_none()));

    let text: String = body_chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|choice| choice.delta.content.clone())
        .collect();
    assert_eq!(text, text_of(&plain, 0));
    let finishes: Vec<_> = body_chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|choice| choice.finish_reason)
        .collect();
    assert_eq!(finishes, vec![FinishReason::Stop]);
    assert_eq!(
        body_chunks.last().unwrap().choices[0].finish_reason,
        Some(FinishReason::Stop)
    );

    let journal = server.requests();
    assert_eq!(journal[1].body["stream"], true);
    assert_eq!(journal[1].body["stream_options"]["include_usage"], true);
}

/// Proves that without `stream_options.include_usage` no chunk carries usage, and the raw
/// stream is OpenAI's: `data:` lines of `chat.completion.chunk`s ending in `data: [DONE]`.
#[tokio::test]
async fn stream_without_usage_has_no_usage_chunk_and_ends_with_done() {
    let server = start().await;
    let body = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hello there"}]});
    let chunks = collect_stream(&client(&server), request(body.clone())).await;
    assert!(
        chunks
            .iter()
            .all(|c| c.usage.is_none() && !c.choices.is_empty())
    );

    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(data.len(), chunks.len() + 1);
    for payload in &data[..data.len() - 1] {
        let chunk: Value = serde_json::from_str(payload).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert!(chunk.get("usage").is_none_or(Value::is_null));
    }
}

/// Proves that a streamed `n: 2` completion streams both choices, each adding up to the reply.
#[tokio::test]
async fn stream_with_n_two_streams_both_choices() {
    let server = start().await;
    let client = client(&server);
    let body = json!({"model": "gpt-4o-mini", "n": 2, "messages": [{"role": "user", "content": "two answers please"}]});
    let plain = client.chat().create(request(body.clone())).await.unwrap();
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let chunks = collect_stream(&client, request(streamed)).await;
    for index in 0..2u32 {
        let text: String = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter(|choice| choice.index == index)
            .filter_map(|choice| choice.delta.content.clone())
            .collect();
        assert_eq!(text, text_of(&plain, index as usize));
    }
}

// ---------------------------------------------------------------------------------------------
// Tool calls
// ---------------------------------------------------------------------------------------------

/// Proves that `tool_choice` naming a function makes the default call exactly that function
/// (not the other offered tool), with finish reason `tool_calls`, no text, a `call_` id, and
/// arguments that are a JSON string valid against the tool's `parameters` schema.
#[tokio::test]
async fn forced_tool_call_has_schema_valid_arguments() {
    let server = start().await;
    let client = client(&server);
    for question in ["Weather in Paris?", "Weather in Bern for a week?", "Rain?"] {
        let response = client
            .chat()
            .create(request(json!({
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": question}],
                "tools": tools(),
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}}
            })))
            .await
            .unwrap();
        let choice = &response.choices[0];
        assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(choice.message.content, None);
        let calls = calls_of(&response);
        assert_eq!(calls.len(), 1);
        let (id, name, arguments) = &calls[0];
        assert!(id.starts_with("call_"), "{id}");
        assert_eq!(name, "get_weather");
        let arguments: Value = serde_json::from_str(arguments).expect("arguments are JSON");
        assert_valid(&weather_schema(), &arguments);
    }
}

/// Proves that `tool_choice: "required"` makes the default call one of the offered tools, with
/// arguments valid against that tool's schema.
#[tokio::test]
async fn required_tool_choice_calls_an_offered_tool() {
    let server = start().await;
    let client = client(&server);
    let mut called = std::collections::HashSet::new();
    for n in 0..8 {
        let response = client
            .chat()
            .create(request(json!({
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": format!("question number {n}")}],
                "tools": tools(),
                "tool_choice": "required"
            })))
            .await
            .unwrap();
        assert_eq!(
            response.choices[0].finish_reason,
            Some(FinishReason::ToolCalls)
        );
        let calls = calls_of(&response);
        assert_eq!(calls.len(), 1);
        let (_, name, arguments) = &calls[0];
        assert_valid(&schema_of(name), &serde_json::from_str(arguments).unwrap());
        called.insert(name.clone());
    }
    assert!(!called.is_empty());
}

/// Proves a streamed forced tool call through async-openai: fragments accumulated by `index`
/// give the same id, name and arguments as the plain reply to the same request, the arguments
/// validate against the schema, and the stream finishes with `tool_calls`.
#[tokio::test]
async fn streamed_forced_tool_call_accumulates_to_the_plain_call() {
    let server = start().await;
    let client = client(&server);
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "What's the weather in Zürich this week?"}],
        "tools": tools(),
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}
    });
    let plain = calls_of(&client.chat().create(request(body.clone())).await.unwrap());
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let chunks = collect_stream(&client, request(streamed)).await;

    // index -> (id, name, arguments)
    let mut calls: std::collections::BTreeMap<u32, (String, String, String)> = Default::default();
    let mut finish = None;
    for choice in chunks.iter().flat_map(|c| &c.choices) {
        assert!(choice.delta.content.as_deref().unwrap_or("").is_empty());
        for fragment in choice.delta.tool_calls.iter().flatten() {
            let entry = calls.entry(fragment.index).or_default();
            if let Some(id) = &fragment.id {
                entry.0.push_str(id);
            }
            if let Some(function) = &fragment.function {
                if let Some(name) = &function.name {
                    entry.1.push_str(name);
                }
                if let Some(arguments) = &function.arguments {
                    entry.2.push_str(arguments);
                }
            }
        }
        finish = finish.or(choice.finish_reason);
    }
    assert_eq!(finish, Some(FinishReason::ToolCalls));
    let calls: Vec<_> = calls.into_values().collect();
    assert_eq!(calls, plain);
    assert_valid(
        &weather_schema(),
        &serde_json::from_str(&calls[0].2).unwrap(),
    );
}

/// Proves the raw SSE of a streamed tool call (checked with reqwest, byte for byte as OpenAI
/// clients see it): the id, type and name come only on the first fragment of a call, later
/// fragments carry only `index` and an `arguments` piece, the arguments come in several
/// fragments, and the stream ends with `data: [DONE]`.
#[tokio::test]
async fn raw_streamed_tool_call_sends_id_and_name_only_on_the_first_fragment() {
    let server = start().await;
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base_url()))
        .bearer_auth("sk-test")
        .json(&json!({
            "model": "gpt-4o-mini",
            "stream": true,
            "messages": [{"role": "user", "content": "What time is it in Berlin?"}],
            "tools": tools(),
            "tool_choice": "required"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let data = sse_data(&response.text().await.unwrap());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));

    let fragments: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|payload| serde_json::from_str::<Value>(payload).unwrap())
        .flat_map(|chunk| {
            chunk["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert!(
        fragments.len() >= 3,
        "head + several argument pieces: {fragments:?}"
    );
    let head = &fragments[0];
    assert_eq!(head["index"], 0);
    assert!(head["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(head["type"], "function");
    let name = head["function"]["name"].as_str().unwrap();
    for fragment in &fragments[1..] {
        assert_eq!(fragment["index"], 0);
        assert!(fragment.get("id").is_none(), "id repeated: {fragment}");
        assert!(fragment.get("type").is_none(), "type repeated: {fragment}");
        assert!(
            fragment["function"].get("name").is_none(),
            "name repeated: {fragment}"
        );
        assert!(fragment["function"]["arguments"].is_string());
    }
    let arguments: String = fragments
        .iter()
        .map(|f| f["function"]["arguments"].as_str().unwrap())
        .collect();
    assert_valid(&schema_of(name), &serde_json::from_str(&arguments).unwrap());

    let last_choice_chunk: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(
        last_choice_chunk["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

/// Proves the tool-result round trip with `tool_choice: auto` (the default with tools): the
/// user's question gets a tool call; sending back the assistant's call and a `tool` message
/// answering it gets text, and the journal holds both turns with the tool message as sent.
#[tokio::test]
async fn auto_tool_choice_round_trips_a_tool_result_into_text() {
    let server = start().await;
    let client = client(&server);
    let question = json!({"role": "user", "content": "Do I need an umbrella in Oslo?"});
    let first = client
        .chat()
        .create(request(json!({
            "model": "gpt-4o-mini",
            "messages": [question],
            "tools": tools(),
            "tool_choice": "auto"
        })))
        .await
        .unwrap();
    assert_eq!(
        first.choices[0].finish_reason,
        Some(FinishReason::ToolCalls)
    );
    let (id, name, arguments) = calls_of(&first).remove(0);
    assert_valid(
        &schema_of(&name),
        &serde_json::from_str(&arguments).unwrap(),
    );

    let second_request = request(json!({
        "model": "gpt-4o-mini",
        "messages": [
            question,
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}
            ]},
            {"role": "tool", "tool_call_id": id, "content": "{\"forecast\": \"rain\"}"}
        ],
        "tools": tools(),
        "tool_choice": "auto"
    }));
    let second = client.chat().create(second_request.clone()).await.unwrap();
    let choice = &second.choices[0];
    assert_eq!(choice.finish_reason, Some(FinishReason::Stop));
    assert!(choice.message.tool_calls.is_none());
    let text = choice.message.content.as_deref().unwrap();
    assert!(text.contains("Do I need an umbrella in Oslo?"), "{text}");

    let journal = server.requests();
    assert_eq!(journal.len(), 2);
    assert_eq!(journal[1].body, wire(&second_request));
    assert_eq!(journal[1].body["messages"][2]["role"], "tool");
    assert_eq!(journal[1].body["messages"][2]["tool_call_id"], id.as_str());
}

/// Proves that `tool_choice: "none"` with tools offered gets text, not a tool call.
#[tokio::test]
async fn tool_choice_none_answers_with_text() {
    let server = start().await;
    let response = client(&server)
        .chat()
        .create(request(json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Just chat"}],
            "tools": tools(),
            "tool_choice": "none"
        })))
        .await
        .unwrap();
    assert_eq!(response.choices[0].finish_reason, Some(FinishReason::Stop));
    assert!(text_of(&response, 0).contains("Just chat"));
}

// ---------------------------------------------------------------------------------------------
// Structured output
// ---------------------------------------------------------------------------------------------

/// Proves that `response_format: json_object` gets content that parses as a JSON object.
#[tokio::test]
async fn json_object_format_returns_a_json_object() {
    let server = start().await;
    let response = client(&server)
        .chat()
        .create(request(json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Answer in JSON."},
                {"role": "user", "content": "List three fruits"}
            ],
            "response_format": {"type": "json_object"}
        })))
        .await
        .unwrap();
    let content: Value = serde_json::from_str(&text_of(&response, 0)).expect("content is JSON");
    assert!(content.is_object(), "{content}");
    assert_eq!(response.choices[0].finish_reason, Some(FinishReason::Stop));
}

/// Proves that `response_format: json_schema` (strict, with nested objects, arrays, enums,
/// `$defs`/`$ref`, `anyOf`, patterns and bounds) gets content valid against the schema, for
/// several different questions, and the same question gets the same JSON again.
#[tokio::test]
async fn json_schema_format_returns_schema_valid_content() {
    let server = start().await;
    let client = client(&server);
    let ask = |text: &str| {
        request(json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": text}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "order", "schema": order_schema(), "strict": true}}
        }))
    };
    for question in [
        "Make up an order",
        "Another order please",
        "An order for Lyon",
        "x",
        "Ein Auftrag für Zürich",
    ] {
        let response = client.chat().create(ask(question)).await.unwrap();
        let content: Value = serde_json::from_str(&text_of(&response, 0)).expect("JSON content");
        assert_valid(&order_schema(), &content);
        let again = client.chat().create(ask(question)).await.unwrap();
        assert_eq!(text_of(&again, 0), text_of(&response, 0));
    }
}

/// Proves that a streamed `json_schema` reply adds up to schema-valid JSON.
#[tokio::test]
async fn streamed_json_schema_reply_adds_up_to_valid_json() {
    let server = start().await;
    let chunks = collect_stream(
        &client(&server),
        request(json!({
            "model": "gpt-4o-mini",
            "stream": true,
            "messages": [{"role": "user", "content": "Stream an order"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "order", "schema": order_schema()}}
        })),
    )
    .await;
    let text: String = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|choice| choice.delta.content.clone())
        .collect();
    assert_valid(&order_schema(), &serde_json::from_str(&text).unwrap());
}

// ---------------------------------------------------------------------------------------------
// Journal
// ---------------------------------------------------------------------------------------------

/// Proves that the journal keeps the request body exactly as async-openai sent it: model,
/// messages (all roles, content parts), tools, tool_choice, response_format, temperature and
/// the other parameters, in-process (`MockServer::requests`) and over HTTP
/// (`GET /_mock/requests`).
#[tokio::test]
async fn journal_keeps_the_request_exactly_as_sent() {
    let server = start().await;
    let req = request(json!({
        "model": "gpt-4.1-mini",
        "messages": [
            {"role": "developer", "content": "Follow the rules."},
            {"role": "system", "content": "You are a travel agent."},
            {"role": "user", "content": [{"type": "text", "text": "Plan a trip "}, {"type": "text", "text": "to Rome"}], "name": "ana"},
            {"role": "assistant", "content": "Which dates?"},
            {"role": "user", "content": "May 3 to 7"}
        ],
        "tools": tools(),
        "tool_choice": "none",
        "response_format": {"type": "json_schema", "json_schema": {"name": "trip", "schema": {"type": "object", "properties": {"days": {"type": "integer"}}, "required": ["days"], "additionalProperties": false}, "strict": true}},
        "temperature": 0.25,
        "top_p": 0.5,
        "max_completion_tokens": 200,
        "seed": 42,
        "metadata": {"suite": "mock_chat"}
    }));
    let response = client(&server).chat().create(req.clone()).await.unwrap();
    let content: Value = serde_json::from_str(&text_of(&response, 0)).unwrap();
    assert!(content["days"].is_i64(), "{content}");

    let entries = server.requests();
    assert_eq!(entries.len(), 1);
    let body = &entries[0].body;
    assert_eq!(body, &wire(&req));
    assert_eq!(body["model"], "gpt-4.1-mini");
    assert_eq!(body["temperature"], 0.25);
    assert_eq!(body["messages"].as_array().unwrap().len(), 5);
    assert_eq!(body["messages"][2]["content"][1]["text"], "to Rome");
    assert_eq!(body["tools"], tools());
    assert_eq!(body["response_format"]["json_schema"]["name"], "trip");

    let over_http: Value = reqwest::get(format!("http://{}/_mock/requests", server.addr()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http[0]["body"], wire(&req));
    assert_eq!(over_http[0]["answered_by"], "default");
    assert_eq!(over_http[0]["status"], 200);
}
