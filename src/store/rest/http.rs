//! The REST store's HTTP transport: one reqwest client, the server's base URL, credentials,
//! retries, and the mapping of failures to [`StoreError`].
//!
//! Owns [`Transport`] and [`RetryPolicy`]. Every request goes through [`Transport::send`]:
//! connection errors, timeouts, 429 and 5xx are retried with exponential backoff; anything else
//! fails at once. A transport failure that outlasts the retries becomes
//! [`StoreError::Unreachable`] naming the server (never credentials); an HTTP error becomes
//! [`StoreError::Mlflow`] with MLflow's `error_code` and `message`. Does not know what the
//! endpoints mean (`imp.rs`, `prompt.rs`, `upload.rs`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

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
/// Where MLflow's REST API lives under the base URL (the artifact proxy is
/// `api/2.0/mlflow-artifacts/…`, not under it).
const API_PREFIX: &str = "api/2.0/mlflow/";
/// The oldest MLflow server chainlog works with: 3.0 brought the LoggedModel API.
pub(super) const MINIMUM_SERVER: &str = "3.0";

/// MLflow's variable for retries after the first attempt (default 7).
pub const MAX_RETRIES_VAR: &str = "MLFLOW_HTTP_REQUEST_MAX_RETRIES";
/// MLflow's variable for the backoff factor in seconds (default 2).
pub const BACKOFF_FACTOR_VAR: &str = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR";
/// MLflow's variable for the random extra wait in seconds (default 1.0).
pub const BACKOFF_JITTER_VAR: &str = "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER";
/// The longest single wait (urllib3's `Retry.DEFAULT_BACKOFF_MAX`).
const MAX_DELAY: Duration = Duration::from_secs(120);
/// Attempts before the server has answered once: a wrong URL or an absent server is reported
/// in about 1.5 s instead of minutes.
const FIRST_CONTACT_ATTEMPTS: u32 = 4;
/// The first wait before the server has answered once.
const FIRST_CONTACT_DELAY: Duration = Duration::from_millis(200);

/// Retries for transient failures (connection errors, timeouts, 429, 5xx), as MLflow's own
/// client does them (`mlflow/utils/request_utils.py`: urllib3 `Retry` with
/// `MLFLOW_HTTP_REQUEST_MAX_RETRIES`, `_BACKOFF_FACTOR`, `_BACKOFF_JITTER`): the wait before
/// retry `n` is `factor × 2^(n-1)` seconds, at most 120 s, plus up to `jitter` seconds. At the
/// defaults (7 retries, factor 2) an outage of about four minutes is ridden out — a server
/// restart, a rate limit. Until the server has answered once in this process, a short policy
/// applies instead (4 attempts, 200 ms doubling), so a wrong URL fails fast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all once the server has answered, the first included (at least 1).
    pub attempts: u32,
    /// The wait before the first retry; each further retry waits twice as long.
    pub base_delay: Duration,
    /// Up to this much random extra wait per retry, so many writers do not hit a recovering
    /// server in step.
    pub jitter: Duration,
}

impl Default for RetryPolicy {
    /// MLflow's defaults: 8 attempts, 2 s → 4 s → … → 120 s, up to 1 s of jitter.
    fn default() -> Self {
        Self {
            attempts: 8,
            base_delay: Duration::from_secs(2),
            jitter: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The policy MLflow's variables ask for; a variable that does not parse is named in the
    /// error.
    ///
    /// # Errors
    ///
    /// [`StoreError::BadSetting`] naming the variable and its value.
    pub fn from_env() -> Result<Self, StoreError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, StoreError> {
        let mut policy = Self::default();
        let bad = |name: &str, value: &str, expected: &str| StoreError::BadSetting {
            name: name.to_owned(),
            value: value.to_owned(),
            expected: expected.to_owned(),
        };
        if let Some(value) = lookup(MAX_RETRIES_VAR) {
            let retries: u32 = value
                .trim()
                .parse()
                .map_err(|_| bad(MAX_RETRIES_VAR, &value, "a whole number of retries, e.g. 7"))?;
            policy.attempts = retries.saturating_add(1);
        }
        if let Some(value) = lookup(BACKOFF_FACTOR_VAR) {
            let factor: u64 = value
                .trim()
                .parse()
                .map_err(|_| bad(BACKOFF_FACTOR_VAR, &value, "whole seconds, e.g. 2"))?;
            policy.base_delay = Duration::from_secs(factor);
        }
        if let Some(value) = lookup(BACKOFF_JITTER_VAR) {
            let jitter = value
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
                .ok_or_else(|| bad(BACKOFF_JITTER_VAR, &value, "seconds, e.g. 1.0"))?;
            policy.jitter = jitter;
        }
        Ok(policy)
    }

    /// The policy before the server has answered once.
    fn first_contact(self) -> Self {
        Self {
            attempts: self.attempts.min(FIRST_CONTACT_ATTEMPTS),
            base_delay: self.base_delay.min(FIRST_CONTACT_DELAY),
            jitter: self.jitter.min(FIRST_CONTACT_DELAY / 4),
        }
    }

    /// The wait before retry number `retry` (1-based).
    fn delay(self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1_u32 << retry.saturating_sub(1).min(16))
            .min(MAX_DELAY);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let jitter = if self.jitter.is_zero() {
            Duration::ZERO
        } else {
            let span = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX);
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
    /// Whether the server has answered (any HTTP status) since this transport was made.
    answered: Arc<AtomicBool>,
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
            retry: RetryPolicy::from_env()?,
            answered: Arc::default(),
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
            ..retry
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
            let policy = if self.answered.load(Ordering::Relaxed) {
                self.retry
            } else {
                self.retry.first_contact()
            };
            let retry_left = attempt < policy.attempts;
            let result = self.attempt(method.clone(), url.clone(), &payload).await;
            if result.is_ok() {
                self.answered.store(true, Ordering::Relaxed);
            }
            match result {
                Ok((status, body)) if status.is_success() => return Ok(body),
                Ok((status, _)) if retry_left && is_transient(status) => {
                    tracing::debug!(operation, %status, attempt, "MLflow answered a transient error; retrying");
                }
                Ok((status, body))
                    if status == StatusCode::NOT_FOUND
                        && path.starts_with(API_PREFIX)
                        && !is_mlflow_error(&body) =>
                {
                    return Err(self.missing_api(operation, status, &body).await);
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
            tokio::time::sleep(policy.delay(attempt)).await;
            attempt += 1;
        }
    }

    /// The server's MLflow version (`GET /version`), when it says one.
    pub(super) async fn server_version(&self) -> Option<String> {
        let (status, text) = self
            .attempt(Method::GET, self.url("version", &[]), &Payload::Empty)
            .await
            .ok()?;
        let text = String::from_utf8_lossy(&text).trim().to_owned();
        let looks_like_version = status.is_success()
            && !text.is_empty()
            && text.len() <= 40
            && text.starts_with(|c: char| c.is_ascii_digit())
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".+-".contains(c));
        looks_like_version.then_some(text)
    }

    /// Why an API path answered a 404 that is not MLflow's: an MLflow too old to have the
    /// call (its `GET /version` answers), or no MLflow API at this URI at all.
    async fn missing_api(&self, operation: &str, status: StatusCode, body: &[u8]) -> StoreError {
        match self.server_version().await {
            Some(version) => StoreError::ServerTooOld {
                uri: self.display_uri(),
                version,
                operation: operation.to_owned(),
                minimum: MINIMUM_SERVER.to_owned(),
            },
            None => StoreError::NotMlflow {
                uri: self.display_uri(),
                operation: operation.to_owned(),
                status: status.as_u16(),
                excerpt: crate::secret::scrub(&excerpt(body, status)),
            },
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

/// Whether `body` is MLflow's error JSON (`{"error_code": …}`).
fn is_mlflow_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|value| {
        value
            .get("error_code")
            .is_some_and(serde_json::Value::is_string)
    })
}

/// A body's gist for a message: an HTML page's `<title>` (or its text without tags), else
/// the text, on one line and at most [`BODY_EXCERPT_CHARS`] characters; the status's reason
/// when empty.
fn excerpt(body: &[u8], status: StatusCode) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    let gist = if trimmed.starts_with('<') {
        let lower = trimmed.to_ascii_lowercase();
        let title = lower.find("<title>").and_then(|start| {
            let from = start + "<title>".len();
            lower[from..]
                .find("</title>")
                .map(|len| trimmed[from..from + len].to_owned())
        });
        title.unwrap_or_else(|| strip_tags(trimmed))
    } else {
        trimmed.to_owned()
    };
    let gist: String = one_line(&gist).chars().take(BODY_EXCERPT_CHARS).collect();
    if gist.is_empty() {
        status.canonical_reason().unwrap_or("no message").to_owned()
    } else {
        gist
    }
}

/// `html` without its tags.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
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
        _ => (format!("HTTP {}", status.as_u16()), excerpt(body, status)),
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
            "MLflow refused runs/create: bad gateway (HTTP 502)"
        );
        // Flask's 404 page: its title, not the page.
        let page = b"<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>The requested URL was not found on the server.</p>\n";
        assert_eq!(excerpt(page, StatusCode::NOT_FOUND), "404 Not Found");
        assert_eq!(
            excerpt(
                b"<html><body><h1>Oops</h1></body></html>",
                StatusCode::NOT_FOUND
            ),
            "Oops"
        );
        assert!(is_mlflow_error(
            br#"{"error_code": "RESOURCE_DOES_NOT_EXIST"}"#
        ));
        assert!(!is_mlflow_error(br#"{"detail": "Not Found"}"#));
        assert!(!is_mlflow_error(page));
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
            jitter: Duration::from_millis(25),
        };
        for (retry, base) in [(1, 100), (2, 200), (3, 400)] {
            let delay = policy.delay(retry);
            assert!(delay >= Duration::from_millis(base), "{delay:?}");
            assert!(delay <= Duration::from_millis(base + 25), "{delay:?}");
        }
        // Capped at 120 s, as urllib3 caps it.
        assert!(RetryPolicy::default().delay(9) <= MAX_DELAY + Duration::from_secs(1));
    }

    /// MLflow's defaults ride out a minutes-long outage (well over 30 s of waiting in all);
    /// before the server has answered once, a wrong URL fails within about 1.5 s.
    #[test]
    fn defaults_match_mlflow_and_first_contact_is_short() {
        let policy = RetryPolicy::from_lookup(|_| None).unwrap();
        assert_eq!(policy, RetryPolicy::default());
        let waited: Duration = (1..policy.attempts).map(|n| policy.delay(n)).sum();
        assert!(waited >= Duration::from_secs(240), "{waited:?}");
        let first = policy.first_contact();
        let waited: Duration = (1..first.attempts).map(|n| first.delay(n)).sum();
        assert!(waited <= Duration::from_millis(1600), "{waited:?}");
    }

    #[test]
    fn mlflow_retry_variables_are_read_and_bad_values_named() {
        let policy = RetryPolicy::from_lookup(|name| match name {
            MAX_RETRIES_VAR => Some("3".to_owned()),
            BACKOFF_FACTOR_VAR => Some("1".to_owned()),
            BACKOFF_JITTER_VAR => Some("0.5".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(policy.attempts, 4);
        assert_eq!(policy.base_delay, Duration::from_secs(1));
        assert_eq!(policy.jitter, Duration::from_millis(500));
        for var in [MAX_RETRIES_VAR, BACKOFF_FACTOR_VAR, BACKOFF_JITTER_VAR] {
            let err = RetryPolicy::from_lookup(|name| (name == var).then(|| "-x".to_owned()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(var) && err.contains("-x"), "{err}");
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
