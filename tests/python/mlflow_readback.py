"""Read back, with MLflow's own Python client, what chainlog's REST store wrote.

Used by tests/it/store_rest.rs. MLFLOW_TRACKING_URI points at the test server. The only
argument is a JSON object:

    {"experiment_id", "run_filter", "model_id", "registered_name", "alias",
     "prompt_uris": [...]}

Prints one JSON object on stdout with what MLflow sees; the Rust test asserts on it. This
script judges nothing itself, so a failure message always shows both sides.
"""

import hashlib
import json
import os
import sys
import tempfile

import mlflow
from mlflow import MlflowClient


def runs(spec):
    found = mlflow.search_runs(
        experiment_ids=[spec["experiment_id"]],
        filter_string=spec["run_filter"],
        output_format="list",
    )
    out = []
    for run in found:
        outputs = run.outputs.model_outputs if run.outputs else []
        out.append(
            {
                "run_id": run.info.run_id,
                "run_name": run.info.run_name,
                "status": run.info.status,
                "params": run.data.params,
                "tags": run.data.tags,
                "model_outputs": [o.model_id for o in outputs],
            }
        )
    return out


def list_artifacts(client, model_id, path=None):
    files = []
    for info in client.list_logged_model_artifacts(model_id, path):
        if info.is_dir:
            files.extend(list_artifacts(client, model_id, info.path))
        else:
            files.append(info.path)
    return files


def logged_model(client, model_id):
    model = client.get_logged_model(model_id)
    status = model.status
    digests = {}
    with tempfile.TemporaryDirectory(prefix="chainlog-readback-") as dst:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{model_id}", dst_path=dst
        )
        for root, _dirs, names in os.walk(local):
            for name in names:
                path = os.path.join(root, name)
                rel = os.path.relpath(path, local).replace(os.sep, "/")
                with open(path, "rb") as f:
                    digests[rel] = hashlib.sha256(f.read()).hexdigest()
    return {
        "name": model.name,
        "status": getattr(status, "name", str(status)),
        "source_run_id": model.source_run_id,
        "artifacts": sorted(list_artifacts(client, model_id)),
        "downloaded_sha256": digests,
    }


def alias(client, name, alias_name):
    version = client.get_model_version_by_alias(name, alias_name)
    return {
        "version": str(version.version),
        "source": version.source,
        "run_id": version.run_id,
        "model_id": getattr(version, "model_id", None),
    }


def prompts(uris):
    out = {}
    for uri in uris:
        prompt = mlflow.genai.load_prompt(uri)
        out[uri] = {
            "name": prompt.name,
            "version": str(prompt.version),
            "template": prompt.template,
            "is_text": prompt.is_text_prompt,
            "variables": sorted(prompt.variables),
        }
    return out


def main():
    spec = json.loads(sys.argv[1])
    client = MlflowClient()
    result = {
        "runs": runs(spec),
        "model": logged_model(client, spec["model_id"]),
        "alias": alias(client, spec["registered_name"], spec["alias"]),
        "prompts": prompts(spec["prompt_uris"]),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
