//! TEMPORARY STUB: replaced by the real cassette module.
#![allow(missing_docs, dead_code, clippy::unused_async)]
use serde_json::Value;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};
#[derive(Debug, thiserror::Error)]
pub enum CassetteError {
    #[error("stub")]
    Stub,
}
#[derive(Debug)]
pub(crate) struct Cassette {
    path: PathBuf,
}
#[derive(Debug)]
pub(crate) struct CassetteMiss;
impl std::fmt::Display for CassetteMiss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "miss")
    }
}
#[derive(Debug, Clone)]
pub(crate) struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}
#[derive(Debug, Clone)]
pub(crate) enum RecordedBody {
    Json(Value),
    Sse(Vec<SseEvent>),
    Text(String),
}
#[derive(Debug, Clone)]
pub(crate) struct RecordedResponse {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: RecordedBody,
}
impl Cassette {
    pub(crate) fn load(path: &Path) -> Result<Self, CassetteError> {
        Ok(Self {
            path: path.to_owned(),
        })
    }
    pub(crate) fn empty(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
    pub(crate) fn lookup(
        &self,
        _m: &str,
        _p: &str,
        _b: &Value,
    ) -> Result<(usize, &RecordedResponse), CassetteMiss> {
        Err(CassetteMiss)
    }
    pub(crate) fn record(
        &mut self,
        _m: &str,
        _p: &str,
        _b: &Value,
        _r: RecordedResponse,
        _s: &[&str],
    ) -> Result<usize, CassetteError> {
        Err(CassetteError::Stub)
    }
}
pub(crate) async fn forward(
    _h: &reqwest::Client,
    _u: &str,
    _m: &str,
    _p: &str,
    _b: bytes::Bytes,
    _k: Option<&secrecy::SecretString>,
) -> Result<RecordedResponse, CassetteError> {
    Err(CassetteError::Stub)
}
