//! Reading a trace's spans back from a tracking store ([`read_trace`]): the `spans` rows of a
//! SQLite store, or a server's `GET /api/3.0/mlflow/traces/get?trace_id=…`. For `replay
//! --trace`, which rebuilds a cassette from the `CHAT_MODEL` spans.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::store::{Auth, TrackingUri};

/// A span as stored: its attributes as MLflow keeps them (key → JSON text).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSpan {
    /// The span's name.
    pub name: String,
    /// Whether it has a parent (the root has none).
    pub has_parent: bool,
    /// Start, in nanoseconds since the Unix epoch.
    pub start_ns: i64,
    /// Attributes: key → JSON text (`mlflow.spanType` → `"CHAT_MODEL"`).
    pub attributes: BTreeMap<String, String>,
}

impl StoredSpan {
    /// Attribute `key`, parsed from its JSON text (the text itself when it is not JSON).
    pub fn attribute(&self, key: &str) -> Option<Value> {
        let text = self.attributes.get(key)?;
        Some(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone())))
    }

    /// `mlflow.spanType` (`CHAIN`, `CHAT_MODEL`, `TOOL`…).
    pub fn span_type(&self) -> Option<String> {
        self.attribute(super::SPAN_TYPE_KEY)
            .and_then(|v| v.as_str().map(str::to_owned))
    }
}

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceReadError {
    /// No trace of that id in the store.
    #[error("trace `{trace_id}` does not exist in {store}")]
    NotFound {
        /// The id asked for.
        trace_id: String,
        /// The store.
        store: String,
    },
    /// The store could not be read.
    #[error("cannot read trace `{trace_id}` from {store}: {message}")]
    Store {
        /// The id asked for.
        trace_id: String,
        /// The store.
        store: String,
        /// What failed.
        message: String,
    },
}

/// The spans of trace `trace_id` (`tr-<hex>`) in the store `uri` names, in start order.
///
/// # Errors
///
/// [`TraceReadError::NotFound`] naming the id and the store; [`TraceReadError::Store`] when it
/// cannot be read.
pub async fn read_trace(
    uri: &TrackingUri,
    trace_id: &str,
) -> Result<Vec<StoredSpan>, TraceReadError> {
    let store = uri.to_string();
    let fail = |message: String| TraceReadError::Store {
        trace_id: trace_id.to_owned(),
        store: store.clone(),
        message,
    };
    let spans = match uri {
        TrackingUri::Sqlite { db_path } => {
            if !db_path.is_file() {
                return Err(fail(format!("`{}` does not exist", db_path.display())));
            }
            let (db_path, id) = (db_path.clone(), trace_id.to_owned());
            tokio::task::spawn_blocking(move || read_sqlite(&db_path, &id))
                .await
                .map_err(|e| fail(e.to_string()))?
                .map_err(|e| fail(e.to_string()))?
        }
        TrackingUri::Server { url } => read_server(url, trace_id).await.map_err(fail)?,
    };
    let Some(mut spans) = spans else {
        return Err(TraceReadError::NotFound {
            trace_id: trace_id.to_owned(),
            store,
        });
    };
    spans.sort_by_key(|s| s.start_ns);
    Ok(spans)
}

/// The spans of a trace in a SQLite store; `None` when `trace_info` has no such trace.
fn read_sqlite(
    db_path: &std::path::Path,
    trace_id: &str,
) -> Result<Option<Vec<StoredSpan>>, rusqlite::Error> {
    let connection =
        rusqlite::Connection::open_with_flags(db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let known: i64 = connection.query_row(
        "SELECT COUNT(*) FROM trace_info WHERE request_id = ?1",
        [trace_id],
        |row| row.get(0),
    )?;
    if known == 0 {
        return Ok(None);
    }
    let mut statement = connection.prepare("SELECT content FROM spans WHERE trace_id = ?1")?;
    let contents = statement
        .query_map([trace_id], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(
        contents
            .iter()
            .filter_map(|text| serde_json::from_str::<Value>(text).ok())
            .map(|span| parse_span(&span))
            .collect(),
    ))
}

/// The spans of a trace on an MLflow server (`GET /api/3.0/mlflow/traces/get`); `None` on 404.
async fn read_server(url: &str, trace_id: &str) -> Result<Option<Vec<StoredSpan>>, String> {
    let endpoint = format!("{}/api/3.0/mlflow/traces/get", url.trim_end_matches('/'));
    let mut request = reqwest::Client::new()
        .get(&endpoint)
        .query(&[("trace_id", trace_id)]);
    if let Some(auth) = Auth::from_env() {
        request = auth.apply(request);
    }
    let response = request
        .send()
        .await
        .map_err(|e| crate::secret::scrub(&e.without_url().to_string()))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    let not_found = body["error_code"] == "RESOURCE_DOES_NOT_EXIST";
    if status == reqwest::StatusCode::NOT_FOUND || not_found {
        return Ok(None);
    }
    if !status.is_success() {
        let message = body["message"].as_str().unwrap_or_default();
        return Err(crate::secret::scrub(&format!(
            "{endpoint} answered {status}: {message}"
        )));
    }
    let spans = body["trace"]["spans"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(Some(spans.iter().map(parse_span).collect()))
}

/// A span from MLflow's span dict (attributes an object of JSON texts) or OTLP JSON
/// (attributes a list of `{key, value: AnyValue}`, as a server's `traces/get` answers: the
/// JSON of each attribute unfolded into `kvlist_value`, `array_value`, `string_value`…).
fn parse_span(span: &Value) -> StoredSpan {
    let mut attributes = BTreeMap::new();
    match &span["attributes"] {
        Value::Object(map) => {
            for (key, value) in map {
                let text = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                attributes.insert(key.clone(), text);
            }
        }
        Value::Array(list) => {
            for item in list {
                let (Some(key), value) = (item["key"].as_str(), &item["value"]) else {
                    continue;
                };
                attributes.insert(key.to_owned(), any_value(value).to_string());
            }
        }
        _ => {}
    }
    let parent = ["parent_span_id", "parentSpanId"]
        .iter()
        .map(|k| &span[*k])
        .find(|v| !v.is_null());
    let has_parent = parent.is_some_and(|v| v.as_str().is_none_or(|s| !s.is_empty()));
    let start_ns = ["start_time_unix_nano", "startTimeUnixNano"]
        .iter()
        .find_map(|k| {
            let v = &span[*k];
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or_default();
    StoredSpan {
        name: span["name"].as_str().unwrap_or_default().to_owned(),
        has_parent,
        start_ns,
        attributes,
    }
}

/// An OTLP `AnyValue` (proto JSON, snake or camel case) as the JSON value it encodes.
fn any_value(value: &Value) -> Value {
    let field = |snake: &str, camel: &str| value.get(snake).or_else(|| value.get(camel));
    if let Some(text) = field("string_value", "stringValue") {
        return text.clone();
    }
    if let Some(flag) = field("bool_value", "boolValue") {
        return flag.clone();
    }
    if let Some(int) = field("int_value", "intValue") {
        return match int {
            Value::String(text) => text
                .parse::<i64>()
                .map_or_else(|_| int.clone(), Value::from),
            other => other.clone(),
        };
    }
    if let Some(double) = field("double_value", "doubleValue") {
        return double.clone();
    }
    if let Some(list) = field("array_value", "arrayValue") {
        let items = list["values"].as_array().cloned().unwrap_or_default();
        return Value::Array(items.iter().map(any_value).collect());
    }
    if let Some(map) = field("kvlist_value", "kvlistValue") {
        let entries = map["values"].as_array().cloned().unwrap_or_default();
        return Value::Object(
            entries
                .iter()
                .filter_map(|entry| {
                    Some((
                        entry["key"].as_str()?.to_owned(),
                        any_value(&entry["value"]),
                    ))
                })
                .collect(),
        );
    }
    Value::Null
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::parse_span;

    /// A server's OTLP span: nested attribute values come back as the JSON they encode.
    #[test]
    fn otlp_attribute_values_unfold_to_json() {
        let span = json!({"name": "llm.chat", "parent_span_id": "AAAAAAAAAAE=",
        "start_time_unix_nano": "17", "attributes": [
        {"key": "mlflow.spanType", "value": {"string_value": "CHAT_MODEL"}},
        {"key": "mlflow.spanInputs", "value": {"kvlist_value": {"values": [
            {"key": "model", "value": {"string_value": "m"}},
            {"key": "max_tokens", "value": {"int_value": "300"}},
            {"key": "temperature", "value": {"double_value": 0.2}},
            {"key": "stream", "value": {"bool_value": false}},
            {"key": "messages", "value": {"array_value": {"values": [
                {"kvlist_value": {"values": [{"key": "role", "value": {"string_value": "user"}}]}}
            ]}}}]}}}]});
        let parsed = parse_span(&span);
        assert!(parsed.has_parent);
        assert_eq!(parsed.start_ns, 17);
        assert_eq!(parsed.span_type().as_deref(), Some("CHAT_MODEL"));
        assert_eq!(
            parsed.attribute("mlflow.spanInputs"),
            Some(
                json!({"model": "m", "max_tokens": 300, "temperature": 0.2, "stream": false,
                "messages": [{"role": "user"}]})
            )
        );
    }
}
