//! `chainlog worker -m DIR` (hidden; plumbing): the child process MLflow's `python_function`
//! loader starts for one loaded model. It loads the model as `predict` does (every hash
//! checked; handed over to the model's own compiled crate when this binary lacks its chain),
//! then answers JSON lines on stdin/stdout ([`crate::serve::serve_lines`]) until stdin ends.
//! Everything else it says goes to stderr, so stdout carries only the protocol.

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::{App, args::ModelArgs};
use crate::serve::{ServeState, line_limits, serve_lines};

/// Options of `chainlog worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Rows of one request in flight at once. LLM calls stay capped by the chain's
    /// `llm.concurrency` (no notice here: from Python it is raised with
    /// `load_model(uri, model_config={"llm": {"concurrency": N}})`).
    #[arg(long, value_name = "N", default_value_t = 64)]
    concurrency: usize,
}

/// Runs `chainlog worker`.
///
/// # Errors
///
/// A model that cannot be loaded; stdin or stdout failing.
pub async fn run(app: &App, args: WorkerArgs) -> anyhow::Result<()> {
    // The endpoint lives as long as the command: it may be the in-process mock.
    let (model, _endpoint) = args
        .model
        .load(
            &app.registry,
            &app.compiled,
            std::env::args_os().skip(1).collect(),
        )
        .await?;
    let state = ServeState::for_entry(model.chain, model.entry)
        .context("failed to prepare the input check")?
        .with_limits(line_limits(args.concurrency));
    let ready = json!({ "chain": model.entry.name(), "pid": std::process::id() });
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    serve_lines(stdin, tokio::io::stdout(), state, ready)
        .await
        .context("the JSON-lines channel failed")
}
