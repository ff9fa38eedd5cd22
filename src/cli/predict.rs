//! `chainlog predict -m URI --input JSON`: rebuild a logged chain from its artifact and run it
//! on one input; prints the output JSON.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use super::{
    App,
    args::{InputArgs, ModelArgs},
};
use crate::{
    chain::RunContext,
    runner::{Rebuilt, predict_batch},
};

/// Options of `chainlog predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    input: InputArgs,
    /// Batch mode: append one `{"index", "output"|"error"}` line per input row to this JSONL
    /// file; running the same command again skips rows already there (resume).
    #[arg(long, value_name = "FILE", requires = "input_file")]
    output: Option<PathBuf>,
    /// Batch mode: rows in flight at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    concurrency: usize,
}

/// Runs `chainlog predict`: one input, or with `--output` a batch.
///
/// # Errors
///
/// A model that cannot be loaded, input that does not fit, or a failed run.
pub async fn run(app: &App, args: PredictArgs) -> anyhow::Result<()> {
    // Read a single input before anything is loaded, so a bad one fails fast.
    let single = match &args.output {
        Some(_) => None,
        None => Some(args.input.read_one()?),
    };
    // The endpoint lives as long as the command: it may be the in-process mock.
    let (model, _endpoint) = args
        .model
        .load(
            &app.registry,
            &app.compiled,
            args.input.hand_over_args(single.as_ref()),
        )
        .await?;
    match (single, &args.input.input_file, &args.output) {
        (Some(input), _, _) => predict_one(&model, input).await,
        (None, Some(input), Some(output)) => {
            predict_many(&model, input, output, args.concurrency).await
        }
        (None, _, _) => bail!("batch mode needs --input-file ROWS.jsonl with --output OUT.jsonl"),
    }
}

/// One input: check, run, print the output JSON.
async fn predict_one(model: &Rebuilt<'_>, input: serde_json::Value) -> anyhow::Result<()> {
    model.entry.check_input(&input)?;
    let span = tracing::info_span!("predict", chain = model.entry.name());
    let output = model.chain.invoke(input, &RunContext::new(span)).await?;
    let text = serde_json::to_string_pretty(&output).context("failed to print the output")?;
    println!("{}", crate::secret::mask_registered(&text));
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
