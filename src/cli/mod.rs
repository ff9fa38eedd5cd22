//! The command line: clap definitions, dispatch to library calls, the tracing subscriber and
//! exit codes. The only place that uses `anyhow`.
//!
//! Exit codes: 0 success, 1 a failure the message explains, 2 a usage error (clap's).

mod chains;
mod endpoint;
mod log;
mod mock;
mod model;
mod predict;
mod prompts;
mod run;
mod serve;

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
    /// Rebuild a logged chain and serve it with MLflow's scoring protocol.
    Serve(serve::ServeArgs),
    /// Work with MLflow's Prompt Registry.
    Prompts(prompts::PromptsArgs),
    /// Run the mock OpenAI-compatible server until Ctrl-C or SIGTERM.
    Mock(mock::MockArgs),
}

/// Parses the command line, runs it with the chains of `registry` and returns the process exit
/// code.
pub fn main(registry: ChainRegistry, compiled: CompiledCrate) -> ExitCode {
    let _ = compiled;
    let cli = Cli::parse();
    set_up_logging(cli.verbose);
    let result = match cli.command {
        Command::Chains(args) => chains::run(&registry, &args),
        Command::Run(args) => run::run(&registry, args),
        Command::Log(args) => log::run(&registry, args),
        Command::Predict(args) => predict::run(&registry, args),
        Command::Serve(args) => serve::run(&registry, args),
        Command::Prompts(args) => prompts::run(args),
        Command::Mock(args) => mock::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
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

/// Logs go to stderr, so stdout stays for what scripts read.
fn set_up_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,chainlog=info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
