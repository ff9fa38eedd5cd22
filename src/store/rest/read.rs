//! The read side of the REST store, for loading a model back, as MLflow's Python client does
//! it (MLFLOW.md §3): `GET logged-models/<id>`, `runs/get` (the run's `outputs`),
//! `registered-models/alias` or `model-versions/get` (the version's `source`,
//! `models:/<model_id>`), and the model's files (through `transfer`: the server's proxy or
//! the object store itself).
//! MLflow's `RESOURCE_DOES_NOT_EXIST` becomes [`StoreError::NotFound`].

use std::path::Path;

use super::{
    http::Transport,
    prompt::has_code,
    transfer,
    wire::{LatestVersionsReply, LoggedModelReply, ModelVersionReply, RunReply},
};
use crate::store::{LoggedModel, StoreError};

/// `err`, or [`StoreError::NotFound`] for `what` when MLflow said it does not exist.
fn not_found(err: StoreError, what: impl FnOnce() -> String) -> StoreError {
    // An unknown alias is `INVALID_PARAMETER_VALUE` "... alias ... not found" on MLflow 3.
    let alias_missing = matches!(&err, StoreError::Mlflow { code, message, .. }
        if code == "INVALID_PARAMETER_VALUE" && message.contains("not found"));
    if alias_missing || has_code(&err, "RESOURCE_DOES_NOT_EXIST") {
        StoreError::NotFound { what: what() }
    } else {
        err
    }
}

/// `GET logged-models/<id>`.
pub(super) async fn logged_model(
    http: &Transport,
    model_id: &str,
) -> Result<LoggedModel, StoreError> {
    Ok(logged_model_with_tags(http, model_id).await?.0)
}

/// The tags of `GET logged-models/<id>`.
pub(super) async fn logged_model_tags(
    http: &Transport,
    model_id: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(logged_model_with_tags(http, model_id).await?.1)
}

/// The model and its tags, from one `GET logged-models/<id>`.
pub(super) async fn logged_model_with_tags(
    http: &Transport,
    model_id: &str,
) -> Result<(LoggedModel, Vec<(String, String)>), StoreError> {
    let reply: LoggedModelReply = http
        .get(
            "logged-models/get",
            &format!("api/2.0/mlflow/logged-models/{model_id}"),
            &[],
        )
        .await
        .map_err(|err| not_found(err, || format!("logged model `{model_id}`")))?;
    let info = reply.model.info;
    let tags = info
        .tags
        .iter()
        .map(|tag| (tag.key.clone(), tag.value.clone()))
        .collect();
    Ok((info.into_model(), tags))
}

/// The run's `outputs.model_outputs`, each read with `GET logged-models/<id>`.
pub(super) async fn run_models(
    http: &Transport,
    run_id: &str,
) -> Result<Vec<LoggedModel>, StoreError> {
    let reply: RunReply = http
        .get("runs/get", "api/2.0/mlflow/runs/get", &[("run_id", run_id)])
        .await
        .map_err(|err| not_found(err, || format!("run `{run_id}`")))?;
    let mut models = Vec::new();
    for output in reply.run.outputs.model_outputs {
        models.push(logged_model(http, &output.model_id).await?);
    }
    Ok(models)
}

/// The newest version of `name`.
async fn latest_version(http: &Transport, name: &str) -> Result<ModelVersionReply, StoreError> {
    let reply: LatestVersionsReply = http
        .get(
            "registered-models/get-latest-versions",
            "api/2.0/mlflow/registered-models/get-latest-versions",
            &[("name", name)],
        )
        .await
        .map_err(|err| not_found(err, || format!("registered model `{name}`")))?;
    reply
        .model_versions
        .into_iter()
        .max_by_key(|v| v.version.parse::<u64>().unwrap_or(0))
        .map(|model_version| ModelVersionReply { model_version })
        .ok_or_else(|| StoreError::NotFound {
            what: format!("a version of registered model `{name}`"),
        })
}

/// `(version, model_id)` of `name` at `"3"`, `"@alias"`, or `"@latest"` (the newest version,
/// as MLflow's client resolves `models:/name/latest`: the highest of
/// `registered-models/get-latest-versions`).
pub(super) async fn model_version(
    http: &Transport,
    name: &str,
    version_or_alias: &str,
) -> Result<(String, String), StoreError> {
    let reply: ModelVersionReply = match version_or_alias.strip_prefix('@') {
        Some("latest") => latest_version(http, name).await?,
        Some(alias) => http
            .get(
                "registered-models/alias",
                "api/2.0/mlflow/registered-models/alias",
                &[("name", name), ("alias", alias)],
            )
            .await
            .map_err(|err| {
                not_found(err, || {
                    format!("alias `{alias}` of registered model `{name}`")
                })
            })?,
        None => http
            .get(
                "model-versions/get",
                "api/2.0/mlflow/model-versions/get",
                &[("name", name), ("version", version_or_alias)],
            )
            .await
            .map_err(|err| {
                not_found(err, || {
                    format!("version {version_or_alias} of registered model `{name}`")
                })
            })?,
    };
    let version = reply.model_version;
    match version.source.strip_prefix("models:/") {
        Some(id) if id.starts_with("m-") && !id.contains('/') => {
            Ok((version.version, id.to_owned()))
        }
        _ => Err(StoreError::BadModelUri {
            uri: format!("models:/{name}/{}", version.version),
            reason: format!(
                "its source `{}` is not an MLflow 3 logged model (models:/<model_id>)",
                version.source
            ),
        }),
    }
}

/// What a transfer of `model`'s files calls them when there are none.
fn artifacts_of(model: &LoggedModel) -> String {
    format!(
        "the artifacts of logged model `{}` at `{}`",
        model.model_id, model.artifact_uri
    )
}

/// Every file of `model` into `dest` (created), from the proxy or the object store.
pub(super) async fn download(
    http: &Transport,
    model: &LoggedModel,
    dest: &Path,
) -> Result<(), StoreError> {
    let repo = transfer::open(http, &model.artifact_uri)?;
    transfer::download_all(repo.as_ref(), dest, || artifacts_of(model)).await
}

/// Every file of `model`, listed by the proxy or the object store.
pub(super) async fn list(http: &Transport, model: &LoggedModel) -> Result<Vec<String>, StoreError> {
    let repo = transfer::open(http, &model.artifact_uri)?;
    let files = repo.list_files().await?;
    if files.is_empty() {
        return Err(StoreError::NotFound {
            what: artifacts_of(model),
        });
    }
    Ok(files)
}

/// Only `files` of `model` into `dest` (created), from the proxy or the object store.
pub(super) async fn download_files(
    http: &Transport,
    model: &LoggedModel,
    files: &[String],
    dest: &Path,
) -> Result<(), StoreError> {
    let repo = transfer::open(http, &model.artifact_uri)?;
    transfer::download_files(repo.as_ref(), files.to_vec(), dest).await
}
