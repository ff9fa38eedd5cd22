//! A team's own crate, end to end, as the README's "Your own chains" section tells it:
//! `chainlog new` scaffolds it (chainlog as a path dependency on this checkout), the team adds a
//! chain of its own, `cargo run -- log` runs from a subdirectory, `predict` rebuilds the chain
//! through `models:/<name>@<alias>` and gives the logged output, the artifact's `code/`
//! builds alone with `cargo build --locked --offline`, the scaffolded test passes, and a
//! chain with the wrong build signature fails the build naming its file.
//!
//! Every cargo build here shares this test suite's target directory and dev profile, so the
//! dependency tree is compiled once.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

use crate::chain_support::root;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// This test suite's target directory: `<target>/debug/deps/it-<hash>` → `<target>`.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// `cargo <args>` in `cwd` with the shared target directory, offline (every dependency is in
/// this checkout's Cargo.lock and so already in cargo's cache), and none of the variables the
/// outer `cargo test` set for this test binary.
fn cargo(cwd: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if (name.starts_with("CARGO_") && name != "CARGO_HOME") || name.ends_with("MAKEFLAGS") {
            command.env_remove(name.as_ref());
        }
    }
    command
        .args(args)
        .current_dir(cwd)
        .env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO_TERM_COLOR", "never")
        .env("CARGO_NET_OFFLINE", "true")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .unwrap()
}

fn assert_ok(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed\nstdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// The chain the team adds: not one of chainlog's (another name, prompt and config).
const HAIKU_RS: &str = r#"//! Write a haiku about a topic.

use std::sync::Arc;

use chainlog::{
    chain::{BuildContext, Chain, ChainError, RunContext, render_messages},
    llm::{ChatRequest, LlmClient},
    prompt::PromptTemplate,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The topic.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Input {
    /// What the haiku is about.
    pub topic: String,
}

/// The haiku.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// Three lines.
    pub haiku: String,
    /// The season word asked for.
    pub season: String,
}

#[derive(Debug, Deserialize)]
struct Settings {
    season: String,
}

/// The built chain.
pub struct Haiku {
    prompt: PromptTemplate,
    llm: Arc<dyn LlmClient>,
    season: String,
}

/// Builds the chain.
pub fn build(ctx: &BuildContext) -> Result<Haiku, ChainError> {
    let settings: Settings = ctx.section("poem")?;
    Ok(Haiku { prompt: ctx.prompt("verse")?, llm: ctx.llm()?, season: settings.season })
}

impl Chain for Haiku {
    type Input = Input;
    type Output = Output;

    async fn invoke(&self, input: Input, _ctx: &RunContext) -> Result<Output, ChainError> {
        let vars = serde_json::json!({ "topic": input.topic, "season": self.season });
        let request = ChatRequest::new(render_messages(&self.prompt, &vars)?);
        let reply = self.llm.chat(&request).await?;
        Ok(Output { haiku: reply.content.unwrap_or_default(), season: self.season.clone() })
    }
}
"#;

const HAIKU_YAML: &str = "llm:\n  model: haiku-model-1\n  api_key: ${OPENAI_API_KEY}\nprompts:\n  verse: haiku_verse.hbs\npoem:\n  season: autumn\n";

const HAIKU_PROMPT: &str = "Write a haiku about {{topic}} with a {{season}} season word.\n";

/// Copies a folder's files (no symlinks in an artifact).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_scaffolded_crate_logs_predicts_and_its_snapshot_builds_alone() {
    let work = tempfile::tempdir().unwrap();
    let project = work.path().join("team-chains");
    let checkout = root().display().to_string();

    // chainlog new, with chainlog as a path dependency on this checkout.
    let created = Command::new(env!("CARGO_BIN_EXE_chainlog"))
        .args([
            "new",
            "team-chains",
            "--chain",
            "ask",
            "--chainlog-path",
            &checkout,
        ])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert_ok("chainlog new", &created);
    for file in [
        "Cargo.toml",
        "build.rs",
        "src/main.rs",
        "chains/ask.rs",
        "tests/ask.rs",
    ] {
        assert!(project.join(file).is_file(), "{file} not scaffolded");
    }
    // The same dependency versions as this checkout, so nothing is compiled twice.
    std::fs::copy(root().join("Cargo.lock"), project.join("Cargo.lock")).unwrap();

    // A chain of the team's own.
    std::fs::write(project.join("chains/haiku.rs"), HAIKU_RS).unwrap();
    std::fs::write(project.join("chains/haiku.yaml"), HAIKU_YAML).unwrap();
    std::fs::write(project.join("prompts/haiku_verse.hbs"), HAIKU_PROMPT).unwrap();

    let built = cargo(&project, &["build"]);
    assert_ok("cargo build of the scaffolded crate", &built);
    let chains = cargo(&project, &["run", "-q", "--", "chains", "--json"]);
    assert_ok("chains", &chains);
    let names: Vec<String> = serde_json::from_slice::<Vec<Value>>(&chains.stdout)
        .unwrap()
        .iter()
        .map(|chain| chain["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["ask", "haiku"], "only the crate's own chains");

    // `log` from a subdirectory: the project is found by walking up, and the default store
    // is the project's (`<root>/mlflow.db`, artifacts in `<root>/mlruns`), never the folder
    // the command ran in.
    let subdir = project.join("prompts/ask");
    let logged = cargo(
        &subdir,
        &[
            "run",
            "-q",
            "--",
            "log",
            "haiku",
            "--input-example",
            r#"{"topic": "rust"}"#,
            "--registered-model",
            "haiku",
            "--alias",
            "champion",
            "--json",
        ],
    );
    assert_ok("log from a subdirectory", &logged);
    assert!(project.join("mlflow.db").is_file() && project.join("mlruns").is_dir());
    assert_eq!(
        std::fs::read_dir(&subdir).unwrap().count(),
        2,
        "the prompt folder changed"
    );
    let logged: Value = serde_json::from_slice(&logged.stdout).unwrap();
    let expected = logged["output_example"].clone();
    assert_eq!(expected["season"], "autumn", "{logged}");

    // predict through the alias gives the logged output.
    let binary = target_dir().join("debug/team-chains");
    let predicted = Command::new(&binary)
        .args([
            "predict",
            "-m",
            "models:/haiku@champion",
            "--input",
            r#"{"topic": "rust"}"#,
        ])
        .current_dir(project.join("src"))
        .env("CHAINLOG_CACHE_DIR", work.path().join("cache"))
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    assert_ok("predict -m models:/haiku@champion", &predicted);
    let output: Value = serde_json::from_slice(&predicted.stdout).unwrap();
    assert_eq!(output, expected);

    // The artifact's code/ is the crate, and builds on its own.
    let artifact_uri = logged["artifact_uri"].as_str().unwrap();
    let artifacts = Path::new(artifact_uri.strip_prefix("file://").unwrap_or(artifact_uri));
    let code = artifacts.join("code");
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "src/main.rs",
        "chains/haiku.rs",
    ] {
        assert!(code.join(file).is_file(), "code/{file} missing");
    }
    let manifest = std::fs::read_to_string(code.join("Cargo.toml")).unwrap();
    assert!(
        !manifest.contains(&checkout),
        "absolute path in the snapshot:\n{manifest}"
    );
    let copy = work.path().join("rebuilt");
    copy_tree(&code, &copy);
    let alone = cargo(&copy, &["build", "--locked", "--offline"]);
    assert_ok("cargo build --locked --offline of the snapshot", &alone);

    // The scaffolded test runs the chain against the mock.
    let tested = cargo(&project, &["test", "-q"]);
    assert_ok("cargo test in the scaffolded crate", &tested);

    // A build function with the wrong signature: the build error names the chain file.
    let wrong = HAIKU_RS.replace(
        "pub fn build(ctx: &BuildContext) -> Result<Haiku, ChainError> {",
        "pub fn build(ctx: &BuildContext, extra: u8) -> Result<Haiku, ChainError> {\n    let _ = extra;",
    );
    std::fs::write(project.join("chains/haiku.rs"), wrong).unwrap();
    let broken = cargo(&project, &["build"]);
    assert!(!broken.status.success());
    let stderr = text(&broken.stderr);
    assert!(stderr.contains("chains/haiku.rs"), "{stderr}");
}

/// `cargo run --example quickstart` logs a chain it defines, reloads it by model URI and
/// prints its output (`cargo test` has built the example).
#[test]
fn quickstart_example_logs_reloads_and_runs() {
    let example = target_dir().join("debug/examples/quickstart");
    assert!(
        example.is_file(),
        "{} is missing: `cargo test` builds examples; run `cargo build --examples`",
        example.display()
    );
    let output = Command::new(example)
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    assert_ok("examples/quickstart", &output);
    let stdout = text(&output.stdout);
    assert!(stdout.contains("logged run "), "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("models:/tagline@champion → {"), "{stdout}");
    let json_part = last.split_once(" → ").unwrap().1;
    let value: Value = serde_json::from_str(json_part).unwrap();
    assert!(!value["tagline"].as_str().unwrap().is_empty(), "{value}");
}
