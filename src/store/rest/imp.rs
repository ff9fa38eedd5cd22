//! [`RestStore`]: the [`TrackingStore`] of a real MLflow tracking server.
//!
//! Each trait method is the REST call (or calls) MLflow's Python client makes for the same
//! step (MLFLOW.md §3): `experiments/get-by-name` → `experiments/create`, `runs/create`,
//! `runs/log-batch`, `POST logged-models`, `runs/outputs`, the artifact upload (`transfer`:
//! `PUT mlflow-artifacts/…`, or the object store itself when the server does not proxy),
//! `PATCH logged-models/<id>`, `runs/update`, `registered-models/create` +
//! `model-versions/create`, `registered-models/alias`, and the Prompt Registry (`prompt.rs`).
//! Owns the store type and its constructors; the transport, batching, uploads and prompts live
//! in the sibling files.

use std::{path::Path, time::Duration};

use async_trait::async_trait;
use reqwest::{Method, Url};
use serde_json::json;

use super::{
    auth::Auth,
    batch,
    http::{MINIMUM_SERVER, RetryPolicy, Transport},
    prompt::{self, has_code},
    read, transfer, unfinished,
    wire::{
        CreateExperimentReply, ExperimentReply, LoggedModelReply, ModelVersionReply, RunReply,
        key_values,
    },
};
use crate::store::{
    Experiment, LoggedModel, ModelStatus, PromptVersion, RunInfo, RunStatus, StoreError,
    TrackingStore, Unfinished, uri::redact_uri,
};

/// The tag MLflow keeps a run's name in.
const RUN_NAME_TAG: &str = "mlflow.runName";

/// A tracking store backed by an MLflow server (`http://…`, `https://…`).
///
/// Cheap to clone (one connection pool). `Debug` shows the server and whether credentials are
/// set, never the credentials.
///
/// # Examples
///
/// ```no_run
/// use chainlog::store::{RestStore, TrackingStore};
///
/// # async fn run() -> Result<(), chainlog::store::StoreError> {
/// let store = RestStore::from_env("http://127.0.0.1:5000")?;
/// let experiment = store.get_or_create_experiment("summarize").await?;
/// println!("experiment {} at {}", experiment.id, experiment.artifact_location);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RestStore {
    http: Transport,
}

impl std::fmt::Debug for RestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestStore")
            .field("uri", &self.http.display_uri())
            .field("auth", &self.http.auth())
            .field("retry", &self.http.retry())
            .finish()
    }
}

impl RestStore {
    /// A store for the server at `base_url` (`http(s)://host[:port][/prefix]`).
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownScheme`] when `base_url` is not an http(s) URL with a host, or
    /// carries credentials (give those as `auth`); [`StoreError::Unreachable`] when the HTTP
    /// client cannot be built.
    pub fn new(base_url: &str, auth: Option<Auth>) -> Result<Self, StoreError> {
        let base = parse_base(base_url)?;
        Ok(Self {
            http: Transport::new(base, auth)?,
        })
    }

    /// A store for `base_url` with credentials from the environment ([`Auth::from_env`]).
    ///
    /// # Errors
    ///
    /// As [`RestStore::new`].
    pub fn from_env(base_url: &str) -> Result<Self, StoreError> {
        Self::new(base_url, Auth::from_env())
    }

    /// The same store retrying transient failures `attempts` times in all (at least 1), the
    /// first retry after `base_delay`, each next one after twice as long, with up to a quarter
    /// of `base_delay` of jitter (instead of MLflow's `MLFLOW_HTTP_REQUEST_*` settings).
    #[must_use]
    pub fn with_retries(mut self, attempts: u32, base_delay: Duration) -> Self {
        self.http.set_retry(RetryPolicy {
            attempts,
            base_delay,
            jitter: base_delay / 4,
        });
        self
    }

    /// The experiment by name, or `None` when there is none.
    async fn experiment_by_name(&self, name: &str) -> Result<Option<ExperimentReply>, StoreError> {
        let found = self
            .http
            .get::<ExperimentReply>(
                "experiments/get-by-name",
                "api/2.0/mlflow/experiments/get-by-name",
                &[("experiment_name", name)],
            )
            .await;
        match found {
            Ok(reply) => Ok(Some(reply)),
            Err(err) if has_code(&err, "RESOURCE_DOES_NOT_EXIST") => Ok(None),
            Err(err) => Err(err),
        }
    }
}

#[async_trait]
impl TrackingStore for RestStore {
    fn display_uri(&self) -> String {
        self.http.display_uri()
    }

    async fn get_or_create_experiment(&self, name: &str) -> Result<Experiment, StoreError> {
        // An MLflow 2 server answers the experiment calls but not the LoggedModel API that
        // follows: refused here, before a run exists.
        if let Some(version) = self.http.server_version().await
            && version
                .split('.')
                .next()
                .and_then(|major| major.parse::<u32>().ok())
                .is_some_and(|major| major < 3)
        {
            return Err(StoreError::ServerTooOld {
                uri: self.http.display_uri(),
                version,
                operation: "logged-models".to_owned(),
                minimum: MINIMUM_SERVER.to_owned(),
            });
        }
        let reply = match self.experiment_by_name(name).await? {
            Some(reply) => reply,
            None => {
                let created = self
                    .http
                    .post::<CreateExperimentReply>(
                        "experiments/create",
                        "api/2.0/mlflow/experiments/create",
                        &json!({ "name": name }),
                    )
                    .await;
                match created {
                    Ok(created) => {
                        self.http
                            .get::<ExperimentReply>(
                                "experiments/get",
                                "api/2.0/mlflow/experiments/get",
                                &[("experiment_id", &created.experiment_id)],
                            )
                            .await?
                    }
                    // Created by another writer in between: read theirs.
                    Err(err) if has_code(&err, "RESOURCE_ALREADY_EXISTS") => self
                        .experiment_by_name(name)
                        .await?
                        .ok_or_else(|| StoreError::NotFound {
                            what: format!("experiment `{name}`"),
                        })?,
                    Err(err) => return Err(err),
                }
            }
        };
        let experiment = reply.experiment;
        if experiment.lifecycle_stage == "deleted" {
            return Err(StoreError::DeletedExperiment {
                name: experiment.name,
            });
        }
        Ok(Experiment {
            id: experiment.experiment_id,
            name: experiment.name,
            artifact_location: experiment.artifact_location,
        })
    }

    async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_time_ms: i64,
        tags: &[(String, String)],
    ) -> Result<RunInfo, StoreError> {
        // The server adds `mlflow.runName` from `run_name`; a different one among `tags` would
        // contradict it.
        let tags: Vec<(String, String)> = tags
            .iter()
            .filter(|(key, _)| key != RUN_NAME_TAG)
            .cloned()
            .chain([(RUN_NAME_TAG.to_owned(), run_name.to_owned())])
            .collect();
        let reply: RunReply = self
            .http
            .post(
                "runs/create",
                "api/2.0/mlflow/runs/create",
                &json!({
                    "experiment_id": experiment_id,
                    "run_name": run_name,
                    "start_time": start_time_ms,
                    "tags": key_values(&tags),
                }),
            )
            .await?;
        let info = reply.run.info;
        Ok(RunInfo {
            run_id: info.run_id,
            experiment_id: info.experiment_id,
            run_name: info.run_name,
            artifact_uri: info.artifact_uri,
        })
    }

    async fn log_batch(
        &self,
        run_id: &str,
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<(), StoreError> {
        for batch in batch::batches(params, tags)? {
            self.http
                .send_json(
                    "runs/log-batch",
                    Method::POST,
                    "api/2.0/mlflow/runs/log-batch",
                    &json!({
                        "run_id": run_id,
                        "metrics": [],
                        "params": batch.params,
                        "tags": batch.tags,
                    }),
                )
                .await?;
        }
        Ok(())
    }

    async fn create_logged_model(
        &self,
        experiment_id: &str,
        name: &str,
        source_run_id: &str,
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<LoggedModel, StoreError> {
        let reply: LoggedModelReply = self
            .http
            .post(
                "logged-models/create",
                "api/2.0/mlflow/logged-models",
                &json!({
                    "experiment_id": experiment_id,
                    "name": name,
                    "source_run_id": source_run_id,
                    "params": key_values(params),
                    "tags": key_values(tags),
                }),
            )
            .await?;
        Ok(reply.model.info.into_model())
    }

    async fn link_run_output(
        &self,
        run_id: &str,
        model_id: &str,
        step: i64,
    ) -> Result<(), StoreError> {
        self.http
            .send_json(
                "runs/outputs",
                Method::POST,
                "api/2.0/mlflow/runs/outputs",
                &json!({ "run_id": run_id, "models": [{ "model_id": model_id, "step": step }] }),
            )
            .await
    }

    async fn upload_model_artifacts(
        &self,
        model: &LoggedModel,
        local_dir: &Path,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<(), StoreError> {
        let repo = transfer::open(&self.http, &model.artifact_uri)?;
        let dir = local_dir.to_path_buf();
        let files = tokio::task::spawn_blocking(move || transfer::walk(&dir))
            .await
            .map_err(|err| StoreError::Io {
                action: "read",
                path: local_dir.display().to_string(),
                source: std::io::Error::other(err.to_string()),
            })??;
        transfer::upload_all(repo.as_ref(), files, progress).await
    }

    fn check_artifact_location(&self, experiment: &Experiment) -> Result<(), StoreError> {
        transfer::open(&self.http, &experiment.artifact_location).map(|_| ())
    }

    async fn finalize_logged_model(
        &self,
        model_id: &str,
        status: ModelStatus,
    ) -> Result<(), StoreError> {
        let status = match status {
            ModelStatus::Ready => "LOGGED_MODEL_READY",
            ModelStatus::UploadFailed => "LOGGED_MODEL_UPLOAD_FAILED",
        };
        self.http
            .send_json(
                "logged-models/finalize",
                Method::PATCH,
                &format!("api/2.0/mlflow/logged-models/{model_id}"),
                &json!({ "model_id": model_id, "status": status }),
            )
            .await
    }

    async fn set_logged_model_tags(
        &self,
        model_id: &str,
        tags: &[(String, String)],
    ) -> Result<(), StoreError> {
        self.http
            .send_json(
                "logged-models/set-tags",
                Method::PATCH,
                &format!("api/2.0/mlflow/logged-models/{model_id}/tags"),
                &json!({ "tags": key_values(tags) }),
            )
            .await
    }

    async fn set_run_status(
        &self,
        run_id: &str,
        status: RunStatus,
        end_time_ms: i64,
    ) -> Result<(), StoreError> {
        let status = match status {
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
        };
        self.http
            .send_json(
                "runs/update",
                Method::POST,
                "api/2.0/mlflow/runs/update",
                &json!({ "run_id": run_id, "status": status, "end_time": end_time_ms }),
            )
            .await
    }

    async fn register_model_version(
        &self,
        name: &str,
        model: &LoggedModel,
        run_id: &str,
    ) -> Result<String, StoreError> {
        let created = self
            .http
            .send_json(
                "registered-models/create",
                Method::POST,
                "api/2.0/mlflow/registered-models/create",
                &json!({ "name": name }),
            )
            .await;
        match created {
            Ok(()) => {}
            Err(err) if has_code(&err, "RESOURCE_ALREADY_EXISTS") => {}
            Err(err) => return Err(err),
        }
        let reply: ModelVersionReply = self
            .http
            .post(
                "model-versions/create",
                "api/2.0/mlflow/model-versions/create",
                &json!({
                    "name": name,
                    "source": format!("models:/{}", model.model_id),
                    "run_id": run_id,
                    "model_id": model.model_id,
                }),
            )
            .await?;
        Ok(reply.model_version.version)
    }

    async fn delete_model_version(&self, name: &str, version: &str) -> Result<(), StoreError> {
        self.http
            .send_json(
                "model-versions/delete",
                Method::DELETE,
                "api/2.0/mlflow/model-versions/delete",
                &json!({ "name": name, "version": version }),
            )
            .await
    }

    async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<(), StoreError> {
        self.http
            .send_json(
                "registered-models/alias",
                Method::POST,
                "api/2.0/mlflow/registered-models/alias",
                &json!({ "name": name, "alias": alias, "version": version }),
            )
            .await
    }

    async fn register_prompt(
        &self,
        name: &str,
        kind: &str,
        template: &str,
        commit_message: Option<&str>,
    ) -> Result<PromptVersion, StoreError> {
        prompt::register(&self.http, name, kind, template, commit_message).await
    }

    async fn load_prompt(
        &self,
        name: &str,
        version_or_alias: &str,
    ) -> Result<PromptVersion, StoreError> {
        prompt::load(&self.http, name, version_or_alias).await
    }

    async fn get_logged_model(&self, model_id: &str) -> Result<LoggedModel, StoreError> {
        read::logged_model(&self.http, model_id).await
    }

    async fn logged_model_tags(&self, model_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        read::logged_model_tags(&self.http, model_id).await
    }

    async fn run_logged_models(&self, run_id: &str) -> Result<Vec<LoggedModel>, StoreError> {
        read::run_models(&self.http, run_id).await
    }

    async fn model_version(
        &self,
        name: &str,
        version_or_alias: &str,
    ) -> Result<(String, String), StoreError> {
        read::model_version(&self.http, name, version_or_alias).await
    }

    async fn find_unfinished(
        &self,
        experiment: Option<&str>,
        before_ms: i64,
    ) -> Result<Unfinished, StoreError> {
        unfinished::find(&self.http, experiment, before_ms).await
    }

    async fn download_model_artifacts(
        &self,
        model: &LoggedModel,
        dest: &Path,
    ) -> Result<(), StoreError> {
        read::download(&self.http, model, dest).await
    }

    async fn list_model_artifacts(&self, model: &LoggedModel) -> Result<Vec<String>, StoreError> {
        read::list(&self.http, model).await
    }

    async fn download_model_files(
        &self,
        model: &LoggedModel,
        files: &[String],
        dest: &Path,
    ) -> Result<(), StoreError> {
        read::download_files(&self.http, model, files, dest).await
    }

    async fn logged_model_with_tags(
        &self,
        model_id: &str,
    ) -> Result<(LoggedModel, Vec<(String, String)>), StoreError> {
        read::logged_model_with_tags(&self.http, model_id).await
    }
}

/// `base_url` as a credentials-free http(s) URL with a host.
fn parse_base(base_url: &str) -> Result<Url, StoreError> {
    let refuse = || StoreError::UnknownScheme {
        uri: redact_uri(base_url),
    };
    let url = Url::parse(base_url.trim()).map_err(|_| refuse())?;
    let valid = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|host| !host.is_empty())
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if valid { Ok(url) } else { Err(refuse()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_must_be_http_with_a_host_and_no_credentials() {
        for good in [
            "http://127.0.0.1:5000",
            "https://mlflow.example.com/prefix/",
        ] {
            assert!(parse_base(good).is_ok(), "{good}");
        }
        for bad in [
            "ftp://host",
            "http://",
            "sqlite:///x.db",
            "http://host?x=1",
            "not a url",
        ] {
            assert!(
                matches!(parse_base(bad), Err(StoreError::UnknownScheme { .. })),
                "{bad}"
            );
        }
        let err = parse_base("http://ada:hunter2@mlflow:5000")
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| !e.contains("hunter2")),
            "{err:?}"
        );
    }

    #[test]
    fn debug_shows_server_but_not_credentials() -> Result<(), StoreError> {
        let store = RestStore::new("http://127.0.0.1:5000/", Some(Auth::bearer("canary-42")))?;
        let debug = format!("{store:?}");
        assert!(debug.contains("http://127.0.0.1:5000"), "{debug}");
        assert!(!debug.contains("canary-42"), "{debug}");
        assert_eq!(store.display_uri(), "http://127.0.0.1:5000");
        Ok(())
    }
}
