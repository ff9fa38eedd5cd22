//! The one way a chain is built: (chain, config, prompts, endpoint) → a running chain. `run`
//! (prompts from the project, or the Prompt Registry), `log`'s validation of the input example,
//! and `predict`/`serve` (prompts and config from the artifact, via [`super::rebuild`]) all
//! come through [`build_chain`].

use std::path::Path;

use super::{LogError, load_prompts};
use crate::{
    chain::{BuildContext, BuiltChain, ChainEntry, ChainError, EnvReader, openai_factory},
    config::{ChainConfig, LlmOverrides},
    prompt::PromptSet,
    store::{TrackingStore, TrackingUri, open_store},
};

/// Builds `entry` with `config` and `prompts`, LLM clients for the endpoint `env` names
/// (`OPENAI_BASE_URL`, `OPENAI_API_KEY`, `${ENV}` references), `overrides` on top.
///
/// # Errors
///
/// A missing environment variable (named), a bad config section, or the chain's own refusal.
pub fn build_chain(
    entry: &ChainEntry,
    config: &ChainConfig,
    prompts: PromptSet,
    env: EnvReader,
    overrides: LlmOverrides,
) -> Result<BuiltChain, ChainError> {
    let ctx = BuildContext::with_prompts(
        entry.name(),
        config,
        prompts,
        env,
        overrides,
        openai_factory(),
    )?;
    entry.build(&ctx)
}

/// Builds `entry` from a project's files, as `chainlog run` does: its prompts from
/// `prompts_dir`, or from the Prompt Registry of the store `tracking` names for `prompts:/…`
/// entries (opened only then; without a store such entries are refused).
///
/// # Errors
///
/// A prompt that cannot be loaded, an unreachable store for registry prompts, and those of
/// [`build_chain`].
pub async fn build_from_files(
    entry: &ChainEntry,
    config: &ChainConfig,
    prompts_dir: &Path,
    tracking: Option<&TrackingUri>,
    env: EnvReader,
    overrides: LlmOverrides,
) -> Result<BuiltChain, LogError> {
    let store: Option<std::sync::Arc<dyn TrackingStore>> = match tracking {
        Some(uri) if uses_prompt_registry(config) => Some(open_store(uri)?),
        _ => None,
    };
    let (prompts, _) = load_prompts(config, prompts_dir, store.as_deref()).await?;
    Ok(build_chain(entry, config, prompts, env, overrides)?)
}

/// Whether the config names a prompt in MLflow's Prompt Registry (`prompts:/…`).
pub(super) fn uses_prompt_registry(config: &ChainConfig) -> bool {
    crate::chain::prompt_entries(config)
        .values()
        .any(|path| path.starts_with("prompts:/"))
}
