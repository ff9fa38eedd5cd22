//! A direct artifact store as an [`ArtifactRepo`]: when the tracking server does not proxy
//! artifacts (`mlflow server --no-serve-artifacts --default-artifact-root s3://…`), clients
//! write and read the artifact location themselves, and so does chainlog, through the
//! `object_store` crate.
//!
//! Owns the mapping from an artifact URI and the settings MLflow's own client reads (boto3's,
//! google-cloud-storage's and azure-storage-blob's) to an object store, and the check that
//! credentials are there before anything is written:
//!
//! | URI | settings |
//! |---|---|
//! | `s3://bucket/path` | `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`), or `AWS_PROFILE`'s keys in `~/.aws/credentials` (`AWS_SHARED_CREDENTIALS_FILE`), or `AWS_WEB_IDENTITY_TOKEN_FILE`, or the ECS container credentials; `MLFLOW_S3_ENDPOINT_URL` (S3-compatible servers: MinIO, moto), `AWS_DEFAULT_REGION`/`AWS_REGION`, `MLFLOW_S3_IGNORE_TLS` |
//! | `gs://bucket/path` | `GOOGLE_APPLICATION_CREDENTIALS` (a key file), `GOOGLE_SERVICE_ACCOUNT_KEY`, or gcloud's application-default credentials |
//! | `wasbs://container@account.blob.core.windows.net/path` | `AZURE_STORAGE_CONNECTION_STRING`, or `AZURE_STORAGE_ACCESS_KEY`, or a service principal (`AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, `AZURE_TENANT_ID`) |
//! | `abfss://container@account.dfs.core.windows.net/path` | as `wasbs://` |
//! | `file:///path`, or a plain path (`/path`) | none: a directory every client shares (NFS, a volume) |
//!
//! Instance credentials (EC2/GCE metadata, Azure managed identity) are not probed: without
//! one of the settings above the transfer is refused up front, naming the variables to set,
//! rather than hanging on a metadata endpoint that is not there. Secret values read here are
//! registered with the scrubber ([`crate::secret::register`]). Transient failures are retried
//! by `object_store` with the REST store's policy (MLflow's `MLFLOW_HTTP_REQUEST_MAX_RETRIES`
//! and `_BACKOFF_FACTOR`: the same attempts and doubling waits, at most 120 s a wait and
//! 5 minutes in all).

use std::{path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    aws::AmazonS3Builder, azure::MicrosoftAzureBuilder, gcp::GoogleCloudStorageBuilder,
    local::LocalFileSystem, path::Path as ObjectPath,
};
use reqwest::Url;

use super::{
    http::RetryPolicy,
    transfer::{ArtifactRepo, is_safe_relative},
};
use crate::store::StoreError;

/// The schemes a direct artifact store can have.
pub(super) const SUPPORTED: &str = "s3://, gs://, wasbs://, abfss://, file://";

/// The environment, as a lookup (the process's, or a test's).
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// One artifact root in an object store.
pub(super) struct DirectRepo {
    store: Arc<dyn ObjectStore>,
    /// The root's path inside the store (bucket/container excluded).
    root: ObjectPath,
    /// The artifact URI, for messages.
    location: String,
}

impl DirectRepo {
    /// The repository of `artifact_uri`, configured from the process's environment.
    ///
    /// Builds the client only: nothing is sent until a file moves.
    ///
    /// # Errors
    ///
    /// [`StoreError::MissingCredentials`] naming the variables to set;
    /// [`StoreError::ArtifactStore`] for a scheme that is not one of [`SUPPORTED`], a
    /// malformed URI, or a setting `object_store` refuses.
    pub(super) fn open(artifact_uri: &str, retry: RetryPolicy) -> Result<Self, StoreError> {
        Self::open_with(artifact_uri, &|name| std::env::var(name).ok(), retry)
    }

    fn open_with(artifact_uri: &str, env: Env<'_>, retry: RetryPolicy) -> Result<Self, StoreError> {
        let retry = retry_config(retry);
        let location = artifact_uri.to_owned();
        let fail = |message: String| StoreError::ArtifactStore {
            location: location.clone(),
            message,
        };
        let url = if is_plain_path(artifact_uri) {
            // What MLflow keeps for a server started with `--default-artifact-root /data/mlruns`:
            // a folder its own client reads and writes as local files; so does chainlog.
            std::path::absolute(artifact_uri)
                .ok()
                .and_then(|path| Url::from_file_path(path).ok())
                .ok_or_else(|| fail("not a URI, nor a path to a folder".to_owned()))?
        } else {
            Url::parse(artifact_uri).map_err(|err| fail(format!("not a URI: {err}")))?
        };
        let root = ObjectPath::from_url_path(url.path())
            .map_err(|err| fail(format!("bad path: {err}")))?;
        let built: Result<Arc<dyn ObjectStore>, object_store::Error> = match url.scheme() {
            "s3" | "s3a" => {
                let bucket = host(&url).ok_or_else(|| fail("no bucket".to_owned()))?;
                s3(bucket, env, &location)?
                    .build()
                    .map(|s| Arc::new(s) as _)
            }
            "gs" => {
                let bucket = host(&url).ok_or_else(|| fail("no bucket".to_owned()))?;
                require(env, &location, Cloud::Gcs)?;
                if let Some(key) = env("GOOGLE_SERVICE_ACCOUNT_KEY") {
                    crate::secret::register(&key);
                }
                GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .build()
                    .map(|s| Arc::new(s) as _)
            }
            "wasbs" | "wasb" | "abfss" | "abfs" => azure(&url, env, &location)?
                .build()
                .map(|s| Arc::new(s) as _),
            "file" => Ok(Arc::new(LocalFileSystem::new()) as _),
            other => {
                return Err(fail(format!(
                    "chainlog cannot write `{other}:` artifact locations (it writes \
                     mlflow-artifacts: through the server, and {SUPPORTED} directly)"
                )));
            }
        };
        let store = built.map_err(|err| fail(one_line(&err.to_string())))?;
        Ok(Self {
            store,
            root,
            location,
        })
    }

    fn path_of(&self, relative: &str) -> ObjectPath {
        relative
            .split('/')
            .fold(self.root.clone(), |path, part| path.join(part))
    }

    fn error(&self, operation: &str, relative: &str, err: object_store::Error) -> StoreError {
        let text = crate::secret::scrub(&one_line(&err.to_string()));
        if is_missing_bucket(&err, &text) || (operation == "upload" && is_not_found(&err)) {
            // An upload finds nothing missing but the bucket (or container) itself.
            return StoreError::ArtifactStore {
                location: self.location.clone(),
                message: format!(
                    "its bucket or container does not exist (create it, or point the \
                     experiment's artifact location at one that does): {text}"
                ),
            };
        }
        if is_not_found(&err) {
            return StoreError::NotFound {
                what: format!("artifact `{relative}` under `{}`", self.location),
            };
        }
        let what = if relative.is_empty() {
            String::new()
        } else {
            format!(" of `{relative}`")
        };
        StoreError::ArtifactStore {
            location: self.location.clone(),
            message: format!("{operation}{what} failed: {text}"),
        }
    }
}

#[async_trait]
impl ArtifactRepo for DirectRepo {
    async fn list_files(&self) -> Result<Vec<String>, StoreError> {
        let listed: Result<Vec<_>, _> = self.store.list(Some(&self.root)).try_collect().await;
        let listed = match listed {
            Ok(listed) => listed,
            Err(err) if is_not_found(&err) && !is_missing_bucket(&err, &err.to_string()) => {
                Vec::new()
            }
            Err(err) => return Err(self.error("listing", "", err)),
        };
        let root = self.root.as_ref();
        let mut files = Vec::with_capacity(listed.len());
        for meta in listed {
            let full = meta.location.as_ref();
            let relative = if root.is_empty() {
                full
            } else {
                full.strip_prefix(root)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .unwrap_or_default()
            };
            if !is_safe_relative(relative) {
                return Err(StoreError::ArtifactStore {
                    location: self.location.clone(),
                    message: format!("unsafe artifact path `{full}` listed under `{root}`"),
                });
            }
            files.push(relative.to_owned());
        }
        files.sort();
        Ok(files)
    }

    async fn get(&self, relative: &str) -> Result<Bytes, StoreError> {
        // Listed names are already in `object_store`'s encoding: parse, do not encode again.
        let path = ObjectPath::parse(format!("{}/{relative}", self.root))
            .unwrap_or_else(|_| self.path_of(relative));
        let got = self
            .store
            .get(&path)
            .await
            .map_err(|err| self.error("download", relative, err))?;
        got.bytes()
            .await
            .map_err(|err| self.error("download", relative, err))
    }

    async fn put(&self, relative: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.store
            .put(&self.path_of(relative), PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|err| self.error("upload", relative, err))
    }
}

/// The REST store's retry policy as `object_store` spells it.
fn retry_config(policy: RetryPolicy) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: policy.base_delay,
            max_backoff: Duration::from_secs(120),
            base: 2.0,
        },
        max_retries: policy.attempts.saturating_sub(1) as usize,
        retry_timeout: Duration::from_secs(300),
    }
}

/// The bucket or container host of `url`, if any.
fn host(url: &Url) -> Option<&str> {
    url.host_str().filter(|host| !host.is_empty())
}

/// A cloud whose credentials are checked before a transfer.
#[derive(Debug, Clone, Copy)]
enum Cloud {
    S3,
    Gcs,
    Azure,
}

/// Refuses when none of `cloud`'s credential settings is present.
fn require(env: Env<'_>, location: &str, cloud: Cloud) -> Result<(), StoreError> {
    let set = |name: &str| env(name).is_some_and(|v| !v.trim().is_empty());
    let (found, needed) = match cloud {
        Cloud::S3 => (
            (set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY"))
                || set("AWS_WEB_IDENTITY_TOKEN_FILE")
                || set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                || set("AWS_CONTAINER_CREDENTIALS_FULL_URI")
                || env("AWS_SKIP_SIGNATURE").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE with keys in \
             ~/.aws/credentials, or AWS_WEB_IDENTITY_TOKEN_FILE)",
        ),
        Cloud::Gcs => (
            set("GOOGLE_APPLICATION_CREDENTIALS")
                || set("GOOGLE_SERVICE_ACCOUNT")
                || set("GOOGLE_SERVICE_ACCOUNT_PATH")
                || set("GOOGLE_SERVICE_ACCOUNT_KEY")
                || set("SERVICE_ACCOUNT")
                || env("HOME").is_some_and(|home| {
                    PathBuf::from(home)
                        .join(".config/gcloud/application_default_credentials.json")
                        .is_file()
                }),
            "GOOGLE_APPLICATION_CREDENTIALS to a service account key file (or run \
             `gcloud auth application-default login`)",
        ),
        Cloud::Azure => (
            set("AZURE_STORAGE_CONNECTION_STRING")
                || set("AZURE_STORAGE_ACCESS_KEY")
                || set("AZURE_STORAGE_ACCOUNT_KEY")
                || set("AZURE_STORAGE_SAS_TOKEN")
                || set("AZURE_STORAGE_SAS_KEY")
                || (set("AZURE_CLIENT_ID") && set("AZURE_CLIENT_SECRET") && set("AZURE_TENANT_ID"))
                || set("AZURE_FEDERATED_TOKEN_FILE"),
            "AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCESS_KEY (or AZURE_CLIENT_ID, \
             AZURE_CLIENT_SECRET and AZURE_TENANT_ID)",
        ),
    };
    if found {
        Ok(())
    } else {
        Err(StoreError::MissingCredentials {
            location: location.to_owned(),
            set: needed.to_owned(),
        })
    }
}

/// An S3 client for `bucket` as boto3 would be configured by the same environment.
fn s3(bucket: &str, env: Env<'_>, location: &str) -> Result<AmazonS3Builder, StoreError> {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let from_profile = match require(env, location, Cloud::S3) {
        Ok(()) => None,
        Err(missing) => Some(profile_keys(env).ok_or(missing)?),
    };
    if let Some(keys) = from_profile {
        builder = builder
            .with_access_key_id(keys.access_key_id)
            .with_secret_access_key(keys.secret_access_key.clone());
        crate::secret::register(&keys.secret_access_key);
        if let Some(token) = keys.session_token {
            crate::secret::register(&token);
            builder = builder.with_token(token);
        }
    }
    for secret in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        if let Some(value) = env(secret) {
            crate::secret::register(&value);
        }
    }
    if env("AWS_DEFAULT_REGION").is_none()
        && let Some(region) = env("AWS_REGION")
    {
        builder = builder.with_region(region);
    }
    let ignore_tls = env("MLFLOW_S3_IGNORE_TLS").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    builder = builder
        .with_client_options(ClientOptions::new().with_allow_invalid_certificates(ignore_tls));
    if let Some(endpoint) = env("MLFLOW_S3_ENDPOINT_URL").filter(|e| !e.trim().is_empty()) {
        let http = endpoint.starts_with("http://");
        builder = builder.with_endpoint(endpoint).with_allow_http(http);
    } else if let Some(endpoint) = env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL")) {
        builder = builder.with_allow_http(endpoint.starts_with("http://"));
    }
    Ok(builder)
}

/// Keys of an AWS shared-credentials profile.
struct ProfileKeys {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

/// `AWS_PROFILE`'s (or `default`'s) keys in `AWS_SHARED_CREDENTIALS_FILE` or
/// `~/.aws/credentials`, as boto3 reads them.
/// Whether `location` is a path (`/data/mlruns/1`, `mlruns/1`) rather than a URI: no scheme.
fn is_plain_path(location: &str) -> bool {
    std::path::Path::new(location).is_absolute()
        || !location
            .split_once(':')
            .is_some_and(|(scheme, _)| !scheme.is_empty() && !scheme.contains('/'))
}

fn profile_keys(env: Env<'_>) -> Option<ProfileKeys> {
    let file = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".aws/credentials")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
    parse_profile(&text, &profile)
}

fn parse_profile(text: &str, profile: &str) -> Option<ProfileKeys> {
    let mut in_profile = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let value = value.trim().to_owned();
            match key.trim() {
                "aws_access_key_id" => id = Some(value),
                "aws_secret_access_key" => secret = Some(value),
                "aws_session_token" => token = Some(value),
                _ => {}
            }
        }
    }
    Some(ProfileKeys {
        access_key_id: id?,
        secret_access_key: secret?,
        session_token: token,
    })
}

/// An Azure Blob client for a `wasbs://container@account.blob.core.windows.net/…` or
/// `abfss://container@account.dfs.core.windows.net/…` URI, with
/// `AZURE_STORAGE_CONNECTION_STRING` (as azure-storage-blob reads it) applied.
fn azure(url: &Url, env: Env<'_>, location: &str) -> Result<MicrosoftAzureBuilder, StoreError> {
    let fail = |message: &str| StoreError::ArtifactStore {
        location: location.to_owned(),
        message: message.to_owned(),
    };
    require(env, location, Cloud::Azure)?;
    let container = url.username();
    let account = host(url)
        .and_then(|host| host.split_once('.'))
        .map(|(account, _)| account)
        .filter(|account| !account.is_empty());
    let (Some(account), false) = (account, container.is_empty()) else {
        return Err(fail(
            "expected <scheme>://<container>@<account>.blob.core.windows.net/<path>",
        ));
    };
    let mut builder = MicrosoftAzureBuilder::from_env()
        .with_account(account)
        .with_container_name(container);
    for secret in [
        "AZURE_STORAGE_ACCESS_KEY",
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_CLIENT_SECRET",
        "AZURE_STORAGE_SAS_TOKEN",
        "AZURE_STORAGE_SAS_KEY",
    ] {
        if let Some(value) = env(secret) {
            crate::secret::register(&value);
        }
    }
    if let Some(connection) = env("AZURE_STORAGE_CONNECTION_STRING") {
        crate::secret::register(&connection);
        let field = |name: &str| {
            connection.split(';').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                (key.trim() == name).then(|| value.trim().to_owned())
            })
        };
        if let Some(key) = field("AccountKey") {
            crate::secret::register(&key);
            builder = builder.with_access_key(key);
        }
        if let Some(sas) = field("SharedAccessSignature") {
            crate::secret::register(&sas);
            builder = builder.with_config(
                object_store::azure::AzureConfigKey::SasKey,
                sas.trim_start_matches('?'),
            );
        }
        if let Some(name) = field("AccountName") {
            builder = builder.with_account(name);
        }
        if let Some(endpoint) = field("BlobEndpoint") {
            let http = endpoint.starts_with("http://");
            builder = builder.with_endpoint(endpoint).with_allow_http(http);
        }
    }
    Ok(builder)
}

/// `text` on one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_not_found(err: &object_store::Error) -> bool {
    matches!(err, object_store::Error::NotFound { .. })
}

/// Whether `err` (its text `text`) says the bucket or container is missing, not a file: S3's
/// `NoSuchBucket`, Azure's `ContainerNotFound`, GCS's "bucket does not exist".
fn is_missing_bucket(err: &object_store::Error, text: &str) -> bool {
    let source = std::error::Error::source(err)
        .map(ToString::to_string)
        .unwrap_or_default();
    [
        "NoSuchBucket",
        "ContainerNotFound",
        "bucket does not exist",
        "The specified bucket",
    ]
    .iter()
    .any(|marker| text.contains(marker) || source.contains(marker))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn error_of(uri: &str, pairs: &[(&str, &str)]) -> Option<String> {
        DirectRepo::open_with(uri, &env_of(pairs), RetryPolicy::default())
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn missing_credentials_name_the_variables_for_each_cloud() {
        let s3 = error_of(
            "s3://bucket/1/models/m-1/artifacts",
            &[("HOME", "/nonexistent")],
        );
        assert!(
            s3.as_deref()
                .is_some_and(|e| e.contains("s3://bucket/1/models/m-1/artifacts")
                    && e.contains("AWS_ACCESS_KEY_ID")
                    && e.contains("AWS_SECRET_ACCESS_KEY")),
            "{s3:?}"
        );
        let gs = error_of("gs://bucket/1", &[("HOME", "/nonexistent")]);
        assert!(
            gs.as_deref()
                .is_some_and(|e| e.contains("GOOGLE_APPLICATION_CREDENTIALS")),
            "{gs:?}"
        );
        let az = error_of("wasbs://c@acct.blob.core.windows.net/1", &[]);
        assert!(
            az.as_deref()
                .is_some_and(|e| e.contains("AZURE_STORAGE_CONNECTION_STRING")
                    && e.contains("AZURE_STORAGE_ACCESS_KEY")),
            "{az:?}"
        );
        // An access key without its secret is not a credential.
        let half = error_of(
            "s3://bucket/1",
            &[("AWS_ACCESS_KEY_ID", "AKIA"), ("HOME", "/x")],
        );
        assert!(half.is_some_and(|e| e.contains("AWS_SECRET_ACCESS_KEY")));
    }

    #[test]
    fn credentials_present_build_a_client_without_network() {
        let aws = [
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret-canary-1"),
            ("MLFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:9"),
        ];
        assert_eq!(error_of("s3://bucket/1/models", &aws), None);
        assert_eq!(error_of("file:///tmp/chainlog-direct/1", &[]), None);
        let conn = [(
            "AZURE_STORAGE_CONNECTION_STRING",
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;\
             BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
        )];
        assert_eq!(
            error_of(
                "wasbs://models@devstoreaccount1.blob.core.windows.net/1",
                &conn
            ),
            None
        );
    }

    #[test]
    fn a_profile_in_the_shared_credentials_file_is_a_credential()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n\
             [team]\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=E\n",
        )?;
        let path = file.display().to_string();
        let env = [
            ("AWS_SHARED_CREDENTIALS_FILE", path.as_str()),
            ("AWS_PROFILE", "team"),
        ];
        assert_eq!(error_of("s3://bucket/1", &env), None);
        let keys = parse_profile(&std::fs::read_to_string(&file)?, "team");
        assert_eq!(
            keys.map(|k| (k.access_key_id, k.secret_access_key, k.session_token)),
            Some(("C".to_owned(), "D".to_owned(), Some("E".to_owned())))
        );
        assert!(parse_profile("[x]\naws_access_key_id=A\n", "x").is_none());
        Ok(())
    }

    #[test]
    fn unsupported_schemes_name_the_supported_ones() {
        let err = error_of("hdfs://namenode/mlflow/1", &[]);
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("`hdfs:`") && e.contains(SUPPORTED)),
            "{err:?}"
        );
        let err = error_of(
            "wasbs://acct.blob.core.windows.net/1",
            &[("AZURE_STORAGE_ACCESS_KEY", "k")],
        );
        assert!(err.is_some_and(|e| e.contains("<container>@<account>")));
    }

    #[test]
    fn a_location_without_a_scheme_is_a_path() {
        for path in ["/data/mlruns/1", "mlruns/1", "./art", "/odd:name/1"] {
            assert!(is_plain_path(path), "{path}");
        }
        for uri in [
            "file:///data/1",
            "s3://b/1",
            "mlflow-artifacts:/1",
            "hdfs://n/1",
        ] {
            assert!(!is_plain_path(uri), "{uri}");
        }
    }

    #[tokio::test]
    async fn a_file_location_round_trips_files() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let uri = format!("file://{}/1/models/m-1/artifacts", dir.path().display());
        round_trip(dir.path(), &uri).await
    }

    /// A server started with `--default-artifact-root /plain/path` gives plain paths.
    #[tokio::test]
    async fn a_plain_path_location_round_trips_files() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = format!("{}/1/models/m-1/artifacts", dir.path().display());
        round_trip(dir.path(), &path).await
    }

    /// Puts, lists and gets files at `uri`, whose folder is `1/models/m-1/artifacts` in `dir`.
    async fn round_trip(
        dir: &std::path::Path,
        uri: &str,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let repo = DirectRepo::open_with(uri, &env_of(&[]), RetryPolicy::default())?;
        repo.put("MLmodel", Bytes::from_static(b"flavors: {}\n"))
            .await?;
        repo.put("code/src/lib.rs", Bytes::from_static(b"//\n"))
            .await?;
        assert_eq!(repo.list_files().await?, ["MLmodel", "code/src/lib.rs"]);
        assert_eq!(
            repo.get("code/src/lib.rs").await?,
            Bytes::from_static(b"//\n")
        );
        assert!(dir.join("1/models/m-1/artifacts/code/src/lib.rs").is_file());
        let missing = repo.get("nope").await.err().map(|e| e.to_string());
        assert!(missing.is_some_and(|e| e.contains("does not exist")));
        Ok(())
    }
}
