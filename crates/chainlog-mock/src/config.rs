//! How a mock server is set up: where replies come from (rules, a cassette, the default),
//! latency, auth, embeddings and the journal — and the start-up errors of a bad setup.
//!
//! Owns [`MockConfig`] and [`MockError`]. Everything that can be wrong with a rules or
//! cassette file is found here, before the server accepts a connection.

use std::path::{Path, PathBuf};

use secrecy::SecretString;

use super::{
    cassette::{Cassette, CassetteError},
    fault::Latency,
    journal::DEFAULT_JOURNAL_CAPACITY,
    profile::Profile,
    rules::{RuleSet, RulesError},
};

/// The models `GET /v1/models` lists by default.
const DEFAULT_MODELS: &[&str] = &[
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "gpt-4.1",
    "o4-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
];

/// Largest request body accepted by default (OpenAI's own limit is in this range).
const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Why a mock server could not start.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// The rules file is unreadable or invalid.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// The cassette is unreadable or invalid.
    #[error(transparent)]
    Cassette(#[from] CassetteError),
    /// The address could not be bound.
    #[error("failed to bind the mock server to {addr}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while serving.
    #[error("the mock server failed")]
    Serve(#[source] std::io::Error),
}

/// Where a cassette's answers come from.
#[derive(Debug)]
pub enum CassetteMode {
    /// Answer from the cassette only; a request not in it is an error, never a network call.
    Replay,
    /// Proxy to `upstream` (an OpenAI-style base URL such as `https://api.openai.com/v1`) and
    /// write every exchange to the cassette, secrets scrubbed.
    Record {
        /// The upstream base URL.
        upstream: String,
        /// The key sent upstream; when `None` the client's own bearer key is forwarded.
        api_key: Option<SecretString>,
    },
}

/// The setup of a mock server. Start one with [`MockServer::start`](super::MockServer::start)
/// or [`serve`](super::serve).
///
/// # Examples
///
/// ```
/// use chainlog_mock::{Latency, MockConfig};
/// let config = MockConfig::default()
///     .with_rules_yaml("rules:\n  - match: { content: ping }\n    reply: { text: pong }\n")?
///     .with_latency(Latency::fixed(5))
///     .with_embedding_dimensions(8);
/// # Ok::<(), chainlog_mock::MockError>(())
/// ```
#[derive(Debug)]
pub struct MockConfig {
    pub(super) rules: Option<RuleSet>,
    pub(super) cassette: Option<(Cassette, CassetteMode)>,
    pub(super) latency: Latency,
    pub(super) required_api_key: Option<SecretString>,
    pub(super) embedding_dimensions: usize,
    pub(super) models: Vec<String>,
    pub(super) journal_capacity: usize,
    pub(super) max_body_bytes: usize,
    /// Set by [`MockConfig::with_profile`]; wins over a rules file's `profile:`.
    pub(super) profile: Option<Profile>,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            rules: None,
            cassette: None,
            latency: Latency::default(),
            required_api_key: None,
            embedding_dimensions: 1536,
            models: DEFAULT_MODELS.iter().map(|&m| m.to_owned()).collect(),
            journal_capacity: DEFAULT_JOURNAL_CAPACITY,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            profile: None,
        }
    }
}

impl MockConfig {
    /// Plays the quirks of this server (see [`Profile`]); OpenAI's when not set here nor in
    /// the rules file.
    pub fn with_profile(mut self, profile: Profile) -> Self {
        self.profile = Some(profile);
        self
    }

    /// Answers from these rules first.
    pub fn with_rules(mut self, rules: RuleSet) -> Self {
        self.rules = Some(rules);
        self
    }

    /// Loads rules from a YAML file.
    ///
    /// # Errors
    ///
    /// [`MockError::Rules`] naming the file, line and problem.
    pub fn with_rules_file(self, path: &Path) -> Result<Self, MockError> {
        Ok(self.with_rules(RuleSet::from_path(path)?))
    }

    /// Parses rules from YAML text.
    ///
    /// # Errors
    ///
    /// [`MockError::Rules`] naming the line and problem.
    pub fn with_rules_yaml(self, yaml: &str) -> Result<Self, MockError> {
        Ok(self.with_rules(RuleSet::from_yaml(yaml, Path::new("<inline rules>"))?))
    }

    /// Answers from a recorded cassette, with no network.
    ///
    /// # Errors
    ///
    /// [`MockError::Cassette`] when the file is missing or invalid.
    pub fn with_cassette_replay(mut self, path: &Path) -> Result<Self, MockError> {
        self.cassette = Some((Cassette::load(path)?, CassetteMode::Replay));
        Ok(self)
    }

    /// Proxies to `upstream` and records into `path` (appending to an existing cassette).
    ///
    /// # Errors
    ///
    /// [`MockError::Cassette`] when an existing file is invalid.
    pub fn with_cassette_record(
        mut self,
        path: &Path,
        upstream: impl Into<String>,
        api_key: Option<SecretString>,
    ) -> Result<Self, MockError> {
        let cassette = if path.exists() {
            Cassette::load(path)?
        } else {
            Cassette::empty(path)
        };
        let mode = CassetteMode::Record {
            upstream: upstream.into(),
            api_key,
        };
        self.cassette = Some((cassette, mode));
        Ok(self)
    }

    /// Latency of every answer not given one by a rule or a request header.
    pub fn with_latency(mut self, latency: Latency) -> Self {
        self.latency = latency;
        self
    }

    /// Requires this bearer key; any other (or none) gets a 401.
    pub fn with_required_api_key(mut self, key: SecretString) -> Self {
        self.required_api_key = Some(key);
        self
    }

    /// Embedding size when a request does not ask for `dimensions`.
    pub fn with_embedding_dimensions(mut self, dimensions: usize) -> Self {
        self.embedding_dimensions = dimensions.max(1);
        self
    }

    /// The models `GET /v1/models` lists.
    pub fn with_models(mut self, models: Vec<String>) -> Self {
        self.models = models;
        self
    }

    /// How many requests the journal keeps (oldest dropped first).
    pub fn with_journal_capacity(mut self, capacity: usize) -> Self {
        self.journal_capacity = capacity;
        self
    }

    /// The cassette file, when one is configured.
    pub fn cassette_path(&self) -> Option<PathBuf> {
        self.cassette
            .as_ref()
            .map(|(cassette, _)| cassette.path().to_owned())
    }
}
