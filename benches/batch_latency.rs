//! Batch prediction against a slow endpoint: 2,000 rows at `--concurrency 64` through
//! `chainlog predict --input-file … --output …`, the mock answering every call after 200 ms.
//! The ideal is ceil(rows / concurrency) × latency; the figure is the whole process's wall
//! time (start-up, model load, every row, every output line) over that ideal. Target ≤ 1.05.
//!
//! Run: `cargo bench --bench batch_latency` (`BENCH_ROWS`, `BENCH_CONCURRENCY`,
//! `BENCH_LATENCY_MS` to change the shape).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::{
    process::Command,
    time::{Duration, Instant},
};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rows = env_number("BENCH_ROWS", 2000);
    let concurrency = env_number("BENCH_CONCURRENCY", 64);
    let latency_ms = env_number("BENCH_LATENCY_MS", 200);
    let chainlog = env!("CARGO_BIN_EXE_chainlog");

    let mock = support::MockProcess::start(&["--latency-ms", &latency_ms.to_string()]);
    let base_url = mock.base_url().to_owned();

    let work = tempfile::tempdir().unwrap();
    support::scratch_project(work.path());
    let command = |args: &[&str]| {
        let output = Command::new(chainlog)
            .args(args)
            .current_dir(work.path())
            .env("OPENAI_BASE_URL", &base_url)
            .env("OPENAI_API_KEY", "bench-key")
            .env("CHAINLOG_CACHE_DIR", work.path().join("cache"))
            .env_remove("MLFLOW_TRACKING_URI")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    };
    let logged = command(&["log", "summarize", "--no-validate", "--json"]);
    let logged: serde_json::Value = serde_json::from_slice(&logged.stdout).unwrap();
    let model = format!("models:/{}", logged["model_id"].as_str().unwrap());
    let input: String = (0..rows)
        .map(|row| format!("{{\"text\": \"row {row} of the batch\"}}\n"))
        .collect();
    std::fs::write(work.path().join("rows.jsonl"), input).unwrap();
    // Load once so the timed run finds the artifact in the cache, as a rerun would.
    command(&["predict", "-m", &model, "--input", r#"{"text": "warm"}"#]);

    let concurrency_text = concurrency.to_string();
    let client_limit = format!("llm.concurrency={concurrency}");
    let start = Instant::now();
    command(&[
        "predict",
        "-m",
        &model,
        "--input-file",
        "rows.jsonl",
        "--output",
        "out.jsonl",
        "--concurrency",
        &concurrency_text,
        "--set",
        &client_limit,
    ]);
    let wall = start.elapsed();
    drop(mock);

    let written = std::fs::read_to_string(work.path().join("out.jsonl"))
        .unwrap()
        .lines()
        .count() as u64;
    assert_eq!(written, rows, "one output line per row");
    let ideal = Duration::from_millis(rows.div_ceil(concurrency) * latency_ms);
    let ratio = wall.as_secs_f64() / ideal.as_secs_f64();
    println!(
        "batch_latency: {rows} rows, concurrency {concurrency}, endpoint latency {latency_ms} ms"
    );
    println!("  wall time (whole process)   {:8.3} s", wall.as_secs_f64());
    println!(
        "  ideal ceil(N/C) × latency   {:8.3} s",
        ideal.as_secs_f64()
    );
    println!("  ratio                       {ratio:.3}");
    println!(
        "VERDICT: {} — target ≤ 1.05",
        if ratio <= 1.05 { "PASS" } else { "FAIL" }
    );
}
