//! MLflow 3 logged models as the SQLAlchemy store writes them: id `m-<32 hex>`, status an
//! integer (`PENDING`=1, `READY`=2, `UPLOAD_FAILED`=3), lifecycle `active`, location
//! `<experiment location>/models/<id>/artifacts`, params and tags in their own tables; the
//! run → model link as an `inputs` row (`RUN_OUTPUT` → `MODEL_OUTPUT`); and the
//! `mlflow.modelVersions` tag the client adds after registering a version.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Transaction, params};

use crate::store::{LoggedModel, ModelStatus};

use super::{
    artifact,
    error::{TxError, invalid, invalid_state, not_found},
    experiment, run,
    stamp::{model_id, now_ms, uuid4_hex},
    validate,
};

/// `LoggedModelStatus.PENDING.to_int()`.
pub(super) const STATUS_PENDING: i64 = 1;
/// `LoggedModelStatus.READY.to_int()`.
const STATUS_READY: i64 = 2;
/// `LoggedModelStatus.UPLOAD_FAILED.to_int()`.
const STATUS_UPLOAD_FAILED: i64 = 3;

/// MLflow's name (`LoggedModelStatus`) for a stored status integer.
pub(super) fn status_name(status: i64) -> &'static str {
    match status {
        STATUS_PENDING => "PENDING",
        STATUS_READY => LoggedModel::READY,
        STATUS_UPLOAD_FAILED => "UPLOAD_FAILED",
        _ => "UNSPECIFIED",
    }
}

/// The logged model tag listing its registered versions (`mlflow_tags.MLFLOW_MODEL_VERSIONS`).
const MODEL_VERSIONS_TAG: &str = "mlflow.modelVersions";

/// What the registry and the artifact upload need of a stored logged model.
#[derive(Debug)]
pub(super) struct StoredModel {
    /// Its experiment.
    pub(super) experiment_id: i64,
    /// Where its artifacts live.
    pub(super) artifact_location: String,
    /// The run that produced it.
    pub(super) source_run_id: Option<String>,
}

/// Creates a PENDING logged model with `params` and `tags` (a repeated key keeps its last
/// value).
///
/// # Errors
///
/// Unknown or deleted experiment; an invalid name.
pub(super) fn create(
    tx: &Transaction<'_>,
    experiment_id: &str,
    name: &str,
    source_run_id: &str,
    params: &[(String, String)],
    tags: &[(String, String)],
) -> Result<LoggedModel, TxError> {
    validate::logged_model_name(name)?;
    let experiment = experiment::active(tx, experiment_id)?;
    let id = model_id();
    let location = artifact::append(&experiment.artifact_location, &["models", &id, "artifacts"]);
    let source_run_id = (!source_run_id.is_empty()).then(|| source_run_id.to_owned());
    let now = now_ms();
    tx.execute(
        "INSERT INTO logged_models (model_id, experiment_id, name, artifact_location, \
         creation_timestamp_ms, last_updated_timestamp_ms, status, lifecycle_stage, model_type, \
         source_run_id, status_message) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, 'active', NULL, ?7, NULL)",
        params![id, experiment.id, name, location, now, STATUS_PENDING, source_run_id],
    )?;
    let mut insert_param = tx.prepare(
        "INSERT INTO logged_model_params (model_id, experiment_id, param_key, param_value) \
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (key, value) in last_wins(params) {
        insert_param.execute(params![id, experiment.id, key, value])?;
    }
    for (key, value) in last_wins(tags) {
        set_tag(tx, &id, experiment.id, key, value)?;
    }
    Ok(LoggedModel {
        model_id: id,
        experiment_id: experiment.id.to_string(),
        name: name.to_owned(),
        artifact_uri: location,
        source_run_id,
        status: status_name(STATUS_PENDING).to_owned(),
    })
}

fn last_wins(pairs: &[(String, String)]) -> BTreeMap<&str, &str> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn set_tag(
    tx: &Transaction<'_>,
    model_id: &str,
    experiment_id: i64,
    key: &str,
    value: &str,
) -> Result<(), TxError> {
    tx.execute(
        "INSERT INTO logged_model_tags (model_id, experiment_id, tag_key, tag_value) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (model_id, tag_key) DO UPDATE SET tag_value = excluded.tag_value",
        params![model_id, experiment_id, key, value],
    )?;
    Ok(())
}

/// Sets tags on model `model_id` (overwriting a key already set).
///
/// # Errors
///
/// An unknown model.
pub(super) fn set_tags(
    tx: &Transaction<'_>,
    model_id: &str,
    tags: &[(String, String)],
) -> Result<(), TxError> {
    let model = stored(tx, model_id)?;
    for (key, value) in last_wins(tags) {
        set_tag(tx, model_id, model.experiment_id, key, value)?;
    }
    Ok(())
}

/// The stored model `model_id`.
///
/// # Errors
///
/// [`StoreError::NotFound`](crate::store::StoreError::NotFound) when there is none.
pub(super) fn stored(tx: &Transaction<'_>, model_id: &str) -> Result<StoredModel, TxError> {
    tx.query_row(
        "SELECT experiment_id, artifact_location, source_run_id FROM logged_models \
         WHERE model_id = ?1",
        params![model_id],
        |r| {
            Ok(StoredModel {
                experiment_id: r.get(0)?,
                artifact_location: r.get(1)?,
                source_run_id: r.get(2)?,
            })
        },
    )
    .optional()?
    .ok_or_else(|| not_found(format!("logged model `{model_id}`")).into())
}

/// Links run `run_id` to the model it produced (an `inputs` row); linking twice is a no-op.
///
/// # Errors
///
/// An unknown or deleted run, or an unknown model.
pub(super) fn link_run_output(
    tx: &Transaction<'_>,
    run_id: &str,
    model_id: &str,
    step: i64,
) -> Result<(), TxError> {
    run::ensure_active(tx, "runs/outputs", run_id)?;
    stored(tx, model_id)?;
    tx.execute(
        "INSERT INTO inputs (input_uuid, source_type, source_id, destination_type, \
         destination_id, step) VALUES (?1, 'RUN_OUTPUT', ?2, 'MODEL_OUTPUT', ?3, ?4) \
         ON CONFLICT DO NOTHING",
        params![uuid4_hex(), run_id, model_id, step],
    )?;
    Ok(())
}

/// Sets a model's final status. READY is refused while its local artifact directory is
/// missing, so no READY model ever points at nothing.
///
/// # Errors
///
/// An unknown model, or READY without artifacts.
pub(super) fn finalize(
    tx: &Transaction<'_>,
    model_id: &str,
    status: ModelStatus,
) -> Result<(), TxError> {
    let model = stored(tx, model_id)?;
    let code = match status {
        ModelStatus::Ready => {
            if let Some(dir) = artifact::local_dir(&model.artifact_location)
                && !dir.is_dir()
            {
                return Err(invalid_state(
                    "logged-models/finalize",
                    format!(
                        "logged model `{model_id}` cannot be READY: its artifacts at `{}` were \
                         never uploaded",
                        dir.display()
                    ),
                )
                .into());
            }
            STATUS_READY
        }
        ModelStatus::UploadFailed => STATUS_UPLOAD_FAILED,
    };
    tx.execute(
        "UPDATE logged_models SET status = ?1, last_updated_timestamp_ms = ?2 WHERE model_id = ?3",
        params![code, now_ms(), model_id],
    )?;
    Ok(())
}

/// Appends `{"name": name, "version": version}` to the model's `mlflow.modelVersions` tag
/// (a JSON list, written as Python's `json.dumps` writes it).
///
/// # Errors
///
/// An unknown model, or an existing tag that is not a JSON list.
pub(super) fn add_model_version(
    tx: &Transaction<'_>,
    model_id: &str,
    name: &str,
    version: i64,
) -> Result<(), TxError> {
    let model = stored(tx, model_id)?;
    let existing: Option<String> = tx
        .query_row(
            "SELECT tag_value FROM logged_model_tags WHERE model_id = ?1 AND tag_key = ?2",
            params![model_id, MODEL_VERSIONS_TAG],
            |r| r.get(0),
        )
        .optional()?;
    let mut versions: Vec<serde_json::Value> = match existing {
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            invalid(
                "logged-models/set-tags",
                format!("tag `{MODEL_VERSIONS_TAG}` of `{model_id}` is not a JSON list: {e}"),
            )
        })?,
        None => Vec::new(),
    };
    // Keys sort as `name` < `version`: the order Python's dict literal gives.
    versions.push(serde_json::json!({ "name": name, "version": version }));
    let text = crate::pyjson::dumps(&versions).map_err(|e| {
        invalid(
            "logged-models/set-tags",
            format!("cannot encode `{MODEL_VERSIONS_TAG}`: {e}"),
        )
    })?;
    set_tag(tx, model_id, model.experiment_id, MODEL_VERSIONS_TAG, &text)
}
