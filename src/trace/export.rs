//! The export queue and its background worker: finished traces wait in a bounded queue and
//! one worker sends them, in batches, to the [`Destination`].
//!
//! Never at the expense of a prediction: pushing never waits (a full queue drops the trace
//! and counts its spans; the worker warns once), and a slow or dead destination only slows
//! the worker. The worker is an OS thread of its own with a single-threaded tokio runtime:
//! encoding, scrubbing and writing traces never take a worker of the prediction's runtime,
//! and predictions never wait for it. It sleeps [`LINGER`] between batches instead of waking
//! for every trace, so a push costs the calling thread one channel send. (Its CPU priority is
//! the process's: a lowered one — nice 19 or `SCHED_IDLE` — changed nothing measurable in
//! `chain_overhead` and cannot be raised back, unprivileged, for the flush at exit, which
//! then starves behind busy neighbours.) Traces queue up until a destination is given ([`Tracer::start`]):
//! `log` knows its run and model only after the input example ran.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Notify, mpsc, oneshot};

use super::{model::TraceRecord, otlp::OtlpSink, sqlite::SqliteSink};

/// How many finished traces may wait for export.
pub const QUEUE_CAPACITY: usize = 4096;

/// How long the worker lets traces gather before it sends them (a flush cuts it short).
pub(super) const LINGER: Duration = Duration::from_millis(200);

/// The most traces one OTLP request carries.
const MAX_OTLP_BATCH: usize = 256;

/// The most traces one SQLite transaction writes: a commit per 1,024 traces instead of per
/// 256 (`chain_overhead`: export CPU 190 → 156–180 µs per trace), while a transaction holds
/// the store's write lock for ~0.1 s at most.
const MAX_SQLITE_BATCH: usize = 1024;

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
    /// Wakes the worker from its linger when a flush is queued.
    flush_asked: Notify,
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
    Sqlite(Box<SqliteSink>),
}

impl Destination {
    /// The most traces one export takes: an OTLP request stays a few MiB; a SQLite
    /// transaction takes up to [`MAX_SQLITE_BATCH`].
    fn max_batch(&self) -> usize {
        match self {
            Self::Otlp(_) => MAX_OTLP_BATCH,
            Self::Sqlite(_) => MAX_SQLITE_BATCH,
        }
    }

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
                flush_asked: Notify::new(),
            }),
            rx: Mutex::new(Some(rx)),
            started: AtomicBool::new(false),
        }
    }

    pub(super) fn queue(&self) -> Arc<ExportQueue> {
        Arc::clone(&self.queue)
    }

    /// Starts sending queued and later traces to `destination` on the export thread (the
    /// first call wins; later ones are ignored). A thread that cannot be started leaves
    /// tracing off for the process, with one warning.
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
        let queue = Arc::clone(&self.queue);
        let spawned = std::thread::Builder::new()
            .name("chainlog-trace-export".to_owned())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(run(rx, destination, queue)),
                    Err(error) => tracing::warn!(
                        "cannot start the trace export: {error}; traces are not exported, \
                         predictions go on"
                    ),
                }
            });
        match spawned {
            Ok(_) => self.started.store(true, Ordering::Relaxed),
            Err(error) => tracing::warn!(
                "cannot start the trace export thread: {error}; traces are not exported, \
                 predictions go on"
            ),
        }
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
                self.queue.flush_asked.notify_one();
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

/// The worker: waits for a first trace, lets more gather for [`LINGER`] (cut short by a
/// flush), then exports everything queued in batches of at most the destination's
/// [`max_batch`](Destination::max_batch), answering
/// flushes in queue order; warns once per kind of trouble.
async fn run(mut rx: mpsc::Receiver<Item>, mut destination: Destination, queue: Arc<ExportQueue>) {
    let mut health = Health::default();
    while let Some(first) = rx.recv().await {
        let mut pending = Some(first);
        if matches!(pending, Some(Item::Trace(_))) {
            tokio::select! {
                () = tokio::time::sleep(LINGER) => {}
                () = queue.flush_asked.notified() => {}
            }
        }
        loop {
            let mut batch = Vec::new();
            let mut flush = None;
            while batch.len() < destination.max_batch() {
                let item = match pending.take() {
                    Some(item) => item,
                    None => match rx.try_recv() {
                        Ok(item) => item,
                        Err(_) => break,
                    },
                };
                match item {
                    Item::Trace(trace) => batch.push(trace),
                    Item::Flush(done) => {
                        flush = Some(done);
                        break;
                    }
                }
            }
            if batch.is_empty() && flush.is_none() {
                break;
            }
            if !batch.is_empty() && !health.dead {
                let result = destination.export(batch).await;
                health.note(result);
            }
            health.note_dropped(queue.dropped_spans());
            if let Some(done) = flush {
                let _ = done.send(());
            }
        }
    }
}

/// What the worker has already warned about.
#[derive(Debug, Default)]
struct Health {
    /// An export failed (said once).
    failed_once: bool,
    /// The destination cannot take traces: stop exporting.
    dead: bool,
    /// The queue overflowed (said once).
    dropped_warned: bool,
}

impl Health {
    fn note(&mut self, result: Result<(), ExportFailure>) {
        let Err(failure) = result else {
            return;
        };
        if failure.permanent {
            self.dead = true;
            tracing::warn!(
                "{}; traces are not exported, predictions go on",
                failure.message
            );
        } else if !self.failed_once {
            self.failed_once = true;
            tracing::warn!(
                "{}; those traces are dropped (said once), predictions go on",
                failure.message
            );
        }
    }

    fn note_dropped(&mut self, dropped: u64) {
        if dropped > 0 && !self.dropped_warned {
            self.dropped_warned = true;
            tracing::warn!(
                "the trace export queue is full ({QUEUE_CAPACITY} traces): {dropped} spans dropped \
                 so far (said once); predictions go on"
            );
        }
    }
}
