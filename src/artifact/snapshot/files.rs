//! Which files of one package folder go into a crate snapshot: all of them, as `cargo package`
//! takes them — in a git work tree the files git tracks or would track (not ignored) — never
//! `target/`, dotfiles, MLflow store output (`mlruns/`, `mlflow.db`) or symlinks (these are
//! reported apart, for the caller to refuse or skip), never another package's folder.

use std::{
    fs,
    path::{Component, Path, PathBuf},
};

use crate::artifact::{ArtifactError, provenance::git};

/// The files of one package folder a snapshot takes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Listing {
    /// Regular files: `/`-separated paths relative to the folder, sorted.
    pub files: Vec<String>,
    /// Symlinks that the rules would otherwise take, the same way; the caller decides
    /// whether to skip them (the crate itself) or refuse those leaving the folder
    /// (dependencies).
    pub symlinks: Vec<String>,
}

/// The files of the snapshot of the package at `dir`.
///
/// # Errors
///
/// [`ArtifactError::Io`] when a folder cannot be listed or a file's type read.
pub(super) fn list(dir: &Path) -> Result<Listing, ArtifactError> {
    let candidates = match tracked(dir) {
        Some(tracked) => tracked,
        None => walk_all(dir)?,
    };
    // A folder below with its own Cargo.toml is another package: left out, as `cargo package`
    // leaves it (the plan adds the members and path dependencies among them).
    let nested: Vec<PathBuf> = candidates
        .iter()
        .filter(|path| path.file_name().is_some_and(|name| name == "Cargo.toml"))
        .filter_map(|path| path.parent())
        .filter(|parent| !parent.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .collect();
    let mut listing = Listing::default();
    for relative in candidates {
        if !allowed(&relative) || nested.iter().any(|package| relative.starts_with(package)) {
            continue;
        }
        let path = dir.join(&relative);
        let bucket = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => &mut listing.files,
            Ok(meta) if meta.file_type().is_symlink() => &mut listing.symlinks,
            // A tracked file deleted from the work tree, a submodule.
            Ok(_) => continue,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ArtifactError::Io { path, source }),
        };
        if let Some(slashed) = slash(&relative) {
            bucket.push(slashed);
        }
    }
    for bucket in [&mut listing.files, &mut listing.symlinks] {
        bucket.sort_unstable();
        bucket.dedup();
    }
    Ok(listing)
}

/// The files git tracks under `crate_dir` and the new ones it does not ignore, when
/// `crate_dir` is in a git work tree.
fn tracked(crate_dir: &Path) -> Option<Vec<PathBuf>> {
    // Outside a work tree `ls-files` fails, which is the answer (one git process per package:
    // `log` time is mostly process starts).
    // Tracked files and new files git does not ignore: a source file not yet added is
    // compiled into the binary all the same, so the snapshot must hold it to build.
    // `ls-files` prints paths relative to the folder it runs in; `-z` leaves them unquoted.
    let args = [
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
        "--",
        ".",
    ];
    let out = git(crate_dir, args)?;
    Some(
        out.split('\0')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect(),
    )
}

/// Every file and symlink under `crate_dir`, skipping dot-entries and cargo target folders.
fn walk_all(crate_dir: &Path) -> Result<Vec<PathBuf>, ArtifactError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(crate_dir).map_err(|source| ArtifactError::Io {
        path: crate_dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| ArtifactError::Io {
            path: crate_dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with('.') {
            walk(crate_dir, Path::new(&name), &mut out)?;
        }
    }
    Ok(out)
}

fn walk(root: &Path, relative: &Path, out: &mut Vec<PathBuf>) -> Result<(), ArtifactError> {
    let path = root.join(relative);
    let meta = match fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(ArtifactError::Io { path, source }),
    };
    if meta.is_file() || meta.file_type().is_symlink() {
        out.push(relative.to_path_buf());
    } else if meta.is_dir() && !path.join("CACHEDIR.TAG").is_file() {
        // (A folder with `CACHEDIR.TAG` is a build cache: cargo marks its target folders so.)
        let entries = fs::read_dir(&path).map_err(|source| ArtifactError::Io {
            path: path.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| ArtifactError::Io {
                path: path.clone(),
                source,
            })?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            walk(root, &relative.join(name), out)?;
        }
    }
    Ok(())
}

/// Not `target/`, not a dot-entry or MLflow store output anywhere in it, and plainly relative.
fn allowed(relative: &Path) -> bool {
    let mut components = relative.components();
    let first_ok = match components.next() {
        Some(Component::Normal(first)) => first != "target" && !is_store_output(first),
        _ => false,
    };
    first_ok
        && relative
            .components()
            .all(|c| matches!(c, Component::Normal(name) if !is_store_output(name)))
}

/// A dot-entry, or what a local MLflow store writes into the folder a command runs in
/// (`mlruns/`, `mlflow.db` and its journals): `log` may run from any folder of the crate, and
/// its own output is never part of the crate.
fn is_store_output(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with('.') || name == "mlruns" || name.starts_with("mlflow.db")
}

/// `a/b/c` for a relative path of UTF-8 names; `None` otherwise (such a file is skipped:
/// the artifact's paths are UTF-8 text).
pub(super) fn slash(relative: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect();
    parts.map(|parts| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::test_helpers::{git_init, write_crate};

    #[test]
    fn walk_outside_git_skips_dotfiles_targets_and_other_packages() {
        let dir = tempfile::tempdir().unwrap();
        write_crate(dir.path());
        let files = list(dir.path()).unwrap().files;
        assert_eq!(
            files,
            [
                "Cargo.lock",
                "Cargo.toml",
                "build.rs",
                "chains/t.rs",
                "chains/t.yaml",
                "data/words.txt",
                "prompts/greet.hbs",
                "src/lib.rs",
            ]
        );
    }

    #[test]
    fn in_git_tracked_and_new_unignored_files_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        write_crate(dir.path());
        git_init(dir.path());
        // A new module not yet added is compiled all the same: it must be in the snapshot.
        fs::write(dir.path().join("src/new_module.rs"), "// not yet added").unwrap();
        fs::write(dir.path().join(".gitignore"), "/src/scratch.rs\n").unwrap();
        fs::write(dir.path().join("src/scratch.rs"), "// ignored").unwrap();
        fs::remove_file(dir.path().join("chains/t.yaml")).unwrap();
        let files = list(dir.path()).unwrap().files;
        assert!(files.iter().any(|f| f == "src/new_module.rs"), "{files:?}");
        assert!(!files.iter().any(|f| f == "src/scratch.rs"), "{files:?}");
        assert!(!files.iter().any(|f| f == "chains/t.yaml"), "{files:?}");
        assert!(files.iter().any(|f| f == "src/lib.rs"), "{files:?}");
        assert!(files.iter().all(|f| allowed(Path::new(f))), "{files:?}");
    }

    #[test]
    fn allowed_refuses_target_dot_entries_and_odd_paths() {
        for bad in [
            "target/debug/x",
            ".env",
            "src/.secret",
            "/abs",
            "../up",
            "",
            "prompts/ask/mlruns/0/meta.yaml",
            "chains/mlflow.db",
            "mlflow.db-journal",
        ] {
            assert!(!allowed(Path::new(bad)), "{bad}");
        }
        for good in ["src/target.rs", "src/target/mod.rs", "Cargo.toml"] {
            assert!(allowed(Path::new(good)), "{good}");
        }
    }
}
