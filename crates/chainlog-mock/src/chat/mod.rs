//! `POST /v1/chat/completions`: request checks, the default reply, and the answer in OpenAI's
//! wire format — one `chat.completion` or an SSE stream of `chat.completion.chunk`s.
//!
//! Owns the chat request shape ([`ChatRequest`]) and both answer shapes. Which reply a request
//! gets is decided by `server` (rules, cassette) or [`ChatRequest::default_decision`].
//!
//! Parts: `request` (the request shape and its checks, [`ChatRequest::parse`]) and `render`
//! (the default reply and both answer shapes, [`ChatRequest::render`]).

mod render;
mod request;

pub use render::unix_now;
pub(crate) use request::parse_tool_choice;
pub use request::{ChatRequest, Message, ResponseFormat, Tool};
