//! Chain config: the YAML file beside a chain (`chains/<name>.yaml`, like MLflow's
//! `model_config`), its `${ENV}` references, the refusal of literal secrets, `--set`
//! overrides, typed sections, and the settings of LLM clients with their precedence.
//!
//! Two types split the config by what may hold a secret:
//!
//! - [`ChainConfig`] is the document as written. It never holds a secret — every way in
//!   runs the secret check — so it is what gets logged to MLflow: [`ChainConfig::to_yaml`],
//!   [`ChainConfig::sha256`], [`ChainConfig::flatten`] for run params and
//!   [`ChainConfig::references`] for `environment_variables.txt`.
//! - [`ResolvedConfig`] is the document with references substituted, made only at run time
//!   by [`ChainConfig::resolve`]. It may hold secrets, so its `Debug` hides them and it
//!   cannot be serialized.
//!
//! [`LlmSettings::from_config`](crate::llm::LlmSettings::from_config) is the one place where
//! command-line flags, environment variables, the config and defaults are ranked; it returns
//! [`llm::LlmSettings`](crate::llm::LlmSettings), the one settings type, which belongs to the
//! `llm` layer that uses it. [`ConfigError`] is every failure, and no message ever carries a
//! configured value.
//!
//! Does not own reading prompts (`prompt`) or building clients from settings (`llm`).
//!
//! Parts: `document` ([`ChainConfig`]), `resolved` ([`ResolvedConfig`]), `llm` (settings
//! resolution, [`LlmOverrides`]), `env` (the reference syntax), `secret` (the secret rules),
//! `error` ([`ConfigError`]).

mod document;
mod env;
mod error;
mod llm;
mod resolved;
mod secret;

/// The key type of [`LlmOverrides::api_key`], defined in `llm`; re-exported so a caller
/// building overrides needs only this module.
pub use crate::llm::ApiKey;
pub use document::{ChainConfig, DEFAULT_CONFIG_DIR};
pub use error::ConfigError;
pub use llm::{API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL, LlmOverrides};
pub use resolved::ResolvedConfig;
