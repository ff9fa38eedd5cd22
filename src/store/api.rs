//! The [`TrackingStore`] trait every store implements, the records it passes, and
//! [`StoreError`].
//!
//! Every method is one step of MLflow's own logging protocol (as the Python client does it:
//! experiment → run → logged model (PENDING) → run output link → artifacts → params/tags →
//! model tags → model READY → registered version → alias → run FINISHED), so a failure between two steps
//! leaves a run RUNNING/FAILED and a model PENDING/UPLOAD_FAILED — never FINISHED/READY with
//! missing parts.

use std::path::Path;

use async_trait::async_trait;

/// An experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Experiment {
    /// MLflow's id (`"0"`, `"1"`, ...).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Where its artifacts live (`mlflow-artifacts:/1`, or a `file:` path for SQLite).
    pub artifact_location: String,
}

/// A run as created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// 32 hex characters.
    pub run_id: String,
    /// The experiment it belongs to.
    pub experiment_id: String,
    /// Its name (`mlflow.runName`).
    pub run_name: String,
    /// Where its artifacts live.
    pub artifact_uri: String,
}

/// Final states of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Everything was logged.
    Finished,
    /// Something failed; what was written stays for diagnosis.
    Failed,
}

/// Final states of a logged model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelStatus {
    /// Every artifact is in place (`LOGGED_MODEL_READY`).
    Ready,
    /// The upload did not complete (`LOGGED_MODEL_UPLOAD_FAILED`).
    UploadFailed,
}

/// An MLflow 3 LoggedModel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedModel {
    /// `m-` + 32 hex characters.
    pub model_id: String,
    /// The experiment.
    pub experiment_id: String,
    /// The model's name.
    pub name: String,
    /// Where its artifacts live (`mlflow-artifacts:/1/models/<id>/artifacts`, or a `file:` URI).
    pub artifact_uri: String,
    /// The run that produced it.
    pub source_run_id: Option<String>,
    /// Its status as MLflow names it: `PENDING` (being logged, or logging died), `READY`,
    /// `UPLOAD_FAILED`; only a `READY` model is loaded.
    pub status: String,
}

impl LoggedModel {
    /// MLflow's name for a model whose every artifact is in place.
    pub const READY: &'static str = "READY";

    /// Whether logging it completed.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.status == Self::READY
    }
}

/// The tag chainlog sets on every run and logged model it creates (its version); `gc` touches
/// only entries that carry it.
pub const CHAINLOG_VERSION_TAG: &str = "chainlog.version";

/// A run chainlog started that never ended (still `RUNNING`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedRun {
    /// The run.
    pub run_id: String,
    /// Its experiment.
    pub experiment_id: String,
    /// Its name.
    pub run_name: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub start_time_ms: i64,
}

/// What `log`s that died (a crash, a server gone for good) left unfinished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unfinished {
    /// Runs still `RUNNING`.
    pub runs: Vec<UnfinishedRun>,
    /// Logged models still `PENDING`.
    pub models: Vec<LoggedModel>,
}

/// One version of a prompt in MLflow's Prompt Registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptVersion {
    /// The prompt's name (`^[a-zA-Z0-9_.-]+$`).
    pub name: String,
    /// Its version (`"1"`, `"2"`, ...).
    pub version: String,
    /// `text` or `chat`.
    pub kind: String,
    /// The template: the text, or for chat a JSON list of `{"role", "content"}`.
    pub template: String,
}

/// Why a store operation failed. Messages say what and where; they never carry a secret
/// (credentials are never part of a URI shown).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The tracking URI is not one chainlog knows.
    #[error("unsupported tracking URI `{uri}`: use sqlite:///PATH or http(s)://HOST[:PORT]")]
    UnknownScheme {
        /// The URI, credentials removed.
        uri: String,
    },
    /// A setting (an environment variable) has a value that cannot be used.
    #[error("{name}={value} cannot be used: expected {expected}")]
    BadSetting {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
        /// What it should be.
        expected: String,
    },
    /// The server cannot be reached.
    #[error("cannot reach the MLflow server at {uri}: {message}")]
    Unreachable {
        /// The server, credentials removed.
        uri: String,
        /// What the connection attempt said.
        message: String,
    },
    /// MLflow answered with an error.
    #[error("MLflow refused {operation}: {message} ({code})")]
    Mlflow {
        /// What was asked (`runs/create`).
        operation: String,
        /// MLflow's `error_code`, or the HTTP status.
        code: String,
        /// MLflow's message.
        message: String,
    },
    /// A direct artifact store (the server does not proxy artifacts) has no credentials in the
    /// environment.
    #[error("no credentials for the artifact store `{location}`: set {set}")]
    MissingCredentials {
        /// The artifact location.
        location: String,
        /// The variables to set.
        set: String,
    },
    /// A direct artifact store (`s3://`, `gs://`, `wasbs://`, `abfss://`, `file://`) could not
    /// be used or failed a transfer.
    #[error("artifact store `{location}`: {message}")]
    ArtifactStore {
        /// The artifact location.
        location: String,
        /// What failed (one line, secrets scrubbed).
        message: String,
    },
    /// A value MLflow's rules refuse, found before anything was sent (names, aliases, value
    /// lengths), or a step the SQLite store refuses as MLflow's server would.
    #[error("{operation}: {message} ({code})")]
    Invalid {
        /// What was asked (`registered-models/alias`).
        operation: String,
        /// MLflow's error code for it (`INVALID_PARAMETER_VALUE`, `INVALID_STATE`).
        code: String,
        /// What is wrong, naming the value.
        message: String,
    },
    /// The tracking server is an MLflow without an API chainlog uses (MLflow 2 has no
    /// LoggedModel API).
    #[error(
        "the MLflow server at {uri} is version {version}, which has no `{operation}` API; \
         chainlog needs MLflow {minimum} or newer (tested with 3.17.2)"
    )]
    ServerTooOld {
        /// The server, credentials removed.
        uri: String,
        /// What its `/version` says.
        version: String,
        /// The call it does not know.
        operation: String,
        /// The oldest MLflow chainlog works with.
        minimum: String,
    },
    /// Something answers at the tracking URI, but not MLflow's REST API (a wrong path prefix,
    /// another service on the port).
    #[error(
        "no MLflow API at {uri}: `{operation}` answered HTTP {status} ({excerpt}); check the \
         tracking URI's host, port and path"
    )]
    NotMlflow {
        /// The server, credentials removed.
        uri: String,
        /// The call.
        operation: String,
        /// The HTTP status.
        status: u16,
        /// The page's title or first words.
        excerpt: String,
    },
    /// The experiment exists but was deleted.
    #[error("experiment `{name}` was deleted; restore it in MLflow or log to another experiment")]
    DeletedExperiment {
        /// Its name.
        name: String,
    },
    /// The SQLite file is at a schema revision this chainlog does not support.
    #[error(
        "the MLflow database `{path}` is at schema revision {found}; this chainlog supports {supported} (mlflow 3.17.2)"
    )]
    UnsupportedSchema {
        /// The database file.
        path: String,
        /// Its alembic revision.
        found: String,
        /// The revision supported.
        supported: String,
    },
    /// A database error.
    #[error("database error in `{path}`: {message}")]
    Database {
        /// The database file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A local file could not be read or written.
    #[error("failed to {action} `{path}`")]
    Io {
        /// `read`, `write`, `copy`, ...
        action: &'static str,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Something asked for does not exist.
    #[error("{what} does not exist")]
    NotFound {
        /// What (`registered model \`x\``, `prompt \`p\` version 3`).
        what: String,
    },
    /// A model URI that is malformed or does not resolve to a logged model.
    #[error("cannot load model `{uri}`: {reason}")]
    BadModelUri {
        /// The URI as given.
        uri: String,
        /// Why (`unknown scheme`, `registered model \`x\` version 3 does not exist`).
        reason: String,
    },
}

impl StoreError {
    /// MLflow's error code, for an error MLflow gave ([`StoreError::Mlflow`]) or its rules
    /// gave locally ([`StoreError::Invalid`]).
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Mlflow { code, .. } | Self::Invalid { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A tracking store. Object-safe: stores are chosen at run time (`Arc<dyn TrackingStore>`).
#[async_trait]
pub trait TrackingStore: Send + Sync + std::fmt::Debug {
    /// The store's URI for messages (credentials removed).
    fn display_uri(&self) -> String;

    /// The experiment called `name`, created if absent.
    ///
    /// # Errors
    ///
    /// [`StoreError::DeletedExperiment`] when it exists but was deleted.
    async fn get_or_create_experiment(&self, name: &str) -> Result<Experiment, StoreError>;

    /// Creates a RUNNING run with these tags (`mlflow.runName` is set from `run_name`).
    async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_time_ms: i64,
        tags: &[(String, String)],
    ) -> Result<RunInfo, StoreError>;

    /// Logs params and tags on a run (batched as MLflow allows).
    async fn log_batch(
        &self,
        run_id: &str,
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<(), StoreError>;

    /// Creates a PENDING logged model.
    async fn create_logged_model(
        &self,
        experiment_id: &str,
        name: &str,
        source_run_id: &str,
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<LoggedModel, StoreError>;

    /// Links a run to a model it produced (the run's outputs).
    async fn link_run_output(
        &self,
        run_id: &str,
        model_id: &str,
        step: i64,
    ) -> Result<(), StoreError>;

    /// Checks that this process can write artifacts under `experiment`'s artifact location
    /// (a direct store needs credentials in the environment), before any run exists. Sends
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::MissingCredentials`] naming the variables to set;
    /// [`StoreError::ArtifactStore`] for a location chainlog cannot write.
    fn check_artifact_location(&self, experiment: &Experiment) -> Result<(), StoreError> {
        let _ = experiment;
        Ok(())
    }

    /// Uploads every file under `local_dir` as the model's artifacts (relative paths kept).
    /// `progress(done_bytes, total_bytes)` is called as files complete.
    async fn upload_model_artifacts(
        &self,
        model: &LoggedModel,
        local_dir: &Path,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<(), StoreError>;

    /// Sets a model's final status.
    async fn finalize_logged_model(
        &self,
        model_id: &str,
        status: ModelStatus,
    ) -> Result<(), StoreError>;

    /// Sets tags on a logged model (`PATCH logged-models/<id>/tags`); an existing key is
    /// overwritten.
    async fn set_logged_model_tags(
        &self,
        model_id: &str,
        tags: &[(String, String)],
    ) -> Result<(), StoreError>;

    /// Sets a run's final status and end time.
    async fn set_run_status(
        &self,
        run_id: &str,
        status: RunStatus,
        end_time_ms: i64,
    ) -> Result<(), StoreError>;

    /// Registers `model` as a new version of the registered model `name` (created if absent);
    /// returns the version.
    async fn register_model_version(
        &self,
        name: &str,
        model: &LoggedModel,
        run_id: &str,
    ) -> Result<String, StoreError>;

    /// Deletes version `version` of registered model `name` (and the aliases on it), as
    /// `MlflowClient.delete_model_version` does; `log` uses it so a version never stays
    /// pointing at a model whose logging failed.
    async fn delete_model_version(&self, name: &str, version: &str) -> Result<(), StoreError>;

    /// Points `alias` of registered model `name` at `version`.
    async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<(), StoreError>;

    /// Registers a new version of a prompt (creating the prompt if absent) the way MLflow's
    /// Prompt Registry does; returns the version.
    async fn register_prompt(
        &self,
        name: &str,
        kind: &str,
        template: &str,
        commit_message: Option<&str>,
    ) -> Result<PromptVersion, StoreError>;

    /// A prompt version by number or alias (`"3"`, or `"@champion"`; `"@latest"` is the newest).
    async fn load_prompt(
        &self,
        name: &str,
        version_or_alias: &str,
    ) -> Result<PromptVersion, StoreError>;

    /// The logged model `model_id` (`m-…`).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when there is none.
    async fn get_logged_model(&self, model_id: &str) -> Result<LoggedModel, StoreError>;

    /// The tags of logged model `model_id`, as `(key, value)`.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when there is no such model.
    async fn logged_model_tags(&self, model_id: &str) -> Result<Vec<(String, String)>, StoreError>;

    /// The models run `run_id` produced (its outputs), oldest link first.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the run does not exist.
    async fn run_logged_models(&self, run_id: &str) -> Result<Vec<LoggedModel>, StoreError>;

    /// The version of registered model `name` that `version_or_alias` names (`"3"`,
    /// `"@champion"`, or `"@latest"` for the newest version, as `models:/name/latest`), and the id of the logged model it points at (from the version's
    /// `source`, `models:/<model_id>`): `(version, model_id)`.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the model, version or alias does not exist;
    /// [`StoreError::BadModelUri`] when the version's source is not a logged model.
    async fn model_version(
        &self,
        name: &str,
        version_or_alias: &str,
    ) -> Result<(String, String), StoreError>;

    /// chainlog's runs still `RUNNING` that started, and its logged models still `PENDING` that
    /// were created, before `before_ms` (milliseconds since the Unix epoch), in the active
    /// experiment named `experiment`, or in every active one. Only entries tagged
    /// [`CHAINLOG_VERSION_TAG`] are returned.
    async fn find_unfinished(
        &self,
        experiment: Option<&str>,
        before_ms: i64,
    ) -> Result<Unfinished, StoreError>;

    /// Copies every artifact file of `model` into the directory `dest` (created; relative
    /// paths kept).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the model has no artifacts; [`StoreError::Io`] naming a
    /// file that cannot be written; transport errors of the store.
    async fn download_model_artifacts(
        &self,
        model: &LoggedModel,
        dest: &Path,
    ) -> Result<(), StoreError>;

    /// Every artifact file of `model`: relative, `/`-separated paths, sorted.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the model has no artifacts; transport errors of the
    /// store.
    async fn list_model_artifacts(&self, model: &LoggedModel) -> Result<Vec<String>, StoreError>;

    /// Copies only the artifact files `files` of `model` (relative, `/`-separated paths, as
    /// its MLmodel or [`list_model_artifacts`](Self::list_model_artifacts) names them) into
    /// the directory `dest` (created), without listing the others. A file the model does not
    /// have is left out: the caller's check of what it asked for names it as missing.
    ///
    /// # Errors
    ///
    /// A path that could leave `dest` is refused; [`StoreError::Io`] naming a file that
    /// cannot be written; transport errors of the store.
    async fn download_model_files(
        &self,
        model: &LoggedModel,
        files: &[String],
        dest: &Path,
    ) -> Result<(), StoreError>;

    /// [`get_logged_model`](Self::get_logged_model) and
    /// [`logged_model_tags`](Self::logged_model_tags) at once (one request where the store
    /// answers both with one).
    ///
    /// # Errors
    ///
    /// As [`get_logged_model`](Self::get_logged_model).
    async fn logged_model_with_tags(
        &self,
        model_id: &str,
    ) -> Result<(LoggedModel, Vec<(String, String)>), StoreError> {
        let model = self.get_logged_model(model_id).await?;
        let tags = self.logged_model_tags(model_id).await?;
        Ok((model, tags))
    }
}
