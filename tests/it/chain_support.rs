//! Building and running the example chains against a mock, as the CLI does but in-process.

use std::{path::Path, sync::Arc};

use chainlog::{
    chain::{BuildContext, ChainError, EnvReader, RunContext, openai_factory},
    config::{ChainConfig, LlmOverrides},
    mock::MockServer,
};
use serde_json::Value;

/// The crate root, where `chains/` and `prompts/` live.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// An environment that points chains at `server` with a throwaway key.
pub fn mock_env(server: &MockServer) -> EnvReader {
    let base = server.base_url();
    Arc::new(move |name: &str| match name {
        "OPENAI_BASE_URL" => Some(base.clone()),
        "OPENAI_API_KEY" => Some("sk-test-not-a-real-key-000".to_owned()),
        _ => None,
    })
}

/// Builds the chain `name` from its own config and the crate's prompts.
pub fn build(
    name: &str,
    config: &ChainConfig,
    env: EnvReader,
) -> Result<chainlog::chain::BuiltChain, ChainError> {
    let registry = crate::chain_registry();
    let entry = registry.get(name)?;
    let ctx = BuildContext::from_parts(
        name,
        config,
        &root().join("prompts"),
        env,
        LlmOverrides::default(),
        openai_factory(),
    )?;
    entry.build(&ctx)
}

/// The chain's default config, `chains/<name>.yaml`.
pub fn default_config(name: &str) -> ChainConfig {
    ChainConfig::from_path(&root().join(format!("chains/{name}.yaml"))).unwrap()
}

/// Checks the input, builds the chain and runs it once against `server`.
pub async fn run(server: &MockServer, name: &str, input: Value) -> Result<Value, ChainError> {
    crate::chain_registry().get(name)?.check_input(&input)?;
    let chain = build(name, &default_config(name), mock_env(server))?;
    chain.invoke(input, &RunContext::default()).await
}
