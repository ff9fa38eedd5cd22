//! The Prompt Registry as `mlflow.genai.register_prompt` writes it in a SQLite store: a
//! prompt is a registered model tagged `mlflow.prompt.is_prompt=true` (its first commit
//! message as description); each version is a model version with source and storage location
//! `dummy-source`, the commit message as description, and the tags
//! `mlflow.prompt.is_prompt=true`, `_mlflow_prompt_type` (`text`|`chat`) and
//! `mlflow.prompt.text` (the template; for chat, the messages as Python's `json.dumps`
//! writes them).

use rusqlite::{Transaction, params};
use serde_json::Value;

use crate::store::PromptVersion;

use super::{
    error::{TxError, invalid, not_found},
    experiment::WORKSPACE,
    registry::{self, IS_PROMPT_TAG, NewVersion},
    validate::{self, MAX_REGISTRY_TAG_VALUE},
};

/// The version tag holding the template (`PROMPT_TEXT_TAG_KEY`).
const TEXT_TAG: &str = "mlflow.prompt.text";
/// The version tag holding `text` or `chat` (`PROMPT_TYPE_TAG_KEY`).
const TYPE_TAG: &str = "_mlflow_prompt_type";
/// The placeholder source of every prompt version (`_CLIENT_PROMPT_SOURCE_PLACEHOLDER`).
const SOURCE: &str = "dummy-source";

/// Registers a new version of prompt `name` (creating the prompt if absent).
///
/// # Errors
///
/// An invalid name or kind, a chat template that is not a JSON list of messages with `role`
/// and `content`, a template over 100,000 characters, or a name taken by a registered model
/// that is not a prompt.
pub(super) fn register(
    tx: &Transaction<'_>,
    name: &str,
    kind: &str,
    template: &str,
    commit_message: Option<&str>,
) -> Result<PromptVersion, TxError> {
    const OP: &str = "prompts/create";
    validate::prompt_name(name)?;
    let text = match kind {
        "text" => template.to_owned(),
        "chat" => chat_text(template)?,
        other => {
            return Err(invalid(
                OP,
                format!("prompt kind `{other}` is neither `text` nor `chat`"),
            )
            .into());
        }
    };
    let len = text.chars().count();
    if len > MAX_REGISTRY_TAG_VALUE {
        return Err(invalid(
            OP,
            format!("prompt `{name}` has {len} characters; the limit is {MAX_REGISTRY_TAG_VALUE}"),
        )
        .into());
    }
    match registry::find(tx, name)? {
        Some(found) if !found.is_prompt => {
            return Err(invalid(
                OP,
                format!(
                    "a registered model called `{name}` exists; MLflow does not allow a prompt \
                     with the same name as a model"
                ),
            )
            .into());
        }
        Some(_) => {}
        None => registry::create(tx, name, commit_message, &[(IS_PROMPT_TAG, "true")])?,
    }
    let version = registry::create_version(
        tx,
        name,
        &NewVersion {
            source: SOURCE,
            storage_location: SOURCE,
            run_id: None,
            description: commit_message,
            tags: &[(IS_PROMPT_TAG, "true"), (TYPE_TAG, kind), (TEXT_TAG, &text)],
        },
    )?;
    Ok(PromptVersion {
        name: name.to_owned(),
        version: version.to_string(),
        kind: kind.to_owned(),
        template: text,
    })
}

/// A chat template checked (a non-empty JSON list of objects with a string `role` and a
/// `content`) and re-encoded as MLflow stores it: `json.dumps` of the list, each message
/// with `role`, then `content`, then any other keys.
fn chat_text(template: &str) -> Result<String, TxError> {
    let bad = |why: &str| {
        TxError::from(invalid(
            "prompts/create",
            format!(
                "a chat template must be a JSON list of {{\"role\", \"content\"}} messages: {why}"
            ),
        ))
    };
    let parsed: Value = serde_json::from_str(template).map_err(|e| bad(&e.to_string()))?;
    let Value::Array(messages) = parsed else {
        return Err(bad("not a list"));
    };
    if messages.is_empty() {
        return Err(bad("the list is empty"));
    }
    let mut parts = Vec::with_capacity(messages.len());
    for message in &messages {
        let Value::Object(fields) = message else {
            return Err(bad("a message is not an object"));
        };
        let (Some(role @ Value::String(_)), Some(content)) =
            (fields.get("role"), fields.get("content"))
        else {
            return Err(bad("a message lacks a string `role` or a `content`"));
        };
        let mut text = String::from("{");
        let ordered = [("role", role), ("content", content)].into_iter().chain(
            fields
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "role" | "content"))
                .map(|(k, v)| (k.as_str(), v)),
        );
        for (i, (key, value)) in ordered.enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            let key = crate::pyjson::dumps(key).map_err(|e| bad(&e.to_string()))?;
            let value = crate::pyjson::dumps(value).map_err(|e| bad(&e.to_string()))?;
            text.push_str(&key);
            text.push_str(": ");
            text.push_str(&value);
        }
        text.push('}');
        parts.push(text);
    }
    Ok(format!("[{}]", parts.join(", ")))
}

/// Prompt `name` at `version_or_alias`: `"3"`, `"@alias"`, or `"@latest"` (the newest).
///
/// # Errors
///
/// [`StoreError::NotFound`](crate::store::StoreError::NotFound) for an unknown prompt,
/// version or alias, or a registered model that is not a prompt.
pub(super) fn load(
    tx: &Transaction<'_>,
    name: &str,
    version_or_alias: &str,
) -> Result<PromptVersion, TxError> {
    match registry::find(tx, name)? {
        Some(found) if found.is_prompt => {}
        _ => return Err(not_found(format!("prompt `{name}`")).into()),
    }
    let version = match version_or_alias.strip_prefix('@') {
        Some("latest") => registry::latest_version(tx, name)?,
        Some(alias) => registry::alias_version(tx, name, alias)?,
        None => {
            let number = validate::version("prompts/get", name, version_or_alias)?;
            registry::version_exists(tx, name, number)?.then_some(number)
        }
    };
    let Some(version) = version else {
        return Err(not_found(format!("prompt `{name}` version {version_or_alias}")).into());
    };
    let mut stmt = tx.prepare(
        "SELECT \"key\", value FROM model_version_tags WHERE name = ?1 AND version = ?2 AND workspace = ?3",
    )?;
    let mut text = None;
    let mut kind = None;
    let rows = stmt.query_map(params![name, version, WORKSPACE], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
    })?;
    for row in rows {
        match row? {
            (key, value) if key == TEXT_TAG => text = value,
            (key, value) if key == TYPE_TAG => kind = value,
            _ => {}
        }
    }
    let Some(template) = text else {
        return Err(not_found(format!("the template of prompt `{name}` version {version}")).into());
    };
    Ok(PromptVersion {
        name: name.to_owned(),
        version: version.to_string(),
        // MLflow reads a version without the type tag as text.
        kind: kind.unwrap_or_else(|| "text".to_owned()),
        template,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_template_is_stored_as_python_json_dumps() {
        let stored = chat_text(r#"[{"content":"hi {{x}}","role":"system"},{"role":"user","content":"{{y}}","name":"é"}]"#)
            .unwrap();
        // What MLflow 3.17.2 stored for [{"role": "system", "content": "hi {{x}}"}, ...].
        assert_eq!(
            stored,
            r#"[{"role": "system", "content": "hi {{x}}"}, {"role": "user", "content": "{{y}}", "name": "\u00e9"}]"#
        );
    }

    #[test]
    fn chat_template_without_role_is_refused() {
        for bad in ["not json", "{}", "[]", r#"[{"content": "x"}]"#, r#"["x"]"#] {
            assert!(chat_text(bad).is_err(), "{bad}");
        }
    }
}
