//! A real `mlflow server` (mlflow==3.17.2 from a cached venv) on loopback, for tests that
//! check what chainlog writes against MLflow itself.
//!
//! [`MlflowServer::start`] runs
//! `python -m mlflow server --host 127.0.0.1 --port P --workers 1
//! --backend-store-uri sqlite:///<tmp>/mlflow.db --artifacts-destination <tmp>/artifacts`
//! with `MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`, in its own process group: mlflow starts
//! uvicorn as a child process, so stopping it means signalling the group, not one PID. It
//! waits for `GET /health` to answer `OK`.
//!
//! Cleanup: [`Drop`] and [`MlflowServer::stop`] send `SIGTERM` to the group, wait, then
//! `SIGKILL`. A server kept in a `static` (see [`MlflowServer::shared`]) is never dropped, so
//! each server also has a watchdog: a tiny `sh` whose stdin is a pipe from this process. When
//! the test process exits — normally, by panic or killed — the pipe closes and the watchdog
//! stops the group and removes the server's temporary directory. It ignores SIGINT and
//! SIGHUP, which a Ctrl-C on `cargo test` sends to the whole foreground process group, so it
//! outlives them to do that. No server, and none of its files, outlives the tests that
//! started it.

use std::{
    fs,
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use std::os::unix::process::CommandExt;

use super::python_env::{self, PythonEnv};

/// How long the server may take to answer `/health` (a cold start is ~15 s; on 2 cores shared
/// by several test runs, over a minute has been seen).
const STARTUP_BUDGET: Duration = Duration::from_secs(150);
/// How long the server may take to exit after `SIGTERM` before it gets `SIGKILL`.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How many trailing lines of the server's log a panic quotes.
const TAIL_LINES: usize = 40;

/// A running MLflow tracking server; stopped on drop.
#[derive(Debug)]
pub struct MlflowServer {
    /// `python -m mlflow server`, leader of its own process group (pgid = its pid).
    server: Child,
    /// Stops the group when this process's end of its stdin pipe closes.
    watchdog: Child,
    /// `http://127.0.0.1:PORT`.
    uri: String,
    /// Holds the database, the artifacts and the server's log; removed on drop.
    dir: tempfile::TempDir,
    env: PythonEnv,
    /// Variables client scripts need too (a direct artifact store's credentials).
    client_env: Vec<(String, String)>,
    stopped: bool,
}

/// Where a server keeps artifacts.
#[derive(Debug, Clone)]
pub enum Artifacts {
    /// `--artifacts-destination <tmp>/artifacts`: served through the server (the default).
    Proxied,
    /// `--no-serve-artifacts --default-artifact-root ROOT`: clients write ROOT themselves,
    /// with `env` (credentials, endpoint) set for the server and for client scripts.
    Direct {
        /// `s3://bucket/prefix`, `file:///path`, …
        root: String,
        /// Variables the clients need.
        env: Vec<(String, String)>,
    },
}

impl MlflowServer {
    /// Provisions mlflow (first time ~75 s, then cached) and starts a server on a free port.
    ///
    /// # Panics
    ///
    /// If the venv cannot be provisioned, the server cannot be spawned, exits, or does not
    /// answer `/health` within 150 s; the message quotes the tail of its log.
    pub fn start() -> MlflowServer {
        let env =
            python_env::provision("mlflow", Path::new("tests/python/requirements-mlflow.txt"));
        MlflowServer::start_with(env, Artifacts::Proxied)
    }

    /// Starts a server from `env` (a venv with mlflow) keeping artifacts as `artifacts` says.
    ///
    /// # Panics
    ///
    /// As [`MlflowServer::start`].
    pub fn start_with(env: PythonEnv, artifacts: Artifacts) -> MlflowServer {
        MlflowServer::start_with_workers(env, artifacts, Some(1))
    }

    /// As [`MlflowServer::start`], with `workers` uvicorn worker processes — `None` is
    /// `mlflow server`'s own default (4), as a user starting it runs it (benchmarks); tests
    /// use one, which is enough for them and lighter on a small machine.
    ///
    /// # Panics
    ///
    /// As [`MlflowServer::start`].
    pub fn start_with_workers(
        env: PythonEnv,
        artifacts: Artifacts,
        workers: Option<u32>,
    ) -> MlflowServer {
        let dir = tempfile::Builder::new()
            .prefix("chainlog-mlflow-")
            .tempdir()
            .expect("create a temporary directory for the MLflow server");
        let log_path = dir.path().join("server.log");
        let log = fs::File::create(&log_path).expect("create the MLflow server log");
        let port = free_port();
        let started = Instant::now();

        let mut cmd = env.command();
        cmd.args(["-m", "mlflow", "server", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(
                workers
                    .map(|n| vec!["--workers".to_owned(), n.to_string()])
                    .unwrap_or_default(),
            )
            .arg("--backend-store-uri")
            .arg(format!(
                "sqlite:///{}",
                dir.path().join("mlflow.db").display()
            ))
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("MLFLOW_TRACKING_TOKEN")
            .env_remove("MLFLOW_TRACKING_USERNAME")
            .env_remove("MLFLOW_TRACKING_PASSWORD")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .process_group(0);
        let client_env = match artifacts {
            Artifacts::Proxied => {
                cmd.arg("--artifacts-destination")
                    .arg(dir.path().join("artifacts"));
                Vec::new()
            }
            Artifacts::Direct { root, env } => {
                cmd.args(["--no-serve-artifacts", "--default-artifact-root", &root]);
                cmd.envs(env.iter().map(|(k, v)| (k, v)));
                env
            }
        };
        let server = cmd
            .spawn()
            .unwrap_or_else(|err| panic!("cannot spawn `mlflow server` ({cmd:?}): {err}"));
        let watchdog = spawn_watchdog(server.id(), dir.path());

        let mut this = MlflowServer {
            server,
            watchdog,
            uri: format!("http://127.0.0.1:{port}"),
            dir,
            env,
            client_env,
            stopped: false,
        };
        this.wait_healthy(port, started);
        eprintln!(
            "mlflow_server: {} ready in {:.1} s",
            this.uri,
            started.elapsed().as_secs_f64()
        );
        this
    }

    /// One server for the whole test binary, started on first use and stopped when the
    /// process exits (by the watchdog). Tests sharing it must use their own names.
    pub fn shared() -> &'static MlflowServer {
        static SHARED: OnceLock<MlflowServer> = OnceLock::new();
        SHARED.get_or_init(MlflowServer::start)
    }

    /// The tracking URI, `http://127.0.0.1:PORT`.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The server's SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("mlflow.db")
    }

    /// Where the server stores artifacts (`--artifacts-destination`).
    pub fn artifacts_dir(&self) -> PathBuf {
        self.dir.path().join("artifacts")
    }

    /// The venv mlflow runs from, for client scripts.
    pub fn python_env(&self) -> &PythonEnv {
        &self.env
    }

    /// A command running the venv's Python with `MLFLOW_TRACKING_URI` set to this server.
    pub fn python(&self) -> Command {
        let mut cmd = self.env.command();
        cmd.env("MLFLOW_TRACKING_URI", &self.uri)
            .envs(self.client_env.iter().map(|(k, v)| (k, v)))
            .env_remove("MLFLOW_TRACKING_TOKEN")
            .env_remove("MLFLOW_TRACKING_USERNAME")
            .env_remove("MLFLOW_TRACKING_PASSWORD");
        cmd
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = fs::read(self.dir.path().join("server.log")).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }

    /// Stops the server (SIGTERM to its process group, SIGKILL after 10 s) and waits until
    /// every process of the group is gone. Idempotent.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        stop_group(&mut self.server, &mut self.watchdog, STOP_GRACE);
    }

    fn wait_healthy(&mut self, port: u16, started: Instant) {
        loop {
            if let Ok(Some(status)) = self.server.try_wait() {
                self.stopped = true;
                panic!(
                    "mlflow server exited ({status}) before answering /health.\n\
                     --- server log (last {TAIL_LINES} lines) ---\n{}",
                    self.log_tail()
                );
            }
            if health_ok(port) {
                return;
            }
            if started.elapsed() > STARTUP_BUDGET {
                let tail = self.log_tail();
                self.stop();
                panic!(
                    "mlflow server on port {port} did not answer /health within \
                     {STARTUP_BUDGET:?}.\n--- server log (last {TAIL_LINES} lines) ---\n{tail}"
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops `server`'s process group: first its `watchdog` by PID (its job is done, and it must
/// not signal a reused pgid), then SIGTERM to the group, SIGKILL after `grace`, and waits until
/// every process of the group is gone. Shared by every server the tests start in a group.
pub(crate) fn stop_group(server: &mut Child, watchdog: &mut Child, grace: Duration) {
    let _ = watchdog.kill();
    let _ = watchdog.wait();
    let pgid = server.id();
    signal_group("TERM", pgid);
    let deadline = Instant::now() + grace;
    while group_alive(pgid) && Instant::now() < deadline {
        let _ = server.try_wait();
        thread::sleep(Duration::from_millis(50));
    }
    if group_alive(pgid) {
        signal_group("KILL", pgid);
    }
    let _ = server.wait();
}

/// Waits until something listens on 127.0.0.1:`port`, at most `budget`; panics quoting the
/// log at `log` when `server` (`name`) exits first or the budget runs out.
pub(crate) fn wait_until_listening(
    name: &str,
    server: &mut Child,
    port: u16,
    budget: Duration,
    log: &Path,
) {
    let log_text = || fs::read_to_string(log).unwrap_or_default();
    let started = Instant::now();
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        if let Ok(Some(status)) = server.try_wait() {
            panic!("{name} exited ({status}) before listening:\n{}", log_text());
        }
        assert!(
            started.elapsed() < budget,
            "{name} did not listen on {port} within {budget:?}:\n{}",
            log_text()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// A port nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// `sh` that blocks reading its stdin (a pipe from this process) and, on EOF, stops process
/// group `pgid`: TERM, then KILL if anything is left after the grace period, then removes
/// `dir` (the server's temporary directory). It ignores SIGINT and SIGHUP (a Ctrl-C reaches
/// the whole foreground process group). A server held in a `static` is never dropped, so
/// without this its directory (a database, artifacts, logs: ~80 MB for MLflow) would be left
/// in the temp dir after every test run.
pub(crate) fn spawn_watchdog(pgid: u32, dir: &Path) -> Child {
    let grace = STOP_GRACE.as_secs();
    let script = format!(
        "trap '' INT HUP; read _; kill -TERM -{pgid} 2>/dev/null; \
         i=0; while [ $i -lt {grace} ] && kill -0 -{pgid} 2>/dev/null; do sleep 1; i=$((i+1)); done; \
         kill -KILL -{pgid} 2>/dev/null; rm -rf -- \"$0\"; exit 0"
    );
    Command::new("sh")
        .args(["-c", &script])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot spawn the server watchdog (sh): {err}"))
}

/// `kill -<signal> -<pgid>`.
pub(crate) fn signal_group(signal: &str, pgid: u32) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether any process of group `pgid` is still alive (`kill -0 -<pgid>`).
pub(crate) fn group_alive(pgid: u32) -> bool {
    Command::new("kill")
        .args(["-0", "--"])
        .arg(format!("-{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `GET /health` answered `200 OK`.
fn health_ok(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200") && response.trim_end().ends_with("OK")
}
