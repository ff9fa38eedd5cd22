//! Cold `chainlog predict` against a Python process doing `mlflow.pyfunc.load_model` +
//! `predict`, a new process each, same machine, same run. The `summarize` chain is logged
//! once on each side into its own temp dir's `./mlflow.db` (chainlog with its built-in mock,
//! the Python models-from-code chain of benches/python/summarize_chain.py with
//! benches/python/log_summarize.py against a `chainlog mock` process), then each round runs
//! `chainlog predict -m models:/<id> --input …` (model cache already filled: this measures a
//! cold *process* with a warm cache) and `benches/python/predict_summarize.py models:/<id> …`
//! (mlflow==3.17.2 from the test harness's cached venv). One truly cold chainlog fetch (empty
//! cache) is reported separately. Rounds alternate which goes first; the figure is the ratio
//! of medians. Target: chainlog ≥ 50× faster.
//!
//! Run: `cargo bench --bench predict_vs_mlflow` (`BENCH_ROUNDS` to change the count, default 5).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/it/support/python_env.rs"]
#[allow(dead_code)]
mod python_env;

mod support;

use support::{check, median};

use std::{path::Path, process::Command, time::Instant};

const TEXT: &str = "Rust is a systems programming language focused on safety and speed.";

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chainlog = env!("CARGO_BIN_EXE_chainlog");
    let env = python_env::provision("mlflow", &root.join("tests/python/requirements-mlflow.txt"));

    // One mock for the Python chain's calls (chainlog starts its own in-process).
    let mock = support::MockProcess::start(&[]);
    let base_url = mock.base_url().to_owned();

    let work = tempfile::tempdir().unwrap();
    let chainlog_dir = work.path().join("chainlog");
    let python_dir = work.path().join("python");
    let cache_dir = work.path().join("cache");
    support::scratch_project(&chainlog_dir);
    std::fs::create_dir_all(&python_dir).unwrap();

    let chainlog_cmd = || {
        let mut cmd = Command::new(chainlog);
        cmd.current_dir(&chainlog_dir)
            .env("CHAINLOG_CACHE_DIR", &cache_dir)
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("MLFLOW_TRACKING_URI");
        cmd
    };

    // Log once on each side.
    let input_example = format!(r#"{{"text": "{TEXT}"}}"#);
    let logged = check(
        &chainlog_cmd()
            .args(["log", "summarize", "--input-example", &input_example])
            .output()
            .unwrap(),
        "chainlog log",
    );
    let model_id = logged
        .lines()
        .find_map(|line| line.strip_prefix("model_id:"))
        .expect("chainlog log printed no model_id")
        .trim()
        .to_owned();
    let chainlog_uri = format!("models:/{model_id}");
    let logged = check(
        &env.command()
            .arg(root.join("benches/python/log_summarize.py"))
            .arg(&base_url)
            .current_dir(&python_dir)
            .env("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
            .output()
            .unwrap(),
        "log_summarize.py",
    );
    let python_uri = format!(
        "models:/{}",
        logged
            .lines()
            .last()
            .expect("log_summarize.py printed no model id")
            .trim()
    );

    let run_chainlog = || {
        let start = Instant::now();
        let output = chainlog_cmd()
            .args(["predict", "-m", &chainlog_uri, "--input", &input_example])
            .output()
            .unwrap();
        let elapsed = start.elapsed();
        let out = check(&output, "chainlog predict");
        assert!(out.contains("summary"), "unexpected output: {out}");
        elapsed
    };
    let run_python = || {
        let start = Instant::now();
        let output = env
            .command()
            .arg(root.join("benches/python/predict_summarize.py"))
            .arg(&python_uri)
            .arg(TEXT)
            .current_dir(&python_dir)
            .env("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
            .output()
            .unwrap();
        let elapsed = start.elapsed();
        let out = check(&output, "predict_summarize.py");
        assert!(out.contains("summary"), "unexpected output: {out}");
        elapsed
    };

    // The first chainlog predict fetches the artifact into the empty cache: report it alone.
    let cold_fetch = run_chainlog();
    // Warm-up: page cache, Python's bytecode cache.
    run_chainlog();
    run_python();
    let mut chainlog_times = Vec::new();
    let mut python_times = Vec::new();
    for round in 0..rounds {
        if round % 2 == 0 {
            chainlog_times.push(run_chainlog());
            python_times.push(run_python());
        } else {
            python_times.push(run_python());
            chainlog_times.push(run_chainlog());
        }
    }
    drop(mock);
    let ours = median(&mut chainlog_times);
    let theirs = median(&mut python_times);
    let ratio = theirs.as_secs_f64() / ours.as_secs_f64();
    println!(
        "predict_vs_mlflow: {rounds} rounds, new process each, summarize chain from models:/<id> in sqlite, one mock call"
    );
    println!(
        "  chainlog predict (cold fetch, empty cache) {:8.1} ms",
        cold_fetch.as_secs_f64() * 1e3
    );
    println!(
        "  chainlog predict (warm cache)       median {:8.1} ms",
        ours.as_secs_f64() * 1e3
    );
    println!(
        "  mlflow.pyfunc.load_model + predict  median {:8.1} ms",
        theirs.as_secs_f64() * 1e3
    );
    println!("  mlflow / chainlog                   {ratio:.1}×");
    println!(
        "VERDICT: {} — target ≥ 50×",
        if ratio >= 50.0 { "PASS" } else { "FAIL" }
    );
}
