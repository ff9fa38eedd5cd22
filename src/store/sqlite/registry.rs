//! The model registry as MLflow's SQLAlchemy registry store writes it: registered models,
//! versions numbered `max + 1` (stage `None`, status `READY`), aliases; a model version's
//! `source` is `models:/<model_id>` and its `storage_location` the logged model's artifact
//! location. Prompts (see `prompt`) are registered models too, told apart by the tag
//! `mlflow.prompt.is_prompt`.

use rusqlite::{OptionalExtension, Transaction, params};

use super::{
    error::{TxError, invalid, not_found},
    experiment::WORKSPACE,
    logged_model,
    stamp::now_ms,
    validate,
};

/// The tag that marks a registered model or version as a prompt (`IS_PROMPT_TAG_KEY`).
pub(super) const IS_PROMPT_TAG: &str = "mlflow.prompt.is_prompt";

/// A registered model as found or created.
#[derive(Debug, Clone, Copy)]
pub(super) struct Registered {
    /// Whether it carries `mlflow.prompt.is_prompt = true`.
    pub(super) is_prompt: bool,
}

/// The registered model `name`, if any.
pub(super) fn find(tx: &Transaction<'_>, name: &str) -> Result<Option<Registered>, TxError> {
    let exists = tx
        .query_row(
            "SELECT 1 FROM registered_models WHERE name = ?1 AND workspace = ?2",
            params![name, WORKSPACE],
            |_| Ok(()),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(None);
    }
    let tag: Option<Option<String>> = tx
        .query_row(
            "SELECT value FROM registered_model_tags WHERE name = ?1 AND workspace = ?2 AND \"key\" = ?3",
            params![name, WORKSPACE, IS_PROMPT_TAG],
            |r| r.get(0),
        )
        .optional()?;
    Ok(Some(Registered {
        is_prompt: tag
            .flatten()
            .is_some_and(|v| v.eq_ignore_ascii_case("true")),
    }))
}

/// Creates the registered model `name` with `description` and `tags`.
pub(super) fn create(
    tx: &Transaction<'_>,
    name: &str,
    description: Option<&str>,
    tags: &[(&str, &str)],
) -> Result<(), TxError> {
    let now = now_ms();
    tx.execute(
        "INSERT INTO registered_models (name, creation_time, last_updated_time, description, \
         workspace) VALUES (?1, ?2, ?2, ?3, ?4)",
        params![name, now, description, WORKSPACE],
    )?;
    for (key, value) in tags {
        tx.execute(
            "INSERT INTO registered_model_tags (\"key\", value, name, workspace) VALUES (?1, ?2, ?3, ?4)",
            params![key, value, name, WORKSPACE],
        )?;
    }
    Ok(())
}

/// What a new version records.
#[derive(Debug)]
pub(super) struct NewVersion<'a> {
    /// `models:/<model_id>` for a model, `dummy-source` for a prompt.
    pub(super) source: &'a str,
    /// Where the files are (the logged model's location; `dummy-source` for a prompt).
    pub(super) storage_location: &'a str,
    /// The run that produced it.
    pub(super) run_id: Option<&'a str>,
    /// The description (a prompt's commit message).
    pub(super) description: Option<&'a str>,
    /// Version tags, in the order MLflow writes them.
    pub(super) tags: &'a [(&'a str, &'a str)],
}

/// Adds version `max + 1` of the registered model `name` and touches its
/// `last_updated_time`; returns the version.
pub(super) fn create_version(
    tx: &Transaction<'_>,
    name: &str,
    new: &NewVersion<'_>,
) -> Result<i64, TxError> {
    let now = now_ms();
    tx.execute(
        "UPDATE registered_models SET last_updated_time = ?1 WHERE name = ?2 AND workspace = ?3",
        params![now, name, WORKSPACE],
    )?;
    let max: Option<i64> = tx.query_row(
        "SELECT max(version) FROM model_versions WHERE name = ?1 AND workspace = ?2",
        params![name, WORKSPACE],
        |r| r.get(0),
    )?;
    let version = max.unwrap_or(0) + 1;
    tx.execute(
        "INSERT INTO model_versions (name, version, creation_time, last_updated_time, \
         description, user_id, current_stage, source, run_id, status, status_message, run_link, \
         storage_location, workspace) VALUES (?1, ?2, ?3, ?3, ?4, NULL, 'None', ?5, ?6, 'READY', \
         NULL, NULL, ?7, ?8)",
        params![
            name,
            version,
            now,
            new.description,
            new.source,
            new.run_id,
            new.storage_location,
            WORKSPACE
        ],
    )?;
    for (key, value) in new.tags {
        tx.execute(
            "INSERT INTO model_version_tags (\"key\", value, name, version, workspace) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key, value, name, version, WORKSPACE],
        )?;
    }
    Ok(version)
}

/// Registers logged model `model_id` as a new version of `name` (created if absent), and
/// records it in the model's `mlflow.modelVersions` tag; returns the version.
///
/// # Errors
///
/// An invalid name, a name taken by a prompt, or an unknown model.
pub(super) fn register_model_version(
    tx: &Transaction<'_>,
    name: &str,
    model_id: &str,
    run_id: &str,
) -> Result<String, TxError> {
    const OP: &str = "model-versions/create";
    validate::registered_model_name(OP, name)?;
    let model = logged_model::stored(tx, model_id)?;
    match find(tx, name)? {
        Some(found) if found.is_prompt => {
            return Err(invalid(
                OP,
                format!("`{name}` is a prompt in the Prompt Registry; register the model under another name"),
            )
            .into());
        }
        Some(_) => {}
        None => create(tx, name, None, &[])?,
    }
    let source = format!("models:/{model_id}");
    let run_id = (!run_id.is_empty())
        .then_some(run_id)
        .or(model.source_run_id.as_deref());
    let version = create_version(
        tx,
        name,
        &NewVersion {
            source: &source,
            storage_location: &model.artifact_location,
            run_id,
            description: None,
            tags: &[],
        },
    )?;
    logged_model::add_model_version(tx, model_id, name, version)?;
    Ok(version.to_string())
}

/// Points `alias` of `name` at `version` (replacing where it pointed before).
///
/// # Errors
///
/// An invalid or reserved alias, or an unknown version.
pub(super) fn set_alias(
    tx: &Transaction<'_>,
    name: &str,
    alias: &str,
    version: &str,
) -> Result<(), TxError> {
    const OP: &str = "registered-models/alias";
    validate::registered_model_name(OP, name)?;
    validate::alias(alias)?;
    let number = validate::version(OP, name, version)?;
    if !version_exists(tx, name, number)? {
        return Err(not_found(format!("version {number} of registered model `{name}`")).into());
    }
    tx.execute(
        "INSERT INTO registered_model_aliases (alias, version, name, workspace) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (workspace, name, alias) DO UPDATE SET version = excluded.version",
        params![alias, number, name, WORKSPACE],
    )?;
    Ok(())
}

/// MLflow's stage for a deleted version (`STAGE_DELETED_INTERNAL`): the row stays, redacted.
const STAGE_DELETED: &str = "Deleted_Internal";

/// Deletes version `version` of `name` the way MLflow's SQLAlchemy registry does: aliases on it
/// removed, the row kept with stage `Deleted_Internal` and its source, run and user redacted.
///
/// # Errors
///
/// An unknown version.
pub(super) fn delete_version(
    tx: &Transaction<'_>,
    name: &str,
    version: &str,
) -> Result<(), TxError> {
    const OP: &str = "model-versions/delete";
    let number = validate::version(OP, name, version)?;
    if !version_exists(tx, name, number)? {
        return Err(not_found(format!("version {number} of registered model `{name}`")).into());
    }
    let now = now_ms();
    tx.execute(
        "DELETE FROM registered_model_aliases WHERE name = ?1 AND version = ?2 AND workspace = ?3",
        params![name, number, WORKSPACE],
    )?;
    tx.execute(
        "UPDATE model_versions SET current_stage = ?1, last_updated_time = ?2, description = NULL, \
         user_id = NULL, source = 'REDACTED-SOURCE-PATH', run_id = 'REDACTED-RUN-ID', \
         run_link = 'REDACTED-RUN-LINK', status_message = NULL \
         WHERE name = ?3 AND version = ?4 AND workspace = ?5",
        params![STAGE_DELETED, now, name, number, WORKSPACE],
    )?;
    tx.execute(
        "UPDATE registered_models SET last_updated_time = ?1 WHERE name = ?2 AND workspace = ?3",
        params![now, name, WORKSPACE],
    )?;
    Ok(())
}

/// Whether version `version` of `name` exists (and is not deleted).
pub(super) fn version_exists(
    tx: &Transaction<'_>,
    name: &str,
    version: i64,
) -> Result<bool, TxError> {
    Ok(tx
        .query_row(
            "SELECT 1 FROM model_versions WHERE name = ?1 AND version = ?2 AND workspace = ?3 \
             AND current_stage != ?4",
            params![name, version, WORKSPACE, STAGE_DELETED],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The version `alias` of `name` points at, if any.
pub(super) fn alias_version(
    tx: &Transaction<'_>,
    name: &str,
    alias: &str,
) -> Result<Option<i64>, TxError> {
    Ok(tx
        .query_row(
            "SELECT version FROM registered_model_aliases WHERE name = ?1 AND alias = ?2 AND workspace = ?3",
            params![name, alias, WORKSPACE],
            |r| r.get(0),
        )
        .optional()?)
}

/// The newest version of `name` that is not deleted, if any.
pub(super) fn latest_version(tx: &Transaction<'_>, name: &str) -> Result<Option<i64>, TxError> {
    Ok(tx.query_row(
        "SELECT max(version) FROM model_versions WHERE name = ?1 AND workspace = ?2 \
         AND current_stage != ?3",
        params![name, WORKSPACE, STAGE_DELETED],
        |r| r.get(0),
    )?)
}
