//! The example chains against `MockServer`: their outputs, and the requests the mock received
//! (rendered prompts, model, temperature, tools, response_format).

use chainlog::{
    chain::{ChainError, RunContext},
    llm::LlmError,
    mock::{MockConfig, MockServer},
};
use serde_json::{Value, json};

use crate::chain_support::{build, default_config, mock_env, run};

const TEXT: &str = "Ada Lovelace wrote the first published algorithm in 1843. She worked with Charles Babbage on the Analytical Engine.";

fn messages(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or_default().to_owned(),
                m["content"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// `summarize` renders its chat prompt with the config's sentence count, sends the config's
/// model and temperature, and returns the model's text.
#[tokio::test]
async fn summarize_sends_the_rendered_prompt_and_returns_the_reply() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let output = run(&server, "summarize", json!({ "text": TEXT }))
        .await
        .unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let body = &requests[0].body;
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["temperature"], 0.2);
    let sent = messages(body);
    assert_eq!(sent[0].0, "system");
    assert!(sent[0].1.contains("at most 3 sentences"), "{}", sent[0].1);
    assert_eq!(sent[1], ("user".to_owned(), TEXT.to_owned()));
    let summary = output["summary"].as_str().unwrap();
    assert!(summary.starts_with("Mock reply"), "{summary}");
    assert!(summary.contains("Ada Lovelace"), "{summary}");
}

/// Streaming `summarize` emits text as it comes; the pieces add up to the output.
#[tokio::test]
async fn summarize_streams_text_that_adds_up_to_the_output() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let chain = build("summarize", &default_config("summarize"), mock_env(&server)).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = RunContext::default().with_text_sink(tx);
    let output = chain.invoke(json!({ "text": TEXT }), &ctx).await.unwrap();
    drop(ctx);
    let mut streamed = String::new();
    let mut pieces = 0;
    while let Some(piece) = rx.recv().await {
        streamed.push_str(&piece);
        pieces += 1;
    }
    assert!(pieces > 1, "text came in {pieces} piece(s)");
    assert_eq!(streamed, output["summary"].as_str().unwrap());
    assert_eq!(server.requests()[0].body["stream"], true);
}

/// `extract` sends its output type's JSON schema as `response_format` and parses the reply
/// (the mock's default answers with JSON valid for that schema).
#[tokio::test]
async fn extract_sends_the_schema_and_parses_the_reply() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let output = run(&server, "extract", json!({ "text": TEXT }))
        .await
        .unwrap();
    let body = &server.requests()[0].body;
    assert_eq!(body["response_format"]["type"], "json_schema");
    let schema = &body["response_format"]["json_schema"]["schema"];
    assert!(jsonschema::is_valid(schema, &output["contact"]), "{output}");
    assert!(output["contact"]["name"].is_string());
    assert!(output["contact"]["topics"].is_array());
}

/// A reply that does not fit `Contact` is refused with an error naming the type.
#[tokio::test]
async fn extract_refuses_a_reply_that_does_not_fit_the_type() {
    let rules = "rules:\n  - match: {}\n    reply: { json: { name: 5, topics: nope } }\n";
    let server = MockServer::start(MockConfig::default().with_rules_yaml(rules).unwrap())
        .await
        .unwrap();
    let err = run(&server, "extract", json!({ "text": TEXT }))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChainError::Llm(LlmError::Schema { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("Contact"), "{err}");
}

/// `map_reduce` splits a long text, sends one map request per part and one reduce request
/// holding every part summary.
#[tokio::test]
async fn map_reduce_maps_each_part_then_reduces_them() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let paragraph = "The committee met on Monday to review the budget. ".repeat(12);
    let text = vec![paragraph; 4].join("\n\n");
    let output = run(&server, "map_reduce", json!({ "text": text }))
        .await
        .unwrap();
    let parts = output["part_summaries"].as_array().unwrap();
    assert!(parts.len() >= 2, "{} parts", parts.len());
    let requests = server.requests();
    assert_eq!(requests.len(), parts.len() + 1);
    let (maps, reduces): (Vec<_>, Vec<_>) = requests
        .iter()
        .map(|r| messages(&r.body)[0].1.clone())
        .partition(|content| content.starts_with("This is part"));
    assert_eq!(maps.len(), parts.len());
    assert_eq!(reduces.len(), 1);
    for part in parts {
        assert!(
            reduces[0].contains(part.as_str().unwrap()),
            "reduce lacks {part}"
        );
    }
    assert!(!output["summary"].as_str().unwrap().is_empty());
}

/// `tool_agent` runs the loop: lookup → calculator → answer, feeding each tool result back.
#[tokio::test]
async fn tool_agent_loops_over_tools_until_an_answer() {
    let rules = r#"
rules:
  - name: lookup
    match: { role: user, last: true, tools: true }
    reply: { tool_calls: [{ name: lookup, arguments: { key: Paris } }] }
  - name: calculate
    match: { role: tool, last: true, content: "Paris:" }
    reply: { tool_calls: [{ name: calculator, arguments: { expression: "2102650 * 2" } }] }
  - name: answer
    match: { role: tool, last: true, content: "4205300" }
    reply: { text: "Twice the population of Paris is 4,205,300." }
"#;
    let server = MockServer::start(MockConfig::default().with_rules_yaml(rules).unwrap())
        .await
        .unwrap();
    let output = run(
        &server,
        "tool_agent",
        json!({ "question": "What is twice the population of Paris?" }),
    )
    .await
    .unwrap();
    assert_eq!(
        output["answer"],
        "Twice the population of Paris is 4,205,300."
    );
    assert_eq!(output["steps"], 3);
    let calls = output["tool_calls"].as_array().unwrap();
    assert_eq!(calls[0]["name"], "lookup");
    assert!(calls[0]["result"].as_str().unwrap().contains("2,102,650"));
    assert_eq!(calls[1]["name"], "calculator");
    assert_eq!(calls[1]["result"], "4205300");
    let requests = server.requests();
    let answered: Vec<_> = requests.iter().map(|r| r.answered_by.as_str()).collect();
    assert_eq!(
        answered,
        ["rule:lookup#0", "rule:calculate#0", "rule:answer#0"]
    );
    for request in &requests {
        let tools: Vec<_> = request.body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(tools, ["calculator", "lookup"]);
    }
    let last = messages(&requests[2].body);
    assert_eq!(
        last.last().unwrap(),
        &("tool".to_owned(), "4205300".to_owned())
    );
}

/// With the mock's default (a tool call with schema-valid arguments, then text), the loop
/// still ends with an answer: tool errors go back to the model, they do not fail the chain.
#[tokio::test]
async fn tool_agent_survives_tool_errors_and_answers() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let output = run(
        &server,
        "tool_agent",
        json!({ "question": "What is 2 + 2?" }),
    )
    .await
    .unwrap();
    assert_eq!(output["steps"], 2);
    assert_eq!(output["tool_calls"].as_array().unwrap().len(), 1);
    assert!(output["answer"].as_str().unwrap().starts_with("Mock reply"));
}

/// A model that never stops calling tools hits the step limit, named in the error; exactly
/// `max_steps` calls were made.
#[tokio::test]
async fn tool_agent_stops_at_the_step_limit() {
    let rules = "rules:\n  - match: {}\n    reply: { tool_calls: [{ name: lookup, arguments: { key: paris } }] }\n";
    let server = MockServer::start(MockConfig::default().with_rules_yaml(rules).unwrap())
        .await
        .unwrap();
    let err = run(&server, "tool_agent", json!({ "question": "loop forever" }))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("max_steps"), "{err}");
    assert_eq!(server.requests().len(), 6);
}

/// Input that does not fit the schema is refused before any call, naming the field.
#[tokio::test]
async fn bad_input_names_the_field_and_makes_no_call() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let err = run(&server, "summarize", json!({ "txt": "x" }))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("text"), "{message}");
    let err = run(&server, "summarize", json!({ "text": 5 }))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("input.text"), "{err}");
    assert!(server.requests().is_empty());
}

/// An unknown chain lists the known ones.
#[tokio::test]
async fn unknown_chain_lists_the_known_ones() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let err = run(&server, "summarise", json!({})).await.unwrap_err();
    let message = err.to_string();
    for known in ["extract", "map_reduce", "summarize", "tool_agent"] {
        assert!(message.contains(known), "{message}");
    }
}

/// A config that references an unset variable fails naming it (and never a value).
#[tokio::test]
async fn missing_environment_variable_is_named() {
    let env: chainlog::chain::EnvReader = std::sync::Arc::new(|_: &str| None);
    let err = build("summarize", &default_config("summarize"), env).unwrap_err();
    assert!(err.to_string().contains("OPENAI_API_KEY"), "{err}");
}
