//! The export queue and the two threads that empty it: finished traces wait in a bounded,
//! lock-free queue; a background thread sends them in batches to its [`Destination`], and a
//! flush (at exit, after `serve`'s graceful shutdown) sends what is left from a thread of its
//! own, with a destination of its own.
//!
//! Never at the expense of a prediction:
//!
//! - Pushing a trace takes no lock and never waits for an export thread: the queue is
//!   crossbeam's `SegQueue` (a push waits at most for another push, never for a pop) bounded
//!   by a counter; a full queue drops the trace and counts its spans (one warning, said by the
//!   flush thread within seconds, at normal priority, and the total again at exit).
//! - For `serve` ([`ExportPriority::Idle`]; the commands that end on their own use `Normal`,
//!   see below) the background thread runs at Linux's `SCHED_IDLE` priority: it gets a CPU only when no
//!   thread of normal priority on the machine wants one (the predictions', any other
//!   process's). With CPU to spare (the usual case: an LLM call waits, it does not compute)
//!   every trace is exported within [`LINGER`] and its batch's write; while the CPUs are kept
//!   busy the queue fills and traces are dropped and counted rather than predictions slowed —
//!   `benches/serve_tracing.rs` measures both. (At normal priority, writing a trace into
//!   MLflow's SQLite schema — ~40 b-tree inserts — costs about as much CPU as serving the
//!   request with the mock: `serve` lost a third of its requests per second.) The cost: a
//!   process exits only once each of its threads got a CPU, so while other processes keep
//!   every CPU busy, the exit waits for the idle thread's turn (a fraction of a second to
//!   seconds).
//! - An unprivileged thread cannot leave `SCHED_IDLE`, and an idle-priority thread may wait
//!   long for a CPU behind busy neighbours; so a flush is not its work: the flush thread, at
//!   normal priority, takes the traces still queued and exports them itself. A SQLite write
//!   the background thread is in the middle of stops at its next `INSERT` of many rows
//!   (at most 64 rows later) when a flush begins (rolled back, its traces put back for the
//!   flush to write), so the flush waits only until that thread next gets a CPU for a
//!   moment; an OTLP request in flight is waited for.
//!   The two threads share no lock of their own — the queue is lock-free, the state atomic;
//!   only SQLite's write lock, which a starved background transaction holds until it gets
//!   the CPU to notice the flush (or, without one, to finish: other processes' writers wait
//!   that long). [`ExportPriority::Normal`] keeps the process's priority instead (the CLI's
//!   choice for every command but `serve`, so that an idle thread never holds up their exit;
//!   `CHAINLOG_TRACE_EXPORT_PRIORITY` overrides it).
//!
//! Once a batch is written (or given up), its traces' blocks go back to the queue, emptied,
//! for traces that end later to be copied into ([`ExportQueue::take_buffer`]; at most
//! `SPARE_BUFFERS` of them): a traced prediction then usually allocates nothing for its trace.
//!
//! Each thread has its own single-threaded tokio runtime for the destination's I/O: exports
//! never take a worker of the prediction's runtime. Traces queue up until a destination is
//! given ([`Tracer::start`]): `log` knows its run and model only after the input example ran.

use std::{
    sync::{
        Arc, OnceLock, Weak,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc as std_mpsc,
    },
    thread::Thread,
    time::{Duration, Instant},
};

use crossbeam_queue::{ArrayQueue, SegQueue};
use tokio::{runtime::Runtime, sync::oneshot};

use super::{
    ExportPriority,
    model::TraceRecord,
    otlp::OtlpSink,
    packed::{MAX_KEPT_BUFFER, PackedTrace},
    sqlite::{SqliteSink, Written},
};

/// How many finished traces may wait for export.
pub const QUEUE_CAPACITY: usize = 4096;

/// How long the background thread lets traces gather before it sends them.
pub(super) const LINGER: Duration = Duration::from_millis(200);

/// The most traces one OTLP request carries.
const MAX_OTLP_BATCH: usize = 256;

/// The most traces one SQLite transaction of a flush writes: a commit per 1,024 traces
/// instead of per 256 (`chain_overhead`: export CPU 190 → 156–180 µs per trace), while a
/// transaction holds the store's write lock for ~0.1 s at most.
const MAX_SQLITE_BATCH: usize = 1024;

/// The most traces the background thread takes from the queue at a time, in one SQLite
/// transaction (~0.1 s of CPU; a starved idle-priority thread takes longer to get it, and
/// holds the store's write lock meanwhile, unless a flush stops it). Larger
/// batches mean fewer commits, and fewer fsyncs: the kernel writes them back at normal
/// priority, whatever the priority of the thread that asked.
pub(super) const BACKGROUND_BATCH: usize = 512;

/// How many exported traces' blocks are kept for the traces that end later to be copied into
/// ([`Records::finish`](super::packed::Records::finish)), instead of being freed by the export
/// thread while the prediction's thread allocates new ones: a traced prediction then usually
/// allocates nothing for its trace, in memory that stays the process's (no page to fault in
/// again). One background batch's worth; at most `SPARE_BUFFERS` ×
/// [`MAX_KEPT_BUFFER`] = 8 MiB held, about 1 MiB for traces of a chain and a model call
/// (~2 KiB each). `benches/chain_overhead` ("traced/untraced") measures it.
const SPARE_BUFFERS: usize = BACKGROUND_BATCH;

/// How often the flush thread, between flushes, checks whether the queue overflowed, to say
/// so even while the background thread gets no CPU.
const OVERFLOW_CHECK: Duration = Duration::from_secs(2);

/// The queue, shared by the layer (which pushes) and the two export threads (which pop).
#[derive(Debug)]
pub struct ExportQueue {
    traces: SegQueue<PackedTrace>,
    /// Traces in `traces` (or about to be): the bound.
    len: AtomicUsize,
    /// Spans dropped because the queue was full.
    dropped: AtomicU64,
    /// The background thread, woken by a push.
    background: OnceLock<Thread>,
    /// Blocks of exported traces, emptied, for traces that end later to be copied into
    /// ([`take_buffer`](Self::take_buffer)).
    spare: ArrayQueue<Vec<u8>>,
}

impl ExportQueue {
    fn new() -> Self {
        Self {
            traces: SegQueue::new(),
            len: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            background: OnceLock::new(),
            spare: ArrayQueue::new(SPARE_BUFFERS),
        }
    }

    /// An exported trace's block, emptied, for a trace that ends to be copied into; `None`
    /// when none is spare (the trace's copy allocates its own).
    pub(super) fn take_buffer(&self) -> Option<Vec<u8>> {
        self.spare.pop()
    }

    /// Keeps the blocks of `exported` (traces no longer needed) for later traces, as many as
    /// [`SPARE_BUFFERS`] and none over [`MAX_KEPT_BUFFER`] bytes; frees the rest.
    fn recycle(&self, exported: impl IntoIterator<Item = PackedTrace>) {
        for trace in exported {
            let mut buffer = trace.into_buffer();
            if buffer.capacity() <= MAX_KEPT_BUFFER {
                buffer.clear();
                if self.spare.push(buffer).is_err() {
                    return;
                }
            }
        }
    }

    /// Queues `trace`, or drops it (counting its spans) when the queue is full. Never waits
    /// for an export thread.
    pub(super) fn push(&self, trace: PackedTrace) {
        if self.len.fetch_add(1, Ordering::AcqRel) >= QUEUE_CAPACITY {
            self.len.fetch_sub(1, Ordering::AcqRel);
            self.dropped
                .fetch_add(trace.span_count() as u64, Ordering::Relaxed);
            self.recycle([trace]);
            return;
        }
        self.traces.push(trace);
        if let Some(background) = self.background.get() {
            background.unpark();
        }
    }

    /// Puts back traces taken from the queue (the bound may be passed by their number for a
    /// moment: they were in the queue before).
    fn put_back(&self, traces: Vec<PackedTrace>) {
        self.len.fetch_add(traces.len(), Ordering::AcqRel);
        for trace in traces {
            self.traces.push(trace);
        }
    }

    /// Takes at most `max` traces, oldest first.
    fn pop_batch(&self, max: usize) -> Vec<PackedTrace> {
        let batch: Vec<_> = std::iter::from_fn(|| self.traces.pop()).take(max).collect();
        self.len.fetch_sub(batch.len(), Ordering::AcqRel);
        batch
    }

    /// Traces queued.
    fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Spans dropped so far because the queue was full.
    pub fn dropped_spans(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for ExportQueue {
    /// The last layer and tracer are gone: the background thread ends.
    fn drop(&mut self) {
        if let Some(background) = self.background.get() {
            background.unpark();
        }
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

    /// Sends `traces`; `Err` is a message for a warning. A SQLite write asks `stop` before
    /// each statement and, told to, rolls back ([`Written::Stopped`]); an OTLP request is one
    /// request and is not stopped.
    async fn export(
        &mut self,
        traces: &[TraceRecord],
        stop: &dyn Fn() -> bool,
    ) -> Result<Written, ExportFailure> {
        match self {
            Self::Otlp(sink) => sink.export(traces).await.map(|()| Written::All),
            Self::Sqlite(sink) => sink.export(traces, stop),
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

/// What the two export threads share besides the queue: atomics only, so that neither can
/// hold up the other.
#[derive(Debug, Default)]
struct ExportState {
    /// A flush is under way (the flush thread runs one at a time): the background thread
    /// takes no traces meanwhile.
    flushing: AtomicBool,
    /// The background thread holds traces it took from the queue and has not exported yet.
    busy: AtomicBool,
    /// The background thread stopped a write for a flush and put its traces back.
    returned: AtomicBool,
    /// The background thread's CPU priority.
    priority: ExportPriority,
    health: Health,
}

impl ExportState {
    /// Exports `batch` on `runtime`, unless the destination was found dead; the batch back
    /// when `stop` stopped the write. The buffers of a batch done with (written, failed or
    /// dropped) go back to `queue` for new traces.
    fn export(
        &self,
        runtime: &Runtime,
        destination: &mut Destination,
        queue: &ExportQueue,
        batch: Vec<PackedTrace>,
        stop: &dyn Fn() -> bool,
    ) -> Option<Vec<PackedTrace>> {
        if batch.is_empty() || self.health.dead.load(Ordering::Relaxed) {
            queue.recycle(batch);
            return None;
        }
        let started = Instant::now();
        let waited_before = cpu_wait();
        let traces = self.unpack(&batch);
        let written = runtime.block_on(destination.export(&traces, stop));
        match written {
            Ok(Written::Stopped) => return Some(batch),
            Ok(Written::All) => {}
            Err(mut failure) => {
                if let (Some(before), Some(after)) = (waited_before, cpu_wait()) {
                    let waited = after.saturating_sub(before);
                    failure.message += &starvation_note(waited, started.elapsed());
                }
                self.health.note(failure);
            }
        }
        queue.recycle(batch);
        None
    }

    /// The traces of `batch`; one that does not unpack (a chainlog bug) is left out, said once.
    fn unpack(&self, batch: &[PackedTrace]) -> Vec<TraceRecord> {
        batch
            .iter()
            .filter_map(|packed| {
                packed
                    .unpack()
                    .map_err(|error| self.health.note_unpack(&error))
                    .ok()
            })
            .collect()
    }
}

/// How long this thread has waited, runnable, for a CPU so far: the second field of
/// `/proc/thread-self/schedstat` (ns; Linux 3.17+). `None` without it.
pub(super) fn cpu_wait() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// What a failed export adds to its warning when its thread spent most of it (and at least a
/// second) waiting for a CPU: a timeout then says more about this machine than about the
/// destination (the idle-priority export on a machine whose CPUs other work keeps busy).
/// Empty otherwise.
pub(super) fn starvation_note(waited: Duration, elapsed: Duration) -> String {
    if waited >= Duration::from_secs(1) && waited * 2 > elapsed {
        format!(
            " (this export waited {:.1} s of its {:.1} s for a CPU: the machine's CPUs were busy, \
             so the destination may not be at fault)",
            waited.as_secs_f64(),
            elapsed.as_secs_f64()
        )
    } else {
        String::new()
    }
}

/// The handle the CLI holds: starts the export threads once a destination is known, flushes
/// at exit.
#[derive(Debug)]
pub struct Tracer {
    /// Whether tracing is on (a layer was made).
    pub(super) enabled: bool,
    /// `--trace-tag` pairs, on every trace.
    pub(super) tags: Vec<(String, String)>,
    /// How long the flush at exit may take ([`flush_timeout`](Self::flush_timeout)).
    flush_timeout: Duration,
    queue: Arc<ExportQueue>,
    state: Arc<ExportState>,
    started: AtomicBool,
    /// Asks the flush thread for a flush; set once the threads run.
    flush_requests: OnceLock<std_mpsc::Sender<oneshot::Sender<()>>>,
}

impl Tracer {
    pub(super) fn new(
        enabled: bool,
        tags: Vec<(String, String)>,
        priority: ExportPriority,
        flush_timeout: Duration,
    ) -> Self {
        Self {
            enabled,
            tags,
            flush_timeout,
            queue: Arc::new(ExportQueue::new()),
            state: Arc::new(ExportState {
                priority,
                ..ExportState::default()
            }),
            started: AtomicBool::new(false),
            flush_requests: OnceLock::new(),
        }
    }

    pub(super) fn queue(&self) -> Arc<ExportQueue> {
        Arc::clone(&self.queue)
    }

    /// Starts sending queued and later traces: in the background to `background`, and at a
    /// flush to `flush` (two destinations of the same place, one per thread). The first call
    /// wins; later ones are ignored. A thread that cannot be started leaves tracing off for
    /// the process, with one warning.
    pub fn start(&self, background: Destination, flush: Destination) {
        if self.started.swap(true, Ordering::SeqCst) {
            tracing::debug!("trace export already started");
            return;
        }
        let (requests, requested) = std_mpsc::channel();
        let queue = Arc::downgrade(&self.queue);
        let state = Arc::clone(&self.state);
        // Spawned first, from this thread, so that it keeps this thread's priority.
        let flusher = spawn_exporter("chainlog-flush", move |runtime| {
            flush_on_request(&requested, &queue, &state, flush, &runtime);
        });
        let queue = Arc::downgrade(&self.queue);
        let state = Arc::clone(&self.state);
        let exporter = flusher.and_then(|_| {
            spawn_exporter("chainlog-export", move |runtime| {
                if state.priority == ExportPriority::Idle {
                    lower_priority();
                }
                export_in_background(&queue, &state, background, &runtime);
            })
        });
        match exporter {
            Ok(thread) => {
                let _ = self.flush_requests.set(requests);
                // Woken for the traces queued before the start too.
                self.queue.background.get_or_init(|| thread).unpark();
            }
            Err(error) => tracing::warn!(
                "cannot start the trace export thread: {error}; traces are not exported, \
                 predictions go on"
            ),
        }
    }

    /// How long the flush at exit may take (`CHAINLOG_TRACE_FLUSH_TIMEOUT`, default 10 s).
    pub fn flush_timeout(&self) -> Duration {
        self.flush_timeout
    }

    /// Waits (at most `timeout`) until every trace queued so far was handled. Without a
    /// destination there is nothing to wait for: queued traces are dropped.
    pub async fn flush(&self, timeout: Duration) {
        let Some(requests) = self.flush_requests.get() else {
            return;
        };
        let (done, handled) = oneshot::channel();
        if requests.send(done).is_err() {
            tracing::warn!("the trace flush thread has ended; queued traces are not exported");
            return;
        }
        if tokio::time::timeout(timeout, handled).await.is_err() {
            tracing::warn!(
                "traces not all exported within {:.1} s at exit: {} still queued are dropped, and \
                 the batch being written is cut short (sent to an MLflow server, its traces may \
                 be stored without their metadata: no model or run link); \
                 CHAINLOG_TRACE_FLUSH_TIMEOUT=<seconds> gives the flush more time",
                timeout.as_secs_f64(),
                self.queue.len()
            );
        }
    }

    /// Spans dropped so far because the queue was full.
    pub fn dropped_spans(&self) -> u64 {
        self.queue.dropped_spans()
    }

    /// The traces queued so far (tests: no export thread runs).
    #[cfg(test)]
    pub(super) fn take_queued(&self) -> Vec<TraceRecord> {
        self.queue
            .pop_batch(usize::MAX)
            .iter()
            .map(|packed| packed.unpack().expect("a packed trace unpacks"))
            .collect()
    }
}

/// Spawns the thread `name`, which runs `work` on a single-threaded tokio runtime of its own
/// (a runtime that cannot be built: one warning, no export).
fn spawn_exporter(
    name: &str,
    work: impl FnOnce(Runtime) + Send + 'static,
) -> std::io::Result<Thread> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => work(runtime),
                Err(error) => tracing::warn!(
                    "cannot start the trace export: {error}; traces are not exported, \
                     predictions go on"
                ),
            }
        })
        .map(|handle| handle.thread().clone())
}

/// Lowers the calling thread to `SCHED_IDLE`: it runs only on a CPU nothing else wants.
#[cfg(target_os = "linux")]
fn lower_priority() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id, thread_schedule_policy,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    let result = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle);
    // The crate sets the policy, then the nice value to 0, which an unprivileged thread of a
    // process started with a positive nice may not do: an error then, with `SCHED_IDLE` in
    // place. What counts is the policy the thread has.
    if let Err(error) = result
        && thread_schedule_policy().ok() != Some(idle)
    {
        tracing::debug!("the trace export thread keeps its priority: {error:?}");
    }
}

/// Elsewhere the export thread keeps the process's priority.
#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// The background thread: woken by a push, lets more traces gather for [`LINGER`], then
/// exports everything queued, [`BACKGROUND_BATCH`] traces at a time, standing aside while a
/// flush runs. Ends once the queue is gone.
fn export_in_background(
    queue: &Weak<ExportQueue>,
    state: &ExportState,
    mut destination: Destination,
    runtime: &Runtime,
) {
    let batch_size = BACKGROUND_BATCH.min(destination.max_batch());
    loop {
        std::thread::park();
        let Some(queue) = queue.upgrade() else {
            return;
        };
        if queue.len() == 0 {
            continue;
        }
        std::thread::sleep(LINGER);
        loop {
            // Raised before looking at `flushing`, so that a flush starting now waits for what
            // this takes (both sequentially consistent); lowered however this ends, a panic too.
            let _busy = Raised::new(&state.busy);
            let batch = if !state.flushing.load(Ordering::SeqCst) {
                queue.pop_batch(batch_size)
            } else {
                Vec::new()
            };
            if batch.is_empty() {
                break;
            }
            // A flush that starts meanwhile stops the write (a SQLite one, between two
            // statements) and takes the batch: it need not wait for this thread to get a CPU
            // for all of it.
            let flushing = || state.flushing.load(Ordering::SeqCst);
            if let Some(batch) = state.export(runtime, &mut destination, &queue, batch, &flushing) {
                queue.put_back(batch);
                state.returned.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// The flush thread: for each request, exports what is queued (as many traces as were queued
/// when the request came), in batches of at most the destination's
/// [`max_batch`](Destination::max_batch), waits for the background thread's batch in hand,
/// then answers. Ends with the tracer.
fn flush_on_request(
    requests: &std_mpsc::Receiver<oneshot::Sender<()>>,
    queue: &Weak<ExportQueue>,
    state: &ExportState,
    mut destination: Destination,
    runtime: &Runtime,
) {
    loop {
        let done = match requests.recv_timeout(OVERFLOW_CHECK) {
            Ok(done) => done,
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                let Some(queue) = queue.upgrade() else {
                    return;
                };
                state.health.note_dropped(queue.dropped_spans());
                continue;
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let Some(queue) = queue.upgrade() else {
            return;
        };
        let flushing = Raised::new(&state.flushing);
        // What was queued when the flush began: traces that keep coming meanwhile do not make
        // it a normal-priority exporter for good.
        let mut drain = || {
            let mut left = queue.len();
            while left > 0 {
                let batch = queue.pop_batch(destination.max_batch().min(left));
                if batch.is_empty() {
                    break;
                }
                left -= batch.len();
                state.export(runtime, &mut destination, &queue, batch, &|| false);
            }
        };
        drain();
        // The background thread's batch in hand: written, or stopped and put back (then
        // written here).
        while state.busy.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if state.returned.swap(false, Ordering::SeqCst) {
            drain();
        }
        drop(flushing);
        state
            .health
            .note_dropped_total(queue.dropped_spans(), state.priority);
        let _ = done.send(());
        // Traces pushed during the flush are the background thread's again.
        if let Some(background) = queue.background.get() {
            background.unpark();
        }
    }
}

/// Raises a flag while it lives and lowers it when dropped — after a panic too, so that
/// neither export thread waits for the other for good.
struct Raised<'a>(&'a AtomicBool);

impl<'a> Raised<'a> {
    fn new(flag: &'a AtomicBool) -> Self {
        flag.store(true, Ordering::SeqCst);
        Self(flag)
    }
}

impl Drop for Raised<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// What the export threads have already warned about (each said once per process).
#[derive(Debug, Default)]
struct Health {
    /// An export failed.
    failed_once: AtomicBool,
    /// A trace could not be unpacked.
    unpack_failed_once: AtomicBool,
    /// The destination cannot take traces: stop exporting.
    dead: AtomicBool,
    /// Spans dropped when the queue overflowed, as last said (0: not said yet).
    dropped_said: AtomicU64,
}

impl Health {
    fn note(&self, failure: ExportFailure) {
        if failure.permanent {
            if !self.dead.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "{}; traces are not exported, predictions go on",
                    failure.message
                );
            }
        } else if !self.failed_once.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "{}; those traces are dropped (said once), predictions go on",
                failure.message
            );
        }
    }

    /// Says the first trace that could not be unpacked (a fault of chainlog's own, apart from
    /// the destination's failures).
    fn note_unpack(&self, error: &super::packed::UnpackError) {
        if !self.unpack_failed_once.swap(true, Ordering::Relaxed) {
            tracing::warn!("{error}; that trace is dropped (said once), predictions go on");
        }
    }

    /// Says the first overflow.
    fn note_dropped(&self, dropped: u64) {
        if dropped > 0
            && self
                .dropped_said
                .compare_exchange(0, dropped, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                "the trace export queue is full ({QUEUE_CAPACITY} traces): {dropped} spans dropped \
                 so far (said once, the total at exit); predictions go on"
            );
        }
    }

    /// At a flush: the first overflow, or the total when more were dropped since it was said
    /// (with advice that fits the background export's `priority`).
    fn note_dropped_total(&self, dropped: u64, priority: ExportPriority) {
        let said = self.dropped_said.load(Ordering::Relaxed);
        if said == 0 {
            self.note_dropped(dropped);
        } else if dropped > said {
            self.dropped_said.store(dropped, Ordering::Relaxed);
            let why = match priority {
                ExportPriority::Idle => {
                    "CHAINLOG_TRACE_EXPORT_PRIORITY=normal exports at the predictions' priority"
                }
                ExportPriority::Normal => {
                    "the export, at the predictions' priority, did not keep up with them"
                }
            };
            tracing::warn!(
                "{dropped} spans dropped in all because the trace export queue was full ({why})"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::packed::{Records, SpanEnd};

    /// A finished trace of one span whose buffer holds `size` bytes of capacity.
    fn trace_in(size: usize) -> PackedTrace {
        let mut records = Records::for_trace();
        records.attribute_json_text(1, "k", b"1");
        let now = std::time::SystemTime::now();
        records.end_span(&SpanEnd {
            span_id: 1,
            parent_id: None,
            start: now,
            end: now,
            name: "chain",
            span_type: "CHAIN",
            error: None,
        });
        let mut block = Vec::with_capacity(size);
        block.push(0);
        records.finish(1, Some(block))
    }

    #[test]
    fn exported_buffers_are_kept_for_new_traces_up_to_a_bound_and_large_ones_freed() {
        let queue = ExportQueue::new();
        assert!(queue.take_buffer().is_none(), "none spare at first");
        queue.recycle([trace_in(4096), trace_in(MAX_KEPT_BUFFER + 1)]);
        let spare = queue.take_buffer().expect("the small buffer is kept");
        assert!(spare.is_empty(), "kept emptied");
        assert_eq!(spare.capacity(), 4096);
        assert!(queue.take_buffer().is_none(), "the large one was freed");
        queue.recycle((0..SPARE_BUFFERS + 10).map(|_| trace_in(1024)));
        let kept = std::iter::from_fn(|| queue.take_buffer()).count();
        assert_eq!(kept, SPARE_BUFFERS, "no more than SPARE_BUFFERS held");
    }

    #[test]
    fn a_trace_dropped_from_a_full_queue_leaves_its_buffer_for_the_next() {
        let queue = ExportQueue::new();
        for _ in 0..QUEUE_CAPACITY {
            queue.push(trace_in(1024));
        }
        assert!(queue.take_buffer().is_none());
        queue.push(trace_in(2048));
        assert_eq!(queue.dropped_spans(), 1);
        assert_eq!(queue.take_buffer().map(|b| b.capacity()), Some(2048));
    }
}
