//! The crate snapshot an artifact carries under `code/` for a later `--build cargo`: which
//! files of the crate that compiled the chain go in.
//!
//! Only what a `cargo build --locked` of the crate reads: the manifest and lock file, the
//! build script, `src/`, `chains/`, `prompts/`, and the folders of the targets `Cargo.toml`
//! declares (`benches/`, `tests/`, `examples/`: cargo refuses a manifest whose declared
//! targets are missing). In a git work tree only tracked files are taken (`git ls-files`), so
//! local scratch files stay out; elsewhere those paths are walked. Never `target/`, never a
//! dotfile or anything inside a dot-folder, never a symlink.

use std::{
    fs,
    path::{Component, Path, PathBuf},
};

use super::{ArtifactError, provenance::git};

/// The paths of a crate, relative to its root, that a snapshot takes files from.
pub const SNAPSHOT_PATHS: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "build.rs",
    "README.md",
    "rust-toolchain.toml",
    "rust-toolchain",
    "src",
    "chains",
    "prompts",
    "benches",
    "tests",
    "examples",
];

/// The files of the snapshot of `crate_dir`: `/`-separated paths relative to it, sorted.
///
/// # Errors
///
/// [`ArtifactError::Io`] when a folder cannot be listed or a file's type read.
pub(super) fn list(crate_dir: &Path) -> Result<Vec<String>, ArtifactError> {
    let candidates = match tracked(crate_dir) {
        Some(tracked) => tracked,
        None => walk_all(crate_dir)?,
    };
    let mut files = Vec::with_capacity(candidates.len());
    for relative in candidates {
        if !allowed(&relative) {
            continue;
        }
        let path = crate_dir.join(&relative);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            // A tracked file deleted from the work tree, a symlink, a submodule.
            Ok(_) => continue,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ArtifactError::Io { path, source }),
        }
        if let Some(slashed) = slash(&relative) {
            files.push(slashed);
        }
    }
    files.sort_unstable();
    files.dedup();
    Ok(files)
}

/// The tracked files under [`SNAPSHOT_PATHS`], when `crate_dir` is in a git work tree.
fn tracked(crate_dir: &Path) -> Option<Vec<PathBuf>> {
    let inside = git(crate_dir, ["rev-parse", "--is-inside-work-tree"])?;
    if inside.trim() != "true" {
        return None;
    }
    // `ls-files` prints paths relative to the folder it runs in; `-z` leaves them unquoted.
    let mut args = vec!["ls-files", "-z", "--"];
    args.extend(SNAPSHOT_PATHS);
    let out = git(crate_dir, args)?;
    Some(
        out.split('\0')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect(),
    )
}

/// Every file under [`SNAPSHOT_PATHS`], skipping dot-entries and symlinks.
fn walk_all(crate_dir: &Path) -> Result<Vec<PathBuf>, ArtifactError> {
    let mut out = Vec::new();
    for top in SNAPSHOT_PATHS {
        walk(crate_dir, Path::new(top), &mut out)?;
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
    if meta.is_file() {
        out.push(relative.to_path_buf());
    } else if meta.is_dir() {
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

/// Not `target/`, not a dotfile or inside a dot-folder, and plainly relative.
fn allowed(relative: &Path) -> bool {
    let mut components = relative.components();
    let first_ok = match components.next() {
        Some(Component::Normal(first)) => {
            first != "target" && !first.to_string_lossy().starts_with('.')
        }
        _ => false,
    };
    first_ok
        && components.all(
            |c| matches!(c, Component::Normal(name) if !name.to_string_lossy().starts_with('.')),
        )
}

/// `a/b/c` for a relative path of UTF-8 names; `None` otherwise (such a file is skipped:
/// the artifact's paths are UTF-8 text).
fn slash(relative: &Path) -> Option<String> {
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
    fn walk_outside_git_skips_dotfiles_target_and_other_folders() {
        let dir = tempfile::tempdir().unwrap();
        write_crate(dir.path());
        let files = list(dir.path()).unwrap();
        assert_eq!(
            files,
            [
                "Cargo.lock",
                "Cargo.toml",
                "build.rs",
                "chains/t.rs",
                "chains/t.yaml",
                "prompts/greet.hbs",
                "src/lib.rs",
            ]
        );
    }

    #[test]
    fn in_git_only_tracked_files_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        write_crate(dir.path());
        git_init(dir.path());
        fs::write(dir.path().join("src/scratch.rs"), "// not tracked").unwrap();
        fs::remove_file(dir.path().join("chains/t.yaml")).unwrap();
        let files = list(dir.path()).unwrap();
        assert!(!files.iter().any(|f| f == "src/scratch.rs"), "{files:?}");
        assert!(!files.iter().any(|f| f == "chains/t.yaml"), "{files:?}");
        assert!(files.iter().any(|f| f == "src/lib.rs"), "{files:?}");
        assert!(files.iter().all(|f| allowed(Path::new(f))), "{files:?}");
    }

    #[test]
    fn allowed_refuses_target_dot_entries_and_odd_paths() {
        for bad in ["target/debug/x", ".env", "src/.secret", "/abs", "../up", ""] {
            assert!(!allowed(Path::new(bad)), "{bad}");
        }
        for good in ["src/target.rs", "src/target/mod.rs", "Cargo.toml"] {
            assert!(allowed(Path::new(good)), "{good}");
        }
    }
}
