//! chainlog: LLM chains written in Rust, logged to MLflow as code, rebuilt from that code and run
//! again — against the OpenAI API, any OpenAI-compatible server, or chainlog's own mock.
//!
//! # Architecture
//!
//! A workspace: this crate (library and a one-line binary, `chainlog::main!();`, exactly what a
//! user's crate has), `chainlog-mock` (the mock server, re-exported as [`mock`]) and
//! `chainlog-build` (the build-script helper that registers `chains/*.rs`). This crate's parts,
//! and what each owns:
//!
//! - [`chain`]: the [`chain::Chain`] trait, the build and run contexts, and the registry type
//!   the build helper fills with each chain's source text and SHA-256.
//! - [`project`]: finding the crate a command works on, like cargo (walk up to the binary's
//!   package), and the default paths in it.
//! - [`scaffold`]: `chainlog new` — a crate for a team's own chains.
//! - [`runner`]: where chain, artifact and store meet — the one place a chain is built (for
//!   `run`, `log`, `predict`, `serve`), logging, rebuilding from an artifact, batches (rows in
//!   flight against LLM calls in flight, one batch per output file), `gc` of what crashed logs
//!   left, and which endpoint chains talk to.
//! - [`store`]: MLflow tracking stores — MLflow's own SQLite schema and a server's REST API
//!   (artifacts through its proxy or straight to S3, GCS, Azure Blob or a shared directory),
//!   with MLflow's own rules for names and values checked before anything is written.
//! - [`mock`]: the mock OpenAI server — OpenAI's wire format (chat completions plain and
//!   streamed, tool calls, JSON-schema output, models, embeddings, responses), replies from
//!   rules, cassettes or a deterministic default, faults and latency on demand, and a journal
//!   of every request. [`mock::MockServer::start`] runs it inside a test on port 0;
//!   `chainlog mock` runs it as a process any client can point its base URL at.
//! - [`config`]: the chain config (YAML beside the chain, like MLflow's `model_config`) —
//!   `${ENV}` references resolved only at run time, literal secrets refused, `--set`
//!   overrides, typed sections, and the one precedence rule for [`llm::LlmSettings`]
//!   (flag > env > file > default).
//! - [`prompt`]: handlebars prompt templates under `prompts/` (a file per text prompt, a
//!   folder of `NN-<role>.hbs` per chat prompt), compiled once, their variables known before
//!   rendering, rendered in strict mode without HTML escaping.
//! - [`llm`]: the LLM client layer — chainlog's own chat request/response types, the
//!   [`llm::LlmClient`] trait chains call, [`llm::OpenAiClient`] (OpenAI and compatible servers
//!   over async-openai: retries with backoff honouring `retry-after`/`x-ratelimit-reset-*`, a
//!   concurrency limit, timeouts, usage and latency on a `llm.chat` span), structured output
//!   ([`llm::chat_json`]), [`llm::ScriptedClient`] for unit tests of chains, and
//!   [`llm::LlmSettings`], the one settings type a client is made from.
//! - [`artifact`]: the model artifact directory logged to MLflow — MLmodel (MLflow's keys
//!   plus the `chainlog` flavor and MLflow's `python_function` flavor), the chain source as
//!   compiled, a crate snapshot, the pyfunc loader (`python/chainlog_pyfunc.py`), prompts,
//!   config, examples — written, read back and verified against its hashes.
//! - [`replay`]: recording a logged chain's LLM exchanges into its artifact (`cassettes/`) at
//!   `log`, and `replay`: the chain rebuilt, its calls answered offline from them, each output
//!   compared byte for byte with the logged one, the first changed request named; or one
//!   production prediction replayed from its trace's spans (`replay --trace`).
//! - [`serve`]: MLflow's scoring protocol over axum for one built chain (`/ping`,
//!   `/health`, `/version`, `/invocations` with MLflow's four input formats, SSE streaming,
//!   body and in-flight limits, an optional bearer token) and `serve` with graceful shutdown;
//!   the same protocol over JSON lines ([`serve::serve_lines`]) for the child process the
//!   pyfunc loader starts per loaded model (`chainlog worker`), so `mlflow.pyfunc.load_model`,
//!   `mlflow models serve` and `spark_udf` run the Rust chain.
//! - [`trace`]: every prediction as an MLflow trace — a `tracing` layer turns the chain, LLM
//!   call and tool spans into a `CHAIN` root with `CHAT_MODEL` and `TOOL` children (the exact
//!   chat-completion request and response on each call, for replay), a bounded queue and a
//!   background task export them to an MLflow server over OTLP/HTTP (OpenTelemetry crates) or
//!   as MLflow's rows into a SQLite store, linked to the LoggedModel and its run.
//! - [`secret`]: secret names and credential shapes (shared by config detection), and the one
//!   scrubber: a process-wide registry of every secret the process holds (keys, resolved
//!   `${ENV}` secrets, store tokens, the mock's and serve's keys) and [`secret::scrub`], which
//!   masks them in provider text where it enters and at every output (error line, log writer,
//!   `serve` bodies, batch rows).
//! - [`cli`]: clap commands → library calls, exit codes and the tracing subscriber; parses,
//!   calls and prints, nothing else.

pub mod artifact;
pub mod chain;
pub mod cli;
pub mod config;
mod digest;
pub mod llm;
/// The mock OpenAI server: the `chainlog-mock` crate, re-exported (a project that only wants the
/// mock in its tests depends on `chainlog-mock` alone).
pub use chainlog_mock as mock;
pub mod project;
pub mod prompt;
mod pyjson;
pub mod replay;
pub mod runner;
pub mod scaffold;
pub mod secret;
pub mod serve;
pub mod store;
pub mod trace;

/// The whole `src/main.rs` of a crate that holds chains: includes the registry its build script
/// (`chainlog_build::generate()`) wrote from `chains/*.rs` and runs chainlog's command line
/// over it, with every command (`chains`, `run`, `log`, `predict`, `serve`, `prompts`, `mock`,
/// `new`).
///
/// The crate's package name and folder are compiled in so commands find the project from any
/// subdirectory (see [`project`]); that folder is only used for finding files and never goes
/// into an artifact, a param or a tag.
///
/// ```text
/// chainlog::main!();
/// ```
///
/// (Not a doctest: it needs the build script's `OUT_DIR`; this repository's own
/// `src/main.rs` and the scaffolded crate in `tests/it/user_crate.rs` compile it.)
#[macro_export]
macro_rules! main {
    () => {
        include!(concat!(env!("OUT_DIR"), "/chain_registry.rs"));

        fn main() -> ::std::process::ExitCode {
            $crate::cli::main(
                chain_registry(),
                $crate::project::CompiledCrate {
                    package: env!("CARGO_PKG_NAME"),
                    root: env!("CARGO_MANIFEST_DIR"),
                },
            )
        }
    };
}

/// The README's Rust examples, compiled as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
