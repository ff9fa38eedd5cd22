//! [`OtlpSink`]: traces to an MLflow server over OTLP/HTTP (`POST /v1/traces`, protobuf, built
//! by `opentelemetry-otlp` from `opentelemetry_sdk` span data), then one `StartTraceV3`
//! (`POST /api/3.0/mlflow/traces`) per trace for what MLflow's OTLP endpoint does not take
//! from spans: the trace metadata `mlflow.modelId` and `mlflow.sourceRun` (verified against
//! mlflow 3.17.2: its OTLP handler stores spans, previews, token usage and
//! `mlflow.traceTag.*` tags, and links the run named by `x-mlflow-run-id`, but sets no
//! metadata; MLflow's own Python client makes the same second call).
//!
//! With `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans go
//! to that collector instead (headers, timeout and compression from the other
//! `OTEL_EXPORTER_OTLP_*` variables, as `opentelemetry-otlp` reads them), and no MLflow REST
//! call is made.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use opentelemetry::{
    KeyValue,
    trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState},
};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{
    Resource,
    trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks},
};
use serde_json::{Map, Value, json};

use super::{
    TraceLink, error_chain,
    export::ExportFailure,
    model::{SpanRecord, TraceRecord, unix_ns},
};
use crate::store::Auth;

/// `StartTraceV3` calls in flight at once.
const FINISH_CONCURRENCY: usize = 8;

/// How long one OTLP request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends traces over OTLP/HTTP.
#[derive(Debug)]
pub struct OtlpSink {
    exporter: opentelemetry_otlp::SpanExporter,
    /// Where spans go, for messages (no credentials).
    endpoint: String,
    /// The MLflow server to send trace metadata to; `None` for another collector.
    mlflow: Option<MlflowRest>,
    link: TraceLink,
    tags: Vec<(String, String)>,
    /// What the endpoint answered to the last failed request.
    answer: Arc<Mutex<Option<String>>>,
}

#[derive(Debug)]
struct MlflowRest {
    http: reqwest::Client,
    url: String,
    auth: Option<Auth>,
}

/// An HTTP client for the exporter that keeps what a failed request was answered, so the
/// warning can say it (the exporter's own error has only the status).
#[derive(Debug, Clone)]
struct AnswerKeeping {
    http: reqwest::Client,
    answer: Arc<Mutex<Option<String>>>,
}

#[async_trait]
impl HttpClient for AnswerKeeping {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let result = HttpClient::send_bytes(&self.http, request).await;
        let answer = match &result {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => {
                let body = String::from_utf8_lossy(response.body());
                let body: String = body.chars().take(300).collect();
                Some(crate::secret::scrub(&format!(
                    "{} {}",
                    response.status(),
                    body.trim()
                )))
            }
            Err(error) => Some(crate::secret::scrub(&error_chain(error.as_ref()))),
        };
        *self
            .answer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = answer;
        result
    }
}

impl OtlpSink {
    /// A sink for the MLflow server at `url` (`None`: the collector the `OTEL_EXPORTER_OTLP_*`
    /// variables name).
    ///
    /// # Errors
    ///
    /// A message when the exporter cannot be built (a bad `OTEL_EXPORTER_OTLP_*` value).
    pub(super) fn new(
        url: Option<&str>,
        link: TraceLink,
        tags: Vec<(String, String)>,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|err| format!("cannot build the HTTP client for traces: {err}"))?;
        let answer = Arc::new(Mutex::new(None));
        let mut headers = HashMap::new();
        headers.insert(
            "x-mlflow-experiment-id".to_owned(),
            link.experiment_id.clone(),
        );
        if let Some(run_id) = &link.run_id {
            headers.insert("x-mlflow-run-id".to_owned(), run_id.clone());
        }
        let auth = url.and_then(|_| Auth::from_env());
        if let Some(auth) = &auth {
            headers.insert("authorization".to_owned(), auth.header_value());
        }
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(AnswerKeeping {
                http: http.clone(),
                answer: Arc::clone(&answer),
            })
            .with_headers(headers)
            .with_retry_policy(
                opentelemetry_otlp::RetryPolicy::recommended()
                    .with_max_retries(2)
                    .with_initial_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(2)),
            )
            .with_timeout(EXPORT_TIMEOUT);
        let endpoint = match url {
            Some(url) => {
                let endpoint = format!("{}/v1/traces", url.trim_end_matches('/'));
                builder = builder.with_endpoint(endpoint.clone());
                endpoint
            }
            None => collector_endpoint(),
        };
        let mut exporter = builder
            .build()
            .map_err(|err| format!("cannot build the OTLP trace exporter: {err}"))?;
        exporter.set_resource(
            &Resource::builder_empty()
                .with_service_name("chainlog")
                .build(),
        );
        Ok(Self {
            exporter,
            endpoint: crate::secret::mask_credentials(&endpoint),
            mlflow: url.map(|url| MlflowRest {
                http,
                url: url.trim_end_matches('/').to_owned(),
                auth,
            }),
            link,
            tags,
            answer,
        })
    }

    pub(super) async fn export(&mut self, traces: &[TraceRecord]) -> Result<(), ExportFailure> {
        let spans = traces
            .iter()
            .flat_map(|trace| trace.spans.iter().map(|span| self.span_data(span)))
            .collect();
        if let Err(error) = self.exporter.export(spans).await {
            let answer = self
                .answer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .unwrap_or_else(|| error.to_string());
            // 404: a server older than MLflow 3.4 has no OTLP endpoint; 501: a file store
            // behind it cannot keep spans. Neither will change while this process runs.
            let permanent = answer.starts_with("404") || answer.starts_with("501");
            return Err(ExportFailure {
                message: format!(
                    "cannot export traces to {}: it answered {answer}",
                    self.endpoint
                ),
                permanent,
            });
        }
        if let Some(mlflow) = &self.mlflow {
            // One `StartTraceV3` per trace, a few at a time.
            for chunk in traces.chunks(FINISH_CONCURRENCY) {
                let results = futures::future::join_all(
                    chunk
                        .iter()
                        .map(|trace| mlflow.finish_trace(trace, &self.link, &self.tags)),
                )
                .await;
                if let Some((trace, Err(message))) = chunk
                    .iter()
                    .zip(results)
                    .find(|(_, result)| result.is_err())
                {
                    return Err(ExportFailure {
                        message: format!(
                            "cannot set the metadata of trace {} at {}: {message}",
                            trace.mlflow_id(),
                            crate::secret::mask_credentials(&mlflow.url)
                        ),
                        permanent: false,
                    });
                }
            }
        }
        Ok(())
    }

    fn span_data(&self, span: &SpanRecord) -> SpanData {
        let mut attributes: Vec<KeyValue> = span
            .encoded_attributes()
            .into_iter()
            .map(|(key, value)| {
                // The span type goes raw: MLflow's `spans.type` column then holds `CHAIN`, not
                // `"CHAIN"` (seen with mlflow 3.17.2); every other value is JSON text.
                if key == super::SPAN_TYPE_KEY {
                    KeyValue::new(key, span.span_type.clone())
                } else {
                    KeyValue::new(key, value)
                }
            })
            .collect();
        if span.parent_id.is_none() {
            for (key, value) in &self.tags {
                attributes.push(KeyValue::new(
                    format!("mlflow.traceTag.{key}"),
                    crate::secret::scrub(value),
                ));
            }
        }
        let events = span
            .events
            .iter()
            .map(|event| {
                opentelemetry::trace::Event::new(
                    crate::secret::scrub(&event.name),
                    event.time,
                    event
                        .attributes
                        .iter()
                        .map(|(k, v)| KeyValue::new(k.clone(), crate::secret::scrub(v)))
                        .collect(),
                    0,
                )
            })
            .collect();
        // `SpanEvents` is non-exhaustive: filled through its public field.
        let mut span_events = SpanEvents::default();
        span_events.events = events;
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(span.trace_id),
                SpanId::from(span.span_id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: span.parent_id.map_or(SpanId::INVALID, SpanId::from),
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: span.name.clone(),
            start_time: span.start,
            end_time: span.end,
            attributes,
            dropped_attributes_count: 0,
            events: span_events,
            links: SpanLinks::default(),
            status: match &span.error {
                Some(message) => Status::error(crate::secret::scrub(message)),
                None => Status::Ok,
            },
            instrumentation_scope: opentelemetry::InstrumentationScope::builder("chainlog")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        }
    }
}

impl MlflowRest {
    /// `StartTraceV3` with the trace's metadata, tags and previews (the server merges it into
    /// the trace its OTLP endpoint created).
    async fn finish_trace(
        &self,
        trace: &TraceRecord,
        link: &TraceLink,
        tags: &[(String, String)],
    ) -> Result<(), String> {
        let Some(root) = trace.root() else {
            return Ok(());
        };
        let mut metadata = Map::new();
        metadata.insert("mlflow.trace_schema.version".to_owned(), json!("3"));
        if let Some(model_id) = &link.model_id {
            metadata.insert("mlflow.modelId".to_owned(), json!(model_id));
        }
        if let Some(run_id) = &link.run_id {
            metadata.insert("mlflow.sourceRun".to_owned(), json!(run_id));
        }
        let mut tag_map = Map::new();
        tag_map.insert("mlflow.traceName".to_owned(), json!(root.name));
        for (key, value) in tags {
            tag_map.insert(key.clone(), json!(crate::secret::scrub(value)));
        }
        let duration_ms = (unix_ns(root.end) - unix_ns(root.start)) / 1_000_000;
        let mut info = json!({
            "trace_id": trace.mlflow_id(),
            "trace_location": {
                "type": "MLFLOW_EXPERIMENT",
                "mlflow_experiment": {"experiment_id": link.experiment_id},
            },
            "request_time": humantime::format_rfc3339_millis(root.start).to_string(),
            "execution_duration": format!("{:.3}s", duration_ms as f64 / 1000.0),
            "state": trace.state(),
            "trace_metadata": metadata,
            "tags": tag_map,
        });
        if let Some(preview) = trace.request_preview() {
            info["request_preview"] = Value::String(preview);
        }
        if let Some(preview) = trace.response_preview() {
            info["response_preview"] = Value::String(preview);
        }
        let mut request = self
            .http
            .post(format!("{}/api/3.0/mlflow/traces", self.url))
            .json(&json!({"trace": {"trace_info": info}}));
        if let Some(auth) = &self.auth {
            request = auth.apply(request);
        }
        let response = request
            .send()
            .await
            .map_err(|err| crate::secret::scrub(&error_chain(&err)))?;
        if response.status().is_success() {
            return Ok(());
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(300).collect();
        Err(crate::secret::scrub(&format!("{status} {}", body.trim())))
    }
}

/// The collector endpoint the environment names, for messages.
fn collector_endpoint() -> String {
    std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| {
            std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| format!("{}/v1/traces", v.trim_end_matches('/')))
        })
        .unwrap_or_else(|| "the OTLP collector".to_owned())
}
