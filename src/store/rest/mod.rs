//! The REST tracking store: a real MLflow tracking server over its REST API and the
//! `mlflow-artifacts` proxy, speaking to it as MLflow's own Python client does.
//!
//! Parts: `imp` ([`RestStore`] and the trait's calls), `http` (transport, retries, error
//! mapping), `auth` ([`Auth`] from `MLFLOW_TRACKING_*`), `batch` (MLflow's batch and value
//! limits), `upload` (artifact directory → proxy, bounded concurrency, progress), `prompt` (the
//! Prompt Registry), `read` (models, versions and artifacts read back), `unfinished` (what
//! `gc` looks for), `wire` (answer bodies).

mod auth;
mod batch;
mod http;
mod imp;
mod prompt;
mod read;
mod unfinished;
mod upload;
mod wire;

pub use auth::Auth;
pub use imp::RestStore;
