//! [`OutputLock`]: one batch at a time per output file. The lock is an advisory file lock
//! (std's `File::try_lock`, `flock` on Unix) on a sidecar `<output>.lock` that holds the
//! owner's process id, so a second run refuses and names the process that holds it. The lock
//! dies with its process (`kill -9` included), so a stale file never blocks a resume.

use std::{
    fs::{File, OpenOptions, TryLockError},
    io::{Read, Seek, Write},
    path::{Path, PathBuf},
};

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "`{output}` is being written by another batch (process {holder}, lock file `{lock}`); \
         wait for it to finish or stop it, then run again to resume"
    )]
    Held {
        /// The output file.
        output: String,
        /// The lock file.
        lock: String,
        /// The holder's process id as it wrote it (`unknown` if it could not be read).
        holder: String,
    },
    /// The lock file could not be opened or written.
    #[error("failed to lock `{lock}`")]
    Io {
        /// The lock file.
        lock: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// `path` with symlinks and `.`/`..` resolved: the file itself if it exists, else its folder's
/// real path joined with its name (as given when even the folder cannot be resolved).
pub(crate) fn real_path(path: &Path) -> PathBuf {
    if let Ok(real) = path.canonicalize() {
        return real;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            parent
                .canonicalize()
                .map_or_else(|_| path.to_path_buf(), |dir| dir.join(name))
        }
        _ => path.to_path_buf(),
    }
}

/// The lock on one output file, held until dropped (the lock file is then removed).
#[derive(Debug)]
pub struct OutputLock {
    file: File,
    path: PathBuf,
}

impl OutputLock {
    /// Takes the lock on `output`, or refuses naming the process that holds it.
    ///
    /// # Errors
    ///
    /// [`LockError::Held`] when another process holds it; [`LockError::Io`] when the lock
    /// file cannot be made.
    pub fn acquire(output: &Path) -> Result<Self, LockError> {
        // The lock belongs to the file, not to the name it was given: a symlink or another
        // spelling of the same path takes the same lock.
        let output = &real_path(output);
        let mut name = output.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let io = |source| LockError::Io {
            lock: path.display().to_string(),
            source,
        };
        // A holder removes the file as it finishes: if the file locked is no longer the one at
        // the path, lock again (at most a few times; each retry means another run finished).
        for _ in 0..8 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    return Err(LockError::Held {
                        output: output.display().to_string(),
                        lock: path.display().to_string(),
                        holder: if holder.is_empty() {
                            "unknown".to_owned()
                        } else {
                            holder.to_owned()
                        },
                    });
                }
                Err(TryLockError::Error(source)) => return Err(io(source)),
            }
            if !same_file(&file, &path) {
                continue;
            }
            file.set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| writeln!(file, "{}", std::process::id()))
                .and_then(|()| file.flush())
                .map_err(io)?;
            return Ok(Self { file, path });
        }
        Err(io(std::io::Error::other(
            "the lock file kept being replaced",
        )))
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Remove while still locked, so no one locks a file that is about to vanish unseen
        // (a waiter that opened it sees it is gone and opens the new one).
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// Whether `file` is still the file at `path`.
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_free_after_drop() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.jsonl");
        let lock = OutputLock::acquire(&output).unwrap();
        let err = OutputLock::acquire(&output).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!("process {}", std::process::id())),
            "{message}"
        );
        assert!(message.contains("out.jsonl"), "{message}");
        drop(lock);
        assert!(!dir.path().join("out.jsonl.lock").exists());
        drop(OutputLock::acquire(&output).unwrap());
    }

    /// A symlink to the output, or another spelling of its path, is the same file: one lock.
    #[test]
    fn a_symlink_or_another_spelling_takes_the_same_lock() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.jsonl");
        std::fs::write(&output, "").unwrap();
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&output, &link).unwrap();
        let lock = OutputLock::acquire(&output).unwrap();
        assert!(
            OutputLock::acquire(&link).is_err(),
            "the symlink took a lock of its own"
        );
        let dotted = dir.path().join(".").join("out.jsonl");
        assert!(OutputLock::acquire(&dotted).is_err());
        drop(lock);
        // Not yet created: the folder is resolved, the name kept.
        let fresh = dir.path().join("sub/../fresh.jsonl");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(
            real_path(&fresh),
            dir.path().canonicalize().unwrap().join("fresh.jsonl")
        );
    }
}
