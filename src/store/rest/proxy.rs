//! The tracking server's artifact proxy as an [`ArtifactRepo`]: what MLflow's Python client
//! uses for a server started with `--serve-artifacts` (the default).
//!
//! Owns the mapping `mlflow-artifacts:/<rel>` → `/api/2.0/mlflow-artifacts/artifacts/<rel>`:
//! `GET …?path=` lists one directory level (the levels' directories are listed
//! [`TRANSFER_CONCURRENCY`] at a time), `GET …/<file>` downloads, `PUT …/<file>` uploads.
//! Requests go through the store's [`Transport`] (its auth and MLflow's retry settings).

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use reqwest::Method;

use super::{
    http::{Payload, Transport},
    transfer::{ArtifactRepo, TRANSFER_CONCURRENCY, is_safe_relative},
    wire::ArtifactList,
};
use crate::store::StoreError;

/// The artifact proxy's route.
const ARTIFACTS_ROUTE: &str = "api/2.0/mlflow-artifacts/artifacts";
/// The scheme of artifacts served by the tracking server.
pub(super) const SCHEME: &str = "mlflow-artifacts:";

/// One artifact root behind the server's proxy.
pub(super) struct ProxyRepo {
    http: Transport,
    /// The proxy path of the root (`1/models/m-…/artifacts`).
    root: String,
}

impl ProxyRepo {
    /// The repository of `artifact_uri` (`mlflow-artifacts:/…`).
    ///
    /// # Errors
    ///
    /// As [`proxy_path`].
    pub(super) fn new(http: Transport, artifact_uri: &str) -> Result<Self, StoreError> {
        Ok(Self {
            http,
            root: proxy_path(artifact_uri)?,
        })
    }

    /// One directory's entries: `(dir, [(name, is_dir)])`; a name that could leave the
    /// directory is refused.
    async fn list_dir(&self, dir: String) -> Result<(String, Vec<(String, bool)>), StoreError> {
        let path = if dir.is_empty() {
            self.root.clone()
        } else {
            format!("{}/{dir}", self.root)
        };
        let listed: ArtifactList = self
            .http
            .get("artifact listing", ARTIFACTS_ROUTE, &[("path", &path)])
            .await?;
        let mut entries = Vec::with_capacity(listed.files.len());
        for entry in listed.files {
            let name = entry.path.rsplit('/').next().unwrap_or_default();
            if !is_safe_relative(name) {
                return Err(StoreError::Mlflow {
                    operation: "artifact listing".to_owned(),
                    code: "INVALID_RESPONSE".to_owned(),
                    message: format!("unsafe artifact path `{}` under `{path}`", entry.path),
                });
            }
            entries.push((name.to_owned(), entry.is_dir));
        }
        Ok((dir, entries))
    }
}

#[async_trait]
impl ArtifactRepo for ProxyRepo {
    async fn list_files(&self) -> Result<Vec<String>, StoreError> {
        let mut files = Vec::new();
        let mut level = vec![String::new()];
        while !level.is_empty() {
            let listed: Vec<(String, Vec<(String, bool)>)> = stream::iter(level)
                .map(|dir| self.list_dir(dir))
                .buffer_unordered(TRANSFER_CONCURRENCY)
                .try_collect()
                .await?;
            level = Vec::new();
            for (dir, entries) in listed {
                for (name, is_dir) in entries {
                    let relative = if dir.is_empty() {
                        name
                    } else {
                        format!("{dir}/{name}")
                    };
                    if is_dir {
                        level.push(relative);
                    } else {
                        files.push(relative);
                    }
                }
            }
        }
        files.sort();
        Ok(files)
    }

    async fn get(&self, relative: &str) -> Result<Bytes, StoreError> {
        let operation = format!("artifact download of `{relative}`");
        self.http
            .send(
                &operation,
                Method::GET,
                &format!("{ARTIFACTS_ROUTE}/{}/{relative}", self.root),
                &[],
                Payload::Empty,
            )
            .await
            .map_err(|err| {
                if err.code() == Some("RESOURCE_DOES_NOT_EXIST") {
                    StoreError::NotFound {
                        what: format!("artifact `{relative}` under `{}`", self.root),
                    }
                } else {
                    err
                }
            })
    }

    async fn put(&self, relative: &str, bytes: Bytes) -> Result<(), StoreError> {
        let operation = format!("artifact upload of `{relative}`");
        let path = format!("{ARTIFACTS_ROUTE}/{}/{relative}", self.root);
        self.http.put_bytes(&operation, &path, bytes).await
    }
}

/// The proxy path of an `mlflow-artifacts:` URI: `mlflow-artifacts:/1/models/m-x/artifacts`
/// (or `mlflow-artifacts://host:port/1/…`) → `1/models/m-x/artifacts`.
///
/// # Errors
///
/// [`StoreError::Mlflow`] (`UNSUPPORTED_ARTIFACT_URI`) for another scheme or an empty path.
pub(super) fn proxy_path(artifact_uri: &str) -> Result<String, StoreError> {
    let unsupported = || StoreError::Mlflow {
        operation: "artifact transfer".to_owned(),
        code: "UNSUPPORTED_ARTIFACT_URI".to_owned(),
        message: format!("artifact location `{artifact_uri}` has no path under the proxy"),
    };
    let rest = artifact_uri.strip_prefix(SCHEME).ok_or_else(unsupported)?;
    let path = match rest.strip_prefix("//") {
        // An authority names the server; the path after it is what the proxy serves.
        Some(authority_and_path) => authority_and_path
            .split_once('/')
            .map_or("", |(_, path)| path),
        None => rest,
    };
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Err(unsupported());
    }
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_path_strips_scheme_and_authority() -> Result<(), StoreError> {
        assert_eq!(
            proxy_path("mlflow-artifacts:/1/models/m-abc/artifacts")?,
            "1/models/m-abc/artifacts"
        );
        assert_eq!(
            proxy_path("mlflow-artifacts://mlflow.internal:5000/1/models/m-abc/artifacts/")?,
            "1/models/m-abc/artifacts"
        );
        Ok(())
    }

    #[test]
    fn a_proxy_uri_without_a_path_is_refused() {
        for uri in ["s3://bucket/1/models/m-abc", "mlflow-artifacts:/"] {
            let err = proxy_path(uri).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains("UNSUPPORTED_ARTIFACT_URI")),
                "{uri}: {err:?}"
            );
        }
    }
}
