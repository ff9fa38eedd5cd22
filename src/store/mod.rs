//! Tracking stores: where runs, logged models, their artifacts, registered model versions and
//! prompts go. One [`TrackingStore`] trait, chosen at run time from a tracking URI:
//!
//! - `sqlite:///PATH` ([`SqliteStore`]): MLflow's own SQLite schema and default layout
//!   (`./mlflow.db`, artifacts under `./mlruns/<experiment>/models/<model_id>/artifacts`), so
//!   `mlflow ui` in the same folder shows everything with no migration.
//! - `http://…` / `https://…` ([`RestStore`]): a real MLflow tracking server (3.0 or newer) over
//!   its REST API; artifacts through its `mlflow-artifacts` proxy, or — when the server does not
//!   proxy them — straight to its artifact location (`s3://`, `gs://`, `wasbs://`/`abfss://`,
//!   `file://`) with the cloud settings MLflow's own client reads.
//!
//! The store moves runs and bytes, not chains: it never reads a chain, a prompt template's
//! meaning or a config. Parts: `api` (the trait, its types and [`StoreError`]), `uri`
//! (parsing tracking URIs and `MLFLOW_*` environment variables), `model_uri` (model URIs, and
//! [`open_model`], [`fetch_files`] and [`fetch_model`] into a local cache), `validate`
//! (MLflow's rules for names and values, for both stores and for `log` before anything is
//! written), `sqlite`, `rest`.

mod api;
mod model_uri;
mod rest;
mod sqlite;
mod uri;
pub(crate) mod validate;

pub use api::{
    CHAINLOG_VERSION_TAG, Experiment, LoggedModel, ModelStatus, PromptVersion, RunInfo, RunStatus,
    StoreError, TrackingStore, Unfinished, UnfinishedRun,
};
pub use model_uri::{
    CACHE_DIR_VAR, FetchedModel, ModelUri, default_cache_dir, discard_entry, fetch_all,
    fetch_files, fetch_model, fetch_model_with_tags, is_complete, open_model,
};
pub use rest::{Auth, RestStore};
pub use sqlite::SqliteStore;
pub use uri::{TrackingUri, open_existing_store, open_store};
