//! Where chains, artifacts and stores meet: logging a chain from this binary as an MLflow
//! LoggedModel ([`log_chain`]), and rebuilding a logged chain from its artifact after checking
//! every hash and the code ([`rebuild`]); batch prediction with resume ([`predict_batch`]).

mod batch;
mod log_model;
mod rebuild;

pub use batch::{BatchError, BatchSummary, predict_batch};
pub use log_model::{LogError, LogRequest, Logged, load_prompts, log_chain};
pub use rebuild::{RebuildError, Rebuilt, rebuild};
