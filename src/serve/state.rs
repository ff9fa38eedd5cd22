//! [`ServeState`]: what the server holds — the built chain, its input check, the limits
//! and an optional bearer token.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::ServeError;
use crate::chain::{BuiltChain, ChainEntry, ChainError};

/// Checks one row of input against the chain's input schema, naming every field at fault
/// (the shape of [`ChainEntry::check_input`]).
pub type InputCheck = Arc<dyn Fn(&Value) -> Result<(), ChainError> + Send + Sync>;

/// The server's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Largest request body accepted; beyond it the answer is 413.
    pub max_body_bytes: usize,
    /// Requests handled at once; one more is refused with 503 rather than queued, so a
    /// burst cannot pile up memory or latency without bound.
    pub max_in_flight: usize,
    /// Rows of one request run at once.
    pub row_concurrency: usize,
    /// Longest wait for a whole request body; a slower body is answered 408. The body is
    /// read before a request takes a slot, so a slow client holds no slot.
    pub body_timeout: Duration,
    /// Refused requests (503) are logged as one WARN line per interval, with their count.
    pub overload_log_interval: Duration,
    /// Longest wait for a request's headers (from its first byte); a client that sends them
    /// slower is disconnected, so idle half-open connections cannot pile up.
    pub header_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            max_in_flight: 64,
            row_concurrency: 8,
            body_timeout: Duration::from_secs(30),
            overload_log_interval: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
        }
    }
}

/// Everything the scoring server needs; cheap to clone (one shared allocation).
#[derive(Clone)]
pub struct ServeState {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) chain: BuiltChain,
    pub(super) check: InputCheck,
    pub(super) limits: ServeLimits,
    /// `None`: no authentication (the default, for a server bound to loopback).
    pub(super) token: Option<SecretString>,
    /// One permit per request in flight; `try_acquire` failing is the 503.
    pub(super) slots: Arc<Semaphore>,
    /// When the last overload line was written, and the 503s since.
    pub(super) overloads: Mutex<(Option<Instant>, u64)>,
}

impl std::fmt::Debug for ServeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeState")
            .field("chain", &self.inner.chain)
            .field("limits", &self.inner.limits)
            .field("token", &self.inner.token.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl ServeState {
    /// A state serving `chain`, checking each row with `check`, with default limits.
    pub fn new(chain: BuiltChain, check: InputCheck) -> Self {
        Self::build(chain, check, ServeLimits::default(), None)
    }

    /// A state serving `chain` whose rows are checked against `entry`'s input schema.
    pub fn for_entry(chain: BuiltChain, entry: &ChainEntry) -> Result<Self, ServeError> {
        Ok(Self::new(
            chain,
            schema_check(entry.name(), entry.input_schema())?,
        ))
    }

    /// The same state with these limits (each at least 1).
    pub fn with_limits(self, limits: ServeLimits) -> Self {
        let inner = self.into_inner();
        Self::build(inner.0, inner.1, limits, inner.3)
    }

    /// The same state requiring `Authorization: Bearer <token>` on `/invocations`.
    pub fn with_token(self, token: SecretString) -> Self {
        let inner = self.into_inner();
        Self::build(inner.0, inner.1, inner.2, Some(token))
    }

    /// The limits in force.
    pub fn limits(&self) -> ServeLimits {
        self.inner.limits
    }

    fn build(
        chain: BuiltChain,
        check: InputCheck,
        limits: ServeLimits,
        token: Option<SecretString>,
    ) -> Self {
        let limits = ServeLimits {
            max_body_bytes: limits.max_body_bytes.max(1),
            max_in_flight: limits.max_in_flight.max(1),
            row_concurrency: limits.row_concurrency.max(1),
            ..limits
        };
        Self {
            inner: Arc::new(Inner {
                chain,
                check,
                limits,
                token,
                slots: Arc::new(Semaphore::new(limits.max_in_flight)),
                overloads: Mutex::new((None, 0)),
            }),
        }
    }

    fn into_inner(self) -> (BuiltChain, InputCheck, ServeLimits, Option<SecretString>) {
        let inner = &self.inner;
        (
            inner.chain.clone(),
            Arc::clone(&inner.check),
            inner.limits,
            inner.token.clone(),
        )
    }

    /// Counts one refused request; writes the WARN line (with the count since the last one)
    /// when none was written within the interval, so a flood of 503s logs a bounded number of
    /// lines.
    pub(super) fn note_overload(&self) {
        let Ok(mut overloads) = self.inner.overloads.lock() else {
            return;
        };
        let (last, count) = &mut *overloads;
        *count += 1;
        let now = Instant::now();
        if last.is_none_or(|at| now.duration_since(at) >= self.inner.limits.overload_log_interval) {
            tracing::warn!(
                refused = *count,
                max_in_flight = self.inner.limits.max_in_flight,
                "every request slot was taken; requests refused with 503 since the last report"
            );
            *last = Some(now);
            *count = 0;
        }
    }

    /// Whether `header` (the `Authorization` value) carries the right token; true when
    /// no token is required.
    pub(super) fn authorized(&self, header: Option<&[u8]>) -> bool {
        let Some(token) = &self.inner.token else {
            return true;
        };
        let Some(given) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        constant_time_eq(given, token.expose_secret().as_bytes())
    }
}

/// Compares without an early exit, so timing does not reveal how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An [`InputCheck`] from a JSON schema, with [`ChainEntry::check_input`]'s messages.
///
/// # Errors
///
/// [`ServeError::Schema`] when the schema does not compile.
pub fn schema_check(chain: &str, schema: &Value) -> Result<InputCheck, ServeError> {
    let validator =
        jsonschema::validator_for(schema).map_err(|err| ServeError::Schema(err.to_string()))?;
    let chain = chain.to_owned();
    Ok(Arc::new(move |input: &Value| {
        crate::chain::check_against(&chain, &validator, input)
    }))
}
