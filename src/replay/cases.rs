//! `cassettes/cases.jsonl`: one JSON line per recorded case — its number, input, logged
//! output and the cassette (relative to `cassettes/`) that answers its LLM calls.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ReplayError;

/// The cases file, relative to the artifact.
pub const CASES_FILE: &str = "cassettes/cases.jsonl";
/// Case `n`'s cassette is `cassettes/case-<n>.yaml`.
pub const CASE_FILE_PREFIX: &str = "case-";

/// One recorded case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayCase {
    /// Its number, from 0 (case 0 is the input example when there is one).
    pub case: usize,
    /// The chain's input.
    pub input: Value,
    /// The output the chain gave when it was logged.
    pub output: Value,
    /// Its cassette, relative to `cassettes/` (`case-0.yaml`).
    pub cassette: String,
}

impl ReplayCase {
    /// The cassette file name of case `n`.
    pub fn cassette_name(n: usize) -> String {
        format!("{CASE_FILE_PREFIX}{n}.yaml")
    }
}

/// The cases of the artifact in `dir`; `None` when it has no cases file.
///
/// # Errors
///
/// [`ReplayError::BadCases`] naming the line, [`ReplayError::Io`].
pub fn read_cases(dir: &Path) -> Result<Option<Vec<ReplayCase>>, ReplayError> {
    let path = dir.join(CASES_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ReplayError::Io {
                action: "read",
                path,
                source,
            });
        }
    };
    let mut cases = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| ReplayError::BadCases {
            path: path.clone(),
            line: number + 1,
            message,
        };
        let case: ReplayCase = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let plain = Path::new(&case.cassette)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain || case.cassette.is_empty() {
            return Err(bad(format!(
                "cassette `{}` is not a file name inside cassettes/",
                case.cassette
            )));
        }
        cases.push(case);
    }
    Ok(Some(cases))
}

/// The cases file's text.
pub(super) fn cases_text(cases: &[ReplayCase]) -> String {
    cases
        .iter()
        .filter_map(|case| serde_json::to_string(case).ok())
        .map(|line| line + "\n")
        .collect()
}

/// The inputs of a `log --examples` file: one JSON value per line, empty lines skipped.
///
/// # Errors
///
/// [`ReplayError::Io`] naming an unreadable file, [`ReplayError::BadCases`] naming the line
/// that is not JSON.
pub fn read_examples(path: &Path) -> Result<Vec<Value>, ReplayError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReplayError::Io {
        action: "read the examples file",
        path: path.to_owned(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            serde_json::from_str(line).map_err(|e| ReplayError::BadCases {
                path: path.to_owned(),
                line: number + 1,
                message: format!("not a JSON input: {e}"),
            })
        })
        .collect()
}
