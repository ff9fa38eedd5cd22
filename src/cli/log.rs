//! `chainlog log <chain>`: log a chain from this binary to MLflow — a run and a LoggedModel
//! with its code, prompts, config (references only), examples and provenance — and print
//! where it went.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::Context;
use clap::Args;

use super::endpoint::Endpoint;
use crate::{
    chain::ChainRegistry,
    config::ChainConfig,
    runner::{LogRequest, log_chain},
    store::{TrackingUri, open_store},
};

/// Options of `chainlog log`.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// The chain (see `chainlog chains`).
    chain: String,
    /// Config file to use instead of `chains/<chain>.yaml`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Set one config value: `--set llm.temperature=0.5` (repeatable; the key must exist).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Folder of the prompt templates.
    #[arg(long, value_name = "DIR", default_value = "prompts")]
    prompts_dir: PathBuf,
    /// An input example (JSON): checked, run once against the endpoint, logged with its output.
    #[arg(long, value_name = "JSON")]
    input_example: Option<String>,
    /// Log without running the input example.
    #[arg(long)]
    no_validate: bool,
    /// Experiment name (created if absent).
    #[arg(long, env = "MLFLOW_EXPERIMENT_NAME", default_value = "Default")]
    experiment: String,
    /// Run name; `<chain>-<unix time>` when absent.
    #[arg(long)]
    run_name: Option<String>,
    /// Register the model under this name in the model registry.
    #[arg(long, value_name = "NAME")]
    registered_model: Option<String>,
    /// Point this alias of the registered model at the new version.
    #[arg(long, requires = "registered_model")]
    alias: Option<String>,
    /// Tracking URI: sqlite:///PATH or http(s)://HOST[:PORT] (default: MLFLOW_TRACKING_URI,
    /// else sqlite:///mlflow.db).
    #[arg(long, value_name = "URI")]
    tracking_uri: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `chainlog log`.
///
/// # Errors
///
/// An unknown chain, a bad config or input example, an unreachable or refusing store.
pub fn run(registry: &ChainRegistry, args: LogArgs) -> anyhow::Result<()> {
    let entry = registry.get(&args.chain)?;
    let config = ChainConfig::load(&args.chain, args.config.as_deref(), &args.set)?;
    let input_example: Option<serde_json::Value> = args
        .input_example
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .context("the input example is not valid JSON")?;
    let uri = TrackingUri::resolve(args.tracking_uri.as_deref())?;
    let crate_dir = crate_dir(entry.source_path());
    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    runtime.block_on(async {
        let endpoint = Endpoint::from_env().await?;
        let bar = indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template("uploading {bytes}/{total_bytes} {wide_bar}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let progress = |done: u64, total: u64| {
            bar.set_length(total);
            bar.set_position(done);
        };
        let request = LogRequest {
            chain: entry,
            config: &config,
            prompts_dir: &args.prompts_dir,
            crate_dir: crate_dir.as_deref(),
            experiment: &args.experiment,
            run_name: args.run_name.as_deref(),
            registered_model: args.registered_model.as_deref(),
            alias: args.alias.as_deref(),
            input_example: input_example.as_ref(),
            validate: !args.no_validate,
            env: endpoint.env.clone(),
        };
        let logged = log_chain(&|| open_store(&uri), &request, &progress).await;
        bar.finish_and_clear();
        let logged =
            logged.with_context(|| format!("failed to log chain `{}` to {uri}", entry.name()))?;
        let mut out = std::io::stdout().lock();
        if args.json {
            let mut value = serde_json::to_value(&logged).context("failed to print the result")?;
            if let Some(object) = value.as_object_mut() {
                object.insert("tracking_uri".to_owned(), uri.to_string().into());
            }
            serde_json::to_writer_pretty(&mut out, &value).context("failed to print the result")?;
            writeln!(out).context("failed to print the result")?;
        } else {
            writeln!(out, "run_id:    {}", logged.run_id).context("failed to print the result")?;
            writeln!(out, "model_id:  {}", logged.model_id)
                .context("failed to print the result")?;
            writeln!(out, "model_uri: {}", logged.model_uri)
                .context("failed to print the result")?;
            if let (Some(name), Some(version)) =
                (&args.registered_model, &logged.registered_version)
            {
                writeln!(out, "registered: models:/{name}/{version}")
                    .context("failed to print the result")?;
            }
            match &uri {
                TrackingUri::Sqlite { .. } => writeln!(
                    out,
                    "see it with: mlflow ui --backend-store-uri {uri}   (in this folder)"
                ),
                TrackingUri::Server { .. } => writeln!(out, "see it at: {uri}"),
            }
            .context("failed to print the result")?;
        }
        Ok(())
    })
}

/// The crate whose files go into the artifact's `code/` snapshot: the working directory when
/// it holds this chain's source, else the crate this binary was built from when it is still
/// on this machine, else none (the chain's own source as compiled is always logged).
fn crate_dir(source_path: &str) -> Option<PathBuf> {
    let holds_chain =
        |dir: &Path| dir.join("Cargo.toml").is_file() && dir.join(source_path).is_file();
    std::env::current_dir()
        .ok()
        .filter(|dir| holds_chain(dir))
        .or_else(|| Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))).filter(|dir| holds_chain(dir)))
}
