"""Read back, with MLflow's own Python client, a chain that `chainlog log` logged.

Used by tests/it/log_chain.rs. MLFLOW_TRACKING_URI names the store (a sqlite:/// file or a
server). The only argument is a JSON object:

    {"run_id", "model_id", "registered_name" (or null), "alias" (or null),
     "prompt_uri" (or null)}

Prints one JSON object with what MLflow sees; the Rust test asserts on it.
"""

import json
import os
import sys
import tempfile

import yaml

import mlflow
from mlflow import MlflowClient
from mlflow.models import Model


def main():
    spec = json.loads(sys.argv[1])
    client = MlflowClient()
    run = client.get_run(spec["run_id"])
    found = mlflow.search_runs(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"attributes.run_id = '{spec['run_id']}'",
        output_format="list",
    )
    model = client.get_logged_model(spec["model_id"])
    artifacts = sorted(a.path for a in client.list_logged_model_artifacts(spec["model_id"]))
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{model.artifact_location}/MLmodel", dst_path=tmp
        )
        parsed = Model.load(local)
        mlmodel = {
            "flavors": sorted(parsed.flavors),
            "model_id": parsed.model_id,
            "run_id": parsed.run_id,
            "signature_inputs": str(parsed.signature.inputs) if parsed.signature else None,
            "chainlog": parsed.flavors.get("chainlog", {}),
            # Read raw: Model.load keeps `prompts` only for prompts it resolves itself.
            "prompts": yaml.safe_load(open(local))["prompts"],
        }
    out = {
        "run": {
            "status": run.info.status,
            "name": run.info.run_name,
            "params": dict(run.data.params),
            "tags": dict(run.data.tags),
            "found_by_search": len(found),
            "outputs": [o.model_id for o in (run.outputs.model_outputs if run.outputs else [])],
        },
        "model": {
            "status": str(model.status),
            "name": model.name,
            "source_run_id": model.source_run_id,
            "tags": dict(model.tags),
            "artifacts": artifacts,
            "params": dict(model.params),
            "tags": dict(model.tags),
            # Searching models by a param, as the UI's model search does.
            "found_by_param": [
                m.model_id
                for m in mlflow.search_logged_models(
                    experiment_ids=[model.experiment_id],
                    filter_string="params.`llm/model` = 'gpt-4o-mini'",
                    output_format="list",
                )
            ],
        },
        "mlmodel": mlmodel,
    }
    if spec.get("registered_name"):
        name = spec["registered_name"]
        version = client.get_model_version_by_alias(name, spec["alias"]) if spec.get("alias") else None
        out["registered"] = {
            "alias_version": str(version.version) if version else None,
            "alias_model_id": getattr(version, "model_id", None) if version else None,
            "source": version.source if version else None,
            # What `models:/<name>/latest` means to MLflow's client.
            "latest_version": str(
                max(int(v.version) for v in client.get_latest_versions(name))
            ),
        }
    if spec.get("prompt_uri"):
        prompt = mlflow.genai.load_prompt(spec["prompt_uri"])
        out["prompt"] = {"template": prompt.template, "variables": sorted(prompt.variables)}
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
