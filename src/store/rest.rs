//! PLACEHOLDER — being written: the REST store (a real MLflow server).
#![allow(missing_docs)]
/// The REST store.
#[derive(Debug)]
pub struct RestStore;
