//! [`OpenAiClient`]: OpenAI and any OpenAI-compatible server (vLLM, Ollama, LiteLLM, the mock),
//! on async-openai's HTTP middleware.
//!
//! Owns the per-client concurrency limit, the per-call tracing span, and the HTTP stack:
//! async-openai's `ReqwestService` under our [`RetryLayer`](super::retry), driven with
//! async-openai's replayable `HttpRequestFactory`. Takes its settings as [`LlmSettings`], the
//! one settings type.
//! The stack is put together per call (cheap: two `Arc`s and a policy) because the retry layer
//! counts that call's attempts.
//!
//! Bodies are async-openai's typed request (`CreateChatCompletionRequest`), serialized once
//! (plus the `schema` of a `json_object` format, a field async-openai's type lacks).
//! Replies — JSON and SSE — are read here into our own lenient types (`wire`), not through
//! async-openai's `Client`/`Chat` API, because:
//!
//! - its typed reply requires `id`, `created` and `object`, which some compatible servers
//!   leave out, and tool calls tagged with `type`; and it logs every body it cannot parse at
//!   ERROR level;
//! - its `byot` feature (our own reply types) would fix that, but it changes the typed methods
//!   for the whole crate: `create_stream` then no longer sets `stream: true`, which breaks
//!   every other caller (the mock's Responses tests did).
//!
//! So a reply may lack everything but `choices`: `usage` (unknown: `None`), `model` (the one asked for),
//! `finish_reason`, tool-call `id`/`type`; arguments may come as an object instead of a string;
//! an error body may be OpenAI's `{"error": {...}}`, `{"error": "text"}`, `{"detail": ...}` or
//! plain text.
//!
//! The API key is kept in an [`ApiKey`] (a `SecretString`) and put into a request (as a
//! header reqwest marks sensitive) only when the request is built; our `Debug` prints `***`,
//! and no error, span field or log line carries it. No key sends no `Authorization` header.

mod stream;
mod wire;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use async_openai::{
    error::OpenAIError,
    middleware::{HttpRequestFactory, ReqwestService},
};
use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{Span, field::Empty};

use crate::trace::TraceSpan;

use super::{
    ApiKey, CallLoad, ChatRequest, ChatResponse, ChatStream, LlmClient, LlmError, LlmSettings,
    retry::{RetryLayer, RetryPolicy},
};

/// An [`LlmClient`] for OpenAI's chat completions API and compatible servers. Clones share
/// the concurrency limit.
///
/// # Examples
///
/// ```no_run
/// use chainlog::llm::{ChatMessage, ChatRequest, LlmClient, LlmSettings, OpenAiClient};
/// # async fn run() -> Result<(), chainlog::llm::LlmError> {
/// let client = OpenAiClient::new(LlmSettings::new("gpt-4o-mini", "http://127.0.0.1:8089/v1"))?;
/// let reply = client.chat(&ChatRequest::new(vec![ChatMessage::user("ping")])).await?;
/// let tokens = reply.usage.map_or("unknown".to_owned(), |u| u.total_tokens.to_string());
/// println!("{} ({tokens} tokens, {} attempts)", reply.text(), reply.attempts);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct OpenAiClient {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    model: String,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    /// Whether the limit goes out as `(max_tokens, max_completion_tokens)`, resolved from
    /// [`MaxTokensField`](super::MaxTokensField) and the base URL once.
    max_tokens_fields: (bool, bool),
    /// Sent with requests that offer tools and set no choice themselves.
    tool_choice: Option<super::ToolChoice>,
    structured_output: super::StructuredOutput,
    /// Lets a `finish_reason: length` reply through (see [`super::check_complete`]).
    accept_truncated: bool,
    base_url: String,
    /// `{base_url}/chat/completions`.
    url: reqwest::Url,
    api_key: Option<ApiKey>,
    /// One connection pool for every call.
    http: reqwest::Client,
    policy: RetryPolicy,
    /// The concurrency limit, shared by clones; a permit is held for a whole call (retries
    /// and, for streams, until the stream ends or is dropped).
    limiter: Arc<Semaphore>,
    concurrency: usize,
    /// Cancels calls in flight with [`LlmError::Cancelled`].
    cancel: Option<CancellationToken>,
}

impl std::fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = &self.inner;
        let key = if inner.api_key.is_some() {
            "***"
        } else {
            "none"
        };
        f.debug_struct("OpenAiClient")
            .field("model", &inner.model)
            // A base URL from the environment may carry a password (`https://u:pw@host`).
            .field(
                "base_url",
                &crate::secret::mask_credentials(&inner.base_url),
            )
            .field("api_key", &key)
            .field("max_retries", &inner.policy.max_retries)
            .field("timeout", &inner.policy.attempt_timeout)
            .field("concurrency", &inner.concurrency)
            .finish_non_exhaustive()
    }
}

impl OpenAiClient {
    /// A client for `settings`.
    ///
    /// # Errors
    ///
    /// [`LlmError::Permanent`] (code `invalid_settings`) when the base URL is not an http(s)
    /// URL, the key holds characters an HTTP header cannot carry, or the HTTP client cannot
    /// be built.
    pub fn new(settings: LlmSettings) -> Result<Self, LlmError> {
        let invalid = |message: String| LlmError::Permanent {
            status: None,
            code: Some("invalid_settings".to_owned()),
            message,
        };
        let base_url = settings.base_url.trim_end_matches('/').to_owned();
        let url = match reqwest::Url::parse(&format!("{base_url}/chat/completions")) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            _ => {
                let shown = crate::secret::scrub(&base_url);
                return Err(invalid(format!("`{shown}` is not an http(s) URL")));
            }
        };
        // An empty key is no key: local servers are often configured with `OPENAI_API_KEY=`.
        let api_key = settings.api_key.filter(|key| !key.expose().is_empty());
        if api_key
            .as_ref()
            .is_some_and(|key| !key.expose().bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(invalid(
                "the API key holds whitespace or characters an HTTP header cannot carry".to_owned(),
            ));
        }
        let mut http = reqwest::Client::builder();
        if !settings.timeout.is_zero() {
            http = http.connect_timeout(settings.timeout);
        }
        let http = http
            .build()
            .map_err(|err| invalid(format!("cannot build the HTTP client: {err}")))?;
        let concurrency = settings.concurrency.max(1);
        Ok(Self {
            inner: Arc::new(Inner {
                model: settings.model,
                temperature: settings.temperature,
                max_tokens: settings.max_tokens,
                max_tokens_fields: settings.max_tokens_field.fields(&base_url),
                tool_choice: settings.tool_choice,
                structured_output: settings.structured_output,
                accept_truncated: settings.accept_truncated,
                base_url,
                url,
                api_key,
                http,
                policy: RetryPolicy::new(settings.max_retries, settings.timeout),
                limiter: Arc::new(Semaphore::new(concurrency)),
                concurrency,
                cancel: None,
            }),
        })
    }

    /// Backs off from `base` (doubling, full jitter) up to `max` between retries when the
    /// server names no wait. Defaults: 200 ms and 10 s.
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        let inner = Arc::make_mut(&mut self.inner);
        inner.policy.base_delay = base;
        inner.policy.max_delay = max;
        self
    }

    /// Cancels this client's calls in flight (and every later one) with
    /// [`LlmError::Cancelled`] once `token` is cancelled.
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        Arc::make_mut(&mut self.inner).cancel = Some(token);
        self
    }

    /// [`check_complete`](super::check_complete) with this client's settings.
    fn check_complete(
        &self,
        request: &ChatRequest,
        response: &ChatResponse,
    ) -> Result<(), LlmError> {
        super::check_complete(
            response,
            request.max_tokens.or(self.inner.max_tokens),
            self.inner.accept_truncated,
        )
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// Posts `body` through the retry stack, counting attempts into `attempts`; a response
    /// that is not a success becomes the matching [`LlmError`].
    async fn send(
        &self,
        body: Bytes,
        attempts: Arc<AtomicU32>,
        span: &Span,
    ) -> Result<reqwest::Response, LlmError> {
        let inner = &self.inner;
        let service = tower::ServiceBuilder::new()
            .layer(RetryLayer::new(
                inner.policy.clone(),
                attempts,
                span.clone(),
            ))
            .service(ReqwestService::new(inner.http.clone()));
        let factory = request_factory(
            inner.http.clone(),
            inner.url.clone(),
            inner.api_key.clone(),
            body,
        );
        let response = service.oneshot(factory).await.map_err(wire::to_llm_error)?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(wire::error_from_response(response).await)
        }
    }

    /// Sends `body` again on demand (a stream that broke before its first content).
    fn reopen(
        &self,
        body: Bytes,
        attempts: Arc<AtomicU32>,
        span: &Span,
        traced: &TraceSpan,
    ) -> stream::Reopen {
        let client = self.clone();
        let span = span.clone();
        let traced = traced.clone();
        Arc::new(move || {
            let client = client.clone();
            let body = body.clone();
            let attempts = Arc::clone(&attempts);
            let span = span.clone();
            Box::pin(
                traced
                    .clone()
                    .instrument(async move { client.send(body, attempts, &span).await }),
            )
        })
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit, LlmError> {
        Arc::clone(&self.inner.limiter)
            .acquire_owned()
            .await
            .map_err(|_| LlmError::Cancelled)
    }

    /// Runs `call` unless (or until) the client's cancellation token fires.
    async fn cancellable<T>(
        &self,
        call: impl Future<Output = Result<T, LlmError>>,
    ) -> Result<T, LlmError> {
        match &self.inner.cancel {
            None => call.await,
            Some(token) => tokio::select! {
                biased;
                () = token.cancelled() => Err(LlmError::Cancelled),
                result = call => result,
            },
        }
    }

    fn span(&self, stream: bool) -> Span {
        tracing::info_span!(
            "llm.chat",
            gen_ai.operation.name = "chat",
            gen_ai.system = "openai",
            gen_ai.request.model = %self.inner.model,
            gen_ai.response.model = Empty,
            gen_ai.response.finish_reason = Empty,
            gen_ai.usage.input_tokens = Empty,
            gen_ai.usage.output_tokens = Empty,
            latency_ms = Empty,
            attempts = Empty,
            stream,
            error = Empty,
        )
    }
}

/// A replayable `POST` of `body` to `url`: every attempt builds a fresh request, and only then
/// is the key exposed, into a header reqwest marks sensitive.
fn request_factory(
    http: reqwest::Client,
    url: reqwest::Url,
    api_key: Option<ApiKey>,
    body: Bytes,
) -> HttpRequestFactory {
    HttpRequestFactory::new(move || {
        let mut request = http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        if let Some(key) = &api_key {
            request = request.bearer_auth(key.expose());
        }
        let built = request.build().map_err(OpenAIError::Reqwest);
        async move { built }
    })
}

#[async_trait]
impl LlmClient for OpenAiClient {
    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let span = self.span(false);
        let traced = TraceSpan::new("llm.chat", "CHAT_MODEL");
        let started = Instant::now();
        let attempts = Arc::new(AtomicU32::new(0));
        let call = async {
            let body = wire::to_body(&self.inner, request, false)?;
            crate::trace::json_text(&traced, "mlflow.spanInputs", || &body);
            let _permit = self.permit().await?;
            let response = self.send(body, Arc::clone(&attempts), &span).await?;
            let (reply, raw) = wire::read_reply(response).await?;
            // The body as received (copied into the trace: `raw` can be a slice of the
            // connection's read buffer).
            crate::trace::json_text(&traced, "mlflow.spanOutputs", || &raw);
            let attempts = attempts.load(Ordering::Relaxed);
            let response =
                wire::to_response(reply, &self.inner.model, started.elapsed(), attempts)?;
            self.check_complete(request, &response)?;
            Ok(response)
        };
        // The trace's span is current while the call runs (its retries are its events); the
        // log lines' span is not entered at every poll (a registry lookup per layer when the
        // log filter enables it): its retries enter it for their lines.
        let result = self.cancellable(traced.clone().instrument(call)).await;
        let attempts = attempts.load(Ordering::Relaxed);
        record(
            &span,
            &traced,
            result.as_ref(),
            started.elapsed(),
            attempts,
            false,
        );
        result
    }

    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, LlmError> {
        let span = self.span(true);
        let traced = TraceSpan::new("llm.chat", "CHAT_MODEL");
        let started = Instant::now();
        let attempts = Arc::new(AtomicU32::new(0));
        let open = async {
            let body = wire::to_body(&self.inner, request, true)?;
            crate::trace::json_text(&traced, "mlflow.spanInputs", || &body);
            let permit = self.permit().await?;
            let response = self
                .send(body.clone(), Arc::clone(&attempts), &span)
                .await?;
            Ok((permit, response, body))
        };
        match self.cancellable(traced.clone().instrument(open)).await {
            Ok((permit, response, body)) => Ok(stream::assemble(
                response,
                stream::Context {
                    reopen: self.reopen(body, Arc::clone(&attempts), &span, &traced),
                    permit,
                    span,
                    traced,
                    started,
                    attempts: Arc::clone(&attempts),
                    model: self.inner.model.clone(),
                    max_tokens: request.max_tokens.or(self.inner.max_tokens),
                    accept_truncated: self.inner.accept_truncated,
                    idle_timeout: self.inner.policy.attempt_timeout,
                    cancel: self.inner.cancel.clone(),
                    policy: self.inner.policy.clone(),
                },
            )),
            Err(error) => {
                let attempts = attempts.load(Ordering::Relaxed);
                record(
                    &span,
                    &traced,
                    Err(&error),
                    started.elapsed(),
                    attempts,
                    true,
                );
                Err(error)
            }
        }
    }

    fn calls(&self) -> Option<CallLoad> {
        let limit = self.inner.concurrency;
        Some(CallLoad {
            in_flight: limit.saturating_sub(self.inner.limiter.available_permits()),
            limit,
        })
    }

    fn model(&self) -> &str {
        &self.inner.model
    }

    fn structured_output(&self) -> super::StructuredOutput {
        self.inner.structured_output
    }
}

/// Writes a finished call's usage, latency and attempts (or its error) onto its span, and
/// logs it; its trace's span `traced` gets them as MLflow attributes, and a `stream`'s span
/// the assembled completion as its outputs (a call's outputs are the body received, set when
/// it was read).
fn record(
    span: &Span,
    traced: &TraceSpan,
    result: Result<&ChatResponse, &LlmError>,
    latency: Duration,
    attempts: u32,
    stream: bool,
) {
    let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
    span.record("latency_ms", latency_ms);
    span.record("attempts", attempts);
    trace_call(traced, result, latency_ms, attempts, stream);
    match result {
        Ok(response) => {
            span.record("gen_ai.response.model", response.model.as_str());
            if let Some(reason) = &response.finish_reason {
                span.record("gen_ai.response.finish_reason", reason.as_str());
            }
            // Unknown usage leaves the fields empty: unknown, not zero.
            if let Some(usage) = response.usage {
                span.record("gen_ai.usage.input_tokens", usage.prompt_tokens);
                span.record("gen_ai.usage.output_tokens", usage.completion_tokens);
            }
            tracing::debug!(parent: span, "llm call finished");
        }
        Err(error) => {
            span.record("error", tracing::field::display(error));
            traced.in_scope(|| tracing::warn!(parent: span, "llm call failed"));
        }
    }
}

/// The MLflow attributes of a finished call (only when its span is traced).
fn trace_call(
    span: &TraceSpan,
    result: Result<&ChatResponse, &LlmError>,
    latency_ms: u64,
    attempts: u32,
    stream: bool,
) {
    if !span.is_recording() {
        return;
    }
    crate::trace::own_attributes(span, {
        let response = result.ok();
        let usage = response.and_then(|response| response.usage);
        [
            Some(("mlflow.llm.provider", "openai".into())),
            Some(("mlflow.message.format", "openai".into())),
            Some(("latency_ms", latency_ms.into())),
            Some(("attempts", attempts.into())),
            Some(("stream", stream.into())),
            response.map(|response| ("mlflow.llm.model", response.model.clone().into())),
            response
                .and_then(|response| response.finish_reason.clone())
                .map(|reason| ("gen_ai.response.finish_reason", reason.into())),
            usage.map(|usage| {
                let count = |tokens: u64| i64::try_from(tokens).unwrap_or(i64::MAX);
                let usage = crate::trace::TokenUsage {
                    input_tokens: count(usage.prompt_tokens),
                    output_tokens: count(usage.completion_tokens),
                    total_tokens: count(usage.total_tokens),
                };
                ("mlflow.chat.tokenUsage", usage.into())
            }),
            response
                .filter(|_| stream)
                .map(|response| ("mlflow.spanOutputs", wire::completion_json(response).into())),
        ]
    });
    if let Err(error) = result {
        crate::trace::fail(span, error);
    }
}
