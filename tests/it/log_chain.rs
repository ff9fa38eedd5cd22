//! `chainlog log` end to end, read back with MLflow's own Python client: every example chain to
//! a fresh SQLite store and to a real `mlflow server`; the secret canary over everything
//! written and sent; a literal key refused with nothing written; the server failing
//! mid-upload leaves no READY model and a second log succeeds; names and aliases the store would
//! refuse are refused before anything is written, on both stores; `models:/<name>/latest`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    body::{Body, to_bytes},
    extract::{Request, State},
    http::Method,
    response::Response,
};
use serde_json::{Value, json};

use crate::{
    chain_support::root,
    support::{mlflow_server::MlflowServer, python_env},
};

/// The example input of each chain.
pub(crate) fn examples() -> Vec<(&'static str, Value)> {
    vec![
        (
            "extract",
            json!({"text": "Grace Hopper, rear admiral, US Navy, grace@example.org"}),
        ),
        (
            "map_reduce",
            json!({"text": "First part of a story. ".repeat(100)}),
        ),
        (
            "summarize",
            json!({"text": "Rust is a systems language focused on safety."}),
        ),
        ("tool_agent", json!({"question": "What is 2 + 2?"})),
    ]
}

/// Runs `chainlog` in `cwd` with the repository's chains and prompts and the given env.
pub(crate) fn chainlog(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chainlog"));
    command
        .args(args)
        .current_dir(cwd)
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("MLFLOW_EXPERIMENT_NAME")
        .env_remove("MLFLOW_TRACKING_TOKEN");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

/// `chainlog log <chain> … --json`, asserting success; returns the printed JSON.
pub(crate) fn log(
    cwd: &Path,
    chain: &str,
    example: &Value,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Value {
    let config = root().join(format!("chains/{chain}.yaml"));
    let prompts = root().join("prompts");
    let example = example.to_string();
    let mut args = vec![
        "log",
        chain,
        "--config",
        config.to_str().unwrap(),
        "--prompts-dir",
        prompts.to_str().unwrap(),
        "--input-example",
        &example,
        "--json",
    ];
    args.extend_from_slice(extra);
    let output = chainlog(cwd, &args, env);
    assert!(
        output.status.success(),
        "chainlog log {chain} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn mlflow_env() -> python_env::PythonEnv {
    python_env::provision(
        "mlflow",
        &root().join("tests/python/requirements-mlflow.txt"),
    )
}

/// What MLflow's Python client reads back (tests/python/logged_chain_check.py).
pub(crate) fn read_back(mut python: Command, cwd: &Path, spec: &Value) -> Value {
    let output = python
        .arg(root().join("tests/python/logged_chain_check.py"))
        .arg(spec.to_string())
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "read-back failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// Checks what MLflow sees of one logged chain.
pub(crate) fn assert_logged(seen: &Value, chain: &str, logged: &Value, registered: &str) {
    let run = &seen["run"];
    assert_eq!(run["status"], "FINISHED", "{seen}");
    assert_eq!(run["found_by_search"], 1);
    assert_eq!(run["params"]["llm/model"], "gpt-4o-mini");
    assert_eq!(run["params"]["llm/api_key"], "${OPENAI_API_KEY}");
    assert_eq!(run["tags"]["mlflow.source.type"], "LOCAL");
    assert_eq!(
        run["tags"]["mlflow.source.name"],
        format!("chains/{chain}.rs")
    );
    assert!(run["tags"]["chainlog.code_sha256"].is_string());
    assert!(run["tags"]["mlflow.source.git.commit"].is_string());
    assert_eq!(run["outputs"][0], logged["model_id"]);
    let model = &seen["model"];
    assert!(
        model["status"].as_str().unwrap().contains("READY"),
        "{model}"
    );
    assert_eq!(model["name"], chain);
    // The model carries the run's params and its user and source tags, as MLflow's own
    // log_model writes them, and is found by a search on a param.
    assert_eq!(model["params"], run["params"], "{model}");
    for tag in ["mlflow.user", "mlflow.source.name", "mlflow.source.type"] {
        assert_eq!(model["tags"][tag], run["tags"][tag], "{tag}: {model}");
    }
    assert!(
        !model["tags"]["mlflow.user"].as_str().unwrap().is_empty(),
        "{model}"
    );
    assert!(
        model["found_by_param"]
            .as_array()
            .unwrap()
            .contains(&logged["model_id"]),
        "{model}"
    );
    for file in [
        "MLmodel",
        "code",
        "prompts",
        "model_config.yaml",
        "input_example.json",
        "serving_input_example.json",
        "output_example.json",
        "environment_variables.txt",
    ] {
        assert!(
            model["artifacts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == file),
            "{file} missing from {model}"
        );
    }
    let mlmodel = &seen["mlmodel"];
    assert_eq!(mlmodel["model_id"], logged["model_id"]);
    assert_eq!(mlmodel["chainlog"]["chain"], chain);
    assert_eq!(mlmodel["chainlog"]["format_version"], 2);
    // The artifact digest, read back by MLflow's client on the LoggedModel and on the run.
    let digest = logged["artifact_digest"].as_str().unwrap();
    assert_eq!(digest.len(), 64, "{logged}");
    assert_eq!(model["tags"]["chainlog.artifact_digest"], digest, "{model}");
    assert_eq!(run["tags"]["chainlog.artifact_digest"], digest, "{run}");
    assert!(mlmodel["signature_inputs"].is_string());
    assert_eq!(
        seen["registered"]["alias_version"], "1",
        "{registered}: {seen}"
    );
    assert_eq!(
        seen["registered"]["source"],
        format!("models:/{}", logged["model_id"].as_str().unwrap())
    );
}

/// Every example chain logged to a fresh `sqlite:///mlflow.db` (MLflow's default), its input
/// example run against the built-in mock, then read back by MLflow's own client: runs,
/// params, tags, READY models with their files, parsed MLmodels, versions and aliases; and a
/// prompt pushed to the registry loads with `mlflow.genai.load_prompt`.
#[test]
fn log_every_chain_to_sqlite_and_read_it_back_with_mlflow() {
    let env = mlflow_env();
    let dir = tempfile::tempdir().unwrap();
    for (chain, example) in examples() {
        let registered = format!("{chain}-chain");
        let logged = log(
            dir.path(),
            chain,
            &example,
            &["--registered-model", &registered, "--alias", "champion"],
            &[],
        );
        assert_eq!(logged["tracking_uri"], "sqlite:///mlflow.db");
        let mut python = env.command();
        python.env("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db");
        let spec = json!({"run_id": logged["run_id"], "model_id": logged["model_id"], "registered_name": registered, "alias": "champion", "prompt_uri": null});
        assert_logged(
            &read_back(python, dir.path(), &spec),
            chain,
            &logged,
            &registered,
        );
    }
    let prompts = root().join("prompts");
    let pushed = chainlog(
        dir.path(),
        &[
            "prompts",
            "push",
            "summarize",
            "--prompts-dir",
            prompts.to_str().unwrap(),
            "--message",
            "first",
        ],
        &[],
    );
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&pushed.stdout).trim(),
        "prompts:/summarize/1"
    );
    let logged = log(dir.path(), "summarize", &examples()[2].1, &[], &[]);
    let mut python = env.command();
    python.env("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db");
    let spec = json!({"run_id": logged["run_id"], "model_id": logged["model_id"], "prompt_uri": "prompts:/summarize/1"});
    let seen = read_back(python, dir.path(), &spec);
    assert_eq!(seen["prompt"]["variables"], json!(["sentences", "text"]));
    assert!(seen["prompt"]["template"].to_string().contains("Summarise"));

    // A config may name the registered prompt instead of the file; MLmodel lists it.
    let config = dir.path().join("summarize-registry.yaml");
    let text = std::fs::read_to_string(root().join("chains/summarize.yaml"))
        .unwrap()
        .replace("summary: summarize", "summary: prompts:/summarize/1");
    std::fs::write(&config, text).unwrap();
    let output = chainlog(
        dir.path(),
        &[
            "log",
            "summarize",
            "--config",
            config.to_str().unwrap(),
            "--input-example",
            &examples()[2].1.to_string(),
            "--json",
        ],
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let logged: Value = serde_json::from_slice(&output.stdout).unwrap();
    let spec = json!({"run_id": logged["run_id"], "model_id": logged["model_id"]});
    let mut python = env.command();
    python.env("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db");
    let seen = read_back(python, dir.path(), &spec);
    assert_eq!(
        seen["mlmodel"]["prompts"],
        json!(["prompts:/summarize/1"]),
        "{seen}"
    );
    // Linked as MLflow links a registry prompt to the run and the model it was used by.
    let linked = r#"[{"name": "summarize", "version": "1"}]"#;
    assert_eq!(
        seen["run"]["tags"]["mlflow.linkedPrompts"], linked,
        "{seen}"
    );
    assert_eq!(
        seen["model"]["tags"]["mlflow.linkedPrompts"], linked,
        "{seen}"
    );
}

/// With the LLM endpoint unreachable, the input example cannot run: the log fails naming the
/// problem and writes nothing; `--no-validate` logs without running it.
#[test]
fn unreachable_llm_endpoint_fails_the_log_unless_no_validate() {
    let dir = tempfile::tempdir().unwrap();
    let config = root().join("chains/summarize.yaml");
    let prompts = root().join("prompts");
    let env = [
        ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
        ("OPENAI_API_KEY", "unused-key-value"),
    ];
    let args = [
        "log",
        "summarize",
        "--config",
        config.to_str().unwrap(),
        "--prompts-dir",
        prompts.to_str().unwrap(),
        "--input-example",
        r#"{"text": "x"}"#,
        "--set",
        "llm.max_retries=0",
    ];
    let output = chainlog(dir.path(), &args, &env);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("127.0.0.1:9") || stderr.to_lowercase().contains("connect"),
        "{stderr}"
    );
    assert!(!dir.path().join("mlflow.db").exists(), "nothing is written");
    let mut no_validate = args.to_vec();
    no_validate.push("--no-validate");
    let output = chainlog(dir.path(), &no_validate, &env);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A tracking URI with a wrong path (the server answers its HTML 404 page) and a real MLflow 2
/// server (no LoggedModel API) each fail `log` and `predict` with one line: the first says no
/// MLflow API is there, the second names the server's version and the minimum; neither quotes
/// HTML, and the old server gets no experiment or run.
#[test]
fn a_wrong_server_path_and_an_mlflow_2_server_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = root().join("chains/summarize.yaml");
    let prompts = root().join("prompts");
    let log_args = [
        "log",
        "summarize",
        "--config",
        config.to_str().unwrap(),
        "--prompts-dir",
        prompts.to_str().unwrap(),
        "--experiment",
        "old-server",
    ];
    let predict_args = [
        "predict",
        "-m",
        "models:/m-0123456789abcdef0123456789abcdef",
        "--input",
        r#"{"text": "x"}"#,
    ];
    let one_error = |output: &Output, expected: &[&str]| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        let errors: Vec<_> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        for part in expected {
            assert!(errors[0].contains(part), "{part}: {stderr}");
        }
        assert!(!stderr.contains('<'), "HTML in the message: {stderr}");
    };
    let wrong = format!("{}/not-mlflow", MlflowServer::shared().uri());
    for args in [&log_args[..], &predict_args[..]] {
        let output = chainlog(dir.path(), args, &[("MLFLOW_TRACKING_URI", &wrong)]);
        one_error(&output, &["no MLflow API at", &wrong, "HTTP 404"]);
    }

    let old = MlflowServer::start_with(
        python_env::provision(
            "mlflow2",
            &root().join("tests/python/requirements-mlflow2.txt"),
        ),
        crate::support::mlflow_server::Artifacts::Proxied,
    );
    for args in [&log_args[..], &predict_args[..]] {
        let output = chainlog(dir.path(), args, &[("MLFLOW_TRACKING_URI", old.uri())]);
        one_error(&output, &["version 2.22.5", "MLflow 3.0 or newer"]);
    }
    let seen = old
        .python()
        .args([
            "-c",
            "import mlflow; print(mlflow.get_experiment_by_name('old-server'))",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&seen.stdout).trim(), "None");
}

/// An unknown tracking URI scheme and an unreachable server each fail with one line naming
/// the URI, and write nothing.
#[test]
fn bad_tracking_uris_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for (uri, expected) in [
        ("postgresql://db/mlflow", "unsupported tracking URI"),
        (
            "http://127.0.0.1:9",
            "cannot reach the MLflow server at http://127.0.0.1:9",
        ),
    ] {
        let config = root().join("chains/summarize.yaml");
        let output = chainlog(
            dir.path(),
            &[
                "log",
                "summarize",
                "--config",
                config.to_str().unwrap(),
                "--prompts-dir",
                root().join("prompts").to_str().unwrap(),
                "--tracking-uri",
                uri,
            ],
            &[],
        );
        assert_eq!(output.status.code(), Some(1), "{uri}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<_> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains(expected), "{stderr}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing is written"
    );
}

/// Every example chain logged to a real `mlflow server` (REST, the artifact proxy, the
/// registry), read back by MLflow's own client.
#[test]
fn log_every_chain_to_a_real_mlflow_server_and_read_it_back() {
    let server = MlflowServer::shared();
    let dir = tempfile::tempdir().unwrap();
    for (chain, example) in examples() {
        let registered = format!("server-{chain}-chain");
        let logged = log(
            dir.path(),
            chain,
            &example,
            &[
                "--registered-model",
                &registered,
                "--alias",
                "champion",
                "--experiment",
                "log-chain-test",
            ],
            &[("MLFLOW_TRACKING_URI", server.uri())],
        );
        assert!(
            logged["artifact_uri"]
                .as_str()
                .unwrap()
                .starts_with("mlflow-artifacts:/")
        );
        let spec = json!({"run_id": logged["run_id"], "model_id": logged["model_id"], "registered_name": registered, "alias": "champion", "prompt_uri": null});
        assert_logged(
            &read_back(server.python(), dir.path(), &spec),
            chain,
            &logged,
            &registered,
        );
    }
}

/// A proxy in front of the MLflow server that records every request body chainlog sends and,
/// when asked, fails artifact uploads (as a server stopped mid-upload does), or — from the
/// `outage_after`-th upload on — answers everything 503 for `outage` (a server restarting
/// behind its load balancer).
#[derive(Clone)]
struct Proxy {
    upstream: String,
    client: reqwest::Client,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    fail_uploads: Arc<AtomicBool>,
    uploads: Arc<AtomicUsize>,
    outage: Arc<Mutex<Option<(usize, Duration)>>>,
    down_until: Arc<Mutex<Option<Instant>>>,
}

impl Proxy {
    /// Whether the server is "down" for this request (starting the outage when its upload
    /// comes).
    fn is_down(&self, method: &Method) -> bool {
        if *method == Method::PUT {
            let n = self.uploads.fetch_add(1, Ordering::SeqCst) + 1;
            let mut outage = self.outage.lock().unwrap();
            if let Some((after, length)) = *outage
                && n >= after
            {
                *self.down_until.lock().unwrap() = Some(Instant::now() + length);
                *outage = None;
            }
        }
        self.down_until
            .lock()
            .unwrap()
            .is_some_and(|until| Instant::now() < until)
    }
}

impl Proxy {
    async fn start(upstream: &str) -> (Proxy, String) {
        let proxy = Proxy {
            upstream: upstream.to_owned(),
            client: reqwest::Client::new(),
            bodies: Arc::default(),
            fail_uploads: Arc::default(),
            uploads: Arc::default(),
            outage: Arc::default(),
            down_until: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (proxy, url)
    }
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, usize::MAX).await.unwrap();
    proxy.bodies.lock().unwrap().push(body.to_vec());
    if proxy.is_down(&parts.method) {
        return Response::builder()
            .status(503)
            .body(Body::from("restarting"))
            .unwrap();
    }
    if parts.method == Method::PUT && proxy.fail_uploads.load(Ordering::SeqCst) {
        return Response::builder()
            .status(503)
            .body(Body::from("stopped"))
            .unwrap();
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = proxy
        .client
        .request(parts.method.clone(), format!("{}{path}", proxy.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let reply = upstream.send().await.unwrap();
    let status = reply.status();
    let content_type = reply.headers().get("content-type").cloned();
    let bytes = reply.bytes().await.unwrap();
    let mut response = Response::builder().status(status);
    if let Some(content_type) = content_type {
        response = response.header("content-type", content_type);
    }
    response.body(Body::from(bytes)).unwrap()
}

/// Every file under `dir` (recursively) that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(path);
        }
    }
    hits
}

/// The whole log flow with `OPENAI_API_KEY` set to a unique canary (the config references it
/// and the input example runs against a mock that requires it): no file of the SQLite store,
/// no file of the server's database or artifacts, and no request body sent to the server
/// holds it. A config with a literal key is refused and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_canary_reaches_no_store_and_no_request() {
    // Made at run time so the canary is not in the crate snapshot that gets logged.
    let canary = format!("sk-canary-{:032x}", rand::random::<u128>());
    let mock = chainlog::mock::MockServer::start(
        chainlog::mock::MockConfig::default()
            .with_required_api_key(secrecy::SecretString::from(canary.clone())),
    )
    .await
    .unwrap();
    let server = MlflowServer::shared();
    let (proxy, proxy_url) = Proxy::start(server.uri()).await;
    let dir = tempfile::tempdir().unwrap();
    let base = mock.base_url();
    let cwd = dir.path().to_path_buf();
    let proxy_for_log = proxy_url.clone();
    let key = canary.clone();
    tokio::task::spawn_blocking(move || {
        let env = [
            ("OPENAI_API_KEY", key.as_str()),
            ("OPENAI_BASE_URL", base.as_str()),
        ];
        let example = json!({"text": "Rust is a systems language."});
        log(&cwd, "summarize", &example, &[], &env);
        let server_env = [
            env[0],
            env[1],
            ("MLFLOW_TRACKING_URI", proxy_for_log.as_str()),
        ];
        log(
            &cwd,
            "summarize",
            &example,
            &["--registered-model", "canary-chain"],
            &server_env,
        );
    })
    .await
    .unwrap();
    assert!(
        mock.requests().len() >= 2,
        "the input example ran against the keyed mock"
    );
    let needle = canary.as_bytes();
    assert_eq!(files_containing(dir.path(), needle), Vec::<PathBuf>::new());
    assert_eq!(
        files_containing(server.db_path().parent().unwrap(), needle),
        Vec::<PathBuf>::new()
    );
    let bodies = proxy.bodies.lock().unwrap();
    assert!(bodies.len() > 5, "the proxy saw the log flow");
    assert!(
        !bodies
            .iter()
            .any(|b| b.windows(needle.len()).any(|w| w == needle))
    );
    drop(bodies);

    let literal = tempfile::tempdir().unwrap();
    let config = literal.path().join("summarize.yaml");
    std::fs::write(
        &config,
        format!("llm:\n  model: gpt-4o-mini\n  api_key: {canary}\nprompts:\n  summary: summarize\nchain:\n  sentences: 2\n"),
    )
    .unwrap();
    let output = chainlog(
        literal.path(),
        &["log", "summarize", "--config", config.to_str().unwrap()],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("llm.api_key"), "{stderr}");
    assert!(!stderr.contains(&canary));
    assert!(
        !literal.path().join("mlflow.db").exists(),
        "nothing is written"
    );
    assert!(
        !literal.path().join("mlruns").exists(),
        "nothing is written"
    );
}

/// The server failing every artifact upload (as when it stops mid-upload): the log fails, the
/// run ends FAILED, no READY model exists; with the server back, a second log succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_failure_leaves_a_failed_run_and_no_ready_model() {
    let server = MlflowServer::shared();
    let (proxy, proxy_url) = Proxy::start(server.uri()).await;
    proxy.fail_uploads.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_path_buf();
    let url = proxy_url.clone();
    let failed = tokio::task::spawn_blocking(move || {
        let config = root().join("chains/summarize.yaml");
        chainlog(
            &cwd,
            &[
                "log",
                "summarize",
                "--config",
                config.to_str().unwrap(),
                "--prompts-dir",
                root().join("prompts").to_str().unwrap(),
                "--experiment",
                "fault-test",
                "--run-name",
                "fault-run",
            ],
            &[
                ("MLFLOW_TRACKING_URI", url.as_str()),
                ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"),
                ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0"),
                ("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0"),
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{stderr}"
    );
    let script = r#"
import json, mlflow
from mlflow import MlflowClient
exp = mlflow.get_experiment_by_name("fault-test")
runs = mlflow.search_runs([exp.experiment_id], output_format="list")
models = MlflowClient().search_logged_models(experiment_ids=[exp.experiment_id])
print(json.dumps({"runs": [[r.info.run_name, r.info.status] for r in runs], "models": [str(m.status) for m in models]}))
"#;
    let output = server.python().args(["-c", script]).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(output.stdout.trim_ascii()).unwrap();
    assert_eq!(seen["runs"], json!([["fault-run", "FAILED"]]), "{seen}");
    assert!(
        seen["models"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| !s.as_str().unwrap().contains("READY")),
        "{seen}"
    );

    proxy.fail_uploads.store(false, Ordering::SeqCst);
    let cwd = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        log(
            &cwd,
            "summarize",
            &examples()[2].1,
            &["--experiment", "fault-test"],
            &[("MLFLOW_TRACKING_URI", proxy_url.as_str())],
        );
    })
    .await
    .unwrap();
}

/// The names and aliases a store would refuse (MLflow's rules: reserved aliases, a `/` in a
/// registered model name, an over-long experiment name) are refused before anything is written,
/// on both stores, each naming the value.
#[test]
fn names_the_store_would_refuse_are_refused_before_anything_is_written() {
    let server = MlflowServer::shared();
    let long_experiment = "e".repeat(501);
    let cases: [(&[&str], &str); 4] = [
        (
            &["--registered-model", "refused", "--alias", "latest"],
            "latest",
        ),
        (&["--registered-model", "refused", "--alias", "v1"], "v1"),
        (
            &["--registered-model", "team/summarizer"],
            "team/summarizer",
        ),
        (&["--experiment", &long_experiment], "500"),
    ];
    let example = &examples()[2].1;
    let config = root().join("chains/summarize.yaml");
    let prompts = root().join("prompts");
    let example_text = example.to_string();
    for store in ["sqlite", "server"] {
        let dir = tempfile::tempdir().unwrap();
        for (extra, named) in cases {
            let mut args = vec![
                "log",
                "summarize",
                "--config",
                config.to_str().unwrap(),
                "--prompts-dir",
                prompts.to_str().unwrap(),
                "--input-example",
                &example_text,
            ];
            if !extra.contains(&"--experiment") {
                args.extend(["--experiment", "refused-names"]);
            }
            args.extend_from_slice(extra);
            let env: &[(&str, &str)] = if store == "server" {
                &[("MLFLOW_TRACKING_URI", server.uri())]
            } else {
                &[]
            };
            let output = chainlog(dir.path(), &args, env);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{store} {extra:?}: {stderr}");
            assert!(stderr.contains(named), "{store} {extra:?}: {stderr}");
            // Checked here, not by a server: the message must not say a server refused it.
            assert!(
                !stderr.contains("MLflow refused"),
                "{store} {extra:?}: {stderr}"
            );
        }
        if store == "sqlite" {
            assert!(
                !dir.path().join("mlflow.db").exists(),
                "the SQLite store was written to"
            );
        } else {
            let mut python = server.python();
            let seen = python
                .args([
                    "-c",
                    "import mlflow; c = mlflow.MlflowClient(); \
                     print(mlflow.get_experiment_by_name('refused-names'), \
                     [m.name for m in c.search_registered_models()])",
                ])
                .output()
                .unwrap();
            let seen = String::from_utf8_lossy(&seen.stdout);
            assert!(
                seen.starts_with("None "),
                "an experiment was created: {seen}"
            );
            assert!(
                !seen.contains("'refused'") && !seen.contains("team/summarizer"),
                "a registered model was created: {seen}"
            );
        }
    }
}

/// `models:/<name>/latest` is the newest version, on both stores, as MLflow's client resolves
/// it.
#[tokio::test]
async fn latest_version_resolves_to_the_newest_on_both_stores() {
    let server = MlflowServer::shared();
    let dir = tempfile::tempdir().unwrap();
    for (uri, env) in [
        ("sqlite:///mlflow.db", vec![]),
        (server.uri(), vec![("MLFLOW_TRACKING_URI", server.uri())]),
    ] {
        let example = &examples()[2].1;
        let extra = [
            "--registered-model",
            "latest-test",
            "--experiment",
            "latest-test",
        ];
        let first = log(dir.path(), "summarize", example, &extra, &env);
        let second = log(dir.path(), "summarize", example, &extra, &env);
        assert_ne!(first["model_id"], second["model_id"]);
        let tracking = if uri.starts_with("sqlite") {
            chainlog::store::TrackingUri::parse(&format!(
                "sqlite:///{}",
                dir.path().join("mlflow.db").display()
            ))
        } else {
            chainlog::store::TrackingUri::parse(uri)
        }
        .unwrap();
        let store = chainlog::store::open_store(&tracking).unwrap();
        let (version, model_id) = store.model_version("latest-test", "@latest").await.unwrap();
        assert_eq!(version, "2", "{uri}");
        assert_eq!(model_id, second["model_id"].as_str().unwrap(), "{uri}");
        let output = chainlog(
            dir.path(),
            &[
                "predict",
                "-m",
                "models:/latest-test/latest",
                "--input",
                r#"{"text": "the newest version"}"#,
            ],
            &env,
        );
        assert!(
            output.status.success(),
            "{uri}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The tracking server unavailable for 10 s in the middle of the artifact upload: MLflow's
/// retry policy (`MLFLOW_HTTP_REQUEST_*`, defaults) rides it out and the log completes READY.
/// Unavailable for longer than the retries last: the error names the run and the model left
/// behind, and `predict` refuses the model that never became READY, naming its status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_outage_mid_log_is_ridden_out_or_names_what_it_left() {
    let server = MlflowServer::shared();
    let (proxy, proxy_url) = Proxy::start(server.uri()).await;
    let dir = tempfile::tempdir().unwrap();

    *proxy.outage.lock().unwrap() = Some((5, Duration::from_secs(10)));
    let (cwd, url) = (dir.path().to_path_buf(), proxy_url.clone());
    let logged = tokio::task::spawn_blocking(move || {
        log(
            &cwd,
            "summarize",
            &examples()[2].1,
            &["--experiment", "outage-test"],
            &[("MLFLOW_TRACKING_URI", url.as_str())],
        )
    })
    .await
    .unwrap();
    assert!(
        proxy.down_until.lock().unwrap().is_some(),
        "no outage happened"
    );
    let script = format!(
        "import mlflow; print(mlflow.MlflowClient().get_logged_model('{}').status)",
        logged["model_id"].as_str().unwrap()
    );
    let status = server.python().args(["-c", &script]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("READY"),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );

    // 60 s down, retries lasting about 14 s: the log gives up and says what it left.
    *proxy.down_until.lock().unwrap() = None;
    proxy.uploads.store(0, Ordering::SeqCst);
    *proxy.outage.lock().unwrap() = Some((5, Duration::from_secs(60)));
    let (cwd, url) = (dir.path().to_path_buf(), proxy_url.clone());
    let failed = tokio::task::spawn_blocking(move || {
        let config = root().join("chains/summarize.yaml");
        chainlog(
            &cwd,
            &[
                "log",
                "summarize",
                "--config",
                config.to_str().unwrap(),
                "--prompts-dir",
                root().join("prompts").to_str().unwrap(),
                "--experiment",
                "outage-test",
            ],
            &[
                ("MLFLOW_TRACKING_URI", url.as_str()),
                ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3"),
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    let model_id = stderr
        .split('`')
        .find(|part| part.starts_with("m-"))
        .unwrap_or_else(|| panic!("no model named: {stderr}"))
        .to_owned();
    assert!(stderr.contains("left PENDING"), "{stderr}");
    assert!(
        stderr.contains("run `") && stderr.contains("left RUNNING"),
        "{stderr}"
    );
    assert!(stderr.contains("chainlog gc"), "{stderr}");

    // Straight to the server (the proxy is still "down"): the PENDING model is refused.
    let (cwd, uri) = (dir.path().to_path_buf(), server.uri().to_owned());
    let model_uri = format!("models:/{model_id}");
    let refused = tokio::task::spawn_blocking(move || {
        chainlog(
            &cwd,
            &["predict", "-m", &model_uri, "--input", r#"{"text": "x"}"#],
            &[("MLFLOW_TRACKING_URI", uri.as_str())],
        )
    })
    .await
    .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("PENDING") && stderr.contains("not READY"),
        "{stderr}"
    );

    // `gc` ends them: the run FAILED, the model UPLOAD_FAILED, as MLflow's client reads them;
    // an experiment that does not exist is an error, not a clean store.
    let gc = |args: Vec<String>| {
        let (cwd, uri) = (dir.path().to_path_buf(), server.uri().to_owned());
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            chainlog(&cwd, &args, &[("MLFLOW_TRACKING_URI", uri.as_str())])
        })
    };
    let args = |experiment: &str| -> Vec<String> {
        [
            "gc",
            "--older-than",
            "0s",
            "--experiment",
            experiment,
            "--json",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let typo = gc(args("outage-tset")).await.unwrap();
    assert_eq!(typo.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("`outage-tset`"));
    let ended = gc(args("outage-test")).await.unwrap();
    assert!(
        ended.status.success(),
        "{}",
        String::from_utf8_lossy(&ended.stderr)
    );
    let report: Value = serde_json::from_slice(&ended.stdout).unwrap();
    assert_eq!(report["models"], json!([model_id]), "{report}");
    assert_eq!(report["runs"].as_array().unwrap().len(), 1, "{report}");
    let script = format!(
        "import mlflow; c = mlflow.MlflowClient(); \
         print(c.get_run('{}').info.status, c.get_logged_model('{model_id}').status)",
        report["runs"][0].as_str().unwrap()
    );
    let seen = server.python().args(["-c", &script]).output().unwrap();
    let seen = String::from_utf8_lossy(&seen.stdout);
    assert!(
        seen.starts_with("FAILED") && seen.trim_end().ends_with("FAILED"),
        "{seen}"
    );
}
