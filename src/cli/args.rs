//! Argument groups several commands share, so each option is spelled and documented once.

use std::{ffi::OsString, path::PathBuf};

use anyhow::Context;
use clap::Args;

use crate::{
    artifact::{LoadedArtifact, Needs, VerifyingKey},
    chain::ChainRegistry,
    config::ChainConfig,
    project::{CompiledCrate, Project},
    runner::{
        BuildMode, CompileOptions, Endpoint, Integrity, ModelCode, Rebuilt, hand_over,
        locate_model_code, rebuild_model,
    },
    store::TrackingUri,
};

/// Where a chain's files are: the project (found like cargo finds a package) or explicit
/// files. Used by `run` and `log`.
#[derive(Debug, Args)]
pub struct ChainFilesArgs {
    /// The project (a crate holding chains/ and prompts/); default: found by walking up from
    /// the current directory to the Cargo.toml of this binary's package.
    #[arg(long, value_name = "DIR", env = "CHAINLOG_PROJECT")]
    project: Option<PathBuf>,
    /// Config file to use instead of the project's `chains/<chain>.yaml`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Folder of the prompt templates, instead of the project's `prompts/`.
    #[arg(long, value_name = "DIR")]
    prompts_dir: Option<PathBuf>,
    /// Set one config value: `--set llm.temperature=0.5` (repeatable; the key must exist).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// A chain's files, located.
#[derive(Debug)]
pub struct ChainFiles {
    /// The config, `--set` applied.
    pub config: ChainConfig,
    /// The folder the config's prompt paths are relative to.
    pub prompts_dir: PathBuf,
    /// The project, when one was found (`None` only when `--config` and `--prompts-dir` name
    /// everything and no project is around).
    pub project: Option<Project>,
}

impl ChainFilesArgs {
    /// Locates and loads the files of `chain`: flags first, then the project's defaults.
    ///
    /// # Errors
    ///
    /// No project where one is needed (the error says where it looked and which flags to
    /// pass), or a config that cannot be read or does not take a `--set`.
    pub fn load(&self, compiled: &CompiledCrate, chain: &str) -> anyhow::Result<ChainFiles> {
        let discovered = Project::discover(compiled, self.project.as_deref());
        let (project, config_path, prompts_dir) =
            match (discovered, self.config.clone(), self.prompts_dir.clone()) {
                (Ok(project), config, prompts_dir) => {
                    let config = config.unwrap_or_else(|| project.config_path(chain));
                    let prompts_dir = prompts_dir.unwrap_or_else(|| project.prompts_dir());
                    (Some(project), config, prompts_dir)
                }
                // Both files named: no project is needed.
                (Err(_), Some(config), Some(prompts_dir)) if self.project.is_none() => {
                    (None, config, prompts_dir)
                }
                (Err(error), _, _) => return Err(error.into()),
            };
        let config = ChainConfig::load(chain, Some(&config_path), &self.set)?;
        Ok(ChainFiles {
            config,
            prompts_dir,
            project,
        })
    }
}

/// A logged model and how to load it. Used by `predict`, `serve` and `replay`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// The model: runs:/<run_id>/<name>, models:/<model_id>, models:/<name>/<version>,
    /// models:/<name>@<alias>, or a local directory.
    #[arg(short = 'm', long = "model-uri", value_name = "URI")]
    pub model_uri: String,
    /// Override one value of the logged config (`--set llm.temperature=0.5`; the key must exist).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Tracking URI (default: MLFLOW_TRACKING_URI, else mlflow.db at the project root, else
    /// sqlite:///mlflow.db).
    #[arg(long, value_name = "URI")]
    pub tracking_uri: Option<String>,
    /// Refuse the model unless its artifact digest (the SHA-256 of its MLmodel, printed by
    /// `log` and when a local directory loads) is this one (`sha256:` prefix optional).
    #[arg(long, value_name = "SHA256", value_parser = parse_digest)]
    pub expect_digest: Option<String>,
    /// Refuse the model unless its `model.sig` (OpenSSF Model Signing) verifies with this EC
    /// P-256 public key (PEM) and every file is as signed.
    #[arg(long, value_name = "PUB")]
    pub verify_key: Option<PathBuf>,
    #[command(flatten)]
    pub build: BuildArgs,
}

impl ModelArgs {
    /// The tracking store the model is read from (and its traces go to, and `replay --trace`
    /// reads a trace from).
    ///
    /// # Errors
    ///
    /// A URI chainlog does not know.
    pub fn tracking(&self, compiled: &CompiledCrate) -> anyhow::Result<TrackingUri> {
        tracking_uri(self.tracking_uri.as_deref(), compiled)
    }

    /// Fetches and verifies the model, then either rebuilds its chain in this binary (returned
    /// with the endpoint it talks to) or — when the artifact's own code must be compiled —
    /// hands the command (`hand_over_args`, this process's arguments as the command needs them
    /// passed on) over to the compiled binary, which never returns on Unix.
    ///
    /// # Errors
    ///
    /// Those of [`locate_model_code`] and [`rebuild_model`]; a binary that cannot be started.
    pub async fn load<'r>(
        &self,
        registry: &'r ChainRegistry,
        compiled: &CompiledCrate,
        hand_over_args: Vec<OsString>,
    ) -> anyhow::Result<(Rebuilt<'r>, Endpoint)> {
        let artifact = self
            .locate_for(registry, compiled, hand_over_args, Needs::Run)
            .await?;
        let endpoint = super::endpoint().await?;
        let model = rebuild_model(registry, &self.model_uri, artifact, &self.set, &endpoint)?;
        Ok((model, endpoint))
    }

    /// Fetches and verifies the model (every hash, the store's digest record, `--expect-digest`,
    /// `--verify-key`) and returns it when this binary runs its code; when the artifact's own
    /// code must be compiled, hands the command over to the compiled binary (never returns on
    /// Unix). Used by `replay`, which answers the chain's LLM calls itself.
    ///
    /// # Errors
    ///
    /// Those of [`locate_model_code`]; a binary that cannot be started.
    pub async fn locate(
        &self,
        registry: &ChainRegistry,
        compiled: &CompiledCrate,
        hand_over_args: Vec<OsString>,
    ) -> anyhow::Result<LoadedArtifact> {
        self.locate_for(registry, compiled, hand_over_args, Needs::Replay)
            .await
    }

    /// [`locate`](Self::locate), fetching and verifying what `needs` says of a model in a
    /// store (all of it when its code is compiled).
    async fn locate_for(
        &self,
        registry: &ChainRegistry,
        compiled: &CompiledCrate,
        hand_over_args: Vec<OsString>,
        needs: Needs,
    ) -> anyhow::Result<LoadedArtifact> {
        let integrity = Integrity {
            expect_digest: self.expect_digest.clone(),
            verify_key: self
                .verify_key
                .as_deref()
                .map(VerifyingKey::from_pem_file)
                .transpose()?,
        };
        let tracking = tracking_uri(self.tracking_uri.as_deref(), compiled)?;
        let code = locate_model_code(
            registry,
            &self.model_uri,
            &tracking,
            self.build.build,
            &self.build.options(),
            &integrity,
            needs,
        )
        .await?;
        match code {
            ModelCode::ThisBinary(artifact) => Ok(*artifact),
            ModelCode::Compiled(model) => {
                let code = hand_over(&model.binary, &model.artifact, hand_over_args)?;
                std::process::exit(code)
            }
        }
    }
}

/// How a logged chain is rebuilt. Used by `predict` and `serve`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// `local`: the chain in this binary (refused when its code differs from what was logged);
    /// `cargo`: compile the artifact's own code (cached by its hash) and hand the command over
    /// to it; `auto`: local when this binary holds the logged code, else cargo.
    #[arg(long, value_enum, default_value_t = BuildMode::Auto)]
    pub build: BuildMode,
    /// Cargo profile of `--build cargo` (default release).
    #[arg(long, value_name = "PROFILE", env = "CHAINLOG_BUILD_PROFILE")]
    pub build_profile: Option<String>,
    /// Build with cargo's offline mode: no registry access.
    #[arg(long)]
    pub offline: bool,
    /// Hide cargo's own output.
    #[arg(long, short)]
    pub quiet: bool,
}

impl BuildArgs {
    fn options(&self) -> CompileOptions {
        let mut options = CompileOptions::from_env();
        if self.build_profile.is_some() {
            options.profile.clone_from(&self.build_profile);
        }
        options.offline = self.offline;
        options.quiet = self.quiet;
        options
    }
}

/// Where to log. Used by `log` and `prompts push`.
#[derive(Debug, Args)]
pub struct TrackingArgs {
    /// Tracking URI: sqlite:///PATH or http(s)://HOST[:PORT] (default: MLFLOW_TRACKING_URI,
    /// else sqlite:///mlflow.db).
    #[arg(long, value_name = "URI")]
    pub tracking_uri: Option<String>,
}

impl TrackingArgs {
    /// The tracking URI: the flag, else `MLFLOW_TRACKING_URI`, else `mlflow.db` at the root of
    /// the project the command runs in (the current directory outside one).
    ///
    /// # Errors
    ///
    /// A URI chainlog does not know.
    pub fn resolve(&self, compiled: &CompiledCrate) -> anyhow::Result<TrackingUri> {
        tracking_uri(self.tracking_uri.as_deref(), compiled)
    }
}

fn tracking_uri(given: Option<&str>, compiled: &CompiledCrate) -> anyhow::Result<TrackingUri> {
    let project = Project::enclosing(compiled);
    Ok(TrackingUri::resolve_in(
        given,
        project.as_ref().map(Project::root),
    )?)
}

/// The input of one run. Used by `run` and `predict`.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// The input as JSON (checked against the chain's input schema).
    #[arg(
        long,
        conflicts_with = "input_file",
        required_unless_present = "input_file"
    )]
    pub input: Option<String>,
    /// A file holding the input JSON (for `predict` with --output: a JSONL file of rows).
    #[arg(long, value_name = "FILE")]
    pub input_file: Option<PathBuf>,
}

impl InputArgs {
    /// This process's arguments (without the program name) for a hand-over to another binary
    /// after [`read_one`](Self::read_one) consumed the input: an `--input-file` that cannot be
    /// read twice (a pipe, `/dev/stdin`) is passed on as `--input <text>`.
    pub fn hand_over_args(&self, input: Option<&serde_json::Value>) -> Vec<OsString> {
        let args: Vec<OsString> = std::env::args_os().skip(1).collect();
        let rereadable = self
            .input_file
            .as_deref()
            .is_none_or(|path| std::fs::metadata(path).is_ok_and(|meta| meta.is_file()));
        let (false, Some(input)) = (rereadable, input) else {
            return args;
        };
        let mut out = Vec::with_capacity(args.len());
        let mut skip_next = false;
        for arg in args {
            if skip_next {
                skip_next = false;
                continue;
            }
            let text = arg.to_string_lossy();
            if text == "--input-file" {
                skip_next = true;
                continue;
            }
            if text.starts_with("--input-file=") {
                continue;
            }
            out.push(arg);
        }
        out.push(OsString::from("--input"));
        out.push(OsString::from(input.to_string()));
        out
    }

    /// The one input, parsed: `--input` or the file's content.
    ///
    /// # Errors
    ///
    /// An unreadable file (named) or text that is not JSON.
    pub fn read_one(&self) -> anyhow::Result<serde_json::Value> {
        let text = match (&self.input, &self.input_file) {
            (Some(text), _) => text.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("failed to read the input file `{}`", path.display()))?,
            (None, None) => anyhow::bail!("give the input with --input JSON or --input-file FILE"),
        };
        serde_json::from_str(&text).context("the input is not valid JSON")
    }
}

/// A SHA-256 digest as `--expect-digest` takes it: 64 hex digits, `sha256:` prefix optional;
/// returned lower-case without the prefix.
fn parse_digest(value: &str) -> Result<String, String> {
    let digest = value.trim();
    let digest = digest.strip_prefix("sha256:").unwrap_or(digest);
    if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(digest.to_ascii_lowercase())
    } else {
        Err(format!(
            "`{value}` is not a SHA-256 digest: expected 64 hex digits (`sha256:` prefix optional)"
        ))
    }
}
