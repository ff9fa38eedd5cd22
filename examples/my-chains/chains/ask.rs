//! Answer a question in a few words: one chat prompt, one LLM call.

use std::sync::Arc;

use chainlog::{
    chain::{BuildContext, Chain, ChainError, RunContext, render_messages},
    llm::{ChatRequest, LlmClient},
    prompt::PromptTemplate,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The question.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// What to answer.
    pub question: String,
}

/// The answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// A short answer.
    pub answer: String,
}

/// The `chain:` section of `chains/ask.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The most words the answer may have.
    max_words: u32,
}

/// The built chain.
pub struct AskChain {
    prompt: PromptTemplate,
    llm: Arc<dyn LlmClient>,
    max_words: u32,
}

/// Builds the chain from its prompt, its `chain:` settings and the `llm` client.
pub fn build(ctx: &BuildContext) -> Result<AskChain, ChainError> {
    let settings: Settings = ctx.section("chain")?;
    Ok(AskChain {
        prompt: ctx.prompt("ask")?,
        llm: ctx.llm()?,
        max_words: settings.max_words,
    })
}

impl Chain for AskChain {
    type Input = Input;
    type Output = Output;

    async fn invoke(&self, input: Input, _ctx: &RunContext) -> Result<Output, ChainError> {
        let vars = serde_json::json!({ "question": input.question, "max_words": self.max_words });
        let request = ChatRequest::new(render_messages(&self.prompt, &vars)?);
        let response = self.llm.chat(&request).await?;
        Ok(Output {
            answer: response.content.unwrap_or_default(),
        })
    }
}
