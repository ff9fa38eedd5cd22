//! The two contexts of a chain: [`BuildContext`] (what a chain is built from: its prompts, its
//! config and LLM clients built from that config) and [`RunContext`] (what one run carries: its
//! tracing span, cancellation and, when the caller streams, a sink for text as it comes).
//!
//! `RunContext` is the one place later hooks (recording, trace export) attach; `BuildContext`
//! is the one place clients are made, so a recorder can wrap them.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
};

use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ChainError;
use crate::{
    config::{ChainConfig, LlmOverrides, ResolvedConfig},
    llm::{LlmClient, LlmSettings, OpenAiClient},
    prompt::{PromptSet, PromptTemplate},
    secret::StreamMask,
};

/// Makes an LLM client from resolved settings. The default makes an [`OpenAiClient`]; tests
/// and recorders supply their own.
pub type ClientFactory =
    Arc<dyn Fn(&LlmSettings) -> Result<Arc<dyn LlmClient>, ChainError> + Send + Sync>;

/// Reads an environment variable (a function, so tests pass a map and never touch the
/// process environment).
pub type EnvReader = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What a chain is built from: named prompts, the resolved config and LLM clients.
pub struct BuildContext {
    chain: String,
    prompts: PromptSet,
    config: ResolvedConfig,
    env: EnvReader,
    overrides: LlmOverrides,
    factory: ClientFactory,
    /// One client per config section, so every step of a chain shares its concurrency limit.
    clients: Mutex<BTreeMap<String, Arc<dyn LlmClient>>>,
}

impl std::fmt::Debug for BuildContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildContext")
            .field("chain", &self.chain)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl BuildContext {
    /// A context from a config and a prompts folder: resolves the config's `${ENV}`
    /// references and loads the prompts its `prompts:` section names.
    ///
    /// # Errors
    ///
    /// A missing environment variable (named), or a prompt that cannot be loaded.
    pub fn from_parts(
        chain: &str,
        config: &ChainConfig,
        prompts_dir: &Path,
        env: EnvReader,
        overrides: LlmOverrides,
        factory: ClientFactory,
    ) -> Result<Self, ChainError> {
        let prompts = PromptSet::load(prompts_dir, &prompt_entries(config))?;
        Self::with_prompts(chain, config, prompts, env, overrides, factory)
    }

    /// A context from a config and prompts already loaded (from an artifact, or from MLflow's
    /// Prompt Registry): resolves the config's `${ENV}` references.
    ///
    /// # Errors
    ///
    /// A missing environment variable, named.
    pub fn with_prompts(
        chain: &str,
        config: &ChainConfig,
        prompts: PromptSet,
        env: EnvReader,
        overrides: LlmOverrides,
        factory: ClientFactory,
    ) -> Result<Self, ChainError> {
        let resolved = config.resolve(&|name: &str| env(name))?;
        Ok(Self {
            chain: chain.to_owned(),
            prompts,
            config: resolved,
            env,
            overrides,
            factory,
            clients: Mutex::new(BTreeMap::new()),
        })
    }

    /// The chain being built.
    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// The prompt the config names `name`.
    ///
    /// # Errors
    ///
    /// [`ChainError::Prompt`] listing the known prompts when there is none of that name.
    pub fn prompt(&self, name: &str) -> Result<PromptTemplate, ChainError> {
        Ok(self.prompts.get(name)?.clone())
    }

    /// A typed config section (`chain`, `tools`, ...).
    ///
    /// # Errors
    ///
    /// [`ChainError::Config`] naming the key and what does not fit.
    pub fn section<T: DeserializeOwned>(&self, key: &str) -> Result<T, ChainError> {
        Ok(self.config.section(key)?)
    }

    /// The LLM client of the config's `llm` section.
    ///
    /// # Errors
    ///
    /// A bad `llm` section, or a client that cannot be made.
    pub fn llm(&self) -> Result<Arc<dyn LlmClient>, ChainError> {
        self.llm_for("llm")
    }

    /// The LLM client of the config section `llms.<name>`, for chains that use several models.
    ///
    /// # Errors
    ///
    /// A bad section, or a client that cannot be made.
    pub fn llm_named(&self, name: &str) -> Result<Arc<dyn LlmClient>, ChainError> {
        self.llm_for(&format!("llms.{name}"))
    }

    /// Every client made so far, for [`BuiltChain`](super::BuiltChain) to report calls in
    /// flight.
    pub(crate) fn clients(&self) -> Vec<Arc<dyn LlmClient>> {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    fn llm_for(&self, section: &str) -> Result<Arc<dyn LlmClient>, ChainError> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(section) {
            return Ok(Arc::clone(client));
        }
        let settings = LlmSettings::from_config(
            &self.config,
            section,
            &|name: &str| (self.env)(name),
            &self.overrides,
        )?;
        let client = (self.factory)(&settings)?;
        clients.insert(section.to_owned(), Arc::clone(&client));
        Ok(client)
    }
}

/// The `prompts:` section of a config: prompt name → path under the prompts folder (or a
/// `prompts:/…` registry URI, which the caller resolves).
pub fn prompt_entries(config: &ChainConfig) -> BTreeMap<String, String> {
    config
        .as_value()
        .get("prompts")
        .and_then(serde_json::Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(name, path)| Some((name.clone(), path.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The default [`ClientFactory`]: an [`OpenAiClient`] for any OpenAI-compatible server.
pub fn openai_factory() -> ClientFactory {
    Arc::new(|settings: &LlmSettings| {
        let client = OpenAiClient::new(settings.clone())?;
        Ok(Arc::new(client) as Arc<dyn LlmClient>)
    })
}

/// What one run of a chain carries.
#[derive(Debug, Clone)]
pub struct RunContext {
    span: tracing::Span,
    cancel: CancellationToken,
    text_sink: Option<Arc<TextSink>>,
}

/// The caller's stream, with the secrets this process holds masked across pieces (a key a
/// provider echoes back, split over two chunks, never reaches it). What is held back is sent
/// when the last clone of the run's context goes.
#[derive(Debug)]
struct TextSink {
    sender: mpsc::UnboundedSender<String>,
    mask: Mutex<StreamMask>,
}

impl TextSink {
    fn send(&self, text: &str) {
        let ready = self
            .mask
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(text);
        if !ready.is_empty() {
            // A closed receiver means the caller stopped listening; the run goes on.
            let _ = self.sender.send(ready);
        }
    }
}

impl Drop for TextSink {
    fn drop(&mut self) {
        let rest = self
            .mask
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .finish();
        if !rest.is_empty() {
            let _ = self.sender.send(rest);
        }
    }
}

impl Default for RunContext {
    fn default() -> Self {
        Self::new(tracing::Span::current())
    }
}

impl RunContext {
    /// A run inside `span`.
    pub fn new(span: tracing::Span) -> Self {
        Self {
            span,
            cancel: CancellationToken::new(),
            text_sink: None,
        }
    }

    /// Streams text the chain emits to `sink` as it comes.
    pub fn with_text_sink(mut self, sink: mpsc::UnboundedSender<String>) -> Self {
        self.text_sink = Some(Arc::new(TextSink {
            sender: sink,
            mask: Mutex::new(StreamMask::default()),
        }));
        self
    }

    /// Cancels with `token`.
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// The run's span: chains open their step spans inside it.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Whether the caller streams text (a chain may then call the LLM in streaming mode).
    pub fn is_streaming(&self) -> bool {
        self.text_sink.is_some()
    }

    /// Sends text to the caller's stream, if any.
    pub fn emit_text(&self, text: &str) {
        if let Some(sink) = &self.text_sink {
            sink.send(text);
        }
    }

    /// Fails with [`ChainError::Cancelled`] once the run is cancelled.
    ///
    /// # Errors
    ///
    /// [`ChainError::Cancelled`].
    pub fn check_cancelled(&self) -> Result<(), ChainError> {
        if self.cancel.is_cancelled() {
            Err(ChainError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// The run's cancellation token.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registered secret a provider streams back split over chunks never reaches the
    /// caller's stream whole: it is masked across the pieces, the tail flushed at the end.
    #[tokio::test]
    async fn streamed_text_masks_a_secret_split_across_pieces() {
        let key = "sk-canary-STREAM-0123456789abcdef";
        crate::secret::register(key);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let ctx = RunContext::new(tracing::Span::none()).with_text_sink(tx);
        let clone = ctx.clone();
        for piece in ["your key is ", &key[..10], &key[10..20], &key[20..], " ok"] {
            clone.emit_text(piece);
        }
        drop(clone);
        drop(ctx);
        let mut seen = String::new();
        while let Some(text) = rx.recv().await {
            seen.push_str(&text);
        }
        assert_eq!(seen, "your key is *** ok");
    }
}
