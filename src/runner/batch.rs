//! Batch prediction over a JSONL file, with resume: each input line is a row (its position is
//! its key), outputs are appended to a JSONL file as `{"index", "output"}` or
//! `{"index", "error"}` lines as rows finish, and running the same batch again skips every
//! row already in the output — after a crash, Ctrl-C or `kill -9`, nothing is lost and nothing
//! is duplicated. A half-written last line (the process died mid-write) is cut off first.
//!
//! Memory stays flat in the row count: the input is read and the output written as streams,
//! at most `concurrency` rows are held at once, and the rows already done are one bit each.
//! One batch at a time writes an output file ([`OutputLock`]). With
//! [`BatchOptions::retry_errors`] the error lines of earlier runs are dropped first and their
//! rows run again, so each index still appears once.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
};

use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize, de::IgnoredAny};
use serde_json::Value;

use super::output_lock::{LockError, OutputLock};
use crate::{
    chain::{BuiltChain, ChainEntry, RunContext},
    llm::CallLoad,
};

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
    /// Another batch is writing the output file (its process id is named).
    #[error(transparent)]
    Locked(#[from] LockError),
    /// The output file is the input file: the batch would read its own output back as rows.
    #[error("the output `{output}` is the input file; write the output to another file")]
    OutputIsInput {
        /// The output as given.
        output: String,
    },
}

/// How a batch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Rows in flight at once (at least 1). LLM calls in flight are capped separately by the
    /// chain's `llm.concurrency`; see [`ConcurrencyPlan`](super::ConcurrencyPlan).
    pub concurrency: usize,
    /// Run again the rows whose line in the output is an error, replacing that line.
    pub retry_errors: bool,
}

/// Where a batch is, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchProgress {
    /// Rows finished in this run.
    pub done: u64,
    /// Rows this run has to do.
    pub total: u64,
    /// LLM calls in flight against the chain's limit, when its clients have one.
    pub calls: Option<CallLoad>,
}

/// What a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    /// Rows in the input (blank lines are not rows).
    pub rows: usize,
    /// Rows already in the output before this run (skipped).
    pub skipped: usize,
    /// Error rows of earlier runs dropped to run again (`retry_errors`).
    pub retried: usize,
    /// Rows run now that succeeded.
    pub succeeded: usize,
    /// Rows run now that became error rows.
    pub failed: usize,
}

/// One output line as written.
#[derive(Serialize)]
struct OutputLine<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// One output line as read back: its index, and whether it is an error row.
#[derive(Deserialize)]
struct WrittenLine {
    index: usize,
    error: Option<IgnoredAny>,
}

/// Refuses a batch whose output is its input file (by any path or symlink): it would read
/// its own output back as rows. Called before anything is loaded.
///
/// # Errors
///
/// [`BatchError::OutputIsInput`].
pub fn check_batch_files(input: &Path, output: &Path) -> Result<(), BatchError> {
    if super::output_lock::real_path(input) == super::output_lock::real_path(output) {
        return Err(BatchError::OutputIsInput {
            output: output.display().to_string(),
        });
    }
    Ok(())
}

/// Runs every row of `input` not yet in `output` through `chain`, `options.concurrency` at a
/// time, appending one line per row to `output` as rows finish. `progress` is called as rows
/// finish.
///
/// # Errors
///
/// [`BatchError::Locked`] when another batch writes `output`; [`BatchError::Io`] when a file
/// cannot be read or written. A row that fails (bad JSON, input that does not fit, a failed
/// run) becomes an error row instead.
pub async fn predict_batch(
    entry: &ChainEntry,
    chain: &BuiltChain,
    input: &Path,
    output: &Path,
    options: BatchOptions,
    progress: &(dyn Fn(BatchProgress) + Send + Sync),
) -> Result<BatchSummary, BatchError> {
    check_batch_files(input, output)?;
    let _lock = OutputLock::acquire(output)?;
    let earlier = scan_output(output, options.retry_errors).map_err(io("read", output))?;
    let (rows, todo) = count_rows(input, &earlier.done).map_err(io("read", input))?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(output)
        .map_err(io("write", output))?;
    let mut writer = BufWriter::with_capacity(64 * 1024, file);
    let mut summary = BatchSummary {
        rows,
        skipped: rows - todo,
        retried: earlier.retried,
        succeeded: 0,
        failed: 0,
    };
    let total = todo as u64;
    let reader = RowReader::open(input, earlier.done).map_err(io("read", input))?;
    let mut results = futures::stream::iter(reader)
        .map(|row| run_row(entry, chain, row))
        .buffer_unordered(options.concurrency.max(1));
    let mut finished = 0;
    let mut next = results.next().await;
    while let Some(row) = next {
        let (index, result) = row.map_err(io("read", input))?;
        let scrubbed: String;
        let line = match &result {
            Ok(value) => {
                summary.succeeded += 1;
                OutputLine {
                    index,
                    output: Some(value),
                    error: None,
                }
            }
            Err(message) => {
                summary.failed += 1;
                // The last guard before the file: a provider's words may be in the message.
                scrubbed = crate::secret::scrub(message);
                OutputLine {
                    index,
                    output: None,
                    error: Some(&scrubbed),
                }
            }
        };
        serde_json::to_string(&line)
            .map_err(std::io::Error::from)
            .map(|text| crate::secret::mask_registered(&text))
            .and_then(|text| {
                writer.write_all(text.as_bytes())?;
                writer.write_all(b"\n")
            })
            .map_err(io("write", output))?;
        finished += 1;
        // Write every row already finished, then flush once: lines reach the file in
        // completion order, and a crash loses at most the rows still in flight.
        next = match results.next().now_or_never() {
            Some(ready) => ready,
            None => {
                writer.flush().map_err(io("write", output))?;
                progress(BatchProgress {
                    done: finished,
                    total,
                    calls: chain.calls(),
                });
                results.next().await
            }
        };
    }
    writer.flush().map_err(io("write", output))?;
    progress(BatchProgress {
        done: finished,
        total,
        calls: chain.calls(),
    });
    Ok(summary)
}

/// The [`BatchError::Io`] for `action` on `path`.
fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BatchError {
    let path = path.display().to_string();
    move |source| BatchError::Io {
        action,
        path,
        source,
    }
}

/// One row: parse, check, run (on its own task, so rows use every core). Failures become the
/// error row's message; a read error of the input passes through.
async fn run_row(
    entry: &ChainEntry,
    chain: &BuiltChain,
    row: std::io::Result<(usize, Vec<u8>)>,
) -> std::io::Result<(usize, Result<Value, String>)> {
    let (index, line) = row?;
    let input = match parse_row(index, &line) {
        Ok(input) => input,
        Err(message) => return Ok((index, Err(message))),
    };
    if let Err(err) = entry.check_input(&input) {
        return Ok((index, Err(err.to_string())));
    }
    let chain = chain.clone();
    let span = tracing::info_span!("predict.row", chain = entry.name(), index);
    let run = tokio::spawn(async move {
        chain
            .invoke(input, &RunContext::new(span))
            .await
            .map_err(|err| err.to_string())
    });
    let result = run
        .await
        .unwrap_or_else(|err| Err(format!("the row's run stopped: {err}")));
    Ok((index, result))
}

/// A row's JSON, or an error naming its line (1-based) and what is wrong with it.
fn parse_row(index: usize, line: &[u8]) -> Result<Value, String> {
    let number = index + 1;
    let text = std::str::from_utf8(line)
        .map_err(|err| format!("input line {number} is not UTF-8: {err}"))?;
    serde_json::from_str(text).map_err(|err| {
        // serde_json's own "at line 1 column N" counts inside the row; name the file's line.
        let message = err.to_string();
        let what = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(what, _)| what);
        format!(
            "input line {number} is not valid JSON: {what} (column {})",
            err.column()
        )
    })
}

/// Row indexes as bits: one bit per row, so resuming a 1,000,000-row batch costs 125 KB.
#[derive(Debug, Default)]
struct RowSet(Vec<u64>);

impl RowSet {
    fn insert(&mut self, index: usize) {
        let word = index / 64;
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << (index % 64);
    }

    fn contains(&self, index: usize) -> bool {
        self.0
            .get(index / 64)
            .is_some_and(|word| word & (1 << (index % 64)) != 0)
    }
}

/// What earlier runs left in the output.
#[derive(Debug, Default)]
struct Earlier {
    /// Rows with a line in the output (error rows too, unless they are to be retried).
    done: RowSet,
    /// Error lines dropped to run their rows again.
    retried: usize,
}

/// Reads `output` (a missing file is empty): cuts off a half-written last line (a crash
/// mid-write; its row runs again) and, with `retry_errors`, rewrites the file without its error
/// lines (their rows run again). Lines that are not output lines are kept and ignored.
fn scan_output(output: &Path, retry_errors: bool) -> std::io::Result<Earlier> {
    let file = match File::open(output) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Earlier::default()),
        Err(err) => return Err(err),
    };
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut earlier = Earlier::default();
    let mut line = Vec::new();
    let mut complete: u64 = 0;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            OpenOptions::new()
                .write(true)
                .open(output)?
                .set_len(complete)?;
            break;
        }
        complete += read as u64;
        match serde_json::from_slice::<WrittenLine>(&line) {
            Ok(row) if retry_errors && row.error.is_some() => earlier.retried += 1,
            Ok(row) => earlier.done.insert(row.index),
            Err(_) => {}
        }
    }
    if earlier.retried > 0 {
        drop_error_lines(output)?;
    }
    Ok(earlier)
}

/// Rewrites `output` without its error lines: a copy beside it, then renamed over it, so a
/// crash leaves either the old file or the new one.
fn drop_error_lines(output: &Path) -> std::io::Result<()> {
    let mut name = output.as_os_str().to_owned();
    name.push(".retry-tmp");
    let temporary = PathBuf::from(name);
    let mut reader = BufReader::with_capacity(64 * 1024, File::open(output)?);
    let mut writer = BufWriter::with_capacity(64 * 1024, File::create(&temporary)?);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let is_error =
            serde_json::from_slice::<WrittenLine>(&line).is_ok_and(|row| row.error.is_some());
        if !is_error {
            writer.write_all(&line)?;
        }
    }
    writer
        .into_inner()
        .map_err(|err| err.into_error())?
        .sync_all()?;
    std::fs::rename(&temporary, output)
}

/// Counts the input's rows (non-blank lines) and those not in `done`, reading it as a stream.
fn count_rows(input: &Path, done: &RowSet) -> std::io::Result<(usize, usize)> {
    let mut reader = BufReader::with_capacity(64 * 1024, File::open(input)?);
    let mut line = Vec::new();
    let (mut rows, mut todo) = (0, 0);
    for index in 0.. {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        rows += 1;
        if !done.contains(index) {
            todo += 1;
        }
    }
    Ok((rows, todo))
}

/// The input's rows still to do, `(index, line)`, read one at a time.
struct RowReader {
    reader: BufReader<File>,
    done: RowSet,
    next_index: usize,
    failed: bool,
}

impl RowReader {
    fn open(input: &Path, done: RowSet) -> std::io::Result<Self> {
        Ok(Self {
            reader: BufReader::with_capacity(64 * 1024, File::open(input)?),
            done,
            next_index: 0,
            failed: false,
        })
    }
}

impl Iterator for RowReader {
    type Item = std::io::Result<(usize, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            let mut line = Vec::new();
            match self.reader.read_until(b'\n', &mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(err) => {
                    self.failed = true;
                    return Some(Err(err));
                }
            }
            let index = self.next_index;
            self.next_index += 1;
            if !line.trim_ascii().is_empty() && !self.done.contains(index) {
                return Some(Ok((index, line)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_half_written_last_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(
            &path,
            "{\"index\":0,\"output\":1}\n{\"index\":2,\"error\":\"x\"}\n{\"index\":1,\"out",
        )
        .unwrap();
        let earlier = scan_output(&path, false).unwrap();
        assert!(earlier.done.contains(0) && earlier.done.contains(2));
        assert!(!earlier.done.contains(1));
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .ends_with("\"x\"}\n")
        );
    }

    #[test]
    fn retry_errors_drops_error_lines_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(
            &path,
            "{\"index\":0,\"output\":1}\n{\"index\":2,\"error\":\"x\"}\n{\"index\":1,\"output\":{\"error\":2}}\n",
        )
        .unwrap();
        let earlier = scan_output(&path, true).unwrap();
        assert_eq!(earlier.retried, 1);
        assert!(earlier.done.contains(0) && earlier.done.contains(1));
        assert!(!earlier.done.contains(2));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"index\":0,\"output\":1}\n{\"index\":1,\"output\":{\"error\":2}}\n"
        );
    }

    #[test]
    fn a_missing_output_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let earlier = scan_output(&dir.path().join("none.jsonl"), true).unwrap();
        assert_eq!(earlier.retried, 0);
        assert!(!earlier.done.contains(0));
    }

    #[test]
    fn a_malformed_row_names_its_line() {
        let message = parse_row(4, b"{\"text\": oops}").unwrap_err();
        assert!(
            message.starts_with("input line 5 is not valid JSON: expected value"),
            "{message}"
        );
        assert!(!message.contains("at line 1"), "{message}");
        assert!(parse_row(0, b"\xff").unwrap_err().contains("not UTF-8"));
    }

    #[test]
    fn row_set_holds_indexes_as_bits() {
        let mut set = RowSet::default();
        for index in [0, 63, 64, 999_999] {
            set.insert(index);
        }
        assert!([0, 63, 64, 999_999].iter().all(|i| set.contains(*i)));
        assert!(!set.contains(1) && !set.contains(1_000_000));
        assert_eq!(set.0.len(), 999_999 / 64 + 1);
    }
}
