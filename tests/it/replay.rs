//! `replay`: a logged chain's LLM exchanges, recorded into its artifact at `log`, answer its
//! calls offline; outputs compared byte for byte; what changed is named.

use std::{
    path::Path,
    process::{Command, Output},
};

use chainlog::{
    artifact::{ArtifactSpec, LoadedArtifact, Provenance, write_artifact},
    chain::{BuildContext, Chain, ChainEntry, ChainError, ChainRegistry, RunContext},
    config::ChainConfig,
    llm::{ChatMessage, ChatRequest, LlmClient},
    mock::{MockConfig, MockServer},
    prompt::PromptSet,
    replay::{record_cases, replay_cases},
};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::chain_support::{mock_env, root};

/// A key value no artifact file may ever contain; joined at run time, so this source file
/// (which the model's crate snapshot holds) does not contain it.
fn canary() -> String {
    ["sk-canary", "replay", "5d1e8f0a7b2c4e69"].join("-")
}

const TEXT: &str = "Ada Lovelace wrote the first published algorithm in 1843. She worked with Charles Babbage on the Analytical Engine.";

/// The tool loop of `tool_agent`, as `chain_examples` plays it.
const AGENT_RULES: &str = r#"
rules:
  - name: lookup
    match: { role: user, last: true, tools: true }
    reply: { tool_calls: [{ name: lookup, arguments: { key: Paris } }] }
  - name: calculate
    match: { role: tool, last: true, content: "Paris:" }
    reply: { tool_calls: [{ name: calculator, arguments: { expression: "2102650 * 2" } }] }
  - name: answer
    match: { role: tool, last: true, content: "4205300" }
    reply: { text: "Twice the population of Paris is 4,205,300." }
"#;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A project folder with the crate's chains and prompts.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["chains", "prompts"] {
        std::os::unix::fs::symlink(root().join(folder), dir.path().join(folder)).unwrap();
    }
    dir
}

/// `chainlog` in `cwd` with no OpenAI endpoint or key in its environment, plus `env`.
fn chainlog(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chainlog"));
    command
        .args(args)
        .current_dir(cwd)
        .env("CHAINLOG_CACHE_DIR", cwd.join("cache"))
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("MLFLOW_TRACKING_URI");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

/// Logs `chain` with `input` (and `--examples` lines) in `cwd`; returns `log --json`.
fn log(cwd: &Path, chain: &str, input: &Value, examples: &[Value], env: &[(&str, &str)]) -> Value {
    let input = input.to_string();
    let mut args = vec!["log", chain, "--input-example", &input, "--json"];
    let file = cwd.join(format!("{chain}-cases.jsonl"));
    if !examples.is_empty() {
        let lines: String = examples.iter().map(|e| format!("{e}\n")).collect();
        std::fs::write(&file, lines).unwrap();
        args.extend(["--examples", file.to_str().unwrap()]);
    }
    let output = chainlog(cwd, &args, env);
    assert!(output.status.success(), "{chain}: {}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn replay(cwd: &Path, uri: &str, extra: &[&str]) -> Output {
    let mut args = vec!["replay", "-m", uri];
    args.extend(extra);
    chainlog(cwd, &args, &[])
}

/// Every file under `dir`, with its text.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, text(&bytes)));
            }
        }
    }
    out
}

/// Every example chain, logged with an input example against an upstream that requires a
/// canary key, replays `identical` in a process with neither OPENAI_API_KEY nor
/// OPENAI_BASE_URL: every call answered from the cassette, none reaching the upstream; the
/// cassettes are in the artifact, hashed in MLmodel, and hold no key.
#[tokio::test(flavor = "multi_thread")]
async fn every_example_chain_replays_identical_offline() {
    let upstream = MockServer::start(
        MockConfig::default()
            .with_required_api_key(SecretString::from(canary()))
            .with_rules_yaml(AGENT_RULES)
            .unwrap(),
    )
    .await
    .unwrap();
    let base = upstream.base_url();
    let key = canary();
    let env = [
        ("OPENAI_BASE_URL", base.as_str()),
        ("OPENAI_API_KEY", key.as_str()),
    ];
    let dir = project();
    let long =
        vec!["The committee met on Monday to review the budget. ".repeat(12); 3].join("\n\n");
    let cases = [
        (
            "summarize",
            json!({ "text": TEXT }),
            vec![
                json!({"text": "A second text."}),
                json!({"text": "A third."}),
            ],
        ),
        ("extract", json!({ "text": TEXT }), vec![]),
        ("map_reduce", json!({ "text": long }), vec![]),
        (
            "tool_agent",
            json!({ "question": "What is twice the population of Paris?" }),
            vec![],
        ),
    ];
    for (chain, input, examples) in &cases {
        let logged = tokio::task::block_in_place(|| log(dir.path(), chain, input, examples, &env));
        assert_eq!(
            logged["replay_cases"],
            1 + examples.len(),
            "{chain}: {logged}"
        );
        let uri = logged["model_uri"].as_str().unwrap().to_owned();
        let before = upstream.requests().len();
        let output = tokio::task::block_in_place(|| replay(dir.path(), &uri, &["--json"]));
        assert!(
            output.status.success(),
            "{chain}: {}\n{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["identical"], true, "{chain}: {report}");
        let replayed = report["cases"].as_array().unwrap();
        assert_eq!(replayed.len(), 1 + examples.len(), "{chain}");
        assert_eq!(replayed[0]["replayed"], logged["output_example"], "{chain}");
        for case in replayed {
            let calls = case["calls"].as_array().unwrap();
            assert!(!calls.is_empty(), "{chain}: {case}");
            for call in calls {
                let by = call["answered_by"].as_str().unwrap();
                assert!(by.starts_with("cassette:#"), "{chain}: {call}");
            }
        }
        assert_eq!(
            upstream.requests().len(),
            before,
            "{chain}: replay reached the upstream"
        );
        // Text output: one line per case, then `identical`.
        let output = tokio::task::block_in_place(|| replay(dir.path(), &uri, &[]));
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert!(
            text(&output.stdout).ends_with("identical\n"),
            "{}",
            text(&output.stdout)
        );
    }
    // The cassettes are listed in MLmodel with their hashes, and no file holds the key.
    let files = files_under(&dir.path().join("mlruns"));
    let cassettes = files
        .iter()
        .filter(|(path, _)| path.to_string_lossy().contains("/cassettes/case-"))
        .count();
    assert_eq!(cassettes, 6, "one cassette per case");
    for (path, content) in &files {
        assert!(!content.contains(&key), "{} holds the key", path.display());
        if path.ends_with("MLmodel") {
            assert!(content.contains("cassettes/case-0.yaml"), "{content}");
            assert!(content.contains("cassettes/cases.jsonl"), "{content}");
        }
    }
}

/// Logs `summarize` with the built-in mock in a fresh project; returns it and the model URI.
fn logged_summarize() -> (tempfile::TempDir, String) {
    let dir = project();
    let logged = log(dir.path(), "summarize", &json!({ "text": TEXT }), &[], &[]);
    let uri = logged["model_uri"].as_str().unwrap().to_owned();
    (dir, uri)
}

/// A `--set` that changes the prompt (the sentence count it renders) makes the replay differ:
/// exit 1, the first LLM request not in the cassette named with the recorded and asked
/// values where it differs; another setting (temperature) is named the same way in `--json`.
#[test]
fn a_changed_request_is_named_as_the_first_not_in_the_cassette() {
    let (dir, uri) = logged_summarize();
    let output = replay(dir.path(), &uri, &["--set", "chain.sentences=1"]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("case 0: differs"), "{stdout}");
    assert!(
        stdout.contains("first LLM request not in the cassette: call 1, POST /v1/chat/completions (model gpt-4o-mini)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("closest recorded: interaction #0 (cassettes/case-0.yaml"),
        "{stdout}"
    );
    assert!(stdout.contains("      messages[0].content\n"), "{stdout}");
    let recorded = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("recorded:"))
        .unwrap();
    let asked = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("asked:"))
        .unwrap();
    assert!(recorded.contains("at most 3 sentences"), "{recorded}");
    assert!(asked.contains("at most 1 sentences"), "{asked}");
    assert!(!stdout.contains("\nidentical"), "{stdout}");
    assert!(stderr.contains("1 of 1 case(s) of model"), "{stderr}");

    let output = replay(
        dir.path(),
        &uri,
        &["--set", "llm.temperature=0.9", "--json"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["identical"], false);
    let case = &report["cases"][0];
    assert_eq!(case["identical"], false);
    assert_eq!(case["first_miss"]["call"], 1);
    assert_eq!(
        case["first_miss"]["differences"],
        json!([{"at": "temperature", "recorded": 0.2, "asked": 0.9}])
    );
    assert_eq!(case["calls"][0]["answered_by"], "cassette:miss");
    assert!(
        case["error"].as_str().unwrap().contains("cassette"),
        "{case}"
    );
}

/// A model logged without an input example is refused with a message saying to log it with
/// one; a cassette changed after logging is refused naming the file, like any other file.
#[test]
fn a_model_without_cassettes_or_with_a_changed_one_is_refused() {
    let dir = project();
    let output = chainlog(dir.path(), &["log", "summarize", "--json"], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let logged: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(logged["replay_cases"], 0);
    let output = replay(dir.path(), logged["model_uri"].as_str().unwrap(), &[]);
    let stderr = text(&output.stderr);
    // Exit 2: could not replay at all (1 is kept for an output that differs).
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("has no recorded LLM exchanges to replay"),
        "{stderr}"
    );
    assert!(stderr.contains("--input-example"), "{stderr}");
    // An input example logged with --no-validate was never run: the advice says so.
    let output = chainlog(
        dir.path(),
        &[
            "log",
            "summarize",
            "--input-example",
            r#"{"text": "x"}"#,
            "--no-validate",
            "--json",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let logged: Value = serde_json::from_slice(&output.stdout).unwrap();
    let output = replay(dir.path(), logged["model_uri"].as_str().unwrap(), &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("logged with --no-validate") && !stderr.contains("log it with an input"),
        "{stderr}"
    );

    let (dir, uri) = logged_summarize();
    assert!(replay(dir.path(), &uri, &[]).status.success());
    let model_id = uri.trim_start_matches("models:/");
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        // The store's folder (a cache entry holds only what the commands that used it fetched).
        .arg(
            dir.path()
                .join("mlruns/0/models")
                .join(model_id)
                .join("artifacts/."),
        )
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    let cassette = copy.path().join("cassettes/case-0.yaml");
    let edited = std::fs::read_to_string(&cassette)
        .unwrap()
        .replace("Mock reply", "Mock replay");
    std::fs::write(&cassette, edited).unwrap();
    let output = replay(dir.path(), copy.path().to_str().unwrap(), &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cassettes/case-0.yaml"), "{stderr}");
    assert!(!stderr.contains("identical"), "{stderr}");
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct TwiceIn {}

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
struct TwiceOut {
    first: String,
    second: String,
}

/// A chain that asks the LLM the same question twice.
struct Twice {
    llm: std::sync::Arc<dyn LlmClient>,
}

impl Chain for Twice {
    type Input = TwiceIn;
    type Output = TwiceOut;

    async fn invoke(&self, _input: TwiceIn, _ctx: &RunContext) -> Result<TwiceOut, ChainError> {
        let request = ChatRequest::new(vec![ChatMessage::user("the same question")]);
        let first = self.llm.chat(&request).await?.content.unwrap_or_default();
        let second = self.llm.chat(&request).await?.content.unwrap_or_default();
        Ok(TwiceOut { first, second })
    }
}

fn twice() -> ChainEntry {
    ChainEntry::new::<Twice>(
        "twice",
        "Asks the same question twice.",
        "chains/twice.rs",
        "// the same question, twice",
        |ctx: &BuildContext| Ok(Twice { llm: ctx.llm()? }),
    )
}

/// The same request sent twice, the first of them answered 429 and retried: recorded as three
/// interactions in order (429, then two different 200s) and replayed in that order, so the
/// output is identical and nothing reaches the upstream.
#[tokio::test]
async fn a_repeated_request_and_a_retry_replay_in_order() {
    let rules = r#"
rules:
  - name: same
    match: { content: "the same question" }
    sequence:
      - fault: { kind: rate_limit, retry_after_secs: 1 }
      - text: "first answer"
      - text: "second answer"
"#;
    let upstream = MockServer::start(MockConfig::default().with_rules_yaml(rules).unwrap())
        .await
        .unwrap();
    let config = ChainConfig::from_yaml(
        "llm:\n  model: gpt-4o-mini\n  max_retries: 2\n",
        Path::new("twice.yaml"),
    )
    .unwrap();
    let (entry, prompts, input) = (twice(), PromptSet::new(), json!({}));
    let recorded = record_cases(
        &entry,
        &config,
        &prompts,
        &mock_env(&upstream),
        std::slice::from_ref(&input),
    )
    .await
    .unwrap();
    let expected = json!({"first": "first answer", "second": "second answer"});
    assert_eq!(recorded.outputs.len(), 1);
    assert_eq!(recorded.outputs[0], expected);
    assert_eq!(upstream.requests().len(), 3);

    let dir = tempfile::tempdir().unwrap();
    let provenance = Provenance::of_binary();
    let spec = ArtifactSpec::new(&entry, &config, &prompts, "m-twice", &provenance)
        .with_input_example(&input)
        .with_cassettes(&recorded.files);
    write_artifact(dir.path(), &spec).unwrap();
    let yaml = std::fs::read_to_string(dir.path().join("cassettes/case-0.yaml")).unwrap();
    let cassette: Value = serde_norway::from_str(&yaml).unwrap();
    let interactions = cassette["interactions"].as_array().unwrap();
    let statuses: Vec<&Value> = interactions
        .iter()
        .map(|i| &i["response"]["status"])
        .collect();
    assert_eq!(statuses, [&json!(429), &json!(200), &json!(200)], "{yaml}");
    assert!(
        interactions
            .iter()
            .all(|i| i["request"] == interactions[0]["request"])
    );

    let artifact = LoadedArtifact::read(dir.path()).unwrap();
    artifact.verify().unwrap();
    let registry = ChainRegistry::new(vec![twice()]);
    let report = replay_cases(&registry, &artifact, "twice", &[])
        .await
        .unwrap();
    assert!(report.identical, "{report:?}");
    let case = &report.cases[0];
    assert_eq!(case.replayed.as_ref(), Some(&expected));
    let answered: Vec<(&str, u16)> = case
        .calls
        .iter()
        .map(|c| (c.answered_by.as_str(), c.status))
        .collect();
    assert_eq!(
        answered,
        [
            ("cassette:#0", 429),
            ("cassette:#1", 200),
            ("cassette:#2", 200)
        ]
    );
    assert_eq!(upstream.requests().len(), 3, "replay reached the upstream");

    // Code that asks the same but outputs otherwise (same source hash, other behaviour): every
    // call is in the cassette, so no request is named; the outputs' diff is.
    let swapped = ChainEntry::new::<Swapped>(
        "twice",
        "Asks the same question twice.",
        "chains/twice.rs",
        "// the same question, twice",
        |ctx: &BuildContext| Ok(Swapped(Twice { llm: ctx.llm()? })),
    );
    let registry = ChainRegistry::new(vec![swapped]);
    let report = replay_cases(&registry, &artifact, "twice", &[])
        .await
        .unwrap();
    assert!(!report.identical);
    let case = &report.cases[0];
    assert!(
        case.first_miss.is_none() && case.error.is_none(),
        "{case:?}"
    );
    let diff = case.diff.as_deref().unwrap();
    assert!(diff.starts_with("--- logged\n+++ replayed\n"), "{diff}");
    assert!(
        diff.contains("\n-  \"first\": \"first answer\",\n"),
        "{diff}"
    );
    assert!(
        diff.contains("\n+  \"first\": \"second answer\",\n"),
        "{diff}"
    );
}

/// [`Twice`] with its answers the other way round.
struct Swapped(Twice);

impl Chain for Swapped {
    type Input = TwiceIn;
    type Output = TwiceOut;

    async fn invoke(&self, input: TwiceIn, ctx: &RunContext) -> Result<TwiceOut, ChainError> {
        let out = self.0.invoke(input, ctx).await?;
        Ok(TwiceOut {
            first: out.second,
            second: out.first,
        })
    }
}

/// The id of the trace whose request preview holds `needle`, in `dir`'s `mlflow.db`.
fn trace_id(dir: &Path, needle: &str) -> String {
    let db = rusqlite::Connection::open(dir.join("mlflow.db")).unwrap();
    db.query_row(
        "SELECT request_id FROM trace_info WHERE request_preview LIKE ?1",
        [format!("%{needle}%")],
        |row| row.get(0),
    )
    .unwrap()
}

/// A prediction traced into the SQLite store replays from its trace id, offline: the input
/// and output from its root span, every LLM call answered from its CHAT_MODEL spans. An
/// unknown id, and a trace whose LLM spans are gone, each fail on one line naming the id.
#[test]
fn a_traced_prediction_replays_from_its_trace_id() {
    let (dir, uri) = logged_summarize();
    let output = chainlog(
        dir.path(),
        &[
            "predict",
            "-m",
            &uri,
            "--input",
            r#"{"text": "a traced prediction"}"#,
        ],
        &[],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let predicted: Value = serde_json::from_slice(&output.stdout).unwrap();
    let id = trace_id(dir.path(), "a traced prediction");

    let output = replay(dir.path(), &uri, &["--trace", &id, "--json"]);
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["identical"], true, "{report}");
    let case = &report["cases"][0];
    assert_eq!(case["input"], json!({"text": "a traced prediction"}));
    assert_eq!(case["logged"], predicted);
    assert_eq!(case["replayed"], predicted);
    assert_eq!(case["calls"][0]["answered_by"], "cassette:#0", "{case}");
    let output = replay(dir.path(), &uri, &["--trace", &id]);
    assert!(
        text(&output.stdout).ends_with("identical\n"),
        "{}",
        text(&output.stdout)
    );
    // Another chain's model refuses the trace, naming both chains.
    let extract = log(dir.path(), "extract", &json!({ "text": TEXT }), &[], &[]);
    let output = replay(
        dir.path(),
        extract["model_uri"].as_str().unwrap(),
        &["--trace", &id],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr
            .contains("is a prediction of chain `summarize`, not of this model's chain `extract`"),
        "{stderr}"
    );

    for (trace, expected) in [
        (
            "tr-00000000000000000000000000000000",
            "does not exist in sqlite:///",
        ),
        (id.as_str(), "holds no LLM call"),
    ] {
        if trace == id {
            let db = rusqlite::Connection::open(dir.path().join("mlflow.db")).unwrap();
            db.execute(
                "DELETE FROM spans WHERE trace_id = ?1 AND content LIKE '%CHAT_MODEL%'",
                [&id],
            )
            .unwrap();
        }
        let output = replay(dir.path(), &uri, &["--trace", trace]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains(&format!("trace `{trace}`")), "{stderr}");
        assert!(errors[0].contains(expected), "{stderr}");
        assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    }
}

/// A streamed prediction (`serve`, SSE) replays from its trace: its CHAT_MODEL span holds the
/// streamed request and the assembled completion, which the replay answers as a stream to the
/// chain run streaming, giving the same output.
#[test]
fn a_streamed_prediction_replays_from_its_trace() {
    use std::io::{BufRead, BufReader, Read, Write};
    let (dir, uri) = logged_summarize();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chainlog"))
        .args(["serve", "-m", &uri, "--port", "0"])
        .current_dir(dir.path())
        .env("CHAINLOG_CACHE_DIR", dir.path().join("cache"))
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("MLFLOW_TRACKING_URI")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let address = url.trim().trim_start_matches("http://").to_owned();
    let body = r#"{"inputs": {"text": "a streamed prediction"}}"#;
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /invocations HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("text/event-stream"), "{response}");
    // SIGTERM: a graceful shutdown flushes the trace queue.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());

    let id = trace_id(dir.path(), "a streamed prediction");
    let output = replay(dir.path(), &uri, &["--trace", &id, "--json"]);
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["identical"], true, "{report}");
    let summary = report["cases"][0]["replayed"]["summary"].as_str().unwrap();
    assert!(summary.contains("a streamed prediction"), "{report}");
    assert_eq!(report["cases"][0]["calls"][0]["answered_by"], "cassette:#0");
}

/// On an MLflow server, a prediction's trace (sent over OTLP) is read back through
/// `traces/get` and replays `identical`; an unknown id is named on one line.
#[test]
fn a_prediction_traced_to_a_server_replays_from_its_trace_id() {
    use crate::support::mlflow_server::MlflowServer;
    let server = MlflowServer::shared();
    let vars = [("MLFLOW_TRACKING_URI", server.uri())];
    let dir = project();
    let logged = log(
        dir.path(),
        "summarize",
        &json!({ "text": TEXT }),
        &[],
        &vars,
    );
    let model_id = logged["model_id"].as_str().unwrap();
    let uri = format!("models:/{model_id}");
    let input = r#"{"text": "a prediction traced to a server"}"#;
    let output = chainlog(
        dir.path(),
        &["predict", "-m", &uri, "--input", input],
        &vars,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let script = format!(
        "import mlflow\nfor t in mlflow.search_traces(model_id=\"{model_id}\", return_type=\"list\"):\n    if 'traced to a server' in (t.info.request_preview or ''):\n        print(t.info.trace_id)\n"
    );
    let mut python = server.python();
    let found = python.arg("-c").arg(script).output().unwrap();
    assert!(found.status.success(), "{}", text(&found.stderr));
    let id = text(&found.stdout).trim().to_owned();
    assert!(id.starts_with("tr-"), "{id}");

    let mut args = vec![
        "replay",
        "-m",
        uri.as_str(),
        "--trace",
        id.as_str(),
        "--json",
    ];
    let output = chainlog(dir.path(), &args, &vars);
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["identical"], true, "{report}");
    assert_eq!(report["cases"][0]["calls"][0]["answered_by"], "cassette:#0");

    args[4] = "tr-00000000000000000000000000000000";
    let output = chainlog(dir.path(), &args, &vars);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("trace `tr-00000000000000000000000000000000` does not exist"),
        "{stderr}"
    );
}
