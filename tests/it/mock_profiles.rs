//! `chainlog mock --profile`: the mock playing llama.cpp's server quirks over real HTTP, and
//! every example chain against every profile — running, or failing with the documented clear
//! error — plus the config keys that make `tool_agent` and `extract` run on llama.cpp.

use std::{path::Path, process::Command};

use chainlog::{
    chain::{ChainError, RunContext},
    config::ChainConfig,
    mock::{MockConfig, MockServer, Profile},
};
use serde_json::{Value, json};

use crate::chain_support::{build, mock_env, root};

async fn llama() -> MockServer {
    MockServer::start(MockConfig::default().with_profile(Profile::LlamaCpp))
        .await
        .unwrap()
}

async fn post(server: &MockServer, body: Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The chain's own config with `extra` lines added to its `llm:` section.
fn config_with(name: &str, extra: &str) -> ChainConfig {
    let path = root().join(format!("chains/{name}.yaml"));
    let yaml = std::fs::read_to_string(&path).unwrap();
    let yaml = yaml.replacen("llm:\n", &format!("llm:\n{extra}"), 1);
    ChainConfig::from_yaml(&yaml, Path::new(&path)).unwrap()
}

async fn run_with(
    server: &MockServer,
    name: &str,
    extra: &str,
    input: Value,
) -> Result<Value, ChainError> {
    let chain = build(name, &config_with(name, extra), mock_env(server))?;
    chain.invoke(input, &RunContext::default()).await
}

fn input_of(name: &str) -> Value {
    match name {
        "summarize" | "map_reduce" => {
            json!({"text": "Ada Lovelace wrote the first published algorithm. She worked with Babbage."})
        }
        "extract" => json!({"text": "Ada Lovelace, analyst at Babbage & Co, ada@example.com"}),
        "tool_agent" => json!({"question": "What is the population of Paris?"}),
        other => panic!("no input for {other}"),
    }
}

/// llama.cpp's request quirks: an assistant message with null or absent content is a 500 even
/// with tool calls (`""` passes); `json_schema` is a 500; a malformed request is a 500, not a
/// 400; `max_completion_tokens` is ignored while `max_tokens` cuts the reply.
#[tokio::test]
async fn llama_cpp_refuses_what_llama_cpp_refuses() {
    let server = llama().await;
    let call =
        json!([{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]);
    for message in [
        json!({"role": "assistant", "content": null, "tool_calls": call}),
        json!({"role": "assistant", "tool_calls": call}),
    ] {
        let (status, body) = post(
            &server,
            json!({"model": "m", "messages": [
                {"role": "user", "content": "hi"}, message,
                {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]}),
        )
        .await;
        assert_eq!(status, 500, "{message}: {body}");
        assert!(body.contains("has no attribute 'content'"), "{body}");
    }
    let (status, _) = post(
        &server,
        json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "", "tool_calls": call},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]}),
    )
    .await;
    assert_eq!(status, 200);

    let (status, body) = post(
        &server,
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
               "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}}),
    )
    .await;
    assert_eq!(status, 500);
    assert!(body.contains("but got: json_schema"), "{body}");

    let (status, body) = post(&server, json!({"model": "m"})).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("messages"), "{body}");

    let long = "Tell me a long story about a lighthouse keeper and the sea";
    let (_, ignored) = post(
        &server,
        json!({"model": "m", "max_completion_tokens": 3, "messages": [{"role": "user", "content": long}]}),
    )
    .await;
    let ignored: Value = serde_json::from_str(&ignored).unwrap();
    assert_eq!(ignored["choices"][0]["finish_reason"], "stop", "{ignored}");
    let (_, bounded) = post(
        &server,
        json!({"model": "m", "max_tokens": 3, "messages": [{"role": "user", "content": long}]}),
    )
    .await;
    let bounded: Value = serde_json::from_str(&bounded).unwrap();
    assert_eq!(
        bounded["choices"][0]["finish_reason"], "length",
        "{bounded}"
    );
}

/// llama.cpp's answer quirks: no usage chunk in a stream that asks for one, every streamed
/// tool-call fragment repeats id and name, and `/v1/models` entries have no `created`.
#[tokio::test]
async fn llama_cpp_streams_and_lists_like_llama_cpp() {
    let server = llama().await;
    let (status, sse) = post(
        &server,
        json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "weather?"}],
               "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
               "tool_choice": "required"}),
    )
    .await;
    assert_eq!(status, 200);
    let chunks: Vec<Value> = sse
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c.get("usage").is_none_or(Value::is_null)),
        "{sse}"
    );
    let fragments: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]
                .as_object()
                .map(|_| &c["choices"][0]["delta"]["tool_calls"][0])
        })
        .collect();
    assert!(fragments.len() > 1, "{sse}");
    for fragment in fragments {
        assert!(
            fragment["id"].as_str().is_some_and(|id| !id.is_empty()),
            "{fragment}"
        );
        assert_eq!(fragment["function"]["name"], "get_weather", "{fragment}");
    }

    let models: Value = reqwest::get(format!("{}/models", server.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = models["data"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(
        entries.iter().all(|m| m.get("created").is_none()),
        "{models}"
    );
}

/// Every example chain against every profile with its own config: all run on `openai`; on
/// `llama.cpp` all run but `extract`, which fails with the server's clear refusal of
/// `json_schema` (naming the field and the allowed types).
#[tokio::test]
async fn every_example_chain_runs_or_fails_clearly_on_every_profile() {
    for profile in Profile::NAMES {
        let server = MockServer::start(
            MockConfig::default().with_profile(Profile::from_name(profile).unwrap()),
        )
        .await
        .unwrap();
        for chain in ["summarize", "extract", "map_reduce", "tool_agent"] {
            let result = run_with(&server, chain, "", input_of(chain)).await;
            match (*profile, chain) {
                ("llama.cpp", "extract") => {
                    let err = result.expect_err("llama.cpp refuses json_schema");
                    let text = err.to_string();
                    assert!(
                        text.contains("http 500")
                            && text.contains("response_format type must be one of \"text\" or \"json_object\", but got: json_schema"),
                        "{text}"
                    );
                }
                _ => {
                    let output = result.unwrap_or_else(|err| panic!("{chain} on {profile}: {err}"));
                    assert!(output.is_object(), "{chain} on {profile}: {output}");
                }
            }
        }
    }
}

/// On llama.cpp, `tool_agent` goes through a tool call (the assistant message that carries it
/// goes back with `content: ""`, which llama.cpp accepts) and `extract` runs with
/// `llm.structured_output: json_object` (the schema nested in the format, as llama.cpp reads it).
#[tokio::test]
async fn llama_cpp_runs_tool_agent_through_a_tool_call_and_extract_through_json_object() {
    let server = llama().await;
    let output = run_with(
        &server,
        "tool_agent",
        "  tool_choice: auto\n",
        input_of("tool_agent"),
    )
    .await
    .unwrap();
    assert!(
        !output["tool_calls"].as_array().unwrap().is_empty(),
        "{output}"
    );
    assert!(output["steps"].as_u64().unwrap() >= 2, "{output}");
    let journal = server.requests();
    assert_eq!(journal[0].body["tool_choice"], "auto");
    let second = journal[1].body["messages"].as_array().unwrap();
    let assistant = second.iter().find(|m| m["role"] == "assistant").unwrap();
    assert_eq!(assistant["content"], "", "{assistant}");
    assert!(journal.iter().all(|entry| entry.status == 200));

    server.clear_requests();
    let output = run_with(
        &server,
        "extract",
        "  structured_output: json_object\n",
        input_of("extract"),
    )
    .await
    .unwrap();
    assert!(output["contact"]["name"].is_string(), "{output}");
    let journal = server.requests();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].body["response_format"]["type"], "json_object");
    assert!(journal[0].body.get("max_completion_tokens").is_none());
    assert_eq!(journal[0].body["max_tokens"], 400);
}

/// A profile that does not exist is refused, listing the ones that do: on the command line
/// and in a rules file (naming the file). A bad `llm.structured_output` names the key and the
/// allowed values.
#[test]
fn unknown_profiles_and_methods_list_the_known_ones() {
    let output = Command::new(env!("CARGO_BIN_EXE_chainlog"))
        .args(["mock", "--port", "0", "--profile", "vllm-ish"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown mock profile `vllm-ish` (profiles: openai, llama.cpp)"),
        "{stderr}"
    );
    let err = MockConfig::default()
        .with_rules_yaml("profile: ollama\nrules: []\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("openai, llama.cpp"), "{err}");

    let err = match build(
        "extract",
        &config_with("extract", "  structured_output: xml\n"),
        std::sync::Arc::new(|name: &str| (name == "OPENAI_API_KEY").then(|| "sk-test".to_owned())),
    ) {
        Ok(_) => panic!("xml is not a method"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("llm.structured_output"), "{err}");
    assert!(
        err.contains("json_schema, json_object, tool, prompt"),
        "{err}"
    );
}
