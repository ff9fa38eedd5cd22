//! The command line: clap definitions, dispatch to library calls, the tracing subscriber and
//! exit codes. The only place that uses `anyhow`.
//!
//! Exit codes: 0 success, 1 a failure the message explains (for `replay`: an output that
//! differs), 2 a usage error (clap's) — and for `replay`, any failure to replay at all.
//!
//! `worker` is hidden plumbing: the child MLflow's `python_function` loader starts (JSON lines
//! on stdin/stdout), not a command for people.

mod args;
mod chains;
mod gc;
mod log;
mod mock;
mod new;
mod predict;
mod prompts;
mod replay;
mod run;
mod serve;
mod traces;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::{chain::ChainRegistry, project::CompiledCrate};

/// chainlog: log Rust LLM chains to MLflow as code, rebuild them, run them — against OpenAI,
/// any OpenAI-compatible server, or the built-in mock.
#[derive(Debug, Parser)]
#[command(name = "chainlog", version, about, long_about = None)]
struct Cli {
    /// Log more (repeat for more detail); `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Do not make MLflow traces of predictions (also CHAINLOG_TRACING=false).
    #[arg(long, global = true)]
    no_trace: bool,
    /// A tag on every trace this command makes (repeatable).
    #[arg(long, value_name = "KEY=VALUE", global = true)]
    trace_tag: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the chains compiled into this binary (name, code hash, description).
    Chains(chains::ChainsArgs),
    /// Run a chain from this binary on one input and print its output (nothing is logged).
    Run(run::RunArgs),
    /// Log a chain to MLflow: a run and a LoggedModel holding its code, prompts and config.
    Log(log::LogArgs),
    /// Rebuild a logged chain from its artifact and run it on one input.
    Predict(predict::PredictArgs),
    /// Prove offline that a logged chain still gives its logged outputs: rebuild it, answer
    /// its LLM calls from the model's recorded cassettes (no network, no key), compare.
    Replay(replay::ReplayArgs),
    /// Rebuild a logged chain and serve it with MLflow's scoring protocol.
    Serve(serve::ServeArgs),
    /// Work with MLflow's Prompt Registry.
    Prompts(prompts::PromptsArgs),
    /// End what logs that died left unfinished: chainlog's runs still RUNNING become FAILED,
    /// its logged models still PENDING become UPLOAD_FAILED.
    Gc(gc::GcArgs),
    /// Run the mock OpenAI-compatible server until Ctrl-C or SIGTERM.
    Mock(mock::MockArgs),
    /// Create a crate for your own chains: build.rs, main.rs, an example chain with its
    /// prompt and config, a test against the mock, a README.
    New(new::NewArgs),
    /// Plumbing: answer JSON lines for MLflow's `python_function` loader (one child per
    /// loaded model).
    #[command(hide = true)]
    Worker(worker::WorkerArgs),
}

/// What every command may need: the chains compiled into this binary and the crate they were
/// compiled from.
#[derive(Debug)]
struct App {
    registry: ChainRegistry,
    compiled: CompiledCrate,
    /// Exports the traces the commands make; flushed at exit.
    tracer: crate::trace::Tracer,
}

/// Parses the command line, runs it with the chains of `registry` (compiled from the crate
/// `compiled` names) on one tokio runtime, and returns the process exit code.
pub fn main(registry: ChainRegistry, compiled: CompiledCrate) -> ExitCode {
    let cli = Cli::parse();
    // Before anything can log or fail: every secret-named variable's value is masked.
    crate::secret::register_env();
    let mut settings = match crate::trace::TraceSettings::from_env(cli.no_trace, &cli.trace_tag) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    settings
        .export_priority
        .get_or_insert(export_priority(&cli.command));
    let (layer, tracer) = settings.build();
    set_up_logging(cli.verbose, layer);
    let app = App {
        registry,
        compiled,
        tracer,
    };
    let is_replay = matches!(cli.command, Command::Replay(_));
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            let result = runtime.block_on(dispatch(&app, cli.command));
            // Traces made so far leave before the process does.
            runtime.block_on(app.tracer.flush(app.tracer.flush_timeout()));
            result
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // A provider's words may be in the chain; the scrubber is the last guard.
            eprintln!("error: {}", crate::secret::scrub(&format!("{error:#}")));
            if is_replay && error.downcast_ref::<replay::OutputsDiffer>().is_none() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The trace export's CPU priority when `CHAINLOG_TRACE_EXPORT_PRIORITY` is unset: idle for
/// `serve`, whose requests per second come first; normal for the rest — they flush at exit
/// anyway, and an idle-priority thread would hold up that exit while other processes keep
/// every CPU busy. That includes `worker`: the Python process that started it waits for its
/// exit (at most 10 s) when it ends, on machines that are often busy (a Spark executor).
fn export_priority(command: &Command) -> crate::trace::ExportPriority {
    match command {
        Command::Serve(_) => crate::trace::ExportPriority::Idle,
        _ => crate::trace::ExportPriority::Normal,
    }
}

async fn dispatch(app: &App, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Chains(args) => chains::run(&app.registry, &args),
        Command::Run(args) => run::run(app, args).await,
        Command::Log(args) => log::run(app, args).await,
        Command::Predict(args) => predict::run(app, args).await,
        Command::Replay(args) => replay::run(app, args).await,
        Command::Serve(args) => serve::run(app, args).await,
        Command::Prompts(args) => prompts::run(&app.compiled, args).await,
        Command::Gc(args) => gc::run(app, args).await,
        Command::Mock(args) => mock::run(args).await,
        Command::New(args) => new::run(&args),
        Command::Worker(args) => worker::run(app, args).await,
    }
}

/// The environment's endpoint or the built-in mock, saying so when it is the mock.
async fn endpoint() -> anyhow::Result<crate::runner::Endpoint> {
    use anyhow::Context as _;
    let endpoint = crate::runner::Endpoint::from_env()
        .await
        .context("failed to start the built-in mock")?;
    if let Some(url) = endpoint.mock_base_url() {
        eprintln!(
            "note: neither OPENAI_BASE_URL nor OPENAI_API_KEY is set; using the built-in mock at {url}"
        );
    }
    Ok(endpoint)
}

/// Checks that `args` (without the program name) form a valid command line, without running
/// it. The README test uses this to keep every documented command valid.
///
/// # Errors
///
/// Clap's error when the command line is not valid.
#[doc(hidden)]
pub fn check_command_line<I, T>(args: I) -> Result<(), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let program = std::iter::once(std::ffi::OsString::from("chainlog"));
    Cli::try_parse_from(program.chain(args.into_iter().map(Into::into))).map(|_| ())
}

/// Logs go to stderr, so stdout stays for what scripts read; every line goes through the
/// scrubber ([`crate::secret::Scrubbed`]). Colours only on a terminal and without `NO_COLOR`.
/// `traces`, when tracing is on, is installed beside the log lines with its own filter
/// (events at INFO and above, for span events), so `RUST_LOG` never turns traces off.
fn set_up_logging(verbose: u8, traces: Option<crate::trace::TraceLayer>) {
    use tracing_subscriber::{Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};
    let default = match verbose {
        0 => "warn",
        1 => "info,chainlog=info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(colour)
        .with_writer(|| crate::secret::Scrubbed::new(std::io::stderr()))
        .with_filter(filter);
    let traces = traces.map(crate::trace::TraceLayer::filtered);
    tracing_subscriber::registry()
        .with(lines)
        .with(traces)
        .init();
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{Cli, export_priority};
    use crate::trace::ExportPriority;

    /// Only `serve` exports at idle priority by default; every command that ends on its own,
    /// and `worker` (its Python parent waits for its exit), at normal priority.
    #[test]
    fn only_serve_exports_at_idle_priority_by_default() {
        let cases: [(&[&str], ExportPriority); 6] = [
            (&["serve", "-m", "models:/m"], ExportPriority::Idle),
            (&["worker", "-m", "models:/m"], ExportPriority::Normal),
            (
                &["predict", "-m", "models:/m", "--input", "{}"],
                ExportPriority::Normal,
            ),
            (
                &["run", "summarize", "--input", "{}"],
                ExportPriority::Normal,
            ),
            (&["log", "summarize"], ExportPriority::Normal),
            (&["replay", "-m", "models:/m"], ExportPriority::Normal),
        ];
        for (args, expected) in cases {
            let cli = Cli::try_parse_from(std::iter::once("chainlog").chain(args.iter().copied()))
                .unwrap_or_else(|error| panic!("{args:?}: {error}"));
            assert_eq!(export_priority(&cli.command), expected, "{args:?}");
        }
    }
}
