//! The REST tracking store against a real `mlflow server` (mlflow 3.17.2 on loopback), with
//! MLflow's own Python client as the judge of what it wrote, plus the failure cases a user
//! meets: no server, a scheme chainlog does not know, a deleted experiment, a server that
//! goes away mid-run. Wire details that need a controlled server (auth header, retries,
//! batching) are in `store_rest/stub.rs`.

mod stub;

use std::{
    path::Path,
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use chainlog::store::{
    ModelStatus, RestStore, RunStatus, StoreError, TrackingStore, TrackingUri, open_store,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::mlflow_server::MlflowServer;

/// A name no other test (or earlier run against the same server) uses.
fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The files of a small model artifact, nested directories and a binary file included.
fn write_artifact(dir: &Path, model_id: &str, run_id: &str) -> Vec<(String, Vec<u8>)> {
    let files: Vec<(String, Vec<u8>)> = vec![
        (
            "MLmodel".to_owned(),
            format!(
                "artifact_path: mlflow-artifacts:/models/{model_id}/artifacts\n\
                 flavors:\n  chainlog:\n    chain: summarize\n    format_version: 1\n\
                 model_id: {model_id}\nrun_id: {run_id}\n\
                 utc_time_created: '2026-11-26 12:00:00.000000'\n"
            )
            .into_bytes(),
        ),
        (
            "code/chains/summarize.rs".to_owned(),
            b"pub fn build() {}\n".to_vec(),
        ),
        (
            "prompts/summarize/01-system.hbs".to_owned(),
            b"You summarize {{text}}.\n".to_vec(),
        ),
        (
            "cassettes/deep/er/exchange.bin".to_owned(),
            (0..=255_u8).collect(),
        ),
        ("notes v1.txt".to_owned(), b"a name with a space\n".to_vec()),
    ];
    for (rel, bytes) in &files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    files
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs tests/python/mlflow_readback.py against `server` and returns what it printed.
fn read_back_with_python(server: &MlflowServer, spec: &Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/mlflow_readback.py");
    let out = server
        .python()
        .arg(&script)
        .arg(spec.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mlflow_readback.py failed ({}; python {}).\n--- stdout ---\n{stdout}\n\
         --- stderr ---\n{}\n--- server log ---\n{}",
        out.status,
        server.python_env().python().display(),
        String::from_utf8_lossy(&out.stderr),
        server.log_tail()
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|err| panic!("not JSON ({err}): {stdout}"))
}

/// Proves a whole logging sequence through the REST store is what MLflow's own Python client
/// reads back: the run (130 params across two log-batch calls, tags, FINISHED, linked to the
/// model), the LoggedModel (READY, every artifact listed, every downloaded byte equal to what
/// was uploaded — nested directories, a binary file and a space in a name included), the
/// registered version behind an alias, and a text and a chat prompt.
#[tokio::test]
async fn logged_chain_reads_back_with_mlflow_python_client() {
    let server = MlflowServer::shared();
    let store = RestStore::new(server.uri(), None).unwrap();

    let experiment_name = unique("readback");
    let experiment = store
        .get_or_create_experiment(&experiment_name)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_or_create_experiment(&experiment_name)
            .await
            .unwrap(),
        experiment,
        "a second call must find the same experiment"
    );
    assert!(
        experiment
            .artifact_location
            .starts_with("mlflow-artifacts:/")
    );

    let tags = pairs(&[
        ("mlflow.source.type", "LOCAL"),
        ("chainlog.chain", "summarize"),
    ]);
    let run = store
        .create_run(&experiment.id, "summarize-run", now_ms(), &tags)
        .await
        .unwrap();
    assert_eq!(run.run_name, "summarize-run");
    assert_eq!(run.run_id.len(), 32);

    let mut params: Vec<(String, String)> = (0..128)
        .map(|i| (format!("p{i:03}"), format!("value {i}")))
        .collect();
    params.extend(pairs(&[("llm/model", "gpt-x"), ("llm/temperature", "0.1")]));
    let run_tags = pairs(&[
        ("chainlog.code_sha256", "ab12"),
        ("chainlog.version", "0.1.0"),
    ]);
    store
        .log_batch(&run.run_id, &params, &run_tags)
        .await
        .unwrap();

    let model = store
        .create_logged_model(
            &experiment.id,
            "summarize",
            &run.run_id,
            &pairs(&[("temperature", "0.1")]),
            &pairs(&[("mlflow.source.type", "LOCAL")]),
        )
        .await
        .unwrap();
    assert!(model.model_id.starts_with("m-"), "{model:?}");
    assert_eq!(model.source_run_id.as_deref(), Some(run.run_id.as_str()));
    store
        .link_run_output(&run.run_id, &model.model_id, 0)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let files = write_artifact(dir.path(), &model.model_id, &run.run_id);
    let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    let progress = Mutex::new(Vec::new());
    let record = |done, all| progress.lock().unwrap().push((done, all));
    store
        .upload_model_artifacts(&model, dir.path(), &record)
        .await
        .unwrap();
    let progress = progress.into_inner().unwrap();
    assert_eq!(
        progress.len(),
        files.len(),
        "one progress call per file: {progress:?}"
    );
    assert!(
        progress.windows(2).all(|w| w[0].0 <= w[1].0),
        "{progress:?}"
    );
    assert_eq!(progress.last(), Some(&(total, total)));

    store
        .finalize_logged_model(&model.model_id, ModelStatus::Ready)
        .await
        .unwrap();
    store
        .set_run_status(&run.run_id, RunStatus::Finished, now_ms())
        .await
        .unwrap();

    let registered = unique("chain");
    let v1 = store
        .register_model_version(&registered, &model, &run.run_id)
        .await
        .unwrap();
    let v2 = store
        .register_model_version(&registered, &model, &run.run_id)
        .await
        .unwrap();
    assert_eq!((v1.as_str(), v2.as_str()), ("1", "2"));
    store.set_alias(&registered, "champion", &v1).await.unwrap();

    let text_name = unique("summarize-text");
    let chat_name = unique("summarize-chat");
    let text = "Summarize {{text}} in {{n}} words";
    let chat = r#"[{"role": "system", "content": "You summarize."}, {"role": "user", "content": "Summarize {{ text }}"}]"#;
    let text_v = store
        .register_prompt(&text_name, "text", text, Some("first"))
        .await
        .unwrap();
    let chat_v = store
        .register_prompt(&chat_name, "chat", chat, None)
        .await
        .unwrap();
    assert_eq!(
        (text_v.version.as_str(), chat_v.version.as_str()),
        ("1", "1")
    );

    let text_uri = format!("prompts:/{text_name}/1");
    let chat_uri = format!("prompts:/{chat_name}@latest");
    let seen = read_back_with_python(
        server,
        &json!({
            "experiment_id": experiment.id,
            "run_filter": "params.`llm/model` = 'gpt-x'",
            "model_id": model.model_id,
            "registered_name": registered,
            "alias": "champion",
            "prompt_uris": [text_uri, chat_uri],
        }),
    );

    let runs = seen["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "search_runs by param: {seen:#}");
    let found = &runs[0];
    assert_eq!(found["run_id"], run.run_id.as_str());
    assert_eq!(found["status"], "FINISHED");
    assert_eq!(found["run_name"], "summarize-run");
    assert_eq!(found["params"].as_object().unwrap().len(), params.len());
    assert_eq!(found["params"]["p127"], "value 127");
    assert_eq!(found["params"]["llm/temperature"], "0.1");
    assert_eq!(found["tags"]["mlflow.runName"], "summarize-run");
    assert_eq!(found["tags"]["chainlog.chain"], "summarize");
    assert_eq!(found["tags"]["chainlog.code_sha256"], "ab12");
    assert_eq!(found["model_outputs"], json!([model.model_id]));

    let logged = &seen["model"];
    assert_eq!(logged["status"], "READY", "{logged:#}");
    assert_eq!(logged["source_run_id"], run.run_id.as_str());
    let mut expected: Vec<&str> = files.iter().map(|(rel, _)| rel.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(logged["artifacts"], json!(expected));
    for (rel, bytes) in &files {
        assert_eq!(
            logged["downloaded_sha256"][rel],
            sha256_hex(bytes).as_str(),
            "downloaded `{rel}` differs from what was uploaded"
        );
    }

    // The proxy put the bytes where the server keeps artifacts, beside its database.
    let stored = server.artifacts_dir().join(
        model
            .artifact_uri
            .strip_prefix("mlflow-artifacts:/")
            .unwrap(),
    );
    assert_eq!(std::fs::read(stored.join("MLmodel")).unwrap(), files[0].1);
    assert!(server.db_path().is_file());

    let alias = &seen["alias"];
    assert_eq!(alias["version"], "1");
    assert_eq!(alias["source"], format!("models:/{}", model.model_id));
    assert_eq!(alias["run_id"], run.run_id.as_str());

    let text_seen = &seen["prompts"][&text_uri];
    assert_eq!(text_seen["template"], text);
    assert_eq!(text_seen["is_text"], true);
    assert_eq!(text_seen["variables"], json!(["n", "text"]));
    let chat_seen = &seen["prompts"][&chat_uri];
    assert_eq!(chat_seen["is_text"], false);
    assert_eq!(
        chat_seen["template"],
        serde_json::from_str::<Value>(chat).unwrap()
    );
    assert_eq!(chat_seen["variables"], json!(["text"]));
}

/// Proves prompts come back from the store by number, by alias, and as `@latest` (resolved
/// by the server), and that a missing version or alias is `NotFound`, not a raw MLflow error.
#[tokio::test]
async fn prompts_load_by_version_alias_and_latest() {
    let server = MlflowServer::shared();
    let store = RestStore::new(server.uri(), None).unwrap();
    let name = unique("prompt");
    store
        .register_prompt(&name, "text", "Hello {{name}}", Some("v1"))
        .await
        .unwrap();
    let second = store
        .register_prompt(&name, "text", "Hi {{name}}", Some("v2"))
        .await
        .unwrap();
    assert_eq!(second.version, "2");

    let first = store.load_prompt(&name, "1").await.unwrap();
    assert_eq!(
        (first.template.as_str(), first.kind.as_str()),
        ("Hello {{name}}", "text")
    );
    let latest = store.load_prompt(&name, "@latest").await.unwrap();
    assert_eq!(
        (latest.version.as_str(), latest.template.as_str()),
        ("2", "Hi {{name}}")
    );
    store.set_alias(&name, "prod", "1").await.unwrap();
    assert_eq!(
        store.load_prompt(&name, "@prod").await.unwrap().version,
        "1"
    );

    for missing in ["9", "@nope"] {
        let err = store.load_prompt(&name, missing).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { .. }),
            "{missing}: {err:?}"
        );
    }
}

/// Proves a deleted experiment is refused with `DeletedExperiment`, never silently recreated
/// or written to.
#[tokio::test]
async fn deleted_experiment_is_refused() {
    let server = MlflowServer::shared();
    let store = RestStore::new(server.uri(), None).unwrap();
    let name = unique("deleted");
    let experiment = store.get_or_create_experiment(&name).await.unwrap();
    let response = reqwest::Client::new()
        .post(format!(
            "{}/api/2.0/mlflow/experiments/delete",
            server.uri()
        ))
        .json(&json!({ "experiment_id": experiment.id }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{response:?}");

    let err = store.get_or_create_experiment(&name).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::DeletedExperiment { name: n } if n == &name),
        "{err:?}"
    );
    assert!(err.to_string().contains("was deleted; restore it"), "{err}");
}

/// Proves that with no server listening the error is `Unreachable`: one line that names the
/// URL, after a bounded number of quick retries.
#[tokio::test]
async fn unreachable_server_is_a_one_line_error_naming_the_url() {
    let refusing = crate::support::refusing::RefusingPort::new();
    let url = format!("http://127.0.0.1:{}", refusing.port());
    let uri = TrackingUri::parse(&url).unwrap();
    let store = open_store(&uri).unwrap();
    assert_eq!(store.display_uri(), url);

    let store = RestStore::new(&url, None)
        .unwrap()
        .with_retries(3, Duration::from_millis(10));
    let started = std::time::Instant::now();
    let err = store
        .get_or_create_experiment("anything")
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let shown = err.to_string();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    assert!(
        shown.starts_with(&format!("cannot reach the MLflow server at {url}: ")),
        "{shown}"
    );
    assert!(!shown.contains('\n'), "{shown:?}");
    assert!(shown.contains("after 3 attempts"), "{shown}");
}

/// Proves tracking URIs chainlog does not know are refused with `UnknownScheme`, by the URI
/// parser and by the REST store alike, and never echo credentials.
#[test]
fn unknown_scheme_is_refused() {
    for uri in [
        "file:///tmp/mlruns",
        "postgresql://db/mlflow",
        "databricks",
        "s3://b/k",
    ] {
        let err = TrackingUri::parse(uri).unwrap_err();
        assert!(
            matches!(err, StoreError::UnknownScheme { .. }),
            "{uri}: {err:?}"
        );
        assert!(err.to_string().contains(uri), "{err}");
    }
    let err = RestStore::new("ftp://user:hunter2@host/x", None).unwrap_err();
    assert!(matches!(err, StoreError::UnknownScheme { .. }), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

/// Proves a server that goes away in the middle of a run turns the next step into
/// `Unreachable` naming the server (not a hang, not a raw connection-reset message): the run
/// is left RUNNING, as the store's contract says.
#[tokio::test]
async fn server_stopping_mid_run_gives_unreachable() {
    let mut server = MlflowServer::start();
    let uri = server.uri().to_owned();
    let store = RestStore::new(&uri, None)
        .unwrap()
        .with_retries(2, Duration::from_millis(20));
    let experiment = store.get_or_create_experiment("fault").await.unwrap();
    let run = store
        .create_run(&experiment.id, "fault-run", now_ms(), &[])
        .await
        .unwrap();

    server.stop();

    let err = store
        .set_run_status(&run.run_id, RunStatus::Finished, now_ms())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains(&uri), "{shown}");
    assert!(!shown.contains('\n'), "{shown:?}");
}
