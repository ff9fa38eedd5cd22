//! A team's own crate, end to end, as the README's "Your own chains" section tells it:
//! `chainlog new` scaffolds it (chainlog as a path dependency on this checkout), the team adds a
//! chain of its own, `cargo run -- log` runs from a subdirectory, `predict` rebuilds the chain
//! through `models:/<name>@<alias>` and gives the logged output, the artifact's `code/`
//! builds alone with `cargo build --locked --offline`, the scaffolded test passes, MLflow's
//! `mlflow.pyfunc.load_model` runs the team's chain (through chainlog's binary handing over to
//! the model's compiled crate, and with no chainlog binary at all by building the crate), and a
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

    rebuilds_from_the_artifacts_own_code(work.path(), &project, &expected);
    pyfunc_runs_the_team_chain(work.path(), &project, &expected);

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

/// Copies the crate's binary out of the shared target directory, where a `--build cargo` of
/// the same crate would put its own under the same name.
fn keep_binary(work: &Path) {
    std::fs::create_dir_all(work.join("bin")).unwrap();
    std::fs::copy(
        target_dir().join("debug/team-chains"),
        work.join("bin/team-chains"),
    )
    .unwrap();
}

/// The team binary (as [`keep_binary`] kept it), run in `cwd` with the build cache in `work` (dev profile, this suite's
/// target directory, so no dependency is compiled twice).
fn team(work: &Path, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(work.join("bin/team-chains"));
    command
        .args(args)
        .current_dir(cwd)
        .env("CHAINLOG_CACHE_DIR", work.join("cache"))
        .env("CHAINLOG_BUILD_PROFILE", "dev")
        .env("CHAINLOG_BUILD_TARGET_DIR", target_dir())
        .env("CARGO_NET_OFFLINE", "true")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("MLFLOW_TRACKING_URI");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// `--build cargo`: after the logged chain is edited and another deleted, the crate's binary
/// no longer holds the logged code; `auto` compiles the artifact's own snapshot (two
/// concurrent predicts build once), gives exactly the logged output, and a second call is a
/// cache hit that starts no cargo; `serve --build cargo` answers `/invocations`; a tampered
/// snapshot is refused before any build; a snapshot that does not compile names the artifact
/// and cargo's first error and caches nothing; no cargo is one line.
fn rebuilds_from_the_artifacts_own_code(work: &Path, project: &Path, expected: &Value) {
    let edited = HAIKU_RS.replace(
        "haiku: reply.content.unwrap_or_default()",
        "haiku: format!(\"edited: {}\", reply.content.unwrap_or_default())",
    );
    assert_ne!(edited, HAIKU_RS);
    std::fs::write(project.join("chains/haiku.rs"), edited).unwrap();
    std::fs::remove_file(project.join("chains/ask.rs")).unwrap();
    assert_ok("cargo build after the edit", &cargo(project, &["build"]));
    keep_binary(work);
    let predict = [
        "predict",
        "-m",
        "models:/haiku@champion",
        "--input",
        r#"{"topic": "rust"}"#,
    ];
    let local = team(
        work,
        project,
        &[&predict[..], &["--build", "local"]].concat(),
        &[],
    )
    .output()
    .unwrap();
    assert_eq!(local.status.code(), Some(1));
    assert!(text(&local.stderr).contains("not the code that was logged"));

    let children: Vec<_> = (0..2)
        .map(|_| {
            team(work, project, &predict, &[])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .collect();
    let mut builds = 0;
    for output in &outputs {
        assert_ok("predict --build auto", output);
        let value: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            &value, expected,
            "the rebuilt chain gives the logged output"
        );
        builds += text(&output.stderr)
            .matches("building `team-chains` from the model's code")
            .count();
    }
    assert_eq!(builds, 1, "two concurrent predicts build once");

    // A cache hit starts no cargo: a cargo that does not exist is never missed.
    let no_cargo = [("CARGO", "/nonexistent/cargo")];
    let hit = team(
        work,
        project,
        &[&predict[..], &["--build", "cargo"]].concat(),
        &no_cargo,
    )
    .output()
    .unwrap();
    assert_ok("predict --build cargo from the cache", &hit);
    assert_eq!(
        &serde_json::from_slice::<Value>(&hit.stdout).unwrap(),
        expected
    );

    // `replay` hands over the same way: the artifact's own code (from the cache) answers its
    // recorded LLM calls offline and reproduces the logged output; this binary's edited chain
    // is refused by `--build local`.
    let replay = ["replay", "-m", "models:/haiku@champion"];
    let replayed = team(
        work,
        project,
        &[&replay[..], &["--build", "cargo"]].concat(),
        &no_cargo,
    )
    .output()
    .unwrap();
    assert_ok("replay --build cargo from the cache", &replayed);
    assert!(
        text(&replayed.stdout).ends_with("identical\n"),
        "{}",
        text(&replayed.stdout)
    );
    let local = team(
        work,
        project,
        &[&replay[..], &["--build", "local"]].concat(),
        &[],
    )
    .output()
    .unwrap();
    // Exit 2: it cannot replay at all (1 is for an output that differs).
    assert_eq!(local.status.code(), Some(2));
    assert!(text(&local.stderr).contains("not the code that was logged"));

    // An input read from a pipe is passed on to the compiled binary, not read twice.
    let mut piped = team(
        work,
        project,
        &[
            "predict",
            "-m",
            "models:/haiku@champion",
            "--input-file",
            "/dev/stdin",
        ],
        &no_cargo,
    )
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    {
        use std::io::Write;
        let mut stdin = piped.stdin.take().unwrap();
        stdin.write_all(br#"{"topic": "rust"}"#).unwrap();
    }
    let piped = piped.wait_with_output().unwrap();
    assert_ok("predict --input-file /dev/stdin handed over", &piped);
    assert_eq!(
        &serde_json::from_slice::<Value>(&piped.stdout).unwrap(),
        expected
    );

    serve_answers_from_the_compiled_binary(work, project, expected);

    // A tampered snapshot file is refused before any build (cargo is never reached).
    let cached: Vec<PathBuf> = std::fs::read_dir(work.join("cache"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("MLmodel").is_file())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let tampered = work.join("tampered");
    copy_tree(&cached[0], &tampered);
    let main_rs = tampered.join("code/src/main.rs");
    let mut source = std::fs::read_to_string(&main_rs).unwrap();
    source.push_str("\n// changed\n");
    std::fs::write(&main_rs, source).unwrap();
    let tampered_uri = tampered.display().to_string();
    let refused = team(
        work,
        project,
        &[
            "predict",
            "-m",
            &tampered_uri,
            "--input",
            "{}",
            "--build",
            "cargo",
        ],
        &no_cargo,
    )
    .output()
    .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("code/") && !stderr.contains("cargo is not installed"),
        "{stderr}"
    );

    // No cargo for a build that is needed: one line saying what to do.
    let untouched = work.join("untouched");
    copy_tree(&cached[0], &untouched);
    let untouched_uri = untouched.display().to_string();
    let nocache = work.join("empty-builds");
    let nocache = nocache.display().to_string();
    let missing = team(
        work,
        project,
        &[
            "predict",
            "-m",
            &untouched_uri,
            "--input",
            r#"{"topic": "x"}"#,
            "--build",
            "cargo",
        ],
        &[
            ("CARGO", "/nonexistent/cargo"),
            ("CHAINLOG_BUILD_DIR", &nocache),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let stderr = text(&missing.stderr);
    assert!(
        stderr.contains("cargo is not installed") && stderr.contains("--build local"),
        "{stderr}"
    );

    // Code on disk changed after the binary was built: logged as it is, its snapshot does
    // not compile; the error names the artifact and cargo's first error, nothing is cached.
    std::fs::create_dir_all(project.join("src/bin")).unwrap();
    std::fs::write(
        project.join("src/bin/extra.rs"),
        "fn main() { let x: u8 = \"nope\"; }\n",
    )
    .unwrap();
    let logged = team(
        work,
        project,
        &[
            "log",
            "haiku",
            "--no-validate",
            "--registered-model",
            "broken",
            "--json",
        ],
        &[],
    )
    .output()
    .unwrap();
    assert_ok("log of a crate that no longer compiles", &logged);
    let entries_before = std::fs::read_dir(work.join("cache/builds"))
        .unwrap()
        .count();
    let failed = team(
        work,
        project,
        &[
            "predict",
            "-m",
            "models:/broken/1",
            "--input",
            r#"{"topic": "x"}"#,
            "--build",
            "cargo",
            "--quiet",
        ],
        &[],
    )
    .output()
    .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let stderr = text(&failed.stderr);
    assert!(
        stderr.contains("failed to build the code of the model at"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error[E0308]") && stderr.contains("extra.rs"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(work.join("cache/builds"))
            .unwrap()
            .count(),
        entries_before
    );
    std::fs::remove_dir_all(project.join("src/bin")).unwrap();
}

/// `serve --build cargo` hands over to the compiled binary, which keeps the port and answers
/// MLflow's scoring protocol with the logged output.
fn serve_answers_from_the_compiled_binary(work: &Path, project: &Path, expected: &Value) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut child = team(
        work,
        project,
        &[
            "serve",
            "-m",
            "models:/haiku@champion",
            "--port",
            "0",
            "--build",
            "cargo",
        ],
        &[],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let address = url.trim().trim_start_matches("http://").to_owned();
    let body = r#"{"dataframe_records": [{"topic": "rust"}]}"#;
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "POST /invocations HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let json_body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let value: Value = serde_json::from_str(json_body).unwrap();
    assert_eq!(&value["predictions"][0], expected, "{value}");
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

/// `mlflow.pyfunc.load_model("models:/haiku@champion").predict(df)` of the team's model gives
/// the logged output, after the chain was edited in the crate: with `CHAINLOG_BIN` naming
/// chainlog's own binary (which does not hold the team's chain: its worker hands over to the
/// model's compiled crate, from the build cache), and with no chainlog binary anywhere but
/// cargo on `PATH` (the loader checks the snapshot's hash and builds it with cargo into a fresh
/// build cache, where chainlog's `--build cargo` finds it).
fn pyfunc_runs_the_team_chain(work: &Path, project: &Path, expected: &Value) {
    let env = crate::support::python_env::provision(
        "mlflow",
        &root().join("tests/python/requirements-mlflow.txt"),
    );
    let tracking = format!("sqlite:///{}", project.join("mlflow.db").display());
    let args = serde_json::json!({"cases": [{"tracking_uri": tracking,
        "model_uri": "models:/haiku@champion", "rows": [{"topic": "rust"}]}]});
    let venv_bin = env.python().parent().unwrap().display().to_string();
    let cargo_bin = which("cargo");
    assert!(
        !cargo_bin.join("chainlog").exists(),
        "this test needs a cargo folder without chainlog"
    );
    let fresh_builds = work.join("pyfunc-builds");
    let path = format!("{venv_bin}:{}:/usr/bin:/bin", cargo_bin.display());
    let runs: [(&str, Vec<EnvVar>); 2] = [
        (
            "CHAINLOG_BIN=chainlog, handed over to the compiled crate",
            vec![(
                "CHAINLOG_BIN",
                Some(env!("CARGO_BIN_EXE_chainlog").to_owned()),
            )],
        ),
        (
            "no chainlog binary, built by the loader with cargo",
            vec![
                ("CHAINLOG_BIN", None),
                ("PATH", Some(path.clone())),
                (
                    "CHAINLOG_BUILD_DIR",
                    Some(fresh_builds.display().to_string()),
                ),
            ],
        ),
    ];
    for (what, vars) in runs {
        let mut command = env.command();
        command
            .arg(root().join("tests/python/pyfunc_check.py"))
            .arg("predict")
            .arg(args.to_string())
            .current_dir(project)
            .env("CHAINLOG_CACHE_DIR", work.join("cache"))
            .env("CHAINLOG_BUILD_PROFILE", "dev")
            .env("CHAINLOG_BUILD_TARGET_DIR", target_dir())
            .env("CARGO_NET_OFFLINE", "true")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("OPENAI_API_KEY")
            .env_remove("MLFLOW_TRACKING_URI");
        for (name, value) in vars {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let output = command.output().unwrap();
        assert_ok(&format!("pyfunc predict ({what})"), &output);
        let stdout = text(&output.stdout);
        let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(
            seen["results"][0]["predictions"],
            serde_json::json!([expected]),
            "{what}"
        );
    }
    let built = std::fs::read_dir(&fresh_builds)
        .unwrap()
        .filter_map(Result::ok)
        .any(|entry| entry.path().join("BUILT").is_file());
    assert!(built, "the loader stored its build in the build cache");
}

/// A variable to set (`Some`) or remove (`None`) for one run.
type EnvVar = (&'static str, Option<String>);

/// The folder holding `program` on `PATH`.
fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| dir.join(program).is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}
