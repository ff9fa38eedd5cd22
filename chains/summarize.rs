//! Summarise a text in a few sentences: one prompt, one LLM call (streamed when asked).

use chainlog::{
    chain::{BuildContext, Chain, ChainError, RunContext, render_messages},
    llm::{ChatRequest, LlmClient, StreamEvent},
    prompt::PromptTemplate,
};
use futures::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The text to summarise.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The text.
    pub text: String,
}

/// The summary.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// A few sentences.
    pub summary: String,
}

/// The `chain:` section of `chains/summarize.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// How many sentences to ask for.
    sentences: u32,
}

/// The built chain.
pub struct Summarize {
    prompt: PromptTemplate,
    llm: Arc<dyn LlmClient>,
    sentences: u32,
}

/// Builds the chain from its prompt `summary`, its `chain:` settings and the `llm` client.
pub fn build(ctx: &BuildContext) -> Result<Summarize, ChainError> {
    let settings: Settings = ctx.section("chain")?;
    Ok(Summarize {
        prompt: ctx.prompt("summary")?,
        llm: ctx.llm()?,
        sentences: settings.sentences,
    })
}

impl Chain for Summarize {
    type Input = Input;
    type Output = Output;

    async fn invoke(&self, input: Input, ctx: &RunContext) -> Result<Output, ChainError> {
        let vars = serde_json::json!({ "text": input.text, "sentences": self.sentences });
        let request = ChatRequest::new(render_messages(&self.prompt, &vars)?);
        if !ctx.is_streaming() {
            let response = self.llm.chat(&request).await?;
            return Ok(Output {
                summary: response.content.unwrap_or_default(),
            });
        }
        let mut stream = self.llm.chat_stream(&request).await?;
        let mut summary = String::new();
        while let Some(event) = stream.next().await {
            ctx.check_cancelled()?;
            match event? {
                StreamEvent::Text(delta) => {
                    ctx.emit_text(&delta);
                    summary.push_str(&delta);
                }
                StreamEvent::Done(_) => break,
            }
        }
        Ok(Output { summary })
    }
}
