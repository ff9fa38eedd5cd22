//! `chainlog mock`: start the mock server on a host and port, print its base URL, serve until
//! Ctrl-C or SIGTERM.

use std::{io::Write, path::PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use secrecy::SecretString;

use crate::mock::{self, Latency, MockConfig};

/// Options of `chainlog mock`.
#[derive(Debug, Args)]
pub struct MockArgs {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind; 0 picks a free one (the printed base URL tells which).
    #[arg(long, default_value_t = 8089)]
    port: u16,
    /// Rules file (YAML): match requests, answer with text, tool calls, JSON, errors or faults.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// Cassette file (YAML): replay recorded exchanges, or record new ones with --record.
    #[arg(long, value_name = "FILE")]
    cassette: Option<PathBuf>,
    /// Record into the cassette by proxying to this OpenAI-style base URL
    /// (e.g. https://api.openai.com/v1); the key is read from OPENAI_API_KEY.
    #[arg(
        long,
        value_name = "UPSTREAM_URL",
        requires = "cassette",
        conflicts_with = "replay"
    )]
    record: Option<String>,
    /// Answer only from the cassette; a request not in it is an error, never a network call.
    #[arg(long, requires = "cassette")]
    replay: bool,
    /// Fixed latency added to every answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    latency_ms: u64,
    /// Random extra latency up to this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    jitter_ms: u64,
    /// Streams: delay before the first token, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    ttft_ms: u64,
    /// Streams: pace tokens at this rate (0 = as fast as possible).
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    tokens_per_second: f64,
    /// Require the bearer key held in this environment variable (others get a 401).
    #[arg(long, value_name = "VAR")]
    require_key_env: Option<String>,
    /// Play the quirks of this server: openai (default) or llama.cpp; README lists what each
    /// does and its sources. Wins over a rules file's `profile:`.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Embedding size when a request does not ask for `dimensions`.
    #[arg(long, value_name = "N", default_value_t = 1536)]
    embedding_dimensions: usize,
}

/// Runs `chainlog mock`.
///
/// # Errors
///
/// A bad rules or cassette file, a missing environment variable or an address that cannot be
/// bound.
pub async fn run(args: MockArgs) -> anyhow::Result<()> {
    let config = build_config(&args)?;
    let addr = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("failed to bind the mock server to {addr}"))?;
    let bound = listener
        .local_addr()
        .context("failed to read the bound address")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "http://{bound}/v1").context("failed to print the base URL")?;
    stdout.flush().context("failed to print the base URL")?;
    drop(stdout);
    eprintln!("chainlog mock serving at http://{bound}/v1 (Ctrl-C to stop)");
    mock::serve(listener, config, shutdown_signal())
        .await
        .context("mock server failed")
}

fn build_config(args: &MockArgs) -> anyhow::Result<MockConfig> {
    let mut config = MockConfig::default()
        .with_latency(Latency {
            fixed_ms: args.latency_ms,
            jitter_ms: args.jitter_ms,
            ttft_ms: args.ttft_ms,
            tokens_per_second: args.tokens_per_second,
        })
        .with_embedding_dimensions(args.embedding_dimensions);
    if let Some(rules) = &args.rules {
        config = config.with_rules_file(rules)?;
    }
    match (&args.cassette, &args.record, args.replay) {
        (Some(path), Some(upstream), false) => {
            let key = std::env::var("OPENAI_API_KEY").ok().map(|key| {
                crate::secret::register(&key);
                SecretString::from(key)
            });
            config = config.with_cassette_record(path, upstream.clone(), key)?;
        }
        (Some(path), None, true) => config = config.with_cassette_replay(path)?,
        (Some(path), None, false) => bail!(
            "--cassette {} needs --replay (answer from it) or --record UPSTREAM_URL (write to it)",
            path.display()
        ),
        _ => {}
    }
    if let Some(name) = &args.profile {
        config = config.with_profile(mock::Profile::from_name(name)?);
    }
    if let Some(var) = &args.require_key_env {
        let key = std::env::var(var)
            .with_context(|| format!("--require-key-env names {var}, which is not set"))?;
        crate::secret::register(&key);
        config = config.with_required_api_key(SecretString::from(key));
    }
    Ok(config)
}

/// Completes on Ctrl-C or SIGTERM.
pub(super) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
