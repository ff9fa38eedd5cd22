//! [`send`]: the call to the real upstream in record mode. Its answer ([`Upstream`]) is read
//! piece by piece as it arrives (a stream is passed on to the client event by event) or whole
//! (JSON, an event stream split into events, or text) for the cassette.

use std::collections::BTreeMap;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret as _, SecretString};

use super::{
    format::{CassetteError, RecordedBody, RecordedResponse, SseEvent},
    key::listed,
    record::REDACTED,
};

/// Response headers that no longer describe a buffered, re-encoded body.
const HOP_HEADERS: &str = "content-length transfer-encoding connection keep-alive content-encoding";

/// Sends a request to the real upstream and buffers its answer ([`send`], then
/// [`Upstream::buffer`]).
///
/// # Errors
///
/// As [`send`] and [`Upstream::buffer`].
#[cfg(test)]
pub(crate) async fn forward(
    http: &reqwest::Client,
    upstream_base: &str,
    method: &str,
    path: &str,
    body: Bytes,
    api_key: Option<&SecretString>,
) -> Result<RecordedResponse, CassetteError> {
    send(http, upstream_base, method, path, body, api_key)
        .await?
        .buffer()
        .await
}

/// An upstream's answer whose head has arrived; its body is read with [`Upstream::chunk`]
/// as it comes, or whole with [`Upstream::buffer`].
#[derive(Debug)]
pub(crate) struct Upstream {
    /// HTTP status.
    pub(crate) status: u16,
    /// Headers, unscrubbed, without hop-by-hop ones (repeated ones joined with `, `).
    pub(crate) headers: BTreeMap<String, String>,
    response: reqwest::Response,
    /// For errors: the URL and the key to scrub from their text.
    url: String,
    key: Option<String>,
}

impl Upstream {
    /// Whether the answer is a server-sent event stream.
    pub(crate) fn is_event_stream(&self) -> bool {
        self.headers
            .get("content-type")
            .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("text/event-stream"))
    }

    /// The next piece of the body as it arrives; `None` at its end.
    ///
    /// # Errors
    ///
    /// [`CassetteError::Upstream`] naming the URL (never the key) when the body breaks off.
    pub(crate) async fn chunk(&mut self) -> Result<Option<Bytes>, CassetteError> {
        match self.response.chunk().await {
            Ok(chunk) => Ok(chunk),
            Err(e) => Err(self.fail(error_chain(&e.without_url()))),
        }
    }

    /// Reads the whole body: a `text/event-stream` answer becomes [`RecordedBody::Sse`],
    /// else JSON, else text.
    ///
    /// # Errors
    ///
    /// [`CassetteError::Upstream`] when the body cannot be read.
    pub(crate) async fn buffer(mut self) -> Result<RecordedResponse, CassetteError> {
        let mut bytes = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            bytes.extend_from_slice(&chunk);
        }
        let body = if self.is_event_stream() {
            RecordedBody::Sse(events_of(&bytes))
        } else if let Ok(json) = serde_json::from_slice(&bytes) {
            RecordedBody::Json(json)
        } else {
            RecordedBody::Text(String::from_utf8_lossy(&bytes).into_owned())
        };
        Ok(RecordedResponse {
            status: self.status,
            headers: self.headers,
            body,
        })
    }

    fn fail(&self, message: String) -> CassetteError {
        fail(&self.url, self.key.as_deref(), message)
    }
}

/// An upstream error naming `url`, `key` scrubbed from its text.
fn fail(url: &str, key: Option<&str>, message: String) -> CassetteError {
    let message = match key.filter(|k| !k.is_empty()) {
        Some(key) => message.replace(key, REDACTED),
        None => message,
    };
    CassetteError::Upstream {
        url: url.to_owned(),
        message,
    }
}

/// The events of a whole event-stream body.
pub(crate) fn events_of(bytes: &[u8]) -> Vec<SseEvent> {
    parse_sse(&String::from_utf8_lossy(bytes))
}

/// Sends a request to the real upstream and returns once its head has arrived.
/// `upstream_base` is an OpenAI-style base URL (`https://api.openai.com/v1`); a leading `/v1`
/// of `path` is dropped when the base already ends in `/v1`. Sends `Authorization: Bearer
/// <api_key>` when a key is given. An error status is an answer, not an error. Headers are
/// returned unscrubbed (but without hop-by-hop ones):
/// [`Cassette::record`](super::Cassette::record) scrubs.
///
/// # Errors
///
/// [`CassetteError::Upstream`] naming the URL (never the key) when the upstream cannot be
/// reached.
pub(crate) async fn send(
    http: &reqwest::Client,
    upstream_base: &str,
    method: &str,
    path: &str,
    body: Bytes,
    api_key: Option<&SecretString>,
) -> Result<Upstream, CassetteError> {
    let url = upstream_url(upstream_base, path);
    let key = api_key.map(|k| k.expose_secret().to_owned());
    let fail = |message: String| fail(&url, key.as_deref(), message);
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| fail(format!("invalid method `{method}`")))?;
    let mut request = http.request(method, &url);
    if let Some(key) = api_key {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
            .map_err(|_| fail("the api key is not a valid header value".to_owned()))?;
        value.set_sensitive(true);
        request = request.header(AUTHORIZATION, value);
    }
    if !body.is_empty() {
        request = request.header(CONTENT_TYPE, "application/json").body(body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| fail(error_chain(&e.without_url())))?;
    let status = response.status().as_u16();
    let headers: BTreeMap<String, String> = response
        .headers()
        .iter()
        .filter(|(name, _)| !listed(HOP_HEADERS, name.as_str()))
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .fold(BTreeMap::new(), |mut headers, (name, value)| {
            headers
                .entry(name)
                .and_modify(|v: &mut String| *v = format!("{v}, {value}"))
                .or_insert(value);
            headers
        });
    Ok(Upstream {
        status,
        headers,
        response,
        url,
        key,
    })
}

/// The upstream URL for a path the mock received.
fn upstream_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let path = match path.strip_prefix("/v1") {
        Some(rest)
            if base.ends_with("/v1") && (rest.is_empty() || rest.starts_with(['/', '?'])) =>
        {
            rest
        }
        _ => path,
    };
    let slash = if path.is_empty() || path.starts_with(['/', '?']) {
        ""
    } else {
        "/"
    };
    format!("{base}{slash}{path}")
}

/// An error and its sources, joined with `: `.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    message
}

/// Splits a buffered event stream into events (`\n`, `\r\n` or `\r` line ends; multi-line data
/// joined with `\n`; comments and fields other than `event`/`data` skipped).
fn parse_sse(text: &str) -> Vec<SseEvent> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let (mut events, mut event, mut data) = (Vec::new(), None, None::<String>);
    for line in text.split('\n').chain([""]) {
        if line.is_empty() {
            if let Some(data) = data.take() {
                events.push(SseEvent {
                    event: event.take(),
                    data,
                });
            }
            event = None;
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match (field, &mut data) {
            ("event", _) => event = Some(value.to_owned()),
            ("data", Some(data)) => {
                data.push('\n');
                data.push_str(value);
            }
            ("data", None) => data = Some(value.to_owned()),
            _ => {}
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use secrecy::SecretString;
    use serde_json::{Value, json};

    use super::{forward, parse_sse, upstream_url};
    use crate::cassette::{
        Cassette, RecordedBody,
        test_helpers::{CANARY, CHAT, events},
    };

    #[test]
    fn event_streams_and_upstream_urls() {
        let text =
            "data: {\"a\":1}\r\n\r\n: ping\n\nevent: done\ndata: one\ndata:two\n\ndata: [DONE]";
        let expected = [
            (None, "{\"a\":1}"),
            (Some("done"), "one\ntwo"),
            (None, "[DONE]"),
        ];
        assert_eq!(parse_sse(text), events(&expected));
        for (base, path, url) in [
            (
                "https://api.openai.com/v1/",
                CHAT,
                "https://api.openai.com/v1/chat/completions",
            ),
            (
                "http://127.0.0.1:9000",
                "/v1/models",
                "http://127.0.0.1:9000/v1/models",
            ),
            ("http://h/v1", "/v1beta/x", "http://h/v1/v1beta/x"),
        ] {
            assert_eq!(upstream_url(base, path), url);
        }
    }

    /// A tiny upstream on 127.0.0.1: an event stream when the body asks for one, else JSON
    /// saying whether the key came.
    async fn upstream() -> String {
        use axum::{Json, http::HeaderMap, response::IntoResponse};
        let handler = |headers: HeaderMap, Json(body): Json<Value>| async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
            let authed = auth == Some(&format!("Bearer {CANARY}")[..]);
            if body["stream"] == json!(true) {
                let stream = "data: {\"n\":1}\r\n\r\nevent: named\ndata: line one\ndata: line two\n\n\
                    data: [DONE]\n\n";
                ([("content-type", "text/event-stream")], stream).into_response()
            } else {
                let headers = [
                    ("x-ratelimit-remaining-requests", "99"),
                    ("set-cookie", "a=b"),
                ];
                (
                    headers,
                    Json(json!({"authed": authed, "model": body["model"]})),
                )
                    .into_response()
            }
        };
        let app = axum::Router::new().route(CHAT, axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/v1")
    }

    #[tokio::test]
    async fn forward_buffers_json_and_event_streams() {
        let (base, http, key) = (
            upstream().await,
            reqwest::Client::new(),
            SecretString::from(CANARY),
        );
        let body = Bytes::from(r#"{"model":"m","stream":false}"#);
        let answer = forward(&http, &base, "POST", CHAT, body, Some(&key))
            .await
            .unwrap();
        assert_eq!(
            answer.body,
            RecordedBody::Json(json!({"authed": true, "model": "m"}))
        );
        assert_eq!(
            (
                answer.status,
                &answer.headers["x-ratelimit-remaining-requests"][..]
            ),
            (200, "99")
        );
        assert!(!answer.headers.contains_key("content-length"));

        let body = Bytes::from(r#"{"model":"m","stream":true}"#);
        let answer = forward(&http, &base, "POST", CHAT, body, None)
            .await
            .unwrap();
        let expected = [
            (None, "{\"n\":1}"),
            (Some("named"), "line one\nline two"),
            (None, "[DONE]"),
        ];
        assert_eq!(answer.body, RecordedBody::Sse(events(&expected)));

        let dir = tempfile::tempdir().unwrap();
        let mut cassette = Cassette::empty(&dir.path().join("rec.yaml"));
        let asked = json!({"model": "m", "stream": true});
        cassette
            .record("POST", CHAT, &asked, answer.clone(), &[CANARY])
            .unwrap();
        let replayed = Cassette::load(cassette.path()).unwrap();
        let (_, hit) = replayed.lookup("POST", CHAT, &asked).unwrap();
        assert_eq!(hit.body, answer.body);
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_named_without_the_key() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        drop(listener);
        let (http, key) = (reqwest::Client::new(), SecretString::from(CANARY));
        let body = Bytes::from("{}");
        let err = forward(&http, &base, "POST", "/v1/embeddings", body, Some(&key)).await;
        let text = format!("{} {:?}", err.as_ref().unwrap_err(), err);
        assert!(
            text.contains(&format!("upstream request to {base}/embeddings failed")),
            "{text}"
        );
        assert!(!text.contains(CANARY), "{text}");
    }
}
