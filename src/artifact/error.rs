//! [`ArtifactError`]: everything that can go wrong writing, reading or verifying a model
//! artifact directory. Every variant names the file (or folder) at fault.

use std::{io, path::PathBuf};

use crate::config::ConfigError;

/// Why an artifact could not be written, read or verified.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// A file or folder could not be read, written or listed.
    #[error("i/o error at `{}`", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The MLmodel file (or another YAML/JSON file of the artifact) is not valid or does not
    /// have the expected shape.
    #[error("invalid `{}`: {message}", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the key path at fault when known.
        message: String,
    },
    /// A file the MLmodel names is not in the artifact.
    #[error("missing file `{}` in the artifact", path.display())]
    MissingFile {
        /// The file, inside the artifact directory.
        path: PathBuf,
    },
    /// A file's content does not have the SHA-256 the MLmodel records: it was changed after
    /// the artifact was written.
    #[error(
        "`{}` does not match the artifact's record (sha256 expected {expected}, found {actual}); \
         refusing a changed artifact",
        path.display()
    )]
    HashMismatch {
        /// The file (or folder, for the crate snapshot) whose content changed.
        path: PathBuf,
        /// The SHA-256 the MLmodel records.
        expected: String,
        /// The SHA-256 of what is there now.
        actual: String,
    },
    /// The chainlog flavor has a `format_version` this build does not know.
    #[error(
        "unknown chainlog format_version {found} in the MLmodel; this chainlog reads \
         format_version 1 to {supported} (a newer chainlog may have written it)"
    )]
    UnknownFormatVersion {
        /// What the MLmodel says (`2`, or `missing`).
        found: String,
        /// The newest version this build reads (and the one it writes).
        supported: u32,
    },
    /// The MLmodel has no `chainlog` flavor: the model was not logged by chainlog.
    #[error("`{}` has no `flavors.chainlog`: not a chainlog model", path.display())]
    NotChainlog {
        /// The MLmodel file.
        path: PathBuf,
    },
    /// The MLmodel names a path that is absolute or leaves the artifact directory.
    #[error("`{}` names path `{entry}`, which is not inside the artifact", mlmodel.display())]
    UnsafePath {
        /// The MLmodel file.
        mlmodel: PathBuf,
        /// The offending entry, as written.
        entry: String,
    },
    /// The artifact's config is not a valid chain config.
    #[error("invalid config in `{}`", path.display())]
    Config {
        /// The file holding it (`MLmodel` or `model_config.yaml`).
        path: PathBuf,
        /// Why.
        #[source]
        source: ConfigError,
    },
    /// The directory to write into already holds files.
    #[error("artifact directory `{}` is not empty", path.display())]
    DirNotEmpty {
        /// The directory.
        path: PathBuf,
    },
    /// A `Cargo.toml` the crate snapshot needs cannot be parsed or lacks what a package
    /// manifest must have.
    #[error("invalid manifest `{}`: {message}", path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A path dependency's folder, or its `Cargo.toml`, does not exist.
    #[error(
        "path dependency `{name}` of `{}` is missing: no `Cargo.toml` in `{}`",
        manifest.display(),
        path.display()
    )]
    MissingDependency {
        /// The dependency, as the manifest names it.
        name: String,
        /// The manifest that declares it.
        manifest: PathBuf,
        /// The folder it points at.
        path: PathBuf,
    },
    /// A path dependency is a symlink: the snapshot would copy another tree than the one
    /// the manifest appears to name.
    #[error(
        "path dependency `{name}` of `{}` is a symlink (`{}`); a crate snapshot refuses symlinked dependencies, point the manifest at the real folder",
        manifest.display(),
        path.display()
    )]
    SymlinkDependency {
        /// The dependency, as the manifest names it.
        name: String,
        /// The manifest that declares it.
        manifest: PathBuf,
        /// The symlink.
        path: PathBuf,
    },
    /// A file of a dependency is a symlink that points out of the dependency's folder.
    #[error(
        "`{}` of package `{package}` is a symlink pointing out of its folder; a crate snapshot refuses it",
        path.display()
    )]
    SymlinkOutOfTree {
        /// The package (the dependency) holding it.
        package: String,
        /// The symlink.
        path: PathBuf,
    },
    /// Two different path dependencies outside the crate have the same package name, so
    /// they cannot both be vendored as `vendor/<name>`.
    #[error(
        "two path dependencies outside the crate are both package `{name}`: `{}` and `{}`",
        first.display(),
        second.display()
    )]
    DuplicatePackage {
        /// The package name.
        name: String,
        /// The folder of the first one found.
        first: PathBuf,
        /// The folder of the other one.
        second: PathBuf,
    },
    /// A manifest inherits a key from its workspace (`workspace = true`) that cannot be
    /// resolved.
    #[error(
        "cannot resolve `{key}` of `{}`, inherited from its workspace: {reason}",
        manifest.display()
    )]
    WorkspaceInheritance {
        /// The manifest that inherits.
        manifest: PathBuf,
        /// The inherited key (`package.version`, `dependencies.serde`, `lints`).
        key: String,
        /// Why it cannot be resolved.
        reason: String,
    },
    /// A manifest of the crate snapshot still holds an absolute path of this machine.
    #[error(
        "`{file}` of the crate snapshot holds the absolute path `{}`; make it relative",
        path.display()
    )]
    AbsolutePathInSnapshot {
        /// The file, relative to the snapshot.
        file: String,
        /// The absolute path found in it.
        path: PathBuf,
    },
    /// `cargo vendor` could not vendor the crate's registry and git dependencies
    /// (`log --vendor`).
    #[error("failed to vendor the crate's dependencies with `cargo vendor`:\n{first_error}")]
    Vendor {
        /// Cargo's first error, as it printed it (or what else went wrong).
        first_error: String,
    },
    /// No cargo to run `cargo vendor` with.
    #[error(
        "cargo is not installed (or not on PATH), so the dependencies cannot be vendored: install Rust from https://rustup.rs, or log without --vendor"
    )]
    NoCargo,
    /// A file in the artifact that no record of the MLmodel lists: added after the artifact
    /// was written (an extra prompt file is sent as an extra message).
    #[error(
        "`{}` is in the artifact but not listed in its MLmodel; refusing a changed artifact",
        path.display()
    )]
    UnlistedFile {
        /// The file, inside the artifact directory.
        path: PathBuf,
    },
    /// The MLmodel's SHA-256 is not the digest the tracking store recorded when the model was
    /// logged (`chainlog.artifact_digest`), or not the one `--expect-digest` pins: the
    /// MLmodel — and with it the hashes of every file — was changed or replaced.
    #[error(
        "`{}` does not match the artifact digest {origin} (sha256 expected {expected}, found \
         {actual}); refusing a changed or replaced artifact",
        path.display()
    )]
    DigestMismatch {
        /// The MLmodel file.
        path: PathBuf,
        /// Where the expected digest comes from (`recorded in the tracking store`).
        origin: &'static str,
        /// The digest expected.
        expected: String,
        /// The SHA-256 of the MLmodel there.
        actual: String,
    },
    /// The OpenSSF Model Signing signature (`model.sig`) could not be made or does not verify.
    #[error(transparent)]
    Signature(#[from] super::oms::SignatureError),
    /// What the writer was asked to write is inconsistent.
    #[error("cannot write the artifact: {message}")]
    InvalidSpec {
        /// What is wrong.
        message: String,
    },
}

impl ArtifactError {
    /// An [`Io`](Self::Io) error at `path`; a missing file becomes
    /// [`MissingFile`](Self::MissingFile).
    pub(super) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.kind() == io::ErrorKind::NotFound {
            Self::MissingFile { path }
        } else {
            Self::Io { path, source }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_turns_not_found_into_missing_file() {
        let err = ArtifactError::io("a/b", io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(err.to_string(), "missing file `a/b` in the artifact");
        let err = ArtifactError::io("a/b", io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(matches!(err, ArtifactError::Io { .. }), "{err:?}");
    }

    #[test]
    fn hash_mismatch_names_the_file_and_both_hashes() {
        let err = ArtifactError::HashMismatch {
            path: "code/chains/t.rs".into(),
            expected: "aa".into(),
            actual: "bb".into(),
        };
        insta::assert_snapshot!(err.to_string(), @"`code/chains/t.rs` does not match the artifact's record (sha256 expected aa, found bb); refusing a changed artifact");
    }
}
