//! Moving a model's files between a local directory and wherever the tracking server keeps
//! artifacts — one transfer, whatever the location.
//!
//! Owns the [`ArtifactRepo`] trait (list / get / put of one model's files, relative to its
//! artifact root), [`open`], which picks the repository for an artifact URI — the server's
//! `mlflow-artifacts` proxy (`proxy.rs`) or the object store itself when the server does not
//! proxy artifacts (`direct.rs`: `s3://`, `gs://`, `wasbs://`, `abfss://`, `file://`) — and
//! the concurrent upload and download over any of them, [`TRANSFER_CONCURRENCY`] files at a
//! time with progress. Does not own retries: each repository retries as its transport does,
//! both with MLflow's `MLFLOW_HTTP_REQUEST_*` policy; a file that fails after them fails the whole transfer and the transfers still in
//! flight are dropped.

use std::{
    path::{Component, Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};

use super::{direct::DirectRepo, http::Transport, proxy::ProxyRepo};
use crate::store::StoreError;

/// Files (and directory listings) transferred at once: a model is mostly small files (the
/// crate snapshot), so latency, not bandwidth, bounds a transfer; 16 hides it without swamping
/// a small server (a default `mlflow server` handles that many at once).
pub(super) const TRANSFER_CONCURRENCY: usize = 16;

/// One model's artifact root, wherever it is.
#[async_trait]
pub(super) trait ArtifactRepo: Send + Sync {
    /// Every file under the root: relative, `/`-separated paths, sorted.
    async fn list_files(&self) -> Result<Vec<String>, StoreError>;
    /// The bytes of the file at `relative`.
    async fn get(&self, relative: &str) -> Result<Bytes, StoreError>;
    /// Writes `bytes` at `relative` (replacing what is there).
    async fn put(&self, relative: &str, bytes: Bytes) -> Result<(), StoreError>;
}

/// The repository of `artifact_uri`: the server's proxy for `mlflow-artifacts:`, the object
/// store itself for anything else.
///
/// # Errors
///
/// As [`ProxyRepo::new`] and [`DirectRepo::open`]: an empty proxy path, an unsupported
/// scheme, missing cloud credentials (naming the variables to set).
pub(super) fn open(
    http: &Transport,
    artifact_uri: &str,
) -> Result<Arc<dyn ArtifactRepo>, StoreError> {
    if artifact_uri.starts_with(super::proxy::SCHEME) {
        Ok(Arc::new(ProxyRepo::new(http.clone(), artifact_uri)?))
    } else {
        Ok(Arc::new(DirectRepo::open(artifact_uri, http.retry())?))
    }
}

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

/// Uploads `files` into `repo`, [`TRANSFER_CONCURRENCY`] at a time, calling
/// `progress(done_bytes, total_bytes)` as each completes.
pub(super) async fn upload_all(
    repo: &dyn ArtifactRepo,
    files: Vec<LocalFile>,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<(), StoreError> {
    let total: u64 = files.iter().map(|file| file.size).sum();
    let done = AtomicU64::new(0);
    stream::iter(files)
        .map(|file| upload_one(repo, file))
        .buffer_unordered(TRANSFER_CONCURRENCY)
        .try_for_each(|size| {
            let now = done.fetch_add(size, Ordering::Relaxed) + size;
            progress(now.min(total), total);
            futures::future::ready(Ok(()))
        })
        .await
}

/// Uploads one file; returns the bytes sent.
async fn upload_one(repo: &dyn ArtifactRepo, file: LocalFile) -> Result<u64, StoreError> {
    let bytes = tokio::fs::read(&file.path)
        .await
        .map_err(|source| io("read", &file.path, source))?;
    let size = bytes.len() as u64;
    repo.put(&file.relative, Bytes::from(bytes)).await?;
    tracing::debug!(file = %file.relative, size, "artifact uploaded");
    Ok(size)
}

/// Every file of `repo` into `dest` (created), [`TRANSFER_CONCURRENCY`] at a time; `what`
/// names the artifacts when there are none.
pub(super) async fn download_all(
    repo: &dyn ArtifactRepo,
    dest: &Path,
    what: impl FnOnce() -> String,
) -> Result<(), StoreError> {
    let files = repo.list_files().await?;
    if files.is_empty() {
        return Err(StoreError::NotFound { what: what() });
    }
    download_files(repo, files, dest).await
}

/// Only `files` of `repo` (relative, `/`-separated) into `dest` (created),
/// [`TRANSFER_CONCURRENCY`] at a time, without listing the rest; a file the repository does
/// not have is left out (whoever asked for it names it as missing). A path that could leave
/// `dest` is refused before anything is fetched.
pub(super) async fn download_files(
    repo: &dyn ArtifactRepo,
    files: Vec<String>,
    dest: &Path,
) -> Result<(), StoreError> {
    if let Some(unsafe_path) = files.iter().find(|file| !is_safe_relative(file)) {
        return Err(StoreError::Mlflow {
            operation: "artifact download".to_owned(),
            code: "INVALID_PARAMETER_VALUE".to_owned(),
            message: format!("artifact path `{unsafe_path}` leaves the model's artifact root"),
        });
    }
    tokio::fs::create_dir_all(dest)
        .await
        .map_err(|source| io("create directory", dest, source))?;
    stream::iter(files)
        .map(|relative| download_one(repo, relative, dest))
        .buffer_unordered(TRANSFER_CONCURRENCY)
        .try_collect::<()>()
        .await
}

async fn download_one(
    repo: &dyn ArtifactRepo,
    relative: String,
    dest: &Path,
) -> Result<(), StoreError> {
    let bytes = match repo.get(&relative).await {
        Ok(bytes) => bytes,
        Err(StoreError::NotFound { what }) => {
            tracing::debug!(what, "artifact not in the store; left out");
            return Ok(());
        }
        Err(err) => return Err(err),
    };
    let target = relative
        .split('/')
        .fold(dest.to_path_buf(), |path, part| path.join(part));
    if let Some(dir) = target.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| io("create directory", dir, source))?;
    }
    tokio::fs::write(&target, &bytes)
        .await
        .map_err(|source| io("write", &target, source))
}

/// Whether `relative` (a listed artifact path) stays inside the root it was listed under:
/// no empty, `.` or `..` segment, no backslash, not absolute.
pub(super) fn is_safe_relative(relative: &str) -> bool {
    !relative.is_empty()
        && !relative.contains('\\')
        && relative
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
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
    use std::{collections::BTreeMap, sync::Mutex};

    use super::*;

    /// An in-memory repository, to test the transfer apart from any transport.
    #[derive(Default)]
    struct MemoryRepo {
        files: Mutex<BTreeMap<String, Bytes>>,
    }

    #[async_trait]
    impl ArtifactRepo for MemoryRepo {
        async fn list_files(&self) -> Result<Vec<String>, StoreError> {
            Ok(self
                .files
                .lock()
                .map(|f| f.keys().cloned().collect())
                .unwrap_or_default())
        }
        async fn get(&self, relative: &str) -> Result<Bytes, StoreError> {
            self.files
                .lock()
                .ok()
                .and_then(|f| f.get(relative).cloned())
                .ok_or_else(|| StoreError::NotFound {
                    what: relative.to_owned(),
                })
        }
        async fn put(&self, relative: &str, bytes: Bytes) -> Result<(), StoreError> {
            if let Ok(mut files) = self.files.lock() {
                files.insert(relative.to_owned(), bytes);
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn upload_then_download_gives_the_same_tree() -> Result<(), Box<dyn std::error::Error>> {
        let src = tempfile::tempdir()?;
        std::fs::create_dir_all(src.path().join("code/src"))?;
        std::fs::write(src.path().join("MLmodel"), "flavors: {}\n")?;
        for i in 0..40 {
            std::fs::write(
                src.path().join(format!("code/src/f{i}.rs")),
                format!("// {i}\n"),
            )?;
        }
        let repo = MemoryRepo::default();
        let seen = AtomicU64::new(0);
        let files = walk(src.path())?;
        let total: u64 = files.iter().map(|f| f.size).sum();
        upload_all(&repo, files, &|done, all| {
            assert_eq!(all, total);
            seen.store(done, Ordering::Relaxed);
        })
        .await?;
        assert_eq!(seen.load(Ordering::Relaxed), total);
        let dest = tempfile::tempdir()?;
        download_all(&repo, &dest.path().join("m"), || "m".to_owned()).await?;
        assert_eq!(walk(&dest.path().join("m"))?.len(), 41);
        assert_eq!(
            std::fs::read_to_string(dest.path().join("m/code/src/f7.rs"))?,
            "// 7\n"
        );
        Ok(())
    }

    #[tokio::test]
    async fn download_of_an_empty_root_names_what_is_missing() {
        let repo = MemoryRepo::default();
        let dest = tempfile::tempdir().ok();
        let dest = dest.as_ref().map_or(Path::new("/tmp"), |d| d.path());
        let err = download_all(&repo, &dest.join("m"), || {
            "the artifacts of logged model `m-1`".to_owned()
        })
        .await
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("the artifacts of logged model `m-1` does not exist")
        );
    }

    #[test]
    fn listed_paths_that_leave_the_root_are_unsafe() {
        for good in ["MLmodel", "code/src/lib.rs", "a..b/c"] {
            assert!(is_safe_relative(good), "{good}");
        }
        for bad in ["", "../x", "a/../b", "/etc/passwd", "a//b", "a\\b", "./a"] {
            assert!(!is_safe_relative(bad), "{bad}");
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
