//! [`ChainError`]: everything that can stop a chain from being built or run.

use crate::{config::ConfigError, llm::LlmError, prompt::PromptError};

/// Why a chain could not be built or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// No chain of that name is compiled into this binary.
    #[error("unknown chain `{name}`; this binary knows: {}", known.join(", "))]
    UnknownChain {
        /// The name asked for.
        name: String,
        /// The chains this binary knows.
        known: Vec<String>,
    },
    /// The input does not fit the chain's input schema.
    #[error("invalid input for chain `{chain}`: {problems}")]
    Input {
        /// The chain.
        chain: String,
        /// Each problem, naming the field (`input.text: 5 is not of type "string"`).
        problems: String,
    },
    /// The config is wrong (a missing env var, a bad section, a literal secret).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A prompt could not be loaded or rendered.
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// An LLM call failed.
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// The chain's own logic refused (a step limit, a tool that failed, ...).
    #[error("chain `{chain}` failed: {message}")]
    Failed {
        /// The chain.
        chain: String,
        /// What went wrong.
        message: String,
    },
    /// The run was cancelled.
    #[error("the run was cancelled")]
    Cancelled,
    /// The output could not be turned into JSON.
    #[error("chain `{chain}` produced output that is not JSON")]
    Output {
        /// The chain.
        chain: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

impl ChainError {
    /// A failure of the chain's own logic.
    pub fn failed(chain: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Failed {
            chain: chain.into(),
            message: message.into(),
        }
    }
}
