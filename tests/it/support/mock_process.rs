//! `chainlog mock` run as a child process, the way a user or another
//! language's test suite runs it.
//!
//! The binary's contract: `chainlog mock --host 127.0.0.1 --port 0 ..` prints
//! exactly one line on stdout, the base URL (`http://127.0.0.1:PORT/v1`),
//! then serves until killed; logs go to stderr.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, ChildStdout, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::Duration,
};

/// How long the binary may take to print its base URL.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `chainlog mock`; killed (and reaped) on drop.
#[derive(Debug)]
pub struct MockProcess {
    child: Child,
    /// The line the binary printed, e.g. `http://127.0.0.1:40123/v1`.
    base_url: String,
    /// Everything the binary wrote to stderr so far, collected by a thread
    /// so the pipe never fills and blocks the server.
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl MockProcess {
    /// Spawns `chainlog mock --host 127.0.0.1 --port 0 <args>` and waits for
    /// the base URL on its first stdout line.
    ///
    /// # Panics
    ///
    /// If the binary cannot start, exits, or prints no `http://` line within
    /// 20 s; the message quotes its stderr.
    pub fn start(args: &[&str]) -> MockProcess {
        let exe = env!("CARGO_BIN_EXE_chainlog");
        let mut child = Command::new(exe)
            .args(["mock", "--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot spawn `{exe} mock`: {err}"));

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut buf = [0_u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .extend_from_slice(&buf[..n]);
            }
        });

        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        thread::spawn(move || read_first_line(stdout, &tx));

        let line = rx.recv_timeout(STARTUP_TIMEOUT);
        let mut process = MockProcess {
            child,
            base_url: String::new(),
            stderr,
        };
        match line {
            Ok(Ok(line)) if line.starts_with("http://") => {
                process.base_url = line.trim_end_matches('/').to_owned();
                process
            }
            other => {
                let what = match other {
                    Ok(Ok(line)) => format!("printed {line:?} instead of a base URL"),
                    Ok(Err(err)) => err,
                    Err(_) => format!("printed no line on stdout within {STARTUP_TIMEOUT:?}"),
                };
                let _ = process.child.kill();
                let status = match process.child.wait() {
                    Ok(status) => status.to_string(),
                    Err(err) => format!("wait failed: {err}"),
                };
                // Give the stderr thread a moment to collect the last output.
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "`{exe} mock --host 127.0.0.1 --port 0 {}` {what} ({status}).\n\
                     --- its stderr ---\n{}",
                    args.join(" "),
                    process.stderr()
                );
            }
        }
    }

    /// The base URL the binary printed, without a trailing slash, e.g.
    /// `http://127.0.0.1:40123/v1`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The server's origin, e.g. `http://127.0.0.1:40123`, for endpoints
    /// outside `/v1` such as `/_mock/requests`.
    pub fn origin(&self) -> &str {
        self.base_url
            .strip_suffix("/v1")
            .unwrap_or(self.base_url.as_str())
    }

    /// What the binary has written to stderr so far.
    pub fn stderr(&self) -> String {
        let bytes = self
            .stderr
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        // Kills this child by its PID, never by name.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends the first stdout line (or why there is none), then drains stdout
/// so the child never blocks on a full pipe.
fn read_first_line(stdout: ChildStdout, tx: &mpsc::Sender<Result<String, String>>) {
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    let first = match reader.read_line(&mut line) {
        Ok(0) => Err("closed stdout (exited?) before printing a base URL".to_owned()),
        Ok(_) => Ok(line.trim().to_owned()),
        Err(err) => Err(format!("stdout could not be read: {err}")),
    };
    let _ = tx.send(first);
    let _ = std::io::copy(&mut reader, &mut std::io::sink());
}
