//! Where chains, artifacts and stores meet, and the one place a chain is built: from a
//! project's files ([`build_from_files`], `run`), for logging ([`log_chain`]: an MLflow run and
//! LoggedModel), and from a logged artifact after checking every hash and the code
//! ([`rebuild`], [`load_model`] for a model URI) or by compiling the artifact's own code
//! ([`locate_model_code`] with [`BuildMode`], [`compile_snapshot`]); batch prediction with resume
//! ([`predict_batch`]); which endpoint chains talk to ([`Endpoint`]: the environment's or the
//! built-in mock).

mod batch;
mod build;
mod compile;
mod endpoint;
mod load;
mod log_model;
mod rebuild;

pub use batch::{BatchError, BatchSummary, predict_batch};
pub use build::{build_chain, build_from_files};
pub use compile::{
    BUILD_DIR_VAR, BUILD_PROFILE_VAR, BUILD_TARGET_DIR_VAR, BuildMode, CompileError,
    CompileOptions, CompiledModel, compile_snapshot, default_build_dir, hand_over,
};
pub use endpoint::Endpoint;
pub use load::{
    CONFIG_OVERRIDE_VARS, Integrity, LoadError, ModelCode, load_model, locate_model_code,
    rebuild_model,
};
pub use log_model::{LogError, LogRequest, Logged, load_prompts, log_chain};
pub use rebuild::{RebuildError, Rebuilt, holds_logged_chain, rebuild, rebuild_verified};
