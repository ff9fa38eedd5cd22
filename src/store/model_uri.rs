//! Model URIs as MLflow spells them, and fetching the model one names into a local cache.
//!
//! Owns [`ModelUri`] (`runs:/<run_id>/<path>`, `models:/<model_id>`, `models:/<name>/<version>`,
//! `models:/<name>/latest`, `models:/<name>@<alias>`, a local directory), [`open_model`] (the
//! URI resolved to its READY logged model, its tags and its cache entry), [`fetch_files`] (some
//! files of it, by name), [`fetch_all`] and [`fetch_model`] (every file) and
//! [`default_cache_dir`]. Does not own what the files mean (`artifact`: which files a command
//! uses, and their checks) or how a store reads them (`sqlite`, `rest`).
//!
//! The cache is keyed by logged model id (`<cache_dir>/<model_id>/`): a logged
//! model's files never change, so a file, once fetched, is reused without asking the store. An
//! entry holds the files the commands that used the model asked for; [`fetch_all`] marks it
//! complete (`.<model_id>.complete` beside it) once it holds every file the store lists, and
//! only that mark makes it complete — removed with the entry when the entry is discarded
//! ([`discard_entry`]). Files are downloaded into a hidden sibling and renamed into place
//! (the whole folder for a new entry, else file by file), so a crash never leaves a
//! half-written file; a file lock per model (`.<model_id>.lock`) makes processes that fetch
//! the same files at once download them once — the others wait (woken when it is released)
//! and reuse them.

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use super::{LoggedModel, StoreError, TrackingStore};

/// The environment variable that sets the model cache directory.
pub const CACHE_DIR_VAR: &str = "CHAINLOG_CACHE_DIR";

/// What a model URI names.
///
/// # Examples
///
/// ```
/// use chainlog::store::ModelUri;
///
/// let uri = ModelUri::parse("models:/summarize@champion")?;
/// assert_eq!(uri, ModelUri::Alias { name: "summarize".into(), alias: "champion".into() });
/// assert_eq!(uri.to_string(), "models:/summarize@champion");
/// assert!(ModelUri::parse("s3://bucket/model").is_err());
/// # Ok::<(), chainlog::store::StoreError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelUri {
    /// `runs:/<run_id>/<path>`: the model run `run_id` produced named `path` (or its only one).
    Run {
        /// The run.
        run_id: String,
        /// The model's name within the run (may be empty).
        path: String,
    },
    /// `models:/<model_id>`: one logged model (`m-…`).
    ModelId {
        /// `m-` + hex.
        model_id: String,
    },
    /// `models:/<name>/<version>`: a registered model version.
    Version {
        /// The registered model.
        name: String,
        /// A positive integer.
        version: String,
    },
    /// `models:/<name>/latest`: the newest version of a registered model, as MLflow resolves it.
    Latest {
        /// The registered model.
        name: String,
    },
    /// `models:/<name>@<alias>`: the version an alias points at.
    Alias {
        /// The registered model.
        name: String,
        /// The alias.
        alias: String,
    },
    /// A local directory holding a model (`file://` prefix allowed).
    LocalDir {
        /// The directory.
        path: PathBuf,
    },
}

impl ModelUri {
    /// Parses a model URI; a plain path must be an existing directory.
    ///
    /// # Errors
    ///
    /// [`StoreError::BadModelUri`] naming the URI and what is wrong with it.
    pub fn parse(uri: &str) -> Result<Self, StoreError> {
        let uri = uri.trim();
        let bad = |reason: &str| StoreError::BadModelUri {
            uri: uri.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(rest) = uri.strip_prefix("runs:/") {
            let rest = rest.trim_start_matches('/');
            let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
            if run_id.is_empty() || !run_id.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(bad("expected runs:/<run_id>/<path>"));
            }
            return Ok(Self::Run {
                run_id: run_id.to_owned(),
                path: path.trim_matches('/').to_owned(),
            });
        }
        if let Some(rest) = uri.strip_prefix("models:/") {
            return parse_models(rest.trim_start_matches('/')).map_err(&bad);
        }
        let path = uri.strip_prefix("file://").unwrap_or(uri);
        let has_scheme = path
            .split_once(':')
            .is_some_and(|(scheme, _)| scheme.len() > 1 && !scheme.contains('/'));
        if path.is_empty() || has_scheme && !Path::new(path).exists() {
            return Err(bad(
                "use runs:/<run_id>/<path>, models:/<model_id>, models:/<name>/<version>, \
                 models:/<name>/latest, models:/<name>@<alias> or a local directory",
            ));
        }
        let path = PathBuf::from(path);
        if !path.is_dir() {
            return Err(bad("not a model URI, and no such local directory"));
        }
        Ok(Self::LocalDir { path })
    }
}

/// The part after `models:/`.
fn parse_models(rest: &str) -> Result<ModelUri, &'static str> {
    let valid_name = |name: &str| !name.is_empty() && !name.contains('/');
    if let Some((name, alias)) = rest.rsplit_once('@') {
        if !valid_name(name) || !valid_name(alias) {
            return Err("expected models:/<name>@<alias>");
        }
        return Ok(ModelUri::Alias {
            name: name.to_owned(),
            alias: alias.to_owned(),
        });
    }
    match rest.trim_end_matches('/').split_once('/') {
        None if rest.starts_with("m-") && rest.len() > 2 => Ok(ModelUri::ModelId {
            model_id: rest.trim_end_matches('/').to_owned(),
        }),
        None => Err(
            "expected models:/<model_id> (m-…), models:/<name>/<version> or models:/<name>@<alias>",
        ),
        Some((name, version)) => {
            if !valid_name(name) || version.is_empty() || version.contains('/') {
                return Err("expected models:/<name>/<version>");
            }
            if version.eq_ignore_ascii_case("latest") {
                return Ok(ModelUri::Latest {
                    name: name.to_owned(),
                });
            }
            match version.parse::<u64>() {
                Ok(n) if n > 0 => Ok(ModelUri::Version {
                    name: name.to_owned(),
                    version: n.to_string(),
                }),
                _ => Err(
                    "the version must be a positive integer or `latest` (stages are not supported; use models:/<name>@<alias>)",
                ),
            }
        }
    }
}

impl FromStr for ModelUri {
    type Err = StoreError;

    fn from_str(uri: &str) -> Result<Self, Self::Err> {
        Self::parse(uri)
    }
}

impl fmt::Display for ModelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Run { run_id, path } => write!(f, "runs:/{run_id}/{path}"),
            Self::ModelId { model_id } => write!(f, "models:/{model_id}"),
            Self::Version { name, version } => write!(f, "models:/{name}/{version}"),
            Self::Latest { name } => write!(f, "models:/{name}/latest"),
            Self::Alias { name, alias } => write!(f, "models:/{name}@{alias}"),
            Self::LocalDir { path } => write!(f, "{}", path.display()),
        }
    }
}

/// The model cache directory: `$CHAINLOG_CACHE_DIR`, else `$XDG_CACHE_HOME/chainlog/models`,
/// else `~/.cache/chainlog/models`.
///
/// # Errors
///
/// [`StoreError::Io`] when none of `CHAINLOG_CACHE_DIR`, `XDG_CACHE_HOME`, `HOME` is set.
pub fn default_cache_dir() -> Result<PathBuf, StoreError> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    cache_dir_from(var(CACHE_DIR_VAR), var("XDG_CACHE_HOME"), var("HOME")).ok_or_else(|| {
        StoreError::Io {
            action: "find",
            path: "the model cache directory".to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("set {CACHE_DIR_VAR} (neither XDG_CACHE_HOME nor HOME is set)"),
            ),
        }
    })
}

/// [`default_cache_dir`] from the variables' values.
fn cache_dir_from(
    chainlog: Option<std::ffi::OsString>,
    xdg: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    chainlog
        .map(PathBuf::from)
        .or_else(|| xdg.map(|x| PathBuf::from(x).join("chainlog/models")))
        .or_else(|| home.map(|h| PathBuf::from(h).join(".cache/chainlog/models")))
}

/// A model a store URI names: its cache entry (which may not hold every file yet — see
/// [`fetch_files`] and [`fetch_all`]), its LoggedModel and the LoggedModel's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedModel {
    /// The local folder (the cache entry, or the local directory as given).
    pub dir: PathBuf,
    /// The LoggedModel's tags as the store holds them; `None` for a local directory, which
    /// has no LoggedModel.
    pub tags: Option<Vec<(String, String)>>,
    /// The LoggedModel the URI resolved to; `None` for a local directory, and for a cached
    /// `models:/<model_id>` opened while the store could not be reached.
    pub model: Option<LoggedModel>,
}

/// Resolves `uri` to its logged model and its cache entry `<cache_dir>/<model_id>/`, without
/// downloading anything: [`fetch_files`] and [`fetch_all`] fill the entry. The model must be
/// READY. The tags (where chainlog records the artifact digest the files are checked
/// against) are asked of the store each time — with the model, in one request — and kept next
/// to the entry (`<cache_dir>/<model_id>.tags.json`), so a cached `models:/<model_id>` still
/// opens with its record when the store cannot be reached (the cache is trusted as much as the
/// entry it holds). A local directory is returned as is.
///
/// # Errors
///
/// [`StoreError::BadModelUri`] naming the URI when it does not resolve (unknown run, model,
/// version or alias; a run with several models and none named `path`) or the model is not
/// READY; the store's errors when it cannot be reached and nothing of the model is cached.
pub async fn open_model(
    store: &dyn TrackingStore,
    uri: &ModelUri,
    cache_dir: &Path,
) -> Result<FetchedModel, StoreError> {
    if let ModelUri::LocalDir { path } = uri {
        return Ok(FetchedModel {
            dir: path.clone(),
            tags: None,
            model: None,
        });
    }
    let resolved = match uri {
        ModelUri::ModelId { model_id } => {
            let entry = cache_dir.join(safe_id(uri, model_id)?);
            match store.logged_model_with_tags(model_id).await {
                Ok(found) => found,
                // Offline (the store cannot answer, not "no such model" or "not allowed"): a
                // cached entry opens with the tags kept when it was fetched.
                Err(err) if entry.is_dir() && store_cannot_answer(&err) => {
                    tracing::warn!(
                        "{err}; running the cached copy of `{model_id}` (checked when it was \
                         fetched)"
                    );
                    let kept = cache_dir.join(format!("{model_id}.tags.json"));
                    let tags = match tokio::fs::read(&kept).await {
                        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|_| err)?,
                        Err(_) => return Err(err),
                    };
                    return Ok(FetchedModel {
                        dir: entry,
                        tags: Some(tags),
                        model: None,
                    });
                }
                Err(err) => {
                    // The store says the model is gone: its cached copy must not run later,
                    // when the store cannot be asked.
                    if matches!(err, StoreError::NotFound { .. })
                        && entry.is_dir()
                        && let Err(io) = discard_entry(&entry)
                    {
                        tracing::warn!(
                            "cannot remove the cached copy `{}` of a deleted model: {io}",
                            entry.display()
                        );
                    }
                    return Err(named(store, uri, err));
                }
            }
        }
        _ => resolve(store, uri)
            .await
            .map_err(|err| named(store, uri, err))?,
    };
    let (model, tags) = resolved;
    if !model.is_ready() {
        return Err(StoreError::BadModelUri {
            uri: uri.to_string(),
            reason: format!(
                "logged model `{}` is {}, not READY: its logging did not complete{}",
                model.model_id,
                model.status,
                model
                    .source_run_id
                    .as_deref()
                    .map(|run| format!(" (see run `{run}`)"))
                    .unwrap_or_default()
            ),
        });
    }
    let entry = cache_dir.join(safe_id(uri, &model.model_id)?);
    if let Ok(text) = serde_json::to_vec(&tags) {
        // Best effort: the tags only spare a store call when offline.
        if tokio::fs::create_dir_all(cache_dir).await.is_ok() {
            let _ = tokio::fs::write(
                cache_dir.join(format!("{}.tags.json", model.model_id)),
                text,
            )
            .await;
        }
    }
    Ok(FetchedModel {
        dir: entry,
        tags: Some(tags),
        model: Some(model),
    })
}

/// `err`, with a model that does not exist named by `uri` in `store`.
fn named(store: &dyn TrackingStore, uri: &ModelUri, err: StoreError) -> StoreError {
    match err {
        StoreError::NotFound { what } => StoreError::BadModelUri {
            uri: uri.to_string(),
            reason: format!("{what} does not exist in {}", store.display_uri()),
        },
        other => other,
    }
}

/// [`open_model`] and [`fetch_all`]: the model's every file in its cache entry. The tags are
/// returned too.
///
/// # Errors
///
/// Those of [`open_model`] and [`fetch_all`].
pub async fn fetch_model_with_tags(
    store: &dyn TrackingStore,
    uri: &ModelUri,
    cache_dir: &Path,
) -> Result<FetchedModel, StoreError> {
    let fetched = open_model(store, uri, cache_dir).await?;
    fetch_all(store, &fetched).await?;
    Ok(fetched)
}

/// The local directory holding every file of the model `uri` names: a local directory as is;
/// otherwise the logged model it resolves to, downloaded from `store` into
/// `<cache_dir>/<model_id>/` unless that entry is already complete (`models:/<model_id>` then
/// needs no store call at all).
///
/// # Errors
///
/// [`StoreError::BadModelUri`] naming the URI when it does not resolve (unknown run, model,
/// version or alias; a run with several models and none named `path`); the store's errors
/// when it cannot be reached; [`StoreError::Io`] when the cache cannot be written.
pub async fn fetch_model(
    store: &dyn TrackingStore,
    uri: &ModelUri,
    cache_dir: &Path,
) -> Result<PathBuf, StoreError> {
    if let ModelUri::LocalDir { path } = uri {
        return Ok(path.clone());
    }
    if let ModelUri::ModelId { model_id } = uri {
        let entry = cache_dir.join(safe_id(uri, model_id)?);
        if is_complete(&entry) {
            return Ok(entry);
        }
    }
    Ok(fetch_model_with_tags(store, uri, cache_dir).await?.dir)
}

/// The logged model `uri` names, and its tags.
async fn resolve(
    store: &dyn TrackingStore,
    uri: &ModelUri,
) -> Result<(LoggedModel, Vec<(String, String)>), StoreError> {
    let model_id = match uri {
        ModelUri::ModelId { model_id } => model_id.clone(),
        ModelUri::Version { name, version } => store.model_version(name, version).await?.1,
        ModelUri::Latest { name } => store.model_version(name, "@latest").await?.1,
        ModelUri::Alias { name, alias } => store.model_version(name, &format!("@{alias}")).await?.1,
        ModelUri::Run { run_id, path } => {
            let model = pick_run_model(store, uri, run_id, path).await?;
            let tags = store.logged_model_tags(&model.model_id).await?;
            return Ok((model, tags));
        }
        ModelUri::LocalDir { path } => {
            return Err(StoreError::BadModelUri {
                uri: path.display().to_string(),
                reason: "a local directory has no logged model".to_owned(),
            });
        }
    };
    store.logged_model_with_tags(&model_id).await
}

/// The run's model named `path`, or its only model.
async fn pick_run_model(
    store: &dyn TrackingStore,
    uri: &ModelUri,
    run_id: &str,
    path: &str,
) -> Result<LoggedModel, StoreError> {
    let mut models = store.run_logged_models(run_id).await?;
    if let Some(at) = models.iter().position(|m| m.name == path) {
        return Ok(models.swap_remove(at));
    }
    match models.len() {
        1 => Ok(models.swap_remove(0)),
        0 => Err(StoreError::BadModelUri {
            uri: uri.to_string(),
            reason: format!("run `{run_id}` logged no model"),
        }),
        _ => Err(StoreError::BadModelUri {
            uri: uri.to_string(),
            reason: format!(
                "run `{run_id}` logged several models and none is named `{path}`: {}",
                models
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// Whether `err` says the store could not answer (unreachable, or failing on its side) —
/// the only case in which a cached model is run without the store's word on it. A store that
/// answers "no such model" or refuses the caller is believed.
fn store_cannot_answer(err: &StoreError) -> bool {
    match err {
        StoreError::Unreachable { .. } => true,
        StoreError::Mlflow { code, .. } => {
            code.starts_with('5')
                || matches!(code.as_str(), "TEMPORARILY_UNAVAILABLE" | "INTERNAL_ERROR")
        }
        _ => false,
    }
}

/// `model_id` if it is safe as one path segment of the cache.
fn safe_id<'a>(uri: &ModelUri, model_id: &'a str) -> Result<&'a str, StoreError> {
    let safe = model_id.starts_with("m-")
        && model_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if safe {
        Ok(model_id)
    } else {
        Err(StoreError::BadModelUri {
            uri: uri.to_string(),
            reason: format!("`{model_id}` is not a logged model id (m-…)"),
        })
    }
}

/// The file beside a cache entry that says it holds every file the store listed: written
/// by [`fetch_all`] once they are all in, removed with the entry ([`discard_entry`]).
fn complete_mark(entry: &Path) -> PathBuf {
    let name = entry
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    entry.with_file_name(format!(".{name}.complete"))
}

/// Whether the cache entry `entry` holds every file of its model (a fetch by [`fetch_all`]
/// completed); an entry filled by [`fetch_files`] only holds what was asked.
#[must_use]
pub fn is_complete(entry: &Path) -> bool {
    entry.is_dir() && complete_mark(entry).is_file()
}

/// Removes the cache entry `entry` (one that failed its checks), its mark of completeness
/// first, so a later fetch starts over instead of trusting what is left.
///
/// # Errors
///
/// The I/O error of the removal.
pub fn discard_entry(entry: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(complete_mark(entry)) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    std::fs::remove_dir_all(entry)
}

/// Makes sure the cache entry of `fetched` holds `files` (relative, `/`-separated paths as
/// the model's MLmodel lists them), downloading only those that are missing — nothing when
/// all are there, which needs no store call. A local directory is left as it is.
///
/// Nothing here vouches for the files: the caller checks them against the hashes its
/// MLmodel records (bound to the store's digest record) before using them.
///
/// # Errors
///
/// The store's errors (a file the model does not have is [`StoreError::NotFound`]);
/// [`StoreError::Io`] when the cache cannot be written.
pub async fn fetch_files(
    store: &dyn TrackingStore,
    fetched: &FetchedModel,
    files: &[String],
) -> Result<(), StoreError> {
    if fetched.tags.is_none() || missing(&fetched.dir, files).is_empty() {
        return Ok(());
    }
    let model = model_of(store, fetched).await?;
    let lock = lock_entry(&fetched.dir, &model.model_id).await?;
    // Another process may have fetched them while this one waited.
    let wanted = missing(&fetched.dir, files);
    if !wanted.is_empty() {
        merge_download(store, &model, &fetched.dir, &wanted).await?;
    }
    drop(lock);
    Ok(())
}

/// Makes sure the cache entry of `fetched` holds every file of the model: unless it is
/// marked complete, the store lists them and the missing ones are downloaded, then the entry
/// is marked complete. A local directory is left as it is.
///
/// # Errors
///
/// As [`fetch_files`]; [`StoreError::NotFound`] when the model has no artifacts.
pub async fn fetch_all(
    store: &dyn TrackingStore,
    fetched: &FetchedModel,
) -> Result<(), StoreError> {
    if fetched.tags.is_none() || is_complete(&fetched.dir) {
        return Ok(());
    }
    let model = model_of(store, fetched).await?;
    let lock = lock_entry(&fetched.dir, &model.model_id).await?;
    if !is_complete(&fetched.dir) {
        let listed = store.list_model_artifacts(&model).await?;
        let wanted = missing(&fetched.dir, &listed);
        if !wanted.is_empty() || !fetched.dir.is_dir() {
            merge_download(store, &model, &fetched.dir, &wanted).await?;
        }
        let mark = complete_mark(&fetched.dir);
        tokio::fs::write(&mark, b"")
            .await
            .map_err(|source| StoreError::Io {
                action: "write",
                path: mark.display().to_string(),
                source,
            })?;
    }
    drop(lock);
    Ok(())
}

/// The LoggedModel of `fetched`, asked of the store when it was opened offline.
async fn model_of(
    store: &dyn TrackingStore,
    fetched: &FetchedModel,
) -> Result<LoggedModel, StoreError> {
    match &fetched.model {
        Some(model) => Ok(model.clone()),
        None => {
            let model_id = fetched
                .dir
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            store.get_logged_model(&model_id).await
        }
    }
}

/// Those of `files` that `entry` does not hold.
fn missing(entry: &Path, files: &[String]) -> Vec<String> {
    files
        .iter()
        .filter(|file| {
            !file
                .split('/')
                .fold(entry.to_path_buf(), |path, part| path.join(part))
                .is_file()
        })
        .cloned()
        .collect()
}

/// The I/O error of `action` on `path`.
fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.display().to_string();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// Takes the model's download lock (`.<model_id>.lock` beside `entry`), waiting for another
/// process that holds it: one download per model at a time across processes; the others
/// wait (woken when it is released, not polling), then reuse what it fetched.
async fn lock_entry(entry: &Path, model_id: &str) -> Result<std::fs::File, StoreError> {
    let cache_dir = entry.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(cache_dir)
        .await
        .map_err(io_error("create directory", cache_dir))?;
    let lock_path = cache_dir.join(format!(".{model_id}.lock"));
    let lock = std::fs::File::create(&lock_path).map_err(io_error("create", &lock_path))?;
    if lock.try_lock().is_ok() {
        return Ok(lock);
    }
    // Said at the default level: a wait with no word looks like a hang.
    tracing::warn!("another process is fetching model `{model_id}`; waiting for it");
    let waited = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock)).await;
    match waited {
        Ok(locked) => locked.map_err(io_error("lock", &lock_path)),
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => Err(io_error("lock", &lock_path)(std::io::Error::other(err))),
    }
}

/// Downloads `files` of `model` into a hidden temporary sibling of `entry`, then moves them
/// into the entry: the whole folder renamed into place when there is no entry yet (any stale
/// mark of completeness removed first), else file by file. Each rename is atomic, so a crash
/// never leaves a half-written file in the entry. Call it holding the model's lock.
async fn merge_download(
    store: &dyn TrackingStore,
    model: &LoggedModel,
    entry: &Path,
    files: &[String],
) -> Result<(), StoreError> {
    let cache_dir = entry.parent().unwrap_or(Path::new("."));
    remove_stale_staging(cache_dir, &model.model_id).await;
    let tmp = tempfile::Builder::new()
        .prefix(&staging_prefix(&model.model_id))
        .tempdir_in(cache_dir)
        .map_err(io_error("create directory in", cache_dir))?;
    let staged = tmp.path().join("model");
    if !files.is_empty() {
        store.download_model_files(model, files, &staged).await?;
    }
    // A store without some of the files leaves them out (the checks name them missing).
    tokio::fs::create_dir_all(&staged)
        .await
        .map_err(io_error("create directory", &staged))?;
    if !entry.is_dir() {
        let mark = complete_mark(entry);
        match tokio::fs::remove_file(&mark).await {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_error("remove", &mark)(err)),
        }
        match tokio::fs::rename(&staged, entry).await {
            Ok(()) => return Ok(()),
            // Another process may have created the entry meanwhile: merge into it.
            Err(_) if entry.is_dir() => {}
            Err(err) => return Err(io_error("rename", &staged)(err)),
        }
    }
    for file in files {
        let from = file
            .split('/')
            .fold(staged.clone(), |path, part| path.join(part));
        let to = file
            .split('/')
            .fold(entry.to_path_buf(), |path, part| path.join(part));
        if !from.is_file() {
            continue;
        }
        if let Some(dir) = to.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(io_error("create directory", dir))?;
        }
        // A folder where the file belongs (a changed cache entry) gives way to the file.
        if to.is_dir() {
            tokio::fs::remove_dir_all(&to)
                .await
                .map_err(io_error("remove", &to))?;
        }
        tokio::fs::rename(&from, &to)
            .await
            .map_err(io_error("rename", &from))?;
    }
    Ok(())
}

/// The name start of the staging folders of `model_id` (beside its entry).
fn staging_prefix(model_id: &str) -> String {
    format!(".{model_id}.tmp-")
}

/// Removes the staging folders of `model_id` in `cache_dir`: only the holder of the model's
/// lock stages files, so one found by the holder was left by a process killed mid-fetch.
async fn remove_stale_staging(cache_dir: &Path, model_id: &str) {
    let prefix = staging_prefix(model_id);
    let Ok(mut listing) = tokio::fs::read_dir(cache_dir).await else {
        return;
    };
    while let Ok(Some(found)) = listing.next_entry().await {
        if found.file_name().to_string_lossy().starts_with(&prefix)
            && let Err(err) = tokio::fs::remove_dir_all(found.path()).await
        {
            tracing::debug!("cannot remove `{}`: {err}", found.path().display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn staging_left_by_a_killed_fetch_is_removed_and_others_kept() {
        let cache = tempfile::tempdir().unwrap();
        let model_id = "m-0123456789abcdef0123456789abcdef";
        let stale = cache.path().join(format!(".{model_id}.tmp-AbC123"));
        std::fs::create_dir_all(stale.join("model/prompts")).unwrap();
        std::fs::write(stale.join("model/MLmodel"), "x").unwrap();
        let other = cache
            .path()
            .join(".m-ffffffffffffffffffffffffffffffff.tmp-XyZ");
        std::fs::create_dir_all(&other).unwrap();
        let entry = cache.path().join(model_id);
        std::fs::create_dir_all(&entry).unwrap();
        remove_stale_staging(cache.path(), model_id).await;
        assert!(!stale.exists(), "stale staging kept");
        assert!(other.exists(), "another model's staging removed");
        assert!(entry.exists(), "the entry itself removed");
    }

    fn parsed(uri: &str) -> ModelUri {
        ModelUri::parse(uri).unwrap()
    }

    fn reason(uri: &str) -> String {
        match ModelUri::parse(uri) {
            Err(StoreError::BadModelUri { uri: named, reason }) => {
                assert_eq!(named, uri.trim());
                reason
            }
            other => panic!("{uri}: {other:?}"),
        }
    }

    #[test]
    fn runs_uri_gives_run_and_path() {
        assert_eq!(
            parsed("runs:/0123abcd/summarize"),
            ModelUri::Run {
                run_id: "0123abcd".into(),
                path: "summarize".into()
            }
        );
        assert_eq!(
            parsed("runs:/0123abcd"),
            ModelUri::Run {
                run_id: "0123abcd".into(),
                path: String::new()
            }
        );
    }

    #[test]
    fn models_uris_give_id_version_and_alias() {
        assert_eq!(
            parsed("models:/m-0a1b2c"),
            ModelUri::ModelId {
                model_id: "m-0a1b2c".into()
            }
        );
        assert_eq!(
            parsed("models:/summarize/3"),
            ModelUri::Version {
                name: "summarize".into(),
                version: "3".into()
            }
        );
        assert_eq!(
            parsed("models:/summarize-chain@champion"),
            ModelUri::Alias {
                name: "summarize-chain".into(),
                alias: "champion".into()
            }
        );
    }

    #[test]
    fn display_round_trips() {
        for uri in [
            "runs:/abc/summarize",
            "models:/m-1f",
            "models:/x/2",
            "models:/x@prod",
        ] {
            assert_eq!(parsed(uri).to_string(), uri);
        }
    }

    #[test]
    fn local_directory_with_or_without_file_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let plain = path.display().to_string();
        assert_eq!(parsed(&plain), ModelUri::LocalDir { path: path.clone() });
        assert_eq!(
            parsed(&format!("file://{plain}")),
            ModelUri::LocalDir { path: path.clone() }
        );
        let missing = path.join("nope").display().to_string();
        assert!(reason(&missing).contains("no such local directory"));
        let file = path.join("MLmodel");
        std::fs::write(&file, "x").unwrap();
        assert!(reason(&file.display().to_string()).contains("no such local directory"));
    }

    #[test]
    fn malformed_uris_are_refused_naming_them() {
        for uri in [
            "runs:/",
            "runs:/abc-def/x",
            "models:/",
            "models:/summarize",
            "models:/summarize/",
            "models:/summarize/0",
            "models:/summarize/Production",
            "models:/summarize/1/extra",
            "models:/@champion",
            "models:/x@",
            "s3://bucket/model",
            "",
        ] {
            assert!(!reason(uri).is_empty(), "{uri}");
        }
        assert!(reason("models:/summarize/Production").contains("alias"));
        assert!(reason("s3://bucket/model").contains("models:/<name>@<alias>"));
    }

    #[test]
    fn cache_dir_prefers_chainlog_then_xdg_then_home() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(
            cache_dir_from(os("/c"), os("/x"), os("/h")),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            cache_dir_from(None, os("/x"), os("/h")),
            Some(PathBuf::from("/x/chainlog/models"))
        );
        assert_eq!(
            cache_dir_from(None, None, os("/h")),
            Some(PathBuf::from("/h/.cache/chainlog/models"))
        );
        assert_eq!(cache_dir_from(None, None, None), None);
    }

    #[test]
    fn unsafe_model_ids_never_become_cache_paths() {
        let uri = parsed("models:/m-1");
        assert!(safe_id(&uri, "m-1a_b").is_ok());
        for bad in ["../x", "m-../../etc", "x", "m-a/b"] {
            assert!(safe_id(&uri, bad).is_err(), "{bad}");
        }
    }
}
