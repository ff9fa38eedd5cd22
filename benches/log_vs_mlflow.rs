//! `chainlog log` against `mlflow.pyfunc.log_model`, whole process each, same machine, same
//! run: the `summarize` chain logged to a local SQLite store with its input example validated
//! against a mock, versus the equivalent Python models-from-code chain
//! (benches/python/summarize_chain.py, logged by benches/python/log_summarize.py with
//! mlflow==3.17.2 from the test harness's cached venv). Rounds alternate which goes first; the
//! figure is the ratio of medians. Target: chainlog ≥ 50× faster.
//!
//! Run: `cargo bench --bench log_vs_mlflow` (`BENCH_ROUNDS` to change the count, default 5).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/it/support/python_env.rs"]
#[allow(dead_code)]
mod python_env;

mod support;

use support::median;

use std::{path::Path, process::Command, time::Instant};

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
    support::scratch_project(&chainlog_dir);
    std::fs::create_dir_all(&python_dir).unwrap();

    let run_chainlog = || {
        let start = Instant::now();
        let output = Command::new(chainlog)
            .args([
                "log",
                "summarize",
                "--input-example",
                r#"{"text": "Rust is a systems programming language focused on safety and speed."}"#,
            ])
            .current_dir(&chainlog_dir)
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("MLFLOW_TRACKING_URI")
            .output()
            .unwrap();
        let elapsed = start.elapsed();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        elapsed
    };
    let run_python = || {
        let start = Instant::now();
        let output = env
            .command()
            .arg(root.join("benches/python/log_summarize.py"))
            .arg(&base_url)
            .current_dir(&python_dir)
            .env("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
            .output()
            .unwrap();
        let elapsed = start.elapsed();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        elapsed
    };

    // Warm-up: page cache, the SQLite schema creation of the first log on each side.
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
        "log_vs_mlflow: {rounds} rounds, whole process each, summarize chain → sqlite, input example validated against a mock"
    );
    println!(
        "  chainlog log                 median {:8.1} ms",
        ours.as_secs_f64() * 1e3
    );
    println!(
        "  mlflow.pyfunc.log_model      median {:8.1} ms",
        theirs.as_secs_f64() * 1e3
    );
    println!("  mlflow / chainlog            {ratio:.1}×");
    println!(
        "VERDICT: {} — target ≥ 50×",
        if ratio >= 50.0 { "PASS" } else { "FAIL" }
    );
}
