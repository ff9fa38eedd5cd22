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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    use super::{line_limits, serve_lines};

    /// Runs `serve_lines` over in-memory pipes with `input` written and closed; every line out.
    async fn exchange(input: &str) -> Vec<Value> {
        let (mut to_server, from_client) = tokio::io::duplex(1 << 16);
        let (to_client, from_server) = tokio::io::duplex(1 << 16);
        let state = super::super::tests::greet().with_limits(line_limits(4));
        let server = tokio::spawn(serve_lines(
            BufReader::new(from_client),
            to_client,
            state,
            json!({"chain": "greet"}),
        ));
        to_server.write_all(input.as_bytes()).await.unwrap();
        drop(to_server);
        let mut lines = BufReader::new(from_server).lines();
        let mut out = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            out.push(serde_json::from_str(&line).unwrap());
        }
        server.await.unwrap().unwrap();
        out
    }

    /// The ready line first; then one answer per request, by id, with the predictions in row
    /// order; the end of input ends the loop after every answer.
    #[tokio::test]
    async fn every_request_is_answered_by_id_and_input_end_ends_the_loop() {
        let out = exchange(concat!(
            "{\"id\": 1, \"dataframe_records\": [{\"name\": \"Ada\"}, {\"name\": \"Bob\"}]}\n",
            "\n",
            "{\"id\": 2, \"inputs\": {\"name\": [\"Cy\", \"Di\"]}, \"params\": {}}\n",
            "{\"id\": 3, \"dataframe_split\": {\"columns\": [\"name\"], \"data\": [[\"Ed\"]]}}\n",
        ))
        .await;
        assert_eq!(out[0], json!({"ready": {"chain": "greet"}}));
        assert_eq!(out.len(), 4, "{out:?}");
        let mut answers: Vec<&Value> = out[1..].iter().collect();
        answers.sort_by_key(|a| a["id"].as_u64());
        assert_eq!(
            answers[0]["predictions"],
            json!(["Hello, Ada", "Hello, Bob"])
        );
        assert_eq!(answers[1]["predictions"], json!(["Hello, Cy", "Hello, Di"]));
        assert_eq!(answers[2]["predictions"], json!(["Hello, Ed"]));
        assert!(answers.iter().all(|a| a["seconds"].as_f64().is_some()));
    }

    /// Errors carry the scoring protocol's code and — unlike the HTTP server's generic 500/502
    /// bodies — the chain's own message; a line that is not a request is a BAD_REQUEST.
    #[tokio::test]
    async fn errors_carry_the_code_and_the_chains_own_message() {
        let out = exchange(concat!(
            "{\"id\": 1, \"dataframe_records\": [{\"name\": \"Ada\"}, {\"name\": 5}]}\n",
            "{\"id\": 2, \"dataframe_records\": [{\"name\": \"boom\"}]}\n",
            "{\"id\": 3, \"dataframe_records\": [{\"name\": \"llm\"}]}\n",
            "not json\n",
        ))
        .await;
        let error = |id: Value| {
            out.iter()
                .find(|a| a["id"] == id && a.get("error").is_some())
                .unwrap_or_else(|| panic!("no error for {id}: {out:?}"))["error"]
                .clone()
        };
        let bad_row = error(json!(1));
        assert_eq!(bad_row["error_code"], "BAD_REQUEST");
        assert!(
            bad_row["message"]
                .as_str()
                .unwrap()
                .starts_with("row 1: invalid input for chain `greet`"),
            "{bad_row}"
        );
        let failed = error(json!(2));
        assert_eq!(failed["error_code"], "INTERNAL_ERROR");
        assert_eq!(failed["message"], "chain `greet` failed: secret-ish detail");
        let provider = error(json!(3));
        assert_eq!(provider["error_code"], "INTERNAL_ERROR");
        assert!(
            provider["message"]
                .as_str()
                .unwrap()
                .contains("Incorrect API key provided"),
            "{provider}"
        );
        assert_eq!(error(Value::Null)["error_code"], "BAD_REQUEST");
    }
}
