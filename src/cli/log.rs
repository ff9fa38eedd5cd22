//! `chainlog log <chain>`: log a chain from this binary to MLflow — a run and a LoggedModel
//! with its code, prompts, config (references only), examples and provenance — and print
//! where it went.

use std::io::Write;

use anyhow::Context;
use clap::Args;

use super::{
    App,
    args::{ChainFilesArgs, TrackingArgs},
    endpoint,
};
use crate::{
    artifact::SigningKey,
    runner::{LogRequest, log_chain},
    store::{TrackingUri, open_store},
};

/// Options of `chainlog log`.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// The chain (see `chainlog chains`).
    chain: String,
    #[command(flatten)]
    files: ChainFilesArgs,
    /// An input example (JSON): checked, run once against the endpoint, logged with its output.
    #[arg(long, value_name = "JSON")]
    input_example: Option<String>,
    /// More inputs, one JSON per line: each is run once like the input example, and its
    /// output and LLM exchanges are recorded (`cassettes/`), a regression set for `replay`.
    #[arg(long, value_name = "FILE", conflicts_with = "no_validate")]
    examples: Option<std::path::PathBuf>,
    /// Log without running the input example (nothing is recorded for `replay`).
    #[arg(long)]
    no_validate: bool,
    /// Also put the sources of every registry and git dependency in the model
    /// (`code/cargo-vendor/`, with `cargo vendor`), so `--build cargo` needs no registry.
    #[arg(long)]
    vendor: bool,
    /// Sign the model with this EC P-256 private key (PEM): writes `model.sig`, an OpenSSF
    /// Model Signing signature that `model_signing verify key` and `--verify-key` check.
    #[arg(long, value_name = "KEY")]
    sign_key: Option<std::path::PathBuf>,
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
    #[command(flatten)]
    tracking: TrackingArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `chainlog log`.
///
/// # Errors
///
/// An unknown chain, a bad config or input example, an unreachable or refusing store.
pub async fn run(app: &App, args: LogArgs) -> anyhow::Result<()> {
    let entry = app.registry.get(&args.chain)?;
    let files = args.files.load(&app.compiled, &args.chain)?;
    let input_example: Option<serde_json::Value> = args
        .input_example
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .context("the input example is not valid JSON")?;
    let examples = args
        .examples
        .as_deref()
        .map(crate::replay::read_examples)
        .transpose()?
        .unwrap_or_default();
    let sign_key = args
        .sign_key
        .as_deref()
        .map(SigningKey::from_pem_file)
        .transpose()?;
    let uri = args.tracking.resolve(&app.compiled)?;
    // The crate snapshot is the project's, when it holds this chain's source.
    let crate_dir = files
        .project
        .as_ref()
        .map(|project| project.root().to_path_buf())
        .filter(|root| root.join(entry.source_path()).is_file());
    let endpoint = endpoint().await?;
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
        config: &files.config,
        prompts_dir: &files.prompts_dir,
        crate_dir: crate_dir.as_deref(),
        vendor: args.vendor,
        experiment: &args.experiment,
        run_name: args.run_name.as_deref(),
        registered_model: args.registered_model.as_deref(),
        alias: args.alias.as_deref(),
        input_example: input_example.as_ref(),
        examples: &examples,
        validate: !args.no_validate,
        env: endpoint.env.clone(),
        sign_key: sign_key.as_ref(),
    };
    let logged = log_chain(&|| open_store(&uri), &request, &progress).await;
    bar.finish_and_clear();
    let logged =
        logged.with_context(|| format!("failed to log chain `{}` to {uri}", entry.name()))?;
    // The input example's trace waited for the run and model it belongs to.
    super::traces::connect(
        &app.tracer,
        &uri,
        Some(logged.model_id.clone()),
        Some(logged.run_id.clone()),
    )
    .await;
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
        writeln!(out, "model_id:  {}", logged.model_id).context("failed to print the result")?;
        writeln!(out, "model_uri: {}", logged.model_uri).context("failed to print the result")?;
        writeln!(out, "digest:    sha256:{}", logged.artifact_digest)
            .context("failed to print the result")?;
        if logged.replay_cases > 0 {
            writeln!(
                out,
                "replay:    {} case(s) recorded (cassettes/); check with: chainlog replay -m {}",
                logged.replay_cases, logged.model_uri
            )
            .context("failed to print the result")?;
        }
        if logged.signed {
            writeln!(out, "signed:    model.sig (OpenSSF Model Signing)")
                .context("failed to print the result")?;
        }
        if let (Some(name), Some(version)) = (&args.registered_model, &logged.registered_version) {
            writeln!(out, "registered: models:/{name}/{version}")
                .context("failed to print the result")?;
            if let Some(alias) = &args.alias {
                writeln!(out, "alias:     models:/{name}@{alias}")
                    .context("failed to print the result")?;
            }
        }
        match &uri {
            TrackingUri::Sqlite { .. } => {
                writeln!(out, "see it with: mlflow ui --backend-store-uri {uri}")
            }
            TrackingUri::Server { .. } => writeln!(out, "see it at: {uri}"),
        }
        .context("failed to print the result")?;
    }
    Ok(())
}
