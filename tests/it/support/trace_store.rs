//! A tracer exporting into a fresh SQLite tracking store (MLflow's schema), and the count of
//! traces a store holds, for the tests and benches that read the stored traces back (a bench
//! includes this file by `#[path]`).

use std::path::{Path, PathBuf};

use chainlog::{
    store::{SqliteStore, TrackingStore, TrackingUri},
    trace::{TraceLayer, TraceLink, TraceSettings, Tracer},
};

/// Creates the store `dir/mlflow.db` (artifacts in `dir/mlruns`) with its `Default`
/// experiment and connects a tracer of the default settings to it: the trace layer to
/// install, the tracer (flush it before reading), and the database's path.
///
/// # Panics
///
/// If the store cannot be created or the tracer not connected.
pub async fn sqlite_tracer(dir: &Path) -> (TraceLayer, Tracer, PathBuf) {
    let db_path = dir.join("mlflow.db");
    let store = SqliteStore::open(&db_path, &dir.join("mlruns")).expect("create the SQLite store");
    let experiment = store
        .get_or_create_experiment("Default")
        .await
        .expect("the Default experiment");
    let (layer, tracer) = TraceSettings::from_lookup(false, &[], |_| None)
        .expect("default trace settings")
        .build();
    tracer
        .connect(
            &TrackingUri::Sqlite {
                db_path: db_path.clone(),
            },
            TraceLink {
                experiment_id: experiment.id,
                run_id: None,
                model_id: None,
            },
        )
        .expect("connect the tracer to the store");
    (layer.expect("tracing is on by default"), tracer, db_path)
}

/// How many traces the SQLite store `db_path` holds (rows of `trace_info`).
///
/// # Panics
///
/// If the database cannot be opened or has no `trace_info` table.
pub fn stored_traces(db_path: &Path) -> i64 {
    rusqlite::Connection::open(db_path)
        .expect("open the SQLite store")
        .query_row("SELECT count(*) FROM trace_info", [], |row| row.get(0))
        .expect("count the stored traces")
}
