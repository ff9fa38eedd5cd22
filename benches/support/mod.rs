//! What the benchmark programs share: `chainlog mock` as a child process, and a scratch
//! project folder holding the repository's `chains/` and `prompts/`.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

/// `chainlog mock --port 0 <extra>` running as a child process; killed when dropped.
pub struct MockProcess {
    child: Child,
    base_url: String,
}

impl MockProcess {
    /// Starts the mock and reads its base URL (the first line it prints).
    pub fn start(extra_args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chainlog"))
            .args(["mock", "--port", "0"])
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut base_url = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut base_url)
            .unwrap();
        Self {
            child,
            base_url: base_url.trim().to_owned(),
        }
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes `dir` a project `chainlog log` and `chainlog run` work in: symlinks to the
/// repository's `chains/` and `prompts/`.
pub fn scratch_project(dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir).unwrap();
    for folder in ["chains", "prompts"] {
        std::os::unix::fs::symlink(root.join(folder), dir.join(folder)).unwrap();
    }
}

/// The stdout of a finished command, after asserting it succeeded (its output shown if not).
#[allow(dead_code)]
pub fn check(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The median of `values` (sorted in place; the upper one of an even count).
#[allow(dead_code)]
pub fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}
