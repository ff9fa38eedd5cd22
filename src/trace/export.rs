//! The export queue and its background worker: finished traces wait in a bounded queue and
//! one tokio task sends them, in batches, to the [`Destination`].
//!
//! Never at the expense of a prediction: pushing never waits (a full queue drops the trace
//! and counts its spans; the worker warns once), and a slow or dead destination only slows
//! the worker. Traces queue up until a destination is given ([`Tracer::start`]): `log` knows
//! its run and model only after the input example ran.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};

use super::{model::TraceRecord, otlp::OtlpSink, sqlite::SqliteSink};

/// How many finished traces may wait for export.
pub const QUEUE_CAPACITY: usize = 4096;

/// How long the worker gathers traces before it sends them.
const LINGER: std::time::Duration = std::time::Duration::from_millis(200);

/// The most traces one export request carries.
const MAX_BATCH: usize = 256;

/// What goes through the queue.
enum Item {
    Trace(TraceRecord),
    /// Answered once every trace queued before it was handled.
    Flush(oneshot::Sender<()>),
}

/// The sending side, shared by the layer.
#[derive(Debug)]
pub struct ExportQueue {
    tx: mpsc::Sender<Item>,
    /// Spans dropped because the queue was full.
    dropped: AtomicU64,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Trace(_) => "Trace",
            Self::Flush(_) => "Flush",
        })
    }
}

impl ExportQueue {
    /// Queues `trace`, or drops it (counting its spans) when the queue is full.
    pub(super) fn push(&self, trace: TraceRecord) {
        let spans = trace.spans.len() as u64;
        if self.tx.try_send(Item::Trace(trace)).is_err() {
            self.dropped.fetch_add(spans, Ordering::Relaxed);
        }
    }

    /// Spans dropped so far because the queue was full.
    pub fn dropped_spans(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Where traces go.
#[derive(Debug)]
pub enum Destination {
    /// OTLP/HTTP to an MLflow server (then its REST API for the trace metadata) or to the
    /// collector `OTEL_EXPORTER_OTLP_*` names.
    Otlp(Box<OtlpSink>),
    /// MLflow's rows in a SQLite tracking store.
    Sqlite(SqliteSink),
}

impl Destination {
    /// Sends `traces`; `Err` is a message for a warning.
    async fn export(&mut self, traces: Vec<TraceRecord>) -> Result<(), ExportFailure> {
        match self {
            Self::Otlp(sink) => sink.export(traces).await,
            Self::Sqlite(sink) => sink.export(traces).await,
        }
    }
}

/// Why an export failed.
#[derive(Debug)]
pub(crate) struct ExportFailure {
    /// Said once, in a warning.
    pub message: String,
    /// The destination cannot take traces at all (no OTLP endpoint): stop trying.
    pub permanent: bool,
}

/// The handle the CLI holds: starts the worker once a destination is known, flushes at exit.
#[derive(Debug)]
pub struct Tracer {
    /// Whether tracing is on (a layer was made).
    pub(super) enabled: bool,
    /// `--trace-tag` pairs, on every trace.
    pub(super) tags: Vec<(String, String)>,
    queue: Arc<ExportQueue>,
    rx: Mutex<Option<mpsc::Receiver<Item>>>,
    started: AtomicBool,
}

impl Tracer {
    pub(super) fn new(enabled: bool, tags: Vec<(String, String)>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        Self {
            enabled,
            tags,
            queue: Arc::new(ExportQueue {
                tx,
                dropped: AtomicU64::new(0),
            }),
            rx: Mutex::new(Some(rx)),
            started: AtomicBool::new(false),
        }
    }

    pub(super) fn queue(&self) -> Arc<ExportQueue> {
        Arc::clone(&self.queue)
    }

    /// Starts sending queued and later traces to `destination` (the first call wins; later
    /// ones are ignored). Must run inside a tokio runtime.
    pub fn start(&self, destination: Destination) {
        let rx = self
            .rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(rx) = rx else {
            tracing::debug!("trace export already started");
            return;
        };
        self.started.store(true, Ordering::Relaxed);
        tokio::spawn(run(rx, destination, Arc::clone(&self.queue)));
    }

    /// Waits (at most `timeout`) until every trace queued so far was handled. Without a
    /// destination there is nothing to wait for: queued traces are dropped.
    pub async fn flush(&self, timeout: Duration) {
        if !self.started.load(Ordering::Relaxed) {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let done = async {
            if self.queue.tx.send(Item::Flush(tx)).await.is_ok() {
                let _ = rx.await;
            }
        };
        if tokio::time::timeout(timeout, done).await.is_err() {
            tracing::warn!(
                "traces not all exported within {} s at exit; the rest are dropped",
                timeout.as_secs()
            );
        }
    }

    /// Spans dropped so far because the queue was full.
    pub fn dropped_spans(&self) -> u64 {
        self.queue.dropped_spans()
    }

    /// The traces queued so far (tests: no worker runs).
    #[cfg(test)]
    pub(super) fn take_queued(&self) -> Vec<TraceRecord> {
        let mut guard = self
            .rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut traces = Vec::new();
        if let Some(rx) = guard.as_mut() {
            while let Ok(item) = rx.try_recv() {
                if let Item::Trace(trace) = item {
                    traces.push(trace);
                }
            }
        }
        traces
    }
}

/// The worker: batches what is queued, exports, answers flushes; warns once per kind of
/// trouble.
async fn run(mut rx: mpsc::Receiver<Item>, mut destination: Destination, queue: Arc<ExportQueue>) {
    let mut failed_once = false;
    let mut dead = false;
    let mut dropped_warned = false;
    let mut batch = Vec::new();
    while let Some(item) = rx.recv().await {
        let mut flush = None;
        let mut next = Some(item);
        // Gather for up to LINGER (or MAX_BATCH traces, or a flush): one request or one
        // SQLite transaction carries many traces even when they come one at a time.
        let deadline = tokio::time::Instant::now() + LINGER;
        while let Some(item) = next.take() {
            match item {
                Item::Trace(trace) => batch.push(trace),
                Item::Flush(done) => {
                    flush = Some(done);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = tokio::time::timeout_at(deadline, rx.recv())
                    .await
                    .ok()
                    .flatten();
            }
        }
        if !batch.is_empty()
            && !dead
            && let Err(failure) = destination.export(std::mem::take(&mut batch)).await
        {
            if failure.permanent {
                dead = true;
                tracing::warn!(
                    "{}; traces are not exported, predictions go on",
                    failure.message
                );
            } else if !failed_once {
                failed_once = true;
                tracing::warn!(
                    "{}; those traces are dropped (said once), predictions go on",
                    failure.message
                );
            }
        }
        batch.clear();
        let dropped = queue.dropped_spans();
        if dropped > 0 && !dropped_warned {
            dropped_warned = true;
            tracing::warn!(
                "the trace export queue is full ({QUEUE_CAPACITY} traces): {dropped} spans dropped \
                 so far (said once); predictions go on"
            );
        }
        if let Some(done) = flush {
            let _ = done.send(());
        }
    }
}
