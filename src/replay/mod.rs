//! Replay: prove, offline and without a key, that a logged chain still gives the outputs it
//! gave when it was logged.
//!
//! At `log`, [`record_cases`] runs each case (the input example, and the rows of
//! `log --examples`) through the mock in record mode in front of the real endpoint, so every
//! LLM exchange lands in the mock's cassette format, secrets scrubbed. The artifact then
//! holds, under `cassettes/` and hashed in MLmodel like every other file:
//!
//! ```text
//! cassettes/cases.jsonl      one line per case: {"case", "input", "output", "cassette"}
//! cassettes/case-<n>.yaml    the mock's cassette of case n (format_version 1)
//! ```
//!
//! [`replay_cases`] rebuilds the chain once per case with its LLM calls answered by an
//! in-process mock replaying that case's cassette (no network, no key), and compares each
//! output with the logged one byte for byte (as canonical JSON text). A difference is shown
//! as a line diff of the pretty-printed outputs; when the chain asked the LLM something the
//! cassette does not hold, the first such request is named with how it differs from the
//! closest recorded one ([`FirstMiss`]).
//!
//! [`replay_trace`] replays one production prediction instead: the trace's root span gives
//! the input and output, its `CHAT_MODEL` spans (the exact request body sent, the response
//! received) become the cassette ([`case_from_trace`]).
//!
//! Parts: `cases` (the `cases.jsonl` format), `record` (at log time), `check` (the replay and
//! its [`ReplayReport`]), `trace` (a trace as a case), `error`.

mod cases;
mod check;
mod error;
mod record;
mod trace;

pub use cases::{CASE_FILE_PREFIX, CASES_FILE, ReplayCase, read_cases, read_examples};
pub use check::{
    CallRecord, CaseOutcome, ChangedAt, FirstMiss, ReplayReport, replay_cases, replay_trace,
};
pub use error::ReplayError;
pub use record::{RecordedCases, record_cases};
pub use trace::{TraceCase, case_from_trace};
