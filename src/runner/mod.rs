//! Where chains, artifacts and stores meet, and the one place a chain is built: from a
//! project's files ([`build_from_files`], `run`), for logging ([`log_chain`]: an MLflow run and
//! LoggedModel), and from a logged artifact after checking every hash and the code
//! ([`rebuild`], [`load_model`] for a model URI) or by compiling the artifact's own code
//! ([`locate_model_code`] with [`BuildMode`], [`compile_snapshot`]); batch prediction with resume
//! ([`predict_batch`], one batch per output file: [`OutputLock`]); rows in flight against LLM
//! calls in flight ([`ConcurrencyPlan`], for batches and `serve`); which endpoint chains talk
//! to ([`Endpoint`]: the environment's or the built-in mock); ending what crashed logs left
//! unfinished ([`fail_unfinished`], `gc`).

mod batch;
mod build;
mod compile;
mod concurrency;
mod endpoint;
mod gc;
mod load;
mod log_model;
mod output_lock;
mod rebuild;

pub use batch::{
    BatchError, BatchOptions, BatchProgress, BatchSummary, check_batch_files, predict_batch,
};
pub use build::{build_chain, build_from_files};
pub use compile::{
    BUILD_DIR_VAR, BUILD_PROFILE_VAR, BUILD_TARGET_DIR_VAR, BuildMode, CompileError,
    CompileOptions, CompiledModel, compile_snapshot, default_build_dir, hand_over,
};
pub use concurrency::{CallLimit, ConcurrencyPlan, LimitSource};
pub use endpoint::Endpoint;
pub use gc::{GcReport, fail_unfinished};
pub use load::{
    CONFIG_OVERRIDE_VARS, Integrity, LoadError, ModelCode, load_model, locate_model_code,
    rebuild_model,
};
pub use log_model::{LogError, LogRequest, Logged, RegistryPrompt, load_prompts, log_chain};
pub use output_lock::{LockError, OutputLock};
pub use rebuild::{RebuildError, Rebuilt, holds_logged_chain, rebuild, rebuild_verified};
