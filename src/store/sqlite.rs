//! PLACEHOLDER — being written: the SQLite store (MLflow's schema).
#![allow(missing_docs, clippy::unused_async)]
/// The SQLite store.
#[derive(Debug)]
pub struct SqliteStore;
