"""The `summarize` chain as an MLflow models-from-code Python model: the baseline chainlog's
log and predict benchmarks compare against. One chat prompt, one call to an OpenAI-compatible
server (the mock), config from MLflow's model_config — the same work as chains/summarize.rs.
"""

import json
import urllib.request

import mlflow
from mlflow.models import ModelConfig
from mlflow.pyfunc import PythonModel


class Summarize(PythonModel):
    def load_context(self, context):
        # At load time MLflow hands the logged model_config over on the context; ModelConfig()
        # only finds it while log_model validates the input example.
        config = getattr(context, "model_config", None)
        self.config = dict(config) if config else ModelConfig().to_dict()

    def predict(self, context, model_input, params=None):
        rows = model_input.to_dict(orient="records") if hasattr(model_input, "to_dict") else [model_input]
        out = []
        for row in rows:
            llm = self.config["llm"]
            body = {
                "model": llm["model"],
                "temperature": llm["temperature"],
                "max_completion_tokens": llm["max_tokens"],
                "messages": [
                    {"role": "system", "content": self.config["system"].format(sentences=self.config["sentences"])},
                    {"role": "user", "content": row["text"]},
                ],
            }
            request = urllib.request.Request(
                llm["base_url"] + "/chat/completions",
                data=json.dumps(body).encode(),
                headers={"content-type": "application/json", "authorization": "Bearer mock-key"},
            )
            with urllib.request.urlopen(request) as response:
                reply = json.load(response)
            out.append({"summary": reply["choices"][0]["message"]["content"]})
        return out


mlflow.models.set_model(Summarize())
