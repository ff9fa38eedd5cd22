//! `chainlog run <chain>`: build a chain from this binary with its config and prompts from the
//! working tree, run it on one input, print the output JSON. Nothing is logged.

use std::{io::Write, path::PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use super::endpoint::Endpoint;
use crate::{
    chain::{BuildContext, ChainRegistry, RunContext, openai_factory, prompt_entries},
    config::{ChainConfig, LlmOverrides},
    runner::load_prompts,
    store::{TrackingUri, open_store},
};

/// Options of `chainlog run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The chain (see `chainlog chains`).
    chain: String,
    /// The input as JSON (checked against the chain's input schema).
    #[arg(
        long,
        conflicts_with = "input_file",
        required_unless_present = "input_file"
    )]
    input: Option<String>,
    /// A file holding the input JSON.
    #[arg(long, value_name = "FILE")]
    input_file: Option<PathBuf>,
    /// Config file to use instead of `chains/<chain>.yaml`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Set one config value: `--set llm.temperature=0.5` (repeatable; the key must exist).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Folder of the prompt templates.
    #[arg(long, value_name = "DIR", default_value = "prompts")]
    prompts_dir: PathBuf,
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
/// An unknown chain, bad input, a bad config, a missing environment variable or a failed run.
pub fn run(registry: &ChainRegistry, args: RunArgs) -> anyhow::Result<()> {
    let entry = registry.get(&args.chain)?;
    let input_text = match (&args.input, &args.input_file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("failed to read the input file `{}`", path.display()))?,
        (None, None) => bail!("give the input with --input JSON or --input-file FILE"),
    };
    let input: serde_json::Value =
        serde_json::from_str(&input_text).context("the input is not valid JSON")?;
    entry.check_input(&input)?;

    let config = ChainConfig::load(&args.chain, args.config.as_deref(), &args.set)?;

    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    runtime.block_on(async move {
        let endpoint = Endpoint::from_env().await?;
        let overrides = LlmOverrides {
            base_url: args.base_url.clone(),
            api_key: None,
            model: args.model.clone(),
        };
        // Prompts named as `prompts:/…` come from the tracking store's registry.
        let store = if prompt_entries(&config)
            .values()
            .any(|path| path.starts_with("prompts:/"))
        {
            Some(open_store(&TrackingUri::resolve(None)?)?)
        } else {
            None
        };
        let (prompts, _) = load_prompts(&config, &args.prompts_dir, store.as_deref()).await?;
        let ctx = BuildContext::with_prompts(
            entry.name(),
            &config,
            prompts,
            endpoint.env.clone(),
            overrides,
            openai_factory(),
        )?;
        let chain = entry.build(&ctx)?;
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
        println!("{text}");
        drop(endpoint);
        Ok(())
    })
}
