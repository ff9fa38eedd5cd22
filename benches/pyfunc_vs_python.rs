//! `mlflow.pyfunc.load_model(...).predict(df)` of the chainlog `summarize` model (its
//! `python_function` flavor: one long-lived chainlog child, JSON lines, rows run concurrently)
//! against the same of the Python `summarize` chain (benches/python/summarize_chain.py, MLflow
//! models from code), on a DataFrame of `BENCH_ROWS` rows (default 1,000), both against one
//! `chainlog mock --latency-ms 50`, same machine, same run (benches/python/pyfunc_rows.py,
//! mlflow==3.17.2 from the test harness's cached venv). Each side is logged once with its
//! defaults (chainlog's `summarize` config: `llm.concurrency` 8). Target: chainlog not slower.
//!
//! The JSON-lines bridge's own cost, per row: a predict's time minus the time its rows ran in
//! the chainlog child (the child reports it with each answer), divided by the rows — MLflow's
//! schema check, DataFrame → JSON, the pipe both ways, parsing and checking the rows, the
//! answer back to Python objects. Measured in the 50 ms run, and against a mock without
//! latency as the median of `BENCH_REPEAT` predicts (default 5).
//!
//! Run: `cargo bench --bench pyfunc_vs_python` (release), or `cargo bench --profile dev
//! --bench pyfunc_vs_python` for the debug binary. `BENCH_ROWS` changes the row count.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/it/support/python_env.rs"]
#[allow(dead_code)]
mod python_env;

mod support;

use support::check;

use std::{path::Path, process::Command};

use serde_json::Value;

fn main() {
    let rows: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let repeat: usize = std::env::var("BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chainlog = env!("CARGO_BIN_EXE_chainlog");
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let env = python_env::provision("mlflow", &root.join("tests/python/requirements-mlflow.txt"));
    let slow = support::MockProcess::start(&["--latency-ms", "50"]);
    let fast = support::MockProcess::start(&[]);

    let work = tempfile::tempdir().unwrap();
    let chainlog_dir = work.path().join("chainlog");
    let python_dir = work.path().join("python");
    support::scratch_project(&chainlog_dir);
    std::fs::create_dir_all(&python_dir).unwrap();
    let cache = work.path().join("cache");

    let logged = check(
        &Command::new(chainlog)
            .args(["log", "summarize", "--json", "--input-example"])
            .arg(r#"{"text": "Rust is a systems programming language."}"#)
            .current_dir(&chainlog_dir)
            .env("CHAINLOG_CACHE_DIR", &cache)
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("MLFLOW_TRACKING_URI")
            .output()
            .unwrap(),
        "chainlog log",
    );
    let logged: Value = serde_json::from_str(&logged).unwrap();
    let chainlog_uri = format!("models:/{}", logged["model_id"].as_str().unwrap());
    let python_logged = check(
        &env.command()
            .arg(root.join("benches/python/log_summarize.py"))
            .arg(slow.base_url())
            .current_dir(&python_dir)
            .env("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
            .output()
            .unwrap(),
        "log_summarize.py",
    );
    let python_uri = format!("models:/{}", python_logged.lines().last().unwrap().trim());

    let pyfunc = |dir: &Path, uri: &str, base_url: &str, repeat: usize| -> Value {
        let out = check(
            &env.command()
                .arg(root.join("benches/python/pyfunc_rows.py"))
                .arg("sqlite:///mlflow.db")
                .arg(uri)
                .arg(rows.to_string())
                .arg(repeat.to_string())
                .current_dir(dir)
                .env("CHAINLOG_BIN", chainlog)
                .env("CHAINLOG_CACHE_DIR", &cache)
                .env("OPENAI_BASE_URL", base_url)
                .env("OPENAI_API_KEY", "mock-key")
                .env("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
                .output()
                .unwrap(),
            "pyfunc_rows.py",
        );
        serde_json::from_str(out.lines().last().unwrap()).unwrap()
    };

    eprintln!("pyfunc predict, {rows} rows, mock latency 50 ms: chainlog ({profile} binary)…");
    let ours = pyfunc(&chainlog_dir, &chainlog_uri, slow.base_url(), 1);
    eprintln!("pyfunc predict, {rows} rows, mock latency 50 ms: Python summarize_chain.py…");
    let theirs = pyfunc(&python_dir, &python_uri, slow.base_url(), 1);

    eprintln!("bridge overhead: {rows} rows through pyfunc, mock without latency…");
    let fast_run = pyfunc(&chainlog_dir, &chainlog_uri, fast.base_url(), repeat);

    let ours_s = ours["predict_s"].as_f64().unwrap();
    let theirs_s = theirs["predict_s"].as_f64().unwrap();
    println!("pyfunc predict of {rows} rows against the mock (50 ms latency), one run each:");
    println!(
        "  chainlog model ({profile} binary): {ours_s:.2} s ({:.2} ms/row), load_model {:.2} s",
        ours_s * 1000.0 / rows as f64,
        ours["load_s"].as_f64().unwrap()
    );
    println!(
        "  Python summarize_chain.py:        {theirs_s:.2} s ({:.2} ms/row), load_model {:.2} s",
        theirs_s * 1000.0 / rows as f64,
        theirs["load_s"].as_f64().unwrap()
    );
    println!(
        "  ratio: Python / chainlog = {:.1}x (target: chainlog not slower, ≥ 1.0x)",
        theirs_s / ours_s
    );
    let per_row = |run: &Value| run["bridge_s"].as_f64().unwrap() * 1e6 / rows as f64;
    println!("JSON-lines bridge (predict time minus the rows' run time in the child), per row:");
    println!(
        "  mock latency 50 ms, the run above:  {:.1} µs",
        per_row(&ours)
    );
    println!(
        "  mock without latency, median of {repeat}: {:.1} µs (predict {:.3} s, of which bridge {:.3} s)",
        per_row(&fast_run),
        fast_run["predict_s"].as_f64().unwrap(),
        fast_run["bridge_s"].as_f64().unwrap()
    );
}
