//! PLACEHOLDER — being written: the SQLite store (MLflow's schema).
//!
//! Only the constructor and a trait impl that refuses everything exist here, so `open_store`
//! compiles; the real store replaces this file.
#![allow(missing_docs, clippy::unused_async)]

use std::path::Path;

use async_trait::async_trait;

use super::{
    Experiment, LoggedModel, ModelStatus, PromptVersion, RunInfo, RunStatus, StoreError,
    TrackingStore,
};

/// The SQLite store.
#[derive(Debug)]
pub struct SqliteStore;

impl SqliteStore {
    /// Opens (creating if absent) the database at `db_path`, artifacts under `artifact_root`.
    ///
    /// # Errors
    ///
    /// Always, for now: the SQLite store is not built yet.
    pub fn open(db_path: &Path, artifact_root: &Path) -> Result<Self, StoreError> {
        let _ = artifact_root;
        Err(StoreError::Database {
            path: db_path.display().to_string(),
            message: "the SQLite store is not built yet".to_owned(),
        })
    }
}

fn absent() -> StoreError {
    StoreError::Database {
        path: String::new(),
        message: "the SQLite store is not built yet".to_owned(),
    }
}

#[async_trait]
impl TrackingStore for SqliteStore {
    fn display_uri(&self) -> String {
        String::new()
    }
    async fn get_or_create_experiment(&self, _: &str) -> Result<Experiment, StoreError> {
        Err(absent())
    }
    async fn create_run(
        &self,
        _: &str,
        _: &str,
        _: i64,
        _: &[(String, String)],
    ) -> Result<RunInfo, StoreError> {
        Err(absent())
    }
    async fn log_batch(
        &self,
        _: &str,
        _: &[(String, String)],
        _: &[(String, String)],
    ) -> Result<(), StoreError> {
        Err(absent())
    }
    async fn create_logged_model(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &[(String, String)],
        _: &[(String, String)],
    ) -> Result<LoggedModel, StoreError> {
        Err(absent())
    }
    async fn link_run_output(&self, _: &str, _: &str, _: i64) -> Result<(), StoreError> {
        Err(absent())
    }
    async fn upload_model_artifacts(
        &self,
        _: &LoggedModel,
        _: &Path,
        _: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<(), StoreError> {
        Err(absent())
    }
    async fn finalize_logged_model(&self, _: &str, _: ModelStatus) -> Result<(), StoreError> {
        Err(absent())
    }
    async fn set_run_status(&self, _: &str, _: RunStatus, _: i64) -> Result<(), StoreError> {
        Err(absent())
    }
    async fn register_model_version(
        &self,
        _: &str,
        _: &LoggedModel,
        _: &str,
    ) -> Result<String, StoreError> {
        Err(absent())
    }
    async fn set_alias(&self, _: &str, _: &str, _: &str) -> Result<(), StoreError> {
        Err(absent())
    }
    async fn register_prompt(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: Option<&str>,
    ) -> Result<PromptVersion, StoreError> {
        Err(absent())
    }
    async fn load_prompt(&self, _: &str, _: &str) -> Result<PromptVersion, StoreError> {
        Err(absent())
    }
}
