//! The read side of the tracking stores: a chain logged by the `chainlog` binary, fetched back
//! through `open_store` + `fetch_model` by every model URI form (`runs:/`, `models:/<id>`,
//! `models:/<name>/<version>`, `models:/<name>@<alias>`, a local directory), from a SQLite
//! store and from a real `mlflow server`; the fetched directory passes the artifact's own hash
//! check; a URI that does not resolve fails naming it; a second fetch is served by the cache.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use chainlog::{
    artifact::LoadedArtifact,
    store::{
        ModelUri, RestStore, StoreError, TrackingStore, TrackingUri, fetch_model, open_model,
        open_store,
    },
};
use serde_json::Value;

use crate::{chain_support::root, support::mlflow_server::MlflowServer};

/// A registered model name no other test (or earlier run against the shared server) uses.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// `chainlog log summarize … --registered-model <registered> --alias champion --json` in `cwd`
/// with only `env` set of the tracking variables; returns the printed JSON.
fn log_summarize(cwd: &Path, registered: &str, env: &[(&str, &str)]) -> Value {
    let config = root().join("chains/summarize.yaml");
    let prompts = root().join("prompts");
    let mut command = Command::new(env!("CARGO_BIN_EXE_chainlog"));
    command
        .args(["log", "summarize", "--config"])
        .arg(&config)
        .arg("--prompts-dir")
        .arg(&prompts)
        .args([
            "--input-example",
            r#"{"text":"x"}"#,
            "--registered-model",
            registered,
            "--alias",
            "champion",
            "--json",
        ])
        .current_dir(cwd)
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("MLFLOW_EXPERIMENT_NAME")
        .env_remove("MLFLOW_TRACKING_TOKEN");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "chainlog log failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A store every call of which fails: what a fetch served from the cache must not need.
fn unreachable_store() -> RestStore {
    RestStore::new("http://127.0.0.1:9", None)
        .unwrap()
        .with_retries(1, Duration::ZERO)
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// Fetches the logged model by every URI form and checks each answer; returns the entry.
async fn fetch_every_form(
    store: &dyn TrackingStore,
    logged: &Value,
    registered: &str,
    cache: &Path,
) -> PathBuf {
    let run_id = logged["run_id"].as_str().unwrap();
    let model_id = logged["model_id"].as_str().unwrap();
    let entry = cache.join(model_id);
    let first = fetch_model(
        store,
        &ModelUri::parse(&format!("runs:/{run_id}/summarize")).unwrap(),
        cache,
    )
    .await
    .unwrap();
    assert_eq!(first, entry);
    assert!(entry.join("MLmodel").is_file());
    LoadedArtifact::read(&entry).unwrap().verify().unwrap();
    let stamp = modified(&entry);
    for uri in [
        format!("models:/{model_id}"),
        format!("models:/{registered}/1"),
        format!("models:/{registered}@champion"),
    ] {
        let dir = fetch_model(store, &ModelUri::parse(&uri).unwrap(), cache)
            .await
            .unwrap_or_else(|err| panic!("{uri}: {err}"));
        assert_eq!(dir, entry, "{uri}");
        LoadedArtifact::read(&dir).unwrap().verify().unwrap();
    }
    assert_eq!(modified(&entry), stamp, "later fetches reuse the entry");
    // The entry, its mark of completeness, and the model's download lock (kept: removing it
    // could let a waiter and a newcomer lock different files); no temporary folder.
    let mut entries: Vec<_> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".tags.json"))
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        vec![
            format!(".{model_id}.complete"),
            format!(".{model_id}.lock"),
            model_id.to_owned()
        ],
        "no temp left"
    );

    let local = ModelUri::parse(entry.to_str().unwrap()).unwrap();
    assert_eq!(fetch_model(store, &local, cache).await.unwrap(), entry);
    entry
}

/// URIs that parse but name nothing fail with [`StoreError::BadModelUri`] naming them.
async fn unresolved_uris_name_themselves(
    store: &dyn TrackingStore,
    registered: &str,
    cache: &Path,
) {
    for uri in [
        format!("models:/{registered}/9"),
        format!("models:/{registered}@nope"),
        format!("models:/{registered}-missing@champion"),
        "models:/m-00000000000000000000000000000000".to_owned(),
        "runs:/00000000000000000000000000000000/summarize".to_owned(),
    ] {
        let err = fetch_model(store, &ModelUri::parse(&uri).unwrap(), cache)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::BadModelUri { .. }),
            "{uri}: {err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(&uri), "{text}");
        assert!(text.contains("does not exist"), "{text}");
    }
}

/// A chain logged to `sqlite:///mlflow.db` by the binary resolves by every URI form; the
/// second fetch by id needs no store; unknown URIs fail naming themselves.
#[tokio::test]
async fn sqlite_store_fetches_a_logged_chain_by_every_uri_form() {
    let dir = tempfile::tempdir().unwrap();
    let logged = log_summarize(dir.path(), "read-summarize", &[]);
    let db = dir.path().join("mlflow.db");
    let store =
        open_store(&TrackingUri::parse(&format!("sqlite:///{}", db.display())).unwrap()).unwrap();
    let cache = dir.path().join("cache");
    let entry = fetch_every_form(store.as_ref(), &logged, "read-summarize", &cache).await;

    let by_id =
        ModelUri::parse(&format!("models:/{}", logged["model_id"].as_str().unwrap())).unwrap();
    let offline = unreachable_store();
    assert_eq!(fetch_model(&offline, &by_id, &cache).await.unwrap(), entry);
    let alias = ModelUri::parse("models:/read-summarize@champion").unwrap();
    let err = fetch_model(&offline, &alias, &cache).await.unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    // A store that answers "no such model" is believed: a command (which opens the model
    // with the store's word on it) does not run the cached copy.
    let other_db = dir.path().join("other.db");
    let other =
        open_store(&TrackingUri::parse(&format!("sqlite:///{}", other_db.display())).unwrap())
            .unwrap();
    let err = open_model(other.as_ref(), &by_id, &cache)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::BadModelUri { .. }), "{err:?}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    // … and its cached copy is dropped, so it does not run later with the store out of reach.
    assert!(
        !entry.exists(),
        "the cached copy of a model the store does not have was kept"
    );

    unresolved_uris_name_themselves(store.as_ref(), "read-summarize", &cache).await;
}

/// The same against a real `mlflow server`: logged over REST, listed and downloaded through
/// the artifact proxy.
#[tokio::test]
async fn rest_store_fetches_a_logged_chain_by_every_uri_form() {
    let server = MlflowServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let registered = unique("read-summarize");
    let logged = log_summarize(
        dir.path(),
        &registered,
        &[("MLFLOW_TRACKING_URI", server.uri())],
    );
    let store = open_store(&TrackingUri::parse(server.uri()).unwrap()).unwrap();
    let cache = dir.path().join("cache");
    let entry = fetch_every_form(store.as_ref(), &logged, &registered, &cache).await;
    for file in ["code", "prompts", "model_config.yaml", "input_example.json"] {
        assert!(entry.join(file).exists(), "{file}");
    }

    let by_id =
        ModelUri::parse(&format!("models:/{}", logged["model_id"].as_str().unwrap())).unwrap();
    assert_eq!(
        fetch_model(&unreachable_store(), &by_id, &cache)
            .await
            .unwrap(),
        entry
    );

    unresolved_uris_name_themselves(store.as_ref(), &registered, &cache).await;
}
