//! Extract a contact card from free text as structured output checked against a Rust type.

use chainlog::{
    chain::{BuildContext, Chain, ChainError, RunContext, render_messages},
    llm::{ChatRequest, LlmClient, chat_json},
    prompt::PromptTemplate,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The text to read.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Free text that mentions a person (an email signature, a note, a bio).
    pub text: String,
}

/// The contact card the model must return: its JSON schema is sent as `response_format`, and
/// the reply is parsed into this type or refused.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// Full name.
    pub name: String,
    /// Email address, when the text gives one.
    pub email: Option<String>,
    /// Company or organisation, when the text gives one.
    pub company: Option<String>,
    /// Role or job title, when the text gives one.
    pub title: Option<String>,
    /// Short topics the person is associated with.
    pub topics: Vec<String>,
}

/// The extracted card.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// The contact.
    pub contact: Contact,
}

/// The built chain.
pub struct Extract {
    prompt: PromptTemplate,
    llm: Arc<dyn LlmClient>,
}

/// Builds the chain from its prompt `extract` and the `llm` client.
pub fn build(ctx: &BuildContext) -> Result<Extract, ChainError> {
    Ok(Extract {
        prompt: ctx.prompt("extract")?,
        llm: ctx.llm()?,
    })
}

impl Chain for Extract {
    type Input = Input;
    type Output = Output;

    async fn invoke(&self, input: Input, _ctx: &RunContext) -> Result<Output, ChainError> {
        let vars = serde_json::json!({ "text": input.text });
        let request = ChatRequest::new(render_messages(&self.prompt, &vars)?);
        let (contact, _response) = chat_json::<Contact>(self.llm.as_ref(), request).await?;
        Ok(Output { contact })
    }
}
