//! Behaviour of [`SqliteStore`] through the [`TrackingStore`] trait, across its parts: what
//! is refused and what a refusal leaves behind. (MLflow's Python client reading the store
//! back is in tests/it/store_sqlite.rs.)

use std::{fs, path::Path};

use rusqlite::Connection;

use super::SqliteStore;
use crate::store::{ModelStatus, RunStatus, StoreError, TrackingStore};

fn store_in(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join("mlflow.db"), &dir.join("mlruns")).unwrap()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn sql_count(dir: &Path, sql: &str) -> i64 {
    Connection::open(dir.join("mlflow.db"))
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn param_value_change_is_refused_and_nothing_of_the_batch_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(tmp.path());
    let exp = store.get_or_create_experiment("e").await.unwrap();
    let run = store.create_run(&exp.id, "r", 1, &[]).await.unwrap();
    store
        .log_batch(&run.run_id, &pairs(&[("a", "1")]), &[])
        .await
        .unwrap();
    let err = store
        .log_batch(
            &run.run_id,
            &pairs(&[("b", "2"), ("a", "changed")]),
            &pairs(&[("t", "x")]),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`a`"), "{err}");
    assert_eq!(sql_count(tmp.path(), "SELECT count(*) FROM params"), 1);
    assert_eq!(
        sql_count(tmp.path(), "SELECT count(*) FROM tags WHERE \"key\" = 't'"),
        0
    );
}

/// Over-long values are cut to MLflow's limits, as MLflow's own store does by default
/// (`MLFLOW_TRUNCATE_LONG_VALUES`); the refusal when that is off is tested in
/// `store::validate`.
#[tokio::test]
async fn too_long_param_and_tag_values_are_cut_to_mlflow_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(tmp.path());
    let exp = store.get_or_create_experiment("e").await.unwrap();
    let run = store.create_run(&exp.id, "r", 1, &[]).await.unwrap();
    store
        .log_batch(
            &run.run_id,
            &[("llm/system".to_owned(), "é".repeat(6001))],
            &[("chainlog.note".to_owned(), "x".repeat(8001))],
        )
        .await
        .unwrap();
    assert_eq!(
        sql_count(
            tmp.path(),
            "SELECT length(value) FROM params WHERE \"key\" = 'llm/system'"
        ),
        6000
    );
    assert_eq!(
        sql_count(
            tmp.path(),
            "SELECT length(value) FROM tags WHERE \"key\" = 'chainlog.note'"
        ),
        8000
    );
}

#[tokio::test]
async fn run_name_tag_renames_the_run_and_conflicting_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(tmp.path());
    let exp = store.get_or_create_experiment("e").await.unwrap();
    let err = store
        .create_run(&exp.id, "a", 1, &pairs(&[("mlflow.runName", "b")]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    let run = store.create_run(&exp.id, "a", 1, &[]).await.unwrap();
    store
        .log_batch(&run.run_id, &[], &pairs(&[("mlflow.runName", "renamed")]))
        .await
        .unwrap();
    assert_eq!(
        sql_count(
            tmp.path(),
            "SELECT count(*) FROM runs WHERE name = 'renamed' AND user_id = 'unknown'"
        ),
        1
    );
}

#[tokio::test]
async fn model_cannot_be_ready_before_its_artifacts_are_uploaded() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(tmp.path());
    let exp = store.get_or_create_experiment("e").await.unwrap();
    let run = store.create_run(&exp.id, "r", 1, &[]).await.unwrap();
    let model = store
        .create_logged_model(&exp.id, "chain", &run.run_id, &[], &[])
        .await
        .unwrap();
    let err = store
        .finalize_logged_model(&model.model_id, ModelStatus::Ready)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("never uploaded"), "{err}");
    assert_eq!(sql_count(tmp.path(), "SELECT status FROM logged_models"), 1);

    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("MLmodel"), "x").unwrap();
    store
        .upload_model_artifacts(&model, &src, &|_, _| {})
        .await
        .unwrap();
    let again = store
        .upload_model_artifacts(&model, &src, &|_, _| {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            again,
            StoreError::Io {
                action: "publish",
                ..
            }
        ),
        "{again:?}"
    );
    store
        .finalize_logged_model(&model.model_id, ModelStatus::Ready)
        .await
        .unwrap();
    assert_eq!(sql_count(tmp.path(), "SELECT status FROM logged_models"), 2);
    store
        .set_run_status(&run.run_id, RunStatus::Failed, 2)
        .await
        .unwrap();
    assert_eq!(
        sql_count(
            tmp.path(),
            "SELECT count(*) FROM runs WHERE status = 'FAILED' AND end_time = 2"
        ),
        1
    );
}

#[tokio::test]
async fn prompts_and_models_do_not_share_names() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(tmp.path());
    let exp = store.get_or_create_experiment("e").await.unwrap();
    let run = store.create_run(&exp.id, "r", 1, &[]).await.unwrap();
    let model = store
        .create_logged_model(&exp.id, "chain", &run.run_id, &[], &[])
        .await
        .unwrap();
    store
        .register_model_version("shared", &model, "")
        .await
        .unwrap();
    assert!(
        store
            .register_prompt("shared", "text", "x", None)
            .await
            .is_err()
    );
    store.register_prompt("p", "text", "x", None).await.unwrap();
    assert!(store.register_model_version("p", &model, "").await.is_err());
    assert!(
        store
            .register_prompt("p", "jinja", "x", None)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn unknown_versions_and_aliases_are_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(tmp.path());
    store
        .register_prompt("p", "text", "hi {{x}}", Some("c"))
        .await
        .unwrap();
    for missing in ["2", "@prod"] {
        let err = store.load_prompt("p", missing).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { .. }),
            "{missing}: {err:?}"
        );
    }
    let err = store.load_prompt("nope", "1").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let err = store.set_alias("p", "prod", "7").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    store.set_alias("p", "prod", "1").await.unwrap();
    let loaded = store.load_prompt("p", "@prod").await.unwrap();
    assert_eq!(
        (loaded.version.as_str(), loaded.kind.as_str()),
        ("1", "text")
    );
    store
        .register_prompt("p", "text", "v2", None)
        .await
        .unwrap();
    // Moving an alias replaces it.
    store.set_alias("p", "prod", "2").await.unwrap();
    assert_eq!(
        store.load_prompt("p", "@prod").await.unwrap().template,
        "v2"
    );
}

#[tokio::test]
async fn deleted_experiment_is_reported_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(tmp.path());
    let exp = store.get_or_create_experiment("gone").await.unwrap();
    Connection::open(tmp.path().join("mlflow.db"))
        .unwrap()
        .execute(
            "UPDATE experiments SET lifecycle_stage = 'deleted' WHERE name = 'gone'",
            [],
        )
        .unwrap();
    let err = store.get_or_create_experiment("gone").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::DeletedExperiment { name } if name == "gone"),
        "{err:?}"
    );
    let err = store
        .create_logged_model(&exp.id, "m", "", &[], &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DeletedExperiment { .. }),
        "{err:?}"
    );
}

#[test]
fn two_processes_opening_a_new_file_create_it_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let dir = dir.clone();
            std::thread::spawn(move || store_in(&dir))
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(sql_count(&dir, "SELECT count(*) FROM experiments"), 1);
    assert_eq!(sql_count(&dir, "SELECT count(*) FROM alembic_version"), 1);
}

/// A model whose logging never completed (PENDING, as a crash leaves it) is not loaded, even
/// though its files are all there; the refusal names its status and run.
#[tokio::test]
async fn a_model_that_is_not_ready_is_refused_naming_its_status() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(tmp.path());
    let exp = store.get_or_create_experiment("e").await.unwrap();
    let run = store.create_run(&exp.id, "r", 1, &[]).await.unwrap();
    let model = store
        .create_logged_model(&exp.id, "chain", &run.run_id, &[], &[])
        .await
        .unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("MLmodel"), "x").unwrap();
    store
        .upload_model_artifacts(&model, &src, &|_, _| {})
        .await
        .unwrap();
    let uri = crate::store::ModelUri::ModelId {
        model_id: model.model_id.clone(),
    };
    let cache = tmp.path().join("cache");
    let err = crate::store::fetch_model(&store, &uri, &cache)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("PENDING") && err.contains(&run.run_id),
        "{err}"
    );
    assert!(!cache.join(&model.model_id).exists(), "it was cached");
    store
        .finalize_logged_model(&model.model_id, ModelStatus::Ready)
        .await
        .unwrap();
    crate::store::fetch_model(&store, &uri, &cache)
        .await
        .unwrap();
}

/// A deleted version is gone as MLflow's registry deletes it: not found by number, alias or
/// `latest`, its aliases removed, its number never reused.
#[tokio::test]
async fn deleted_version_is_gone_and_latest_skips_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(tmp.path());
    let exp = store.get_or_create_experiment("e").await.unwrap();
    let run = store.create_run(&exp.id, "r", 1, &[]).await.unwrap();
    let mut versions = Vec::new();
    for _ in 0..2 {
        let model = store
            .create_logged_model(&exp.id, "chain", &run.run_id, &[], &[])
            .await
            .unwrap();
        versions.push(
            store
                .register_model_version("reg", &model, &run.run_id)
                .await
                .unwrap(),
        );
    }
    store.set_alias("reg", "champion", "2").await.unwrap();
    assert_eq!(store.model_version("reg", "@latest").await.unwrap().0, "2");
    store.delete_model_version("reg", "2").await.unwrap();
    for gone in ["2", "@champion"] {
        let err = store.model_version("reg", gone).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { .. }),
            "{gone}: {err:?}"
        );
    }
    assert_eq!(store.model_version("reg", "@latest").await.unwrap().0, "1");
    let model = store
        .create_logged_model(&exp.id, "chain", &run.run_id, &[], &[])
        .await
        .unwrap();
    assert_eq!(
        store
            .register_model_version("reg", &model, &run.run_id)
            .await
            .unwrap(),
        "3"
    );
    assert_eq!(versions, ["1", "2"]);
}

/// While another process downloads a model into the cache (it holds the model's lock), a
/// fetch waits, then reuses that entry instead of downloading again.
#[tokio::test]
async fn a_fetch_waits_for_a_download_in_progress_and_reuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(tmp.path());
    let exp = store.get_or_create_experiment("e").await.unwrap();
    let run = store.create_run(&exp.id, "r", 1, &[]).await.unwrap();
    let model = store
        .create_logged_model(&exp.id, "chain", &run.run_id, &[], &[])
        .await
        .unwrap();
    store
        .link_run_output(&run.run_id, &model.model_id, 0)
        .await
        .unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("MLmodel"), "from the store").unwrap();
    store
        .upload_model_artifacts(&model, &src, &|_, _| {})
        .await
        .unwrap();
    store
        .finalize_logged_model(&model.model_id, ModelStatus::Ready)
        .await
        .unwrap();
    let cache = tmp.path().join("cache");
    fs::create_dir_all(&cache).unwrap();
    let other = fs::File::create(cache.join(format!(".{}.lock", model.model_id))).unwrap();
    other.lock().unwrap();
    let by_id = crate::store::ModelUri::ModelId {
        model_id: model.model_id.clone(),
    };
    // A model id is served from the cache when present, so resolve through the run instead.
    let by_run = crate::store::ModelUri::Run {
        run_id: run.run_id.clone(),
        path: String::new(),
    };
    let fetching = {
        let (store, cache) = (store_in(tmp.path()), cache.clone());
        tokio::spawn(async move { crate::store::fetch_model(&store, &by_run, &cache).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !fetching.is_finished(),
        "the fetch did not wait for the lock"
    );
    // "The other process" finishes its download and lets go.
    let entry = cache.join(&model.model_id);
    fs::create_dir_all(&entry).unwrap();
    fs::write(entry.join("MLmodel"), "downloaded by the other process").unwrap();
    drop(other);
    let fetched = fetching.await.unwrap().unwrap();
    assert_eq!(fetched, entry);
    assert_eq!(
        fs::read_to_string(entry.join("MLmodel")).unwrap(),
        "downloaded by the other process"
    );
    assert!(
        crate::store::fetch_model(&store, &by_id, &cache)
            .await
            .is_ok(),
        "the cached entry is served"
    );
}

/// Logged model tags set after creation are read back (an existing key overwritten), and an
/// unknown model is NotFound both ways.
#[tokio::test]
async fn logged_model_tags_are_set_and_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(tmp.path());
    let exp = store.get_or_create_experiment("e").await.unwrap();
    let run = store.create_run(&exp.id, "r", 1, &[]).await.unwrap();
    let model = store
        .create_logged_model(&exp.id, "m", &run.run_id, &[], &pairs(&[("a", "1")]))
        .await
        .unwrap();
    store
        .set_logged_model_tags(&model.model_id, &pairs(&[("a", "2"), ("digest", "ff")]))
        .await
        .unwrap();
    assert_eq!(
        store.logged_model_tags(&model.model_id).await.unwrap(),
        pairs(&[("a", "2"), ("digest", "ff")])
    );
    for err in [
        store.logged_model_tags("m-nope").await.unwrap_err(),
        store
            .set_logged_model_tags("m-nope", &pairs(&[("a", "1")]))
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    }
}
