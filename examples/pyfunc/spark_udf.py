"""A chainlog model over Spark: `mlflow.pyfunc.spark_udf` on a local Spark, one column of a
DataFrame of N rows (default 1,000) scored by the Rust chain through the model's
`python_function` flavor. Not part of the test suite: it needs Java 17+ and pyspark.

Setup (once):
    python3 -m venv spark-venv
    spark-venv/bin/pip install -r examples/pyfunc/requirements-spark.txt

Run, from a folder where `chainlog log summarize --registered-model summarizer --alias champion`
logged the model (./mlflow.db), with chainlog's mock or a real endpoint:
    chainlog mock --port 8089 --latency-ms 50 &
    CHAINLOG_BIN=$(command -v chainlog) OPENAI_BASE_URL=http://127.0.0.1:8089/v1 \\
        OPENAI_API_KEY=mock-key spark-venv/bin/python examples/pyfunc/spark_udf.py \\
        sqlite:///mlflow.db models:/summarizer@champion 1000

Each Spark Python worker loads the model once (one chainlog child per worker) and sends it
its Arrow batches as DataFrames; every row's summary is checked against its own text.
"""

import os
import sys
import time

import mlflow
import pandas as pd
from pyspark.sql import SparkSession


def main():
    tracking_uri, model_uri = sys.argv[1], sys.argv[2]
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    mlflow.set_tracking_uri(tracking_uri)
    # Spark's Python workers run this venv's interpreter (which has MLflow and pandas).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("chainlog-spark-udf")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        texts = pd.DataFrame({"text": [f"row {i}: Spark scores a Rust chain." for i in range(rows)]})
        frame = spark.createDataFrame(texts).repartition(4)
        started = time.perf_counter()
        summarize = mlflow.pyfunc.spark_udf(spark, model_uri, result_type="summary string")
        scored = frame.withColumn("prediction", summarize("text"))
        result = scored.select("text", "prediction.summary").toPandas()
        elapsed = time.perf_counter() - started
        wrong = [t for t, s in zip(result["text"], result["summary"]) if not s or t not in s]
        print(f"spark {spark.version}, mlflow {mlflow.__version__}: {len(result)} rows scored "
              f"in {elapsed:.1f} s ({len(result) / elapsed:.0f} rows/s) over {frame.rdd.getNumPartitions()} partitions")
        print(result.head(3).to_string(index=False))
        print(f"rows whose summary does not hold their own text: {len(wrong)}")
        if len(result) != rows or wrong:
            sys.exit(1)
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
