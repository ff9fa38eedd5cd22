//! Recording an exchange ([`Cassette::record`], or [`Cassette::reserve`] then
//! [`Cassette::fill`] for a stream passed through as it arrives): secrets scrubbed from every
//! string, response headers kept only from an allow-list, the n-th interaction with the same
//! key (counted since the cassette was loaded) replaced or the new one appended, so identical
//! requests keep their order; then the file saved.

use serde_json::Value;

use super::{
    format::{
        Cassette, CassetteError, Interaction, RecordedBody, RecordedRequest, RecordedResponse,
        SseEvent,
    },
    key::{listed, normalize_request},
};

/// What replaces a secret in a recorded cassette.
pub(super) const REDACTED: &str = "[REDACTED]";
/// Secrets shorter than this are not scrubbed (they would redact ordinary words).
const MIN_SECRET_CHARS: usize = 8;
/// Headers never recorded, whatever the allow-list says.
const DENIED_HEADERS: &str =
    "authorization api-key openai-organization openai-project set-cookie cookie";
/// Response headers recorded, besides `x-ratelimit-*`.
const KEPT_HEADERS: &str =
    "content-type retry-after retry-after-ms openai-processing-ms x-request-id";

impl Cassette {
    /// Records an exchange: scrubs `secrets` (values of at least 8 characters) and unsafe
    /// headers, then saves atomically. The n-th recording of a key since the cassette was
    /// loaded replaces the n-th interaction with that key, or is appended: identical requests
    /// (a retried 429 and its 200, a repeated call) keep their order, and recording a session
    /// again over its cassette replaces it in place. Returns the interaction's index. A secret
    /// inside the request body is scrubbed from the key too, so that request will not match
    /// on replay. Blocking file I/O.
    ///
    /// # Errors
    ///
    /// [`CassetteError::Write`] when the file cannot be written.
    pub(crate) fn record(
        &mut self,
        method: &str,
        path: &str,
        body: &Value,
        response: RecordedResponse,
        secrets: &[&str],
    ) -> Result<usize, CassetteError> {
        let index = self.reserve(method, path, body, secrets);
        self.fill(index, response, secrets)?;
        Ok(index)
    }

    /// Takes the slot of an exchange whose answer is still arriving (a stream passed through
    /// as it comes), by the same rule as [`record`](Self::record); an appended slot holds a
    /// 502 until [`fill`](Self::fill)ed. Nothing is saved.
    pub(crate) fn reserve(
        &mut self,
        method: &str,
        path: &str,
        body: &Value,
        secrets: &[&str],
    ) -> usize {
        let secrets = usable(secrets);
        let request = RecordedRequest {
            method: scrub_str(&method.to_ascii_uppercase(), &secrets),
            path: scrub_str(path, &secrets),
            body: scrub_value(normalize_request(path, body), &secrets),
        };
        let key = serde_json::to_string(&request).unwrap_or_default();
        let seen = self.recorded.entry(key).or_default();
        let nth = *seen;
        *seen += 1;
        let existing = self
            .interactions
            .iter()
            .enumerate()
            .filter(|(_, i)| i.request == request)
            .nth(nth)
            .map(|(index, _)| index);
        existing.unwrap_or_else(|| {
            self.interactions.push(Interaction {
                request,
                response: RecordedResponse {
                    status: 502,
                    headers: std::collections::BTreeMap::new(),
                    body: RecordedBody::Text("recording did not complete".to_owned()),
                },
            });
            self.interactions.len() - 1
        })
    }

    /// Puts `response` (secrets and unsafe headers scrubbed) in the slot `index` and saves.
    ///
    /// # Errors
    ///
    /// [`CassetteError::Write`] when the file cannot be written.
    pub(crate) fn fill(
        &mut self,
        index: usize,
        response: RecordedResponse,
        secrets: &[&str],
    ) -> Result<(), CassetteError> {
        let secrets = usable(secrets);
        let body = match response.body {
            RecordedBody::Json(json) => RecordedBody::Json(scrub_value(json, &secrets)),
            RecordedBody::Text(text) => RecordedBody::Text(scrub_str(&text, &secrets)),
            RecordedBody::Sse(events) => RecordedBody::Sse(
                events
                    .into_iter()
                    .map(|e| SseEvent {
                        event: e.event.map(|name| scrub_str(&name, &secrets)),
                        data: scrub_str(&e.data, &secrets),
                    })
                    .collect(),
            ),
        };
        if let Some(slot) = self.interactions.get_mut(index) {
            slot.response = RecordedResponse {
                status: response.status,
                headers: kept_headers(response.headers, &secrets),
                body,
            };
        }
        self.save()
    }
}

/// The secrets worth scrubbing, longest first (so one that holds another goes whole).
fn usable<'s>(secrets: &[&'s str]) -> Vec<&'s str> {
    let mut secrets: Vec<&str> = secrets
        .iter()
        .copied()
        .filter(|s| s.chars().count() >= MIN_SECRET_CHARS)
        .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

/// The response headers a cassette keeps (names lower-cased, allow-listed, secrets scrubbed);
/// also what a stream passed through while recording carries, so the client sees what a
/// replay will send.
pub(crate) fn kept_headers(
    headers: std::collections::BTreeMap<String, String>,
    secrets: &[&str],
) -> std::collections::BTreeMap<String, String> {
    let secrets = usable(secrets);
    headers
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .filter(|(name, _)| header_kept(name))
        .map(|(name, value)| (name, scrub_str(&value, &secrets)))
        .collect()
}

/// Whether a response header may be recorded.
fn header_kept(name: &str) -> bool {
    !listed(DENIED_HEADERS, name)
        && (listed(KEPT_HEADERS, name) || name.starts_with("x-ratelimit-"))
}

/// `text` with every secret replaced by [`REDACTED`].
fn scrub_str(text: &str, secrets: &[&str]) -> String {
    secrets.iter().fold(text.to_owned(), |text, secret| {
        text.replace(secret, REDACTED)
    })
}

/// `value` with every secret in every string (object keys included) replaced.
fn scrub_value(value: Value, secrets: &[&str]) -> Value {
    match value {
        Value::String(text) => Value::String(scrub_str(&text, secrets)),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| scrub_value(v, secrets)).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (scrub_str(&k, secrets), scrub_value(v, secrets)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use serde_json::json;

    use super::REDACTED;
    use crate::cassette::{
        Cassette, RecordedBody, RecordedResponse,
        test_helpers::{CANARY, CHAT, events},
    };

    #[test]
    fn recording_scrubs_secrets_and_unsafe_headers_and_leaves_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let mut cassette = Cassette::empty(&dir.path().join("c.yaml"));
        let body = json!({"model": "m", "messages": [{"role": "user", "content": format!("key={CANARY}")}],
            "tools": [{"function": {"name": "f", "description": CANARY}}]});
        let headers = [
            ("Authorization", format!("Bearer {CANARY}")),
            ("Set-Cookie", "session=abc".to_owned()),
            ("Content-Type", "text/event-stream".to_owned()),
            ("x-request-id", format!("req-{CANARY}")),
            ("x-ratelimit-remaining-tokens", "999".to_owned()),
            ("server", "cloudflare".to_owned()),
        ];
        let headers = headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let sse = events(&[(Some(CANARY), &format!(r#"{{"k":"{CANARY}"}}"#))]);
        let response = RecordedResponse {
            status: 200,
            headers,
            body: RecordedBody::Sse(sse),
        };
        let secrets = [CANARY, "", "short"];
        cassette
            .record("POST", CHAT, &body, response, &secrets)
            .unwrap();
        let text = fs::read_to_string(cassette.path()).unwrap();
        assert_eq!(text.matches(CANARY).count(), 0, "{text}");
        assert_eq!(text.matches(REDACTED).count(), 5, "{text}");
        assert!(
            !text.contains("cookie") && !text.contains("server"),
            "{text}"
        );
        let names: Vec<&String> = cassette.interactions[0].response.headers.keys().collect();
        assert_eq!(
            names,
            [
                "content-type",
                "x-ratelimit-remaining-tokens",
                "x-request-id"
            ]
        );
        let files = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name());
        assert_eq!(files.collect::<Vec<_>>(), ["c.yaml"]);
    }
}
