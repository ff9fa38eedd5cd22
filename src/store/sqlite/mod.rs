//! The SQLite tracking store: [`SqliteStore`] writes MLflow 3.17.2's own SQLite schema
//! (`sqlite:///mlflow.db`) and artifact layout (`./mlruns/<exp_id>/models/<model_id>/artifacts`)
//! exactly as MLflow's Python client does, so `mlflow ui`, `mlflow.search_runs` or
//! `mlflow.genai.load_prompt` pointed at the same file read everything back unchanged.
//!
//! It owns the database file and the artifact root; it does not own what the artifacts mean
//! (that is `artifact`) or how a tracking URI is chosen (that is `store::uri`).
//!
//! Parts (each a step of the protocol in `store::api`, one transaction per trait method):
//! - `schema`: the DDL dumped from `mlflow db upgrade` (`schema.sql`), creating a new
//!   database and refusing a revision other than [`SqliteStore::SCHEMA_REVISION`],
//! - `experiment` and `run`: experiments, runs, params and tags,
//! - `logged_model`: MLflow 3 logged models and the run → model output link,
//! - `registry`: registered models, versions and aliases; `prompt`: the Prompt Registry,
//! - `read`: logged models, run outputs and registered versions read back for loading,
//! - `artifact`: artifact locations and the atomic copy of a model's files,
//! - `stamp`: ids and timestamps,
//!   `error`: [`TxError`](error::TxError). (JSON as Python writes it is the crate's `pyjson`;
//!   MLflow's limits on names and values are `store::validate`, shared with the REST store.)

mod artifact;
mod error;
mod experiment;
mod logged_model;
mod prompt;
mod read;
mod registry;
mod run;
mod schema;
mod stamp;
mod store;
#[cfg(test)]
mod tests;

use super::validate;

pub use store::SqliteStore;
