//! Batch prediction at scale, whole process: `chainlog predict --input-file … --output …` run
//! as a child process against `chainlog mock` (another process), timed from spawn to exit
//! (start-up, model load, every row, every output line), with its memory read from
//! `/proc/<pid>/status` as it runs.
//!
//! Three cases, in one run:
//! - 2,000 rows at `--concurrency 64`, mock latency 200 ms: ideal/wall, target ≥ 0.97;
//! - 20,000 rows at `--concurrency 1024`, mock latency 200 ms: ideal/wall, target ≥ 0.95;
//!   both with `--set llm.concurrency=C`, as the batch's notice advises; the ideal is
//!   ceil(rows / C) × latency; peak RSS (VmHWM) < 150 MB;
//! - 1,000,000 rows at `--concurrency 1024`, latency 0 ms: rows/s, peak RSS, RSS at every
//!   tenth of the run, and flatness: the highest RSS over the second half of the run within
//!   1.25× of the highest over 10–50 % (memory does not grow with the row count).
//!
//! Run: `cargo bench --bench batch_latency` (`BENCH_SCALE_ROWS` to change the 1,000,000).
//! Linux only (reads `/proc`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// One batch run, measured.
struct Measured {
    wall: Duration,
    /// VmHWM at the last sample before exit, in KiB.
    peak_kib: u64,
    /// (seconds since start, VmRSS KiB), every 20 ms.
    samples: Vec<(f64, u64)>,
    /// User + system CPU seconds at the last sample.
    cpu: f64,
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `VmRSS`/`VmHWM`-style line of `/proc/<pid>/status`, in KiB.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// User + system CPU seconds of a process, from `/proc/<pid>/stat` (fields 14 and 15, in
/// clock ticks of 1/100 s on Linux).
fn cpu_seconds(stat_path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

struct Project {
    dir: tempfile::TempDir,
    model: String,
}

impl Project {
    /// Logs `summarize` into a scratch project and warms the artifact cache.
    fn new(base_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        support::scratch_project(dir.path());
        let project = Self {
            dir,
            model: String::new(),
        };
        let logged = project.command(base_url, &["log", "summarize", "--no-validate", "--json"]);
        let logged: serde_json::Value = serde_json::from_slice(&logged.stdout).unwrap();
        let model = format!("models:/{}", logged["model_id"].as_str().unwrap());
        // Load once so timed runs find the artifact in the cache, as a rerun would.
        project.command(
            base_url,
            &["predict", "-m", &model, "--input", r#"{"text": "warm"}"#],
        );
        Self { model, ..project }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn base(&self, base_url: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chainlog"));
        command
            .current_dir(self.path())
            .env("OPENAI_BASE_URL", base_url)
            .env("OPENAI_API_KEY", "bench-key")
            .env("CHAINLOG_CACHE_DIR", self.path().join("cache"))
            .env_remove("MLFLOW_TRACKING_URI");
        command
    }

    fn command(&self, base_url: &str, args: &[&str]) -> std::process::Output {
        let output = self.base(base_url).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Writes `rows` input rows, runs the batch and measures it; checks one line per row.
    fn batch(&self, base_url: &str, rows: u64, concurrency: u64) -> Measured {
        let input = self.path().join("rows.jsonl");
        let mut file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        for row in 0..rows {
            writeln!(file, "{{\"text\": \"row {row} of the batch\"}}").unwrap();
        }
        file.flush().unwrap();
        drop(file);
        let output = self.path().join("out.jsonl");
        let _ = std::fs::remove_file(&output);
        let concurrency = concurrency.to_string();
        let limit = format!("llm.concurrency={concurrency}");
        let start = Instant::now();
        let child = self
            .base(base_url)
            .args([
                "predict",
                "-m",
                &self.model,
                "--input-file",
                "rows.jsonl",
                "--output",
                "out.jsonl",
                "--concurrency",
                &concurrency,
                "--set",
                &limit,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status_path = format!("/proc/{}/status", child.id());
        let stat_path = format!("/proc/{}/stat", child.id());
        let finished = Arc::new(AtomicBool::new(false));
        let sampler = {
            let finished = Arc::clone(&finished);
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                let mut peak = 0;
                let mut cpu = 0.0;
                while !finished.load(Ordering::Relaxed) {
                    if let Ok(status) = std::fs::read_to_string(&status_path) {
                        if let Some(rss) = status_kib(&status, "VmRSS:") {
                            samples.push((start.elapsed().as_secs_f64(), rss));
                        }
                        peak = peak.max(status_kib(&status, "VmHWM:").unwrap_or(0));
                    }
                    cpu = cpu_seconds(&stat_path).unwrap_or(cpu);
                    std::thread::sleep(Duration::from_millis(20));
                }
                (peak, samples, cpu)
            })
        };
        let result = child.wait_with_output().unwrap();
        let wall = start.elapsed();
        finished.store(true, Ordering::Relaxed);
        let (peak_kib, samples, cpu) = sampler.join().unwrap();
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        let text = std::fs::read(&output).unwrap();
        let lines = text.iter().filter(|b| **b == b'\n').count() as u64;
        assert_eq!(lines, rows, "one output line per row");
        let errors = text.windows(9).filter(|w| w == b"\"error\":\"").count();
        assert_eq!(errors, 0, "no error rows");
        Measured {
            wall,
            peak_kib,
            samples,
            cpu,
        }
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() {
    let latency_ms = 200;
    let scale_rows = env_number("BENCH_SCALE_ROWS", 1_000_000);
    let slow = support::MockProcess::start(&["--latency-ms", &latency_ms.to_string()]);
    let fast = support::MockProcess::start(&["--latency-ms", "0"]);
    let project = Project::new(slow.base_url());
    let mut pass = true;

    println!("batch_latency: whole `chainlog predict` process against `chainlog mock`");
    println!(
        "  load average at start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "  {:>9} {:>6} {:>8} {:>9} {:>9} {:>7} {:>9} {:>7}  target",
        "rows", "C", "latency", "wall s", "ideal s", "ideal/wall", "peak MB", "CPU s"
    );
    for (rows, concurrency, target) in [(2_000u64, 64u64, 0.97), (20_000, 1_024, 0.95)] {
        let run = project.batch(slow.base_url(), rows, concurrency);
        let ideal = Duration::from_millis(rows.div_ceil(concurrency) * latency_ms);
        let ratio = ideal.as_secs_f64() / run.wall.as_secs_f64();
        let ok = ratio >= target && mib(run.peak_kib) < 150.0;
        pass &= ok;
        println!(
            "  {rows:>9} {concurrency:>6} {latency_ms:>5} ms {:>9.3} {:>9.3} {ratio:>10.3} {:>9.1} {:>7.2}  ≥ {target}, < 150 MB: {}",
            run.wall.as_secs_f64(),
            ideal.as_secs_f64(),
            mib(run.peak_kib),
            run.cpu,
            if ok { "PASS" } else { "FAIL" }
        );
    }

    let run = project.batch(fast.base_url(), scale_rows, 1_024);
    let wall = run.wall.as_secs_f64();
    let at = |fraction: f64| {
        run.samples
            .iter()
            .find(|(t, _)| *t >= wall * fraction)
            .map_or(0, |(_, rss)| *rss)
    };
    let points: Vec<u64> = (1..=9).map(|tenth| at(f64::from(tenth) / 10.0)).collect();
    // The highest RSS over 10–50 % of the run against the highest over 50–100 %: growth with the
    // row count shows as a second half well above the first; allocator noise does not.
    let window = |from: f64, to: f64| {
        run.samples
            .iter()
            .filter(|(t, _)| *t >= wall * from && *t <= wall * to)
            .map(|(_, rss)| *rss)
            .max()
            .unwrap_or(0)
    };
    let (first, second) = (window(0.1, 0.5), window(0.5, 1.0));
    let flat = second as f64 <= first as f64 * 1.25;
    pass &= flat;
    println!(
        "  {scale_rows:>9} {:>6} {:>5} ms {wall:>9.3} {:>9} {:>10} {:>9.1} {:>7.2}  rows/s {:.0}",
        1_024,
        0,
        "-",
        "-",
        mib(run.peak_kib),
        run.cpu,
        scale_rows as f64 / wall
    );
    println!(
        "  RSS at 10, 20, … 90 % of the run: {} MB",
        points
            .iter()
            .map(|kib| format!("{:.0}", mib(*kib)))
            .collect::<Vec<_>>()
            .join(" / "),
    );
    println!(
        "  highest RSS over 10–50 % {:.1} MB, over 50–100 % {:.1} MB — {}",
        mib(first),
        mib(second),
        if flat {
            "flat (≤ 1.25×): PASS"
        } else {
            "grows: FAIL"
        }
    );
    println!("VERDICT: {}", if pass { "PASS" } else { "FAIL" });
}
