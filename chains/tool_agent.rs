//! Answer a question with a tool-calling loop over Rust tools (a calculator, a lookup table), within a step limit.

use chainlog::{
    chain::{BuildContext, Chain, ChainError, RunContext, render_messages},
    llm::{ChatMessage, ChatRequest, LlmClient, ToolCall, ToolSpec},
    prompt::PromptTemplate,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, sync::Arc};

/// The question.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// A question the tools help answer ("What is the population of Paris times 2?").
    pub question: String,
}

/// The answer and every tool call made on the way.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// The model's final answer.
    pub answer: String,
    /// LLM calls made (tool rounds + the final answer).
    pub steps: u32,
    /// The tool calls, in order.
    pub tool_calls: Vec<ToolTrace>,
}

/// One tool call and what the tool returned.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ToolTrace {
    /// The tool.
    pub name: String,
    /// Its arguments, as the model sent them.
    pub arguments: String,
    /// What the tool returned (or the error it reported back to the model).
    pub result: String,
}

/// Arguments of the `calculator` tool.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalculatorArgs {
    /// An arithmetic expression such as `(2 + 3) * 4.5`.
    pub expression: String,
}

/// Arguments of the `lookup` tool.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupArgs {
    /// The key to look up (case-insensitive), e.g. `paris`.
    pub key: String,
}

/// The `chain:` section of `chains/tool_agent.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Most LLM calls one question may take.
    max_steps: u32,
    /// The table the `lookup` tool reads.
    lookup: BTreeMap<String, String>,
}

/// The built chain.
pub struct ToolAgent {
    prompt: PromptTemplate,
    llm: Arc<dyn LlmClient>,
    max_steps: u32,
    lookup: BTreeMap<String, String>,
    tools: Vec<ToolSpec>,
}

/// Builds the chain from its prompt `agent`, its settings and the `llm` client.
pub fn build(ctx: &BuildContext) -> Result<ToolAgent, ChainError> {
    let settings: Settings = ctx.section("chain")?;
    let lookup = settings
        .lookup
        .into_iter()
        .map(|(key, value)| (key.to_lowercase(), value))
        .collect();
    Ok(ToolAgent {
        prompt: ctx.prompt("agent")?,
        llm: ctx.llm()?,
        max_steps: settings.max_steps,
        lookup,
        tools: vec![
            ToolSpec::from_type::<CalculatorArgs>("calculator", "Evaluate an arithmetic expression."),
            ToolSpec::from_type::<LookupArgs>("lookup", "Look up a fact by key in the reference table."),
        ],
    })
}

impl ToolAgent {
    /// Runs one tool call. Tool failures are answers for the model, not failures of the chain.
    fn run_tool(&self, call: &ToolCall) -> String {
        match call.name.as_str() {
            "calculator" => match call.parse_arguments::<CalculatorArgs>() {
                Ok(args) => match evalexpr::eval(&args.expression) {
                    Ok(value) => value.to_string(),
                    Err(err) => format!("error: cannot evaluate `{}`: {err}", args.expression),
                },
                Err(err) => format!("error: {err}"),
            },
            "lookup" => match call.parse_arguments::<LookupArgs>() {
                Ok(args) => self
                    .lookup
                    .get(&args.key.to_lowercase())
                    .cloned()
                    .unwrap_or_else(|| {
                        let known: Vec<&str> = self.lookup.keys().map(String::as_str).collect();
                        format!("error: no entry `{}`; known keys: {}", args.key, known.join(", "))
                    }),
                Err(err) => format!("error: {err}"),
            },
            other => format!("error: unknown tool `{other}`"),
        }
    }
}

impl Chain for ToolAgent {
    type Input = Input;
    type Output = Output;

    async fn invoke(&self, input: Input, ctx: &RunContext) -> Result<Output, ChainError> {
        let vars = serde_json::json!({ "question": input.question });
        let mut messages = render_messages(&self.prompt, &vars)?;
        let mut traces = Vec::new();
        for step in 1..=self.max_steps {
            ctx.check_cancelled()?;
            let request = ChatRequest::new(messages.clone()).with_tools(self.tools.clone());
            let response = self.llm.chat(&request).await?;
            if response.tool_calls.is_empty() {
                return Ok(Output {
                    answer: response.content.unwrap_or_default(),
                    steps: step,
                    tool_calls: traces,
                });
            }
            messages.push(ChatMessage::Assistant {
                content: response.content.clone(),
                tool_calls: response.tool_calls.clone(),
            });
            for call in &response.tool_calls {
                // A TOOL span in the prediction's trace: arguments in, result out.
                let span = chainlog::trace::tool_span(&call.name, &call.arguments);
                let result = span.in_scope(|| self.run_tool(call));
                chainlog::trace::outputs(&span, || &result);
                tracing::info!(tool = %call.name, "tool call");
                messages.push(ChatMessage::Tool {
                    tool_call_id: call.id.clone(),
                    content: result.clone(),
                });
                traces.push(ToolTrace {
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                    result,
                });
            }
        }
        Err(ChainError::failed(
            "tool_agent",
            format!("no answer within the step limit of {} LLM calls (chain.max_steps)", self.max_steps),
        ))
    }
}
