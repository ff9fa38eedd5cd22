//! Artifact transfer over REST against a real `mlflow server` (mlflow==3.17.2 from the test
//! harness's cached venv) on loopback, started as a user starts it (`mlflow server`'s default
//! of 4 uvicorn workers; `BENCH_MLFLOW_WORKERS=1` runs the tests' one-worker server): the
//! `summarize` chain is logged once through the server's artifact proxy, then
//!
//! 1. **cold predict**: `chainlog predict -m models:/<id>` with an empty `CHAINLOG_CACHE_DIR`
//!    (resolves the model, fetches its MLmodel and the files `predict` uses — not the crate
//!    snapshot or the cassettes — checks them, runs, exports its trace to the server), side
//!    by side with the same command on a warm cache (no transfer: process start, rebuild, one
//!    mock call, trace export) as the baseline, rounds alternating which goes first. Target:
//!    cold ≤ 1 s.
//! 2. **50 concurrent cold predicts** of that model by 50 processes sharing one empty cache
//!    (the per-model lock lets one download while the others wait and reuse it), against one
//!    cold predict measured in the same round. Target: ≤ 3× one. Measured in the same rounds,
//!    not targets but what bounds it: the same 50 predicts on the cache they just filled (no
//!    transfer at all: 50 process starts on this machine's cores and 50 traces written by
//!    the server), and 50 cold predicts with tracing off (`CHAINLOG_TRACING=off`).
//!
//! Prints medians and the ratios, and a VERDICT line per target.
//!
//! Run: `cargo bench --bench rest_transfer` (`BENCH_ROUNDS`, default 5; `BENCH_CONCURRENCY`,
//! default 50; `BENCH_MLFLOW_WORKERS`, default mlflow's own).

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
    let workers = std::env::var("BENCH_MLFLOW_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok());
    let server = mlflow_server::MlflowServer::start_with_workers(
        python_env::provision("mlflow", Path::new("tests/python/requirements-mlflow.txt")),
        mlflow_server::Artifacts::Proxied,
        workers,
    );
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
    let model_id = logged["model_id"].as_str().unwrap().to_owned();
    let uri = format!("models:/{model_id}");

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
    let files = walk_count(&warm.join(&model_id));
    // `count` predicts at once sharing the cache `shared`, with `env` set; their wall time.
    let at_once = |shared: &Path, count: usize, env: &[(&str, &str)]| {
        let start = Instant::now();
        let children: Vec<_> = (0..count)
            .map(|_| {
                command(shared)
                    .envs(env.iter().copied())
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
        start.elapsed()
    };
    // Warm-up of the server's and the OS's caches, and of every server worker: a fresh
    // uvicorn worker's first request on a route (an artifact download, a trace) imports its
    // code for seconds on this machine, which a long-running server has long paid; one burst
    // reaches every worker.
    predict(&fresh_cache());
    at_once(&fresh_cache(), concurrency, &[]);

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

    let untraced = [("CHAINLOG_TRACING", "off")];
    let mut one = Vec::new();
    let mut many = Vec::new();
    let mut many_warm = Vec::new();
    let mut many_untraced = Vec::new();
    for _ in 0..rounds.div_ceil(2) {
        one.push(predict(&fresh_cache()));
        let shared = fresh_cache();
        many.push(at_once(&shared, concurrency, &[]));
        many_warm.push(at_once(&shared, concurrency, &[]));
        many_untraced.push(at_once(&fresh_cache(), concurrency, &untraced));
    }

    let cold = median(&mut cold);
    let warm = median(&mut warm_times);
    let one = median(&mut one);
    let many = median(&mut many);
    let many_warm = median(&mut many_warm);
    let many_untraced = median(&mut many_untraced);
    let transfer_ratio = cold.as_secs_f64() / warm.as_secs_f64();
    let concurrent_ratio = many.as_secs_f64() / one.as_secs_f64();
    println!(
        "rest_transfer: {rounds} rounds, summarize model ({files} files in a predict's cache entry) through mlflow server's artifact proxy on loopback ({} workers)",
        workers.map_or_else(|| "default".to_owned(), |n: u32| n.to_string())
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
        "  {concurrency} concurrent warm predicts (no transfer)  median {:8.1} ms",
        ms(many_warm)
    );
    println!(
        "  {concurrency} concurrent cold / warm                {:.2}×",
        many.as_secs_f64() / many_warm.as_secs_f64()
    );
    println!(
        "  {concurrency} concurrent cold, tracing off  median {:8.1} ms",
        ms(many_untraced)
    );
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
