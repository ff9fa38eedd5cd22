//! `chainlog replay` of a logged `summarize` model against `chainlog predict` of the same model
//! on the same input against the built-in mock: whole processes, same machine, same run. The
//! model is logged once (with its input example, so its cassette is recorded) into a temp
//! dir's `./mlflow.db`; each round runs `chainlog replay -m models:/<id>` (rebuild, the
//! cassette answers the one LLM call, output compared) and `chainlog predict -m models:/<id>
//! --input <the input example>` (rebuild, the in-process mock answers), model cache warm, in
//! alternating order. The figure is the ratio of medians, replay / predict. Target: ≤ 1.2×.
//!
//! Run: `cargo bench --bench replay_vs_predict` (`BENCH_ROUNDS` to change the count, default 15).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[expect(
    dead_code,
    reason = "the shared bench support; this bench does not start the mock"
)]
mod support;

use support::{check, median};

use std::{process::Command, time::Instant};

const INPUT: &str =
    r#"{"text": "Rust is a systems programming language focused on safety and speed."}"#;

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let chainlog = env!("CARGO_BIN_EXE_chainlog");
    let work = tempfile::tempdir().unwrap();
    let project = work.path().join("project");
    let cache = work.path().join("cache");
    support::scratch_project(&project);
    let command = || {
        let mut cmd = Command::new(chainlog);
        cmd.current_dir(&project)
            .env("CHAINLOG_CACHE_DIR", &cache)
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("MLFLOW_TRACKING_URI");
        cmd
    };
    let logged = check(
        &command()
            .args(["log", "summarize", "--input-example", INPUT, "--json"])
            .output()
            .unwrap(),
        "chainlog log",
    );
    let logged: serde_json::Value = serde_json::from_str(&logged).unwrap();
    let uri = logged["model_uri"].as_str().unwrap().to_owned();
    let replay = || {
        let started = Instant::now();
        let out = check(
            &command().args(["replay", "-m", &uri]).output().unwrap(),
            "chainlog replay",
        );
        assert!(out.ends_with("identical\n"), "{out}");
        started.elapsed()
    };
    let predict = || {
        let started = Instant::now();
        check(
            &command()
                .args(["predict", "-m", &uri, "--input", INPUT])
                .output()
                .unwrap(),
            "chainlog predict",
        );
        started.elapsed()
    };
    // Warm-up: the model cache is filled, the binary paged in.
    replay();
    predict();
    let (mut replays, mut predicts) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            replays.push(replay());
            predicts.push(predict());
        } else {
            predicts.push(predict());
            replays.push(replay());
        }
    }
    let (replay_median, predict_median) = (median(&mut replays), median(&mut predicts));
    let ratio = replay_median.as_secs_f64() / predict_median.as_secs_f64();
    println!("rounds: {rounds}");
    println!("chainlog replay  (median, whole process): {replay_median:?}");
    println!("chainlog predict (median, whole process, built-in mock): {predict_median:?}");
    println!("ratio replay / predict: {ratio:.2}x (target <= 1.2x)");
}
