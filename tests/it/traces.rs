//! Traces, read back with MLflow 3.17.2's own Python client: `predict` on a logged model makes
//! one trace linked to the model and its run (SQLite store and MLflow server), a batch of N
//! rows makes N traces, `tool_agent` traces hold TOOL spans, a failed call gives an ERROR
//! trace with its message, and a dead or OTLP-less trace destination leaves predictions
//! succeeding with one warning.

use std::{
    io::{Read, Write},
    net::TcpListener,
    path::Path,
    process::{Command, Output},
};

use serde_json::Value;

use crate::{
    chain_support::root,
    support::{mlflow_server::MlflowServer, python_env, refusing::RefusingPort},
};

/// `chainlog ARGS` in `cwd` with the built-in mock and `vars` set.
fn chainlog(cwd: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chainlog"));
    cmd.args(args)
        .current_dir(cwd)
        .env("CHAINLOG_CACHE_DIR", cwd.join("cache"))
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("CHAINLOG_TRACING")
        .env_remove("MLFLOW_TRACE_SAMPLING_RATIO")
        .env_remove("CHAINLOG_TRACE_FLUSH_TIMEOUT")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    for (key, value) in vars {
        cmd.env(key, value);
    }
    cmd.output().unwrap()
}

fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A folder with the example chains and prompts.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["chains", "prompts"] {
        std::os::unix::fs::symlink(root().join(folder), dir.path().join(folder)).unwrap();
    }
    dir
}

/// Logs `chain` (its input example not run, so it makes no trace); returns `log --json`.
fn log(dir: &Path, chain: &str, example: &str, vars: &[(&str, &str)]) -> Value {
    let out = chainlog(
        dir,
        &[
            "log",
            chain,
            "--input-example",
            example,
            "--no-validate",
            "--json",
        ],
        vars,
    );
    serde_json::from_str(&ok(out, "log")).unwrap()
}

/// The traces of `model_id` as MLflow's client sees them, as JSON: per trace its state,
/// previews, token usage, metadata, tags and spans (name, type, status, inputs, outputs).
fn search_traces(python: Command, model_id: &str, run_id: &str) -> Value {
    let script = format!(
        r#"
import json, mlflow
traces = mlflow.search_traces(model_id="{model_id}", return_type="list")
by_run = mlflow.search_traces(locations=[traces[0].info.experiment_id] if traces else ["0"],
                              run_id="{run_id}", return_type="list")
out = {{"by_run": len(by_run), "traces": []}}
for t in traces:
    out["traces"].append({{
        "state": str(t.info.state).split(".")[-1],
        "request_preview": t.info.request_preview,
        "response_preview": t.info.response_preview,
        "token_usage": t.info.token_usage,
        "metadata": t.info.trace_metadata,
        "tags": t.info.tags,
        "spans": [{{"name": s.name, "type": s.span_type,
                    "status": str(s.status.status_code).split(".")[-1],
                    "message": s.status.description,
                    "inputs": s.inputs, "outputs": s.outputs,
                    "usage": s.attributes.get("mlflow.chat.tokenUsage"),
                    "model": s.attributes.get("mlflow.llm.model"),
                    "events": [e.name for e in s.events]}} for s in t.data.spans],
    }})
print(json.dumps(out, default=str))
"#
    );
    let mut python = python;
    python.arg("-c").arg(script);
    let out = python.output().unwrap();
    assert!(
        out.status.success(),
        "search_traces failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn mlflow_env() -> python_env::PythonEnv {
    python_env::provision("mlflow", Path::new("tests/python/requirements-mlflow.txt"))
}

/// MLflow's Python against `<dir>/mlflow.db`.
fn sqlite_python(env: &python_env::PythonEnv, dir: &Path) -> Command {
    let mut cmd = env.command();
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MLFLOW_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir).env(
        "MLFLOW_TRACKING_URI",
        format!("sqlite:///{}", dir.join("mlflow.db").display()),
    );
    cmd
}

/// One trace of `summarize`: CHAIN root with the input and output, one CHAT_MODEL child
/// holding the exact request body and the response, token usage, previews, model and run.
fn assert_one_linked_trace(found: &Value, logged: &Value) {
    let traces = found["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 1, "{found:#}");
    let trace = &traces[0];
    assert_eq!(trace["state"], "OK");
    assert_eq!(trace["metadata"]["mlflow.modelId"], logged["model_id"]);
    assert_eq!(trace["metadata"]["mlflow.sourceRun"], logged["run_id"]);
    assert_eq!(found["by_run"], 1, "the run finds its trace");
    assert_eq!(trace["tags"]["team"], "search", "--trace-tag");
    assert!(
        trace["request_preview"]
            .as_str()
            .unwrap()
            .contains("traced text"),
        "{trace:#}"
    );
    assert!(
        trace["response_preview"]
            .as_str()
            .unwrap()
            .contains("Mock reply")
    );
    assert!(trace["token_usage"]["total_tokens"].as_i64().unwrap() > 0);
    let spans = trace["spans"].as_array().unwrap();
    let types: Vec<&str> = spans.iter().map(|s| s["type"].as_str().unwrap()).collect();
    assert_eq!(
        types.iter().filter(|t| **t == "CHAIN").count(),
        1,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| **t == "CHAT_MODEL").count(),
        1,
        "{types:?}"
    );
    let chain = spans.iter().find(|s| s["type"] == "CHAIN").unwrap();
    assert_eq!(chain["name"], "summarize");
    assert_eq!(chain["inputs"]["text"], "traced text");
    assert!(chain["outputs"]["summary"].is_string());
    let llm = spans.iter().find(|s| s["type"] == "CHAT_MODEL").unwrap();
    // What replay needs: the chat-completion request as sent and the response as received.
    assert!(llm["inputs"]["messages"].is_array(), "{llm:#}");
    assert!(llm["inputs"]["model"].is_string(), "{llm:#}");
    assert_eq!(llm["outputs"]["object"], "chat.completion", "{llm:#}");
    assert!(llm["outputs"]["choices"][0]["message"]["content"].is_string());
    assert!(
        llm["usage"]["input_tokens"].as_i64().unwrap() > 0,
        "{llm:#}"
    );
    assert!(llm["model"].is_string());
}

#[test]
fn predict_makes_one_trace_linked_to_model_and_run_in_sqlite() {
    let env = mlflow_env();
    let dir = project();
    let logged = log(dir.path(), "summarize", r#"{"text": "x"}"#, &[]);
    let uri = format!("models:/{}", logged["model_id"].as_str().unwrap());
    ok(
        chainlog(
            dir.path(),
            &[
                "predict",
                "-m",
                &uri,
                "--input",
                r#"{"text": "traced text"}"#,
                "--trace-tag",
                "team=search",
            ],
            &[],
        ),
        "predict",
    );
    let found = search_traces(
        sqlite_python(&env, dir.path()),
        logged["model_id"].as_str().unwrap(),
        logged["run_id"].as_str().unwrap(),
    );
    assert_one_linked_trace(&found, &logged);
}

#[test]
fn predict_makes_one_trace_linked_to_model_and_run_on_a_server() {
    let server = MlflowServer::shared();
    let dir = project();
    let vars = [("MLFLOW_TRACKING_URI", server.uri())];
    let logged = log(dir.path(), "summarize", r#"{"text": "x"}"#, &vars);
    let uri = format!("models:/{}", logged["model_id"].as_str().unwrap());
    ok(
        chainlog(
            dir.path(),
            &[
                "predict",
                "-m",
                &uri,
                "--input",
                r#"{"text": "traced text"}"#,
                "--trace-tag",
                "team=search",
            ],
            &vars,
        ),
        "predict",
    );
    let found = search_traces(
        server.python(),
        logged["model_id"].as_str().unwrap(),
        logged["run_id"].as_str().unwrap(),
    );
    assert_one_linked_trace(&found, &logged);
}

#[test]
fn a_batch_of_n_rows_makes_n_traces_and_no_trace_makes_none() {
    let env = mlflow_env();
    let dir = project();
    let logged = log(dir.path(), "summarize", r#"{"text": "x"}"#, &[]);
    let model_id = logged["model_id"].as_str().unwrap();
    let uri = format!("models:/{model_id}");
    let rows: String = (0..5)
        .map(|i| format!("{{\"text\": \"row {i}\"}}\n"))
        .collect();
    std::fs::write(dir.path().join("rows.jsonl"), rows).unwrap();
    let batch = |out: &str, extra: &[&str], vars: &[(&str, &str)]| {
        let mut args = vec![
            "predict",
            "-m",
            &uri,
            "--input-file",
            "rows.jsonl",
            "--output",
            out,
        ];
        args.extend_from_slice(extra);
        ok(chainlog(dir.path(), &args, vars), "batch");
    };
    batch("out.jsonl", &[], &[]);
    batch("off1.jsonl", &["--no-trace"], &[]);
    batch("off2.jsonl", &[], &[("CHAINLOG_TRACING", "false")]);
    batch("off3.jsonl", &[], &[("MLFLOW_TRACE_SAMPLING_RATIO", "0")]);
    let found = search_traces(
        sqlite_python(&env, dir.path()),
        model_id,
        logged["run_id"].as_str().unwrap(),
    );
    assert_eq!(found["traces"].as_array().unwrap().len(), 5, "{found:#}");
}

#[test]
fn tool_agent_trace_holds_tool_spans_and_input_example_is_traced_at_log() {
    let env = mlflow_env();
    let dir = project();
    // With its input example run: that run is a trace of the model too.
    let out = chainlog(
        dir.path(),
        &[
            "log",
            "tool_agent",
            "--input-example",
            r#"{"question": "What is 2*3?"}"#,
            "--json",
        ],
        &[],
    );
    let logged: Value = serde_json::from_str(&ok(out, "log")).unwrap();
    let found = search_traces(
        sqlite_python(&env, dir.path()),
        logged["model_id"].as_str().unwrap(),
        logged["run_id"].as_str().unwrap(),
    );
    let traces = found["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 1, "the input example's trace: {found:#}");
    let spans = traces[0]["spans"].as_array().unwrap();
    let tools: Vec<&Value> = spans.iter().filter(|s| s["type"] == "TOOL").collect();
    assert!(!tools.is_empty(), "{spans:#?}");
    assert!(tools[0]["outputs"].is_string(), "{:#}", tools[0]);
    assert!(tools[0]["inputs"].is_object(), "{:#}", tools[0]);
}

/// A bad value of a trace control stops the command before it does anything, naming the
/// variable and the value; a good flush timeout is taken.
#[test]
fn a_bad_trace_control_value_is_refused_naming_the_variable() {
    let dir = project();
    let refused = chainlog(
        dir.path(),
        &["log", "summarize", "--no-validate"],
        &[("CHAINLOG_TRACE_FLUSH_TIMEOUT", "ten")],
    );
    assert_eq!(refused.status.code(), Some(2), "a usage error: {refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(
            "CHAINLOG_TRACE_FLUSH_TIMEOUT must be a number of seconds from 0 to 1.8e19, got `ten`"
        ),
        "{stderr}"
    );
    assert!(!dir.path().join("mlflow.db").exists(), "nothing logged");
    ok(
        chainlog(
            dir.path(),
            &["log", "summarize", "--no-validate"],
            &[("CHAINLOG_TRACE_FLUSH_TIMEOUT", "30")],
        ),
        "log with a flush timeout of 30 s",
    );
}

#[test]
fn a_failed_call_makes_an_error_trace_with_its_message() {
    let env = mlflow_env();
    let dir = project();
    let logged = log(dir.path(), "summarize", r#"{"text": "x"}"#, &[]);
    let model_id = logged["model_id"].as_str().unwrap();
    // A port that refuses connections: the call fails at once.
    let refusing = RefusingPort::new();
    let base = format!("http://{}/v1", refusing.addr());
    let out = chainlog(
        dir.path(),
        &[
            "predict",
            "-m",
            &format!("models:/{model_id}"),
            "--input",
            r#"{"text": "t"}"#,
            "--set",
            "llm.max_retries=0",
        ],
        &[
            ("OPENAI_BASE_URL", &base),
            ("OPENAI_API_KEY", "not-a-real-key"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("error"), "{stderr}");
    let found = search_traces(
        sqlite_python(&env, dir.path()),
        model_id,
        logged["run_id"].as_str().unwrap(),
    );
    let traces = found["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 1, "{found:#}");
    assert_eq!(traces[0]["state"], "ERROR");
    let chain = traces[0]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "CHAIN")
        .unwrap();
    assert_eq!(chain["status"], "ERROR");
    assert!(!chain["message"].as_str().unwrap().is_empty(), "{chain:#}");
    let llm = traces[0]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "CHAT_MODEL")
        .unwrap();
    assert_eq!(llm["status"], "ERROR", "{llm:#}");
}

/// A loopback HTTP server answering every request with `status` and `body`; counts requests.
fn answering(
    status: &'static str,
    body: &'static str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = std::sync::Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { continue };
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let mut buf = [0u8; 65536];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, count)
}

#[test]
fn a_dead_or_otlp_less_destination_leaves_predictions_succeeding_with_one_warning() {
    let dir = project();
    let logged = log(dir.path(), "summarize", r#"{"text": "x"}"#, &[]);
    let uri = format!("models:/{}", logged["model_id"].as_str().unwrap());
    let rows: String = (0..4)
        .map(|i| format!("{{\"text\": \"row {i}\"}}\n"))
        .collect();
    std::fs::write(dir.path().join("rows.jsonl"), rows).unwrap();
    let refusing = RefusingPort::new();
    let dead = format!("http://{}/v1/traces", refusing.addr());
    let (old, _) = answering("404 Not Found", r#"{"detail":"Not Found"}"#);
    let (file_store, _) = answering(
        "501 Not Implemented",
        r#"{"detail":"REST OTLP span logging is not supported by FileStore"}"#,
    );
    for (round, (endpoint, answer)) in [
        (dead.clone(), "onnect"),
        (format!("{old}/v1/traces"), "404"),
        (
            format!("{file_store}/v1/traces"),
            "not supported by FileStore",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let out = chainlog(
            dir.path(),
            &[
                "predict",
                "-m",
                &uri,
                "--input-file",
                "rows.jsonl",
                "--output",
                &format!("out-{round}.jsonl"),
                "--concurrency",
                "2",
            ],
            &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint)],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("4 succeeded"), "{stderr}");
        let warnings: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("cannot export traces"))
            .collect();
        assert_eq!(warnings.len(), 1, "one warning: {stderr}");
        assert!(
            warnings[0].contains(&endpoint),
            "names the endpoint: {stderr}"
        );
        assert!(
            warnings[0].contains(answer),
            "says what it answered: {stderr}"
        );
    }
}

/// `serve`: every request is a trace of the served model, and what is queued when it stops
/// (SIGTERM, graceful shutdown) is exported before the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_traces_every_request_and_flushes_them_on_graceful_shutdown() {
    use std::io::{BufRead, BufReader};
    let env = mlflow_env();
    let dir = project();
    let logged = log(dir.path(), "summarize", r#"{"text": "x"}"#, &[]);
    let model_id = logged["model_id"].as_str().unwrap().to_owned();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chainlog"))
        .args(["serve", "-m", &format!("models:/{model_id}"), "--port", "0"])
        .current_dir(dir.path())
        .env("CHAINLOG_CACHE_DIR", dir.path().join("cache"))
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("CHAINLOG_TRACING")
        .env_remove("CHAINLOG_TRACE_EXPORT_PRIORITY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim().to_owned();
    let client = reqwest::Client::new();
    for i in 0..3 {
        let response = client
            .post(format!("{url}/invocations"))
            .json(&serde_json::json!({"inputs": {"text": format!("served {i}")}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // The background export gets a CPU only when no request wants one (SCHED_IDLE, policy
    // 5; the thread lowers itself as it starts); the flush keeps normal priority
    // (SCHED_OTHER, 0).
    #[cfg(target_os = "linux")]
    {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while thread_policies(child.id(), "chainlog-export") != ["5"] {
            assert!(
                std::time::Instant::now() < deadline,
                "export thread policies: {:?}",
                thread_policies(child.id(), "chainlog-export")
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(thread_policies(child.id(), "chainlog-flush"), ["0"]);
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    let found = search_traces(
        sqlite_python(&env, dir.path()),
        &model_id,
        logged["run_id"].as_str().unwrap(),
    );
    let traces = found["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 3, "{found:#}");
    assert!(
        traces
            .iter()
            .all(|t| t["request_preview"].as_str().unwrap().contains("served"))
    );
}

/// A command that ends on its own (`predict`) exports at normal priority, so that no
/// idle-priority thread holds up its exit while other processes keep every CPU busy;
/// `CHAINLOG_TRACE_EXPORT_PRIORITY=idle` still makes it idle. Both read from /proc while the
/// batch runs against a slow mock (after its first trace was exported).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_ends_on_its_own_exports_at_normal_priority() {
    use chainlog::mock::{Latency, MockConfig, MockServer};

    use crate::support::trace_store::stored_traces;
    let dir = project();
    let logged = log(dir.path(), "summarize", r#"{"text": "x"}"#, &[]);
    let model_id = logged["model_id"].as_str().unwrap().to_owned();
    let rows: String = (0..4)
        .map(|i| format!("{{\"text\": \"row {i}\"}}\n"))
        .collect();
    std::fs::write(dir.path().join("rows.jsonl"), rows).unwrap();
    let server = MockServer::start(MockConfig::default().with_latency(Latency::fixed(600)))
        .await
        .unwrap();
    for (priority, policy, out) in [
        (None, "0", "normal.jsonl"),
        (Some("idle"), "5", "idle.jsonl"),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chainlog"));
        command
            .args(["predict", "-m", &format!("models:/{model_id}")])
            .args(["--input-file", "rows.jsonl", "--output", out])
            .args(["--concurrency", "1"])
            .current_dir(dir.path())
            .env("CHAINLOG_CACHE_DIR", dir.path().join("cache"))
            .env("OPENAI_BASE_URL", server.base_url())
            .env("OPENAI_API_KEY", "test-key")
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("CHAINLOG_TRACING")
            .env_remove("CHAINLOG_TRACE_EXPORT_PRIORITY")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(priority) = priority {
            command.env("CHAINLOG_TRACE_EXPORT_PRIORITY", priority);
        }
        let started = std::time::Instant::now();
        let db_path = dir.path().join("mlflow.db");
        let stored_before = stored_traces(&db_path);
        let mut child = command.spawn().unwrap();
        // Read once the background thread has exported a trace (the first row's, ~0.8 s in,
        // of ~2.4 s): it has started, and an idle one lowered itself first thing.
        let seen = loop {
            if stored_traces(&db_path) > stored_before {
                break thread_policies(child.id(), "chainlog-export");
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "predict ended before its export thread stored a trace"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            seen,
            [policy],
            "export priority {priority:?}, run took {:?}: {}",
            started.elapsed(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[cfg(target_os = "linux")]
/// The scheduling policy of each thread of process `pid` named `name`: field 41 of
/// `/proc/<pid>/task/<tid>/stat` (0 `SCHED_OTHER`, 5 `SCHED_IDLE`).
fn thread_policies(pid: u32, name: &str) -> Vec<String> {
    let mut policies = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
            // Fields after the parenthesised name start at field 3.
            let after_name = &stat[stat.rfind(')').unwrap() + 2..];
            policies.push(after_name.split(' ').nth(38).unwrap().to_owned());
        }
    }
    policies
}

/// A tracking server that accepts connections and never answers (hung) does not hold up a
/// prediction that does not need it: the trace link's lookup gives up after its bound, one
/// warning says so, and the prediction succeeds.
#[test]
fn a_hung_tracking_server_does_not_hold_up_a_prediction() {
    let dir = project();
    let logged = log(dir.path(), "summarize", r#"{"text": "x"}"#, &[]);
    let model_id = logged["model_id"].as_str().unwrap().to_owned();
    let out = chainlog(
        dir.path(),
        &[
            "predict",
            "-m",
            &format!("models:/{model_id}"),
            "--input",
            r#"{"text": "fetch"}"#,
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let hung = format!("http://{}", listener.local_addr().unwrap());
    // Accepts and holds every connection for at most 60 s, answering nothing; then stops.
    std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let mut held = Vec::new();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < until {
            match listener.accept() {
                Ok((stream, _)) => held.push(stream),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    });
    let local = std::path::PathBuf::from(logged["artifact_uri"].as_str().unwrap());
    let started = std::time::Instant::now();
    let out = chainlog(
        dir.path(),
        &[
            "predict",
            "-m",
            local.to_str().unwrap(),
            "--input",
            r#"{"text": "hung store"}"#,
        ],
        &[("MLFLOW_TRACKING_URI", &hung)],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{stderr}"
    );
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("did not answer within"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {stderr}");
    assert!(warnings[0].contains(&hung), "names the store: {stderr}");
}

/// A batch of `map_reduce` rows (each joining its part calls, then a reduce call), run at once
/// on the CLI's multi-thread runtime with half the traces sampled out: every stored trace is
/// one row's — one CHAIN root and its four CHAT_MODEL children, all in that trace — and no
/// span of a row sampled out is stored anywhere. Read from the SQLite rows.
#[test]
fn concurrent_rows_with_sampling_store_each_rows_spans_in_its_own_trace() {
    const ROWS: usize = 20;
    let dir = project();
    let logged = log(dir.path(), "map_reduce", r#"{"text": "x"}"#, &[]);
    let uri = format!("models:/{}", logged["model_id"].as_str().unwrap());
    // Three parts per row (1500 characters each at most), so four calls.
    let sentence = "This sentence is one of many in a long text about traces. ";
    let text = sentence.repeat(4000 / sentence.len());
    let rows: String = (0..ROWS)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({ "text": format!("row {i}. {text}") })
            )
        })
        .collect();
    std::fs::write(dir.path().join("rows.jsonl"), rows).unwrap();
    ok(
        chainlog(
            dir.path(),
            &[
                "predict",
                "-m",
                &uri,
                "--input-file",
                "rows.jsonl",
                "--output",
                "out.jsonl",
            ],
            &[("MLFLOW_TRACE_SAMPLING_RATIO", "0.5")],
        ),
        "batch",
    );
    let db_path = dir.path().join("mlflow.db");
    let traces = crate::support::trace_store::stored_traces(&db_path);
    assert!(
        (1..ROWS as i64).contains(&traces),
        "about half of {ROWS} rows traced: {traces}"
    );
    let conn = rusqlite::Connection::open(&db_path).unwrap();
    let mut statement = conn
        .prepare(
            "SELECT s.trace_id, count(*), sum(s.parent_span_id IS NULL AND s.type = 'CHAIN'), \
             sum(s.type = 'CHAT_MODEL' AND s.parent_span_id = \
                 (SELECT r.span_id FROM spans r WHERE r.trace_id = s.trace_id AND r.parent_span_id IS NULL)), \
             (SELECT count(*) FROM trace_info t WHERE t.request_id = s.trace_id) \
             FROM spans s GROUP BY s.trace_id",
        )
        .unwrap();
    let groups: Vec<(String, i64, i64, i64, i64)> = statement
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        groups.len() as i64,
        traces,
        "spans only of stored traces: {groups:?}"
    );
    for group in &groups {
        assert_eq!(
            (group.1, group.2, group.3, group.4),
            (5, 1, 4, 1),
            "one root, its four calls, one trace row: {group:?}"
        );
    }
}
