//! The request journal: every request the mock received, what answered it and with which
//! status, so tests assert on what a client sent.
//!
//! Owns [`Journal`] (a bounded ring: the oldest entries go first, so memory stays flat under
//! load) and [`JournalEntry`]. Headers are never kept, so no key reaches the journal. It also
//! counts requests in flight ([`Journal::begin`], [`Journal::peak_in_flight`]), so a test can
//! check a client's concurrency limit from the server's side.

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

/// One request as the mock saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JournalEntry {
    /// Arrival order, from 1; gaps at the front mean older entries were dropped.
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// The body as JSON, or as a JSON string when it was not JSON, or null when empty.
    pub body: Value,
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
    answered_by: String,
    status: u16,
    in_flight: usize,
}

/// A bounded, thread-safe log of requests.
#[derive(Debug)]
pub struct Journal {
    capacity: usize,
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
}

impl Journal {
    /// A journal keeping at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
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
        if state.entries.len() == self.capacity {
            state.entries.pop_front();
        }
        state.entries.push_back(RawEntry {
            seq,
            method,
            path: path.to_owned(),
            // A copy: the body axum hands over is a view into hyper's 8 KiB connection read
            // buffer, and keeping the view would keep the whole buffer alive per entry.
            body: Bytes::copy_from_slice(&body),
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
                        entry.answered_by.clone(),
                        entry.status,
                        entry.in_flight,
                    )
                })
                .collect()
        };
        raw.into_iter()
            .map(
                |(seq, method, path, body, answered_by, status, in_flight)| JournalEntry {
                    seq,
                    method: method.to_owned(),
                    path,
                    body: body_value(&body),
                    answered_by,
                    status,
                    in_flight,
                },
            )
            .collect()
    }

    /// Forgets every entry (sequence numbers keep counting) and resets the peak in flight to
    /// the requests in flight now.
    pub fn clear(&self) {
        self.lock().entries.clear();
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
