//! The request journal: every request the mock received, what answered it and with which
//! status, so tests assert on what a client sent.
//!
//! Owns [`Journal`] (a ring bounded by entries and by bytes: the oldest entries go first, and
//! a body over [`DEFAULT_JOURNAL_BODY_BYTES`] is kept only up to it, marked truncated, so
//! memory stays flat under load whatever the bodies' size) and [`JournalEntry`]. Headers are
//! never kept, so no key reaches the journal. It also counts requests in flight
//! ([`Journal::begin`], [`Journal::peak_in_flight`]), so a test can check a client's
//! concurrency limit from the server's side.

use std::{
    collections::VecDeque,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

/// How many entries the journal keeps by default.
pub const DEFAULT_JOURNAL_CAPACITY: usize = 10_000;

/// How many bytes of one request body the journal keeps by default (256 KiB).
pub const DEFAULT_JOURNAL_BODY_BYTES: usize = 256 * 1024;

/// How many body bytes the journal keeps in all (64 MiB); older entries go first.
const JOURNAL_TOTAL_BYTES: usize = 64 * 1024 * 1024;

/// One request as the mock saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JournalEntry {
    /// Arrival order, from 1; gaps at the front mean older entries were dropped.
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// The body as JSON, or as a JSON string when it was not JSON (or was truncated: then the
    /// kept prefix), or null when empty.
    pub body: Value,
    /// The body's size as received, in bytes.
    pub body_bytes: usize,
    /// Whether only the first bytes of the body were kept (see [`JournalEntry::body_bytes`]
    /// for the whole size).
    pub body_truncated: bool,
    /// What answered: `rule:<name>#<step>`, `cassette:#<n>`, `cassette:recorded#<n>`,
    /// `default`, `header:<fault>`, `error:<status>`.
    pub answered_by: String,
    /// Status of the answer.
    pub status: u16,
    /// Requests the mock was answering when this one was journaled, itself included.
    pub in_flight: usize,
}

/// What the journal stores: the raw body, parsed only when read, keeps the hot path cheap.
#[derive(Debug)]
struct RawEntry {
    seq: u64,
    method: &'static str,
    path: String,
    body: Bytes,
    /// The size as received (the kept `body` may be shorter).
    body_bytes: usize,
    answered_by: String,
    status: u16,
    in_flight: usize,
}

/// A bounded, thread-safe log of requests.
#[derive(Debug)]
pub struct Journal {
    capacity: usize,
    /// Bytes of one body kept.
    max_body_bytes: usize,
    state: Mutex<JournalState>,
    /// Requests being answered now (between [`Journal::begin`] and the guard's drop).
    in_flight: AtomicUsize,
    /// The most there have been at once since start (or the last [`Journal::clear`]).
    peak_in_flight: AtomicUsize,
}

/// A request being answered; counted in flight until dropped.
#[derive(Debug)]
pub struct InFlight<'a> {
    journal: &'a Journal,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.journal.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct JournalState {
    next_seq: u64,
    entries: VecDeque<RawEntry>,
    /// Kept body bytes of every entry.
    bytes: usize,
}

impl Journal {
    /// A journal keeping at most `capacity` entries (at least one) and
    /// [`DEFAULT_JOURNAL_BODY_BYTES`] of each body.
    pub fn new(capacity: usize) -> Self {
        Self::with_body_limit(capacity, DEFAULT_JOURNAL_BODY_BYTES)
    }

    /// A journal keeping at most `capacity` entries (at least one), `max_body_bytes` of each
    /// body, and 64 MiB of bodies in all.
    pub fn with_body_limit(capacity: usize, max_body_bytes: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            max_body_bytes,
            state: Mutex::new(JournalState::default()),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
        }
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub fn begin(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        InFlight { journal: self }
    }

    /// The most requests in flight at once since start or the last [`clear`](Self::clear).
    pub fn peak_in_flight(&self) -> usize {
        self.peak_in_flight.load(Ordering::Relaxed)
    }

    /// Appends a request and returns its sequence number.
    pub fn record(
        &self,
        method: &'static str,
        path: &str,
        body: Bytes,
        answered_by: String,
        status: u16,
    ) -> u64 {
        let mut state = self.lock();
        state.next_seq += 1;
        let seq = state.next_seq;
        // A copy of at most `max_body_bytes`: the body axum hands over is a view into hyper's
        // connection read buffer (or the whole body), and keeping the view would keep all of
        // it alive per entry.
        let kept = Bytes::copy_from_slice(&body[..body.len().min(self.max_body_bytes)]);
        while state.entries.len() >= self.capacity
            || (!state.entries.is_empty() && state.bytes + kept.len() > JOURNAL_TOTAL_BYTES)
        {
            let Some(old) = state.entries.pop_front() else {
                break;
            };
            state.bytes -= old.body.len();
        }
        state.bytes += kept.len();
        state.entries.push_back(RawEntry {
            seq,
            method,
            path: path.to_owned(),
            body: kept,
            body_bytes: body.len(),
            answered_by,
            status,
            in_flight: self.in_flight.load(Ordering::Relaxed),
        });
        seq
    }

    /// Every kept entry, oldest first.
    pub fn entries(&self) -> Vec<JournalEntry> {
        let raw: Vec<_> = {
            let state = self.lock();
            state
                .entries
                .iter()
                .map(|entry| {
                    (
                        entry.seq,
                        entry.method,
                        entry.path.clone(),
                        entry.body.clone(),
                        entry.body_bytes,
                        entry.answered_by.clone(),
                        entry.status,
                        entry.in_flight,
                    )
                })
                .collect()
        };
        raw.into_iter()
            .map(
                |(seq, method, path, body, body_bytes, answered_by, status, in_flight)| {
                    JournalEntry {
                        seq,
                        method: method.to_owned(),
                        path,
                        body_truncated: body.len() < body_bytes,
                        body: if body.len() < body_bytes {
                            Value::String(String::from_utf8_lossy(&body).into_owned())
                        } else {
                            body_value(&body)
                        },
                        body_bytes,
                        answered_by,
                        status,
                        in_flight,
                    }
                },
            )
            .collect()
    }

    /// Forgets every entry (sequence numbers keep counting) and resets the peak in flight to
    /// the requests in flight now.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.entries.clear();
        state.bytes = 0;
        self.peak_in_flight
            .store(self.in_flight.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JournalState> {
        // A panic while holding this lock cannot leave the ring inconsistent (each update is
        // one push or pop), so a poisoned lock is still safe to use.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn body_value(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_keeps_the_newest_entries_up_to_capacity() {
        let journal = Journal::new(2);
        for n in 0..3 {
            journal.record(
                "POST",
                "/v1/x",
                Bytes::from(format!("{{\"n\":{n}}}")),
                "default".into(),
                200,
            );
        }
        let entries = journal.entries();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].seq, 2);
        assert_eq!(entries[1].body["n"], 2);
        journal.clear();
        assert!(journal.entries().is_empty());
    }

    /// Memory is bounded by bytes: a body over the per-body limit keeps only its first bytes,
    /// marked truncated with its whole size; smaller bodies are whole JSON.
    #[test]
    fn big_bodies_are_truncated_and_marked() {
        let journal = Journal::with_body_limit(10, 16);
        let big = format!("{{\"text\":\"{}\"}}", "x".repeat(9_000));
        for _ in 0..40 {
            journal.record(
                "POST",
                "/v1/x",
                Bytes::from(big.clone()),
                "default".into(),
                200,
            );
        }
        journal.record(
            "POST",
            "/v1/x",
            Bytes::from_static(b"{\"n\":1}"),
            "default".into(),
            200,
        );
        let entries = journal.entries();
        assert_eq!(entries.len(), 10);
        let first = &entries[0];
        assert!(first.body_truncated);
        assert_eq!(first.body_bytes, big.len());
        assert_eq!(first.body, Value::String(big[..16].to_owned()));
        let last = entries.last().unwrap();
        assert!(!last.body_truncated);
        assert_eq!(last.body["n"], 1);
        assert!(journal.lock().bytes <= 10 * 16);
    }

    #[test]
    fn journal_counts_requests_in_flight_and_their_peak() {
        let journal = Journal::new(4);
        let first = journal.begin();
        let second = journal.begin();
        journal.record("POST", "/v1/x", Bytes::new(), "default".into(), 200);
        drop(first);
        drop(second);
        let third = journal.begin();
        journal.record("POST", "/v1/x", Bytes::new(), "default".into(), 200);
        let counts: Vec<_> = journal.entries().iter().map(|e| e.in_flight).collect();
        assert_eq!(counts, [2, 1]);
        assert_eq!(journal.peak_in_flight(), 2);
        journal.clear();
        assert_eq!(journal.peak_in_flight(), 1);
        drop(third);
    }

    #[test]
    fn non_json_bodies_are_kept_as_text() {
        let journal = Journal::new(4);
        journal.record(
            "POST",
            "/v1/x",
            Bytes::from_static(b"{oops"),
            "error:400".into(),
            400,
        );
        assert_eq!(journal.entries()[0].body, Value::String("{oops".into()));
    }
}
