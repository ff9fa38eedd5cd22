//! Structured output: JSON Schemas generated from Rust types in the form OpenAI's strict mode
//! accepts, and [`chat_json`], which asks for a type and parses the reply into it.
//!
//! The schema comes from schemars (draft 2020-12, the deserialize contract) and is then
//! rewritten for strict mode: every object gets `additionalProperties: false` and lists all
//! its properties as `required` (optional fields stay nullable, as schemars writes
//! `Option<T>`), `oneOf` becomes `anyOf`, and keywords strict mode rejects (`$schema`,
//! `default`, non-string `format`s such as `uint32`) are dropped. A reply is checked against
//! the type's own (unrewritten) schema with `jsonschema` first, for a message that names the
//! field, then deserialized with serde.

use schemars::{
    JsonSchema, Schema,
    generate::SchemaSettings,
    transform::{RecursiveTransform, Transform},
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    ChatMessage, ChatRequest, ChatResponse, LlmClient, LlmError, ResponseFormat, ToolChoice,
    ToolSpec,
};

/// How [`chat_json`] asks for structured output (`llm.structured_output`), for servers with
/// fewer features than OpenAI's. Whatever the method, the reply is checked against the type's
/// schema and parsed the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructuredOutput {
    /// `response_format: json_schema` in strict mode (OpenAI, vLLM, recent Ollama).
    #[default]
    JsonSchema,
    /// `response_format: {"type": "json_object", "schema": ...}` — the schema nested the way
    /// llama.cpp's server (and vLLM) constrain output with it, ignored by servers that do not
    /// know it — and the schema in a system message too.
    JsonObject,
    /// One tool whose parameters are the schema, which the model must call
    /// (`tool_choice: required`); its arguments are the reply.
    Tool,
    /// No request feature at all: the schema in a system message, the reply validated.
    Prompt,
}

impl StructuredOutput {
    /// The allowed config values, for error messages.
    pub const ALLOWED: &'static str = "json_schema, json_object, tool, prompt";
}

/// String formats OpenAI's strict mode supports; others are dropped.
const STRICT_STRING_FORMATS: &[&str] = &[
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uuid",
];

/// How many schema violations a [`LlmError::Schema`] message lists.
const MAX_REPORTED_VIOLATIONS: usize = 5;

/// The JSON Schema of `T` in the form OpenAI's strict mode accepts (see the module docs).
///
/// # Examples
///
/// ```
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Answer { text: String, confidence: Option<f64> }
/// let schema = chainlog::llm::json_schema_for::<Answer>();
/// assert_eq!(schema["additionalProperties"], false);
/// let required = schema["required"].as_array().unwrap();
/// assert!(required.contains(&"confidence".into()), "optional fields are required too");
/// assert_eq!(schema["properties"]["confidence"]["type"], serde_json::json!(["number", "null"]));
/// ```
pub fn json_schema_for<T: JsonSchema>() -> Value {
    let mut schema = schema_for::<T>();
    RecursiveTransform(make_strict).transform(&mut schema);
    schema.to_value()
}

/// Sends `request` asking for JSON that fits `T` and parses the reply into `T`.
///
/// How it asks is the client's [`LlmClient::structured_output`]: by default a `json_schema`
/// response format in strict mode, named after `T`; see [`StructuredOutput`] for the others.
///
/// `T` should be a struct: OpenAI wants an object at the top of a response schema.
///
/// # Errors
///
/// The call's [`LlmError`], or [`LlmError::Schema`] naming `T` and what did not fit when the
/// reply is not JSON or does not fit `T`.
///
/// # Examples
///
/// ```
/// use chainlog::llm::{ChatMessage, ChatRequest, ChatResponse, ScriptedClient, chat_json};
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct City { name: String }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), chainlog::llm::LlmError> {
/// let client = ScriptedClient::new("gpt-4o-mini")
///     .with_response(ChatResponse::from_text(r#"{"name":"Paris"}"#));
/// let request = ChatRequest::new(vec![ChatMessage::user("A city?")]);
/// let (city, _response) = chat_json::<City>(&client, request).await?;
/// assert_eq!(city.name, "Paris");
/// # Ok(())
/// # }
/// ```
pub async fn chat_json<T: DeserializeOwned + JsonSchema>(
    client: &dyn LlmClient,
    request: ChatRequest,
) -> Result<(T, ChatResponse), LlmError> {
    let name = format_name(&T::schema_name());
    let schema = json_schema_for::<T>();
    let method = client.structured_output();
    let request = match method {
        StructuredOutput::JsonSchema => request.with_response_format(ResponseFormat::JsonSchema {
            name: name.clone(),
            schema,
            strict: true,
        }),
        StructuredOutput::JsonObject => with_schema_instruction(request, &schema)
            .with_response_format(ResponseFormat::JsonObjectWithSchema { schema }),
        StructuredOutput::Prompt => with_schema_instruction(request, &schema),
        StructuredOutput::Tool => request
            .with_tools(vec![ToolSpec::new(
                name.clone(),
                "Give the answer as this function's arguments.",
                schema,
            )])
            .with_tool_choice(ToolChoice::Required),
    };
    let response = client.chat(&request).await?;
    let value = match method {
        StructuredOutput::Tool => {
            let call = response
                .tool_calls
                .iter()
                .find(|call| call.name == name)
                .ok_or_else(|| LlmError::Schema {
                    type_name: short_type_name::<T>(),
                    message: format!(
                        "llm.structured_output is `tool` but the reply has no call of tool `{name}` \
                         (the server may not honour tool_choice; try json_object or prompt)"
                    ),
                })?;
            parse_reply::<T>(Some(&call.arguments))?
        }
        _ => parse_reply::<T>(response.content.as_deref())?,
    };
    Ok((value, response))
}

/// `request` with a system message, first, that asks for one JSON object fitting `schema`.
fn with_schema_instruction(mut request: ChatRequest, schema: &Value) -> ChatRequest {
    let instruction = format!(
        "Answer with one JSON object and nothing else. It must fit this JSON Schema:\n{schema}"
    );
    request.messages.insert(0, ChatMessage::system(instruction));
    request
}

/// Parses a reply's text into `T`: JSON first, then `T`'s schema, then serde.
pub(crate) fn parse_reply<T: DeserializeOwned + JsonSchema>(
    content: Option<&str>,
) -> Result<T, LlmError> {
    let schema_error = |message: String| LlmError::Schema {
        type_name: short_type_name::<T>(),
        message,
    };
    let text = content
        .map(strip_code_fence)
        .filter(|text| !text.is_empty())
        .ok_or_else(|| schema_error("the reply has no text".to_owned()))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|err| schema_error(format!("the reply is not JSON ({err}): {}", excerpt(text))))?;
    if let Ok(validator) = jsonschema::validator_for(&schema_for::<T>().to_value()) {
        let violations: Vec<String> = validator
            .iter_errors(&value)
            .map(|error| {
                let path = error.instance_path().to_string();
                let at = if path.is_empty() {
                    "/".to_owned()
                } else {
                    path
                };
                format!("{at}: {error}")
            })
            .collect();
        if !violations.is_empty() {
            let mut message =
                violations[..violations.len().min(MAX_REPORTED_VIOLATIONS)].join("; ");
            if violations.len() > MAX_REPORTED_VIOLATIONS {
                let more = violations.len() - MAX_REPORTED_VIOLATIONS;
                message.push_str(&format!(" (and {more} more)"));
            }
            return Err(schema_error(message));
        }
    }
    serde_json::from_value(value).map_err(|err| schema_error(err.to_string()))
}

/// `T`'s own schema, as schemars writes it, without `$schema`.
fn schema_for<T: JsonSchema>() -> Schema {
    SchemaSettings::draft2020_12()
        .with(|settings| settings.meta_schema = None)
        .into_generator()
        .into_root_schema_for::<T>()
}

/// Rewrites one schema node for OpenAI's strict mode (applied recursively).
fn make_strict(schema: &mut Schema) {
    let Some(node) = schema.as_object_mut() else {
        return;
    };
    node.remove("$schema");
    node.remove("default");
    let drop_format = node
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|format| !STRICT_STRING_FORMATS.contains(&format));
    if drop_format {
        node.remove("format");
    }
    if !node.contains_key("anyOf")
        && let Some(one_of) = node.remove("oneOf")
    {
        node.insert("anyOf".to_owned(), one_of);
    }
    let is_object = node.get("type").is_some_and(|kind| match kind {
        Value::String(kind) => kind == "object",
        Value::Array(kinds) => kinds.iter().any(|kind| kind == "object"),
        _ => false,
    });
    let properties: Option<Vec<Value>> = node
        .get("properties")
        .and_then(Value::as_object)
        .map(|properties| properties.keys().cloned().map(Value::String).collect());
    // A map (`additionalProperties` holding a schema) is left alone: strict mode cannot
    // express it, and closing it would reject every key.
    let open_map = node
        .get("additionalProperties")
        .is_some_and(Value::is_object);
    if (properties.is_some() || is_object) && !open_map {
        node.insert(
            "required".to_owned(),
            Value::Array(properties.unwrap_or_default()),
        );
        node.insert("additionalProperties".to_owned(), Value::Bool(false));
    }
}

/// A `response_format` name from a schema name: `a-zA-Z0-9_-`, at most 64 characters.
fn format_name(schema_name: &str) -> String {
    let name: String = schema_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "response".to_owned()
    } else {
        name
    }
}

/// `T`'s name without module paths: `Vec<Weather>` rather than
/// `alloc::vec::Vec<my_crate::Weather>`.
pub(crate) fn short_type_name<T: ?Sized>() -> String {
    let full = std::any::type_name::<T>();
    let mut out = String::with_capacity(full.len());
    let mut token = String::new();
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            token.push(c);
        } else {
            out.push_str(token.rsplit("::").next().unwrap_or_default());
            token.clear();
            out.push(c);
        }
    }
    out.push_str(token.rsplit("::").next().unwrap_or_default());
    out
}

/// The JSON inside a Markdown code fence (some servers wrap JSON replies in one), or the text.
fn strip_code_fence(text: &str) -> &str {
    let trimmed = text.trim();
    let Some(inner) = trimmed.strip_prefix("```") else {
        return trimmed;
    };
    let inner = inner.strip_suffix("```").unwrap_or(inner);
    // Drop the info string (`json`) on the opening line.
    match inner.split_once('\n') {
        Some((info, body)) if !info.trim_start().starts_with(['{', '[']) => body.trim(),
        _ => inner.trim(),
    }
}

/// The start of a long text from outside (a provider's error body, a stream event, a reply),
/// for error messages: scrubbed of every secret first ([`crate::secret::scrub`]), then cut,
/// so a cut can never leave half a key unmasked. Every provider text that reaches an
/// [`LlmError`] goes through here or through `error_chain`.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    let text = crate::secret::scrub(text);
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize, JsonSchema, PartialEq)]
    struct Forecast {
        city: String,
        days: u32,
        #[serde(default)]
        note: Option<String>,
        hours: Vec<Hour>,
        kind: Kind,
    }

    #[derive(Debug, Deserialize, JsonSchema, PartialEq)]
    struct Hour {
        at: String,
        celsius: f64,
    }

    #[derive(Debug, Deserialize, JsonSchema, PartialEq)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Kind {
        Sunny,
        Rain { mm: f64 },
    }

    fn objects(value: &Value, found: &mut Vec<Value>) {
        match value {
            Value::Object(map) => {
                if map.contains_key("properties") {
                    found.push(value.clone());
                }
                map.values().for_each(|v| objects(v, found));
            }
            Value::Array(list) => list.iter().for_each(|v| objects(v, found)),
            _ => {}
        }
    }

    #[test]
    fn strict_schema_closes_every_object_and_requires_every_property() {
        let schema = json_schema_for::<Forecast>();
        let mut found = Vec::new();
        objects(&schema, &mut found);
        assert!(found.len() >= 4, "{schema:#}");
        for object in found {
            assert_eq!(object["additionalProperties"], false, "{object:#}");
            let keys: Vec<&String> = object["properties"].as_object().unwrap().keys().collect();
            let required: Vec<&str> = object["required"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(keys, required, "{object:#}");
        }
        let text = schema.to_string();
        for banned in ["\"$schema\"", "\"oneOf\"", "\"default\"", "uint32"] {
            assert!(!text.contains(banned), "{banned} in {schema:#}");
        }
        assert_eq!(
            schema["properties"]["note"]["type"],
            json!(["string", "null"])
        );
    }

    #[test]
    fn reply_that_fits_parses() {
        let reply = r#"{"city":"Paris","days":2,"note":null,"hours":[{"at":"9","celsius":12.5}],"kind":{"type":"rain","mm":3}}"#;
        let forecast = parse_reply::<Forecast>(Some(reply)).unwrap();
        assert_eq!(forecast.kind, Kind::Rain { mm: 3.0 });
        let fenced = format!("```json\n{reply}\n```");
        assert_eq!(parse_reply::<Forecast>(Some(&fenced)).unwrap(), forecast);
    }

    #[test]
    fn reply_that_does_not_fit_names_type_and_field() {
        let reply = r#"{"city":"Paris","days":"two","hours":[],"kind":{"type":"sunny"}}"#;
        let err = parse_reply::<Forecast>(Some(reply)).unwrap_err();
        let LlmError::Schema { type_name, message } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(type_name, "Forecast");
        assert!(message.contains("/days"), "{message}");
        let err = parse_reply::<Forecast>(Some("sunny, 20 degrees")).unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
        let err = parse_reply::<Forecast>(None).unwrap_err();
        assert!(err.to_string().contains("no text"), "{err}");
    }

    #[test]
    fn names_are_short_and_valid() {
        assert_eq!(short_type_name::<Vec<Forecast>>(), "Vec<Forecast>");
        assert_eq!(format_name("Wrapper<Forecast>"), "Wrapper_Forecast_");
        assert_eq!(format_name(""), "response");
    }
}
