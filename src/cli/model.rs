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
    overrides_from_flags: &[String],
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
    let mut overrides = env_overrides()?;
    overrides.extend_from_slice(overrides_from_flags);
    rebuild(
        registry,
        &dir,
        &overrides,
        endpoint.env.clone(),
        openai_factory(),
    )
    .with_context(|| format!("failed to load model `{uri}`"))
}

/// The environment variables through which MLflow overrides a logged config at load time
/// (`mlflow.pyfunc.load_model` and `mlflow models serve`): a JSON object of values for keys
/// the logged config has. Flags (`--set`) apply after them.
const CONFIG_OVERRIDE_VARS: [&str; 2] = ["MLFLOW_PYFUNC_INFERENCE_CONFIG", "SERVING_MODEL_CONFIG"];

/// `--set`-style assignments from [`CONFIG_OVERRIDE_VARS`].
fn env_overrides() -> anyhow::Result<Vec<String>> {
    let mut assignments = Vec::new();
    for name in CONFIG_OVERRIDE_VARS {
        let Ok(text) = std::env::var(name) else {
            continue;
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{name} is not a JSON object"))?;
        let Some(object) = value.as_object() else {
            anyhow::bail!("{name} must be a JSON object of config values");
        };
        flatten(object, "", &mut assignments);
    }
    Ok(assignments)
}

/// `{"llm": {"temperature": 0.5}}` → `llm.temperature=0.5`.
fn flatten(
    object: &serde_json::Map<String, serde_json::Value>,
    prefix: &str,
    out: &mut Vec<String>,
) {
    for (key, value) in object {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            serde_json::Value::Object(inner) => flatten(inner, &path, out),
            serde_json::Value::String(text) => out.push(format!("{path}={text}")),
            other => out.push(format!("{path}={other}")),
        }
    }
}
