//! `chainlog serve -m URI`: rebuild a logged chain and serve it with MLflow's scoring protocol
//! (`/ping`, `/health`, `/version`, `POST /invocations`) until Ctrl-C or SIGTERM.

use anyhow::Context;
use clap::Args;
use secrecy::SecretString;

use super::{App, args::ModelArgs, mock::shutdown_signal};
use crate::{
    runner::ConcurrencyPlan,
    serve::{ServeState, serve},
};

/// Options of `chainlog serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind; 0 picks a free one (the first line printed says which).
    #[arg(long, default_value_t = 5000)]
    port: u16,
    /// Require `Authorization: Bearer <token>` with the token held in this variable.
    #[arg(long, value_name = "NAME")]
    token_env: Option<String>,
}

/// Runs `chainlog serve`.
///
/// # Errors
///
/// A model that cannot be loaded, a token variable that is not set, an address in use.
pub async fn run(app: &App, args: ServeArgs) -> anyhow::Result<()> {
    // The endpoint lives as long as the command: it may be the in-process mock.
    let (model, _endpoint) = args
        .model
        .load(
            &app.registry,
            &app.compiled,
            std::env::args_os().skip(1).collect(),
        )
        .await?;
    let tracking = args.model.tracking(&app.compiled)?;
    super::traces::connect_for_model(&app.tracer, &tracking, &model.artifact).await;
    let mut state = ServeState::for_entry(model.chain, model.entry)
        .context("failed to prepare the input check")?;
    let limits = state.limits();
    let plan = ConcurrencyPlan::new(
        &model.config,
        limits.max_in_flight * limits.row_concurrency,
        &format!(
            "serving {} requests at once of up to {} rows each",
            limits.max_in_flight, limits.row_concurrency
        ),
        &args.model.set,
    );
    if let Some(notice) = plan.notice() {
        eprintln!("{notice}");
    }
    if let Some(name) = &args.token_env {
        let token = std::env::var(name)
            .with_context(|| format!("--token-env names {name}, which is not set"))?;
        crate::secret::register(&token);
        state = state.with_token(SecretString::from(token));
    }
    let addr = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("failed to bind {addr}"))?;
    let bound = listener
        .local_addr()
        .context("failed to read the bound address")?;
    println!("http://{bound}");
    eprintln!(
        "serving {} ({}) at http://{bound} (Ctrl-C to stop)",
        args.model.model_uri,
        model.entry.name()
    );
    serve(listener, state, shutdown_signal())
        .await
        .context("the server failed")
}
