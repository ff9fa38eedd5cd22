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
    runner::{
        BatchOptions, BatchProgress, ConcurrencyPlan, Rebuilt, check_batch_files, predict_batch,
    },
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
    /// Batch mode: rows in flight at once. LLM calls in flight are capped separately by the
    /// chain's `llm.concurrency` (raise it with `--set llm.concurrency=N`); the batch says so
    /// at start when this asks for more.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = rows_in_flight,
          allow_negative_numbers = true)]
    concurrency: usize,
    /// Batch mode: run again the rows whose output line is an error (from an earlier run),
    /// replacing those lines; every index stays in the output once.
    #[arg(long, requires = "output")]
    retry_errors: bool,
}

/// `--concurrency`: a whole number of rows, at least 1.
fn rows_in_flight(text: &str) -> Result<usize, String> {
    match text.trim().parse::<i64>() {
        Ok(n) if n >= 1 => usize::try_from(n).map_err(|_| "too large".to_owned()),
        Ok(n) => Err(format!("the rows in flight must be at least 1, got {n}")),
        Err(_) => Err("expected a whole number of rows in flight (at least 1)".to_owned()),
    }
}

/// Runs `chainlog predict`: one input, or with `--output` a batch.
///
/// # Errors
///
/// A model that cannot be loaded, input that does not fit, or a failed run.
pub async fn run(app: &App, args: PredictArgs) -> anyhow::Result<()> {
    // Read a single input before anything is loaded, so a bad one fails fast.
    let single = match &args.output {
        Some(output) => {
            if let Some(input) = &args.input.input_file {
                check_batch_files(input, output)?;
            }
            None
        }
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
    let tracking = args.model.tracking(&app.compiled)?;
    super::traces::connect_for_model(&app.tracer, &tracking, &model.artifact).await;
    match (single, &args.input.input_file, &args.output) {
        (Some(input), _, _) => predict_one(&model, input).await,
        (None, Some(input), Some(output)) => {
            let options = BatchOptions {
                concurrency: args.concurrency,
                retry_errors: args.retry_errors,
            };
            predict_many(&model, input, output, options, &args.model.set).await
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

/// `--input-file rows.jsonl --output out.jsonl`: the batch, with a notice when rows in flight
/// exceed the chain's LLM call limit, and a progress bar (rows, rate, ETA, calls in flight).
async fn predict_many(
    model: &Rebuilt<'_>,
    input: &std::path::Path,
    output: &std::path::Path,
    options: BatchOptions,
    set: &[String],
) -> anyhow::Result<()> {
    let plan = ConcurrencyPlan::new(
        &model.config,
        options.concurrency,
        &format!("--concurrency {}", options.concurrency),
        set,
    );
    if let Some(notice) = plan.notice() {
        eprintln!("{notice}");
    }
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "{pos}/{len} rows {wide_bar} {per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = |now: BatchProgress| {
        bar.set_length(now.total);
        bar.set_position(now.done);
        if let Some(calls) = now.calls {
            bar.set_message(format!("calls {}/{}", calls.in_flight, calls.limit));
        }
    };
    let summary = predict_batch(model.entry, &model.chain, input, output, options, &progress).await;
    bar.finish_and_clear();
    let summary = summary?;
    let retried = if summary.retried > 0 {
        format!(", {} error rows retried", summary.retried)
    } else {
        String::new()
    };
    eprintln!(
        "{} rows: {} already done{retried}, {} succeeded, {} failed (error rows in {})",
        summary.rows,
        summary.skipped,
        summary.succeeded,
        summary.failed,
        output.display()
    );
    Ok(())
}
