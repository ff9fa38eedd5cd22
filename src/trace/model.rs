//! The trace model: an attribute's value ([`AttributeValue`]), a finished span
//! ([`SpanRecord`]) and a finished trace ([`TraceRecord`]) as the export reads them, and how
//! their attributes are encoded for MLflow.
//!
//! MLflow keeps every span attribute as JSON text (`"\"CHAIN\""`, `{"question": …}`); so does
//! this model, for OTLP and for SQLite rows alike. On the prediction's path a value is written
//! into its trace's buffer as it came (`packed`: a JSON value as its text, a number as its
//! bytes); the export's background thread reads the trace back and there every attribute's
//! JSON text is scrubbed of secrets ([`crate::secret::scrub`]) and cut to
//! [`MAX_ATTRIBUTE_BYTES`].

use std::{borrow::Cow, time::SystemTime};

use serde_json::Value;

/// The most bytes of JSON text one attribute keeps. A longer value is replaced by a JSON
/// string holding its first bytes followed by [`TRUNCATION_MARKER`] and the original size,
/// so the attribute stays valid JSON and the export never fails for its size.
pub const MAX_ATTRIBUTE_BYTES: usize = 1024 * 1024;

/// What follows the kept part of a truncated attribute: `…[truncated by chainlog: N bytes]`.
pub const TRUNCATION_MARKER: &str = "…[truncated by chainlog: ";

/// The most events one span keeps (retries are events; a runaway loop must not grow memory).
pub(super) const MAX_EVENTS: u32 = 128;

/// MLflow's length of a trace's request and response previews.
pub(super) const PREVIEW_CHARS: usize = 1000;

/// A value an attribute was given ([`attributes`](super::attributes)), and an attribute of a
/// finished span as the export reads it: no allocation for a number, a flag, a
/// `&'static str` or token usage; encoded to MLflow's JSON text at export.
///
/// # Examples
///
/// ```
/// use chainlog::trace::AttributeValue;
/// let values: [AttributeValue; 4] = ["openai".into(), 12_u64.into(), true.into(), serde_json::json!({"k": 1}).into()];
/// assert!(matches!(values[1], AttributeValue::Int(12)));
/// ```
#[derive(Debug, Clone)]
pub enum AttributeValue {
    /// A JSON value.
    Json(Value),
    /// JSON text as it is (a request body as sent); read back from a trace, a slice of the
    /// export's copy of its buffer.
    JsonText(bytes::Bytes),
    /// A string; its JSON text is the quoted string.
    Str(Cow<'static, str>),
    /// An integer.
    Int(i64),
    /// A flag.
    Bool(bool),
    /// Token usage, as MLflow's `mlflow.chat.tokenUsage`
    /// (`{"input_tokens": …, "output_tokens": …, "total_tokens": …}`).
    TokenUsage(TokenUsage),
}

impl AttributeValue {
    /// The value as MLflow keeps it: JSON text (not yet scrubbed or cut).
    fn json_text(&self) -> String {
        match self {
            Self::Json(value) => value.to_string(),
            Self::JsonText(text) => String::from_utf8_lossy(text).into_owned(),
            Self::Str(text) => Value::String(text.to_string()).to_string(),
            Self::Int(number) => number.to_string(),
            Self::Bool(flag) => flag.to_string(),
            Self::TokenUsage(usage) => format!(
                r#"{{"input_tokens":{},"output_tokens":{},"total_tokens":{}}}"#,
                usage.input_tokens, usage.output_tokens, usage.total_tokens
            ),
        }
    }
}

impl From<Value> for AttributeValue {
    fn from(value: Value) -> Self {
        Self::Json(value)
    }
}

impl From<&'static str> for AttributeValue {
    fn from(text: &'static str) -> Self {
        Self::Str(Cow::Borrowed(text))
    }
}

impl From<String> for AttributeValue {
    fn from(text: String) -> Self {
        Self::Str(Cow::Owned(text))
    }
}

impl From<bool> for AttributeValue {
    fn from(flag: bool) -> Self {
        Self::Bool(flag)
    }
}

impl From<TokenUsage> for AttributeValue {
    fn from(usage: TokenUsage) -> Self {
        Self::TokenUsage(usage)
    }
}

macro_rules! int_attribute {
    ($($int:ty),*) => {$(
        impl From<$int> for AttributeValue {
            fn from(number: $int) -> Self {
                Self::Int(i64::try_from(number).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_attribute!(u32, u64, i64, usize);

/// Something that happened during a span (a retry), with its fields as text.
#[derive(Debug, Clone)]
pub struct SpanEvent {
    /// The event's message.
    pub name: String,
    /// When it happened.
    pub time: SystemTime,
    /// Its other fields.
    pub attributes: Vec<(String, String)>,
}

/// A finished span.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    /// The OTel trace id.
    pub trace_id: u128,
    /// The OTel span id.
    pub span_id: u64,
    /// The parent's span id; `None` for the trace's root.
    pub parent_id: Option<u64>,
    /// The span's name (a chain's name, `llm.chat`, a tool's name).
    pub name: Cow<'static, str>,
    /// The MLflow span type (`CHAIN`, `CHAT_MODEL`, `TOOL`).
    pub span_type: Cow<'static, str>,
    /// Start time.
    pub start: SystemTime,
    /// End time.
    pub end: SystemTime,
    pub(crate) attributes: Vec<(Cow<'static, str>, AttributeValue)>,
    /// Events, in order.
    pub events: Vec<SpanEvent>,
    /// The error message when the span failed.
    pub error: Option<String>,
}

impl SpanRecord {
    /// The attributes as MLflow stores them: key and JSON text, `mlflow.spanType` first,
    /// scrubbed and cut to [`MAX_ATTRIBUTE_BYTES`].
    pub fn encoded_attributes(&self) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(self.attributes.len() + 1);
        out.push((
            super::SPAN_TYPE_KEY.to_owned(),
            Value::String(self.span_type.to_string()).to_string(),
        ));
        for (key, value) in self.latest_attributes() {
            out.push((key.to_owned(), safe_json(&value.json_text())));
        }
        out
    }

    /// Each attribute's latest value, in the order the keys were first set.
    fn latest_attributes(&self) -> impl Iterator<Item = (&str, &AttributeValue)> {
        let attributes = &self.attributes;
        attributes
            .iter()
            .enumerate()
            .filter_map(move |(index, (key, _))| {
                let first = !attributes[..index]
                    .iter()
                    .any(|(earlier, _)| earlier == key);
                let (_, latest) = attributes[index..].iter().rev().find(|(k, _)| k == key)?;
                first.then_some((key.as_ref(), latest))
            })
    }

    /// The latest value of attribute `key`.
    fn latest(&self, key: &str) -> Option<&AttributeValue> {
        self.attributes
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, value)| value)
    }

    /// The JSON text of attribute `key` (scrubbed, not cut).
    pub fn attribute_text(&self, key: &str) -> Option<String> {
        self.latest(key)
            .map(|value| crate::secret::scrub(&value.json_text()))
    }

    /// The text of attribute `key` when it is a string, else its JSON text; scrubbed.
    pub fn attribute_string(&self, key: &str) -> Option<String> {
        let text = match self.latest(key)? {
            AttributeValue::Str(text) => text.to_string(),
            AttributeValue::Json(Value::String(text)) => text.clone(),
            other => {
                let text = other.json_text();
                match serde_json::from_str::<Value>(&text) {
                    Ok(Value::String(inner)) => inner,
                    _ => text,
                }
            }
        };
        Some(crate::secret::scrub(&text))
    }

    /// Nanoseconds since the Unix epoch.
    pub fn start_ns(&self) -> i64 {
        unix_ns(self.start)
    }

    /// Nanoseconds since the Unix epoch.
    pub fn end_ns(&self) -> i64 {
        unix_ns(self.end)
    }

    /// The token usage this span reports (`mlflow.chat.tokenUsage`).
    fn token_usage(&self) -> Option<TokenUsage> {
        let value = match self.latest("mlflow.chat.tokenUsage")? {
            AttributeValue::TokenUsage(usage) => return Some(*usage),
            AttributeValue::Json(value) => value.clone(),
            AttributeValue::JsonText(text) => serde_json::from_slice(text).ok()?,
            _ => return None,
        };
        Some(TokenUsage {
            input_tokens: value.get("input_tokens")?.as_i64()?,
            output_tokens: value.get("output_tokens")?.as_i64()?,
            total_tokens: value.get("total_tokens")?.as_i64()?,
        })
    }
}

/// Tokens over a trace's LLM calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Completion tokens.
    pub output_tokens: i64,
    /// Both.
    pub total_tokens: i64,
}

/// OTel ids must not be zero.
pub(super) fn nonzero<T: Default + PartialEq + From<u8>>(id: T) -> T {
    if id == T::default() { T::from(1) } else { id }
}

/// 64 random bits for a trace or span id, from this thread's `SmallRng`: ids need to differ,
/// not to be unguessable, and a draw then costs a few instructions on the prediction's path
/// instead of a ChaCha block every 64 draws and the thread generator's handle. Each thread's
/// generator is seeded from the operating system ([`id_generator`]); while the thread's
/// locals are being destroyed (a thread-local's `Drop` that traces), a generator made for the
/// one draw.
pub(super) fn random_id_bits() -> u64 {
    use rand::Rng as _;
    thread_local! {
        static IDS: std::cell::RefCell<rand::rngs::SmallRng> =
            std::cell::RefCell::new(id_generator());
    }
    IDS.try_with(|ids| ids.borrow_mut().next_u64())
        .unwrap_or_else(|_| id_generator().next_u64())
}

/// A generator of ids seeded by the operating system (`getrandom`), or, when it cannot give
/// a seed, by the time and a count of the generators made in this process — never a panic.
fn id_generator() -> rand::rngs::SmallRng {
    use rand::SeedableRng as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    static MADE: AtomicU64 = AtomicU64::new(0);
    rand::rngs::SmallRng::try_from_rng(&mut rand::rngs::SysRng).unwrap_or_else(|_| {
        let nanos = unix_ns(SystemTime::now()) as u64;
        let made = MADE.fetch_add(1, Ordering::Relaxed);
        rand::rngs::SmallRng::seed_from_u64(
            nanos ^ made.rotate_left(32) ^ u64::from(std::process::id()),
        )
    })
}

/// A finished trace: its spans, the root last.
#[derive(Debug, Clone)]
pub struct TraceRecord {
    /// The OTel trace id; MLflow's trace id is `tr-` and its 32 hex digits.
    pub trace_id: u128,
    /// Every span, the root last.
    pub spans: Vec<SpanRecord>,
}

impl TraceRecord {
    /// A new trace id: the time in microseconds since the Unix epoch in its high 64 bits, 64
    /// random bits below (W3C Trace Context level 2 asks randomness of the low 56 bits only; AWS
    /// X-Ray's ids lead with the time the same way). Ids made in a later microsecond sort later
    /// (while the clock does not step back), so a batch of traces lands at the end of every
    /// index MLflow's schema keys by trace id, instead of on a page of its own per trace; ids
    /// of one microsecond differ in their random half.
    pub(super) fn new_trace_id() -> u128 {
        Self::trace_id_at(SystemTime::now(), nonzero(random_id_bits()))
    }

    /// The trace id made at `time` with the random half `random` (a time before the epoch
    /// counts as the epoch).
    pub(super) fn trace_id_at(time: SystemTime, random: u64) -> u128 {
        let micros = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
            });
        (u128::from(micros) << 64) | u128::from(random)
    }

    /// MLflow's id for this trace: `tr-<32 hex digits>`.
    pub fn mlflow_id(&self) -> String {
        format!("tr-{:032x}", self.trace_id)
    }

    /// The root span (the one without a parent).
    pub fn root(&self) -> Option<&SpanRecord> {
        self.spans.iter().find(|span| span.parent_id.is_none())
    }

    /// `OK`, or `ERROR` when the root span failed.
    pub fn state(&self) -> &'static str {
        match self.root() {
            Some(root) if root.error.is_some() => "ERROR",
            _ => "OK",
        }
    }

    /// The root's inputs as MLflow previews them (at most 1000 characters, `...` after a cut).
    pub fn request_preview(&self) -> Option<String> {
        self.root()?
            .attribute_text("mlflow.spanInputs")
            .map(preview)
    }

    /// The root's outputs as MLflow previews them.
    pub fn response_preview(&self) -> Option<String> {
        self.root()?
            .attribute_text("mlflow.spanOutputs")
            .map(preview)
    }

    /// The token usage summed over the trace's spans; `None` when no span reports any.
    pub fn token_usage(&self) -> Option<TokenUsage> {
        self.spans
            .iter()
            .filter_map(SpanRecord::token_usage)
            .reduce(|a, b| TokenUsage {
                input_tokens: a.input_tokens.saturating_add(b.input_tokens),
                output_tokens: a.output_tokens.saturating_add(b.output_tokens),
                total_tokens: a.total_tokens.saturating_add(b.total_tokens),
            })
    }
}

/// A trace's request and response previews from its root span's encoded attributes
/// ([`SpanRecord::encoded_attributes`]: scrubbed already). An attribute cut at
/// [`MAX_ATTRIBUTE_BYTES`] is previewed from its uncut text, as MLflow would.
pub(super) fn previews(
    root: &SpanRecord,
    root_attributes: &[(String, String)],
) -> (Option<String>, Option<String>) {
    let find = |key: &str| {
        let (_, text) = root_attributes.iter().find(|(k, _)| k == key)?;
        if text.len() > MAX_ATTRIBUTE_BYTES {
            root.attribute_text(key).map(preview)
        } else {
            Some(preview(text.clone()))
        }
    };
    (find("mlflow.spanInputs"), find("mlflow.spanOutputs"))
}

/// MLflow's preview of JSON text: the text, cut to 1000 characters with `...`.
fn preview(text: String) -> String {
    if text.chars().count() <= PREVIEW_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(PREVIEW_CHARS - 3).collect();
    cut.push_str("...");
    cut
}

/// `text` scrubbed of secrets and, when longer than [`MAX_ATTRIBUTE_BYTES`], replaced by a
/// JSON string of its start and the marker.
pub(super) fn safe_json(text: &str) -> String {
    let text = crate::secret::scrub(text);
    if text.len() <= MAX_ATTRIBUTE_BYTES {
        return text;
    }
    let mut end = MAX_ATTRIBUTE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let kept = format!("{}{TRUNCATION_MARKER}{} bytes]", &text[..end], text.len());
    Value::String(kept).to_string()
}

pub(super) fn unix_ns(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_attribute_is_cut_to_valid_json_with_marker() {
        let huge = Value::String("x".repeat(MAX_ATTRIBUTE_BYTES * 2)).to_string();
        let cut = safe_json(&huge);
        let parsed: Value = serde_json::from_str(&cut).unwrap();
        let text = parsed.as_str().unwrap();
        assert!(text.contains(TRUNCATION_MARKER), "no marker");
        assert!(text.ends_with(&format!("{} bytes]", huge.len())));
        assert!(cut.len() < MAX_ATTRIBUTE_BYTES + 100);
    }

    #[test]
    fn a_key_set_twice_keeps_its_latest_value_in_first_set_order() {
        let span = span_with(vec![
            ("a", AttributeValue::Json(Value::from(1))),
            ("b", AttributeValue::Int(2)),
            ("a", AttributeValue::Int(3)),
        ]);
        let keys: Vec<_> = span
            .encoded_attributes()
            .into_iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        assert_eq!(keys, ["mlflow.spanType=\"CHAIN\"", "a=3", "b=2"]);
        assert_eq!(span.attribute_text("a").as_deref(), Some("3"));
    }

    fn span_with(attributes: Vec<(&'static str, AttributeValue)>) -> SpanRecord {
        use super::super::packed::{Records, SpanEnd};
        let mut packer = Records::for_trace();
        Records::with_scratch(|scratch| {
            for (key, value) in attributes {
                scratch.attribute(2, key, &value);
            }
            scratch.end_span(&SpanEnd {
                span_id: 2,
                parent_id: None,
                start: SystemTime::now(),
                end: SystemTime::now(),
                name: "chain",
                span_type: "CHAIN",
                error: None,
            });
            packer.append(scratch);
        });
        let mut trace = packer.finish(1, None).unpack().unwrap();
        trace.spans.pop().unwrap()
    }

    #[test]
    fn a_root_cut_at_the_attribute_limit_is_previewed_from_its_uncut_text() {
        let huge = serde_json::json!({ "text": "x".repeat(MAX_ATTRIBUTE_BYTES + 10) });
        let root = span_with(vec![
            ("mlflow.spanInputs", huge.into()),
            ("mlflow.spanOutputs", "ok".into()),
        ]);
        let encoded = root.encoded_attributes();
        let (request, response) = previews(&root, &encoded);
        let request = request.unwrap();
        assert!(request.starts_with(r#"{"text":"xxx"#), "{}", &request[..20]);
        assert_eq!(request.chars().count(), PREVIEW_CHARS);
        assert_eq!(response.as_deref(), Some(r#""ok""#));
    }

    #[test]
    fn typed_values_encode_as_mlflow_json_and_strings_read_back_unquoted() {
        let usage = TokenUsage {
            input_tokens: i64::MAX,
            output_tokens: 1,
            total_tokens: i64::MAX,
        };
        let span = span_with(vec![
            ("n", 7_u64.into()),
            ("flag", true.into()),
            ("mlflow.chat.tokenUsage", usage.into()),
            (
                "model",
                AttributeValue::JsonText(bytes::Bytes::from_static(br#""gpt-4o""#)),
            ),
        ]);
        let encoded: Vec<_> = span
            .encoded_attributes()
            .into_iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        assert_eq!(
            encoded,
            [
                r#"mlflow.spanType="CHAIN""#,
                "n=7",
                "flag=true",
                r#"mlflow.chat.tokenUsage={"input_tokens":9223372036854775807,"output_tokens":1,"total_tokens":9223372036854775807}"#,
                r#"model="gpt-4o""#,
            ]
        );
        assert_eq!(span.attribute_string("model").as_deref(), Some("gpt-4o"));
        // Sums over spans saturate instead of overflowing.
        let trace = TraceRecord {
            trace_id: 1,
            spans: vec![span.clone(), span],
        };
        assert_eq!(trace.token_usage().unwrap().total_tokens, i64::MAX);
    }

    #[test]
    fn preview_is_cut_like_mlflow() {
        let long = "a".repeat(1500);
        let cut = preview(long);
        assert_eq!(cut.chars().count(), 1000);
        assert!(cut.ends_with("..."));
        assert_eq!(preview("short".to_owned()), "short");
    }

    #[test]
    fn id_bits_differ_within_a_thread_and_across_threads() {
        let draw = || (0..10_000).map(|_| random_id_bits()).collect::<Vec<_>>();
        let mut all: Vec<u64> = std::thread::scope(|scope| {
            let others: Vec<_> = (0..3).map(|_| scope.spawn(draw)).collect();
            let mut all = draw();
            for other in others {
                all.extend(other.join().unwrap());
            }
            all
        });
        let drawn = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), drawn, "every id of 40,000 differs");
    }
}
