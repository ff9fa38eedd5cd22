//! [`ReplayError`]: why cases could not be recorded or replayed.

use std::path::PathBuf;

use crate::{chain::ChainError, config::ConfigError, mock::MockError, runner::RebuildError};

/// Why cases could not be recorded (at `log`) or replayed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The model holds no recorded cases.
    #[error(
        "model `{uri}` has no recorded LLM exchanges to replay (no cassettes/ in its artifact); \
         {advice}"
    )]
    NoCassettes {
        /// The model URI as given.
        uri: String,
        /// What to do: log with an input example, or without `--no-validate`.
        advice: &'static str,
    },
    /// `--trace` names a trace another chain made: its spans would not match this chain's calls.
    #[error(
        "trace `{trace_id}` is a prediction of chain `{traced}`, not of this model's chain `{chain}`; \
         replay it with the model that made it (its `mlflow.modelId`)"
    )]
    TraceOfAnotherChain {
        /// The trace.
        trace_id: String,
        /// The chain its root span names.
        traced: String,
        /// This model's chain.
        chain: String,
    },
    /// `cases.jsonl` is not what `log` writes, or a `--examples` line is not JSON.
    #[error("invalid cases file `{path}` at line {line}: {message}")]
    BadCases {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The chain's LLM sections talk to more than one endpoint; one recorder fronts one.
    #[error(
        "cannot record the LLM exchanges of chain `{chain}`: its LLM sections use different base URLs ({urls}); set OPENAI_BASE_URL, or log with --no-validate"
    )]
    SeveralEndpoints {
        /// The chain.
        chain: String,
        /// The base URLs.
        urls: String,
    },
    /// A trace whose spans hold no LLM exchange to replay.
    #[error(
        "trace `{trace_id}` holds no LLM call (no CHAT_MODEL span with a request and a response) to replay"
    )]
    TraceWithoutLlm {
        /// The trace.
        trace_id: String,
    },
    /// A trace whose LLM call was recorded cut (a request or response over the 1 MiB an
    /// attribute keeps): the call cannot be replayed from it.
    #[error(
        "trace `{trace_id}` cannot be replayed: the request or response of its LLM call was cut at 1 MiB when the trace was recorded (the most a trace attribute keeps); replay that call from a cassette recorded at log time instead"
    )]
    TraceTruncated {
        /// The trace.
        trace_id: String,
    },
    /// A trace without a root span holding the chain's input.
    #[error("trace `{trace_id}` has no root span holding the chain's input")]
    TraceWithoutRoot {
        /// The trace.
        trace_id: String,
    },
    /// The trace could not be read.
    #[error(transparent)]
    Trace(#[from] crate::trace::TraceReadError),
    /// The config could not be resolved.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The chain refused to build or its run failed while recording.
    #[error("case {case} failed while its LLM exchanges were recorded")]
    Chain {
        /// The case.
        case: usize,
        /// Why.
        #[source]
        source: ChainError,
    },
    /// The chain could not be rebuilt from the artifact.
    #[error(transparent)]
    Rebuild(#[from] RebuildError),
    /// The in-process mock could not start or read a cassette.
    #[error(transparent)]
    Mock(#[from] MockError),
    /// A file could not be read or written.
    #[error("failed to {action} `{path}`")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
