//! moto's S3 server (`moto[server]==5.2.5` from PyPI, beside mlflow==3.17.2 in one cached venv:
//! `tests/python/requirements-moto.txt`) on loopback, as the S3-compatible artifact store of a
//! `mlflow server --no-serve-artifacts` in tests.
//!
//! [`MotoServer::start`] runs `moto_server -H 127.0.0.1 -p P` in its own process group with a
//! watchdog (as [`super::mlflow_server`] does: no server outlives the test process), waits
//! until it answers, and creates a bucket with boto3. [`MotoServer::env`] gives the variables
//! MLflow's client and chainlog both read: `MLFLOW_S3_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`.

use std::{
    fs,
    path::Path,
    process::{Child, Stdio},
    time::Duration,
};

use std::os::unix::process::CommandExt;

use super::{
    mlflow_server::{free_port, spawn_watchdog, stop_group, wait_until_listening},
    python_env::{self, PythonEnv},
};

/// How long moto may take to listen.
const STARTUP_BUDGET: Duration = Duration::from_secs(60);

/// A running moto S3 server with one bucket; stopped on drop.
#[derive(Debug)]
pub struct MotoServer {
    server: Child,
    watchdog: Child,
    endpoint: String,
    bucket: String,
    env: PythonEnv,
    /// Holds moto's log; kept for the server's life.
    _dir: tempfile::TempDir,
}

impl MotoServer {
    /// Provisions the venv (first time ~2 min, then cached), starts moto on a free port and
    /// creates `bucket`.
    ///
    /// # Panics
    ///
    /// If the venv cannot be provisioned (the message says how), moto does not listen within
    /// 60 s (quoting its log), or the bucket cannot be created.
    pub fn start(bucket: &str) -> MotoServer {
        let env = python_env::provision("moto", Path::new("tests/python/requirements-moto.txt"));
        let dir = tempfile::Builder::new()
            .prefix("chainlog-moto-")
            .tempdir()
            .expect("create a temporary directory for moto");
        let log_path = dir.path().join("moto.log");
        let log = fs::File::create(&log_path).expect("create moto's log");
        let port = free_port();
        let mut cmd = env.command();
        cmd.args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .process_group(0);
        let server = cmd
            .spawn()
            .unwrap_or_else(|err| panic!("cannot spawn moto ({cmd:?}): {err}"));
        let watchdog = spawn_watchdog(server.id(), dir.path());
        let mut this = MotoServer {
            server,
            watchdog,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: bucket.to_owned(),
            env,
            _dir: dir,
        };
        wait_until_listening("moto", &mut this.server, port, STARTUP_BUDGET, &log_path);
        let output = this
            .env
            .command()
            .args([
                "-c",
                "import boto3, os, sys\n\
                 boto3.client('s3', endpoint_url=os.environ['MLFLOW_S3_ENDPOINT_URL'])\
                 .create_bucket(Bucket=sys.argv[1])",
                bucket,
            ])
            .envs(this.env())
            .output()
            .expect("run python to create the bucket");
        assert!(
            output.status.success(),
            "creating bucket {bucket} in moto failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        this
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `s3://<bucket>/<prefix>`.
    pub fn root(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// The variables boto3 and chainlog read to reach this server (moto accepts any keys).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("MLFLOW_S3_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing-key-id"),
            ("AWS_SECRET_ACCESS_KEY", "testing-secret-canary"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// The venv (mlflow and boto3 too).
    pub fn python_env(&self) -> &PythonEnv {
        &self.env
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        stop_group(&mut self.server, &mut self.watchdog, Duration::from_secs(5));
    }
}
