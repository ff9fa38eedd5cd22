//! Load benchmark: `chainlog mock` side by side with a third-party OpenAI mock.
//!
//! What it measures, on this machine and in one run:
//!
//! * servers: `chainlog mock` (the binary cargo built for this crate), the
//!   third-party Node.js mock [`@dwmkerr/mock-llm`] (pinned version, installed
//!   with npm into `$XDG_CACHE_HOME/chainlog-bench/mock-llm`, by default
//!   `~/.cache/chainlog-bench/mock-llm`, if absent), and a bare axum server
//!   that this bench starts from its own executable as a ceiling
//!   (`axum-bare`: parse the JSON request, answer a fixed completion; no
//!   journal, no logging). Each runs as its own child process on 127.0.0.1.
//! * for each server × {plain, stream} × {concurrency 1, 64}: a closed-loop
//!   load of `POST /v1/chat/completions` (`gpt-4o-mini`, one user message
//!   `hello`, `"stream": true` in stream mode) for a fixed time after a
//!   warm-up, with one HTTP/1.1 keep-alive connection per worker (hyper
//!   client, multi-threaded tokio runtime). Every latency is recorded; a
//!   stream's latency is the time to read it to its end, which must be
//!   `data: [DONE]`. Non-200 answers, transport errors, time-outs and streams
//!   not ending in `[DONE]` count as errors.
//! * the third-party mock runs as published, with one setting: streams get
//!   `chunkIntervalMs: 0` instead of its default 50 ms pause between chunks
//!   (Node still clamps that timer to 1 ms, so its streams cannot finish in
//!   under about 2 ms). It logs one stdout line per request, as it always does.
//! * memory: the server's VmRSS (from `/proc/<pid>/status`) before the load,
//!   every 250 ms during it and after it: start / peak / end per server.
//!
//! It prints a table (server, mode, concurrency, requests, req/s, p50, p99,
//! errors), the RSS summary, the ratios chainlog / third-party (and chainlog /
//! axum-bare), and a one-line verdict against the target: at least 20,000
//! plain req/s at concurrency 64, and flat memory (RSS peak − end, and the
//! growth over the last phase, each within 4 MiB).
//!
//! Run it with:
//!
//! ```text
//! cargo bench --bench mock_load
//! ```
//!
//! Environment: `BENCH_SECONDS` (measured seconds per phase, default 5),
//! `BENCH_WARMUP_SECONDS` (default 1), `BENCH_BARE_AXUM=0` to skip the axum
//! ceiling. With the defaults the run takes about 1.5 minutes (plus a
//! one-time npm install). The load generator shares the machine with the
//! server under test, so figures are for the pair, not the server alone.
//!
//! Needs Node.js ≥ 18 and npm for the third-party mock; without them it says
//! how to install them, still measures chainlog, and exits non-zero at the
//! end. Server logs go to `target/tmp/mock_load/`.
//!
//! [`@dwmkerr/mock-llm`]: https://www.npmjs.com/package/@dwmkerr/mock-llm

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpListener as StdTcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Request, StatusCode,
    client::conn::http1::SendRequest,
    header::{AUTHORIZATION, CONTENT_TYPE, HOST},
};
use hyper_util::rt::TokioIo;

/// The third-party mock and the exact version this bench installs.
const MOCK_LLM_PKG: &str = "@dwmkerr/mock-llm";
const MOCK_LLM_VERSION: &str = "0.1.29";
/// Argument that turns this executable into the bare axum ceiling server.
const BARE_ARG: &str = "__axum-bare-server";

const PLAIN_BODY: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}"#;
const STREAM_BODY: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}],"stream":true}"#;

const CONCURRENCIES: [usize; 2] = [1, 64];
const TARGET_RPS: f64 = 20_000.0;
const FLAT_MIB: f64 = 4.0;
const RSS_EVERY: Duration = Duration::from_millis(250);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some(BARE_ARG) {
        return bare::serve();
    }
    let settings = Settings::from_env()?;
    let log_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mock_load");
    std::fs::create_dir_all(&log_dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "mock_load: {}s warm-up + {}s measured per phase, client runtime {} worker threads, logs in {}",
        settings.warmup.as_secs_f64(),
        settings.measure.as_secs_f64(),
        thread::available_parallelism().map_or(1, |n| n.get()),
        log_dir.display()
    );

    println!("mock_load: load average before: {}", loadavg());

    // Start every server first, so that they all run side by side.
    let mut servers: Vec<Server> = Vec::new();
    let chainlog = Server::start_with_url_line(
        "chainlog",
        Command::new(env!("CARGO_BIN_EXE_chainlog")).args([
            "mock",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--latency-ms",
            "0",
        ]),
        &log_dir.join("chainlog.stderr.log"),
    )
    .context("starting `chainlog mock`")?;
    servers.push(chainlog);

    let mut third_party_problem: Option<String> = None;
    match start_mock_llm(&log_dir) {
        Ok(server) => servers.push(server),
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("\nmock_load: third-party mock unavailable: {msg}\n");
            third_party_problem = Some(msg);
        }
    }
    if settings.bare {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg(BARE_ARG);
        match Server::start_with_url_line("axum-bare", &mut cmd, &log_dir.join("axum-bare.log")) {
            Ok(server) => servers.push(server),
            Err(e) => eprintln!("mock_load: bare axum server unavailable: {e:#}"),
        }
    }

    let mut ready = Vec::new();
    for server in servers {
        match rt.block_on(server.wait_ready()) {
            Ok((plain_size, stream_size)) => {
                println!(
                    "{:<11} ready at {} (pid {}); answers: plain {plain_size} B, stream {stream_size} B",
                    server.name,
                    server.base_url,
                    server.pid()
                );
                ready.push(server);
            }
            Err(e) if server.name == "chainlog" => {
                return Err(e.context("chainlog mock did not answer a chat completion"));
            }
            Err(e) => {
                let msg = format!("{} did not answer a chat completion: {e:#}", server.name);
                eprintln!("\nmock_load: {msg}\n");
                if server.name == "mock-llm" {
                    third_party_problem = Some(msg);
                }
            }
        }
    }
    let servers = ready;

    let mut rows: Vec<Row> = Vec::new();
    let mut mem: Vec<MemSummary> = Vec::new();
    for server in &servers {
        let (server_rows, summary) = run_server(&rt, server, &settings);
        rows.extend(server_rows);
        mem.push(summary);
    }

    let load_after = loadavg();
    // Stop the children (SIGTERM, then SIGKILL) before reporting.
    let mut stops = Vec::new();
    for server in servers {
        let lines = std::fs::read_to_string(&server.log).map_or(0, |t| t.lines().count());
        let stop = server.child.stop();
        stops.push((
            server.name,
            format!("{stop}; {lines} log lines in {}", server.log.display()),
        ));
    }
    drop(rt);

    print_table(&rows);
    print_memory(&mem);
    print_ratios(&rows);
    println!();
    for (name, stop) in &stops {
        println!("{name:<11} {stop}");
    }
    println!(
        "load average after the load: {load_after} (the load generator and other jobs share the machine)"
    );
    println!();
    println!("{}", verdict(&rows, &mem));

    if let Some(problem) = third_party_problem {
        eprintln!("\nmock_load: FAILED to compare against {MOCK_LLM_PKG}: {problem}");
        std::process::exit(2);
    }
    Ok(())
}

/// Run settings, from the environment.
struct Settings {
    warmup: Duration,
    measure: Duration,
    bare: bool,
}

impl Settings {
    fn from_env() -> Result<Self> {
        let secs = |name: &str, default: f64| -> Result<Duration> {
            match std::env::var(name) {
                Ok(v) => {
                    let s: f64 = v.trim().parse().with_context(|| format!("{name}={v:?}"))?;
                    if !(0.0..=600.0).contains(&s) {
                        bail!("{name} must be between 0 and 600 seconds");
                    }
                    Ok(Duration::from_secs_f64(s))
                }
                Err(_) => Ok(Duration::from_secs_f64(default)),
            }
        };
        let measure = secs("BENCH_SECONDS", 5.0)?;
        if measure.is_zero() {
            bail!("BENCH_SECONDS must be above 0");
        }
        Ok(Self {
            warmup: secs("BENCH_WARMUP_SECONDS", 1.0)?,
            measure,
            bare: std::env::var("BENCH_BARE_AXUM").map_or(true, |v| v != "0"),
        })
    }
}

// ---------------------------------------------------------------------------
// Child processes

/// A child process that is stopped (by PID) when dropped, also on panic.
struct ChildGuard {
    name: &'static str,
    child: Option<Child>,
}

impl ChildGuard {
    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM, up to 3 s to exit, then SIGKILL. Says what happened.
    fn stop(mut self) -> String {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return "already stopped".into();
        };
        if let Ok(Some(status)) = child.try_wait() {
            return format!("had already exited ({status})");
        }
        let pid = child.id().to_string();
        let started = Instant::now();
        let termed = Command::new("kill")
            .args(["-TERM", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if termed {
            while started.elapsed() < Duration::from_secs(3) {
                if let Ok(Some(status)) = child.try_wait() {
                    return format!(
                        "stopped by SIGTERM in {} ms ({})",
                        started.elapsed().as_millis(),
                        describe_exit(status)
                    );
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = child.kill();
        let status = child
            .wait()
            .map(describe_exit)
            .unwrap_or_else(|e| e.to_string());
        if termed {
            format!("did NOT exit within 3 s of SIGTERM; killed ({status})")
        } else {
            format!("killed ({status})")
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.child.is_some() {
            let what = self.stop_inner();
            // Not eprintln!: a closed stderr must not turn this into a double panic.
            let _ = writeln!(std::io::stderr(), "mock_load: {}: {what}", self.name);
        }
    }
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => status.to_string(),
    }
}

/// A running server under test.
struct Server {
    name: &'static str,
    base_url: String,
    target: Arc<Target>,
    child: ChildGuard,
    log: PathBuf,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Spawn a server that prints its base URL as its first stdout line.
    fn start_with_url_line(name: &'static str, cmd: &mut Command, log: &Path) -> Result<Self> {
        let log_file = std::fs::File::create(log)?;
        let mut child = cmd
            .stdin(Stdio::piped()) // the bare axum server exits when its stdin closes
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("spawning {cmd:?}"))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let guard = ChildGuard {
            name,
            child: Some(child),
        };
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            // The base URL line; skip anything printed before it.
            let url = lines.by_ref().find(|l| {
                l.as_ref()
                    .map_or(true, |l| l.trim_start().starts_with("http://"))
            });
            let _ = tx.send(url);
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let first = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Some(Ok(line))) => Ok(line),
            Ok(Some(Err(e))) => Err(e.to_string()),
            Ok(None) => Err("its stdout closed".to_string()),
            Err(_) => Err(format!("none within {} s", STARTUP_TIMEOUT.as_secs())),
        };
        let first = match first {
            Ok(line) => line,
            Err(why) => {
                drop(guard);
                bail!(
                    "{name} printed no base URL line ({why}); its stderr ends with:\n{}",
                    tail_of(log)
                );
            }
        };
        let base_url = first.trim().to_string();
        let target = Target::from_base_url(&base_url)
            .with_context(|| format!("{name} printed {first:?} as its base URL"))?;
        Ok(Self {
            name,
            base_url,
            target: Arc::new(target),
            child: guard,
            log: log.to_path_buf(),
        })
    }

    /// Poll until one plain and one streaming completion succeed; check their shape once.
    /// Returns the sizes of the two answers' bodies.
    async fn wait_ready(&self) -> Result<(usize, usize)> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match self.probe().await {
                Ok(sizes) => return Ok(sizes),
                Err(e) if Instant::now() >= deadline => {
                    bail!(
                        "{e:#}; log {} ends with:\n{}",
                        self.log.display(),
                        tail_of(&self.log)
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn probe(&self) -> Result<(usize, usize)> {
        let mut sender = connect(&self.target).await?;
        let (plain, plain_size) = request(
            &mut sender,
            &self.target,
            Bytes::from_static(PLAIN_BODY.as_bytes()),
            false,
        )
        .await?;
        let v: serde_json::Value =
            serde_json::from_slice(&plain).context("plain answer is not JSON")?;
        if v["object"] != "chat.completion" || !v["choices"][0]["message"]["content"].is_string() {
            bail!("plain answer is not a chat.completion: {v}");
        }
        let (_, stream_size) = request(
            &mut sender,
            &self.target,
            Bytes::from_static(STREAM_BODY.as_bytes()),
            true,
        )
        .await?;
        Ok((plain_size, stream_size))
    }
}

/// `/proc/loadavg`'s 1/5/15-minute figures: is anything else busy on the machine?
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

/// Last lines of a log file, for error messages.
fn tail_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Install (if needed) and start `@dwmkerr/mock-llm` on a free loopback port.
fn start_mock_llm(log_dir: &Path) -> Result<Server> {
    let name = "mock-llm";
    let node_ok = Command::new("node").arg("--version").output().map(|o| {
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
        )
    });
    let node_version = match node_ok {
        Ok((true, v)) => v,
        _ => bail!(
            "Node.js is not installed (needed for {MOCK_LLM_PKG}). Install Node.js >= 18 with npm, \
             e.g. `apt-get install nodejs npm` (Debian/Ubuntu) or from https://nodejs.org, then re-run"
        ),
    };
    let major: u32 = node_version
        .trim_start_matches('v')
        .split('.')
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    if major < 18 {
        bail!("Node.js {node_version} is too old for {MOCK_LLM_PKG}; install Node.js >= 18");
    }

    let cache = cache_dir()?.join("mock-llm");
    let pkg_dir = cache.join("node_modules").join(MOCK_LLM_PKG);
    let installed = std::fs::read_to_string(pkg_dir.join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned));
    if installed.as_deref() != Some(MOCK_LLM_VERSION) {
        std::fs::create_dir_all(&cache)?;
        let spec = format!("{MOCK_LLM_PKG}@{MOCK_LLM_VERSION}");
        println!(
            "mock_load: installing {spec} (found {}) with: npm install --prefix {} --no-audit --no-fund {spec}",
            installed.as_deref().unwrap_or("none"),
            cache.display()
        );
        let status = Command::new("npm")
            .args(["install", "--prefix"])
            .arg(&cache)
            .args(["--no-audit", "--no-fund", "--loglevel=error", &spec])
            .stdin(Stdio::null())
            .status()
            .map_err(|e| {
                anyhow!(
                    "could not run npm ({e}); install npm (e.g. `apt-get install npm`) and re-run"
                )
            })?;
        if !status.success() {
            bail!("`npm install {spec}` failed ({status})");
        }
    }
    let main_js = pkg_dir.join("dist").join("main.js");
    if !main_js.exists() {
        bail!("{} is missing after install", main_js.display());
    }

    // Stream without the default 50 ms pause between chunks, so that streams
    // measure the server rather than a timer (chainlog runs with --latency-ms 0).
    let config = cache.join("bench-mock-llm.yaml");
    std::fs::write(
        &config,
        "streaming:\n  chunkSize: 50\n  chunkIntervalMs: 0\n",
    )?;

    let port = StdTcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = log_dir.join("mock-llm.log");
    let log_file = std::fs::File::create(&log)?;
    // mock-llm logs one line per request to stdout: send it to the log file.
    let child = Command::new("node")
        .arg(&main_js)
        .arg("--config")
        .arg(&config)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .current_dir(&cache)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .context("spawning node")?;
    let base_url = format!("http://127.0.0.1:{port}/v1");
    println!(
        "{name:<11} started: HOST=127.0.0.1 PORT={port} node {} --config {} (node {node_version})",
        main_js.display(),
        config.display()
    );
    Ok(Server {
        name,
        target: Arc::new(Target::from_base_url(&base_url)?),
        base_url,
        child: ChildGuard {
            name,
            child: Some(child),
        },
        log,
    })
}

fn cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(base.join("chainlog-bench"))
}

// ---------------------------------------------------------------------------
// HTTP client

/// Where to send requests: `host:port` and the chat completions path.
struct Target {
    authority: String,
    chat_path: String,
}

impl Target {
    fn from_base_url(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .context("base URL must start with http://")?;
        let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        // Load goes to this machine's loopback only.
        if !(host == "localhost" || host == "[::1]" || host.starts_with("127.")) {
            bail!("refusing to load a non-loopback address: {authority}");
        }
        let prefix = prefix.trim_end_matches('/');
        let chat_path = if prefix.is_empty() {
            "/chat/completions".to_string()
        } else {
            format!("/{prefix}/chat/completions")
        };
        Ok(Self {
            authority: authority.to_string(),
            chat_path,
        })
    }
}

async fn connect(target: &Target) -> Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(&target.authority).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request on a kept-alive connection; reads the answer to its end.
/// Returns the plain body (streams: the last bytes only) and the body's size.
async fn request(
    sender: &mut SendRequest<Full<Bytes>>,
    target: &Target,
    body: Bytes,
    stream: bool,
) -> Result<(Bytes, usize)> {
    sender.ready().await?;
    let req = Request::post(target.chat_path.as_str())
        .header(HOST, target.authority.as_str())
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, "Bearer sk-chainlog-bench")
        .body(Full::new(body))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    if status != StatusCode::OK {
        let _ = body.collect().await;
        bail!("HTTP {status}");
    }
    if !stream {
        let bytes = body.collect().await?.to_bytes();
        if bytes.is_empty() {
            bail!("empty body");
        }
        let size = bytes.len();
        return Ok((bytes, size));
    }
    let mut tail: Vec<u8> = Vec::with_capacity(128);
    let mut size = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            size += data.len();
            tail.extend_from_slice(&data);
            if tail.len() > 64 {
                tail.drain(..tail.len() - 64);
            }
        }
    }
    if !tail.trim_ascii_end().ends_with(b"data: [DONE]") {
        bail!("stream did not end with data: [DONE]");
    }
    Ok((Bytes::from(tail), size))
}

// ---------------------------------------------------------------------------
// Load

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Stream,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Stream => "stream",
        }
    }
}

/// One line of the result table.
struct Row {
    server: &'static str,
    mode: Mode,
    concurrency: usize,
    requests: usize,
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
    rss_end_kib: Option<u64>,
}

#[derive(Default)]
struct WorkerStats {
    latencies_ns: Vec<u64>,
    errors: u64,
}

/// Closed loop on one connection: send, read to the end, repeat. Requests
/// started in [measure_from, end) and finished by `end` are recorded.
async fn worker(
    target: Arc<Target>,
    body: Bytes,
    stream: bool,
    measure_from: Instant,
    end: Instant,
) -> WorkerStats {
    let mut stats = WorkerStats::default();
    'connection: while Instant::now() < end {
        let mut sender = match tokio::time::timeout(REQUEST_TIMEOUT, connect(&target)).await {
            Ok(Ok(sender)) => sender,
            _ => {
                if Instant::now() >= measure_from {
                    stats.errors += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        loop {
            let started = Instant::now();
            if started >= end {
                break 'connection;
            }
            let result = tokio::time::timeout(
                REQUEST_TIMEOUT,
                request(&mut sender, &target, body.clone(), stream),
            )
            .await;
            let finished = Instant::now();
            let ok = matches!(result, Ok(Ok(_)));
            if started >= measure_from {
                if !ok {
                    stats.errors += 1;
                } else if finished <= end {
                    stats
                        .latencies_ns
                        .push(u64::try_from((finished - started).as_nanos()).unwrap_or(u64::MAX));
                }
            }
            if !ok {
                continue 'connection; // reconnect
            }
        }
    }
    stats
}

/// VmRSS of a process in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples RSS every 250 ms on a plain thread until stopped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Vec<u64>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                samples.extend(rss_kib(pid));
                thread::sleep(RSS_EVERY);
            }
            samples
        });
        Self { stop, handle }
    }

    fn finish(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// RSS of one server over its phases.
struct MemSummary {
    server: &'static str,
    start_kib: Option<u64>,
    peak_kib: Option<u64>,
    end_kib: Option<u64>,
    /// RSS when the last phase's measurement began.
    last_phase_start_kib: Option<u64>,
}

fn run_server(
    rt: &tokio::runtime::Runtime,
    server: &Server,
    settings: &Settings,
) -> (Vec<Row>, MemSummary) {
    let pid = server.pid();
    let start_kib = rss_kib(pid);
    let mut peak_kib = start_kib;
    let mut last_phase_start_kib = None;
    let mut rows = Vec::new();
    let phases: Vec<(Mode, usize)> = [Mode::Plain, Mode::Stream]
        .iter()
        .flat_map(|&m| CONCURRENCIES.iter().map(move |&c| (m, c)))
        .collect();
    for (i, &(mode, concurrency)) in phases.iter().enumerate() {
        let body = Bytes::from_static(match mode {
            Mode::Plain => PLAIN_BODY.as_bytes(),
            Mode::Stream => STREAM_BODY.as_bytes(),
        });
        let sampler = RssSampler::start(pid);
        let begin = Instant::now();
        let measure_from = begin + settings.warmup;
        let end = measure_from + settings.measure;
        let stats: Vec<WorkerStats> = rt.block_on(async {
            let handles: Vec<_> = (0..concurrency)
                .map(|_| {
                    tokio::spawn(worker(
                        Arc::clone(&server.target),
                        body.clone(),
                        mode == Mode::Stream,
                        measure_from,
                        end,
                    ))
                })
                .collect();
            let mut out = Vec::new();
            for h in handles {
                out.push(h.await.unwrap_or_else(|_| WorkerStats {
                    errors: 1,
                    ..Default::default()
                }));
            }
            out
        });
        let samples = sampler.finish();
        let after = rss_kib(pid);
        if i + 1 == phases.len() {
            // First sample taken after the warm-up began counting.
            let skip = (settings.warmup.as_millis() / RSS_EVERY.as_millis()) as usize;
            last_phase_start_kib = samples.get(skip).or(samples.last()).copied();
        }
        peak_kib = samples.iter().copied().chain(after).chain(peak_kib).max();

        let mut latencies: Vec<u64> = stats
            .iter()
            .flat_map(|s| s.latencies_ns.iter().copied())
            .collect();
        latencies.sort_unstable();
        let errors = stats.iter().map(|s| s.errors).sum();
        let pct = |p: f64| -> Duration {
            if latencies.is_empty() {
                return Duration::ZERO;
            }
            let idx = ((latencies.len() as f64 - 1.0) * p).round() as usize;
            Duration::from_nanos(latencies[idx])
        };
        let row = Row {
            server: server.name,
            mode,
            concurrency,
            requests: latencies.len(),
            rps: latencies.len() as f64 / settings.measure.as_secs_f64(),
            p50: pct(0.50),
            p99: pct(0.99),
            errors,
            rss_end_kib: after,
        };
        println!(
            "  {:<11} {:<6} c={:<3} {:>8} req {:>9.0} req/s  p50 {:>8}  p99 {:>8}  errors {}",
            row.server,
            row.mode.label(),
            row.concurrency,
            row.requests,
            row.rps,
            fmt_ms(row.p50),
            fmt_ms(row.p99),
            row.errors
        );
        rows.push(row);
    }
    let end_kib = rss_kib(pid);
    peak_kib = peak_kib.max(end_kib);
    (
        rows,
        MemSummary {
            server: server.name,
            start_kib,
            peak_kib,
            end_kib,
            last_phase_start_kib,
        },
    )
}

// ---------------------------------------------------------------------------
// Report

fn fmt_ms(d: Duration) -> String {
    format!("{:.3}ms", d.as_secs_f64() * 1e3)
}

fn fmt_mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<11} {:<6} {:>5} {:>9} {:>10} {:>10} {:>10} {:>7} {:>12}",
        "server", "mode", "conc", "requests", "req/s", "p50", "p99", "errors", "RSS after MiB"
    );
    println!("{}", "-".repeat(88));
    for r in rows {
        println!(
            "{:<11} {:<6} {:>5} {:>9} {:>10.0} {:>10} {:>10} {:>7} {:>12}",
            r.server,
            r.mode.label(),
            r.concurrency,
            r.requests,
            r.rps,
            fmt_ms(r.p50),
            fmt_ms(r.p99),
            r.errors,
            fmt_mib(r.rss_end_kib)
        );
    }
}

fn print_memory(mem: &[MemSummary]) {
    println!();
    println!(
        "{:<11} {:>10} {:>10} {:>10} {:>22}",
        "RSS MiB", "start", "peak", "end", "last-phase growth"
    );
    for m in mem {
        let growth = match (m.last_phase_start_kib, m.end_kib) {
            (Some(a), Some(b)) => format!("{:+.1}", (b as f64 - a as f64) / 1024.0),
            _ => "n/a".into(),
        };
        println!(
            "{:<11} {:>10} {:>10} {:>10} {:>22}",
            m.server,
            fmt_mib(m.start_kib),
            fmt_mib(m.peak_kib),
            fmt_mib(m.end_kib),
            growth
        );
    }
}

fn print_ratios(rows: &[Row]) {
    for other in ["mock-llm", "axum-bare"] {
        let pairs: Vec<(&Row, &Row)> = rows
            .iter()
            .filter(|r| r.server == "chainlog")
            .filter_map(|c| {
                rows.iter()
                    .find(|o| {
                        o.server == other && o.mode == c.mode && o.concurrency == c.concurrency
                    })
                    .map(|o| (c, o))
            })
            .collect();
        if pairs.is_empty() {
            continue;
        }
        println!();
        println!(
            "chainlog / {other}:  (req/s: higher is better for chainlog; p50, p99: lower is better)"
        );
        for (c, o) in pairs {
            let ratio = |a: f64, b: f64| {
                if b > 0.0 {
                    format!("{:.2}x", a / b)
                } else {
                    "n/a".into()
                }
            };
            println!(
                "  {:<6} c={:<3} req/s {:>8}   p50 {:>8}   p99 {:>8}",
                c.mode.label(),
                c.concurrency,
                ratio(c.rps, o.rps),
                ratio(c.p50.as_secs_f64(), o.p50.as_secs_f64()),
                ratio(c.p99.as_secs_f64(), o.p99.as_secs_f64())
            );
        }
    }
}

fn verdict(rows: &[Row], mem: &[MemSummary]) -> String {
    let Some(row) = rows
        .iter()
        .find(|r| r.server == "chainlog" && r.mode == Mode::Plain && r.concurrency == 64)
    else {
        return "VERDICT: FAIL — no chainlog plain c=64 figure".into();
    };
    let fast = row.rps >= TARGET_RPS && row.errors == 0;
    let m = mem.iter().find(|m| m.server == "chainlog");
    let mib = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some((a as f64 - b as f64) / 1024.0),
        _ => None,
    };
    let peak_minus_end = m.and_then(|m| mib(m.peak_kib, m.end_kib));
    let growth = m.and_then(|m| mib(m.end_kib, m.last_phase_start_kib));
    let flat =
        matches!((peak_minus_end, growth), (Some(p), Some(g)) if p <= FLAT_MIB && g <= FLAT_MIB);
    format!(
        "VERDICT: {} — chainlog plain c=64: {:.0} req/s, {} errors (target ≥ {:.0}, 0 errors): {}; memory {} \
         (peak − end {} MiB, last-phase growth {} MiB; limit {FLAT_MIB} MiB each)",
        if fast && flat { "PASS" } else { "FAIL" },
        row.rps,
        row.errors,
        TARGET_RPS,
        if fast { "met" } else { "MISSED" },
        if flat { "flat" } else { "NOT flat" },
        peak_minus_end.map_or("n/a".into(), |v| format!("{v:.1}")),
        growth.map_or("n/a".into(), |v| format!("{v:+.1}")),
    )
}

// ---------------------------------------------------------------------------
// Ceiling: a bare axum server doing the least work for the same answers.

mod bare {
    use std::{convert::Infallible, io::Write};

    use anyhow::Result;
    use axum::{
        Router,
        body::{Body, Bytes},
        http::header,
        response::{IntoResponse, Response},
        routing::post,
    };

    /// Serve on 127.0.0.1:<free port>, print the base URL, exit when stdin closes.
    pub fn serve() -> Result<()> {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let mut out = std::io::stdout();
            writeln!(out, "http://{}/v1", listener.local_addr()?)?;
            out.flush()?;
            let app = Router::new().route("/v1/chat/completions", post(chat));
            axum::serve(listener, app).await?;
            Ok(())
        })
    }

    async fn chat(body: Bytes) -> Response {
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let model = request["model"].as_str().unwrap_or("gpt-4o-mini");
        if request["stream"].as_bool() != Some(true) {
            return axum::Json(serde_json::json!({
                "id": "chatcmpl-bare", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}]
            }))
            .into_response();
        }
        let chunk = |delta: serde_json::Value, finish: Option<&str>| {
            let json = serde_json::json!({
                "id": "chatcmpl-bare", "object": "chat.completion.chunk", "created": 0, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
            });
            Ok::<_, Infallible>(Bytes::from(format!("data: {json}\n\n")))
        };
        let events = vec![
            chunk(
                serde_json::json!({"role": "assistant", "content": "Hello"}),
                None,
            ),
            chunk(serde_json::json!({}), Some("stop")),
            Ok(Bytes::from_static(b"data: [DONE]\n\n")),
        ];
        (
            [(header::CONTENT_TYPE, "text/event-stream")],
            Body::from_stream(futures::stream::iter(events)),
        )
            .into_response()
    }
}
