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

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

const TEXT: &str = "Rust is a systems programming language focused on safety and speed.";
const CONCURRENCY: usize = 8;

/// Kills the child when dropped (normal path and panic): by PID, or its whole process group.
struct KillOnDrop {
    child: Child,
    group: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.group {
            let pgid = format!("-{}", self.child.id());
            let _ = Command::new("kill")
                .args(["-TERM", "--", &pgid])
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = Command::new("kill")
                .args(["-KILL", "--", &pgid])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn check(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim().to_owned()
}

/// The PIDs of `pid` and all its descendants, from /proc/<pid>/stat's parent field.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|v| v.parse().ok()) {
            parents.push((p, ppid));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// VmRSS summed over the process tree, in KiB, and the tree's size.
fn tree_rss_kib(pid: u32) -> (u64, usize) {
    let tree = process_tree(pid);
    let total = tree
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum();
    (total, tree.len())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Load {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

async fn wait_ready(client: &reqwest::Client, base: &str, child: &mut Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(response) = client.get(format!("{base}/ping")).send().await
            && response.status().is_success()
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server at {base} exited before it answered /ping: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "server at {base} did not answer /ping within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Closed loop: CONCURRENCY workers, each sending the next request when the last returns.
async fn load(client: &reqwest::Client, base: &str, length: Duration) -> Load {
    let url = Arc::new(format!("{base}/invocations"));
    let body = Arc::new(serde_json::json!({ "inputs": { "text": TEXT } }).to_string());
    let start = Instant::now();
    let deadline = start + length;
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let result = client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .body(body.as_str().to_owned())
                    .send()
                    .await;
                let ok = match result {
                    Ok(response) => {
                        let status = response.status();
                        let text = response.text().await.unwrap_or_default();
                        status.is_success() && text.contains("summary")
                    }
                    Err(_) => false,
                };
                if ok {
                    latencies.push(sent.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (l, e) = worker.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Load {
        requests: latencies.len(),
        errors,
        elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
    }
}

fn report(name: &str, load: &Load, rss_kib: u64, processes: usize) -> f64 {
    let rps = load.requests as f64 / load.elapsed.as_secs_f64();
    println!(
        "  {name:<22} {rps:9.1} req/s  p50 {:7.2} ms  p99 {:7.2} ms  errors {:4}  RSS {:7.1} MiB ({processes} processes)",
        load.p50.as_secs_f64() * 1e3,
        load.p99.as_secs_f64() * 1e3,
        load.errors,
        rss_kib as f64 / 1024.0
    );
    rps
}

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
        load(&client, &ours_url, warm_up).await;
        load(&client, &ours_url, length).await
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
        load(&client, &theirs_url, warm_up).await;
        load(&client, &theirs_url, length).await
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
