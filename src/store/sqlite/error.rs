//! [`TxError`]: what the body of one transaction fails with, before [`SqliteStore`] turns it
//! into a [`StoreError`] naming the database file, and the constructors of the
//! [`StoreError`]s MLflow's own rules produce.
//!
//! [`SqliteStore`]: super::SqliteStore

use std::path::Path;

use crate::store::StoreError;

/// MLflow's error code for an operation on a deleted or finished entity (`INVALID_STATE`).
const INVALID_STATE: &str = "INVALID_STATE";

/// Why the body of a transaction failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum TxError {
    /// SQLite failed; the database path is added when this becomes a [`StoreError`].
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    /// A store-level failure, already complete.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TxError {
    /// The [`StoreError`] for this failure in the database at `path`.
    pub(super) fn into_store(self, path: &Path) -> StoreError {
        match self {
            Self::Sql(err) => database(path, &err),
            Self::Store(err) => err,
        }
    }
}

/// A [`StoreError::Database`] for `err` in the database at `path`.
pub(super) fn database(path: &Path, err: &rusqlite::Error) -> StoreError {
    let message = match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => {
            format!("not an SQLite database ({err})")
        }
        _ => err.to_string(),
    };
    StoreError::Database {
        path: path.display().to_string(),
        message,
    }
}

pub(super) use crate::store::validate::invalid;

/// MLflow refuses `operation` on an entity in the wrong state (`INVALID_STATE`).
pub(super) fn invalid_state(operation: &str, message: impl Into<String>) -> StoreError {
    refused(operation, INVALID_STATE, message)
}

/// A [`StoreError::NotFound`] for `what`.
pub(super) fn not_found(what: impl Into<String>) -> StoreError {
    StoreError::NotFound { what: what.into() }
}

fn refused(operation: &str, code: &str, message: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        operation: operation.to_owned(),
        code: code.to_owned(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_error_names_the_database_file() {
        let err = TxError::from(rusqlite::Error::QueryReturnedNoRows);
        let store = err.into_store(Path::new("/tmp/x/mlflow.db"));
        let text = store.to_string();
        assert!(text.contains("/tmp/x/mlflow.db"), "{text}");
    }

    #[test]
    fn invalid_value_reads_as_mlflow_refusal() {
        let err = invalid("runs/log-batch", "param `k` is too long");
        assert_eq!(
            err.to_string(),
            "runs/log-batch: param `k` is too long (INVALID_PARAMETER_VALUE)"
        );
    }
}
