//! Replaying the recorded cases ([`replay_cases`]) and what it found ([`ReplayReport`]).

use std::{path::Path, sync::Arc};

use serde::Serialize;
use serde_json::Value;

use super::{
    ReplayError,
    cases::{ReplayCase, read_cases},
    trace::case_from_trace,
};
use crate::{
    artifact::LoadedArtifact,
    chain::{ChainRegistry, EnvReader, RunContext},
    config::{API_KEY_ENV, BASE_URL_ENV},
    mock::{Difference, JournalEntry, MockConfig, MockServer, explain_miss},
    runner::rebuild_verified,
    secret::is_secret_name,
    store::TrackingUri,
    trace::read_trace,
};

/// What a secret-named variable reads as during a replay: no key is needed, none is read.
const PLACEHOLDER_KEY: &str = "replay-needs-no-key";

/// What a replay found.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// Whether every case gave its logged output.
    pub identical: bool,
    /// Each case, in order.
    pub cases: Vec<CaseOutcome>,
}

/// One case replayed.
#[derive(Debug, Clone, Serialize)]
pub struct CaseOutcome {
    /// Its number.
    pub case: usize,
    /// Whether the output is byte for byte the logged one (as canonical JSON text).
    pub identical: bool,
    /// The input.
    pub input: Value,
    /// The output logged.
    pub logged: Value,
    /// The output replayed; `None` when the chain failed.
    pub replayed: Option<Value>,
    /// The chain's error, when it failed.
    pub error: Option<String>,
    /// A unified diff of the pretty-printed outputs (`--- logged`, `+++ replayed`), when
    /// they differ.
    pub diff: Option<String>,
    /// The LLM calls the chain made, as the replaying mock answered them.
    pub calls: Vec<CallRecord>,
    /// The first LLM request the cassette does not hold, when there was one.
    pub first_miss: Option<FirstMiss>,
}

/// One LLM call of a replay, from the replaying mock's journal.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    /// HTTP method.
    pub method: String,
    /// Path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// `cassette:#<n>` (the interaction that answered) or `cassette:miss`.
    pub answered_by: String,
    /// The status answered.
    pub status: u16,
}

/// The first LLM request of a case that its cassette does not hold: what changed.
#[derive(Debug, Clone, Serialize)]
pub struct FirstMiss {
    /// Which call of the case it was, from 1.
    pub call: usize,
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// The model it asked for.
    pub model: Option<String>,
    /// The cassette, relative to the artifact.
    pub cassette: String,
    /// The closest recorded interaction (from 0), when the cassette holds any.
    pub closest: Option<usize>,
    /// The line where it starts in the cassette.
    pub closest_line: Option<usize>,
    /// Where the request differs from it, with both values.
    pub differences: Vec<ChangedAt>,
}

/// One place where a missed request differs from the closest recorded one (the match key:
/// bodies normalised as the mock compares them).
#[derive(Debug, Clone, Serialize)]
pub struct ChangedAt {
    /// `method`, `path`, or a body key path such as `messages[1].content`.
    pub at: String,
    /// The recorded value there (`None`: absent).
    pub recorded: Option<Value>,
    /// The asked value there (`None`: absent).
    pub asked: Option<Value>,
}

impl From<&Difference> for ChangedAt {
    fn from(d: &Difference) -> Self {
        Self {
            at: d.at.clone(),
            recorded: d.recorded.clone(),
            asked: d.asked.clone(),
        }
    }
}

/// Replays every recorded case of `artifact` (already verified: its cassettes are hashed in
/// MLmodel): for each, the chain is rebuilt from `registry` with `overrides` (`--set`), its
/// LLM calls answered by an in-process mock replaying the case's cassette — no network, no
/// key: secret-named variables read as a placeholder — and its output compared with the
/// logged one. `uri` names the model in errors.
///
/// # Errors
///
/// [`ReplayError::NoCassettes`] for a model logged without cases; a bad cases file or
/// cassette; a chain this binary cannot rebuild (or an override that does not fit). A chain
/// that fails on a case is an outcome, not an error.
pub async fn replay_cases(
    registry: &ChainRegistry,
    artifact: &LoadedArtifact,
    uri: &str,
    overrides: &[String],
) -> Result<ReplayReport, ReplayError> {
    let dir = artifact.dir();
    let cases = read_cases(dir)?
        .filter(|cases| !cases.is_empty())
        .ok_or_else(|| ReplayError::NoCassettes {
            uri: uri.to_owned(),
            advice: if artifact.mlmodel().saved_input_example_info.is_some() {
                "it has an input example but was logged with --no-validate, which skips running \
                 it; log it again without --no-validate so its exchanges are recorded"
            } else {
                "log it with an input example (`log <chain> --input-example JSON`, or \
                 `--examples cases.jsonl`) so its exchanges are recorded"
            },
        })?;
    let mut outcomes = Vec::with_capacity(cases.len());
    for case in cases {
        let relative = format!("cassettes/{}", case.cassette);
        let cassette = dir.join(&relative);
        let outcome = replay_one(
            registry, artifact, overrides, case, &cassette, &relative, false,
        )
        .await?;
        outcomes.push(outcome);
    }
    Ok(ReplayReport {
        identical: outcomes.iter().all(|c| c.identical),
        cases: outcomes,
    })
}

/// Replays one production prediction from its trace: the trace `trace_id` in the store
/// `tracking` names gives the input, the output and (from its `CHAT_MODEL` spans) the
/// cassette; the chain of `artifact` is rebuilt and run on it offline, as [`replay_cases`]
/// runs a case. The report holds one case, numbered 0.
///
/// # Errors
///
/// A trace that does not exist or holds no LLM call ([`ReplayError::Trace`],
/// [`ReplayError::TraceWithoutLlm`], each naming it), a trace of another chain
/// ([`ReplayError::TraceOfAnotherChain`]), and those of [`replay_cases`].
pub async fn replay_trace(
    registry: &ChainRegistry,
    artifact: &LoadedArtifact,
    tracking: &TrackingUri,
    trace_id: &str,
    overrides: &[String],
) -> Result<ReplayReport, ReplayError> {
    let spans = read_trace(tracking, trace_id).await?;
    let chain = &artifact.flavor().chain;
    if let Some(root) = spans.iter().find(|span| !span.has_parent)
        && root.name != *chain
    {
        return Err(ReplayError::TraceOfAnotherChain {
            trace_id: trace_id.to_owned(),
            traced: root.name.clone(),
            chain: chain.clone(),
        });
    }
    let traced = case_from_trace(trace_id, &spans)?;
    let staging = tempfile::tempdir().map_err(|source| ReplayError::Io {
        action: "create a folder for the cassette of",
        path: trace_id.into(),
        source,
    })?;
    let name = format!("{trace_id}.yaml");
    let cassette = staging.path().join(&name);
    std::fs::write(&cassette, &traced.cassette).map_err(|source| ReplayError::Io {
        action: "write",
        path: cassette.clone(),
        source,
    })?;
    let case = ReplayCase {
        case: 0,
        input: traced.input,
        output: traced.output,
        cassette: name.clone(),
    };
    let shown = format!("trace {trace_id}");
    let outcome = replay_one(
        registry,
        artifact,
        overrides,
        case,
        &cassette,
        &shown,
        traced.streamed,
    )
    .await?;
    Ok(ReplayReport {
        identical: outcome.identical,
        cases: vec![outcome],
    })
}

/// One case: a mock replaying `cassette` (named `shown` in the report), the chain rebuilt
/// against it and run (streaming, its text dropped, when `streamed`), the output compared,
/// the first miss explained.
async fn replay_one(
    registry: &ChainRegistry,
    artifact: &LoadedArtifact,
    overrides: &[String],
    case: ReplayCase,
    cassette: &Path,
    shown: &str,
    streamed: bool,
) -> Result<CaseOutcome, ReplayError> {
    let mock = MockServer::start(MockConfig::default().with_cassette_replay(cassette)?).await?;
    let rebuilt = rebuild_verified(
        registry,
        artifact.clone(),
        overrides,
        replay_env(mock.base_url()),
    )?;
    let span = tracing::info_span!("replay", chain = rebuilt.entry.name(), case = case.case);
    let mut context = RunContext::new(span);
    let (sink, _text) = tokio::sync::mpsc::unbounded_channel();
    if streamed {
        context = context.with_text_sink(sink);
    }
    let result = rebuilt.chain.invoke(case.input.clone(), &context).await;
    let journal = mock.requests();
    drop(mock);
    let (replayed, error) = match result {
        Ok(output) => (Some(output), None),
        Err(err) => (None, Some(crate::secret::scrub(&err.to_string()))),
    };
    let identical = replayed
        .as_ref()
        .is_some_and(|out| canonical(out) == canonical(&case.output));
    let diff = match (&replayed, identical) {
        (Some(out), false) => Some(unified_diff(&case.output, out)),
        _ => None,
    };
    let first_miss = first_miss(&journal, cassette, shown);
    Ok(CaseOutcome {
        case: case.case,
        identical,
        input: case.input,
        logged: case.output,
        replayed,
        error,
        diff,
        calls: journal
            .into_iter()
            .map(|entry| CallRecord {
                method: entry.method,
                path: entry.path,
                answered_by: entry.answered_by,
                status: entry.status,
            })
            .collect(),
        first_miss,
    })
}

/// The environment of a replayed chain: the mock's URL, a placeholder for every
/// secret-named variable (the key among them), the process's for the others.
fn replay_env(base_url: String) -> EnvReader {
    Arc::new(move |name: &str| match name {
        BASE_URL_ENV => Some(base_url.clone()),
        API_KEY_ENV => Some(PLACEHOLDER_KEY.to_owned()),
        _ if is_secret_name(name) => Some(PLACEHOLDER_KEY.to_owned()),
        _ => std::env::var(name).ok(),
    })
}

/// An output as the text it is compared by.
fn canonical(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// `--- logged` / `+++ replayed`, the pretty-printed outputs line by line.
fn unified_diff(logged: &Value, replayed: &Value) -> String {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    let (old, new) = (pretty(logged), pretty(replayed));
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header("logged", "replayed")
        .to_string()
}

/// The first call the cassette missed, explained against the closest recorded interaction.
fn first_miss(journal: &[JournalEntry], cassette: &Path, relative: &str) -> Option<FirstMiss> {
    let (position, entry) = journal
        .iter()
        .enumerate()
        .find(|(_, entry)| entry.answered_by == "cassette:miss")?;
    let miss = explain_miss(cassette, &entry.method, &entry.path, &entry.body)
        .ok()
        .flatten()?;
    let closest = miss.closest.as_deref();
    Some(FirstMiss {
        call: position + 1,
        method: miss.method.clone(),
        path: miss.path.clone(),
        model: miss.model.clone(),
        cassette: relative.to_owned(),
        closest: closest.map(|c| c.index),
        closest_line: closest.and_then(|c| c.line),
        differences: closest
            .map(|c| c.differences.iter().map(ChangedAt::from).collect())
            .unwrap_or_default(),
    })
}
