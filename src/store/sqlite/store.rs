//! [`SqliteStore`]: the [`TrackingStore`] over one MLflow SQLite file and its artifact root.
//! Each trait method is one immediate transaction on a blocking thread; artifacts are copied
//! outside any transaction.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::store::{
    Experiment, LoggedModel, ModelStatus, PromptVersion, RunInfo, RunStatus, StoreError,
    TrackingStore, Unfinished,
};

use super::{
    artifact,
    error::{TxError, database},
    experiment, logged_model, prompt, read, registry, run, schema,
};

/// How long a write waits for another writer (MLflow's own `PRAGMA busy_timeout = 20000`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(20);

/// MLflow's SQLite tracking store (`sqlite:///mlflow.db`), written the way MLflow 3.17.2's
/// Python client writes it, with artifacts as plain files under an artifact root
/// (`./mlruns` next to the database by MLflow's default).
///
/// # Examples
///
/// ```no_run
/// use std::path::Path;
/// use chainlog::store::{SqliteStore, TrackingStore};
///
/// # async fn demo() -> Result<(), chainlog::store::StoreError> {
/// let store = SqliteStore::open(Path::new("mlflow.db"), Path::new("mlruns"))?;
/// let experiment = store.get_or_create_experiment("chains").await?;
/// assert_eq!(experiment.name, "chains");
/// # Ok(()) }
/// ```
pub struct SqliteStore {
    /// The database file, absolute: every message names it.
    db_path: PathBuf,
    /// The artifact root as MLflow writes it into `experiments.artifact_location`
    /// (an absolute path, no `file:` scheme).
    artifact_root: String,
    /// One connection; each trait method locks it for one short transaction on a blocking
    /// thread, never across an `.await`.
    conn: Arc<Mutex<Connection>>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("db_path", &self.db_path)
            .field("artifact_root", &self.artifact_root)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The alembic revision of MLflow's schema this store writes and accepts (mlflow 3.17.2).
    pub const SCHEMA_REVISION: &str = schema::REVISION;

    /// Opens the MLflow database at `db_path`, creating it with MLflow's schema if the file is
    /// absent or empty. `artifact_root` is where new experiments put their artifacts
    /// (`<root>/<experiment_id>`); MLflow's default is `./mlruns` beside `mlflow.db`. Relative
    /// paths are made absolute against the current directory, as MLflow does. Blocking.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnsupportedSchema`] when the database is at another alembic revision
    /// (naming the file and both revisions); [`StoreError::Database`] when the file is not an
    /// SQLite database, not an MLflow one, or cannot be opened or written (its directory must
    /// exist); [`StoreError::Io`] when the current directory cannot be read.
    pub fn open(db_path: &Path, artifact_root: &Path) -> Result<Self, StoreError> {
        let absolute = |path: &Path| {
            std::path::absolute(path).map_err(|source| StoreError::Io {
                action: "resolve",
                path: path.display().to_string(),
                source,
            })
        };
        let db_path = absolute(db_path)?;
        let artifact_root = absolute(artifact_root)?.to_string_lossy().into_owned();
        let mut conn = Connection::open(&db_path).map_err(|e| database(&db_path, &e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .and_then(|()| conn.pragma_update(None, "foreign_keys", "ON"))
            .map_err(|e| database(&db_path, &e))?;
        schema::prepare(&mut conn, &db_path, &artifact_root)?;
        Ok(Self {
            db_path,
            artifact_root,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The database file (absolute).
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Runs `body` as one immediate transaction on a blocking thread, committing on success.
    async fn transaction<T, F>(&self, body: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, &str) -> Result<T, TxError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let path = self.db_path.clone();
        let root = self.artifact_root.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| StoreError::Database {
                path: path.display().to_string(),
                message: "the connection lock was poisoned by a panic".to_owned(),
            })?;
            let tx = guard
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| database(&path, &e))?;
            let value = body(&tx, &root).map_err(|e| e.into_store(&path))?;
            tx.commit().map_err(|e| database(&path, &e))?;
            Ok(value)
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => Err(StoreError::Database {
                path: self.db_path.display().to_string(),
                message: format!("the store task was cancelled: {err}"),
            }),
        }
    }
}

/// Owned copies of borrowed pairs, for a `'static` transaction body.
fn owned(pairs: &[(String, String)]) -> Vec<(String, String)> {
    pairs.to_vec()
}

#[async_trait]
impl TrackingStore for SqliteStore {
    fn display_uri(&self) -> String {
        format!("sqlite:///{}", self.db_path.display())
    }

    async fn get_or_create_experiment(&self, name: &str) -> Result<Experiment, StoreError> {
        let name = name.to_owned();
        self.transaction(move |tx, root| experiment::get_or_create(tx, root, &name))
            .await
    }

    async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_time_ms: i64,
        tags: &[(String, String)],
    ) -> Result<RunInfo, StoreError> {
        let (experiment_id, run_name, tags) =
            (experiment_id.to_owned(), run_name.to_owned(), owned(tags));
        self.transaction(move |tx, _| {
            run::create(tx, &experiment_id, &run_name, start_time_ms, &tags)
        })
        .await
    }

    async fn log_batch(
        &self,
        run_id: &str,
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<(), StoreError> {
        let (run_id, params, tags) = (run_id.to_owned(), owned(params), owned(tags));
        self.transaction(move |tx, _| run::log_batch(tx, &run_id, &params, &tags))
            .await
    }

    async fn create_logged_model(
        &self,
        experiment_id: &str,
        name: &str,
        source_run_id: &str,
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<LoggedModel, StoreError> {
        let (experiment_id, name, source_run_id) = (
            experiment_id.to_owned(),
            name.to_owned(),
            source_run_id.to_owned(),
        );
        let (params, tags) = (owned(params), owned(tags));
        self.transaction(move |tx, _| {
            logged_model::create(tx, &experiment_id, &name, &source_run_id, &params, &tags)
        })
        .await
    }

    async fn link_run_output(
        &self,
        run_id: &str,
        model_id: &str,
        step: i64,
    ) -> Result<(), StoreError> {
        let (run_id, model_id) = (run_id.to_owned(), model_id.to_owned());
        self.transaction(move |tx, _| logged_model::link_run_output(tx, &run_id, &model_id, step))
            .await
    }

    async fn upload_model_artifacts(
        &self,
        model: &LoggedModel,
        local_dir: &Path,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<(), StoreError> {
        let model_id = model.model_id.clone();
        // The database, not the caller's copy, says where the model's files belong.
        let location = self
            .transaction(move |tx, _| Ok(logged_model::stored(tx, &model_id)?.artifact_location))
            .await?;
        let Some(dest) = artifact::local_dir(&location) else {
            return Err(StoreError::Io {
                action: "upload to",
                path: location,
                source: std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "the SQLite store writes only local artifact locations (a path or file: URI)",
                ),
            });
        };
        let src = local_dir.to_path_buf();
        let listed = tokio::task::spawn_blocking(move || artifact::list_files(&src)).await;
        let files = match listed {
            Ok(files) => files?,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => {
                return Err(StoreError::Io {
                    action: "read directory",
                    path: local_dir.display().to_string(),
                    source: std::io::Error::other(err.to_string()),
                });
            }
        };
        artifact::publish(local_dir, &files, &dest, progress).await
    }

    async fn finalize_logged_model(
        &self,
        model_id: &str,
        status: ModelStatus,
    ) -> Result<(), StoreError> {
        let model_id = model_id.to_owned();
        self.transaction(move |tx, _| logged_model::finalize(tx, &model_id, status))
            .await
    }

    async fn set_logged_model_tags(
        &self,
        model_id: &str,
        tags: &[(String, String)],
    ) -> Result<(), StoreError> {
        let (model_id, tags) = (model_id.to_owned(), tags.to_vec());
        self.transaction(move |tx, _| logged_model::set_tags(tx, &model_id, &tags))
            .await
    }

    async fn set_run_status(
        &self,
        run_id: &str,
        status: RunStatus,
        end_time_ms: i64,
    ) -> Result<(), StoreError> {
        let run_id = run_id.to_owned();
        self.transaction(move |tx, _| run::set_status(tx, &run_id, status, end_time_ms))
            .await
    }

    async fn register_model_version(
        &self,
        name: &str,
        model: &LoggedModel,
        run_id: &str,
    ) -> Result<String, StoreError> {
        let (name, model_id, run_id) = (name.to_owned(), model.model_id.clone(), run_id.to_owned());
        self.transaction(move |tx, _| {
            registry::register_model_version(tx, &name, &model_id, &run_id)
        })
        .await
    }

    async fn delete_model_version(&self, name: &str, version: &str) -> Result<(), StoreError> {
        let (name, version) = (name.to_owned(), version.to_owned());
        self.transaction(move |tx, _| registry::delete_version(tx, &name, &version))
            .await
    }

    async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<(), StoreError> {
        let (name, alias, version) = (name.to_owned(), alias.to_owned(), version.to_owned());
        self.transaction(move |tx, _| registry::set_alias(tx, &name, &alias, &version))
            .await
    }

    async fn register_prompt(
        &self,
        name: &str,
        kind: &str,
        template: &str,
        commit_message: Option<&str>,
    ) -> Result<PromptVersion, StoreError> {
        let (name, kind, template) = (name.to_owned(), kind.to_owned(), template.to_owned());
        let commit_message = commit_message.map(str::to_owned);
        self.transaction(move |tx, _| {
            prompt::register(tx, &name, &kind, &template, commit_message.as_deref())
        })
        .await
    }

    async fn load_prompt(
        &self,
        name: &str,
        version_or_alias: &str,
    ) -> Result<PromptVersion, StoreError> {
        let (name, version_or_alias) = (name.to_owned(), version_or_alias.to_owned());
        self.transaction(move |tx, _| prompt::load(tx, &name, &version_or_alias))
            .await
    }

    async fn get_logged_model(&self, model_id: &str) -> Result<LoggedModel, StoreError> {
        let model_id = model_id.to_owned();
        self.transaction(move |tx, _| read::get(tx, &model_id))
            .await
    }

    async fn logged_model_tags(&self, model_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let model_id = model_id.to_owned();
        self.transaction(move |tx, _| read::tags(tx, &model_id))
            .await
    }

    async fn run_logged_models(&self, run_id: &str) -> Result<Vec<LoggedModel>, StoreError> {
        let run_id = run_id.to_owned();
        self.transaction(move |tx, _| read::run_models(tx, &run_id))
            .await
    }

    async fn model_version(
        &self,
        name: &str,
        version_or_alias: &str,
    ) -> Result<(String, String), StoreError> {
        let (name, version_or_alias) = (name.to_owned(), version_or_alias.to_owned());
        self.transaction(move |tx, _| read::model_version(tx, &name, &version_or_alias))
            .await
    }

    async fn find_unfinished(
        &self,
        experiment: Option<&str>,
        before_ms: i64,
    ) -> Result<Unfinished, StoreError> {
        let experiment = experiment.map(str::to_owned);
        self.transaction(move |tx, _| read::unfinished(tx, experiment.as_deref(), before_ms))
            .await
    }

    async fn download_model_artifacts(
        &self,
        model: &LoggedModel,
        dest: &Path,
    ) -> Result<(), StoreError> {
        let (src, files) = listed_artifacts(model).await?;
        artifact::publish(&src, &files, dest, &|_, _| {}).await
    }

    async fn list_model_artifacts(&self, model: &LoggedModel) -> Result<Vec<String>, StoreError> {
        let (_, files) = listed_artifacts(model).await?;
        Ok(files.iter().map(|(path, _)| slash_path(path)).collect())
    }

    async fn download_model_files(
        &self,
        model: &LoggedModel,
        files: &[String],
        dest: &Path,
    ) -> Result<(), StoreError> {
        let (src, listed) = listed_artifacts(model).await?;
        // A file the model does not have is left out: whoever asked for it names it missing.
        let chosen: Vec<(PathBuf, u64)> = listed
            .into_iter()
            .filter(|(path, _)| files.contains(&slash_path(path)))
            .collect();
        artifact::publish(&src, &chosen, dest, &|_, _| {}).await
    }
}

/// A relative path as MLflow names artifacts: `/`-separated.
fn slash_path(path: &Path) -> String {
    path.components()
        .map(|part| part.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The local folder of `model`'s artifacts and its files (relative paths, sizes).
async fn listed_artifacts(
    model: &LoggedModel,
) -> Result<(PathBuf, Vec<(PathBuf, u64)>), StoreError> {
    let Some(src) = artifact::local_dir(&model.artifact_uri) else {
        return Err(StoreError::Io {
            action: "download from",
            path: model.artifact_uri.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "the SQLite store reads only local artifact locations (a path or file: URI)",
            ),
        });
    };
    if !src.is_dir() {
        return Err(StoreError::NotFound {
            what: format!(
                "the artifacts of logged model `{}` at `{}`",
                model.model_id,
                src.display()
            ),
        });
    }
    let walk = src.clone();
    let listed = tokio::task::spawn_blocking(move || artifact::list_files(&walk)).await;
    let files = match listed {
        Ok(files) => files?,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => {
            return Err(StoreError::Io {
                action: "read directory",
                path: src.display().to_string(),
                source: std::io::Error::other(err.to_string()),
            });
        }
    };
    Ok((src, files))
}
