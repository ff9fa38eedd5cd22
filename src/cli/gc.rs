//! `chainlog gc`: ends the runs and logged models that `log`s which died left unfinished
//! (RUNNING → FAILED, PENDING → UPLOAD_FAILED), chainlog's own only and only older than
//! `--older-than`.

use std::{io::Write, time::Duration};

use anyhow::Context;
use clap::Args;

use super::{App, args::TrackingArgs};
use crate::{runner::fail_unfinished, store::open_existing_store};

/// Options of `chainlog gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Only entries started this long ago or earlier (`30m`, `2h`, `7days`), so a log still in
    /// progress elsewhere is left alone.
    #[arg(long, value_name = "AGE", default_value = "1h", value_parser = humantime::parse_duration)]
    older_than: Duration,
    /// Only this experiment (default: every active experiment).
    #[arg(long, value_name = "NAME")]
    experiment: Option<String>,
    /// List what would be ended; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    tracking: TrackingArgs,
    /// Print the result as JSON: `{"runs": [...], "models": [...], "dry_run": bool}`.
    #[arg(long)]
    json: bool,
}

/// Runs `chainlog gc`.
///
/// # Errors
///
/// A store that cannot be opened, searched or changed.
pub async fn run(app: &App, args: GcArgs) -> anyhow::Result<()> {
    let uri = args.tracking.resolve(&app.compiled)?;
    let store = open_existing_store(&uri)?;
    let report = fail_unfinished(
        store.as_ref(),
        args.experiment.as_deref(),
        args.older_than,
        args.dry_run,
    )
    .await
    .with_context(|| format!("failed to end unfinished runs and models in {uri}"))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &report).context("failed to print the result")?;
        writeln!(out).context("failed to print the result")?;
        return Ok(());
    }
    let verb = if report.dry_run {
        "would mark"
    } else {
        "marked"
    };
    for run in &report.runs {
        writeln!(out, "run {run}: {verb} FAILED").context("failed to print the result")?;
    }
    for model in &report.models {
        writeln!(out, "logged model {model}: {verb} UPLOAD_FAILED")
            .context("failed to print the result")?;
    }
    if report.runs.is_empty() && report.models.is_empty() {
        writeln!(
            out,
            "nothing unfinished older than {}",
            humantime::format_duration(args.older_than)
        )
        .context("failed to print the result")?;
    }
    Ok(())
}
