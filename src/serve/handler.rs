//! The routes, the guard in front of `/invocations` (token, encoding, the whole body within its
//! timeout, then a request slot), the handlers, and [`serve`] with graceful shutdown.

use std::{convert::Infallible, future::Future, io};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, Request, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{
        IntoResponse, Response,
        sse::{Event, Sse},
    },
    routing::{get, post},
};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::sync::CancellationToken;

use super::{ServeError, ServeState, input};
use crate::chain::RunContext;

/// The scoring routes over `state`; call it directly in tests (`oneshot`), or through
/// [`serve`].
pub fn router(state: ServeState) -> Router {
    let limit = state.inner.limits.max_body_bytes;
    let invocations = Router::new()
        .route("/invocations", post(invocations))
        .layer(DefaultBodyLimit::max(limit))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard));
    Router::new()
        .route("/ping", get(health))
        .route("/health", get(health))
        .route("/version", get(version))
        .merge(invocations)
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then stops accepting and
/// lets the requests in flight finish.
///
/// # Errors
///
/// An I/O error of the listener.
pub async fn serve(
    listener: TcpListener,
    state: ServeState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    // hyper's own HTTP/1 server rather than `axum::serve`, which gives hyper no timer and so
    // no header read timeout.
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(state.inner.limits.header_timeout);
    let app = router(state);
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait, as axum::serve does.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        });
    }
    // Stop accepting, then let the requests in flight finish.
    drop(listener);
    connections.shutdown().await;
    Ok(())
}

async fn health() -> &'static str {
    "\n"
}

async fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Checks the token and the `Content-Encoding` (only `identity`: 415 naming any other),
/// reads the whole body within the body timeout (408) and the size limit (413), and only
/// then takes a request slot or answers 503 at once — so clients trickling bodies hold no
/// slot. The slot is held until the response is complete, for a stream until its last event.
async fn guard(State(state): State<ServeState>, request: Request, next: Next) -> Response {
    let auth = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if !state.authorized(auth) {
        return ServeError::Unauthorized.into_response();
    }
    if let Some(encoding) = request.headers().get(header::CONTENT_ENCODING) {
        let encoding = String::from_utf8_lossy(encoding.as_bytes())
            .trim()
            .to_owned();
        if !encoding.eq_ignore_ascii_case("identity") {
            return ServeError::UnsupportedMediaType(format!(
                "unsupported Content-Encoding `{encoding}`: send the body uncompressed (identity)"
            ))
            .into_response();
        }
    }
    let (parts, body) = request.into_parts();
    let limits = state.inner.limits;
    let body = match tokio::time::timeout(
        limits.body_timeout,
        axum::body::to_bytes(body, limits.max_body_bytes),
    )
    .await
    {
        Err(_) => {
            let after = limits.body_timeout;
            return ServeError::RequestTimeout { after }.into_response();
        }
        Ok(Err(err)) => return body_error(&err, limits.max_body_bytes).into_response(),
        Ok(Ok(body)) => body,
    };
    let request = Request::from_parts(parts, Body::from(body));
    let Ok(permit) = state.inner.slots.clone().try_acquire_owned() else {
        state.note_overload();
        return ServeError::Overloaded.into_response();
    };
    let response = next.run(request).await;
    let streaming = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = Body::from_stream(body.into_data_stream().map(move |chunk| {
        let _held = &permit;
        chunk
    }));
    Response::from_parts(parts, body)
}

/// A body that could not be read: over the size limit (413), or broken (400).
fn body_error(err: &axum::Error, limit: usize) -> ServeError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return ServeError::PayloadTooLarge { limit };
        }
        source = cause.source();
    }
    ServeError::BadRequest(format!("could not read the request body: {err}"))
}

async fn invocations(
    State(state): State<ServeState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ServeError> {
    let format = content_type(&headers)?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServeError::PayloadTooLarge {
                limit: state.inner.limits.max_body_bytes,
            }
        } else {
            ServeError::BadRequest(format!("could not read the request body: {rejection}"))
        }
    })?;
    let request = match format {
        BodyFormat::Json => input::parse(&body, &state.inner.check)?,
        BodyFormat::Csv => input::parse_csv(&body, &state.inner.check)?,
    };
    for (index, row) in request.rows.iter().enumerate() {
        (state.inner.check)(row).map_err(|err| ServeError::from_chain(err, Some(index)))?;
    }
    let accepts_stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if request.wants_stream() || accepts_stream {
        let [row] = <[Value; 1]>::try_from(request.rows).map_err(|rows| {
            ServeError::BadRequest(format!(
                "streaming takes exactly one row, got {}",
                rows.len()
            ))
        })?;
        return Ok(stream_one(state, row));
    }
    let predictions = run_rows(&state, request.rows).await?;
    let body = crate::secret::mask_registered(&json!({ "predictions": predictions }).to_string());
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The body formats MLflow's scoring server reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFormat {
    /// `application/json`: one of the four input fields.
    Json,
    /// `text/csv`: a header row of input fields, then one row per input.
    Csv,
}

/// `application/json` or `text/csv`, with at most a `charset` parameter, as MLflow accepts.
fn content_type(headers: &HeaderMap) -> Result<BodyFormat, ServeError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut parts = value.split(';').map(str::trim);
    let mime = parts.next().unwrap_or("");
    let format = if mime.eq_ignore_ascii_case("application/json") {
        BodyFormat::Json
    } else if mime.eq_ignore_ascii_case("text/csv") {
        BodyFormat::Csv
    } else {
        return Err(ServeError::UnsupportedMediaType(format!(
            "Content type must be one of application/json or text/csv, got `{mime}`"
        )));
    };
    let unknown: Vec<&str> = parts
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split('=').next())
        .map(str::trim)
        .filter(|name| !name.eq_ignore_ascii_case("charset"))
        .collect();
    if unknown.is_empty() {
        Ok(format)
    } else {
        Err(ServeError::UnsupportedMediaType(format!(
            "Unrecognized content type parameters: {}",
            unknown.join(", ")
        )))
    }
}

/// Runs every row, at most `row_concurrency` at once, keeping request order; the first
/// failure fails the request. The one runner of the scoring protocol, over HTTP and over JSON
/// lines (`lines`).
pub(super) async fn run_rows(
    state: &ServeState,
    rows: Vec<Value>,
) -> Result<Vec<Value>, ServeError> {
    let ctx = RunContext::new(tracing::info_span!("invocation", rows = rows.len()));
    let chain = &state.inner.chain;
    stream::iter(rows.into_iter().enumerate())
        .map(|(index, row)| {
            let ctx = &ctx;
            async move {
                chain
                    .invoke(row, ctx)
                    .await
                    .map_err(|err| ServeError::from_chain(err, Some(index)))
            }
        })
        .buffered(state.inner.limits.row_concurrency)
        .try_collect()
        .await
}

/// Runs one row with a text sink and answers with its deltas as server-sent events, then
/// the predictions, then `[DONE]`. The run is cancelled if the client goes away.
fn stream_one(state: ServeState, row: Value) -> Response {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let cancel = CancellationToken::new();
    let ctx = RunContext::new(tracing::info_span!("invocation", rows = 1))
        .with_text_sink(tx)
        .with_cancellation(cancel.clone());
    let task = tokio::spawn(async move { state.inner.chain.invoke(row, &ctx).await });
    let events = async_stream::stream! {
        let _cancel_on_drop = cancel.drop_guard();
        while let Some(text) = rx.recv().await {
            yield Ok::<_, Infallible>(Event::default().data(json!({ "text": text }).to_string()));
        }
        let last = match task.await {
            Ok(Ok(output)) => json!({ "predictions": [output] }),
            Ok(Err(err)) => {
                let err = ServeError::from_chain(err, Some(0));
                if err.status().is_server_error() {
                    tracing::error!(error = %err, detail = ?std::error::Error::source(&err).map(ToString::to_string), "streamed scoring request failed");
                }
                err.body()
            }
            Err(join) => {
                tracing::error!(error = %join, "streamed chain task failed");
                json!({ "error_code": "INTERNAL_ERROR", "message": "internal error" })
            }
        };
        yield Ok(Event::default().data(crate::secret::mask_registered(&last.to_string())));
        yield Ok(Event::default().data("[DONE]"));
    };
    Sse::new(events).into_response()
}
