//! Faults and latency asked for in the `x-mock-fault` / `x-mock-latency` request headers (and
//! `MockConfig::with_latency`), seen through async-openai and raw reqwest — and async-openai's
//! retry middleware (`OpenAIRetryLayer`) against rate limits, quota errors and 5xx from a rules
//! sequence.
//!
//! async-openai's default client already wraps its transport in `OpenAIRetryLayer` (3 retries),
//! so tests that want to see a single failed attempt use a bare `ReqwestService` through
//! `Client::with_http_service`.

use std::time::{Duration, Instant};

use async_openai::{
    Client,
    config::OpenAIConfig,
    error::OpenAIError,
    middleware::{ReqwestService, retry::OpenAIRetryLayer},
    traits::RequestOptionsBuilder,
    types::{
        chat::{
            ChatCompletionResponseStream, CreateChatCompletionRequest,
            CreateChatCompletionStreamResponse,
        },
        responses::CreateResponse,
    },
};
use chainlog::mock::{FAULT_HEADER, LATENCY_HEADER, Latency, MockConfig, MockServer};
use futures::StreamExt;
use serde_json::{Value, json};
use tower::ServiceBuilder;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

async fn start_with(config: MockConfig) -> MockServer {
    MockServer::start(config).await.expect("mock server starts")
}

async fn start() -> MockServer {
    start_with(MockConfig::default()).await
}

fn config(server: &MockServer) -> OpenAIConfig {
    OpenAIConfig::new()
        .with_api_base(server.base_url())
        .with_api_key("sk-test")
}

/// async-openai with its default transport (which retries 429/5xx by itself).
fn default_client(server: &MockServer) -> Client<OpenAIConfig> {
    Client::with_config(config(server))
}

/// async-openai without any retry: every request is one attempt.
fn bare_client(server: &MockServer) -> Client<OpenAIConfig> {
    Client::with_config(config(server))
        .with_http_service(ReqwestService::new(reqwest::Client::new()))
}

/// async-openai with an explicit `OpenAIRetryLayer` of `max_retries`.
fn retrying_client(server: &MockServer, max_retries: usize) -> Client<OpenAIConfig> {
    let service = ServiceBuilder::new()
        .layer(OpenAIRetryLayer::new(max_retries))
        .service(ReqwestService::new(reqwest::Client::new()));
    Client::with_config(config(server)).with_http_service(service)
}

fn chat(text: &str) -> CreateChatCompletionRequest {
    serde_json::from_value(
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}),
    )
    .unwrap()
}

fn chat_body(text: &str, stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": text}]})
}

fn url(server: &MockServer, path: &str) -> String {
    format!("http://{}{path}", server.addr())
}

/// POSTs `body` with one extra header through reqwest.
async fn post_with_header(
    server: &MockServer,
    path: &str,
    body: &Value,
    header: (&str, &str),
) -> reqwest::Response {
    reqwest::Client::new()
        .post(url(server, path))
        .bearer_auth("sk-test")
        .header(header.0, header.1)
        .json(body)
        .send()
        .await
        .expect("the mock answers")
}

fn assert_error_body(body: &Value) -> &serde_json::Map<String, Value> {
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {body}"));
    let mut keys: Vec<_> = error.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message", "param", "type"], "{body}");
    error
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// Every item of a stream, errors included, until it ends (bounded in time).
async fn drain(
    mut stream: ChatCompletionResponseStream,
) -> Vec<Result<CreateChatCompletionStreamResponse, OpenAIError>> {
    let mut items = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(item) = stream.next().await {
            items.push(item);
        }
    })
    .await
    .expect("the stream ends");
    items
}

fn content_of(chunks: &[CreateChatCompletionStreamResponse]) -> String {
    chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|choice| choice.delta.content.clone())
        .collect()
}

fn api_error(
    result: Result<impl std::fmt::Debug, OpenAIError>,
) -> async_openai::error::ApiErrorResponse {
    match result {
        Err(OpenAIError::ApiError(error)) => error,
        other => panic!("expected an ApiError, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Status faults from the header
// ---------------------------------------------------------------------------------------------

/// Proves `x-mock-fault: rate_limit; retry_after_secs=2`: a 429 with code
/// `rate_limit_exceeded`, OpenAI's four-key body, `retry-after: 2` (and `retry-after-ms`), and
/// the six `x-ratelimit-*` headers with resets of `2s`; async-openai (without retries) sees an
/// `ApiError` 429; the journal records `header:rate_limit` with status 429.
#[tokio::test]
async fn rate_limit_header_answers_429_with_retry_headers() {
    let server = start().await;
    let response = post_with_header(
        &server,
        "/v1/chat/completions",
        &chat_body("hi", false),
        (FAULT_HEADER, "rate_limit; retry_after_secs=2"),
    )
    .await;
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "retry-after"), Some("2"));
    assert_eq!(header(&response, "retry-after-ms"), Some("2000"));
    for name in [
        "x-ratelimit-limit-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-remaining-tokens",
    ] {
        let value = header(&response, name).unwrap_or_else(|| panic!("{name} missing"));
        assert!(value.parse::<u64>().is_ok(), "{name}: {value}");
    }
    assert_eq!(
        header(&response, "x-ratelimit-remaining-requests"),
        Some("0")
    );
    assert_eq!(header(&response, "x-ratelimit-reset-requests"), Some("2s"));
    assert_eq!(header(&response, "x-ratelimit-reset-tokens"), Some("2s"));
    let body: Value = response.json().await.unwrap();
    let error = assert_error_body(&body);
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert_ne!(error["type"], "insufficient_quota");

    let error = api_error(
        bare_client(&server)
            .chat()
            .header(FAULT_HEADER, "rate_limit; retry_after_secs=2")
            .unwrap()
            .create(chat("hi"))
            .await,
    );
    assert_eq!(error.status_code, 429);
    assert_eq!(error.api_error.code.as_deref(), Some("rate_limit_exceeded"));

    let journal = server.requests();
    assert_eq!(journal.len(), 2);
    for entry in journal {
        assert_eq!(entry.answered_by, "header:rate_limit");
        assert_eq!(entry.status, 429);
    }
}

/// Proves the other status faults from the header, on chat (plain and streamed), Responses and
/// embeddings alike: `insufficient_quota` is a 429 of type and code `insufficient_quota` with no
/// `retry-after`; `server_error` a 500 of type `server_error`; `overloaded` a 503 with code
/// `server_is_overloaded` — each with OpenAI's four-key body, and journaled by fault kind.
#[tokio::test]
async fn status_fault_headers_answer_openai_errors_on_every_endpoint() {
    let server = start().await;
    let endpoints = [
        ("/v1/chat/completions", chat_body("hi", false)),
        ("/v1/chat/completions", chat_body("hi", true)),
        (
            "/v1/responses",
            json!({"model": "gpt-4o-mini", "input": "hi"}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": "hi"}),
        ),
    ];
    let faults = [
        (
            "insufficient_quota",
            429,
            "insufficient_quota",
            Some("insufficient_quota"),
        ),
        ("server_error", 500, "server_error", None),
        (
            "overloaded",
            503,
            "service_unavailable_error",
            Some("server_is_overloaded"),
        ),
        ("rate_limit", 429, "", Some("rate_limit_exceeded")),
    ];
    for (fault, status, kind, code) in faults {
        for (path, body) in &endpoints {
            let response = post_with_header(&server, path, body, (FAULT_HEADER, fault)).await;
            assert_eq!(response.status().as_u16(), status, "{fault} on {path}");
            let has_retry_after = header(&response, "retry-after").is_some();
            assert_eq!(has_retry_after, fault == "rate_limit", "{fault} on {path}");
            let body: Value = response.json().await.unwrap();
            let error = assert_error_body(&body);
            if !kind.is_empty() {
                assert_eq!(error["type"], kind, "{fault} on {path}");
            }
            assert_eq!(error["code"].as_str(), code, "{fault} on {path}");
        }
    }
    let journal = server.requests();
    assert_eq!(journal.len(), faults.len() * endpoints.len());
    assert!(
        journal[..4]
            .iter()
            .all(|e| e.answered_by == "header:insufficient_quota" && e.status == 429)
    );
    assert!(
        journal[4..8]
            .iter()
            .all(|e| e.answered_by == "header:server_error" && e.status == 500)
    );
    assert!(
        journal[8..12]
            .iter()
            .all(|e| e.answered_by == "header:overloaded" && e.status == 503)
    );
}

/// Proves that async-openai (one attempt, no retries) surfaces each status fault as an
/// `ApiError` with the right status, and a streaming request fails before any chunk.
#[tokio::test]
async fn async_openai_sees_status_faults_as_api_errors() {
    let server = start().await;
    let client = bare_client(&server);
    for (fault, status) in [
        ("insufficient_quota", 429),
        ("server_error", 500),
        ("overloaded", 503),
    ] {
        let error = api_error(
            client
                .chat()
                .header(FAULT_HEADER, fault)
                .unwrap()
                .create(chat("hi"))
                .await,
        );
        assert_eq!(error.status_code.as_u16(), status, "{fault}");
        let mut streamed = chat("hi");
        streamed.stream = Some(true);
        let opened = client
            .chat()
            .header(FAULT_HEADER, fault)
            .unwrap()
            .create_stream(streamed)
            .await;
        match opened {
            Err(OpenAIError::ApiError(error)) => assert_eq!(error.status_code.as_u16(), status),
            Err(other) => panic!("{fault}: expected an ApiError, got {other:?}"),
            Ok(_) => panic!("{fault}: the stream opened"),
        }
    }
    let quota = api_error(
        client
            .chat()
            .header(FAULT_HEADER, "insufficient_quota")
            .unwrap()
            .create(chat("hi"))
            .await,
    );
    assert_eq!(
        quota.api_error.r#type.as_deref(),
        Some("insufficient_quota")
    );
    assert_eq!(quota.api_error.code.as_deref(), Some("insufficient_quota"));
}

// ---------------------------------------------------------------------------------------------
// Hang
// ---------------------------------------------------------------------------------------------

/// Proves `hang`: with a tower timeout layer shorter than the hang, async-openai's request
/// times out (after at least the timeout) — and the journal already holds the request, labelled
/// `header:hang`.
#[tokio::test]
async fn hang_trips_a_client_timeout_and_is_still_journaled() {
    let server = start().await;
    let service = ServiceBuilder::new()
        .timeout(Duration::from_millis(300))
        .service(ReqwestService::new(reqwest::Client::new()));
    let client = Client::with_config(config(&server)).with_http_service(service);
    let started = Instant::now();
    let result = client
        .chat()
        .header(FAULT_HEADER, "hang; ms=10000")
        .unwrap()
        .create(chat("are you there?"))
        .await;
    let waited = started.elapsed();
    match result {
        Err(OpenAIError::Boxed(error)) => {
            assert!(
                error.is::<tower::timeout::error::Elapsed>(),
                "not a timeout: {error}"
            );
        }
        other => panic!("expected a tower timeout, got {other:?}"),
    }
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    let journal = server.requests();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].answered_by, "header:hang");
    assert_eq!(journal[0].body["messages"][0]["content"], "are you there?");
}

/// Proves `hang` against reqwest's own timeout (async-openai's `with_http_client`): the error is
/// a reqwest timeout, for a streaming request too.
#[tokio::test]
async fn hang_trips_a_reqwest_timeout_on_streams_too() {
    let server = start().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(250))
        .build()
        .unwrap();
    let client = Client::with_config(config(&server)).with_http_client(http);
    let mut request = chat("stream please");
    request.stream = Some(true);
    let result = client
        .chat()
        .header(FAULT_HEADER, "hang; ms=10000")
        .unwrap()
        .create_stream(request)
        .await;
    match result {
        Err(OpenAIError::Reqwest(error)) => assert!(error.is_timeout(), "{error}"),
        Err(other) => panic!("expected a reqwest timeout, got {other:?}"),
        Ok(_) => panic!("the stream opened despite the hang"),
    }
    assert_eq!(server.requests()[0].answered_by, "header:hang");
}

/// Proves that a short `hang` outlived by a patient client ends in a 504 with a JSON error
/// body, after at least the hang.
#[tokio::test]
async fn short_hang_ends_in_a_504() {
    let server = start().await;
    let started = Instant::now();
    let response = post_with_header(
        &server,
        "/v1/chat/completions",
        &chat_body("hi", false),
        (FAULT_HEADER, "hang; ms=200"),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(response.status(), 504);
    assert_error_body(&response.json::<Value>().await.unwrap());
    assert_eq!(server.requests()[0].status, 504);
}

// ---------------------------------------------------------------------------------------------
// Broken bodies
// ---------------------------------------------------------------------------------------------

/// Proves `drop_connection; after_chunks=2` on a stream: async-openai receives the first chunks
/// (the role chunk and a content chunk), then an error — never a finish reason or the end of
/// the answer.
#[tokio::test]
async fn drop_connection_breaks_a_stream_after_some_chunks() {
    let server = start().await;
    let mut request = chat("a long enough question to stream several words back");
    request.stream = Some(true);
    let stream = bare_client(&server)
        .chat()
        .header(FAULT_HEADER, "drop_connection; after_chunks=2")
        .unwrap()
        .create_stream(request)
        .await
        .expect("the stream opens (200)");
    let items = drain(stream).await;
    let oks: Vec<_> = items
        .iter()
        .take_while(|item| item.is_ok())
        .map(|item| item.as_ref().unwrap().clone())
        .collect();
    assert_eq!(oks.len(), 2, "{items:?}");
    assert!(oks[0].choices[0].delta.role.is_some());
    assert!(!content_of(&oks).is_empty());
    let error = items.get(2).expect("an error after the chunks");
    assert!(
        matches!(
            error,
            Err(OpenAIError::StreamError(_) | OpenAIError::Reqwest(_))
        ),
        "{error:?}"
    );
    assert!(
        oks.iter()
            .flat_map(|c| &c.choices)
            .all(|choice| choice.finish_reason.is_none())
    );
    assert_eq!(server.requests()[0].answered_by, "header:drop_connection");
}

/// Proves `drop_connection; after_chunks=2` on a paced stream (`tokens_per_second`, so the
/// server yields between chunks): the client still gets the first two chunks, then an error.
#[tokio::test]
async fn drop_connection_breaks_a_paced_stream_after_some_chunks() {
    let server = start().await;
    let mut request = chat("a long enough question to stream several words back");
    request.stream = Some(true);
    let stream = bare_client(&server)
        .chat()
        .header(FAULT_HEADER, "drop_connection; after_chunks=2")
        .unwrap()
        .header(LATENCY_HEADER, "tokens_per_second=200")
        .unwrap()
        .create_stream(request)
        .await
        .expect("the stream opens (200)");
    let items = drain(stream).await;
    let oks = items.iter().take_while(|item| item.is_ok()).count();
    assert_eq!(oks, 2, "{items:?}");
    assert!(
        matches!(
            items.get(2),
            Some(Err(OpenAIError::StreamError(_) | OpenAIError::Reqwest(_)))
        ),
        "{items:?}"
    );
}

/// Proves `drop_connection` on a plain request: the 200 and its headers arrive, then the body
/// breaks off — raw reqwest fails reading the body, and async-openai reports a reqwest body
/// error (not a failure to get any response).
#[tokio::test]
async fn drop_connection_breaks_a_plain_body() {
    let server = start().await;
    let response = reqwest::Client::new()
        .post(url(&server, "/v1/chat/completions"))
        .header(FAULT_HEADER, "drop_connection; after_chunks=2")
        .json(&chat_body("hi", false))
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(error) => panic!("no response at all, not even the status line: {error:?}"),
    };
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.is_err(), "the body must break off");

    let result = bare_client(&server)
        .chat()
        .header(FAULT_HEADER, "drop_connection; after_chunks=2")
        .unwrap()
        .create(chat("hi"))
        .await;
    match result {
        Err(OpenAIError::Reqwest(error)) => {
            assert!(error.is_body() || error.is_decode(), "{error:?}");
        }
        other => panic!("expected a body error, got {other:?}"),
    }
}

/// Proves `truncated_stream; after_chunks=2`: the raw SSE body ends cleanly (no transport
/// error) but early — two complete `data:` frames, half of the next, and no `data: [DONE]`;
/// async-openai's stream just ends without a finish reason.
#[tokio::test]
async fn truncated_stream_ends_without_done() {
    let server = start().await;
    let body = chat_body("tell me something long enough to be cut", true);
    let response = post_with_header(
        &server,
        "/v1/chat/completions",
        &body,
        (FAULT_HEADER, "truncated_stream; after_chunks=2"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("the body ends cleanly");
    assert!(!text.contains("[DONE]"), "{text}");
    let complete: Vec<&str> = text
        .split_inclusive("\n\n")
        .filter(|f| f.ends_with("\n\n"))
        .collect();
    assert_eq!(complete.len(), 2, "{text}");
    for frame in &complete {
        let payload = frame.trim().strip_prefix("data: ").unwrap();
        serde_json::from_str::<Value>(payload).expect("complete frames are JSON");
    }
    assert!(!text.ends_with("\n\n"), "the last frame is cut: {text:?}");

    let mut request = chat("tell me something long enough to be cut");
    request.stream = Some(true);
    let items = drain(
        bare_client(&server)
            .chat()
            .header(FAULT_HEADER, "truncated_stream; after_chunks=2")
            .unwrap()
            .create_stream(request)
            .await
            .unwrap(),
    )
    .await;
    let chunks: Vec<_> = items.into_iter().filter_map(Result::ok).collect();
    assert!(chunks.len() <= 2, "{chunks:?}");
    assert!(
        chunks
            .iter()
            .flat_map(|c| &c.choices)
            .all(|choice| choice.finish_reason.is_none())
    );
}

/// Proves `truncated_stream` on a plain request: half a JSON body, which async-openai reports
/// as a JSON decode error.
#[tokio::test]
async fn truncated_plain_body_is_a_json_decode_error() {
    let server = start().await;
    let result = bare_client(&server)
        .chat()
        .header(FAULT_HEADER, "truncated_stream")
        .unwrap()
        .create(chat("hi"))
        .await;
    assert!(
        matches!(result, Err(OpenAIError::JSONDeserialize(..))),
        "{result:?}"
    );
}

/// Proves `malformed_json`: a plain 200 whose body async-openai cannot decode (a JSON decode
/// error), and a stream in which one chunk fails to decode while the others parse.
#[tokio::test]
async fn malformed_json_breaks_decoding_plain_and_streamed() {
    let server = start().await;
    let client = bare_client(&server);
    let result = client
        .chat()
        .header(FAULT_HEADER, "malformed_json")
        .unwrap()
        .create(chat("hi"))
        .await;
    match result {
        Err(OpenAIError::JSONDeserialize(_, content)) => {
            assert!(serde_json::from_str::<Value>(&content).is_err());
        }
        other => panic!("expected a JSON decode error, got {other:?}"),
    }

    let mut request = chat("stream a broken chunk");
    request.stream = Some(true);
    let items = drain(
        client
            .chat()
            .header(FAULT_HEADER, "malformed_json")
            .unwrap()
            .create_stream(request)
            .await
            .unwrap(),
    )
    .await;
    assert!(items[0].is_ok(), "{:?}", items[0]);
    let broken = items
        .iter()
        .filter(|item| matches!(item, Err(OpenAIError::JSONDeserialize(..))))
        .count();
    assert_eq!(broken, 1, "{items:?}");
    let journal = server.requests();
    assert!(
        journal
            .iter()
            .all(|e| e.answered_by == "header:malformed_json" && e.status == 200)
    );
}

fn responses_stream_request() -> CreateResponse {
    serde_json::from_value(
        json!({"model": "gpt-4.1-mini", "input": "stream a few words back to me please"}),
    )
    .unwrap()
}

/// Proves `drop_connection; after_chunks=3` on the Responses stream: async-openai gets the
/// first three events (`response.created`, `response.in_progress`,
/// `response.output_item.added`), then an error.
#[tokio::test]
async fn drop_connection_breaks_a_responses_stream() {
    let server = start().await;
    let opened = bare_client(&server)
        .responses()
        .header(FAULT_HEADER, "drop_connection; after_chunks=3")
        .unwrap()
        .create_stream(responses_stream_request())
        .await;
    let mut stream = match opened {
        Ok(stream) => stream,
        Err(error) => panic!("the stream did not open: {error:?}"),
    };
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item);
    }
    let leading_oks = items.iter().take_while(|item| item.is_ok()).count();
    assert_eq!(leading_oks, 3, "{items:?}");
    assert!(items.get(3).is_some_and(Result::is_err), "{items:?}");
}

/// Proves `malformed_json` on the Responses stream: the first event parses, one event fails to
/// decode (a JSON error), and the rest of the stream still arrives.
#[tokio::test]
async fn malformed_json_breaks_one_responses_event() {
    let server = start().await;
    let mut stream = bare_client(&server)
        .responses()
        .header(FAULT_HEADER, "malformed_json")
        .unwrap()
        .create_stream(responses_stream_request())
        .await
        .unwrap();
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item);
    }
    assert!(items[0].is_ok());
    assert!(
        matches!(items[1], Err(OpenAIError::JSONDeserialize(..))),
        "{:?}",
        items[1]
    );
    assert_eq!(items.iter().filter(|item| item.is_err()).count(), 1);
    let last = serde_json::to_value(items.last().unwrap().as_ref().unwrap()).unwrap();
    assert_eq!(last["type"], "response.completed");
}

// ---------------------------------------------------------------------------------------------
// Bad headers
// ---------------------------------------------------------------------------------------------

/// Proves that an unparseable `x-mock-fault` or `x-mock-latency` value is a 400 (never a 500)
/// whose param and message name the header (and the offending part), journaled as `error:400`.
#[tokio::test]
async fn bad_fault_and_latency_headers_are_400s_naming_the_header() {
    let server = start().await;
    let cases = [
        (FAULT_HEADER, "explode", "explode"),
        (FAULT_HEADER, "hang; ms=soon", "ms"),
        (FAULT_HEADER, "rate_limit; retry_after=3", "retry_after"),
        (
            FAULT_HEADER,
            "drop_connection; after_chunks",
            "after_chunks",
        ),
        (LATENCY_HEADER, "fixed=3", "fixed"),
        (LATENCY_HEADER, "fixed_ms=-5", "fixed_ms"),
        (LATENCY_HEADER, "ttft_ms=fast", "ttft_ms"),
    ];
    for (name, value, needle) in cases {
        let response = post_with_header(
            &server,
            "/v1/chat/completions",
            &chat_body("hi", false),
            (name, value),
        )
        .await;
        assert_eq!(response.status(), 400, "{name}: {value}");
        let body: Value = response.json().await.unwrap();
        let error = assert_error_body(&body);
        assert_eq!(error["param"], name);
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(name), "{message}");
        assert!(message.contains(needle), "{needle} not in {message}");
    }

    let response = reqwest::Client::new()
        .post(url(&server, "/v1/chat/completions"))
        .header(
            FAULT_HEADER,
            reqwest::header::HeaderValue::from_bytes(b"rate_limit \xff").unwrap(),
        )
        .json(&chat_body("hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(FAULT_HEADER)
    );

    let journal = server.requests();
    assert_eq!(journal.len(), cases.len() + 1);
    assert!(
        journal
            .iter()
            .all(|e| e.status == 400 && e.answered_by == "error:400")
    );
}

/// Proves that the fault header applies to the model list too (the catalog's answers "need no
/// reply decision beyond faults and errors").
#[tokio::test]
async fn fault_header_applies_to_the_model_list() {
    let server = start().await;
    let response = reqwest::Client::new()
        .get(url(&server, "/v1/models"))
        .header(FAULT_HEADER, "rate_limit; retry_after_secs=1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        429,
        "x-mock-fault ignored on GET /v1/models"
    );
}

// ---------------------------------------------------------------------------------------------
// Latency
// ---------------------------------------------------------------------------------------------

/// Proves `x-mock-latency: fixed_ms=150`: the answer takes at least 150 ms (lower bound only).
#[tokio::test]
async fn latency_header_delays_the_answer() {
    let server = start().await;
    let client = default_client(&server);
    let started = Instant::now();
    client
        .chat()
        .header(LATENCY_HEADER, "fixed_ms=150")
        .unwrap()
        .create(chat("slowly"))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    client
        .chat()
        .header(LATENCY_HEADER, "fixed_ms=100; jitter_ms=50")
        .unwrap()
        .create(chat("with jitter"))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(100));
}

/// Proves `MockConfig::with_latency`: chat, Responses and embeddings answers each take at least
/// the configured 150 ms.
#[tokio::test]
async fn configured_latency_delays_every_endpoint() {
    let server = start_with(MockConfig::default().with_latency(Latency::fixed(150))).await;
    let client = default_client(&server);

    let started = Instant::now();
    client.chat().create(chat("slow chat")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));

    let started = Instant::now();
    client
        .responses()
        .create(serde_json::from_value(json!({"model": "gpt-4o-mini", "input": "slow"})).unwrap())
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));

    let started = Instant::now();
    client
        .embeddings()
        .create(
            serde_json::from_value(json!({"model": "text-embedding-3-small", "input": "slow"}))
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
}

/// Proves that `MockConfig::with_latency` ("latency of every answer") delays the model list too.
#[tokio::test]
async fn configured_latency_delays_the_model_list() {
    let server = start_with(MockConfig::default().with_latency(Latency::fixed(150))).await;
    let started = Instant::now();
    default_client(&server).models().list().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "GET /v1/models answered in {:?} despite a 150 ms latency",
        started.elapsed()
    );
}

/// Proves stream pacing from the header: with `ttft_ms=100; tokens_per_second=20` the first
/// content chunk comes no sooner than 100 ms after the request, and the whole stream takes at
/// least 100 ms + (content chunks - 1) × 50 ms; the text is unchanged by pacing.
#[tokio::test]
async fn ttft_and_tokens_per_second_pace_a_stream() {
    let server = start().await;
    let client = default_client(&server);
    let plain = client
        .chat()
        .create(chat("one two three four five six"))
        .await
        .unwrap();
    let mut request = chat("one two three four five six");
    request.stream = Some(true);

    let started = Instant::now();
    let mut stream = client
        .chat()
        .header(LATENCY_HEADER, "ttft_ms=100; tokens_per_second=20")
        .unwrap()
        .create_stream(request)
        .await
        .unwrap();
    let mut first_content = None;
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if first_content.is_none()
            && chunk
                .choices
                .iter()
                .any(|c| c.delta.content.as_deref().is_some_and(|t| !t.is_empty()))
        {
            first_content = Some(started.elapsed());
        }
        chunks.push(chunk);
    }
    let total = started.elapsed();
    let content_chunks = chunks
        .iter()
        .filter(|c| {
            c.choices
                .iter()
                .any(|ch| ch.delta.content.as_deref().is_some_and(|t| !t.is_empty()))
        })
        .count() as u64;
    assert!(content_chunks >= 5, "{content_chunks}");
    let first_content = first_content.unwrap();
    assert!(
        first_content >= Duration::from_millis(100),
        "{first_content:?}"
    );
    let minimum = Duration::from_millis(100 + (content_chunks - 1) * 50);
    assert!(total >= minimum, "{total:?} < {minimum:?}");
    assert_eq!(
        content_of(&chunks),
        plain.choices[0].message.content.clone().unwrap()
    );
}

/// Proves stream pacing from `MockConfig::with_latency` on the Responses stream: at least the
/// time to first token plus one interval per further text delta.
#[tokio::test]
async fn configured_pacing_applies_to_responses_streams() {
    let latency = Latency {
        ttft_ms: 80,
        tokens_per_second: 25.0,
        ..Latency::default()
    };
    let server = start_with(MockConfig::default().with_latency(latency)).await;
    let started = Instant::now();
    let mut stream = default_client(&server)
        .responses()
        .create_stream(
            serde_json::from_value(
                json!({"model": "gpt-4o-mini", "input": "alpha beta gamma delta"}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let mut deltas = 0u64;
    while let Some(event) = stream.next().await {
        if serde_json::to_value(event.unwrap()).unwrap()["type"] == "response.output_text.delta" {
            deltas += 1;
        }
    }
    let minimum = Duration::from_millis(80 + (deltas - 1) * 40);
    assert!(deltas >= 4);
    assert!(
        started.elapsed() >= minimum,
        "{:?} < {minimum:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Retries (async-openai's OpenAIRetryLayer)
// ---------------------------------------------------------------------------------------------

fn rules(yaml: &str) -> MockConfig {
    MockConfig::default()
        .with_rules_yaml(yaml)
        .expect("valid rules")
}

/// Proves that async-openai's `OpenAIRetryLayer` recovers from a rate limit: a rules sequence
/// answering 429 (`retry_after_secs: 1`) then text ends in the text, after waiting at least the
/// 1 s the `retry-after` header asked for; the journal shows exactly two attempts, the 429 from
/// step 0 and the 200 from step 1.
#[tokio::test]
async fn retry_layer_recovers_from_a_rate_limit_honouring_retry_after() {
    let server = start_with(rules(
        r#"
rules:
  - name: flaky
    match: { content: "retry me" }
    sequence:
      - fault: { kind: rate_limit, retry_after_secs: 1 }
      - text: "ok after a retry"
"#,
    ))
    .await;
    let started = Instant::now();
    let response = retrying_client(&server, 3)
        .chat()
        .create(chat("please retry me"))
        .await
        .expect("the retry succeeds");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        response.choices[0].message.content.as_deref(),
        Some("ok after a retry")
    );
    let journal = server.requests();
    let attempts: Vec<_> = journal
        .iter()
        .map(|e| (e.answered_by.as_str(), e.status))
        .collect();
    assert_eq!(attempts, [("rule:flaky#0", 429), ("rule:flaky#1", 200)]);
    assert_eq!(
        journal[0].body, journal[1].body,
        "the retry resends the same body"
    );
}

/// Proves that async-openai's default client (which installs `OpenAIRetryLayer` itself)
/// recovers from a rate limit the same way, streaming included.
#[tokio::test]
async fn default_client_retries_a_rate_limited_stream() {
    let server = start_with(rules(
        r#"
rules:
  - name: flaky-stream
    sequence:
      - fault: { kind: rate_limit, retry_after_secs: 0 }
      - text: "streamed after a retry"
"#,
    ))
    .await;
    let mut request = chat("stream after a 429");
    request.stream = Some(true);
    let stream = default_client(&server)
        .chat()
        .create_stream(request)
        .await
        .expect("the retried stream opens");
    let chunks: Vec<_> = drain(stream)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(content_of(&chunks), "streamed after a retry");
    let statuses: Vec<_> = server.requests().iter().map(|e| e.status).collect();
    assert_eq!(statuses, [429, 200]);
}

/// Proves that `insufficient_quota` is never retried: the retry layer fails at once with the
/// 429 quota error and the journal shows a single attempt.
#[tokio::test]
async fn retry_layer_does_not_retry_insufficient_quota() {
    let server = start_with(rules(
        r#"
rules:
  - name: broke
    sequence:
      - fault: { kind: insufficient_quota }
      - text: "should never be reached"
"#,
    ))
    .await;
    let error = api_error(retrying_client(&server, 3).chat().create(chat("hi")).await);
    assert_eq!(error.status_code, 429);
    assert_eq!(
        error.api_error.r#type.as_deref(),
        Some("insufficient_quota")
    );
    let journal = server.requests();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].answered_by, "rule:broke#0");

    // Also when the quota error comes from the header.
    server.clear_requests();
    let error = api_error(
        retrying_client(&server, 3)
            .chat()
            .header(FAULT_HEADER, "insufficient_quota")
            .unwrap()
            .create(chat("hi"))
            .await,
    );
    assert_eq!(error.api_error.code.as_deref(), Some("insufficient_quota"));
    assert_eq!(server.requests().len(), 1);
}

/// Proves that the retry layer retries 500 and 503 (with its own backoff, no `retry-after`):
/// a sequence 500, 503, text succeeds on the third attempt.
#[tokio::test]
async fn retry_layer_retries_server_errors_and_overload() {
    let server = start_with(rules(
        r#"
rules:
  - name: shaky
    sequence:
      - fault: { kind: server_error }
      - fault: { kind: overloaded }
      - text: "third time lucky"
"#,
    ))
    .await;
    let response = retrying_client(&server, 3)
        .chat()
        .create(chat("hi"))
        .await
        .unwrap();
    assert_eq!(
        response.choices[0].message.content.as_deref(),
        Some("third time lucky")
    );
    let attempts: Vec<_> = server
        .requests()
        .iter()
        .map(|e| (e.answered_by.clone(), e.status))
        .collect();
    assert_eq!(
        attempts,
        [
            ("rule:shaky#0".to_owned(), 500),
            ("rule:shaky#1".to_owned(), 503),
            ("rule:shaky#2".to_owned(), 200)
        ]
    );
}

/// Proves that the retry layer gives up after `max_retries`: a fault that never clears makes
/// 1 + max_retries attempts and surfaces the last error.
#[tokio::test]
async fn retry_layer_gives_up_after_max_retries() {
    let server = start().await;
    let error = api_error(
        retrying_client(&server, 2)
            .chat()
            .header(FAULT_HEADER, "rate_limit; retry_after_secs=0")
            .unwrap()
            .create(chat("hi"))
            .await,
    );
    assert_eq!(error.status_code, 429);
    assert_eq!(error.api_error.code.as_deref(), Some("rate_limit_exceeded"));
    assert_eq!(server.requests().len(), 3);
}
