//! MLflow's Prompt Registry over REST (MLFLOW.md §4), done the way `mlflow.genai` does it.
//!
//! A prompt is a registered model tagged `mlflow.prompt.is_prompt=true`; each prompt version is
//! a model version with source `dummy-source` (the only kind of source the server accepts for
//! prompts) and the version tags `mlflow.prompt.is_prompt`, `mlflow.prompt.text` (the text, or
//! a JSON list of `{"role", "content"}` for chat) and `_mlflow_prompt_type` (`text`|`chat`).
//! Loading reads a version by number (`model-versions/get`) or by alias
//! (`registered-models/alias`; the server resolves `latest` to the newest version itself).
//! Owns no public type; the store's [`PromptVersion`] is what comes back.

use reqwest::Method;
use serde_json::json;

use super::{
    http::Transport,
    wire::{KeyValue, ModelVersion, ModelVersionReply, RegisteredModelReply},
};
use crate::store::{PromptVersion, StoreError};

/// Tag marking registered models and versions that are prompts.
pub(super) const IS_PROMPT_TAG: &str = "mlflow.prompt.is_prompt";
/// Version tag holding the template.
pub(super) const TEXT_TAG: &str = "mlflow.prompt.text";
/// Version tag holding `text` or `chat`.
pub(super) const TYPE_TAG: &str = "_mlflow_prompt_type";
/// The source every prompt version has.
const PROMPT_SOURCE: &str = "dummy-source";

/// Registers a new version of prompt `name`, creating the prompt first when absent.
pub(super) async fn register(
    transport: &Transport,
    name: &str,
    kind: &str,
    template: &str,
    commit_message: Option<&str>,
) -> Result<PromptVersion, StoreError> {
    check_name(name)?;
    if !matches!(kind, "text" | "chat") {
        return Err(invalid(
            "register prompt",
            format!("prompt type `{kind}` is neither `text` nor `chat`"),
        ));
    }
    ensure_prompt(transport, name, commit_message).await?;

    let tags = [
        KeyValue {
            key: IS_PROMPT_TAG,
            value: "true",
        },
        KeyValue {
            key: TEXT_TAG,
            value: template,
        },
        KeyValue {
            key: TYPE_TAG,
            value: kind,
        },
    ];
    let mut body = json!({ "name": name, "source": PROMPT_SOURCE, "tags": tags });
    if let Some(message) = commit_message {
        body["description"] = json!(message);
    }
    let reply: ModelVersionReply = transport
        .post(
            "model-versions/create",
            "api/2.0/mlflow/model-versions/create",
            &body,
        )
        .await?;
    Ok(PromptVersion {
        name: reply.model_version.name,
        version: reply.model_version.version,
        kind: kind.to_owned(),
        template: template.to_owned(),
    })
}

/// Creates the registered model behind prompt `name` unless it exists; refuses a registered
/// model of that name that is not a prompt.
async fn ensure_prompt(
    transport: &Transport,
    name: &str,
    description: Option<&str>,
) -> Result<(), StoreError> {
    let existing = transport
        .get::<RegisteredModelReply>(
            "registered-models/get",
            "api/2.0/mlflow/registered-models/get",
            &[("name", name)],
        )
        .await;
    match existing {
        Ok(reply) => {
            let is_prompt = reply
                .registered_model
                .tags
                .iter()
                .any(|tag| tag.key == IS_PROMPT_TAG && tag.value == "true");
            if is_prompt {
                Ok(())
            } else {
                Err(invalid(
                    "register prompt",
                    format!("registered model `{name}` exists and is not a prompt"),
                ))
            }
        }
        Err(err) if has_code(&err, "RESOURCE_DOES_NOT_EXIST") => {
            let mut body = json!({
                "name": name,
                "tags": [KeyValue { key: IS_PROMPT_TAG, value: "true" }],
            });
            if let Some(description) = description {
                body["description"] = json!(description);
            }
            let created = transport
                .send_json(
                    "registered-models/create",
                    Method::POST,
                    "api/2.0/mlflow/registered-models/create",
                    &body,
                )
                .await;
            match created {
                // Another writer created it in between.
                Err(err) if has_code(&err, "RESOURCE_ALREADY_EXISTS") => Ok(()),
                other => other,
            }
        }
        Err(err) => Err(err),
    }
}

/// A prompt version by number (`"3"`) or alias (`"@champion"`, `"@latest"`).
pub(super) async fn load(
    transport: &Transport,
    name: &str,
    version_or_alias: &str,
) -> Result<PromptVersion, StoreError> {
    let reply = if let Some(alias) = version_or_alias.strip_prefix('@') {
        transport
            .get::<ModelVersionReply>(
                "registered-models/alias",
                "api/2.0/mlflow/registered-models/alias",
                &[("name", name), ("alias", alias)],
            )
            .await
            .map_err(|err| not_found(err, || format!("prompt `{name}` alias `@{alias}`")))?
    } else if !version_or_alias.is_empty() && version_or_alias.bytes().all(|b| b.is_ascii_digit()) {
        transport
            .get::<ModelVersionReply>(
                "model-versions/get",
                "api/2.0/mlflow/model-versions/get",
                &[("name", name), ("version", version_or_alias)],
            )
            .await
            .map_err(|err| {
                not_found(err, || {
                    format!("prompt `{name}` version {version_or_alias}")
                })
            })?
    } else {
        return Err(StoreError::NotFound {
            what: format!(
                "prompt `{name}` version `{version_or_alias}` (give a number or `@alias`)"
            ),
        });
    };
    to_prompt(reply.model_version)
}

fn to_prompt(version: ModelVersion) -> Result<PromptVersion, StoreError> {
    if version.tag(IS_PROMPT_TAG) != Some("true") {
        return Err(StoreError::NotFound {
            what: format!(
                "prompt `{}` (it is a registered model, not a prompt)",
                version.name
            ),
        });
    }
    let template = version.tag(TEXT_TAG).ok_or_else(|| StoreError::Mlflow {
        operation: "load prompt".to_owned(),
        code: "INVALID_RESPONSE".to_owned(),
        message: format!(
            "prompt `{}` version {} has no `{TEXT_TAG}` tag",
            version.name, version.version
        ),
    })?;
    Ok(PromptVersion {
        kind: version.tag(TYPE_TAG).unwrap_or("text").to_owned(),
        template: template.to_owned(),
        name: version.name,
        version: version.version,
    })
}

/// MLflow's prompt name rule: `^[a-zA-Z0-9_.-]+$`.
fn check_name(name: &str) -> Result<(), StoreError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(invalid(
            "register prompt",
            format!("prompt name `{name}` must match ^[a-zA-Z0-9_.-]+$"),
        ))
    }
}

/// A missing version or alias as [`StoreError::NotFound`]; other errors unchanged. (MLflow
/// answers a missing alias with `INVALID_PARAMETER_VALUE`, a missing version or model with
/// `RESOURCE_DOES_NOT_EXIST`.)
fn not_found(err: StoreError, what: impl FnOnce() -> String) -> StoreError {
    let missing = has_code(&err, "RESOURCE_DOES_NOT_EXIST")
        || matches!(&err, StoreError::Mlflow { code, message, .. }
            if code == "INVALID_PARAMETER_VALUE" && message.contains("not found"));
    if missing {
        StoreError::NotFound { what: what() }
    } else {
        err
    }
}

/// Whether `err` is MLflow's error `code`.
pub(super) fn has_code(err: &StoreError, code: &str) -> bool {
    err.code() == Some(code)
}

fn invalid(operation: &str, message: String) -> StoreError {
    StoreError::Mlflow {
        operation: operation.to_owned(),
        code: "INVALID_PARAMETER_VALUE".to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rest::wire::Tag;

    fn version(tags: &[(&str, &str)]) -> ModelVersion {
        ModelVersion {
            name: "p".to_owned(),
            version: "2".to_owned(),
            source: String::new(),
            tags: tags
                .iter()
                .map(|(key, value)| Tag {
                    key: (*key).to_owned(),
                    value: (*value).to_owned(),
                })
                .collect(),
        }
    }

    #[test]
    fn prompt_version_reads_text_and_type_tags() -> Result<(), StoreError> {
        let prompt = to_prompt(version(&[
            (IS_PROMPT_TAG, "true"),
            (TEXT_TAG, r#"[{"role":"user","content":"{{q}}"}]"#),
            (TYPE_TAG, "chat"),
        ]))?;
        assert_eq!(prompt.kind, "chat");
        assert_eq!(prompt.version, "2");
        assert_eq!(prompt.template, r#"[{"role":"user","content":"{{q}}"}]"#);
        Ok(())
    }

    #[test]
    fn untyped_prompt_is_text() -> Result<(), StoreError> {
        let prompt = to_prompt(version(&[(IS_PROMPT_TAG, "true"), (TEXT_TAG, "Hi {{x}}")]))?;
        assert_eq!(prompt.kind, "text");
        Ok(())
    }

    #[test]
    fn model_version_that_is_not_a_prompt_is_not_found() {
        let err = to_prompt(version(&[])).err();
        assert!(matches!(err, Some(StoreError::NotFound { .. })), "{err:?}");
    }

    #[test]
    fn prompt_names_follow_mlflow_rule() {
        assert!(check_name("summarize.v2_final-1").is_ok());
        for bad in ["", "has space", "slash/name", "émoji"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn missing_alias_becomes_not_found() {
        let err = StoreError::Mlflow {
            operation: "registered-models/alias".to_owned(),
            code: "INVALID_PARAMETER_VALUE".to_owned(),
            message: "Registered model alias nope not found.".to_owned(),
        };
        let err = not_found(err, || "prompt `p` alias `@nope`".to_owned());
        assert_eq!(err.to_string(), "prompt `p` alias `@nope` does not exist");
    }
}
