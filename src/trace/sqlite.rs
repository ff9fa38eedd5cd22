//! [`SqliteSink`]: traces as the rows MLflow 3.17.2 itself writes into its SQLite schema
//! (`trace_info`, `trace_tags`, `trace_request_metadata`, `spans`), so `mlflow ui` and
//! `mlflow.search_traces` on the file show them.
//!
//! The rows follow what MLflow's server stores for an OTLP-ingested trace followed by
//! `StartTraceV3` (checked row by row against mlflow 3.17.2): the trace id `tr-<hex>`, token
//! usage in `trace_info`'s columns, tags `mlflow.artifactLocation`,
//! `mlflow.trace.spansLocation = TRACKING_STORE`, `service.name`, metadata
//! `mlflow.trace_schema.version`, `mlflow.modelId`, `mlflow.sourceRun`; each span's `content`
//! is MLflow's span dict (base64 ids, JSON-text attributes, `STATUS_CODE_*`).

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use base64::Engine as _;
use rusqlite::{
    Connection, TransactionBehavior, params,
    types::{ToSqlOutput, Value as SqlValue, ValueRef},
};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{
    TraceLink,
    export::ExportFailure,
    model::{SpanRecord, TraceRecord, previews, unix_ns},
};

/// Writes traces into a SQLite tracking store.
#[derive(Debug)]
pub struct SqliteSink {
    db_path: PathBuf,
    link: TraceLink,
    tags: Vec<(String, String)>,
    /// Opened at the first export and kept (with its cached statements) while writes succeed.
    conn: Option<Connection>,
}

impl SqliteSink {
    pub(super) fn new(db_path: PathBuf, link: TraceLink, tags: Vec<(String, String)>) -> Self {
        Self {
            db_path,
            link,
            tags,
            conn: None,
        }
    }

    /// Writes `traces` in one transaction; `stop` is asked before each trace is encoded and
    /// before each `INSERT` (of up to [`ROWS_PER_INSERT`] rows), and when it says
    /// yes the transaction is rolled back and `Ok(Written::Stopped)` returned: a flush is
    /// waiting for this thread and will write the traces itself. Runs on an export thread,
    /// which has nothing else to do meanwhile, so the write blocks it directly.
    pub(super) fn export(
        &mut self,
        traces: &[TraceRecord],
        stop: &dyn Fn() -> bool,
    ) -> Result<Written, ExportFailure> {
        let result = match self.conn.take() {
            Some(conn) => Ok(conn),
            None => open(&self.db_path),
        }
        .and_then(|mut conn| {
            let written = write(
                &mut conn,
                &self.link,
                &self.tags,
                traces,
                stop,
                ROWS_PER_INSERT,
            )?;
            Ok((conn, written))
        });
        match result {
            Ok((conn, written)) => {
                self.conn = Some(conn);
                Ok(written)
            }
            // The connection is dropped: the next batch opens a fresh one.
            Err(error) => Err(ExportFailure {
                message: format!(
                    "cannot write traces into `{}`: {error}",
                    self.db_path.display()
                ),
                permanent: false,
            }),
        }
    }
}

/// Whether [`SqliteSink::export`] wrote its traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// Committed.
    All,
    /// Asked to stop: nothing written.
    Stopped,
}

/// The page cache of the export's connection, in KiB: a batch of traces dirties a few MiB
/// (MLflow's schema indexes every span six ways); with SQLite's default 2 MiB the pager
/// spills mid-transaction and writes pages twice.
const CACHE_KIB: i64 = 32 * 1024;

fn open(db_path: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(db_path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    Ok(conn)
}

/// One trace's rows, encoded (scrubbed, cut, serialised) before the transaction.
struct TraceRows<'a> {
    trace_id: String,
    trace: &'a TraceRecord,
    root: &'a SpanRecord,
    request_preview: Option<String>,
    response_preview: Option<String>,
    /// Span id (hex), span, its `content` (MLflow's span dict), in span id order.
    spans: Vec<(String, &'a SpanRecord, String)>,
}

impl<'a> TraceRows<'a> {
    /// `None` for a trace without a root span.
    fn encode(trace: &'a TraceRecord) -> Option<rusqlite::Result<Self>> {
        let root_at = trace
            .spans
            .iter()
            .position(|span| span.parent_id.is_none())?;
        let root = &trace.spans[root_at];
        let trace_id = trace.mlflow_id();
        // Each span's attributes encoded once: for its row and, the root's, for the previews.
        let encoded: Vec<Encoded> = trace
            .spans
            .iter()
            .map(SpanRecord::encoded_attributes)
            .collect();
        let (request_preview, response_preview) = previews(root, &encoded[root_at]);
        let spans = trace
            .spans
            .iter()
            .zip(&encoded)
            .map(|(span, attributes)| {
                let content = span_content(span, &trace_id, attributes)?;
                Ok((format!("{:016x}", span.span_id), span, content))
            })
            .collect::<rusqlite::Result<Vec<_>>>();
        Some(spans.map(|mut spans| {
            spans.sort_by(|a, b| a.0.cmp(&b.0));
            Self {
                trace_id,
                trace,
                root,
                request_preview,
                response_preview,
                spans,
            }
        }))
    }
}

/// What every statement of one write shares: each trace's rows, encoded (scrubbed, cut,
/// serialised), in trace id order — the order of every b-tree keyed on trace ids, which lead
/// with the time, so a batch fills them at their end, page by page — and what each trace is
/// tagged with and linked to.
struct Batch<'a> {
    rows: Vec<TraceRows<'a>>,
    /// `--trace-tag`s, their values scrubbed.
    user_tags: Vec<(String, String)>,
    /// Request metadata: `mlflow.trace_schema.version`, `mlflow.modelId`, `mlflow.sourceRun`.
    metadata: Vec<(&'static str, &'a str)>,
    experiment_id: i64,
}

impl<'a> Batch<'a> {
    /// `None` when `stop`, asked before each trace, says so.
    fn encode(
        link: &'a TraceLink,
        tags: &[(String, String)],
        traces: &'a [TraceRecord],
        stop: &dyn Fn() -> bool,
    ) -> rusqlite::Result<Option<Self>> {
        let mut rows = Vec::with_capacity(traces.len());
        for trace in traces {
            if stop() {
                return Ok(None);
            }
            if let Some(encoded) = TraceRows::encode(trace) {
                rows.push(encoded?);
            }
        }
        rows.sort_by(|a, b| a.trace_id.cmp(&b.trace_id));
        let user_tags = tags
            .iter()
            .map(|(k, v)| (k.clone(), crate::secret::scrub(v)))
            .collect();
        let mut metadata = vec![("mlflow.trace_schema.version", "3")];
        if let Some(model_id) = &link.model_id {
            metadata.push(("mlflow.modelId", model_id));
        }
        if let Some(run_id) = &link.run_id {
            metadata.push(("mlflow.sourceRun", run_id));
        }
        Ok(Some(Self {
            rows,
            user_tags,
            metadata,
            experiment_id: link.experiment_id.parse().unwrap_or(0),
        }))
    }
}

/// The experiment's artifact location (empty when it has none), for each trace's
/// `mlflow.artifactLocation` tag.
fn artifact_location(
    tx: &rusqlite::Transaction<'_>,
    experiment_id: i64,
) -> rusqlite::Result<String> {
    Ok(tx
        .prepare_cached("SELECT artifact_location FROM experiments WHERE experiment_id = ?1")?
        .query_row(params![experiment_id], |row| row.get(0))
        .unwrap_or_default())
}

/// Writes `traces` in one transaction, through cached statements of up to `rows_per_insert`
/// rows ([`ROWS_PER_INSERT`]; the tests compare with one). Everything is encoded first: the
/// transaction takes the write lock at its start (`BEGIN IMMEDIATE`, waiting out another
/// writer up to the busy timeout) and holds it only for the inserts.
fn write(
    conn: &mut Connection,
    link: &TraceLink,
    tags: &[(String, String)],
    traces: &[TraceRecord],
    stop: &dyn Fn() -> bool,
    rows_per_insert: usize,
) -> rusqlite::Result<Written> {
    let Some(Batch {
        rows,
        user_tags,
        metadata,
        experiment_id,
    }) = Batch::encode(link, tags, traces, stop)?
    else {
        return Ok(Written::Stopped);
    };
    let rows = &rows;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let artifact_location = artifact_location(&tx, experiment_id)?;
    let optional = |value: Option<i64>| value.map_or(NULL, integer);
    let info = rows.iter().map(|row| {
        let (trace, root) = (row.trace, row.root);
        let start_ms = unix_ns(root.start) / 1_000_000;
        let end_ms = trace
            .spans
            .iter()
            .map(|span| unix_ns(span.end) / 1_000_000)
            .max()
            .unwrap_or(start_ms);
        let usage = trace.token_usage();
        vec![
            text(&row.trace_id),
            integer(experiment_id),
            integer(start_ms),
            integer(end_ms - start_ms),
            text(trace.state()),
            row.request_preview.as_deref().map_or(NULL, text),
            row.response_preview.as_deref().map_or(NULL, text),
            text(&root.name),
            optional(usage.map(|u| u.input_tokens)),
            optional(usage.map(|u| u.output_tokens)),
            optional(usage.map(|u| u.total_tokens)),
        ]
    });
    // Key by key, then trace by trace: each index keyed on (key, request_id) is then filled
    // in key order.
    let key_value_rows = |pairs: Vec<_>| {
        pairs.into_iter().flat_map(move |(key, value)| {
            rows.iter()
                .map(move |row| vec![text(key), text(value), text(&row.trace_id)])
        })
    };
    let artifact_tags = rows.iter().map(|row| {
        vec![
            text("mlflow.artifactLocation"),
            owned_text(format!(
                "{artifact_location}/traces/{}/artifacts",
                row.trace_id
            )),
            text(&row.trace_id),
        ]
    });
    let same_tags = [
        ("mlflow.trace.spansLocation", "TRACKING_STORE"),
        ("service.name", "chainlog"),
    ]
    .into_iter()
    .chain(
        user_tags
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str())),
    )
    .collect();
    let span_rows = rows.iter().flat_map(|row| {
        row.spans.iter().map(move |(span_id, span, content)| {
            let model = |key| span.attribute_string(key).map_or(NULL, owned_text);
            vec![
                text(&row.trace_id),
                integer(experiment_id),
                text(span_id),
                span.parent_id
                    .map_or(NULL, |id| owned_text(format!("{id:016x}"))),
                text(&span.name),
                text(&span.span_type),
                text(if span.error.is_some() { "ERROR" } else { "OK" }),
                integer(span.start_ns()),
                integer(span.end_ns()),
                text(content),
                model("mlflow.llm.model"),
                model("mlflow.llm.provider"),
            ]
        })
    });
    let tables: [(&str, &str, TableRows<'_>); 4] = [
        (
            "trace_info (request_id, experiment_id, timestamp_ms, execution_time_ms, status, \
             request_preview, response_preview, db_payload_generation, trace_name, \
             input_tokens, output_tokens, total_tokens)",
            "?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?",
            Box::new(info),
        ),
        (
            "trace_tags (key, value, request_id)",
            "?, ?, ?",
            Box::new(artifact_tags.chain(key_value_rows(same_tags))),
        ),
        (
            "trace_request_metadata (key, value, request_id)",
            "?, ?, ?",
            Box::new(key_value_rows(metadata)),
        ),
        (
            "spans (trace_id, experiment_id, span_id, parent_span_id, name, type, status, \
             start_time_unix_nano, end_time_unix_nano, content, model_name, model_provider)",
            "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?",
            Box::new(span_rows),
        ),
    ];
    for (table, placeholders, table_rows) in tables {
        let written = insert_rows(&tx, table, placeholders, table_rows, rows_per_insert, stop)?;
        if written == Written::Stopped {
            return Ok(Written::Stopped);
        }
    }
    tx.commit()?;
    Ok(Written::All)
}

/// One table's rows for [`insert_rows`], each its values in column order.
type TableRows<'a> = Box<dyn Iterator<Item = Vec<ToSqlOutput<'a>>> + 'a>;

/// A SQL NULL.
const NULL: ToSqlOutput<'static> = ToSqlOutput::Owned(SqlValue::Null);

/// `value`, bound without a copy of ours (SQLite takes its own while the statement runs).
fn text(value: &str) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(value.as_bytes()))
}

/// A text made for the row.
fn owned_text(value: String) -> ToSqlOutput<'static> {
    ToSqlOutput::Owned(SqlValue::Text(value))
}

/// An integer.
fn integer(value: i64) -> ToSqlOutput<'static> {
    ToSqlOutput::Owned(SqlValue::Integer(value))
}

/// The bytes of text `value` holds (0 for a number or NULL).
fn text_len(value: &ToSqlOutput<'_>) -> usize {
    match value {
        ToSqlOutput::Borrowed(ValueRef::Text(text)) => text.len(),
        ToSqlOutput::Owned(SqlValue::Text(text)) => text.len(),
        _ => 0,
    }
}

/// The most text one `INSERT` of many rows binds: SQLite copies each bound text while the
/// statement runs, so 64 spans with 1 MiB attributes would hold 64 copies at once; a chunk over
/// this goes in row by row.
const MAX_STATEMENT_TEXT: usize = 1 << 20;

/// The most rows one `INSERT` statement writes. One statement keeps the cursors on the table
/// and each of its indexes open from row to row, so rows in key order (trace ids lead with the
/// time) are appended without a descent from each b-tree's root per row; 64 rows of the widest
/// table bind 768 values, far below SQLite's limit of 32,766.
const ROWS_PER_INSERT: usize = 64;

/// Inserts (or replaces) `rows` into `table` (with its column list), `placeholders` being one
/// row's `VALUES` list: in statements of `rows_per_insert` rows, the rest — and a chunk
/// binding more than [`MAX_STATEMENT_TEXT`] — one by one (cached statements of two shapes
/// only). `stop` is asked before each chunk of up to `rows_per_insert` rows.
fn insert_rows<'a>(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    placeholders: &str,
    rows: impl Iterator<Item = Vec<ToSqlOutput<'a>>>,
    rows_per_insert: usize,
    stop: &dyn Fn() -> bool,
) -> rusqlite::Result<Written> {
    let statement = |count: usize| {
        let values = vec![format!("({placeholders})"); count].join(", ");
        format!("INSERT OR REPLACE INTO {table} VALUES {values}")
    };
    let (many, one) = (statement(rows_per_insert), statement(1));
    let mut rows = rows.peekable();
    while rows.peek().is_some() {
        if stop() {
            return Ok(Written::Stopped);
        }
        let chunk: Vec<Vec<ToSqlOutput<'a>>> = rows.by_ref().take(rows_per_insert).collect();
        let text_bytes: usize = chunk.iter().flatten().map(text_len).sum();
        if chunk.len() == rows_per_insert && text_bytes <= MAX_STATEMENT_TEXT {
            tx.prepare_cached(&many)?
                .execute(rusqlite::params_from_iter(chunk.iter().flatten()))?;
        } else {
            let mut single = tx.prepare_cached(&one)?;
            for row in &chunk {
                single.execute(rusqlite::params_from_iter(row))?;
            }
        }
    }
    Ok(Written::All)
}

/// A span's attributes as [`SpanRecord::encoded_attributes`] gives them: key and JSON text.
type Encoded = Vec<(String, String)>;

/// MLflow's span dict (`Span.to_dict()`), as the `content` column holds it, with the span's
/// `attributes` as [`SpanRecord::encoded_attributes`] gives them.
fn span_content(
    span: &SpanRecord,
    trace_id: &str,
    attributes: &[(String, String)],
) -> rusqlite::Result<String> {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let request_id = Value::String(trace_id.to_owned()).to_string();
    let mut attribute_map: BTreeMap<&str, &str> = attributes
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    attribute_map.insert("mlflow.traceRequestId", &request_id);
    let events: Vec<Value> = span
        .events
        .iter()
        .map(|event| {
            let attributes: Map<String, Value> = event
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(crate::secret::scrub(v))))
                .collect();
            json!({
                "name": crate::secret::scrub(&event.name),
                "time_unix_nano": unix_ns(event.time),
                "attributes": attributes,
            })
        })
        .collect();
    let (code, message) = match &span.error {
        Some(message) => ("STATUS_CODE_ERROR", crate::secret::scrub(message)),
        None => ("STATUS_CODE_OK", String::new()),
    };
    let dict = SpanDict {
        attributes: attribute_map,
        end_time_unix_nano: span.end_ns(),
        events,
        links: [],
        name: &span.name,
        parent_span_id: span.parent_id.map(|id| b64(&id.to_be_bytes())),
        span_id: b64(&span.span_id.to_be_bytes()),
        start_time_unix_nano: span.start_ns(),
        status: SpanStatus { code, message },
        trace_id: b64(&span.trace_id.to_be_bytes()),
    };
    serde_json::to_string(&dict)
        .map_err(|error| rusqlite::Error::ToSqlConversionFailure(error.into()))
}

/// MLflow's span dict, its keys in the order `json.dumps(sort_keys=True)` would write them.
#[derive(Serialize)]
struct SpanDict<'a> {
    attributes: BTreeMap<&'a str, &'a str>,
    end_time_unix_nano: i64,
    events: Vec<Value>,
    links: [(); 0],
    name: &'a str,
    parent_span_id: Option<String>,
    span_id: String,
    start_time_unix_nano: i64,
    status: SpanStatus,
    trace_id: String,
}

/// A span dict's `status`.
#[derive(Serialize)]
struct SpanStatus {
    code: &'static str,
    message: String,
}

/// What the tests use to check the rows a write stores.
#[cfg(test)]
pub(super) mod check {
    use super::*;

    /// Every row of the four tables (and sqlite_sequence-free), sorted by their keys.
    pub(in crate::trace) fn dump(db: &std::path::Path) -> Vec<String> {
        let conn = Connection::open(db).unwrap();
        let mut out = Vec::new();
        for (table, order) in [
            ("trace_info", "request_id"),
            ("trace_tags", "request_id, key"),
            ("trace_request_metadata", "request_id, key"),
            ("spans", "trace_id, span_id"),
        ] {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {table} ORDER BY {order}"))
                .unwrap();
            let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
            let rows = stmt
                .query_map([], |row| {
                    let mut line = format!("{table}:");
                    for (i, name) in names.iter().enumerate() {
                        let v: rusqlite::types::Value = row.get(i)?;
                        line.push_str(&format!(" {name}={v:?}"));
                    }
                    Ok(line)
                })
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            out.extend(rows);
        }
        out
    }

    /// Writes `traces` into two fresh stores under `dir`, in statements of
    /// [`ROWS_PER_INSERT`] rows and in statements of one row (the shape checked row by row
    /// against MLflow 3.17.2); both dumps.
    pub(in crate::trace) fn both(
        dir: &std::path::Path,
        link: &TraceLink,
        tags: &[(String, String)],
        traces: &[TraceRecord],
    ) -> (Vec<String>, Vec<String>) {
        let mut dumps = Vec::new();
        for (i, rows_per_insert) in [(0, ROWS_PER_INSERT), (1, 1)] {
            let sub = dir.join(format!("s{i}"));
            std::fs::create_dir_all(&sub).unwrap();
            let db = sub.join("mlflow.db");
            crate::store::SqliteStore::open(&db, &dir.join("mlruns")).unwrap();
            let mut conn = open(&db).unwrap();
            let written = write(&mut conn, link, tags, traces, &|| false, rows_per_insert).unwrap();
            assert_eq!(written, Written::All);
            drop(conn);
            dumps.push(dump(&db));
        }
        let one_row = dumps.pop().unwrap();
        (dumps.pop().unwrap(), one_row)
    }

    /// Writes `traces` into the fresh store `db`, as an export does.
    pub(in crate::trace) fn write_into(
        db: &std::path::Path,
        link: &TraceLink,
        traces: &[TraceRecord],
        stop: &dyn Fn() -> bool,
    ) -> Written {
        let mut conn = open(db).unwrap();
        write(&mut conn, link, &[], traces, stop, ROWS_PER_INSERT).unwrap()
    }
}
