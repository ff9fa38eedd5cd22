//! Which OpenAI-compatible endpoint a command's chains talk to: the one the environment names,
//! or — when neither `OPENAI_BASE_URL` nor `OPENAI_API_KEY` is set — the built-in mock,
//! started in this process (no key, no server, no network).

use std::sync::Arc;

use crate::{
    chain::EnvReader,
    mock::{MockConfig, MockError, MockServer},
};

/// The environment a chain sees, and the mock that backs it when there is one.
pub struct Endpoint {
    /// Reads environment variables (with the mock's URL and a placeholder key when mocked).
    pub env: EnvReader,
    /// Keeps the in-process mock alive while the command runs.
    mock: Option<MockServer>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("mock", &self.mock_base_url())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The process environment, or the built-in mock when no endpoint is configured.
    ///
    /// # Errors
    ///
    /// When the mock cannot start.
    pub async fn from_env() -> Result<Self, MockError> {
        let configured = ["OPENAI_BASE_URL", "OPENAI_API_KEY"]
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
        if configured {
            return Ok(Self {
                env: Arc::new(|name: &str| std::env::var(name).ok()),
                mock: None,
            });
        }
        Self::start_mock(MockConfig::default()).await
    }

    /// The built-in mock, started in this process with `config`, whatever the environment
    /// says: chains see its base URL and a placeholder key. For tests of chains.
    ///
    /// # Errors
    ///
    /// When the mock cannot start.
    pub async fn start_mock(config: MockConfig) -> Result<Self, MockError> {
        let mock = MockServer::start(config).await?;
        let base_url = mock.base_url();
        Ok(Self {
            env: Arc::new(move |name: &str| match name {
                "OPENAI_BASE_URL" => Some(base_url.clone()),
                "OPENAI_API_KEY" => Some("mock-key".to_owned()),
                _ => std::env::var(name).ok(),
            }),
            mock: Some(mock),
        })
    }

    /// The built-in mock's base URL, when the chains talk to it.
    pub fn mock_base_url(&self) -> Option<String> {
        self.mock.as_ref().map(MockServer::base_url)
    }

    /// The built-in mock, when the chains talk to it (its journal holds what they sent).
    pub fn mock(&self) -> Option<&MockServer> {
        self.mock.as_ref()
    }
}
