//! Runs, their params and tags, as MLflow's SQLAlchemy store writes them: status and
//! source type as strings (`RUNNING`, `FINISHED`, `FAILED`; `UNKNOWN`), `user_id` from the
//! `mlflow.user` tag (else `unknown`), the name both in `runs.name` and the `mlflow.runName`
//! tag, params immutable once logged, tags overwritten.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{OptionalExtension, Transaction, params};

use crate::store::{RunInfo, RunStatus};

use super::{
    artifact,
    error::{TxError, invalid, invalid_state, not_found},
    experiment,
    stamp::uuid4_hex,
    validate::{self, KeyKind},
};

/// The tag holding a run's name.
const RUN_NAME_TAG: &str = "mlflow.runName";
/// The tag holding the user, copied to `runs.user_id`.
const USER_TAG: &str = "mlflow.user";

/// `RunStatus` as MLflow stores it.
fn status_str(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Finished => "FINISHED",
        RunStatus::Failed => "FAILED",
    }
}

/// Creates a RUNNING run in an active experiment, with `tags` and `mlflow.runName`.
///
/// # Errors
///
/// Unknown or deleted experiment, an invalid tag, or an `mlflow.runName` tag that
/// contradicts `run_name`.
pub(super) fn create(
    tx: &Transaction<'_>,
    experiment_id: &str,
    run_name: &str,
    start_time_ms: i64,
    tags: &[(String, String)],
) -> Result<RunInfo, TxError> {
    const OP: &str = "runs/create";
    let experiment = experiment::active(tx, experiment_id)?;
    let tags = validate::fitted_pairs(OP, KeyKind::Tag, tags)?;
    // Last value wins for a repeated key, as a dict would.
    let mut tag_map: BTreeMap<&str, &str> =
        tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let run_id = uuid4_hex();
    let name = match tag_map.get(RUN_NAME_TAG) {
        Some(tagged) if !run_name.is_empty() && *tagged != run_name => {
            return Err(invalid(
                OP,
                format!(
                    "both run_name `{run_name}` and the `{RUN_NAME_TAG}` tag `{tagged}` are \
                     given, with different values"
                ),
            )
            .into());
        }
        Some(tagged) => (*tagged).to_owned(),
        None if run_name.is_empty() => format!("run-{}", &run_id[..8]),
        None => run_name.to_owned(),
    };
    tag_map.insert(RUN_NAME_TAG, &name);
    let user = tag_map.get(USER_TAG).copied().unwrap_or("unknown");
    let artifact_uri = artifact::append(&experiment.artifact_location, &[&run_id, "artifacts"]);
    tx.execute(
        "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, \
         status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, \
         experiment_id, deleted_time) VALUES (?1, ?2, 'UNKNOWN', '', '', ?3, 'RUNNING', ?4, \
         NULL, '', 'active', ?5, ?6, NULL)",
        params![
            run_id,
            name,
            user,
            start_time_ms,
            artifact_uri,
            experiment.id
        ],
    )?;
    let mut insert =
        tx.prepare("INSERT INTO tags (\"key\", value, run_uuid) VALUES (?1, ?2, ?3)")?;
    for (key, value) in &tag_map {
        insert.execute(params![key, value, run_id])?;
    }
    Ok(RunInfo {
        run_id,
        experiment_id: experiment.id.to_string(),
        run_name: name,
        artifact_uri,
    })
}

/// Checks that `run_id` exists and is active (not deleted).
pub(super) fn ensure_active(
    tx: &Transaction<'_>,
    operation: &str,
    run_id: &str,
) -> Result<(), TxError> {
    let stage: Option<Option<String>> = tx
        .query_row(
            "SELECT lifecycle_stage FROM runs WHERE run_uuid = ?1",
            params![run_id],
            |r| r.get(0),
        )
        .optional()?;
    match stage {
        None => Err(not_found(format!("run `{run_id}`")).into()),
        Some(Some(stage)) if stage == "deleted" => {
            Err(invalid_state(operation, format!("run `{run_id}` is deleted")).into())
        }
        Some(_) => Ok(()),
    }
}

/// Logs params (immutable: the same value again is a no-op, another value is refused) and
/// tags (overwritten; `mlflow.runName` also renames the run).
///
/// # Errors
///
/// An unknown or deleted run, a key or value over MLflow's limits (naming the key), a param
/// key twice in one batch, or a param changing value.
pub(super) fn log_batch(
    tx: &Transaction<'_>,
    run_id: &str,
    params: &[(String, String)],
    tags: &[(String, String)],
) -> Result<(), TxError> {
    const OP: &str = "runs/log-batch";
    let params = validate::fitted_pairs(OP, KeyKind::Param, params)?;
    let tags = validate::fitted_pairs(OP, KeyKind::Tag, tags)?;
    let (params, tags) = (params.as_slice(), tags.as_slice());
    let mut seen = HashMap::new();
    for (key, value) in params {
        if seen.insert(key.as_str(), value.as_str()).is_some() {
            return Err(invalid(
                OP,
                format!("param key `{key}` is given more than once in one batch"),
            )
            .into());
        }
    }
    ensure_active(tx, OP, run_id)?;
    log_params(tx, run_id, params)?;
    let mut upsert = tx.prepare(
        "INSERT INTO tags (\"key\", value, run_uuid) VALUES (?1, ?2, ?3) \
         ON CONFLICT (\"key\", run_uuid) DO UPDATE SET value = excluded.value",
    )?;
    for (key, value) in tags {
        upsert.execute(params![key, value, run_id])?;
        if key == RUN_NAME_TAG {
            tx.execute(
                "UPDATE runs SET name = ?1 WHERE run_uuid = ?2",
                params![value, run_id],
            )?;
        }
    }
    Ok(())
}

fn log_params(
    tx: &Transaction<'_>,
    run_id: &str,
    params: &[(String, String)],
) -> Result<(), TxError> {
    let mut existing =
        tx.prepare("SELECT value FROM params WHERE \"key\" = ?1 AND run_uuid = ?2")?;
    let mut insert =
        tx.prepare("INSERT INTO params (\"key\", value, run_uuid) VALUES (?1, ?2, ?3)")?;
    for (key, value) in params {
        let old: Option<String> = existing
            .query_row(params![key, run_id], |r| r.get(0))
            .optional()?;
        match old {
            Some(old) if old == *value => {}
            Some(old) => {
                return Err(invalid(
                    "runs/log-batch",
                    format!(
                        "param `{key}` of run `{run_id}` is already `{old}`; changing param \
                         values is not allowed (new value `{value}`)"
                    ),
                )
                .into());
            }
            None => {
                insert.execute(params![key, value, run_id])?;
            }
        }
    }
    Ok(())
}

/// Sets a run's final status and end time.
///
/// # Errors
///
/// An unknown or deleted run.
pub(super) fn set_status(
    tx: &Transaction<'_>,
    run_id: &str,
    status: RunStatus,
    end_time_ms: i64,
) -> Result<(), TxError> {
    ensure_active(tx, "runs/update", run_id)?;
    tx.execute(
        "UPDATE runs SET status = ?1, end_time = ?2 WHERE run_uuid = ?3",
        params![status_str(status), end_time_ms, run_id],
    )?;
    Ok(())
}
