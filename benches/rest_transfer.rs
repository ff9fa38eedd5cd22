//! Artifact transfer over REST against a real `mlflow server` (mlflow==3.17.2 from the test
//! harness's cached venv) on loopback: the `summarize` chain is logged once through the
//! server's artifact proxy, then
//!
//! 1. **cold predict**: `chainlog predict -m models:/<id>` with an empty `CHAINLOG_CACHE_DIR`
//!    (lists and downloads every file of the model, ~200), side by side with the same command
//!    on a warm cache (no transfer: process start, rebuild, one mock call) as the baseline,
//!    rounds alternating which goes first. Target: cold ≤ 1 s.
//! 2. **50 concurrent cold predicts** of that model by 50 processes sharing one empty cache
//!    (the per-model lock lets one download while the others wait and reuse it), against one
//!    cold predict measured in the same round. Target: ≤ 3× one.
//!
//! Prints medians and the ratios, and a VERDICT line per target.
//!
//! Run: `cargo bench --bench rest_transfer` (`BENCH_ROUNDS`, default 5; `BENCH_CONCURRENCY`,
//! default 50).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/it/support/python_env.rs"]
#[allow(dead_code)]
mod python_env;

#[path = "../tests/it/support/mlflow_server.rs"]
#[allow(dead_code)]
mod mlflow_server;

#[allow(dead_code)]
mod support;

use support::{check, median};

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const INPUT: &str = r#"{"text": "Rust is a systems programming language focused on safety."}"#;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn main() {
    let rounds = env_usize("BENCH_ROUNDS", 5);
    let concurrency = env_usize("BENCH_CONCURRENCY", 50);
    let chainlog = env!("CARGO_BIN_EXE_chainlog");
    let server = mlflow_server::MlflowServer::start();
    let work = tempfile::tempdir().unwrap();
    let project = work.path().join("project");
    support::scratch_project(&project);

    let command = |cache: &Path| {
        let mut cmd = Command::new(chainlog);
        cmd.current_dir(&project)
            .env("CHAINLOG_CACHE_DIR", cache)
            .env("MLFLOW_TRACKING_URI", server.uri())
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("MLFLOW_TRACKING_TOKEN");
        cmd
    };
    let logged = check(
        &command(&work.path().join("unused"))
            .args(["log", "summarize", "--input-example", INPUT, "--json"])
            .output()
            .unwrap(),
        "chainlog log",
    );
    let logged: serde_json::Value = serde_json::from_str(&logged).unwrap();
    let uri = format!("models:/{}", logged["model_id"].as_str().unwrap());

    let mut fresh = 0usize;
    let mut fresh_cache = || {
        fresh += 1;
        work.path().join(format!("cache-{fresh}"))
    };
    let predict = |cache: &Path| {
        let start = Instant::now();
        let output = command(cache)
            .args(["predict", "-m", &uri, "--input", INPUT])
            .output()
            .unwrap();
        let elapsed = start.elapsed();
        assert!(check(&output, "chainlog predict").contains("summary"));
        elapsed
    };

    let warm = fresh_cache();
    predict(&warm);
    let files = walk_count(&warm);
    // Warm-up of the server's and the OS's caches.
    predict(&fresh_cache());

    let mut cold = Vec::new();
    let mut warm_times = Vec::new();
    for round in 0..rounds {
        if round % 2 == 0 {
            cold.push(predict(&fresh_cache()));
            warm_times.push(predict(&warm));
        } else {
            warm_times.push(predict(&warm));
            cold.push(predict(&fresh_cache()));
        }
    }

    let mut one = Vec::new();
    let mut many = Vec::new();
    for _ in 0..rounds.div_ceil(2) {
        one.push(predict(&fresh_cache()));
        let shared = fresh_cache();
        let start = Instant::now();
        let children: Vec<_> = (0..concurrency)
            .map(|_| {
                command(&shared)
                    .args(["predict", "-m", &uri, "--input", INPUT])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().unwrap();
            assert!(check(&output, "concurrent chainlog predict").contains("summary"));
        }
        many.push(start.elapsed());
    }

    let cold = median(&mut cold);
    let warm = median(&mut warm_times);
    let one = median(&mut one);
    let many = median(&mut many);
    let transfer_ratio = cold.as_secs_f64() / warm.as_secs_f64();
    let concurrent_ratio = many.as_secs_f64() / one.as_secs_f64();
    println!(
        "rest_transfer: {rounds} rounds, summarize model ({files} files) through mlflow server's artifact proxy on loopback"
    );
    println!(
        "  predict, cold cache (downloads)    median {:8.1} ms",
        ms(cold)
    );
    println!(
        "  predict, warm cache (baseline)     median {:8.1} ms",
        ms(warm)
    );
    println!("  cold / warm                               {transfer_ratio:.2}×");
    println!(
        "  {concurrency} concurrent cold predicts, one cache  median {:8.1} ms",
        ms(many)
    );
    println!(
        "  one cold predict (same rounds)     median {:8.1} ms",
        ms(one)
    );
    println!("  {concurrency} concurrent / one                    {concurrent_ratio:.2}×");
    println!(
        "VERDICT cold predict: {} — target ≤ 1000 ms",
        if cold <= Duration::from_secs(1) {
            "PASS"
        } else {
            "FAIL"
        }
    );
    println!(
        "VERDICT {concurrency} concurrent: {} — target ≤ 3×",
        if concurrent_ratio <= 3.0 {
            "PASS"
        } else {
            "FAIL"
        }
    );
}

/// Files under `dir`.
fn walk_count(dir: &Path) -> usize {
    let mut count = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                count += 1;
            }
        }
    }
    count
}
