"""Load the Python `summarize` chain logged by log_summarize.py and run it once, as a team
would in a batch job: the baseline of benches/predict_vs_mlflow.rs.
Usage: predict_summarize.py MODEL_URI TEXT (tracking store: sqlite:///mlflow.db in the cwd)."""

import json
import sys

import mlflow

mlflow.set_tracking_uri("sqlite:///mlflow.db")
model = mlflow.pyfunc.load_model(sys.argv[1])
print(json.dumps(model.predict({"text": sys.argv[2]})))
