//! The mock's other endpoints and its HTTP edges, driven by async-openai and raw reqwest:
//! `/v1/models`, `/v1/embeddings` (float and base64), the Responses API (plain, streamed, a
//! forced function call), bearer auth, OpenAI's 400 error body for malformed requests, unknown
//! paths, garbage bodies, and the journal over HTTP (`GET`/`DELETE /_mock/requests`).

use std::time::Duration;

use async_openai::{
    Client,
    config::OpenAIConfig,
    error::OpenAIError,
    types::{
        chat::CreateChatCompletionRequest,
        embeddings::{CreateEmbeddingRequest, EncodingFormat},
        responses::{CreateResponse, OutputItem, Response, ResponseStreamEvent},
    },
};
use chainlog::mock::{MockConfig, MockServer};
use futures::StreamExt;
use secrecy::SecretString;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

async fn start_with(config: MockConfig) -> MockServer {
    MockServer::start(config).await.expect("mock server starts")
}

async fn start() -> MockServer {
    start_with(MockConfig::default()).await
}

fn client_with_key(server: &MockServer, key: &str) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_base(server.base_url())
            .with_api_key(key),
    )
}

fn client(server: &MockServer) -> Client<OpenAIConfig> {
    client_with_key(server, "sk-test")
}

fn url(server: &MockServer, path: &str) -> String {
    format!("http://{}{path}", server.addr())
}

/// POSTs raw bytes as JSON and returns the status and the body parsed as JSON.
async fn post_raw(server: &MockServer, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url(server, path))
        .header("content-type", "application/json")
        .bearer_auth("sk-test")
        .body(body)
        .send()
        .await
        .expect("the mock answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, body)
}

/// Asserts OpenAI's error body: exactly the four keys, `message` and `type` strings.
fn assert_error_body(body: &Value) -> &serde_json::Map<String, Value> {
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {body}"));
    let mut keys: Vec<_> = error.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message", "param", "type"], "{body}");
    assert!(!error["message"].as_str().unwrap().is_empty());
    assert!(error["type"].is_string());
    assert!(error["param"].is_string() || error["param"].is_null());
    assert!(error["code"].is_string() || error["code"].is_null());
    error
}

fn assert_valid(schema: &Value, instance: &Value) {
    let validator = jsonschema::validator_for(schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|error| error.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{instance} does not fit {schema}: {errors:?}"
    );
}

fn embedding_request(body: Value) -> CreateEmbeddingRequest {
    serde_json::from_value(body).expect("a valid embeddings request")
}

fn responses_request(body: Value) -> CreateResponse {
    serde_json::from_value(body).expect("a valid Responses request")
}

fn chat_request(body: Value) -> CreateChatCompletionRequest {
    serde_json::from_value(body).expect("a valid chat request")
}

fn norm(vector: &[f32]) -> f32 {
    vector.iter().map(|x| x * x).sum::<f32>().sqrt()
}

fn event_json(event: &ResponseStreamEvent) -> Value {
    serde_json::to_value(event).unwrap()
}

fn weather_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 14}
        },
        "required": ["city", "unit", "days"],
        "additionalProperties": false
    })
}

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

/// Proves `GET /v1/models` through async-openai: every default model is listed as an entry
/// with `id`, `object: "model"`, `created` and `owned_by` (checked on the raw JSON too), and
/// the journal records the GET as answered by `models`.
#[tokio::test]
async fn models_list_has_openai_entries() {
    let server = start().await;
    let list = client(&server).models().list().await.unwrap();
    assert_eq!(list.object, "list");
    let ids: Vec<_> = list.data.iter().map(|m| m.id.as_str()).collect();
    for expected in ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"] {
        assert!(ids.contains(&expected), "{ids:?}");
    }
    for model in &list.data {
        assert_eq!(model.object, "model");
        assert!(model.created > 0);
        assert!(!model.owned_by.is_empty());
    }

    let raw: Value = reqwest::get(url(&server, "/v1/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for entry in raw["data"].as_array().unwrap() {
        for key in ["id", "object", "created", "owned_by"] {
            assert!(entry.get(key).is_some(), "{key} missing in {entry}");
        }
    }
    let journal = server.requests();
    assert_eq!(journal[0].method, "GET");
    assert_eq!(journal[0].path, "/v1/models");
    assert_eq!(journal[0].answered_by, "models");
    assert_eq!(journal[0].status, 200);
}

/// Proves that `MockConfig::with_models` sets what `/v1/models` lists.
#[tokio::test]
async fn models_list_follows_the_configured_models() {
    let server =
        start_with(MockConfig::default().with_models(vec!["m-one".into(), "m-two".into()])).await;
    let list = client(&server).models().list().await.unwrap();
    let ids: Vec<_> = list.data.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, ["m-one", "m-two"]);
}

/// Proves `GET /v1/models/{id}`: a listed model is returned; an unknown one is a 404 with
/// OpenAI's error body and code `model_not_found`, which async-openai maps to an `ApiError`.
#[tokio::test]
async fn model_retrieve_finds_listed_models_and_404s_unknown_ones() {
    let server = start().await;
    let client = client(&server);
    let model = client.models().retrieve("gpt-4o").await.unwrap();
    assert_eq!(model.id, "gpt-4o");
    assert_eq!(model.object, "model");

    match client.models().retrieve("gpt-17-ultra").await {
        Err(OpenAIError::ApiError(error)) => {
            assert_eq!(error.status_code, 404);
            assert_eq!(error.api_error.code.as_deref(), Some("model_not_found"));
            assert!(error.api_error.message.contains("gpt-17-ultra"));
        }
        other => panic!("expected a 404 ApiError, got {other:?}"),
    }

    let response = reqwest::get(url(&server, "/v1/models/gpt-17-ultra"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    let error = assert_error_body(&body);
    assert_eq!(error["code"], "model_not_found");
    let last = server.requests().pop().unwrap();
    assert_eq!(last.status, 404);
    assert_eq!(last.answered_by, "error:404");
}

// ---------------------------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------------------------

/// Proves float embeddings: one unit-length vector per input, of the configured default size
/// when the request names none, `dimensions` respected when it does, the same text always
/// embedded the same way, different texts differently, and usage counted.
#[tokio::test]
async fn float_embeddings_are_unit_length_deterministic_and_sized() {
    let server = start_with(MockConfig::default().with_embedding_dimensions(64)).await;
    let client = client(&server);
    let request = |dimensions: Option<u32>| {
        let mut body = json!({"model": "text-embedding-3-small", "input": ["the cat sat", "on the mat", "the cat sat"]});
        if let Some(d) = dimensions {
            body["dimensions"] = json!(d);
        }
        embedding_request(body)
    };

    let response = client.embeddings().create(request(None)).await.unwrap();
    assert_eq!(response.model, "text-embedding-3-small");
    assert_eq!(response.data.len(), 3);
    for (index, item) in response.data.iter().enumerate() {
        assert_eq!(item.index as usize, index);
        assert_eq!(item.object, "embedding");
        assert_eq!(item.embedding.len(), 64);
        assert!((norm(&item.embedding) - 1.0).abs() < 1e-4);
    }
    assert_eq!(response.data[0].embedding, response.data[2].embedding);
    assert_ne!(response.data[0].embedding, response.data[1].embedding);
    assert!(response.usage.prompt_tokens > 0);
    assert_eq!(response.usage.total_tokens, response.usage.prompt_tokens);

    let again = client.embeddings().create(request(None)).await.unwrap();
    assert_eq!(again.data[1].embedding, response.data[1].embedding);

    let sized = client
        .embeddings()
        .create(request(Some(256)))
        .await
        .unwrap();
    for item in &sized.data {
        assert_eq!(item.embedding.len(), 256);
        assert!((norm(&item.embedding) - 1.0).abs() < 1e-4);
    }
    assert_eq!(server.requests()[2].body["dimensions"], 256);
}

/// Proves that the default embedding size is OpenAI's 1536 when nothing configures it.
#[tokio::test]
async fn embeddings_default_to_1536_dimensions() {
    let server = start().await;
    let response = client(&server)
        .embeddings()
        .create(embedding_request(
            json!({"model": "text-embedding-3-small", "input": "hello"}),
        ))
        .await
        .unwrap();
    assert_eq!(response.data[0].embedding.len(), 1536);
}

/// Proves base64 embeddings (async-openai's `create_base64`): decoded as little-endian f32s they
/// are exactly the floats of the same request in float encoding, `dimensions` included.
#[tokio::test]
async fn base64_embeddings_decode_to_the_float_embeddings() {
    let server = start().await;
    let client = client(&server);
    let body =
        json!({"model": "text-embedding-3-large", "input": ["alpha", "beta"], "dimensions": 48});
    let floats = client
        .embeddings()
        .create(embedding_request(body.clone()))
        .await
        .unwrap();
    let mut base64_request = embedding_request(body);
    base64_request.encoding_format = Some(EncodingFormat::Base64);
    let encoded = client
        .embeddings()
        .create_base64(base64_request)
        .await
        .unwrap();

    assert_eq!(encoded.data.len(), 2);
    for (encoded, float) in encoded.data.into_iter().zip(&floats.data) {
        let decoded: Vec<f32> = encoded.embedding.into();
        assert_eq!(decoded.len(), 48);
        assert_eq!(&decoded, &float.embedding);
    }
    assert_eq!(server.requests()[1].body["encoding_format"], "base64");
}

// ---------------------------------------------------------------------------------------------
// Responses API
// ---------------------------------------------------------------------------------------------

/// Proves a plain Responses API call through async-openai: status `completed`, one message
/// output whose text (`output_text`) quotes the input, usage with `total = input + output`, and
/// the same request answered the same way twice.
#[tokio::test]
async fn responses_plain_returns_output_text_and_usage() {
    let server = start().await;
    let client = client(&server);
    let body = json!({"model": "gpt-4.1-mini", "instructions": "Be kind.", "input": "Describe a quiet harbour at dawn"});
    let response: Response = client
        .responses()
        .create(responses_request(body.clone()))
        .await
        .unwrap();
    assert_eq!(response.object, "response");
    assert_eq!(response.model, "gpt-4.1-mini");
    assert_eq!(serde_json::to_value(&response.status).unwrap(), "completed");
    let text = response.output_text().expect("output_text");
    assert!(text.contains("Describe a quiet harbour at dawn"), "{text}");
    assert_eq!(response.output.len(), 1);
    assert!(matches!(response.output[0], OutputItem::Message(_)));
    let usage = response.usage.clone().expect("usage");
    assert!(usage.input_tokens > 0 && usage.output_tokens > 0);
    assert_eq!(usage.total_tokens, usage.input_tokens + usage.output_tokens);

    let again = client
        .responses()
        .create(responses_request(body))
        .await
        .unwrap();
    assert_eq!(again.output_text(), Some(text));
    let journal = server.requests();
    assert_eq!(journal[0].path, "/v1/responses");
    assert_eq!(journal[0].body["instructions"], "Be kind.");
    assert_eq!(journal[0].answered_by, "default");
}

/// Proves the Responses stream through async-openai: the event sequence is exactly
/// `response.created`, `response.in_progress`, `response.output_item.added`,
/// `response.content_part.added`, one or more `response.output_text.delta`,
/// `response.output_text.done`, `response.content_part.done`, `response.output_item.done`,
/// `response.completed`; `sequence_number` increases by one from 0; the deltas add up to the
/// done text, which is the plain reply to the same request and the completed response's text.
#[tokio::test]
async fn responses_stream_emits_openai_event_sequence() {
    let server = start().await;
    let client = client(&server);
    let body = json!({"model": "gpt-4.1-mini", "input": "Write a haiku about rivers and stones"});
    let plain = client
        .responses()
        .create(responses_request(body.clone()))
        .await
        .unwrap()
        .output_text()
        .unwrap();
    let mut stream = client
        .responses()
        .create_stream(responses_request(body))
        .await
        .unwrap();
    let mut events = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = stream.next().await {
            events.push(event.expect("every event parses"));
        }
    })
    .await
    .expect("the stream ends");

    let events: Vec<Value> = events.iter().map(event_json).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let deltas = kinds
        .iter()
        .filter(|k| **k == "response.output_text.delta")
        .count();
    assert!(deltas >= 1, "{kinds:?}");
    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    expected.extend(std::iter::repeat_n("response.output_text.delta", deltas));
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(kinds, expected);

    let numbers: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());

    let streamed: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    let done = events
        .iter()
        .find(|e| e["type"] == "response.output_text.done")
        .unwrap();
    assert_eq!(streamed, done["text"].as_str().unwrap());
    assert_eq!(streamed, plain);
    let completed = &events.last().unwrap()["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["output"][0]["content"][0]["text"], plain.as_str());
    assert_eq!(events[0]["response"]["status"], "in_progress");
}

/// Proves a forced function call on the Responses API (`tool_choice` naming a flat function
/// tool): the output is one `function_call` item for that function, with a call id and
/// arguments valid against its schema — plain, and streamed through
/// `response.function_call_arguments.delta/done` with the same arguments.
#[tokio::test]
async fn responses_forced_function_call_has_schema_valid_arguments() {
    let server = start().await;
    let client = client(&server);
    let body = json!({
        "model": "gpt-4.1-mini",
        "input": [{"role": "user", "content": "What's the weather in Lisbon?"}],
        "tools": [
            {"type": "function", "name": "get_weather", "description": "forecast", "parameters": weather_schema(), "strict": true},
            {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}, "additionalProperties": false}, "strict": true}
        ],
        "tool_choice": {"type": "function", "name": "get_weather"}
    });
    let response = client
        .responses()
        .create(responses_request(body.clone()))
        .await
        .unwrap();
    assert_eq!(response.output.len(), 1);
    let OutputItem::FunctionCall(call) = &response.output[0] else {
        panic!("expected a function call, got {:?}", response.output);
    };
    assert_eq!(call.name, "get_weather");
    assert!(!call.call_id.is_empty());
    let arguments: Value = serde_json::from_str(&call.arguments).unwrap();
    assert_valid(&weather_schema(), &arguments);
    assert_eq!(response.output_text(), None);

    let mut stream = client
        .responses()
        .create_stream(responses_request(body))
        .await
        .unwrap();
    let mut streamed = String::new();
    let mut done = None;
    while let Some(event) = stream.next().await {
        let event = event_json(&event.unwrap());
        match event["type"].as_str().unwrap() {
            "response.function_call_arguments.delta" => {
                streamed.push_str(event["delta"].as_str().unwrap());
            }
            "response.function_call_arguments.done" => {
                done = Some(event["arguments"].as_str().unwrap().to_owned());
            }
            _ => {}
        }
    }
    assert_eq!(streamed, call.arguments);
    assert_eq!(done.as_deref(), Some(call.arguments.as_str()));
}

/// Proves that a Responses `text.format` of type `json_schema` gets output text valid against
/// the schema.
#[tokio::test]
async fn responses_json_schema_format_returns_valid_json() {
    let server = start().await;
    let schema = json!({
        "type": "object",
        "$defs": {"tag": {"type": "string", "enum": ["a", "b"]}},
        "properties": {"title": {"type": "string"}, "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}}},
        "required": ["title", "tags"],
        "additionalProperties": false
    });
    let response = client(&server)
        .responses()
        .create(responses_request(json!({
            "model": "gpt-4.1-mini",
            "input": "Give me a titled note",
            "text": {"format": {"type": "json_schema", "name": "note", "schema": schema, "strict": true}}
        })))
        .await
        .unwrap();
    let content: Value = serde_json::from_str(&response.output_text().unwrap()).unwrap();
    assert_valid(&schema, &content);
}

/// Proves `max_output_tokens` on the Responses API: a reply cut short has status `incomplete`
/// with `incomplete_details.reason = max_output_tokens`, its text a prefix of the uncut reply,
/// and the stream ends with `response.incomplete` instead of `response.completed`.
#[tokio::test]
async fn responses_max_output_tokens_marks_the_response_incomplete() {
    let server = start().await;
    let client = client(&server);
    let body =
        json!({"model": "gpt-4.1-mini", "input": "one two three four five six seven eight nine"});
    let full = client
        .responses()
        .create(responses_request(body.clone()))
        .await
        .unwrap()
        .output_text()
        .unwrap();
    let mut limited = body;
    limited["max_output_tokens"] = json!(4);
    let response = client
        .responses()
        .create(responses_request(limited.clone()))
        .await
        .unwrap();
    let raw = serde_json::to_value(&response).unwrap();
    assert_eq!(raw["status"], "incomplete");
    assert_eq!(raw["incomplete_details"]["reason"], "max_output_tokens");
    let text = response.output_text().unwrap();
    assert!(
        text.len() < full.len() && full.starts_with(&text),
        "{text:?} / {full:?}"
    );

    let mut stream = client
        .responses()
        .create_stream(responses_request(limited))
        .await
        .unwrap();
    let mut last = None;
    while let Some(event) = stream.next().await {
        last = Some(event_json(&event.unwrap()));
    }
    let last = last.unwrap();
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(last["response"]["status"], "incomplete");
}

/// Proves that a Responses reply cut by `max_output_tokens` never reports more output tokens
/// than the limit (`usage.output_tokens <= max_output_tokens`, as OpenAI guarantees).
#[tokio::test]
async fn responses_cut_reply_reports_no_more_output_tokens_than_the_limit() {
    let server = start().await;
    let response = client(&server)
        .responses()
        .create(responses_request(json!({
            "model": "gpt-4.1-mini",
            "input": "one two three four five six seven eight nine",
            "max_output_tokens": 4
        })))
        .await
        .unwrap();
    let usage = response.usage.clone().unwrap();
    assert!(
        usage.output_tokens <= 4,
        "max_output_tokens 4, but usage.output_tokens = {} for {:?}",
        usage.output_tokens,
        response.output_text()
    );
}

/// Proves the Responses tool round trip: a `function_call` item and its `function_call_output`
/// sent back as input get a text answer (no further call), with tools still offered.
#[tokio::test]
async fn responses_function_call_output_round_trips_into_text() {
    let server = start().await;
    let client = client(&server);
    let tools =
        json!([{"type": "function", "name": "get_weather", "parameters": weather_schema()}]);
    let first = client
        .responses()
        .create(responses_request(
            json!({"model": "gpt-4.1-mini", "input": "Weather in Rome?", "tools": tools}),
        ))
        .await
        .unwrap();
    let OutputItem::FunctionCall(call) = &first.output[0] else {
        panic!(
            "expected a function call with tools offered (auto): {:?}",
            first.output
        );
    };
    let second = client
        .responses()
        .create(responses_request(json!({
            "model": "gpt-4.1-mini",
            "tools": tools,
            "input": [
                {"role": "user", "content": "Weather in Rome?"},
                {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
                {"type": "function_call_output", "call_id": call.call_id, "output": "{\"sky\": \"clear\"}"}
            ]
        })))
        .await
        .unwrap();
    assert!(
        matches!(second.output[0], OutputItem::Message(_)),
        "{:?}",
        second.output
    );
    assert!(second.output_text().unwrap().contains("Weather in Rome?"));
    let journal = server.requests();
    assert_eq!(journal[1].body["input"][2]["type"], "function_call_output");
}

// ---------------------------------------------------------------------------------------------
// Auth
// ---------------------------------------------------------------------------------------------

/// Proves `with_required_api_key`: no key is a 401 with OpenAI's body; a wrong key is a 401
/// with code `invalid_api_key` whose message does not echo the key; the right key gets 200 —
/// on chat and on the model list alike, as a bearer key or in Azure's `api-key` header.
#[tokio::test]
async fn required_api_key_rejects_missing_and_wrong_keys() {
    let server = start_with(
        MockConfig::default().with_required_api_key(SecretString::from("sk-right-key".to_owned())),
    )
    .await;
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});

    for path in ["/v1/chat/completions", "/v1/models"] {
        let http = reqwest::Client::new();
        let builder = if path.ends_with("models") {
            http.get(url(&server, path))
        } else {
            http.post(url(&server, path)).json(&body)
        };
        let response = builder.send().await.unwrap();
        assert_eq!(response.status(), 401, "{path} without a key");
        let error = response.json::<Value>().await.unwrap();
        assert_error_body(&error);
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("API key"),
            "{error}"
        );
    }

    let wrong_key = "sk-wrong-key-0123456789abcdef";
    match client_with_key(&server, wrong_key)
        .chat()
        .create(chat_request(body.clone()))
        .await
    {
        Err(OpenAIError::ApiError(error)) => {
            assert_eq!(error.status_code, 401);
            assert_eq!(error.api_error.code.as_deref(), Some("invalid_api_key"));
            assert!(!error.api_error.message.contains(wrong_key));
            assert!(!error.api_error.message.contains("0123456789abcdef"));
        }
        other => panic!("expected a 401 ApiError, got {other:?}"),
    }
    match client_with_key(&server, wrong_key).models().list().await {
        Err(OpenAIError::ApiError(error)) => assert_eq!(error.status_code, 401),
        other => panic!("expected a 401 ApiError, got {other:?}"),
    }

    let azure_style = reqwest::Client::new()
        .get(url(&server, "/v1/models"))
        .header("api-key", "sk-right-key")
        .send()
        .await
        .unwrap();
    assert_eq!(
        azure_style.status(),
        200,
        "the Azure `api-key` header is accepted"
    );

    let right = client_with_key(&server, "sk-right-key");
    right.chat().create(chat_request(body)).await.unwrap();
    right.models().list().await.unwrap();

    let statuses: Vec<_> = server.requests().iter().map(|e| e.status).collect();
    assert_eq!(statuses, [401, 401, 401, 401, 200, 200, 200]);
}

/// Proves that the journal never holds the bearer key a client sent — not in the in-process
/// entries, not in `GET /_mock/requests` — whether the key was right or wrong.
#[tokio::test]
async fn journal_never_contains_the_authorization_value() {
    let secret = "sk-proj-SECRETSECRET-4242";
    let server = start_with(
        MockConfig::default().with_required_api_key(SecretString::from(secret.to_owned())),
    )
    .await;
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]});
    client_with_key(&server, secret)
        .chat()
        .create(chat_request(body.clone()))
        .await
        .unwrap();
    let wrong = "sk-proj-WRONGWRONG-9999";
    let _ = client_with_key(&server, wrong)
        .chat()
        .create(chat_request(body))
        .await;
    client_with_key(&server, secret)
        .embeddings()
        .create(embedding_request(
            json!({"model": "text-embedding-3-small", "input": "x"}),
        ))
        .await
        .unwrap();

    let in_process = serde_json::to_string(&server.requests()).unwrap();
    let over_http = reqwest::get(url(&server, "/_mock/requests"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(server.requests().len(), 3);
    for journal in [&in_process, &over_http] {
        for leaked in [secret, wrong, "SECRETSECRET", "Bearer"] {
            assert!(!journal.contains(leaked), "{leaked} in {journal}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed requests
// ---------------------------------------------------------------------------------------------

/// Proves that malformed requests get a 400 (never a 500) with OpenAI's four-key error body of
/// type `invalid_request_error`, naming what is wrong: invalid JSON (line and column), a
/// non-object body, `messages` not a list, no `model`, an unknown role, a tool message without
/// `tool_call_id`, `n: 0` — and that the journal records each as `error:400`.
#[tokio::test]
async fn malformed_requests_get_openai_400s() {
    let server = start().await;
    let user = json!([{"role": "user", "content": "hi"}]);
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        (
            "{\"model\": \"gpt-4o-mini\",\n \"messages\": [}".into(),
            None,
            "line 2 column",
        ),
        ("[1, 2, 3]".into(), None, "JSON object"),
        (
            json!({"model": "gpt-4o-mini", "messages": "hello"}).to_string(),
            Some("messages"),
            "messages",
        ),
        (
            json!({"messages": user}).to_string(),
            Some("model"),
            "model",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]})
                .to_string(),
            Some("messages[0].role"),
            "wizard",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [
                {"role": "user", "content": "x"},
                {"role": "tool", "content": "42"}
            ]})
            .to_string(),
            Some("messages[1].tool_call_id"),
            "tool_call_id",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": user, "n": 0}).to_string(),
            Some("n"),
            "`n`",
        ),
    ];
    for (body, param, needle) in &cases {
        let (status, error) = post_raw(&server, "/v1/chat/completions", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {error}");
        let error = assert_error_body(&error);
        assert_eq!(error["type"], "invalid_request_error");
        assert_eq!(error["param"].as_str(), *param, "{body}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
    let journal = server.requests();
    assert_eq!(journal.len(), cases.len());
    for entry in journal {
        assert_eq!(entry.status, 400);
        assert_eq!(entry.answered_by, "error:400");
    }
    // The invalid JSON is kept as text.
    assert!(server.requests()[0].body.is_string());
}

/// Proves that async-openai surfaces a mock 400 as an `ApiError` with status, type and param.
#[tokio::test]
async fn async_openai_sees_a_400_as_an_api_error() {
    let server = start().await;
    let result = client(&server)
        .chat()
        .create(chat_request(json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi"}],
            "n": 0
        })))
        .await;
    match result {
        Err(OpenAIError::ApiError(error)) => {
            assert_eq!(error.status_code, 400);
            assert_eq!(
                error.api_error.r#type.as_deref(),
                Some("invalid_request_error")
            );
            assert_eq!(error.api_error.param.as_deref(), Some("n"));
        }
        other => panic!("expected a 400 ApiError, got {other:?}"),
    }
}

/// Proves that the Responses and embeddings endpoints reject malformed requests with 400s too.
#[tokio::test]
async fn other_endpoints_reject_malformed_requests_with_400() {
    let server = start().await;
    let cases = [
        ("/v1/responses", json!({"model": "gpt-4o-mini"}), "input"),
        ("/v1/responses", json!({"input": "x"}), "model"),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small"}),
            "input",
        ),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": "x", "encoding_format": "hex"}),
            "encoding_format",
        ),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": "x", "dimensions": 0}),
            "dimensions",
        ),
    ];
    for (path, body, param) in cases {
        let (status, error) = post_raw(&server, path, body.to_string()).await;
        assert_eq!(status, 400, "{path} {body} -> {error}");
        assert_eq!(assert_error_body(&error)["param"], param);
    }
}

/// Proves that unknown paths get a JSON 404 in OpenAI's format, and a wrong method a JSON 405.
#[tokio::test]
async fn unknown_paths_get_json_404s() {
    let server = start().await;
    let http = reqwest::Client::new();
    for response in [
        http.get(url(&server, "/v1/assistants"))
            .send()
            .await
            .unwrap(),
        http.post(url(&server, "/v1/completions-v9"))
            .body("{}")
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(response.status(), 404);
        let body: Value = response.json().await.unwrap();
        assert_error_body(&body);
    }
    let response = http
        .get(url(&server, "/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_error_body(&response.json::<Value>().await.unwrap());
}

/// Proves the mock survives garbage: random bytes, non-UTF-8, deeply nested JSON, a body over
/// the size limit (413 with a JSON error) — none is a 5xx — and it still answers a normal
/// request afterwards.
#[tokio::test]
async fn server_survives_garbage_and_still_answers() {
    let server = start().await;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let garbage: Vec<Vec<u8>> = vec![
        random,
        vec![0xff, 0xfe, 0x00, 0x7b, 0x22],
        "[".repeat(100_000).into_bytes(),
        "{\"a\":".repeat(50_000).into_bytes(),
        b"{\"model\": \"gpt-4o-mini\", \"messages\": [{\"role\": \"user\", \"content\": \"\\ud800\"}]}"
            .to_vec(),
        Vec::new(),
    ];
    for path in ["/v1/chat/completions", "/v1/responses", "/v1/embeddings"] {
        for body in &garbage {
            let (status, error) = post_raw(&server, path, body.clone()).await;
            assert_eq!(status, 400, "{path}: {error}");
            assert_error_body(&error);
        }
    }

    // 32 MiB is the default limit.
    let over_limit = vec![b' '; 32 * 1024 * 1024 + 1024];
    let (status, error) = post_raw(&server, "/v1/chat/completions", over_limit).await;
    assert_eq!(status, 413, "{error}");
    assert_error_body(&error);

    let response = client(&server)
        .chat()
        .create(chat_request(json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "still there?"}]})))
        .await
        .unwrap();
    assert!(
        response.choices[0]
            .message
            .content
            .as_deref()
            .unwrap()
            .contains("still there?")
    );
    let statuses: Vec<u16> = server.requests().iter().map(|e| e.status).collect();
    assert!(statuses.iter().all(|s| *s < 500), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&200));
}

// ---------------------------------------------------------------------------------------------
// Journal over HTTP
// ---------------------------------------------------------------------------------------------

/// Proves the journal over HTTP: `GET /_mock/requests` lists every request in order with
/// `seq`, `method`, `path`, `body`, `answered_by` and `status`; `DELETE /_mock/requests`
/// answers 204 and empties it, while `seq` keeps counting; the journal endpoints themselves
/// are not journaled; `MockServer::clear_requests` empties it too.
#[tokio::test]
async fn journal_over_http_lists_and_clears() {
    let server = start().await;
    let client = client(&server);
    client
        .chat()
        .create(chat_request(
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one"}]}),
        ))
        .await
        .unwrap();
    client.models().list().await.unwrap();
    let _ = post_raw(&server, "/v1/chat/completions", "{").await;

    let http = reqwest::Client::new();
    let entries: Vec<Value> = http
        .get(url(&server, "/_mock/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(entries.len(), 3);
    for entry in &entries {
        for key in ["seq", "method", "path", "body", "answered_by", "status"] {
            assert!(entry.get(key).is_some(), "{key} missing in {entry}");
        }
    }
    assert_eq!(entries[0]["seq"], 1);
    assert_eq!(entries[0]["method"], "POST");
    assert_eq!(entries[0]["body"]["messages"][0]["content"], "one");
    assert_eq!(entries[0]["answered_by"], "default");
    assert_eq!(entries[1]["method"], "GET");
    assert_eq!(entries[1]["path"], "/v1/models");
    assert_eq!(entries[1]["body"], Value::Null);
    assert_eq!(entries[2]["status"], 400);
    assert_eq!(entries[2]["answered_by"], "error:400");
    assert_eq!(entries[2]["body"], "{");

    let deleted = http
        .delete(url(&server, "/_mock/requests"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let empty: Vec<Value> = http
        .get(url(&server, "/_mock/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(empty.is_empty());
    assert!(server.requests().is_empty());

    client.models().list().await.unwrap();
    let entries = server.requests();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].seq, 4, "seq keeps counting after a clear");
    server.clear_requests();
    assert!(server.requests().is_empty());
}

/// Proves that paths without the `/v1` prefix work too and are journaled as requested.
#[tokio::test]
async fn paths_without_v1_prefix_are_served() {
    let server = start().await;
    let (status, body) = post_raw(
        &server,
        "/chat/completions",
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "no prefix"}]})
            .to_string(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(server.requests()[0].path, "/chat/completions");
}

/// Proves that a bounded journal keeps only the newest entries (`with_journal_capacity`).
#[tokio::test]
async fn journal_capacity_keeps_the_newest_entries() {
    let server = start_with(MockConfig::default().with_journal_capacity(2)).await;
    let client = client(&server);
    for _ in 0..3 {
        client.models().list().await.unwrap();
    }
    let seqs: Vec<u64> = server.requests().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [2, 3]);
}

/// Proves that concurrent requests are all answered and all journaled, each with its own
/// `seq`.
#[tokio::test]
async fn concurrent_requests_are_all_answered_and_journaled() {
    let server = start().await;
    let client = client(&server);
    let requests = (0..24).map(|n| {
        let client = client.clone();
        async move {
            client
                .chat()
                .create(chat_request(json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("request {n}")}]})))
                .await
                .unwrap()
        }
    });
    let responses = futures::future::join_all(requests).await;
    assert_eq!(responses.len(), 24);
    let mut seqs: Vec<u64> = server.requests().iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=24).collect::<Vec<_>>());
}
