//! Spans under a subscriber with the trace layer: what a trace holds, parents across awaits,
//! tasks and threads, sampling, events, errors.

use serde_json::json;
use tracing_subscriber::layer::SubscriberExt as _;

use super::*;

/// A subscriber with the trace layer of `settings` (none when they turn tracing off), and
/// its tracer.
fn traced_dispatch(settings: TraceSettings) -> (tracing::Dispatch, Tracer) {
    let (layer, tracer) = settings.build();
    let subscriber = tracing_subscriber::registry().with(layer.map(TraceLayer::filtered));
    (tracing::Dispatch::new(subscriber), tracer)
}

/// Runs `f` under a subscriber with a trace layer of `settings`; returns the traces queued.
fn traced(settings: TraceSettings, f: impl FnOnce()) -> Vec<TraceRecord> {
    let (dispatch, tracer) = traced_dispatch(settings);
    tracing::dispatcher::with_default(&dispatch, f);
    tracer.take_queued()
}

/// [`traced`] for async work, run on a current-thread runtime of its own.
fn traced_async(
    settings: TraceSettings,
    work: impl std::future::Future<Output = ()>,
) -> Vec<TraceRecord> {
    traced(settings, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work);
    })
}

fn on() -> TraceSettings {
    TraceSettings {
        enabled: true,
        sampling_ratio: 1.0,
        tags: Vec::new(),
        export_priority: Some(ExportPriority::Idle),
        flush_timeout: super::DEFAULT_FLUSH_TIMEOUT,
    }
}

fn chain_with_llm_call() {
    let chain = TraceSpan::new("summarize", "CHAIN");
    inputs(&chain, || json!({"text": "hi"}));
    chain.in_scope(|| {
        let llm = TraceSpan::new("llm.chat", "CHAT_MODEL");
        json_text(&llm, "mlflow.spanInputs", || {
            bytes::Bytes::from_static(br#"{"model":"m","messages":[]}"#)
        });
        attribute(
            &llm,
            "mlflow.chat.tokenUsage",
            || json!({"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}),
        );
        llm.in_scope(|| tracing::warn!(retry = 1, "llm request failed; retrying"));
        drop(llm);
        let tool = tool_span("calculator", r#"{"expression":"2*3"}"#);
        outputs(&tool, || json!("6"));
    });
    outputs(&chain, || json!({"summary": "ok"}));
}

#[test]
fn root_chain_span_holds_its_children_inputs_outputs_and_usage() {
    let traces = traced(on(), chain_with_llm_call);
    assert_eq!(traces.len(), 1);
    let trace = &traces[0];
    let root = trace.root().unwrap();
    assert_eq!(root.name, "summarize");
    assert_eq!(root.span_type, "CHAIN");
    let types: Vec<_> = trace.spans.iter().map(|s| s.span_type.as_ref()).collect();
    assert_eq!(types, ["CHAT_MODEL", "TOOL", "CHAIN"]);
    for child in &trace.spans[..2] {
        assert_eq!(child.parent_id, Some(root.span_id));
        assert_eq!(child.trace_id, trace.trace_id);
    }
    assert_eq!(trace.request_preview().unwrap(), r#"{"text":"hi"}"#);
    assert_eq!(trace.response_preview().unwrap(), r#"{"summary":"ok"}"#);
    assert_eq!(
        trace.token_usage(),
        Some(TokenUsage {
            input_tokens: 3,
            output_tokens: 2,
            total_tokens: 5
        })
    );
    let llm = &trace.spans[0];
    assert_eq!(llm.events.len(), 1, "the retry is an event");
    assert_eq!(llm.events[0].name, "llm request failed; retrying");
    assert_eq!(
        llm.attribute_text("mlflow.spanInputs").unwrap(),
        r#"{"model":"m","messages":[]}"#
    );
    assert_eq!(trace.spans[1].name, "calculator");
    assert_eq!(trace.state(), "OK");
    assert!(trace.mlflow_id().starts_with("tr-") && trace.mlflow_id().len() == 35);
}

#[test]
fn failed_root_makes_an_error_trace_with_its_message() {
    let traces = traced(on(), || {
        let chain = TraceSpan::new("extract", "CHAIN");
        fail(&chain, "the LLM call failed: 500 boom");
    });
    assert_eq!(traces[0].state(), "ERROR");
    assert_eq!(
        traces[0].root().unwrap().error.as_deref(),
        Some("the LLM call failed: 500 boom")
    );
}

#[test]
fn every_span_made_outside_a_traced_span_is_its_own_trace_and_tracing_spans_are_none() {
    let traces = traced(on(), || {
        let batch = tracing::info_span!("predict");
        let _in = batch.enter();
        for _ in 0..3 {
            let _chain = TraceSpan::new("c", "CHAIN");
        }
    });
    assert_eq!(traces.len(), 3);
    assert!(traces.iter().all(|t| t.spans.len() == 1));
    let mut ids: Vec<_> = traces.iter().map(|t| t.trace_id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3);
}

/// The layer takes events only: under it alone, `tracing` spans stay disabled, so the
/// registry keeps none (what a traced call saves), and sampling or tracing off make no
/// recording span.
#[test]
fn the_layer_enables_no_tracing_span() {
    let (dispatch, _tracer) = traced_dispatch(on());
    tracing::dispatcher::with_default(&dispatch, || {
        assert!(tracing::info_span!("chain", chain = "c").is_disabled());
        assert!(tracing::error_span!("chain").is_disabled());
        assert!(TraceSpan::new("c", "CHAIN").is_recording());
    });
    // No layer in this thread's subscriber: nothing records.
    assert!(!TraceSpan::new("c", "CHAIN").is_recording());
}

/// A span instrumenting a future is the parent of the spans made while it is polled, on
/// whichever worker thread polls it, across awaits; a task spawned from it starts its own
/// trace unless it is instrumented with the current span.
#[test]
fn an_instrumented_future_parents_spans_across_awaits_threads_and_carried_tasks() {
    let (dispatch, tracer) = traced_dispatch(on());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The subscriber goes with each task (a thread's default would stay on the thread).
    use tracing::instrument::WithSubscriber as _;
    runtime.block_on(async {
        let for_lost = dispatch.clone();
        let outer = async move {
            let chain = TraceSpan::new("outer", "CHAIN");
            chain
                .instrument(async move {
                    for _ in 0..3 {
                        tokio::task::yield_now().await;
                        let _llm = TraceSpan::new("llm.chat", "CHAT_MODEL");
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                    let carried = TraceSpan::current().instrument(async {
                        let _tool = TraceSpan::new("carried", "TOOL");
                    });
                    let lost = async {
                        let _tool = TraceSpan::new("lost", "TOOL");
                    };
                    let carried = tokio::spawn(carried.with_subscriber(for_lost.clone()));
                    let lost = tokio::spawn(lost.with_subscriber(for_lost));
                    carried.await.unwrap();
                    lost.await.unwrap();
                })
                .await;
        };
        tokio::spawn(outer.with_subscriber(dispatch)).await.unwrap();
    });
    let traces = tracer.take_queued();
    assert_eq!(traces.len(), 2, "{traces:?}");
    let lost = traces.iter().find(|t| t.spans.len() == 1).unwrap();
    assert_eq!(lost.spans[0].name, "lost");
    let outer = traces.iter().find(|t| t.spans.len() == 5).unwrap();
    let root = outer.root().unwrap();
    assert_eq!(root.name, "outer");
    let children: Vec<_> = outer
        .spans
        .iter()
        .filter(|span| span.parent_id == Some(root.span_id))
        .map(|span| span.name.as_ref())
        .collect();
    assert_eq!(children, ["llm.chat", "llm.chat", "llm.chat", "carried"]);
}

#[test]
fn sampling_ratio_zero_keeps_no_trace_and_off_builds_no_layer() {
    let none = traced(
        TraceSettings {
            sampling_ratio: 0.0,
            ..on()
        },
        chain_with_llm_call,
    );
    assert!(none.is_empty());
    let (layer, tracer) = TraceSettings {
        enabled: false,
        ..on()
    }
    .build();
    assert!(layer.is_none() && !tracer.is_enabled());
}

#[test]
fn settings_read_the_controls_and_name_bad_values() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let off = TraceSettings::from_lookup(false, &[], env(&[("CHAINLOG_TRACING", "false")]));
    assert!(!off.unwrap().enabled);
    assert!(
        !TraceSettings::from_lookup(true, &[], env(&[]))
            .unwrap()
            .enabled
    );
    let half = TraceSettings::from_lookup(false, &[], env(&[(SAMPLING_VAR, "0.5")])).unwrap();
    assert!((half.sampling_ratio - 0.5).abs() < f64::EPSILON);
    let bad = TraceSettings::from_lookup(false, &[], env(&[(SAMPLING_VAR, "2")])).unwrap_err();
    assert_eq!(
        bad.to_string(),
        "MLFLOW_TRACE_SAMPLING_RATIO must be a number from 0.0 to 1.0, got `2`"
    );
    let on = TraceSettings::from_lookup(false, &[], env(&[("CHAINLOG_TRACING", "On")])).unwrap();
    assert!(on.enabled);
    let switch =
        TraceSettings::from_lookup(false, &[], env(&[("CHAINLOG_TRACING", "bogus")])).unwrap_err();
    assert_eq!(
        switch.to_string(),
        "CHAINLOG_TRACING must be true or false (1/0, yes/no, on/off), got `bogus`"
    );
    let tag = TraceSettings::from_lookup(false, &["novalue".into()], env(&[])).unwrap_err();
    assert!(tag.to_string().contains("`novalue`"));
    let default = TraceSettings::from_lookup(false, &[], env(&[])).unwrap();
    assert_eq!(default.export_priority, None);
    assert_eq!(default.flush_timeout, super::DEFAULT_FLUSH_TIMEOUT);
    let longer =
        TraceSettings::from_lookup(false, &[], env(&[(super::FLUSH_TIMEOUT_VAR, " 120 ")]))
            .unwrap();
    assert_eq!(longer.flush_timeout, std::time::Duration::from_secs(120));
    let half =
        TraceSettings::from_lookup(false, &[], env(&[(super::FLUSH_TIMEOUT_VAR, "0.5")])).unwrap();
    assert_eq!(half.flush_timeout, std::time::Duration::from_millis(500));
    for bad in ["-1", "ten", "NaN", "inf"] {
        let pairs: &'static [(&'static str, &'static str)] =
            Box::leak(Box::new([(super::FLUSH_TIMEOUT_VAR, bad)]));
        let error = TraceSettings::from_lookup(false, &[], env(pairs)).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "CHAINLOG_TRACE_FLUSH_TIMEOUT must be a number of seconds from 0 to 1.8e19, got `{bad}`"
            )
        );
    }
    let normal =
        TraceSettings::from_lookup(false, &[], env(&[(EXPORT_PRIORITY_VAR, " Normal ")])).unwrap();
    assert_eq!(normal.export_priority, Some(ExportPriority::Normal));
    let idle =
        TraceSettings::from_lookup(false, &[], env(&[(EXPORT_PRIORITY_VAR, "idle")])).unwrap();
    assert_eq!(idle.export_priority, Some(ExportPriority::Idle));
    let priority =
        TraceSettings::from_lookup(false, &[], env(&[(EXPORT_PRIORITY_VAR, "low")])).unwrap_err();
    assert_eq!(
        priority.to_string(),
        "CHAINLOG_TRACE_EXPORT_PRIORITY must be idle or normal, got `low`"
    );
}

#[test]
fn a_secret_never_reaches_an_encoded_attribute() {
    let canary = "sk-canary0123456789abcdefghijklmnop";
    crate::secret::register(canary);
    let traces = traced(on(), || {
        let chain = TraceSpan::new("c", "CHAIN");
        inputs(&chain, || json!({"echo": canary}));
    });
    let encoded = format!("{:?}", traces[0].spans[0].encoded_attributes());
    assert!(!encoded.contains(canary), "{encoded}");
}

#[test]
fn a_full_queue_drops_traces_without_waiting_and_counts_their_spans() {
    let (dispatch, tracer) = traced_dispatch(on());
    tracing::dispatcher::with_default(&dispatch, || {
        for _ in 0..QUEUE_CAPACITY + 3 {
            let chain = TraceSpan::new("c", "CHAIN");
            chain.in_scope(|| {
                let _llm = TraceSpan::new("llm.chat", "CHAT_MODEL");
            });
        }
    });
    assert_eq!(tracer.dropped_spans(), 6, "3 traces of 2 spans dropped");
    assert_eq!(tracer.take_queued().len(), QUEUE_CAPACITY);
}

/// A span whose work was dropped mid-way (a caller that gave up) keeps what it was given.
#[test]
fn a_span_ended_early_keeps_what_it_was_given() {
    let traces = traced(on(), || {
        let dropped = TraceSpan::new("dropped", "CHAIN");
        inputs(&dropped, || json!({"text": "given"}));
    });
    assert_eq!(traces.len(), 1);
    let dropped = traces[0].root().unwrap();
    assert_eq!(dropped.name, "dropped");
    assert_eq!(
        dropped.attribute_text("mlflow.spanInputs").as_deref(),
        Some(r#"{"text":"given"}"#)
    );
    assert_eq!(dropped.attribute_text("mlflow.spanOutputs"), None);
}

/// A tracer exporting into a fresh SQLite tracking store in `dir` (MLflow's schema), its layer
/// installed for the rest of the calling thread; the store's path.
fn exporting_into_sqlite(
    dir: &std::path::Path,
) -> (
    Tracer,
    tracing::subscriber::DefaultGuard,
    std::path::PathBuf,
) {
    let db_path = dir.join("mlflow.db");
    crate::store::SqliteStore::open(&db_path, &dir.join("mlruns")).unwrap();
    let (dispatch, tracer) = traced_dispatch(on());
    let guard = tracing::dispatcher::set_default(&dispatch);
    let link = TraceLink {
        experiment_id: "0".to_owned(),
        run_id: None,
        model_id: None,
    };
    let sink = || {
        Destination::Sqlite(Box::new(SqliteSink::new(
            db_path.clone(),
            link.clone(),
            Vec::new(),
        )))
    };
    tracer.start(sink(), sink());
    (tracer, guard, db_path)
}

fn stored_traces(db_path: &std::path::Path) -> i64 {
    rusqlite::Connection::open(db_path)
        .unwrap()
        .query_row("SELECT count(*) FROM trace_info", [], |row| row.get(0))
        .unwrap()
}

/// Every trace queued before a flush is in the store when the flush returns, whichever export
/// thread wrote it; traces queued after a flush go out with the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_stores_every_trace_queued_before_it_and_the_next_flush_the_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (tracer, guard, db_path) = exporting_into_sqlite(dir.path());
    for _ in 0..300 {
        chain_with_llm_call();
    }
    tracer.flush(std::time::Duration::from_secs(60)).await;
    assert_eq!(stored_traces(&db_path), 300);
    for _ in 0..5 {
        chain_with_llm_call();
    }
    tracer.flush(std::time::Duration::from_secs(60)).await;
    assert_eq!(stored_traces(&db_path), 305);
    assert_eq!(tracer.dropped_spans(), 0);
    drop(guard);
    // Every row of every trace, through statements of many rows and of one.
    let conn = rusqlite::Connection::open(&db_path).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |row| row.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM trace_tags"), 305 * 3);
    assert_eq!(count("SELECT count(*) FROM trace_request_metadata"), 305);
    assert_eq!(count("SELECT count(*) FROM spans"), 305 * 3);
    assert_eq!(
        count(
            "SELECT count(*) FROM spans s JOIN trace_info t ON s.trace_id = t.request_id \
             WHERE s.type = 'CHAT_MODEL' AND t.input_tokens = 3 AND t.total_tokens = 5 \
             AND json_extract(s.content, '$.attributes.\"mlflow.spanInputs\"') \
                 = '{\"model\":\"m\",\"messages\":[]}' \
             AND s.parent_span_id IS NOT NULL"
        ),
        305,
        "each trace's model call, under its chain, with its request body and usage"
    );
    assert_eq!(
        count(
            "SELECT count(DISTINCT request_id) FROM trace_tags WHERE key = 'mlflow.artifactLocation' \
             AND value LIKE '%/traces/' || request_id || '/artifacts'"
        ),
        305
    );
}

/// The background thread exports without being asked: the rows appear with no flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_thread_exports_without_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let (tracer, guard, db_path) = exporting_into_sqlite(dir.path());
    for _ in 0..40 {
        chain_with_llm_call();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while stored_traces(&db_path) < 40 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of 40 traces stored after 60 s without a flush",
            stored_traces(&db_path)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(stored_traces(&db_path), 40);
    assert_eq!(tracer.dropped_spans(), 0);
    drop(guard);
}

/// A SQLite write told to stop — before its first row or between two — writes nothing (its
/// transaction rolled back), so a flush can take its traces and write them itself.
#[test]
fn a_stopped_sqlite_write_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("mlflow.db");
    crate::store::SqliteStore::open(&db_path, &dir.path().join("mlruns")).unwrap();
    let traces = traced(on(), || {
        for _ in 0..3 {
            chain_with_llm_call();
        }
    });
    let link = TraceLink {
        experiment_id: "0".to_owned(),
        run_id: None,
        model_id: None,
    };
    let mut sink = SqliteSink::new(db_path.clone(), link, Vec::new());
    assert_eq!(
        sink.export(&traces, &|| true).unwrap(),
        sqlite::Written::Stopped
    );
    let rows_asked = std::cell::Cell::new(0);
    let stop_after_some_rows = || {
        rows_asked.set(rows_asked.get() + 1);
        rows_asked.get() > 5
    };
    assert_eq!(
        sink.export(&traces, &stop_after_some_rows).unwrap(),
        sqlite::Written::Stopped
    );
    assert_eq!(stored_traces(&db_path), 0);
    assert_eq!(
        sink.export(&traces, &|| false).unwrap(),
        sqlite::Written::All
    );
    assert_eq!(stored_traces(&db_path), 3);
}

/// A failed export names CPU starvation when its thread waited for a CPU most of the time
/// (and at least a second); this thread's wait is read from /proc on Linux.
#[test]
fn a_failed_export_says_when_its_thread_was_starved_of_cpu() {
    use std::time::Duration;
    let note = export::starvation_note(Duration::from_millis(8_500), Duration::from_secs(10));
    assert_eq!(
        note,
        " (this export waited 8.5 s of its 10.0 s for a CPU: the machine's CPUs were busy, so \
         the destination may not be at fault)"
    );
    assert_eq!(
        export::starvation_note(Duration::from_millis(900), Duration::from_secs(1)),
        "",
        "under a second is not starvation"
    );
    assert_eq!(
        export::starvation_note(Duration::from_secs(4), Duration::from_secs(10)),
        "",
        "less than half the time"
    );
    #[cfg(target_os = "linux")]
    {
        let before = export::cpu_wait().expect("/proc/thread-self/schedstat");
        std::thread::sleep(Duration::from_millis(5));
        assert!(export::cpu_wait().unwrap() >= before);
    }
}

#[test]
fn trace_ids_made_later_sort_later_and_differ_in_their_random_half() {
    use std::time::{Duration, SystemTime};
    let mlflow_id = |trace_id| {
        TraceRecord {
            trace_id,
            spans: Vec::new(),
        }
        .mlflow_id()
    };
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let first = TraceRecord::trace_id_at(at, u64::MAX);
    let later = TraceRecord::trace_id_at(at + Duration::from_micros(1), 1);
    // A microsecond later: a larger id whatever the random halves, and (fixed-width hex) a
    // later MLflow id in text order, which is how MLflow's indexes sort them.
    assert!(later > first);
    assert!(mlflow_id(later) > mlflow_id(first));
    assert_eq!(first >> 64, 1_790_000_000_000_000, "µs since the epoch");
    assert_eq!(first as u64, u64::MAX, "the random half, as given");
    assert_eq!(
        TraceRecord::trace_id_at(SystemTime::UNIX_EPOCH - Duration::from_secs(1), 7),
        7
    );
    // Made now: the time half is now, the random halves differ.
    let ids: Vec<u128> = (0..100).map(|_| TraceRecord::new_trace_id()).collect();
    let random_halves: std::collections::HashSet<u64> = ids.iter().map(|id| *id as u64).collect();
    assert_eq!(random_halves.len(), ids.len(), "the low 64 bits are random");
    let micros_now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    assert!(micros_now.abs_diff((ids[99] >> 64) as u64) < 60_000_000);
}

#[test]
fn trace_ids_made_at_once_on_many_threads_never_collide_and_stay_mlflow_shaped() {
    // Eight threads making ids flat out: many share a microsecond, so only the random half
    // keeps them apart.
    let per_thread = 50_000;
    let ids: Vec<u128> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(move || {
                    (0..per_thread)
                        .map(|_| TraceRecord::new_trace_id())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap())
            .collect()
    });
    let micros: std::collections::HashSet<u64> = ids.iter().map(|id| (id >> 64) as u64).collect();
    assert!(micros.len() < ids.len(), "some ids share a microsecond");
    let unique: std::collections::HashSet<u128> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no two trace ids are equal");
    for id in ids.iter().take(1000) {
        let mlflow_id = TraceRecord {
            trace_id: *id,
            spans: Vec::new(),
        }
        .mlflow_id();
        assert_eq!(mlflow_id.len(), 35, "{mlflow_id}");
        assert!(
            mlflow_id[3..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        // W3C Trace Context: not all zero; level 2: the rightmost 7 bytes random (nonzero here).
        assert_ne!(*id, 0);
        assert_ne!(*id as u64 & 0x00FF_FFFF_FFFF_FFFF, 0);
    }
}

/// `n` traces cycling a chain with a model call (usage), a chain with a tool call only
/// (no usage) and a failed chain (ERROR root).
fn mixed_traces(n: usize) -> Vec<TraceRecord> {
    traced(on(), || {
        for i in 0..n {
            match i % 3 {
                0 => chain_with_llm_call(),
                1 => {
                    let chain = TraceSpan::new("tools", "CHAIN");
                    inputs(&chain, || json!({"i": i}));
                    chain.in_scope(|| {
                        let tool = tool_span("calculator", r#"{"expression":"1+1"}"#);
                        outputs(&tool, || json!("2"));
                    });
                }
                _ => {
                    let chain = TraceSpan::new("extract", "CHAIN");
                    fail(&chain, "the LLM call failed: 500 boom");
                }
            }
        }
    })
}

fn trace_link(linked: bool) -> TraceLink {
    TraceLink {
        experiment_id: "0".to_owned(),
        run_id: linked.then(|| "0123456789abcdef0123456789abcdef".to_owned()),
        model_id: linked.then(|| "m-0123456789abcdef0123456789abcdef".to_owned()),
    }
}

/// Multi-row statements store exactly the rows one-row statements store,
/// for batches around the 64-row statement size, with and without link and user tags (one of
/// them a built-in key, one given twice).
#[test]
fn multi_row_statements_store_the_rows_one_row_statements_stored() {
    let tags = [
        ("team".to_owned(), "a".to_owned()),
        ("service.name".to_owned(), "x".to_owned()),
        ("team".to_owned(), "b".to_owned()),
        (
            "mlflow.trace.spansLocation".to_owned(),
            "ELSEWHERE".to_owned(),
        ),
    ];
    for n in [1, 2, 21, 22, 63, 64, 65, 129] {
        let traces = mixed_traces(n);
        assert_eq!(traces.len(), n);
        for (linked, tags) in [(false, &[][..]), (true, &tags[..])] {
            let dir = tempfile::tempdir().unwrap();
            let (new, old) = sqlite::check::both(dir.path(), &trace_link(linked), tags, &traces);
            assert_eq!(new.len(), old.len(), "n={n} linked={linked}");
            for (a, b) in new.iter().zip(&old) {
                assert_eq!(a, b, "n={n} linked={linked}");
            }
            let conn = rusqlite::Connection::open(dir.path().join("s0/mlflow.db")).unwrap();
            let count = |sql: &str| -> i64 { conn.query_row(sql, [], |row| row.get(0)).unwrap() };
            let n = n as i64;
            let with_usage = (n + 2) / 3;
            let failed = n / 3;
            assert_eq!(count("SELECT count(*) FROM trace_info"), n);
            assert_eq!(
                count(
                    "SELECT count(*) FROM trace_info WHERE input_tokens IS NULL AND output_tokens IS NULL AND total_tokens IS NULL"
                ),
                n - with_usage
            );
            assert_eq!(
                count("SELECT count(*) FROM trace_info WHERE status = 'ERROR'"),
                failed
            );
            assert_eq!(
                count("SELECT count(*) FROM trace_info WHERE db_payload_generation = 1"),
                n
            );
            assert_eq!(
                count("SELECT count(*) FROM spans"),
                traces.iter().map(|t| t.spans.len() as i64).sum::<i64>()
            );
            assert!(count("SELECT count(*) FROM spans") >= 2 * n - failed);
            assert_eq!(
                count("SELECT count(*) FROM spans WHERE parent_span_id IS NULL"),
                n
            );
            assert_eq!(
                count("SELECT count(*) FROM spans WHERE model_name IS NOT NULL"),
                0
            );
            assert_eq!(
                count("SELECT count(*) FROM trace_request_metadata"),
                if linked { 3 * n } else { n }
            );
            assert_eq!(
                count("SELECT count(*) FROM trace_tags"),
                if linked { 4 * n } else { 3 * n }
            );
            if linked {
                assert_eq!(
                    count(
                        "SELECT count(*) FROM trace_tags WHERE key = 'service.name' AND value = 'x'"
                    ),
                    n
                );
                assert_eq!(
                    count("SELECT count(*) FROM trace_tags WHERE key = 'team' AND value = 'b'"),
                    n
                );
                assert_eq!(
                    count(
                        "SELECT count(*) FROM trace_tags WHERE key = 'mlflow.trace.spansLocation' AND value = 'ELSEWHERE'"
                    ),
                    n
                );
            }
        }
    }
}

/// Two traces with one id in one batch (so in one 64-row statement): the later one's
/// rows win, as with one-row statements.
#[test]
fn duplicate_trace_ids_in_one_statement_resolve_as_with_one_row_statements() {
    let mut traces = mixed_traces(70);
    let mut twin = traces[3].clone();
    twin.spans.last_mut().unwrap().name = "twin".into();
    traces[40] = twin;
    let dir = tempfile::tempdir().unwrap();
    let (new, old) = sqlite::check::both(dir.path(), &trace_link(true), &[], &traces);
    assert_eq!(new, old);
    let conn = rusqlite::Connection::open(dir.path().join("s0/mlflow.db")).unwrap();
    let name: String = conn
        .query_row(
            "SELECT trace_name FROM trace_info WHERE request_id = ?1",
            [traces[3].mlflow_id()],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(name, "twin");
}

/// 65 spans of 1 MiB attributes each (over the text one statement of many rows may bind, so
/// they go in row by row): the same rows.
#[test]
fn huge_attributes_store_the_same_rows() {
    let big = "x".repeat(1 << 20);
    let traces = traced(on(), || {
        for _ in 0..65 {
            let chain = TraceSpan::new("big", "CHAIN");
            inputs(&chain, || json!({"text": big}));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let (new, old) = sqlite::check::both(dir.path(), &trace_link(false), &[], &traces);
    assert_eq!(new.len(), old.len());
    assert!(new == old);
    let conn = rusqlite::Connection::open(dir.path().join("s0/mlflow.db")).unwrap();
    let long: i64 = conn
        .query_row(
            "SELECT count(*) FROM spans WHERE length(content) > 1048576",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(long, 65);
}

/// A write told to stop at its k-th question, for every k up to the number it asks,
/// leaves no row in any table; told never, it writes everything. 130 traces: two 64-row
/// statements and singles in every table.
#[test]
fn a_stop_at_any_question_leaves_no_row_in_any_table() {
    let traces = mixed_traces(130);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mlflow.db");
    crate::store::SqliteStore::open(&db, &dir.path().join("mlruns")).unwrap();
    let asked = std::cell::Cell::new(0usize);
    let counting = || {
        asked.set(asked.get() + 1);
        false
    };
    let scratch = dir.path().join("scratch.db");
    crate::store::SqliteStore::open(&scratch, &dir.path().join("mlruns")).unwrap();
    sqlite::check::write_into(&scratch, &trace_link(true), &traces, &counting);
    let questions = asked.get();
    let rows = || -> i64 {
        let conn = rusqlite::Connection::open(&db).unwrap();
        [
            "trace_info",
            "trace_tags",
            "trace_request_metadata",
            "spans",
        ]
        .iter()
        .map(|t| -> i64 {
            conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                .unwrap()
        })
        .sum()
    };
    for k in 1..=questions {
        let n = std::cell::Cell::new(0usize);
        let stop_at_k = || {
            n.set(n.get() + 1);
            n.get() >= k
        };
        let written = sqlite::check::write_into(&db, &trace_link(true), &traces, &stop_at_k);
        assert_eq!(written, sqlite::Written::Stopped, "k={k}");
        assert_eq!(rows(), 0, "k={k}");
    }
    let written = sqlite::check::write_into(&db, &trace_link(true), &traces, &|| false);
    assert_eq!(written, sqlite::Written::All);
    assert!(rows() > 0);
}

/// A flush that lands while the background thread is in the middle of its SQLite
/// write (after LINGER, at several offsets into a ~1000-trace write) stores every trace and
/// every row of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_landing_mid_write_stores_every_row() {
    for offset_ms in [0u64, 10, 30, 60, 100, 150, 250] {
        let dir = tempfile::tempdir().unwrap();
        let (tracer, guard, db_path) = exporting_into_sqlite(dir.path());
        for _ in 0..1000 {
            chain_with_llm_call();
        }
        tokio::time::sleep(export::LINGER + std::time::Duration::from_millis(offset_ms)).await;
        tracer.flush(std::time::Duration::from_secs(60)).await;
        drop(guard);
        let conn = rusqlite::Connection::open(&db_path).unwrap();
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |row| row.get(0)).unwrap() };
        assert_eq!(
            count("SELECT count(*) FROM trace_info"),
            1000,
            "offset {offset_ms}"
        );
        assert_eq!(
            count("SELECT count(*) FROM spans"),
            3000,
            "offset {offset_ms}"
        );
        assert_eq!(
            count("SELECT count(*) FROM trace_tags"),
            3000,
            "offset {offset_ms}"
        );
        assert_eq!(count("SELECT count(*) FROM trace_request_metadata"), 1000);
        assert_eq!(tracer.dropped_spans(), 0);
    }
}

/// A span ends after its children, as a `tracing` span did in the registry: spans carried
/// into a task that outlives the chain (here the chain dropped by a timeout while a task its
/// `RETRIEVER` span spawned still runs) stay in the chain's trace, which goes to the queue
/// once, when the last of them ends — not without them, their spans lost.
#[test]
fn spans_carried_into_a_task_that_outlives_the_chain_stay_in_its_trace() {
    let traces = traced_async(on(), async {
        let chain = TraceSpan::new("chain", "CHAIN");
        let work = chain.instrument(async {
            let retrieve = TraceSpan::new("retrieve", "RETRIEVER");
            retrieve
                .instrument(async {
                    let task = tokio::spawn(TraceSpan::current().instrument(async {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        let _llm = TraceSpan::new("llm.chat", "CHAT_MODEL");
                    }));
                    task.await.unwrap();
                })
                .await;
        });
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(5), work).await;
        assert!(timed_out.is_err(), "the chain is dropped by its timeout");
        // The task goes on, detached.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    });
    assert_eq!(traces.len(), 1, "one trace, queued once: {traces:?}");
    let trace = &traces[0];
    let mut names: Vec<_> = trace.spans.iter().map(|s| s.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(names, ["chain", "llm.chat", "retrieve"], "{trace:?}");
    let root = trace.root().unwrap();
    let retrieve = trace.spans.iter().find(|s| s.name == "retrieve").unwrap();
    let llm = trace.spans.iter().find(|s| s.name == "llm.chat").unwrap();
    assert_eq!(retrieve.parent_id, Some(root.span_id));
    assert_eq!(llm.parent_id, Some(retrieve.span_id));
    assert!(trace.spans.iter().all(|s| s.trace_id == trace.trace_id));
    assert!(retrieve.end <= root.end && llm.end <= retrieve.end);
}

/// Many chains at once on a multi-thread runtime, each joining several calls that yield and
/// hop between workers, a nested chain and a stream-like call consumed after it was made,
/// with half the traces sampled out: every trace queued holds exactly its own spans (same
/// trace id, parents inside it), none is queued twice, and a trace sampled out leaves no span
/// behind in another trace or in one of its own.
#[test]
fn concurrent_chains_on_many_workers_keep_their_spans_in_their_own_trace() {
    const CHAINS: usize = 200;
    let (dispatch, tracer) = traced_dispatch(TraceSettings {
        sampling_ratio: 0.5,
        ..on()
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    use tracing::instrument::WithSubscriber as _;
    async fn call(name: &'static str) {
        let span = TraceSpan::new(name, "CHAT_MODEL");
        span.clone()
            .instrument(async {
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                    tracing::warn!("retrying");
                }
            })
            .await;
    }
    runtime.block_on(async {
        let tasks: Vec<_> = (0..CHAINS)
            .map(|index| {
                let chain = async move {
                    let root = TraceSpan::new(format!("chain-{index}"), "CHAIN");
                    root.clone()
                        .instrument(async {
                            tokio::join!(call("a"), call("b"), call("c"));
                            let nested = TraceSpan::new("nested", "CHAIN");
                            nested.instrument(call("d")).await;
                            tracing::info!("done");
                        })
                        .await;
                };
                tokio::spawn(chain.with_subscriber(dispatch.clone()))
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    drop(runtime);
    let traces = tracer.take_queued();
    assert!(
        (20..CHAINS - 20).contains(&traces.len()),
        "about half of {CHAINS} kept: {}",
        traces.len()
    );
    let mut roots: Vec<_> = traces
        .iter()
        .map(|t| t.root().unwrap().name.to_string())
        .collect();
    roots.sort_unstable();
    roots.dedup();
    assert_eq!(roots.len(), traces.len(), "no chain queued twice");
    for trace in &traces {
        assert_eq!(trace.spans.len(), 6, "{trace:?}");
        let root = trace.root().unwrap();
        assert_eq!(root.events.len(), 1, "the chain's own event only: {root:?}");
        let nested = trace.spans.iter().find(|s| s.name == "nested").unwrap();
        assert_eq!(nested.parent_id, Some(root.span_id));
        for span in &trace.spans {
            assert_eq!(span.trace_id, trace.trace_id);
            match span.name.as_ref() {
                "a" | "b" | "c" => assert_eq!(span.parent_id, Some(root.span_id)),
                "d" => assert_eq!(span.parent_id, Some(nested.span_id)),
                _ => continue,
            }
            assert_eq!(span.events.len(), 3, "its own retries: {span:?}");
        }
    }
}

/// An event's fields are read without its span's lock: a field whose `Debug` runs the
/// caller's code that touches the span (sets an attribute, or logs again — with a global
/// subscriber alone, as in the CLI, that event is dispatched again on this thread) neither
/// deadlocks the prediction nor loses the event.
#[test]
fn an_event_field_that_touches_its_span_does_not_deadlock() {
    struct Touches;
    impl std::fmt::Debug for Touches {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            attribute(&TraceSpan::current(), "seen", || json!(true));
            f.write_str("touched")
        }
    }
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let traces = traced(on(), || {
            let chain = TraceSpan::new("chain", "CHAIN");
            chain.in_scope(|| tracing::warn!(value = ?Touches, "with a field"));
        });
        done.send(traces).unwrap();
    });
    let traces = finished
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the event's field deadlocked on its span's lock");
    let root = traces[0].root().unwrap();
    assert_eq!(root.attribute_text("seen").as_deref(), Some("true"));
    assert_eq!(root.events.len(), 1);
    assert_eq!(root.events[0].name, "with a field");
    assert_eq!(
        root.events[0].attributes,
        [("value".to_owned(), "touched".to_owned())]
    );
}

/// An event logged while a thread's locals are being destroyed (a thread-local's `Drop` that
/// logs, after the current span's slot is gone) is no span's event — not a panic, which in a
/// thread-local's destructor aborts the process. Run in a child process of this test binary,
/// so that a failure is that abort, seen from outside.
#[test]
fn an_event_logged_while_a_threads_locals_are_destroyed_does_not_abort() {
    const CHILD: &str = "CHAINLOG_TEST_TLS_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "trace::tests::an_event_logged_while_a_threads_locals_are_destroyed_does_not_abort",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "the child process failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    }
    struct LogsOnDrop;
    impl Drop for LogsOnDrop {
        fn drop(&mut self) {
            tracing::warn!("a thread-local dropped");
        }
    }
    thread_local! {
        static LOGS: std::cell::RefCell<Option<LogsOnDrop>> = const { std::cell::RefCell::new(None) };
    }
    let (dispatch, _tracer) = traced_dispatch(on());
    std::thread::spawn(move || {
        // The thread's subscriber stays for its whole life, locals' destructors included;
        // its slot is made first, the one that logs next, the current span's last, so that
        // they are destroyed in the reverse order.
        std::mem::forget(tracing::dispatcher::set_default(&dispatch));
        LOGS.with(|slot| *slot.borrow_mut() = Some(LogsOnDrop));
        TraceSpan::new("chain", "CHAIN").in_scope(|| tracing::warn!("inside"));
    })
    .join()
    .unwrap();
}

/// Work dropped part-way (a chain given up by a timeout) is dropped inside its span: what it
/// logs then is the span's event, and a span it makes then the span's child — not the
/// caller's, nor a trace of its own.
#[test]
fn work_dropped_part_way_is_dropped_inside_its_span() {
    struct OnDrop;
    impl Drop for OnDrop {
        fn drop(&mut self) {
            tracing::warn!("step abandoned");
            let _cleanup = TraceSpan::new("cleanup", "TASK");
        }
    }
    let traces = traced_async(on(), async {
        let chain = TraceSpan::new("chain", "CHAIN");
        let work = chain.instrument(async {
            let _guard = OnDrop;
            std::future::pending::<()>().await;
        });
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(5), work).await;
        assert!(timed_out.is_err());
    });
    assert_eq!(traces.len(), 1, "{traces:?}");
    let root = traces[0].root().unwrap();
    assert_eq!(root.events.len(), 1, "{root:?}");
    assert_eq!(root.events[0].name, "step abandoned");
    let cleanup = traces[0].spans.iter().find(|s| s.name == "cleanup");
    assert_eq!(cleanup.map(|s| s.parent_id), Some(Some(root.span_id)));
}

/// An instrumented future dropped before it finished fails its span as dropped; one that
/// finished leaves its span as its work left it.
#[test]
fn an_instrumented_future_dropped_before_it_finished_fails_its_span() {
    let traces = traced_async(on(), async {
        TraceSpan::new("done", "CHAIN").instrument(async {}).await;
        let given_up = TraceSpan::new("given up", "CHAIN").instrument(std::future::pending::<()>());
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(5), given_up).await;
        assert!(timed_out.is_err());
    });
    let error = |name: &str| {
        let trace = traces
            .iter()
            .find(|t| t.root().unwrap().name == name)
            .unwrap();
        trace.root().unwrap().error.clone()
    };
    assert_eq!(error("done"), None);
    assert_eq!(error("given up").as_deref(), Some(DROPPED_MESSAGE));
}

/// A value that, while it is serialised into its span's trace, logs, records onto the span
/// and drops the last handle of another span of the same trace.
struct Meddling {
    span: TraceSpan,
    child: std::sync::Mutex<Option<TraceSpan>>,
}

impl serde::Serialize for Meddling {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.span.in_scope(|| tracing::warn!("serialising"));
        attribute(&self.span, "nested", || 1);
        fail(&self.span, "nested error");
        drop(self.child.lock().unwrap().take());
        serializer.serialize_str("value")
    }
}

#[test]
fn a_value_that_logs_records_or_ends_a_span_while_it_is_written_keeps_all_of_it() {
    let traces = traced(on(), || {
        let chain = TraceSpan::new("chain", "CHAIN");
        chain.in_scope(|| {
            let child = TraceSpan::new("child", "TOOL");
            let value = Meddling {
                span: chain.clone(),
                child: std::sync::Mutex::new(Some(child)),
            };
            outputs(&chain, || &value);
        });
    });
    let [child, root] = &traces[0].spans[..] else {
        panic!("two spans: {:?}", traces[0].spans);
    };
    assert_eq!(child.name, "child");
    assert_eq!(
        root.attribute_text("mlflow.spanOutputs").as_deref(),
        Some(r#""value""#)
    );
    assert_eq!(root.attribute_text("nested").as_deref(), Some("1"));
    assert_eq!(root.events.len(), 1);
    assert_eq!(root.error.as_deref(), Some("nested error"));
}

/// A value whose `Serialize` panics after it wrote part of itself.
struct PanicsPartWay;

impl serde::Serialize for PanicsPartWay {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq as _;
        let mut seq = serializer.serialize_seq(Some(2))?;
        seq.serialize_element(&1)?;
        panic!("a Serialize that panics part-way");
    }
}

#[test]
fn a_value_whose_serialize_panics_loses_only_that_attribute() {
    let traces = traced(on(), || {
        let first = TraceSpan::new("first", "CHAIN");
        inputs(&first, || json!({"q": 1}));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            outputs(&first, || PanicsPartWay);
        }));
        assert!(panicked.is_err());
        drop(first);
        let next = TraceSpan::new("next", "CHAIN");
        outputs(&next, || "kept");
        next.in_scope(|| tracing::warn!("an event"));
        fail(&next, "an error");
    });
    let first = traces[0].root().unwrap();
    assert_eq!(
        first.attribute_text("mlflow.spanInputs").as_deref(),
        Some(r#"{"q":1}"#)
    );
    assert_eq!(first.attribute_text("mlflow.spanOutputs"), None);
    let next = traces[1].root().unwrap();
    assert_eq!(
        next.attribute_text("mlflow.spanOutputs").as_deref(),
        Some(r#""kept""#)
    );
    assert_eq!(next.events.len(), 1);
    assert_eq!(next.error.as_deref(), Some("an error"));
}

#[test]
fn a_value_that_locks_what_a_sibling_span_holds_does_not_deadlock_the_trace() {
    use std::sync::{Arc, Barrier, Mutex};
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let traces = traced(on(), || {
            let chain = TraceSpan::new("chain", "CHAIN");
            let (a, b) =
                chain.in_scope(|| (TraceSpan::new("a", "TOOL"), TraceSpan::new("b", "TOOL")));
            let shared = Arc::new(Mutex::new(vec![1, 2, 3]));
            let held = Arc::new(Barrier::new(2));
            let sibling = {
                let (shared, held) = (Arc::clone(&shared), Arc::clone(&held));
                std::thread::spawn(move || {
                    let guard = shared.lock().unwrap();
                    held.wait();
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    attribute(&b, "n", || guard.len());
                })
            };
            held.wait();
            outputs(&a, || &*shared);
            sibling.join().unwrap();
        });
        done.send(traces).unwrap();
    });
    let traces = finished
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("two spans of one trace deadlocked");
    assert_eq!(traces[0].spans.len(), 3);
}

#[test]
fn tool_arguments_holding_an_escaped_secret_are_written_plain_for_the_scrubbing() {
    crate::secret::register("canary-5d0e7a91b2");
    let traces = traced(on(), || {
        drop(tool_span("lookup", r#"{"key": "as sent"}"#));
        drop(tool_span("lookup", r#"{"key":"canary\u002d5d0e7a91b2"}"#));
    });
    let inputs = |trace: &TraceRecord| {
        let attributes = trace.spans[0].encoded_attributes();
        let (_, text) = attributes
            .into_iter()
            .find(|(key, _)| key == "mlflow.spanInputs")
            .unwrap();
        text
    };
    assert_eq!(inputs(&traces[0]), r#"{"key": "as sent"}"#, "byte for byte");
    assert_eq!(inputs(&traces[1]), r#"{"key":"***"}"#);
}
