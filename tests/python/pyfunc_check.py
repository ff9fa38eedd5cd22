"""MLflow's Python world loading chainlog models through their `python_function` flavor.

Usage: pyfunc_check.py <mode> <json args>; prints one JSON object on stdout. Driven by
tests/it/pyfunc.rs, which logs the models, runs the mock and checks what this prints.

Modes:
  predict   {"cases": [{"tracking_uri", "model_uri", "rows": [{...}, ...]}]}
            load_model(uri).predict(DataFrame(rows)) for each case.
  behaviour {"tracking_uri", "model_uri", "text"}
            dict and list-of-dicts input, column errors, a bad row, a killed child, close.
  error     {"tracking_uri", "model_uri", "text"}: predict on a row the mock refuses.
  no_binary {"tracking_uri", "model_uri"}: load_model without any chainlog binary.
  load      {"tracking_uri", "model_uri"}: load_model only (its failure, if any).
  config    {"tracking_uri", "model_uri", "text", "model_config"}: load_model with a config
            override, one predict.
  serve     {"tracking_uri", "model_uri", "port", "text"}: `mlflow models serve`, four formats.
  models_predict {"tracking_uri", "model_uri", "text", "output"}: mlflow.models.predict.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException


def load(args):
    mlflow.set_tracking_uri(args["tracking_uri"])
    return mlflow.pyfunc.load_model(args["model_uri"])


def failure(call):
    """``{"type", "message", "error_code", "seconds"}`` of the exception ``call`` raises."""
    started = time.monotonic()
    try:
        call()
    except Exception as err:  # noqa: BLE001 - the type is what is checked
        return {
            "type": type(err).__name__,
            "message": getattr(err, "message", str(err)),
            "error_code": getattr(err, "error_code", None),
            "seconds": time.monotonic() - started,
        }
    return {"type": None}


def predict(args):
    results = []
    for case in args["cases"]:
        model = load(case)
        frame = pd.DataFrame(case["rows"])
        out = model.predict(frame)
        results.append({"model_uri": case["model_uri"], "predictions": out,
                        "flavors": sorted(model.metadata.flavors)})
    return {"results": results}


def behaviour(args):
    model = load(args)
    impl = model._model_impl
    text = args["text"]
    out = {}
    out["dict"] = model.predict({"text": text + " as a dict"})
    out["empty"] = impl.predict(pd.DataFrame({"text": []}))
    out["records"] = model.predict([{"text": text + " one"}, {"text": text + " two"}])
    out["missing_column"] = failure(lambda: model.predict(pd.DataFrame({"txt": ["x"]})))
    out["extra_column"] = failure(
        lambda: impl.predict(pd.DataFrame({"text": ["x"], "extra": [1], "more": [2]})))
    out["missing_key"] = failure(lambda: impl.predict([{"text": "x"}, {"txt": "y"}]))
    out["bad_row"] = failure(lambda: impl.predict([{"text": "fine"}, {"text": 5}]))
    out["params"] = model.predict(pd.DataFrame({"text": [text + " with params"]}), params=None)
    first_pid = impl._child.pid()
    os.kill(first_pid, signal.SIGKILL)
    time.sleep(0.5)
    out["after_kill"] = model.predict(pd.DataFrame({"text": [text + " after kill"]}))
    out["pids"] = [first_pid, impl._child.pid()]
    second = impl._child.pid()
    impl.close()
    time.sleep(0.2)
    try:
        os.kill(second, 0)
        out["alive_after_close"] = True
    except ProcessLookupError:
        out["alive_after_close"] = False
    # Garbage collection ends the child too.
    model = load(args)
    third = model._model_impl._child.pid()
    del model, impl
    import gc
    gc.collect()
    deadline = time.monotonic() + 15
    alive = True
    while alive and time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(third, os.WNOHANG)
            alive = pid == 0
        except ChildProcessError:
            alive = False
        time.sleep(0.1)
    out["alive_after_gc"] = alive
    return out


def error(args):
    model = load(args)
    return {"error": failure(lambda: model.predict(pd.DataFrame({"text": [args["text"]]})))}


def config(args):
    mlflow.set_tracking_uri(args["tracking_uri"])
    model = mlflow.pyfunc.load_model(args["model_uri"], model_config=args["model_config"])
    return {"predictions": model.predict(pd.DataFrame({"text": [args["text"]]}))}


def no_binary(args):
    return {"error": failure(lambda: load(args))}


def load_only(args):
    return {"error": failure(lambda: load(args))}


def post(url, body, content_type="application/json"):
    request = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return {"status": response.status, "body": json.loads(response.read())}
    except urllib.error.HTTPError as err:
        return {"status": err.code, "body": json.loads(err.read() or b"null")}


def serve(args):
    env = dict(os.environ, MLFLOW_TRACKING_URI=args["tracking_uri"])
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", args["model_uri"],
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(args["port"]), "-w", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{args['port']}"
    out = {}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log = server.stdout.read().decode(errors="replace")
                return {"started": False, "log": log[-4000:]}
            time.sleep(0.5)
        text = args["text"]
        bodies = {
            "dataframe_split": {"dataframe_split": {"columns": ["text"], "data": [[text + " a"], [text + " b"]]}},
            "dataframe_records": {"dataframe_records": [{"text": text + " a"}, {"text": text + " b"}]},
            "instances": {"instances": [{"text": text + " a"}, {"text": text + " b"}]},
            "inputs": {"inputs": {"text": [text + " a", text + " b"]}},
            "inputs_params": {"inputs": [{"text": text + " a"}, {"text": text + " b"}], "params": {"stream": False}},
            "missing_column": {"dataframe_records": [{"txt": "x"}]},
        }
        for name, body in bodies.items():
            out[name] = post(base + "/invocations", json.dumps(body))
        out["started"] = True
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    return out


def models_predict(args):
    mlflow.set_tracking_uri(args["tracking_uri"])
    frame = pd.DataFrame({"text": [args["text"] + " a", args["text"] + " b"]})
    mlflow.models.predict(args["model_uri"], input_data=frame, env_manager="local",
                          output_path=args["output"])
    with open(args["output"], encoding="utf-8") as f:
        return {"output": json.load(f)}


def main():
    mode, args = sys.argv[1], json.loads(sys.argv[2])
    result = globals()[mode](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
