//! The HTTP server: routes, auth, the reply pipeline (header fault → rules → cassette →
//! default), latency, the journal, and the two ways to run it — [`serve`] on a bound listener
//! with a shutdown future, and [`MockServer`] for tests.
//!
//! In record mode every endpoint goes to the upstream (the model endpoints too), and an event
//! stream is passed to the client piece by piece as it arrives, then recorded once it ends.
//!
//! Owns the order in which reply sources are asked. What each source answers and how bodies
//! are written live in their own modules.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, OriginalUri, Path, State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use tokio::{net::TcpListener, sync::Mutex};

use super::{
    cassette::{self, Cassette, RecordedBody, RecordedResponse},
    catalog::{self, EmbeddingsRequest},
    chat::ChatRequest,
    config::{CassetteMode, MockConfig, MockError},
    fault::{self, Fault, Latency},
    journal::{Journal, JournalEntry},
    profile::Profile,
    reply::{Decision, Reply},
    respond::{self, SseEvent},
    responses::ResponsesRequest,
    rules::{Endpoint, RuleSet},
    wire::{self, ApiError},
};

/// Everything a request handler reads.
struct MockState {
    rules: Option<RuleSet>,
    cassette: Option<CassetteSource>,
    latency: Latency,
    required_api_key: Option<SecretString>,
    embedding_dimensions: usize,
    models: Vec<String>,
    journal: Journal,
    /// The server whose quirks are played.
    profile: Profile,
}

/// A cassette and what to do with it.
enum CassetteSource {
    Replay {
        cassette: Cassette,
        /// How many times each request (by the index of its first interaction) was answered:
        /// the n-th identical request gets the n-th recorded answer (the last one again when
        /// they run out).
        served: std::sync::Mutex<std::collections::HashMap<usize, usize>>,
    },
    Record {
        /// Behind an async lock: recording appends and saves the file; shared with the task
        /// that passes a stream through and records it when it ends.
        cassette: Arc<Mutex<Cassette>>,
        /// Held for reading by every stream being recorded; taking it for writing waits
        /// until all are written ([`MockServer::finish_recordings`]).
        recording: Arc<tokio::sync::RwLock<()>>,
        upstream: String,
        api_key: Option<SecretString>,
        http: reqwest::Client,
    },
}

impl MockState {
    fn new(config: MockConfig) -> Self {
        let cassette = config.cassette.map(|(cassette, mode)| match mode {
            CassetteMode::Replay => CassetteSource::Replay {
                cassette,
                served: std::sync::Mutex::default(),
            },
            CassetteMode::Record { upstream, api_key } => CassetteSource::Record {
                cassette: Arc::new(Mutex::new(cassette)),
                recording: Arc::default(),
                upstream,
                api_key,
                http: reqwest::Client::new(),
            },
        });
        let profile = config
            .profile
            .or_else(|| config.rules.as_ref().and_then(RuleSet::profile))
            .unwrap_or_default();
        Self {
            profile,
            rules: config.rules,
            cassette,
            latency: config.latency,
            required_api_key: config.required_api_key,
            embedding_dimensions: config.embedding_dimensions,
            models: config.models,
            journal: Journal::new(config.journal_capacity),
        }
    }
}

/// The mock's routes, for `axum::serve` or `tower::ServiceExt::oneshot`. Paths work with and
/// without the `/v1` prefix.
fn router(state: Arc<MockState>, max_body_bytes: usize) -> Router {
    let api = Router::new()
        .route("/chat/completions", post(chat))
        .route("/responses", post(responses))
        .route("/embeddings", post(embeddings))
        .route("/models", get(models))
        .route("/models/{id}", get(model));
    Router::new()
        .nest("/v1", api.clone())
        .merge(api)
        .route("/_mock/requests", get(journal).delete(clear_journal))
        .route("/_mock/health", get(|| async { "ok" }))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Serves the mock on `listener` until `shutdown` completes; requests in flight finish first.
///
/// # Errors
///
/// [`MockError::Serve`] when the listener fails.
pub async fn serve(
    listener: TcpListener,
    config: MockConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MockError> {
    let max_body_bytes = config.max_body_bytes;
    let app = router(Arc::new(MockState::new(config)), max_body_bytes);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(MockError::Serve)
}

/// A mock server running inside this process on `127.0.0.1` and a free port. It stops when
/// dropped.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), chainlog_mock::MockError> {
/// use chainlog_mock::{MockConfig, MockServer};
/// let server = MockServer::start(MockConfig::default()).await?;
/// // Point any OpenAI client at server.base_url() ("http://127.0.0.1:PORT/v1").
/// assert!(server.requests().is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<MockState>,
    /// Dropping the sender stops the server.
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for MockState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockState")
            .field("rules", &self.rules.as_ref().map(RuleSet::len))
            .field("cassette", &self.cassette.is_some())
            .field("latency", &self.latency)
            .finish_non_exhaustive()
    }
}

impl MockServer {
    /// Starts a mock on `127.0.0.1:0`.
    ///
    /// # Errors
    ///
    /// [`MockError::Bind`] when no port can be bound.
    pub async fn start(config: MockConfig) -> Result<Self, MockError> {
        let listener =
            TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|source| MockError::Bind {
                    addr: "127.0.0.1:0".to_owned(),
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| MockError::Bind {
            addr: "127.0.0.1:0".to_owned(),
            source,
        })?;
        let max_body_bytes = config.max_body_bytes;
        let state = Arc::new(MockState::new(config));
        let app = router(Arc::clone(&state), max_body_bytes);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "mock server failed");
            }
        });
        Ok(Self {
            addr,
            state,
            _shutdown: tx,
        })
    }

    /// The OpenAI-style base URL: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far (up to the journal's capacity), oldest first.
    pub fn requests(&self) -> Vec<JournalEntry> {
        self.state.journal.entries()
    }

    /// The most model requests (chat, responses, embeddings) the mock answered at once since
    /// start or the last [`clear_requests`](Self::clear_requests).
    pub fn peak_in_flight(&self) -> usize {
        self.state.journal.peak_in_flight()
    }

    /// Waits until every exchange answered so far is written to the cassette (in record mode
    /// a stream is written once it has ended, which may be after its client stopped reading);
    /// returns at once in other modes.
    pub async fn finish_recordings(&self) {
        if let Some(CassetteSource::Record { recording, .. }) = &self.state.cassette {
            let _written = recording.write().await;
        }
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.state.journal.clear();
    }
}

type Body = Result<Bytes, BytesRejection>;

async fn chat(
    State(s): State<Arc<MockState>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(&s, Endpoint::Chat, &uri, &headers, body).await
}

async fn responses(
    State(s): State<Arc<MockState>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(&s, Endpoint::Responses, &uri, &headers, body).await
}

async fn embeddings(
    State(s): State<Arc<MockState>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(&s, Endpoint::Embeddings, &uri, &headers, body).await
}

async fn models(
    State(s): State<Arc<MockState>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let created = s.profile.lists_created();
    let answer = match catalog_from_cassette(&s, &uri, &headers).await {
        Some(answer) => answer,
        None => catalog_answer(&s, &headers, || catalog::list_models(&s.models, created)),
    };
    deliver(&s, "GET", &uri, Bytes::new(), answer).await
}

async fn model(
    State(s): State<Arc<MockState>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let answer = match catalog_from_cassette(&s, &uri, &headers).await {
        Some(answer) => answer,
        None => catalog_answer(&s, &headers, || catalog::get_model(&s.models, &id)),
    };
    deliver(&s, "GET", &uri, Bytes::new(), answer).await
}

/// The model endpoints with a cassette: recorded like every endpoint in record mode, answered
/// from the cassette in replay mode when it holds them. `None` (the catalog answers) without
/// a cassette, with a fault or latency header, a refused key, or a replay miss.
async fn catalog_from_cassette(
    state: &MockState,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<Answer> {
    let source = state.cassette.as_ref()?;
    let (fault, latency) = fault::from_headers(headers).ok()?;
    if fault.is_some() || latency.is_some() || authorize(state, headers).is_err() {
        return None;
    }
    let answer = from_cassette(state, source, "GET", uri, headers, &Bytes::new()).await;
    (answer.answered_by != "cassette:miss").then_some(answer)
}

/// The model endpoints take auth, status faults, hangs and latency like the others.
fn catalog_answer(
    state: &MockState,
    headers: &HeaderMap,
    list: impl FnOnce() -> Response,
) -> Answer {
    let (fault, latency) =
        match authorize(state, headers).and_then(|()| fault::from_headers(headers)) {
            Ok(parts) => parts,
            Err(error) => return Answer::now(error.into_response(), String::new()),
        };
    let delay = latency.unwrap_or(state.latency).initial_delay();
    let (response, hang, answered_by) = match &fault {
        Some(fault) => match (fault.to_api_error(), fault.hang_duration()) {
            (Some(error), _) => (
                error.into_response(),
                None,
                format!("header:{}", fault.kind()),
            ),
            (None, Some(hang)) => (
                respond::after_hang(),
                Some(hang),
                format!("header:{}", fault.kind()),
            ),
            (None, None) => (list(), None, "models".to_owned()),
        },
        None => (list(), None, "models".to_owned()),
    };
    let answered_by = if response.status().is_client_error() && fault.is_none() {
        String::new()
    } else {
        answered_by
    };
    Answer {
        response,
        answered_by,
        delay,
        hang,
    }
}

async fn journal(State(s): State<Arc<MockState>>) -> Json<Vec<JournalEntry>> {
    Json(s.journal.entries())
}

async fn clear_journal(State(s): State<Arc<MockState>>) -> StatusCode {
    s.journal.clear();
    StatusCode::NO_CONTENT
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!(
            "Unknown request URL: {method} {}. The mock serves /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/models and /_mock/requests.",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// A request as parsed for its endpoint.
enum Parsed {
    Chat(ChatRequest),
    Responses(ResponsesRequest),
    Embeddings(EmbeddingsRequest),
}

impl Parsed {
    fn parse(endpoint: Endpoint, body: &[u8], profile: Profile) -> Result<Self, ApiError> {
        let mut object = wire::parse_object(body).map_err(|e| profile.request_error(e))?;
        Ok(match endpoint {
            Endpoint::Chat => {
                profile.prepare_chat(&mut object)?;
                let mut request =
                    ChatRequest::parse(&object).map_err(|e| profile.request_error(e))?;
                request.include_usage &= profile.streams_usage();
                request.repeat_tool_call_head = profile.repeats_tool_call_head();
                Parsed::Chat(request)
            }
            Endpoint::Responses => Parsed::Responses(ResponsesRequest::parse(&object)?),
            Endpoint::Embeddings => Parsed::Embeddings(EmbeddingsRequest::parse(&object)?),
        })
    }

    fn decide_by_rules(&self, rules: &RuleSet, latency: Latency) -> Option<Decision> {
        match self {
            Parsed::Chat(request) => rules.decide(&request.view(), latency),
            Parsed::Responses(request) => rules.decide(&request.view(), latency),
            Parsed::Embeddings(request) => rules.decide(&request.view(), latency),
        }
    }

    fn default_decision(&self, latency: Latency) -> Decision {
        match self {
            Parsed::Chat(request) => request.default_decision(latency),
            Parsed::Responses(request) => request.default_decision(latency),
            Parsed::Embeddings(_) => Decision {
                reply: Reply::Text(String::new()),
                latency,
                answered_by: "default".to_owned(),
            },
        }
    }

    fn render(
        &self,
        state: &MockState,
        reply: &Reply,
        latency: Latency,
        fault: Option<Fault>,
    ) -> Response {
        match self {
            Parsed::Chat(request) => request.render(reply, latency, fault),
            Parsed::Responses(request) => request.render(reply, latency, fault),
            Parsed::Embeddings(request) => {
                respond::json(&request.render(state.embedding_dimensions), fault.as_ref())
            }
        }
    }
}

/// An answer and when to send it.
struct Answer {
    response: Response,
    answered_by: String,
    delay: Duration,
    hang: Option<Duration>,
}

impl Answer {
    fn now(response: Response, answered_by: String) -> Self {
        Self {
            response,
            answered_by,
            delay: Duration::ZERO,
            hang: None,
        }
    }
}

/// The pipeline every POST endpoint shares: auth, parse, decide, journal, wait, answer.
async fn handle(
    state: &MockState,
    endpoint: Endpoint,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let _in_flight = state.journal.begin();
    let (answer, body) = match body {
        Ok(body) => (answer(state, endpoint, uri, headers, &body).await, body),
        Err(rejection) => {
            let error = ApiError::new(
                rejection.status(),
                "invalid_request_error",
                rejection.body_text(),
            );
            (
                Answer::now(error.into_response(), String::new()),
                Bytes::new(),
            )
        }
    };
    deliver(state, "POST", uri, body, answer).await
}

/// Journals an answer, then waits as it asks and sends it with its `x-request-id` (`req_<seq>`,
/// the journal's sequence number, so a client log and the journal line up).
async fn deliver(
    state: &MockState,
    method: &'static str,
    uri: &Uri,
    body: Bytes,
    answer: Answer,
) -> Response {
    let status = if answer.hang.is_some() {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        answer.response.status()
    };
    let label = if answer.answered_by.is_empty() {
        format!("error:{}", status.as_u16())
    } else {
        answer.answered_by
    };
    // Journal before waiting, so a request whose client gives up is still on record.
    let seq = state
        .journal
        .record(method, uri.path(), body, label, status.as_u16());
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let mut response = match answer.hang {
        Some(hang) => {
            tokio::time::sleep(hang).await;
            respond::after_hang()
        }
        None => answer.response,
    };
    if let Ok(value) = HeaderValue::from_str(&format!("req_{seq}")) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

async fn answer(
    state: &MockState,
    endpoint: Endpoint,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Answer {
    let result = async {
        authorize(state, headers)?;
        let (header_fault, header_latency) = fault::from_headers(headers)?;
        let parsed = Parsed::parse(endpoint, body, state.profile)?;
        Ok::<_, ApiError>((header_fault, header_latency, parsed))
    }
    .await;
    let (header_fault, header_latency, parsed) = match result {
        Ok(parts) => parts,
        Err(error) => return Answer::now(error.into_response(), String::new()),
    };
    let decision = match header_fault {
        Some(fault) => Some(Decision {
            answered_by: format!("header:{}", fault.kind()),
            reply: Reply::Fault(fault),
            latency: state.latency,
        }),
        None => state
            .rules
            .as_ref()
            .and_then(|rules| parsed.decide_by_rules(rules, state.latency)),
    };
    let decision = match (decision, &state.cassette) {
        (Some(decision), _) => decision,
        (None, Some(cassette)) => {
            let mut answer = from_cassette(state, cassette, "POST", uri, headers, body).await;
            if let Some(latency) = header_latency {
                answer.delay = latency.initial_delay();
            }
            return answer;
        }
        (None, None) => parsed.default_decision(state.latency),
    };
    let latency = header_latency.unwrap_or(decision.latency);
    let delay = latency.initial_delay();
    let response = match &decision.reply {
        Reply::Error(error) => error.to_api_error().into_response(),
        Reply::Fault(fault) => {
            let fault = fault.clone().with_client_key(client_key(headers));
            if let Some(error) = fault.to_api_error() {
                error.into_response()
            } else if let Some(hang) = fault.hang_duration() {
                return Answer {
                    response: respond::after_hang(),
                    answered_by: decision.answered_by,
                    delay,
                    hang: Some(hang),
                };
            } else {
                // Body-shaping faults break the answer the request would otherwise get.
                let content = parsed.default_decision(latency).reply;
                parsed.render(state, &content, latency, Some(fault))
            }
        }
        reply => parsed.render(state, reply, latency, None),
    };
    Answer {
        response,
        answered_by: decision.answered_by,
        delay,
        hang: None,
    }
}

/// Checks the bearer key when one is required.
fn authorize(state: &MockState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(required) = &state.required_api_key else {
        return Ok(());
    };
    let given = client_key(headers);
    match given {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )),
        Some(key) if key == required.expose_secret() => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Incorrect API key provided.",
        )
        .with_code("invalid_api_key")),
    }
}

/// The key a client sent: `Authorization: Bearer …` or Azure's `api-key`.
fn client_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or_else(|| headers.get("api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

/// Answers from the cassette: replay (a miss is an error, never the network) or record.
async fn from_cassette(
    state: &MockState,
    source: &CassetteSource,
    method: &'static str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Answer {
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let path = uri.path();
    match source {
        CassetteSource::Replay { cassette, served } => {
            let found = cassette.matching(method, path, &request).map(|indices| {
                let mut served = served.lock().unwrap_or_else(|e| e.into_inner());
                let count = served.entry(indices[0]).or_default();
                let index = indices[(*count).min(indices.len() - 1)];
                *count += 1;
                index
            });
            match found {
                Ok(index) => match cassette.response(index) {
                    Some(recorded) => Answer::now(
                        replay(recorded, state.latency),
                        format!("cassette:#{index}"),
                    ),
                    None => Answer::now(
                        ApiError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "server_error",
                            "cassette index out of range",
                        )
                        .into_response(),
                        String::new(),
                    ),
                },
                Err(miss) => {
                    let error = ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        miss.to_string(),
                    )
                    .with_code("cassette_miss");
                    Answer::now(error.into_response(), "cassette:miss".to_owned())
                }
            }
        }
        CassetteSource::Record {
            cassette,
            recording,
            upstream,
            api_key,
            http,
        } => {
            let client_key = client_key(headers).map(|k| SecretString::from(k.to_owned()));
            let key = api_key.as_ref().or(client_key.as_ref());
            let sent = match cassette::send(http, upstream, method, path, body.clone(), key).await {
                Ok(sent) => sent,
                Err(err) => {
                    tracing::error!(error = %err, "upstream request failed while recording");
                    let error =
                        ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", err.to_string());
                    return Answer::now(
                        error.into_response(),
                        "cassette:upstream-error".to_owned(),
                    );
                }
            };
            let secrets: Vec<String> = [api_key.as_ref(), client_key.as_ref()]
                .into_iter()
                .flatten()
                .map(|key| key.expose_secret().to_owned())
                .collect();
            if sent.is_event_stream() {
                let guard = Arc::clone(recording).read_owned().await;
                return record_stream(cassette, guard, method, path, &request, sent, secrets).await;
            }
            let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
            let recorded = match sent.buffer().await {
                Ok(recorded) => recorded,
                Err(err) => {
                    tracing::error!(error = %err, "upstream answer broke off while recording");
                    let error =
                        ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", err.to_string());
                    return Answer::now(
                        error.into_response(),
                        "cassette:upstream-error".to_owned(),
                    );
                }
            };
            let response = replay(&recorded, Latency::default());
            let mut cassette = cassette.lock().await;
            match cassette.record(method, path, &request, recorded, &refs) {
                Ok(index) => Answer::now(response, format!("cassette:recorded#{index}")),
                Err(err) => {
                    tracing::error!(error = %err, "failed to write the cassette");
                    let error = ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        err.to_string(),
                    );
                    Answer::now(error.into_response(), "cassette:write-error".to_owned())
                }
            }
        }
    }
}

/// Record mode, an event stream: its slot is taken now, every piece is passed to the client
/// the moment it arrives, and a task reads the upstream to its end (even when the client has
/// gone) and then records the whole stream.
async fn record_stream(
    cassette: &Arc<Mutex<Cassette>>,
    recording: tokio::sync::OwnedRwLockReadGuard<()>,
    method: &str,
    path: &str,
    request: &serde_json::Value,
    mut sent: cassette::Upstream,
    secrets: Vec<String>,
) -> Answer {
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let index = cassette.lock().await.reserve(method, path, request, &refs);
    let headers = cassette::kept_headers(sent.headers.clone(), &refs);
    let (status, upstream_headers) = (sent.status, sent.headers.clone());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let cassette = Arc::clone(cassette);
    tokio::spawn(async move {
        let mut all = Vec::new();
        loop {
            match sent.chunk().await {
                Ok(Some(chunk)) => {
                    all.extend_from_slice(&chunk);
                    // A client that went away still gets its exchange recorded.
                    let _ = tx.send(chunk).await;
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(error = %err, "upstream stream broke off while recording");
                    break;
                }
            }
        }
        drop(tx);
        let recorded = RecordedResponse {
            status,
            headers: upstream_headers,
            body: RecordedBody::Sse(cassette::events_of(&all)),
        };
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        if let Err(err) = cassette.lock().await.fill(index, recorded, &refs) {
            tracing::error!(error = %err, "failed to write the cassette");
        }
        drop(recording);
    });
    let body = axum::body::Body::from_stream(async_stream::stream! {
        while let Some(chunk) = rx.recv().await {
            yield Ok::<Bytes, std::io::Error>(chunk);
        }
    });
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    for (name, value) in &headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    Answer::now(response, format!("cassette:recorded#{index}"))
}

/// A recorded response, sent again: same status, headers and body or events.
fn replay(recorded: &RecordedResponse, latency: Latency) -> Response {
    let mut response = match &recorded.body {
        RecordedBody::Json(value) => respond::json(value, None),
        RecordedBody::Sse(events) => {
            let last = events.len().saturating_sub(1);
            let events = events
                .iter()
                .enumerate()
                .map(|(index, event)| SseEvent {
                    event: event.event.clone(),
                    data: event.data.clone(),
                    content: index > 0 && index < last,
                })
                .collect();
            respond::sse(events, latency, None)
        }
        RecordedBody::Text(text) => text.clone().into_response(),
    };
    *response.status_mut() = StatusCode::from_u16(recorded.status).unwrap_or(StatusCode::OK);
    for (name, value) in &recorded.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
