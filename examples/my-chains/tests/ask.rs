//! Runs the `ask` chain against chainlog's mock OpenAI server: no key, no network.

include!(concat!(env!("OUT_DIR"), "/chain_registry.rs"));

use chainlog::{
    chain::RunContext,
    config::{ChainConfig, LlmOverrides},
    mock::MockConfig,
    project::Project,
    runner::{Endpoint, build_from_files},
};

#[tokio::test]
async fn ask_answers_through_the_mock() {
    let endpoint = Endpoint::start_mock(MockConfig::default()).await.unwrap();
    let project = Project::at(env!("CARGO_MANIFEST_DIR"));
    let registry = chain_registry();
    let entry = registry.get("ask").unwrap();
    let config = ChainConfig::from_path(&project.config_path("ask")).unwrap();
    let chain = build_from_files(
        entry,
        &config,
        &project.prompts_dir(),
        None,
        endpoint.env.clone(),
        LlmOverrides::default(),
    )
    .await
    .unwrap();

    let input = serde_json::json!({ "question": "What does MLflow track?" });
    let output = chain.invoke(input, &RunContext::default()).await.unwrap();
    assert!(!output["answer"].as_str().unwrap().is_empty(), "{output}");

    // What the chain sent: the rendered prompt, with the question in the user message.
    let requests = endpoint.mock().unwrap().requests();
    assert_eq!(requests.len(), 1);
    let body = requests[0].body.to_string();
    assert!(body.contains("What does MLflow track?"), "{body}");
    assert!(body.contains("at most 20 words"), "{body}");
}
