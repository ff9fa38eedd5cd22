//! Rebuilding a logged chain from its artifact — "reconstruct from code", local build: verify
//! every hash in MLmodel against the files, find the chain in this binary's registry by name
//! *and* code hash, and build it with the artifact's config and prompts (never the working
//! tree's), secrets from the environment. Anything else than what was logged is refused.

use std::path::Path;

use super::build::build_chain;
use crate::{
    artifact::{ArtifactError, LoadedArtifact},
    chain::{BuiltChain, ChainEntry, ChainError, ChainRegistry, EnvReader},
    config::{ChainConfig, ConfigError, LlmOverrides},
    prompt::{PromptError, PromptSet, PromptTemplate},
};

/// Why a logged chain cannot be rebuilt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RebuildError {
    /// The artifact is unreadable, of an unknown format, or a file does not match its hash.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// This binary has no chain of that name.
    #[error(
        "the model was logged from chain `{chain}` (code sha256 {logged}), which this binary does not have; \
         {remedy}, or use --build cargo to compile the model's own code"
    )]
    MissingChain {
        /// The chain.
        chain: String,
        /// The logged code's hash.
        logged: String,
        /// How to get a binary that holds it: check out the logged git commit, when the
        /// artifact records one.
        remedy: String,
    },
    /// This binary's chain of that name is different code.
    #[error(
        "chain `{chain}` in this binary is not the code that was logged: logged sha256 {logged}, \
         this binary's {compiled}; {remedy}, or use --build cargo to compile the model's own code"
    )]
    CodeMismatch {
        /// The chain.
        chain: String,
        /// The logged code's hash.
        logged: String,
        /// This binary's code hash.
        compiled: String,
        /// How to get a binary that holds it: check out the logged git commit, when the
        /// artifact records one.
        remedy: String,
    },
    /// The logged config could not be read or an override does not fit it.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A logged prompt could not be loaded.
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// The chain refused to build (a missing environment variable, ...).
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// A logged chain, rebuilt.
#[derive(Debug)]
pub struct Rebuilt<'r> {
    /// The registry entry it matched (name and code hash).
    pub entry: &'r ChainEntry,
    /// The built chain.
    pub chain: BuiltChain,
    /// The verified artifact.
    pub artifact: LoadedArtifact,
    /// The logged config the chain was built with, `--set` overrides applied (its origin is
    /// the artifact's `model_config.yaml`).
    pub config: ChainConfig,
}

/// Verifies the artifact in `dir` and rebuilds its chain from `registry`. `overrides` are
/// `--set key=value` assignments, allowed only for keys the logged config has.
///
/// # Errors
///
/// See [`RebuildError`]: a tampered file (named), an unknown `format_version`, a chain this
/// binary lacks or has in another version (both hashes named), a bad override.
pub fn rebuild<'r>(
    registry: &'r ChainRegistry,
    dir: &Path,
    overrides: &[String],
    env: EnvReader,
) -> Result<Rebuilt<'r>, RebuildError> {
    let artifact = LoadedArtifact::read(dir)?;
    artifact.verify()?;
    rebuild_verified(registry, artifact, overrides, env)
}

/// Whether `registry` holds the artifact's chain with the logged code hash (what `--build
/// auto` asks before choosing this binary over a cargo build).
pub fn holds_logged_chain(registry: &ChainRegistry, artifact: &LoadedArtifact) -> bool {
    let flavor = artifact.flavor();
    registry
        .get(&flavor.chain)
        .is_ok_and(|entry| entry.sha256() == flavor.code.sha256)
}

/// [`rebuild`] for an artifact already read and verified.
///
/// # Errors
///
/// As [`rebuild`], but for the hash checks done before.
pub fn rebuild_verified<'r>(
    registry: &'r ChainRegistry,
    artifact: LoadedArtifact,
    overrides: &[String],
    env: EnvReader,
) -> Result<Rebuilt<'r>, RebuildError> {
    let dir = artifact.dir().to_path_buf();
    let dir = dir.as_path();
    let flavor = artifact.flavor();
    let remedy = flavor.git_commit.as_deref().map_or_else(
        || "rebuild this binary from the code that logged it".to_owned(),
        |commit| {
            format!("check out the commit that logged it ({commit}) and rebuild this binary there")
        },
    );
    let entry = registry
        .get(&flavor.chain)
        .map_err(|_| RebuildError::MissingChain {
            chain: flavor.chain.clone(),
            logged: flavor.code.sha256.clone(),
            remedy: remedy.clone(),
        })?;
    if entry.sha256() != flavor.code.sha256 {
        return Err(RebuildError::CodeMismatch {
            chain: flavor.chain.clone(),
            logged: flavor.code.sha256.clone(),
            compiled: entry.sha256().to_owned(),
            remedy,
        });
    }
    let mut config = artifact.config()?;
    for assignment in overrides {
        config.set(assignment)?;
    }
    let mut prompts = PromptSet::new();
    for record in &flavor.prompts {
        let path = prompt_path(
            dir,
            record
                .files
                .first()
                .map(|f| f.path.as_str())
                .unwrap_or_default(),
        );
        prompts.insert(
            record.name.clone(),
            PromptTemplate::from_path(&record.name, &path)?,
        );
    }
    let chain = build_chain(entry, &config, prompts, env, LlmOverrides::default())?;
    Ok(Rebuilt {
        entry,
        chain,
        artifact,
        config,
    })
}

/// Where a logged prompt is: a chat prompt's files are named `NN-<role>.hbs` inside its folder
/// (`prompts/x/01-system.hbs` → `prompts/x`); any other file is a text prompt itself.
fn prompt_path(dir: &Path, first_file: &str) -> std::path::PathBuf {
    let file = dir.join(first_file);
    let is_chat_message = file
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.split_once('-'))
        .is_some_and(|(number, _)| {
            !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())
        });
    match file.parent() {
        Some(folder) if is_chat_message => folder.to_path_buf(),
        _ => file,
    }
}
