"""MLflow's own Python client as the judge of what chainlog's SQLite store wrote.

Run by tests/it/store_sqlite.rs with the venv from tests/python/requirements-mlflow.txt,
MLFLOW_TRACKING_URI=sqlite:////abs/path/mlflow.db and the temp dir as the working directory.

Modes:
  check EXPECT.json        read everything back and compare with EXPECT.json; prints one
                           "ok: ..." line per check, and "FAIL: ..." lines then exits 1 on failure
  delete-experiment NAME   delete the experiment NAME (as a user would in MLflow)
"""

import json
import os
import sys
import tempfile
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus

failures = []


def check(label, got, want):
    if got == want:
        print(f"ok: {label}")
    else:
        failures.append(f"{label}: got {got!r}, want {want!r}")
        print(f"FAIL: {label}: got {got!r}, want {want!r}")


def tree(root):
    """Files under a download, without the `registered_model_meta` MLflow adds to it."""
    root = Path(root)
    return {
        str(p.relative_to(root)): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "registered_model_meta"
    }


def check_run(client, e):
    exp = client.get_experiment_by_name(e["experiment"])
    check("experiment id", exp.experiment_id, e["experiment_id"])
    check("experiment lifecycle", exp.lifecycle_stage, "active")
    check(
        "experiment artifact location",
        exp.artifact_location,
        str(Path.cwd() / "mlruns" / e["experiment_id"]),
    )
    check(
        "Default experiment",
        (client.get_experiment("0").name, client.get_experiment("0").artifact_location),
        ("Default", str(Path.cwd() / "mlruns" / "0")),
    )
    key, value = next(iter(e["params"].items()))
    runs = mlflow.search_runs(
        experiment_names=[e["experiment"]],
        filter_string=f"params.`{key}` = '{value}'",
        output_format="list",
    )
    check("search_runs by param finds the run", [r.info.run_id for r in runs], [e["run_id"]])
    run = client.get_run(e["run_id"])
    check("run status", run.info.status, "FINISHED")
    check("run name", run.info.run_name, e["run_name"])
    check("run has end time", run.info.end_time is not None, True)
    check("run params", run.data.params, e["params"])
    check(
        "run tags",
        {k: v for k, v in run.data.tags.items() if k in e["tags"]},
        e["tags"],
    )
    check("run tag mlflow.runName", run.data.tags.get("mlflow.runName"), e["run_name"])
    check(
        "run artifact uri",
        run.info.artifact_uri,
        str(Path.cwd() / "mlruns" / e["experiment_id"] / e["run_id"] / "artifacts"),
    )
    outputs = [o.model_id for o in run.outputs.model_outputs] if run.outputs else []
    check("run outputs link the model", outputs, [e["model_id"]])
    df = mlflow.search_runs(experiment_names=[e["experiment"]])
    check("search_runs dataframe param column", list(df[f"params.{key}"]), [value])


def check_model(client, e):
    model = client.get_logged_model(e["model_id"])
    check("logged model status", model.status, LoggedModelStatus.READY)
    check("logged model name", model.name, e["model_name"])
    check("logged model source run", model.source_run_id, e["run_id"])
    check("logged model params", model.params, e["model_params"])
    check(
        "logged model tags",
        {k: v for k, v in model.tags.items() if k in e["model_tags"]},
        e["model_tags"],
    )
    check(
        "logged model mlflow.modelVersions",
        json.loads(model.tags.get("mlflow.modelVersions", "[]")),
        [{"name": e["registered_model"], "version": int(v)} for v in e["versions"]],
    )
    found = client.search_logged_models(experiment_ids=[e["experiment_id"]])
    check("search_logged_models finds it", [m.model_id for m in found], [e["model_id"]])
    listed = sorted(f.path for f in client.list_logged_model_artifacts(e["model_id"]))
    want_top = sorted({p.split("/")[0] for p in e["files"]})
    check("list_logged_model_artifacts", listed, want_top)
    listed = sorted(
        f.path for f in mlflow.artifacts.list_artifacts(artifact_uri=f"models:/{e['model_id']}")
    )
    check("mlflow.artifacts.list_artifacts(models:/id)", listed, want_top)
    with tempfile.TemporaryDirectory() as dst:
        path = mlflow.artifacts.download_artifacts(f"models:/{e['model_id']}", dst_path=dst)
        check("download models:/<id>", tree(path), e["files"])


def check_registry(client, e):
    name = e["registered_model"]
    mv = client.get_model_version_by_alias(name, e["alias"])
    # The SQLAlchemy registry returns versions as ints; compare as MLflow URIs use them.
    check("alias resolves", str(mv.version), e["alias_version"])
    check("version source", mv.source, f"models:/{e['model_id']}")
    check("version run id", mv.run_id, e["run_id"])
    check("version status", mv.status, "READY")
    for v in e["versions"]:
        check(f"version {v} exists", str(client.get_model_version(name, v).version), v)
    rm = client.get_registered_model(name)
    check(
        "registered model aliases",
        {k: str(v) for k, v in rm.aliases.items()},
        {e["alias"]: e["alias_version"]},
    )
    versions = client.search_model_versions(f"name = '{name}'")
    check("search_model_versions", sorted(str(m.version) for m in versions), e["versions"])
    with tempfile.TemporaryDirectory() as dst:
        path = mlflow.artifacts.download_artifacts(f"models:/{name}@{e['alias']}", dst_path=dst)
        check(f"download models:/{name}@{e['alias']}", tree(path), e["files"])


def check_prompts(e):
    for p in e["prompts"]:
        prompt = mlflow.genai.load_prompt(p["uri"])
        template = p["template"] if p["kind"] == "text" else json.loads(p["template"])
        check(f"{p['uri']} template", prompt.template, template)
        check(f"{p['uri']} version", str(prompt.version), p["version"])
        check(f"{p['uri']} variables", sorted(prompt.variables), sorted(p["variables"]))
        check(f"{p['uri']} is text", prompt.is_text_prompt, p["kind"] == "text")
        if "formatted" in p:
            check(f"{p['uri']} format", prompt.format(**p["values"]), p["formatted"])
    names = sorted(x.name for x in mlflow.genai.search_prompts())
    check("search_prompts", names, sorted({p["uri"].split("/")[1].split("@")[0] for p in e["prompts"]}))


def main():
    mode = sys.argv[1]
    if mode == "delete-experiment":
        client = MlflowClient()
        exp = client.get_experiment_by_name(sys.argv[2])
        client.delete_experiment(exp.experiment_id)
        print(f"deleted experiment {exp.experiment_id}")
        return 0
    if mode != "check":
        print(f"unknown mode {mode!r}", file=sys.stderr)
        return 2
    e = json.loads(Path(sys.argv[2]).read_text())
    print("tracking uri:", mlflow.get_tracking_uri(), "mlflow", mlflow.__version__)
    client = MlflowClient()
    for step in (check_run, check_model, check_registry):
        try:
            step(client, e)
        except Exception as err:  # noqa: BLE001 — every failure is reported, not just the first
            failures.append(f"{step.__name__} raised {type(err).__name__}: {err}")
            print(f"FAIL: {step.__name__} raised {type(err).__name__}: {err}")
    try:
        check_prompts(e)
    except Exception as err:  # noqa: BLE001
        failures.append(f"check_prompts raised {type(err).__name__}: {err}")
        print(f"FAIL: check_prompts raised {type(err).__name__}: {err}")
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
    sys.exit(main())
