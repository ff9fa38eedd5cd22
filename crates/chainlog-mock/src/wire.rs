//! OpenAI's error wire format and the request-body checks every endpoint shares.
//!
//! Owns [`ApiError`] — a status, OpenAI's `{"error":{"message","type","param","code"}}` body and
//! any extra headers — and the helpers that turn a malformed request into a 400 naming what is
//! wrong. It does not decide which reply a valid request gets (see `reply` and `synth`).

use axum::{
    Json,
    http::{HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

/// An error answered in OpenAI's format: the status, the four body fields and extra headers.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status of the answer.
    pub status: StatusCode,
    /// Human-readable message: says what is wrong and, for bad input, where.
    pub message: String,
    /// OpenAI's `type` (`invalid_request_error`, `rate_limit_error`, `insufficient_quota`, ...).
    pub kind: String,
    /// The request parameter at fault, when there is one (`messages[1].role`).
    pub param: Option<String>,
    /// OpenAI's machine-readable `code` (`rate_limit_exceeded`, `invalid_api_key`, ...).
    pub code: Option<String>,
    /// Headers sent with the error (`retry-after`, `x-ratelimit-*`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// An error with the given status, message and OpenAI `type`, no param, code or headers.
    pub fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind: kind.to_owned(),
            param: None,
            code: None,
            headers: Vec::new(),
        }
    }

    /// A 400 `invalid_request_error` naming the parameter at fault.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
            .with_param(param.into())
    }

    /// Sets `param`.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets `code`.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Adds a header to the answer.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The JSON body OpenAI sends for this error.
    pub fn body(&self) -> Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(name), value);
            }
        }
        response
    }
}

/// Parses a request body as a JSON object.
///
/// # Errors
///
/// A 400 that quotes the parser's position when the body is not JSON, or says what it is when it
/// is JSON but not an object.
pub fn parse_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!(
                "the request body must be a JSON object, not {}",
                json_kind(&other)
            ),
        )),
        Err(err) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!(
                "We could not parse the JSON body of your request: {err}. (HINT: the body must be valid JSON.)"
            ),
        )),
    }
}

/// The name of a JSON value's kind, for error messages.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The required string field `key` of a request body.
///
/// # Errors
///
/// A 400 naming `key` when it is missing or not a string.
pub fn required_str<'a>(
    body: &'a serde_json::Map<String, Value>,
    key: &str,
) -> Result<&'a str, ApiError> {
    match body.get(key) {
        Some(Value::String(value)) => Ok(value),
        None | Some(Value::Null) => Err(ApiError::invalid(
            key,
            format!("you must provide a `{key}` parameter"),
        )),
        Some(other) => Err(ApiError::invalid(
            key,
            format!("`{key}` must be a string, not {}", json_kind(other)),
        )),
    }
}

/// The optional boolean field `key`.
///
/// # Errors
///
/// A 400 naming `key` when it is present and not a boolean.
pub fn optional_bool(body: &serde_json::Map<String, Value>, key: &str) -> Result<bool, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(value)) => Ok(*value),
        Some(other) => Err(ApiError::invalid(
            key,
            format!("`{key}` must be a boolean, not {}", json_kind(other)),
        )),
    }
}

/// The optional non-negative integer field `key`.
///
/// # Errors
///
/// A 400 naming `key` when it is present and not a non-negative integer.
pub fn optional_u64(
    body: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<u64>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or_else(|| {
            ApiError::invalid(
                key,
                format!(
                    "`{key}` must be a non-negative integer, not {}",
                    json_kind(value)
                ),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_the_four_openai_keys() {
        let body = ApiError::invalid("messages", "bad").with_code("x").body();
        let error = &body["error"];
        assert_eq!(error["message"], "bad");
        assert_eq!(error["type"], "invalid_request_error");
        assert_eq!(error["param"], "messages");
        assert_eq!(error["code"], "x");
    }

    #[test]
    fn parse_object_names_position_of_bad_json() {
        let err = parse_object(b"{\"model\": }").unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("line 1 column 11"), "{}", err.message);
    }

    #[test]
    fn parse_object_refuses_non_objects() {
        let err = parse_object(b"[1]").unwrap_err();
        assert!(err.message.contains("not an array"), "{}", err.message);
    }
}
