//! Retries of one HTTP exchange with an OpenAI-style API: a tower layer over async-openai's
//! middleware services (`HttpRequestFactory` → `reqwest::Response`, such as its
//! `ReqwestService`), so it also fits `async_openai::Client::with_http_service`.
//!
//! Owns [`RetryPolicy`] (how many retries, how long an attempt may take, how long to wait) and
//! [`RetryLayer`]. It does not turn failures into [`LlmError`](super::LlmError)s (`openai`
//! does).
//!
//! # Why not async-openai's `OpenAIRetryLayer`
//!
//! async-openai 0.43's `OpenAIRetryLayer` (default 3 retries) retries 429 (unless the error
//! `type` is `insufficient_quota`), 5xx and reqwest *connect* errors, waits `100 ms × 2ⁿ`
//! capped at 8 s without jitter, and honours `retry-after` only as whole seconds. It does not
//! read `retry-after-ms` or `x-ratelimit-reset-*`, adds no jitter, does not recognise a quota
//! error by its `code`, fails at once on a 429 whose body is not OpenAI's error JSON, has no
//! per-attempt timeout (a tower `Timeout` can only wrap it from outside, where it fires once
//! for all attempts together), does not retry a connection dropped mid-body, and cannot report
//! how many attempts a call took. So this layer is ours:
//!
//! - **What is retried**: 429 unless the error's `type` or `code` is `insufficient_quota`;
//!   every 5xx; transport failures (refused, reset or dropped connections, a body cut off
//!   mid-way — reqwest calls that a decode error); an attempt that timed out.
//!   Any other status is handed on at once, and so is the last failed answer once retries run
//!   out, so the caller sees the provider's status and message.
//! - **The wait**: the server's `retry-after-ms`, else `retry-after` (seconds; an HTTP date is
//!   ignored), else the largest `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` (Go
//!   durations: `12ms`, `6m0s`, `1s`) whose `x-ratelimit-remaining-*` is exhausted or absent,
//!   capped at [`RetryPolicy::max_server_delay`]. Without one (or when it is zero or negative,
//!   as Azure sometimes sends): full jitter, a random wait in
//!   `[0, min(max_delay, base_delay × 2ⁿ)]`.
//! - **The per-attempt timeout** covers the response headers and, for a non-streaming answer,
//!   its whole body (read here, so a body that hangs or breaks is retried too). An SSE body is
//!   passed on unread: this layer retries a stream until it opens, and the stream reader
//!   (`openai::stream`) reopens one that breaks before its first content.
//! - **Attempts** are counted into a counter the caller passes per call.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use async_openai::{error::OpenAIError, middleware::HttpRequestFactory};
use bytes::Bytes;
use reqwest::{Response, StatusCode, header::HeaderMap};
use tower::{Layer, Service, ServiceExt};
use tracing::Span;

/// The error `code`/`type` of a 429 that no retry will fix.
const INSUFFICIENT_QUOTA: &str = "insufficient_quota";

/// How one call retries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// How long one attempt may take; `None` waits forever.
    pub attempt_timeout: Option<Duration>,
    /// The first backoff cap; doubles per retry.
    pub base_delay: Duration,
    /// The largest backoff cap.
    pub max_delay: Duration,
    /// The longest server-requested wait honoured (a longer one is cut to this).
    pub max_server_delay: Duration,
}

impl RetryPolicy {
    /// `max_retries` retries of attempts lasting at most `attempt_timeout` (zero: no
    /// timeout), backing off from 200 ms up to 10 s, honouring server waits up to 60 s.
    pub fn new(max_retries: u32, attempt_timeout: Duration) -> Self {
        Self {
            max_retries,
            attempt_timeout: (!attempt_timeout.is_zero()).then_some(attempt_timeout),
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_server_delay: Duration::from_secs(60),
        }
    }

    /// The wait before retry number `retry` (0-based) when the server named none: full jitter.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(2_u32.saturating_pow(retry))
            .min(self.max_delay);
        let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::random_range(0..=cap_nanos))
    }

    /// The wait before the next retry: the server's, capped, else the backoff.
    fn delay(&self, retry: u32, server_delay: Option<Duration>) -> Duration {
        match server_delay {
            Some(delay) => delay.min(self.max_server_delay),
            None => self.backoff(retry),
        }
    }
}

/// An attempt that took longer than the policy allows (carried in `OpenAIError::Boxed`).
#[derive(Debug, thiserror::Error)]
#[error("no answer within {} ms", .after.as_millis())]
pub(crate) struct AttemptTimedOut {
    /// The per-attempt timeout.
    pub after: Duration,
}

/// Adds retries to an async-openai HTTP service; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct RetryLayer {
    policy: RetryPolicy,
    attempts: Arc<AtomicU32>,
    span: Span,
}

impl RetryLayer {
    /// A layer that counts every HTTP attempt into `attempts` and says each retry as an event
    /// inside `span` (the call's `llm.chat` span: a span event of its trace, and the context
    /// of the log line). The span is entered for the event only, not for the whole call:
    /// entering it at every poll would cost each traced call a registry lookup per layer, per
    /// poll.
    pub fn new(policy: RetryPolicy, attempts: Arc<AtomicU32>, span: Span) -> Self {
        Self {
            policy,
            attempts,
            span,
        }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            policy: self.policy.clone(),
            attempts: Arc::clone(&self.attempts),
            span: self.span.clone(),
        }
    }
}

/// The service [`RetryLayer`] makes.
#[derive(Debug, Clone)]
pub(crate) struct Retry<S> {
    inner: S,
    policy: RetryPolicy,
    attempts: Arc<AtomicU32>,
    span: Span,
}

type RetryFuture = Pin<Box<dyn Future<Output = Result<Response, OpenAIError>> + Send + 'static>>;

impl<S> Service<HttpRequestFactory> for Retry<S>
where
    S: Service<HttpRequestFactory, Response = Response, Error = OpenAIError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = OpenAIError;
    type Future = RetryFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        // Take the service that was polled ready and leave a fresh clone behind.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        Box::pin(run(
            service,
            request,
            self.policy.clone(),
            Arc::clone(&self.attempts),
            self.span.clone(),
        ))
    }
}

/// What to do after an attempt.
enum Verdict {
    /// Hand this on.
    Done(Result<Response, OpenAIError>),
    /// Retry if retries are left (else hand `result` on), after the server's wait if it named one.
    Retry {
        result: Result<Response, OpenAIError>,
        server_delay: Option<Duration>,
        reason: String,
    },
}

async fn run<S>(
    mut service: S,
    request: HttpRequestFactory,
    policy: RetryPolicy,
    attempts: Arc<AtomicU32>,
    span: Span,
) -> Result<Response, OpenAIError>
where
    S: Service<HttpRequestFactory, Response = Response, Error = OpenAIError>,
{
    let mut retry = 0;
    loop {
        attempts.fetch_add(1, Ordering::Relaxed);
        let outcome = attempt(&mut service, &request, policy.attempt_timeout).await;
        match judge(outcome) {
            Verdict::Done(result) => return result,
            Verdict::Retry { result, .. } if retry >= policy.max_retries => return result,
            Verdict::Retry {
                server_delay,
                reason,
                ..
            } => {
                let delay = policy.delay(retry, server_delay);
                retry += 1;
                span.in_scope(|| {
                    tracing::warn!(
                        retry,
                        max_retries = policy.max_retries,
                        reason = %reason,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        server_asked = server_delay.is_some(),
                        "llm request failed; retrying"
                    );
                });
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// A response, with its body when it was read here.
struct Answer {
    response: Response,
    body: Option<Bytes>,
}

/// One attempt: send, and read a non-streaming body, all within the timeout.
async fn attempt<S>(
    service: &mut S,
    request: &HttpRequestFactory,
    timeout: Option<Duration>,
) -> Result<Answer, OpenAIError>
where
    S: Service<HttpRequestFactory, Response = Response, Error = OpenAIError>,
{
    let exchange = async {
        let response = service.ready().await?.call(request.clone()).await?;
        buffer(response).await
    };
    match timeout {
        None => exchange.await,
        Some(after) => tokio::time::timeout(after, exchange)
            .await
            .unwrap_or_else(|_| Err(OpenAIError::Boxed(Box::new(AttemptTimedOut { after })))),
    }
}

/// Reads a non-SSE body into memory and rebuilds the response around it; SSE passes unread.
async fn buffer(response: Response) -> Result<Answer, OpenAIError> {
    let is_sse = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    if is_sse {
        return Ok(Answer {
            response,
            body: None,
        });
    }
    let status = response.status();
    let version = response.version();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(OpenAIError::Reqwest)?;
    let mut rebuilt = http::Response::new(body.clone());
    *rebuilt.status_mut() = status;
    *rebuilt.version_mut() = version;
    *rebuilt.headers_mut() = headers;
    Ok(Answer {
        response: Response::from(rebuilt),
        body: Some(body),
    })
}

fn judge(outcome: Result<Answer, OpenAIError>) -> Verdict {
    match outcome {
        Ok(Answer { response, body }) => {
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                if body.as_deref().is_some_and(is_quota_error) {
                    return Verdict::Done(Ok(response));
                }
            } else if !status.is_server_error() {
                return Verdict::Done(Ok(response));
            }
            let server_delay = server_delay(response.headers());
            Verdict::Retry {
                reason: format!("http {}", status.as_u16()),
                result: Ok(response),
                server_delay,
            }
        }
        Err(error) if is_retryable_error(&error) => Verdict::Retry {
            reason: error.to_string(),
            result: Err(error),
            server_delay: None,
        },
        Err(error) => Verdict::Done(Err(error)),
    }
}

/// Whether a 429 body says the quota is spent (`type` or `code` `insufficient_quota`).
pub(crate) fn is_quota_error(body: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    ["type", "code"]
        .iter()
        .any(|key| value["error"][key].as_str() == Some(INSUFFICIENT_QUOTA))
}

/// Transport failures and our own attempt timeout: refused, reset or dropped connections
/// (connect, request), a body cut off mid-way (reqwest reports a body that breaks while it is
/// read as a *decode* error: its decoder wraps every body read error, whatever the encoding),
/// and timeouts. A builder error (a bad URL or header) cannot heal and is not retried.
pub(crate) fn is_retryable_error(error: &OpenAIError) -> bool {
    match error {
        OpenAIError::Reqwest(error) => {
            !error.is_builder()
                && (error.is_connect()
                    || error.is_request()
                    || error.is_body()
                    || error.is_decode()
                    || error.is_timeout())
        }
        OpenAIError::Boxed(error) => error.is::<AttemptTimedOut>(),
        _ => false,
    }
}

/// The wait the server asked for, if any (see the module docs for the order).
pub(crate) fn server_delay(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let number = |name: &str| header(name).and_then(|v| v.trim().parse::<f64>().ok());
    let asked = number("retry-after-ms")
        .and_then(|ms| seconds(ms / 1000.0))
        .or_else(|| number("retry-after").and_then(seconds));
    asked
        .or_else(|| rate_limit_reset(headers))
        .filter(|delay| !delay.is_zero())
}

/// The largest `x-ratelimit-reset-*` among the limits that are exhausted (or say nothing).
fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    [
        (
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ),
        ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
    ]
    .into_iter()
    .filter(|(remaining, _)| {
        header(remaining)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .is_none_or(|left| left <= 0.0)
    })
    .filter_map(|(_, reset)| header(reset).and_then(parse_duration))
    .max()
}

/// Parses a Go-style duration (`12ms`, `6m0s`, `1.5s`, `1h2m`) or a plain number of seconds.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return seconds(secs);
    }
    let mut total = 0.0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * factor;
        rest = &rest[unit_end..];
    }
    seconds(total)
}

fn seconds(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 0.0)
        .then(|| Duration::try_from_secs_f64(secs).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn durations_parse_like_openai_writes_them() {
        assert_eq!(parse_duration("12ms"), Some(Duration::from_millis(12)));
        assert_eq!(parse_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(parse_duration("20"), Some(Duration::from_secs(20)));
        assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
        for bad in ["", "-1", "soon", "3x", "ms"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn server_delay_prefers_retry_after_ms_then_retry_after_then_resets() {
        let all = headers(&[
            ("retry-after-ms", "1500"),
            ("retry-after", "2"),
            ("x-ratelimit-reset-requests", "7s"),
        ]);
        assert_eq!(server_delay(&all), Some(Duration::from_millis(1500)));
        let seconds_only = headers(&[("retry-after", "2"), ("x-ratelimit-reset-requests", "7s")]);
        assert_eq!(server_delay(&seconds_only), Some(Duration::from_secs(2)));
        let resets = headers(&[
            ("x-ratelimit-reset-requests", "250ms"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]);
        assert_eq!(server_delay(&resets), Some(Duration::from_secs(360)));
        assert_eq!(server_delay(&HeaderMap::new()), None);
    }

    #[test]
    fn only_exhausted_limits_count() {
        let tokens_left = headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "250ms"),
            ("x-ratelimit-remaining-tokens", "5000"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]);
        assert_eq!(server_delay(&tokens_left), Some(Duration::from_millis(250)));
        let azure_oddity = headers(&[("retry-after", "-1"), ("x-ratelimit-reset-requests", "0")]);
        assert_eq!(
            server_delay(&azure_oddity),
            None,
            "zero and negative waits mean back off"
        );
    }

    #[test]
    fn backoff_is_jittered_below_a_doubling_cap() {
        let policy = RetryPolicy::new(5, Duration::from_secs(1));
        for retry in 0..8 {
            let cap = Duration::from_millis(200 * 2_u64.pow(retry)).min(Duration::from_secs(10));
            for _ in 0..20 {
                assert!(policy.backoff(retry) <= cap);
            }
        }
        let long = policy.delay(0, Some(Duration::from_secs(600)));
        assert_eq!(long, Duration::from_secs(60), "server waits are capped");
    }

    #[test]
    fn quota_errors_are_recognised_by_type_or_code() {
        assert!(is_quota_error(
            br#"{"error":{"message":"m","type":"insufficient_quota","code":null}}"#
        ));
        assert!(is_quota_error(
            br#"{"error":{"message":"m","type":"requests","code":"insufficient_quota"}}"#
        ));
        assert!(!is_quota_error(
            br#"{"error":{"message":"m","type":"requests","code":"rate_limit_exceeded"}}"#
        ));
        assert!(!is_quota_error(b"not json"));
    }
}
