//! Cassettes end to end: record through the mock from an upstream (another mock that requires a
//! canary key), replay offline, misses, scrubbing and bad files.

use std::path::Path;

use async_openai::{
    Client,
    config::OpenAIConfig,
    types::chat::{
        ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequest,
        CreateChatCompletionRequestArgs,
    },
};
use chainlog::mock::{MockConfig, MockError, MockServer};
use futures::StreamExt;
use secrecy::SecretString;

/// A key value no file may ever contain.
const CANARY: &str = "sk-canary-7f3a9c2e51d04b86a0e1";

fn client(base_url: &str, key: &str) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_base(base_url)
            .with_api_key(key),
    )
}

fn request(text: &str, stream: bool) -> CreateChatCompletionRequest {
    let mut args = CreateChatCompletionRequestArgs::default();
    args.model("gpt-4o-mini").temperature(0.0).messages(vec![
        ChatCompletionRequestUserMessageArgs::default()
            .content(text)
            .build()
            .unwrap()
            .into(),
    ]);
    if stream {
        args.stream(true);
    }
    args.build().unwrap()
}

async fn collect_stream(client: &Client<OpenAIConfig>, text: &str) -> String {
    let mut stream = client
        .chat()
        .create_stream(request(text, true))
        .await
        .unwrap();
    let mut content = String::new();
    while let Some(chunk) = stream.next().await {
        for choice in chunk.unwrap().choices {
            content.push_str(choice.delta.content.as_deref().unwrap_or_default());
        }
    }
    content
}

/// Recording proxies to the upstream with the configured key, writes plain and streamed
/// exchanges with the key scrubbed everywhere, and replay answers the same with no upstream.
#[tokio::test]
async fn record_then_replay_offline_with_secrets_scrubbed() {
    let dir = tempfile::tempdir().unwrap();
    let cassette = dir.path().join("chat.yaml");
    let upstream =
        MockServer::start(MockConfig::default().with_required_api_key(SecretString::from(CANARY)))
            .await
            .unwrap();

    let recorder = MockServer::start(
        MockConfig::default()
            .with_cassette_record(
                &cassette,
                upstream.base_url(),
                Some(SecretString::from(CANARY)),
            )
            .unwrap(),
    )
    .await
    .unwrap();
    // The client's own key is a throwaway: the recorder sends the configured one upstream.
    let recording = client(&recorder.base_url(), "sk-client-throwaway-123456");
    // A prompt that carries the key: recorded, but scrubbed (so it can never be replayed).
    recording
        .chat()
        .create(request(
            &format!("please repeat {CANARY} back to me"),
            false,
        ))
        .await
        .unwrap();
    let prompt = "summarise the plot of Hamlet";
    let plain = recording
        .chat()
        .create(request(prompt, false))
        .await
        .unwrap();
    let plain_text = plain.choices[0].message.content.clone().unwrap();
    let streamed_text = collect_stream(&recording, "stream this please").await;
    assert!(!streamed_text.is_empty());
    assert_eq!(upstream.requests().len(), 3, "every request went upstream");
    assert!(
        recorder
            .requests()
            .iter()
            .all(|r| r.answered_by.starts_with("cassette:recorded#")),
        "{:?}",
        recorder.requests()
    );
    drop(recorder);

    let saved = std::fs::read_to_string(&cassette).unwrap();
    assert_eq!(saved.matches(CANARY).count(), 0, "the key leaked:\n{saved}");
    assert!(!saved.to_lowercase().contains("authorization"));
    assert!(saved.contains("[REDACTED]"));

    let replayer = MockServer::start(
        MockConfig::default()
            .with_cassette_replay(&cassette)
            .unwrap(),
    )
    .await
    .unwrap();
    let replaying = client(&replayer.base_url(), "sk-anything");
    let replayed = replaying
        .chat()
        .create(request(prompt, false))
        .await
        .unwrap();
    assert_eq!(
        replayed.choices[0].message.content.clone().unwrap(),
        plain_text
    );
    assert_eq!(
        collect_stream(&replaying, "stream this please").await,
        streamed_text
    );
    assert_eq!(
        upstream.requests().len(),
        3,
        "replay never reaches the upstream"
    );
    let answered: Vec<_> = replayer
        .requests()
        .into_iter()
        .map(|r| r.answered_by)
        .collect();
    assert_eq!(answered, ["cassette:#1", "cassette:#2"]);
}

/// A request not in the cassette gets a 400 naming the closest recorded one and what differs,
/// and never reaches the network.
#[tokio::test]
async fn replay_miss_names_the_closest_interaction() {
    let dir = tempfile::tempdir().unwrap();
    let cassette = dir.path().join("c.yaml");
    let upstream = MockServer::start(MockConfig::default()).await.unwrap();
    let recorder = MockServer::start(
        MockConfig::default()
            .with_cassette_record(&cassette, upstream.base_url(), None)
            .unwrap(),
    )
    .await
    .unwrap();
    client(&recorder.base_url(), "sk-x")
        .chat()
        .create(request("hello", false))
        .await
        .unwrap();
    drop(recorder);

    let replayer = MockServer::start(
        MockConfig::default()
            .with_cassette_replay(&cassette)
            .unwrap(),
    )
    .await
    .unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", replayer.base_url()))
        .json(&serde_json::json!({
            "model": "gpt-4o-mini",
            "temperature": 0.0,
            "messages": [{"role": "user", "content": "hello there"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert_eq!(body["error"]["code"], "cassette_miss");
    assert!(message.contains("closest is interaction #0"), "{message}");
    assert!(message.contains("messages[0].content"), "{message}");
    assert_eq!(upstream.requests().len(), 1);
    assert_eq!(replayer.requests()[0].answered_by, "cassette:miss");
}

/// A malformed cassette fails at start-up naming the file, the line and the problem; a missing
/// one names the file.
#[test]
fn malformed_cassette_fails_at_start_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "format_version: 1\ninteractions:\n  - request: { method: POST, path: /v1/chat/completions, body: {} }\n    respons: { status: 200 }\n",
    )
    .unwrap();
    let err = MockConfig::default()
        .with_cassette_replay(&path)
        .unwrap_err();
    assert!(matches!(err, MockError::Cassette(_)));
    let message = err.to_string();
    assert!(message.contains("bad.yaml"), "{message}");
    assert!(message.contains("line"), "{message}");
    assert!(message.contains("respons"), "{message}");

    let missing = MockConfig::default()
        .with_cassette_replay(Path::new("/nonexistent/cassette.yaml"))
        .unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/cassette.yaml"),
        "{missing}"
    );
}

/// `chainlog mock --cassette FILE` without `--replay` or `--record` is refused with a message
/// that says which to add.
#[test]
fn cassette_without_mode_is_refused_by_the_cli() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chainlog"))
        .args(["mock", "--port", "0", "--cassette", "x.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--replay"), "{stderr}");
}

/// Recording passes an event stream through as it arrives: from an upstream that sends one
/// event every 400 ms, each event reaches the client before the upstream sends the next, the
/// first within 100 ms of the upstream's; the cassette then holds every event.
#[tokio::test]
async fn recording_passes_a_stream_through_event_by_event() {
    use std::{
        sync::{Arc, Mutex},
        time::{Duration, Instant},
    };
    const EVENTS: usize = 3;
    let sent_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let times = Arc::clone(&sent_at);
    let handler = move || {
        let times = Arc::clone(&times);
        async move {
            let stream = async_stream::stream! {
                for n in 0..EVENTS {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    times.lock().unwrap().push(Instant::now());
                    let chunk = serde_json::json!({"id": "c", "object": "chat.completion.chunk",
                        "created": 1, "model": "m", "choices": [{"index": 0,
                        "delta": {"content": format!("part{n} ")}, "finish_reason": null}]});
                    yield Ok::<_, std::io::Error>(format!("data: {chunk}\n\n"));
                }
                yield Ok("data: [DONE]\n\n".to_owned());
            };
            (
                [("content-type", "text/event-stream")],
                axum::body::Body::from_stream(stream),
            )
        }
    };
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let cassette = dir.path().join("stream.yaml");
    let recorder = MockServer::start(
        MockConfig::default()
            .with_cassette_record(&cassette, upstream, None)
            .unwrap(),
    )
    .await
    .unwrap();
    let mut response = reqwest::Client::new()
        .post(format!("{}/chat/completions", recorder.base_url()))
        .json(&serde_json::json!({"model": "m", "stream": true,
            "messages": [{"role": "user", "content": "slow"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (mut buffered, mut received_at) = (String::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(chunk) = tokio::time::timeout_at(deadline.into(), response.chunk())
        .await
        .expect("the stream did not end within 10 s")
        .unwrap()
    {
        buffered.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffered.find("\n\n") {
            let event: String = buffered.drain(..end + 2).collect();
            if event.contains("part") {
                received_at.push(Instant::now());
            }
        }
    }
    let sent_at = sent_at.lock().unwrap().clone();
    assert_eq!((sent_at.len(), received_at.len()), (EVENTS, EVENTS));
    let first_lag = received_at[0] - sent_at[0];
    assert!(
        first_lag < Duration::from_millis(100),
        "the first event came {first_lag:?} after the upstream sent it"
    );
    for n in 1..EVENTS {
        assert!(
            received_at[n - 1] < sent_at[n],
            "event {} arrived only after the upstream sent event {n}",
            n - 1
        );
    }
    // The exchange is recorded once the stream has ended.
    let recorded = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let text = std::fs::read_to_string(&cassette).unwrap_or_default();
            if text.contains("[DONE]") {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the stream was not recorded");
    assert_eq!(recorded.matches("part").count(), EVENTS, "{recorded}");
}

/// Identical requests recorded in turn — a 429 and the retried 200, then the same call
/// twice with different answers — are replayed in the same order; `/v1/models` is recorded
/// from the upstream and replayed from the cassette.
#[tokio::test]
async fn identical_requests_replay_in_recorded_order_and_models_are_recorded() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let chat = move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            use axum::response::IntoResponse;
            if n == 0 {
                let body = serde_json::json!({"error": {"message": "slow down",
                    "type": "requests", "code": "rate_limit_exceeded"}});
                return (
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after-ms", "10")],
                    axum::Json(body),
                )
                    .into_response();
            }
            axum::Json(
                serde_json::json!({"id": format!("c{n}"), "object": "chat.completion",
                "created": 1, "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": format!("answer {n}")}}]}),
            )
            .into_response()
        }
    };
    let models = || async {
        axum::Json(
            serde_json::json!({"object": "list", "data": [{"id": "upstream-only",
            "object": "model", "created": 1, "owned_by": "x"}]}),
        )
    };
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(chat))
        .route("/v1/models", axum::routing::get(models));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let ask = |base: String| async move {
        let http = reqwest::Client::new();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let response = http
                .post(format!("{base}/chat/completions"))
                .json(&serde_json::json!({"model": "m",
                    "messages": [{"role": "user", "content": "same"}]}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            let text = body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            seen.push((status, text));
        }
        let models: serde_json::Value = http
            .get(format!("{base}/models"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (seen, models["data"][0]["id"].clone())
    };
    let dir = tempfile::tempdir().unwrap();
    let cassette = dir.path().join("order.yaml");
    let recorder = MockServer::start(
        MockConfig::default()
            .with_cassette_record(&cassette, upstream, None)
            .unwrap(),
    )
    .await
    .unwrap();
    let recorded = ask(recorder.base_url()).await;
    let expected = vec![
        (429, String::new()),
        (200, "answer 1".to_owned()),
        (200, "answer 2".to_owned()),
    ];
    assert_eq!(
        recorded,
        (expected.clone(), serde_json::json!("upstream-only"))
    );
    drop(recorder);

    let replayer = MockServer::start(
        MockConfig::default()
            .with_cassette_replay(&cassette)
            .unwrap(),
    )
    .await
    .unwrap();
    let replayed = ask(replayer.base_url()).await;
    assert_eq!(replayed, (expected, serde_json::json!("upstream-only")));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "replay reached the upstream"
    );
    let answered: Vec<_> = replayer
        .requests()
        .into_iter()
        .map(|r| r.answered_by)
        .collect();
    assert_eq!(
        answered,
        ["cassette:#0", "cassette:#1", "cassette:#2", "cassette:#3"]
    );
}
