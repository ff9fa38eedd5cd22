//! `GET /v1/models`, `GET /v1/models/{id}` and `POST /v1/embeddings`: the endpoints whose
//! answers need no reply decision beyond faults and errors.
//!
//! Owns the model list format and deterministic embeddings in `float` and `base64` encoding.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use base64::Engine;
use serde_json::{Map, Value, json};

use super::{
    rules::{Endpoint, RequestView},
    synth,
    wire::{ApiError, json_kind, optional_u64, required_str},
};

/// When the listed models say they were created (a fixed date keeps answers stable).
const MODELS_CREATED: u64 = 1_700_000_000;

/// The model list.
pub fn list_models(models: &[String], created: bool) -> Response {
    let data: Vec<Value> = models
        .iter()
        .map(|id| {
            let mut entry = model_entry(id);
            if !created && let Some(entry) = entry.as_object_mut() {
                entry.remove("created");
            }
            entry
        })
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// One model, or OpenAI's 404.
pub fn get_model(models: &[String], id: &str) -> Response {
    if models.iter().any(|m| m == id) {
        Json(model_entry(id)).into_response()
    } else {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("The model `{id}` does not exist or you do not have access to it."),
        )
        .with_param("model")
        .with_code("model_not_found")
        .into_response()
    }
}

fn model_entry(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": MODELS_CREATED, "owned_by": "chainlog-mock"})
}

/// A checked embeddings request.
#[derive(Debug, Clone)]
pub struct EmbeddingsRequest {
    model: String,
    inputs: Vec<String>,
    base64: bool,
    dimensions: Option<usize>,
}

impl EmbeddingsRequest {
    /// Checks a request body.
    ///
    /// # Errors
    ///
    /// A 400 naming the parameter at fault.
    pub fn parse(body: &Map<String, Value>) -> Result<Self, ApiError> {
        let model = required_str(body, "model")?.to_owned();
        let inputs = match body.get("input") {
            None | Some(Value::Null) => {
                return Err(ApiError::invalid(
                    "input",
                    "you must provide an `input` parameter",
                ));
            }
            Some(Value::String(text)) => vec![text.clone()],
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(index, item)| match item {
                    Value::String(text) => Ok(text.clone()),
                    // Token arrays (one input, or one per input) are embedded by their text.
                    Value::Number(_) | Value::Array(_) => Ok(item.to_string()),
                    other => Err(ApiError::invalid(
                        format!("input[{index}]"),
                        format!(
                            "`input[{index}]` must be a string or tokens, not {}",
                            json_kind(other)
                        ),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(ApiError::invalid(
                    "input",
                    format!(
                        "`input` must be a string or a non-empty array, not {}",
                        json_kind(other)
                    ),
                ));
            }
        };
        let base64 = match body.get("encoding_format").and_then(Value::as_str) {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(ApiError::invalid(
                    "encoding_format",
                    format!("`encoding_format` must be float or base64, not `{other}`"),
                ));
            }
        };
        let dimensions = match optional_u64(body, "dimensions")? {
            Some(0) => {
                return Err(ApiError::invalid(
                    "dimensions",
                    "`dimensions` must be at least 1",
                ));
            }
            other => other.map(|d| usize::try_from(d).unwrap_or(usize::MAX).min(65_536)),
        };
        Ok(Self {
            model,
            inputs,
            base64,
            dimensions,
        })
    }

    /// What rules see of this request: each input as a user message.
    pub fn view(&self) -> RequestView<'_> {
        RequestView {
            endpoint: Endpoint::Embeddings,
            model: &self.model,
            messages: self
                .inputs
                .iter()
                .map(|text| ("user", text.clone()))
                .collect(),
            tools_offered: false,
        }
    }

    /// The embeddings answer; `default_dimensions` when the request names none.
    pub fn render(&self, default_dimensions: usize) -> Value {
        let dimensions = self.dimensions.unwrap_or(default_dimensions);
        let data: Vec<Value> = self
            .inputs
            .iter()
            .enumerate()
            .map(|(index, text)| {
                let vector = synth::embedding(text, dimensions);
                let embedding = if self.base64 {
                    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    json!(vector)
                };
                json!({"object": "embedding", "index": index, "embedding": embedding})
            })
            .collect();
        let tokens: u64 = self.inputs.iter().map(|t| synth::count_tokens(t)).sum();
        json!({
            "object": "list",
            "data": data,
            "model": self.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })
    }
}
