//! Which OpenAI-compatible endpoint a command talks to: the one the environment names, or —
//! when neither `OPENAI_BASE_URL` nor `OPENAI_API_KEY` is set — the built-in mock, started in
//! this process.

use std::sync::Arc;

use anyhow::Context;

use crate::{
    chain::EnvReader,
    mock::{MockConfig, MockServer},
};

/// The environment a chain sees, and the mock that backs it when there is one.
pub struct Endpoint {
    /// Reads environment variables (with the mock's URL and a placeholder key when mocked).
    pub env: EnvReader,
    /// Keeps the in-process mock alive while the command runs.
    _mock: Option<MockServer>,
}

impl Endpoint {
    /// The process environment, or the built-in mock when no endpoint is configured.
    ///
    /// # Errors
    ///
    /// When the mock cannot start.
    pub async fn from_env() -> anyhow::Result<Self> {
        let configured = ["OPENAI_BASE_URL", "OPENAI_API_KEY"]
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
        if configured {
            return Ok(Self {
                env: Arc::new(|name: &str| std::env::var(name).ok()),
                _mock: None,
            });
        }
        let mock = MockServer::start(MockConfig::default())
            .await
            .context("failed to start the built-in mock")?;
        eprintln!(
            "note: neither OPENAI_BASE_URL nor OPENAI_API_KEY is set; using the built-in mock at {}",
            mock.base_url()
        );
        let base_url = mock.base_url();
        Ok(Self {
            env: Arc::new(move |name: &str| match name {
                "OPENAI_BASE_URL" => Some(base_url.clone()),
                "OPENAI_API_KEY" => Some("mock-key".to_owned()),
                _ => std::env::var(name).ok(),
            }),
            _mock: Some(mock),
        })
    }
}
