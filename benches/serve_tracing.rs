//! `chainlog serve` with tracing on against the same model served with `--no-trace`, same
//! machine, same run: req/s of each under a closed-loop load of `POST /invocations` at
//! concurrency 8, in alternating windows so drift hits both alike (target: traced ≥ 90% of
//! untraced); then memory over 100,000 traced requests — the traced server's resident memory
//! after 10,000 requests against after 100,000 (target: flat, growth ≤ 10%), traces written
//! into the SQLite store the model was logged to, the export queue bounded.
//!
//! Both servers call the same `chainlog mock` process.
//!
//! Run: `cargo bench --bench serve_tracing` (`BENCH_SECONDS` per window, default 5;
//! `BENCH_ROUNDS` windows per side, default 4; `BENCH_REQUESTS` for the memory run, default
//! 100000).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use support::check;

#[path = "support/serve.rs"]
mod serve_support;

use std::{
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use serve_support::{CONCURRENCY, KillOnDrop, first_line, load, tree_rss_kib, wait_ready};

const TEXT: &str = "Rust is a systems programming language focused on safety and speed.";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `chainlog serve` of `model_id` from `dir`, `extra` flags; its stderr goes to `log`.
fn serve(
    dir: &Path,
    cache: &Path,
    model_id: &str,
    base_url: &str,
    extra: &[&str],
    log: &Path,
) -> KillOnDrop {
    let mut args = vec!["serve", "-m", model_id, "--port", "0"];
    args.extend_from_slice(extra);
    KillOnDrop {
        child: Command::new(env!("CARGO_BIN_EXE_chainlog"))
            .args(&args)
            .current_dir(dir)
            .env("CHAINLOG_CACHE_DIR", cache)
            .env("OPENAI_BASE_URL", base_url)
            .env("OPENAI_API_KEY", "mock-key")
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("CHAINLOG_TRACING")
            .env_remove("MLFLOW_TRACE_SAMPLING_RATIO")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
        group: false,
    }
}

/// Closed loop of exactly `total` requests at [`CONCURRENCY`].
async fn requests(client: &reqwest::Client, base: &str, total: usize) -> usize {
    let url = Arc::new(format!("{base}/invocations"));
    let body = Arc::new(serde_json::json!({ "inputs": { "text": TEXT } }).to_string());
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, url, body, next, errors) = (
            client.clone(),
            url.clone(),
            body.clone(),
            next.clone(),
            errors.clone(),
        );
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let ok = match client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .body(body.as_str().to_owned())
                    .send()
                    .await
                {
                    Ok(response) => response.status().is_success(),
                    Err(_) => false,
                };
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    errors.load(Ordering::Relaxed)
}

fn main() {
    let seconds = env_number("BENCH_SECONDS", 5);
    let rounds = env_number("BENCH_ROUNDS", 4);
    let total = env_number("BENCH_REQUESTS", 100_000) as usize;
    let window = Duration::from_secs(seconds);
    let chainlog = env!("CARGO_BIN_EXE_chainlog");
    let mock = support::MockProcess::start(&[]);
    let base_url = mock.base_url().to_owned();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("chainlog");
    let cache = work.path().join("cache");
    support::scratch_project(&dir);
    let logged = check(
        &Command::new(chainlog)
            .args([
                "log",
                "summarize",
                "--input-example",
                &format!(r#"{{"text": "{TEXT}"}}"#),
                "--no-validate",
            ])
            .current_dir(&dir)
            .env("CHAINLOG_CACHE_DIR", &cache)
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("MLFLOW_TRACKING_URI")
            .output()
            .unwrap(),
        "chainlog log",
    );
    let model_id = logged
        .lines()
        .find_map(|line| line.strip_prefix("model_id:"))
        .expect("chainlog log printed no model_id")
        .trim();
    let model = format!("models:/{model_id}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let traced_log = work.path().join("traced.log");
    let mut traced = serve(&dir, &cache, &model, &base_url, &[], &traced_log);
    let mut untraced = serve(
        &dir,
        &cache,
        &model,
        &base_url,
        &["--no-trace"],
        &work.path().join("untraced.log"),
    );
    let traced_url = first_line(&mut traced.child);
    let untraced_url = first_line(&mut untraced.child);

    let (mut on, mut off, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    runtime.block_on(async {
        wait_ready(
            &client,
            &traced_url,
            &mut traced.child,
            Duration::from_secs(30),
        )
        .await;
        wait_ready(
            &client,
            &untraced_url,
            &mut untraced.child,
            Duration::from_secs(30),
        )
        .await;
        load(&client, &traced_url, Duration::from_secs(2), TEXT).await;
        load(&client, &untraced_url, Duration::from_secs(2), TEXT).await;
        for round in 0..rounds {
            let rps = |l: &serve_support::Load| {
                assert_eq!(l.errors, 0, "errors under load");
                l.requests as f64 / l.elapsed.as_secs_f64()
            };
            let (a, b) = if round % 2 == 0 {
                let a = load(&client, &traced_url, window, TEXT).await;
                (
                    rps(&a),
                    rps(&load(&client, &untraced_url, window, TEXT).await),
                )
            } else {
                let b = load(&client, &untraced_url, window, TEXT).await;
                (
                    rps(&load(&client, &traced_url, window, TEXT).await),
                    rps(&b),
                )
            };
            on.push(a);
            off.push(b);
            ratios.push(a / b);
        }
    });
    drop(untraced);
    let ratio = median(&mut ratios);
    println!(
        "serve_tracing: closed loop, concurrency {CONCURRENCY}, {rounds} × {seconds} s windows per side, alternating"
    );
    println!("  traced     median {:9.1} req/s", median(&mut on));
    println!("  --no-trace median {:9.1} req/s", median(&mut off));
    println!("  ratio traced/untraced median {ratio:.3}");
    println!(
        "VERDICT req/s: {} — target ≥ 0.90",
        if ratio >= 0.90 { "PASS" } else { "FAIL" }
    );

    // Memory over `total` traced requests.
    let tenth = total / 10;
    let (rss_early, rss_late) = runtime.block_on(async {
        assert_eq!(requests(&client, &traced_url, tenth).await, 0);
        let early = tree_rss_kib(traced.child.id()).0;
        assert_eq!(requests(&client, &traced_url, total - tenth).await, 0);
        let late = tree_rss_kib(traced.child.id()).0;
        (early, late)
    });
    let growth = rss_late as f64 / rss_early as f64;
    // Graceful stop: the queue is flushed into the store.
    let _ = Command::new("kill")
        .args(["-TERM", &traced.child.id().to_string()])
        .status();
    let _ = traced.child.wait();
    let db = rusqlite::Connection::open(dir.join("mlflow.db")).unwrap();
    let stored: i64 = db
        .query_row("SELECT count(*) FROM trace_info", [], |row| row.get(0))
        .unwrap();
    let log = std::fs::read_to_string(&traced_log).unwrap_or_default();
    let dropped = log
        .lines()
        .find(|l| l.contains("queue is full"))
        .unwrap_or("none");
    println!(
        "  memory: RSS {:.1} MiB after {tenth} traced requests, {:.1} MiB after {total} (growth {growth:.3})",
        rss_early as f64 / 1024.0,
        rss_late as f64 / 1024.0
    );
    println!("  traces in the store: {stored}; queue-full warning: {dropped}");
    println!(
        "VERDICT memory: {} — target growth ≤ 1.10",
        if growth <= 1.10 { "PASS" } else { "FAIL" }
    );
}
