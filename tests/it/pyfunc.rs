//! MLflow's Python world loading chainlog models through the `python_function` flavor, with
//! MLflow 3.17.2 itself as the judge (tests/python/pyfunc_check.py in the pinned venv):
//! `mlflow.pyfunc.load_model(...).predict(df)` for every example chain from both stores (the
//! SQLite store chainlog writes and a real `mlflow server`), `mlflow models serve` answering
//! the four request formats, `mlflow.models.predict`, chain errors as `MlflowException`, a
//! killed child started again, column errors before any LLM call, and the one-sentence error
//! when no chainlog binary can be found. LLM calls go to an in-process `MockServer`, which
//! also counts them.

use std::{
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    process::{Command, Output},
};

use chainlog::mock::{MockConfig, MockServer};
use serde_json::{Value, json};

use crate::{
    chain_support::root,
    support::{
        mlflow_server::MlflowServer,
        python_env::{self, PythonEnv},
    },
};

/// The API key the child sees; it must never come back in an answer or error.
const CANARY: &str = "sk-canary-pyfunc-4f1d2b9e7a6c";

/// The mock's rules: a request mentioning `refuse me` is refused with the key echoed back.
const RULES: &str = "rules:\n  - name: refuse\n    match: { content: refuse me }\n    reply:\n      \
    error: { status: 400, message: \"not allowed for sk-canary-pyfunc-4f1d2b9e7a6c\", \
    type: invalid_request_error, code: content_policy }\n";

/// One example input per chain.
fn example(chain: &str, n: usize) -> Value {
    match chain {
        "extract" => json!({"text": format!("Ada Lovelace {n}, ada@example.com")}),
        "tool_agent" => json!({"question": format!("What is {n} + 2?")}),
        "map_reduce" => json!({"text": format!("Row {n}. A long text. Another sentence.")}),
        _ => json!({"text": format!("pyfunc row {n}")}),
    }
}

/// The output field every answer of `chain` has.
fn output_field(chain: &str) -> &'static str {
    match chain {
        "extract" => "contact",
        "tool_agent" => "answer",
        _ => "summary",
    }
}

fn mlflow_env() -> PythonEnv {
    python_env::provision("mlflow", Path::new("tests/python/requirements-mlflow.txt"))
}

/// A folder holding the example chains (symlinks) where `chainlog log` runs.
fn project_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["chains", "prompts"] {
        std::os::unix::fs::symlink(root().join(folder), dir.path().join(folder)).unwrap();
    }
    dir
}

/// `chainlog log <chain>` into `tracking_uri`, registered as `name@champion`.
fn log(dir: &Path, chain: &str, tracking_uri: &str, name: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_chainlog"))
        .args(["log", chain, "--input-example"])
        .arg(example(chain, 0).to_string())
        .args(["--registered-model", name, "--alias", "champion", "--json"])
        .args(["--tracking-uri", tracking_uri])
        .current_dir(dir)
        .env("CHAINLOG_CACHE_DIR", dir.join("cache"))
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "log {chain} into {tracking_uri}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn sqlite_uri(dir: &Path) -> String {
    format!("sqlite:///{}", dir.join("mlflow.db").display())
}

/// The venv's Python running pyfunc_check.py `mode` with `args`, in `dir`, with the mock as
/// the endpoint and the test binary's chainlog as `CHAINLOG_BIN` (unless `env` unsets it).
fn python(
    env: &PythonEnv,
    dir: &Path,
    mock: &str,
    mode: &str,
    args: &Value,
    vars: &[(&str, Option<&str>)],
) -> Command {
    let script = root().join("tests/python/pyfunc_check.py");
    // MLflow downloads a `models:/` URI into a temporary directory it never removes: inside
    // the test's own directory, it goes with it (Python falls back to /tmp if TMPDIR does
    // not exist).
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut cmd = env.command();
    cmd.arg(script)
        .arg(mode)
        .arg(args.to_string())
        .current_dir(dir)
        .env("CHAINLOG_BIN", env!("CARGO_BIN_EXE_chainlog"))
        .env("CHAINLOG_CACHE_DIR", dir.join("cache"))
        .env("TMPDIR", &tmp)
        .env("OPENAI_BASE_URL", mock)
        .env("OPENAI_API_KEY", CANARY)
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("MLFLOW_PYFUNC_INFERENCE_CONFIG")
        .env_remove("SERVING_MODEL_CONFIG")
        .env_remove("CHAINLOG_PYFUNC_CONCURRENCY");
    for (name, value) in vars {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    cmd
}

/// Runs `cmd` off the runtime (the mock answers meanwhile); its stdout as JSON.
async fn run_json(mut cmd: Command) -> Value {
    let output: Output = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pyfunc_check.py failed ({}).\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
    assert!(
        !stdout.contains(CANARY) && !stderr.contains(CANARY),
        "{stdout}\n{stderr}"
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|err| panic!("{err}: {stdout}\n{stderr}"))
}

async fn mock() -> MockServer {
    MockServer::start(MockConfig::default().with_rules_yaml(RULES).unwrap())
        .await
        .unwrap()
}

/// Every example chain, logged to the SQLite store and to a real MLflow server, loads with
/// `mlflow.pyfunc.load_model("models:/<name>@champion")` (both flavors in its MLmodel) and
/// predicts a pandas DataFrame: one output per row, in row order, each of the chain's shape,
/// every row an LLM call of the mock.
#[tokio::test(flavor = "multi_thread")]
async fn load_model_predicts_every_example_chain_from_both_stores() {
    let server = MlflowServer::shared();
    let mock = mock().await;
    let dir = project_dir();
    let chains: Vec<&str> = crate::chain_registry()
        .entries()
        .iter()
        .map(|e| e.name())
        .collect();
    assert_eq!(chains.len(), 4, "{chains:?}");
    let mut cases = Vec::new();
    for chain in &chains {
        let rows: Vec<Value> = (1..=3).map(|n| example(chain, n)).collect();
        let sqlite = sqlite_uri(dir.path());
        log(dir.path(), chain, &sqlite, &format!("pf_{chain}"));
        cases.push(json!({"tracking_uri": sqlite, "model_uri": format!("models:/pf_{chain}@champion"), "rows": rows, "chain": chain}));
        let name = format!("pyfunc-{chain}");
        log(dir.path(), chain, server.uri(), &name);
        cases.push(json!({"tracking_uri": server.uri(), "model_uri": format!("models:/{name}@champion"), "rows": rows, "chain": chain}));
    }
    let before = mock.requests().len();
    let env = mlflow_env();
    let seen = run_json(python(
        &env,
        dir.path(),
        &mock.base_url(),
        "predict",
        &json!({ "cases": cases }),
        &[],
    ))
    .await;
    let results = seen["results"].as_array().unwrap();
    assert_eq!(results.len(), cases.len());
    for (case, result) in cases.iter().zip(results) {
        let chain = case["chain"].as_str().unwrap();
        let uri = case["tracking_uri"].as_str().unwrap();
        assert_eq!(
            result["flavors"],
            json!(["chainlog", "python_function"]),
            "{chain} from {uri}"
        );
        let predictions = result["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), 3, "{chain} from {uri}: {predictions:?}");
        for (n, prediction) in predictions.iter().enumerate() {
            assert!(
                prediction.get(output_field(chain)).is_some(),
                "{chain} from {uri}: {prediction}"
            );
            if chain == "summarize" {
                let summary = prediction["summary"].as_str().unwrap();
                assert!(
                    summary.contains(&format!("pyfunc row {}", n + 1)),
                    "{summary}"
                );
            }
        }
    }
    // Every row reached the mock (the chains call it at least once per row).
    assert!(mock.requests().len() - before >= cases.len() * 3);
}

/// The loaded model takes a dict and a list of dicts; a missing column is MLflow's own
/// MlflowException naming it, extra columns, a row without a field and a row of the wrong
/// type are chainlog's, naming them — all before any LLM call. Killing the child between two
/// predicts starts it again; `close` and garbage collection end it.
#[tokio::test(flavor = "multi_thread")]
async fn loaded_model_checks_input_and_outlives_its_child() {
    let mock = mock().await;
    let dir = project_dir();
    let sqlite = sqlite_uri(dir.path());
    log(dir.path(), "summarize", &sqlite, "pf_behaviour");
    let env = mlflow_env();
    let args = json!({"tracking_uri": sqlite, "model_uri": "models:/pf_behaviour@champion", "text": "behaviour"});
    let seen = run_json(python(
        &env,
        dir.path(),
        &mock.base_url(),
        "behaviour",
        &args,
        &[],
    ))
    .await;
    let summary = |v: &Value| v["summary"].as_str().unwrap().to_owned();
    assert!(
        summary(&seen["dict"][0]).contains("behaviour as a dict"),
        "{seen}"
    );
    let records = seen["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert!(summary(&records[0]).contains("behaviour one"), "{seen}");
    assert!(summary(&records[1]).contains("behaviour two"), "{seen}");
    assert!(
        summary(&seen["params"][0]).contains("with params"),
        "{seen}"
    );

    let missing = &seen["missing_column"];
    assert_eq!(missing["type"], "MlflowException", "{missing}");
    assert!(
        missing["message"].as_str().unwrap().contains("['text']"),
        "{missing}"
    );
    let extra = &seen["extra_column"];
    assert_eq!(extra["type"], "MlflowException", "{extra}");
    let message = extra["message"].as_str().unwrap();
    assert!(
        message.contains("extra column(s) ['extra', 'more']"),
        "{message}"
    );
    let missing_key = seen["missing_key"]["message"].as_str().unwrap();
    assert!(
        missing_key.contains("missing column(s) ['text']"),
        "{missing_key}"
    );
    assert!(
        missing_key.contains("extra column(s) ['txt']"),
        "{missing_key}"
    );
    let bad_row = &seen["bad_row"];
    assert_eq!(bad_row["error_code"], "BAD_REQUEST", "{bad_row}");
    let message = bad_row["message"].as_str().unwrap();
    assert!(message.starts_with("row 1: invalid input"), "{message}");
    // None of the refused inputs reached the mock: only the good predicts did.
    let texts: Vec<String> = mock.requests().iter().map(|r| r.body.to_string()).collect();
    assert!(
        !texts
            .iter()
            .any(|t| t.contains("\"fine\"") || t.contains("\"x\"")),
        "{texts:?}"
    );

    assert!(
        summary(&seen["after_kill"][0]).contains("after kill"),
        "{seen}"
    );
    let pids = seen["pids"].as_array().unwrap();
    assert_ne!(pids[0], pids[1], "a new child was started");
    assert_eq!(seen["alive_after_close"], false);
    assert_eq!(seen["alive_after_gc"], false);
}

/// A chain error (the provider refuses, echoing the key) is an MlflowException with the
/// chain's message — the provider's words, the key masked.
#[tokio::test(flavor = "multi_thread")]
async fn chain_error_is_an_mlflow_exception_without_the_key() {
    let mock = mock().await;
    let dir = project_dir();
    let sqlite = sqlite_uri(dir.path());
    log(dir.path(), "summarize", &sqlite, "pf_error");
    let env = mlflow_env();
    let args = json!({"tracking_uri": sqlite, "model_uri": "models:/pf_error@champion", "text": "please refuse me"});
    let seen = run_json(python(
        &env,
        dir.path(),
        &mock.base_url(),
        "error",
        &args,
        &[],
    ))
    .await;
    let error = &seen["error"];
    assert_eq!(error["type"], "MlflowException", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("the provider refused the request"),
        "{message}"
    );
    assert!(message.contains("not allowed for"), "{message}");
    assert!(!message.contains(CANARY), "{message}");
    // A refusal comes back the same on every retry: not TEMPORARILY_UNAVAILABLE (a 503).
    assert_eq!(error["error_code"], "INTERNAL_ERROR", "{error}");
}

/// Without `CHAINLOG_BIN`, without `chainlog` on PATH and without cargo, `load_model` fails at
/// once with one sentence saying how to provide a binary.
#[tokio::test(flavor = "multi_thread")]
async fn load_model_without_a_binary_says_how_to_provide_one() {
    let dir = project_dir();
    let sqlite = sqlite_uri(dir.path());
    log(dir.path(), "summarize", &sqlite, "pf_nobin");
    let env = mlflow_env();
    // Only the venv's own bin/ and the system's: no chainlog, no cargo.
    let venv_bin = env.python().parent().unwrap().display().to_string();
    let path = format!("{venv_bin}:/usr/bin:/bin");
    assert!(
        !Path::new("/usr/bin/cargo").exists() && !Path::new("/usr/bin/chainlog").exists(),
        "this test needs a PATH without cargo and chainlog"
    );
    let args = json!({"tracking_uri": sqlite, "model_uri": "models:/pf_nobin@champion"});
    let seen = run_json(python(
        &env,
        dir.path(),
        "http://127.0.0.1:9/v1",
        "no_binary",
        &args,
        &[("CHAINLOG_BIN", None), ("PATH", Some(&path))],
    ))
    .await;
    let error = &seen["error"];
    assert_eq!(error["type"], "MlflowException", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("no chainlog binary to run this model: set CHAINLOG_BIN"),
        "{message}"
    );
    assert!(
        message.contains("PATH") && message.contains("cargo"),
        "{message}"
    );
    assert_eq!(message.matches(". ").count(), 0, "one sentence: {message}");
    assert!(error["seconds"].as_f64().unwrap() < 30.0, "{error}");
}

/// `mlflow models serve -m models:/<name>@champion --env-manager local` on 127.0.0.1 answers
/// `dataframe_split`, `dataframe_records`, `instances` and `inputs` (with `params`) with the
/// chain's outputs in order, and refuses a missing column with 400.
#[tokio::test(flavor = "multi_thread")]
async fn mlflow_models_serve_answers_the_four_request_formats() {
    let mock = mock().await;
    let dir = project_dir();
    let sqlite = sqlite_uri(dir.path());
    log(dir.path(), "summarize", &sqlite, "pf_serve");
    let env = mlflow_env();
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let args = json!({"tracking_uri": sqlite, "model_uri": "models:/pf_serve@champion", "port": port, "text": "served"});
    let seen = run_json(python(
        &env,
        dir.path(),
        &mock.base_url(),
        "serve",
        &args,
        &[],
    ))
    .await;
    assert_eq!(seen["started"], true, "{seen}");
    for format in [
        "dataframe_split",
        "dataframe_records",
        "instances",
        "inputs",
        "inputs_params",
    ] {
        let answer = &seen[format];
        assert_eq!(answer["status"], 200, "{format}: {answer}");
        let predictions = answer["body"]["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), 2, "{format}: {answer}");
        for (prediction, suffix) in predictions.iter().zip(["served a", "served b"]) {
            let summary = prediction["summary"].as_str().unwrap();
            assert!(summary.contains(suffix), "{format}: {summary}");
        }
    }
    assert_eq!(seen["missing_column"]["status"], 400, "{seen}");
}

/// `mlflow.models.predict(uri, input_data=df, env_manager="local")` writes the chain's
/// outputs.
#[tokio::test(flavor = "multi_thread")]
async fn mlflow_models_predict_runs_the_chain() {
    let mock = mock().await;
    let dir = project_dir();
    let sqlite = sqlite_uri(dir.path());
    log(dir.path(), "summarize", &sqlite, "pf_models_predict");
    let env = mlflow_env();
    let output: PathBuf = dir.path().join("predictions.json");
    let args = json!({"tracking_uri": sqlite, "model_uri": "models:/pf_models_predict@champion", "text": "via models.predict", "output": output});
    let seen = run_json(python(
        &env,
        dir.path(),
        &mock.base_url(),
        "models_predict",
        &args,
        &[],
    ))
    .await;
    let predictions = seen["output"]["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 2, "{seen}");
    assert!(
        predictions[0]["summary"]
            .as_str()
            .unwrap()
            .contains("via models.predict a"),
        "{seen}"
    );
    assert!(
        predictions[1]["summary"]
            .as_str()
            .unwrap()
            .contains("via models.predict b"),
        "{seen}"
    );
}

/// `load_model(uri, model_config={"chain": {"sentences": 7}})` overrides the logged config key
/// as MLflow does for Python models: the rendered prompt the mock receives says 7.
#[tokio::test(flavor = "multi_thread")]
async fn load_model_config_overrides_the_logged_config() {
    let mock = mock().await;
    let dir = project_dir();
    let sqlite = sqlite_uri(dir.path());
    log(dir.path(), "summarize", &sqlite, "pf_config");
    let env = mlflow_env();
    let args = json!({"tracking_uri": sqlite, "model_uri": "models:/pf_config@champion",
        "text": "configured text", "model_config": {"chain": {"sentences": 7}}});
    let seen = run_json(python(
        &env,
        dir.path(),
        &mock.base_url(),
        "config",
        &args,
        &[],
    ))
    .await;
    assert!(
        seen["predictions"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("configured text"),
        "{seen}"
    );
    let systems: Vec<String> = mock
        .requests()
        .iter()
        .filter(|r| r.body.to_string().contains("configured text"))
        .map(|r| {
            r.body["messages"][0]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(systems.len(), 1, "{systems:?}");
    assert!(systems[0].contains("at most 7 sentences"), "{}", systems[0]);
}

/// The loader binds the model to the tracking store as chainlog's own loading does: an MLmodel
/// changed in the artifact store after logging (here a comment appended, every hash still
/// consistent) no longer matches the LoggedModel's `chainlog.artifact_digest` tag, and
/// `load_model` fails saying so.
#[tokio::test(flavor = "multi_thread")]
async fn load_model_refuses_an_mlmodel_changed_after_logging() {
    let dir = project_dir();
    let sqlite = sqlite_uri(dir.path());
    log(dir.path(), "summarize", &sqlite, "pf_digest");
    let mlmodels: Vec<PathBuf> = glob_mlmodels(&dir.path().join("mlruns"));
    assert_eq!(mlmodels.len(), 1, "{mlmodels:?}");
    let mut text = std::fs::read_to_string(&mlmodels[0]).unwrap();
    text.push_str("# changed in the artifact store\n");
    std::fs::write(&mlmodels[0], text).unwrap();
    let env = mlflow_env();
    let args = json!({"tracking_uri": sqlite, "model_uri": "models:/pf_digest@champion"});
    let seen = run_json(python(
        &env,
        dir.path(),
        "http://127.0.0.1:9/v1",
        "load_only",
        &args,
        &[],
    ))
    .await;
    let error = &seen["error"];
    assert_eq!(error["type"], "MlflowException", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("could not load the model"), "{message}");
    assert!(message.contains("digest"), "{message}");
}

/// Every `MLmodel` under `dir`.
fn glob_mlmodels(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "MLmodel") {
                found.push(path);
            }
        }
    }
    found
}
