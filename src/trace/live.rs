//! Spans while they run: [`TraceSpan`], the MLflow span a chain, an LLM call or a tool call
//! records into; the span current on each thread, which makes the next span its child; and
//! [`TraceLayer`], which carries the export queue and the sampling ratio with the `tracing`
//! subscriber and turns events inside a traced span into its span events.
//!
//! These spans are chainlog's own, not the data of `tracing` spans: a `tracing` span that a
//! layer enables is kept in `tracing-subscriber`'s registry (a slot in its sharded slab, a
//! type map of extensions behind a lock, every layer's filter asked at each enter and exit),
//! which cost a traced call more than chainlog's own recording did (`benches/chain_overhead`).
//! A `TraceSpan` is one allocation holding its ids, name, start and error; what it records
//! goes into its trace's buffer (`packed`) under the trace's lock — made first in the
//! thread's scratch, outside any lock, when making it runs a caller's code (a value's
//! `Serialize`). The `tracing` spans beside it (for log lines) stay disabled unless the log
//! filter wants them.
//!
//! A span is current on a thread while a future [`instrument`](TraceSpan::instrument)ed with
//! it is polled (or dropped) there, or a closure runs [`in_scope`](TraceSpan::in_scope). A
//! span made with no current span starts a trace (its root) — when a [`TraceLayer`] is in the
//! thread's `tracing` subscriber; whether that trace is kept is drawn then
//! (`MLFLOW_TRACE_SAMPLING_RATIO`), and a trace not kept makes its descendants untraced too. A
//! span ends when its last handle is dropped and its children have ended (a child holds its
//! parent, as a `tracing` span does in the registry: a span carried into a task that outlives
//! the chain keeps the trace open until it ends); when the root ends, the trace goes to the
//! export queue in one piece, without waiting: a span never blocks a prediction. Work spawned
//! onto another task leaves the current span behind, as with `tracing` spans: instrument it
//! with [`TraceSpan::current`] to keep it in the trace.

use std::{
    borrow::Cow,
    cell::Cell,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
    task::{Context as TaskContext, Poll},
    time::SystemTime,
};

use tracing::{
    Event, Level, Metadata, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    Layer,
    filter::{FilterFn, Filtered, LevelFilter},
    layer::Context,
};

use super::{
    export::ExportQueue,
    model::{MAX_EVENTS, SpanEvent, TraceRecord, nonzero, random_id_bits},
    packed::{Records, SpanEnd},
    record::is_active,
};

/// An MLflow span, or nothing when the work is not traced (tracing off, no [`TraceLayer`] in
/// the subscriber, or a trace that sampling left out). Cloning gives another handle to the
/// same span; the span ends when the last handle is dropped and its children have ended.
///
/// # Examples
///
/// ```
/// use chainlog::trace::TraceSpan;
/// let span = TraceSpan::new("retrieve", "RETRIEVER");
/// let documents = span.in_scope(|| vec!["doc"]);
/// chainlog::trace::outputs(&span, || &documents);
/// ```
#[derive(Clone, Default)]
pub struct TraceSpan {
    state: State,
}

impl std::fmt::Debug for TraceSpan {
    /// The ids, not the data: attributes are unscrubbed text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            State::Off => f.write_str("TraceSpan(off)"),
            State::Unsampled => f.write_str("TraceSpan(unsampled)"),
            State::Live(live) => f
                .debug_struct("TraceSpan")
                .field("trace_id", &live.trace.trace_id)
                .field("span_id", &live.span_id)
                .finish_non_exhaustive(),
        }
    }
}

/// What a handle points at (and what is current on a thread).
#[derive(Clone, Default)]
enum State {
    /// Not traced, and no trace around it.
    #[default]
    Off,
    /// In a trace that sampling left out: its descendants are not traced either.
    Unsampled,
    /// A traced span.
    Live(Arc<LiveSpan>),
}

/// A traced span: its ids, its trace, its name, type and start. What it records goes
/// straight into its trace's buffer.
struct LiveSpan {
    trace: Arc<TraceBuf>,
    span_id: u64,
    /// `None` for the root. Held, so that a span ends after its children (as a `tracing`
    /// span in the registry does): one carried into a task that outlives its parent's work
    /// still lands in the trace before the root sends it.
    parent: Option<Arc<LiveSpan>>,
    name: Cow<'static, str>,
    span_type: &'static str,
    start: SystemTime,
    /// Events recorded so far (at most [`MAX_EVENTS`]).
    events: AtomicU32,
    /// The error message when the span failed (the latest; written with its end).
    error: Mutex<Option<String>>,
}

/// The trace a span belongs to: its id, what its spans recorded, and where it goes when the
/// root ends.
struct TraceBuf {
    trace_id: u128,
    records: Mutex<Records>,
    queue: Arc<ExportQueue>,
}

impl TraceBuf {
    /// Writes records with `f` into the trace's buffer, under its lock: `f` must run none of
    /// a caller's code (see [`record_foreign`](Self::record_foreign)).
    fn record(&self, f: impl FnOnce(&mut Records)) {
        f(&mut self.records());
    }

    /// Makes records with `f`, which may run a caller's code (a value's `Serialize`), in this
    /// thread's scratch, outside any lock, then appends them to the trace.
    fn record_foreign(&self, f: impl FnOnce(&mut Records)) {
        Records::with_scratch(|scratch| {
            f(scratch);
            if !scratch.is_empty() {
                self.records().append(scratch);
            }
        });
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

thread_local! {
    /// The span current on this thread.
    static CURRENT: Cell<State> = const { Cell::new(State::Off) };
}

/// The span current on this thread (a clone); none while the thread's locals are being
/// destroyed (a thread-local's `Drop` that logs: a panic there would abort the process).
fn current() -> State {
    CURRENT
        .try_with(|cell| {
            let state = cell.take();
            let copy = state.clone();
            cell.set(state);
            copy
        })
        .unwrap_or_default()
}

impl TraceSpan {
    /// A span named `name` of MLflow type `span_type` (`CHAIN`, `CHAT_MODEL`, `TOOL`,
    /// `RETRIEVER`, … — `mlflow.entities.SpanType`), a child of the current span, or the root
    /// of a new trace when there is none. Not traced when tracing is off.
    pub fn new(name: impl Into<Cow<'static, str>>, span_type: &'static str) -> Self {
        if !is_active() {
            return Self::default();
        }
        let state = match current() {
            State::Unsampled => State::Unsampled,
            State::Live(parent) => State::Live(Arc::new(LiveSpan::new(
                Arc::clone(&parent.trace),
                Some(parent),
                name.into(),
                span_type,
            ))),
            State::Off => match TraceLayer::installed() {
                None => State::Off,
                Some((_, ratio)) if !sampled(ratio) => State::Unsampled,
                Some((queue, _)) => {
                    let trace = Arc::new(TraceBuf {
                        trace_id: TraceRecord::new_trace_id(),
                        records: Mutex::new(Records::for_trace()),
                        queue,
                    });
                    State::Live(Arc::new(LiveSpan::new(trace, None, name.into(), span_type)))
                }
            },
        };
        Self { state }
    }

    /// The span current on this thread (not traced when there is none): to carry it into
    /// work spawned onto another task.
    pub fn current() -> Self {
        Self { state: current() }
    }

    /// Whether the span records (a traced span): what is worth preparing for it.
    pub fn is_recording(&self) -> bool {
        matches!(self.state, State::Live(_))
    }

    /// Runs `f` with this span current on this thread.
    pub fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        let _entered = self.enter();
        f()
    }

    /// `future`, with this span current on the thread while it is polled or dropped; dropped
    /// before it finished (a timeout, a caller gone), it fails the span with
    /// [`DROPPED_MESSAGE`](super::DROPPED_MESSAGE).
    pub fn instrument<F: Future>(self, future: F) -> Instrumented<F> {
        Instrumented {
            inner: Some(future),
            span: self,
        }
    }

    /// Makes this span current until the guard is dropped. A span that is not traced and in no
    /// trace leaves the current span as it is (so does any span while the thread's locals are
    /// being destroyed).
    fn enter(&self) -> Entered {
        Entered {
            previous: match self.state {
                State::Off => None,
                _ => CURRENT
                    .try_with(|cell| cell.replace(self.state.clone()))
                    .ok(),
            },
        }
    }

    /// Writes records for this span with `f` (given the span's id) into its trace, when it
    /// is traced — under the trace's lock: `f` must run none of a caller's code.
    pub(super) fn record(&self, f: impl FnOnce(&mut Records, u64)) {
        if let State::Live(live) = &self.state {
            live.trace.record(|records| f(records, live.span_id));
        }
    }

    /// [`record`](Self::record) for an `f` that may run a caller's code: it runs outside any
    /// lock (see [`TraceBuf::record_foreign`]).
    pub(super) fn record_foreign(&self, f: impl FnOnce(&mut Records, u64)) {
        if let State::Live(live) = &self.state {
            live.trace
                .record_foreign(|records| f(records, live.span_id));
        }
    }

    /// Fails the span with `message`, replacing an earlier error (the message is made before
    /// any lock is taken: its `Display` is the caller's code).
    pub(super) fn fail(&self, message: &dyn std::fmt::Display) {
        if let State::Live(live) = &self.state {
            let message = message.to_string();
            *live.error.lock().unwrap_or_else(PoisonError::into_inner) = Some(message);
        }
    }
}

/// Puts back the span that was current.
struct Entered {
    previous: Option<State>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            // Entered, so the slot is there: its thread's locals were not being destroyed.
            let _ = CURRENT.try_with(|cell| cell.set(previous));
        }
    }
}

pin_project_lite::pin_project! {
    /// A future with a span current while it is polled ([`TraceSpan::instrument`]), and while
    /// it is dropped: what its work logs or makes as it is dropped part-way (a timeout, a
    /// client gone) is in the span, as with `tracing`'s `Instrumented`. Dropped before it
    /// finished, it fails the span with [`DROPPED_MESSAGE`](super::DROPPED_MESSAGE): the work
    /// was given up, not done (a later error of the caller's own replaces the message).
    #[derive(Debug)]
    pub struct Instrumented<F> {
        // `None` once it finished (dropped then, in the span).
        #[pin]
        inner: Option<F>,
        span: TraceSpan,
    }

    impl<F> PinnedDrop for Instrumented<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.inner.as_ref().get_ref().is_some() {
                let _entered = this.span.enter();
                super::fail(this.span, super::DROPPED_MESSAGE);
                this.inner.set(None);
            }
        }
    }
}

impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            panic!("an Instrumented future was polled after it finished");
        };
        let poll = inner.poll(cx);
        if poll.is_ready() {
            this.inner.set(None);
        }
        poll
    }
}

fn sampled(ratio: f64) -> bool {
    ratio >= 1.0 || rand::random::<f64>() < ratio
}

impl LiveSpan {
    fn new(
        trace: Arc<TraceBuf>,
        parent: Option<Arc<LiveSpan>>,
        name: Cow<'static, str>,
        span_type: &'static str,
    ) -> Self {
        Self {
            trace,
            span_id: nonzero(random_id_bits()),
            parent,
            name,
            span_type,
            start: SystemTime::now(),
            events: AtomicU32::new(0),
            error: Mutex::new(None),
        }
    }
}

impl Drop for LiveSpan {
    /// The span ends (its handles and its children are gone): its end goes into its trace's
    /// buffer, and the root sends the trace to the export queue. Its parent is let go after,
    /// and may end then.
    fn drop(&mut self) {
        let error = self
            .error
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let end = SpanEnd {
            span_id: self.span_id,
            parent_id: self.parent.as_ref().map(|parent| parent.span_id),
            start: self.start,
            end: SystemTime::now(),
            name: &self.name,
            span_type: self.span_type,
            error: error.as_deref(),
        };
        let mut records = self.trace.records();
        records.end_span(&end);
        if self.parent.is_none() {
            let trace = records.finish(self.trace.trace_id, self.trace.queue.take_buffer());
            drop(records);
            self.trace.queue.push(trace);
        }
    }
}

/// The `tracing` layer that carries the export queue and the sampling ratio with the
/// subscriber (a span made with no current span looks for it there to start a trace), and
/// makes each event at INFO or above (retries are WARN) its current span's event. Install it
/// [`filtered`](Self::filtered): it takes events only, so it never makes the registry keep a
/// span.
#[derive(Debug)]
pub struct TraceLayer {
    queue: Arc<ExportQueue>,
    /// The share of traces kept, 0.0 to 1.0.
    sampling_ratio: f64,
}

/// The filter [`TraceLayer`] is installed with: events at INFO or above, no span.
pub type TraceFilter = FilterFn<fn(&Metadata<'_>) -> bool>;

/// Whether the layer takes what `metadata` describes: an event at INFO or above.
fn traced_event(metadata: &Metadata<'_>) -> bool {
    metadata.is_event() && *metadata.level() <= Level::INFO
}

impl TraceLayer {
    pub(super) fn new(queue: Arc<ExportQueue>, sampling_ratio: f64) -> Self {
        Self {
            queue,
            sampling_ratio,
        }
    }

    /// The layer with its per-layer filter ([`TraceFilter`]), to install beside the log lines.
    pub fn filtered<S>(self) -> Filtered<Self, TraceFilter, S>
    where
        S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let filter: TraceFilter = FilterFn::new(traced_event as fn(&Metadata<'_>) -> bool)
            .with_max_level_hint(LevelFilter::INFO);
        self.with_filter(filter)
    }

    /// The queue and sampling ratio of the layer in this thread's subscriber, if it has one.
    fn installed() -> Option<(Arc<ExportQueue>, f64)> {
        tracing::dispatcher::get_default(|dispatch| {
            dispatch
                .downcast_ref::<Self>()
                .map(|layer| (Arc::clone(&layer.queue), layer.sampling_ratio))
        })
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

impl<S: Subscriber> Layer<S> for TraceLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let State::Live(live) = current() else {
            return;
        };
        if live.events.fetch_add(1, Ordering::Relaxed) >= MAX_EVENTS {
            live.events.store(MAX_EVENTS, Ordering::Relaxed);
            return;
        }
        // The fields are read without the trace's lock: their `Debug` and `Display` run the
        // caller's code, which may log (an event dispatched again, here) or set the span's
        // attributes.
        let time = SystemTime::now();
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let event = SpanEvent {
            name: fields
                .message
                .unwrap_or_else(|| event.metadata().name().to_owned()),
            time,
            attributes: fields.fields,
        };
        live.trace
            .record(|records| records.event(live.span_id, &event));
    }
}
