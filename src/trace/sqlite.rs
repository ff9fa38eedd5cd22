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

use std::{path::PathBuf, time::Duration};

use base64::Engine as _;
use rusqlite::{Connection, params};
use serde_json::{Map, Value, json};

use super::{
    TraceLink,
    export::ExportFailure,
    model::{SpanRecord, TraceRecord, unix_ns},
};

/// Writes traces into a SQLite tracking store.
#[derive(Debug)]
pub struct SqliteSink {
    db_path: PathBuf,
    link: TraceLink,
    tags: Vec<(String, String)>,
}

impl SqliteSink {
    pub(super) fn new(db_path: PathBuf, link: TraceLink, tags: Vec<(String, String)>) -> Self {
        Self {
            db_path,
            link,
            tags,
        }
    }

    pub(super) async fn export(&mut self, traces: Vec<TraceRecord>) -> Result<(), ExportFailure> {
        let db_path = self.db_path.clone();
        let link = self.link.clone();
        let tags = self.tags.clone();
        let shown = db_path.display().to_string();
        let result =
            tokio::task::spawn_blocking(move || write(&db_path, &link, &tags, &traces)).await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(ExportFailure {
                message: format!("cannot write traces into `{shown}`: {error}"),
                permanent: false,
            }),
            Err(error) => Err(ExportFailure {
                message: format!("cannot write traces into `{shown}`: {error}"),
                permanent: false,
            }),
        }
    }
}

/// Writes `traces` in one transaction.
fn write(
    db_path: &std::path::Path,
    link: &TraceLink,
    tags: &[(String, String)],
    traces: &[TraceRecord],
) -> rusqlite::Result<()> {
    let mut conn = Connection::open(db_path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let tx = conn.transaction()?;
    let experiment_id: i64 = link.experiment_id.parse().unwrap_or(0);
    let artifact_location: String = tx
        .query_row(
            "SELECT artifact_location FROM experiments WHERE experiment_id = ?1",
            params![experiment_id],
            |row| row.get(0),
        )
        .unwrap_or_default();
    for trace in traces {
        let Some(root) = trace.root() else {
            continue;
        };
        let trace_id = trace.mlflow_id();
        let start_ms = unix_ns(root.start) / 1_000_000;
        let end_ms = trace
            .spans
            .iter()
            .map(|span| unix_ns(span.end) / 1_000_000)
            .max()
            .unwrap_or(start_ms);
        let usage = trace.token_usage();
        tx.execute(
            "INSERT OR REPLACE INTO trace_info (request_id, experiment_id, timestamp_ms, \
             execution_time_ms, status, request_preview, response_preview, \
             db_payload_generation, trace_name, input_tokens, output_tokens, total_tokens) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?9, ?10, ?11)",
            params![
                trace_id,
                experiment_id,
                start_ms,
                end_ms - start_ms,
                trace.state(),
                trace.request_preview(),
                trace.response_preview(),
                root.name,
                usage.map(|u| u.input_tokens),
                usage.map(|u| u.output_tokens),
                usage.map(|u| u.total_tokens),
            ],
        )?;
        let mut trace_tags = vec![
            (
                "mlflow.artifactLocation".to_owned(),
                format!("{artifact_location}/traces/{trace_id}/artifacts"),
            ),
            (
                "mlflow.trace.spansLocation".to_owned(),
                "TRACKING_STORE".to_owned(),
            ),
            ("service.name".to_owned(), "chainlog".to_owned()),
        ];
        trace_tags.extend(
            tags.iter()
                .map(|(k, v)| (k.clone(), crate::secret::scrub(v))),
        );
        for (key, value) in &trace_tags {
            tx.execute(
                "INSERT OR REPLACE INTO trace_tags (key, value, request_id) VALUES (?1, ?2, ?3)",
                params![key, value, trace_id],
            )?;
        }
        let mut metadata = vec![("mlflow.trace_schema.version", "3".to_owned())];
        if let Some(model_id) = &link.model_id {
            metadata.push(("mlflow.modelId", model_id.clone()));
        }
        if let Some(run_id) = &link.run_id {
            metadata.push(("mlflow.sourceRun", run_id.clone()));
        }
        for (key, value) in &metadata {
            tx.execute(
                "INSERT OR REPLACE INTO trace_request_metadata (key, value, request_id) \
                 VALUES (?1, ?2, ?3)",
                params![key, value, trace_id],
            )?;
        }
        for span in &trace.spans {
            let content = span_content(span, &trace_id);
            tx.execute(
                "INSERT OR REPLACE INTO spans (trace_id, experiment_id, span_id, parent_span_id, \
                 name, type, status, start_time_unix_nano, end_time_unix_nano, content, \
                 model_name, model_provider) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    trace_id,
                    experiment_id,
                    format!("{:016x}", span.span_id),
                    span.parent_id.map(|id| format!("{id:016x}")),
                    span.name,
                    span.span_type,
                    if span.error.is_some() { "ERROR" } else { "OK" },
                    span.start_ns(),
                    span.end_ns(),
                    content,
                    string_attribute(span, "mlflow.llm.model"),
                    string_attribute(span, "mlflow.llm.provider"),
                ],
            )?;
        }
    }
    tx.commit()
}

/// A string attribute's value (not its JSON text).
fn string_attribute(span: &SpanRecord, key: &str) -> Option<String> {
    let text = span.attribute_text(key)?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::String(value)) => Some(value),
        _ => Some(text),
    }
}

/// MLflow's span dict (`Span.to_dict()`), as the `content` column holds it.
fn span_content(span: &SpanRecord, trace_id: &str) -> String {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut attributes: Map<String, Value> = span
        .encoded_attributes()
        .into_iter()
        .map(|(key, value)| (key, Value::String(value)))
        .collect();
    attributes.insert(
        "mlflow.traceRequestId".to_owned(),
        Value::String(Value::String(trace_id.to_owned()).to_string()),
    );
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
    json!({
        "trace_id": b64(&span.trace_id.to_be_bytes()),
        "span_id": b64(&span.span_id.to_be_bytes()),
        "parent_span_id": span.parent_id.map(|id| b64(&id.to_be_bytes())),
        "name": span.name,
        "start_time_unix_nano": span.start_ns(),
        "end_time_unix_nano": span.end_ns(),
        "events": events,
        "status": {"code": code, "message": message},
        "attributes": attributes,
        "links": [],
    })
    .to_string()
}
