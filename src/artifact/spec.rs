//! [`ArtifactSpec`], what [`write_artifact`](super::write_artifact) is asked to write, and
//! [`WrittenArtifact`], what it reports back.

use std::{collections::BTreeMap, path::PathBuf, time::SystemTime};

use serde_json::Value;

use super::{MlModel, Provenance, SnapshotPlan};
use crate::{chain::ChainEntry, config::ChainConfig, prompt::PromptSet};

/// What to write: the chain as compiled, its config and prompts, examples, ids and provenance.
///
/// Build it with [`ArtifactSpec::new`] and the `with_*` methods.
#[derive(Debug, Clone)]
pub struct ArtifactSpec<'a> {
    pub(super) chain: &'a ChainEntry,
    pub(super) config: &'a ChainConfig,
    pub(super) prompts: &'a PromptSet,
    pub(super) prompt_uris: BTreeMap<&'a str, &'a str>,
    pub(super) input_example: Option<&'a Value>,
    pub(super) output_example: Option<&'a Value>,
    pub(super) cassettes: Option<&'a BTreeMap<String, Vec<u8>>>,
    pub(super) model_id: &'a str,
    pub(super) run_id: Option<&'a str>,
    pub(super) artifact_uri: Option<&'a str>,
    pub(super) snapshot: Option<&'a SnapshotPlan>,
    pub(super) provenance: &'a Provenance,
    pub(super) created: SystemTime,
}

impl<'a> ArtifactSpec<'a> {
    /// A spec for `chain` with its config and prompts, logged as LoggedModel `model_id`,
    /// created now, without examples, run, artifact URI or crate snapshot.
    pub fn new(
        chain: &'a ChainEntry,
        config: &'a ChainConfig,
        prompts: &'a PromptSet,
        model_id: &'a str,
        provenance: &'a Provenance,
    ) -> Self {
        Self {
            chain,
            config,
            prompts,
            prompt_uris: BTreeMap::new(),
            input_example: None,
            output_example: None,
            cassettes: None,
            model_id,
            run_id: None,
            artifact_uri: None,
            snapshot: None,
            provenance,
            created: SystemTime::now(),
        }
    }

    /// The run that logs the model (`run_id`).
    #[must_use]
    pub fn with_run_id(mut self, run_id: &'a str) -> Self {
        self.run_id = Some(run_id);
        self
    }

    /// The LoggedModel's artifact URI (`artifact_path`), written as given: pass the store's
    /// `mlflow-artifacts:/…` or relative form, not a local absolute path.
    #[must_use]
    pub fn with_artifact_uri(mut self, uri: &'a str) -> Self {
        self.artifact_uri = Some(uri);
        self
    }

    /// The snapshot of the crate that compiled the chain
    /// ([`SnapshotPlan::collect`]): its files go under `code/`.
    #[must_use]
    pub fn with_snapshot(mut self, plan: &'a SnapshotPlan) -> Self {
        self.snapshot = Some(plan);
        self
    }

    /// The input example (`input_example.json`, `serving_input_example.json`).
    #[must_use]
    pub fn with_input_example(mut self, example: &'a Value) -> Self {
        self.input_example = Some(example);
        self
    }

    /// The output example (`output_example.json`).
    #[must_use]
    pub fn with_output_example(mut self, example: &'a Value) -> Self {
        self.output_example = Some(example);
        self
    }

    /// The files of `cassettes/` (name → bytes, names plain: no folders): the recorded LLM
    /// exchanges of the examples and their cases file, for `replay`
    /// ([`record_cases`](crate::replay::record_cases)).
    #[must_use]
    pub fn with_cassettes(mut self, files: &'a BTreeMap<String, Vec<u8>>) -> Self {
        self.cassettes = Some(files);
        self
    }

    /// Marks prompt `name` as coming from MLflow's Prompt Registry at `uri`
    /// (`prompts:/name/version`).
    #[must_use]
    pub fn with_prompt_uri(mut self, name: &'a str, uri: &'a str) -> Self {
        self.prompt_uris.insert(name, uri);
        self
    }

    /// When the model was created (`utc_time_created`); now by default.
    #[must_use]
    pub fn with_created(mut self, created: SystemTime) -> Self {
        self.created = created;
        self
    }
}

/// What [`write_artifact`](super::write_artifact) wrote.
#[derive(Debug, Clone)]
pub struct WrittenArtifact {
    /// Every file, relative to the artifact directory, sorted (`MLmodel` included).
    pub files: Vec<PathBuf>,
    /// Their total size in bytes.
    pub total_bytes: u64,
    /// The MLmodel written.
    pub mlmodel: MlModel,
    /// The artifact digest: the SHA-256 of the MLmodel's bytes, lowercase hex
    /// ([`LoadedArtifact::digest`](super::LoadedArtifact::digest) when read back).
    pub digest: String,
}

impl WrittenArtifact {
    /// The run tags that record the artifact's provenance and hashes
    /// ([`ChainlogFlavor::run_tags`](super::ChainlogFlavor::run_tags)).
    pub fn run_tags(&self) -> Vec<(String, String)> {
        self.mlmodel.flavors.chainlog.run_tags()
    }
}
