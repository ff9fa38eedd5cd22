//! Uploading a local directory through MLflow's artifact proxy.
//!
//! Owns the mapping `mlflow-artifacts:/<rel>` → `PUT /api/2.0/mlflow-artifacts/artifacts/<rel>`
//! (what the Python client does for a server started with `--serve-artifacts`, the default),
//! the walk of the local directory, and bounded concurrent uploads with progress. Does not own
//! the HTTP retries (`http.rs`): a file that fails after them fails the whole upload, and the
//! uploads still in flight are dropped.

use std::{
    path::{Component, Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};

use super::http::Transport;
use crate::store::StoreError;

/// Files (and directory listings) transferred at once: a model is mostly small files (the
/// crate snapshot), so latency, not bandwidth, bounds a transfer; 16 hides it without swamping
/// a small server (a default `mlflow server` handles that many at once).
pub(super) const TRANSFER_CONCURRENCY: usize = 16;
/// The artifact proxy's route.
pub(super) const ARTIFACTS_ROUTE: &str = "api/2.0/mlflow-artifacts/artifacts";
/// The scheme of artifacts served by the tracking server.
const SCHEME: &str = "mlflow-artifacts:";

/// A file to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LocalFile {
    /// Where it is.
    pub(super) path: PathBuf,
    /// Its path under the uploaded directory, `/`-separated.
    pub(super) relative: String,
    /// Its size when the directory was walked.
    pub(super) size: u64,
}

/// The proxy path of an `mlflow-artifacts:` URI: `mlflow-artifacts:/1/models/m-x/artifacts`
/// (or `mlflow-artifacts://host:port/1/…`) → `1/models/m-x/artifacts`.
///
/// # Errors
///
/// [`StoreError::Mlflow`] (`UNSUPPORTED_ARTIFACT_URI`) for any other scheme: the server stores
/// artifacts somewhere chainlog cannot write through it.
pub(super) fn proxy_path(artifact_uri: &str) -> Result<String, StoreError> {
    let unsupported = || StoreError::Mlflow {
        operation: "artifact upload".to_owned(),
        code: "UNSUPPORTED_ARTIFACT_URI".to_owned(),
        message: format!(
            "artifact location `{artifact_uri}` is not served by the tracking server; \
             start `mlflow server` with artifact serving on (the default, --serve-artifacts)"
        ),
    };
    let rest = artifact_uri.strip_prefix(SCHEME).ok_or_else(unsupported)?;
    let path = match rest.strip_prefix("//") {
        // An authority names the server; the path after it is what the proxy serves.
        Some(authority_and_path) => authority_and_path
            .split_once('/')
            .map_or("", |(_, path)| path),
        None => rest,
    };
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Err(unsupported());
    }
    Ok(path.to_owned())
}

/// Every regular file under `dir` (symlinks followed), sorted by relative path.
///
/// # Errors
///
/// [`StoreError::Io`] when the directory or an entry cannot be read, or a name is not UTF-8
/// (MLflow artifact paths are strings).
pub(super) fn walk(dir: &Path) -> Result<Vec<LocalFile>, StoreError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).map_err(|source| io("read", &current, source))?;
        for entry in entries {
            let entry = entry.map_err(|source| io("read", &current, source))?;
            let path = entry.path();
            // `metadata` follows symlinks: a linked file is uploaded as a file.
            let meta = std::fs::metadata(&path).map_err(|source| io("read", &path, source))?;
            if meta.is_dir() {
                pending.push(path);
            } else if meta.is_file() {
                let relative = relative_path(dir, &path)?;
                files.push(LocalFile {
                    path,
                    relative,
                    size: meta.len(),
                });
            }
        }
    }
    files.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(files)
}

/// Uploads `files` under the proxy path `root`, [`TRANSFER_CONCURRENCY`] at a time, calling
/// `progress(done_bytes, total_bytes)` as each completes.
pub(super) async fn upload_all(
    transport: &Transport,
    root: &str,
    files: Vec<LocalFile>,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<(), StoreError> {
    let total: u64 = files.iter().map(|file| file.size).sum();
    let done = AtomicU64::new(0);
    stream::iter(files)
        .map(|file| upload_one(transport, root, file))
        .buffer_unordered(TRANSFER_CONCURRENCY)
        .try_for_each(|size| {
            let now = done.fetch_add(size, Ordering::Relaxed) + size;
            progress(now.min(total), total);
            futures::future::ready(Ok(()))
        })
        .await
}

/// Uploads one file; returns the bytes sent.
async fn upload_one(transport: &Transport, root: &str, file: LocalFile) -> Result<u64, StoreError> {
    let bytes = tokio::fs::read(&file.path)
        .await
        .map_err(|source| io("read", &file.path, source))?;
    let size = bytes.len() as u64;
    let path = format!("{ARTIFACTS_ROUTE}/{root}/{}", file.relative);
    let operation = format!("artifact upload of `{}`", file.relative);
    transport
        .put_bytes(&operation, &path, Bytes::from(bytes))
        .await?;
    tracing::debug!(file = %file.relative, size, "artifact uploaded");
    Ok(size)
}

fn relative_path(dir: &Path, path: &Path) -> Result<String, StoreError> {
    let not_utf8 = || {
        io(
            "upload",
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "file name is not UTF-8, which MLflow artifact paths must be",
            ),
        )
    };
    let relative = path.strip_prefix(dir).map_err(|_| not_utf8())?;
    let mut parts = Vec::new();
    for component in relative.components() {
        if let Component::Normal(part) = component {
            parts.push(part.to_str().ok_or_else(not_utf8)?);
        }
    }
    Ok(parts.join("/"))
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_path_strips_scheme_and_authority() -> Result<(), StoreError> {
        assert_eq!(
            proxy_path("mlflow-artifacts:/1/models/m-abc/artifacts")?,
            "1/models/m-abc/artifacts"
        );
        assert_eq!(
            proxy_path("mlflow-artifacts://mlflow.internal:5000/1/models/m-abc/artifacts/")?,
            "1/models/m-abc/artifacts"
        );
        Ok(())
    }

    #[test]
    fn non_proxied_artifact_location_is_refused() {
        for uri in [
            "s3://bucket/1/models/m-abc",
            "file:///tmp/mlruns/1",
            "mlflow-artifacts:/",
        ] {
            let err = proxy_path(uri).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains("UNSUPPORTED_ARTIFACT_URI")),
                "{uri}: {err:?}"
            );
        }
    }

    #[test]
    fn walk_finds_nested_files_with_slash_paths() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("code/src"))?;
        std::fs::write(dir.path().join("MLmodel"), "flavors: {}\n")?;
        std::fs::write(dir.path().join("code/src/chain.rs"), "fn main() {}\n")?;
        std::fs::create_dir_all(dir.path().join("empty"))?;
        let files = walk(dir.path())?;
        let found: Vec<(&str, u64)> = files
            .iter()
            .map(|f| (f.relative.as_str(), f.size))
            .collect();
        assert_eq!(found, [("MLmodel", 12), ("code/src/chain.rs", 13)]);
        Ok(())
    }

    #[test]
    fn walk_of_missing_dir_names_it() {
        let err = walk(Path::new("/nonexistent/chainlog-artifacts"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("failed to read `/nonexistent/chainlog-artifacts`")
        );
    }
}
