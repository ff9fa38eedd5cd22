//! The REST tracking store: a real MLflow tracking server over its REST API and the
//! `mlflow-artifacts` proxy, speaking to it as MLflow's own Python client does.
//!
//! Parts: `imp` ([`RestStore`] and the trait's calls), `http` (transport, retries, error
//! mapping), `auth` ([`Auth`] from `MLFLOW_TRACKING_*`), `batch` (MLflow's batch and value
//! limits), `transfer` (one concurrent upload/download of a model's files over an artifact
//! repository), `proxy` (the server's `mlflow-artifacts` proxy as one), `direct` (the object
//! store itself — S3, GCS, Azure Blob, a shared file system — when the server does not
//! proxy), `prompt` (the
//! Prompt Registry), `read` (models, versions and artifacts read back), `unfinished` (what
//! `gc` looks for), `wire` (answer bodies).

mod auth;
mod batch;
mod direct;
mod http;
mod imp;
mod prompt;
mod proxy;
mod read;
mod transfer;
mod unfinished;
mod wire;

pub use auth::Auth;
pub use imp::RestStore;
