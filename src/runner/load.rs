//! Loading a logged model for `predict` and `serve`: model URI → store → local copy (cached)
//! → verified artifact → this binary's chain, rebuilt with the artifact's config and prompts,
//! MLflow's load-time config overrides applied.
//!
//! Through a store URI, only what the command uses is fetched ([`Needs`]: `predict`/`serve`
//! in this binary, `replay`, or everything for `--build cargo` and `--verify-key`), the
//! MLmodel first; a local directory is used whole.
//!
//! Verification, in order, before anything of the artifact is used ([`Integrity`]):
//! 1. Through a store URI, the downloaded MLmodel's SHA-256 against the digest the store
//!    recorded on the LoggedModel at log time (`chainlog.artifact_digest`); a model logged by
//!    an older chainlog has no record and loads with a warning that it is unbound. A local
//!    directory has no record: its digest is printed (stderr), and `--expect-digest` pins it.
//! 2. The MLmodel lists every file present and every file used has the hash it lists
//!    ([`LoadedArtifact::verify_for`]; [`LoadedArtifact::verify`], every file, for a local
//!    directory and before the artifact's own code is compiled).
//! 3. With `--verify-key`, the OpenSSF Model Signing signature `model.sig`
//!    ([`verify_model`]).

use super::{
    RebuildError, Rebuilt,
    compile::{BuildMode, CompileError, CompileOptions, CompiledModel, compile_snapshot},
    endpoint::Endpoint,
    rebuild::{holds_logged_chain, rebuild_verified},
};
use crate::{
    artifact::{
        ARTIFACT_DIGEST_TAG, ArtifactError, LoadedArtifact, MLMODEL_FILE, Needs, VerifyingKey,
        verify_model,
    },
    chain::ChainRegistry,
    store::{
        FetchedModel, ModelUri, StoreError, TrackingStore, TrackingUri, default_cache_dir,
        discard_entry, fetch_all, fetch_files, open_model, open_store,
    },
};

/// What a model must pass beyond its own hashes: a pinned digest and a signature.
#[derive(Debug, Clone, Default)]
pub struct Integrity {
    /// `--expect-digest`: the SHA-256 the MLmodel must have (hex, `sha256:` prefix allowed).
    pub expect_digest: Option<String>,
    /// `--verify-key`: the public key `model.sig` must verify with.
    pub verify_key: Option<VerifyingKey>,
}

/// Why a logged model could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The URI does not resolve, or the store cannot be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// One of MLflow's override variables is not a JSON object.
    #[error("{name} must be a JSON object of config values ({reason})")]
    OverrideVar {
        /// The variable.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The model's own code could not be compiled.
    #[error("failed to load model `{uri}`")]
    Compile {
        /// The model URI as given.
        uri: String,
        /// Why.
        #[source]
        source: CompileError,
    },
    /// The artifact or its chain was refused.
    #[error("failed to load model `{uri}`")]
    Rebuild {
        /// The model URI as given.
        uri: String,
        /// Why.
        #[source]
        source: RebuildError,
    },
}

/// Where a logged model's code runs: in this binary, or in a binary compiled from the
/// artifact's own code that the command is handed over to.
#[derive(Debug)]
pub enum ModelCode {
    /// This binary holds the chain with the logged code hash: rebuild it here with
    /// [`rebuild_model`].
    ThisBinary(Box<LoadedArtifact>),
    /// The artifact's code, compiled (or taken from the build cache).
    Compiled(CompiledModel),
}

/// Fetches and rebuilds the model `uri` names; `overrides_from_flags` are `--set` assignments,
/// applied after MLflow's override variables ([`CONFIG_OVERRIDE_VARS`]).
///
/// # Errors
///
/// A URI that does not resolve, a store that cannot be reached, a bad override variable, a
/// tampered artifact, or a chain this binary does not have in the logged version.
pub async fn load_model<'r>(
    registry: &'r ChainRegistry,
    uri: &str,
    tracking: &TrackingUri,
    overrides_from_flags: &[String],
    endpoint: &Endpoint,
    integrity: &Integrity,
) -> Result<Rebuilt<'r>, LoadError> {
    let verified = fetch_verified(uri, tracking, integrity, Needs::Run).await?;
    rebuild_model(
        registry,
        uri,
        verified.artifact,
        overrides_from_flags,
        endpoint,
    )
}

/// Fetches and verifies the model `uri` names and decides where its code runs, by `mode`:
/// `Local` is this binary; `Cargo` compiles the artifact's own crate snapshot; `Auto` is
/// `Local` when this binary holds the chain with the logged code hash and `Cargo` otherwise.
/// A model from a store is fetched as far as `needs` says when this binary runs it, and whole
/// when its code is compiled. Every hash of what is used is verified before anything is built.
/// Compiling blocks the calling thread (`block_in_place`: call it on a multi-threaded runtime).
///
/// # Errors
///
/// A URI that does not resolve, a store that cannot be reached, a tampered artifact,
/// [`LoadError::Compile`] when the snapshot cannot be compiled.
pub async fn locate_model_code(
    registry: &ChainRegistry,
    uri: &str,
    tracking: &TrackingUri,
    mode: BuildMode,
    compile: &CompileOptions,
    integrity: &Integrity,
    needs: Needs,
) -> Result<ModelCode, LoadError> {
    let verified = fetch_verified(uri, tracking, integrity, needs).await?;
    let here = match mode {
        BuildMode::Local => true,
        BuildMode::Cargo => false,
        BuildMode::Auto => holds_logged_chain(registry, &verified.artifact),
    };
    if here {
        return Ok(ModelCode::ThisBinary(Box::new(verified.artifact)));
    }
    // The artifact's own code is built: it needs the crate snapshot, fetched and verified now.
    let artifact = verified.complete(uri).await?;
    let compiled =
        tokio::task::block_in_place(|| compile_snapshot(&artifact, compile)).map_err(|source| {
            LoadError::Compile {
                uri: uri.to_owned(),
                source,
            }
        })?;
    Ok(ModelCode::Compiled(compiled))
}

/// A model's files, fetched (cached) as far as `needs` says and verified.
struct Verified {
    artifact: LoadedArtifact,
    needs: Needs,
    /// Where more of the model comes from: the store and the cache entry (`None` for a local
    /// directory, which is verified whole).
    source: Option<(std::sync::Arc<dyn TrackingStore>, FetchedModel)>,
}

impl Verified {
    /// The artifact with every file fetched and verified (the crate snapshot included).
    async fn complete(self, uri: &str) -> Result<LoadedArtifact, LoadError> {
        let Some((store, fetched)) = self.source.filter(|_| self.needs != Needs::Everything) else {
            return Ok(self.artifact);
        };
        fetch_all(store.as_ref(), &fetched).await?;
        self.artifact
            .verify_for(Needs::Everything)
            .map_err(|source| refused(uri, Some(&fetched.dir), source))?;
        Ok(self.artifact)
    }
}

/// Where a digest given with `--expect-digest` comes from, as a mismatch names it.
const PINNED_BY_FLAG: &str = "pinned by --expect-digest";

/// The refusal of the model `uri` for `source`. A cached copy (`cached`) that fails its checks
/// is discarded, so a store put right is fetched again instead of the bad copy being refused
/// forever — not when what failed is the caller's own pin or signing key, which says nothing
/// against the copy.
fn refused(uri: &str, cached: Option<&std::path::Path>, source: ArtifactError) -> LoadError {
    let callers_pin = matches!(
        &source,
        ArtifactError::DigestMismatch { origin, .. } if *origin == PINNED_BY_FLAG
    );
    if let Some(dir) = cached
        && !callers_pin
        && !matches!(source, ArtifactError::Signature(_))
    {
        match discard_entry(dir) {
            Ok(()) => eprintln!(
                "note: the cached copy `{}` failed its checks and was discarded; the next \
                 load fetches the model again",
                dir.display()
            ),
            Err(err) => eprintln!(
                "warning: the cached copy `{}` failed its checks and could not be removed \
                 ({err}); delete it by hand",
                dir.display()
            ),
        }
    }
    LoadError::Rebuild {
        uri: uri.to_owned(),
        source: RebuildError::Artifact(source),
    }
}

/// The model's files, fetched (cached) and verified: the store's digest record (or
/// `--expect-digest`), every hash MLmodel records of what `needs` uses, and with
/// `--verify-key` the signature (which covers every file, so all are fetched).
///
/// From a store, the MLmodel is fetched first and checked against the store's digest record
/// before anything of it is read; the files `needs` uses are then fetched by the names and
/// checked against the hashes that verified MLmodel lists. A local directory is verified
/// whole.
async fn fetch_verified(
    uri: &str,
    tracking: &TrackingUri,
    integrity: &Integrity,
    needs: Needs,
) -> Result<Verified, LoadError> {
    let model_uri = ModelUri::parse(uri)?;
    let (fetched, store) = match &model_uri {
        ModelUri::LocalDir { path } => (
            FetchedModel {
                dir: path.clone(),
                tags: None,
                model: None,
            },
            None,
        ),
        _ => {
            // Reading never creates a store: a missing database file is a wrong URI or folder.
            // (A `models:/<model_id>` may still be served from the model cache.)
            if let Some(missing) = tracking.missing_database()
                && !matches!(model_uri, ModelUri::ModelId { .. })
            {
                return Err(LoadError::Store(missing));
            }
            let store = open_store(tracking)?;
            let fetched = open_model(store.as_ref(), &model_uri, &default_cache_dir()?).await?;
            fetch_files(store.as_ref(), &fetched, &[MLMODEL_FILE.to_owned()]).await?;
            (fetched, Some(store))
        }
    };
    let needs = if store.is_some() && integrity.verify_key.is_none() {
        needs
    } else {
        Needs::Everything
    };
    let cached = store.as_ref().map(|_| fetched.dir.as_path());
    let refused = |source| refused(uri, cached, source);
    let dir = &fetched.dir;
    let pinned = integrity.expect_digest.as_deref().map(|expected| {
        let expected = expected.trim();
        expected.strip_prefix("sha256:").unwrap_or(expected)
    });
    let artifact = match &fetched.tags {
        Some(tags) => match tags.iter().find(|(key, _)| key == ARTIFACT_DIGEST_TAG) {
            Some((_, recorded)) => {
                LoadedArtifact::read_pinned(dir, recorded, "recorded in the tracking store")
            }
            None => {
                eprintln!(
                    "warning: model `{uri}` is unbound: its LoggedModel has no {ARTIFACT_DIGEST_TAG} \
                     (logged by an older chainlog), so only its own MLmodel vouches for its files; \
                     log it again to bind it"
                );
                LoadedArtifact::read(dir)
            }
        },
        None => match pinned {
            Some(expected) => {
                LoadedArtifact::read_pinned(dir, expected, PINNED_BY_FLAG)
            }
            None => LoadedArtifact::read(dir),
        },
    }
    .map_err(refused)?;
    if let Some(expected) = pinned
        && !artifact.digest().eq_ignore_ascii_case(expected)
    {
        return Err(refused(ArtifactError::DigestMismatch {
            path: dir.join(crate::artifact::MLMODEL_FILE),
            origin: PINNED_BY_FLAG,
            expected: expected.to_ascii_lowercase(),
            actual: artifact.digest().to_owned(),
        }));
    }
    if let Some(store) = &store {
        // Only what the verified MLmodel lists, by its names.
        match needs {
            Needs::Everything => fetch_all(store.as_ref(), &fetched).await?,
            _ => fetch_files(store.as_ref(), &fetched, &artifact.files_for(needs)).await?,
        }
    }
    artifact.verify_for(needs).map_err(refused)?;
    if fetched.tags.is_none() && pinned.is_none() {
        eprintln!(
            "model `{uri}`: artifact digest sha256:{} (a local directory has no store record; \
             pin it with --expect-digest)",
            artifact.digest()
        );
    }
    if let Some(key) = &integrity.verify_key {
        verify_model(dir, key).map_err(refused)?;
    }
    Ok(Verified {
        artifact,
        needs,
        source: store.map(|store| (store, fetched)),
    })
}

/// Rebuilds a verified artifact's chain in this binary with MLflow's override variables and
/// then `overrides_from_flags` applied to the logged config.
///
/// # Errors
///
/// A bad override variable, or [`LoadError::Rebuild`].
pub fn rebuild_model<'r>(
    registry: &'r ChainRegistry,
    uri: &str,
    artifact: LoadedArtifact,
    overrides_from_flags: &[String],
    endpoint: &Endpoint,
) -> Result<Rebuilt<'r>, LoadError> {
    let mut overrides = env_overrides()?;
    overrides.extend_from_slice(overrides_from_flags);
    rebuild_verified(registry, artifact, &overrides, endpoint.env.clone()).map_err(|source| {
        LoadError::Rebuild {
            uri: uri.to_owned(),
            source,
        }
    })
}

/// The environment variables through which MLflow overrides a logged config at load time
/// (`mlflow.pyfunc.load_model` and `mlflow models serve`): a JSON object of values for keys
/// the logged config has. Flags (`--set`) apply after them.
pub const CONFIG_OVERRIDE_VARS: [&str; 2] =
    ["MLFLOW_PYFUNC_INFERENCE_CONFIG", "SERVING_MODEL_CONFIG"];

/// `--set`-style assignments from [`CONFIG_OVERRIDE_VARS`].
fn env_overrides() -> Result<Vec<String>, LoadError> {
    let mut assignments = Vec::new();
    for name in CONFIG_OVERRIDE_VARS {
        let Ok(text) = std::env::var(name) else {
            continue;
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|err| LoadError::OverrideVar {
                name,
                reason: err.to_string(),
            })?;
        let Some(object) = value.as_object() else {
            return Err(LoadError::OverrideVar {
                name,
                reason: "not an object".to_owned(),
            });
        };
        flatten(object, "", &mut assignments);
    }
    Ok(assignments)
}

/// `{"llm": {"temperature": 0.5}}` → `llm.temperature=0.5`.
fn flatten(
    object: &serde_json::Map<String, serde_json::Value>,
    prefix: &str,
    out: &mut Vec<String>,
) {
    for (key, value) in object {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            serde_json::Value::Object(inner) => flatten(inner, &path, out),
            serde_json::Value::String(text) => out.push(format!("{path}={text}")),
            other => out.push(format!("{path}={other}")),
        }
    }
}
