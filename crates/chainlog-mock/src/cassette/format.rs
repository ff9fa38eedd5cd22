//! The cassette file: its YAML types (one [`Interaction`] per recorded exchange, a
//! [`RecordedResponse`] written as exactly one of `body`, `sse` or `text`), the [`Cassette`]
//! held in memory, loading it (errors name the file, the line and what is wrong) and saving it
//! atomically. Matching, recording and the upstream call live in the sibling modules.

use std::{
    collections::BTreeMap,
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::key::normalize_request;

/// The only `format_version` this build reads and writes.
const FORMAT_VERSION: u64 = 1;

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
    /// The file it was read from and is saved to.
    pub(super) path: PathBuf,
    /// The recorded exchanges, in file order.
    pub(super) interactions: Vec<Interaction>,
    /// 1-based start line of each interaction in the file; empty when unknown.
    pub(super) lines: Vec<usize>,
    /// How many times each match key (its JSON text) was recorded since this cassette was
    /// loaded: the n-th recording of a key replaces the n-th interaction with that key, or is
    /// appended, so identical requests keep their order.
    pub(super) recorded: BTreeMap<String, usize>,
}

impl Cassette {
    /// A new cassette with no interactions, to be written to `path` by the first recording.
    pub(crate) fn empty(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            interactions: Vec::new(),
            lines: Vec::new(),
            recorded: BTreeMap::new(),
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
            recorded: BTreeMap::new(),
        })
    }

    /// The cassette file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
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

#[cfg(test)]
mod tests {
    use std::{fs, path::Path};

    use serde_json::{Value, json};

    use super::{Cassette, CassetteError, RecordedBody};
    use crate::cassette::test_helpers::{CHAT, events, recorded, reply};

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
        let source = include_str!("mod.rs");
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
}
