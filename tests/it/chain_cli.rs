//! `chainlog chains` and `chainlog run` as a user types them: the process, its stdout, stderr
//! and exit code. No `OPENAI_*` variable is set, so `run` uses the built-in mock.

use std::process::{Command, Output};

use sha2::{Digest, Sha256};

use crate::chain_support::root;

fn chainlog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chainlog"))
        .args(args)
        .current_dir(root())
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `chainlog chains --json` lists every example chain with the SHA-256 of its source as
/// compiled (here equal to the file on disk) and its schemas; the table shows the same.
#[test]
fn chains_lists_every_chain_with_its_code_hash() {
    let output = chainlog(&["chains", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["extract", "map_reduce", "summarize", "tool_agent"]);
    for chain in list.as_array().unwrap() {
        let source = std::fs::read(root().join(chain["source_path"].as_str().unwrap())).unwrap();
        let hash: String = Sha256::digest(&source)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(chain["sha256"], hash);
        assert!(!chain["description"].as_str().unwrap().is_empty());
        assert_eq!(chain["input_schema"]["type"], "object");
    }
    let table = text(&chainlog(&["chains"]).stdout);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("tool_agent"), "{table}");
}

/// `chainlog run summarize --input …` with no endpoint configured runs against the built-in
/// mock and prints the output JSON; `--set` changes the rendered prompt.
#[test]
fn run_prints_the_output_json_against_the_built_in_mock() {
    let output = chainlog(&[
        "run",
        "summarize",
        "--input",
        r#"{"text": "Rust is a systems language."}"#,
        "--set",
        "chain.sentences=1",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        json["summary"]
            .as_str()
            .unwrap()
            .contains("Rust is a systems language.")
    );
    assert!(text(&output.stderr).contains("built-in mock"));
}

/// A reply cut off by the token limit (`--set llm.max_tokens=3`; the built-in mock truncates
/// and says `finish_reason: length`) fails the run naming the limit, plain and streamed; no
/// output JSON is printed (`llm.accept_truncated` is tested in `llm_client`).
#[test]
fn a_truncated_reply_fails_the_run_naming_max_tokens() {
    let input = r#"{"text": "Rust is a systems language with a strong type system and no garbage collector."}"#;
    for extra in [&[][..], &["--stream"][..]] {
        let mut args = vec![
            "run",
            "summarize",
            "--input",
            input,
            "--set",
            "llm.max_tokens=3",
        ];
        args.extend_from_slice(extra);
        let output = chainlog(&args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{extra:?}: {}",
            text(&output.stderr)
        );
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("cut off by max_tokens=3"),
            "{extra:?}: {stderr}"
        );
        assert!(stderr.contains("llm.accept_truncated"), "{stderr}");
        assert!(!text(&output.stdout).contains("summary"), "{extra:?}");
    }
}

/// `--stream` prints the text as it comes, then the output JSON.
#[test]
fn run_stream_prints_text_then_json() {
    let output = chainlog(&[
        "run",
        "summarize",
        "--stream",
        "--input",
        r#"{"text": "Streams are fun."}"#,
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let (streamed, json) = stdout.split_once('\n').unwrap();
    let json: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(json["summary"], streamed);
}

/// Bad input, an unknown chain and an unknown `--set` key each fail with exit code 1 and a
/// message naming the problem.
#[test]
fn run_errors_name_the_problem() {
    let cases: [(&[&str], &str); 4] = [
        (&["run", "sumarize", "--input", "{}"], "summarize"),
        (
            &["run", "summarize", "--input", r#"{"text": 1}"#],
            "input.text",
        ),
        (
            &["run", "summarize", "--input", "not json"],
            "not valid JSON",
        ),
        (
            &[
                "run",
                "summarize",
                "--input",
                r#"{"text": "x"}"#,
                "--set",
                "chain.sentencez=2",
            ],
            "chain.sentencez",
        ),
    ];
    for (args, expected) in cases {
        let output = chainlog(args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// A template syntax error names the file and the line.
#[test]
fn template_syntax_error_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts");
    std::fs::create_dir_all(&prompts).unwrap();
    std::fs::write(
        prompts.join("broken.hbs"),
        "line one\nline two\n{{#if text}}never closed\n",
    )
    .unwrap();
    let config = dir.path().join("summarize.yaml");
    std::fs::write(
        &config,
        "llm:\n  model: gpt-4o-mini\nprompts:\n  summary: broken.hbs\nchain:\n  sentences: 2\n",
    )
    .unwrap();
    let output = chainlog(&[
        "run",
        "summarize",
        "--input",
        r#"{"text": "x"}"#,
        "--config",
        config.to_str().unwrap(),
        "--prompts-dir",
        prompts.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("broken.hbs"), "{stderr}");
    assert!(stderr.contains("line"), "{stderr}");
}

/// A config holding a literal key is refused naming the key path, never the value.
#[test]
fn literal_secret_in_config_is_refused_without_echoing_it() {
    const CANARY: &str = "sk-canary-3b1f0e9d7c5a4b2e8f6d";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("summarize.yaml");
    std::fs::write(&config, format!("llm:\n  model: gpt-4o-mini\n  api_key: {CANARY}\nprompts:\n  summary: summarize\nchain:\n  sentences: 2\n")).unwrap();
    let output = chainlog(&[
        "run",
        "summarize",
        "--input",
        r#"{"text": "x"}"#,
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(all.contains("llm.api_key"), "{all}");
    assert!(!all.contains(CANARY), "the secret was echoed: {all}");
}

/// Commands find the project like cargo does: `run` and `log` work from a subdirectory of this
/// repository (the project is found by walking up), and `--project` names a folder that is not
/// a crate in one line.
#[test]
fn run_and_log_work_from_a_subdirectory_of_the_project() {
    let subdir = root().join("src/cli");
    let run = |cwd: &std::path::Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_chainlog"))
            .args(args)
            .current_dir(cwd)
            .env_remove("OPENAI_BASE_URL")
            .env_remove("OPENAI_API_KEY")
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("CHAINLOG_PROJECT")
            .output()
            .unwrap()
    };
    let output = run(
        &subdir,
        &["run", "summarize", "--input", r#"{"text": "from below"}"#],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));

    let scratch = tempfile::tempdir().unwrap();
    let tracking = format!("sqlite:///{}", scratch.path().join("mlflow.db").display());
    let logged = run(
        &subdir,
        &[
            "log",
            "summarize",
            "--input-example",
            r#"{"text": "from below"}"#,
            "--tracking-uri",
            &tracking,
            "--json",
        ],
    );
    assert!(logged.status.success(), "{}", text(&logged.stderr));
    let logged: serde_json::Value = serde_json::from_slice(&logged.stdout).unwrap();
    assert!(logged["output_example"]["summary"].is_string(), "{logged}");
    assert!(
        !subdir.join("mlruns").exists(),
        "artifacts written into the source tree"
    );

    let empty = tempfile::tempdir().unwrap();
    let project = empty.path().display().to_string();
    let output = run(
        empty.path(),
        &[
            "run",
            "summarize",
            "--input",
            "{\"text\": \"x\"}",
            "--project",
            &project,
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("holds no Cargo.toml"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
