//! Fixtures shared by the artifact unit tests: a tiny chain, its config and prompts, a crate
//! folder with the files a snapshot must take and the ones it must leave, and a git repo.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tempfile::TempDir;

use super::{ArtifactSpec, Provenance, SnapshotPlan, WrittenArtifact, write_artifact};
use crate::{
    chain::{BuildContext, Chain, ChainEntry, ChainError, RunContext},
    config::ChainConfig,
    prompt::{PromptSet, PromptTemplate, Role},
};

/// The source text the test chain is "compiled" from (differs from `chains/t.rs` on disk).
pub(super) const SOURCE: &str = "//! A test chain.\npub fn build() {}\n";

/// What the crate folder's `chains/t.rs` holds: an edited copy, as after a log.
pub(super) const SOURCE_ON_DISK: &str = "//! A test chain, edited since it was compiled.\n";

/// A literal secret that must never reach an artifact.
pub(super) const CANARY: &str = "sk-canary-0123456789abcdefghij";

/// The test chain's input.
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct TestInput {
    /// The text.
    #[expect(dead_code, reason = "only the schema is used")]
    pub text: String,
    /// How many.
    #[expect(dead_code, reason = "only the schema is used")]
    pub n: Option<u32>,
}

/// The test chain's output.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct TestOutput {
    /// The reply.
    pub reply: String,
}

/// A chain that echoes.
pub(super) struct TestChain;

impl Chain for TestChain {
    type Input = TestInput;
    type Output = TestOutput;

    async fn invoke(&self, _input: TestInput, _ctx: &RunContext) -> Result<TestOutput, ChainError> {
        Ok(TestOutput {
            reply: String::new(),
        })
    }
}

fn build(_ctx: &BuildContext) -> Result<TestChain, ChainError> {
    Ok(TestChain)
}

/// The registry entry of the test chain `t`.
pub(super) fn entry() -> ChainEntry {
    ChainEntry::new::<TestChain>("t", "A test chain.", "chains/t.rs", SOURCE, build)
}

/// The config, named after a file inside `crate_dir` (an absolute path that must not leak).
pub(super) fn config(crate_dir: &Path) -> ChainConfig {
    let yaml = "llm:\n  model: gpt-4o-mini\n  api_key: ${OPENAI_API_KEY}\n  base_url: ${OPENAI_BASE_URL:-https://api.openai.com/v1}\n\
                prompts:\n  greet: greet.hbs\n  qa: qa\nchain:\n  sentences: 3\n";
    ChainConfig::from_yaml(yaml, &crate_dir.join("chains/t.yaml")).unwrap()
}

/// A text prompt `greet` and a chat prompt `qa`.
pub(super) fn prompts() -> PromptSet {
    let mut set = PromptSet::new();
    set.insert(
        "greet",
        PromptTemplate::text("greet", "Hello {{text}}").unwrap(),
    );
    let qa = PromptTemplate::chat(
        "qa",
        vec![
            (Role::System, "Be brief.".into()),
            (Role::User, "{{text}}".into()),
        ],
    )
    .unwrap();
    set.insert("qa", qa);
    set
}

/// A crate folder: what a snapshot takes, plus a dotfile holding [`CANARY`], `target/`, a
/// dot-folder and a folder outside the snapshot paths.
pub(super) fn write_crate(dir: &Path) {
    let files: &[(&str, &str)] = &[
        (
            "Cargo.toml",
            "[package]\nname = \"t\"\nversion = \"0.1.0\"\n",
        ),
        ("Cargo.lock", "version = 4\n"),
        ("build.rs", "fn main() {}\n"),
        ("src/lib.rs", "//! lib\n"),
        ("chains/t.rs", SOURCE_ON_DISK),
        ("chains/t.yaml", "llm: {}\n"),
        ("prompts/greet.hbs", "Hello {{text}}\n"),
        (".env", CANARY),
        ("src/.secret", CANARY),
        (".cargo/config.toml", CANARY),
        ("target/debug/junk", "built"),
        ("data/words.txt", "a file a chain may include_str!"),
        (
            "target/CACHEDIR.TAG",
            "Signature: 8a477f597d28d172789f06886806bc55",
        ),
        ("nested/Cargo.toml", "[package]\nname = \"other\"\n"),
        ("nested/src/lib.rs", "another package"),
    ];
    for (path, text) in files {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
}

/// Makes `dir` a git repo with everything in it committed; returns the commit.
pub(super) fn git_init(dir: &Path) -> String {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args([
                "-c",
                "commit.gpgsign=false",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "init"]);
    git(&["rev-parse", "HEAD"]).trim().to_owned()
}

/// The LoggedModel id the fixture is written as.
pub(super) const MODEL_ID: &str = "m-0123456789abcdef0123456789abcdef";
/// The run id the fixture is written with.
pub(super) const RUN_ID: &str = "4af9818b43b64894b0f6c70fdd15cb45";
/// The artifact URI the fixture is written with.
pub(super) const ARTIFACT_URI: &str =
    "mlflow-artifacts:/1/models/m-0123456789abcdef0123456789abcdef/artifacts";

/// An artifact written from the fixtures, with the folders it came from.
pub(super) struct Fixture {
    /// Holds the crate folder and the artifact folder; deleted on drop.
    pub root: TempDir,
    /// The crate the chain was compiled from.
    pub crate_dir: PathBuf,
    /// The artifact folder.
    pub artifact: PathBuf,
    /// What the writer reported.
    pub written: WrittenArtifact,
}

/// Writes the fixture chain's artifact (with a crate snapshot when `with_crate`), with an
/// input and output example, a run id and an artifact URI.
pub(super) fn write_fixture(with_crate: bool) -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let crate_dir = root.path().join("crate");
    write_crate(&crate_dir);
    let artifact = root.path().join("artifact");
    let (entry, config, prompts) = (entry(), config(&crate_dir), prompts());
    let provenance = Provenance::collect(&crate_dir).unwrap();
    let plan = SnapshotPlan::collect(&crate_dir).unwrap();
    let input = json!({"text": "hello", "n": 2});
    let output = json!({"reply": "hi"});
    let mut spec = ArtifactSpec::new(&entry, &config, &prompts, MODEL_ID, &provenance)
        .with_run_id(RUN_ID)
        .with_artifact_uri(ARTIFACT_URI)
        .with_input_example(&input)
        .with_output_example(&output);
    if with_crate {
        spec = spec.with_snapshot(&plan);
    }
    let written = write_artifact(&artifact, &spec).unwrap();
    Fixture {
        root,
        crate_dir,
        artifact,
        written,
    }
}

/// Every file under `dir`, as `/`-separated relative paths, sorted.
pub(super) fn files_under(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), &format!("{name}/"), out);
            } else {
                out.push(name);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out);
    out.sort();
    out
}
