//! Tests of the scoring server: every request format, the errors, overload, auth,
//! streaming, and one real-TCP run with graceful shutdown.

use std::{path::Path, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use http_body_util::BodyExt;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::Semaphore,
};
use tower::ServiceExt;

use super::{ServeLimits, ServeState, router, serve};
use crate::{
    chain::{BuildContext, Chain, ChainEntry, ChainError, RunContext, openai_factory},
    config::{ChainConfig, LlmOverrides},
    llm::LlmError,
    prompt::PromptSet,
};

#[derive(Deserialize, JsonSchema)]
struct Input {
    name: String,
}

/// Greets, emitting its answer in two pieces of text; `name: "boom"` fails inside,
/// `name: "llm"` fails at the provider.
struct Greet;

impl Chain for Greet {
    type Input = Input;
    type Output = String;
    async fn invoke(&self, input: Input, ctx: &RunContext) -> Result<String, ChainError> {
        match input.name.as_str() {
            "boom" => return Err(ChainError::failed("greet", "secret-ish detail")),
            "llm" => {
                return Err(ChainError::Llm(LlmError::Permanent {
                    status: Some(401),
                    code: Some("invalid_api_key".to_owned()),
                    message: "Incorrect API key provided: sk-abc".to_owned(),
                }));
            }
            _ => {}
        }
        ctx.emit_text("Hello, ");
        ctx.emit_text(&input.name);
        Ok(format!("Hello, {}", input.name))
    }
}

/// One gate per test that needs a chain to wait: `Gated<N>` waits for a permit of `GATES[N]`.
static GATES: [Semaphore; 3] = [
    Semaphore::const_new(0),
    Semaphore::const_new(0),
    Semaphore::const_new(0),
];

struct Gated<const N: usize>;

impl<const N: usize> Chain for Gated<N> {
    type Input = Input;
    type Output = String;
    async fn invoke(&self, input: Input, _ctx: &RunContext) -> Result<String, ChainError> {
        let _permit = GATES[N].acquire().await;
        Ok(format!("Hello, {}", input.name))
    }
}

fn build_ctx() -> BuildContext {
    let config = ChainConfig::from_yaml("llm:\n  model: m\n", Path::new("x")).unwrap();
    BuildContext::with_prompts(
        "greet",
        &config,
        PromptSet::new(),
        Arc::new(|_| None),
        LlmOverrides::default(),
        openai_factory(),
    )
    .unwrap()
}

fn state_of<C: Chain>(build: fn(&BuildContext) -> Result<C, ChainError>) -> ServeState {
    let entry = ChainEntry::new("greet", "Greets.", "chains/greet.rs", "", build);
    let chain = entry.build(&build_ctx()).unwrap();
    ServeState::for_entry(chain, &entry).unwrap()
}

pub(super) fn greet() -> ServeState {
    state_of(|_| Ok(Greet))
}

fn post(body: &str) -> Request<Body> {
    Request::post("/invocations")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn send_json(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let (status, body) = send(app, request).await;
    (status, serde_json::from_str(&body).unwrap())
}

/// Every MLflow request format, with and without params, gives the same predictions.
#[tokio::test]
async fn every_format_gives_the_same_predictions() {
    let app = router(greet());
    let two = json!({ "predictions": ["Hello, Ada", "Hello, Bob"] });
    for body in [
        r#"{"dataframe_split":{"columns":["name"],"data":[["Ada"],["Bob"]]}}"#,
        r#"{"dataframe_records":[{"name":"Ada"},{"name":"Bob"}]}"#,
        r#"{"instances":[{"name":"Ada"},{"name":"Bob"}]}"#,
        r#"{"inputs":[{"name":"Ada"},{"name":"Bob"}]}"#,
        r#"{"inputs":{"name":["Ada","Bob"]}}"#,
        r#"{"inputs":{"name":["Ada","Bob"]},"params":{"foo":1}}"#,
    ] {
        assert_eq!(
            send_json(&app, post(body)).await,
            (StatusCode::OK, two.clone()),
            "{body}"
        );
    }
    let (status, body) = send_json(&app, post(r#"{"inputs":{"name":"Ada"}}"#)).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "predictions": ["Hello, Ada"] }))
    );
}

/// `/ping`, `/health` and `/version` answer as MLflow's server does.
#[tokio::test]
async fn health_and_version() {
    let app = router(greet());
    for path in ["/ping", "/health"] {
        let request = Request::get(path).body(Body::empty()).unwrap();
        assert_eq!(send(&app, request).await, (StatusCode::OK, "\n".to_owned()));
    }
    let request = Request::get("/version").body(Body::empty()).unwrap();
    let version = env!("CARGO_PKG_VERSION").to_owned();
    assert_eq!(send(&app, request).await, (StatusCode::OK, version));
}

/// A content type other than JSON (or with a `format` parameter) is a 415; a charset is fine.
#[tokio::test]
async fn wrong_content_type_is_415() {
    let app = router(greet());
    let body = r#"{"inputs":{"name":"Ada"}}"#;
    for content_type in [
        "text/plain",
        "application/json; format=pandas-split",
        "text/csv; format=x",
    ] {
        let request = Request::post("/invocations")
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap();
        let (status, json) = send_json(&app, request).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
        assert_eq!(json["error_code"], "BAD_REQUEST");
    }
    let request = Request::post("/invocations")
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(body))
        .unwrap();
    assert_eq!(send(&app, request).await.0, StatusCode::OK);
}

/// `text/csv` as MLflow's scoring server reads it: a header row, one input per row, cells typed
/// as pandas types them unless the chain wants text; a CSV without rows is a 400.
#[tokio::test]
async fn csv_bodies_are_rows_like_mlflows_scoring_server_reads_them() {
    let app = router(greet());
    let request = Request::post("/invocations")
        .header(header::CONTENT_TYPE, "text/csv; charset=utf-8")
        .body(Body::from("name\nAda\n\"Bob, Jr.\"\n123\n"))
        .unwrap();
    let (status, json) = send_json(&app, request).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(
        json["predictions"],
        serde_json::json!(["Hello, Ada", "Hello, Bob, Jr.", "Hello, 123"])
    );
    for body in ["name\n", ""] {
        let request = Request::post("/invocations")
            .header(header::CONTENT_TYPE, "text/csv")
            .body(Body::from(body))
            .unwrap();
        let (status, json) = send_json(&app, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}: {json}");
        assert!(json["message"].as_str().unwrap().contains("CSV"), "{json}");
    }
}

/// No format, two formats, or JSON that does not parse: 400 with MLflow's body.
#[tokio::test]
async fn not_exactly_one_format_is_400() {
    let app = router(greet());
    for body in [
        r#"{"name":["Ada"]}"#,
        r#"{"inputs":{"name":"Ada"},"instances":[{"name":"Ada"}]}"#,
        "notjson",
        r#"{"dataframe_split":{"columns":["name"],"data":[["Ada","extra"]]}}"#,
    ] {
        let (status, json) = send_json(&app, post(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(json["error_code"], "BAD_REQUEST");
    }
    let (_, json) = send_json(&app, post(r#"{"name":["Ada"]}"#)).await;
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("exactly one of the input fields")
    );
}

/// A row that misses a field is a 400 naming the row and the field.
#[tokio::test]
async fn row_missing_a_field_is_400_naming_it() {
    let app = router(greet());
    let body = r#"{"dataframe_records":[{"name":"Ada"},{"nom":"Bob"}]}"#;
    let (status, json) = send_json(&app, post(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = json["message"].as_str().unwrap();
    assert!(message.starts_with("row 1:"), "{message}");
    assert!(message.contains("\"name\""), "{message}");
}

/// Internal faults are a generic 500; provider faults a short 502 without upstream text.
#[tokio::test]
async fn chain_failures_hide_their_detail() {
    let app = router(greet());
    let (status, json) = send_json(&app, post(r#"{"inputs":{"name":"boom"}}"#)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(json["message"], "internal error");
    let (status, body) = send(&app, post(r#"{"inputs":{"name":"llm"}}"#)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        !body.contains("sk-abc") && !body.contains("Incorrect"),
        "{body}"
    );
}

/// A body over the limit is a 413.
#[tokio::test]
async fn body_over_the_limit_is_413() {
    let limits = ServeLimits {
        max_body_bytes: 64,
        ..ServeLimits::default()
    };
    let app = router(greet().with_limits(limits));
    let body = json!({ "inputs": { "name": "A".repeat(200) } }).to_string();
    let (status, json) = send_json(&app, post(&body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(json["message"].as_str().unwrap().contains("64"));
}

/// With every slot busy, one more request is refused at once with 503; once the slots
/// free up, requests are served again.
#[tokio::test]
async fn overload_is_503() {
    let limits = ServeLimits {
        max_in_flight: 2,
        ..ServeLimits::default()
    };
    let state = state_of(|_| Ok(Gated::<0>)).with_limits(limits);
    let app = router(state.clone());
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { send(&app, post(r#"{"inputs":{"name":"Ada"}}"#)).await })
        })
        .collect();
    while state.inner.slots.available_permits() > 0 {
        tokio::task::yield_now().await;
    }
    let (status, json) = send_json(&app, post(r#"{"inputs":{"name":"Bob"}}"#)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json["error_code"], "TEMPORARILY_UNAVAILABLE");
    GATES[0].add_permits(2);
    for handle in busy {
        assert_eq!(handle.await.unwrap().0, StatusCode::OK);
    }
    GATES[0].add_permits(1);
    assert_eq!(
        send(&app, post(r#"{"inputs":{"name":"Bob"}}"#)).await.0,
        StatusCode::OK
    );
}

/// With a token set, a missing or wrong bearer token is 401 and the right one is served;
/// health checks stay open.
#[tokio::test]
async fn bearer_token_is_required_when_set() {
    let app = router(greet().with_token("s3cret".into()));
    let body = r#"{"inputs":{"name":"Ada"}}"#;
    let (status, json) = send_json(&app, post(body)).await;
    assert_eq!(
        (status, json["error_code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("UNAUTHENTICATED"))
    );
    for auth in ["Bearer wrong", "s3cret", "Bearer s3cre"] {
        let mut request = post(body);
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, auth.parse().unwrap());
        assert_eq!(
            send(&app, request).await.0,
            StatusCode::UNAUTHORIZED,
            "{auth}"
        );
    }
    let mut request = post(body);
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
    assert_eq!(send(&app, request).await.0, StatusCode::OK);
    let request = Request::get("/ping").body(Body::empty()).unwrap();
    assert_eq!(send(&app, request).await.0, StatusCode::OK);
    assert!(!format!("{:?}", greet().with_token("s3cret".into())).contains("s3cret"));
}

/// `"stream": true` or `Accept: text/event-stream` streams the chain's text, then the
/// predictions, then `[DONE]`; more than one row is refused.
#[tokio::test]
async fn streams_text_as_server_sent_events() {
    let app = router(greet());
    let expected = [
        r#"data: {"text":"Hello, "}"#,
        r#"data: {"text":"Ada"}"#,
        r#"data: {"predictions":["Hello, Ada"]}"#,
        "data: [DONE]",
    ];
    let by_param = post(r#"{"inputs":{"name":"Ada"},"params":{"stream":true}}"#);
    let mut by_accept = post(r#"{"inputs":{"name":"Ada"}}"#);
    by_accept
        .headers_mut()
        .insert(header::ACCEPT, "text/event-stream".parse().unwrap());
    for request in [by_param, by_accept] {
        let (status, body) = send(&app, request).await;
        assert_eq!(status, StatusCode::OK);
        let events: Vec<&str> = body.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events, expected);
    }
    let two = post(r#"{"instances":[{"name":"A"},{"name":"B"}],"params":{"stream":true}}"#);
    assert_eq!(send(&app, two).await.0, StatusCode::BAD_REQUEST);
}

/// Over real TCP: after shutdown is asked for, the request in flight still finishes and
/// then the server stops.
#[tokio::test]
async fn graceful_shutdown_finishes_the_request_in_flight() {
    let state = state_of(|_| Ok(Gated::<1>));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    let body = r#"{"inputs":{"name":"Ada"}}"#;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    while state.inner.slots.available_permits() == state.limits().max_in_flight {
        tokio::task::yield_now().await;
    }
    stop.send(()).unwrap();
    let mut server = server;
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut server)
            .await
            .is_err()
    );
    GATES[1].add_permits(1);
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with(r#"{"predictions":["Hello, Ada"]}"#),
        "{response}"
    );
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// A `Content-Encoding` other than `identity` is refused with 415 naming it (the body would
/// otherwise be read as JSON and fail with a misleading message).
#[tokio::test]
async fn unsupported_content_encoding_is_415_naming_it() {
    let app = router(greet());
    let mut request = post(r#"{"inputs":{"name":"Ada"}}"#);
    request
        .headers_mut()
        .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
    let (status, json) = send_json(&app, request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        json["message"].as_str().unwrap().contains("`gzip`"),
        "{json}"
    );
    let mut identity = post(r#"{"inputs":{"name":"Ada"}}"#);
    identity
        .headers_mut()
        .insert(header::CONTENT_ENCODING, "identity".parse().unwrap());
    assert_eq!(send(&app, identity).await.0, StatusCode::OK);
}

/// 30 connections that each send 5 of 100 declared body bytes and then stall hold no request
/// slot (there are 2): normal clients keep getting 200s meanwhile, and every stalled client
/// gets a 408 once the body timeout passes. Bounded: 30 connections, seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_hold_no_slot_and_get_408() {
    let limits = ServeLimits {
        max_in_flight: 2,
        body_timeout: Duration::from_millis(800),
        ..ServeLimits::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, greet().with_limits(limits), async {
        let _ = stopped.await;
    }));
    let mut slow = Vec::new();
    for _ in 0..30 {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inp")
            .await
            .unwrap();
        slow.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = reqwest::Client::new();
    for _ in 0..10 {
        let response = client
            .post(format!("http://{addr}/invocations"))
            .json(&json!({"inputs": {"name": "Ada"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    for mut socket in slow {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer))
            .await
            .expect("the server answers a stalled body within its timeout")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// 20 connections that send half a request line and its headers and then stall are
/// disconnected once the header timeout passes, while normal clients keep getting 200s.
/// Bounded: 20 connections, about a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_disconnected_after_the_header_timeout() {
    let limits = ServeLimits {
        header_timeout: Duration::from_millis(500),
        ..ServeLimits::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, greet().with_limits(limits), async {
        let _ = stopped.await;
    }));
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Ty")
            .await
            .unwrap();
        slow.push(socket);
    }
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let response = client
            .post(format!("http://{addr}/invocations"))
            .json(&json!({"inputs": {"name": "Ada"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    for mut socket in slow {
        let mut answer = Vec::new();
        // Closed (possibly after a 408) rather than held open.
        let read = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer))
            .await
            .expect("a stalled header is cut off within its timeout");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            read.is_err() || answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// A flood of 503s writes one overload line per interval with the count, not one per
/// request: 300 refused requests within the interval give exactly one line.
#[tokio::test]
async fn overload_logs_a_bounded_number_of_lines() {
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let limits = ServeLimits {
        max_in_flight: 1,
        ..ServeLimits::default()
    };
    let state = state_of(|_| Ok(Gated::<2>)).with_limits(limits);
    let app = router(state.clone());
    let busy = {
        let app = app.clone();
        tokio::spawn(async move { send(&app, post(r#"{"inputs":{"name":"Ada"}}"#)).await })
    };
    while state.inner.slots.available_permits() > 0 {
        tokio::task::yield_now().await;
    }
    for _ in 0..300 {
        let (status, _) = send(&app, post(r#"{"inputs":{"name":"Bob"}}"#)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    GATES[2].add_permits(1);
    assert_eq!(busy.await.unwrap().0, StatusCode::OK);
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("request slot")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(!log.contains("scoring request failed"), "{log}");
}
