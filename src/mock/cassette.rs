//! Cassettes: recorded request/response pairs that let the mock answer like a real
//! OpenAI-compatible upstream, with no network.
//!
//! Owns the YAML file format, loading it (errors name the file, the line and what is wrong),
//! the match key ([`normalize_request`]), finding the recorded answer to a request (a miss names
//! the closest interaction and what differs), recording (secrets scrubbed, saved atomically)
//! and [`forward`], the call to the real upstream in record mode. It does not own serving:
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

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt, fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The only `format_version` this build reads and writes.
const FORMAT_VERSION: u64 = 1;
/// What replaces a secret in a recorded cassette.
const REDACTED: &str = "[REDACTED]";
/// Secrets shorter than this are not scrubbed (they would redact ordinary words).
const MIN_SECRET_CHARS: usize = 8;
/// Body keys of the OpenAI endpoints that decide the answer; all others are dropped from the key.
const MATCH_KEYS: &str = "model messages tools tool_choice parallel_tool_calls response_format \
    temperature top_p n stop max_tokens max_completion_tokens seed presence_penalty \
    frequency_penalty logit_bias logprobs top_logprobs stream stream_options input instructions \
    text max_output_tokens reasoning previous_response_id prompt suffix encoding_format dimensions";
/// Path endings whose bodies are reduced to [`MATCH_KEYS`].
const KNOWN_ENDPOINTS: &[&str] = &["/completions", "/responses", "/embeddings"];
/// Keys dropped from the bodies of other endpoints (which otherwise keep every key).
const IGNORED_KEYS: &str = "user metadata store service_tier safety_identifier";
/// Headers never recorded, whatever the allow-list says.
const DENIED_HEADERS: &str =
    "authorization api-key openai-organization openai-project set-cookie cookie";
/// Response headers recorded, besides `x-ratelimit-*`.
const KEPT_HEADERS: &str =
    "content-type retry-after retry-after-ms openai-processing-ms x-request-id";
/// Response headers that no longer describe a buffered, re-encoded body.
const HOP_HEADERS: &str = "content-length transfer-encoding connection keep-alive content-encoding";

/// Whether the whitespace-separated `list` holds `word`.
fn listed(list: &str, word: &str) -> bool {
    list.split_whitespace().any(|w| w == word)
}

/// A cassette that could not be read, parsed, written, or recorded from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum CassetteError {
    /// The file could not be read (a missing file included).
    #[error("failed to read cassette `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is not a valid cassette.
    #[error("invalid cassette `{path}` at line {line}, column {column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the fault (0 when unknown).
        line: usize,
        /// 1-based column of the fault (0 when unknown).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The file was written by a newer (or unknown) format.
    #[error("cassette `{path}` has format_version {found}; this build reads only format_version 1")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found, as written.
        found: String,
    },
    /// The file could not be written.
    #[error("failed to write cassette `{path}`")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The upstream could not be reached or its answer could not be read.
    #[error("upstream request to {url} failed: {message}")]
    Upstream {
        /// The URL asked (never holds the key).
        url: String,
        /// What went wrong (any key scrubbed).
        message: String,
    },
}

/// A request with no recorded answer: names the request and the closest interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CassetteMiss {
    /// The cassette file.
    pub cassette: PathBuf,
    /// The request's method.
    pub method: String,
    /// The request's path.
    pub path: String,
    /// The request's model, when it names one.
    pub model: Option<String>,
    /// The closest recorded interaction; `None` when the cassette is empty.
    pub closest: Option<Box<Closest>>,
}

/// The recorded interaction nearest to a missed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closest {
    /// Its index (from 0, in file order).
    pub index: usize,
    /// The 1-based line where it starts in the file, when known.
    pub line: Option<usize>,
    /// What differs: `method`, `path` or body key paths such as `messages[1].content`.
    pub differs: Vec<String>,
}

impl fmt::Display for CassetteMiss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (cassette, method, path) = (self.cassette.display(), &self.method, &self.path);
        write!(
            f,
            "no recorded interaction in `{cassette}` matches {method} {path}"
        )?;
        if let Some(model) = &self.model {
            write!(f, " (model {model})")?;
        }
        let Some(closest) = &self.closest else {
            return f.write_str("; the cassette is empty");
        };
        write!(f, "; closest is interaction #{}", closest.index)?;
        if let Some(line) = closest.line {
            write!(f, " (line {line})")?;
        }
        const SHOWN: usize = 8;
        let shown: Vec<&str> = closest
            .differs
            .iter()
            .take(SHOWN)
            .map(String::as_str)
            .collect();
        write!(f, ", which differs in: {}", shown.join(", "))?;
        if closest.differs.len() > SHOWN {
            write!(f, " and {} more", closest.differs.len() - SHOWN)?;
        }
        Ok(())
    }
}

impl std::error::Error for CassetteMiss {}

/// One recorded exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Interaction {
    /// The match key.
    pub(crate) request: RecordedRequest,
    /// The recorded answer.
    pub(crate) response: RecordedResponse,
}

/// The match key of an interaction: method, path and normalised body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordedRequest {
    /// Upper-case HTTP method.
    pub(crate) method: String,
    /// The path the mock received, e.g. `/v1/chat/completions`.
    pub(crate) path: String,
    /// The body as [`normalize_request`] leaves it; absent (null) for bodiless requests.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub(crate) body: Value,
}

/// A recorded answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ResponseRepr", into = "ResponseRepr")]
pub(crate) struct RecordedResponse {
    /// HTTP status.
    pub(crate) status: u16,
    /// Headers, names in lower case.
    pub(crate) headers: BTreeMap<String, String>,
    /// The body.
    pub(crate) body: RecordedBody,
}

/// A recorded body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RecordedBody {
    /// A JSON body (`body:` in the file).
    Json(Value),
    /// A server-sent event stream, the final `[DONE]` included (`sse:` in the file).
    Sse(Vec<SseEvent>),
    /// Any other body (`text:` in the file).
    Text(String),
}

/// One recorded server-sent event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SseEvent {
    /// The `event:` name, when the stream names its events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) event: Option<String>,
    /// The `data:` payload (lines joined with `\n`).
    pub(crate) data: String,
}

/// How a response is written in the file: exactly one of `body`, `sse`, `text`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseRepr {
    status: u16,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sse: Option<Vec<SseEvent>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

impl TryFrom<ResponseRepr> for RecordedResponse {
    type Error = String;

    fn try_from(repr: ResponseRepr) -> Result<Self, Self::Error> {
        let body = match (repr.body, repr.sse, repr.text) {
            (Some(json), None, None) => RecordedBody::Json(json),
            (None, Some(events), None) => RecordedBody::Sse(events),
            (None, None, Some(text)) => RecordedBody::Text(text),
            (body, sse, text) => {
                let given = [
                    ("`body`", body.is_some()),
                    ("`sse`", sse.is_some()),
                    ("`text`", text.is_some()),
                ];
                let given: Vec<&str> = given.iter().filter(|g| g.1).map(|g| g.0).collect();
                let given = if given.is_empty() {
                    "none".to_owned()
                } else {
                    given.join(" and ")
                };
                return Err(format!(
                    "a response takes exactly one of `body`, `sse` or `text`, found {given}"
                ));
            }
        };
        let headers = repr
            .headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        Ok(Self {
            status: repr.status,
            headers,
            body,
        })
    }
}

impl From<RecordedResponse> for ResponseRepr {
    fn from(response: RecordedResponse) -> Self {
        let (body, sse, text) = match response.body {
            // `body: null` would read back as no body; the same bytes as text round-trip.
            RecordedBody::Json(Value::Null) => (None, None, Some("null".to_owned())),
            RecordedBody::Json(json) => (Some(json), None, None),
            RecordedBody::Sse(events) => (None, Some(events), None),
            RecordedBody::Text(text) => (None, None, Some(text)),
        };
        Self {
            status: response.status,
            headers: response.headers,
            body,
            sse,
            text,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn {
    /// Checked on the untyped document first.
    #[serde(rename = "format_version")]
    _format_version: u64,
    #[serde(default)]
    interactions: Vec<Interaction>,
}

#[derive(Serialize)]
struct FileOut<'a> {
    format_version: u64,
    interactions: &'a [Interaction],
}

/// A cassette file and its interactions.
#[derive(Debug, Clone)]
pub(crate) struct Cassette {
    path: PathBuf,
    interactions: Vec<Interaction>,
    /// 1-based start line of each interaction in the file; empty when unknown.
    lines: Vec<usize>,
}

impl Cassette {
    /// A new cassette with no interactions, to be written to `path` by the first recording.
    pub(crate) fn empty(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            interactions: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// Reads a cassette; request bodies are normalised so hand-edited files match too.
    ///
    /// # Errors
    ///
    /// [`CassetteError::Read`] (a missing file too), [`CassetteError::Parse`] with the line,
    /// column and problem, [`CassetteError::UnsupportedVersion`].
    pub(crate) fn load(path: &Path) -> Result<Self, CassetteError> {
        let text = fs::read_to_string(path).map_err(|source| CassetteError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }

    /// Parses cassette text; `path` names it in errors and is where it will be saved.
    fn from_yaml(text: &str, path: &Path) -> Result<Self, CassetteError> {
        let parse_error = |err: serde_norway::Error| {
            let (line, column) = err.location().map_or((0, 0), |l| (l.line(), l.column()));
            let message = err.to_string();
            let message = message
                .rfind(" at line ")
                .map_or(message.as_str(), |at| &message[..at]);
            CassetteError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: message.to_owned(),
            }
        };
        let document: serde_norway::Value = serde_norway::from_str(text).map_err(parse_error)?;
        if let Some(version) = document.get("format_version")
            && version.as_u64() != Some(FORMAT_VERSION)
        {
            let found = serde_norway::to_string(version)
                .unwrap_or_default()
                .trim()
                .to_owned();
            return Err(CassetteError::UnsupportedVersion {
                path: path.to_owned(),
                found,
            });
        }
        let file: FileIn = serde_norway::from_str(text).map_err(parse_error)?;
        let mut interactions = file.interactions;
        for request in interactions.iter_mut().map(|i| &mut i.request) {
            request.method.make_ascii_uppercase();
            request.body = normalize_request(&request.path, &request.body);
        }
        let lines = interaction_lines(text, interactions.len());
        Ok(Self {
            path: path.to_owned(),
            interactions,
            lines,
        })
    }

    /// The cassette file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The recorded answer to a request, matched on method, path and normalised body, with its
    /// index.
    ///
    /// # Errors
    ///
    /// [`CassetteMiss`] naming the request, the closest interaction and what differs.
    pub(crate) fn lookup(
        &self,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<(usize, &RecordedResponse), CassetteMiss> {
        let method = method.to_ascii_uppercase();
        let key = normalize_request(path, body);
        let same = |r: &RecordedRequest| r.method == method && r.path == path && r.body == key;
        if let Some((index, hit)) = self
            .interactions
            .iter()
            .enumerate()
            .find(|(_, i)| same(&i.request))
        {
            return Ok((index, &hit.response));
        }
        let closest = self
            .interactions
            .iter()
            .enumerate()
            .map(|(index, interaction)| {
                let recorded = &interaction.request;
                let mut differs = Vec::new();
                if recorded.method != method {
                    differs.push("method".to_owned());
                }
                if recorded.path != path {
                    differs.push("path".to_owned());
                }
                let other_endpoint = !differs.is_empty();
                diff_values("", &recorded.body, &key, &mut differs);
                let line = self.lines.get(index).copied();
                (
                    other_endpoint,
                    differs.len(),
                    Box::new(Closest {
                        index,
                        line,
                        differs,
                    }),
                )
            })
            .min_by_key(|(other_endpoint, count, c)| (*other_endpoint, *count, c.index))
            .map(|(_, _, closest)| closest);
        let model = key
            .get("model")
            .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned));
        Err(CassetteMiss {
            cassette: self.path.clone(),
            method,
            path: path.to_owned(),
            model,
            closest,
        })
    }

    /// Records an exchange: scrubs `secrets` (values of at least 8 characters) and unsafe
    /// headers, replaces the interaction with the same key or appends, then saves atomically.
    /// Returns the interaction's index. A secret inside the request body is scrubbed from the
    /// key too, so that request will not match on replay. Blocking file I/O.
    ///
    /// # Errors
    ///
    /// [`CassetteError::Write`] when the file cannot be written.
    pub(crate) fn record(
        &mut self,
        method: &str,
        path: &str,
        body: &Value,
        response: RecordedResponse,
        secrets: &[&str],
    ) -> Result<usize, CassetteError> {
        let mut secrets: Vec<&str> = secrets
            .iter()
            .copied()
            .filter(|s| s.chars().count() >= MIN_SECRET_CHARS)
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let request = RecordedRequest {
            method: scrub_str(&method.to_ascii_uppercase(), &secrets),
            path: scrub_str(path, &secrets),
            body: scrub_value(normalize_request(path, body), &secrets),
        };
        let headers = response
            .headers
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .filter(|(name, _)| header_kept(name))
            .map(|(name, value)| (name, scrub_str(&value, &secrets)))
            .collect();
        let body = match response.body {
            RecordedBody::Json(json) => RecordedBody::Json(scrub_value(json, &secrets)),
            RecordedBody::Text(text) => RecordedBody::Text(scrub_str(&text, &secrets)),
            RecordedBody::Sse(events) => RecordedBody::Sse(
                events
                    .into_iter()
                    .map(|e| SseEvent {
                        event: e.event.map(|name| scrub_str(&name, &secrets)),
                        data: scrub_str(&e.data, &secrets),
                    })
                    .collect(),
            ),
        };
        let interaction = Interaction {
            request,
            response: RecordedResponse {
                status: response.status,
                headers,
                body,
            },
        };
        let index = match self
            .interactions
            .iter()
            .position(|i| i.request == interaction.request)
        {
            Some(index) => {
                self.interactions[index] = interaction;
                index
            }
            None => {
                self.interactions.push(interaction);
                self.interactions.len() - 1
            }
        };
        self.save()?;
        Ok(index)
    }

    /// Writes the cassette: to `<file>.tmp` in the same folder, fsynced, then renamed over the
    /// file, so an interrupted save never leaves a half-written cassette.
    ///
    /// # Errors
    ///
    /// [`CassetteError::Write`] when the file cannot be written.
    pub(crate) fn save(&mut self) -> Result<(), CassetteError> {
        let write_error = |source| CassetteError::Write {
            path: self.path.clone(),
            source,
        };
        let file = FileOut {
            format_version: FORMAT_VERSION,
            interactions: &self.interactions,
        };
        let text = serde_norway::to_string(&file)
            .map_err(|e| write_error(io::Error::other(e.to_string())))?;
        write_atomically(&self.path, text.as_bytes()).map_err(write_error)?;
        self.lines = interaction_lines(&text, self.interactions.len());
        Ok(())
    }
}

/// The match key of a request body: for the OpenAI endpoints (chat, completions, responses,
/// embeddings) only the keys that decide the answer, for others every key but `user`,
/// `metadata` and the like; nulls dropped, integral floats made integers, keys sorted at every
/// depth (whatever serde_json's `preserve_order`).
pub(crate) fn normalize_request(path: &str, body: &Value) -> Value {
    let Value::Object(map) = body else {
        return canonical(body);
    };
    let known = KNOWN_ENDPOINTS
        .iter()
        .any(|end| path.trim_end_matches('/').ends_with(end));
    let kept = map
        .iter()
        .filter(|(key, _)| listed(if known { MATCH_KEYS } else { IGNORED_KEYS }, key) == known)
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    canonical(&Value::Object(kept))
}

/// `value` with object keys sorted, null members dropped and integral floats made integers.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> =
                map.iter().filter(|(_, v)| !v.is_null()).collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                members
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => value.clone(),
        },
        _ => value.clone(),
    }
}

/// Appends to `out` the paths (`messages[1].content`) where `recorded` and `asked` differ.
fn diff_values(at: &str, recorded: &Value, asked: &Value, out: &mut Vec<String>) {
    match (recorded, asked) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
                let inner = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff_values(&inner, x, y, out),
                    _ => out.push(inner),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_values(&format!("{at}[{i}]"), x, y, out);
            }
            if a.len() != b.len() {
                out.push(format!("{at}[{}]", a.len().min(b.len())));
            }
        }
        _ if recorded == asked => {}
        _ => out.push(if at.is_empty() {
            "body".to_owned()
        } else {
            at.to_owned()
        }),
    }
}

/// The 1-based line where each item of the top-level `interactions:` list starts, found by
/// scanning block-style YAML; empty when the count does not come out right (flow style, ...).
fn interaction_lines(text: &str, count: usize) -> Vec<usize> {
    let mut lines = text.lines().enumerate();
    if !lines
        .by_ref()
        .any(|(_, line)| line.trim_end() == "interactions:")
    {
        return Vec::new();
    }
    let (mut indent, mut found) = (None, Vec::new());
    for (number, line) in lines {
        let item = line.trim_start();
        let depth = line.len() - item.len();
        if item.is_empty() || item.starts_with('#') {
            continue;
        }
        if depth == 0 && !item.starts_with('-') {
            break;
        }
        if (item == "-" || item.starts_with("- ")) && *indent.get_or_insert(depth) == depth {
            found.push(number + 1);
        }
    }
    if found.len() == count {
        found
    } else {
        Vec::new()
    }
}

/// Whether a response header may be recorded.
fn header_kept(name: &str) -> bool {
    !listed(DENIED_HEADERS, name)
        && (listed(KEPT_HEADERS, name) || name.starts_with("x-ratelimit-"))
}

/// `text` with every secret replaced by [`REDACTED`].
fn scrub_str(text: &str, secrets: &[&str]) -> String {
    secrets.iter().fold(text.to_owned(), |text, secret| {
        text.replace(secret, REDACTED)
    })
}

/// `value` with every secret in every string (object keys included) replaced.
fn scrub_value(value: Value, secrets: &[&str]) -> Value {
    match value {
        Value::String(text) => Value::String(scrub_str(&text, secrets)),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| scrub_value(v, secrets)).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (scrub_str(&k, secrets), scrub_value(v, secrets)))
                .collect(),
        ),
        other => other,
    }
}

/// Writes `bytes` to `<path>.tmp`, fsyncs it and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut name = path
        .file_name()
        .ok_or_else(|| io::Error::other("the path names no file"))?
        .to_owned();
    name.push(".tmp");
    let tmp = dir.join(name);
    let written = fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    // Make the rename itself durable; not every platform can open a folder, so best effort.
    if let Ok(folder) = fs::File::open(dir) {
        let _ = folder.sync_all();
    }
    Ok(())
}

/// Sends a request to the real upstream and buffers its answer. `upstream_base` is an
/// OpenAI-style base URL (`https://api.openai.com/v1`); a leading `/v1` of `path` is dropped
/// when the base already ends in `/v1`. Sends `Authorization: Bearer <api_key>` when a key is
/// given. A `text/event-stream` answer becomes [`RecordedBody::Sse`], else JSON, else text.
/// An error status is an answer, not an error. Headers are returned unscrubbed (but without
/// hop-by-hop ones): [`Cassette::record`] scrubs.
///
/// # Errors
///
/// [`CassetteError::Upstream`] naming the URL (never the key) when the upstream cannot be
/// reached or its answer cannot be read.
pub(crate) async fn forward(
    http: &reqwest::Client,
    upstream_base: &str,
    method: &str,
    path: &str,
    body: Bytes,
    api_key: Option<&SecretString>,
) -> Result<RecordedResponse, CassetteError> {
    let url = upstream_url(upstream_base, path);
    let fail = |message: String| {
        let message = match api_key.map(|k| k.expose_secret()).filter(|k| !k.is_empty()) {
            Some(key) => message.replace(key, REDACTED),
            None => message,
        };
        CassetteError::Upstream {
            url: url.clone(),
            message,
        }
    };
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| fail(format!("invalid method `{method}`")))?;
    let mut request = http.request(method, &url);
    if let Some(key) = api_key {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
            .map_err(|_| fail("the api key is not a valid header value".to_owned()))?;
        value.set_sensitive(true);
        request = request.header(AUTHORIZATION, value);
    }
    if !body.is_empty() {
        request = request.header(CONTENT_TYPE, "application/json").body(body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| fail(error_chain(&e.without_url())))?;
    let status = response.status().as_u16();
    let headers: BTreeMap<String, String> = response
        .headers()
        .iter()
        .filter(|(name, _)| !listed(HOP_HEADERS, name.as_str()))
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .fold(BTreeMap::new(), |mut headers, (name, value)| {
            headers
                .entry(name)
                .and_modify(|v: &mut String| *v = format!("{v}, {value}"))
                .or_insert(value);
            headers
        });
    let bytes = response
        .bytes()
        .await
        .map_err(|e| fail(error_chain(&e.without_url())))?;
    let is_sse = headers
        .get("content-type")
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("text/event-stream"));
    let body = if is_sse {
        RecordedBody::Sse(parse_sse(&String::from_utf8_lossy(&bytes)))
    } else if let Ok(json) = serde_json::from_slice(&bytes) {
        RecordedBody::Json(json)
    } else {
        RecordedBody::Text(String::from_utf8_lossy(&bytes).into_owned())
    };
    Ok(RecordedResponse {
        status,
        headers,
        body,
    })
}

/// The upstream URL for a path the mock received.
fn upstream_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let path = match path.strip_prefix("/v1") {
        Some(rest)
            if base.ends_with("/v1") && (rest.is_empty() || rest.starts_with(['/', '?'])) =>
        {
            rest
        }
        _ => path,
    };
    let slash = if path.is_empty() || path.starts_with(['/', '?']) {
        ""
    } else {
        "/"
    };
    format!("{base}{slash}{path}")
}

/// An error and its sources, joined with `: `.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    message
}

/// Splits a buffered event stream into events (`\n`, `\r\n` or `\r` line ends; multi-line data
/// joined with `\n`; comments and fields other than `event`/`data` skipped).
fn parse_sse(text: &str) -> Vec<SseEvent> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let (mut events, mut event, mut data) = (Vec::new(), None, None::<String>);
    for line in text.split('\n').chain([""]) {
        if line.is_empty() {
            if let Some(data) = data.take() {
                events.push(SseEvent {
                    event: event.take(),
                    data,
                });
            }
            event = None;
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match (field, &mut data) {
            ("event", _) => event = Some(value.to_owned()),
            ("data", Some(data)) => {
                data.push('\n');
                data.push_str(value);
            }
            ("data", None) => data = Some(value.to_owned()),
            _ => {}
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CANARY: &str = "sk-canary-0123456789abcdef";
    const CHAT: &str = "/v1/chat/completions";

    fn reply(status: u16, body: RecordedBody) -> RecordedResponse {
        let headers = BTreeMap::from([("content-type".to_owned(), "application/json".to_owned())]);
        RecordedResponse {
            status,
            headers,
            body,
        }
    }

    fn events(list: &[(Option<&str>, &str)]) -> Vec<SseEvent> {
        let event = |(name, data): &(Option<&str>, &str)| SseEvent {
            event: name.map(str::to_owned),
            data: (*data).to_owned(),
        };
        list.iter().map(event).collect()
    }

    fn chat(content: &str, temperature: f64) -> Value {
        json!({"model": "gpt-4o-mini", "temperature": temperature, "messages":
            [{"role": "system", "content": "be brief"}, {"role": "user", "content": content}]})
    }

    /// A cassette saved under `dir/sub/` with three chat interactions.
    fn recorded(dir: &Path) -> Cassette {
        let mut cassette = Cassette::empty(&dir.join("sub/c.yaml"));
        for (content, temperature) in [("hello", 0.0), ("weather?", 0.5), ("bye", 1.0)] {
            let answer = reply(200, RecordedBody::Json(json!({ "echo": content })));
            let body = chat(content, temperature);
            cassette.record("POST", CHAT, &body, answer, &[]).unwrap();
        }
        cassette
    }

    #[test]
    fn save_then_load_round_trips_every_body_kind() {
        let dir = tempfile::tempdir().unwrap();
        let mut cassette = recorded(dir.path());
        let strings = [
            "yes",
            "null",
            "1.0",
            "~",
            "a: b",
            "multi\nline",
            "ünï",
            "",
            "#x",
        ];
        let sse = events(&[
            (None, r#"{"a":[1]}"#),
            (Some("done"), "a\nb"),
            (None, "[DONE]"),
        ]);
        let bodies = [
            RecordedBody::Json(json!({"s": strings, "n": [1, -2, 1.5, u64::MAX]})),
            RecordedBody::Sse(sse),
            RecordedBody::Text("oops".to_owned()),
            RecordedBody::Json(Value::Null),
        ];
        for (i, body) in bodies.into_iter().enumerate() {
            let path = "/v1/responses";
            cassette
                .record("post", path, &json!({ "input": i }), reply(500, body), &[])
                .unwrap();
        }
        let models = reply(200, RecordedBody::Json(json!({"data": []})));
        cassette
            .record("GET", "/v1/models", &Value::Null, models, &[])
            .unwrap();
        let loaded = Cassette::load(cassette.path()).unwrap();
        let null = RecordedBody::Text("null".to_owned()); // the same bytes on the wire
        assert_eq!(loaded.interactions[6].response.body, null);
        assert_eq!(loaded.interactions[..6], cassette.interactions[..6]);
        assert_eq!(
            (loaded.interactions.len(), &loaded.lines),
            (8, &cassette.lines)
        );
        assert_eq!(loaded.lines.len(), 8);
    }

    #[test]
    fn lookup_ignores_irrelevant_keys_nulls_and_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut cassette = recorded(dir.path());
        let asked = json!({"user": "u-1", "metadata": {"run": 7}, "seed": null, "model": "gpt-4o-mini",
            "messages": [{"content": "be brief", "role": "system"}, {"content": "weather?", "role": "user"}],
            "temperature": 0.5});
        let (index, response) = cassette.lookup("post", CHAT, &asked).unwrap();
        assert_eq!(index, 1);
        assert_eq!(
            response.body,
            RecordedBody::Json(json!({"echo": "weather?"}))
        );
        // 1.0 was saved as 1 and still matches; re-recording a key replaces it in place.
        assert_eq!(
            cassette.lookup("POST", CHAT, &chat("bye", 1.0)).unwrap().0,
            2
        );
        let again = reply(200, RecordedBody::Json(json!(1)));
        let index = cassette
            .record("POST", CHAT, &chat("hello", 0.0), again, &[])
            .unwrap();
        assert_eq!((index, cassette.interactions.len()), (0, 3));
    }

    #[test]
    fn miss_names_the_closest_interaction_and_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let cassette = recorded(dir.path());
        let mut asked = chat("weather??", 0.5);
        asked["seed"] = json!(7);
        let miss = cassette.lookup("POST", CHAT, &asked).unwrap_err();
        let text = miss.to_string();
        let expected = "matches POST /v1/chat/completions (model gpt-4o-mini); closest is \
            interaction #1 (line 20), which differs in: messages[1].content, seed";
        assert!(text.ends_with(expected), "{text}");
        let saved = fs::read_to_string(cassette.path()).unwrap();
        assert_eq!(saved.lines().nth(19), Some("- request:"), "{saved}");

        let miss = cassette.lookup("POST", "/v1/responses", &json!({"model": "m"}));
        let text = miss.unwrap_err().to_string();
        assert!(
            text.contains("differs in: path, messages, model, temperature"),
            "{text}"
        );
        let text = Cassette::empty(Path::new("new.yaml"))
            .lookup("GET", "/v1/models", &Value::Null)
            .unwrap_err()
            .to_string();
        let expected = "no recorded interaction in `new.yaml` matches GET /v1/models; \
            the cassette is empty";
        assert_eq!(text, expected);
    }

    #[test]
    fn invalid_files_are_reported_with_file_line_and_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.yaml");
        let load = |yaml: &str| {
            fs::write(&path, yaml).unwrap();
            Cassette::load(&path).unwrap_err()
        };
        let yaml = "format_version: 1\ninteractions:\n  - request: { method: GET, path: /v1/models }\n    \
            response:\n      status: 200\n      bodyy: {}\n";
        let err = load(yaml);
        let CassetteError::Parse {
            line: 6,
            ref message,
            ..
        } = err
        else {
            panic!("{err}")
        };
        assert!(message.contains("unknown field `bodyy`"), "{err}");
        let start = format!(
            "invalid cassette `{}` at line 6, column 7: ",
            path.display()
        );
        assert!(err.to_string().starts_with(&start), "{err}");

        let err = load(&yaml.replace("bodyy: {}", "body: {}\n      text: x")).to_string();
        assert!(err.contains("exactly one of `body`, `sse` or `text`, found `body` and `text`"));
        let err = load("format_version: 1\ninteractions: [\n");
        assert!(matches!(err, CassetteError::Parse { line: 3, .. }), "{err}");
        let err = load("format_version: 2\ninteractions: []\n").to_string();
        assert!(
            err.contains("bad.yaml` has format_version 2; this build"),
            "{err}"
        );
        let err = Cassette::load(&dir.path().join("gone.yaml")).unwrap_err();
        assert!(matches!(err, CassetteError::Read { .. }) && err.to_string().contains("gone.yaml"));
    }

    #[test]
    fn hand_written_files_load_and_match() {
        let yaml = "format_version: 1\ninteractions:\n- request:\n    method: post\n    path: /v1/embeddings\n    \
            body: {input: hi, model: e, user: x}\n  response:\n    status: 200\n    \
            headers: {Content-Type: application/json, x-ratelimit-remaining-requests: 99}\n    body: {}\n";
        let cassette = Cassette::from_yaml(yaml, Path::new("inline.yaml")).unwrap();
        let asked = json!({"model": "e", "input": "hi"});
        let (_, response) = cassette.lookup("POST", "/v1/embeddings", &asked).unwrap();
        assert_eq!(response.headers["x-ratelimit-remaining-requests"], "99");
        assert_eq!(response.headers["content-type"], "application/json");
        assert_eq!(cassette.lines, [3]);
    }

    #[test]
    fn the_documented_example_loads_and_answers() {
        let source = include_str!("cassette.rs");
        let yaml: String = source
            .lines()
            .skip_while(|line| *line != "//! ```yaml")
            .skip(1)
            .take_while(|line| *line != "//! ```")
            .map(|line| format!("{}\n", line.strip_prefix("//! ").unwrap_or_default()))
            .collect();
        let cassette = Cassette::from_yaml(&yaml, Path::new("doc.yaml")).unwrap();
        assert_eq!(cassette.lines, [3, 13], "{yaml}");
        let asked = json!({"model": "gpt-4o-mini", "stream": true,
            "messages": [{"role": "user", "content": "hi"}]});
        let (_, streamed) = cassette.lookup("POST", CHAT, &asked).unwrap();
        let RecordedBody::Sse(events) = &streamed.body else {
            panic!("{streamed:?}")
        };
        assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));
        assert!(cassette.lookup("GET", "/v1/models", &Value::Null).is_ok());
    }

    #[test]
    fn recording_scrubs_secrets_and_unsafe_headers_and_leaves_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let mut cassette = Cassette::empty(&dir.path().join("c.yaml"));
        let body = json!({"model": "m", "messages": [{"role": "user", "content": format!("key={CANARY}")}],
            "tools": [{"function": {"name": "f", "description": CANARY}}]});
        let headers = [
            ("Authorization", format!("Bearer {CANARY}")),
            ("Set-Cookie", "session=abc".to_owned()),
            ("Content-Type", "text/event-stream".to_owned()),
            ("x-request-id", format!("req-{CANARY}")),
            ("x-ratelimit-remaining-tokens", "999".to_owned()),
            ("server", "cloudflare".to_owned()),
        ];
        let headers = headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let sse = events(&[(Some(CANARY), &format!(r#"{{"k":"{CANARY}"}}"#))]);
        let response = RecordedResponse {
            status: 200,
            headers,
            body: RecordedBody::Sse(sse),
        };
        let secrets = [CANARY, "", "short"];
        cassette
            .record("POST", CHAT, &body, response, &secrets)
            .unwrap();
        let text = fs::read_to_string(cassette.path()).unwrap();
        assert_eq!(text.matches(CANARY).count(), 0, "{text}");
        assert_eq!(text.matches(REDACTED).count(), 5, "{text}");
        assert!(
            !text.contains("cookie") && !text.contains("server"),
            "{text}"
        );
        let names: Vec<&String> = cassette.interactions[0].response.headers.keys().collect();
        assert_eq!(
            names,
            [
                "content-type",
                "x-ratelimit-remaining-tokens",
                "x-request-id"
            ]
        );
        let files = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name());
        assert_eq!(files.collect::<Vec<_>>(), ["c.yaml"]);
    }

    #[test]
    fn event_streams_and_upstream_urls() {
        let text =
            "data: {\"a\":1}\r\n\r\n: ping\n\nevent: done\ndata: one\ndata:two\n\ndata: [DONE]";
        let expected = [
            (None, "{\"a\":1}"),
            (Some("done"), "one\ntwo"),
            (None, "[DONE]"),
        ];
        assert_eq!(parse_sse(text), events(&expected));
        for (base, path, url) in [
            (
                "https://api.openai.com/v1/",
                CHAT,
                "https://api.openai.com/v1/chat/completions",
            ),
            (
                "http://127.0.0.1:9000",
                "/v1/models",
                "http://127.0.0.1:9000/v1/models",
            ),
            ("http://h/v1", "/v1beta/x", "http://h/v1/v1beta/x"),
        ] {
            assert_eq!(upstream_url(base, path), url);
        }
    }

    /// A tiny upstream on 127.0.0.1: an event stream when the body asks for one, else JSON
    /// saying whether the key came.
    async fn upstream() -> String {
        use axum::{Json, http::HeaderMap, response::IntoResponse};
        let handler = |headers: HeaderMap, Json(body): Json<Value>| async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
            let authed = auth == Some(&format!("Bearer {CANARY}")[..]);
            if body["stream"] == json!(true) {
                let stream = "data: {\"n\":1}\r\n\r\nevent: named\ndata: line one\ndata: line two\n\n\
                    data: [DONE]\n\n";
                ([("content-type", "text/event-stream")], stream).into_response()
            } else {
                let headers = [
                    ("x-ratelimit-remaining-requests", "99"),
                    ("set-cookie", "a=b"),
                ];
                (
                    headers,
                    Json(json!({"authed": authed, "model": body["model"]})),
                )
                    .into_response()
            }
        };
        let app = axum::Router::new().route(CHAT, axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/v1")
    }

    #[tokio::test]
    async fn forward_buffers_json_and_event_streams() {
        let (base, http, key) = (
            upstream().await,
            reqwest::Client::new(),
            SecretString::from(CANARY),
        );
        let body = Bytes::from(r#"{"model":"m","stream":false}"#);
        let answer = forward(&http, &base, "POST", CHAT, body, Some(&key))
            .await
            .unwrap();
        assert_eq!(
            answer.body,
            RecordedBody::Json(json!({"authed": true, "model": "m"}))
        );
        assert_eq!(
            (
                answer.status,
                &answer.headers["x-ratelimit-remaining-requests"][..]
            ),
            (200, "99")
        );
        assert!(!answer.headers.contains_key("content-length"));

        let body = Bytes::from(r#"{"model":"m","stream":true}"#);
        let answer = forward(&http, &base, "POST", CHAT, body, None)
            .await
            .unwrap();
        let expected = [
            (None, "{\"n\":1}"),
            (Some("named"), "line one\nline two"),
            (None, "[DONE]"),
        ];
        assert_eq!(answer.body, RecordedBody::Sse(events(&expected)));

        let dir = tempfile::tempdir().unwrap();
        let mut cassette = Cassette::empty(&dir.path().join("rec.yaml"));
        let asked = json!({"model": "m", "stream": true});
        cassette
            .record("POST", CHAT, &asked, answer.clone(), &[CANARY])
            .unwrap();
        let replayed = Cassette::load(cassette.path()).unwrap();
        let (_, hit) = replayed.lookup("POST", CHAT, &asked).unwrap();
        assert_eq!(hit.body, answer.body);
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_named_without_the_key() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        drop(listener);
        let (http, key) = (reqwest::Client::new(), SecretString::from(CANARY));
        let body = Bytes::from("{}");
        let err = forward(&http, &base, "POST", "/v1/embeddings", body, Some(&key)).await;
        let text = format!("{} {:?}", err.as_ref().unwrap_err(), err);
        assert!(
            text.contains(&format!("upstream request to {base}/embeddings failed")),
            "{text}"
        );
        assert!(!text.contains(CANARY), "{text}");
    }
}
