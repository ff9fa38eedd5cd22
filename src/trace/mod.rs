//! Traces: every prediction becomes an MLflow trace — sent to an MLflow server over
//! OTLP/HTTP, or written as MLflow's own rows into a SQLite tracking store.
//!
//! Owns the trace model ([`TraceRecord`], [`SpanRecord`]), the spans while they run
//! ([`TraceSpan`], chainlog's own: not the data of `tracing` spans, which cost a traced call
//! the registry's bookkeeping), what they record, written into one buffer per trace as it
//! happens (`packed`: no copy of a value kept per attribute, one block per trace in the
//! queue), and the `tracing` layer that carries the export with the
//! subscriber and makes log events span events ([`TraceLayer`]), the bounded export queue and
//! its two export threads ([`Tracer`]), and the two destinations (`otlp`: OTLP through
//! `opentelemetry-otlp` plus MLflow's `StartTraceV3` for the metadata; `sqlite`: MLflow
//! 3.17.2's `trace_info`, `trace_tags`, `trace_request_metadata` and `spans` rows). It does
//! not own the spans' content: the chain registry, the LLM client and chains put it there
//! through `record` ([`attribute`], [`attributes`], [`json_value`], [`json_text`], [`fail`],
//! [`tool_span`]). [`read_trace`]
//! reads a trace's spans back from a store, for `replay --trace`.
//!
//! # What a trace holds
//!
//! - The root span, type `CHAIN`, named after the chain: `mlflow.spanInputs` (the chain's
//!   input JSON) and `mlflow.spanOutputs` (its output JSON); a failed chain sets status
//!   ERROR with the error message, and the trace's state is then `ERROR`; so does a chain, or
//!   an LLM call, dropped before it finished (a timeout, a client gone: [`DROPPED_MESSAGE`]).
//! - One `CHAT_MODEL` span (`llm.chat`) per LLM call: `mlflow.llm.model`,
//!   `mlflow.llm.provider` (`openai`), `mlflow.message.format` (`openai`),
//!   `mlflow.chat.tokenUsage` (`{"input_tokens", "output_tokens", "total_tokens"}`, absent when
//!   the server reported no usage), `gen_ai.response.finish_reason`, `latency_ms`,
//!   `attempts`, `stream`. Retries are span events (`llm request failed; retrying`, with the
//!   reason and delay).
//! - **For replay** (a cassette rebuilt from a trace): the `CHAT_MODEL` span's
//!   `mlflow.spanInputs` is the exact OpenAI chat-completion request body chainlog sent (JSON
//!   text, byte for byte), and `mlflow.spanOutputs` the full chat-completion response body as
//!   received; for a stream, the completion assembled from its chunks (`object:
//!   chat.completion`, one choice with the message, its tool calls, finish reason, usage).
//!   Both are scrubbed of secrets and cut like any attribute (below), so a body over 1 MiB
//!   cannot be replayed from its trace.
//! - A `TOOL` span per tool call in chains that run tools ([`tool_span`]): the arguments as
//!   inputs, the result as outputs. A chain adds spans of its own with [`TraceSpan::new`]
//!   (any MLflow span type: `RETRIEVER`, `PARSER`, …); what runs in such a span's scope
//!   ([`TraceSpan::in_scope`], [`TraceSpan::instrument`]) makes its children, and log events
//!   at INFO or above inside it become its span events.
//! - The trace id (`tr-` and 32 hex digits, the OTel trace id) leads with the time it was
//!   made, in microseconds since the Unix epoch, followed by 64 random bits: traces made
//!   later sort later, so the store's indexes on trace ids take a batch at their end.
//! - Trace metadata `mlflow.modelId` (the LoggedModel predicted with) and `mlflow.sourceRun`
//!   (its run), `mlflow.trace_schema.version = 3`; the request and response previews (the
//!   root's inputs and outputs, at most 1000 characters); tags from `--trace-tag key=value`
//!   and `mlflow.traceName` (the chain's name).
//!
//! # Limits
//!
//! Every attribute is scrubbed of secrets ([`crate::secret::scrub`]: registered values and
//! key shapes) in the background, then cut at [`MAX_ATTRIBUTE_BYTES`] (1 MiB of JSON text):
//! a longer value becomes a JSON string of its first 1 MiB followed by
//! `…[truncated by chainlog: N bytes]` ([`TRUNCATION_MARKER`]; N is the whole value's size). A span keeps at most 128
//! events.
//!
//! # Export
//!
//! Finished traces wait in a queue of [`QUEUE_CAPACITY`] traces; an export thread of its
//! own sends them in batches — for `serve` at idle CPU priority on Linux
//! (`SCHED_IDLE`: predictions always come first; while they keep every CPU busy, traces wait
//! and then drop), for the other commands at the process's priority ([`ExportPriority`]).
//! A full queue drops the trace and counts its spans (one warning); a dead,
//! slow or refusing destination never fails or delays a prediction (one warning naming it
//! and what it answered; a server without OTLP support — 404 from an MLflow older than 3.4,
//! 501 from a file store — stops the export for the process). The CLI flushes the queue at
//! exit, after `serve`'s graceful shutdown too, from a thread at normal priority.
//!
//! # Controls
//!
//! `--no-trace` or `CHAINLOG_TRACING=false` turn tracing off; `MLFLOW_TRACE_SAMPLING_RATIO`
//! (0.0–1.0, default 1.0) keeps that share of traces; `CHAINLOG_TRACE_EXPORT_PRIORITY`
//! (`idle` or `normal`; unset, the CLI's `serve` uses `idle` and the other commands
//! `normal`) sets the background export's CPU priority; `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (and the other `OTEL_EXPORTER_OTLP_*` variables) send the
//! spans to that OpenTelemetry collector instead of the tracking store;
//! `CHAINLOG_TRACE_FLUSH_TIMEOUT` (seconds, default 10) is how long the flush at exit may
//! take.

mod export;
mod live;
mod model;
mod otlp;
mod packed;
mod read;
mod record;
mod sqlite;

pub use export::{Destination, QUEUE_CAPACITY, Tracer};
pub use live::{Instrumented, TraceFilter, TraceLayer, TraceSpan};
pub use model::{
    AttributeValue, MAX_ATTRIBUTE_BYTES, SpanEvent, SpanRecord, TRUNCATION_MARKER, TokenUsage,
    TraceRecord,
};
pub use otlp::OtlpSink;
pub use read::{StoredSpan, TraceReadError, read_trace};
pub(crate) use record::UntilFinished;
pub(crate) use record::own_attributes;
pub use record::{
    DROPPED_MESSAGE, attribute, attributes, error_chain, fail, inputs, is_active, json_text,
    json_value, outputs, tool_span,
};
pub use sqlite::SqliteSink;

use crate::store::TrackingUri;

/// The attribute that holds a span's MLflow type (`CHAIN`, `CHAT_MODEL`, `TOOL`, …).
const SPAN_TYPE_KEY: &str = "mlflow.spanType";

/// The variable that turns tracing off (`false`, `0`, `no`, `off`).
pub const TRACING_VAR: &str = "CHAINLOG_TRACING";

/// MLflow's variable for the share of traces kept.
pub const SAMPLING_VAR: &str = "MLFLOW_TRACE_SAMPLING_RATIO";

/// The variable that sets the background export's CPU priority: `idle` or `normal`
/// ([`ExportPriority`]). Unset (or empty), the CLI picks per command: `idle` for `serve`,
/// `normal` for the others.
pub const EXPORT_PRIORITY_VAR: &str = "CHAINLOG_TRACE_EXPORT_PRIORITY";

/// The variable that sets how long the CLI's flush at exit may take, in seconds (default
/// [`DEFAULT_FLUSH_TIMEOUT`]): a large batch sent to a slow MLflow server needs more.
pub const FLUSH_TIMEOUT_VAR: &str = "CHAINLOG_TRACE_FLUSH_TIMEOUT";

/// How long the CLI's flush at exit may take unless `CHAINLOG_TRACE_FLUSH_TIMEOUT` says.
pub const DEFAULT_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The CPU priority of the background export thread (the flush at exit always runs at
/// normal priority).
///
/// A process exits only once each of its threads has had a CPU to end on, so while other
/// processes keep every CPU busy, an idle-priority thread holds up the exit (a fraction of a
/// second to seconds). The CLI therefore uses `Idle` only for `serve`, whose requests per
/// second it protects, and `Normal` for the others (`predict`, `run`, `log`, `replay`, and
/// `worker`, whose Python parent waits for its exit), which flush at exit anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportPriority {
    /// Linux's `SCHED_IDLE`: the export gets a CPU only when no prediction wants one; while
    /// predictions keep every CPU busy, traces wait in the queue and, once it is full, are
    /// dropped (counted, one warning). Elsewhere than Linux, as `Normal`.
    #[default]
    Idle,
    /// The process's priority: every trace is exported as long as the export keeps up, at the
    /// cost of CPU the predictions would have had (a load test that needs every trace).
    Normal,
}

/// What goes wrong setting tracing up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// `MLFLOW_TRACE_SAMPLING_RATIO` is not a number from 0.0 to 1.0.
    #[error("{SAMPLING_VAR} must be a number from 0.0 to 1.0, got `{value}`")]
    SamplingRatio {
        /// The value given.
        value: String,
    },
    /// `CHAINLOG_TRACING` is neither on (`true`, `1`, `yes`, `on`) nor off (`false`, `0`, `no`,
    /// `off`).
    #[error("{TRACING_VAR} must be true or false (1/0, yes/no, on/off), got `{value}`")]
    Switch {
        /// The value given.
        value: String,
    },
    /// A `--trace-tag` is not `key=value`.
    #[error("--trace-tag must be key=value with a non-empty key, got `{tag}`")]
    Tag {
        /// The tag given.
        tag: String,
    },
    /// `CHAINLOG_TRACE_EXPORT_PRIORITY` is neither `idle` nor `normal`.
    #[error("{EXPORT_PRIORITY_VAR} must be idle or normal, got `{value}`")]
    ExportPriority {
        /// The value given.
        value: String,
    },
    /// `CHAINLOG_TRACE_FLUSH_TIMEOUT` is not a number of seconds a duration holds (0 to 1.8e19).
    #[error("{FLUSH_TIMEOUT_VAR} must be a number of seconds from 0 to 1.8e19, got `{value}`")]
    FlushTimeout {
        /// The value given.
        value: String,
    },
    /// The destination cannot be set up.
    #[error("cannot set up trace export: {message}")]
    Destination {
        /// What failed.
        message: String,
    },
}

/// How this process traces.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// Whether predictions are traced at all.
    pub enabled: bool,
    /// The share of traces kept, 0.0 to 1.0.
    pub sampling_ratio: f64,
    /// Tags on every trace.
    pub tags: Vec<(String, String)>,
    /// The background export's CPU priority: `None` when `CHAINLOG_TRACE_EXPORT_PRIORITY` is
    /// unset, which [`build`](Self::build) takes as [`ExportPriority::default`] (`Idle`); the
    /// CLI fills it in per command first.
    pub export_priority: Option<ExportPriority>,
    /// How long the flush at exit may take (`CHAINLOG_TRACE_FLUSH_TIMEOUT`, seconds).
    pub flush_timeout: std::time::Duration,
}

impl TraceSettings {
    /// Settings from the flags and the environment: `no_trace` (`--no-trace`) or
    /// `CHAINLOG_TRACING=false` turn tracing off; `MLFLOW_TRACE_SAMPLING_RATIO`;
    /// `CHAINLOG_TRACE_EXPORT_PRIORITY`; `CHAINLOG_TRACE_FLUSH_TIMEOUT`; `tags` as
    /// `key=value`.
    ///
    /// # Errors
    ///
    /// [`TraceError::SamplingRatio`], [`TraceError::Switch`], [`TraceError::ExportPriority`],
    /// [`TraceError::FlushTimeout`] or [`TraceError::Tag`], naming the bad value.
    ///
    /// # Examples
    ///
    /// ```
    /// use chainlog::trace::TraceSettings;
    /// let settings = TraceSettings::from_lookup(false, &["team=search".into()], |_| None)?;
    /// assert!(settings.enabled);
    /// assert_eq!(settings.tags, [("team".to_owned(), "search".to_owned())]);
    /// # Ok::<(), chainlog::trace::TraceError>(())
    /// ```
    pub fn from_lookup(
        no_trace: bool,
        tags: &[String],
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, TraceError> {
        let off = match lookup(TRACING_VAR)
            .map(|value| value.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("" | "true" | "1" | "yes" | "on") => false,
            Some("false" | "0" | "no" | "off") => true,
            Some(_) => {
                return Err(TraceError::Switch {
                    value: lookup(TRACING_VAR).unwrap_or_default(),
                });
            }
        };
        let sampling_ratio = match lookup(SAMPLING_VAR).filter(|v| !v.trim().is_empty()) {
            None => 1.0,
            Some(value) => match value.trim().parse::<f64>() {
                Ok(ratio) if (0.0..=1.0).contains(&ratio) => ratio,
                _ => return Err(TraceError::SamplingRatio { value }),
            },
        };
        let export_priority = match lookup(EXPORT_PRIORITY_VAR)
            .map(|value| value.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("") => None,
            Some("idle") => Some(ExportPriority::Idle),
            Some("normal") => Some(ExportPriority::Normal),
            Some(_) => {
                return Err(TraceError::ExportPriority {
                    value: lookup(EXPORT_PRIORITY_VAR).unwrap_or_default(),
                });
            }
        };
        let flush_timeout = match lookup(FLUSH_TIMEOUT_VAR).filter(|v| !v.trim().is_empty()) {
            None => DEFAULT_FLUSH_TIMEOUT,
            Some(value) => value
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|seconds| std::time::Duration::try_from_secs_f64(seconds).ok())
                .ok_or(TraceError::FlushTimeout { value })?,
        };
        let tags = tags
            .iter()
            .map(|tag| match tag.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => {
                    Ok((key.trim().to_owned(), value.to_owned()))
                }
                _ => Err(TraceError::Tag { tag: tag.clone() }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            enabled: !no_trace && !off,
            sampling_ratio,
            tags,
            export_priority,
            flush_timeout,
        })
    }

    /// [`from_lookup`](Self::from_lookup) on this process's environment.
    ///
    /// # Errors
    ///
    /// As [`from_lookup`](Self::from_lookup).
    pub fn from_env(no_trace: bool, tags: &[String]) -> Result<Self, TraceError> {
        Self::from_lookup(no_trace, tags, |name| std::env::var(name).ok())
    }

    /// The layer to install (`None` when tracing is off) and the tracer that exports what it
    /// builds.
    pub fn build(self) -> (Option<TraceLayer>, Tracer) {
        let tracer = Tracer::new(
            self.enabled,
            self.tags,
            self.export_priority.unwrap_or_default(),
            self.flush_timeout,
        );
        if !self.enabled {
            return (None, tracer);
        }
        record::set_active(true);
        (
            Some(TraceLayer::new(tracer.queue(), self.sampling_ratio)),
            tracer,
        )
    }
}

/// What a trace is linked to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceLink {
    /// The experiment the trace belongs to.
    pub experiment_id: String,
    /// The run (trace metadata `mlflow.sourceRun`; over OTLP also `x-mlflow-run-id`).
    pub run_id: Option<String>,
    /// The LoggedModel (trace metadata `mlflow.modelId`).
    pub model_id: Option<String>,
}

impl Tracer {
    /// Whether tracing is on.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Starts exporting to the tracking store `uri` names (or the collector the
    /// `OTEL_EXPORTER_OTLP_*` variables name), linking traces to `link`. Does nothing when
    /// tracing is off. Must run inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`TraceError::Destination`] when the exporter cannot be built (a bad
    /// `OTEL_EXPORTER_OTLP_*` value).
    pub fn connect(&self, uri: &TrackingUri, link: TraceLink) -> Result<(), TraceError> {
        if !self.enabled {
            return Ok(());
        }
        let collector = [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()));
        // One destination per export thread (the background one and the flush's).
        let destination = || -> Result<Destination, TraceError> {
            let tags = self.tags.clone();
            let link = link.clone();
            Ok(match uri {
                _ if collector => Destination::Otlp(Box::new(
                    OtlpSink::new(None, link, tags)
                        .map_err(|message| TraceError::Destination { message })?,
                )),
                TrackingUri::Server { url } => Destination::Otlp(Box::new(
                    OtlpSink::new(Some(url), link, tags)
                        .map_err(|message| TraceError::Destination { message })?,
                )),
                TrackingUri::Sqlite { db_path } => {
                    Destination::Sqlite(Box::new(SqliteSink::new(db_path.clone(), link, tags)))
                }
            })
        };
        self.start(destination()?, destination()?);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
