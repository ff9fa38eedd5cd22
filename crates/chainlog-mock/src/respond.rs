//! Writing answers: a JSON body or an SSE stream, with the rate-limit headers OpenAI sends,
//! stream pacing (time to first token, tokens per second) and the body-shaping faults
//! (dropped connection, truncated stream, malformed JSON, an error event echoing the key).
//!
//! Owns how bytes leave the mock; what they say belongs to the endpoints.

use std::time::Duration;

use axum::response::IntoResponse;
use axum::{
    body::Body,
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::Response,
};
use bytes::Bytes;
use serde_json::Value;

use super::fault::{Fault, Latency};

/// One server-sent event: an optional event name and its data line.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// `event:` name (the Responses API names its events; chat does not).
    pub event: Option<String>,
    /// The `data:` payload.
    pub data: String,
    /// Whether the event carries generated tokens (paced by `tokens_per_second`, delayed by
    /// `ttft_ms` when first).
    pub content: bool,
}

impl SseEvent {
    /// A data-only event.
    pub fn data(value: &Value, content: bool) -> Self {
        Self {
            event: None,
            data: json_text(value),
            content,
        }
    }

    /// A named event.
    pub fn named(event: &str, value: &Value, content: bool) -> Self {
        Self {
            event: Some(event.to_owned()),
            data: json_text(value),
            content,
        }
    }

    /// The `data: [DONE]` terminator of chat streams.
    pub fn done() -> Self {
        Self {
            event: None,
            data: "[DONE]".to_owned(),
            content: false,
        }
    }

    fn frame(&self) -> Bytes {
        let mut frame = String::with_capacity(self.data.len() + 32);
        if let Some(event) = &self.event {
            frame.push_str("event: ");
            frame.push_str(event);
            frame.push('\n');
        }
        for line in self.data.split('\n') {
            frame.push_str("data: ");
            frame.push_str(line);
            frame.push('\n');
        }
        frame.push('\n');
        Bytes::from(frame)
    }
}

/// Compact JSON text of a value (writing a `Value` cannot fail).
fn json_text(value: &Value) -> String {
    String::from_utf8(serde_json::to_vec(value).unwrap_or_default()).unwrap_or_default()
}

/// Headers every successful OpenAI answer carries; clients and dashboards read them.
fn add_success_headers(response: &mut Response) {
    let headers = response.headers_mut();
    for (name, value) in SUCCESS_HEADERS.iter() {
        headers.insert(name.clone(), value.clone());
    }
}

/// The rate-limit headers of a successful answer, built once.
static SUCCESS_HEADERS: std::sync::LazyLock<Vec<(HeaderName, HeaderValue)>> =
    std::sync::LazyLock::new(|| {
        [
            ("x-ratelimit-limit-requests", "10000"),
            ("x-ratelimit-remaining-requests", "9999"),
            ("x-ratelimit-reset-requests", "6ms"),
            ("x-ratelimit-limit-tokens", "10000000"),
            ("x-ratelimit-remaining-tokens", "9999000"),
            ("x-ratelimit-reset-tokens", "6ms"),
            ("openai-processing-ms", "1"),
        ]
        .into_iter()
        .map(|(name, value)| {
            (
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            )
        })
        .collect()
    });

/// A 200 JSON answer, broken as `fault` asks when it shapes bodies.
pub fn json(value: &Value, fault: Option<&Fault>) -> Response {
    if let Some(fault @ Fault::EchoKey { .. }) = fault {
        // A plain request has no stream to break: it gets the status answer.
        return fault.echo_key_error().into_response();
    }
    // `to_vec` writes straight to a buffer; `Display` goes through a formatter adapter.
    let bytes = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
    let body = match fault {
        Some(Fault::DropConnection { after_chunks }) => {
            let sent = if *after_chunks == 0 {
                Bytes::new()
            } else {
                bytes.slice(..bytes.len() / 2)
            };
            Body::from_stream(async_stream::stream! {
                yield Ok::<Bytes, std::io::Error>(sent);
                yield Err(dropped().await);
            })
        }
        Some(Fault::TruncatedStream { .. }) => Body::from(bytes.slice(..bytes.len() / 2)),
        Some(Fault::MalformedJson) => {
            let mut broken = bytes.slice(..bytes.len() / 2).to_vec();
            broken.extend_from_slice(b"<<not json");
            Body::from(broken)
        }
        _ => Body::from(bytes),
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    add_success_headers(&mut response);
    response
}

/// A 200 SSE stream of `events`, paced by `latency` and broken as `fault` asks.
pub fn sse(events: Vec<SseEvent>, latency: Latency, fault: Option<Fault>) -> Response {
    if let Some(
        fault @ Fault::EchoKey {
            after_chunks: None, ..
        },
    ) = &fault
    {
        return fault.echo_key_error().into_response();
    }
    let ttft = Duration::from_millis(latency.ttft_ms);
    let interval = latency.token_interval();
    let stream = async_stream::stream! {
        let mut content_sent = false;
        for (index, event) in events.into_iter().enumerate() {
            if event.content {
                if !content_sent {
                    if !ttft.is_zero() {
                        tokio::time::sleep(ttft).await;
                    }
                    content_sent = true;
                } else if let Some(interval) = interval {
                    tokio::time::sleep(interval).await;
                }
            }
            match &fault {
                Some(Fault::DropConnection { after_chunks }) if index >= *after_chunks => {
                    yield Err(dropped().await);
                    return;
                }
                Some(Fault::TruncatedStream { after_chunks }) if index >= *after_chunks => {
                    let frame = event.frame();
                    yield Ok(frame.slice(..frame.len() / 2));
                    return;
                }
                Some(fault @ Fault::EchoKey { after_chunks: Some(after), .. }) if index >= *after => {
                    let error = SseEvent::data(&fault.echo_key_error().body(), false);
                    yield Ok(error.frame());
                    return;
                }
                Some(Fault::MalformedJson) if index == 1 => {
                    yield Ok(Bytes::from_static(b"data: {\"id\": \"chatcmpl-broken\", \"choices\": [\n\n"));
                    continue;
                }
                _ => {}
            }
            yield Ok::<Bytes, std::io::Error>(event.frame());
        }
    };
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    add_success_headers(&mut response);
    response
}

/// How long a dropped connection waits before it drops, so what was sent before it (the status
/// line, the first chunks) reaches the client: hyper tears a connection down at once when the
/// error is ready in the same poll as the data.
const FLUSH_BEFORE_DROP: Duration = Duration::from_millis(20);

/// Waits for [`FLUSH_BEFORE_DROP`], then gives the error that drops the connection.
async fn dropped() -> std::io::Error {
    tokio::time::sleep(FLUSH_BEFORE_DROP).await;
    std::io::Error::other("connection dropped by x-mock fault")
}

/// The answer after a hang: a 504, should the client still be waiting.
pub fn after_hang() -> Response {
    let mut response = Response::new(Body::from(
        r#"{"error":{"message":"the mock hung as asked (x-mock fault hang) and gave up","type":"timeout","param":null,"code":"timeout"}}"#,
    ));
    *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_event_frames_carry_event_and_data_lines() {
        let frame =
            SseEvent::named("response.created", &serde_json::json!({"a": 1}), false).frame();
        assert_eq!(&frame[..], b"event: response.created\ndata: {\"a\":1}\n\n");
        assert_eq!(&SseEvent::done().frame()[..], b"data: [DONE]\n\n");
    }
}
