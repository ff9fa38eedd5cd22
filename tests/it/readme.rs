//! The README stays true: every rules example parses and every `chainlog` command line in it is
//! valid. (Its Rust example is compiled as a doctest through `chainlog::ReadmeDoctests`.)

use std::path::Path;

use chainlog::mock::RuleSet;

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

/// Every YAML example in the README is a valid rules file.
#[test]
fn readme_rules_examples_parse() {
    let yaml = blocks(&readme(), "yaml");
    assert!(!yaml.is_empty(), "the README shows a rules example");
    for block in yaml {
        let rules = RuleSet::from_yaml(&block, Path::new("README.md")).unwrap();
        assert!(!rules.is_empty());
    }
}

/// Every `chainlog …` command (and `cargo run -- …`) in the README's shell blocks parses.
#[test]
fn readme_commands_are_valid_command_lines() {
    let mut checked = 0;
    for block in blocks(&readme(), "sh") {
        for line in block.lines() {
            let command = line.split(" #").next().unwrap_or_default();
            let command = command.split(" >").next().unwrap_or_default().trim();
            let args = if let Some(rest) = command.strip_prefix("chainlog ") {
                rest
            } else if let Some(rest) = command.strip_prefix("./target/release/chainlog ") {
                rest
            } else if let Some((_, rest)) = command.split_once("cargo run --release -- ") {
                rest
            } else {
                continue;
            };
            chainlog::cli::check_command_line(args.split_whitespace())
                .unwrap_or_else(|err| panic!("README command `{command}` is invalid:\n{err}"));
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} commands found in the README");
}
