//! Recording at `log` ([`record_cases`]): each case runs once through the mock in record mode
//! in front of the chain's real endpoint; its cassette (secrets scrubbed by the mock, then
//! every value this process holds as a secret masked) and its output are kept for the
//! artifact.

use std::{collections::BTreeMap, sync::Arc};

use serde_json::Value;

use super::{
    ReplayError,
    cases::{ReplayCase, cases_text},
};
use crate::{
    chain::{ChainEntry, EnvReader, RunContext},
    config::{BASE_URL_ENV, ChainConfig, DEFAULT_BASE_URL, LlmOverrides},
    llm::LlmSettings,
    mock::{MockConfig, MockServer},
    prompt::PromptSet,
    runner::build_chain,
};

/// What recording the cases gave.
#[derive(Debug, Clone)]
pub struct RecordedCases {
    /// Each case's output, in case order.
    pub outputs: Vec<Value>,
    /// The files to put under `cassettes/`: `cases.jsonl` and one cassette per case, by name.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Runs `chain` on each input with its LLM calls recorded: a mock in record mode (in this
/// process, on 127.0.0.1) proxies them to the endpoint `env` and `config` name, passing the
/// chain's own key on. Case `n` is `inputs[n]`.
///
/// # Errors
///
/// [`ReplayError::SeveralEndpoints`] when the chain's LLM sections name different base URLs;
/// a chain that fails to build or run ([`ReplayError::Chain`], naming the case); a mock that
/// cannot start; a cassette that cannot be read back.
pub async fn record_cases(
    entry: &ChainEntry,
    config: &ChainConfig,
    prompts: &PromptSet,
    env: &EnvReader,
    inputs: &[Value],
) -> Result<RecordedCases, ReplayError> {
    let upstream = upstream(entry, config, env)?;
    let staging = tempfile::tempdir().map_err(|source| ReplayError::Io {
        action: "create a folder for",
        path: std::env::temp_dir(),
        source,
    })?;
    let mut files = BTreeMap::new();
    let mut cases = Vec::new();
    for (case, input) in inputs.iter().enumerate() {
        let name = ReplayCase::cassette_name(case);
        let path = staging.path().join(&name);
        let recorder = MockServer::start(MockConfig::default().with_cassette_record(
            &path,
            upstream.clone(),
            None,
        )?)
        .await?;
        let base_url = recorder.base_url();
        let outer = Arc::clone(env);
        let case_env: EnvReader = Arc::new(move |name: &str| {
            if name == BASE_URL_ENV {
                Some(base_url.clone())
            } else {
                outer(name)
            }
        });
        let chain = build_chain(
            entry,
            config,
            prompts.clone(),
            case_env,
            LlmOverrides::default(),
        )
        .map_err(|source| ReplayError::Chain { case, source })?;
        let span = tracing::info_span!("log.record", chain = entry.name(), case);
        let output = chain
            .invoke(input.clone(), &RunContext::new(span))
            .await
            .map_err(|source| ReplayError::Chain { case, source })?;
        recorder.finish_recordings().await;
        drop(recorder);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => masked(&text),
            // No LLM call: an empty cassette.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                "format_version: 1\ninteractions: []\n".to_owned()
            }
            Err(source) => {
                return Err(ReplayError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        files.insert(name.clone(), text.into_bytes());
        cases.push(ReplayCase {
            case,
            input: input.clone(),
            output,
            cassette: name,
        });
    }
    let list = cases_text(&cases);
    files.insert("cases.jsonl".to_owned(), list.into_bytes());
    Ok(RecordedCases {
        outputs: cases.into_iter().map(|c| c.output).collect(),
        files,
    })
}

/// The one base URL the chain's LLM sections (`llm`, `llms.<name>`) talk to: the
/// environment's `OPENAI_BASE_URL` when set (it wins for every section), else theirs.
fn upstream(
    entry: &ChainEntry,
    config: &ChainConfig,
    env: &EnvReader,
) -> Result<String, ReplayError> {
    let env_url = env(BASE_URL_ENV).filter(|url| !url.is_empty());
    if let Some(url) = env_url {
        return Ok(url);
    }
    let mut sections = Vec::new();
    if config.as_value().get("llm").is_some() {
        sections.push("llm".to_owned());
    }
    if let Some(named) = config.as_value().get("llms").and_then(Value::as_object) {
        sections.extend(named.keys().map(|name| format!("llms.{name}")));
    }
    let reader = |name: &str| env(name);
    let resolved = config.resolve(&reader)?;
    let mut urls = std::collections::BTreeSet::new();
    for section in &sections {
        let settings =
            LlmSettings::from_config(&resolved, section, &reader, &LlmOverrides::default())?;
        urls.insert(settings.base_url);
    }
    let mut urls = urls.into_iter();
    match (urls.next(), urls.next()) {
        (None, _) => Ok(DEFAULT_BASE_URL.to_owned()),
        (Some(url), None) => Ok(url),
        (Some(first), Some(second)) => {
            let rest: Vec<String> = [first, second].into_iter().chain(urls).collect();
            Err(ReplayError::SeveralEndpoints {
                chain: entry.name().to_owned(),
                urls: rest.join(", "),
            })
        }
    }
}

/// A recorded cassette with every secret value this process holds masked in every string
/// (the mock already scrubbed the keys it saw); the text as is when it cannot be re-read.
fn masked(text: &str) -> String {
    let Ok(mut document) = serde_norway::from_str::<Value>(text) else {
        return text.to_owned();
    };
    let mut changed = false;
    mask_strings(&mut document, &mut changed);
    if !changed {
        return text.to_owned();
    }
    serde_norway::to_string(&document).unwrap_or_else(|_| text.to_owned())
}

fn mask_strings(value: &mut Value, changed: &mut bool) {
    match value {
        Value::String(text) => {
            let masked = crate::secret::mask_registered(text);
            if masked != *text {
                *text = masked;
                *changed = true;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| mask_strings(v, changed)),
        Value::Object(map) => map.values_mut().for_each(|v| mask_strings(v, changed)),
        _ => {}
    }
}
