//! Faults and latency on demand: what they are, how a rule or a request header asks for one,
//! and the OpenAI error each status fault answers with.
//!
//! Owns [`Fault`], [`Latency`] and the parsing of the two request headers
//! [`FAULT_HEADER`] and [`LATENCY_HEADER`]. How a fault changes a body (a dropped or truncated
//! stream, malformed JSON) is applied by the endpoint that writes the body (`respond`).

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::wire::ApiError;

/// Request header that asks for a fault: `x-mock-fault: rate_limit; retry_after_secs=2`.
pub const FAULT_HEADER: &str = "x-mock-fault";

/// Request header that asks for latency: `x-mock-latency: fixed_ms=200; ttft_ms=50; tokens_per_second=20`.
pub const LATENCY_HEADER: &str = "x-mock-latency";

/// The longest a `hang` lasts when it names no duration: long enough to trip any client
/// timeout, short enough that a forgotten server stops by itself.
const DEFAULT_HANG_MS: u64 = 300_000;

/// A fault the mock injects instead of (or into) a normal reply.
///
/// In rules files a fault is written with a `kind` and its fields:
/// `fault: { kind: rate_limit, retry_after_secs: 2 }`. In the [`FAULT_HEADER`] header it is
/// `kind; field=value; ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// 429 `rate_limit_exceeded` with `retry-after` and `x-ratelimit-*` headers.
    RateLimit {
        /// Seconds the client is told to wait (`retry-after`, `x-ratelimit-reset-*`).
        #[serde(default = "one")]
        retry_after_secs: u64,
    },
    /// 429 `insufficient_quota`: a billing error no retry will fix.
    InsufficientQuota,
    /// 500 `server_error`.
    ServerError,
    /// 503 `server_is_overloaded`.
    Overloaded,
    /// No answer at all for `ms` milliseconds (then a 504), so client timeouts fire.
    Hang {
        /// How long to hang; 300 000 ms when not given.
        #[serde(default)]
        ms: Option<u64>,
    },
    /// The connection is dropped after `after_chunks` body chunks (mid-stream for SSE, mid-body
    /// for plain replies).
    DropConnection {
        /// Chunks sent before the drop.
        #[serde(default)]
        after_chunks: usize,
    },
    /// An SSE stream that ends cleanly but early: `after_chunks` chunks, half of the next
    /// `data:` line, no `[DONE]`. For plain replies the JSON body is cut in half.
    TruncatedStream {
        /// Chunks sent before the cut.
        #[serde(default = "two")]
        after_chunks: usize,
    },
    /// A 200 whose body (or one SSE chunk) is not valid JSON.
    MalformedJson,
    /// An error that repeats the caller's key back, as several providers do
    /// (`Incorrect API key provided: sk-…`): for testing that a client never shows it.
    ///
    /// Without `after_chunks`, the answer is `status` (401 unless given) with the key in the
    /// error message. With `after_chunks`, a streamed request gets that many chunks and then an
    /// SSE `error` event (`data: {"error": {...}}`) carrying the key; a plain request gets the
    /// status answer.
    EchoKey {
        /// The status of the error answer: 401 `invalid_api_key`, or any other with
        /// `server_error`.
        #[serde(default = "unauthorized")]
        status: u16,
        /// Chunks streamed before the error event.
        #[serde(default)]
        after_chunks: Option<usize>,
        /// The key the request carried (`Authorization: Bearer …` or `api-key`), filled in by
        /// the server for each request; never read from rules or headers.
        #[serde(skip)]
        echoed: String,
    },
}

fn unauthorized() -> u16 {
    401
}

fn one() -> u64 {
    1
}

fn two() -> usize {
    2
}

impl Fault {
    /// The error answer of a status fault, or `None` for faults that shape the body instead.
    pub fn to_api_error(&self) -> Option<ApiError> {
        match self {
            Fault::RateLimit { retry_after_secs } => Some(rate_limit_error(*retry_after_secs)),
            Fault::InsufficientQuota => Some(
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "insufficient_quota",
                    "You exceeded your current quota, please check your plan and billing details.",
                )
                .with_code("insufficient_quota"),
            ),
            Fault::ServerError => Some(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "The server had an error while processing your request. Sorry about that!",
            )),
            Fault::Overloaded => Some(
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable_error",
                    "The engine is currently overloaded, please try again later.",
                )
                .with_code("server_is_overloaded"),
            ),
            Fault::EchoKey {
                after_chunks: None, ..
            } => Some(self.echo_key_error()),
            Fault::Hang { .. }
            | Fault::DropConnection { .. }
            | Fault::TruncatedStream { .. }
            | Fault::MalformedJson
            | Fault::EchoKey { .. } => None,
        }
    }

    /// How long a [`Fault::Hang`] lasts.
    pub fn hang_duration(&self) -> Option<Duration> {
        match self {
            Fault::Hang { ms } => Some(Duration::from_millis(ms.unwrap_or(DEFAULT_HANG_MS))),
            _ => None,
        }
    }

    /// The fault's kind, as written in rules and headers (`rate_limit`).
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::RateLimit { .. } => "rate_limit",
            Fault::InsufficientQuota => "insufficient_quota",
            Fault::ServerError => "server_error",
            Fault::Overloaded => "overloaded",
            Fault::Hang { .. } => "hang",
            Fault::DropConnection { .. } => "drop_connection",
            Fault::TruncatedStream { .. } => "truncated_stream",
            Fault::MalformedJson => "malformed_json",
            Fault::EchoKey { .. } => "echo_key",
        }
    }

    /// This fault with the key a request carried, for [`Fault::EchoKey`] (other faults are
    /// returned as they are).
    pub fn with_client_key(self, key: Option<&str>) -> Self {
        match self {
            Fault::EchoKey {
                status,
                after_chunks,
                ..
            } => Fault::EchoKey {
                status,
                after_chunks,
                echoed: key.unwrap_or_default().to_owned(),
            },
            other => other,
        }
    }

    /// The error of a [`Fault::EchoKey`], its message repeating the key; for other faults, a
    /// 500 `server_error`.
    pub fn echo_key_error(&self) -> ApiError {
        let (status, key) = match self {
            Fault::EchoKey { status, echoed, .. } => (*status, echoed.as_str()),
            _ => (500, ""),
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status == StatusCode::UNAUTHORIZED {
            ApiError::new(
                status,
                "invalid_request_error",
                format!(
                    "Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com/account/api-keys."
                ),
            )
            .with_code("invalid_api_key")
        } else {
            ApiError::new(
                status,
                "server_error",
                format!("The server had an error while processing the request with key {key}."),
            )
        }
    }

    /// Parses the [`FAULT_HEADER`] syntax: `kind; field=value; ...`.
    ///
    /// # Errors
    ///
    /// A message naming the unknown kind or field, or the value that is not a number.
    pub fn parse_header(value: &str) -> Result<Self, String> {
        let mut parts = value.split(';').map(str::trim);
        let kind = parts.next().unwrap_or_default();
        let mut fields = serde_json::Map::new();
        fields.insert("kind".to_owned(), kind.into());
        for part in parts.filter(|part| !part.is_empty()) {
            let (name, raw) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not `field=value`"))?;
            let number: u64 = raw
                .trim()
                .parse()
                .map_err(|_| format!("`{}` must be a whole number", name.trim()))?;
            fields.insert(name.trim().to_owned(), number.into());
        }
        serde_json::from_value(serde_json::Value::Object(fields)).map_err(|err| {
            format!("{err} (kinds: rate_limit, insufficient_quota, server_error, overloaded, hang, drop_connection, truncated_stream, malformed_json, echo_key)")
        })
    }
}

/// The 429 OpenAI sends when a rate limit is hit, with the headers clients back off on.
fn rate_limit_error(retry_after_secs: u64) -> ApiError {
    let reset = format!("{retry_after_secs}s");
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "requests",
        format!(
            "Rate limit reached for requests per min (RPM): Limit 60, Used 60, Requested 1. Please try again in {retry_after_secs}s."
        ),
    )
    .with_code("rate_limit_exceeded")
    .with_header("retry-after", retry_after_secs.to_string())
    .with_header("retry-after-ms", (retry_after_secs * 1000).to_string())
    .with_header("x-ratelimit-limit-requests", "60")
    .with_header("x-ratelimit-remaining-requests", "0")
    .with_header("x-ratelimit-reset-requests", reset.clone())
    .with_header("x-ratelimit-limit-tokens", "150000")
    .with_header("x-ratelimit-remaining-tokens", "0")
    .with_header("x-ratelimit-reset-tokens", reset)
}

/// Simulated latency: a fixed delay, random jitter on top, time to first token and
/// tokens-per-second pacing for streams. All zero by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Delay before any answer, in milliseconds.
    #[serde(default)]
    pub fixed_ms: u64,
    /// Up to this many milliseconds more, uniformly at random.
    #[serde(default)]
    pub jitter_ms: u64,
    /// Streams only: delay before the first content chunk, after `fixed_ms`.
    #[serde(default)]
    pub ttft_ms: u64,
    /// Streams only: content chunks are paced at this rate (0 = as fast as possible).
    #[serde(default)]
    pub tokens_per_second: f64,
}

impl Latency {
    /// A latency of `ms` fixed milliseconds and nothing else.
    pub fn fixed(ms: u64) -> Self {
        Self {
            fixed_ms: ms,
            ..Self::default()
        }
    }

    /// The delay before answering: `fixed_ms` plus a random share of `jitter_ms`.
    pub fn initial_delay(&self) -> Duration {
        let jitter = if self.jitter_ms > 0 {
            rand::random_range(0..=self.jitter_ms)
        } else {
            0
        };
        Duration::from_millis(self.fixed_ms + jitter)
    }

    /// The pause between two streamed content chunks.
    pub fn token_interval(&self) -> Option<Duration> {
        (self.tokens_per_second > 0.0)
            .then(|| Duration::from_secs_f64(1.0 / self.tokens_per_second))
    }

    /// Whether this latency delays anything.
    pub fn is_zero(&self) -> bool {
        self.fixed_ms == 0
            && self.jitter_ms == 0
            && self.ttft_ms == 0
            && self.tokens_per_second <= 0.0
    }

    /// Parses the [`LATENCY_HEADER`] syntax: `field=value; ...`.
    ///
    /// # Errors
    ///
    /// A message naming the unknown field or the value that is not a number.
    pub fn parse_header(value: &str) -> Result<Self, String> {
        let mut fields = serde_json::Map::new();
        for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, raw) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not `field=value`"))?;
            let number: f64 = raw
                .trim()
                .parse()
                .map_err(|_| format!("`{}` must be a number", name.trim()))?;
            let number = if name.trim() == "tokens_per_second" {
                serde_json::Value::from(number)
            } else if number >= 0.0 && number.fract() == 0.0 {
                serde_json::Value::from(number as u64)
            } else {
                return Err(format!("`{}` must be a whole number", name.trim()));
            };
            fields.insert(name.trim().to_owned(), number);
        }
        serde_json::from_value(serde_json::Value::Object(fields)).map_err(|err| {
            format!("{err} (fields: fixed_ms, jitter_ms, ttft_ms, tokens_per_second)")
        })
    }
}

/// The fault and latency a request asks for in its headers.
///
/// # Errors
///
/// A 400 naming the header when one of them cannot be parsed.
pub fn from_headers(headers: &HeaderMap) -> Result<(Option<Fault>, Option<Latency>), ApiError> {
    let header = |name: &str| -> Result<Option<&str>, ApiError> {
        headers
            .get(name)
            .map(|value| {
                value.to_str().map_err(|_| {
                    ApiError::invalid(name, format!("header `{name}` is not ASCII text"))
                })
            })
            .transpose()
    };
    let fault = header(FAULT_HEADER)?
        .map(|value| {
            Fault::parse_header(value).map_err(|message| {
                ApiError::invalid(FAULT_HEADER, format!("header `{FAULT_HEADER}`: {message}"))
            })
        })
        .transpose()?;
    let latency = header(LATENCY_HEADER)?
        .map(|value| {
            Latency::parse_header(value).map_err(|message| {
                ApiError::invalid(
                    LATENCY_HEADER,
                    format!("header `{LATENCY_HEADER}`: {message}"),
                )
            })
        })
        .transpose()?;
    Ok((fault, latency))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_header_parses_kind_and_fields() {
        assert_eq!(
            Fault::parse_header("rate_limit; retry_after_secs=3").unwrap(),
            Fault::RateLimit {
                retry_after_secs: 3
            }
        );
        assert_eq!(
            Fault::parse_header("drop_connection;after_chunks=1").unwrap(),
            Fault::DropConnection { after_chunks: 1 }
        );
        assert_eq!(
            Fault::parse_header("rate_limit").unwrap(),
            Fault::RateLimit {
                retry_after_secs: 1
            }
        );
    }

    #[test]
    fn fault_header_names_unknown_kind_and_field() {
        let err = Fault::parse_header("explode").unwrap_err();
        assert!(err.contains("explode"), "{err}");
        let err = Fault::parse_header("hang; seconds=3").unwrap_err();
        assert!(err.contains("seconds"), "{err}");
    }

    #[test]
    fn echo_key_repeats_the_request_key_in_its_error() {
        let fault = Fault::parse_header("echo_key").unwrap();
        assert_eq!(fault.kind(), "echo_key");
        let error = fault
            .with_client_key(Some("sk-echo-me"))
            .to_api_error()
            .unwrap();
        assert_eq!(error.status, StatusCode::UNAUTHORIZED);
        assert!(error.message.contains("sk-echo-me"), "{}", error.message);
        let error = Fault::parse_header("echo_key; status=500")
            .unwrap()
            .with_client_key(Some("sk-echo-me"))
            .to_api_error()
            .unwrap();
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(error.message.contains("sk-echo-me"), "{}", error.message);
        let streamed = Fault::parse_header("echo_key; after_chunks=1").unwrap();
        assert_eq!(streamed.to_api_error(), None, "shapes the stream instead");
    }

    #[test]
    fn rate_limit_carries_retry_headers() {
        let error = Fault::RateLimit {
            retry_after_secs: 2,
        }
        .to_api_error()
        .unwrap();
        assert_eq!(error.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(error.headers.contains(&("retry-after", "2".to_owned())));
        assert!(
            error
                .headers
                .contains(&("x-ratelimit-reset-requests", "2s".to_owned()))
        );
    }

    #[test]
    fn latency_header_parses_all_fields() {
        let latency =
            Latency::parse_header("fixed_ms=10; jitter_ms=5; ttft_ms=7; tokens_per_second=2.5")
                .unwrap();
        assert_eq!(latency.fixed_ms, 10);
        assert_eq!(latency.jitter_ms, 5);
        assert_eq!(latency.ttft_ms, 7);
        assert_eq!(latency.token_interval(), Some(Duration::from_millis(400)));
        assert!(Latency::parse_header("fixed=3").is_err());
    }
}
