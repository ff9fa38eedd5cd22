//! Finding the crate a command works on, the way cargo finds a package: walk up from the
//! current directory to the `Cargo.toml` of the package this binary was built from, and
//! resolve `chains/`, `prompts/` from there.
//!
//! Owns the project root and the default paths inside it (`chains/<name>.yaml`, `prompts/`).
//! Does not own reading those files ([`crate::config`], [`crate::prompt`]) nor the crate
//! snapshot ([`crate::artifact`]).
//!
//! The order: `--project DIR` when given; else the nearest folder at or above the current
//! directory whose `Cargo.toml` declares the binary's package; else the folder the crate was
//! compiled in ([`CompiledCrate::root`]) while it still holds that package. That compile-time
//! folder is only used to find files: it never goes into an artifact, a param or a tag.

use std::path::{Path, PathBuf};

/// The crate a binary was compiled from, as `chainlog::main!()` records it
/// (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`).
#[derive(Debug, Clone, Copy)]
pub struct CompiledCrate {
    /// The package name in its `Cargo.toml`.
    pub package: &'static str,
    /// The folder of its `Cargo.toml` on the machine that compiled it.
    pub root: &'static str,
}

impl CompiledCrate {
    /// This library's own crate (for tests and examples that run chainlog's example chains).
    pub const fn chainlog() -> Self {
        Self {
            package: env!("CARGO_PKG_NAME"),
            root: env!("CARGO_MANIFEST_DIR"),
        }
    }
}

/// Why no project was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectError {
    /// No folder at or above the current one holds the package, and the compile-time folder
    /// is gone or holds another package.
    #[error(
        "no Cargo.toml of package `{package}` in `{searched_from}` or any folder above it, and the \
         crate this binary was built from is no longer at `{compiled_root}`; run the command inside \
         the project, or pass --project DIR (or --config FILE and --prompts-dir DIR)"
    )]
    NotFound {
        /// The package looked for.
        package: String,
        /// Where the walk up started (the current directory).
        searched_from: PathBuf,
        /// The compile-time folder that was tried last.
        compiled_root: PathBuf,
    },
    /// `--project DIR` has no `Cargo.toml`.
    #[error("--project `{dir}` holds no Cargo.toml")]
    NotACrate {
        /// The folder given.
        dir: PathBuf,
    },
    /// The current directory cannot be read.
    #[error("failed to read the current directory")]
    CurrentDir(#[source] std::io::Error),
}

/// A crate that holds chains: its root folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    root: PathBuf,
}

impl Project {
    /// The project at `root` as given (no checks): for tests and library callers that know it.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Finds the project: `explicit` (`--project DIR`) when given, else by walking up from the
    /// current directory, else the compile-time folder (see the module docs).
    ///
    /// # Errors
    ///
    /// [`ProjectError::NotFound`] naming where it looked and the flags to pass;
    /// [`ProjectError::NotACrate`] for an `explicit` folder without `Cargo.toml`.
    pub fn discover(
        compiled: &CompiledCrate,
        explicit: Option<&Path>,
    ) -> Result<Self, ProjectError> {
        if let Some(dir) = explicit {
            if !dir.join("Cargo.toml").is_file() {
                return Err(ProjectError::NotACrate {
                    dir: dir.to_path_buf(),
                });
            }
            return Ok(Self::at(dir));
        }
        let cwd = std::env::current_dir().map_err(ProjectError::CurrentDir)?;
        Self::discover_from(compiled, &cwd)
    }

    /// [`discover`](Self::discover) without `--project`, walking up from `start`.
    ///
    /// # Errors
    ///
    /// [`ProjectError::NotFound`].
    pub fn discover_from(compiled: &CompiledCrate, start: &Path) -> Result<Self, ProjectError> {
        if let Some(project) = Self::walk_up(compiled, start) {
            return Ok(project);
        }
        let compiled_root = Path::new(compiled.root);
        if declares_package(compiled_root, compiled.package) {
            return Ok(Self::at(compiled_root));
        }
        Err(ProjectError::NotFound {
            package: compiled.package.to_owned(),
            searched_from: start.to_path_buf(),
            compiled_root: compiled_root.to_path_buf(),
        })
    }

    /// The project the current directory is inside (walking up only, no compile-time
    /// fallback): where a command's default store goes.
    pub fn enclosing(compiled: &CompiledCrate) -> Option<Self> {
        Self::walk_up(compiled, &std::env::current_dir().ok()?)
    }

    /// The nearest folder at or above `start` whose `Cargo.toml` declares the package.
    fn walk_up(compiled: &CompiledCrate, start: &Path) -> Option<Self> {
        start
            .ancestors()
            .find(|dir| declares_package(dir, compiled.package))
            .map(Self::at)
    }

    /// The crate's root folder (where its `Cargo.toml` is).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `chains/<chain>.yaml`: the chain's default config.
    pub fn config_path(&self, chain: &str) -> PathBuf {
        self.root
            .join(crate::config::ChainConfig::default_path(chain))
    }

    /// `prompts/`: the folder the config's prompt paths are relative to.
    pub fn prompts_dir(&self) -> PathBuf {
        self.root.join("prompts")
    }
}

/// Whether `dir/Cargo.toml` is the manifest of package `package`.
fn declares_package(dir: &Path, package: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
        return false;
    };
    package_name(&text).as_deref() == Some(package)
}

/// `[package] name` of a manifest's text; `None` when it has none or does not parse.
pub(crate) fn package_name(manifest: &str) -> Option<String> {
    let doc: toml_edit::DocumentMut = manifest.parse().ok()?;
    doc.get("package")?.get("name")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_manifest(dir: &Path, name: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\n"),
        )
        .unwrap();
    }

    fn leak(path: &Path) -> &'static str {
        Box::leak(path.display().to_string().into_boxed_str())
    }

    #[test]
    fn walks_up_past_other_packages_to_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("app");
        write_manifest(&root, "my-app");
        // A nested crate of another name (a workspace member) is walked past.
        write_manifest(&root.join("crates/helper"), "helper");
        let deep = root.join("crates/helper/src/deeper");
        std::fs::create_dir_all(&deep).unwrap();
        let compiled = CompiledCrate {
            package: "my-app",
            root: "/nonexistent/compiled/root",
        };
        let found = Project::discover_from(&compiled, &deep).unwrap();
        assert_eq!(found.root(), root);
        assert_eq!(found.config_path("x"), root.join("chains/x.yaml"));
        assert_eq!(found.prompts_dir(), root.join("prompts"));
    }

    #[test]
    fn falls_back_to_the_compiled_root_while_it_exists() {
        let tmp = tempfile::tempdir().unwrap();
        let compiled_root = tmp.path().join("built-here");
        write_manifest(&compiled_root, "my-app");
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let compiled = CompiledCrate {
            package: "my-app",
            root: leak(&compiled_root),
        };
        let found = Project::discover_from(&compiled, &elsewhere).unwrap();
        assert_eq!(found.root(), compiled_root);
    }

    #[test]
    fn outside_any_project_the_error_says_where_and_which_flags() {
        let tmp = tempfile::tempdir().unwrap();
        let other = tmp.path().join("other");
        write_manifest(&other, "not-mine");
        let compiled = CompiledCrate {
            package: "my-app",
            root: leak(&tmp.path().join("gone")),
        };
        let message = Project::discover_from(&compiled, &other)
            .unwrap_err()
            .to_string();
        for needle in [
            "`my-app`",
            other.display().to_string().as_str(),
            "gone",
            "--project DIR",
            "--config FILE",
            "--prompts-dir DIR",
        ] {
            assert!(message.contains(needle), "{needle} missing: {message}");
        }
    }

    #[test]
    fn explicit_project_needs_a_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let compiled = CompiledCrate::chainlog();
        let err = Project::discover(&compiled, Some(tmp.path())).unwrap_err();
        assert!(err.to_string().contains("holds no Cargo.toml"), "{err}");
        write_manifest(tmp.path(), "anything");
        assert_eq!(
            Project::discover(&compiled, Some(tmp.path()))
                .unwrap()
                .root(),
            tmp.path()
        );
    }

    #[test]
    fn package_name_reads_the_manifest() {
        assert_eq!(
            package_name("[package]\nname = \"a-b\"\n[dependencies]\n").as_deref(),
            Some("a-b")
        );
        assert_eq!(package_name("[workspace]\nmembers = []\n"), None);
        assert_eq!(package_name("not toml ["), None);
    }
}
