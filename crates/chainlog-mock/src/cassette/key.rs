//! The match key of a request ([`normalize_request`]) and finding the recorded answers to a
//! request ([`Cassette::matching`], in recorded order); a miss ([`CassetteMiss`]) names the closest interaction and
//! what differs.

use std::{collections::BTreeSet, fmt, path::PathBuf};

use serde_json::Value;

use super::format::{Cassette, RecordedRequest, RecordedResponse};

/// Body keys of the OpenAI endpoints that decide the answer; all others are dropped from the key.
const MATCH_KEYS: &str = "model messages tools tool_choice parallel_tool_calls response_format \
    temperature top_p n stop max_tokens max_completion_tokens seed presence_penalty \
    frequency_penalty logit_bias logprobs top_logprobs stream stream_options input instructions \
    text max_output_tokens reasoning previous_response_id prompt suffix encoding_format dimensions";
/// Path endings whose bodies are reduced to [`MATCH_KEYS`].
const KNOWN_ENDPOINTS: &[&str] = &["/completions", "/responses", "/embeddings"];
/// Keys dropped from the bodies of other endpoints (which otherwise keep every key).
const IGNORED_KEYS: &str = "user metadata store service_tier safety_identifier";

/// Whether the whitespace-separated `list` holds `word`.
pub(super) fn listed(list: &str, word: &str) -> bool {
    list.split_whitespace().any(|w| w == word)
}

/// A request with no recorded answer: names the request and the closest interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CassetteMiss {
    /// The cassette file.
    pub cassette: PathBuf,
    /// The request's method.
    pub method: String,
    /// The request's path.
    pub path: String,
    /// The request's model, when it names one.
    pub model: Option<String>,
    /// The closest recorded interaction; `None` when the cassette is empty.
    pub closest: Option<Box<Closest>>,
}

/// The recorded interaction nearest to a missed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closest {
    /// Its index (from 0, in file order).
    pub index: usize,
    /// The 1-based line where it starts in the file, when known.
    pub line: Option<usize>,
    /// What differs: `method`, `path` or body key paths such as `messages[1].content`.
    pub differs: Vec<String>,
    /// The same, each with the recorded and the asked value (`None` where one side has no
    /// value at that path); bodies in their normalised form (the match key).
    pub differences: Vec<Difference>,
}

/// One place where a missed request differs from the closest recorded one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// `method`, `path`, or a body key path such as `messages[1].content`.
    pub at: String,
    /// The recorded value there.
    pub recorded: Option<Value>,
    /// The asked value there.
    pub asked: Option<Value>,
}

impl fmt::Display for CassetteMiss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (cassette, method, path) = (self.cassette.display(), &self.method, &self.path);
        write!(
            f,
            "no recorded interaction in `{cassette}` matches {method} {path}"
        )?;
        if let Some(model) = &self.model {
            write!(f, " (model {model})")?;
        }
        let Some(closest) = &self.closest else {
            return f.write_str("; the cassette is empty");
        };
        write!(f, "; closest is interaction #{}", closest.index)?;
        if let Some(line) = closest.line {
            write!(f, " (line {line})")?;
        }
        const SHOWN: usize = 8;
        let shown: Vec<&str> = closest
            .differs
            .iter()
            .take(SHOWN)
            .map(String::as_str)
            .collect();
        write!(f, ", which differs in: {}", shown.join(", "))?;
        if closest.differs.len() > SHOWN {
            write!(f, " and {} more", closest.differs.len() - SHOWN)?;
        }
        Ok(())
    }
}

impl std::error::Error for CassetteMiss {}
impl Cassette {
    /// The first recorded answer to a request, matched on method, path and normalised body,
    /// with its index.
    ///
    /// # Errors
    ///
    /// [`CassetteMiss`] naming the request, the closest interaction and what differs.
    pub(crate) fn lookup(
        &self,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<(usize, &RecordedResponse), CassetteMiss> {
        let index = self.matching(method, path, body)?[0];
        Ok((index, &self.interactions[index].response))
    }

    /// The recorded answer at `index` (from [`matching`](Self::matching)).
    pub(crate) fn response(&self, index: usize) -> Option<&RecordedResponse> {
        self.interactions.get(index).map(|i| &i.response)
    }

    /// The indices of every interaction recorded for a request, in file order (never empty):
    /// identical requests recorded in turn (a retried 429 and its 200, a repeated call) are
    /// answered in that order by whoever counts the calls.
    ///
    /// # Errors
    ///
    /// [`CassetteMiss`] naming the request, the closest interaction and what differs.
    pub(crate) fn matching(
        &self,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<Vec<usize>, CassetteMiss> {
        let method = method.to_ascii_uppercase();
        let key = normalize_request(path, body);
        let same = |r: &RecordedRequest| r.method == method && r.path == path && r.body == key;
        let found: Vec<usize> = self
            .interactions
            .iter()
            .enumerate()
            .filter(|(_, i)| same(&i.request))
            .map(|(index, _)| index)
            .collect();
        if !found.is_empty() {
            return Ok(found);
        }
        let closest = self
            .interactions
            .iter()
            .enumerate()
            .map(|(index, interaction)| {
                let recorded = &interaction.request;
                let mut differences = Vec::new();
                let mut differ = |at: &str, a: &str, b: &str| {
                    if a != b {
                        differences.push(Difference {
                            at: at.to_owned(),
                            recorded: Some(Value::from(a)),
                            asked: Some(Value::from(b)),
                        });
                    }
                };
                differ("method", &recorded.method, &method);
                differ("path", &recorded.path, path);
                let other_endpoint = !differences.is_empty();
                diff_values("", Some(&recorded.body), Some(&key), &mut differences);
                let line = self.lines.get(index).copied();
                let differs = differences.iter().map(|d| d.at.clone()).collect();
                (
                    other_endpoint,
                    differences.len(),
                    Box::new(Closest {
                        index,
                        line,
                        differs,
                        differences,
                    }),
                )
            })
            .min_by_key(|(other_endpoint, count, c)| (*other_endpoint, *count, c.index))
            .map(|(_, _, closest)| closest);
        let model = key
            .get("model")
            .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned));
        Err(CassetteMiss {
            cassette: self.path.clone(),
            method,
            path: path.to_owned(),
            model,
            closest,
        })
    }
}

/// The match key of a request body: for the OpenAI endpoints (chat, completions, responses,
/// embeddings) only the keys that decide the answer, for others every key but `user`,
/// `metadata` and the like; nulls dropped, integral floats made integers, keys sorted at every
/// depth (whatever serde_json's `preserve_order`).
pub(crate) fn normalize_request(path: &str, body: &Value) -> Value {
    let Value::Object(map) = body else {
        return canonical(body);
    };
    let known = KNOWN_ENDPOINTS
        .iter()
        .any(|end| path.trim_end_matches('/').ends_with(end));
    let kept = map
        .iter()
        .filter(|(key, _)| listed(if known { MATCH_KEYS } else { IGNORED_KEYS }, key) == known)
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    canonical(&Value::Object(kept))
}

/// `value` with object keys sorted, null members dropped and integral floats made integers.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> =
                map.iter().filter(|(_, v)| !v.is_null()).collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                members
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => value.clone(),
        },
        _ => value.clone(),
    }
}

/// Appends to `out` the paths (`messages[1].content`) where `recorded` and `asked` differ,
/// with both values.
fn diff_values(
    at: &str,
    recorded: Option<&Value>,
    asked: Option<&Value>,
    out: &mut Vec<Difference>,
) {
    let here = || {
        if at.is_empty() {
            "body".to_owned()
        } else {
            at.to_owned()
        }
    };
    match (recorded, asked) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            for key in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
                let inner = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff_values(&inner, Some(x), Some(y), out),
                    (x, y) => out.push(Difference {
                        at: inner,
                        recorded: x.cloned(),
                        asked: y.cloned(),
                    }),
                }
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_values(&format!("{at}[{i}]"), Some(x), Some(y), out);
            }
            if a.len() != b.len() {
                let i = a.len().min(b.len());
                out.push(Difference {
                    at: format!("{at}[{i}]"),
                    recorded: a.get(i).cloned(),
                    asked: b.get(i).cloned(),
                });
            }
        }
        _ if recorded == asked => {}
        _ => out.push(Difference {
            at: here(),
            recorded: recorded.cloned(),
            asked: asked.cloned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::{fs, path::Path};

    use serde_json::{Value, json};

    use super::Cassette;
    use crate::cassette::{
        RecordedBody,
        test_helpers::{CHAT, chat, recorded, reply},
    };

    #[test]
    fn lookup_ignores_irrelevant_keys_nulls_and_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut cassette = recorded(dir.path());
        let asked = json!({"user": "u-1", "metadata": {"run": 7}, "seed": null, "model": "gpt-4o-mini",
            "messages": [{"content": "be brief", "role": "system"}, {"content": "weather?", "role": "user"}],
            "temperature": 0.5});
        let (index, response) = cassette.lookup("post", CHAT, &asked).unwrap();
        assert_eq!(index, 1);
        assert_eq!(
            response.body,
            RecordedBody::Json(json!({"echo": "weather?"}))
        );
        // 1.0 was saved as 1 and still matches.
        assert_eq!(
            cassette.lookup("POST", CHAT, &chat("bye", 1.0)).unwrap().0,
            2
        );
        // A key recorded again in one session is appended: identical requests keep their order.
        let again = reply(200, RecordedBody::Json(json!(1)));
        let index = cassette
            .record("POST", CHAT, &chat("hello", 0.0), again.clone(), &[])
            .unwrap();
        assert_eq!((index, cassette.interactions.len()), (3, 4));
        assert_eq!(
            cassette
                .matching("POST", CHAT, &chat("hello", 0.0))
                .unwrap(),
            [0, 3]
        );
        // Recording again after a reload replaces the same keys in place, in order.
        let mut reloaded = Cassette::load(cassette.path()).unwrap();
        for expected in [0, 3, 4] {
            let index = reloaded
                .record("POST", CHAT, &chat("hello", 0.0), again.clone(), &[])
                .unwrap();
            assert_eq!(index, expected);
        }
        assert_eq!(reloaded.interactions.len(), 5);
    }

    #[test]
    fn miss_names_the_closest_interaction_and_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let cassette = recorded(dir.path());
        let mut asked = chat("weather??", 0.5);
        asked["seed"] = json!(7);
        let miss = cassette.lookup("POST", CHAT, &asked).unwrap_err();
        let text = miss.to_string();
        let expected = "matches POST /v1/chat/completions (model gpt-4o-mini); closest is \
            interaction #1 (line 20), which differs in: messages[1].content, seed";
        assert!(text.ends_with(expected), "{text}");
        let saved = fs::read_to_string(cassette.path()).unwrap();
        assert_eq!(saved.lines().nth(19), Some("- request:"), "{saved}");

        let miss = cassette.lookup("POST", "/v1/responses", &json!({"model": "m"}));
        let text = miss.unwrap_err().to_string();
        assert!(
            text.contains("differs in: path, messages, model, temperature"),
            "{text}"
        );
        let text = Cassette::empty(Path::new("new.yaml"))
            .lookup("GET", "/v1/models", &Value::Null)
            .unwrap_err()
            .to_string();
        let expected = "no recorded interaction in `new.yaml` matches GET /v1/models; \
            the cassette is empty";
        assert_eq!(text, expected);
    }
}
