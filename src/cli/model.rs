//! Loading a logged model for `predict` and `serve`: model URI → store → local copy (cached)
//! → verified artifact → this binary's chain, rebuilt with the artifact's config and prompts.

use anyhow::Context;

use super::endpoint::Endpoint;
use crate::{
    chain::{ChainRegistry, openai_factory},
    runner::{Rebuilt, rebuild},
    store::{ModelUri, TrackingUri, default_cache_dir, fetch_model, open_store},
};

/// Fetches and rebuilds the model `uri` names.
///
/// # Errors
///
/// A URI that does not resolve, a store that cannot be reached, a tampered artifact, or a
/// chain this binary does not have in the logged version.
pub async fn load<'r>(
    registry: &'r ChainRegistry,
    uri: &str,
    tracking_uri: Option<&str>,
    overrides: &[String],
    endpoint: &Endpoint,
) -> anyhow::Result<Rebuilt<'r>> {
    let model_uri = ModelUri::parse(uri)?;
    let dir = match &model_uri {
        ModelUri::LocalDir { path } => path.clone(),
        _ => {
            let store = open_store(&TrackingUri::resolve(tracking_uri)?)?;
            fetch_model(store.as_ref(), &model_uri, &default_cache_dir()?).await?
        }
    };
    rebuild(
        registry,
        &dir,
        overrides,
        endpoint.env.clone(),
        openai_factory(),
    )
    .with_context(|| format!("failed to load model `{uri}`"))
}
