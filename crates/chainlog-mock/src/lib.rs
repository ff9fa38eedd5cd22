//! The mock OpenAI server: `chainlog mock` as a process, [`MockServer`] inside a test.
//!
//! It speaks OpenAI's wire format — `/v1/chat/completions` (plain and SSE, tool calls,
//! `json_schema`), `/v1/responses`, `/v1/embeddings`, `/v1/models` — so any client in any
//! language points its base URL at it. Replies come, in this order, from a fault asked for in
//! the [`FAULT_HEADER`] header, from [rules](RuleSet), from a cassette (replayed offline or
//! recorded from a real upstream with secrets scrubbed), or from a deterministic default.
//! Every request is kept in a journal bounded by entries and bytes ([`MockServer::requests`],
//! `GET /_mock/requests`). A [`Profile`] makes it play a real server's quirks (llama.cpp's).
//!
//! The mock knows nothing of chains.
//!
//! Parts: `server` (routes and the reply pipeline), `config` (setup and start-up errors),
//! `wire` (OpenAI's error body, request checks), `chat`, `responses` and `catalog` (the
//! endpoints), `reply` (what a source answers), `rules`, `cassette`, `fault` (faults and
//! latency), `respond` (bodies and streams), `synth` and `schema_fill` (the default),
//! `journal`, `profile` (real servers' quirks).

mod cassette;
mod catalog;
mod chat;
mod config;
mod fault;
mod journal;
mod profile;
mod reply;
mod respond;
mod responses;
mod rules;
mod schema_fill;
mod server;
mod synth;
mod wire;

pub use cassette::{CassetteError, CassetteMiss, Closest, Difference, explain_miss};
pub use config::{CassetteMode, MockConfig, MockError};
pub use fault::{FAULT_HEADER, Fault, LATENCY_HEADER, Latency};
pub use journal::{DEFAULT_JOURNAL_BODY_BYTES, JournalEntry};
pub use profile::{Profile, UnknownProfile};
pub use rules::{RuleSet, RulesError};
pub use server::{MockServer, serve};
pub use synth::default_text_reply;
