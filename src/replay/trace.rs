//! A production prediction as a replay case ([`case_from_trace`]): the trace's root span gives
//! the input and the output, its `CHAT_MODEL` spans — the exact request body sent and the
//! response received — become a cassette in the mock's format.

use serde_json::{Value, json};

use super::ReplayError;
use crate::trace::StoredSpan;

/// A production prediction as a replay case.
#[derive(Debug, Clone)]
pub struct TraceCase {
    /// The chain's input (the root span's inputs).
    pub input: Value,
    /// Its output (the root span's outputs); null when the prediction failed.
    pub output: Value,
    /// A cassette (YAML) holding every LLM exchange of its `CHAT_MODEL` spans, in start order.
    pub cassette: String,
    /// Whether the prediction streamed (its LLM requests asked for a stream), so the replay
    /// runs the chain streaming too.
    pub streamed: bool,
}

/// The replay case of trace `trace_id`. A request that asked for a stream is answered with
/// the recorded completion as a stream (one content chunk, one finish chunk, the usage chunk,
/// `[DONE]`).
///
/// # Errors
///
/// [`ReplayError::TraceWithoutLlm`] when no `CHAT_MODEL` span holds a request and a response;
/// [`ReplayError::TraceTruncated`] when one holds a request or response cut at 1 MiB;
/// [`ReplayError::TraceWithoutRoot`] when no span holds the chain's input.
pub fn case_from_trace(trace_id: &str, spans: &[StoredSpan]) -> Result<TraceCase, ReplayError> {
    let input = spans
        .iter()
        .find(|s| !s.has_parent)
        .and_then(|root| root.attribute("mlflow.spanInputs"))
        .ok_or_else(|| ReplayError::TraceWithoutRoot {
            trace_id: trace_id.to_owned(),
        })?;
    let output = spans
        .iter()
        .find(|s| !s.has_parent)
        .and_then(|root| root.attribute("mlflow.spanOutputs"))
        .unwrap_or(Value::Null);
    let mut streamed = false;
    let mut cut = false;
    let interactions: Vec<Value> = spans
        .iter()
        .filter(|s| s.span_type().as_deref() == Some("CHAT_MODEL"))
        .filter_map(|span| {
            let request = span.attribute("mlflow.spanInputs");
            let response = span.attribute("mlflow.spanOutputs");
            cut |= [&request, &response].into_iter().flatten().any(was_cut);
            let (request, response) = (request?, response?);
            streamed |= request["stream"] == json!(true);
            (request.is_object() && response.is_object()).then(|| interaction(request, &response))
        })
        .collect();
    if cut {
        return Err(ReplayError::TraceTruncated {
            trace_id: trace_id.to_owned(),
        });
    }
    if interactions.is_empty() {
        return Err(ReplayError::TraceWithoutLlm {
            trace_id: trace_id.to_owned(),
        });
    }
    let cassette = json!({"format_version": 1, "interactions": interactions});
    let yaml = serde_norway::to_string(&cassette).map_err(|e| ReplayError::Io {
        action: "write a cassette for",
        path: trace_id.into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(TraceCase {
        input,
        output,
        cassette: yaml,
        streamed,
    })
}

/// Whether a recorded body was cut at 1 MiB: it is then a JSON string ending in the marker.
fn was_cut(body: &Value) -> bool {
    body.as_str()
        .is_some_and(|text| text.contains(crate::trace::TRUNCATION_MARKER))
}

/// One cassette interaction: the request as sent, the completion as JSON or as a stream.
fn interaction(request: Value, completion: &Value) -> Value {
    let streamed = request["stream"] == json!(true);
    let response = if streamed {
        let events: Vec<Value> = stream_events(completion)
            .into_iter()
            .map(|data| json!({ "data": data }))
            .collect();
        json!({"status": 200, "headers": {"content-type": "text/event-stream"}, "sse": events})
    } else {
        json!({"status": 200, "headers": {"content-type": "application/json"}, "body": completion})
    };
    json!({
        "request": {"method": "POST", "path": "/v1/chat/completions", "body": request},
        "response": response,
    })
}

/// A chat completion as the chunks of a stream: the message (role, content, tool calls with
/// their index), the finish reason, the usage, `[DONE]`.
fn stream_events(completion: &Value) -> Vec<String> {
    let head = |choices: Value| {
        let mut chunk = json!({
            "id": completion["id"],
            "object": "chat.completion.chunk",
            "created": completion["created"],
            "model": completion["model"],
            "choices": choices,
        });
        if let Some(fingerprint) = completion.get("system_fingerprint") {
            chunk["system_fingerprint"] = fingerprint.clone();
        }
        chunk
    };
    let mut events = Vec::new();
    let choices = completion["choices"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (position, choice) in choices.iter().enumerate() {
        let index = choice.get("index").cloned().unwrap_or(json!(position));
        let message = &choice["message"];
        let mut delta = json!({"role": message["role"].as_str().unwrap_or("assistant")});
        if let Some(content) = message.get("content").filter(|c| !c.is_null()) {
            delta["content"] = content.clone();
        }
        if let Some(calls) = message["tool_calls"].as_array() {
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, call)| {
                    let mut call = call.clone();
                    call["index"] = json!(i);
                    call
                })
                .collect();
            delta["tool_calls"] = Value::Array(calls);
        }
        let delta_choice = json!([{"index": index, "delta": delta, "finish_reason": null}]);
        events.push(head(delta_choice).to_string());
        let finish =
            json!([{"index": index, "delta": {}, "finish_reason": choice["finish_reason"]}]);
        events.push(head(finish).to_string());
    }
    if let Some(usage) = completion.get("usage").filter(|u| !u.is_null()) {
        let mut chunk = head(json!([]));
        chunk["usage"] = usage.clone();
        events.push(chunk.to_string());
    }
    events.push("[DONE]".to_owned());
    events
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn span(parent: bool, attributes: &[(&str, &str)]) -> StoredSpan {
        StoredSpan {
            name: "span".to_owned(),
            has_parent: parent,
            start_ns: 0,
            attributes: attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    /// A request cut at 1 MiB is a JSON string ending in the marker: the trace is refused
    /// saying so, not as one without an LLM call.
    #[test]
    fn a_trace_whose_llm_call_was_cut_is_refused_saying_so() {
        let cut = format!(
            "\"{{\\\"model\\\": \\\"m\\\", \\\"messages\\\": [{}{} bytes]\"",
            crate::trace::TRUNCATION_MARKER,
            3_145_739
        );
        let spans = [
            span(false, &[("mlflow.spanInputs", r#"{"text": "x"}"#)]),
            span(
                true,
                &[
                    ("mlflow.spanType", "\"CHAT_MODEL\""),
                    ("mlflow.spanInputs", &cut),
                    ("mlflow.spanOutputs", r#"{"choices": []}"#),
                ],
            ),
        ];
        let error = case_from_trace("tr-1", &spans).unwrap_err().to_string();
        assert!(
            error.starts_with("trace `tr-1` cannot be replayed: the request or response of its LLM call was cut at 1 MiB"),
            "{error}"
        );
        let without = case_from_trace("tr-2", &spans[..1])
            .unwrap_err()
            .to_string();
        assert!(without.contains("holds no LLM call"), "{without}");
    }
}
