//! Fixtures shared by the cassette unit tests: a canary secret, recorded answers, event lists
//! and a small recorded cassette.

use std::{collections::BTreeMap, path::Path};

use serde_json::{Value, json};

use super::{Cassette, RecordedBody, RecordedResponse, format::SseEvent};

pub(super) const CANARY: &str = "sk-canary-0123456789abcdef";
pub(super) const CHAT: &str = "/v1/chat/completions";

pub(super) fn reply(status: u16, body: RecordedBody) -> RecordedResponse {
    let headers = BTreeMap::from([("content-type".to_owned(), "application/json".to_owned())]);
    RecordedResponse {
        status,
        headers,
        body,
    }
}

pub(super) fn events(list: &[(Option<&str>, &str)]) -> Vec<SseEvent> {
    let event = |(name, data): &(Option<&str>, &str)| SseEvent {
        event: name.map(str::to_owned),
        data: (*data).to_owned(),
    };
    list.iter().map(event).collect()
}

pub(super) fn chat(content: &str, temperature: f64) -> Value {
    json!({"model": "gpt-4o-mini", "temperature": temperature, "messages":
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": content}]})
}

/// A cassette saved under `dir/sub/` with three chat interactions.
pub(super) fn recorded(dir: &Path) -> Cassette {
    let mut cassette = Cassette::empty(&dir.join("sub/c.yaml"));
    for (content, temperature) in [("hello", 0.0), ("weather?", 0.5), ("bye", 1.0)] {
        let answer = reply(200, RecordedBody::Json(json!({ "echo": content })));
        let body = chat(content, temperature);
        cassette.record("POST", CHAT, &body, answer, &[]).unwrap();
    }
    cassette
}
