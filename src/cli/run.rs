//! `chainlog run <chain>`: build a chain from this binary with its config and prompts from the
//! project, run it on one input, print the output JSON. Nothing is logged.

use std::io::Write;

use anyhow::Context;
use clap::Args;

use super::{
    App,
    args::{ChainFilesArgs, InputArgs, TrackingArgs},
    endpoint,
};
use crate::{chain::RunContext, config::LlmOverrides, runner::build_from_files};

/// Options of `chainlog run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The chain (see `chainlog chains`).
    chain: String,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    files: ChainFilesArgs,
    /// The store of `prompts:/…` prompts the config names.
    #[command(flatten)]
    tracking: TrackingArgs,
    /// Print text as the chain streams it, then the output JSON.
    #[arg(long)]
    stream: bool,
    /// Base URL of the OpenAI-compatible server (overrides OPENAI_BASE_URL and the config).
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Model (overrides the config).
    #[arg(long)]
    model: Option<String>,
}

/// Runs `chainlog run`.
///
/// # Errors
///
/// An unknown chain, bad input, no project, a bad config, a missing environment variable or a
/// failed run.
pub async fn run(app: &App, args: RunArgs) -> anyhow::Result<()> {
    let entry = app.registry.get(&args.chain)?;
    let input = args.input.read_one()?;
    entry.check_input(&input)?;
    let files = args.files.load(&app.compiled, &args.chain)?;

    let endpoint = endpoint().await?;
    let overrides = LlmOverrides {
        base_url: args.base_url.clone(),
        api_key: None,
        model: args.model.clone(),
    };
    let tracking = args.tracking.resolve(&app.compiled)?;
    // Traces go to the store when there is one (a run never creates it).
    super::traces::connect(&app.tracer, &tracking, None, None).await;
    let chain = build_from_files(
        entry,
        &files.config,
        &files.prompts_dir,
        Some(&tracking),
        endpoint.env.clone(),
        overrides,
    )
    .await?;
    let span = tracing::info_span!("run", chain = entry.name());
    let mut run_ctx = RunContext::new(span);
    let printer = if args.stream {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        run_ctx = run_ctx.with_text_sink(tx);
        Some(tokio::spawn(async move {
            let mut stdout = std::io::stdout();
            while let Some(text) = rx.recv().await {
                let _ = stdout.write_all(text.as_bytes());
                let _ = stdout.flush();
            }
        }))
    } else {
        None
    };
    let output = chain.invoke(input, &run_ctx).await;
    drop(run_ctx);
    if let Some(printer) = printer {
        let _ = printer.await;
        println!();
    }
    let output = output?;
    let text = serde_json::to_string_pretty(&output).context("failed to print the output")?;
    println!("{}", crate::secret::mask_registered(&text));
    drop(endpoint);
    Ok(())
}
