//! `OpenAiClient` retries, timeouts, concurrency and cancellation against the mock's fault
//! sequences (and a stub for a 429 that names only `x-ratelimit-reset-requests`): what is
//! retried, how often, how long it waits, and which error a call ends with. Backoff is set to
//! milliseconds, so every wait longer than that is the server's.

use std::time::{Duration, Instant};

use chainlog::{
    llm::{LlmClient, LlmError, LlmSettings},
    mock::{Latency, MockConfig, MockServer},
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::llm_client::{Canned, ask, client, collect, mock, settings, stub};

/// A 429 with `retry-after: 1` is retried after that second; the reply says two attempts and
/// the mock saw two requests.
#[tokio::test]
async fn rate_limit_is_retried_after_the_servers_wait() {
    let server = mock(Some(
        "rules:\n  - match: { content: retry me }\n    sequence:\n      - fault: { kind: rate_limit, retry_after_secs: 1 }\n      - text: ok after a retry\n",
    ))
    .await;
    let started = Instant::now();
    let reply = client(settings(server.base_url()))
        .chat(&ask("retry me"))
        .await
        .unwrap();
    assert_eq!(reply.text(), "ok after a retry");
    assert_eq!(reply.attempts, 2);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert!(
        reply.latency >= Duration::from_millis(950),
        "{:?}",
        reply.latency
    );
    let journal = server.requests();
    assert_eq!(journal.len(), 2);
    assert_eq!(journal[0].status, 429);
    assert_eq!(journal[1].status, 200);
}

/// Two 503s, then a reply: three attempts, three requests.
#[tokio::test]
async fn overloaded_twice_then_a_reply_takes_three_attempts() {
    let server = mock(Some(
        "rules:\n  - match: { content: busy }\n    sequence:\n      - fault: { kind: overloaded }\n      - fault: { kind: overloaded }\n      - text: finally\n",
    ))
    .await;
    let reply = client(settings(server.base_url()))
        .chat(&ask("busy"))
        .await
        .unwrap();
    assert_eq!(reply.text(), "finally");
    assert_eq!(reply.attempts, 3);
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200]);
}

/// `insufficient_quota` is a 429 no retry fixes: it fails at once, permanent, with OpenAI's
/// code and message, after one request.
#[tokio::test]
async fn insufficient_quota_fails_at_once() {
    let server = mock(Some(
        "rules:\n  - match: { content: spend }\n    reply: { fault: { kind: insufficient_quota } }\n",
    ))
    .await;
    let err = client(settings(server.base_url()))
        .chat(&ask("spend"))
        .await
        .unwrap_err();
    let LlmError::Permanent {
        status,
        code,
        message,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(*status, Some(429));
    assert_eq!(code.as_deref(), Some("insufficient_quota"));
    assert!(message.contains("exceeded your current quota"), "{message}");
    assert!(!err.is_retryable());
    assert_eq!(server.requests().len(), 1);
}

/// Another 4xx (a rule's 400) also fails at once, keeping status, code and message.
#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = mock(Some(
        "rules:\n  - match: { content: password }\n    reply:\n      error: { status: 400, message: not allowed, type: invalid_request_error, code: content_policy }\n",
    ))
    .await;
    let err = client(settings(server.base_url()))
        .chat(&ask("my password"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        LlmError::Permanent {
            status: Some(400),
            code: Some("content_policy".into()),
            message: "not allowed".into()
        }
    );
    assert_eq!(server.requests().len(), 1);
}

/// An attempt that hangs past the client's timeout is abandoned and retried; the retry
/// answers long before the hang would have ended.
#[tokio::test]
async fn a_hang_times_out_and_is_retried() {
    let server = mock(Some(
        "rules:\n  - match: { content: sleepy }\n    sequence:\n      - fault: { kind: hang, ms: 3000 }\n      - text: awake\n",
    ))
    .await;
    let client = client(LlmSettings {
        timeout: Duration::from_millis(300),
        ..settings(server.base_url())
    });
    let started = Instant::now();
    let reply = client.chat(&ask("sleepy")).await.unwrap();
    assert_eq!(reply.text(), "awake");
    assert_eq!(reply.attempts, 2);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
    assert_eq!(server.requests().len(), 2);
}

/// When every attempt times out, the call ends with `Timeout` naming the per-attempt limit.
#[tokio::test]
async fn timeouts_on_every_attempt_end_in_a_timeout_error() {
    let server = mock(Some(
        "rules:\n  - match: { content: sleepy }\n    reply: { fault: { kind: hang, ms: 5000 } }\n",
    ))
    .await;
    let client = client(LlmSettings {
        timeout: Duration::from_millis(150),
        max_retries: 1,
        ..settings(server.base_url())
    });
    let err = client.chat(&ask("sleepy")).await.unwrap_err();
    assert_eq!(
        err,
        LlmError::Timeout {
            after: Duration::from_millis(150)
        }
    );
    assert!(err.is_retryable());
    assert_eq!(server.requests().len(), 2);
}

/// Once retries run out, the error is transient and keeps the provider's status and message
/// (OpenAI's message, not the raw body); the mock saw `max_retries + 1` requests.
#[tokio::test]
async fn exhausted_retries_keep_the_providers_message() {
    let server = mock(Some(
        "rules:\n  - match: { content: broken }\n    reply: { fault: { kind: server_error } }\n",
    ))
    .await;
    let err = client(LlmSettings {
        max_retries: 2,
        ..settings(server.base_url())
    })
    .chat(&ask("broken"))
    .await
    .unwrap_err();
    assert_eq!(
        err,
        LlmError::Transient {
            status: Some(500),
            message: "The server had an error while processing your request. Sorry about that!"
                .into()
        }
    );
    assert!(err.is_retryable());
    assert_eq!(server.requests().len(), 3);
}

/// A 429 that names no `retry-after`, only `x-ratelimit-reset-requests: 400ms` with no
/// requests left, is retried after those 400 ms (the backoff alone would wait ≤ 5 ms).
#[tokio::test]
async fn ratelimit_reset_requests_is_honoured() {
    let limited = Canned {
        status: 429,
        headers: vec![
            ("x-ratelimit-remaining-requests", "0".into()),
            ("x-ratelimit-reset-requests", "400ms".into()),
            ("x-ratelimit-remaining-tokens", "90000".into()),
            ("x-ratelimit-reset-tokens", "6m0s".into()),
        ],
        ..Canned::json(json!({"error": {
            "message": "Rate limit reached for requests", "type": "requests",
            "param": null, "code": "rate_limit_exceeded"
        }}))
    };
    let ok = Canned::json(json!({"choices": [{"message": {"content": "ok"}}]}));
    let (base_url, seen) = stub(vec![limited, ok]).await;
    let started = Instant::now();
    let reply = client(settings(base_url)).chat(&ask("hi")).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(reply.text(), "ok");
    assert_eq!(reply.attempts, 2);
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(3),
        "the token reset was not used: {elapsed:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

/// Streams are retried until they open: a 503 then a stream gives the whole text, two attempts.
#[tokio::test]
async fn a_stream_is_retried_until_it_opens() {
    let server = mock(Some(
        "rules:\n  - match: { content: stream }\n    sequence:\n      - fault: { kind: overloaded }\n      - text: streamed after a retry\n",
    ))
    .await;
    let (text, done) = collect(&client(settings(server.base_url())), &ask("stream please"))
        .await
        .unwrap();
    assert_eq!(text, "streamed after a retry");
    assert_eq!(done.attempts, 2);
    assert_eq!(server.requests().len(), 2);
}

/// A stream cut off mid-way (no finish_reason, no `[DONE]`) ends with a transient error, not
/// a short reply; it is not retried.
#[tokio::test]
async fn a_truncated_stream_ends_in_an_error() {
    let server = mock(Some(
        "rules:\n  - match: { content: story }\n    reply: { fault: { kind: truncated_stream, after_chunks: 2 } }\n",
    ))
    .await;
    let err = collect(
        &client(settings(server.base_url())),
        &ask("Tell me a long story about the sea"),
    )
    .await
    .expect_err("a cut stream is an error");
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(server.requests().len(), 1);
}

/// With `concurrency: 1`, two calls at once run one after the other.
#[tokio::test]
async fn the_concurrency_limit_queues_calls() {
    let server = MockServer::start(MockConfig::default().with_latency(Latency::fixed(200)))
        .await
        .unwrap();
    let client = client(LlmSettings {
        concurrency: 1,
        ..settings(server.base_url())
    });
    let started = Instant::now();
    let first = ask("one");
    let second = ask("two");
    let (a, b) = tokio::join!(client.chat(&first), client.chat(&second));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert!(a.latency.max(b.latency) >= Duration::from_millis(400));
}

/// Cancelling the client's token ends a call in flight with `Cancelled`.
#[tokio::test]
async fn cancellation_ends_a_call_in_flight() {
    let server = mock(Some(
        "rules:\n  - match: { content: sleepy }\n    reply: { fault: { kind: hang, ms: 5000 } }\n",
    ))
    .await;
    let token = CancellationToken::new();
    let client = client(settings(server.base_url())).with_cancellation(token.clone());
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        token.cancel();
    });
    let started = Instant::now();
    let err = client.chat(&ask("sleepy")).await.unwrap_err();
    assert_eq!(err, LlmError::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(2));
    canceller.await.unwrap();
    assert_eq!(client.model(), "gpt-4o-mini");
}

/// A connection dropped half-way through a plain reply's body (reqwest: a body decode error)
/// is retried like a 5xx: the second attempt succeeds, and the mock saw two requests.
#[tokio::test]
async fn a_body_dropped_half_way_is_retried() {
    let server = mock(Some(
        "rules:\n  - match: { content: halfway }\n    sequence:\n      - fault: { kind: drop_connection, after_chunks: 1 }\n      - text: whole on the second attempt\n",
    ))
    .await;
    let reply = client(settings(server.base_url()))
        .chat(&ask("halfway"))
        .await
        .unwrap();
    assert_eq!(reply.text(), "whole on the second attempt");
    assert_eq!(reply.attempts, 2);
    let journal = server.requests();
    assert_eq!(journal.len(), 2);
    assert_eq!((journal[0].status, journal[1].status), (200, 200));
}

/// A stream that breaks before its first content — dropped right after its headers, or cut
/// before any delta — is reopened like a failed attempt and then streams the whole text.
#[tokio::test]
async fn a_stream_broken_before_its_first_content_is_retried() {
    for fault in [
        "{ kind: drop_connection, after_chunks: 0 }",
        "{ kind: truncated_stream, after_chunks: 0 }",
    ] {
        let server = mock(Some(&format!(
            "rules:\n  - match: {{ content: early }}\n    sequence:\n      - fault: {fault}\n      - text: streamed after a reopen\n"
        )))
        .await;
        let (text, done) = collect(&client(settings(server.base_url())), &ask("early"))
            .await
            .unwrap_or_else(|err| panic!("{fault}: {err}"));
        assert_eq!(text, "streamed after a reopen", "{fault}");
        assert_eq!(done.attempts, 2, "{fault}");
        assert_eq!(server.requests().len(), 2, "{fault}");
    }
}

/// A server that accepts connections and closes them at once (a reset before any answer) is
/// retried `max_retries` times, then fails transient; a refused connection (nothing listens)
/// fails transient too. An error that cannot heal (a 400) is not retried (see
/// `client_errors_are_not_retried`).
#[tokio::test]
async fn reset_and_refused_connections_are_retried() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = std::sync::Arc::clone(&accepted);
    let acceptor = tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Linger 0: the close is a reset, not a clean end of stream.
            #[allow(deprecated, reason = "SO_LINGER 0 is the point here: a reset")]
            socket.set_linger(Some(Duration::ZERO)).unwrap();
            drop(socket);
        }
    });
    let err = client(LlmSettings {
        max_retries: 2,
        ..settings(format!("http://{address}/v1"))
    })
    .chat(&ask("anyone?"))
    .await
    .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    acceptor.abort();

    let closed = crate::support::refusing::RefusingPort::new();
    let refused = format!("http://{}/v1", closed.addr());
    let started = Instant::now();
    let err = client(settings(refused))
        .chat(&ask("hello"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LlmError::Transient { status: None, .. }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Every retry is an event of the call's `CHAT_MODEL` span in its stored trace — a chat call
/// retried after a 503, a stream retried until it opens, a stream reopened after breaking
/// before its first content (while the caller reads the stream, the span not current).
#[tokio::test]
async fn every_retry_is_an_event_of_the_calls_span_in_its_trace() {
    let dir = tempfile::tempdir().unwrap();
    let (tracer, db_path, guard, _second) = traced_into_sqlite(dir.path()).await;
    let server = mock(Some(
        "rules:\n  - match: { content: chat-retry }\n    sequence:\n      - fault: { kind: overloaded }\n      - text: chat after a retry\n  - match: { content: stream-retry }\n    sequence:\n      - fault: { kind: overloaded }\n      - text: stream after a retry\n  - match: { content: stream-reopen }\n    sequence:\n      - fault: { kind: drop_connection, after_chunks: 0 }\n      - text: stream after a reopen\n",
    ))
    .await;
    let client = client(settings(server.base_url()));
    let reply = client.chat(&ask("chat-retry")).await.unwrap();
    assert_eq!(reply.attempts, 2);
    for content in ["stream-retry", "stream-reopen"] {
        let (_, done) = collect(&client, &ask(content)).await.unwrap();
        assert_eq!(done.attempts, 2, "{content}");
    }
    drop(guard);
    tracer.flush(Duration::from_secs(10)).await;
    let spans = stored_spans(&db_path);
    assert_eq!(spans.len(), 3, "one CHAT_MODEL span per call: {spans:#?}");
    let mut events: Vec<String> = spans
        .iter()
        .map(|span| {
            let events = span["events"].as_array().unwrap();
            assert_eq!(events.len(), 1, "one retry, one event: {span:#}");
            events[0]["name"].as_str().unwrap().to_owned()
        })
        .collect();
    events.sort();
    assert_eq!(
        events,
        [
            "llm request failed; retrying",
            "llm request failed; retrying",
            "llm stream broke before its first content; retrying",
        ]
    );
}

/// Calls made at once inside a chain's span (`join!` of a chat call and a stream) are its
/// children in one stored trace, each with its own retry as its event and none on the chain —
/// also for the stream read after the chain's span was let go (its reopen runs then, outside
/// any span), which keeps the trace open until it ends.
#[tokio::test]
async fn calls_joined_in_a_chain_and_a_stream_read_after_it_stay_in_its_trace() {
    use chainlog::llm::StreamEvent;
    use futures::StreamExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (tracer, db_path, guard, _second) = traced_into_sqlite(dir.path()).await;
    let server = mock(Some(
        "rules:\n  - match: { content: chat-retry }\n    sequence:\n      - fault: { kind: overloaded }\n      - text: chat after a retry\n  - match: { content: stream-reopen }\n    sequence:\n      - fault: { kind: drop_connection, after_chunks: 0 }\n      - text: stream after a reopen\n",
    ))
    .await;
    let client = client(settings(server.base_url()));
    let (chat, streamed) = (ask("chat-retry"), ask("stream-reopen"));
    let chain = chainlog::trace::TraceSpan::new("chain", "CHAIN");
    let (reply, stream) = chain
        .clone()
        .instrument(async { tokio::join!(client.chat(&chat), client.chat_stream(&streamed)) })
        .await;
    assert_eq!(reply.unwrap().attempts, 2);
    drop(chain);
    let mut stream = stream.unwrap();
    let mut done = None;
    while let Some(event) = stream.next().await {
        if let StreamEvent::Done(response) = event.unwrap() {
            done = Some(response);
        }
    }
    assert_eq!(done.unwrap().attempts, 2);
    drop(stream);
    drop(guard);
    tracer.flush(Duration::from_secs(10)).await;
    let traces = crate::support::trace_store::stored_traces(&db_path);
    assert_eq!(traces, 1, "one trace for the chain and its calls");
    let spans = stored_spans(&db_path);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let root = spans.iter().find(|s| s["name"] == "chain").unwrap();
    assert!(root["parent_span_id"].is_null(), "{root:#}");
    assert_eq!(root["events"].as_array().map_or(0, Vec::len), 0, "{root:#}");
    let mut events = Vec::new();
    for call in spans.iter().filter(|s| s["name"] == "llm.chat") {
        assert_eq!(call["parent_span_id"], root["span_id"], "{call:#}");
        assert_eq!(call["trace_id"], root["trace_id"]);
        let own = call["events"].as_array().unwrap();
        assert_eq!(own.len(), 1, "its own retry: {call:#}");
        events.push(own[0]["name"].as_str().unwrap().to_owned());
    }
    events.sort();
    assert_eq!(
        events,
        [
            "llm request failed; retrying",
            "llm stream broke before its first content; retrying",
        ]
    );
}

/// A chain given up on part-way (a timeout drops it mid-call) leaves a trace in state ERROR:
/// its CHAIN root and its CHAT_MODEL span fail with chainlog's "dropped before it finished"
/// message and keep their inputs, with no outputs — not a success without outputs.
#[tokio::test]
async fn a_chain_dropped_by_a_timeout_leaves_an_error_trace_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let (tracer, db_path, guard, _second) = traced_into_sqlite(dir.path()).await;
    let server = mock(Some(
        "rules:\n  - match: { content: hang-here }\n    reply: { fault: { kind: hang, ms: 20000 } }\n",
    ))
    .await;
    let chain = crate::chain_support::build(
        "summarize",
        &crate::chain_support::default_config("summarize"),
        crate::chain_support::mock_env(&server),
    )
    .unwrap();
    let ctx = chainlog::chain::RunContext::default();
    let run = chain.invoke(json!({"text": "hang-here, please"}), &ctx);
    let gave_up = tokio::time::timeout(Duration::from_millis(500), run).await;
    assert!(
        gave_up.is_err(),
        "the mock hangs: the timeout drops the chain"
    );
    drop(guard);
    tracer.flush(Duration::from_secs(10)).await;
    let conn = rusqlite::Connection::open(&db_path).unwrap();
    let state: String = conn
        .query_row("SELECT status FROM trace_info", [], |row| row.get(0))
        .unwrap();
    assert_eq!(state, "ERROR");
    let spans = stored_spans(&db_path);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    for span in &spans {
        assert_eq!(span["status"]["code"], "STATUS_CODE_ERROR", "{span:#}");
        assert_eq!(
            span["status"]["message"],
            chainlog::trace::DROPPED_MESSAGE,
            "{span:#}"
        );
        let attributes = &span["attributes"];
        assert!(attributes.get("mlflow.spanInputs").is_some(), "{span:#}");
        assert!(attributes.get("mlflow.spanOutputs").is_none(), "{span:#}");
    }
}

/// A tracer exporting into a fresh SQLite store in `dir`, its layer this thread's subscriber
/// until the guard drops; with it a second, idle dispatcher (keep it as long): with a single
/// registered dispatcher, a test on another thread (no subscriber) can cache "nobody listens"
/// for the llm callsites (as in llm_client.rs `api_key_never_shows`); with two, tracing-core
/// asks every registered one.
async fn traced_into_sqlite(
    dir: &std::path::Path,
) -> (
    chainlog::trace::Tracer,
    std::path::PathBuf,
    tracing::subscriber::DefaultGuard,
    tracing::Dispatch,
) {
    use tracing_subscriber::layer::SubscriberExt as _;
    let (layer, tracer, db_path) = crate::support::trace_store::sqlite_tracer(dir).await;
    let guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(layer.filtered()));
    let second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    tracing::callsite::rebuild_interest_cache();
    (tracer, db_path, guard, second)
}

/// Every span in the SQLite store `db_path`: its `content` (MLflow's span dict), by name.
fn stored_spans(db_path: &std::path::Path) -> Vec<serde_json::Value> {
    let conn = rusqlite::Connection::open(db_path).unwrap();
    let mut statement = conn
        .prepare("SELECT content FROM spans ORDER BY name")
        .unwrap();
    statement
        .query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .map(|content| serde_json::from_str(&content.unwrap()).unwrap())
        .collect()
}
