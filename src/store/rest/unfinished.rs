//! What `gc` looks for on a tracking server: chainlog's runs left `RUNNING` and logged models
//! left `PENDING`, found as MLflow's client finds them (`experiments/search` for the active
//! experiments, then `runs/search` and `logged-models/search` per page of experiments, every
//! page followed), filtered to entries tagged `chainlog.version`.

use serde_json::{Value, json};

use super::{http::Transport, wire::LoggedModelInfo};
use crate::store::{CHAINLOG_VERSION_TAG, StoreError, Unfinished, UnfinishedRun};

/// Results per page (MLflow's maximum for the three searches is 1000 or more).
const PAGE: u32 = 1000;
/// `runs/search` takes at most 100 experiment ids per request (`SEARCH_MAX_RESULTS`-style limit).
const EXPERIMENTS_PER_SEARCH: usize = 100;

/// See [`TrackingStore::find_unfinished`](crate::store::TrackingStore::find_unfinished).
pub(super) async fn find(
    http: &Transport,
    experiment: Option<&str>,
    before_ms: i64,
) -> Result<Unfinished, StoreError> {
    let experiments = active_experiments(http, experiment).await?;
    let mut found = Unfinished::default();
    for ids in experiments.chunks(EXPERIMENTS_PER_SEARCH) {
        let filter =
            format!("attributes.status = 'RUNNING' AND attributes.start_time < {before_ms}");
        for run in pages(http, "runs/search", "api/2.0/mlflow/runs/search", "runs", |token| {
            json!({"experiment_ids": ids, "filter": filter, "max_results": PAGE, "page_token": token})
        })
        .await?
        {
            if has_tag(&run["data"]["tags"]) {
                let info = &run["info"];
                found.runs.push(UnfinishedRun {
                    run_id: text(&info["run_id"]),
                    experiment_id: text(&info["experiment_id"]),
                    run_name: text(&info["run_name"]),
                    start_time_ms: number(&info["start_time"]),
                });
            }
        }
        // MLflow 3.17.2 stores the status as an integer, and `status = 'PENDING'` matches
        // nothing: the status is checked on each model instead.
        let filter = format!("creation_time < {before_ms}");
        for model in pages(
            http,
            "logged-models/search",
            "api/2.0/mlflow/logged-models/search",
            "models",
            |token| json!({"experiment_ids": ids, "filter": filter, "max_results": PAGE, "page_token": token}),
        )
        .await?
        {
            let pending = model["info"]["status"] == "LOGGED_MODEL_PENDING";
            if pending && has_tag(&model["info"]["tags"]) {
                let info: LoggedModelInfo =
                    serde_json::from_value(model["info"].clone()).map_err(|err| {
                        StoreError::Mlflow {
                            operation: "logged-models/search".to_owned(),
                            code: "BAD_RESPONSE".to_owned(),
                            message: format!("a logged model the server listed cannot be read: {err}"),
                        }
                    })?;
                found.models.push(info.into_model());
            }
        }
    }
    Ok(found)
}

/// The ids of the active experiment named `name`, or of every active experiment.
///
/// # Errors
///
/// [`StoreError::NotFound`] naming an experiment that does not exist (a typo must not look
/// like a clean store).
async fn active_experiments(
    http: &Transport,
    name: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let filter = name.map(name_filter);
    let experiments = pages(
        http,
        "experiments/search",
        "api/2.0/mlflow/experiments/search",
        "experiments",
        |token| {
            json!({"max_results": PAGE, "view_type": "ACTIVE_ONLY", "filter": filter, "page_token": token})
        },
    )
    .await?;
    if let Some(name) = name
        && experiments.is_empty()
    {
        return Err(StoreError::NotFound {
            what: format!("active experiment `{name}`"),
        });
    }
    Ok(experiments
        .iter()
        .map(|e| text(&e["experiment_id"]))
        .collect())
}

/// MLflow's search filter for an experiment name: quoted with `'`, or with `"` when the
/// name holds a `'` (MLflow's parser takes no backslash escapes).
fn name_filter(name: &str) -> String {
    if name.contains('\'') {
        format!("name = \"{name}\"")
    } else {
        format!("name = '{name}'")
    }
}

/// Every item under `key` of every page of a search (`page_token` → `next_page_token`).
async fn pages(
    http: &Transport,
    operation: &str,
    path: &str,
    key: &str,
    request: impl Fn(Option<&str>) -> Value,
) -> Result<Vec<Value>, StoreError> {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut reply: Value = http
            .post(operation, path, &request(token.as_deref()))
            .await?;
        if let Some(Value::Array(page)) = reply.get_mut(key).map(Value::take) {
            items.extend(page);
        }
        match reply.get("next_page_token").and_then(Value::as_str) {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => return Ok(items),
        }
    }
}

/// Whether a `[{"key", "value"}]` list holds chainlog's tag.
fn has_tag(tags: &Value) -> bool {
    tags.as_array()
        .is_some_and(|tags| tags.iter().any(|t| t["key"] == CHAINLOG_VERSION_TAG))
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// An int64 as MLflow's JSON writes it (a number, or a string of digits).
fn number(value: &Value) -> i64 {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn experiment_names_are_quoted_as_mlflows_parser_reads_them() {
        assert_eq!(name_filter("chains"), "name = 'chains'");
        assert_eq!(name_filter("it's"), "name = \"it's\"");
    }
}
