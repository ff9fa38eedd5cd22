//! [`Provenance`]: what built a chain — the chainlog version, the compiler and target (from
//! `build.rs`), the crate's git commit and whether its files differ from it, and the hash of
//! its `Cargo.lock` — and the MLflow run tags that carry the same facts.
//!
//! Git is asked, never required: outside a git work tree, or without a `git` binary, the
//! git facts are absent.

use std::{
    ffi::OsStr,
    fs, io,
    path::Path,
    process::{Command, Stdio},
};

use super::{ArtifactError, ChainlogFlavor};
use crate::digest::sha256_hex;

/// The chainlog version that is running (and writing artifacts).
pub const CHAINLOG_VERSION: &str = env!("CARGO_PKG_VERSION");
/// `rustc --version` of the compiler that built this chainlog (set by `build.rs`).
pub const RUSTC_VERSION: &str = env!("CHAINLOG_RUSTC_VERSION");
/// The target triple this chainlog was built for (set by `build.rs`).
pub const TARGET: &str = env!("CHAINLOG_TARGET");

/// What built the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// [`CHAINLOG_VERSION`] of the writer.
    pub chainlog_version: String,
    /// [`RUSTC_VERSION`].
    pub rustc_version: String,
    /// [`TARGET`].
    pub target: String,
    /// The crate's git state, when it is in a git work tree.
    pub git: Option<GitState>,
    /// Lowercase hex SHA-256 of the crate's `Cargo.lock`, when it has one.
    pub cargo_lock_sha256: Option<String>,
}

/// The git state of the crate's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitState {
    /// `git rev-parse HEAD`.
    pub commit: String,
    /// Whether `git status --porcelain` lists anything under the crate's folder (changed,
    /// staged or untracked files): the build may not be exactly that commit.
    pub dirty: bool,
}

impl Provenance {
    /// The facts of this binary alone (version, compiler, target), with no crate to look at.
    pub fn of_binary() -> Self {
        Self {
            chainlog_version: CHAINLOG_VERSION.to_owned(),
            rustc_version: RUSTC_VERSION.to_owned(),
            target: TARGET.to_owned(),
            git: None,
            cargo_lock_sha256: None,
        }
    }

    /// The facts of this binary and of the crate at `crate_dir` (git state, `Cargo.lock`).
    ///
    /// # Errors
    ///
    /// [`ArtifactError::Io`] when `Cargo.lock` exists but cannot be read. Git failing or
    /// missing is not an error: the git facts are then absent.
    ///
    /// # Examples
    ///
    /// ```
    /// use chainlog::artifact::Provenance;
    /// let dir = tempfile::tempdir()?;
    /// let provenance = Provenance::collect(dir.path())?;
    /// assert_eq!(provenance.chainlog_version, env!("CARGO_PKG_VERSION"));
    /// assert!(provenance.cargo_lock_sha256.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn collect(crate_dir: &Path) -> Result<Self, ArtifactError> {
        let lock = crate_dir.join("Cargo.lock");
        let cargo_lock_sha256 = match fs::read(&lock) {
            Ok(bytes) => Some(sha256_hex(&bytes)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(ArtifactError::Io { path: lock, source }),
        };
        Ok(Self {
            git: git_state(crate_dir),
            cargo_lock_sha256,
            ..Self::of_binary()
        })
    }

    /// These facts as MLflow run tags: `mlflow.source.git.commit`, `chainlog.git_dirty`,
    /// `chainlog.version`, `chainlog.rustc`, `chainlog.target`, `chainlog.cargo_lock_sha256`
    /// (absent facts give no tag). The flavor's
    /// [`run_tags`](super::ChainlogFlavor::run_tags) adds the content hashes.
    pub fn run_tags(&self) -> Vec<(String, String)> {
        let mut tags = Vec::new();
        if let Some(git) = &self.git {
            tags.push(("mlflow.source.git.commit".to_owned(), git.commit.clone()));
            tags.push(("chainlog.git_dirty".to_owned(), git.dirty.to_string()));
        }
        tags.push(("chainlog.version".to_owned(), self.chainlog_version.clone()));
        tags.push(("chainlog.rustc".to_owned(), self.rustc_version.clone()));
        tags.push(("chainlog.target".to_owned(), self.target.clone()));
        if let Some(sha) = &self.cargo_lock_sha256 {
            tags.push(("chainlog.cargo_lock_sha256".to_owned(), sha.clone()));
        }
        tags
    }
}

impl ChainlogFlavor {
    /// The provenance the flavor records.
    pub fn provenance(&self) -> Provenance {
        Provenance {
            chainlog_version: self.chainlog_version.clone(),
            rustc_version: self.rustc_version.clone(),
            target: self.target.clone(),
            git: self.git_commit.as_ref().map(|commit| GitState {
                commit: commit.clone(),
                // A commit recorded without the flag was not checked: say dirty.
                dirty: self.git_dirty.unwrap_or(true),
            }),
            cargo_lock_sha256: self.cargo_lock_sha256.clone(),
        }
    }

    /// Run tags carrying the provenance ([`Provenance::run_tags`]) and the content hashes:
    /// `chainlog.code_sha256`, `chainlog.config_sha256` and `chainlog.prompt.<name>.sha256`.
    pub fn run_tags(&self) -> Vec<(String, String)> {
        let mut tags = self.provenance().run_tags();
        tags.push(("chainlog.code_sha256".to_owned(), self.code.sha256.clone()));
        tags.push((
            "chainlog.config_sha256".to_owned(),
            self.config_sha256.clone(),
        ));
        for prompt in &self.prompts {
            tags.push((
                format!("chainlog.prompt.{}.sha256", prompt.name),
                prompt.sha256.clone(),
            ));
        }
        tags
    }
}

/// The git state of `dir`, or `None` outside a work tree (or without git).
fn git_state(dir: &Path) -> Option<GitState> {
    let commit = git(dir, ["rev-parse", "HEAD"])?;
    let commit = commit.trim();
    if commit.is_empty() {
        return None;
    }
    // A status that cannot be read counts as dirty: never claim a clean build unverified.
    let dirty =
        git(dir, ["status", "--porcelain", "--", "."]).is_none_or(|out| !out.trim().is_empty());
    Some(GitState {
        commit: commit.to_owned(),
        dirty,
    })
}

/// Runs `git -C dir <args>` and returns its stdout, or `None` if git is missing or fails.
/// The caller's `GIT_DIR`/`GIT_WORK_TREE`/`GIT_INDEX_FILE` (set inside git hooks) are
/// removed so git looks at `dir` itself.
pub(super) fn git<I, S>(dir: &Path, args: I) -> Option<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::test_helpers::git_init;

    #[test]
    fn collect_outside_git_has_no_git_facts_but_hashes_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("Cargo.lock"), "version = 4\n").unwrap();
        let provenance = Provenance::collect(dir.path()).unwrap();
        assert_eq!(provenance.git, None);
        assert_eq!(
            provenance.cargo_lock_sha256.as_deref(),
            Some(sha256_hex(b"version = 4\n").as_str())
        );
        assert!(
            provenance.rustc_version.starts_with("rustc "),
            "{}",
            provenance.rustc_version
        );
        assert!(!provenance.target.is_empty());
    }

    #[test]
    fn collect_in_git_reports_commit_and_dirty_flag() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("Cargo.toml"), "[package]\n").unwrap();
        let commit = git_init(dir.path());
        let clean = Provenance::collect(dir.path()).unwrap().git.unwrap();
        assert_eq!(
            clean,
            GitState {
                commit: commit.clone(),
                dirty: false
            }
        );
        fs::write(dir.path().join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
        let dirty = Provenance::collect(dir.path()).unwrap().git.unwrap();
        assert_eq!(
            dirty,
            GitState {
                commit,
                dirty: true
            }
        );
    }

    #[test]
    fn run_tags_name_every_known_fact() {
        let provenance = Provenance {
            git: Some(GitState {
                commit: "abc".into(),
                dirty: true,
            }),
            cargo_lock_sha256: Some("11".into()),
            ..Provenance::of_binary()
        };
        let keys: Vec<String> = provenance.run_tags().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "mlflow.source.git.commit",
                "chainlog.git_dirty",
                "chainlog.version",
                "chainlog.rustc",
                "chainlog.target",
                "chainlog.cargo_lock_sha256"
            ]
        );
        assert_eq!(Provenance::of_binary().run_tags().len(), 3);
    }
}
