//! [`ServeError`]: every way a scoring request fails, and the HTTP answer each one gets.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{chain::ChainError, llm::LlmError};

/// Why a scoring request failed. Client faults carry their own message; internal and
/// provider faults answer with a short generic one (the detail goes to the log only).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The request is malformed or its input does not fit the chain (400).
    #[error("{0}")]
    BadRequest(String),
    /// The Content-Type is not `application/json` (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body is larger than [`ServeLimits::max_body_bytes`](super::ServeLimits) (413).
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A bearer token is required and was missing or wrong (401).
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// The body did not arrive within the body timeout (408).
    #[error("the request body did not arrive within {} ms", .after.as_millis())]
    RequestTimeout {
        /// The timeout.
        after: std::time::Duration,
    },
    /// Every request slot is taken (503).
    #[error("the server is busy; retry later")]
    Overloaded,
    /// The LLM provider failed (502); the source stays in the log.
    #[error("the LLM provider failed")]
    Provider(#[source] ChainError),
    /// The provider's reply was not a whole answer (502): cut off, filtered, ended with an
    /// error, or empty. The message is chainlog's own (finish reason, token limit, length),
    /// never the provider's text, so it is shown.
    #[error("{0}")]
    IncompleteReply(#[source] ChainError),
    /// Anything else that went wrong inside (500); the source stays in the log.
    #[error("internal error")]
    Internal(#[source] ChainError),
    /// The input schema could not be compiled into a validator.
    #[error("the chain's input schema is invalid: {0}")]
    Schema(String),
}

impl ServeError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Provider(_) | Self::IncompleteReply(_) => StatusCode::BAD_GATEWAY,
            Self::Internal(_) | Self::Schema(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// MLflow's `error_code` for this error.
    fn error_code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) | Self::UnsupportedMediaType(_) | Self::RequestTimeout { .. } => {
                "BAD_REQUEST"
            }
            Self::PayloadTooLarge { .. } => "RESOURCE_LIMIT_EXCEEDED",
            Self::Unauthorized => "UNAUTHENTICATED",
            Self::Overloaded => "TEMPORARILY_UNAVAILABLE",
            // Only a failure that may pass invites a retry: a provider's refusal (a bad key, a
            // content policy, a malformed request) or a reply that is not a whole answer comes
            // back the same on every retry.
            Self::Provider(ChainError::Llm(llm)) if llm.is_retryable() => "TEMPORARILY_UNAVAILABLE",
            Self::Provider(_) | Self::IncompleteReply(_) | Self::Internal(_) | Self::Schema(_) => {
                "INTERNAL_ERROR"
            }
        }
    }

    /// MLflow's error body: `{"error_code": ..., "message": ...}`. The message is scrubbed
    /// ([`crate::secret::scrub`]): a client's input error may quote text from outside.
    pub fn body(&self) -> serde_json::Value {
        let message = match self {
            // The schema problem is a server fault too: say nothing about it.
            Self::Schema(_) => "internal error".to_owned(),
            other => crate::secret::scrub(&other.to_string()),
        };
        json!({ "error_code": self.error_code(), "message": message })
    }

    /// A chain failure: the input's fault (400), the provider's (502) or ours (500).
    pub(super) fn from_chain(err: ChainError, row: Option<usize>) -> Self {
        match err {
            ChainError::Input { .. } => {
                let at = row.map(|row| format!("row {row}: ")).unwrap_or_default();
                Self::BadRequest(format!("{at}{err}"))
            }
            ChainError::Llm(LlmError::Incomplete { .. }) => Self::IncompleteReply(err),
            ChainError::Llm(_) => Self::Provider(err),
            other => Self::Internal(other),
        }
    }
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status = self.status();
        // Overloads are counted and logged once per interval by the guard, not per request.
        if status.is_server_error() && !matches!(self, Self::Overloaded) {
            tracing::error!(error = %self, detail = ?std::error::Error::source(&self).map(ToString::to_string), "scoring request failed");
        }
        (status, Json(self.body())).into_response()
    }
}
