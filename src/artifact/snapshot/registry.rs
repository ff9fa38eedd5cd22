//! The sources of a snapshot's registry and git dependencies (`log --vendor`): `cargo vendor`
//! run on the materialized snapshot, its output taken under `cargo-vendor/` with the source
//! replacement it needs (`cargo-vendor/source-config.toml`), and the `--config` arguments a
//! build passes to use them with no registry at all.
//!
//! Owns running `cargo vendor` and the format of the saved source config. Does not own which
//! crate files go in (`plan`, `files`) or running the build (`runner::compile`).

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use tempfile::TempDir;
use toml_edit::{DocumentMut, Item, Key, Table, Value};

use super::files::slash;
use crate::artifact::ArtifactError;

/// The folder of the snapshot that holds the vendored registry and git sources, one
/// `<crate>-<version>/` folder each (with cargo's `.cargo-checksum.json`).
pub const CARGO_VENDOR_DIR: &str = "cargo-vendor";

/// The source replacement the vendored sources need, inside [`CARGO_VENDOR_DIR`] (cargo's
/// directory source skips entries without a `Cargo.toml`): cargo's own `[source]` tables, the
/// replacement named `REPLACEMENT` (`chainlog-vendored`), its `directory` relative to the snapshot.
pub const SOURCE_CONFIG_FILE: &str = "cargo-vendor/source-config.toml";

/// The name of the replacement source; not cargo's default `vendored-sources`, so a user's
/// own `[source.vendored-sources]` config never merges with it.
const REPLACEMENT: &str = "chainlog-vendored";

/// What `cargo vendor` produced for a snapshot.
#[derive(Debug)]
pub(super) struct Vendored {
    /// Holds the vendored files until the artifact is written.
    pub dir: TempDir,
    /// Every file under the vendor folder: `/`-separated path relative to it → the file.
    pub files: Vec<(String, PathBuf)>,
    /// The text of [`SOURCE_CONFIG_FILE`]; `None` when there was nothing to vendor.
    pub source_config: Option<String>,
    /// How many crates were vendored.
    pub crates: usize,
}

/// Runs `cargo vendor --locked --versioned-dirs` on the snapshot materialized by
/// `materialize` into a temporary folder: offline first (the crates of a crate that was
/// just built are in cargo's local cache), then online for what the cache lacks (cargo
/// vendors the dependencies of every platform, which a build here never downloaded).
pub(super) fn vendor(
    materialize: impl FnOnce(&Path) -> Result<(), ArtifactError>,
) -> Result<Vendored, ArtifactError> {
    let dir =
        tempfile::tempdir().map_err(|source| ArtifactError::io(std::env::temp_dir(), source))?;
    let crate_dir = dir.path().join("crate");
    materialize(&crate_dir)?;
    if !crate_dir.join("Cargo.lock").is_file() {
        return Err(ArtifactError::Vendor {
            first_error: "the crate has no Cargo.lock: run `cargo generate-lockfile` first"
                .to_owned(),
        });
    }
    let out = dir.path().join(CARGO_VENDOR_DIR);
    let stdout = match run_cargo_vendor(&crate_dir, &out, true) {
        Ok(stdout) => stdout,
        Err(ArtifactError::Vendor { .. }) => run_cargo_vendor(&crate_dir, &out, false)?,
        Err(other) => return Err(other),
    };
    let files = if out.is_dir() {
        let mut files = Vec::new();
        walk(&out, Path::new(""), &mut files)?;
        files.sort();
        files
    } else {
        Vec::new()
    };
    let crates = fs::read_dir(&out)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().join("Cargo.toml").is_file())
                .count()
        })
        .unwrap_or(0);
    let source_config = if crates == 0 {
        None
    } else {
        Some(source_config(&stdout)?)
    };
    Ok(Vendored {
        dir,
        files,
        source_config,
        crates,
    })
}

/// One `cargo vendor`; its stdout (the source config it asks for).
fn run_cargo_vendor(crate_dir: &Path, out: &Path, offline: bool) -> Result<String, ArtifactError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command
        .args(["vendor", "--locked", "--versioned-dirs"])
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .arg(out)
        .current_dir(crate_dir)
        .stdin(Stdio::null());
    if offline {
        command.arg("--offline");
    }
    let output = command.output().map_err(|err| {
        if err.kind() == std::io::ErrorKind::NotFound {
            ArtifactError::NoCargo
        } else {
            ArtifactError::io(crate_dir, err)
        }
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(ArtifactError::Vendor {
            first_error: first_error(&stderr),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Cargo's first error line with the lines that continue it (up to a blank line), or its
/// last line when it printed no error.
fn first_error(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    match lines.iter().position(|line| line.starts_with("error")) {
        Some(start) => lines[start..]
            .iter()
            .take_while(|line| !line.trim().is_empty())
            .take(8)
            .copied()
            .collect::<Vec<_>>()
            .join("\n"),
        None => lines
            .last()
            .map_or_else(|| "cargo vendor failed".to_owned(), |l| (*l).to_owned()),
    }
}

/// Every file under `root/relative` (dotfiles included: cargo refuses a vendored crate
/// without its `.cargo-checksum.json`, and the checksums cover every file).
fn walk(
    root: &Path,
    relative: &Path,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), ArtifactError> {
    let dir = root.join(relative);
    let entries = fs::read_dir(&dir).map_err(|source| ArtifactError::io(&dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| ArtifactError::io(&dir, source))?;
        let child = relative.join(entry.file_name());
        let path = entry.path();
        // `metadata` follows a symlink: the file it names is taken as a file.
        let meta = fs::metadata(&path).map_err(|source| ArtifactError::io(&path, source))?;
        if meta.is_dir() {
            walk(root, &child, out)?;
        } else if meta.is_file() {
            let Some(slashed) = slash(&child) else {
                return Err(ArtifactError::Vendor {
                    first_error: format!(
                        "vendored file `{}` has a name that is not UTF-8",
                        path.display()
                    ),
                });
            };
            out.push((slashed, path));
        }
    }
    Ok(())
}

/// The saved source config from `cargo vendor`'s stdout: its `[source.*]` tables, the
/// replacement renamed [`REPLACEMENT`] with `directory = "cargo-vendor"` (no absolute
/// path of this machine).
fn source_config(stdout: &str) -> Result<String, ArtifactError> {
    let invalid = |message: String| ArtifactError::Vendor {
        first_error: format!("unexpected source config from cargo vendor: {message}"),
    };
    let printed: DocumentMut = stdout
        .parse()
        .map_err(|err: toml_edit::TomlError| invalid(err.to_string()))?;
    let sources = printed
        .get("source")
        .and_then(Item::as_table_like)
        .ok_or_else(|| invalid("no [source] table".to_owned()))?;
    let mut saved = Table::new();
    saved.set_implicit(true);
    let mut has_replacement = false;
    for (name, item) in sources.iter() {
        let table = item
            .as_table_like()
            .ok_or_else(|| invalid(format!("`source.{name}` is not a table")))?;
        if table.contains_key("directory") {
            has_replacement = true;
            let mut replacement = Table::new();
            replacement.insert("directory", Item::Value(Value::from(CARGO_VENDOR_DIR)));
            saved.insert(REPLACEMENT, Item::Table(replacement));
            continue;
        }
        let mut copy = Table::new();
        for (key, value) in table.iter() {
            let value = match (key, value.as_str()) {
                ("replace-with", Some(_)) => Item::Value(Value::from(REPLACEMENT)),
                _ => value.clone(),
            };
            copy.insert(key, value);
        }
        saved.insert(name, Item::Table(copy));
    }
    if !has_replacement {
        return Err(invalid("no directory source".to_owned()));
    }
    let mut doc = DocumentMut::new();
    doc.insert("source", Item::Table(saved));
    Ok(doc.to_string())
}

/// The arguments that make cargo build the crate at `crate_dir` from its vendored sources
/// with no registry: one `--config source.<name>.<key>=<value>` per key of
/// [`SOURCE_CONFIG_FILE`] (the directory made absolute), then `--offline`. Empty when
/// `crate_dir` has no [`CARGO_VENDOR_DIR`].
///
/// # Errors
///
/// [`ArtifactError::Io`] when the source config cannot be read, [`ArtifactError::Vendor`]
/// when it is not what [`SnapshotPlan::vendor_registry_sources`](super::SnapshotPlan::vendor_registry_sources)
/// writes.
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// assert!(chainlog::artifact::source_replacement_args(dir.path())?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn source_replacement_args(crate_dir: &Path) -> Result<Vec<OsString>, ArtifactError> {
    let vendor_dir = crate_dir.join(CARGO_VENDOR_DIR);
    if !vendor_dir.is_dir() {
        return Ok(Vec::new());
    }
    let path = crate_dir.join(SOURCE_CONFIG_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        // Written by hand or by an older chainlog: crates.io only.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => format!(
            "[source.crates-io]\nreplace-with = \"{REPLACEMENT}\"\n\n\
             [source.{REPLACEMENT}]\ndirectory = \"{CARGO_VENDOR_DIR}\"\n"
        ),
        Err(source) => return Err(ArtifactError::Io { path, source }),
    };
    let invalid = |message: String| ArtifactError::Vendor {
        first_error: format!("invalid `{}`: {message}", path.display()),
    };
    let doc: DocumentMut = text
        .parse()
        .map_err(|err: toml_edit::TomlError| invalid(err.to_string()))?;
    let sources = doc
        .get("source")
        .and_then(Item::as_table_like)
        .ok_or_else(|| invalid("no [source] table".to_owned()))?;
    let mut args = Vec::new();
    for (name, item) in sources.iter() {
        let table = item
            .as_table_like()
            .ok_or_else(|| invalid(format!("`source.{name}` is not a table")))?;
        for (key, value) in table.iter() {
            let value = value
                .as_value()
                .ok_or_else(|| invalid(format!("`source.{name}.{key}` is not a value")))?;
            let value = match (key, value.as_str()) {
                ("directory", Some(dir)) => {
                    Value::from(crate_dir.join(dir).to_string_lossy().as_ref())
                }
                _ => {
                    let mut value = value.clone();
                    value.decor_mut().clear();
                    value
                }
            };
            let key_path = format!(
                "source.{}.{}",
                Key::new(name).display_repr(),
                Key::new(key).display_repr()
            );
            args.push(OsString::from("--config"));
            args.push(OsString::from(format!("{key_path}={value}")));
        }
    }
    args.push(OsString::from("--offline"));
    Ok(args)
}

/// How many packages `lock` (a `Cargo.lock`) takes from a registry or git (those with a
/// `source`); 0 for text that is not a lock file.
pub(super) fn external_packages(lock: &[u8]) -> usize {
    let Ok(text) = std::str::from_utf8(lock) else {
        return 0;
    };
    let Ok(doc) = text.parse::<DocumentMut>() else {
        return 0;
    };
    doc.get("package")
        .and_then(Item::as_array_of_tables)
        .map_or(0, |packages| {
            packages.iter().filter(|p| p.contains_key("source")).count()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::SnapshotPlan;

    /// A dependency chainlog's own `Cargo.lock` pins, so cargo's local cache holds it
    /// wherever chainlog's tests were built.
    const ITOA_LOCK: &str = "version = 4\n\n\
        [[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\n \"itoa\",\n]\n\n\
        [[package]]\nname = \"itoa\"\nversion = \"1.0.19\"\n\
        source = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
        checksum = \"3bd1574e617a9a6c1f8f8181bd7e841e1f20e4277607ef28945765188d6284d4\"\n";

    /// Proves the point of `--vendor`: a crate with a registry dependency, vendored from
    /// cargo's local cache, builds from its materialized snapshot offline with an empty
    /// `CARGO_HOME` (no registry index, no crate cache: air-gapped). The crate is a
    /// workspace root, so `cargo-vendor/` below it must not be taken for members.
    #[test]
    fn vendored_snapshot_builds_air_gapped() {
        let source = tempfile::tempdir().unwrap();
        for (path, text) in [
            (
                "Cargo.toml",
                "[workspace]\n\n[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                 [dependencies]\nitoa = \"1\"\n",
            ),
            ("Cargo.lock", ITOA_LOCK),
            (
                "src/main.rs",
                "fn main() { print!(\"{}\", itoa::Buffer::new().format(42)); }\n",
            ),
        ] {
            let path = source.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        let mut plan = SnapshotPlan::collect(source.path()).unwrap();
        assert_eq!(plan.external_packages(), 1);
        assert_eq!(plan.vendor_registry_sources().unwrap(), 1);
        let paths: Vec<&str> = plan.files().map(|(p, _)| p).collect();
        for needed in [
            "cargo-vendor/itoa-1.0.19/Cargo.toml",
            "cargo-vendor/itoa-1.0.19/.cargo-checksum.json",
            "cargo-vendor/itoa-1.0.19/src/lib.rs",
            SOURCE_CONFIG_FILE,
        ] {
            assert!(paths.contains(&needed), "{needed} missing from {paths:?}");
        }
        let out = tempfile::tempdir().unwrap();
        let snapshot = out.path().join("code");
        plan.materialize(&snapshot).unwrap();
        drop(plan);
        let empty_home = out.path().join("cargo-home");
        fs::create_dir(&empty_home).unwrap();

        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = Command::new(cargo)
            .args(["run", "--locked", "--quiet"])
            .args(source_replacement_args(&snapshot).unwrap())
            .current_dir(&snapshot)
            .env("CARGO_HOME", &empty_home)
            .env("CARGO_TARGET_DIR", out.path().join("target"))
            .env_remove("RUSTFLAGS")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "cargo build failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout), "42");
        assert!(
            !empty_home.join("registry").exists(),
            "cargo reached for a registry"
        );
    }

    #[test]
    fn crate_without_a_lock_is_refused_with_a_clear_error() {
        let source = tempfile::tempdir().unwrap();
        fs::write(
            source.path().join("Cargo.toml"),
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\n",
        )
        .unwrap();
        let mut plan = SnapshotPlan::collect(source.path()).unwrap();
        let err = plan.vendor_registry_sources().unwrap_err();
        assert!(err.to_string().contains("no Cargo.lock"), "{err}");
    }

    const CARGO_STDOUT: &str = "[source.crates-io]\nreplace-with = \"vendored-sources\"\n\n\
        [source.\"git+https://example.com/x?rev=abc\"]\ngit = \"https://example.com/x\"\n\
        rev = \"abc\"\nreplace-with = \"vendored-sources\"\n\n\
        [source.vendored-sources]\ndirectory = \"/tmp/abc/cargo-vendor\"\n";

    #[test]
    fn source_config_renames_the_replacement_and_drops_the_absolute_path() {
        let saved = source_config(CARGO_STDOUT).unwrap();
        assert!(!saved.contains("/tmp/abc"), "{saved}");
        assert!(!saved.contains("vendored-sources"), "{saved}");
        assert!(
            saved.contains("[source.chainlog-vendored]\ndirectory = \"cargo-vendor\""),
            "{saved}"
        );
        assert!(saved.contains("git = \"https://example.com/x\""), "{saved}");
    }

    #[test]
    fn build_args_make_the_directory_absolute_and_keep_git_sources() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(CARGO_VENDOR_DIR)).unwrap();
        fs::write(
            dir.path().join(SOURCE_CONFIG_FILE),
            source_config(CARGO_STDOUT).unwrap(),
        )
        .unwrap();
        let args: Vec<String> = source_replacement_args(dir.path())
            .unwrap()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let absolute = dir.path().join(CARGO_VENDOR_DIR);
        for expected in [
            "source.crates-io.replace-with=\"chainlog-vendored\"".to_owned(),
            "source.\"git+https://example.com/x?rev=abc\".rev=\"abc\"".to_owned(),
            format!(
                "source.chainlog-vendored.directory=\"{}\"",
                absolute.display()
            ),
        ] {
            assert!(args.contains(&expected), "{expected} not in {args:?}");
        }
        assert_eq!(args.last().map(String::as_str), Some("--offline"));
    }

    #[test]
    fn first_error_quotes_the_error_block() {
        let stderr = "    Updating index\nerror: failed to sync\n\nCaused by:\n  x\n";
        assert_eq!(first_error(stderr), "error: failed to sync");
        assert_eq!(first_error("warning: only\n"), "warning: only");
    }

    #[test]
    fn external_packages_counts_registry_and_git_entries() {
        let lock = "version = 4\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n\n\
            [[package]]\nname = \"itoa\"\nversion = \"1.0.19\"\n\
            source = \"registry+https://github.com/rust-lang/crates.io-index\"\n";
        assert_eq!(external_packages(lock.as_bytes()), 1);
        assert_eq!(external_packages(b"not toml ["), 0);
    }
}
