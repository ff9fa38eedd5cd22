//! Experiments as MLflow's SQLAlchemy store writes them: sequential integer ids (`0` is
//! `Default`), workspace `default`, lifecycle `active`/`deleted`, and the artifact location
//! `<artifact root>/<id>` as a plain absolute path.

use rusqlite::{OptionalExtension, Transaction, params};

use crate::store::{Experiment, StoreError};

use super::{artifact, error::TxError, stamp::now_ms, validate};

/// The workspace every row belongs to (MLflow's `DEFAULT_WORKSPACE_NAME`).
pub(super) const WORKSPACE: &str = "default";

/// The experiment MLflow creates first (`DEFAULT_EXPERIMENT_ID`, `DEFAULT_EXPERIMENT_NAME`).
const DEFAULT_ID: i64 = 0;
const DEFAULT_NAME: &str = "Default";

/// An active experiment, as runs and logged models need it.
#[derive(Debug)]
pub(super) struct ActiveExperiment {
    /// Its id.
    pub(super) id: i64,
    /// Where its artifacts live.
    pub(super) artifact_location: String,
}

/// Inserts the `Default` experiment (id 0) when the store has no experiment at all, as
/// MLflow's store does on first use.
pub(super) fn ensure_default(tx: &Transaction<'_>, artifact_root: &str) -> Result<(), TxError> {
    let count: i64 = tx.query_row("SELECT count(*) FROM experiments", [], |r| r.get(0))?;
    if count > 0 {
        return Ok(());
    }
    let now = now_ms();
    tx.execute(
        "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, \
         creation_time, last_update_time, workspace) VALUES (?1, ?2, ?3, 'active', ?4, ?4, ?5)",
        params![
            DEFAULT_ID,
            DEFAULT_NAME,
            artifact::append(artifact_root, &[&DEFAULT_ID.to_string()]),
            now,
            WORKSPACE
        ],
    )?;
    Ok(())
}

/// The experiment called `name`, created (with location `<artifact_root>/<id>`) if absent.
///
/// # Errors
///
/// [`StoreError::DeletedExperiment`] when it exists but was deleted; an invalid name.
pub(super) fn get_or_create(
    tx: &Transaction<'_>,
    artifact_root: &str,
    name: &str,
) -> Result<Experiment, TxError> {
    validate::experiment_name(name)?;
    let found = tx
        .query_row(
            "SELECT experiment_id, artifact_location, lifecycle_stage FROM experiments \
             WHERE name = ?1 AND workspace = ?2",
            params![name, WORKSPACE],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            },
        )
        .optional()?;
    if let Some((id, location, stage)) = found {
        if stage.as_deref() == Some("deleted") {
            return Err(StoreError::DeletedExperiment {
                name: name.to_owned(),
            }
            .into());
        }
        return Ok(Experiment {
            id: id.to_string(),
            name: name.to_owned(),
            artifact_location: location.unwrap_or_default(),
        });
    }
    let now = now_ms();
    tx.execute(
        "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, \
         last_update_time, workspace) VALUES (?1, NULL, 'active', ?2, ?2, ?3)",
        params![name, now, WORKSPACE],
    )?;
    let id = tx.last_insert_rowid();
    // As MLflow: the id is only known after the insert, so the location is a second write.
    let location = artifact::append(artifact_root, &[&id.to_string()]);
    tx.execute(
        "UPDATE experiments SET artifact_location = ?1 WHERE experiment_id = ?2",
        params![location, id],
    )?;
    Ok(Experiment {
        id: id.to_string(),
        name: name.to_owned(),
        artifact_location: location,
    })
}

/// The experiment `experiment_id`, which must exist and be active.
///
/// # Errors
///
/// [`StoreError::NotFound`] for an unknown id, [`StoreError::DeletedExperiment`] for a deleted
/// one.
pub(super) fn active(
    tx: &Transaction<'_>,
    experiment_id: &str,
) -> Result<ActiveExperiment, TxError> {
    let missing = || {
        TxError::from(super::error::not_found(format!(
            "experiment `{experiment_id}`"
        )))
    };
    let id: i64 = experiment_id.parse().map_err(|_| missing())?;
    let row = tx
        .query_row(
            "SELECT name, artifact_location, lifecycle_stage FROM experiments \
             WHERE experiment_id = ?1 AND workspace = ?2",
            params![id, WORKSPACE],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            },
        )
        .optional()?;
    let Some((name, location, stage)) = row else {
        return Err(missing());
    };
    if stage.as_deref() == Some("deleted") {
        return Err(StoreError::DeletedExperiment { name }.into());
    }
    Ok(ActiveExperiment {
        id,
        artifact_location: location.unwrap_or_default(),
    })
}
