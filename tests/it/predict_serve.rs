//! Rebuilding logged chains: `chainlog predict` through every model URI form, refusal of
//! tampered artifacts and of code other than what was logged, and `chainlog serve` answering
//! MLflow's scoring protocol (including the artifact's own serving_input_example.json).

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Output, Stdio},
};

use serde_json::{Value, json};

use crate::chain_support::root;

fn chainlog(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chainlog"))
        .args(args)
        .current_dir(cwd)
        .env("CHAINLOG_CACHE_DIR", cwd.join("cache"))
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Logs `summarize` into a fresh folder's `./mlflow.db`; returns the folder and `log --json`.
pub(crate) fn logged_summarize() -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["chains", "prompts"] {
        std::os::unix::fs::symlink(root().join(folder), dir.path().join(folder)).unwrap();
    }
    let output = chainlog(
        dir.path(),
        &[
            "log",
            "summarize",
            "--input-example",
            r#"{"text": "logged"}"#,
            "--registered-model",
            "sum",
            "--alias",
            "champion",
            "--json",
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let logged = serde_json::from_slice(&output.stdout).unwrap();
    (dir, logged)
}

fn predict(cwd: &Path, uri: &str) -> Output {
    chainlog(
        cwd,
        &[
            "predict",
            "-m",
            uri,
            "--input",
            r#"{"text": "rebuilt from the artifact"}"#,
        ],
    )
}

/// The logged model's artifact folder in the SQLite store (every file; a cache entry holds
/// only what the commands that loaded it used).
fn stored_artifact(logged: &Value) -> std::path::PathBuf {
    std::path::PathBuf::from(logged["artifact_uri"].as_str().unwrap())
}

/// A copy of the logged model's artifact directory, to tamper with.
fn artifact_copy(logged: &Value) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(stored_artifact(logged).join("."))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    copy
}

/// Every model URI form resolves to the same logged chain, rebuilt and run.
#[test]
fn predict_through_every_model_uri_form() {
    let (dir, logged) = logged_summarize();
    let model_id = logged["model_id"].as_str().unwrap();
    let run_id = logged["run_id"].as_str().unwrap();
    let uris = [
        format!("runs:/{run_id}/summarize"),
        format!("models:/{model_id}"),
        "models:/sum/1".to_owned(),
        "models:/sum/latest".to_owned(),
        "models:/sum@champion".to_owned(),
        stored_artifact(&logged).display().to_string(),
    ];
    for uri in &uris {
        let output = predict(dir.path(), uri);
        assert!(output.status.success(), "{uri}: {}", text(&output.stderr));
        let out: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(
            out["summary"]
                .as_str()
                .unwrap()
                .contains("rebuilt from the artifact"),
            "{uri}: {out}"
        );
    }
    let output = predict(dir.path(), "models:/sum@nope");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("models:/sum@nope"),
        "{}",
        text(&output.stderr)
    );
}

/// One byte changed in the code, the pyfunc loader, a prompt or the config of a downloaded
/// artifact is refused, naming the file.
#[test]
fn tampered_artifacts_are_refused_naming_the_file() {
    let (dir, logged) = logged_summarize();
    let model_id = logged["model_id"].as_str().unwrap();
    assert!(
        predict(dir.path(), &format!("models:/{model_id}"))
            .status
            .success()
    );
    for file in [
        "code/chains/summarize.rs",
        "code/chainlog_pyfunc.py",
        "prompts/summarize/01-system.hbs",
        "model_config.yaml",
    ] {
        let copy = artifact_copy(&logged);
        let path = copy.path().join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 0x20;
        std::fs::write(&path, bytes).unwrap();
        let output = predict(dir.path(), copy.path().to_str().unwrap());
        assert_eq!(output.status.code(), Some(1), "{file}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(file), "{file}: {stderr}");
    }
}

/// An artifact whose code (consistently re-hashed) is not this binary's chain is refused,
/// naming both hashes.
#[test]
fn different_code_is_refused_naming_both_hashes() {
    let (dir, logged) = logged_summarize();
    let model_id = logged["model_id"].as_str().unwrap();
    assert!(
        predict(dir.path(), &format!("models:/{model_id}"))
            .status
            .success()
    );
    let copy = artifact_copy(&logged);
    let code = copy.path().join("code/chains/summarize.rs");
    let old = sha256_hex(&std::fs::read(&code).unwrap());
    let mut source = std::fs::read(&code).unwrap();
    source.extend_from_slice(b"\n// changed after logging\n");
    std::fs::write(&code, &source).unwrap();
    let new = sha256_hex(&source);
    let mlmodel = copy.path().join("MLmodel");
    let text_before = std::fs::read_to_string(&mlmodel).unwrap();
    // Re-hash the code, and drop the crate snapshot's record (it covers the same file), so
    // only the code-hash check against this binary's registry stands in the way.
    let mut edited = Vec::new();
    let mut skipping = false;
    let rehashed = text_before.replacen(&old, &new, 1);
    for line in rehashed.lines() {
        if line.trim_start().starts_with("crate_snapshot:") {
            skipping = true;
            continue;
        }
        if skipping && line.starts_with("      ") {
            continue;
        }
        skipping = false;
        edited.push(line);
    }
    std::fs::write(&mlmodel, edited.join("\n") + "\n").unwrap();
    // Without a snapshot, code/ holds only the chain and the pyfunc loader (listed on its
    // own): the snapshot's other files go too (an unlisted file is refused before any code
    // hash is compared).
    for entry in std::fs::read_dir(copy.path().join("code"))
        .unwrap()
        .flatten()
    {
        if entry.file_name() != "chains" && entry.file_name() != "chainlog_pyfunc.py" {
            let path = entry.path();
            if path.is_dir() {
                std::fs::remove_dir_all(path).unwrap();
            } else {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
    for entry in std::fs::read_dir(copy.path().join("code/chains"))
        .unwrap()
        .flatten()
    {
        if entry.file_name() != "summarize.rs" {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let uri = copy.path().to_str().unwrap();
    let input = r#"{"text": "rebuilt from the artifact"}"#;
    let output = chainlog(
        dir.path(),
        &["predict", "-m", uri, "--input", input, "--build", "local"],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains(&new) && stderr.contains(&old), "{stderr}");
    assert!(stderr.contains("check out the commit"), "{stderr}");
    assert!(stderr.contains("--build cargo"), "{stderr}");
    // `auto` would compile the model's own code, but this artifact has no crate snapshot:
    // a clear refusal, one line.
    let output = chainlog(dir.path(), &["predict", "-m", uri, "--input", input]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("has no crate snapshot under code/"),
        "{stderr}"
    );
    assert!(stderr.contains("--build local"), "{stderr}");
    // One line of refusal, after the local directory's digest note.
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].contains("artifact digest sha256:"), "{stderr}");
}

/// `chainlog serve` answers MLflow's scoring protocol: ping, and `/invocations` with the
/// artifact's own serving_input_example.json and each request format.
#[tokio::test]
async fn serve_answers_every_scoring_format() {
    let (dir, logged) = logged_summarize();
    let model_id = logged["model_id"].as_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chainlog"))
        .args(["serve", "-m", "models:/sum@champion", "--port", "0"])
        .current_dir(dir.path())
        .env("CHAINLOG_CACHE_DIR", dir.path().join("cache"))
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("MLFLOW_TRACKING_URI")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim().to_owned();
    let client = reqwest::Client::new();
    assert!(
        client
            .get(format!("{url}/ping"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let example: Value = serde_json::from_slice(
        &std::fs::read(
            dir.path()
                .join("cache")
                .join(model_id)
                .join("serving_input_example.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let bodies = [
        example,
        json!({"dataframe_split": {"columns": ["text"], "data": [["logged"]]}}),
        json!({"dataframe_records": [{"text": "logged"}]}),
        json!({"instances": [{"text": "logged"}]}),
        json!({"inputs": {"text": "logged"}, "params": {}}),
    ];
    let mut answers = Vec::new();
    for body in &bodies {
        let response = client
            .post(format!("{url}/invocations"))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{body}");
        let value: Value = response.json().await.unwrap();
        answers.push(value["predictions"].clone());
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert!(
        answers[0][0]["summary"]
            .as_str()
            .unwrap()
            .contains("logged")
    );
    let bad = client
        .post(format!("{url}/invocations"))
        .json(&json!({"inputs": {"txt": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let _ = child.kill();
    let _ = child.wait();
}

/// A batch killed with `kill -9` mid-way and run again ends with exactly one output line per
/// input row; a row that does not fit becomes an error row, not a stopped batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_resumes_after_kill_9_with_one_output_per_input() {
    let (dir, logged) = logged_summarize();
    let model = format!("models:/{}", logged["model_id"].as_str().unwrap());
    // A slow endpoint, so the batch is still running when it is killed.
    let mock = chainlog::mock::MockServer::start(
        chainlog::mock::MockConfig::default().with_latency(chainlog::mock::Latency::fixed(50)),
    )
    .await
    .unwrap();
    let rows = 60;
    let mut input = String::new();
    for row in 0..rows {
        if row == 7 {
            input.push_str("{\"txt\": \"no text field\"}\n");
        } else {
            input.push_str(&format!("{{\"text\": \"row {row}\"}}\n"));
        }
    }
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let batch = |cwd: &Path| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chainlog"));
        command
            .args([
                "predict",
                "-m",
                &model,
                "--input-file",
                "in.jsonl",
                "--output",
                "out.jsonl",
                "--concurrency",
                "4",
            ])
            .current_dir(cwd)
            .env("CHAINLOG_CACHE_DIR", cwd.join("cache"))
            .env("OPENAI_BASE_URL", mock.base_url())
            .env("OPENAI_API_KEY", "test-key")
            .env_remove("MLFLOW_TRACKING_URI")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    let mut first = batch(dir.path()).spawn().unwrap();
    // Kill once some, but not all, rows are written.
    let out = dir.path().join("out.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let written = std::fs::read_to_string(&out)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if written >= 8 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let before = std::fs::read_to_string(&out).unwrap().lines().count();
    assert!(
        before < rows,
        "the batch finished before it was killed ({before} rows)"
    );

    let status = batch(dir.path()).status().unwrap();
    assert!(status.success());
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let mut indexes: Vec<u64> = lines.iter().map(|l| l["index"].as_u64().unwrap()).collect();
    indexes.sort_unstable();
    assert_eq!(
        indexes,
        (0..rows as u64).collect::<Vec<_>>(),
        "exactly one output per input"
    );
    let row7 = lines.iter().find(|l| l["index"] == 7).unwrap();
    assert!(row7["error"].as_str().unwrap().contains("text"), "{row7}");
    let row3 = lines.iter().find(|l| l["index"] == 3).unwrap();
    assert!(
        row3["output"]["summary"]
            .as_str()
            .unwrap()
            .contains("row 3"),
        "{row3}"
    );
}

/// Every example chain, logged to a fresh SQLite store and to a real MLflow server, is rebuilt
/// from its artifact and runs on its input example (registered alias on the server, model id
/// on SQLite).
#[test]
fn every_example_chain_predicts_from_both_stores() {
    let server = crate::support::mlflow_server::MlflowServer::shared();
    let dir = tempfile::tempdir().unwrap();
    for folder in ["chains", "prompts"] {
        std::os::unix::fs::symlink(root().join(folder), dir.path().join(folder)).unwrap();
    }
    let examples = [
        (
            "extract",
            r#"{"text": "Ada Lovelace, mathematician, ada@example.org"}"#,
        ),
        (
            "map_reduce",
            r#"{"text": "One part. Another part. A third part."}"#,
        ),
        ("summarize", r#"{"text": "Short text."}"#),
        ("tool_agent", r#"{"question": "What is 6 * 7?"}"#),
    ];
    for (chain, example) in examples {
        for store in ["sqlite:///mlflow.db", server.uri()] {
            let registered = format!("predict-{chain}");
            let mut log = Command::new(env!("CARGO_BIN_EXE_chainlog"));
            log.args([
                "log",
                chain,
                "--input-example",
                example,
                "--registered-model",
                &registered,
                "--alias",
                "live",
                "--json",
                "--tracking-uri",
                store,
            ])
            .current_dir(dir.path())
            .env_remove("OPENAI_BASE_URL")
            .env_remove("OPENAI_API_KEY");
            let output = log.output().unwrap();
            assert!(
                output.status.success(),
                "{chain} → {store}: {}",
                text(&output.stderr)
            );
            let logged: Value = serde_json::from_slice(&output.stdout).unwrap();
            let uri = if store.starts_with("sqlite") {
                format!("models:/{}", logged["model_id"].as_str().unwrap())
            } else {
                format!("models:/{registered}@live")
            };
            let output = Command::new(env!("CARGO_BIN_EXE_chainlog"))
                .args([
                    "predict",
                    "-m",
                    &uri,
                    "--input",
                    example,
                    "--tracking-uri",
                    store,
                ])
                .current_dir(dir.path())
                .env("CHAINLOG_CACHE_DIR", dir.path().join("cache"))
                .env_remove("OPENAI_BASE_URL")
                .env_remove("OPENAI_API_KEY")
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{chain} from {uri} on {store}: {}",
                text(&output.stderr)
            );
            let out: Value = serde_json::from_slice(&output.stdout).unwrap();
            assert!(
                out.is_object() && !out.as_object().unwrap().is_empty(),
                "{out}"
            );
        }
    }
}

/// MLflow's load-time config override (`MLFLOW_PYFUNC_INFERENCE_CONFIG`, a JSON object) and
/// `--set` change only keys the logged config has; others are refused, named.
#[test]
fn config_overrides_apply_only_to_logged_keys() {
    let (dir, logged) = logged_summarize();
    let uri = format!("models:/{}", logged["model_id"].as_str().unwrap());
    let run = |env: Option<&str>, extra: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chainlog"));
        command
            .args(["predict", "-m", &uri, "--input", r#"{"text": "x"}"#])
            .args(extra)
            .current_dir(dir.path())
            .env("CHAINLOG_CACHE_DIR", dir.path().join("cache"))
            .env_remove("OPENAI_BASE_URL")
            .env_remove("OPENAI_API_KEY");
        if let Some(value) = env {
            command.env("MLFLOW_PYFUNC_INFERENCE_CONFIG", value);
        }
        command.output().unwrap()
    };
    assert!(
        run(Some(r#"{"chain": {"sentences": 1}}"#), &[])
            .status
            .success()
    );
    assert!(
        run(None, &["--set", "llm.temperature=0.9"])
            .status
            .success()
    );
    let refused = run(Some(r#"{"chain": {"paragraphs": 2}}"#), &[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("chain.paragraphs"),
        "{}",
        text(&refused.stderr)
    );
}

/// A provider whose replies have `content: null` and no tool calls: the chain fails with the
/// clear "empty content (null)" error everywhere a reply is used — a single `predict` (exit
/// 1), every batch row (an error row, no output), and `serve` (502 naming it) — never an
/// output with an empty summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_reply_fails_single_batch_rows_and_serve() {
    use crate::llm_client::{Canned, stub};
    let (dir, _logged) = logged_summarize();
    let (base_url, seen) = stub(vec![Canned::json(json!({
        "choices": [{"message": {"role": "assistant", "content": null}, "finish_reason": "stop"}]
    }))])
    .await;
    let wanted = "incomplete reply: empty content (null) with no tool calls";
    let command = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chainlog"));
        command
            .args(args)
            .current_dir(dir.path())
            .env("CHAINLOG_CACHE_DIR", dir.path().join("cache"))
            .env("OPENAI_BASE_URL", &base_url)
            .env("OPENAI_API_KEY", "test-key")
            .env_remove("MLFLOW_TRACKING_URI");
        command
    };

    let single = command(&[
        "predict",
        "-m",
        "models:/sum@champion",
        "--input",
        r#"{"text": "a"}"#,
    ])
    .output()
    .unwrap();
    assert_eq!(single.status.code(), Some(1), "{}", text(&single.stderr));
    assert!(
        text(&single.stderr).contains(wanted),
        "{}",
        text(&single.stderr)
    );
    assert!(single.stdout.is_empty(), "{}", text(&single.stdout));

    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"text\": \"a\"}\n{\"text\": \"b\"}\n",
    )
    .unwrap();
    let batch = command(&[
        "predict",
        "-m",
        "models:/sum@champion",
        "--input-file",
        "in.jsonl",
        "--output",
        "out.jsonl",
    ])
    .output()
    .unwrap();
    let rows: Vec<Value> = std::fs::read_to_string(dir.path().join("out.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{}", text(&batch.stderr));
    for row in &rows {
        assert!(row["error"].as_str().unwrap().contains(wanted), "{row}");
        assert!(row.get("output").is_none_or(Value::is_null), "{row}");
    }

    let mut child = command(&["serve", "-m", "models:/sum@champion", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/invocations", url.trim()))
        .json(&json!({"inputs": {"text": "a"}}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 502, "{body}");
    assert!(body.contains(wanted), "{body}");
    assert!(
        seen.lock().unwrap().len() >= 4,
        "single, two rows and serve each asked"
    );
}
