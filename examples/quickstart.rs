//! The library end to end: define a chain, log it to a temporary MLflow store (SQLite, MLflow's
//! own schema), load it back by its model URI — rebuilt from the artifact's config and prompts —
//! run it, print the output.
//!
//! `cargo run --example quickstart`: no key, no server; the chain talks to chainlog's mock
//! OpenAI server, started in this process.

use std::{path::Path, sync::Arc};

use chainlog::{
    chain::{
        BuildContext, Chain, ChainEntry, ChainError, ChainRegistry, RunContext, render_messages,
    },
    config::ChainConfig,
    llm::{ChatRequest, LlmClient},
    mock::MockConfig,
    prompt::PromptTemplate,
    runner::{Endpoint, Integrity, LogRequest, load_model, log_chain},
    store::{SqliteStore, StoreError, TrackingStore, TrackingUri},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the chain takes.
#[derive(Deserialize, JsonSchema)]
struct Input {
    /// A city.
    city: String,
}

/// What it gives back.
#[derive(Serialize, JsonSchema)]
struct Output {
    /// A one-line tagline.
    tagline: String,
}

/// The chain: one prompt, one LLM call.
struct Tagline {
    prompt: PromptTemplate,
    llm: Arc<dyn LlmClient>,
}

fn build(ctx: &BuildContext) -> Result<Tagline, ChainError> {
    Ok(Tagline {
        prompt: ctx.prompt("tagline")?,
        llm: ctx.llm()?,
    })
}

impl Chain for Tagline {
    type Input = Input;
    type Output = Output;

    async fn invoke(&self, input: Input, _ctx: &RunContext) -> Result<Output, ChainError> {
        let vars = serde_json::json!({ "city": input.city });
        let request = ChatRequest::new(render_messages(&self.prompt, &vars)?);
        let reply = self.llm.chat(&request).await?;
        Ok(Output {
            tagline: reply.content.unwrap_or_default(),
        })
    }
}

const CONFIG: &str = "\
llm:
  model: gpt-4o-mini
  api_key: ${OPENAI_API_KEY}
prompts:
  tagline: tagline.hbs
";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The registry a crate's build script generates, written by hand: the chain's source text
    // is this file, as compiled.
    let registry = ChainRegistry::new(vec![ChainEntry::new(
        "tagline",
        "Write a tagline for a city.",
        "examples/quickstart.rs",
        include_str!("quickstart.rs"),
        build,
    )]);
    let work = tempfile::tempdir()?;
    let prompts_dir = work.path().join("prompts");
    std::fs::create_dir_all(&prompts_dir)?;
    std::fs::write(
        prompts_dir.join("tagline.hbs"),
        "Write a one-line tagline for {{city}}.",
    )?;
    let config = ChainConfig::from_yaml(CONFIG, Path::new("tagline.yaml"))?;
    // MLflow's SQLite schema, artifacts in the same temporary folder.
    let db_path = work.path().join("mlflow.db");
    let artifact_root = work.path().join("mlruns");
    let tracking = TrackingUri::Sqlite {
        db_path: db_path.clone(),
    };
    let endpoint = Endpoint::start_mock(MockConfig::default()).await?;

    let example = serde_json::json!({ "city": "Lisbon" });
    let request = LogRequest {
        chain: registry.get("tagline")?,
        config: &config,
        prompts_dir: &prompts_dir,
        crate_dir: None,
        vendor: false,
        experiment: "quickstart",
        run_name: None,
        registered_model: Some("tagline"),
        alias: Some("champion"),
        input_example: Some(&example),
        examples: &[],
        validate: true,
        env: endpoint.env.clone(),
        sign_key: None,
    };
    let open = || -> Result<Arc<dyn TrackingStore>, StoreError> {
        Ok(Arc::new(SqliteStore::open(&db_path, &artifact_root)?))
    };
    let logged = log_chain(&open, &request, &|_, _| {}).await?;
    println!("logged run {} as {}", logged.run_id, logged.model_uri);

    let uri = "models:/tagline@champion";
    // Checked against the digest the store recorded at log time; no pin, no signature here.
    let integrity = Integrity::default();
    let model = load_model(&registry, uri, &tracking, &[], &endpoint, &integrity).await?;
    let output = model
        .chain
        .invoke(
            serde_json::json!({ "city": "Porto" }),
            &RunContext::default(),
        )
        .await?;
    println!("{uri} → {output}");
    Ok(())
}
