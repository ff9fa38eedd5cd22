//! `chainlog serve` against `mlflow models serve --env-manager local`, same machine, same run:
//! the `summarize` chain logged once on each side (chainlog's `log` with its built-in mock, the
//! Python models-from-code chain of benches/python/summarize_chain.py with
//! benches/python/log_summarize.py, mlflow==3.17.2 from the test harness's cached venv), then
//! each server under a closed-loop load of `POST /invocations` at concurrency 8 for ~10 s
//! after a warm-up. Both servers call the same `chainlog mock` process (chainlog serve via
//! OPENAI_BASE_URL), so each request does the same network work. Reported: req/s, p50, p99,
//! errors, and the server's resident memory (VmRSS summed over its process tree, after load).
//! Targets: req/s ratio ≥ 20×, RSS ratio ≤ 1/10.
//!
//! Run: `cargo bench --bench serve_vs_mlflow` (`BENCH_SECONDS` to change the load length,
//! default 10).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/it/support/python_env.rs"]
#[allow(dead_code)]
mod python_env;

mod support;

use support::check;

#[path = "support/serve.rs"]
mod serve_support;

use serve_support::{
    CONCURRENCY, KillOnDrop, first_line, free_port, load, report, tree_rss_kib, wait_ready,
};

use std::{
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

const TEXT: &str = "Rust is a systems programming language focused on safety and speed.";

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let length = Duration::from_secs(seconds);
    let warm_up = Duration::from_secs(2);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chainlog = env!("CARGO_BIN_EXE_chainlog");
    let env = python_env::provision("mlflow", &root.join("tests/python/requirements-mlflow.txt"));
    let venv_bin = env.python().parent().unwrap().to_owned();
    let path = std::env::join_paths(std::iter::once(venv_bin.clone()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();

    // One mock that both servers' chains call.
    let mock = support::MockProcess::start(&[]);
    let base_url = mock.base_url().to_owned();

    let work = tempfile::tempdir().unwrap();
    let chainlog_dir = work.path().join("chainlog");
    let python_dir = work.path().join("python");
    let cache_dir = work.path().join("cache");
    support::scratch_project(&chainlog_dir);
    std::fs::create_dir_all(&python_dir).unwrap();

    // Log once on each side.
    let input_example = format!(r#"{{"text": "{TEXT}"}}"#);
    let logged = check(
        &Command::new(chainlog)
            .args(["log", "summarize", "--input-example", &input_example])
            .current_dir(&chainlog_dir)
            .env("CHAINLOG_CACHE_DIR", &cache_dir)
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
        .trim()
        .to_owned();
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
    let python_model_id = logged
        .lines()
        .last()
        .expect("log_summarize.py printed no model id")
        .trim()
        .to_owned();

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

    // chainlog serve.
    let mut ours = KillOnDrop {
        child: Command::new(chainlog)
            .args(["serve", "-m", &format!("models:/{model_id}"), "--port", "0"])
            .current_dir(&chainlog_dir)
            .env("CHAINLOG_CACHE_DIR", &cache_dir)
            .env("OPENAI_BASE_URL", &base_url)
            .env("OPENAI_API_KEY", "mock-key")
            .env_remove("MLFLOW_TRACKING_URI")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        group: false,
    };
    let ours_url = first_line(&mut ours.child);
    let ours_url = ours_url
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or(&ours_url)
        .trim_end_matches('/')
        .to_owned();
    let ours_load = runtime.block_on(async {
        wait_ready(&client, &ours_url, &mut ours.child, Duration::from_secs(30)).await;
        load(&client, &ours_url, warm_up, TEXT).await;
        load(&client, &ours_url, length, TEXT).await
    });
    let (ours_rss, ours_procs) = tree_rss_kib(ours.child.id());
    drop(ours);

    // mlflow models serve, in its own process group so uvicorn and its workers go with it.
    let port = free_port();
    let theirs_url = format!("http://127.0.0.1:{port}");
    let mut theirs = KillOnDrop {
        child: env
            .command()
            .args(["-m", "mlflow", "models", "serve", "-m"])
            .arg(format!("models:/{python_model_id}"))
            .args(["--env-manager", "local", "-h", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .current_dir(&python_dir)
            .env("PATH", &path)
            .env("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
            .env("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
        group: true,
    };
    let theirs_load = runtime.block_on(async {
        wait_ready(
            &client,
            &theirs_url,
            &mut theirs.child,
            Duration::from_secs(120),
        )
        .await;
        load(&client, &theirs_url, warm_up, TEXT).await;
        load(&client, &theirs_url, length, TEXT).await
    });
    let (theirs_rss, theirs_procs) = tree_rss_kib(theirs.child.id());
    drop(theirs);
    drop(mock);

    println!(
        "serve_vs_mlflow: closed loop, concurrency {CONCURRENCY}, {seconds} s after {} s warm-up, POST /invocations, summarize chain → one mock call",
        warm_up.as_secs()
    );
    let ours_rps = report("chainlog serve", &ours_load, ours_rss, ours_procs);
    let theirs_rps = report(
        "mlflow models serve",
        &theirs_load,
        theirs_rss,
        theirs_procs,
    );
    let rps_ratio = ours_rps / theirs_rps;
    let rss_ratio = ours_rss as f64 / theirs_rss as f64;
    println!("  req/s chainlog / mlflow     {rps_ratio:.1}×");
    println!(
        "  RSS   chainlog / mlflow     {rss_ratio:.3} (1/{:.1})",
        1.0 / rss_ratio
    );
    let pass =
        rps_ratio >= 20.0 && rss_ratio <= 0.1 && ours_load.errors == 0 && theirs_load.errors == 0;
    println!(
        "VERDICT: {} — targets req/s ≥ 20×, RSS ≤ 1/10, no errors",
        if pass { "PASS" } else { "FAIL" }
    );
}
