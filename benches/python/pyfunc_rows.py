"""Load a model with mlflow.pyfunc.load_model and time one predict over a DataFrame of N rows,
as a team would score a table: used by benches/pyfunc_vs_python.rs for both the chainlog model
(its python_function flavor) and the Python `summarize` chain of summarize_chain.py.
Usage: pyfunc_rows.py TRACKING_URI MODEL_URI ROWS [REPEAT]. Prints one JSON line:
{"load_s", "predict_s", "rows", "bridge_s"} (after a 1-row warm-up predict, not counted); with
REPEAT, the median predict of that many. For a chainlog model, bridge_s is that predict's time
minus the time its rows ran in the chainlog child (what the child reports): the cost of MLflow's
schema check, the JSON lines and the pipe; null for other models."""

import json
import sys
import time

import mlflow
import pandas as pd

mlflow.set_tracking_uri(sys.argv[1])
rows = int(sys.argv[3])
started = time.perf_counter()
model = mlflow.pyfunc.load_model(sys.argv[2])
loaded = time.perf_counter()
model.predict(pd.DataFrame({"text": ["warm-up row"]}))
frame = pd.DataFrame({"text": [f"row {i}: Rust is a systems programming language." for i in range(rows)]})
child = getattr(model._model_impl, "_child", None)
times = []
for _ in range(int(sys.argv[4]) if len(sys.argv) > 4 else 1):
    begin = time.perf_counter()
    out = model.predict(frame)
    elapsed = time.perf_counter() - begin
    bridge = elapsed - child.last_run_seconds if child is not None else None
    times.append((elapsed, bridge))
    out = list(out)
    assert len(out) == rows, len(out)
    for i, prediction in enumerate(out):
        assert f"row {i}:" in prediction["summary"], (i, prediction)
times.sort(key=lambda t: t[0])
predict_s, bridge_s = times[len(times) // 2]
print(json.dumps({"load_s": loaded - started, "predict_s": predict_s, "rows": rows, "bridge_s": bridge_s}))
