//! The read side of the SQLite store, for loading a model back: a logged model by id, a
//! run's output models (the `inputs` rows `RUN_OUTPUT` → `MODEL_OUTPUT` that
//! `logged_model::link_run_output` writes), and a registered version or alias resolved to the
//! logged model its `source` (`models:/<model_id>`) names. Deleted models count as absent.
//! Also what `gc` looks for: chainlog's runs left RUNNING and models left PENDING.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use crate::store::{CHAINLOG_VERSION_TAG, LoggedModel, StoreError, Unfinished, UnfinishedRun};

use super::{
    error::{TxError, not_found},
    experiment::WORKSPACE,
    logged_model, registry,
};

/// The scheme MLflow 3 writes into a model version's `source`.
const MODELS_SCHEME: &str = "models:/";

fn logged_model(row: &Row<'_>) -> rusqlite::Result<LoggedModel> {
    Ok(LoggedModel {
        model_id: row.get(0)?,
        experiment_id: row.get::<_, i64>(1)?.to_string(),
        name: row.get(2)?,
        artifact_uri: row.get(3)?,
        source_run_id: row.get::<_, Option<String>>(4)?.filter(|id| !id.is_empty()),
        status: logged_model::status_name(row.get(5)?).to_owned(),
    })
}

/// The active logged model `model_id`.
///
/// # Errors
///
/// [`StoreError::NotFound`] when there is none (or it was deleted).
pub(super) fn get(tx: &Transaction<'_>, model_id: &str) -> Result<LoggedModel, TxError> {
    tx.query_row(
        "SELECT model_id, experiment_id, name, artifact_location, source_run_id, status \
         FROM logged_models WHERE model_id = ?1 AND lifecycle_stage = 'active'",
        params![model_id],
        logged_model,
    )
    .optional()?
    .ok_or_else(|| not_found(format!("logged model `{model_id}`")).into())
}

/// The tags of the active logged model `model_id`, sorted by key.
///
/// # Errors
///
/// [`StoreError::NotFound`] when there is no such model.
pub(super) fn tags(tx: &Transaction<'_>, model_id: &str) -> Result<Vec<(String, String)>, TxError> {
    get(tx, model_id)?;
    let mut stmt = tx.prepare(
        "SELECT tag_key, tag_value FROM logged_model_tags WHERE model_id = ?1 ORDER BY tag_key",
    )?;
    let tags = stmt
        .query_map(params![model_id], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(tags)
}

/// The active models run `run_id` produced, in the order they were linked.
///
/// # Errors
///
/// [`StoreError::NotFound`] when the run does not exist.
pub(super) fn run_models(tx: &Transaction<'_>, run_id: &str) -> Result<Vec<LoggedModel>, TxError> {
    let run = tx
        .query_row(
            "SELECT 1 FROM runs WHERE run_uuid = ?1",
            params![run_id],
            |_| Ok(()),
        )
        .optional()?;
    if run.is_none() {
        return Err(not_found(format!("run `{run_id}`")).into());
    }
    let mut stmt = tx.prepare(
        "SELECT m.model_id, m.experiment_id, m.name, m.artifact_location, m.source_run_id, m.status \
         FROM inputs i JOIN logged_models m ON m.model_id = i.destination_id \
         WHERE i.source_type = 'RUN_OUTPUT' AND i.source_id = ?1 \
         AND i.destination_type = 'MODEL_OUTPUT' AND m.lifecycle_stage = 'active' \
         ORDER BY i.rowid",
    )?;
    let models = stmt
        .query_map(params![run_id], logged_model)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(models)
}

/// `(version, model_id)` of registered model `name` at `version_or_alias` (`"3"`,
/// `"@champion"`, `"@latest"` for the newest).
///
/// # Errors
///
/// [`StoreError::NotFound`] for an unknown model (or a prompt), version or alias;
/// [`StoreError::BadModelUri`] when the version's source is not `models:/<model_id>`.
pub(super) fn model_version(
    tx: &Transaction<'_>,
    name: &str,
    version_or_alias: &str,
) -> Result<(String, String), TxError> {
    match registry::find(tx, name)? {
        Some(found) if !found.is_prompt => {}
        _ => return Err(not_found(format!("registered model `{name}`")).into()),
    }
    let version = match version_or_alias.strip_prefix('@') {
        Some("latest") => registry::latest_version(tx, name)?,
        Some(alias) => registry::alias_version(tx, name, alias)?,
        None => match version_or_alias.parse::<i64>() {
            Ok(number) if registry::version_exists(tx, name, number)? => Some(number),
            _ => None,
        },
    };
    let what = match version_or_alias.strip_prefix('@') {
        Some(alias) => format!("alias `{alias}` of registered model `{name}`"),
        None => format!("version {version_or_alias} of registered model `{name}`"),
    };
    let Some(version) = version else {
        return Err(not_found(what).into());
    };
    let source: Option<String> = tx.query_row(
        "SELECT source FROM model_versions WHERE name = ?1 AND version = ?2 AND workspace = ?3",
        params![name, version, WORKSPACE],
        |r| r.get(0),
    )?;
    let source = source.unwrap_or_default();
    let model_id = model_id_of_source(name, version, &source)?;
    Ok((version.to_string(), model_id))
}

/// The logged model id in a version's `source` (`models:/m-…`).
fn model_id_of_source(name: &str, version: i64, source: &str) -> Result<String, StoreError> {
    match source.strip_prefix(MODELS_SCHEME) {
        Some(id) if id.starts_with("m-") && !id.contains('/') => Ok(id.to_owned()),
        _ => Err(StoreError::BadModelUri {
            uri: format!("models:/{name}/{version}"),
            reason: format!(
                "its source `{source}` is not an MLflow 3 logged model (models:/<model_id>)"
            ),
        }),
    }
}

/// chainlog's runs still RUNNING started before `before_ms`, and its models still PENDING
/// created before it, in the active experiment `experiment` (or all active ones).
pub(super) fn unfinished(
    tx: &Transaction<'_>,
    experiment: Option<&str>,
    before_ms: i64,
) -> Result<Unfinished, TxError> {
    if let Some(name) = experiment {
        let active: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM experiments WHERE name = ?1 AND lifecycle_stage = 'active' \
                 AND workspace = ?2",
                params![name, WORKSPACE],
                |row| row.get(0),
            )
            .optional()?;
        if active.is_none() {
            return Err(not_found(format!("active experiment `{name}`")).into());
        }
    }
    let mut runs = tx.prepare(
        "SELECT r.run_uuid, r.experiment_id, r.name, r.start_time FROM runs r \
         JOIN experiments e ON e.experiment_id = r.experiment_id \
         WHERE r.status = 'RUNNING' AND r.lifecycle_stage = 'active' \
         AND e.lifecycle_stage = 'active' AND r.start_time < ?1 AND (?3 IS NULL OR e.name = ?3) \
         AND EXISTS (SELECT 1 FROM tags t WHERE t.run_uuid = r.run_uuid AND t.\"key\" = ?2) \
         ORDER BY r.start_time",
    )?;
    let runs = runs
        .query_map(
            params![before_ms, CHAINLOG_VERSION_TAG, experiment],
            |row| {
                Ok(UnfinishedRun {
                    run_id: row.get(0)?,
                    experiment_id: row.get::<_, i64>(1)?.to_string(),
                    run_name: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    start_time_ms: row.get::<_, Option<i64>>(3)?.unwrap_or_default(),
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut models = tx.prepare(
        "SELECT m.model_id, m.experiment_id, m.name, m.artifact_location, m.source_run_id, m.status \
         FROM logged_models m JOIN experiments e ON e.experiment_id = m.experiment_id \
         WHERE m.status = ?1 AND m.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active' \
         AND m.creation_timestamp_ms < ?2 AND (?4 IS NULL OR e.name = ?4) \
         AND EXISTS (SELECT 1 FROM logged_model_tags t WHERE t.model_id = m.model_id AND t.tag_key = ?3) \
         ORDER BY m.creation_timestamp_ms",
    )?;
    let models = models
        .query_map(
            params![
                logged_model::STATUS_PENDING,
                before_ms,
                CHAINLOG_VERSION_TAG,
                experiment
            ],
            logged_model,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Unfinished { runs, models })
}
