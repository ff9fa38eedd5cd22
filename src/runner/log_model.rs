//! `log`: a chain from this binary → an MLflow run and LoggedModel holding its code, prompts,
//! config (references only), examples, signature and provenance.
//!
//! The protocol is MLflow's own (DESIGN.md, MLFLOW.md §3): experiment → run (RUNNING) →
//! logged model (PENDING) → run output link → artifacts (signed with `--sign-key`) → params
//! and tags → the artifact digest as a model tag (`chainlog.artifact_digest`, also on the run)
//! → model READY → registered version → alias → run FINISHED. Anything failing after the run
//! exists marks the model UPLOAD_FAILED and the run FAILED before the error is returned, so
//! nothing half-written ever looks finished. Everything that can be refused (an unknown chain, a literal secret, an
//! input example that does not fit or does not run) is refused before the store is touched.
//!
//! The input example and the `--examples` inputs run once each with their LLM exchanges
//! recorded ([`record_cases`]); the cassettes and the cases file go under the artifact's
//! `cassettes/` for `replay`, the input example's output is the output example.

use std::{
    path::Path,
    sync::Arc,
    time::{Instant, SystemTime},
};

use serde::Serialize;
use serde_json::Value;

use super::build::uses_prompt_registry;
use crate::{
    artifact::{
        ARTIFACT_DIGEST_TAG, ArtifactError, ArtifactSpec, Provenance, SigningKey, SnapshotPlan,
        sign_model, write_artifact,
    },
    chain::{ChainEntry, ChainError, EnvReader, prompt_entries},
    config::{ChainConfig, ConfigError},
    prompt::{PromptError, PromptSet, PromptTemplate, Role},
    replay::{RecordedCases, ReplayError, record_cases},
    store::{
        LoggedModel, ModelStatus, PromptVersion, RunInfo, RunStatus, StoreError, TrackingStore,
        validate::{self, KeyKind},
    },
};

/// What to log.
pub struct LogRequest<'a> {
    /// The chain, as compiled into this binary.
    pub chain: &'a ChainEntry,
    /// Its config (already loaded, `--set` applied, literal secrets refused).
    pub config: &'a ChainConfig,
    /// The folder the config's prompt paths are relative to.
    pub prompts_dir: &'a Path,
    /// The crate whose snapshot goes under `code/`, when known.
    pub crate_dir: Option<&'a Path>,
    /// Also put the sources of every registry and git dependency in the snapshot
    /// (`code/cargo-vendor/`), so `--build cargo` needs no registry; needs `crate_dir`.
    pub vendor: bool,
    /// The experiment's name.
    pub experiment: &'a str,
    /// The run's name; `<chain>-<unix seconds>` when absent.
    pub run_name: Option<&'a str>,
    /// Register the model under this name...
    pub registered_model: Option<&'a str>,
    /// ...and point this alias at the new version.
    pub alias: Option<&'a str>,
    /// An input example: checked against the schema and (unless `validate` is off) run once,
    /// its LLM exchanges recorded for `replay` (case 0).
    pub input_example: Option<&'a Value>,
    /// More inputs (`log --examples`): each checked, run once and recorded with its output
    /// (cases 1.., or 0.. without an input example), a small regression set for `replay`.
    pub examples: &'a [Value],
    /// Run the input example against the configured endpoint before logging.
    pub validate: bool,
    /// The environment the chain reads (the endpoint's, possibly the built-in mock's).
    pub env: EnvReader,
    /// Sign the artifact with this key (`model.sig`, OpenSSF Model Signing).
    pub sign_key: Option<&'a SigningKey>,
}

impl std::fmt::Debug for LogRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogRequest")
            .field("chain", &self.chain.name())
            .field("experiment", &self.experiment)
            .field("registered_model", &self.registered_model)
            .field("vendor", &self.vendor)
            .field("signed", &self.sign_key.is_some())
            .finish_non_exhaustive()
    }
}

/// What was logged.
#[derive(Debug, Clone, Serialize)]
pub struct Logged {
    /// The experiment.
    pub experiment_id: String,
    /// The run.
    pub run_id: String,
    /// The LoggedModel.
    pub model_id: String,
    /// `models:/<model_id>`.
    pub model_uri: String,
    /// Where the artifacts are.
    pub artifact_uri: String,
    /// The registered model version, when one was made.
    pub registered_version: Option<String>,
    /// The artifact digest (SHA-256 of the MLmodel), recorded on the run and the LoggedModel
    /// as `chainlog.artifact_digest`.
    pub artifact_digest: String,
    /// Whether `model.sig` was written (`--sign-key`).
    pub signed: bool,
    /// The output of the input example's run, when it ran.
    pub output_example: Option<Value>,
    /// How many cases were recorded under `cassettes/` for `replay`.
    pub replay_cases: usize,
}

/// Why logging failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The chain refused (bad input example, failed run, bad config section).
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The config is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A prompt could not be loaded.
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// The store refused or could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The artifact could not be written.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// The examples' LLM exchanges could not be recorded.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// An example of `--examples` does not fit the chain's input.
    #[error("example {number} of --examples does not fit the chain's input")]
    Example {
        /// Its number, from 1 (its line among the non-empty lines).
        number: usize,
        /// Why.
        #[source]
        source: ChainError,
    },
    /// `--vendor` without a crate snapshot to put the sources in.
    #[error(
        "cannot vendor the dependencies of chain `{chain}`: no crate holding its source was found, so the model carries no crate snapshot (run `log` from the crate's folder or pass --project)"
    )]
    VendorWithoutSnapshot {
        /// The chain.
        chain: String,
    },
    /// A temporary folder could not be made.
    #[error("failed to create a temporary folder for the artifact")]
    TempDir(#[source] std::io::Error),
    /// A step failed after the run was created; says what was left in the store.
    #[error("{source}\n  left in the store: {left}")]
    Incomplete {
        /// The run, the logged model and the registered version, and their states.
        left: String,
        /// What failed.
        #[source]
        source: Box<LogError>,
    },
}

/// A prompt a config takes from MLflow's Prompt Registry, as resolved at load time.
#[derive(Debug, Clone)]
pub struct RegistryPrompt {
    /// The prompt's name in the chain's config.
    pub name: String,
    /// The URI the config gives (`prompts:/summarize@champion`).
    pub uri: String,
    /// The registry version it resolved to.
    pub version: PromptVersion,
}

/// The prompts a config names: files under `prompts_dir`, or `prompts:/name/version` and
/// `prompts:/name@alias` URIs loaded from the store's Prompt Registry. Returns the set and the
/// registry prompts it used.
///
/// # Errors
///
/// A prompt file that cannot be loaded, or a registry prompt that does not exist.
pub async fn load_prompts(
    config: &ChainConfig,
    prompts_dir: &Path,
    store: Option<&dyn TrackingStore>,
) -> Result<(PromptSet, Vec<RegistryPrompt>), LogError> {
    let (registry, files): (Vec<_>, Vec<_>) = prompt_entries(config)
        .into_iter()
        .partition(|(_, path)| path.starts_with("prompts:/"));
    let mut set = PromptSet::load(prompts_dir, &files.into_iter().collect())?;
    let mut uris = Vec::new();
    for (name, uri) in registry {
        let store = store.ok_or_else(|| StoreError::NotFound {
            what: format!("a tracking store to load `{uri}` from"),
        })?;
        let (template, version) = registry_prompt(store, &name, &uri).await?;
        set.insert(name.clone(), template);
        uris.push(RegistryPrompt { name, uri, version });
    }
    Ok((set, uris))
}

/// MLflow's `mlflow.linkedPrompts` tag value for `prompts` (as `update_linked_prompts_tag`
/// writes it: a JSON list of `{"name", "version"}`, Python's separators), or none.
fn linked_prompts_tag(prompts: &[RegistryPrompt]) -> Option<(String, String)> {
    let mut entries: Vec<serde_json::Value> = Vec::new();
    for prompt in prompts {
        let entry = serde_json::json!({
            "name": prompt.version.name,
            "version": prompt.version.version,
        });
        if !entries.contains(&entry) {
            entries.push(entry);
        }
    }
    if entries.is_empty() {
        return None;
    }
    let value = crate::pyjson::dumps(&entries).ok()?;
    Some(("mlflow.linkedPrompts".to_owned(), value))
}

/// One prompt from the registry, as a template, with the version it resolved to.
async fn registry_prompt(
    store: &dyn TrackingStore,
    name: &str,
    uri: &str,
) -> Result<(PromptTemplate, PromptVersion), LogError> {
    let rest = uri.trim_start_matches("prompts:/");
    let (prompt, version) = match rest.split_once('@') {
        Some((prompt, alias)) => (prompt, format!("@{alias}")),
        None => match rest.rsplit_once('/') {
            Some((prompt, version)) => (prompt, version.to_owned()),
            None => (rest, "@latest".to_owned()),
        },
    };
    let found = store.load_prompt(prompt, &version).await?;
    let template = if found.kind == "chat" {
        let messages: Vec<crate::prompt::RenderedMessage> =
            serde_json::from_str(&found.template).map_err(|err| StoreError::NotFound {
                what: format!("a chat template in `{uri}` ({err})"),
            })?;
        PromptTemplate::chat(
            name,
            messages
                .into_iter()
                .map(|m| (m.role, m.content))
                .collect::<Vec<(Role, String)>>(),
        )?
    } else {
        PromptTemplate::text(name, &found.template)?
    };
    Ok((template, found))
}

/// Logs `request` to the store `open_store` opens.
///
/// # Errors
///
/// See [`LogError`]; when the store was already written to, the run is FAILED and the model
/// UPLOAD_FAILED before this returns.
pub async fn log_chain(
    open_store: &dyn Fn() -> Result<Arc<dyn TrackingStore>, StoreError>,
    request: &LogRequest<'_>,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<Logged, LogError> {
    let entry = request.chain;
    // Every name and value the store would refuse is refused before anything is written.
    validate::names_to_log(
        request.experiment,
        entry.name(),
        request.registered_model,
        request.alias,
    )?;
    let params = validate::fitted_pairs(
        "runs/log-batch",
        KeyKind::Param,
        &request.config.flatten("/"),
    )?;
    // The store is opened (a SQLite file created) only once nothing else can be refused —
    // unless the config names registered prompts, which live in the store.
    let early_store = if uses_prompt_registry(request.config) {
        Some(open_store()?)
    } else {
        None
    };
    let (prompts, prompt_uris) =
        load_prompts(request.config, request.prompts_dir, early_store.as_deref()).await?;
    // Refuse everything refusable before the store is touched.
    if let Some(example) = request.input_example {
        entry.check_input(example)?;
    }
    for (number, example) in request.examples.iter().enumerate() {
        entry
            .check_input(example)
            .map_err(|source| LogError::Example {
                number: number + 1,
                source,
            })?;
    }
    // Every case runs once, its LLM exchanges recorded for `replay`.
    let inputs: Vec<Value> = request
        .input_example
        .into_iter()
        .chain(request.examples)
        .cloned()
        .collect();
    let recorded = if request.validate && !inputs.is_empty() {
        Some(record_cases(entry, request.config, &prompts, &request.env, &inputs).await?)
    } else {
        None
    };
    let output_example = match (&recorded, request.input_example) {
        (Some(recorded), Some(_)) => recorded.outputs.first().cloned(),
        _ => None,
    };
    // The crate snapshot is planned (and refused: a missing or symlinked path dependency,
    // two vendored packages of one name) before the store is touched.
    let (provenance, mut snapshot) = match request.crate_dir {
        Some(dir) => (Provenance::collect(dir)?, Some(SnapshotPlan::collect(dir)?)),
        None => (Provenance::of_binary(), None),
    };
    if request.vendor {
        let plan = snapshot
            .as_mut()
            .ok_or_else(|| LogError::VendorWithoutSnapshot {
                chain: entry.name().to_owned(),
            })?;
        vendor_sources(plan)?;
    }

    let store = match early_store {
        Some(store) => store,
        None => open_store()?,
    };
    let store = store.as_ref();
    let experiment = store.get_or_create_experiment(request.experiment).await?;
    // A direct artifact store without credentials is refused before the run exists.
    store.check_artifact_location(&experiment)?;
    let now = unix_ms();
    let run_name = request
        .run_name
        .map_or_else(|| format!("{}-{}", entry.name(), now / 1000), str::to_owned);
    let mut tags = vec![
        ("mlflow.user".to_owned(), user_name()),
        (
            "mlflow.source.name".to_owned(),
            entry.source_path().to_owned(),
        ),
        ("mlflow.source.type".to_owned(), "LOCAL".to_owned()),
    ];
    tags.extend(provenance.run_tags());
    tags.extend(linked_prompts_tag(&prompt_uris));
    let tags = validate::fitted_pairs("runs/create", KeyKind::Tag, &tags)?;
    let run = store
        .create_run(&experiment.id, &run_name, now, &tags)
        .await?;
    let mut left = LeftBehind::default();
    let result = log_into_run(
        store,
        request,
        &prompts,
        &prompt_uris,
        &provenance,
        snapshot.as_ref(),
        &run,
        &params,
        &tags,
        &mut left,
        output_example.as_ref(),
        recorded.as_ref(),
        progress,
    )
    .await;
    match result {
        Ok(registered_version) => {
            store
                .set_run_status(&run.run_id, RunStatus::Finished, unix_ms())
                .await?;
            let model = left.model.ok_or_else(|| StoreError::NotFound {
                what: "the logged model".to_owned(),
            })?;
            Ok(Logged {
                experiment_id: experiment.id,
                run_id: run.run_id,
                model_uri: format!("models:/{}", model.model_id),
                model_id: model.model_id,
                artifact_uri: model.artifact_uri,
                registered_version,
                artifact_digest: left.digest,
                signed: request.sign_key.is_some(),
                output_example,
                replay_cases: recorded.as_ref().map_or(0, |r| r.outputs.len()),
            })
        }
        Err(error) => {
            // Best effort: the first error is the one to report, with what it left behind.
            let mut states = Vec::new();
            if let Some(model) = &left.model {
                let marked = store
                    .finalize_logged_model(&model.model_id, ModelStatus::UploadFailed)
                    .await;
                states.push(format!(
                    "logged model `{}` {}",
                    model.model_id,
                    if marked.is_ok() {
                        "marked UPLOAD_FAILED"
                    } else {
                        "left PENDING (the store could not be told it failed)"
                    }
                ));
            }
            let marked = store
                .set_run_status(&run.run_id, RunStatus::Failed, unix_ms())
                .await;
            states.insert(
                0,
                format!(
                    "run `{}` {}",
                    run.run_id,
                    if marked.is_ok() {
                        "marked FAILED"
                    } else {
                        "left RUNNING (the store could not be told it failed)"
                    }
                ),
            );
            if let Some(note) = left.version_note {
                states.push(note);
            }
            let stranded = states.iter().any(|s| s.contains("could not be told"));
            if stranded {
                states.push(
                    "they are never loaded; `chainlog gc` ends them once the store is back"
                        .to_owned(),
                );
            }
            Err(LogError::Incomplete {
                left: states.join("; "),
                source: Box::new(error),
            })
        }
    }
}

/// What a failed log leaves in the store, for its error message.
#[derive(Debug, Default)]
struct LeftBehind {
    /// The logged model, once created.
    model: Option<LoggedModel>,
    /// What became of a registered version when a later step failed.
    version_note: Option<String>,
    /// The artifact's digest, once recorded.
    digest: String,
}

/// `--vendor`: adds the registry and git dependencies' sources to `plan`, with a line on
/// stderr before and after (it takes seconds).
fn vendor_sources(plan: &mut SnapshotPlan) -> Result<(), LogError> {
    let started = Instant::now();
    eprintln!("vendoring {} crates…", plan.external_packages());
    let before = plan.len();
    let crates = plan.vendor_registry_sources()?;
    eprintln!(
        "vendored {crates} crates ({} files) in {:.1}s",
        plan.len().saturating_sub(before),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The steps inside a created run; any error here fails the run.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the steps share these"
)]
async fn log_into_run(
    store: &dyn TrackingStore,
    request: &LogRequest<'_>,
    prompts: &PromptSet,
    prompt_uris: &[RegistryPrompt],
    provenance: &Provenance,
    snapshot: Option<&SnapshotPlan>,
    run: &RunInfo,
    params: &[(String, String)],
    tags: &[(String, String)],
    left: &mut LeftBehind,
    output_example: Option<&Value>,
    recorded: Option<&RecordedCases>,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<Option<String>, LogError> {
    let entry = request.chain;
    // The model carries the run's params and its user and source tags, as MLflow's own
    // `log_model` writes them (the UI's Parameters, "Created by" and "Logged from").
    let model = store
        .create_logged_model(&run.experiment_id, entry.name(), &run.run_id, params, tags)
        .await?;
    left.model = Some(model.clone());
    store
        .link_run_output(&run.run_id, &model.model_id, 0)
        .await?;

    let staging = tempfile::tempdir().map_err(LogError::TempDir)?;
    let dir = staging.path().join("artifacts");
    let artifact_path = portable_artifact_uri(&model);
    let mut spec = ArtifactSpec::new(entry, request.config, prompts, &model.model_id, provenance)
        .with_run_id(&run.run_id)
        .with_artifact_uri(&artifact_path);
    if let Some(plan) = snapshot {
        spec = spec.with_snapshot(plan);
    }
    if let Some(example) = request.input_example {
        spec = spec.with_input_example(example);
    }
    if let Some(output) = output_example {
        spec = spec.with_output_example(output);
    }
    if let Some(recorded) = recorded {
        spec = spec.with_cassettes(&recorded.files);
    }
    for prompt in prompt_uris {
        spec = spec.with_prompt_uri(&prompt.name, &prompt.uri);
    }
    let written = write_artifact(&dir, &spec)?;
    if let Some(key) = request.sign_key {
        sign_model(&dir, key)?;
    }
    store.upload_model_artifacts(&model, &dir, progress).await?;
    // The digest binds the artifact to the tracking store: loading through the store checks
    // the downloaded MLmodel against the LoggedModel's record before anything else.
    let digest_tag = [(ARTIFACT_DIGEST_TAG.to_owned(), written.digest.clone())];
    let mut run_tags = written.run_tags();
    run_tags.extend_from_slice(&digest_tag);
    store.log_batch(&run.run_id, params, &run_tags).await?;
    store
        .set_logged_model_tags(&model.model_id, &digest_tag)
        .await?;
    left.digest.clone_from(&written.digest);
    store
        .finalize_logged_model(&model.model_id, ModelStatus::Ready)
        .await?;
    let Some(name) = request.registered_model else {
        return Ok(None);
    };
    let version = store
        .register_model_version(name, &model, &run.run_id)
        .await?;
    if let Some(alias) = request.alias
        && let Err(err) = store.set_alias(name, alias, &version).await
    {
        // A version must not stay pointing at a model whose logging failed.
        let deleted = store.delete_model_version(name, &version).await;
        left.version_note = Some(if deleted.is_ok() {
            format!("version {version} of registered model `{name}` deleted")
        } else {
            format!(
                "version {version} of registered model `{name}` left in place (delete it: it points at a failed model)"
            )
        });
        return Err(err.into());
    }
    Ok(Some(version))
}

/// The model's artifact location as MLmodel records it, without an absolute path of this
/// machine: a server's `mlflow-artifacts:/…` as is; a local store's path relative to the
/// working directory (`mlruns/0/models/<id>/artifacts`, where MLflow puts it), else the model
/// URI.
fn portable_artifact_uri(model: &LoggedModel) -> String {
    let local = model
        .artifact_uri
        .strip_prefix("file://")
        .unwrap_or(&model.artifact_uri);
    if !Path::new(local).is_absolute() {
        return model.artifact_uri.clone();
    }
    std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            Path::new(local)
                .strip_prefix(cwd)
                .ok()
                .map(Path::to_path_buf)
        })
        .and_then(|relative| relative.to_str().map(str::to_owned))
        .unwrap_or_else(|| format!("models:/{}", model.model_id))
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The user name MLflow records (`mlflow.user`), as Python's `getpass.getuser()` finds it:
/// the first of `LOGNAME`, `USER`, `LNAME`, `USERNAME` that is set, else the OS account of
/// this process.
fn user_name() -> String {
    ["LOGNAME", "USER", "LNAME", "USERNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .or_else(|| whoami::username().ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use serde::Deserialize;

    use super::*;
    use crate::chain::{BuildContext, Chain, RunContext};

    #[derive(Debug, Deserialize, schemars::JsonSchema)]
    struct In {}

    #[derive(Debug, Serialize, schemars::JsonSchema)]
    struct Out {}

    struct Noop;

    impl Chain for Noop {
        type Input = In;
        type Output = Out;

        async fn invoke(&self, _input: In, _ctx: &RunContext) -> Result<Out, ChainError> {
            Ok(Out {})
        }
    }

    fn build(_ctx: &BuildContext) -> Result<Noop, ChainError> {
        Ok(Noop)
    }

    /// A crate whose snapshot cannot be made (a path dependency that does not exist) is
    /// refused before the tracking store is even opened.
    #[tokio::test]
    async fn crate_with_a_missing_path_dependency_is_refused_before_the_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"app\"\n\n[dependencies]\ngone = { path = \"../gone\" }\n",
        )
        .unwrap();
        let entry = ChainEntry::new::<Noop>("noop", "Does nothing.", "chains/noop.rs", "", build);
        let config = ChainConfig::from_yaml("chain: {}\n", &dir.path().join("c.yaml")).unwrap();
        let request = LogRequest {
            chain: &entry,
            config: &config,
            prompts_dir: dir.path(),
            crate_dir: Some(dir.path()),
            vendor: false,
            experiment: "e",
            run_name: None,
            registered_model: None,
            alias: None,
            input_example: None,
            examples: &[],
            validate: false,
            env: Arc::new(|_: &str| None),
            sign_key: None,
        };
        let opened = AtomicBool::new(false);
        let open_store = || -> Result<Arc<dyn TrackingStore>, StoreError> {
            opened.store(true, Ordering::SeqCst);
            Err(StoreError::NotFound {
                what: "a store this test never opens".to_owned(),
            })
        };
        let err = log_chain(&open_store, &request, &|_, _| {})
            .await
            .unwrap_err();
        assert!(
            matches!(
                &err,
                LogError::Artifact(ArtifactError::MissingDependency { name, .. }) if name == "gone"
            ),
            "{err:?}"
        );
        assert!(!opened.load(Ordering::SeqCst), "the store was opened");
    }
}
