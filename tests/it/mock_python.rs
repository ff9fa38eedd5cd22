//! The official OpenAI Python client as the judge of `chainlog mock`.
//!
//! Our own Rust client (async-openai) is forgiving in places where other
//! clients are not, so agreeing with it proves little. These tests run the
//! pinned `openai` package (tests/python/requirements-openai.txt) against the
//! real binary, in a venv cached outside `target/` (see
//! [`support::python_env`]).

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{mock_process::MockProcess, python_env};

/// How long the whole Python check may run; each of its requests has a
/// 20 s client timeout.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("python")
}

/// Proves that the official OpenAI Python client accepts everything
/// `chainlog mock` answers: plain and streamed chat completions (usage
/// chunk, `[DONE]`), forced, `required` and streamed tool calls whose
/// arguments are valid for the tool's schema, a tool-result round trip,
/// `json_object` and `json_schema` output (through `chat.completions.parse`
/// with a pydantic model too), `models.list`, embeddings in base64 (the
/// client's default) and float with `dimensions`, the Responses API plain
/// and streamed (through the SDK's stream helpers as well), and a 400 with
/// OpenAI's four-key error body mapped to `openai.BadRequestError`.
///
/// Then it proves the request journal (`GET /_mock/requests`) lists what
/// the client sent: every path it hit, in order, with bodies as sent.
#[test]
fn official_python_client_accepts_the_mock_wire_format() {
    let env = python_env::provision("openai", &python_dir().join("requirements-openai.txt"));
    let mock = MockProcess::start(&[]);
    let script = python_dir().join("openai_client_check.py");

    let mut cmd = env.command();
    cmd.arg(&script).arg(mock.base_url());
    let run = run_with_timeout(cmd, SCRIPT_TIMEOUT);
    println!("{}", run.stdout);
    let failed: Vec<&str> = run
        .stdout
        .lines()
        .filter(|line| line.starts_with("FAIL "))
        .collect();
    assert!(
        run.status.is_some_and(|s| s.success()),
        "the official OpenAI Python client rejected the mock ({}; exit {:?}).\n\
         python: {}\nfailed checks:\n{}\n\
         --- script stdout ---\n{}\n--- script stderr ---\n{}\n--- mock stderr ---\n{}",
        mock.base_url(),
        run.status,
        env.python().display(),
        failed.join("\n"),
        run.stdout,
        run.stderr,
        mock.stderr()
    );

    let journal = fetch_journal(mock.origin());
    assert_journal_lists_client_requests(&journal);
}

/// What the journal must show after the Python check ran.
fn assert_journal_lists_client_requests(journal: &Value) {
    let entries = journal
        .as_array()
        .unwrap_or_else(|| panic!("GET /_mock/requests is not a JSON array: {journal}"));
    let mut last_seq = None;
    for entry in entries {
        for key in ["seq", "method", "path", "body", "answered_by"] {
            assert!(
                entry.get(key).is_some(),
                "journal entry lacks {key:?}: {entry}"
            );
        }
        let seq = entry["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("journal seq is not a number: {entry}"));
        assert!(
            last_seq.is_none_or(|last| seq > last),
            "journal seq not increasing ({last_seq:?} then {seq}): {entry}"
        );
        last_seq = Some(seq);
    }

    let hit = |method: &str, path: &str| {
        entries
            .iter()
            .filter(|e| e["method"] == method && e["path"] == path)
            .collect::<Vec<_>>()
    };
    for (method, path) in [
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("POST", "/v1/embeddings"),
        ("POST", "/v1/responses"),
    ] {
        assert!(
            !hit(method, path).is_empty(),
            "journal has no {method} {path}; it has: {:?}",
            entries
                .iter()
                .map(|e| format!("{} {}", e["method"], e["path"]))
                .collect::<Vec<_>>()
        );
    }

    // Bodies are recorded as the client sent them.
    let chats = hit("POST", "/v1/chat/completions");
    assert!(
        chats
            .iter()
            .any(|e| e["body"]["stream"] == true
                && e["body"]["stream_options"]["include_usage"] == true),
        "journal has no streamed chat request with include_usage"
    );
    assert!(
        chats
            .iter()
            .any(|e| e["body"]["tool_choice"]["function"]["name"] == "get_weather"),
        "journal has no chat request forcing get_weather"
    );
    assert!(
        chats
            .iter()
            .any(|e| e["body"]["response_format"]["json_schema"]["name"] == "CalendarEvent"),
        "journal has no chat.completions.parse request (json_schema CalendarEvent)"
    );
    assert!(
        hit("POST", "/v1/embeddings")
            .iter()
            .any(|e| e["body"]["encoding_format"] == "base64"),
        "journal has no embeddings request with the Python client's default encoding_format base64"
    );
}

fn fetch_journal(origin: &str) -> Value {
    let url = format!("{origin}/_mock/requests");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime
        .block_on(async {
            reqwest::get(&url)
                .await?
                .error_for_status()?
                .json::<Value>()
                .await
        })
        .unwrap_or_else(|err| panic!("GET {url} failed: {err}"))
}

/// The outcome of a child process run to completion or killed at the deadline.
struct Run {
    /// `None` when the deadline passed and the child was killed.
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` with captured output, killing it (by its PID) after `timeout`.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Run {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot spawn {cmd:?}: {err}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout is piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr is piped")));

    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Err(err) => panic!("cannot wait for {cmd:?}: {err}"),
        }
    };
    let mut stderr = stderr.join().unwrap_or_default();
    if status.is_none() {
        stderr.push_str(&format!("\n[killed after {timeout:?}]"));
    }
    Run {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr,
    }
}
