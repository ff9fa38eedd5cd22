//! `predict --build cargo` against `predict` with the chain in this binary, whole process each,
//! same run: what the hand-over to a compiled snapshot costs once it is cached (target: at
//! most 50 ms more), and the cold build of the snapshot with a warm dependency cache (the
//! release dependencies this bench was compiled with, shared through
//! `CHAINLOG_BUILD_TARGET_DIR`).
//!
//! Run: `cargo bench --bench build_cargo` (`BENCH_ROUNDS` to change the count, default 9).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[expect(
    dead_code,
    reason = "the shared bench support; this bench does not start the mock"
)]
mod support;

use support::median;

use std::{path::PathBuf, process::Command, time::Instant};

/// This bench's target directory: `<target>/release/deps/build_cargo-<hash>` → `<target>`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || {
            std::env::current_exe()
                .unwrap()
                .ancestors()
                .nth(3)
                .unwrap()
                .to_path_buf()
        },
        PathBuf::from,
    )
}

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    let work = tempfile::tempdir().unwrap();
    // A copy: the snapshot build shares the target directory, where cargo puts the binary it
    // builds under the same name.
    let chainlog = work.path().join("chainlog");
    std::fs::copy(env!("CARGO_BIN_EXE_chainlog"), &chainlog).unwrap();
    let project = work.path().join("project");
    support::scratch_project(&project);
    let command = |args: &[&str]| {
        let mut command = Command::new(&chainlog);
        command
            .args(args)
            .current_dir(&project)
            .env("CHAINLOG_CACHE_DIR", work.path().join("cache"))
            .env("CHAINLOG_BUILD_TARGET_DIR", target_dir())
            .env("CHAINLOG_BUILD_PROFILE", "release")
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("MLFLOW_TRACKING_URI");
        command
    };
    let run = |args: &[&str]| {
        let start = Instant::now();
        let output = command(args).output().unwrap();
        let elapsed = start.elapsed();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        (elapsed, output)
    };
    let example =
        r#"{"text": "Rust is a systems programming language focused on safety and speed."}"#;
    run(&[
        "log",
        "summarize",
        "--input-example",
        example,
        "--registered-model",
        "s",
    ]);
    let predict = |build: &str| {
        run(&[
            "predict",
            "-m",
            "models:/s/1",
            "--input",
            example,
            "--build",
            build,
            "--quiet",
        ])
        .0
    };
    let (cold, _) = run(&[
        "predict",
        "-m",
        "models:/s/1",
        "--input",
        example,
        "--build",
        "cargo",
    ]);
    predict("local");
    let mut local = Vec::new();
    let mut cargo = Vec::new();
    for round in 0..rounds {
        if round % 2 == 0 {
            local.push(predict("local"));
            cargo.push(predict("cargo"));
        } else {
            cargo.push(predict("cargo"));
            local.push(predict("local"));
        }
    }
    let ours = median(&mut local);
    let handed = median(&mut cargo);
    let extra_ms = (handed.as_secs_f64() - ours.as_secs_f64()) * 1e3;
    println!(
        "build_cargo: {rounds} rounds, whole process each, summarize chain from a sqlite store, built-in mock"
    );
    println!(
        "  cold --build cargo (snapshot compiled, warm dependency cache) {:8.1} s",
        cold.as_secs_f64()
    );
    println!(
        "  predict --build local         median {:8.1} ms",
        ours.as_secs_f64() * 1e3
    );
    println!(
        "  predict --build cargo (cached) median {:8.1} ms",
        handed.as_secs_f64() * 1e3
    );
    println!(
        "  cached hand-over costs        {extra_ms:+.1} ms ({:.2}× the local predict)",
        handed.as_secs_f64() / ours.as_secs_f64()
    );
    // Put this workspace's own binary back where the snapshot build replaced it.
    let own = env!("CARGO_BIN_EXE_chainlog");
    let _ = std::fs::remove_file(own);
    std::fs::copy(&chainlog, own).unwrap();
    println!(
        "VERDICT: {} — target at most 50 ms more",
        if extra_ms <= 50.0 { "PASS" } else { "FAIL" }
    );
}
