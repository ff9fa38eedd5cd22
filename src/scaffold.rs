//! `chainlog new`: a crate for a team's own chains, ready to `cargo run -- log <chain>` with no
//! key and no server.
//!
//! Owns the files of a new crate (the templates in `template/`, filled in by [`scaffold`]):
//! `Cargo.toml` (chainlog as a path or git dependency while it is not published),
//! `build.rs` (one call into `chainlog-build`), `src/main.rs` (`chainlog::main!()`), one
//! example chain with its prompt and config, a test that runs it against the mock, a README
//! with the two commands and a `.gitignore`. This repository's `examples/my-chains/` is its
//! output, kept identical by a test.

use std::path::{Path, PathBuf};

/// How the new crate depends on chainlog until chainlog is on crates.io.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainlogSource {
    /// A checkout of chainlog: `chainlog = { path = "<dir>" }` and
    /// `chainlog-build = { path = "<dir>/crates/chainlog-build" }`, written as given.
    Path(String),
    /// A git repository: `chainlog = { git = "<url>" }` (cargo finds `chainlog-build` in it).
    Git(String),
}

impl ChainlogSource {
    /// The checkout this binary's chainlog was compiled from, when it is still there.
    pub fn compiled_checkout() -> Option<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        root.join("crates/chainlog-build/Cargo.toml")
            .is_file()
            .then(|| Self::Path(root.display().to_string()))
    }

    fn dependency_lines(&self) -> (String, String) {
        match self {
            Self::Path(dir) => {
                let dir = dir.trim_end_matches('/');
                (
                    format!("chainlog = {{ path = {} }}", toml_string(dir)),
                    format!(
                        "chainlog-build = {{ path = {} }}",
                        toml_string(&format!("{dir}/crates/chainlog-build"))
                    ),
                )
            }
            Self::Git(url) => (
                format!("chainlog = {{ git = {} }}", toml_string(url)),
                format!("chainlog-build = {{ git = {} }}", toml_string(url)),
            ),
        }
    }
}

/// What to scaffold.
#[derive(Debug, Clone)]
pub struct NewCrate {
    /// The folder to create (it must not exist, or be empty).
    pub dir: PathBuf,
    /// The package name; default: the folder's name.
    pub package: Option<String>,
    /// The example chain's name (snake_case).
    pub chain: String,
    /// Where chainlog comes from.
    pub chainlog: ChainlogSource,
}

/// Why a crate could not be scaffolded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScaffoldError {
    /// The folder exists and holds files.
    #[error("`{dir}` already exists and is not empty; pick a new folder")]
    NotEmpty {
        /// The folder.
        dir: PathBuf,
    },
    /// The chain name is not snake_case.
    #[error("chain name `{name}` must be snake_case: [a-z][a-z0-9_]*")]
    ChainName {
        /// The name given.
        name: String,
    },
    /// The package name is not one cargo accepts.
    #[error(
        "package name `{name}` must start with a letter and hold only letters, digits, `-` and `_`; pass --name"
    )]
    PackageName {
        /// The name given or derived from the folder.
        name: String,
    },
    /// A file could not be written.
    #[error("failed to write `{path}`")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The files of the new crate: path relative to its folder → content. Pure, so a test can
/// compare it with `examples/my-chains/`.
///
/// # Errors
///
/// [`ScaffoldError::ChainName`] or [`ScaffoldError::PackageName`].
pub fn files(spec: &NewCrate) -> Result<Vec<(String, String)>, ScaffoldError> {
    let chain = spec.chain.as_str();
    if !is_snake_case(chain) {
        return Err(ScaffoldError::ChainName {
            name: chain.to_owned(),
        });
    }
    let package = match &spec.package {
        Some(name) => name.clone(),
        None => spec
            .dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    if !is_package_name(&package) {
        return Err(ScaffoldError::PackageName { name: package });
    }
    let (chainlog_dep, chainlog_build_dep) = spec.chainlog.dependency_lines();
    // `<Name>Chain`: never a keyword, never one of the names the template imports.
    let camel = format!("{}Chain", camel_case(chain));
    let fill = |template: &str| {
        template
            .replace("@@package@@", &package)
            .replace("@@chainlog_dep@@", &chainlog_dep)
            .replace("@@chainlog_build_dep@@", &chainlog_build_dep)
            .replace("@@Chain@@", &camel)
            .replace("@@chain@@", chain)
            .replace("@@crate@@", &package.replace('-', "_"))
    };
    Ok(vec![
        (
            ".gitignore".to_owned(),
            fill(include_str!("scaffold/template/gitignore.in")),
        ),
        (
            "Cargo.toml".to_owned(),
            fill(include_str!("scaffold/template/Cargo.toml.in")),
        ),
        (
            "README.md".to_owned(),
            fill(include_str!("scaffold/template/README.md.in")),
        ),
        (
            "build.rs".to_owned(),
            fill(include_str!("scaffold/template/build.rs.in")),
        ),
        (
            format!("chains/{chain}.rs"),
            fill(include_str!("scaffold/template/chain.rs.in")),
        ),
        (
            format!("chains/{chain}.yaml"),
            fill(include_str!("scaffold/template/chain.yaml.in")),
        ),
        (
            format!("prompts/{chain}/01-system.hbs"),
            fill(include_str!("scaffold/template/system.hbs.in")),
        ),
        (
            format!("prompts/{chain}/02-user.hbs"),
            fill(include_str!("scaffold/template/user.hbs.in")),
        ),
        (
            "src/main.rs".to_owned(),
            fill(include_str!("scaffold/template/main.rs.in")),
        ),
        (
            format!("tests/{chain}.rs"),
            fill(include_str!("scaffold/template/test.rs.in")),
        ),
    ])
}

/// Writes the new crate; returns the files written (relative paths).
///
/// # Errors
///
/// Those of [`files`], [`ScaffoldError::NotEmpty`] for a folder that holds anything (checked
/// before the first write), [`ScaffoldError::Write`].
pub fn scaffold(spec: &NewCrate) -> Result<Vec<String>, ScaffoldError> {
    let mut files = files(spec)?;
    if enclosing_workspace_claims(&spec.dir) {
        // Inside another workspace that does not exclude it, cargo would refuse the new
        // crate ("believes it's in a workspace when it's not"): make it a workspace of its own.
        for (path, content) in &mut files {
            if path == "Cargo.toml" {
                content.push_str(
                    "\n# A project of its own, not a member of the workspace around this folder.\n[workspace]\n",
                );
            }
        }
    }
    let occupied = std::fs::read_dir(&spec.dir)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if occupied {
        return Err(ScaffoldError::NotEmpty {
            dir: spec.dir.clone(),
        });
    }
    let mut written = Vec::with_capacity(files.len());
    for (relative, content) in files {
        let path = spec.dir.join(&relative);
        let write = |path: &Path| -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, &content)
        };
        write(&path).map_err(|source| ScaffoldError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(relative);
    }
    Ok(written)
}

/// Whether a `Cargo.toml` with `[workspace]` above `dir` would take a crate at `dir` for one
/// of its members (it does unless its `exclude` lists `dir` or a folder holding it).
fn enclosing_workspace_claims(dir: &Path) -> bool {
    let Ok(dir) = std::path::absolute(dir) else {
        return false;
    };
    for root in dir.ancestors().skip(1) {
        let Ok(text) = std::fs::read_to_string(root.join("Cargo.toml")) else {
            continue;
        };
        let Ok(manifest) = text.parse::<toml_edit::DocumentMut>() else {
            return false;
        };
        let Some(workspace) = manifest.get("workspace") else {
            continue;
        };
        let Ok(relative) = dir.strip_prefix(root) else {
            return false;
        };
        let excluded = workspace
            .get("exclude")
            .and_then(|item| item.as_array())
            .is_some_and(|list| {
                list.iter()
                    .filter_map(|value| value.as_str())
                    .any(|excluded| relative.starts_with(excluded))
            });
        return !excluded;
    }
    false
}

fn is_snake_case(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A name cargo accepts for a new package that also does not collide with chainlog's own
/// crates or Rust's (cargo refuses `test`, `std`, … in `cargo new` for the same reason).
fn is_package_name(name: &str) -> bool {
    const TAKEN: &[&str] = &[
        "chainlog",
        "chainlog-build",
        "chainlog_build",
        "chainlog-mock",
        "chainlog_mock",
        "test",
        "std",
        "core",
        "alloc",
        "proc_macro",
        "proc-macro",
    ];
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !TAKEN.contains(&name)
        && !is_keyword(&name.replace('-', "_"))
}

/// Rust's keywords (strict and reserved), which no crate or module can be named.
fn is_keyword(name: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum",
        "extern", "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod",
        "move", "mut", "pub", "ref", "return", "self", "static", "struct", "super", "trait",
        "true", "type", "unsafe", "use", "where", "while", "abstract", "become", "box", "do",
        "final", "macro", "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
    ];
    KEYWORDS.contains(&name)
}

/// `tool_agent` → `ToolAgent`.
fn camel_case(snake: &str) -> String {
    snake
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    toml_edit::Value::from(text).to_string().trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path) -> NewCrate {
        NewCrate {
            dir: dir.to_path_buf(),
            package: None,
            chain: "ask".to_owned(),
            chainlog: ChainlogSource::Path("../..".to_owned()),
        }
    }

    /// `examples/my-chains/` is exactly what `chainlog new examples/my-chains` makes (with
    /// chainlog at `../..`), so the example never drifts from the generator.
    #[test]
    fn examples_my_chains_is_the_generators_output() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/my-chains");
        let files = files(&spec(&root)).unwrap();
        for (relative, content) in &files {
            let on_disk = std::fs::read_to_string(root.join(relative))
                .unwrap_or_else(|err| panic!("examples/my-chains/{relative}: {err}"));
            assert_eq!(&on_disk, content, "examples/my-chains/{relative} differs");
        }
        assert!(files.iter().any(|(path, _)| path == "chains/ask.rs"));
    }

    #[test]
    fn refuses_bad_names_and_a_folder_in_use() {
        let tmp = tempfile::tempdir().unwrap();
        let mut bad = spec(&tmp.path().join("x"));
        bad.chain = "Ask".to_owned();
        assert!(matches!(files(&bad), Err(ScaffoldError::ChainName { .. })));
        let bad = spec(&tmp.path().join("9lives"));
        assert!(matches!(
            files(&bad),
            Err(ScaffoldError::PackageName { .. })
        ));
        let taken = tmp.path().join("taken");
        std::fs::create_dir(&taken).unwrap();
        std::fs::write(taken.join("keep.txt"), "mine").unwrap();
        let err = scaffold(&spec(&taken)).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        assert_eq!(std::fs::read_dir(&taken).unwrap().count(), 1);
    }

    #[test]
    fn inside_another_workspace_the_crate_is_its_own_workspace() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("Cargo.toml"),
            "[workspace]\nmembers = []\nexclude = [\"examples\"]\n",
        )
        .unwrap();
        scaffold(&spec(&tmp.path().join("inside"))).unwrap();
        let manifest = std::fs::read_to_string(tmp.path().join("inside/Cargo.toml")).unwrap();
        assert!(manifest.ends_with("[workspace]\n"), "{manifest}");
        scaffold(&spec(&tmp.path().join("examples/excluded"))).unwrap();
        let manifest =
            std::fs::read_to_string(tmp.path().join("examples/excluded/Cargo.toml")).unwrap();
        assert!(!manifest.contains("[workspace]"), "{manifest}");
    }

    #[test]
    fn fills_names_and_dependencies() {
        let tmp = tempfile::tempdir().unwrap();
        let mut spec = spec(&tmp.path().join("team-bot"));
        spec.chain = "triage_ticket".to_owned();
        spec.chainlog = ChainlogSource::Git("https://example.invalid/chainlog.git".to_owned());
        let written = scaffold(&spec).unwrap();
        assert!(written.contains(&"chains/triage_ticket.rs".to_owned()));
        let manifest = std::fs::read_to_string(spec.dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"team-bot\""), "{manifest}");
        assert!(
            manifest.contains("chainlog = { git = \"https://example.invalid/chainlog.git\" }"),
            "{manifest}"
        );
        let chain = std::fs::read_to_string(spec.dir.join("chains/triage_ticket.rs")).unwrap();
        assert!(chain.contains("pub struct TriageTicketChain"), "{chain}");
        assert!(!chain.contains("@@"), "{chain}");
    }
}
