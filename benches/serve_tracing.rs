//! `chainlog serve` with tracing on against the same model served with `--no-trace`, same
//! machine, same run: req/s of each under a closed-loop load of `POST /invocations` at
//! concurrency 8, in alternating windows so drift hits both alike (target: traced ≥ 90% of
//! untraced); then memory over 100,000 traced requests — the traced server's resident memory
//! after 10,000 requests against after 100,000 (target: flat, growth ≤ 10%), traces written
//! into the SQLite store the model was logged to, the export queue bounded. Printed beside
//! them: the share of traced requests whose trace reached the store (the export thread runs at
//! idle CPU priority, so while the closed loop keeps every CPU busy most traces are dropped,
//! counted), and open-loop runs paced at a quarter and at half the untraced rate, each
//! against a fresh traced server: the share of answered requests whose trace was stored when
//! the CPU has some room to spare.
//!
//! Both servers call the same `chainlog mock` process.
//!
//! Run: `cargo bench --bench serve_tracing` (`BENCH_SECONDS` per window, default 5;
//! `BENCH_ROUNDS` windows per side, default 8; `BENCH_REQUESTS` for the memory run, default
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
    let rounds = env_number("BENCH_ROUNDS", 8);
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
    let mut traced_requests = 0;
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
        traced_requests += load(&client, &traced_url, Duration::from_secs(2), TEXT)
            .await
            .requests;
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
            traced_requests += (a * window.as_secs_f64()).round() as usize;
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
    let db = rusqlite::Connection::open(dir.join("mlflow.db")).unwrap();
    let stored = stop_and_count_traces(traced, &db);
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
    let traced_requests = traced_requests + total;
    println!(
        "  traces in the store: {stored} of ~{traced_requests} traced requests ({:.0} %: the rest \
         dropped while the closed loop kept every CPU busy); queue-full warning: {dropped}",
        stored as f64 * 100.0 / traced_requests as f64
    );
    println!(
        "VERDICT memory: {} — target growth ≤ 1.10",
        if growth <= 1.10 { "PASS" } else { "FAIL" }
    );

    // Paced at a quarter and at half the untraced rate, each on a fresh traced server: the
    // share of answered requests whose trace reached the store.
    let untraced_rate = median(&mut off);
    let mut stored = stored;
    for (share, name) in [(4.0, "a quarter"), (2.0, "half")] {
        let rate = ((untraced_rate / share / 500.0).round() as u64).max(1) * 500;
        let paced_log = work.path().join(format!("paced-{share}.log"));
        let mut paced = serve(&dir, &cache, &model, &base_url, &[], &paced_log);
        let paced_url = first_line(&mut paced.child);
        let (answered, refused) = runtime.block_on(async {
            wait_ready(
                &client,
                &paced_url,
                &mut paced.child,
                Duration::from_secs(30),
            )
            .await;
            // Connections kept for as many requests as the server takes at once.
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            paced_load(&client, &paced_url, rate, window * 2).await
        });
        let stored_after = stop_and_count_traces(paced, &db);
        let paced_stored = usize::try_from(stored_after - stored).unwrap();
        stored = stored_after;
        let queue_full = std::fs::read_to_string(&paced_log)
            .unwrap_or_default()
            .contains("queue is full");
        println!(
            "  paced at {rate} req/s ({name} the untraced rate) for {} s: {paced_stored} traces \
             stored for {answered} requests answered ({:.0} %; {refused} refused with 503 by the \
             slot limit), queue full: {queue_full}",
            (window * 2).as_secs(),
            paced_stored as f64 * 100.0 / answered.max(1) as f64
        );
    }
}

/// Stops `server` gracefully (its trace queue is flushed into the store) and counts the traces
/// in the store `db`.
fn stop_and_count_traces(mut server: KillOnDrop, db: &rusqlite::Connection) -> i64 {
    let _ = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    let _ = server.child.wait();
    db.query_row("SELECT count(*) FROM trace_info", [], |row| row.get(0))
        .unwrap()
}

/// Open loop: `rate` requests per second for `length`, whatever their latency; how many were
/// answered and how many refused with 503 (any other failure fails the bench).
async fn paced_load(
    client: &reqwest::Client,
    base: &str,
    rate: u64,
    length: Duration,
) -> (usize, usize) {
    let url = Arc::new(format!("{base}/invocations"));
    let body = Arc::new(serde_json::json!({ "inputs": { "text": TEXT } }).to_string());
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let ticks = length.as_millis();
    let per_tick = (rate / 1000).max(1);
    let mut sent = Vec::new();
    for _ in 0..ticks {
        tick.tick().await;
        for _ in 0..per_tick {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            sent.push(tokio::spawn(async move {
                client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .body(body.as_str().to_owned())
                    .send()
                    .await
                    .map_err(|error| error.to_string())
                    .and_then(|response| match response.status() {
                        status if status.is_success() => Ok(()),
                        status => Err(status.to_string()),
                    })
            }));
        }
    }
    let (mut ok, mut refused) = (0, 0);
    for request in sent {
        match request.await.unwrap() {
            Ok(()) => ok += 1,
            // The server's slot limit (64 requests at once), with or without tracing: an
            // open loop on two shared cores bunches requests up now and then.
            Err(status) if status.starts_with("503") => refused += 1,
            Err(error) => panic!("a paced request failed: {error}"),
        }
    }
    (ok, refused)
}
