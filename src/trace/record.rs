//! What the rest of the crate calls to put MLflow span data on a `tracing` span: the leaf of
//! the trace module (it depends on nothing but `tracing` and `tracing-subscriber`), so the
//! LLM client and chains can use it without depending on the exporter.
//!
//! A `tracing` span becomes an MLflow span when it is created with the field
//! [`SPAN_TYPE_FIELD`] (`mlflow.spanType = "CHAIN"`) and the [`TraceLayer`](super::TraceLayer)
//! is installed. Large values (inputs, outputs, request and response bodies) are not `tracing`
//! fields — log lines would print them — but attributes attached to the span's data in the
//! subscriber's registry by [`attribute`], [`attributes`] and [`json_text`]. Each takes a
//! closure (or shares bytes) that is run only when the span is being traced, so an untraced
//! run pays one atomic load.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use serde_json::Value;
use tracing::Span;
use tracing_subscriber::{Registry, registry::LookupSpan};

use super::model::{AttributeValue, Traced};

/// The field that makes a `tracing` span an MLflow span; its value is the MLflow span type
/// (`CHAIN`, `CHAT_MODEL`, `TOOL`, …).
pub const SPAN_TYPE_FIELD: &str = "mlflow.spanType";

/// Whether a [`TraceLayer`](super::TraceLayer) is installed and tracing is on.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Whether spans are being traced in this process (a layer is installed and tracing is on).
pub fn is_active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

pub(super) fn set_active(active: bool) {
    ACTIVE.store(active, Ordering::Relaxed);
}

/// Sets the attribute `key` of `span` to the JSON value `value()` — run only when `span` is
/// traced. MLflow keeps every attribute as JSON text; a string value becomes `"text"`.
pub fn attribute(span: &Span, key: &'static str, value: impl FnOnce() -> Value) {
    with_traced(span, |traced| {
        traced.set(key, AttributeValue::Json(value()))
    });
}

/// Sets the attribute `key` of `span` to `text()`, which already is JSON text (a request body
/// as sent, UTF-8) — run only when `span` is traced. Hand over shared bytes where the caller
/// owns them (`body.clone()`); the export reads them as text in the background.
pub fn json_text(span: &Span, key: &'static str, text: impl FnOnce() -> Bytes) {
    with_traced(span, |traced| {
        traced.set(key, AttributeValue::JsonText(text()))
    });
}

/// Sets every `(key, value)` of `values()` on `span` with one lookup of its trace data — run
/// only when `span` is traced. For the several attributes a finished call has at once; a
/// number, a flag or a `&'static str` costs no allocation (see [`AttributeValue`]).
///
/// # Examples
///
/// ```
/// let span = tracing::info_span!("llm.chat", mlflow.spanType = "CHAT_MODEL");
/// chainlog::trace::attributes(&span, || [("mlflow.llm.provider", "openai".into()), ("attempts", 1_u32.into())]);
/// ```
pub fn attributes<I>(span: &Span, values: impl FnOnce() -> I)
where
    I: IntoIterator<Item = (&'static str, AttributeValue)>,
{
    with_traced(span, |traced| {
        for (key, value) in values() {
            traced.set(key, value);
        }
    });
}

/// A span's inputs, held so that they are set together with its outputs when the work ends
/// (one lookup of the span's trace data instead of two); set on their own if this is
/// dropped still holding them — the work was dropped before its end (a caller that gave up,
/// a timeout), and its span keeps what it was given.
///
/// It holds a handle to the span: keep it no longer than the work (a span closes, and its
/// trace is exported, only when its last handle is dropped). It holds whenever tracing is on
/// and the span enabled — also for a span that sampling left out, whose inputs are then
/// dropped unused (cheaper than asking the registry first on every traced call).
///
/// # Examples
///
/// ```
/// use chainlog::trace::PendingInputs;
/// let span = tracing::info_span!("chain", mlflow.spanType = "CHAIN");
/// let mut inputs = PendingInputs::new(&span);
/// inputs.hold(|| serde_json::json!({"text": "hi"}).into());
/// // … the work …
/// chainlog::trace::attributes(&span, || {
///     inputs.take().map(|value| ("mlflow.spanInputs", value)).into_iter()
///         .chain([("mlflow.spanOutputs", serde_json::json!("ok").into())])
/// });
/// ```
pub struct PendingInputs {
    /// The span, while it may be traced (tracing on and the span enabled).
    span: Option<Span>,
    inputs: Option<AttributeValue>,
}

impl std::fmt::Debug for PendingInputs {
    /// Not the inputs: they are unscrubbed text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingInputs")
            .field("holding", &self.inputs.is_some())
            .finish_non_exhaustive()
    }
}

impl PendingInputs {
    /// Holds nothing yet, for `span`.
    pub fn new(span: &Span) -> Self {
        Self {
            span: (is_active() && !span.is_disabled()).then(|| span.clone()),
            inputs: None,
        }
    }

    /// Holds `inputs()` — run only when the span may be traced.
    pub fn hold(&mut self, inputs: impl FnOnce() -> AttributeValue) {
        if self.span.is_some() {
            self.inputs = Some(inputs());
        }
    }

    /// Whether the span may be traced (tracing on and the span enabled): what [`hold`](Self::hold)
    /// holds for.
    pub fn may_trace(&self) -> bool {
        self.span.is_some()
    }

    /// The inputs held, to be set with the span's other attributes.
    pub fn take(&mut self) -> Option<AttributeValue> {
        self.inputs.take()
    }
}

impl Drop for PendingInputs {
    fn drop(&mut self) {
        if let (Some(span), Some(inputs)) = (&self.span, self.inputs.take()) {
            with_traced(span, |traced| traced.set("mlflow.spanInputs", inputs));
        }
    }
}

/// Marks `span` failed with `message` (status ERROR; the trace is in state ERROR when its root
/// span fails).
pub fn fail(span: &Span, message: impl std::fmt::Display) {
    with_traced(span, |traced| traced.error = Some(message.to_string()));
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
/// JSON text) become its inputs. Enter it around the tool's work and give it the tool's
/// result with [`outputs`].
///
/// # Examples
///
/// ```
/// let span = chainlog::trace::tool_span("calculator", r#"{"expression":"2*3"}"#);
/// let result = span.in_scope(|| "6".to_owned());
/// chainlog::trace::outputs(&span, || serde_json::json!(result));
/// ```
pub fn tool_span(name: &str, arguments: &str) -> Span {
    let span = tracing::info_span!("tool", mlflow.spanType = "TOOL", tool = %name);
    with_traced(&span, |traced| {
        traced.name = std::borrow::Cow::Owned(name.to_owned());
        let inputs =
            serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_owned()));
        traced.set("mlflow.spanInputs", AttributeValue::Json(inputs));
    });
    span
}

/// Sets the span's outputs (`mlflow.spanOutputs`).
pub fn outputs(span: &Span, value: impl FnOnce() -> Value) {
    attribute(span, "mlflow.spanOutputs", value);
}

/// Sets the span's inputs (`mlflow.spanInputs`).
pub fn inputs(span: &Span, value: impl FnOnce() -> Value) {
    attribute(span, "mlflow.spanInputs", value);
}

/// Runs `f` on the trace data of `span` when it has some.
fn with_traced(span: &Span, f: impl FnOnce(&mut Traced)) {
    if !is_active() {
        return;
    }
    span.with_subscriber(|(id, dispatch)| {
        let Some(registry) = dispatch.downcast_ref::<Registry>() else {
            return;
        };
        let Some(data) = registry.span(id) else {
            return;
        };
        let mut extensions = data.extensions_mut();
        if let Some(traced) = extensions.get_mut::<Traced>() {
            f(traced);
        }
    });
}
