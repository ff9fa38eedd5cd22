//! The REST store's HTTP transport: one reqwest client, the server's base URL, credentials,
//! retries, and the mapping of failures to [`StoreError`].
//!
//! Owns [`Transport`] and [`RetryPolicy`]. Every request goes through [`Transport::send`]:
//! connection errors, timeouts, 429 and 5xx are retried with exponential backoff; anything else
//! fails at once. A transport failure that outlasts the retries becomes
//! [`StoreError::Unreachable`] naming the server (never credentials); an HTTP error becomes
//! [`StoreError::Mlflow`] with MLflow's `error_code` and `message`. Does not know what the
//! endpoints mean (`imp.rs`, `prompt.rs`, `upload.rs`).

use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, StatusCode, Url, header::CONTENT_TYPE};
use serde::{Serialize, de::DeserializeOwned};

use super::auth::Auth;
use crate::store::StoreError;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take end to end (artifact uploads included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// How much of a non-JSON error body a message quotes.
const BODY_EXCERPT_CHARS: usize = 200;

/// Retries for transient failures (connection errors, timeouts, 429, 5xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// The delay before the first retry; each further retry waits twice as long.
    pub base_delay: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, 200 ms → 400 ms → 800 ms: a server restart is ridden out, an absent
    /// server is reported within about 1.5 s.
    fn default() -> Self {
        Self {
            attempts: 4,
            base_delay: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based), with up to 25 % jitter so many
    /// writers do not hit a recovering server in step.
    fn delay(self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1_u32 << retry.saturating_sub(1).min(16));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let quarter = exp / 4;
        let jitter = if quarter.is_zero() {
            Duration::ZERO
        } else {
            let span = u64::try_from(quarter.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(u64::from(nanos) % span)
        };
        exp + jitter
    }
}

/// A request body.
pub(super) enum Payload {
    /// No body (GET).
    Empty,
    /// A serialized JSON document (`Content-Type: application/json`).
    Json(Bytes),
    /// Raw bytes (`Content-Type: application/octet-stream`), e.g. an artifact file.
    Raw(Bytes),
}

/// The HTTP side of the REST store.
#[derive(Clone)]
pub(super) struct Transport {
    client: reqwest::Client,
    /// The server's base URL, credentials-free, without a trailing slash in its path.
    base: Url,
    auth: Option<Auth>,
    retry: RetryPolicy,
}

impl Transport {
    /// A transport for `base` (already validated: http(s), no credentials).
    pub(super) fn new(base: Url, auth: Option<Auth>) -> Result<Self, StoreError> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|err| StoreError::Unreachable {
                uri: display(&base),
                message: format!("cannot build the HTTP client: {}", error_chain(&err)),
            })?;
        Ok(Self {
            client,
            base,
            auth,
            retry: RetryPolicy::default(),
        })
    }

    /// The server for messages.
    pub(super) fn display_uri(&self) -> String {
        display(&self.base)
    }

    pub(super) fn auth(&self) -> Option<&Auth> {
        self.auth.as_ref()
    }

    pub(super) fn retry(&self) -> RetryPolicy {
        self.retry
    }

    pub(super) fn set_retry(&mut self, retry: RetryPolicy) {
        self.retry = RetryPolicy {
            attempts: retry.attempts.max(1),
            base_delay: retry.base_delay,
        };
    }

    /// `GET <base>/<path>?<query>` → JSON.
    pub(super) async fn get<T: DeserializeOwned>(
        &self,
        operation: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, StoreError> {
        let body = self
            .send(operation, Method::GET, path, query, Payload::Empty)
            .await?;
        decode(operation, &body)
    }

    /// `POST <base>/<path>` with a JSON body → JSON.
    pub(super) async fn post<T: DeserializeOwned>(
        &self,
        operation: &str,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, StoreError> {
        let payload = encode(operation, body)?;
        let body = self
            .send(operation, Method::POST, path, &[], payload)
            .await?;
        decode(operation, &body)
    }

    /// `POST` or `PATCH <base>/<path>` with a JSON body, for calls whose answer carries
    /// nothing chainlog reads (`{}`, or the updated entity).
    pub(super) async fn send_json(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        body: &impl Serialize,
    ) -> Result<(), StoreError> {
        let payload = encode(operation, body)?;
        self.send(operation, method, path, &[], payload).await?;
        Ok(())
    }

    /// `PUT <base>/<path>` with raw bytes; the answer's body is ignored.
    pub(super) async fn put_bytes(
        &self,
        operation: &str,
        path: &str,
        bytes: Bytes,
    ) -> Result<(), StoreError> {
        self.send(operation, Method::PUT, path, &[], Payload::Raw(bytes))
            .await?;
        Ok(())
    }

    /// Sends one request, retrying transient failures, and returns the body of a 2xx answer.
    ///
    /// `path` is relative to the base URL and `/`-separated; each segment is percent-encoded.
    pub(super) async fn send(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        payload: Payload,
    ) -> Result<Bytes, StoreError> {
        let url = self.url(path, query);
        let mut attempt = 1;
        loop {
            let retry_left = attempt < self.retry.attempts;
            match self.attempt(method.clone(), url.clone(), &payload).await {
                Ok((status, body)) if status.is_success() => return Ok(body),
                Ok((status, _)) if retry_left && is_transient(status) => {
                    tracing::debug!(operation, %status, attempt, "MLflow answered a transient error; retrying");
                }
                Ok((status, body)) => return Err(mlflow_error(operation, status, &body)),
                Err(err) if retry_left => {
                    tracing::debug!(operation, error = %error_chain(&err), attempt, "request failed; retrying");
                }
                Err(err) => {
                    return Err(StoreError::Unreachable {
                        uri: self.display_uri(),
                        message: format!(
                            "{} (after {attempt} attempts)",
                            one_line(&error_chain(&err))
                        ),
                    });
                }
            }
            tokio::time::sleep(self.retry.delay(attempt)).await;
            attempt += 1;
        }
    }

    /// One attempt: the status and the whole body (a body cut short counts as a transport
    /// failure, so it is retried too).
    async fn attempt(
        &self,
        method: Method,
        url: Url,
        payload: &Payload,
    ) -> Result<(StatusCode, Bytes), reqwest::Error> {
        let mut request = self.client.request(method, url);
        if let Some(auth) = &self.auth {
            request = auth.apply(request);
        }
        request = match payload {
            Payload::Empty => request,
            Payload::Json(bytes) => request
                .header(CONTENT_TYPE, "application/json")
                .body(bytes.clone()),
            Payload::Raw(bytes) => request
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(bytes.clone()),
        };
        let response = request.send().await.map_err(reqwest::Error::without_url)?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(reqwest::Error::without_url)?;
        Ok((status, body))
    }

    /// `<base>/<path>?<query>`, each path segment percent-encoded.
    fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            // `path_segments_mut` only fails for cannot-be-a-base URLs, which an http(s) URL
            // with a host never is.
            segments.pop_if_empty().extend(path.split('/'));
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }
}

/// The base URL as shown in messages: no trailing slash.
fn display(base: &Url) -> String {
    base.as_str().trim_end_matches('/').to_owned()
}

/// Whether a status is worth retrying.
fn is_transient(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

fn encode(operation: &str, body: &impl Serialize) -> Result<Payload, StoreError> {
    serde_json::to_vec(body)
        .map(|bytes| Payload::Json(Bytes::from(bytes)))
        .map_err(|err| StoreError::Mlflow {
            operation: operation.to_owned(),
            code: "INVALID_REQUEST".to_owned(),
            message: format!("cannot encode the request: {err}"),
        })
}

fn decode<T: DeserializeOwned>(operation: &str, body: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(body).map_err(|err| StoreError::Mlflow {
        operation: operation.to_owned(),
        code: "INVALID_RESPONSE".to_owned(),
        message: format!("unexpected answer: {err}"),
    })
}

/// MLflow's `{"error_code", "message"}`, or the HTTP status and an excerpt of the body.
pub(super) fn mlflow_error(operation: &str, status: StatusCode, body: &[u8]) -> StoreError {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error_code: Option<String>,
        message: Option<String>,
    }
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
    let (code, message) = match parsed {
        Some(ErrorBody {
            error_code: Some(code),
            message,
        }) => (code, message.unwrap_or_default()),
        _ => {
            let text = String::from_utf8_lossy(body);
            let excerpt: String = one_line(text.trim())
                .chars()
                .take(BODY_EXCERPT_CHARS)
                .collect();
            let message = if excerpt.is_empty() {
                status.canonical_reason().unwrap_or("no message").to_owned()
            } else {
                excerpt
            };
            (format!("HTTP {}", status.as_u16()), message)
        }
    };
    // The server's words come from outside: scrubbed of every secret (the tracking token
    // included) before they become part of an error.
    StoreError::Mlflow {
        operation: operation.to_owned(),
        code: crate::secret::scrub(&code),
        message: crate::secret::scrub(&message),
    }
}

/// An error and its sources, `: `-joined, repeated parts dropped, scrubbed of secrets.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    crate::secret::scrub(&parts.join(": "))
}

/// Newlines folded into spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlflow_error_body_gives_code_and_message() {
        let body = br#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Could not find experiment", "sqlstate": "KAM00"}"#;
        let err = mlflow_error("experiments/get-by-name", StatusCode::NOT_FOUND, body);
        assert_eq!(
            err.to_string(),
            "MLflow refused experiments/get-by-name: Could not find experiment (RESOURCE_DOES_NOT_EXIST)"
        );
    }

    #[test]
    fn non_json_error_body_gives_status_and_excerpt() {
        let err = mlflow_error(
            "runs/create",
            StatusCode::BAD_GATEWAY,
            b"<html>\nbad gateway\n</html>",
        );
        assert_eq!(
            err.to_string(),
            "MLflow refused runs/create: <html> bad gateway </html> (HTTP 502)"
        );
        let err = mlflow_error("runs/create", StatusCode::FORBIDDEN, b"");
        assert_eq!(
            err.to_string(),
            "MLflow refused runs/create: Forbidden (HTTP 403)"
        );
    }

    #[test]
    fn retry_delay_doubles_with_bounded_jitter() {
        let policy = RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(100),
        };
        for (retry, base) in [(1, 100), (2, 200), (3, 400)] {
            let delay = policy.delay(retry);
            assert!(delay >= Duration::from_millis(base), "{delay:?}");
            assert!(delay <= Duration::from_millis(base * 5 / 4), "{delay:?}");
        }
    }

    #[test]
    fn url_percent_encodes_segments_and_keeps_a_base_path() -> Result<(), StoreError> {
        let base =
            Url::parse("http://127.0.0.1:5000/mlflow/").map_err(|_| StoreError::NotFound {
                what: "url".to_owned(),
            })?;
        let transport = Transport::new(base, None)?;
        let url = transport.url("api/2.0/mlflow-artifacts/artifacts/1/a b/c#d.txt", &[]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:5000/mlflow/api/2.0/mlflow-artifacts/artifacts/1/a%20b/c%23d.txt"
        );
        let url = transport.url(
            "api/2.0/mlflow/experiments/get-by-name",
            &[("experiment_name", "a&b")],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:5000/mlflow/api/2.0/mlflow/experiments/get-by-name?experiment_name=a%26b"
        );
        Ok(())
    }
}
