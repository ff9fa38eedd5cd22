//! Artifact locations as MLflow writes them in a SQLite store (plain absolute paths:
//! `<root>/<exp_id>`, `<root>/<exp_id>/<run_id>/artifacts`,
//! `<root>/<exp_id>/models/<model_id>/artifacts`) and the atomic copy of a model's files
//! into its location: everything goes into a hidden sibling directory first, which is renamed
//! into place only when every file is copied and synced, so a crash never leaves a
//! half-filled artifact directory.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use crate::store::StoreError;

use super::stamp::uuid4_hex;

/// `base` with `parts` appended as path segments (MLflow's `append_to_uri_path` for a path
/// or a URI without a query).
pub(super) fn append(base: &str, parts: &[&str]) -> String {
    let mut out = base.trim_end_matches('/').to_owned();
    for part in parts {
        out.push('/');
        out.push_str(part.trim_matches('/'));
    }
    out
}

/// The local directory an artifact location names: an absolute path (what MLflow writes for
/// a local store) or a `file:` URI. `None` for a remote location (`mlflow-artifacts:/…`,
/// `s3://…`), which a SQLite store cannot write.
pub(super) fn local_dir(location: &str) -> Option<PathBuf> {
    if let Some(rest) = location.strip_prefix("file:") {
        let path = match rest.strip_prefix("//") {
            Some(after) => {
                // `file://host/path`: only an empty host or localhost is local.
                let slash = after.find('/')?;
                let (host, path) = after.split_at(slash);
                if !host.is_empty() && host != "localhost" {
                    return None;
                }
                path
            }
            None => rest,
        };
        return Some(PathBuf::from(percent_decode(path)?));
    }
    let path = Path::new(location);
    path.is_absolute().then(|| path.to_path_buf())
}

/// `%XX` escapes decoded (as Python's `url2pathname`); `None` if the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A [`StoreError::Io`] for `path`.
fn io_error(action: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

/// Every regular file under `dir` (symbolic links to files followed), as paths relative to
/// `dir` with their sizes, sorted.
///
/// # Errors
///
/// [`StoreError::Io`] when a directory cannot be read, or for a link to a directory (which
/// could loop).
pub(super) fn list_files(dir: &Path) -> Result<Vec<(PathBuf, u64)>, StoreError> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let abs = dir.join(&rel);
        let entries = fs::read_dir(&abs).map_err(|e| io_error("read directory", &abs, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("read directory", &abs, e))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| io_error("read", &path, e))?;
            let child = rel.join(entry.file_name());
            if kind.is_dir() {
                pending.push(child);
                continue;
            }
            let meta = fs::metadata(&path).map_err(|e| io_error("read", &path, e))?;
            if meta.is_file() {
                files.push((child, meta.len()));
            } else if meta.is_dir() {
                return Err(io_error(
                    "copy",
                    &path,
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a symbolic link to a directory is not copied; copy its contents instead",
                    ),
                ));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Copies the `files` (from [`list_files`]) under `src` into the new directory `dest`,
/// atomically: into a hidden sibling, then renamed. `progress(done, total)` is called after
/// each file.
///
/// # Errors
///
/// [`StoreError::Io`] naming the file or directory that failed; `dest` already holding files
/// is an error (artifacts are uploaded once). The temporary directory is removed on failure.
pub(super) async fn publish(
    src: &Path,
    files: &[(PathBuf, u64)],
    dest: &Path,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<(), StoreError> {
    let (parent, name) = match (dest.parent(), dest.file_name()) {
        (Some(parent), Some(name)) => (parent, name.to_string_lossy()),
        _ => {
            return Err(io_error(
                "publish",
                dest,
                io::Error::new(io::ErrorKind::InvalidInput, "not a directory path"),
            ));
        }
    };
    if tokio::fs::symlink_metadata(dest).await.is_ok() {
        // Rename replaces an empty directory but not a full one; say so plainly.
        if tokio::fs::remove_dir(dest).await.is_err() {
            return Err(io_error(
                "publish",
                dest,
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "the model's artifact directory already holds files",
                ),
            ));
        }
    }
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|e| io_error("create directory", parent, e))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", &uuid4_hex()[..12]));
    let result = copy_into(src, files, &tmp, progress).await;
    let result = match result {
        Ok(()) => tokio::fs::rename(&tmp, dest)
            .await
            .map_err(|e| io_error("rename", &tmp, e)),
        Err(err) => Err(err),
    };
    if result.is_err() {
        // Best effort: the failure being reported matters more than a leftover temp dir.
        let _ = tokio::fs::remove_dir_all(&tmp).await;
        return result;
    }
    sync_dir(parent).await
}

async fn copy_into(
    src: &Path,
    files: &[(PathBuf, u64)],
    tmp: &Path,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<(), StoreError> {
    tokio::fs::create_dir(tmp)
        .await
        .map_err(|e| io_error("create directory", tmp, e))?;
    let total: u64 = files.iter().map(|(_, size)| size).sum();
    let mut done = 0u64;
    for (rel, _) in files {
        let from = src.join(rel);
        let to = tmp.join(rel);
        if let Some(dir) = to.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| io_error("create directory", dir, e))?;
        }
        let copied = tokio::fs::copy(&from, &to)
            .await
            .map_err(|e| io_error("copy", &from, e))?;
        // Synced before the rename publishes it: READY must never point at lost data.
        let file = tokio::fs::File::open(&to)
            .await
            .map_err(|e| io_error("open", &to, e))?;
        file.sync_all()
            .await
            .map_err(|e| io_error("sync", &to, e))?;
        done += copied;
        progress(done, total.max(done));
    }
    Ok(())
}

/// Makes a rename in `dir` durable (directory fsync; a no-op where unsupported).
async fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let owned = dir.to_path_buf();
    let outcome = tokio::task::spawn_blocking(move || match fs::File::open(&owned) {
        Ok(handle) => handle.sync_all(),
        // Some platforms cannot open a directory for syncing.
        Err(_) => Ok(()),
    })
    .await;
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(io_error("sync", dir, e)),
        Err(join) => Err(io_error("sync", dir, io::Error::other(join.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_joins_segments_like_mlflow() {
        assert_eq!(
            append("/tmp/ref/mlruns/1", &["abc", "artifacts"]),
            "/tmp/ref/mlruns/1/abc/artifacts"
        );
        assert_eq!(append("/root/", &["0"]), "/root/0");
        assert_eq!(
            append("mlflow-artifacts:/1", &["models", "m-1", "artifacts"]),
            "mlflow-artifacts:/1/models/m-1/artifacts"
        );
    }

    #[test]
    fn local_dir_accepts_paths_and_file_uris_only() {
        assert_eq!(local_dir("/a/b"), Some(PathBuf::from("/a/b")));
        assert_eq!(local_dir("file:///a/b%20c"), Some(PathBuf::from("/a/b c")));
        assert_eq!(local_dir("file:/a/b"), Some(PathBuf::from("/a/b")));
        assert_eq!(local_dir("file://localhost/a"), Some(PathBuf::from("/a")));
        assert_eq!(local_dir("file://remote/a"), None);
        assert_eq!(local_dir("mlflow-artifacts:/1/models"), None);
        assert_eq!(local_dir("s3://bucket/x"), None);
        assert_eq!(local_dir("relative/x"), None);
    }

    #[tokio::test]
    async fn publish_copies_the_tree_and_reports_progress() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("code/helpers")).unwrap();
        fs::write(src.join("MLmodel"), "flavors: {}\n").unwrap();
        fs::write(src.join("code/helpers/util.py"), "x = 1\n").unwrap();
        let files = list_files(&src).unwrap();
        assert_eq!(
            files,
            vec![
                (PathBuf::from("MLmodel"), 12),
                (PathBuf::from("code/helpers/util.py"), 6)
            ]
        );
        let dest = tmp.path().join("mlruns/1/models/m-x/artifacts");
        let calls = std::sync::Mutex::new(Vec::new());
        publish(&src, &files, &dest, &|done, total| {
            calls.lock().unwrap().push((done, total))
        })
        .await
        .unwrap();
        assert_eq!(
            fs::read_to_string(dest.join("code/helpers/util.py")).unwrap(),
            "x = 1\n"
        );
        assert_eq!(*calls.lock().unwrap(), vec![(12, 18), (18, 18)]);
        let leftovers: Vec<_> = fs::read_dir(dest.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("artifacts")]);
    }

    #[tokio::test]
    async fn publish_refuses_a_full_destination_and_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("a.txt"), "a").unwrap();
        let dest = tmp.path().join("models/m-x/artifacts");
        fs::create_dir_all(&dest).unwrap();
        fs::write(dest.join("old.txt"), "old").unwrap();
        let files = list_files(&src).unwrap();
        let err = publish(&src, &files, &dest, &|_, _| {}).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Io {
                    action: "publish",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(fs::read_dir(dest.parent().unwrap()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn publish_of_missing_source_leaves_no_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("models/m-x/artifacts");
        let files = vec![(PathBuf::from("gone.txt"), 3)];
        let err = publish(&tmp.path().join("nope"), &files, &dest, &|_, _| {})
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Io { action: "copy", .. }),
            "{err:?}"
        );
        assert!(!dest.exists());
        assert_eq!(fs::read_dir(dest.parent().unwrap()).unwrap().count(), 0);
    }
}
