//! Rules files (`MockConfig::with_rules_yaml` / `with_rules_file`), driven by async-openai and
//! raw reqwest: matching on model, content, regex, role, `last`, tools offered and endpoint;
//! text, tool-call, JSON, error and fault replies; sequences; per-rule latency; the journal's
//! `rule:<name>#<step>` labels; first match wins; the default when nothing matches; and the
//! start-up errors of malformed rules, which name the file and the line.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use async_openai::{
    Client,
    config::OpenAIConfig,
    error::OpenAIError,
    middleware::ReqwestService,
    types::{
        chat::{
            ChatCompletionMessageToolCalls, CreateChatCompletionRequest,
            CreateChatCompletionResponse, FinishReason,
        },
        responses::{CreateResponse, OutputItem},
    },
};
use chainlog::mock::{MockConfig, MockError, MockServer, RuleSet, RulesError};
use futures::StreamExt;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

async fn start_with_rules(yaml: &str) -> MockServer {
    let config = MockConfig::default()
        .with_rules_yaml(yaml)
        .unwrap_or_else(|err| panic!("rules should load: {err}"));
    MockServer::start(config).await.expect("mock server starts")
}

fn config(server: &MockServer) -> OpenAIConfig {
    OpenAIConfig::new()
        .with_api_base(server.base_url())
        .with_api_key("sk-test")
}

/// async-openai without retries, so a fault is one attempt.
fn client(server: &MockServer) -> Client<OpenAIConfig> {
    Client::with_config(config(server))
        .with_http_service(ReqwestService::new(reqwest::Client::new()))
}

fn chat_request(body: Value) -> CreateChatCompletionRequest {
    serde_json::from_value(body).expect("a valid chat request")
}

fn ask(model: &str, text: &str) -> CreateChatCompletionRequest {
    chat_request(json!({"model": model, "messages": [{"role": "user", "content": text}]}))
}

async fn reply_text(client: &Client<OpenAIConfig>, request: CreateChatCompletionRequest) -> String {
    let response = client.chat().create(request).await.expect("a reply");
    response.choices[0]
        .message
        .content
        .clone()
        .expect("text content")
}

fn answered_by(server: &MockServer) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .map(|entry| entry.answered_by)
        .collect()
}

fn calls_of(response: &CreateChatCompletionResponse) -> Vec<(String, Value)> {
    response.choices[0]
        .message
        .tool_calls
        .iter()
        .flatten()
        .map(|call| match call {
            ChatCompletionMessageToolCalls::Function(call) => (
                call.function.name.clone(),
                serde_json::from_str(&call.function.arguments).expect("arguments are JSON"),
            ),
            ChatCompletionMessageToolCalls::Custom(other) => panic!("unexpected {other:?}"),
        })
        .collect()
}

fn url(server: &MockServer, path: &str) -> String {
    format!("http://{}{path}", server.addr())
}

async fn post(server: &MockServer, path: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url(server, path))
        .bearer_auth("sk-test")
        .json(body)
        .send()
        .await
        .expect("the mock answers")
}

/// The `RulesError::Parse` inside a start-up error, after checking its message names the
/// origin and the line.
fn parse_error(result: Result<MockConfig, MockError>, origin: &str, line: usize) -> String {
    let error = match result {
        Ok(_) => panic!("malformed rules were accepted"),
        Err(error) => error,
    };
    let message = error.to_string();
    assert!(message.contains(origin), "{origin} not named in: {message}");
    assert!(
        message.contains(&format!("line {line},")),
        "line {line} not named in: {message}"
    );
    match error {
        MockError::Rules(RulesError::Parse { line: reported, .. }) => {
            assert_eq!(reported, line, "{message}")
        }
        other => panic!("expected a rules parse error, got {other:?}"),
    }
    message
}

// ---------------------------------------------------------------------------------------------
// Matching
// ---------------------------------------------------------------------------------------------

/// Proves matching on `model`: the rule answers requests for its model only; other models get
/// the default reply.
#[tokio::test]
async fn rule_matches_on_model() {
    let server = start_with_rules(
        r#"
rules:
  - name: big-model
    match: { model: gpt-4.1 }
    reply: { text: "answered by the gpt-4.1 rule" }
"#,
    )
    .await;
    let client = client(&server);
    assert_eq!(
        reply_text(&client, ask("gpt-4.1", "hi")).await,
        "answered by the gpt-4.1 rule"
    );
    let other = reply_text(&client, ask("gpt-4.1-mini", "hi")).await;
    assert!(other.starts_with("Mock reply"), "{other}");
    assert_eq!(answered_by(&server), ["rule:big-model#0", "default"]);
}

/// Proves matching on `content` (a case-sensitive substring of any message), `content_regex`,
/// and both together (both must hold).
#[tokio::test]
async fn rule_matches_on_content_and_regex() {
    let server = start_with_rules(
        r#"
rules:
  - name: both
    match: { content: invoice, content_regex: "(?i)^urgent" }
    reply: { text: "urgent invoice" }
  - name: regex
    match: { content_regex: "(?i)\\bforecast\\b" }
    reply: { text: "regex matched" }
  - name: substring
    match: { content: hello }
    reply: { text: "substring matched" }
"#,
    )
    .await;
    let client = client(&server);
    let cases = [
        ("URGENT: pay invoice 42", "urgent invoice"),
        ("Urgent but nothing else", ""),
        ("pay the invoice, not urgent", ""),
        ("What's the FORECAST?", "regex matched"),
        ("forecasting is hard", ""),
        ("well hello there", "substring matched"),
        ("HELLO", ""),
    ];
    for (text, expected) in cases {
        let reply = reply_text(&client, ask("gpt-4o-mini", text)).await;
        if expected.is_empty() {
            assert!(reply.starts_with("Mock reply"), "{text:?} -> {reply:?}");
        } else {
            assert_eq!(reply, expected, "{text:?}");
        }
    }
    assert_eq!(
        answered_by(&server),
        [
            "rule:both#0",
            "default",
            "default",
            "rule:regex#0",
            "default",
            "rule:substring#0",
            "default"
        ]
    );
}

/// Proves `role` and `last`: `role: tool, last: true` matches only when the last message is a
/// tool result; `role: system` with `content` searches only system messages.
#[tokio::test]
async fn rule_matches_on_role_and_last_message() {
    let server = start_with_rules(
        r#"
rules:
  - name: after-tool
    match: { role: tool, last: true }
    reply: { text: "thanks for the tool result" }
  - name: pirate
    match: { role: system, content: pirate }
    reply: { text: "arr" }
"#,
    )
    .await;
    let client = client(&server);
    let call = json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    ]});
    let tool_last = chat_request(json!({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "look it up"}, call, {"role": "tool", "tool_call_id": "call_1", "content": "42"}
    ]}));
    let user_last = chat_request(json!({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "look it up"}, call, {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        {"role": "assistant", "content": "It is 42."}, {"role": "user", "content": "and then?"}
    ]}));
    let system_pirate = chat_request(json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "Talk like a pirate."}, {"role": "user", "content": "hi"}
    ]}));
    let user_pirate = ask("gpt-4o-mini", "I like pirate films");

    assert_eq!(
        reply_text(&client, tool_last).await,
        "thanks for the tool result"
    );
    assert!(
        reply_text(&client, user_last)
            .await
            .starts_with("Mock reply")
    );
    assert_eq!(reply_text(&client, system_pirate).await, "arr");
    assert!(
        reply_text(&client, user_pirate)
            .await
            .starts_with("Mock reply")
    );
    assert_eq!(
        answered_by(&server),
        ["rule:after-tool#0", "default", "rule:pirate#0", "default"]
    );
}

/// Proves `tools: true/false` (tools offered or not) and the `tool_calls` reply: the call made
/// is exactly the rule's name and arguments, plain and streamed (fragments accumulated), with
/// finish reason `tool_calls`; without tools the other rule answers with text.
#[tokio::test]
async fn rule_matches_on_tools_offered_and_replies_with_tool_calls() {
    let server = start_with_rules(
        r#"
rules:
  - name: with-tools
    match: { tools: true, content: weather }
    reply:
      tool_calls:
        - name: get_weather
          arguments: { city: Paris, days: 3, units: { temperature: celsius } }
        - name: get_time
          arguments: { zone: Europe/Paris }
  - name: without-tools
    match: { tools: false, content: weather }
    reply: { text: "no tools to call" }
"#,
    )
    .await;
    let client = client(&server);
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    ]);
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "weather in Paris?"}], "tools": tools});
    let response = client
        .chat()
        .create(chat_request(body.clone()))
        .await
        .unwrap();
    assert_eq!(
        response.choices[0].finish_reason,
        Some(FinishReason::ToolCalls)
    );
    let expected = vec![
        (
            "get_weather".to_owned(),
            json!({"city": "Paris", "days": 3, "units": {"temperature": "celsius"}}),
        ),
        ("get_time".to_owned(), json!({"zone": "Europe/Paris"})),
    ];
    assert_eq!(calls_of(&response), expected);

    let mut streamed = body;
    streamed["stream"] = json!(true);
    let mut stream = client
        .chat()
        .create_stream(chat_request(streamed))
        .await
        .unwrap();
    let mut calls: std::collections::BTreeMap<u32, (String, String)> = Default::default();
    while let Some(chunk) = stream.next().await {
        for choice in chunk.unwrap().choices {
            for fragment in choice.delta.tool_calls.into_iter().flatten() {
                let entry = calls.entry(fragment.index).or_default();
                if let Some(function) = fragment.function {
                    entry.0.push_str(function.name.as_deref().unwrap_or(""));
                    entry
                        .1
                        .push_str(function.arguments.as_deref().unwrap_or(""));
                }
            }
        }
    }
    let streamed: Vec<(String, Value)> = calls
        .into_values()
        .map(|(name, arguments)| (name, serde_json::from_str(&arguments).unwrap()))
        .collect();
    assert_eq!(streamed, expected);

    let text = reply_text(&client, ask("gpt-4o-mini", "weather in Paris?")).await;
    assert_eq!(text, "no tools to call");
    assert_eq!(
        answered_by(&server),
        [
            "rule:with-tools#0",
            "rule:with-tools#0",
            "rule:without-tools#0"
        ]
    );
}

/// Proves matching on `endpoint`: a `responses` rule answers only the Responses API, a `chat`
/// rule only chat, and an `embeddings` rule (here an error reply) only embeddings; an
/// embeddings request it does not match still gets vectors.
#[tokio::test]
async fn rule_matches_on_endpoint() {
    let server = start_with_rules(
        r#"
rules:
  - name: responses-only
    match: { endpoint: responses }
    reply: { text: "from the responses rule" }
  - name: embeddings-blocked
    match: { endpoint: embeddings, content: forbidden }
    reply:
      error: { status: 403, message: "embedding forbidden text", type: permission_error, code: region_blocked, param: input }
  - name: chat-only
    match: { endpoint: chat }
    reply: { text: "from the chat rule" }
"#,
    )
    .await;
    let client = client(&server);
    assert_eq!(
        reply_text(&client, ask("gpt-4o-mini", "hi")).await,
        "from the chat rule"
    );
    let request: CreateResponse =
        serde_json::from_value(json!({"model": "gpt-4o-mini", "input": "hi"})).unwrap();
    let response = client.responses().create(request).await.unwrap();
    assert_eq!(
        response.output_text().as_deref(),
        Some("from the responses rule")
    );

    let blocked = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "text-embedding-3-small", "input": "forbidden words"}),
    )
    .await;
    assert_eq!(blocked.status(), 403);
    let body: Value = blocked.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"message": "embedding forbidden text", "type": "permission_error", "param": "input", "code": "region_blocked"}})
    );
    let allowed = client
        .embeddings()
        .create(
            serde_json::from_value(
                json!({"model": "text-embedding-3-small", "input": "fine words"}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(allowed.data.len(), 1);
    assert_eq!(
        answered_by(&server),
        [
            "rule:chat-only#0",
            "rule:responses-only#0",
            "rule:embeddings-blocked#0",
            "default"
        ]
    );
    assert_eq!(server.requests()[2].status, 403);
}

/// Proves that the first matching rule wins (in file order), that a rule without a name is
/// labelled by its index (`rule:#<index>#<step>`), and that a request no rule matches gets
/// the deterministic default.
#[tokio::test]
async fn first_matching_rule_wins_and_no_match_falls_back_to_default() {
    let server = start_with_rules(
        r#"
rules:
  - match: { content: hello, model: gpt-4o }
    reply: { text: "unnamed rule" }
  - name: first
    match: { content: hello }
    reply: { text: "first rule" }
  - name: second
    match: { content: "hello world" }
    reply: { text: "second rule" }
"#,
    )
    .await;
    let client = client(&server);
    assert_eq!(
        reply_text(&client, ask("gpt-4o-mini", "hello world")).await,
        "first rule"
    );
    assert_eq!(
        reply_text(&client, ask("gpt-4o", "hello world")).await,
        "unnamed rule"
    );
    let default = reply_text(&client, ask("gpt-4o-mini", "goodbye world")).await;
    assert!(default.starts_with("Mock reply"), "{default}");
    assert!(default.contains("goodbye world"));
    assert_eq!(
        answered_by(&server),
        ["rule:first#0", "rule:#0#0", "default"]
    );
}

// ---------------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------------

/// Proves the `json` reply: chat content (plain and streamed) and Responses output text are
/// exactly the rule's JSON value, serialized.
#[tokio::test]
async fn json_reply_is_sent_as_content() {
    let server = start_with_rules(
        r#"
rules:
  - name: order
    match: { content: order }
    reply:
      json: { id: 7, items: [ { sku: A-1, qty: 2 } ], paid: true, note: null }
"#,
    )
    .await;
    let expected =
        json!({"id": 7, "items": [{"sku": "A-1", "qty": 2}], "paid": true, "note": null});
    let client = client(&server);
    let content = reply_text(&client, ask("gpt-4o-mini", "my order please")).await;
    assert_eq!(serde_json::from_str::<Value>(&content).unwrap(), expected);

    let mut stream = client
        .chat()
        .create_stream(chat_request(json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "order"}]})))
        .await
        .unwrap();
    let mut streamed = String::new();
    while let Some(chunk) = stream.next().await {
        for choice in chunk.unwrap().choices {
            streamed.push_str(choice.delta.content.as_deref().unwrap_or(""));
        }
    }
    assert_eq!(serde_json::from_str::<Value>(&streamed).unwrap(), expected);

    let response = client
        .responses()
        .create(serde_json::from_value(json!({"model": "gpt-4o-mini", "input": "order"})).unwrap())
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&response.output_text().unwrap()).unwrap(),
        expected
    );
}

/// Proves the `error` reply: the rule's status, message, type, code and param come back in
/// OpenAI's body (type defaulting to `invalid_request_error`), async-openai sees an `ApiError`,
/// and the journal records the rule and the status.
#[tokio::test]
async fn error_reply_uses_the_rules_status_type_and_code() {
    let server = start_with_rules(
        r#"
rules:
  - name: teapot
    match: { content: tea }
    reply:
      error: { status: 418, message: "I'm a teapot", type: teapot_error, code: short_and_stout }
  - name: plain-error
    match: { content: bad }
    reply:
      error: { status: 422, message: "unprocessable" }
"#,
    )
    .await;
    let response = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "tea please"}]}),
    )
    .await;
    assert_eq!(response.status(), 418);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"error": {"message": "I'm a teapot", "type": "teapot_error", "param": null, "code": "short_and_stout"}})
    );
    match client(&server)
        .chat()
        .create(ask("gpt-4o-mini", "bad request"))
        .await
    {
        Err(OpenAIError::ApiError(error)) => {
            assert_eq!(error.status_code, 422);
            assert_eq!(error.api_error.message, "unprocessable");
            assert_eq!(
                error.api_error.r#type.as_deref(),
                Some("invalid_request_error")
            );
            assert_eq!(error.api_error.code, None);
        }
        other => panic!("expected a 422 ApiError, got {other:?}"),
    }
    let journal = server.requests();
    assert_eq!(
        (journal[0].answered_by.as_str(), journal[0].status),
        ("rule:teapot#0", 418)
    );
    assert_eq!(
        (journal[1].answered_by.as_str(), journal[1].status),
        ("rule:plain-error#0", 422)
    );
}

/// Proves a `tool_calls` reply on the Responses API: a `function_call` output item with the
/// rule's name and arguments.
#[tokio::test]
async fn tool_calls_reply_on_the_responses_api() {
    let server = start_with_rules(
        r#"
rules:
  - name: search
    match: { endpoint: responses, content: find }
    reply:
      tool_calls: [ { name: search_docs, arguments: { query: "rust mocks", limit: 5 } } ]
"#,
    )
    .await;
    let response = client(&server)
        .responses()
        .create(
            serde_json::from_value(json!({
                "model": "gpt-4.1-mini",
                "input": "find me docs",
                "tools": [{"type": "function", "name": "search_docs", "parameters": {"type": "object"}}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let OutputItem::FunctionCall(call) = &response.output[0] else {
        panic!("expected a function call: {:?}", response.output);
    };
    assert_eq!(call.name, "search_docs");
    assert_eq!(
        serde_json::from_str::<Value>(&call.arguments).unwrap(),
        json!({"query": "rust mocks", "limit": 5})
    );
}

// ---------------------------------------------------------------------------------------------
// Faults from rules
// ---------------------------------------------------------------------------------------------

const FAULT_RULES: &str = r#"
rules:
  - name: rl
    match: { content: "fault:rate_limit" }
    reply: { fault: { kind: rate_limit, retry_after_secs: 1 } }
  - name: quota
    match: { content: "fault:insufficient_quota" }
    reply: { fault: { kind: insufficient_quota } }
  - name: boom
    match: { content: "fault:server_error" }
    reply: { fault: { kind: server_error } }
  - name: busy
    match: { content: "fault:overloaded" }
    reply: { fault: { kind: overloaded } }
  - name: stuck
    match: { content: "fault:hang" }
    reply: { fault: { kind: hang, ms: 10000 } }
  - name: cut
    match: { content: "fault:truncated_stream" }
    reply: { fault: { kind: truncated_stream, after_chunks: 2 } }
  - name: garbled
    match: { content: "fault:malformed_json" }
    reply: { fault: { kind: malformed_json } }
  - name: dropped
    match: { content: "fault:drop_connection" }
    reply: { fault: { kind: drop_connection, after_chunks: 2 } }
"#;

/// Proves the status faults as rule replies: `rate_limit` (429, `retry-after: 1`, code
/// `rate_limit_exceeded`), `insufficient_quota` (429, type and code `insufficient_quota`),
/// `server_error` (500) and `overloaded` (503), each journaled as `rule:<name>#0`.
#[tokio::test]
async fn status_faults_from_rules() {
    let server = start_with_rules(FAULT_RULES).await;
    let cases = [
        ("rate_limit", 429, "rl", Some("rate_limit_exceeded")),
        (
            "insufficient_quota",
            429,
            "quota",
            Some("insufficient_quota"),
        ),
        ("server_error", 500, "boom", None),
        ("overloaded", 503, "busy", Some("server_is_overloaded")),
    ];
    for (kind, status, _, code) in cases {
        let response = post(
            &server,
            "/v1/chat/completions",
            &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("fault:{kind}")}]}),
        )
        .await;
        assert_eq!(response.status().as_u16(), status, "{kind}");
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            retry_after.as_deref(),
            (kind == "rate_limit").then_some("1"),
            "{kind}"
        );
        if kind == "rate_limit" {
            assert!(
                response
                    .headers()
                    .contains_key("x-ratelimit-reset-requests")
            );
        }
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"].as_str(), code, "{kind}");
        if kind == "insufficient_quota" {
            assert_eq!(body["error"]["type"], "insufficient_quota");
        }
    }
    let labels = answered_by(&server);
    let expected: Vec<String> = cases
        .iter()
        .map(|(_, _, name, _)| format!("rule:{name}#0"))
        .collect();
    assert_eq!(labels, expected);
}

/// Proves `hang` as a rule reply: a client with a shorter timeout gives up, and the journal
/// holds the request labelled by the rule.
#[tokio::test]
async fn hang_from_rules_trips_a_client_timeout() {
    let server = start_with_rules(FAULT_RULES).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(250))
        .build()
        .unwrap();
    let client = Client::with_config(config(&server)).with_http_client(http);
    match client.chat().create(ask("gpt-4o-mini", "fault:hang")).await {
        Err(OpenAIError::Reqwest(error)) => assert!(error.is_timeout(), "{error}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(answered_by(&server), ["rule:stuck#0"]);
}

/// Proves the body faults as rule replies: `truncated_stream` ends a stream early without
/// `[DONE]`, `malformed_json` is a JSON decode error in async-openai (plain) and one bad chunk
/// (streamed).
#[tokio::test]
async fn body_faults_from_rules() {
    let server = start_with_rules(FAULT_RULES).await;
    let response = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "fault:truncated_stream and more words"}]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains("[DONE]"), "{text}");
    assert_eq!(text.matches("\n\n").count(), 2, "{text}");

    let client = client(&server);
    let result = client
        .chat()
        .create(ask("gpt-4o-mini", "fault:malformed_json"))
        .await;
    assert!(
        matches!(result, Err(OpenAIError::JSONDeserialize(..))),
        "{result:?}"
    );
    let mut stream = client
        .chat()
        .create_stream(chat_request(json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "fault:malformed_json"}]})))
        .await
        .unwrap();
    let mut errors = 0;
    let mut oks = 0;
    while let Some(item) = stream.next().await {
        match item {
            Ok(_) => oks += 1,
            Err(OpenAIError::JSONDeserialize(..)) => errors += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(errors, 1);
    assert!(oks >= 2);
    assert_eq!(
        answered_by(&server),
        ["rule:cut#0", "rule:garbled#0", "rule:garbled#0"]
    );
}

/// Proves `drop_connection` as a rule reply on a stream: the client gets the first two chunks,
/// then an error.
#[tokio::test]
async fn drop_connection_from_rules_breaks_the_stream_after_some_chunks() {
    let server = start_with_rules(FAULT_RULES).await;
    let opened = client(&server)
        .chat()
        .create_stream(chat_request(json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "fault:drop_connection with several words"}]})))
        .await;
    let mut stream = match opened {
        Ok(stream) => stream,
        Err(error) => panic!("the stream did not open: {error:?}"),
    };
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item);
    }
    assert_eq!(
        items.iter().take_while(|i| i.is_ok()).count(),
        2,
        "{items:?}"
    );
    assert!(items.get(2).is_some_and(Result::is_err), "{items:?}");
    assert_eq!(answered_by(&server), ["rule:dropped#0"]);
}

// ---------------------------------------------------------------------------------------------
// Sequences and latency
// ---------------------------------------------------------------------------------------------

/// Proves a sequence: one step per matching request (429, then text), the last step repeating,
/// each journaled as `rule:<name>#<step>`; a non-matching request does not advance it.
#[tokio::test]
async fn sequence_advances_per_match_and_repeats_its_last_step() {
    let server = start_with_rules(
        r#"
rules:
  - name: flaky
    match: { content: "retry me" }
    sequence:
      - fault: { kind: rate_limit, retry_after_secs: 1 }
      - text: "ok after a retry"
"#,
    )
    .await;
    let client = client(&server);
    match client.chat().create(ask("gpt-4o-mini", "retry me")).await {
        Err(OpenAIError::ApiError(error)) => assert_eq!(error.status_code, 429),
        other => panic!("expected a 429 first, got {other:?}"),
    }
    assert!(
        reply_text(&client, ask("gpt-4o-mini", "unrelated"))
            .await
            .starts_with("Mock reply")
    );
    for _ in 0..2 {
        assert_eq!(
            reply_text(&client, ask("gpt-4o-mini", "retry me")).await,
            "ok after a retry"
        );
    }
    let journal: Vec<_> = server
        .requests()
        .into_iter()
        .map(|e| (e.answered_by, e.status))
        .collect();
    assert_eq!(
        journal,
        [
            ("rule:flaky#0".to_owned(), 429),
            ("default".to_owned(), 200),
            ("rule:flaky#1".to_owned(), 200),
            ("rule:flaky#1".to_owned(), 200)
        ]
    );
}

/// Proves that a sequence hands out each step once under concurrency: of ten simultaneous
/// matching requests exactly one gets step 0 (the 429) and the other nine the repeated step 1.
#[tokio::test]
async fn sequence_steps_are_handed_out_once_under_concurrency() {
    let server = start_with_rules(
        "rules:\n  - name: once\n    sequence:\n      - fault: { kind: rate_limit, retry_after_secs: 1 }\n      - text: later\n",
    )
    .await;
    let client = client(&server);
    let results = futures::future::join_all((0..10).map(|_| {
        let client = client.clone();
        async move { client.chat().create(ask("gpt-4o-mini", "hi")).await }
    }))
    .await;
    let failures = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(failures, 1, "{results:?}");
    let mut labels = answered_by(&server);
    labels.sort();
    let mut expected = vec!["rule:once#0".to_owned()];
    expected.extend(std::iter::repeat_n("rule:once#1".to_owned(), 9));
    assert_eq!(labels, expected);
}

/// Proves the reply order: a fault asked for in the `x-mock-fault` header wins over a matching
/// rule (and does not advance the rule's sequence).
#[tokio::test]
async fn header_fault_wins_over_a_matching_rule() {
    let server = start_with_rules(
        "rules:\n  - name: seq\n    sequence:\n      - text: first\n      - text: second\n",
    )
    .await;
    let response = reqwest::Client::new()
        .post(url(&server, "/v1/chat/completions"))
        .header("x-mock-fault", "overloaded")
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        reply_text(&client(&server), ask("gpt-4o-mini", "hi")).await,
        "first"
    );
    assert_eq!(answered_by(&server), ["header:overloaded", "rule:seq#0"]);
}

/// Proves latency in rules: a step's own `latency` delays its answer by at least that much, the
/// file-level `latency` applies to rules without their own, and a step in a sequence can carry
/// its own latency (lower bounds only).
#[tokio::test]
async fn rule_latency_delays_the_answer() {
    let server = start_with_rules(
        r#"
latency: { fixed_ms: 120 }
rules:
  - name: slow
    match: { content: slow }
    reply: { text: "slow reply", latency: { fixed_ms: 200 } }
  - name: file-default
    match: { content: normal }
    reply: { text: "normal reply" }
  - name: stepped
    match: { content: steps }
    sequence:
      - text: "quick-ish"
      - { text: "slower", latency: { fixed_ms: 180 } }
"#,
    )
    .await;
    let client = client(&server);
    for (text, minimum, reply) in [
        ("slow", 200, "slow reply"),
        ("normal", 120, "normal reply"),
        ("steps", 120, "quick-ish"),
        ("steps", 180, "slower"),
    ] {
        let started = Instant::now();
        assert_eq!(reply_text(&client, ask("gpt-4o-mini", text)).await, reply);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(minimum),
            "{text}: {took:?} < {minimum} ms"
        );
    }
}

/// Proves pacing in a rule's latency: `ttft_ms` and `tokens_per_second` slow a streamed rule
/// reply to at least ttft + (chunks - 1) intervals.
#[tokio::test]
async fn rule_latency_paces_streams() {
    let server = start_with_rules(
        r#"
rules:
  - name: paced
    reply:
      text: "one two three four five"
      latency: { ttft_ms: 60, tokens_per_second: 25 }
"#,
    )
    .await;
    let started = Instant::now();
    let mut stream = client(&server)
        .chat()
        .create_stream(chat_request(json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "go"}]})))
        .await
        .unwrap();
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        for choice in chunk.unwrap().choices {
            text.push_str(choice.delta.content.as_deref().unwrap_or(""));
        }
    }
    assert_eq!(text, "one two three four five");
    // 5 content chunks: ttft before the first, 40 ms before each of the other 4.
    assert!(started.elapsed() >= Duration::from_millis(60 + 4 * 40));
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Proves `with_rules_file`: rules load from a YAML file on disk and answer like inline ones;
/// a `RuleSet` built with `RuleSet::from_yaml` works through `with_rules` too.
#[tokio::test]
async fn rules_load_from_a_file_and_from_a_rule_set() {
    let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    writeln!(
        file,
        "rules:\n  - name: from-file\n    match: {{ content: ping }}\n    reply: {{ text: pong }}"
    )
    .unwrap();
    let server = MockServer::start(MockConfig::default().with_rules_file(file.path()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        reply_text(&client(&server), ask("gpt-4o-mini", "ping")).await,
        "pong"
    );
    assert_eq!(answered_by(&server), ["rule:from-file#0"]);

    let rules = RuleSet::from_yaml(
        "rules:\n  - name: built\n    reply: { text: built }\n",
        "built.yaml".as_ref(),
    )
    .unwrap();
    assert_eq!(rules.len(), 1);
    let server = MockServer::start(MockConfig::default().with_rules(rules))
        .await
        .unwrap();
    assert_eq!(
        reply_text(&client(&server), ask("gpt-4o-mini", "anything")).await,
        "built"
    );
}

/// Proves that a malformed rules file fails at start-up with a `MockError` naming the file's
/// path and the line: an unknown key, a bad regex, an unknown fault kind; two replies in one
/// step name the path too; and a missing file names its path.
#[test]
fn malformed_rules_file_names_the_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken-rules.yaml");
    let origin = path.display().to_string();

    let cases = [
        (
            "rules:\n  - name: a\n    match: { content: x }\n    reply: { text: y }\n  - name: typo\n    match: { contnt: x }\n    reply: { text: y }\n",
            6,
            "contnt",
        ),
        (
            "rules:\n  - name: a\n    reply: { text: y }\n  - name: regex\n    match:\n      content_regex: \"(unclosed\"\n    reply: { text: y }\n",
            6,
            "regex",
        ),
        (
            "rules:\n  - name: a\n    reply: { text: y }\n  - name: kaboom\n    reply:\n      fault: { kind: explode }\n",
            6,
            "explode",
        ),
    ];
    for (yaml, line, needle) in cases {
        std::fs::write(&path, yaml).unwrap();
        let message = parse_error(MockConfig::default().with_rules_file(&path), &origin, line);
        assert!(message.contains(needle), "{needle} not in: {message}");
    }

    // Two replies in one step: the file and a line are named (which line is checked in
    // `invalid_steps_are_reported_at_their_own_line`).
    std::fs::write(
        &path,
        "rules:\n  - name: a\n    reply: { text: y }\n  - name: greedy\n    reply:\n      text: y\n      json: { a: 1 }\n",
    )
    .unwrap();
    let message = MockConfig::default()
        .with_rules_file(&path)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&origin) && message.contains("line "),
        "{message}"
    );
    assert!(message.contains("exactly one"), "{message}");

    let missing = dir.path().join("missing.yaml");
    let error = MockConfig::default().with_rules_file(&missing).unwrap_err();
    assert!(
        error.to_string().contains(&missing.display().to_string()),
        "{error}"
    );
    assert!(matches!(error, MockError::Rules(RulesError::Read { .. })));
}

/// Proves the same checks for inline rules (`with_rules_yaml`, named `<inline rules>`):
/// unknown keys at every level, a bad regex, a bad fault kind, an unknown fault field, a rule
/// with neither `reply` nor `sequence` — each a `MockError` naming the line.
#[test]
fn malformed_inline_rules_name_the_line() {
    let cases = [
        ("rulez: []\n", 1, "rulez"),
        (
            "rules:\n  - name: a\n    reply: { text: y, colour: red }\n",
            3,
            "colour",
        ),
        (
            "rules:\n  - name: a\n    mtch: { content: x }\n    reply: { text: y }\n",
            3,
            "mtch",
        ),
        (
            "rules:\n  - name: a\n    match: { content_regex: \"[z-a]\" }\n    reply: { text: y }\n",
            3,
            "regex",
        ),
        (
            "rules:\n  - name: a\n    reply:\n      fault: { kind: teleport }\n",
            4,
            "teleport",
        ),
        (
            "rules:\n  - name: a\n    reply:\n      fault: { kind: hang, seconds: 3 }\n",
            4,
            "seconds",
        ),
        (
            "rules:\n  - name: a\n    match: { content: x }\n",
            2,
            "reply",
        ),
    ];
    for (yaml, line, needle) in cases {
        let message = parse_error(
            MockConfig::default().with_rules_yaml(yaml),
            "<inline rules>",
            line,
        );
        assert!(
            message.contains(needle),
            "{needle} not in: {message}\n{yaml}"
        );
    }
}

/// Proves that a reply step that is wrong as a whole — two replies in one step, an error status
/// outside 400–599, tool arguments that are not a mapping — is reported at the step's own line
/// (here deep inside a `sequence`), with the problem named, so the user can find which step
/// of a long rule is broken.
#[test]
fn invalid_steps_are_reported_at_their_own_line() {
    let cases = [
        (
            "rules:\n  - name: long\n    match: { content: x }\n    sequence:\n      - text: one\n      - text: two\n      - { text: three, json: { a: 1 } }\n",
            7,
            "exactly one",
        ),
        (
            "rules:\n  - name: long\n    sequence:\n      - text: ok\n      - error: { status: 200, message: fine }\n",
            5,
            "200",
        ),
        (
            "rules:\n  - name: long\n    sequence:\n      - text: ok\n      - tool_calls: [ { name: f, arguments: [1, 2] } ]\n",
            5,
            "mapping",
        ),
    ];
    let mut wrong = Vec::new();
    for (yaml, line, needle) in cases {
        let message = MockConfig::default()
            .with_rules_yaml(yaml)
            .unwrap_err()
            .to_string();
        assert!(message.contains(needle), "{needle} not in: {message}");
        if !message.contains(&format!("at line {line},")) {
            wrong.push(format!("expected line {line}: {message}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
