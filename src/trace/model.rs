//! The trace model: a span in flight ([`Traced`]), a finished span ([`SpanRecord`]) and a
//! finished trace ([`TraceRecord`]), and how their attributes are encoded for MLflow.
//!
//! MLflow keeps every span attribute as JSON text (`"\"CHAIN\""`, `{"question": …}`); so does
//! this model, for OTLP and for SQLite rows alike. Encoding happens in the exporter's
//! background task, not on the prediction's path: there every string is scrubbed of secrets
//! ([`crate::secret::scrub`]) and cut to [`MAX_ATTRIBUTE_BYTES`].

use std::{
    borrow::Cow,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use serde_json::Value;

/// The most bytes of JSON text one attribute keeps. A longer value is replaced by a JSON
/// string holding its first bytes followed by [`TRUNCATION_MARKER`] and the original size,
/// so the attribute stays valid JSON and the export never fails for its size.
pub const MAX_ATTRIBUTE_BYTES: usize = 1024 * 1024;

/// What follows the kept part of a truncated attribute: `…[truncated by chainlog: N bytes]`.
pub const TRUNCATION_MARKER: &str = "…[truncated by chainlog: ";

/// The most events one span keeps (retries are events; a runaway loop must not grow memory).
pub(super) const MAX_EVENTS: usize = 128;

/// MLflow's length of a trace's request and response previews.
pub(super) const PREVIEW_CHARS: usize = 1000;

/// A value an attribute was given.
#[derive(Debug, Clone)]
pub(crate) enum AttrValue {
    /// A JSON value, encoded at export.
    Json(Value),
    /// JSON text as it is (a request body as sent), shared with the caller.
    JsonText(bytes::Bytes),
}

/// The spans of one trace, filled as they end; shared by the spans of the trace.
#[derive(Debug)]
pub(super) struct TraceBuf {
    pub trace_id: u128,
    pub spans: Mutex<Vec<SpanRecord>>,
}

/// A traced span in flight, kept in the span's data in the subscriber's registry.
#[derive(Debug)]
pub(crate) struct Traced {
    pub(super) trace: Arc<TraceBuf>,
    pub(super) span_id: u64,
    pub(super) parent_id: Option<u64>,
    pub(crate) name: String,
    pub(super) span_type: String,
    pub(super) start: SystemTime,
    pub(super) attributes: Vec<(Cow<'static, str>, AttrValue)>,
    pub(super) events: Vec<SpanEvent>,
    pub(crate) error: Option<String>,
}

impl Traced {
    /// Sets `key`. A later value of the same key wins; the export drops the earlier ones
    /// (no search here: this runs on the prediction's path).
    pub(crate) fn set(&mut self, key: &'static str, value: AttrValue) {
        self.attributes.push((Cow::Borrowed(key), value));
    }

    /// The finished span.
    pub(super) fn finish(self, end: SystemTime) -> SpanRecord {
        SpanRecord {
            trace_id: self.trace.trace_id,
            span_id: self.span_id,
            parent_id: self.parent_id,
            name: self.name,
            span_type: self.span_type,
            start: self.start,
            end,
            attributes: self.attributes,
            events: self.events,
            error: self.error,
        }
    }
}

/// Something that happened during a span (a retry), with its fields as text.
#[derive(Debug, Clone)]
pub struct SpanEvent {
    /// The event's message.
    pub name: String,
    /// When it happened.
    pub time: SystemTime,
    /// Its other fields.
    pub attributes: Vec<(String, String)>,
}

/// A finished span.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    /// The OTel trace id.
    pub trace_id: u128,
    /// The OTel span id.
    pub span_id: u64,
    /// The parent's span id; `None` for the trace's root.
    pub parent_id: Option<u64>,
    /// The span's name (a chain's name, `llm.chat`, a tool's name).
    pub name: String,
    /// The MLflow span type (`CHAIN`, `CHAT_MODEL`, `TOOL`).
    pub span_type: String,
    /// Start time.
    pub start: SystemTime,
    /// End time.
    pub end: SystemTime,
    pub(crate) attributes: Vec<(Cow<'static, str>, AttrValue)>,
    /// Events, in order.
    pub events: Vec<SpanEvent>,
    /// The error message when the span failed.
    pub error: Option<String>,
}

impl SpanRecord {
    /// The attributes as MLflow stores them: key and JSON text, `mlflow.spanType` first,
    /// scrubbed and cut to [`MAX_ATTRIBUTE_BYTES`].
    pub fn encoded_attributes(&self) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(self.attributes.len() + 1);
        out.push((
            super::SPAN_TYPE_FIELD.to_owned(),
            Value::String(self.span_type.clone()).to_string(),
        ));
        for (key, value) in self.latest_attributes() {
            let text = match value {
                AttrValue::Json(value) => value.to_string(),
                AttrValue::JsonText(text) => String::from_utf8_lossy(text).into_owned(),
            };
            out.push((key.to_string(), safe_json(&text)));
        }
        out
    }

    /// Each attribute's latest value, in the order the keys were first set.
    fn latest_attributes(&self) -> impl Iterator<Item = (&str, &AttrValue)> {
        let attributes = &self.attributes;
        attributes
            .iter()
            .enumerate()
            .filter_map(move |(index, (key, _))| {
                let first = !attributes[..index]
                    .iter()
                    .any(|(earlier, _)| earlier == key);
                let (_, latest) = attributes[index..].iter().rev().find(|(k, _)| k == key)?;
                first.then_some((key.as_ref(), latest))
            })
    }

    /// The latest value of attribute `key`.
    fn latest(&self, key: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, value)| value)
    }

    /// The JSON text of attribute `key` (scrubbed, not cut).
    pub fn attribute_text(&self, key: &str) -> Option<String> {
        self.latest(key).map(|value| match value {
            AttrValue::Json(value) => crate::secret::scrub(&value.to_string()),
            AttrValue::JsonText(text) => crate::secret::scrub(&String::from_utf8_lossy(text)),
        })
    }

    /// Nanoseconds since the Unix epoch.
    pub fn start_ns(&self) -> i64 {
        unix_ns(self.start)
    }

    /// Nanoseconds since the Unix epoch.
    pub fn end_ns(&self) -> i64 {
        unix_ns(self.end)
    }

    /// The token usage this span reports (`mlflow.chat.tokenUsage`).
    fn token_usage(&self) -> Option<TokenUsage> {
        let value = match self.latest("mlflow.chat.tokenUsage")? {
            AttrValue::Json(value) => value.clone(),
            AttrValue::JsonText(text) => serde_json::from_slice(text).ok()?,
        };
        Some(TokenUsage {
            input_tokens: value.get("input_tokens")?.as_i64()?,
            output_tokens: value.get("output_tokens")?.as_i64()?,
            total_tokens: value.get("total_tokens")?.as_i64()?,
        })
    }
}

/// Tokens over a trace's LLM calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Completion tokens.
    pub output_tokens: i64,
    /// Both.
    pub total_tokens: i64,
}

/// A finished trace: its spans, the root last.
#[derive(Debug, Clone)]
pub struct TraceRecord {
    /// The OTel trace id; MLflow's trace id is `tr-` and its 32 hex digits.
    pub trace_id: u128,
    /// Every span, the root last.
    pub spans: Vec<SpanRecord>,
}

impl TraceRecord {
    /// MLflow's id for this trace: `tr-<32 hex digits>`.
    pub fn mlflow_id(&self) -> String {
        format!("tr-{:032x}", self.trace_id)
    }

    /// The root span (the one without a parent).
    pub fn root(&self) -> Option<&SpanRecord> {
        self.spans.iter().find(|span| span.parent_id.is_none())
    }

    /// `OK`, or `ERROR` when the root span failed.
    pub fn state(&self) -> &'static str {
        match self.root() {
            Some(root) if root.error.is_some() => "ERROR",
            _ => "OK",
        }
    }

    /// The root's inputs as MLflow previews them (at most 1000 characters, `...` after a cut).
    pub fn request_preview(&self) -> Option<String> {
        self.root()?
            .attribute_text("mlflow.spanInputs")
            .map(preview)
    }

    /// The root's outputs as MLflow previews them.
    pub fn response_preview(&self) -> Option<String> {
        self.root()?
            .attribute_text("mlflow.spanOutputs")
            .map(preview)
    }

    /// The token usage summed over the trace's spans; `None` when no span reports any.
    pub fn token_usage(&self) -> Option<TokenUsage> {
        self.spans
            .iter()
            .filter_map(SpanRecord::token_usage)
            .reduce(|a, b| TokenUsage {
                input_tokens: a.input_tokens + b.input_tokens,
                output_tokens: a.output_tokens + b.output_tokens,
                total_tokens: a.total_tokens + b.total_tokens,
            })
    }
}

/// MLflow's preview of JSON text: the text, cut to 1000 characters with `...`.
fn preview(text: String) -> String {
    if text.chars().count() <= PREVIEW_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(PREVIEW_CHARS - 3).collect();
    cut.push_str("...");
    cut
}

/// `text` scrubbed of secrets and, when longer than [`MAX_ATTRIBUTE_BYTES`], replaced by a
/// JSON string of its start and the marker.
pub(super) fn safe_json(text: &str) -> String {
    let text = crate::secret::scrub(text);
    if text.len() <= MAX_ATTRIBUTE_BYTES {
        return text;
    }
    let mut end = MAX_ATTRIBUTE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let kept = format!("{}{TRUNCATION_MARKER}{} bytes]", &text[..end], text.len());
    Value::String(kept).to_string()
}

pub(super) fn unix_ns(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_attribute_is_cut_to_valid_json_with_marker() {
        let huge = Value::String("x".repeat(MAX_ATTRIBUTE_BYTES * 2)).to_string();
        let cut = safe_json(&huge);
        let parsed: Value = serde_json::from_str(&cut).unwrap();
        let text = parsed.as_str().unwrap();
        assert!(text.contains(TRUNCATION_MARKER), "no marker");
        assert!(text.ends_with(&format!("{} bytes]", huge.len())));
        assert!(cut.len() < MAX_ATTRIBUTE_BYTES + 100);
    }

    #[test]
    fn a_key_set_twice_keeps_its_latest_value_in_first_set_order() {
        let mut traced = Traced {
            trace: Arc::new(TraceBuf {
                trace_id: 1,
                spans: Mutex::new(Vec::new()),
            }),
            span_id: 2,
            parent_id: None,
            name: "chain".to_owned(),
            span_type: "CHAIN".to_owned(),
            start: SystemTime::now(),
            attributes: Vec::new(),
            events: Vec::new(),
            error: None,
        };
        traced.set("a", AttrValue::Json(Value::from(1)));
        traced.set("b", AttrValue::Json(Value::from(2)));
        traced.set("a", AttrValue::Json(Value::from(3)));
        let span = traced.finish(SystemTime::now());
        let keys: Vec<_> = span
            .encoded_attributes()
            .into_iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        assert_eq!(keys, ["mlflow.spanType=\"CHAIN\"", "a=3", "b=2"]);
        assert_eq!(span.attribute_text("a").as_deref(), Some("3"));
    }

    #[test]
    fn preview_is_cut_like_mlflow() {
        let long = "a".repeat(1500);
        let cut = preview(long);
        assert_eq!(cut.chars().count(), 1000);
        assert!(cut.ends_with("..."));
        assert_eq!(preview("short".to_owned()), "short");
    }
}
