//! Direct artifact stores: a real `mlflow server --no-serve-artifacts` whose artifact root is
//! S3 (moto's server on loopback), Azure Blob (`wasbs://`, Azurite from npm) or a shared
//! directory (`file://`). GCS has no emulator here: `gs://` is covered by unit tests of its
//! settings only. chainlog writes and reads
//! the artifacts itself; MLflow's own Python client (with boto3) reads everything back, and
//! `predict` rebuilds the chain by `models:/name@alias`. Missing credentials are refused
//! before any run exists, naming the variables to set; an S3 endpoint that is down once the
//! run exists leaves the run FAILED and the model UPLOAD_FAILED, both named.

use std::{
    path::Path,
    process::{Command, Output},
};

use serde_json::{Value, json};

use crate::{
    log_chain::{assert_logged, log, read_back},
    support::{
        azurite::{self, Azurite},
        mlflow_server::{Artifacts, MlflowServer},
        moto_server::MotoServer,
        python_env,
    },
};

/// Variables a test's environment could leak into a credential check.
const CLOUD_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "MLFLOW_S3_ENDPOINT_URL",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "GOOGLE_APPLICATION_CREDENTIALS",
];

/// `chainlog` in `cwd` with only `env`'s cloud settings (HOME is `cwd`, so no
/// `~/.aws/credentials` is found).
fn chainlog(cwd: &Path, args: &[&str], env: &[(String, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chainlog"));
    command
        .args(args)
        .current_dir(cwd)
        .env("HOME", cwd)
        .env("CHAINLOG_CACHE_DIR", cwd.join("cache"))
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("MLFLOW_EXPERIMENT_NAME")
        .env_remove("MLFLOW_TRACKING_TOKEN");
    for var in CLOUD_VARS {
        command.env_remove(var);
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command.output().unwrap()
}

/// `chainlog log summarize` with the repository's config and prompts, `extra` flags, into
/// `experiment`.
fn log_summarize(cwd: &Path, extra: &[&str], experiment: &str, env: &[(String, String)]) -> Output {
    let config = crate::chain_support::root().join("chains/summarize.yaml");
    let prompts = crate::chain_support::root().join("prompts");
    let mut args = vec![
        "log",
        "summarize",
        "--config",
        config.to_str().unwrap(),
        "--prompts-dir",
        prompts.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.extend(["--experiment", experiment]);
    chainlog(cwd, &args, env)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn predict(cwd: &Path, uri: &str, env: &[(String, String)]) -> Output {
    chainlog(
        cwd,
        &[
            "predict",
            "-m",
            uri,
            "--input",
            r#"{"text": "rebuilt from a direct store"}"#,
        ],
        env,
    )
}

/// Logs `summarize` as `registered@champion` into `experiment`, reads it back with MLflow's
/// client, and predicts through `models:/registered@champion`; returns `log --json`.
fn log_read_back_and_predict(
    server: &MlflowServer,
    cwd: &Path,
    env: &[(String, String)],
    experiment: &str,
    registered: &str,
) -> Value {
    let mut env = env.to_vec();
    env.push(("MLFLOW_TRACKING_URI".to_owned(), server.uri().to_owned()));
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let example = json!({"text": "Rust is a systems language focused on safety."});
    let logged = log(
        cwd,
        "summarize",
        &example,
        &[
            "--registered-model",
            registered,
            "--alias",
            "champion",
            "--experiment",
            experiment,
        ],
        &borrowed,
    );
    let spec = json!({"run_id": logged["run_id"], "model_id": logged["model_id"],
        "registered_name": registered, "alias": "champion", "prompt_uri": null});
    assert_logged(
        &read_back(server.python(), cwd, &spec),
        "summarize",
        &logged,
        registered,
    );
    let output = predict(cwd, &format!("models:/{registered}@champion"), &env);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        out["summary"]
            .as_str()
            .unwrap()
            .contains("rebuilt from a direct store"),
        "{out}"
    );
    logged
}

/// How many runs MLflow's client finds in `experiment` (0 when it does not exist).
fn runs_in(server: &MlflowServer, experiment: &str) -> usize {
    let output = server
        .python()
        .args([
            "-c",
            "import sys, mlflow\n\
             e = mlflow.get_experiment_by_name(sys.argv[1])\n\
             print(0 if e is None else len(mlflow.search_runs([e.experiment_id], output_format='list')))",
            experiment,
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout).trim().parse().unwrap()
}

/// S3 through moto: log, read back with MLflow's client (boto3 against the same endpoint),
/// predict by alias from a cold cache; without credentials, `log` and `predict` fail in one
/// line naming AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and no run is created.
#[test]
fn s3_artifacts_written_and_read_by_chainlog_when_the_server_does_not_proxy() {
    let moto = MotoServer::start("chainlog-direct");
    let server = MlflowServer::start_with(
        moto.python_env().clone(),
        Artifacts::Direct {
            root: moto.root("mlflow"),
            env: moto.env(),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let logged =
        log_read_back_and_predict(&server, dir.path(), &moto.env(), "direct-s3", "direct-sum");
    let artifact_uri = logged["artifact_uri"].as_str().unwrap();
    assert!(
        artifact_uri.starts_with("s3://chainlog-direct/mlflow/"),
        "{logged}"
    );

    // No credentials: refused before the run exists, naming what to set.
    let bare = vec![
        ("MLFLOW_TRACKING_URI".to_owned(), server.uri().to_owned()),
        (
            "MLFLOW_S3_ENDPOINT_URL".to_owned(),
            moto.endpoint().to_owned(),
        ),
    ];
    let example = r#"{"text": "no credentials"}"#;
    let output = log_summarize(
        dir.path(),
        &["--input-example", example],
        "direct-s3-no-credentials",
        &bare,
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("AWS_ACCESS_KEY_ID")
            && stderr.contains("AWS_SECRET_ACCESS_KEY")
            && stderr.contains("s3://chainlog-direct/mlflow/"),
        "{stderr}"
    );
    assert!(!stderr.contains("MLflow refused"), "{stderr}");
    assert_eq!(runs_in(&server, "direct-s3-no-credentials"), 0);

    // S3 unreachable once the run exists: the run ends FAILED and the model UPLOAD_FAILED, and
    // the error names both (with MLflow's retry setting, one attempt).
    let mut down = moto.env();
    down.retain(|(k, _)| k != "MLFLOW_S3_ENDPOINT_URL");
    down.extend(
        [
            ("MLFLOW_TRACKING_URI", server.uri()),
            ("MLFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"),
            ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let output = log_summarize(dir.path(), &["--no-validate"], "direct-s3-down", &down);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for part in [
        "marked FAILED",
        "marked UPLOAD_FAILED",
        "artifact store `s3://chainlog-direct/",
    ] {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }
    let seen = server
        .python()
        .args([
            "-c",
            "import mlflow\n\
             e = mlflow.get_experiment_by_name('direct-s3-down')\n\
             runs = mlflow.search_runs([e.experiment_id], output_format='list')\n\
             models = mlflow.search_logged_models([e.experiment_id], output_format='list')\n\
             print([r.info.status for r in runs], [str(m.status) for m in models])",
        ])
        .output()
        .unwrap();
    let seen = text(&seen.stdout);
    // MLflow's Python client shows LOGGED_MODEL_UPLOAD_FAILED as FAILED.
    assert_eq!(seen.trim(), "['FAILED'] ['FAILED']");

    let cold = tempfile::tempdir().unwrap();
    let output = predict(cold.path(), "models:/direct-sum@champion", &bare);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("AWS_ACCESS_KEY_ID"), "{stderr}");
    // The secret key given to the first log reached no message.
    assert!(!stderr.contains("testing-secret-canary"), "{stderr}");

    // An experiment whose artifact location names a bucket that does not exist: the error
    // says the bucket is missing (not that a file is), and the run and model are marked.
    let made = server
        .python()
        .args([
            "-c",
            "import mlflow\n\
             mlflow.create_experiment('direct-s3-no-bucket', artifact_location='s3://chainlog-no-such-bucket/x')",
        ])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    let mut with_keys = moto.env();
    with_keys.push(("MLFLOW_TRACKING_URI".to_owned(), server.uri().to_owned()));
    with_keys.push(("MLFLOW_HTTP_REQUEST_MAX_RETRIES".to_owned(), "1".to_owned()));
    let output = log_summarize(
        dir.path(),
        &["--no-validate"],
        "direct-s3-no-bucket",
        &with_keys,
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bucket or container does not exist")
            && stderr.contains("s3://chainlog-no-such-bucket/x")
            && stderr.contains("marked FAILED"),
        "{stderr}"
    );
    assert!(!stderr.contains("artifact `MLmodel` under"), "{stderr}");
}

/// A shared directory (`file://`) as the server's artifact root: chainlog writes the files
/// there, MLflow's client reads them back, predict rebuilds from them.
#[test]
fn file_artifacts_written_and_read_by_chainlog_when_the_server_does_not_proxy() {
    let shared = tempfile::tempdir().unwrap();
    let env = python_env::provision(
        "mlflow",
        &crate::chain_support::root().join("tests/python/requirements-mlflow.txt"),
    );
    let server = MlflowServer::start_with(
        env,
        Artifacts::Direct {
            root: format!("file://{}", shared.path().display()),
            env: Vec::new(),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let logged = log_read_back_and_predict(&server, dir.path(), &[], "direct-file", "file-sum");
    let artifact_uri = logged["artifact_uri"].as_str().unwrap();
    let local = artifact_uri.strip_prefix("file://").unwrap();
    assert!(
        local.starts_with(shared.path().to_str().unwrap()),
        "{logged}"
    );
    assert!(Path::new(local).join("MLmodel").is_file(), "{logged}");
}

/// Azure Blob through Azurite (`wasbs://container@account.blob.core.windows.net/…` with
/// `AZURE_STORAGE_CONNECTION_STRING`, as MLflow's client reads it): log, read back with MLflow's
/// client (azure-storage-blob), predict by alias; without the connection string, `log` fails
/// naming the variables.
#[test]
fn azure_blob_artifacts_written_and_read_by_chainlog_when_the_server_does_not_proxy() {
    let env = python_env::provision(
        "mlflow-azure",
        &crate::chain_support::root().join("tests/python/requirements-azure.txt"),
    );
    let azurite = Azurite::start("models", &env);
    let root = format!(
        "wasbs://models@{}.blob.core.windows.net/mlflow",
        azurite::ACCOUNT
    );
    let server = MlflowServer::start_with(
        env,
        Artifacts::Direct {
            root: root.clone(),
            env: azurite.env(),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let logged = log_read_back_and_predict(
        &server,
        dir.path(),
        &azurite.env(),
        "direct-azure",
        "azure-sum",
    );
    assert!(
        logged["artifact_uri"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{root}/")),
        "{logged}"
    );

    let cold = tempfile::tempdir().unwrap();
    let bare = vec![("MLFLOW_TRACKING_URI".to_owned(), server.uri().to_owned())];
    let output = predict(cold.path(), "models:/azure-sum@champion", &bare);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("AZURE_STORAGE_CONNECTION_STRING") && stderr.contains(&root),
        "{stderr}"
    );
}
