//! What the rest of the crate calls to put MLflow span data on a [`TraceSpan`]: the LLM
//! client, the chain registry and chains use it without depending on the exporter.
//!
//! Large values (inputs, outputs, request and response bodies) are attributes of the
//! `TraceSpan`, not fields of a `tracing` span — log lines would print them. [`attribute`],
//! [`attributes`] and [`json_text`] each take a closure that is run only when the span is
//! traced, so an untraced run pays one check; what it gives is written into the trace's
//! buffer at once (a value as its JSON text, bytes copied), so it may borrow from the caller
//! (`|| &input`) instead of cloning.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde_json::Value;

use super::{live::TraceSpan, model::AttributeValue};

/// Whether a [`TraceLayer`](super::TraceLayer) was built and tracing is on in this process.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Whether spans may be traced in this process (a trace layer was built: tracing is on).
pub fn is_active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

pub(super) fn set_active(active: bool) {
    ACTIVE.store(active, Ordering::Relaxed);
}

/// Sets the attribute `key` of `span` to `value()` as JSON — run only when `span` is traced,
/// and serialised into the trace at once, on this thread and outside any lock (its
/// `Serialize` may log or record), so `value` may borrow (`|| &input`). MLflow keeps
/// every attribute as JSON text; a string value becomes `"text"`. A value that cannot be
/// serialised (a map whose keys are not strings) becomes a JSON string saying why. Set from
/// two threads at once, the key keeps the value whose serialising finished last.
pub fn attribute<V: Serialize>(span: &TraceSpan, key: &'static str, value: impl FnOnce() -> V) {
    if span.is_recording() {
        let value = value();
        span.record_foreign(|records, span_id| records.attribute_json(span_id, key, &value));
    }
}

/// Sets the attribute `key` of `span` to the JSON value `value` — when `span` is traced;
/// written straight into the trace (serialising a `Value` runs none of a caller's code, so
/// this skips the scratch [`attribute`] makes its record in). For what every prediction
/// records, as the chain's input and output.
///
/// # Examples
///
/// ```
/// let span = chainlog::trace::TraceSpan::new("summarize", "CHAIN");
/// chainlog::trace::json_value(&span, "mlflow.spanInputs", &serde_json::json!({"text": "…"}));
/// ```
pub fn json_value(span: &TraceSpan, key: &'static str, value: &Value) {
    span.record(|records, span_id| records.attribute_json(span_id, key, value));
}

/// Sets the attribute `key` of `span` to `text()`, which already is JSON text (a request body
/// as sent, UTF-8) — run only when `span` is traced, and copied into the trace at once, so
/// `text` may borrow (`|| &body[..]`).
pub fn json_text<T: AsRef<[u8]>>(span: &TraceSpan, key: &'static str, text: impl FnOnce() -> T) {
    if span.is_recording() {
        let text = text();
        let text: &[u8] = text.as_ref();
        span.record(|records, span_id| records.attribute_json_text(span_id, key, text));
    }
}

/// Sets every `(key, value)` of `values()` on `span` with one lock of its trace — run only
/// when `span` is traced. For the several attributes a finished call has at once; a number,
/// a flag or a `&'static str` costs no allocation (see [`AttributeValue`]).
///
/// # Examples
///
/// ```
/// let span = chainlog::trace::TraceSpan::new("llm.chat", "CHAT_MODEL");
/// chainlog::trace::attributes(&span, || [("mlflow.llm.provider", "openai".into()), ("attempts", 1_u32.into())]);
/// ```
pub fn attributes<I>(span: &TraceSpan, values: impl FnOnce() -> I)
where
    I: IntoIterator<Item = (&'static str, AttributeValue)>,
{
    if span.is_recording() {
        let values = values();
        span.record_foreign(|records, span_id| {
            for (key, value) in values {
                records.attribute(span_id, key, &value);
            }
        });
    }
}

/// [`attributes`] for values already made (`None`: not set), as a finished model call's: an
/// array, so that writing them runs none of a caller's code (no iterator's `next`), straight
/// into the trace under its lock, without the scratch `attributes` makes its records in —
/// what every traced model call records.
pub(crate) fn own_attributes<const N: usize>(
    span: &TraceSpan,
    values: [Option<(&'static str, AttributeValue)>; N],
) {
    span.record(|records, span_id| {
        for (key, value) in values.iter().flatten() {
            records.attribute(span_id, key, value);
        }
    });
}

/// Marks `span` failed with `message` (status ERROR; the trace is in state ERROR when its root
/// span fails).
pub fn fail(span: &TraceSpan, message: impl std::fmt::Display) {
    span.fail(&message);
}

/// The message of a span whose work was dropped before it finished.
pub const DROPPED_MESSAGE: &str =
    "dropped before it finished (the caller gave up: a timeout, a client gone)";

/// Marks its span failed with [`DROPPED_MESSAGE`] if dropped before
/// [`finished`](Self::finished): for work that is not one instrumented future (a stream read
/// chunk by chunk), whose span would otherwise end in state OK with no outputs when its reader
/// gives up. An instrumented future does this itself ([`TraceSpan::instrument`]).
#[derive(Debug)]
pub(crate) struct UntilFinished<'a> {
    span: &'a TraceSpan,
    finished: bool,
}

impl<'a> UntilFinished<'a> {
    /// Watches `span`.
    pub(crate) fn new(span: &'a TraceSpan) -> Self {
        Self {
            span,
            finished: false,
        }
    }

    /// The work came to its end (a success or an error of its own).
    pub(crate) fn finished(mut self) {
        self.finished = true;
    }
}

impl Drop for UntilFinished<'_> {
    fn drop(&mut self) {
        if !self.finished {
            fail(self.span, DROPPED_MESSAGE);
        }
    }
}

/// `error` and its sources, joined by `: ` (a failed span's message).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A `TOOL` span for one tool call, a child of the current span: `arguments` (the model's
/// JSON text) become its inputs — byte for byte, unless they hold escapes (then parsed and
/// written again) or are not JSON (then a JSON string). Enter it around the tool's work and
/// give it the tool's result with [`outputs`].
///
/// # Examples
///
/// ```
/// let span = chainlog::trace::tool_span("calculator", r#"{"expression":"2*3"}"#);
/// let result = span.in_scope(|| "6".to_owned());
/// chainlog::trace::outputs(&span, || &result);
/// ```
pub fn tool_span(name: &str, arguments: &str) -> TraceSpan {
    let span = TraceSpan::new(name.to_owned(), "TOOL");
    if span.is_recording() {
        // The model's arguments as they are when they are JSON without escapes; with
        // escapes, parsed and written again, so that a secret spelled with them (`\u002d`,
        // `\/`) is plain text for the export's scrubbing; not JSON, as a JSON string.
        match serde_json::from_str::<Value>(arguments) {
            Ok(_) if !arguments.contains('\\') => {
                json_text(&span, "mlflow.spanInputs", || arguments);
            }
            Ok(parsed) => attribute(&span, "mlflow.spanInputs", || &parsed),
            Err(_) => attribute(&span, "mlflow.spanInputs", || arguments),
        }
    }
    span
}

/// Sets the span's outputs (`mlflow.spanOutputs`), as [`attribute`] does.
pub fn outputs<V: Serialize>(span: &TraceSpan, value: impl FnOnce() -> V) {
    attribute(span, "mlflow.spanOutputs", value);
}

/// Sets the span's inputs (`mlflow.spanInputs`), as [`attribute`] does.
pub fn inputs<V: Serialize>(span: &TraceSpan, value: impl FnOnce() -> V) {
    attribute(span, "mlflow.spanInputs", value);
}
