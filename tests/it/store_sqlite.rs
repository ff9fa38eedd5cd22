//! MLflow's own Python client (mlflow==3.17.2, tests/python/requirements-mlflow.txt) as the
//! judge of [`SqliteStore`]: everything is written through the store into a fresh temp dir,
//! then read back by tests/python/mlflow_sqlite_check.py with
//! `MLFLOW_TRACKING_URI=sqlite:////abs/mlflow.db` and the temp dir as working directory
//! (so MLflow's `./mlruns` is the store's artifact root).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use chainlog::store::{ModelStatus, RunStatus, SqliteStore, StoreError, TrackingStore};
use serde_json::json;

use crate::support::python_env::{self, PythonEnv};

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("python")
}

fn mlflow_env() -> PythonEnv {
    python_env::provision("mlflow", &python_dir().join("requirements-mlflow.txt"))
}

/// A store over `<dir>/mlflow.db` with artifacts under `<dir>/mlruns`: MLflow's defaults
/// for a process started in `dir`.
fn open_in(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join("mlflow.db"), &dir.join("mlruns")).unwrap()
}

/// A command running MLflow's Python in `dir` against `<dir>/mlflow.db`, with no
/// `MLFLOW_*` setting of the caller leaking in.
fn mlflow_python(env: &PythonEnv, dir: &Path) -> Command {
    let mut cmd = env.command();
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MLFLOW_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir)
        .env(
            "MLFLOW_TRACKING_URI",
            format!("sqlite:///{}", dir.join("mlflow.db").display()),
        )
        .env("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true");
    cmd
}

/// Runs `cmd`, panicking with its output unless it succeeds; returns stdout.
fn run_ok(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}).\nfailed checks:\n{}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status,
        stdout
            .lines()
            .filter(|l| l.starts_with("FAIL"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    stdout
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The files of the model the test uploads, relative path → contents.
fn model_files() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "MLmodel",
            "flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.loaders.code_model\n",
        ),
        ("chain.py", "# the chain\n"),
        ("requirements.txt", "mlflow==3.17.2\n"),
        ("code/helpers/util.py", "X = 1\n"),
        ("prompts/summarize.hbs", "Summarize {{text}}\n"),
    ]
}

/// The whole logging protocol through the store, then MLflow's Python client reads
/// everything back: the run (found by `search_runs` on a param, FINISHED, params, tags,
/// output link), the READY logged model with its params, tags and downloadable files, the
/// registered versions and the alias, and text and chat prompts with their variables.
#[tokio::test]
async fn mlflow_python_client_reads_back_everything_the_store_wrote() {
    let env = mlflow_env();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open_in(dir);
    assert_eq!(
        store.display_uri(),
        format!("sqlite:///{}", dir.join("mlflow.db").display())
    );

    let experiment = store.get_or_create_experiment("chainlog-it").await.unwrap();
    assert_eq!(experiment.id, "1");
    assert_eq!(
        experiment.artifact_location,
        dir.join("mlruns/1").display().to_string()
    );
    assert_eq!(
        store.get_or_create_experiment("chainlog-it").await.unwrap(),
        experiment
    );

    let run_tags = pairs(&[
        ("mlflow.user", "tester"),
        ("mlflow.source.name", "chainlog"),
        ("mlflow.source.type", "LOCAL"),
    ]);
    let run = store
        .create_run(
            &experiment.id,
            "summarize-run",
            1_700_000_000_000,
            &run_tags,
        )
        .await
        .unwrap();
    assert_eq!(run.run_id.len(), 32);

    let model_params = pairs(&[("llm/model", "gpt-x")]);
    let model_tags = pairs(&[("mlflow.user", "tester"), ("mlflow.source.type", "LOCAL")]);
    let model = store
        .create_logged_model(
            &experiment.id,
            "chain",
            &run.run_id,
            &model_params,
            &model_tags,
        )
        .await
        .unwrap();
    assert!(model.model_id.starts_with("m-"));
    store
        .link_run_output(&run.run_id, &model.model_id, 0)
        .await
        .unwrap();

    let src = dir.join("build");
    for (rel, body) in model_files() {
        let path = src.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, body).unwrap();
    }
    let seen = std::sync::Mutex::new(Vec::new());
    store
        .upload_model_artifacts(&model, &src, &|done, total| {
            seen.lock().unwrap().push((done, total))
        })
        .await
        .unwrap();
    let total: u64 = model_files().iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(seen.lock().unwrap().last(), Some(&(total, total)));

    let params = pairs(&[("llm/model", "gpt-x"), ("llm/temperature", "0.2")]);
    let tags = pairs(&[
        ("chainlog.chain", "summarize"),
        ("chainlog.code_sha256", "abc123"),
    ]);
    store.log_batch(&run.run_id, &params, &tags).await.unwrap();
    // The same value again is a no-op, as in MLflow.
    store
        .log_batch(&run.run_id, &params[..1], &[])
        .await
        .unwrap();
    store
        .finalize_logged_model(&model.model_id, ModelStatus::Ready)
        .await
        .unwrap();
    assert_eq!(
        store
            .register_model_version("rust-chain", &model, &run.run_id)
            .await
            .unwrap(),
        "1"
    );
    assert_eq!(
        store
            .register_model_version("rust-chain", &model, &run.run_id)
            .await
            .unwrap(),
        "2"
    );
    store
        .set_alias("rust-chain", "champion", "1")
        .await
        .unwrap();
    store
        .set_run_status(&run.run_id, RunStatus::Finished, 1_700_000_005_000)
        .await
        .unwrap();

    let v1 = store
        .register_prompt(
            "summarize",
            "text",
            "Summarize {{text}} in {{ n }} words",
            Some("first"),
        )
        .await
        .unwrap();
    assert_eq!(v1.version, "1");
    store
        .register_prompt(
            "summarize",
            "text",
            "Summarize {{text}} briefly",
            Some("second"),
        )
        .await
        .unwrap();
    let chat_template = r#"[{"role":"system","content":"You are {{style}}."},{"role":"user","content":"{{question}}"}]"#;
    let chat = store
        .register_prompt("qa", "chat", chat_template, None)
        .await
        .unwrap();
    assert_eq!(
        chat.template,
        r#"[{"role": "system", "content": "You are {{style}}."}, {"role": "user", "content": "{{question}}"}]"#
    );
    let latest = store.load_prompt("summarize", "@latest").await.unwrap();
    assert_eq!(
        (latest.version.as_str(), latest.template.as_str()),
        ("2", "Summarize {{text}} briefly")
    );
    assert_eq!(store.load_prompt("summarize", "1").await.unwrap(), v1);

    let mut all_params = serde_json::Map::new();
    for (k, v) in &params {
        all_params.insert(k.clone(), json!(v));
    }
    let expect = json!({
        "experiment": "chainlog-it",
        "experiment_id": experiment.id,
        "run_id": run.run_id,
        "run_name": "summarize-run",
        "params": all_params,
        "tags": {"mlflow.user": "tester", "mlflow.source.type": "LOCAL", "chainlog.chain": "summarize"},
        "model_id": model.model_id,
        "model_name": "chain",
        "model_params": {"llm/model": "gpt-x"},
        "model_tags": {"mlflow.user": "tester", "mlflow.source.type": "LOCAL"},
        "files": model_files().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "registered_model": "rust-chain",
        "versions": ["1", "2"],
        "alias": "champion",
        "alias_version": "1",
        "prompts": [
            {"uri": "prompts:/summarize/1", "version": "1", "kind": "text",
             "template": "Summarize {{text}} in {{ n }} words", "variables": ["n", "text"],
             "values": {"text": "abc", "n": 3}, "formatted": "Summarize abc in 3 words"},
            {"uri": "prompts:/summarize@latest", "version": "2", "kind": "text",
             "template": "Summarize {{text}} briefly", "variables": ["text"]},
            {"uri": "prompts:/qa/1", "version": "1", "kind": "chat",
             "template": chat_template, "variables": ["question", "style"]},
        ],
    });
    let expect_path = dir.join("expect.json");
    fs::write(&expect_path, serde_json::to_vec_pretty(&expect).unwrap()).unwrap();

    let mut cmd = mlflow_python(&env, dir);
    cmd.arg(python_dir().join("mlflow_sqlite_check.py"))
        .arg("check")
        .arg(&expect_path);
    let stdout = run_ok(cmd, "mlflow_sqlite_check.py check");
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

/// A database MLflow itself created (`mlflow db upgrade`) is accepted; the same database
/// at MLflow's previous alembic revision is refused, naming the file and both revisions.
#[tokio::test]
async fn database_at_another_revision_is_refused() {
    let env = mlflow_env();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let db = dir.join("mlflow.db");
    let mut cmd = mlflow_python(&env, dir);
    cmd.args(["-m", "mlflow", "db", "upgrade"])
        .arg(format!("sqlite:///{}", db.display()));
    run_ok(cmd, "mlflow db upgrade");

    let store = open_in(dir);
    let experiment = store
        .get_or_create_experiment("made-by-mlflow")
        .await
        .unwrap();
    assert_eq!(experiment.id, "1", "the Default experiment (0) comes first");
    drop(store);

    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE alembic_version SET version_num = '75868b020152'",
        [],
    )
    .unwrap();
    drop(conn);
    let err = SqliteStore::open(&db, &dir.join("mlruns")).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, StoreError::UnsupportedSchema { found, supported, .. }
            if found == "75868b020152" && supported == SqliteStore::SCHEMA_REVISION),
        "{err:?}"
    );
    assert!(text.contains(&db.display().to_string()), "{text}");
}

/// An experiment deleted with MLflow's Python client is reported as deleted, both when
/// asked for by name and when a run is created in it.
#[tokio::test]
async fn experiment_deleted_by_mlflow_is_refused() {
    let env = mlflow_env();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open_in(dir);
    let experiment = store.get_or_create_experiment("doomed").await.unwrap();

    let mut cmd = mlflow_python(&env, dir);
    cmd.arg(python_dir().join("mlflow_sqlite_check.py"))
        .args(["delete-experiment", "doomed"]);
    run_ok(cmd, "mlflow_sqlite_check.py delete-experiment");

    let err = store.get_or_create_experiment("doomed").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::DeletedExperiment { name } if name == "doomed"),
        "{err:?}"
    );
    let err = store
        .create_run(&experiment.id, "late", 0, &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DeletedExperiment { .. }),
        "{err:?}"
    );
}
