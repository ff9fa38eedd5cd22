"""Log the Python `summarize` chain with mlflow.pyfunc.log_model (models from code), as a
team would: the baseline of benches/log_vs_mlflow.rs. Usage: log_summarize.py MOCK_BASE_URL."""

import os
import sys

import mlflow

HERE = os.path.dirname(os.path.abspath(__file__))

mlflow.set_tracking_uri("sqlite:///mlflow.db")
config = {
    "llm": {"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 300, "base_url": sys.argv[1]},
    "system": "You are a precise editor. Summarise the user's text in at most {sentences} sentences.",
    "sentences": 3,
}
with mlflow.start_run():
    info = mlflow.pyfunc.log_model(
        name="summarize",
        python_model=os.path.join(HERE, "summarize_chain.py"),
        model_config=config,
        input_example={"text": "Rust is a systems programming language focused on safety and speed."},
    )
print(info.model_id)
