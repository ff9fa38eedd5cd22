//! Argument groups several commands share, so each option is spelled and documented once.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::{
    chain::ChainRegistry,
    config::ChainConfig,
    project::{CompiledCrate, Project},
    runner::{Endpoint, Rebuilt, load_model},
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

/// A logged model and how to load it. Used by `predict` and `serve`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// The model: runs:/<run_id>/<name>, models:/<model_id>, models:/<name>/<version>,
    /// models:/<name>@<alias>, or a local directory.
    #[arg(short = 'm', long = "model-uri", value_name = "URI")]
    pub model_uri: String,
    /// Override one value of the logged config (`--set llm.temperature=0.5`; the key must exist).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).
    #[arg(long, value_name = "URI")]
    pub tracking_uri: Option<String>,
}

impl ModelArgs {
    /// Fetches the model and rebuilds its chain for `endpoint`, the flags' overrides applied.
    ///
    /// # Errors
    ///
    /// Those of [`load_model`].
    pub async fn load<'r>(
        &self,
        registry: &'r ChainRegistry,
        compiled: &CompiledCrate,
        endpoint: &Endpoint,
    ) -> anyhow::Result<Rebuilt<'r>> {
        let tracking = tracking_uri(self.tracking_uri.as_deref(), compiled)?;
        Ok(load_model(registry, &self.model_uri, &tracking, &self.set, endpoint).await?)
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
