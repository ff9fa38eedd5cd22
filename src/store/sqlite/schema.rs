//! MLflow's SQLite schema: creating it in a new database exactly as `mlflow db upgrade` (3.17.2)
//! leaves it, and refusing a database at any other alembic revision.
//!
//! `schema.sql` is the DDL dumped once from a database `mlflow db upgrade` made (its header says
//! how). Besides the DDL the migration writes two rows, inserted here: `alembic_version` and
//! the `default` workspace. MLflow's store then adds the `Default` experiment on first use.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior, params};

use crate::store::StoreError;

use super::{
    error::{TxError, database},
    experiment,
};

/// Every DDL statement of MLflow 3.17.2's SQLite schema, in creation order.
pub(super) const SCHEMA_SQL: &str = include_str!("schema.sql");

/// The alembic revision `schema.sql` is at (mlflow 3.17.2's head).
pub(super) const REVISION: &str = "dc11669786a5";

/// The row MLflow's workspace migration inserts.
const DEFAULT_WORKSPACE_DESCRIPTION: &str = "Default workspace for legacy resources";

/// Makes the database behind `conn` ready: an empty database (a new or zero-length file) gets
/// MLflow's schema, its two migration rows and the `Default` experiment; an existing one must
/// be an MLflow database at [`REVISION`] (its `Default` experiment is added if it has no
/// experiment, as MLflow does). One immediate transaction, so two processes opening the same
/// new file do not both create it.
///
/// # Errors
///
/// [`StoreError::UnsupportedSchema`] for another revision; [`StoreError::Database`] for a
/// file that is not SQLite, an SQLite database that is not MLflow's, or a failed write.
pub(super) fn prepare(
    conn: &mut Connection,
    path: &Path,
    artifact_root: &str,
) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| database(path, &e))?;
    let run = || -> Result<(), TxError> {
        let objects: i64 = tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if objects == 0 {
            tx.execute_batch(SCHEMA_SQL)?;
            tx.execute(
                "INSERT INTO alembic_version (version_num) VALUES (?1)",
                params![REVISION],
            )?;
            tx.execute(
                "INSERT INTO workspaces (name, description) VALUES (?1, ?2)",
                params![experiment::WORKSPACE, DEFAULT_WORKSPACE_DESCRIPTION],
            )?;
        } else {
            check_revision(&tx, path)?;
        }
        experiment::ensure_default(&tx, artifact_root)
    };
    run().map_err(|e| e.into_store(path))?;
    tx.commit().map_err(|e| database(path, &e))
}

/// Checks that the database is MLflow's, at [`REVISION`].
fn check_revision(conn: &Connection, path: &Path) -> Result<(), TxError> {
    let has_alembic: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'",
        [],
        |r| r.get(0),
    )?;
    if has_alembic == 0 {
        return Err(StoreError::Database {
            path: path.display().to_string(),
            message: "not an MLflow tracking database (it has tables but no `alembic_version`); \
                      point the tracking URI at an MLflow database or a new file"
                .to_owned(),
        }
        .into());
    }
    let mut stmt = conn.prepare("SELECT version_num FROM alembic_version")?;
    let found = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    if found.len() == 1 && found.first().is_some_and(|v| v == REVISION) {
        return Ok(());
    }
    Err(StoreError::UnsupportedSchema {
        path: path.display().to_string(),
        found: if found.is_empty() {
            "(none: `alembic_version` is empty)".to_owned()
        } else {
            found.join(", ")
        },
        supported: REVISION.to_owned(),
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(path: &Path) -> Connection {
        let mut conn = Connection::open(path).unwrap();
        prepare(&mut conn, path, "/data/mlruns").unwrap();
        conn
    }

    #[test]
    fn new_database_gets_mlflow_schema_revision_and_default_experiment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mlflow.db");
        let conn = prepared(&path);
        let rev: String = conn
            .query_row("SELECT version_num FROM alembic_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rev, "dc11669786a5");
        let (id, name, location, stage, workspace): (i64, String, String, String, String) = conn
            .query_row(
                "SELECT experiment_id, name, artifact_location, lifecycle_stage, workspace FROM experiments",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!((id, name.as_str()), (0, "Default"));
        assert_eq!(location, "/data/mlruns/0");
        assert_eq!((stage.as_str(), workspace.as_str()), ("active", "default"));
        let workspace: String = conn
            .query_row(
                "SELECT description FROM workspaces WHERE name = 'default'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(workspace, "Default workspace for legacy resources");
    }

    #[test]
    fn new_database_holds_every_statement_of_schema_sql() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mlflow.db");
        let conn = prepared(&path);
        let mut stmt = conn
            .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")
            .unwrap();
        let stored: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(stored.len(), 150);
        for sql in &stored {
            assert!(
                SCHEMA_SQL.contains(sql.as_str()),
                "not in schema.sql: {sql}"
            );
        }
    }

    #[test]
    fn reopening_keeps_one_default_experiment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mlflow.db");
        drop(prepared(&path));
        let conn = prepared(&path);
        let count: i64 = conn
            .query_row("SELECT count(*) FROM experiments", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 1);
    }

    #[test]
    fn another_revision_is_refused_naming_file_and_both_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mlflow.db");
        let conn = prepared(&path);
        conn.execute(
            "UPDATE alembic_version SET version_num = '75868b020152'",
            [],
        )
        .unwrap();
        drop(conn);
        let mut conn = Connection::open(&path).unwrap();
        let err = prepare(&mut conn, &path, "/data/mlruns").unwrap_err();
        match &err {
            StoreError::UnsupportedSchema {
                path: p,
                found,
                supported,
            } => {
                assert_eq!(p, &path.display().to_string());
                assert_eq!(found, "75868b020152");
                assert_eq!(supported, "dc11669786a5");
            }
            other => panic!("expected UnsupportedSchema, got {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("75868b020152") && text.contains("dc11669786a5"),
            "{text}"
        );
    }

    #[test]
    fn sqlite_database_of_another_program_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        let mut conn = Connection::open(&path).unwrap();
        conn.execute("CREATE TABLE notes (body TEXT)", []).unwrap();
        let err = prepare(&mut conn, &path, "/data/mlruns").unwrap_err();
        assert!(
            err.to_string().contains("not an MLflow tracking database"),
            "{err}"
        );
    }

    #[test]
    fn file_that_is_not_sqlite_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.db");
        std::fs::write(
            &path,
            "these are not the pages you are looking for, ".repeat(40),
        )
        .unwrap();
        let mut conn = Connection::open(&path).unwrap();
        let err = prepare(&mut conn, &path, "/data/mlruns").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("not an SQLite database") && text.contains("notes.db"),
            "{text}"
        );
    }
}
