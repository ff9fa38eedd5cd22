//! The README stays true: every rules example parses, every config example loads, every
//! `chainlog …` command line in it is valid, and every `chainlog run …` command runs (against
//! the built-in mock). Its Rust example is compiled as a doctest through
//! `chainlog::ReadmeDoctests`.

use std::path::Path;

use chainlog::{config::ChainConfig, mock::RuleSet};

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The fenced blocks of the README in the given language.
fn blocks(text: &str, language: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_start() == format!("```{language}") => current = Some(String::new()),
            Some(block) if line.trim_start() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// Splits a shell line into words: whitespace separates, single quotes group.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut started = false;
    for ch in line.chars() {
        match ch {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// The `chainlog` commands of the README's shell blocks, as argument lists.
fn commands() -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    for block in blocks(&readme(), "sh") {
        for line in block.lines() {
            let line = line.split(" #").next().unwrap_or_default();
            let line = line.split(" >").next().unwrap_or_default().trim();
            let rest = [
                "chainlog ",
                "./target/release/chainlog ",
                "cargo run --release -- ",
            ]
            .iter()
            .find_map(|prefix| line.strip_prefix(prefix));
            if let Some(rest) = rest {
                commands.push(shell_words(rest));
            }
        }
    }
    commands
}

/// Every YAML example in the README is a valid rules file or a valid chain config.
#[test]
fn readme_yaml_examples_load() {
    let yaml = blocks(&readme(), "yaml");
    assert!(
        yaml.len() >= 2,
        "the README shows a rules and a config example"
    );
    for block in yaml {
        if block.contains("rules:") {
            let rules = RuleSet::from_yaml(&block, Path::new("README.md")).unwrap();
            assert!(!rules.is_empty());
        } else {
            let config = ChainConfig::from_yaml(&block, Path::new("README.md")).unwrap();
            assert!(config.references().contains("OPENAI_API_KEY"));
        }
    }
}

/// Every `chainlog …` command in the README parses.
#[test]
fn readme_commands_are_valid_command_lines() {
    let commands = commands();
    assert!(
        commands.len() >= 8,
        "only {} commands found",
        commands.len()
    );
    for args in commands {
        chainlog::cli::check_command_line(&args)
            .unwrap_or_else(|err| panic!("README command `{args:?}` is invalid:\n{err}"));
    }
}

/// Every `chainlog run`, `chains`, `log`, `prompts`, `predict` and `gc` command in the README runs and
/// succeeds with no `OPENAI_*` or `MLFLOW_*` variable (so against the built-in mock and the
/// default `./mlflow.db`): `run`/`chains` from the repository root, `log`/`prompts` from a
/// fresh folder holding the repository's `chains/` and `prompts/` (so no store is written into
/// the repository).
#[test]
fn readme_commands_run_and_succeed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::tempdir().unwrap();
    for folder in ["chains", "prompts", "tests"] {
        std::os::unix::fs::symlink(root.join(folder), scratch.path().join(folder)).unwrap();
    }
    // The README's signing example starts with two openssl commands, which are not chainlog's:
    // made here the same way, so its `--sign-key`/`--verify-key` commands run as written.
    for args in [
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "signer.pem",
        ][..],
        &[
            "pkey",
            "-in",
            "signer.pem",
            "-pubout",
            "-out",
            "signer.pub.pem",
        ][..],
    ] {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(scratch.path())
            .status()
            .expect("the openssl CLI is needed for the README's signing example (apt-get install openssl)");
        assert!(status.success(), "openssl {args:?}");
    }
    let mut ran = 0;
    for args in commands() {
        let cwd = match args.first().map(String::as_str) {
            Some("run" | "chains") => root,
            Some("log" | "prompts" | "predict" | "gc") => scratch.path(),
            _ => continue,
        };
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_chainlog"))
            .args(&args)
            .current_dir(cwd)
            .env_remove("OPENAI_BASE_URL")
            .env_remove("OPENAI_API_KEY")
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("MLFLOW_EXPERIMENT_NAME")
            .env("CHAINLOG_CACHE_DIR", scratch.path().join("cache"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "README command {args:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        ran += 1;
    }
    assert!(ran >= 10, "only {ran} commands found");
    assert!(scratch.path().join("mlflow.db").is_file());
}
