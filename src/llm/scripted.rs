//! [`ScriptedClient`]: an [`LlmClient`] that answers from a script, for unit tests of chains.
//!
//! Owns nothing but its queue of replies and the requests it received. Clones share both, so
//! a test keeps one clone to inspect while the chain holds another as `Arc<dyn LlmClient>`.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};

use async_trait::async_trait;

use super::{ChatRequest, ChatResponse, ChatStream, LlmClient, LlmError, StreamEvent, ToolCall};

/// Answers each call with the next queued reply (or error) and records every request.
///
/// When the script runs out, a call fails with [`LlmError::Permanent`] (code
/// `script_exhausted`) naming the call. Streams hand out the text in word-sized deltas, then
/// the reply.
///
/// # Examples
///
/// ```
/// use chainlog::llm::{ChatMessage, ChatRequest, LlmClient, ScriptedClient};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), chainlog::llm::LlmError> {
/// let client = ScriptedClient::new("gpt-4o-mini").with_text("pong");
/// let reply = client.chat(&ChatRequest::new(vec![ChatMessage::user("ping")])).await?;
/// assert_eq!(reply.text(), "pong");
/// assert_eq!(client.requests()[0].messages, vec![ChatMessage::user("ping")]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ScriptedClient {
    model: String,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    script: VecDeque<Result<ChatResponse, LlmError>>,
    requests: Vec<ChatRequest>,
}

impl ScriptedClient {
    /// An empty script for `model`.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            state: Arc::default(),
        }
    }

    /// Queues a reply.
    pub fn with_response(self, response: ChatResponse) -> Self {
        self.push(Ok(response));
        self
    }

    /// Queues a text reply.
    pub fn with_text(self, text: impl Into<String>) -> Self {
        self.with_response(ChatResponse::from_text(text))
    }

    /// Queues a reply calling these tools.
    pub fn with_tool_calls(self, tool_calls: Vec<ToolCall>) -> Self {
        self.with_response(ChatResponse::from_tool_calls(tool_calls))
    }

    /// Queues a failure.
    pub fn with_error(self, error: LlmError) -> Self {
        self.push(Err(error));
        self
    }

    /// Queues a reply or failure (also usable after the client was handed out).
    pub fn push(&self, reply: Result<ChatResponse, LlmError>) {
        self.state().script.push_back(reply);
    }

    /// The requests received so far, oldest first.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.state().requests.clone()
    }

    /// How many queued replies are left.
    pub fn remaining(&self) -> usize {
        self.state().script.len()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held cannot leave the queue half-changed, so a poisoned
        // lock is still good to use.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn next(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let mut state = self.state();
        state.requests.push(request.clone());
        let call = state.requests.len();
        let mut reply = state.script.pop_front().unwrap_or_else(|| {
            Err(LlmError::Permanent {
                status: None,
                code: Some("script_exhausted".to_owned()),
                message: format!("the scripted client has no reply left for call {call}"),
            })
        });
        if let Ok(response) = &mut reply
            && response.model.is_empty()
        {
            response.model = self.model.clone();
        }
        reply
    }
}

#[async_trait]
impl LlmClient for ScriptedClient {
    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.next(request)
    }

    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, LlmError> {
        let response = self.next(request)?;
        let mut events: Vec<Result<StreamEvent, LlmError>> = response
            .text()
            .split_inclusive(' ')
            .map(|piece| Ok(StreamEvent::Text(piece.to_owned())))
            .collect();
        events.push(Ok(StreamEvent::Done(response)));
        Ok(Box::pin(futures::stream::iter(events)))
    }

    fn model(&self) -> &str {
        &self.model
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::llm::ChatMessage;

    fn request(text: &str) -> ChatRequest {
        ChatRequest::new(vec![ChatMessage::user(text)])
    }

    #[tokio::test]
    async fn replies_in_order_then_reports_the_exhausted_script() {
        let client = ScriptedClient::new("m")
            .with_text("one")
            .with_error(LlmError::Timeout {
                after: std::time::Duration::from_millis(5),
            });
        let handle = client.clone();
        let shared: Arc<dyn LlmClient> = Arc::new(client);
        assert_eq!(shared.chat(&request("a")).await.unwrap().model, "m");
        assert!(shared.chat(&request("b")).await.unwrap_err().is_retryable());
        let err = shared.chat(&request("c")).await.unwrap_err();
        assert!(err.to_string().contains("call 3"), "{err}");
        assert_eq!(handle.requests().len(), 3);
        assert_eq!(handle.remaining(), 0);
    }

    #[tokio::test]
    async fn streams_words_then_the_reply() {
        let client = ScriptedClient::new("m").with_text("sunny and warm");
        let events: Vec<_> = client
            .chat_stream(&request("weather?"))
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        let text: String = events
            .iter()
            .filter_map(|event| match event {
                StreamEvent::Text(text) => Some(text.as_str()),
                StreamEvent::Done(_) => None,
            })
            .collect();
        assert_eq!(text, "sunny and warm");
        assert!(matches!(events.last(), Some(StreamEvent::Done(r)) if r.text() == text));
    }
}
