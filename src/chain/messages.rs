//! Where prompts meet the LLM: a rendered prompt becomes the messages of a chat request.

use serde_json::Value;

use super::ChainError;
use crate::{
    llm::ChatMessage,
    prompt::{PromptTemplate, Role},
};

/// Renders `prompt` with `vars` (strict: a missing variable is an error naming it) into chat
/// messages. A text prompt becomes one user message.
///
/// # Errors
///
/// [`ChainError::Prompt`] naming the missing variables or the render failure.
pub fn render_messages(
    prompt: &PromptTemplate,
    vars: &Value,
) -> Result<Vec<ChatMessage>, ChainError> {
    // `render` checks every variable first, so a missing one is named before any call.
    Ok(prompt
        .render(vars)?
        .into_messages()
        .into_iter()
        .map(|message| match message.role {
            Role::System | Role::Developer => ChatMessage::System(message.content),
            Role::User => ChatMessage::User(message.content),
            Role::Assistant => ChatMessage::Assistant {
                content: Some(message.content),
                tool_calls: Vec::new(),
            },
        })
        .collect())
}
