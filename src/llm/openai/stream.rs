//! Streamed replies: an SSE body (parsed by `eventsource-stream`) → `chat.completion.chunk`s →
//! [`StreamEvent::Text`] deltas, then one [`StreamEvent::Done`] with the reply assembled from
//! them.
//!
//! Tool calls arrive in fragments keyed by `index` (id and name in the first, the arguments
//! spread over the rest) and are joined here. Usage comes in the final chunk
//! (`stream_options.include_usage`); a server that sends none leaves it unknown (`None`). A stream that ends
//! without any `finish_reason` was cut off (a dropped connection, a truncated body; some
//! servers send no `[DONE]`, so its absence alone proves nothing) and ends with
//! [`LlmError::Transient`], as does an `error` object sent mid-stream. No chunk within the
//! client's timeout ends it with [`LlmError::Timeout`]. A stream that fails (or ends) before
//! its first content — no text, no tool call — is reopened like a failed attempt, within the
//! client's retries; later failures are not retried: text already handed out cannot be taken
//! back.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use eventsource_stream::{Event, EventStream, EventStreamError};
use futures::{Stream, StreamExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Span;

use crate::trace::{TraceSpan, UntilFinished};

use super::{
    record,
    wire::{self, Chunk},
};
use crate::llm::{
    ChatResponse, ChatStream, LlmError, StreamEvent, ToolCall, Usage, json::excerpt,
    retry::RetryPolicy,
};

/// The SSE events of a response body.
type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// Sends the same request again (through the retry layer, counting attempts), for a stream
/// that broke before its first content.
pub(super) type Reopen = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<reqwest::Response, LlmError>> + Send>>
        + Send
        + Sync,
>;

fn events_of(response: reqwest::Response) -> Events {
    Box::pin(EventStream::new(response.bytes_stream()))
}

/// What a stream keeps until it ends.
pub(super) struct Context {
    /// The call's concurrency slot, released when the stream ends or is dropped.
    pub permit: OwnedSemaphorePermit,
    /// The call's `llm.chat` span, recorded at the end.
    pub span: Span,
    /// The call's span in the trace, given the assembled completion at the end.
    pub traced: TraceSpan,
    pub started: Instant,
    pub attempts: Arc<AtomicU32>,
    /// The model asked for, used when no chunk names one.
    pub model: String,
    /// The token limit the request went out with, named when a reply is cut off.
    pub max_tokens: Option<u32>,
    /// Lets a `finish_reason: length` reply through.
    pub accept_truncated: bool,
    /// The longest wait for the next chunk.
    pub idle_timeout: Option<Duration>,
    pub cancel: Option<CancellationToken>,
    /// Reopens the stream when it breaks before its first content.
    pub reopen: Reopen,
    /// The client's retries (shared with the HTTP layer through `attempts`) and backoff.
    pub policy: RetryPolicy,
}

/// Turns an SSE response into our events.
pub(super) fn assemble(response: reqwest::Response, context: Context) -> ChatStream {
    let mut events = events_of(response);
    Box::pin(async_stream::stream! {
        let Context {
            permit, span, traced, started, attempts, model, max_tokens, accept_truncated, idle_timeout,
            cancel, reopen, policy,
        } = context;
        let _permit = permit;
        // A stream dropped before its end (its reader gave up) fails its span as dropped.
        let until = UntilFinished::new(&traced);
        let mut reply = Assembly::default();
        let outcome = loop {
            let error = match next_chunk(&mut events, idle_timeout, cancel.as_ref()).await {
                Ok(Some(chunk)) => {
                    if let Some(text) = reply.push(chunk) {
                        yield Ok(StreamEvent::Text(text));
                    }
                    continue;
                }
                Ok(None) if reply.finish_reason.is_some() || !reply.is_blank() => {
                    let attempts = attempts.load(Ordering::Relaxed);
                    break reply.finish(&model, started.elapsed(), attempts).and_then(|response| {
                        crate::llm::check_complete(&response, max_tokens, accept_truncated)?;
                        Ok(response)
                    });
                }
                Ok(None) => LlmError::Transient {
                    status: None,
                    message: "the stream ended before its first content (no finish_reason)"
                        .to_owned(),
                },
                Err(error) => error,
            };
            let made = attempts.load(Ordering::Relaxed);
            if !(reply.is_blank() && error.is_retryable() && made <= policy.max_retries) {
                break Err(error);
            }
            // Nothing was handed out yet: this stream failed like an attempt; try again.
            let delay = policy.backoff(made.saturating_sub(1));
            traced.in_scope(|| span.in_scope(|| {
                tracing::warn!(
                    retry = made,
                    max_retries = policy.max_retries,
                    reason = %error,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "llm stream broke before its first content; retrying"
                );
            }));
            tokio::time::sleep(delay).await;
            match reopen().await {
                Ok(response) => {
                    events = events_of(response);
                    reply = Assembly::default();
                }
                Err(error) => break Err(error),
            }
        };
        until.finished();
        let attempts = attempts.load(Ordering::Relaxed);
        record(
            &span,
            &traced,
            outcome.as_ref(),
            started.elapsed(),
            attempts,
            true,
        );
        yield outcome.map(StreamEvent::Done);
    })
}

/// The next chunk, `None` at the end (`[DONE]` or the end of the body), or why there is none.
async fn next_chunk(
    events: &mut Events,
    idle_timeout: Option<Duration>,
    cancel: Option<&CancellationToken>,
) -> Result<Option<Chunk>, LlmError> {
    loop {
        let next = async {
            match idle_timeout {
                None => Ok(events.next().await),
                Some(after) => tokio::time::timeout(after, events.next())
                    .await
                    .map_err(|_| LlmError::Timeout { after }),
            }
        };
        let next = match cancel {
            None => next.await?,
            Some(token) => tokio::select! {
                biased;
                () = token.cancelled() => return Err(LlmError::Cancelled),
                next = next => next?,
            },
        };
        let event = match next {
            None => return Ok(None),
            Some(Ok(event)) => event,
            Some(Err(error)) => {
                return Err(LlmError::Transient {
                    status: None,
                    message: format!("the stream broke: {}", wire::error_chain(&error)),
                });
            }
        };
        let data = event.data.trim();
        if data == "[DONE]" {
            return Ok(None);
        }
        if data.is_empty() {
            continue;
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|err| LlmError::InvalidResponse {
            message: format!(
                "a stream event is not a chat completion chunk ({err}): {}",
                excerpt(data)
            ),
        })?;
        if let Some(error) = &chunk.error {
            return Err(LlmError::Transient {
                status: None,
                message: format!(
                    "the provider failed mid-stream: {}",
                    wire::error_message(error)
                ),
            });
        }
        return Ok(Some(chunk));
    }
}

/// A tool call being put together from fragments.
#[derive(Debug)]
struct PartialCall {
    index: Option<u32>,
    id: String,
    name: String,
    arguments: String,
}

/// The reply so far.
#[derive(Debug, Default)]
struct Assembly {
    text: String,
    calls: Vec<PartialCall>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    model: Option<String>,
}

impl Assembly {
    /// Whether nothing (no text, no tool call) has come yet.
    fn is_blank(&self) -> bool {
        self.text.is_empty() && self.calls.is_empty()
    }

    /// Takes in one chunk; returns its text delta, if any.
    fn push(&mut self, chunk: Chunk) -> Option<String> {
        if let Some(model) = chunk.model.filter(|model| !model.is_empty()) {
            self.model = Some(model);
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.to_usage());
        }
        let mut delta_text = String::new();
        // Only the first choice is read: requests never ask for `n` > 1.
        for choice in chunk.choices.unwrap_or_default() {
            if choice.index.is_some_and(|index| index != 0) {
                continue;
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
            }
            let Some(delta) = choice.delta else { continue };
            if let Some(text) = delta.content {
                delta_text.push_str(&text);
            }
            for fragment in delta.tool_calls.unwrap_or_default() {
                self.merge(fragment);
            }
        }
        self.text.push_str(&delta_text);
        (!delta_text.is_empty()).then_some(delta_text)
    }

    /// Adds a tool-call fragment to the call with its `index` (or, for servers that send no
    /// index, to the last call unless the fragment carries a new id).
    fn merge(&mut self, fragment: wire::ToolCallDelta) {
        let position = match fragment.index {
            Some(index) => self.calls.iter().position(|call| call.index == Some(index)),
            None => match (&fragment.id, self.calls.last()) {
                (Some(id), Some(last)) if !id.is_empty() && *id != last.id => None,
                (_, Some(_)) => Some(self.calls.len() - 1),
                (_, None) => None,
            },
        };
        let position = position.unwrap_or_else(|| {
            self.calls.push(PartialCall {
                index: fragment.index,
                id: String::new(),
                name: String::new(),
                arguments: String::new(),
            });
            self.calls.len() - 1
        });
        let Some(call) = self.calls.get_mut(position) else {
            return;
        };
        if let Some(id) = fragment.id.filter(|id| !id.is_empty())
            && call.id.is_empty()
        {
            call.id = id;
        }
        if let Some(function) = fragment.function {
            if let Some(name) = function.name.filter(|name| !name.is_empty())
                && call.name.is_empty()
            {
                call.name = name;
            }
            if let Some(arguments) = function.arguments {
                call.arguments.push_str(&wire::arguments_text(arguments));
            }
        }
    }

    /// The whole reply, or an error when the stream was cut off.
    fn finish(
        self,
        requested_model: &str,
        latency: Duration,
        attempts: u32,
    ) -> Result<ChatResponse, LlmError> {
        if self.finish_reason.is_none() {
            return Err(LlmError::Transient {
                status: None,
                message: "the stream ended before the reply was complete (no finish_reason)"
                    .to_owned(),
            });
        }
        let tool_calls = self
            .calls
            .into_iter()
            .enumerate()
            .map(|(position, call)| ToolCall {
                id: if call.id.is_empty() {
                    format!("call_{position}")
                } else {
                    call.id
                },
                name: call.name,
                arguments: if call.arguments.is_empty() {
                    "{}".to_owned()
                } else {
                    call.arguments
                },
            })
            .collect();
        Ok(ChatResponse {
            content: (!self.text.is_empty()).then_some(self.text),
            tool_calls,
            finish_reason: self.finish_reason,
            usage: self.usage,
            model: self.model.unwrap_or_else(|| requested_model.to_owned()),
            latency,
            attempts,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn chunk(value: Value) -> Chunk {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn tool_call_fragments_join_by_index() {
        let mut reply = Assembly::default();
        let fragments = [
            json!({"choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}),
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","function":{"name":"get_time","arguments":"{\"tz\":"}}]}}]}),
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}),
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}),
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"\"CET\"}"}}]}}]}),
            json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
            json!({"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}),
        ];
        for fragment in fragments {
            assert_eq!(reply.push(chunk(fragment)), None);
        }
        let response = reply.finish("m", Duration::ZERO, 1).unwrap();
        assert_eq!(response.content, None);
        assert_eq!(response.usage.unwrap().total_tokens, 12);
        assert_eq!(
            response.tool_calls,
            vec![
                ToolCall {
                    id: "call_a".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Paris"}"#.into()
                },
                ToolCall {
                    id: "call_b".into(),
                    name: "get_time".into(),
                    arguments: r#"{"tz":"CET"}"#.into()
                },
            ]
        );
    }

    #[test]
    fn text_deltas_add_up_and_missing_usage_is_unknown() {
        let mut reply = Assembly::default();
        assert_eq!(
            reply.push(chunk(json!({"choices":[{"delta":{"content":"Hel"}}]}))),
            Some("Hel".into())
        );
        assert_eq!(
            reply.push(chunk(
                json!({"choices":[{"delta":{"content":"lo"},"finish_reason":"stop"}]})
            )),
            Some("lo".into())
        );
        let response = reply.finish("m", Duration::ZERO, 1).unwrap();
        assert_eq!(response.text(), "Hello");
        assert_eq!(response.usage, None);
        assert_eq!(response.model, "m");
    }

    #[test]
    fn a_stream_without_finish_reason_was_cut_off() {
        let mut reply = Assembly::default();
        reply.push(chunk(json!({"choices":[{"delta":{"content":"Hel"}}]})));
        let err = reply.finish("m", Duration::ZERO, 1).unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
    }

    #[test]
    fn fragments_without_index_join_by_id() {
        let mut reply = Assembly::default();
        for fragment in [
            json!({"choices":[{"delta":{"tool_calls":[{"id":"a","function":{"name":"f","arguments":"{\"x\":"}}]}}]}),
            json!({"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"1}"}}]}}]}),
            json!({"choices":[{"delta":{"tool_calls":[{"id":"b","function":{"name":"g","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}),
        ] {
            reply.push(chunk(fragment));
        }
        let response = reply.finish("m", Duration::ZERO, 1).unwrap();
        assert_eq!(response.tool_calls.len(), 2);
        assert_eq!(response.tool_calls[0].arguments, r#"{"x":1}"#);
        assert_eq!(response.tool_calls[1].name, "g");
    }
}
