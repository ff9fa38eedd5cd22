//! `chainlog prompts push <name>`: register a prompt from `prompts/` as a new version in
//! MLflow's Prompt Registry, so chain configs can name it as `prompts:/<name>/<version>`.

use std::{io::Write, path::PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use super::args::TrackingArgs;
use crate::{
    project::{CompiledCrate, Project},
    prompt::PromptTemplate,
    store::open_store,
};

/// `chainlog prompts …`.
#[derive(Debug, Args)]
pub struct PromptsArgs {
    #[command(subcommand)]
    command: PromptsCommand,
}

#[derive(Debug, Subcommand)]
enum PromptsCommand {
    /// Register `prompts/<name>` (a `.hbs` file or a chat folder) as a new prompt version.
    Push(PushArgs),
}

/// Options of `chainlog prompts push`.
#[derive(Debug, Args)]
struct PushArgs {
    /// The prompt: `prompts/<name>.hbs` or the folder `prompts/<name>/`.
    name: String,
    /// Folder of the prompt templates (default: the project's `prompts/`).
    #[arg(long, value_name = "DIR")]
    prompts_dir: Option<PathBuf>,
    /// The project (default: found by walking up from the current directory).
    #[arg(long, value_name = "DIR", env = "CHAINLOG_PROJECT")]
    project: Option<PathBuf>,
    /// Name in the registry (default: the prompt's name).
    #[arg(long, value_name = "NAME")]
    registry_name: Option<String>,
    /// Commit message of the new version.
    #[arg(long, short)]
    message: Option<String>,
    #[command(flatten)]
    tracking: TrackingArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `chainlog prompts …`.
///
/// # Errors
///
/// A prompt that cannot be loaded, or a store that refuses.
pub async fn run(compiled: &CompiledCrate, args: PromptsArgs) -> anyhow::Result<()> {
    let PromptsCommand::Push(args) = args.command;
    let prompts_dir = match &args.prompts_dir {
        Some(dir) => dir.clone(),
        None => Project::discover(compiled, args.project.as_deref())?.prompts_dir(),
    };
    let file = prompts_dir.join(format!("{}.hbs", args.name));
    let path = if file.is_file() {
        file
    } else {
        prompts_dir.join(&args.name)
    };
    let template = PromptTemplate::from_path(&args.name, &path)?;
    let name = args.registry_name.as_deref().unwrap_or(&args.name);
    let uri = args.tracking.resolve(compiled)?;
    let store = open_store(&uri)?;
    let version = store
        .register_prompt(
            name,
            template.kind().as_str(),
            &template.registry_template(),
            args.message.as_deref(),
        )
        .await?;
    let mut out = std::io::stdout().lock();
    let uri_text = format!("prompts:/{}/{}", version.name, version.version);
    if args.json {
        let value = serde_json::json!({"name": version.name, "version": version.version, "kind": version.kind, "uri": uri_text});
        writeln!(out, "{value}").context("failed to print the result")?;
    } else {
        writeln!(out, "{uri_text}").context("failed to print the result")?;
    }
    Ok(())
}
