//! Cached Python virtual environments for tests that use a real Python
//! package (the official `openai` client, later `mlflow`) as the judge.
//!
//! [`provision`] creates one venv per requirements file, keyed by a hash of
//! the file's contents and the interpreter's version, in a cache directory
//! outside `target/` so `cargo clean` does not cost a reinstall:
//!
//! 1. `$CHAINLOG_TEST_CACHE` if set,
//! 2. else `$XDG_CACHE_HOME/chainlog-tests`,
//! 3. else `$HOME/.cache/chainlog-tests`.
//!
//! The interpreter is `python3` on `PATH`, or `$CHAINLOG_TEST_PYTHON`.
//!
//! Provisioning holds an exclusive file lock, so test functions on parallel
//! threads (`cargo test`) or in parallel processes (nextest) install once and
//! never see a half-built venv. A marker file is written only after `pip`
//! succeeds; a venv without it is deleted and built again.
//!
//! Anything missing panics with what failed and how to fix it: a test that
//! needs the judge must never pass by skipping it.

use std::{
    env,
    ffi::OsString,
    fs::{self, OpenOptions},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Instant,
};

use sha2::{Digest, Sha256};

/// Written inside the venv after `pip install` succeeded; its absence means
/// the venv is missing or half-built.
const MARKER: &str = ".chainlog-provisioned";

/// How many trailing lines of pip's output a failure message quotes.
const TAIL_LINES: usize = 40;

/// A provisioned virtual environment with its requirements installed.
#[derive(Debug, Clone)]
pub struct PythonEnv {
    /// The venv's own interpreter (`<venv>/bin/python`).
    python: PathBuf,
}

impl PythonEnv {
    /// The venv's interpreter.
    pub fn python(&self) -> &Path {
        &self.python
    }

    /// A command that runs the venv's interpreter, isolated from the
    /// caller's Python setup (`PYTHONPATH`, `PYTHONHOME`, user site) and
    /// with unbuffered output so stdout and stderr interleave as printed.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.python);
        isolate(&mut cmd);
        cmd.env("PYTHONUNBUFFERED", "1");
        cmd
    }
}

/// Returns a venv named `name` with `requirements_file` installed, creating
/// it on first use (`python3 -m venv`, then `pip install -r`).
///
/// # Panics
///
/// If the requirements file cannot be read, no interpreter runs, no cache
/// directory can be found or created, or `venv`/`pip` fails. The message
/// names the step, quotes the tool's output, and says how to fix it.
pub fn provision(name: &str, requirements_file: &Path) -> PythonEnv {
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
        "python_env::provision: name {name:?} must be non-empty and use only [A-Za-z0-9._-]"
    );
    let requirements = fs::read(requirements_file).unwrap_or_else(|err| {
        panic!(
            "python_env::provision({name}): cannot read requirements file {}: {err}",
            requirements_file.display()
        )
    });
    let base_python = base_python();
    let version = python_version(&base_python);

    let key = short_hash(&requirements, &version);
    let root = cache_root();
    fs::create_dir_all(&root).unwrap_or_else(|err| {
        panic!(
            "python_env::provision({name}): cannot create cache directory {}: {err}; \
             set CHAINLOG_TEST_CACHE to a writable directory",
            root.display()
        )
    });
    let venv = root.join(format!("{name}-{key}"));
    let env = PythonEnv {
        python: venv_python(&venv),
    };

    let lock_path = root.join(format!("{name}-{key}.lock"));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|err| {
            panic!(
                "python_env::provision({name}): cannot open lock file {}: {err}; \
                 set CHAINLOG_TEST_CACHE to a writable directory",
                lock_path.display()
            )
        });
    // Blocks while another thread or process provisions the same venv;
    // released when `lock` is dropped at the end of this function.
    lock.lock().unwrap_or_else(|err| {
        panic!(
            "python_env::provision({name}): cannot lock {}: {err}",
            lock_path.display()
        )
    });

    if venv.join(MARKER).is_file() && env.python.is_file() {
        return env;
    }

    let started = Instant::now();
    eprintln!(
        "python_env: provisioning {} ({version}, {}): missing or half-built, takes ~30 s",
        venv.display(),
        requirements_file.display()
    );
    if venv.exists() {
        // A previous run died before writing the marker.
        fs::remove_dir_all(&venv).unwrap_or_else(|err| {
            panic!(
                "python_env::provision({name}): cannot remove half-built venv {}: {err}; \
                 delete it by hand",
                venv.display()
            )
        });
    }

    let mut cmd = Command::new(&base_python);
    cmd.arg("-m").arg("venv").arg(&venv);
    let out = run(&mut cmd, "create the venv");
    if !out.status.success() || !env.python.is_file() {
        panic!(
            "python_env::provision({name}): `{} -m venv {}` failed ({}).\n\
             Fix: install python3 with the venv module (Debian/Ubuntu: \
             `apt-get install python3-venv`), or set CHAINLOG_TEST_PYTHON to an \
             interpreter that has it.\n{}",
            base_python.to_string_lossy(),
            venv.display(),
            out.status,
            tails(&out)
        );
    }

    let mut cmd = Command::new(&env.python);
    cmd.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "-r",
    ])
    .arg(requirements_file);
    let out = run(&mut cmd, "pip install");
    if !out.status.success() {
        panic!(
            "python_env::provision({name}): `pip install -r {}` into {} failed ({}).\n\
             Fix: check that PyPI is reachable and that every pin in the requirements \
             file exists for {version}; the half-built venv is redone on the \
             next run (or set CHAINLOG_TEST_CACHE to use another cache directory).\n{}",
            requirements_file.display(),
            venv.display(),
            out.status,
            tails(&out)
        );
    }

    let marker = format!(
        "requirements: {}\npython: {version}\n\n{}",
        requirements_file.display(),
        String::from_utf8_lossy(&requirements)
    );
    fs::write(venv.join(MARKER), marker).unwrap_or_else(|err| {
        panic!(
            "python_env::provision({name}): cannot write marker in {}: {err}",
            venv.display()
        )
    });
    eprintln!(
        "python_env: provisioned {} in {:.1} s",
        venv.display(),
        started.elapsed().as_secs_f64()
    );
    drop(lock);
    env
}

/// The interpreter that creates venvs: `$CHAINLOG_TEST_PYTHON` or `python3`.
fn base_python() -> OsString {
    non_empty_var("CHAINLOG_TEST_PYTHON").unwrap_or_else(|| OsString::from("python3"))
}

/// `python3 --version`, e.g. `Python 3.11.7`: part of the venv's key, since
/// a venv breaks when its interpreter is upgraded.
fn python_version(python: &OsString) -> String {
    let mut cmd = Command::new(python);
    cmd.arg("--version");
    isolate(&mut cmd);
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|err| {
        panic!(
            "python_env: cannot run `{} --version`: {err}.\n\
             Fix: install python3 with venv and pip (Debian/Ubuntu: \
             `apt-get install python3 python3-venv`), or set CHAINLOG_TEST_PYTHON \
             to an interpreter.",
            python.to_string_lossy()
        )
    });
    // Python 2 printed the version on stderr.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let version = text.trim().to_owned();
    if !out.status.success() || !version.starts_with("Python 3") {
        panic!(
            "python_env: `{} --version` did not report Python 3 ({}): {version:?}.\n\
             Fix: install python3 (Debian/Ubuntu: `apt-get install python3 python3-venv`), \
             or set CHAINLOG_TEST_PYTHON to a Python 3 interpreter.",
            python.to_string_lossy(),
            out.status
        );
    }
    version
}

/// The cache directory: `$CHAINLOG_TEST_CACHE`, else
/// `$XDG_CACHE_HOME/chainlog-tests`, else `$HOME/.cache/chainlog-tests`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = non_empty_var("CHAINLOG_TEST_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = non_empty_var("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("chainlog-tests");
    }
    if let Some(home) = non_empty_var("HOME") {
        return PathBuf::from(home).join(".cache").join("chainlog-tests");
    }
    panic!(
        "python_env: no cache directory for test venvs: none of CHAINLOG_TEST_CACHE, \
         XDG_CACHE_HOME, HOME is set; set CHAINLOG_TEST_CACHE to a writable directory \
         outside target/"
    );
}

/// First 12 hex digits of sha256(requirements ‖ "\n" ‖ python version).
fn short_hash(requirements: &[u8], python_version: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(requirements);
    hasher.update(b"\n");
    hasher.update(python_version.as_bytes());
    hasher
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

fn non_empty_var(name: &str) -> Option<OsString> {
    env::var_os(name).filter(|v| !v.is_empty())
}

/// Keeps the caller's Python and pip configuration out of the venv.
fn isolate(cmd: &mut Command) {
    cmd.env_remove("PYTHONHOME")
        .env_remove("PYTHONPATH")
        .env_remove("PIP_USER")
        .env_remove("VIRTUAL_ENV")
        .env("PYTHONNOUSERSITE", "1");
}

fn run(cmd: &mut Command, what: &str) -> Output {
    isolate(cmd);
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|err| {
        panic!(
            "python_env: cannot start {what} ({cmd:?}): {err}.\n\
             Fix: install python3 with venv and pip (Debian/Ubuntu: \
             `apt-get install python3 python3-venv`), or set CHAINLOG_TEST_PYTHON."
        )
    })
}

/// The last lines of a command's stderr and stdout, for a panic message.
fn tails(out: &Output) -> String {
    format!(
        "--- stderr (last {TAIL_LINES} lines) ---\n{}\n--- stdout (last {TAIL_LINES} lines) ---\n{}",
        tail(&out.stderr),
        tail(&out.stdout)
    )
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}
