//! The build-script helper of a chainlog crate.
//!
//! A crate that holds chains keeps each one in `chains/<name>.rs` (its prompts under
//! `prompts/`, its config in `chains/<name>.yaml`) and a `build.rs` whose `fn main()` makes
//! one call:
//!
//! ```no_run
//! chainlog_build::generate();
//! ```
//!
//! [`generate`] discovers `chains/*.rs` and writes `$OUT_DIR/chain_registry.rs`: one module
//! per chain (compiled from its file through `#[path]`) and `fn chain_registry()`, which lists
//! each chain with its name, description (the first `//!` line), path and source text
//! (`include_str!`, so what the binary records is exactly what it compiled). `chainlog::main!()`
//! in `src/main.rs` includes that file and hands the registry to chainlog's command line.
//!
//! This crate has no dependencies, so a build script that uses it compiles in seconds. It knows
//! nothing of chainlog's types beyond the paths the generated code names.

use std::{
    collections::BTreeMap,
    env,
    fmt::{self, Write as _},
    fs,
    path::{Path, PathBuf},
    process::Command,
};

/// The name of the generated file in `$OUT_DIR`.
pub const REGISTRY_FILE: &str = "chain_registry.rs";

/// One chain found under `chains/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainFile {
    /// The chain's name: the file stem, `[a-z][a-z0-9_]*`.
    pub name: String,
    /// The first line of the file's `//!` docs, empty when it has none.
    pub description: String,
    /// The file, as found (absolute when the crate dir was).
    pub path: PathBuf,
}

/// Why the chains of a crate cannot be registered. Each names the file or folder at fault.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// The crate has no `chains/` folder.
    NoChainsDir {
        /// The folder looked for.
        dir: PathBuf,
    },
    /// A folder or file could not be read.
    Read {
        /// What could not be read.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A chain file whose name is not snake_case.
    NotSnakeCase {
        /// The file.
        path: PathBuf,
    },
    /// Two files define a chain of the same name.
    Duplicate {
        /// The chain's name.
        name: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// A chain written as a folder (`chains/<name>/mod.rs`).
    FolderChain {
        /// The folder's `mod.rs`.
        path: PathBuf,
    },
    /// A chain file without `pub fn build(ctx: &BuildContext) -> Result<MyChain, ChainError>`.
    MissingBuildFn {
        /// The file.
        path: PathBuf,
    },
    /// The generated file could not be written.
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The build signature, short enough to show in full in rustc's error snippet.
const SHORT_SIGNATURE: &str = "pub fn build(ctx: &BuildContext) -> Result<MyChain, ChainError>";

/// What a chain file must define, as error messages and the generated code spell it.
/// (A named type, not `impl Chain`: in edition 2024 an `impl Trait` return type captures the
/// lifetime of `ctx`, which a registry entry cannot hold.)
const BUILD_SIGNATURE: &str = "pub fn build(ctx: &BuildContext) -> Result<MyChain, ChainError>, where MyChain implements chainlog::chain::Chain";

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoChainsDir { dir } => write!(
                f,
                "no chains folder at `{}`: a chainlog crate keeps each chain in chains/<name>.rs \
                 (`chainlog new <dir>` scaffolds one)",
                dir.display()
            ),
            Self::Read { path, .. } => write!(f, "failed to read `{}`", path.display()),
            Self::NotSnakeCase { path } => write!(
                f,
                "chain file `{}` must be named in snake_case: chains/<name>.rs with <name> matching [a-z][a-z0-9_]*",
                path.display()
            ),
            Self::Duplicate {
                name,
                first,
                second,
            } => write!(
                f,
                "two chains are named `{name}`: `{}` and `{}`; a chain is one file, chains/{name}.rs",
                first.display(),
                second.display()
            ),
            Self::FolderChain { path } => write!(
                f,
                "`{}` makes a chain of a folder; a chain is one file, chains/<name>.rs (code that chains share goes in the crate's library, src/lib.rs)",
                path.display()
            ),
            Self::MissingBuildFn { path } => write!(
                f,
                "chain file `{}` has no build function; it must define `{BUILD_SIGNATURE}`",
                path.display()
            ),
            Self::Write { path, .. } => write!(f, "failed to write `{}`", path.display()),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } | Self::Write { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Generates the chain registry of the crate whose build script calls it, and tells cargo to
/// rerun when `chains/` changes.
///
/// On any [`BuildError`] it prints the message (`error: …`, naming the file at fault) and
/// ends the build script with exit code 1, which fails the build: no panic, no backtrace.
pub fn generate() {
    if let Err(error) = try_generate() {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            let _ = write!(message, ": {cause}");
            source = cause.source();
        }
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

/// [`generate`], returning the error instead of panicking; the path written on success.
///
/// # Errors
///
/// See [`BuildError`].
pub fn try_generate() -> Result<PathBuf, BuildError> {
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    println!("cargo:rerun-if-changed=chains");
    let chains = discover(&root)?;
    for chain in &chains {
        println!("cargo:rerun-if-changed={}", chain.path.display());
    }
    let out = out_dir.join(REGISTRY_FILE);
    fs::write(&out, registry_code(&chains)).map_err(|source| BuildError::Write {
        path: out.clone(),
        source,
    })?;
    Ok(out)
}

/// The chains under `<crate_dir>/chains/`, sorted by name.
///
/// # Errors
///
/// A missing `chains/` folder, a file that is not snake_case, two chains of one name (a file
/// `x.rs` beside a folder `x/` holding `mod.rs`), a chain file with no `pub fn build`.
pub fn discover(crate_dir: &Path) -> Result<Vec<ChainFile>, BuildError> {
    let dir = crate_dir.join("chains");
    if !dir.is_dir() {
        return Err(BuildError::NoChainsDir { dir });
    }
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BuildError::Read { path, source }
    };
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    for entry in fs::read_dir(&dir).map_err(read_err(&dir))? {
        let entry = entry.map_err(read_err(&dir))?;
        let path = entry.path();
        // A folder with a `mod.rs` reads as a chain of that name: one more way to name a
        // chain twice, refused below. (`chains/mod.rs` itself is an ordinary chain, `mod`.)
        let (stem, file) = if path.is_dir() && path.join("mod.rs").is_file() {
            (entry.file_name(), path.join("mod.rs"))
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            match path.file_stem() {
                Some(stem) => (stem.to_owned(), path.clone()),
                None => continue,
            }
        } else {
            continue;
        };
        let name = stem.to_str().filter(|name| is_snake_case(name));
        let Some(name) = name else {
            return Err(BuildError::NotSnakeCase { path: file });
        };
        if let Some(first) = found.insert(name.to_owned(), file.clone()) {
            let (first, second) = if first < file {
                (first, file)
            } else {
                (file, first)
            };
            return Err(BuildError::Duplicate {
                name: name.to_owned(),
                first,
                second,
            });
        }
    }
    let mut chains = Vec::with_capacity(found.len());
    for (name, path) in found {
        if path.parent() != Some(dir.as_path()) {
            // Checked above to be a duplicate when a file shares its name; alone it is not a
            // chain this helper can embed as one source text.
            return Err(BuildError::FolderChain { path });
        }
        let source = fs::read_to_string(&path).map_err(read_err(&path))?;
        if !defines_build_fn(&source) {
            return Err(BuildError::MissingBuildFn { path });
        }
        chains.push(ChainFile {
            description: description(&source),
            name,
            path,
        });
    }
    Ok(chains)
}

/// The generated registry for `chains`: the text of `$OUT_DIR/chain_registry.rs`.
pub fn registry_code(chains: &[ChainFile]) -> String {
    let mut code =
        String::from("// Generated by chainlog-build from chains/*.rs. Do not edit.\n\n");
    for chain in chains {
        let _ = writeln!(
            code,
            "#[path = {path:?}]\n#[allow(missing_docs, dead_code)]\nmod chain_{name};",
            path = chain.path.display().to_string(),
            name = chain.name,
        );
    }
    code.push_str(
        "\n/// The chains compiled into this binary.\nfn chain_registry() -> ::chainlog::chain::ChainRegistry {\n    ::chainlog::chain::ChainRegistry::new(vec![\n",
    );
    for chain in chains {
        // The build function sits on a line of its own that names the file and the signature
        // it needs, so rustc's error for a wrong signature shows both.
        let _ = writeln!(
            code,
            "        ::chainlog::chain::ChainEntry::new(\n            {name:?},\n            {description:?},\n            {rel:?},\n            include_str!({path:?}),\n            chain_{name}::build, // chains/{name}.rs: wrong build signature? it must be {SHORT_SIGNATURE}\n        ),",
            name = chain.name,
            description = chain.description,
            rel = format!("chains/{}.rs", chain.name),
            path = chain.path.display().to_string(),
        );
    }
    code.push_str("    ])\n}\n");
    code
}

/// Emits `CHAINLOG_RUSTC_VERSION` (`$RUSTC --version`) and `CHAINLOG_TARGET` (`$TARGET`) for
/// the crate being built, the compiler and target an artifact's provenance records. Cargo
/// reruns build scripts when the compiler changes, so these never go stale.
pub fn emit_toolchain() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|version| !version.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    let target = env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=CHAINLOG_RUSTC_VERSION={version}");
    println!("cargo:rustc-env=CHAINLOG_TARGET={target}");
}

/// `[a-z][a-z0-9_]*`: a chain name is a Rust module name and an MLflow model name.
fn is_snake_case(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Whether the source defines a public `build` function at the top level (what the generated
/// registry calls). The signature itself is rustc's to check.
fn defines_build_fn(source: &str) -> bool {
    source.lines().any(|line| {
        let line = line.trim_start();
        ["pub fn build(", "pub fn build<", "pub async fn build("]
            .iter()
            .any(|start| line.starts_with(start))
    })
}

/// The first line of the file's `//!` docs, trimmed.
fn description(source: &str) -> String {
    source
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("//!"))
        .map(str::trim)
        .unwrap_or("")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAIN: &str = "//! Says hello.\n//! More.\npub fn build(ctx: &BuildContext) -> Result<Hello, ChainError> { todo!() }\n";

    fn crate_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("chains")).unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn discovers_chains_sorted_with_descriptions() {
        let dir = crate_with(&[
            ("chains/b_chain.rs", CHAIN),
            ("chains/a1.rs", "pub fn build(ctx: &BuildContext) {}"),
            ("chains/b_chain.yaml", "llm: {}"),
        ]);
        let chains = discover(dir.path()).unwrap();
        let names: Vec<_> = chains.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a1", "b_chain"]);
        assert_eq!(chains[1].description, "Says hello.");
        assert_eq!(chains[0].description, "");
    }

    #[test]
    fn missing_chains_folder_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = discover(dir.path()).unwrap_err();
        assert!(matches!(err, BuildError::NoChainsDir { .. }));
        let message = err.to_string();
        assert!(
            message.contains(&dir.path().join("chains").display().to_string()),
            "{message}"
        );
        assert!(message.contains("chainlog new"), "{message}");
    }

    #[test]
    fn not_snake_case_names_the_file() {
        for bad in ["MyChain.rs", "my-chain.rs", "1chain.rs", "_x.rs"] {
            let dir = crate_with(&[(&format!("chains/{bad}"), CHAIN)]);
            let message = discover(dir.path()).unwrap_err().to_string();
            assert!(
                message.contains(bad) && message.contains("snake_case"),
                "{message}"
            );
        }
    }

    #[test]
    fn two_chains_of_one_name_are_refused() {
        let dir = crate_with(&[("chains/dup.rs", CHAIN), ("chains/dup/mod.rs", CHAIN)]);
        let message = discover(dir.path()).unwrap_err().to_string();
        assert!(message.contains("two chains are named `dup`"), "{message}");
        assert!(
            message.contains("dup.rs") && message.contains("mod.rs"),
            "{message}"
        );
    }

    #[test]
    fn a_folder_chain_is_refused_and_mod_rs_is_a_chain_named_mod() {
        let dir = crate_with(&[("chains/folder/mod.rs", CHAIN)]);
        let message = discover(dir.path()).unwrap_err().to_string();
        assert!(message.contains("a chain is one file"), "{message}");
        let dir = crate_with(&[("chains/mod.rs", CHAIN)]);
        assert_eq!(discover(dir.path()).unwrap()[0].name, "mod");
    }

    #[test]
    fn chain_without_build_fn_names_the_file_and_signature() {
        let dir = crate_with(&[("chains/nobuild.rs", "pub fn make() {}\n")]);
        let message = discover(dir.path()).unwrap_err().to_string();
        assert!(message.contains("nobuild.rs"), "{message}");
        assert!(
            message.contains("pub fn build(ctx: &BuildContext) -> Result<MyChain, ChainError>"),
            "{message}"
        );
    }

    #[test]
    fn generated_code_names_each_chain_file_and_signature() {
        let dir = crate_with(&[("chains/hello.rs", CHAIN)]);
        let code = registry_code(&discover(dir.path()).unwrap());
        assert!(code.contains("mod chain_hello;"), "{code}");
        assert!(code.contains("include_str!("), "{code}");
        assert!(code.contains("\"chains/hello.rs\""), "{code}");
        assert!(
            code.contains("chain_hello::build, // chains/hello.rs: wrong build signature? it must be pub fn build("),
            "{code}"
        );
    }
}
