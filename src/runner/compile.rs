//! "Reconstruct from code", cargo build: compile a logged artifact's own crate snapshot
//! (`code/`) into a binary, cached by the snapshot's hash, and hand the command over to it —
//! the analog of MLflow re-creating a model's environment and re-executing its code.
//!
//! Owns the build cache (`<builds>/<snapshot sha256>/bin/<binary>` with a `BUILT` marker
//! written last, so an entry is whole or absent), the per-crate work folder (the snapshot is
//! synced into `<builds>/work/<package>/` writing only files that changed, so cargo's
//! fingerprints survive and a second snapshot of the same crate rebuilds only what changed),
//! the file lock that makes two processes build once, and the hand-over (`exec` on Unix).
//! Does not own verifying the artifact ([`crate::artifact`]), which happens before any of this.
//!
//! Loading runs the artifact's code and its build script: only load models you trust.

use std::{
    collections::BTreeSet,
    ffi::OsString,
    fs,
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::artifact::{ArtifactError, LoadedArtifact, source_replacement_args};

/// The variable that overrides where builds are cached (default: beside the model cache).
pub const BUILD_DIR_VAR: &str = "CHAINLOG_BUILD_DIR";
/// The variable naming a cargo target directory to share (default: `<builds>/target`).
pub const BUILD_TARGET_DIR_VAR: &str = "CHAINLOG_BUILD_TARGET_DIR";
/// The variable that picks the cargo profile (`release` by default; `dev` in tests).
pub const BUILD_PROFILE_VAR: &str = "CHAINLOG_BUILD_PROFILE";

/// The marker written last into a finished cache entry; it names the binary.
const BUILT_MARKER: &str = "BUILT";

/// How `predict`/`serve` get the logged chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BuildMode {
    /// This binary when it holds the chain with the logged code hash, else cargo.
    #[default]
    Auto,
    /// Only this binary; refuse a chain it does not hold in the logged version.
    Local,
    /// Always compile the artifact's own code.
    Cargo,
}

/// How to compile a snapshot.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// Cargo's profile: `release` when `None`.
    pub profile: Option<String>,
    /// Build with cargo's offline mode (no registry access).
    pub offline: bool,
    /// Hide cargo's own output.
    pub quiet: bool,
    /// The build cache (default: [`default_build_dir`]).
    pub build_dir: Option<PathBuf>,
    /// A cargo target directory to share (default: `<build_dir>/target`).
    pub target_dir: Option<PathBuf>,
}

impl CompileOptions {
    /// Options from the environment ([`BUILD_PROFILE_VAR`], [`BUILD_DIR_VAR`],
    /// [`BUILD_TARGET_DIR_VAR`]); flags set the rest.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        Self {
            profile: var(BUILD_PROFILE_VAR).map(|v| v.to_string_lossy().into_owned()),
            offline: false,
            quiet: false,
            build_dir: var(BUILD_DIR_VAR).map(PathBuf::from),
            target_dir: var(BUILD_TARGET_DIR_VAR).map(PathBuf::from),
        }
    }
}

/// A snapshot compiled into a binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledModel {
    /// The binary, in the build cache.
    pub binary: PathBuf,
    /// Whether it came from the cache (no cargo process was started).
    pub cache_hit: bool,
    /// The verified artifact folder it was built from.
    pub artifact: PathBuf,
}

/// Why a snapshot could not be compiled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// The artifact carries no crate snapshot (logged before snapshots existed, or without
    /// the crate's files).
    #[error(
        "the model at `{artifact}` has no crate snapshot under code/ (it was logged without its crate's files), so it cannot be built with cargo; use --build local with a binary that holds chain `{chain}`"
    )]
    NoSnapshot {
        /// The artifact folder.
        artifact: PathBuf,
        /// The chain.
        chain: String,
    },
    /// No cargo to run.
    #[error(
        "cargo is not installed (or not on PATH): install Rust from https://rustup.rs, or use --build local"
    )]
    NoCargo,
    /// Cargo refused the snapshot.
    #[error("failed to build the code of the model at `{artifact}`:\n{first_error}")]
    Build {
        /// The artifact folder.
        artifact: PathBuf,
        /// Cargo's first error, as it printed it.
        first_error: String,
    },
    /// The build succeeded but no binary it made holds the logged chain.
    #[error(
        "cargo built the code of the model at `{artifact}`, but none of its binaries holds chain `{chain}` with the logged code (a crate's binary must be `chainlog::main!()`)"
    )]
    NoBinary {
        /// The artifact folder.
        artifact: PathBuf,
        /// The chain.
        chain: String,
    },
    /// The snapshot carries vendored sources (`log --vendor`) whose source config cannot be
    /// read.
    #[error("failed to read the vendored sources' config of the model's code")]
    Vendored(#[source] ArtifactError),
    /// A file of the cache could not be read or written.
    #[error("failed to {action} `{path}`")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CompileError {
    let path = path.to_path_buf();
    move |source| CompileError::Io {
        action,
        path,
        source,
    }
}

/// The build cache: `$CHAINLOG_BUILD_DIR`, else `builds/` beside the model cache.
///
/// # Errors
///
/// [`CompileError::Io`] when no cache folder can be found.
pub fn default_build_dir() -> Result<PathBuf, CompileError> {
    if let Some(dir) = std::env::var_os(BUILD_DIR_VAR).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let models = crate::store::default_cache_dir().map_err(|err| CompileError::Io {
        action: "find",
        path: PathBuf::from("the build cache"),
        source: std::io::Error::other(err.to_string()),
    })?;
    Ok(models.join("builds"))
}

/// Compiles the verified `artifact`'s crate snapshot, or takes it from the cache.
///
/// The caller has verified every hash of the artifact ([`LoadedArtifact::verify`]); the cache
/// key is the snapshot's recorded SHA-256, so a verified snapshot maps to exactly one entry.
///
/// # Errors
///
/// See [`CompileError`]: no snapshot, no cargo, a snapshot that does not compile (cargo's
/// first error shown; nothing cached), a cache folder that cannot be written.
pub fn compile_snapshot(
    artifact: &LoadedArtifact,
    options: &CompileOptions,
) -> Result<CompiledModel, CompileError> {
    let flavor = artifact.flavor();
    let (Some(record), Some(snapshot)) = (&flavor.crate_snapshot, artifact.snapshot_dir()) else {
        return Err(CompileError::NoSnapshot {
            artifact: artifact.dir().to_path_buf(),
            chain: flavor.chain.clone(),
        });
    };
    let manifest = snapshot.join("Cargo.toml");
    let package = fs::read_to_string(&manifest)
        .ok()
        .and_then(|text| crate::project::package_name(&text))
        .filter(|name| !name.is_empty() && !name.contains(['/', '\\', '.']))
        .ok_or_else(|| CompileError::NoSnapshot {
            artifact: artifact.dir().to_path_buf(),
            chain: flavor.chain.clone(),
        })?;
    let builds = match &options.build_dir {
        Some(dir) => dir.clone(),
        None => default_build_dir()?,
    };
    // One entry per snapshot and profile: a dev build never answers for a release one.
    let profile = options.profile.as_deref().unwrap_or("release");
    let entry = builds.join(format!("{}-{profile}", record.sha256));
    if let Some(binary) = cached_binary(&entry) {
        return Ok(CompiledModel {
            binary,
            cache_hit: true,
            artifact: artifact.dir().to_path_buf(),
        });
    }
    fs::create_dir_all(builds.join("work")).map_err(io_error("create", &builds))?;
    let lock_path = builds.join("work").join(format!("{package}.lock"));
    let lock = fs::File::create(&lock_path).map_err(io_error("create", &lock_path))?;
    if lock.try_lock().is_err() {
        eprintln!(
            "waiting for another process building `{package}` (snapshot {})…",
            short(&record.sha256)
        );
        lock.lock().map_err(io_error("lock", &lock_path))?;
    }
    // Someone else may have built it while this process waited.
    if let Some(binary) = cached_binary(&entry) {
        return Ok(CompiledModel {
            binary,
            cache_hit: true,
            artifact: artifact.dir().to_path_buf(),
        });
    }
    let work = builds.join("work").join(&package);
    sync_tree(&snapshot, &work)?;
    note_toolchain(&work, &flavor.rustc_version);
    // A snapshot logged with `--vendor` builds from its own sources, offline.
    let replacement = source_replacement_args(&work).map_err(CompileError::Vendored)?;
    if !options.quiet {
        let vendored = if replacement.is_empty() {
            ""
        } else {
            ", vendored sources, offline"
        };
        eprintln!(
            "building `{package}` from the model's code (snapshot {}{vendored})…",
            short(&record.sha256)
        );
    }
    let built = cargo_build(&work, &builds, &replacement, options).map_err(|err| match err {
        CargoFailure::NotFound => CompileError::NoCargo,
        CargoFailure::Io(source) => CompileError::Io {
            action: "run cargo in",
            path: work.clone(),
            source,
        },
        CargoFailure::Failed(first_error) => CompileError::Build {
            artifact: artifact.dir().to_path_buf(),
            first_error,
        },
    })?;
    // A crate may have several binaries: the one to hand over to is the one that holds the
    // logged chain with the logged code hash, asked of each (`chains --json`).
    let binary = built
        .iter()
        .find(|binary| holds_chain(binary, &flavor.chain, &flavor.code.sha256))
        .ok_or_else(|| CompileError::NoBinary {
            artifact: artifact.dir().to_path_buf(),
            chain: flavor.chain.clone(),
        })?;
    let binary = store_entry(&entry, binary)?;
    drop(lock);
    Ok(CompiledModel {
        binary,
        cache_hit: false,
        artifact: artifact.dir().to_path_buf(),
    })
}

/// The binary of a finished cache entry.
fn cached_binary(entry: &Path) -> Option<PathBuf> {
    let name = fs::read_to_string(entry.join(BUILT_MARKER)).ok()?;
    let binary = entry.join("bin").join(name.trim());
    binary.is_file().then_some(binary)
}

/// Copies `binary` into a new entry folder and renames it into place, marker last, so an
/// entry is whole or absent.
fn store_entry(entry: &Path, binary: &Path) -> Result<PathBuf, CompileError> {
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = entry.with_extension(format!("tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    let result = (|| {
        let bin_dir = staging.join("bin");
        fs::create_dir_all(&bin_dir).map_err(io_error("create", &bin_dir))?;
        fs::copy(binary, bin_dir.join(&name)).map_err(io_error("copy", binary))?;
        let marker = staging.join(BUILT_MARKER);
        fs::write(&marker, &name).map_err(io_error("write", &marker))?;
        let _ = fs::remove_dir_all(entry);
        fs::rename(&staging, entry).map_err(io_error("rename", &staging))
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result.map(|()| entry.join("bin").join(name))
}

/// Makes `to` hold exactly the files of `from`, rewriting only files whose bytes differ (so
/// cargo's mtime-based fingerprints see only real changes) and removing the rest (build output
/// never lives here: the target dir is elsewhere).
fn sync_tree(from: &Path, to: &Path) -> Result<(), CompileError> {
    let wanted = list_files(from)?;
    for relative in &wanted {
        let source = from.join(relative);
        let target = to.join(relative);
        let bytes = fs::read(&source).map_err(io_error("read", &source))?;
        if fs::read(&target).ok().as_deref() == Some(bytes.as_slice()) {
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_error("create", parent))?;
        }
        fs::write(&target, &bytes).map_err(io_error("write", &target))?;
    }
    if to.is_dir() {
        for relative in list_files(to)? {
            if !wanted.contains(&relative) {
                let stale = to.join(&relative);
                fs::remove_file(&stale).map_err(io_error("remove", &stale))?;
            }
        }
    }
    Ok(())
}

/// Every file under `dir`, relative to it.
fn list_files(dir: &Path) -> Result<BTreeSet<PathBuf>, CompileError> {
    let mut out = BTreeSet::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let folder = dir.join(&relative);
        for entry in fs::read_dir(&folder).map_err(io_error("list", &folder))? {
            let entry = entry.map_err(io_error("list", &folder))?;
            let path = relative.join(entry.file_name());
            let kind = entry.file_type().map_err(io_error("read", &folder))?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                out.insert(path);
            }
        }
    }
    Ok(out)
}

/// One line when the compiler here is not the one that logged the model (`rustc --version`
/// run in the work folder, so a snapshot's `rust-toolchain.toml` applies).
fn note_toolchain(work: &Path, logged: &str) {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let here = Command::new(rustc)
        .arg("--version")
        .current_dir(work)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    if let Some(here) = here
        && here != logged
    {
        eprintln!("note: the model was logged with {logged}; building with {here}");
    }
}

enum CargoFailure {
    NotFound,
    Io(std::io::Error),
    Failed(String),
}

/// `cargo build --locked` of the crate in `work` (with `extra` arguments: the vendored
/// sources' replacement); the path of the binary it built.
fn cargo_build(
    work: &Path,
    builds: &Path,
    extra: &[OsString],
    options: &CompileOptions,
) -> Result<Vec<PathBuf>, CargoFailure> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let target_dir = options
        .target_dir
        .clone()
        .unwrap_or_else(|| builds.join("target"));
    let profile = options.profile.as_deref().unwrap_or("release");
    let mut command = Command::new(cargo);
    command
        .args(["build", "--locked", "--bins", "--profile", profile])
        .args(["--message-format", "json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(work.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .args(extra);
    if options.offline && !extra.iter().any(|arg| arg == "--offline") {
        command.arg("--offline");
    }
    if options.quiet {
        command.arg("--quiet");
    }
    let mut child = command.spawn().map_err(|err| {
        if err.kind() == std::io::ErrorKind::NotFound {
            CargoFailure::NotFound
        } else {
            CargoFailure::Io(err)
        }
    })?;
    // Cargo's own output goes to the terminal as it comes (unless quiet) and is kept, so a
    // failure can quote its first error.
    let stderr = child.stderr.take();
    let quiet = options.quiet;
    let relay = std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(stderr) = stderr {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !quiet {
                    let _ = writeln!(std::io::stderr(), "{line}");
                }
                kept.push(line);
            }
        }
        kept
    });
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout).map_err(CargoFailure::Io)?;
    }
    let status = child.wait().map_err(CargoFailure::Io)?;
    let lines = relay.join().unwrap_or_default();
    if !status.success() {
        return Err(CargoFailure::Failed(first_error(&lines)));
    }
    Ok(stdout.lines().filter_map(bin_executable).collect())
}

/// Whether `binary chains --json` lists `chain` with code hash `sha256`.
fn holds_chain(binary: &Path, chain: &str, sha256: &str) -> bool {
    let Ok(output) = Command::new(binary)
        .args(["chains", "--json"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return false;
    };
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap_or_default();
    output.status.success()
        && listed.iter().any(|entry| {
            entry.get("name").and_then(serde_json::Value::as_str) == Some(chain)
                && entry.get("sha256").and_then(serde_json::Value::as_str) == Some(sha256)
        })
}

/// The executable of a `compiler-artifact` message for a binary target.
fn bin_executable(line: &str) -> Option<PathBuf> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    let is_bin = message
        .get("target")?
        .get("kind")?
        .as_array()?
        .iter()
        .any(|kind| kind.as_str() == Some("bin"));
    let executable = message.get("executable")?.as_str()?;
    is_bin.then(|| PathBuf::from(executable))
}

/// Cargo's first error block (from the first line starting `error` to the next blank line),
/// or its last lines when it printed none.
fn first_error(lines: &[String]) -> String {
    if let Some(start) = lines.iter().position(|line| line.starts_with("error")) {
        return lines[start..]
            .iter()
            .take_while(|line| !line.trim().is_empty())
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n");
    }
    let tail = lines.len().saturating_sub(10);
    lines[tail..].join("\n")
}

fn short(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

/// Hands the command over to `binary`: the same arguments — but the model named by the
/// verified `artifact` folder (so the store is not asked again, and an alias moved meanwhile
/// cannot swap the model) and `--build local` (so it never compiles again) — the same
/// environment, its exit code and signals. On Unix the process
/// becomes `binary` (`exec`); elsewhere it waits for it and returns its exit code.
///
/// # Errors
///
/// Only when `binary` cannot be started (on Unix, a successful hand-over never returns).
pub fn hand_over(binary: &Path, artifact: &Path, args: Vec<OsString>) -> Result<i32, CompileError> {
    let mut command = Command::new(binary);
    command.args(with_local_build(args, artifact));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let error = command.exec();
        Err(CompileError::Io {
            action: "start",
            path: binary.to_path_buf(),
            source: error,
        })
    }
    #[cfg(not(unix))]
    {
        let status = command.status().map_err(io_error("start", binary))?;
        Ok(status.code().unwrap_or(1))
    }
}

/// `args` (without the program name) with every `--build X` / `--build=X` replaced by one
/// `--build local`, the model (`-m X`, `--model-uri X`, `--model-uri=X`) by `artifact`, and
/// `--expect-digest`/`--verify-key` left out (checked before the hand-over).
fn with_local_build(args: Vec<OsString>, artifact: &Path) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len() + 2);
    let mut skip_next = false;
    let mut model_next = false;
    for arg in args {
        if skip_next {
            skip_next = false;
            continue;
        }
        if model_next {
            model_next = false;
            out.push(artifact.as_os_str().to_owned());
            continue;
        }
        let text = arg.to_string_lossy();
        // The folder was verified here (digest, manifest, signature): the binary built from
        // the snapshot — maybe on an older chainlog without these flags — checks its
        // manifest again on its own.
        if ["--build", "--expect-digest", "--verify-key"].contains(&text.as_ref()) {
            skip_next = true;
            continue;
        }
        if ["--build=", "--expect-digest=", "--verify-key="]
            .iter()
            .any(|flag| text.starts_with(flag))
        {
            continue;
        }
        if text == "-m" || text == "--model-uri" {
            model_next = true;
        } else if text.starts_with("--model-uri=") || (text.starts_with("-m") && text.len() > 2) {
            out.push(OsString::from("--model-uri"));
            out.push(artifact.as_os_str().to_owned());
            continue;
        }
        out.push(arg);
    }
    out.push(OsString::from("--build"));
    out.push(OsString::from("local"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_over_arguments_force_a_local_build() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        let dir = Path::new("/cache/m-1");
        assert_eq!(
            with_local_build(
                args(&[
                    "predict",
                    "-m",
                    "models:/a@b",
                    "--build",
                    "cargo",
                    "--input",
                    "{}"
                ]),
                dir
            ),
            args(&[
                "predict",
                "-m",
                "/cache/m-1",
                "--input",
                "{}",
                "--build",
                "local"
            ])
        );
        assert_eq!(
            with_local_build(
                args(&["serve", "--build=auto", "--model-uri=models:/x/1"]),
                dir
            ),
            args(&["serve", "--model-uri", "/cache/m-1", "--build", "local"])
        );
        // Checked before the hand-over; the built binary may predate these flags.
        assert_eq!(
            with_local_build(
                args(&[
                    "predict",
                    "--verify-key",
                    "k.pub",
                    "--expect-digest=sha256:ab",
                    "-m",
                    "x",
                    "--expect-digest",
                    "ab"
                ]),
                dir
            ),
            args(&["predict", "-m", "/cache/m-1", "--build", "local"])
        );
    }

    #[test]
    fn first_error_quotes_cargos_first_error_block() {
        let lines: Vec<String> = [
            "   Compiling x v0.1.0",
            "error[E0425]: cannot find value `y` in this scope",
            " --> chains/t.rs:3:5",
            "  |",
            "",
            "error: could not compile `x`",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let quoted = first_error(&lines);
        assert!(quoted.starts_with("error[E0425]"), "{quoted}");
        assert!(quoted.contains("chains/t.rs:3:5"), "{quoted}");
        assert!(!quoted.contains("could not compile"), "{quoted}");
    }

    #[test]
    fn bin_executable_reads_cargo_json() {
        let line = r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"app"},"executable":"/t/debug/app"}"#;
        assert_eq!(bin_executable(line), Some(PathBuf::from("/t/debug/app")));
        let lib = r#"{"reason":"compiler-artifact","target":{"kind":["lib"]},"executable":null}"#;
        assert_eq!(bin_executable(lib), None);
    }

    #[test]
    fn sync_tree_writes_only_changed_files_and_removes_stale_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let (from, to) = (tmp.path().join("from"), tmp.path().join("to"));
        fs::create_dir_all(from.join("src")).unwrap();
        fs::write(from.join("src/a.rs"), "a").unwrap();
        fs::write(from.join("b.rs"), "b").unwrap();
        sync_tree(&from, &to).unwrap();
        let mtime = |p: &Path| fs::metadata(p).unwrap().modified().unwrap();
        let before = mtime(&to.join("src/a.rs"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(from.join("b.rs"), "b2").unwrap();
        fs::write(to.join("stale.rs"), "old").unwrap();
        sync_tree(&from, &to).unwrap();
        assert_eq!(
            mtime(&to.join("src/a.rs")),
            before,
            "unchanged file rewritten"
        );
        assert_eq!(fs::read_to_string(to.join("b.rs")).unwrap(), "b2");
        assert!(!to.join("stale.rs").exists());
    }

    #[test]
    fn store_entry_is_whole_or_absent() {
        let tmp = tempfile::tempdir().unwrap();
        let binary = tmp.path().join("app");
        fs::write(&binary, "#!").unwrap();
        let entry = tmp.path().join("builds/abc");
        fs::create_dir_all(tmp.path().join("builds")).unwrap();
        assert_eq!(cached_binary(&entry), None);
        let stored = store_entry(&entry, &binary).unwrap();
        assert_eq!(cached_binary(&entry), Some(stored));
        let missing = store_entry(&tmp.path().join("builds/def"), &tmp.path().join("nope"));
        assert!(missing.is_err());
        assert!(!tmp.path().join("builds/def").exists());
        let leftovers: Vec<_> = fs::read_dir(tmp.path().join("builds"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }
}
