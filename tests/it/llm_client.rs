//! `chainlog::llm::OpenAiClient` against the mock server (and, for what the mock cannot send,
//! a tiny axum stub): what a plain call sends and gets back, streams adding up to the plain
//! reply, a tool-call loop, `chat_json` with a schemars type, the minimal bodies some
//! OpenAI-compatible servers answer with, and an API key that never shows.

use std::{
    collections::VecDeque,
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use chainlog::{
    llm::{
        ApiKey, ChatMessage, ChatRequest, ChatResponse, LlmClient, LlmError, LlmSettings,
        OpenAiClient, StreamEvent, ToolSpec, chat_json,
    },
    mock::{MockConfig, MockServer},
};
use futures::StreamExt;
use schemars::JsonSchema;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers (also used by `llm_retry`)
// ---------------------------------------------------------------------------------------------

pub(crate) async fn mock(rules: Option<&str>) -> MockServer {
    let mut config = MockConfig::default();
    if let Some(rules) = rules {
        config = config.with_rules_yaml(rules).expect("rules load");
    }
    MockServer::start(config).await.expect("mock starts")
}

/// Settings for `base_url`: a test key, 3 retries, 5 s timeout.
pub(crate) fn settings(base_url: String) -> LlmSettings {
    LlmSettings {
        api_key: Some(ApiKey::new("sk-test")),
        timeout: Duration::from_secs(5),
        ..LlmSettings::new("gpt-4o-mini", base_url)
    }
}

/// A client with millisecond backoff, so only server-requested waits take time.
pub(crate) fn client(settings: LlmSettings) -> OpenAiClient {
    OpenAiClient::new(settings)
        .expect("client builds")
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
}

pub(crate) fn ask(text: &str) -> ChatRequest {
    ChatRequest::new(vec![ChatMessage::user(text)])
}

/// The text deltas of a stream, and its final response.
pub(crate) async fn collect(
    client: &dyn LlmClient,
    request: &ChatRequest,
) -> Result<(String, ChatResponse), LlmError> {
    let mut stream = client.chat_stream(request).await?;
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::Text(delta) => text.push_str(&delta),
            StreamEvent::Done(response) => return Ok((text, response)),
        }
    }
    panic!("the stream ended without Done");
}

/// One canned answer of [`stub`].
#[derive(Clone)]
pub(crate) struct Canned {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub content_type: &'static str,
    pub body: String,
}

impl Canned {
    pub(crate) fn json(body: Value) -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            content_type: "application/json",
            body: body.to_string(),
        }
    }
}

/// A server answering `POST /v1/chat/completions` with `answers` in order (the last one
/// repeats); returns its base URL and the request bodies it got.
pub(crate) async fn stub(answers: Vec<Canned>) -> (String, Arc<Mutex<Vec<Value>>>) {
    let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let seen = Arc::clone(&seen);
        move |body: String| {
            let answers = Arc::clone(&answers);
            let seen = Arc::clone(&seen);
            async move {
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap_or(Value::Null));
                let canned = {
                    let mut answers = answers.lock().unwrap();
                    if answers.len() > 1 {
                        answers.pop_front().unwrap()
                    } else {
                        answers.front().cloned().unwrap()
                    }
                };
                let mut headers = HeaderMap::new();
                headers.insert(
                    "content-type",
                    HeaderValue::from_static(canned.content_type),
                );
                for (name, value) in &canned.headers {
                    headers.insert(
                        HeaderName::from_static(name),
                        HeaderValue::from_str(value).unwrap(),
                    );
                }
                let status = StatusCode::from_u16(canned.status).unwrap();
                let response: Response = (status, headers, canned.body).into_response();
                response
            }
        }
    };
    let app = Router::new().route("/v1/chat/completions", post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), seen)
}

// ---------------------------------------------------------------------------------------------
// Plain calls and streams
// ---------------------------------------------------------------------------------------------

/// A plain call sends the client's model, the settings' temperature unless the request sets
/// one, max tokens as `max_completion_tokens`, and the messages with their roles — and
/// returns the rule's text with usage, latency and one attempt.
#[tokio::test]
async fn chat_sends_model_temperature_and_messages() {
    let server = mock(Some(
        "rules:\n  - match: { content: ping }\n    reply: { text: pong }\n",
    ))
    .await;
    let client = client(LlmSettings {
        temperature: Some(0.5),
        max_tokens: Some(64),
        ..settings(server.base_url())
    });
    let request = ChatRequest::new(vec![
        ChatMessage::system("Answer in one word."),
        ChatMessage::user("ping"),
    ]);
    let reply = client.chat(&request).await.unwrap();
    assert_eq!(reply.text(), "pong");
    assert_eq!(reply.finish_reason.as_deref(), Some("stop"));
    assert_eq!(reply.attempts, 1);
    let usage = reply.usage.expect("the mock reports usage");
    assert!(usage.total_tokens > 0, "{usage:?}");
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );
    assert_eq!(reply.model, "gpt-4o-mini");
    assert!(reply.latency > Duration::ZERO);

    let reply = client
        .chat(
            &request
                .clone()
                .with_temperature(0.0)
                .with_stop(vec!["END".into()]),
        )
        .await
        .unwrap();
    assert_eq!(reply.text(), "pong");

    let journal = server.requests();
    assert_eq!(journal.len(), 2);
    let first = &journal[0].body;
    assert_eq!(journal[0].path, "/v1/chat/completions");
    assert_eq!(first["model"], "gpt-4o-mini");
    assert_eq!(first["temperature"], 0.5);
    // Not OpenAI's host: the limit goes out as `max_tokens`, the field every compatible
    // server reads (llm.max_tokens_field: auto).
    assert_eq!(first["max_tokens"], 64);
    assert!(first.get("max_completion_tokens").is_none(), "{first}");
    assert_eq!(
        first["messages"],
        json!([
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "ping"}
        ])
    );
    assert!(first.get("stream").is_none(), "{first}");
    assert_eq!(journal[1].body["temperature"], 0.0);
    assert_eq!(journal[1].body["stop"], json!(["END"]));
}

/// A stream's text deltas add up to exactly the plain reply to the same request, `Done`
/// carries the same text and usage, and the request asked for the usage chunk.
#[tokio::test]
async fn stream_adds_up_to_the_plain_reply() {
    let server = mock(None).await;
    let client = client(settings(server.base_url()));
    let request = ask("Tell me a short story about a lighthouse keeper");
    let plain = client.chat(&request).await.unwrap();
    let (text, done) = collect(&client, &request).await.unwrap();
    assert!(plain.text().split(' ').count() > 3, "{plain:?}");
    assert_eq!(text, plain.text());
    assert_eq!(done.content, plain.content);
    assert_eq!(done.usage, plain.usage);
    assert_eq!(done.finish_reason.as_deref(), Some("stop"));
    assert_eq!(done.attempts, 1);

    let journal = server.requests();
    assert_eq!(journal[1].body["stream"], true);
    assert_eq!(journal[1].body["stream_options"]["include_usage"], true);
}

// ---------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
struct WeatherArgs {
    /// The city.
    city: String,
}

const WEATHER_RULES: &str = r#"
rules:
  - name: after-tool
    match: { role: tool, last: true }
    reply: { text: "It is sunny in Paris." }
  - name: weather
    match: { content: weather, tools: true }
    reply:
      tool_calls: [{ name: get_weather, arguments: { city: Paris } }]
"#;

/// A tool loop: the first call returns a tool call whose arguments parse into the schemars
/// type; the assistant message and the tool result go back with the matching id; the second
/// call returns text. Streaming the first call yields the same tool call.
#[tokio::test]
async fn tool_call_loop_ends_in_text() {
    let server = mock(Some(WEATHER_RULES)).await;
    let client = client(settings(server.base_url()));
    let tools = vec![ToolSpec::from_type::<WeatherArgs>(
        "get_weather",
        "Current weather in a city",
    )];
    let mut request = ask("What is the weather in Paris?").with_tools(tools);

    let first = client.chat(&request).await.unwrap();
    assert_eq!(first.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(first.tool_calls.len(), 1, "{first:?}");
    let call = &first.tool_calls[0];
    assert_eq!(call.name, "get_weather");
    assert_eq!(call.parse_arguments::<WeatherArgs>().unwrap().city, "Paris");

    let (text, streamed) = collect(&client, &request).await.unwrap();
    assert_eq!(text, "");
    assert_eq!(streamed.tool_calls.len(), 1);
    assert_eq!(streamed.tool_calls[0].name, "get_weather");
    assert_eq!(streamed.tool_calls[0].arguments, call.arguments);

    request.push(first.to_assistant_message());
    request.push(ChatMessage::tool_result(&call.id, r#"{"sky":"clear"}"#));
    let second = client.chat(&request).await.unwrap();
    assert_eq!(second.text(), "It is sunny in Paris.");
    assert!(second.tool_calls.is_empty());

    let journal = server.requests();
    assert_eq!(journal.len(), 3);
    let sent = &journal[0].body;
    assert_eq!(sent["tools"][0]["type"], "function");
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        sent["tools"][0]["function"]["parameters"]["required"],
        json!(["city"])
    );
    let messages = journal[2].body["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(
        messages[1]["content"], "",
        "tool-call messages carry content \"\" (llama.cpp refuses null or absent)"
    );
    assert_eq!(messages[1]["tool_calls"][0]["id"], json!(call.id));
    assert_eq!(
        messages[1]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(messages[2]["role"], "tool");
    assert_eq!(messages[2]["tool_call_id"], json!(call.id));
    assert_eq!(journal[2].answered_by, "rule:after-tool#0");
}

// ---------------------------------------------------------------------------------------------
// Incomplete replies
// ---------------------------------------------------------------------------------------------

/// A reply cut off by the token limit (the mock truncates to `max_tokens` and says `length`)
/// is an `Incomplete` error naming the limit, plain and streamed; with `accept_truncated` the
/// cut text comes back as it is.
#[tokio::test]
async fn a_reply_cut_off_by_max_tokens_is_an_error_unless_accepted() {
    let server = mock(None).await;
    let limited = LlmSettings {
        max_tokens: Some(5),
        ..settings(server.base_url())
    };
    let request = ask("Tell me a long story about a lighthouse keeper and the sea");
    let client = client(limited.clone());
    let err = client.chat(&request).await.unwrap_err();
    assert!(
        matches!(&err, LlmError::Incomplete { finish_reason: Some(r), .. } if r == "length"),
        "{err:?}"
    );
    assert!(err.to_string().contains("cut off by max_tokens=5"), "{err}");
    assert!(!err.is_retryable());
    let err = collect(&client, &request).await.unwrap_err();
    assert!(err.to_string().contains("cut off by max_tokens=5"), "{err}");

    let accepting = self::client(LlmSettings {
        accept_truncated: true,
        ..limited
    });
    let reply = accepting.chat(&request).await.unwrap();
    assert_eq!(reply.finish_reason.as_deref(), Some("length"));
    assert!(!reply.text().is_empty());
    assert_eq!(
        server.requests().len(),
        3,
        "incomplete replies are not retried"
    );
}

/// A stream that ends with `finish_reason: error` after some text, and replies whose content
/// is null, absent or `""` with no tool calls, are errors saying which — never a short or
/// empty output.
#[tokio::test]
async fn error_finishes_and_empty_content_are_errors() {
    let sse = [
        json!({"choices":[{"delta":{"content":"Hello"}}]}),
        json!({"choices":[{"delta":{},"finish_reason":"error"}]}),
    ]
    .iter()
    .map(|chunk| format!("data: {chunk}\n\n"))
    .collect::<String>()
        + "data: [DONE]\n\n";
    let (base_url, _) = stub(vec![Canned {
        content_type: "text/event-stream",
        body: sse,
        ..Canned::json(Value::Null)
    }])
    .await;
    let err = collect(&client(settings(base_url)), &ask("hi"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "incomplete reply: ended with finish_reason=error after 5 characters"
    );

    for (message, shown) in [
        (
            json!({"content": null}),
            "empty content (null) with no tool calls",
        ),
        (
            json!({"role": "assistant"}),
            "empty content (null) with no tool calls",
        ),
        (
            json!({"content": ""}),
            "empty content (\"\") with no tool calls",
        ),
    ] {
        let (base_url, _) = stub(vec![Canned::json(
            json!({"choices":[{"message": message, "finish_reason":"stop"}]}),
        )])
        .await;
        let err = client(settings(base_url))
            .chat(&ask("hi"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(shown), "{message}: {err}");
        assert!(matches!(err, LlmError::Incomplete { .. }), "{err:?}");
    }
    let (base_url, _) = stub(vec![Canned::json(
        json!({"choices":[{"message":{"content":"half"},"finish_reason":"content_filter"}]}),
    )])
    .await;
    let err = client(settings(base_url))
        .chat(&ask("hi"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("finish_reason=content_filter after 4 characters"),
        "{err}"
    );
}

/// `llm.max_tokens_field`: `auto` sends `max_completion_tokens` to OpenAI's host and
/// `max_tokens` elsewhere; the other values send what they name.
#[tokio::test]
async fn the_max_tokens_field_is_chosen_per_endpoint() {
    use chainlog::llm::MaxTokensField;
    assert_eq!(
        MaxTokensField::Auto.fields("https://api.openai.com/v1"),
        (false, true)
    );
    assert_eq!(
        MaxTokensField::Auto.fields("https://x.openai.azure.com/openai"),
        (false, true)
    );
    assert_eq!(
        MaxTokensField::Auto.fields("http://127.0.0.1:8080/v1"),
        (true, false)
    );
    let server = mock(None).await;
    for (field, legacy, completion) in [
        (MaxTokensField::MaxTokens, true, false),
        (MaxTokensField::MaxCompletionTokens, false, true),
        (MaxTokensField::Both, true, true),
    ] {
        let client = client(LlmSettings {
            max_tokens: Some(50),
            max_tokens_field: field,
            ..settings(server.base_url())
        });
        client.chat(&ask("ping")).await.unwrap();
        let journal = server.requests();
        let body = &journal.last().unwrap().body;
        assert_eq!(
            body.get("max_tokens").is_some(),
            legacy,
            "{field:?}: {body}"
        );
        assert_eq!(
            body.get("max_completion_tokens").is_some(),
            completion,
            "{field:?}: {body}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Structured output
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code, reason = "only parsed")]
struct Forecast {
    city: String,
    celsius: f64,
    sunny: bool,
    hours: Vec<u32>,
    note: Option<String>,
}

/// `chat_json` sends a strict `json_schema` response format named after the type and parses
/// the mock's schema-valid reply into it.
#[tokio::test]
async fn chat_json_parses_a_reply_that_fits() {
    let server = mock(None).await;
    let client = client(settings(server.base_url()));
    let (forecast, response) = chat_json::<Forecast>(&client, ask("Forecast for Paris?"))
        .await
        .unwrap();
    assert!(response.text().starts_with('{'), "{response:?}");
    assert!(forecast.celsius.is_finite(), "{forecast:?}");

    let body = &server.requests()[0].body;
    let format = &body["response_format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["json_schema"]["name"], "Forecast");
    assert_eq!(format["json_schema"]["strict"], true);
    let schema = &format["json_schema"]["schema"];
    assert_eq!(schema["additionalProperties"], false);
    let mut required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key.as_str().unwrap())
        .collect();
    required.sort_unstable();
    assert_eq!(required, ["celsius", "city", "hours", "note", "sunny"]);
}

/// A reply that is JSON but does not fit the type is `LlmError::Schema` naming the type and
/// the field.
#[tokio::test]
async fn chat_json_names_the_type_and_field_that_did_not_fit() {
    let server = mock(Some(
        "rules:\n  - match: { content: Forecast }\n    reply: { json: { city: 3, celsius: warm } }\n",
    ))
    .await;
    let client = client(settings(server.base_url()));
    let err = chat_json::<Forecast>(&client, ask("Forecast for Paris?"))
        .await
        .unwrap_err();
    let LlmError::Schema { type_name, message } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(type_name, "Forecast");
    assert!(message.contains("/celsius"), "{message}");
    assert!(
        message.contains("\"warm\" is not of type \"number\""),
        "{message}"
    );
    assert!(err.to_string().contains("`Forecast`"), "{err}");
    assert!(!err.is_retryable());
}

/// Each `llm.structured_output` method asks the way it says and the reply parses into the
/// type: `json_schema` (strict response format), `json_object` (the schema nested in the
/// `json_object` format, as llama.cpp reads it, and in a system message), `tool` (one tool
/// with the schema as parameters, `tool_choice: required`; its arguments are the reply) and
/// `prompt` (the schema in a system message only; a rule answers with fitting JSON text).
#[tokio::test]
async fn every_structured_output_method_asks_its_way_and_parses() {
    use chainlog::llm::StructuredOutput;
    let server = mock(Some(
        "rules:\n  - match: { content: prompt-only }\n    reply: { text: '{\"city\":\"Paris\",\"celsius\":21.5,\"sunny\":true,\"hours\":[1,2],\"note\":null}' }\n",
    ))
    .await;
    for (method, question) in [
        (StructuredOutput::JsonSchema, "Forecast?"),
        (StructuredOutput::JsonObject, "Forecast?"),
        (StructuredOutput::Tool, "Forecast?"),
        (StructuredOutput::Prompt, "prompt-only forecast"),
    ] {
        let client = client(LlmSettings {
            structured_output: method,
            ..settings(server.base_url())
        });
        let (forecast, _) = chat_json::<Forecast>(&client, ask(question))
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "{method:?}: {err}: {}",
                    server.requests().last().unwrap().body
                )
            });
        assert!(!forecast.city.is_empty(), "{method:?}");
        let journal = server.requests();
        let body = &journal.last().unwrap().body;
        let system_has_schema = body["messages"][0]["role"] == "system"
            && body["messages"][0]["content"]
                .as_str()
                .is_some_and(|text| text.contains("\"celsius\""));
        match method {
            StructuredOutput::JsonSchema => {
                assert_eq!(body["response_format"]["type"], "json_schema");
                assert!(!system_has_schema, "{body}");
            }
            StructuredOutput::JsonObject => {
                assert_eq!(body["response_format"]["type"], "json_object");
                assert_eq!(
                    body["response_format"]["schema"]["required"],
                    json!(["celsius", "city", "hours", "note", "sunny"])
                );
                assert!(system_has_schema, "{body}");
            }
            StructuredOutput::Tool => {
                assert!(body.get("response_format").is_none(), "{body}");
                assert_eq!(body["tool_choice"], "required");
                assert_eq!(body["tools"][0]["function"]["name"], "Forecast");
            }
            StructuredOutput::Prompt => {
                assert!(body.get("response_format").is_none(), "{body}");
                assert!(body.get("tools").is_none(), "{body}");
                assert!(system_has_schema, "{body}");
            }
        }
    }
}

/// `llm.tool_choice` goes out with requests that offer tools and set none themselves, and
/// never with requests without tools.
#[tokio::test]
async fn the_configured_tool_choice_is_sent_with_tools() {
    let server = mock(Some(WEATHER_RULES)).await;
    let client = client(LlmSettings {
        tool_choice: Some(chainlog::llm::ToolChoice::Required),
        ..settings(server.base_url())
    });
    let tools = vec![ToolSpec::from_type::<WeatherArgs>("get_weather", "Weather")];
    client
        .chat(&ask("What is the weather in Paris?").with_tools(tools))
        .await
        .unwrap();
    client.chat(&ask("ping")).await.unwrap();
    let journal = server.requests();
    assert_eq!(journal[0].body["tool_choice"], "required");
    assert!(journal[1].body.get("tool_choice").is_none());
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible servers
// ---------------------------------------------------------------------------------------------

/// A server that answers with only `choices` (no id, created, object, model, usage,
/// finish_reason) still works, plain and streamed (no usage chunk, no ids, no `type`).
#[tokio::test]
async fn minimal_bodies_from_compatible_servers_are_read() {
    let (base_url, seen) = stub(vec![Canned::json(
        json!({"choices":[{"message":{"content":"hi"}}]}),
    )])
    .await;
    let reply = client(settings(base_url))
        .chat(&ask("hello"))
        .await
        .unwrap();
    assert_eq!(reply.text(), "hi");
    assert_eq!(reply.usage, None, "no usage is unknown usage");
    assert_eq!(reply.model, "gpt-4o-mini");
    assert_eq!(reply.finish_reason, None);
    assert_eq!(seen.lock().unwrap().len(), 1);

    let sse = [
        json!({"choices":[{"delta":{"content":"h"}}]}),
        json!({"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":"{}"}}]}}]}),
        json!({"choices":[{"delta":{"content":"i"},"finish_reason":"stop"}]}),
    ]
    .iter()
    .map(|chunk| format!("data: {chunk}\n\n"))
    .collect::<String>()
        + "data: [DONE]\n\n";
    let (base_url, _) = stub(vec![Canned {
        content_type: "text/event-stream",
        body: sse,
        ..Canned::json(Value::Null)
    }])
    .await;
    let (text, done) = collect(&client(settings(base_url)), &ask("hello"))
        .await
        .unwrap();
    assert_eq!(text, "hi");
    assert_eq!(done.text(), "hi");
    assert_eq!(done.usage, None, "no usage chunk is unknown usage");
    assert_eq!(done.tool_calls[0].id, "call_0");
    assert_eq!(done.tool_calls[0].name, "f");
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

/// Log output captured in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A client holding a canary key whose calls fail every way a call can — a refused key, a
/// retried rate limit, a spent quota, a server that is not there, a timeout, a broken stream,
/// an upstream that echoes the key back in a 401, a 500 or a stream's error event — never
/// shows the key: not in an error's `Display` or `Debug`, not in the client's or the
/// settings' `Debug`, not in any log line or span field (everything, at TRACE, dependencies
/// included).
#[tokio::test]
async fn api_key_never_shows() {
    const CANARY: &str = "sk-canary-7f3a9c2e51d84b06aa";
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_ansi(false)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // With a single registered dispatcher, tracing-core asks only the *current thread's*
    // default when a callsite is first hit, so a test on another thread (no subscriber)
    // caches "nobody listens" for the llm callsites. A second, idle dispatcher makes it ask
    // every registered one; the rebuild fixes callsites cached before this test began.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    tracing::callsite::rebuild_interest_cache();

    let guarded = MockServer::start(
        MockConfig::default().with_required_api_key(SecretString::from("sk-the-right-one")),
    )
    .await
    .unwrap();
    let faulty = mock(Some(
        "rules:\n  - match: { content: limit }\n    reply: { fault: { kind: rate_limit, retry_after_secs: 0 } }\n  - match: { content: quota }\n    reply: { fault: { kind: insufficient_quota } }\n  - match: { content: hang }\n    reply: { fault: { kind: hang, ms: 2000 } }\n  - match: { content: cut }\n    reply: { fault: { kind: truncated_stream, after_chunks: 1 } }\n  - match: { content: echo-401 }\n    reply: { fault: { kind: echo_key } }\n  - match: { content: echo-500 }\n    reply: { fault: { kind: echo_key, status: 500 } }\n  - match: { content: echo-stream }\n    reply: { fault: { kind: echo_key, after_chunks: 1 } }\n",
    ))
    .await;
    let canary_settings = |base_url: String| LlmSettings {
        api_key: Some(ApiKey::new(CANARY)),
        max_retries: 1,
        timeout: Duration::from_millis(300),
        ..settings(base_url)
    };
    let settings_debug = format!("{:?}", canary_settings(guarded.base_url()));
    let key_client = client(canary_settings(guarded.base_url()));
    let faulty_client = client(canary_settings(faulty.base_url()));
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        client(canary_settings(format!("http://{addr}/v1")))
    };
    let unauthorised = key_client.chat(&ask("hello")).await.unwrap_err();
    assert!(matches!(
        unauthorised,
        LlmError::Permanent {
            status: Some(401),
            ..
        }
    ));
    let mut errors = vec![
        unauthorised,
        collect(&key_client, &ask("hello")).await.unwrap_err(),
        faulty_client.chat(&ask("limit")).await.unwrap_err(),
        faulty_client.chat(&ask("quota")).await.unwrap_err(),
        faulty_client.chat(&ask("hang")).await.unwrap_err(),
        collect(&faulty_client, &ask("cut")).await.unwrap_err(),
        gone.chat(&ask("hello")).await.unwrap_err(),
    ];
    // An upstream that echoes the key back: in a 401, in a 500 (after the retries) and in a
    // stream's error event. The message keeps the provider's words with the key masked.
    let echoed = [
        faulty_client.chat(&ask("echo-401")).await.unwrap_err(),
        faulty_client.chat(&ask("echo-500")).await.unwrap_err(),
        collect(&faulty_client, &ask("echo-stream"))
            .await
            .unwrap_err(),
    ];
    for error in &echoed {
        assert!(
            error
                .to_string()
                .contains("Incorrect API key provided: ***")
                || error.to_string().contains("with key ***"),
            "the echo was not masked in place: {error}"
        );
    }
    assert_eq!(echoed[0].status(), Some(401));
    assert_eq!(echoed[1].status(), Some(500));
    errors.extend(echoed);
    let (boom_url, _) = stub(vec![Canned {
        status: 500,
        ..Canned::json(json!({"error": {"message": "boom"}}))
    }])
    .await;
    errors.push(
        client(canary_settings(boom_url))
            .chat(&ask("x"))
            .await
            .unwrap_err(),
    );
    let kinds: Vec<String> = errors.iter().map(|e| format!("{e:?}")).collect();
    assert!(kinds.iter().any(|k| k.starts_with("Timeout")), "{kinds:#?}");
    assert!(
        kinds.iter().filter(|k| k.starts_with("Transient")).count() >= 3,
        "{kinds:#?}"
    );

    let mut shown = vec![
        settings_debug,
        format!("{key_client:?}"),
        format!("{gone:?}"),
    ];
    for error in &errors {
        shown.push(error.to_string());
        shown.push(format!("{error:?}"));
    }
    drop(_guard);
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("llm.chat{"),
        "the spans were captured: {logs}"
    );
    assert!(logs.contains("retrying"), "the retries were logged");
    for text in shown.iter().chain([&logs]) {
        assert!(!text.contains(CANARY), "the key shows in: {text}");
        assert!(!text.contains("canary"), "part of the key shows in: {text}");
    }
    assert!(
        shown[0].contains("***") && shown[1].contains("***"),
        "{shown:?}"
    );
}
