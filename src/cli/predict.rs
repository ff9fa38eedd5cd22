//! `chainlog predict -m URI --input JSON`: rebuild a logged chain from its artifact and run it
//! on one input; prints the output JSON.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use super::{endpoint::Endpoint, model};
use crate::{
    chain::{ChainRegistry, RunContext},
    runner::{Rebuilt, predict_batch},
};

/// Options of `chainlog predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The model: runs:/<run_id>/<name>, models:/<model_id>, models:/<name>/<version>,
    /// models:/<name>@<alias>, or a local directory.
    #[arg(short = 'm', long = "model-uri", value_name = "URI")]
    model_uri: String,
    /// The input as JSON (checked against the logged chain's input schema).
    #[arg(
        long,
        conflicts_with = "input_file",
        required_unless_present = "input_file"
    )]
    input: Option<String>,
    /// A file holding the input JSON; with --output, a JSONL file of rows to run as a batch.
    #[arg(long, value_name = "FILE")]
    input_file: Option<PathBuf>,
    /// Batch mode: append one `{"index", "output"|"error"}` line per input row to this JSONL
    /// file; running the same command again skips rows already there (resume).
    #[arg(long, value_name = "FILE", requires = "input_file")]
    output: Option<PathBuf>,
    /// Batch mode: rows in flight at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    concurrency: usize,
    /// Override one value of the logged config (`--set llm.temperature=0.5`; the key must exist).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).
    #[arg(long, value_name = "URI")]
    tracking_uri: Option<String>,
}

/// Runs `chainlog predict`: one input, or with `--output` a batch.
///
/// # Errors
///
/// A model that cannot be loaded, input that does not fit, or a failed run.
pub fn run(registry: &ChainRegistry, args: PredictArgs) -> anyhow::Result<()> {
    // Read a single input before anything is loaded, so a bad one fails fast.
    let single = match (&args.input, &args.input_file, &args.output) {
        (_, Some(_), Some(_)) => None,
        (Some(text), _, _) => Some(parse_input(text)?),
        (None, Some(path), None) => Some(parse_input(
            &std::fs::read_to_string(path)
                .with_context(|| format!("failed to read the input file `{}`", path.display()))?,
        )?),
        (None, None, _) => bail!("give the input with --input JSON or --input-file FILE"),
    };
    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    runtime.block_on(async {
        let endpoint = Endpoint::from_env().await?;
        let model = model::load(
            registry,
            &args.model_uri,
            args.tracking_uri.as_deref(),
            &args.set,
            &endpoint,
        )
        .await?;
        match (single, &args.input_file, &args.output) {
            (Some(input), _, _) => predict_one(&model, input).await,
            (None, Some(input), Some(output)) => {
                predict_many(&model, input, output, args.concurrency).await
            }
            (None, _, _) => bail!("give the input with --input JSON or --input-file FILE"),
        }
    })
}

fn parse_input(text: &str) -> anyhow::Result<serde_json::Value> {
    serde_json::from_str(text).context("the input is not valid JSON")
}

/// One input: check, run, print the output JSON.
async fn predict_one(model: &Rebuilt<'_>, input: serde_json::Value) -> anyhow::Result<()> {
    model.entry.check_input(&input)?;
    let span = tracing::info_span!("predict", chain = model.entry.name());
    let output = model.chain.invoke(input, &RunContext::new(span)).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&output).context("failed to print the output")?
    );
    Ok(())
}

/// `--input-file rows.jsonl --output out.jsonl`: the batch, with a progress bar.
async fn predict_many(
    model: &Rebuilt<'_>,
    input: &std::path::Path,
    output: &std::path::Path,
    concurrency: usize,
) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{pos}/{len} rows {wide_bar} {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let summary = predict_batch(
        model.entry,
        &model.chain,
        input,
        output,
        concurrency,
        &progress,
    )
    .await;
    bar.finish_and_clear();
    let summary = summary?;
    eprintln!(
        "{} rows: {} already done, {} succeeded, {} failed (error rows in {})",
        summary.rows,
        summary.skipped,
        summary.succeeded,
        summary.failed,
        output.display()
    );
    Ok(())
}
