//! `chainlog predict --input-file … --output …`, the batch: rows in flight against the chain's
//! LLM call limit (the notice, and the mock's count of requests in flight), bad
//! `--concurrency` values, a malformed line in the middle, one batch per output file, and
//! `--retry-errors` after injected faults. Every test runs the real binary against the mock
//! over loopback.

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use chainlog::mock::{Latency, MockConfig, MockServer};
use serde_json::Value;

use crate::chain_support::root;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `summarize` logged into a fresh folder's `./mlflow.db`: the folder and its model URI.
fn logged_summarize() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["chains", "prompts"] {
        std::os::unix::fs::symlink(root().join(folder), dir.path().join(folder)).unwrap();
    }
    let output = Command::new(env!("CARGO_BIN_EXE_chainlog"))
        .args(["log", "summarize", "--no-validate", "--json"])
        .current_dir(dir.path())
        .env("CHAINLOG_CACHE_DIR", dir.path().join("cache"))
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let logged: Value = serde_json::from_slice(&output.stdout).unwrap();
    let uri = format!("models:/{}", logged["model_id"].as_str().unwrap());
    (dir, uri)
}

/// `chainlog predict -m MODEL --input-file in.jsonl --output out.jsonl <extra>` against `mock`.
fn batch(dir: &Path, model: &str, mock: &MockServer, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chainlog"));
    command
        .args([
            "predict",
            "-m",
            model,
            "--input-file",
            "in.jsonl",
            "--output",
            "out.jsonl",
        ])
        .args(extra)
        .current_dir(dir)
        .env("CHAINLOG_CACHE_DIR", dir.join("cache"))
        .env("OPENAI_BASE_URL", mock.base_url())
        .env("OPENAI_API_KEY", "test-key")
        .env_remove("MLFLOW_TRACKING_URI");
    command
}

fn write_rows(dir: &Path, rows: usize, label: impl Fn(usize) -> String) {
    let input: String = (0..rows)
        .map(|row| format!("{{\"text\": \"{}\"}}\n", label(row)))
        .collect();
    std::fs::write(dir.join("in.jsonl"), input).unwrap();
}

/// The output lines, sorted by index.
fn output_lines(dir: &Path) -> Vec<Value> {
    let mut lines: Vec<Value> = std::fs::read_to_string(dir.join("out.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    lines.sort_by_key(|line| line["index"].as_u64().unwrap());
    lines
}

fn indexes(lines: &[Value]) -> Vec<u64> {
    lines.iter().map(|l| l["index"].as_u64().unwrap()).collect()
}

async fn slow_mock(ms: u64) -> MockServer {
    MockServer::start(MockConfig::default().with_latency(Latency::fixed(ms)))
        .await
        .unwrap()
}

async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// `--concurrency` above the logged `llm.concurrency: 8` prints one notice naming the key, the
/// config file and the `--set` that raises it, and the mock never sees more than 8 calls at
/// once; with the limit raised, more calls run at once and no notice is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_above_the_call_limit_are_explained_and_calls_stay_within_it() {
    let (dir, model) = logged_summarize();
    let mock = slow_mock(100).await;
    write_rows(dir.path(), 64, |row| format!("row {row}"));

    let output = run(batch(dir.path(), &model, &mock, &["--concurrency", "32"])).await;
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for part in [
        "--concurrency 32",
        "`llm.concurrency` is 8",
        "model_config.yaml",
        "--set llm.concurrency=32",
    ] {
        assert!(stderr.contains(part), "{part} missing from: {stderr}");
    }
    assert_eq!(stderr.matches("note:").count(), 1, "{stderr}");
    let peak = mock.peak_in_flight();
    assert!(
        (2..=8).contains(&peak),
        "calls in flight at the mock: {peak}"
    );
    let journaled = mock.requests().iter().map(|e| e.in_flight).max().unwrap();
    assert!(journaled <= 8, "journal shows {journaled} in flight");
    assert_eq!(
        indexes(&output_lines(dir.path())),
        (0..64).collect::<Vec<_>>()
    );

    std::fs::remove_file(dir.path().join("out.jsonl")).unwrap();
    mock.clear_requests();
    let output = run(batch(
        dir.path(),
        &model,
        &mock,
        &["--concurrency", "32", "--set", "llm.concurrency=32"],
    ))
    .await;
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("note:"), "{stderr}");
    let peak = mock.peak_in_flight();
    assert!(
        (9..=32).contains(&peak),
        "calls in flight at the mock: {peak}"
    );
}

/// `--concurrency 0` and negative values are refused by the parser, naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_or_negative_concurrency_is_refused() {
    let mock = slow_mock(0).await;
    let dir = tempfile::tempdir().unwrap();
    for value in ["0", "-4"] {
        let output = run(batch(
            dir.path(),
            "models:/m-none",
            &mock,
            &["--concurrency", value],
        ))
        .await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("--concurrency"), "{stderr}");
        assert!(stderr.contains("at least 1"), "{stderr}");
    }
}

/// An output that is the input file (by name or through a symlink) is refused before
/// anything runs: the batch would read its own output lines back as rows. The input is left
/// as it was.
#[tokio::test]
async fn an_output_that_is_the_input_file_is_refused() {
    let mock = slow_mock(0).await;
    let dir = tempfile::tempdir().unwrap();
    write_rows(dir.path(), 3, |row| format!("row {row}"));
    std::os::unix::fs::symlink(dir.path().join("in.jsonl"), dir.path().join("link.jsonl")).unwrap();
    let before = std::fs::read(dir.path().join("in.jsonl")).unwrap();
    for output in ["in.jsonl", "link.jsonl", "./in.jsonl"] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chainlog"));
        command
            .args([
                "predict",
                "-m",
                "models:/m-none",
                "--input-file",
                "in.jsonl",
            ])
            .args(["--output", output])
            .current_dir(dir.path())
            .env("CHAINLOG_CACHE_DIR", dir.path().join("cache"))
            .env("OPENAI_BASE_URL", mock.base_url())
            .env_remove("MLFLOW_TRACKING_URI");
        let done = run(command).await;
        let stderr = text(&done.stderr);
        assert_eq!(done.status.code(), Some(1), "{output}: {stderr}");
        assert!(stderr.contains("is the input file"), "{output}: {stderr}");
    }
    assert_eq!(std::fs::read(dir.path().join("in.jsonl")).unwrap(), before);
}

/// A malformed line in the middle becomes an error row naming its line number; every other
/// row runs, and a blank line is no row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_line_becomes_an_error_row_naming_its_line() {
    let (dir, model) = logged_summarize();
    let mock = slow_mock(0).await;
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"text\": \"one\"}\n{\"text\": \"two\"}\n{\"text\": two and a half\n\n{\"text\": \"four\"}\n",
    )
    .unwrap();
    let output = run(batch(dir.path(), &model, &mock, &[])).await;
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("4 rows"), "{stderr}");
    let lines = output_lines(dir.path());
    assert_eq!(indexes(&lines), [0, 1, 2, 4]);
    let error = lines[2]["error"].as_str().unwrap();
    assert!(
        error.starts_with("input line 3 is not valid JSON"),
        "{error}"
    );
    assert!(
        lines[3]["output"]["summary"]
            .as_str()
            .unwrap()
            .contains("four")
    );
}

/// Two batches on one output at once: the second refuses, naming the first's process id, and
/// writes nothing; the first finishes with one line per row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_batch_on_the_same_output_refuses_naming_the_holder() {
    let (dir, model) = logged_summarize();
    let mock = slow_mock(200).await;
    write_rows(dir.path(), 20, |row| format!("row {row}"));
    let mut first = batch(dir.path(), &model, &mock, &["--concurrency", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first holds the lock (its lock file names it).
    let lock = dir.path().join("out.jsonl.lock");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&lock).map_or(true, |pid| pid.trim().is_empty()) {
        assert!(
            Instant::now() < deadline,
            "the first batch never took the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = run(batch(dir.path(), &model, &mock, &["--concurrency", "2"])).await;
    let stderr = text(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("process {}", first.id())),
        "{stderr}"
    );
    assert!(stderr.contains("out.jsonl"), "{stderr}");
    let status = tokio::task::spawn_blocking(move || first.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    assert_eq!(
        indexes(&output_lines(dir.path())),
        (0..20).collect::<Vec<_>>()
    );
    assert!(!lock.exists(), "the lock file is removed at the end");
}

/// Rows that failed (the mock injects a 500 the first three times a "flaky" row asks, and the
/// client does not retry) are error rows; `--retry-errors` runs exactly those again and
/// replaces their lines: every index once, all successful.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_errors_replaces_error_rows_without_duplicating_an_index() {
    let (dir, model) = logged_summarize();
    let rules = "rules:\n  - name: flaky\n    match: { content: flaky }\n    sequence:\n      \
                 - fault: { kind: server_error }\n      - fault: { kind: server_error }\n      \
                 - fault: { kind: server_error }\n      - text: recovered\n";
    let mock = MockServer::start(MockConfig::default().with_rules_yaml(rules).unwrap())
        .await
        .unwrap();
    let flaky = [3, 11, 17];
    write_rows(dir.path(), 24, |row| {
        if flaky.contains(&row) {
            format!("flaky row {row}")
        } else {
            format!("row {row}")
        }
    });
    let no_retries = ["--concurrency", "4", "--set", "llm.max_retries=0"];
    let output = run(batch(dir.path(), &model, &mock, &no_retries)).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let lines = output_lines(dir.path());
    let failed: Vec<u64> = lines
        .iter()
        .filter(|line| line.get("error").is_some())
        .map(|line| line["index"].as_u64().unwrap())
        .collect();
    assert_eq!(failed, [3, 11, 17]);

    // A plain resume leaves error rows alone.
    let output = run(batch(dir.path(), &model, &mock, &no_retries)).await;
    assert!(text(&output.stderr).contains("0 succeeded, 0 failed"));
    mock.clear_requests();

    let mut retry = no_retries.to_vec();
    retry.push("--retry-errors");
    let output = run(batch(dir.path(), &model, &mock, &retry)).await;
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("3 error rows retried"), "{stderr}");
    assert_eq!(mock.requests().len(), 3, "only the failed rows ran again");
    let lines = output_lines(dir.path());
    assert_eq!(indexes(&lines), (0..24).collect::<Vec<_>>());
    assert!(lines.iter().all(|line| line.get("error").is_none()));
    for index in flaky {
        assert_eq!(lines[index]["output"]["summary"], "recovered");
    }
}

/// `serve` computes its rows in flight in the same place and says so at start when they exceed
/// the chain's call limit, naming the key and the remedy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_explains_the_call_limit_at_start() {
    use std::io::{BufRead, BufReader};

    let (dir, model) = logged_summarize();
    let mock = slow_mock(0).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_chainlog"))
        .args(["serve", "-m", &model, "--port", "0"])
        .current_dir(dir.path())
        .env("CHAINLOG_CACHE_DIR", dir.path().join("cache"))
        .env("OPENAI_BASE_URL", mock.base_url())
        .env("OPENAI_API_KEY", "test-key")
        .env_remove("MLFLOW_TRACKING_URI")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stderr)
            .lines()
            .map(Result::unwrap)
            .take_while(|line| !line.starts_with("serving "))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let notice = lines.join("\n");
    for part in [
        "`llm.concurrency` is 8",
        "model_config.yaml",
        "--set llm.concurrency=",
    ] {
        assert!(notice.contains(part), "{part} missing from: {notice}");
    }
}
