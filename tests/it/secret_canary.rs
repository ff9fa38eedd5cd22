//! The key canary over every output of the binary: an upstream that echoes the caller's key
//! back — in a 401 body (`Incorrect API key provided: sk-…`), in a 500 body and in a
//! mid-stream error event, and in a successful reply — cannot make it show in `chainlog run` (plain and `--stream`),
//! `predict` (one input, and a batch's output file), or `serve` (its HTTP bodies, and its logs
//! at the default level, `-v`, `RUST_LOG=debug` and `RUST_LOG=trace`). Each case also checks
//! that the echo really reached chainlog (the masked `***` where the key was), so a test that
//! never triggers the fault cannot pass.

use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Command, Output, Stdio},
    sync::{Arc, Mutex},
};

use chainlog::mock::{MockConfig, MockServer};
use serde_json::{Value, json};

use crate::predict_serve::logged_summarize;

/// Mock rules: which input makes the upstream echo the key, and how — in an error (the
/// `echo_key` fault repeats whatever key the request carried) or in a successful reply.
fn rules(key: &str) -> String {
    format!(
        "\
rules:
  - match: {{ content: echo-401 }}
    reply: {{ fault: {{ kind: echo_key }} }}
  - match: {{ content: echo-500 }}
    reply: {{ fault: {{ kind: echo_key, status: 500 }} }}
  - match: {{ content: echo-stream }}
    reply: {{ fault: {{ kind: echo_key, after_chunks: 1 }} }}
  - match: {{ content: echo-200 }}
    reply: {{ text: \"Your key {key} works.\" }}
"
    )
}

/// The mock, answering by [`rules`] for `key`.
async fn echoing_mock(key: &str) -> MockServer {
    MockServer::start(MockConfig::default().with_rules_yaml(&rules(key)).unwrap())
        .await
        .unwrap()
}

/// A key made at run time (so it is in no file of the repository) and the part of it that
/// must not show even partly.
fn canary() -> (String, String) {
    let tail = format!("{:032x}", rand::random::<u128>());
    (format!("sk-canary-{tail}"), tail)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts the canary is nowhere in `shown`, not even its random part.
fn assert_clean(label: &str, shown: &str, tail: &str) {
    assert!(
        !shown.contains(tail),
        "{label}: the key (or part of it) shows:\n{shown}"
    );
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            out.extend(files(&entry.path()));
        } else if kind.is_file() {
            // Symlinks (the chains and prompts linked in by `logged_summarize`) are skipped.
            out.push(entry.path());
        }
    }
    out
}

/// The log levels every command is run at: the default, `-v`, `RUST_LOG=debug`, `RUST_LOG=trace`.
const LEVELS: [(&str, Option<&str>, Option<&str>); 4] = [
    ("default", None, None),
    ("-v", Some("-v"), None),
    ("RUST_LOG=debug", None, Some("debug")),
    ("RUST_LOG=trace", None, Some("trace")),
];

/// `run` and `predict` (one input and a batch) with the key echoed every way: the key shows in
/// no stdout, stderr or output file, at any log level, and the echo was there to be masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_key_never_shows_in_run_or_predict() {
    let (key, tail) = canary();
    let mock = echoing_mock(&key).await;
    let (dir, logged) = tokio::task::spawn_blocking(logged_summarize).await.unwrap();
    let model = format!("models:/{}", logged["model_id"].as_str().unwrap());
    let no_retry = "llm.max_retries=0";
    let cwd = dir.path().to_owned();
    let input = |what: &str| json!({ "text": what }).to_string();
    // `run` works on this repository's chains; `predict` on the logged model.
    let root = crate::chain_support::root().to_owned();
    let mut cases: Vec<(String, &Path, Vec<String>)> = Vec::new();
    for what in ["echo-401", "echo-500"] {
        cases.push((
            format!("run {what}"),
            &root,
            [
                "run",
                "summarize",
                "--input",
                &input(what),
                "--set",
                no_retry,
            ]
            .map(str::to_owned)
            .to_vec(),
        ));
        cases.push((
            format!("predict {what}"),
            &cwd,
            [
                "predict",
                "-m",
                &model,
                "--input",
                &input(what),
                "--set",
                no_retry,
            ]
            .map(str::to_owned)
            .to_vec(),
        ));
    }
    cases.push((
        "run echo-200".to_owned(),
        &root,
        ["run", "summarize", "--input", &input("echo-200")]
            .map(str::to_owned)
            .to_vec(),
    ));
    cases.push((
        "predict echo-200".to_owned(),
        &cwd,
        ["predict", "-m", &model, "--input", &input("echo-200")]
            .map(str::to_owned)
            .to_vec(),
    ));
    cases.push((
        "run --stream echo-stream".to_owned(),
        &root,
        [
            "run",
            "summarize",
            "--stream",
            "--input",
            &input("echo-stream"),
        ]
        .map(str::to_owned)
        .to_vec(),
    ));
    for (label, case_cwd, args) in &cases {
        for (level, flag, rust_log) in LEVELS {
            let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
            if let Some(flag) = flag {
                args.insert(0, flag);
            }
            let env: Vec<(&str, &str)> = rust_log.map(|l| ("RUST_LOG", l)).into_iter().collect();
            let (cache, cwd, key, args, env) = (
                cwd.join("cache"),
                case_cwd.to_path_buf(),
                key.clone(),
                args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>(),
                env.iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect::<Vec<_>>(),
            );
            let base_url = mock.base_url();
            let output = tokio::task::spawn_blocking(move || {
                run_against(&cwd, &cache, &base_url, &key, &args, &env)
            })
            .await
            .unwrap();
            let stdout = text(&output.stdout);
            let stderr = text(&output.stderr);
            let label = format!("{label} at {level}");
            assert_clean(&label, &stdout, &tail);
            assert_clean(&label, &stderr, &tail);
            if label.contains("echo-200") {
                // A successful reply carrying the key: the output shows `***` in its place.
                assert_eq!(output.status.code(), Some(0), "{label}: {stderr}");
                assert!(stdout.contains("Your key *** works."), "{label}: {stdout}");
            } else {
                assert_eq!(output.status.code(), Some(1), "{label}: {stderr}");
                assert!(
                    stderr.contains("***"),
                    "{label}: the echo never came:\n{stderr}"
                );
            }
        }
    }

    // A batch: the failed rows become error rows in the output file, masked.
    let rows = ["echo-401", "echo-500", "echo-200", "a plain row"]
        .map(input)
        .join("\n");
    std::fs::write(cwd.join("rows.jsonl"), rows).unwrap();
    let (batch_cwd, base_url, batch_key) = (cwd.clone(), mock.base_url(), key.clone());
    let model_arg = model.clone();
    let output = tokio::task::spawn_blocking(move || {
        let args = [
            "-v",
            "predict",
            "-m",
            &model_arg,
            "--input-file",
            "rows.jsonl",
            "--output",
            "out.jsonl",
            "--set",
            "llm.max_retries=0",
        ]
        .map(str::to_owned)
        .to_vec();
        run_against(
            &batch_cwd,
            &batch_cwd.join("cache"),
            &base_url,
            &batch_key,
            &args,
            &[],
        )
    })
    .await
    .unwrap();
    assert_clean("batch stdout", &text(&output.stdout), &tail);
    assert_clean("batch stderr", &text(&output.stderr), &tail);
    let out = std::fs::read_to_string(cwd.join("out.jsonl")).unwrap();
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(out.contains("Your key *** works."), "{out}");
    let errors: Vec<&str> = lines.iter().filter_map(|l| l["error"].as_str()).collect();
    assert_eq!(errors.len(), 2, "{out}");
    assert!(errors.iter().all(|e| e.contains("***")), "{out}");

    // The predictions were traced into the folder's store (rows MLflow reads), and the echo
    // reached the trace rows masked: the file scan below covers them.
    let db = rusqlite::Connection::open(cwd.join("mlflow.db")).unwrap();
    let spans: i64 = db
        .query_row("SELECT count(*) FROM spans", [], |row| row.get(0))
        .unwrap();
    assert!(spans > 0, "no trace rows were written");
    let masked: i64 = db
        .query_row(
            "SELECT count(*) FROM spans WHERE content LIKE '%Your key *** works.%'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(masked > 0, "the echo never reached a trace row");
    drop(db);

    // Nothing any command wrote, anywhere in the folder, holds the key.
    for file in files(&cwd) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(tail.len()).any(|w| w == tail.as_bytes()),
            "the key is in {}",
            file.display()
        );
    }
    assert!(mock.requests().len() >= cases.len() * LEVELS.len());
}

/// Runs the binary against the mock at `base_url`.
fn run_against(
    cwd: &Path,
    cache: &Path,
    base_url: &str,
    key: &str,
    args: &[String],
    env: &[(String, String)],
) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chainlog"));
    command
        .args(args)
        .current_dir(cwd)
        .env("CHAINLOG_CACHE_DIR", cache)
        .env("OPENAI_BASE_URL", base_url)
        .env("OPENAI_API_KEY", key)
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("RUST_LOG");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

/// `serve` against an upstream that echoes the key: no HTTP body (plain or streamed) and no
/// log line, at the default level or with `-v`/`RUST_LOG=debug`/`RUST_LOG=trace`, shows it;
/// the failures were logged (masked), so the logs were really looked at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_key_never_shows_in_serve_bodies_or_logs() {
    let (key, tail) = canary();
    let mock = echoing_mock(&key).await;
    let (dir, logged) = tokio::task::spawn_blocking(logged_summarize).await.unwrap();
    let model = format!("models:/{}", logged["model_id"].as_str().unwrap());
    let client = reqwest::Client::new();
    for (level, flag, rust_log) in LEVELS {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chainlog"));
        if let Some(flag) = flag {
            command.arg(flag);
        }
        command
            .args([
                "serve",
                "-m",
                &model,
                "--port",
                "0",
                "--set",
                "llm.max_retries=0",
            ])
            .current_dir(dir.path())
            .env("CHAINLOG_CACHE_DIR", dir.path().join("cache"))
            .env("OPENAI_BASE_URL", mock.base_url())
            .env("OPENAI_API_KEY", &key)
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        let mut child = command.spawn().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&logs);
        let reader = std::thread::spawn(move || {
            let mut buf = [0_u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let mut url = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut url)
            .unwrap();
        let url = url.trim().to_owned();
        assert!(url.starts_with("http://"), "{level}: serve printed {url:?}");
        let mut bodies = Vec::new();
        for what in ["echo-401", "echo-500"] {
            let response = client
                .post(format!("{url}/invocations"))
                .json(&json!({ "inputs": { "text": what } }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 502, "{level} {what}");
            bodies.push(response.text().await.unwrap());
        }
        let ok = client
            .post(format!("{url}/invocations"))
            .json(&json!({ "inputs": { "text": "echo-200" } }))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "{level}");
        let ok = ok.text().await.unwrap();
        assert!(ok.contains("Your key *** works."), "{level}: {ok}");
        bodies.push(ok);
        let streamed = client
            .post(format!("{url}/invocations"))
            .header("accept", "text/event-stream")
            .json(&json!({ "inputs": { "text": "echo-stream" }, "params": { "stream": true } }))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(streamed.contains("error_code"), "{level}: {streamed}");
        bodies.push(streamed);
        let _ = child.kill();
        let _ = child.wait();
        reader.join().unwrap();
        let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        for body in &bodies {
            assert_clean(&format!("serve body at {level}"), body, &tail);
        }
        assert_clean(&format!("serve logs at {level}"), &logs, &tail);
        assert!(
            logs.contains("scoring request failed") && logs.contains("***"),
            "{level}: the failures were not logged:\n{logs}"
        );
    }
}

/// The mock's `echo_key` fault repeats exactly the key it was sent — in a 401, a 500 and a
/// stream's error event — so the tests above do face an upstream that leaks.
#[tokio::test]
async fn mock_echo_key_fault_repeats_the_callers_key() {
    let mock = echoing_mock("sk-not-sent-0123456789").await;
    let client = reqwest::Client::new();
    let ask = |what: &str, stream: bool| {
        client
            .post(format!("{}/chat/completions", mock.base_url()))
            .bearer_auth("sk-echo-me-0123456789abcdef")
            .json(&json!({
                "model": "gpt-4o-mini",
                "stream": stream,
                "messages": [{ "role": "user", "content": what }],
            }))
            .send()
    };
    for (what, status) in [("echo-401", 401), ("echo-500", 500)] {
        let response = ask(what, false).await.unwrap();
        assert_eq!(response.status(), status);
        let body: Value = response.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("sk-echo-me-0123456789abcdef"), "{body}");
    }
    let response = ask("echo-stream", true).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    let events: Vec<&str> = body.lines().filter(|l| l.starts_with("data: ")).collect();
    assert!(events.len() >= 2, "{body}");
    assert!(
        events
            .last()
            .unwrap()
            .contains("sk-echo-me-0123456789abcdef"),
        "{body}"
    );
    assert!(!body.contains("[DONE]"), "{body}");
}

/// `Debug` of every type that holds a key — set to a canary — shows no part of it: the key
/// types, LLM settings and overrides, the config as resolved and the settings made from it,
/// the LLM client, a chain's build context and built chain, the serve state with its token,
/// the tracking store's credentials and REST client, the mock's config and server with its
/// required key, the endpoint, and the errors a literal key or a bad key becomes.
#[tokio::test]
async fn debug_of_every_type_holding_a_key_hides_it() {
    use chainlog::{
        chain::{BuildContext, openai_factory},
        config::{ApiKey, ChainConfig, LlmOverrides},
        llm::{LlmSettings, OpenAiClient},
        runner::Endpoint,
        serve::ServeState,
        store::{Auth, RestStore},
    };
    use secrecy::SecretString;

    let (key, tail) = canary();
    let mut shown: Vec<(&str, String)> = Vec::new();
    let api_key = ApiKey::new(key.clone());
    shown.push(("ApiKey", format!("{api_key:?}")));
    // The key also as a password in the base URL, as an environment may give it.
    let settings = LlmSettings {
        api_key: Some(api_key.clone()),
        ..LlmSettings::new("gpt-4o-mini", format!("http://user:{key}@127.0.0.1:9/v1"))
    };
    shown.push(("LlmSettings", format!("{settings:?}")));
    shown.push((
        "OpenAiClient",
        format!("{:?}", OpenAiClient::new(settings.clone()).unwrap()),
    ));
    let overrides = LlmOverrides {
        api_key: Some(api_key.clone()),
        ..LlmOverrides::default()
    };
    shown.push(("LlmOverrides", format!("{overrides:?}")));

    // A config referencing the key every way it can.
    let config = ChainConfig::from_yaml(
        "llm:\n  model: gpt-4o-mini\n  api_key: ${OPENAI_API_KEY}\n  base_url: http://127.0.0.1:9/v1\nprompts:\n  summary: summarize\nchain:\n  sentences: 2\nextra:\n  hub:\n    token: ${HF_TOKEN}\n  api_keys: [\"${SECOND_KEY}\"]\n  dsn: postgres://app:${DB_PASSWORD}@db/x\n",
        Path::new("c.yaml"),
    )
    .unwrap();
    let env_key = key.clone();
    let env: chainlog::chain::EnvReader = Arc::new(move |name: &str| {
        matches!(
            name,
            "OPENAI_API_KEY" | "HF_TOKEN" | "SECOND_KEY" | "DB_PASSWORD"
        )
        .then(|| env_key.clone())
    });
    let resolved = config.resolve(&|name: &str| env(name)).unwrap();
    shown.push(("ResolvedConfig", format!("{resolved:?}")));
    let from_config =
        LlmSettings::from_config(&resolved, "llm", &|name: &str| env(name), &overrides).unwrap();
    shown.push(("LlmSettings::from_config", format!("{from_config:?}")));
    let ctx = BuildContext::from_parts(
        "summarize",
        &config,
        &crate::chain_support::root().join("prompts"),
        Arc::clone(&env),
        overrides.clone(),
        openai_factory(),
    )
    .unwrap();
    shown.push(("BuildContext", format!("{ctx:?}")));
    let registry = crate::chain_registry();
    let entry = registry.get("summarize").unwrap();
    let chain = entry.build(&ctx).unwrap();
    shown.push(("BuiltChain", format!("{chain:?}")));
    let state = ServeState::for_entry(chain, entry)
        .unwrap()
        .with_token(SecretString::from(key.clone()));
    shown.push(("ServeState", format!("{state:?}")));

    let bearer = Auth::bearer(key.clone());
    shown.push(("Auth::Bearer", format!("{bearer:?}")));
    shown.push((
        "Auth::Basic",
        format!("{:?}", Auth::basic("ada", key.clone())),
    ));
    shown.push((
        "RestStore",
        format!(
            "{:?}",
            RestStore::new("http://127.0.0.1:9", Some(bearer)).unwrap()
        ),
    ));

    let mock_config = MockConfig::default().with_required_api_key(SecretString::from(key.clone()));
    shown.push(("MockConfig", format!("{mock_config:?}")));
    let endpoint = Endpoint::start_mock(mock_config).await.unwrap();
    shown.push(("Endpoint", format!("{endpoint:?}")));
    shown.push(("MockServer", format!("{:?}", endpoint.mock().unwrap())));

    let literal = ChainConfig::from_yaml(&format!("llm:\n  api_key: {key}\n"), Path::new("c.yaml"))
        .unwrap_err();
    shown.push(("ConfigError", format!("{literal:?}")));
    let bad_key = OpenAiClient::new(LlmSettings {
        api_key: Some(ApiKey::new(format!("{key} with a space"))),
        ..LlmSettings::new("gpt-4o-mini", "http://127.0.0.1:9/v1")
    })
    .unwrap_err();
    shown.push(("LlmError", format!("{bad_key:?}")));

    for (what, text) in &shown {
        assert_clean(what, text, &tail);
    }
    assert!(
        shown
            .iter()
            .filter(|(_, text)| text.contains("***"))
            .count()
            >= 8,
        "the keys are shown as ***: {shown:#?}"
    );
}

/// A loopback HTTP/1.1 proxy to `upstream` that records every request (head and body).
/// Each connection carries one request (`Connection: close` both ways).
fn recording_proxy(upstream: &str) -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&recorded);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let upstream = upstream.clone();
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut head = Vec::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(value) = lower.strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        head.extend_from_slice(b"Connection: close\r\n\r\n");
                        break;
                    }
                    if !lower.starts_with("connection:") {
                        head.extend_from_slice(line.as_bytes());
                    }
                }
                let mut body = vec![0u8; length];
                reader.read_exact(&mut body).unwrap();
                let mut request = head;
                request.extend_from_slice(&body);
                seen.lock().unwrap().push(request.clone());
                let mut server = std::net::TcpStream::connect(&upstream).unwrap();
                server.write_all(&request).unwrap();
                let mut response = Vec::new();
                let _ = server.read_to_end(&mut response);
                let _ = client.write_all(&response);
            });
        }
    });
    (url, recorded)
}

/// Traces sent to an MLflow server: no OTLP body and no REST body on the wire holds the key
/// the upstream echoed (through a recording proxy), and the echo did reach the trace, masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_key_never_shows_in_otlp_or_trace_bodies() {
    use crate::support::mlflow_server::MlflowServer;
    let (key, tail) = canary();
    let mock = echoing_mock(&key).await;
    let server = MlflowServer::shared();
    let dir = tempfile::tempdir().unwrap();
    for folder in ["chains", "prompts"] {
        std::os::unix::fs::symlink(
            crate::chain_support::root().join(folder),
            dir.path().join(folder),
        )
        .unwrap();
    }
    let cwd = dir.path().to_owned();
    let logged = {
        let output = Command::new(env!("CARGO_BIN_EXE_chainlog"))
            .args([
                "log",
                "summarize",
                "--input-example",
                r#"{"text": "x"}"#,
                "--no-validate",
                "--json",
            ])
            .current_dir(&cwd)
            .env("CHAINLOG_CACHE_DIR", cwd.join("cache"))
            .env("MLFLOW_TRACKING_URI", server.uri())
            .env_remove("OPENAI_BASE_URL")
            .env_remove("OPENAI_API_KEY")
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    let model = format!("models:/{}", logged["model_id"].as_str().unwrap());
    let (proxy, recorded) = recording_proxy(server.uri());
    for what in ["echo-200", "echo-401"] {
        let args = [
            "predict",
            "-m",
            &model,
            "--input",
            &json!({ "text": what }).to_string(),
            "--set",
            "llm.max_retries=0",
        ]
        .map(str::to_owned)
        .to_vec();
        let env = vec![("MLFLOW_TRACKING_URI".to_owned(), proxy.clone())];
        let (cwd, base_url, key) = (cwd.clone(), mock.base_url(), key.clone());
        let output = tokio::task::spawn_blocking(move || {
            run_against(&cwd, &cwd.join("cache"), &base_url, &key, &args, &env)
        })
        .await
        .unwrap();
        assert_clean(what, &text(&output.stderr), &tail);
        assert_clean(what, &text(&output.stdout), &tail);
    }
    let recorded = recorded.lock().unwrap().clone();
    let otlp: Vec<&Vec<u8>> = recorded
        .iter()
        .filter(|r| r.starts_with(b"POST /v1/traces"))
        .collect();
    assert!(otlp.len() >= 2, "no OTLP export went through the proxy");
    assert!(
        recorded
            .iter()
            .any(|r| r.starts_with(b"POST /api/3.0/mlflow/traces")),
        "no trace metadata went through the proxy"
    );
    assert!(
        otlp.iter().any(|r| r.windows(3).any(|w| w == b"***")),
        "the echo never reached an OTLP body"
    );
    for request in &recorded {
        assert!(
            !request.windows(tail.len()).any(|w| w == tail.as_bytes()),
            "the key is in a request to the tracking server: {}",
            String::from_utf8_lossy(&request[..request.len().min(200)])
        );
    }
}
