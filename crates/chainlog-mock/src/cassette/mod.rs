//! Cassettes: recorded request/response pairs that let the mock answer like a real
//! OpenAI-compatible upstream, with no network.
//!
//! Owns the YAML file format, loading it (errors name the file, the line and what is wrong),
//! the match key ([`normalize_request`]), finding the recorded answer to a request (a miss names
//! the closest interaction and what differs), recording (secrets scrubbed, saved atomically)
//! and [`send`], the call to the real upstream in record mode. It does not own serving:
//! turning a [`RecordedResponse`] into HTTP bytes, and choosing between rules, a cassette and
//! the default answer, belong to the rest of the mock.
//!
//! ```yaml
//! format_version: 1
//! interactions:
//!   - request:                       # the match key: method, path and normalised body
//!       method: POST
//!       path: /v1/chat/completions
//!       body: { messages: [{ content: hi, role: user }], model: gpt-4o-mini, stream: true }
//!     response:
//!       status: 200
//!       headers: { content-type: text/event-stream, x-ratelimit-remaining-requests: "99" }
//!       sse:                         # exactly one of `body` (JSON), `sse` or `text`
//!         - data: '{"choices":[{"index":0,"delta":{"content":"hello"}}]}'
//!         - { event: null, data: "[DONE]" }
//!   - request: { method: GET, path: /v1/models }     # no body
//!     response:
//!       status: 200
//!       headers: { content-type: application/json }
//!       body: { object: list, data: [] }
//! ```
//!
//! Matching ignores headers, key order, null values and every body key that does not decide
//! the answer (`user`, `metadata`, `store`, ...). Request headers are never recorded; response
//! headers are kept only from an allow-list. Interactions are numbered from 0, in file order.
//! Several interactions may share a key: identical requests recorded in turn (a 429 and its
//! retried 200, a repeated call) are answered in that order on replay, the last one again once
//! they run out; recording over a cassette replaces its interactions of a key in the same
//! order.
//!
//! Parts: `format` (the file's types, loading and saving, [`CassetteError`]), `key` (the match
//! key and [`Cassette::lookup`]), `record` ([`Cassette::record`]: secrets scrubbed, headers
//! allow-listed) and `upstream` ([`send`]).
//!
//! [`normalize_request`]: key::normalize_request

mod format;
mod key;
mod record;
#[cfg(test)]
mod test_helpers;
mod upstream;

use std::path::Path;

pub use format::CassetteError;
pub(crate) use format::{Cassette, RecordedBody, RecordedResponse};
pub use key::{CassetteMiss, Closest, Difference};
pub(crate) use record::kept_headers;
pub(crate) use upstream::{Upstream, events_of, send};

/// Why the cassette `file` holds no answer to a request (`method`, `path`, JSON `body`): the
/// closest recorded interaction and what differs, values included; `None` when it holds one.
/// For tools that explain a replay that went astray.
///
/// # Errors
///
/// Those of loading the file ([`CassetteError`]).
pub fn explain_miss(
    file: &Path,
    method: &str,
    path: &str,
    body: &serde_json::Value,
) -> Result<Option<CassetteMiss>, CassetteError> {
    Ok(Cassette::load(file)?.lookup(method, path, body).err())
}
