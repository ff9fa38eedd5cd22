//! Tracking URIs: which store a run goes to, as MLflow spells it.
//!
//! Owns [`TrackingUri`] (parsing `sqlite:///…` and `http(s)://…`, the `MLFLOW_TRACKING_URI`
//! fallback and the `sqlite:///mlflow.db` default) and [`open_store`], which turns one into an
//! `Arc<dyn TrackingStore>`. Does not own the stores themselves (`sqlite`, `rest`). URIs shown
//! in messages never carry credentials ([`redact_uri`]).

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
};

use super::{RestStore, SqliteStore, StoreError, TrackingStore};

/// The environment variable MLflow reads the tracking URI from.
pub const TRACKING_URI_VAR: &str = "MLFLOW_TRACKING_URI";

/// Where artifacts of the SQLite store go: this folder beside the database file (MLflow's
/// `DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH`, `./mlruns`, for the default `sqlite:///mlflow.db`).
const SQLITE_ARTIFACT_DIR: &str = "mlruns";

/// A parsed tracking URI.
///
/// # Examples
///
/// ```
/// use chainlog::store::TrackingUri;
///
/// let uri = TrackingUri::parse("sqlite:///mlflow.db")?;
/// assert_eq!(uri, TrackingUri::Sqlite { db_path: "mlflow.db".into() });
/// let uri = TrackingUri::parse("sqlite:////var/lib/mlflow/mlflow.db")?;
/// assert_eq!(uri, TrackingUri::Sqlite { db_path: "/var/lib/mlflow/mlflow.db".into() });
/// let uri: TrackingUri = "http://127.0.0.1:5000".parse()?;
/// assert_eq!(uri.to_string(), "http://127.0.0.1:5000");
/// assert!(TrackingUri::parse("postgresql://db/mlflow").is_err());
/// # Ok::<(), chainlog::store::StoreError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackingUri {
    /// `sqlite:///relative.db` or `sqlite:////absolute.db`: MLflow's schema in a local file.
    Sqlite {
        /// The database file, relative paths against the working directory.
        db_path: PathBuf,
    },
    /// `http://…` or `https://…`: an MLflow tracking server.
    Server {
        /// The server's base URL, without a trailing slash; never carries credentials.
        url: String,
    },
}

impl TrackingUri {
    /// MLflow 3's default tracking URI.
    pub const DEFAULT: &str = "sqlite:///mlflow.db";

    /// Parses a tracking URI.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownScheme`] for anything but `sqlite:///PATH` and
    /// `http(s)://HOST[:PORT][/PREFIX]` — including URLs with credentials in them
    /// (credentials go in `MLFLOW_TRACKING_TOKEN` or `MLFLOW_TRACKING_USERNAME`/`PASSWORD`).
    pub fn parse(uri: &str) -> Result<Self, StoreError> {
        let uri = uri.trim();
        let refuse = || StoreError::UnknownScheme {
            uri: redact_uri(uri),
        };
        if let Some(path) = strip_prefix_ignore_case(uri, "sqlite:///") {
            // `sqlite:///x` is relative, `sqlite:////x` absolute: the path is what follows
            // the third slash, as in SQLAlchemy. Query options are not supported.
            if path.is_empty() || path.contains('?') {
                return Err(refuse());
            }
            return Ok(Self::Sqlite {
                db_path: PathBuf::from(path),
            });
        }
        let scheme = uri
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        if matches!(scheme.as_deref(), Some("http" | "https")) {
            let url = reqwest::Url::parse(uri).map_err(|_| refuse())?;
            let valid = url.host_str().is_some_and(|host| !host.is_empty())
                && url.username().is_empty()
                && url.password().is_none()
                && url.query().is_none()
                && url.fragment().is_none();
            if valid {
                return Ok(Self::Server {
                    url: url.as_str().trim_end_matches('/').to_owned(),
                });
            }
        }
        Err(refuse())
    }

    /// The tracking URI to use: `given` (a flag) if set, else `MLFLOW_TRACKING_URI`, else
    /// [`TrackingUri::DEFAULT`]. Empty values count as unset.
    ///
    /// # Errors
    ///
    /// As [`TrackingUri::parse`].
    pub fn resolve(given: Option<&str>) -> Result<Self, StoreError> {
        Self::resolve_from(given, std::env::var(TRACKING_URI_VAR).ok().as_deref())
    }

    /// [`TrackingUri::resolve`] with the environment variable's value passed in.
    ///
    /// # Errors
    ///
    /// As [`TrackingUri::parse`].
    ///
    /// # Examples
    ///
    /// ```
    /// use chainlog::store::TrackingUri;
    ///
    /// let uri = TrackingUri::resolve_from(None, Some("http://127.0.0.1:5000"))?;
    /// assert_eq!(uri.to_string(), "http://127.0.0.1:5000");
    /// let uri = TrackingUri::resolve_from(None, None)?;
    /// assert_eq!(uri.to_string(), TrackingUri::DEFAULT);
    /// # Ok::<(), chainlog::store::StoreError>(())
    /// ```
    pub fn resolve_from(given: Option<&str>, env_value: Option<&str>) -> Result<Self, StoreError> {
        Self::parse(set(given).or(set(env_value)).unwrap_or(Self::DEFAULT))
    }

    /// [`TrackingUri::resolve`], with the default store in `project_root` when the command
    /// runs inside a project: `<root>/mlflow.db`, as cargo puts `target/` at the root whatever
    /// folder it runs in — so a command run from a subfolder never writes a store into the
    /// project's sources. A URI that is given is taken as given (relative to the current
    /// directory).
    ///
    /// # Errors
    ///
    /// As [`TrackingUri::parse`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::path::Path;
    /// use chainlog::store::TrackingUri;
    ///
    /// let root = Path::new("/work/app");
    /// if std::env::var_os("MLFLOW_TRACKING_URI").is_none() {
    ///     let uri = TrackingUri::resolve_in(None, Some(root))?;
    ///     assert_eq!(uri.to_string(), "sqlite:////work/app/mlflow.db");
    /// }
    /// let given = TrackingUri::resolve_in(Some("sqlite:///other.db"), Some(root))?;
    /// assert_eq!(given.to_string(), "sqlite:///other.db");
    /// # Ok::<(), chainlog::store::StoreError>(())
    /// ```
    pub fn resolve_in(
        given: Option<&str>,
        project_root: Option<&Path>,
    ) -> Result<Self, StoreError> {
        let env_value = std::env::var(TRACKING_URI_VAR).ok();
        match (set(given).or(set(env_value.as_deref())), project_root) {
            (Some(uri), _) => Self::parse(uri),
            (None, Some(root)) => Ok(Self::Sqlite {
                db_path: root.join("mlflow.db"),
            }),
            (None, None) => Self::parse(Self::DEFAULT),
        }
    }
}

impl FromStr for TrackingUri {
    type Err = StoreError;

    fn from_str(uri: &str) -> Result<Self, Self::Err> {
        Self::parse(uri)
    }
}

impl fmt::Display for TrackingUri {
    /// The URI as MLflow writes it (`sqlite:///…`, the server URL).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite { db_path } => write!(f, "sqlite:///{}", db_path.display()),
            Self::Server { url } => f.write_str(url),
        }
    }
}

/// Opens the store `uri` names to read or change what is already there: as [`open_store`], but a
/// SQLite file that does not exist is refused instead of created (a wrong path or folder must
/// not look like an empty store).
///
/// # Errors
///
/// [`StoreError::NotFound`] naming a missing database file; else as [`open_store`].
pub fn open_existing_store(uri: &TrackingUri) -> Result<Arc<dyn TrackingStore>, StoreError> {
    if let Some(missing) = uri.missing_database() {
        return Err(missing);
    }
    open_store(uri)
}

impl TrackingUri {
    /// For a SQLite URI whose database file does not exist, the error that says so.
    #[must_use]
    pub fn missing_database(&self) -> Option<StoreError> {
        match self {
            Self::Sqlite { db_path } if !db_path.exists() => Some(StoreError::NotFound {
                what: format!(
                    "the tracking store `{self}` (pass --tracking-uri, or run in the folder it is in)"
                ),
            }),
            _ => None,
        }
    }
}

/// Opens the store `uri` names: a [`SqliteStore`] (artifacts under `mlruns/` beside the
/// database: `./mlruns` for the default, as MLflow does) or a [`RestStore`] with credentials from the environment.
///
/// # Errors
///
/// Whatever opening the store fails with ([`StoreError::Database`],
/// [`StoreError::UnsupportedSchema`], …); [`StoreError::Io`] when the working directory cannot
/// be resolved for the artifact root.
pub fn open_store(uri: &TrackingUri) -> Result<Arc<dyn TrackingStore>, StoreError> {
    match uri {
        TrackingUri::Sqlite { db_path } => {
            let beside_db = db_path
                .parent()
                .unwrap_or_else(|| Path::new(""))
                .join(SQLITE_ARTIFACT_DIR);
            let artifact_root =
                std::path::absolute(&beside_db).map_err(|source| StoreError::Io {
                    action: "resolve",
                    path: beside_db.display().to_string(),
                    source,
                })?;
            Ok(Arc::new(SqliteStore::open(db_path, &artifact_root)?))
        }
        TrackingUri::Server { url } => Ok(Arc::new(RestStore::from_env(url)?)),
    }
}

/// `uri` with any `user:password@` removed, for messages.
pub(crate) fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => uri.to_owned(),
    }
}

/// A value that is present and not blank.
fn set(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(path: &str) -> TrackingUri {
        TrackingUri::Sqlite {
            db_path: PathBuf::from(path),
        }
    }

    #[test]
    fn sqlite_uris_give_relative_and_absolute_paths() -> Result<(), StoreError> {
        assert_eq!(
            TrackingUri::parse("sqlite:///mlflow.db")?,
            sqlite("mlflow.db")
        );
        assert_eq!(
            TrackingUri::parse("sqlite:///data/m.db")?,
            sqlite("data/m.db")
        );
        assert_eq!(
            TrackingUri::parse("sqlite:////tmp/m.db")?,
            sqlite("/tmp/m.db")
        );
        assert_eq!(TrackingUri::parse("SQLite:///m.db")?, sqlite("m.db"));
        Ok(())
    }

    #[test]
    fn server_uris_drop_the_trailing_slash() -> Result<(), StoreError> {
        let uri = TrackingUri::parse("https://mlflow.example.com/team/")?;
        assert_eq!(uri.to_string(), "https://mlflow.example.com/team");
        let uri = TrackingUri::parse("http://127.0.0.1:5000")?;
        assert_eq!(
            uri,
            TrackingUri::Server {
                url: "http://127.0.0.1:5000".to_owned()
            }
        );
        Ok(())
    }

    #[test]
    fn other_schemes_are_unknown() {
        for uri in [
            "file:///tmp/mlruns",
            "./mlruns",
            "postgresql://db/mlflow",
            "databricks",
            "sqlite://",
            "sqlite:///",
            "sqlite:///m.db?mode=ro",
            "http://",
            "ftp://host/x",
            "",
        ] {
            assert!(
                matches!(
                    TrackingUri::parse(uri),
                    Err(StoreError::UnknownScheme { .. })
                ),
                "{uri:?}"
            );
        }
    }

    #[test]
    fn credentials_in_a_uri_are_refused_and_never_shown() {
        let err = TrackingUri::parse("https://ada:hunter2@mlflow.example.com").err();
        let shown = err.map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            shown,
            "unsupported tracking URI `https://***@mlflow.example.com`: \
             use sqlite:///PATH or http(s)://HOST[:PORT]"
        );
    }

    #[test]
    fn flag_beats_env_beats_default() -> Result<(), StoreError> {
        let flag = Some("sqlite:///flag.db");
        let env = Some("sqlite:///env.db");
        assert_eq!(TrackingUri::resolve_from(flag, env)?, sqlite("flag.db"));
        assert_eq!(TrackingUri::resolve_from(None, env)?, sqlite("env.db"));
        assert_eq!(
            TrackingUri::resolve_from(Some(""), Some(" "))?,
            sqlite("mlflow.db")
        );
        assert_eq!(TrackingUri::resolve_from(None, None)?, sqlite("mlflow.db"));
        Ok(())
    }

    #[test]
    fn redaction_keeps_host_and_path() {
        assert_eq!(redact_uri("http://u:p@h:1/x@y"), "http://***@h:1/x@y");
        assert_eq!(redact_uri("http://h:1/x"), "http://h:1/x");
        assert_eq!(redact_uri("no scheme"), "no scheme");
    }
}
