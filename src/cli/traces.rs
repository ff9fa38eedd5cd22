//! Where a command's traces go: the tracking store and what they link to (experiment, run,
//! LoggedModel). The export itself is [`crate::trace`]'s.

use std::time::Duration;

use crate::{
    artifact::LoadedArtifact,
    store::{TrackingUri, open_existing_store},
    trace::{TraceLink, Tracer},
};

/// Sends the traces of predictions with `artifact` to `tracking`, linked to its LoggedModel
/// and run (and the model's experiment, when the store knows the model).
pub async fn connect_for_model(tracer: &Tracer, tracking: &TrackingUri, artifact: &LoadedArtifact) {
    let mlmodel = artifact.mlmodel();
    connect(
        tracer,
        tracking,
        mlmodel.model_id.clone(),
        mlmodel.run_id.clone(),
    )
    .await;
}

/// How long the trace link's store lookups (the model's experiment, or the default one) may
/// take before the command goes on without traces: a hung tracking server must not hold up a
/// prediction that does not need it.
const LINK_TIMEOUT: Duration = Duration::from_secs(3);

/// Sends traces to `tracking` linked to `run_id` and `model_id` (when given). The store
/// lookups are bounded by [`LINK_TIMEOUT`]; past it, one warning and no traces.
pub async fn connect(
    tracer: &Tracer,
    tracking: &TrackingUri,
    model_id: Option<String>,
    run_id: Option<String>,
) {
    if !tracer.is_enabled() {
        return;
    }
    let link = match tokio::time::timeout(LINK_TIMEOUT, link(tracking, model_id, run_id)).await {
        Ok(Some(link)) => link,
        Ok(None) => return,
        Err(_) => {
            tracing::warn!(
                "traces are not kept: the tracking store {tracking} did not answer within {} s",
                LINK_TIMEOUT.as_secs()
            );
            return;
        }
    };
    if let Err(error) = tracer.connect(tracking, link) {
        tracing::warn!("traces are not kept: {error}");
    }
}

/// The experiment, run and model traces link to, looked up in `tracking`; `None` (said why)
/// when traces cannot be kept there.
async fn link(
    tracking: &TrackingUri,
    model_id: Option<String>,
    run_id: Option<String>,
) -> Option<TraceLink> {
    // Traces never create a store: without one they are not kept.
    let store = match open_existing_store(tracking) {
        Ok(store) => store,
        Err(error) => {
            tracing::info!("traces are not kept: {error}");
            return None;
        }
    };
    let mut experiment_id = None;
    if let Some(model_id) = &model_id
        && let Ok(model) = store.get_logged_model(model_id).await
    {
        experiment_id = Some(model.experiment_id);
    }
    let experiment_id = match experiment_id.or_else(|| env("MLFLOW_EXPERIMENT_ID")) {
        Some(id) => id,
        None => {
            let name = env("MLFLOW_EXPERIMENT_NAME").unwrap_or_else(|| "Default".to_owned());
            match store.get_or_create_experiment(&name).await {
                Ok(experiment) => experiment.id,
                Err(error) => {
                    tracing::warn!("traces are not kept: no experiment `{name}`: {error}");
                    return None;
                }
            }
        }
    };
    Some(TraceLink {
        experiment_id,
        run_id,
        model_id,
    })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}
