//! [`TraceLayer`]: a `tracing-subscriber` layer that turns spans carrying
//! [`SPAN_TYPE_FIELD`](super::SPAN_TYPE_FIELD) into MLflow spans and hands each finished trace
//! to the export queue.
//!
//! A traced span with no traced ancestor starts a trace (its root); whether that trace is
//! kept is drawn then (`MLFLOW_TRACE_SAMPLING_RATIO`), and a trace not kept marks its root so
//! that its descendants are skipped too. Events (at INFO or above: retries are WARN) inside a
//! traced span become its span events. When the root closes, its spans go to the queue in one
//! piece, without waiting: the layer never blocks a prediction.

use std::{
    borrow::Cow,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id},
};
use tracing_subscriber::{Layer, layer::Context, registry::LookupSpan};

use super::{
    SPAN_TYPE_FIELD,
    export::ExportQueue,
    model::{MAX_EVENTS, SpanEvent, TraceBuf, TraceRecord, Traced, nonzero},
};

/// The layer. Install it with a per-layer filter at INFO (spans are INFO) on a registry.
#[derive(Debug)]
pub struct TraceLayer {
    queue: Arc<ExportQueue>,
    /// The share of traces kept, 0.0 to 1.0.
    sampling_ratio: f64,
}

/// Marks the root of a trace not kept by sampling, so its descendants are skipped.
struct Unsampled;

impl TraceLayer {
    pub(super) fn new(queue: Arc<ExportQueue>, sampling_ratio: f64) -> Self {
        Self {
            queue,
            sampling_ratio,
        }
    }

    fn sampled(&self) -> bool {
        self.sampling_ratio >= 1.0 || rand::random::<f64>() < self.sampling_ratio
    }
}

/// Reads a new span's type and, for a chain span, its chain name, in one pass over its
/// fields.
#[derive(Default)]
struct NewSpanFields {
    span_type: Option<Cow<'static, str>>,
    chain: Option<Cow<'static, str>>,
}

/// MLflow's span types (`mlflow.entities.SpanType`, 3.17.2): a span of one of these types
/// keeps its type without an allocation.
const SPAN_TYPES: [&str; 15] = [
    "CHAIN",
    "CHAT_MODEL",
    "LLM",
    "TOOL",
    "AGENT",
    "RETRIEVER",
    "EMBEDDING",
    "RERANKER",
    "PARSER",
    "MEMORY",
    "GUARDRAIL",
    "EVALUATOR",
    "WORKFLOW",
    "TASK",
    "UNKNOWN",
];

impl NewSpanFields {
    fn slot(&mut self, field: &Field) -> Option<&mut Option<Cow<'static, str>>> {
        match field.name() {
            SPAN_TYPE_FIELD => Some(&mut self.span_type),
            "chain" => Some(&mut self.chain),
            _ => None,
        }
    }
}

impl Visit for NewSpanFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == SPAN_TYPE_FIELD {
            let known = SPAN_TYPES.iter().find(|known| **known == value);
            self.span_type = Some(known.map_or_else(
                || Cow::Owned(value.to_owned()),
                |known| Cow::Borrowed(*known),
            ));
        } else if let Some(slot) = self.slot(field) {
            *slot = Some(Cow::Owned(value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if let Some(slot) = self.slot(field) {
            // `chain = %name` arrives here: its text, without the quotes a `Debug` of a
            // string adds.
            let mut text = format!("{value:?}");
            if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
                text.pop();
                text.remove(0);
            }
            *slot = Some(Cow::Owned(text));
        }
    }
}

/// An event's message and other fields, as text.
#[derive(Default)]
struct EventFields {
    message: Option<String>,
    fields: Vec<(String, String)>,
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        } else {
            self.fields
                .push((field.name().to_owned(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = Some(text);
        } else {
            self.fields.push((field.name().to_owned(), text));
        }
    }
}

impl<S> Layer<S> for TraceLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().fields().field(SPAN_TYPE_FIELD).is_none() {
            return;
        }
        let mut fields = NewSpanFields::default();
        attrs.record(&mut fields);
        let Some(span_type) = fields.span_type else {
            return;
        };
        let Some(span) = ctx.span(id) else {
            return;
        };
        // The nearest ancestor that is traced, or the root of a trace not kept.
        let parent = span.scope().skip(1).find_map(|ancestor| {
            let extensions = ancestor.extensions();
            if let Some(traced) = extensions.get::<Traced>() {
                Some(Some((Arc::clone(&traced.trace), traced.span_id)))
            } else if extensions.get::<Unsampled>().is_some() {
                Some(None)
            } else {
                None
            }
        });
        let (trace, parent_id) = match parent {
            Some(Some((trace, parent_id))) => (trace, Some(parent_id)),
            Some(None) => return,
            None if !self.sampled() => {
                span.extensions_mut().insert(Unsampled);
                return;
            }
            None => {
                let trace = Arc::new(TraceBuf {
                    trace_id: TraceRecord::new_trace_id(),
                    spans: Mutex::new(Vec::new()),
                });
                (trace, None)
            }
        };
        // A chain span is named after its chain.
        let name = fields
            .chain
            .unwrap_or(Cow::Borrowed(attrs.metadata().name()));
        // A model call sets ten or so attributes; others a few.
        let capacity = if span_type == "CHAT_MODEL" { 12 } else { 4 };
        span.extensions_mut().insert(Traced {
            trace,
            span_id: nonzero(rand::random::<u64>()),
            parent_id,
            name,
            span_type,
            start: SystemTime::now(),
            attributes: Vec::with_capacity(capacity),
            events: Vec::new(),
            error: None,
        });
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            let mut extensions = span.extensions_mut();
            if let Some(traced) = extensions.get_mut::<Traced>() {
                if traced.events.len() < MAX_EVENTS {
                    let mut fields = EventFields::default();
                    event.record(&mut fields);
                    traced.events.push(SpanEvent {
                        name: fields
                            .message
                            .unwrap_or_else(|| event.metadata().name().to_owned()),
                        time: SystemTime::now(),
                        attributes: fields.fields,
                    });
                }
                return;
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(traced) = span.extensions_mut().remove::<Traced>() else {
            return;
        };
        let trace = Arc::clone(&traced.trace);
        let root = traced.parent_id.is_none();
        let record = traced.finish(SystemTime::now());
        let mut spans = trace
            .spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        spans.push(record);
        if root {
            let spans = std::mem::take(&mut *spans);
            self.queue.push(TraceRecord {
                trace_id: trace.trace_id,
                spans,
            });
        }
    }
}
