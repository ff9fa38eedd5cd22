//! Batch prediction over a JSONL file, with resume: each input line is a row (its position is
//! its key), outputs are appended to a JSONL file as `{"index", "output"}` or
//! `{"index", "error"}` lines as rows finish, and running the same batch again skips every
//! row already in the output — after a crash, Ctrl-C or `kill -9`, nothing is lost and nothing
//! is duplicated. A half-written last line (the process died mid-write) is cut off first.

use std::{collections::BTreeSet, io::Write, path::Path};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::chain::{BuiltChain, ChainEntry, RunContext};

/// Why a batch could not run (row failures are error rows, not this).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The input or output file could not be read or written.
    #[error("failed to {action} `{path}`")]
    Io {
        /// `read`, `write`, ...
        action: &'static str,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    /// Rows in the input.
    pub rows: usize,
    /// Rows already in the output before this run (skipped).
    pub skipped: usize,
    /// Rows run now that succeeded.
    pub succeeded: usize,
    /// Rows run now that became error rows.
    pub failed: usize,
}

/// Runs every row of `input` not yet in `output` through `chain`, `concurrency` at a time,
/// appending one line per row to `output` as it finishes. `progress(done, total)` is called
/// after each row.
///
/// # Errors
///
/// [`BatchError::Io`] when a file cannot be read or written; a row that fails (bad JSON, input
/// that does not fit, a failed run) becomes an error row instead.
pub async fn predict_batch(
    entry: &ChainEntry,
    chain: &BuiltChain,
    input: &Path,
    output: &Path,
    concurrency: usize,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<BatchSummary, BatchError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.display().to_string();
        move |source| BatchError::Io {
            action,
            path,
            source,
        }
    };
    let text = std::fs::read_to_string(input).map_err(io("read", input))?;
    let rows: Vec<&str> = text.lines().collect();
    let done = completed_rows(output).map_err(io("read", output))?;
    let todo: Vec<(usize, &str)> = rows
        .iter()
        .enumerate()
        .filter(|(index, line)| !done.contains(index) && !line.trim().is_empty())
        .map(|(index, line)| (index, *line))
        .collect();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(output)
        .map_err(io("write", output))?;
    let total = todo.len() as u64;
    let mut summary = BatchSummary {
        rows: rows.len(),
        skipped: rows.len() - todo.len(),
        succeeded: 0,
        failed: 0,
    };
    let mut results = futures::stream::iter(todo)
        .map(|(index, line)| async move { (index, run_row(entry, chain, line).await) })
        .buffer_unordered(concurrency.max(1));
    let mut finished = 0;
    while let Some((index, result)) = results.next().await {
        let line = match result {
            Ok(value) => {
                summary.succeeded += 1;
                json!({"index": index, "output": value})
            }
            Err(message) => {
                summary.failed += 1;
                // The last guard before the file: a provider's words may be in the message.
                json!({"index": index, "error": crate::secret::scrub(&message)})
            }
        };
        // One write per line, flushed at once: a crash loses at most rows still in flight.
        let line = crate::secret::mask_registered(&line.to_string());
        file.write_all(format!("{line}\n").as_bytes())
            .and_then(|()| file.flush())
            .map_err(io("write", output))?;
        finished += 1;
        progress(finished, total);
    }
    Ok(summary)
}

/// One row: parse, check, run. Failures become the error row's message.
async fn run_row(entry: &ChainEntry, chain: &BuiltChain, line: &str) -> Result<Value, String> {
    let input: Value =
        serde_json::from_str(line).map_err(|err| format!("the row is not valid JSON: {err}"))?;
    entry.check_input(&input).map_err(|err| err.to_string())?;
    let span = tracing::info_span!("predict.row", chain = entry.name());
    chain
        .invoke(input, &RunContext::new(span))
        .await
        .map_err(|err| err.to_string())
}

/// The indexes of the rows already in `output`. A last line without its newline was cut off by
/// a crash mid-write: it is removed, and its row runs again.
fn completed_rows(output: &Path) -> std::io::Result<BTreeSet<usize>> {
    let text = match std::fs::read_to_string(output) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(err) => return Err(err),
    };
    let complete = text.rfind('\n').map_or(0, |end| end + 1);
    if complete < text.len() {
        std::fs::OpenOptions::new()
            .write(true)
            .open(output)?
            .set_len(complete as u64)?;
    }
    Ok(text[..complete]
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|row| row.get("index")?.as_u64())
        .filter_map(|index| usize::try_from(index).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_rows_drops_a_half_written_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(
            &path,
            "{\"index\":0,\"output\":1}\n{\"index\":2,\"error\":\"x\"}\n{\"index\":1,\"out",
        )
        .unwrap();
        let done = completed_rows(&path).unwrap();
        assert_eq!(done.into_iter().collect::<Vec<_>>(), [0, 2]);
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .ends_with("\"x\"}\n")
        );
    }

    #[test]
    fn completed_rows_of_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            completed_rows(&dir.path().join("none.jsonl"))
                .unwrap()
                .is_empty()
        );
    }
}
