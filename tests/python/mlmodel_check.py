"""Judges chainlog artifacts with MLflow itself.

Usage: python mlmodel_check.py <artifact dir>...

For each directory, MLflow parses the MLmodel (`Model.load`, from the directory and from the
file), rebuilds the signature, re-serialises it, reads the input example and the serving
example the way it does for a logged model, and validates the input and output examples
against the signature. Prints one JSON object: directory -> what MLflow saw. An exception
propagates (non-zero exit): the Rust test shows it.
"""

import json
import os
import sys

import mlflow
from mlflow.models import Model
from mlflow.models.utils import validate_schema


def check(directory):
    model = Model.load(directory)
    again = Model.load(os.path.join(directory, "MLmodel"))
    assert model.to_dict() == again.to_dict(), "loading the dir and the file differ"
    signature = model.signature
    example = model.load_input_example(directory)
    validate_schema(example, signature.inputs)
    output_path = os.path.join(directory, "output_example.json")
    output_example = None
    if os.path.exists(output_path):
        with open(output_path) as f:
            output_example = json.load(f)
        validate_schema(output_example, signature.outputs)
    return {
        "mlflow": mlflow.__version__,
        "model_id": model.model_id,
        "model_uuid": model.model_uuid,
        "run_id": model.run_id,
        "artifact_path": model.artifact_path,
        "mlflow_version": model.mlflow_version,
        "utc_time_created": model.utc_time_created,
        "flavors": sorted(model.flavors),
        "chainlog_format_version": model.flavors["chainlog"]["format_version"],
        "inputs": signature.inputs.to_json(),
        "outputs": signature.outputs.to_json(),
        "params": None if signature.params is None else signature.params.to_json(),
        "input_names": signature.inputs.input_names(),
        "input_example": example,
        "serving_input": json.loads(model.get_serving_input(directory)),
        "saved_input_example_info": model.saved_input_example_info,
        "model_size_bytes": model.model_size_bytes,
        "env_vars": model.env_vars,
        "prompts": model.prompts,
    }


if __name__ == "__main__":
    print(json.dumps({directory: check(directory) for directory in sys.argv[1:]}))
