//! Azurite, Microsoft's Azure Storage emulator (npm `azurite`, pinned in [`VERSION`]), on
//! loopback: the Azure Blob artifact store of a `mlflow server --no-serve-artifacts` in tests.
//!
//! [`Azurite::start`] installs the package once (`npm install --prefix
//! <test cache>/azurite-<version>`, under a file lock, with a marker written after npm
//! succeeds — the cache is [`python_env::cache_root`]), runs `azurite-blob` (its data in a
//! temporary directory) on a free port in its own process group with a watchdog (as
//! [`super::mlflow_server`] does), waits until it listens, and creates a container with azure-storage-blob. [`Azurite::env`] gives
//! `AZURE_STORAGE_CONNECTION_STRING` with Azurite's documented development account, which
//! MLflow's client and chainlog both read.

use std::{
    fs::{self, OpenOptions},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use std::os::unix::process::CommandExt;

use super::{
    mlflow_server::{free_port, spawn_watchdog, stop_group, wait_until_listening},
    python_env::{self, PythonEnv},
};

/// The Azurite release installed.
const VERSION: &str = "3.35.0";
/// Azurite's development account and its published key (not a secret: documented by Microsoft
/// for the emulator).
pub const ACCOUNT: &str = "devstoreaccount1";
const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Azurite blob service with one container; stopped on drop.
#[derive(Debug)]
pub struct Azurite {
    server: Child,
    watchdog: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Azurite {
    /// Installs Azurite if needed, starts it and creates `container` with `python` (a venv with
    /// azure-storage-blob).
    ///
    /// # Panics
    ///
    /// If npm is missing or fails (the message says how to get it), Azurite does not listen
    /// within 60 s (quoting its log), or the container cannot be created.
    pub fn start(container: &str, python: &PythonEnv) -> Azurite {
        let bin = install();
        let dir = tempfile::Builder::new()
            .prefix("chainlog-azurite-")
            .tempdir()
            .expect("create a temporary directory for Azurite");
        let log = fs::File::create(dir.path().join("azurite.log")).expect("create Azurite's log");
        let port = free_port();
        let mut cmd = Command::new(&bin);
        cmd.args(["--blobHost", "127.0.0.1", "--blobPort"])
            .arg(port.to_string())
            .args([
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--loose",
                "--location",
            ])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .process_group(0);
        let server = cmd
            .spawn()
            .unwrap_or_else(|err| panic!("cannot spawn Azurite ({cmd:?}): {err}"));
        let watchdog = spawn_watchdog(server.id(), dir.path());
        let mut this = Azurite {
            server,
            watchdog,
            port,
            dir,
        };
        let log_path = this.dir.path().join("azurite.log");
        wait_until_listening(
            "Azurite",
            &mut this.server,
            port,
            Duration::from_secs(60),
            &log_path,
        );
        let output = python
            .command()
            .args([
                "-c",
                "import os, sys\n\
                 from azure.storage.blob import BlobServiceClient\n\
                 BlobServiceClient.from_connection_string(\
                 os.environ['AZURE_STORAGE_CONNECTION_STRING']).create_container(sys.argv[1])",
                container,
            ])
            .envs(this.env())
            .output()
            .expect("run python to create the container");
        assert!(
            output.status.success(),
            "creating container {container} in Azurite failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stderr),
            this.log()
        );
        this
    }

    /// `AZURE_STORAGE_CONNECTION_STRING` for this emulator.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![(
            "AZURE_STORAGE_CONNECTION_STRING".to_owned(),
            format!(
                "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};\
                 BlobEndpoint=http://127.0.0.1:{}/{ACCOUNT};",
                self.port
            ),
        )]
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("azurite.log")).unwrap_or_default()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        stop_group(&mut self.server, &mut self.watchdog, Duration::from_secs(5));
    }
}

/// `azurite-blob` of [`VERSION`], installed into the test cache on first use.
fn install() -> PathBuf {
    let root = python_env::cache_root();
    let prefix = root.join(format!("azurite-{VERSION}"));
    let bin = prefix.join("node_modules/.bin/azurite-blob");
    let marker = prefix.join(".chainlog-provisioned");
    fs::create_dir_all(&root).expect("create the test cache directory");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join(format!("azurite-{VERSION}.lock")))
        .expect("open Azurite's install lock");
    lock.lock().expect("lock Azurite's install");
    if !marker.is_file() {
        let _ = fs::remove_dir_all(&prefix);
        fs::create_dir_all(&prefix).expect("create Azurite's install directory");
        let output = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(format!("azurite@{VERSION}"))
            .output()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run npm to install Azurite ({err}): install Node.js and npm \
                     (apt-get install nodejs npm)"
                )
            });
        assert!(
            output.status.success(),
            "npm install azurite@{VERSION} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        fs::write(&marker, VERSION).expect("write Azurite's install marker");
    }
    bin
}
