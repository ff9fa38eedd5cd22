//! Where chains, artifacts and stores meet: logging a chain from this binary as an MLflow
//! LoggedModel ([`log_chain`]). (Rebuilding a chain from a logged artifact — model URIs,
//! `predict`, `serve` — comes next and lives here too.)

mod log_model;

pub use log_model::{LogError, LogRequest, Logged, load_prompts, log_chain};
