//! MLflow itself as the judge of the artifact chainlog writes.
//!
//! Each chain compiled into the test binary is written as an artifact of the real crate (its
//! config, prompts and git-tracked snapshot); then the pinned `mlflow` package
//! (tests/python/requirements-mlflow.txt, in a venv cached outside `target/`, see
//! [`python_env`]) parses every MLmodel, rebuilds the signature and reads the examples
//! (tests/python/mlmodel_check.py).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, UNIX_EPOCH},
};

use chainlog::{
    artifact::{
        ArtifactSpec, LoadedArtifact, MLFLOW_VERSION, Provenance, SERVING_INPUT_EXAMPLE_FILE,
        SnapshotPlan, write_artifact,
    },
    config::ChainConfig,
    prompt::PromptSet,
};
use serde_json::{Value, json};

use crate::support::python_env;

const RUN_ID: &str = "4af9818b43b64894b0f6c70fdd15cb45";

/// An input and output example per chain, each valid for the chain's schemas.
fn examples(chain: &str) -> (Value, Value) {
    match chain {
        "extract" => (
            json!({"text": "Ada Lovelace, ada@example.com"}),
            json!({"contact": {"name": "Ada Lovelace", "email": "ada@example.com",
                "company": null, "title": null, "topics": ["mathematics"]}}),
        ),
        "map_reduce" => (
            json!({"text": "A long text."}),
            json!({"summary": "Short.", "part_summaries": ["Short."]}),
        ),
        "tool_agent" => (
            json!({"question": "What is 2 + 2?"}),
            json!({"answer": "4", "steps": 2, "tool_calls": [
                {"name": "calculator", "arguments": "{\"expression\": \"2 + 2\"}", "result": "4"}]}),
        ),
        _ => (json!({"text": "Some text."}), json!({"summary": "Short."})),
    }
}

/// Writes chain `name` as model `model_id` into `dir`, from the crate's own files.
fn write_chain(name: &str, model_id: &str, dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let registry = crate::chain_registry();
    let entry = registry.get(name).unwrap();
    let config = ChainConfig::from_path(&root.join(format!("chains/{name}.yaml"))).unwrap();
    let entries: BTreeMap<String, String> =
        serde_json::from_value(config.as_value()["prompts"].clone()).unwrap();
    let prompts = PromptSet::load(&root.join("prompts"), &entries).unwrap();
    let provenance = Provenance::collect(root).unwrap();
    let plan = SnapshotPlan::collect(root).unwrap();
    let (input, output) = examples(name);
    let uri = format!("mlflow-artifacts:/1/models/{model_id}/artifacts");
    let spec = ArtifactSpec::new(entry, &config, &prompts, model_id, &provenance)
        .with_run_id(RUN_ID)
        .with_artifact_uri(&uri)
        .with_snapshot(&plan)
        .with_input_example(&input)
        .with_output_example(&output)
        .with_created(UNIX_EPOCH + Duration::from_micros(1_795_607_772_776_368));
    write_artifact(dir, &spec).unwrap();
    LoadedArtifact::read(dir).unwrap().verify().unwrap();
}

/// Proves that MLflow 3.17.2 accepts the MLmodel of every example chain: `Model.load` parses
/// it, the ids, times and example info read back as written, the signature loads and
/// re-serialises to exactly the text chainlog wrote (so the column specs are MLflow's own
/// format, spacing included), and the input and output examples pass MLflow's schema
/// validation against that signature.
#[test]
fn mlflow_loads_the_mlmodel_signature_and_examples() {
    let tmp = tempfile::tempdir().unwrap();
    let chains: Vec<&str> = crate::chain_registry()
        .entries()
        .iter()
        .map(|e| e.name())
        .collect();
    assert!(!chains.is_empty());
    let mut dirs: Vec<(String, String, PathBuf)> = Vec::new();
    for (i, name) in chains.iter().enumerate() {
        let model_id = format!("m-{i:032x}");
        let dir = tmp.path().join(name);
        write_chain(name, &model_id, &dir);
        dirs.push(((*name).to_owned(), model_id, dir));
    }

    let env = python_env::provision("mlflow", Path::new("tests/python/requirements-mlflow.txt"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/mlmodel_check.py");
    let out = env
        .command()
        .arg(&script)
        .args(dirs.iter().map(|(_, _, dir)| dir))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "MLflow refused an artifact ({}).\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(&stdout).unwrap();

    for (name, model_id, dir) in &dirs {
        let got = &seen[dir.to_str().unwrap()];
        let loaded = LoadedArtifact::read(dir).unwrap();
        let mlmodel = loaded.mlmodel();
        let signature = mlmodel.signature.as_ref().unwrap();
        let (input, _) = examples(name);
        let serving: Value =
            serde_json::from_slice(&std::fs::read(dir.join(SERVING_INPUT_EXAMPLE_FILE)).unwrap())
                .unwrap();
        assert_eq!(got["mlflow"], "3.17.2", "{name}");
        assert_eq!(got["model_id"], model_id.as_str(), "{name}");
        assert_eq!(got["model_uuid"], model_id.as_str(), "{name}");
        assert_eq!(got["run_id"], RUN_ID, "{name}");
        assert_eq!(
            got["artifact_path"],
            mlmodel.artifact_path.as_deref().unwrap(),
            "{name}"
        );
        assert_eq!(got["mlflow_version"], MLFLOW_VERSION, "{name}");
        assert_eq!(
            got["utc_time_created"], "2026-11-25 11:56:12.776368",
            "{name}"
        );
        assert_eq!(
            got["flavors"],
            json!(["chainlog", "python_function"]),
            "{name}"
        );
        assert_eq!(got["chainlog_format_version"], 2, "{name}");
        assert_eq!(got["inputs"], signature.inputs.as_str(), "{name}: inputs");
        assert_eq!(
            got["outputs"],
            signature.outputs.as_str(),
            "{name}: outputs"
        );
        assert_eq!(got["params"], Value::Null, "{name}");
        assert_eq!(got["input_example"], input, "{name}");
        assert_eq!(got["serving_input"], serving, "{name}");
        assert_eq!(got["serving_input"], json!({ "inputs": input }), "{name}");
        assert_eq!(
            got["saved_input_example_info"],
            serde_json::to_value(&mlmodel.saved_input_example_info).unwrap(),
            "{name}"
        );
        assert_eq!(
            got["model_size_bytes"],
            json!(mlmodel.model_size_bytes),
            "{name}"
        );
        assert_eq!(got["env_vars"], json!(mlmodel.env_vars), "{name}");
        assert_eq!(got["prompts"], Value::Null, "{name}");
    }
}
