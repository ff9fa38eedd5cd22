//! MLflow's scoring protocol over JSON lines instead of HTTP: what the `python_function`
//! flavor's loader (`python/chainlog_pyfunc.py`) talks to in its chainlog child
//! (`chainlog worker`, one long-lived process per loaded model).
//!
//! # Format
//!
//! One JSON object per line each way, UTF-8. The first line out is
//! `{"ready": {"chain": <name>, "pid": <process id>}}`, written once the chain is built. Then
//! every line in is a request with one of the scoring server's input fields and an `id`:
//!
//! ```text
//! {"id": 1, "dataframe_records": [{"text": "…"}, …], "params": {…}}
//! ```
//!
//! parsed exactly as `POST /invocations` parses its body (`dataframe_split`,
//! `dataframe_records`, `instances` or `inputs`, plus `params`); every row is checked against
//! the chain's input before any row runs, then the rows run at most
//! [`ServeLimits::row_concurrency`] at a time (the same code as the HTTP server). Each request
//! is answered by one line with its `id`, in completion order:
//!
//! ```text
//! {"id": 1, "predictions": [<output>, …], "seconds": 0.412}      one per row, in row order
//! {"id": 1, "error": {"error_code": "BAD_REQUEST", "message": "row 3: invalid input …"}}
//! ```
//!
//! `seconds` is the time the rows took to run (from the first row's start to the last
//! row's end), so a caller can tell the chain's time from its own and the channel's.
//!
//! Requests run concurrently. Unlike the HTTP server, an error carries the chain's own message
//! (scrubbed of every secret; a provider's words are its error message, never its body): the
//! caller is the model's own process, not a client. End of input ends the loop after the
//! requests in flight are answered.

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt},
    sync::mpsc,
    task::JoinSet,
};

use super::{ServeError, ServeLimits, ServeState, handler::run_rows, input};

/// Answers the requests read from `reader` on `writer` (after writing `ready` as the first
/// line) until `reader` ends and every request in flight is answered.
///
/// # Errors
///
/// An I/O error of `reader` or `writer`.
pub async fn serve_lines<R, W>(
    reader: R,
    mut writer: W,
    state: ServeState,
    ready: Value,
) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    write_line(&mut writer, &json!({ "ready": ready })).await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let mut lines = reader.lines();
    let mut tasks = JoinSet::new();
    let mut reading = true;
    loop {
        tokio::select! {
            line = lines.next_line(), if reading => match line? {
                Some(line) if line.trim().is_empty() => {}
                Some(line) => {
                    let (state, tx) = (state.clone(), tx.clone());
                    tasks.spawn(async move {
                        let _ = tx.send(answer(&state, line.as_bytes()).await);
                    });
                }
                None => {
                    reading = false;
                }
            },
            Some(message) = rx.recv() => write_line(&mut writer, &message).await?,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            else => break,
        }
        if !reading && tasks.is_empty() {
            // Every task has sent its answer before finishing: write what is queued.
            while let Ok(message) = rx.try_recv() {
                write_line(&mut writer, &message).await?;
            }
            break;
        }
    }
    writer.flush().await
}

/// One line out, every registered secret masked.
async fn write_line<W: AsyncWrite + Unpin>(writer: &mut W, message: &Value) -> std::io::Result<()> {
    let mut text = crate::secret::mask_registered(&message.to_string());
    text.push('\n');
    writer.write_all(text.as_bytes()).await?;
    writer.flush().await
}

/// The answer line of one request line.
async fn answer(state: &ServeState, line: &[u8]) -> Value {
    let id = serde_json::from_slice::<Value>(line)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .unwrap_or(Value::Null);
    match predict(state, line).await {
        Ok((predictions, seconds)) => {
            json!({ "id": id, "predictions": predictions, "seconds": seconds })
        }
        Err(err) => {
            let body = err.body();
            json!({ "id": id, "error": {
                "error_code": body["error_code"],
                "message": message(&err),
            }})
        }
    }
}

/// The request's predictions and the seconds its rows took to run.
async fn predict(state: &ServeState, line: &[u8]) -> Result<(Vec<Value>, f64), ServeError> {
    let request = input::parse(line, &state.inner.check)?;
    for (index, row) in request.rows.iter().enumerate() {
        (state.inner.check)(row).map_err(|err| ServeError::from_chain(err, Some(index)))?;
    }
    let started = std::time::Instant::now();
    let predictions = run_rows(state, request.rows).await?;
    Ok((predictions, started.elapsed().as_secs_f64()))
}

/// The error's message with the chain's own words where the HTTP server gives a generic one,
/// scrubbed.
fn message(err: &ServeError) -> String {
    let text = match err {
        ServeError::Provider(source) | ServeError::Internal(source) => {
            let mut text = source.to_string();
            let mut cause = std::error::Error::source(source);
            while let Some(inner) = cause {
                text.push_str(": ");
                text.push_str(&inner.to_string());
                cause = inner.source();
            }
            text
        }
        other => other.to_string(),
    };
    crate::secret::scrub(&text)
}

/// The limits a JSON-lines server runs with: `rows` rows of a request at once.
pub fn line_limits(rows: usize) -> ServeLimits {
    ServeLimits {
        row_concurrency: rows.max(1),
        ..ServeLimits::default()
    }
}
