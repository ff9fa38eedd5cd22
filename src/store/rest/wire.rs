//! MLflow's REST answers as the REST store reads them (MLflow 3.17/3.18, see MLFLOW.md §3).
//!
//! Owns the serde types of response bodies and the `{"key", "value"}` pairs of request bodies.
//! Fields chainlog does not read are ignored (the server adds fields between versions), and
//! fields a server may omit default to empty. Request bodies are built with `serde_json::json!`
//! where they are sent.

use serde::{Deserialize, Serialize};

/// `{"key": …, "value": …}`: a tag or param in a request.
#[derive(Debug, Serialize)]
pub(super) struct KeyValue<'a> {
    pub(super) key: &'a str,
    pub(super) value: &'a str,
}

/// Pairs as MLflow's `[{"key", "value"}]`.
pub(super) fn key_values(pairs: &[(String, String)]) -> Vec<KeyValue<'_>> {
    pairs
        .iter()
        .map(|(key, value)| KeyValue { key, value })
        .collect()
}

/// A tag in an answer.
#[derive(Debug, Deserialize)]
pub(super) struct Tag {
    pub(super) key: String,
    #[serde(default)]
    pub(super) value: String,
}

/// `experiments/get-by-name`, `experiments/get`.
#[derive(Debug, Deserialize)]
pub(super) struct ExperimentReply {
    pub(super) experiment: Experiment,
}

#[derive(Debug, Deserialize)]
pub(super) struct Experiment {
    pub(super) experiment_id: String,
    pub(super) name: String,
    #[serde(default)]
    pub(super) artifact_location: String,
    /// `active` or `deleted`.
    #[serde(default)]
    pub(super) lifecycle_stage: String,
}

/// `experiments/create`.
#[derive(Debug, Deserialize)]
pub(super) struct CreateExperimentReply {
    pub(super) experiment_id: String,
}

/// `runs/create`.
#[derive(Debug, Deserialize)]
pub(super) struct RunReply {
    pub(super) run: Run,
}

#[derive(Debug, Deserialize)]
pub(super) struct Run {
    pub(super) info: RunInfo,
    /// The models the run produced (`runs/get`; absent from `runs/create`).
    #[serde(default)]
    pub(super) outputs: RunOutputs,
}

/// A run's `outputs`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RunOutputs {
    #[serde(default)]
    pub(super) model_outputs: Vec<ModelOutput>,
}

/// One `{"model_id", "step"}` of a run's outputs.
#[derive(Debug, Deserialize)]
pub(super) struct ModelOutput {
    pub(super) model_id: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct RunInfo {
    pub(super) run_id: String,
    pub(super) experiment_id: String,
    #[serde(default)]
    pub(super) run_name: String,
    #[serde(default)]
    pub(super) artifact_uri: String,
}

/// `POST logged-models`, `PATCH logged-models/<id>`.
#[derive(Debug, Deserialize)]
pub(super) struct LoggedModelReply {
    pub(super) model: LoggedModel,
}

#[derive(Debug, Deserialize)]
pub(super) struct LoggedModel {
    pub(super) info: LoggedModelInfo,
}

#[derive(Debug, Deserialize)]
pub(super) struct LoggedModelInfo {
    pub(super) model_id: String,
    pub(super) experiment_id: String,
    pub(super) name: String,
    #[serde(default)]
    pub(super) artifact_uri: String,
    #[serde(default)]
    pub(super) source_run_id: Option<String>,
    #[serde(default)]
    pub(super) tags: Vec<Tag>,
    /// `LOGGED_MODEL_PENDING`, `LOGGED_MODEL_READY`, `LOGGED_MODEL_UPLOAD_FAILED`.
    #[serde(default)]
    pub(super) status: String,
}

impl LoggedModelInfo {
    /// The model as the store API gives it (status without the proto prefix).
    pub(super) fn into_model(self) -> crate::store::LoggedModel {
        crate::store::LoggedModel {
            status: self
                .status
                .strip_prefix("LOGGED_MODEL_")
                .unwrap_or(&self.status)
                .to_owned(),
            model_id: self.model_id,
            experiment_id: self.experiment_id,
            name: self.name,
            artifact_uri: self.artifact_uri,
            source_run_id: self.source_run_id.filter(|id| !id.is_empty()),
        }
    }
}

/// `model-versions/create`, `model-versions/get`, `GET registered-models/alias`.
#[derive(Debug, Deserialize)]
pub(super) struct ModelVersionReply {
    pub(super) model_version: ModelVersion,
}

/// `registered-models/get-latest-versions`: the newest version per stage.
#[derive(Debug, Deserialize)]
pub(super) struct LatestVersionsReply {
    #[serde(default)]
    pub(super) model_versions: Vec<ModelVersion>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ModelVersion {
    pub(super) name: String,
    pub(super) version: String,
    /// `models:/<model_id>` for an MLflow 3 model.
    #[serde(default)]
    pub(super) source: String,
    #[serde(default)]
    pub(super) tags: Vec<Tag>,
}

impl ModelVersion {
    /// The value of tag `key`, if set.
    pub(super) fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|tag| tag.key == key)
            .map(|tag| tag.value.as_str())
    }
}

/// `registered-models/get`.
#[derive(Debug, Deserialize)]
pub(super) struct RegisteredModelReply {
    pub(super) registered_model: RegisteredModel,
}

#[derive(Debug, Deserialize)]
pub(super) struct RegisteredModel {
    #[serde(default)]
    pub(super) tags: Vec<Tag>,
}

/// `GET mlflow-artifacts/artifacts?path=…`: one directory level.
#[derive(Debug, Deserialize)]
pub(super) struct ArtifactList {
    #[serde(default)]
    pub(super) files: Vec<ArtifactFile>,
}

/// A listed entry (its `path` is the base name on MLflow 3; a longer path is cut to it).
#[derive(Debug, Deserialize)]
pub(super) struct ArtifactFile {
    pub(super) path: String,
    #[serde(default)]
    pub(super) is_dir: bool,
}
