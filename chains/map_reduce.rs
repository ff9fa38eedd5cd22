//! Summarise a long text: split it, summarise the parts concurrently, combine the summaries.

use chainlog::{
    chain::{BuildContext, Chain, ChainError, RunContext, render_messages},
    llm::{ChatRequest, LlmClient},
    prompt::PromptTemplate,
};
use futures::future::try_join_all;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The text to summarise.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The text, of any length.
    pub text: String,
}

/// The combined summary and the summaries it was made from.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// The final summary.
    pub summary: String,
    /// One summary per part, in text order.
    pub part_summaries: Vec<String>,
}

/// The `chain:` section of `chains/map_reduce.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Largest part, in characters; parts end at a paragraph or sentence when they can.
    chunk_chars: usize,
    /// Sentences per part summary and in the final summary.
    sentences: u32,
}

/// The built chain.
pub struct MapReduce {
    map: PromptTemplate,
    reduce: PromptTemplate,
    llm: Arc<dyn LlmClient>,
    settings: Settings,
}

/// Builds the chain from its prompts `map` and `reduce`, its settings and the `llm` client.
pub fn build(ctx: &BuildContext) -> Result<MapReduce, ChainError> {
    let settings: Settings = ctx.section("chain")?;
    if settings.chunk_chars == 0 {
        return Err(ChainError::failed("map_reduce", "chain.chunk_chars must be at least 1"));
    }
    Ok(MapReduce {
        map: ctx.prompt("map")?,
        reduce: ctx.prompt("reduce")?,
        llm: ctx.llm()?,
        settings,
    })
}

impl Chain for MapReduce {
    type Input = Input;
    type Output = Output;

    async fn invoke(&self, input: Input, ctx: &RunContext) -> Result<Output, ChainError> {
        let parts = split(&input.text, self.settings.chunk_chars);
        let total = parts.len();
        // The parts run concurrently; the client's own limit bounds how many are in flight.
        let calls = parts.iter().enumerate().map(|(index, part)| async move {
            ctx.check_cancelled()?;
            let vars = serde_json::json!({
                "text": part, "part": index + 1, "parts": total, "sentences": self.settings.sentences,
            });
            let request = ChatRequest::new(render_messages(&self.map, &vars)?);
            let response = self.llm.chat(&request).await?;
            Ok::<_, ChainError>(response.content.unwrap_or_default())
        });
        let part_summaries = try_join_all(calls).await?;
        let vars = serde_json::json!({ "summaries": part_summaries, "sentences": self.settings.sentences });
        let request = ChatRequest::new(render_messages(&self.reduce, &vars)?);
        let summary = self.llm.chat(&request).await?.content.unwrap_or_default();
        Ok(Output { summary, part_summaries })
    }
}

/// Splits `text` into parts of at most `max_chars` characters, preferring to end a part at a
/// blank line, then at a sentence end, then at a space.
pub fn split(text: &str, max_chars: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let limit = rest
            .char_indices()
            .nth(max_chars)
            .map_or(rest.len(), |(index, _)| index);
        if limit == rest.len() {
            parts.push(rest.to_owned());
            break;
        }
        let window = &rest[..limit];
        let cut = window
            .rfind("\n\n")
            .or_else(|| window.rfind(". ").map(|i| i + 1))
            .or_else(|| window.rfind(' '))
            .filter(|&i| i > 0)
            .unwrap_or(limit);
        parts.push(rest[..cut].trim().to_owned());
        rest = rest[cut..].trim_start();
    }
    parts
}
