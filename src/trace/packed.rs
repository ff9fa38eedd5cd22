//! A trace's content written into one buffer as it is recorded ([`Records`]), and that
//! buffer on its way to the export queue ([`PackedTrace`]).
//!
//! Every attribute and event a span is given, and each span's end (with its error, if it
//! failed), is written as a record into its trace's buffer, under the trace's lock, on the
//! thread that records it. A value whose writing runs the caller's code (its `Serialize`) is
//! first made into a record in the thread's scratch, outside any lock — so that code may log,
//! record, panic or lock what it likes — and then copied in. The chain's input and output are written as JSON
//! text straight from the caller's value (no copy of the JSON tree), a request or response
//! body is copied from the caller's bytes. A span keeps no attributes of its own; when the
//! root ends, the trace is copied in one piece into a block — an exported trace's block
//! handed back by the export thread (`ExportQueue::take_buffer`, grown if it is too small),
//! or a new one of the trace's size — which goes to the export queue, and the thread the root
//! ended on keeps the buffer for the next trace begun on it ([`Records::finish`]): the many
//! small writes of a prediction go to memory a thread of the prediction's wrote last (on a
//! sequential path, this CPU's), the one sequential copy to memory the export thread read
//! last. So a traced call
//! makes no allocation per attribute (an event's texts and an error's message excepted) and
//! usually none for its buffer or its block, keeps no copy of a value until its trace ends,
//! and a trace waiting for export (for the background thread's linger and its batch's write,
//! a few hundred milliseconds) is one block. `benches/chain_overhead` ("traced/untraced",
//! "the layer alone") measures the difference. Scrubbing secrets and cutting to
//! [`MAX_ATTRIBUTE_BYTES`](super::MAX_ATTRIBUTE_BYTES) stay the export's work.
//!
//! The export thread unpacks a trace into a [`TraceRecord`] whose JSON texts are slices of one
//! copy of the buffer. The layout is this process's own — nothing outside it reads it — a
//! sequence of records, every number little-endian, a length as 8 bytes, a count as 4, a text
//! as its length and UTF-8 bytes:
//!
//! ```text
//! attribute  0, span id, key, value tag (`Tag`), value
//! event      1, span id, name, time ns (Unix epoch), field count, (key, value)…
//! span end   2, span id, parent id (0: the root), start ns, end ns, name, span type,
//!            error flag, error message when the flag is 1
//! ```
//!
//! A span's records come before its end; its spans come out in the order they ended (the
//! root last), and a key set twice keeps both values (the export keeps the later).

use std::{
    borrow::Cow,
    cell::Cell,
    collections::HashMap,
    time::{Duration, SystemTime},
};

use bytes::{Buf as _, BufMut as _, Bytes};
use serde::Serialize;

use super::model::{AttributeValue, SpanEvent, SpanRecord, TokenUsage, TraceRecord, unix_ns};

/// What a trace's buffer starts with when its thread kept none: a chain and one model call
/// take about 2 KiB (their request and response bodies, the chain's input and output, the
/// keys); more grows it.
const INITIAL_CAPACITY: usize = 4096;

/// What a record is.
#[repr(u8)]
enum Record {
    Attribute = 0,
    Event = 1,
    SpanEnd = 2,
}

/// How an attribute's value is written after its tag byte.
#[repr(u8)]
enum Tag {
    /// A text of JSON.
    JsonText = 0,
    /// A text.
    Str = 1,
    /// 8 bytes.
    Int = 2,
    /// 1 byte, 0 or 1.
    Bool = 3,
    /// Input, output and total tokens, 8 bytes each.
    TokenUsage = 4,
}

/// Records: a trace's buffer (one per trace, behind its lock), or a thread's scratch
/// ([`Records::with_scratch`]) where records whose making runs a caller's code are made before
/// they are copied into their trace ([`Records::append`]), so that no lock is held while it
/// runs.
#[derive(Debug, Default)]
pub(super) struct Records {
    bytes: Vec<u8>,
    span_ends: u32,
}

impl Records {
    /// A trace's buffer, empty: the one the last trace that ended on this thread recorded into,
    /// when there is one (see [`finish`](Self::finish)).
    pub(super) fn for_trace() -> Self {
        let kept = WORKING.try_with(Cell::take).unwrap_or_default();
        Self {
            bytes: if kept.capacity() == 0 {
                Vec::with_capacity(INITIAL_CAPACITY)
            } else {
                kept
            },
            span_ends: 0,
        }
    }

    /// Appends the records `other` holds.
    pub(super) fn append(&mut self, other: &Self) {
        self.bytes.extend_from_slice(&other.bytes);
        self.span_ends += other.span_ends;
    }

    /// The trace `trace_id` as recorded so far, copied into `block` (an exported trace's
    /// buffer, or a new one when `None`), which goes to the export queue; the records are
    /// left empty, and this buffer (unless over [`MAX_KEPT_BUFFER`]) is kept by this thread
    /// for the next trace begun on it.
    ///
    /// A copy, not the buffer itself: the buffer a trace records into is written piece by
    /// piece over the whole prediction, so it had better be memory this CPU wrote last (the
    /// previous trace's), not memory another thread read last; the copy is one sequential
    /// write of a few KiB. `benches/chain_overhead` ("traced/untraced") measures it.
    pub(super) fn finish(&mut self, trace_id: u128, block: Option<Vec<u8>>) -> PackedTrace {
        let mut block = block.unwrap_or_default();
        block.clear();
        block.reserve(self.bytes.len());
        block.extend_from_slice(&self.bytes);
        let mut working = std::mem::take(&mut self.bytes);
        if working.capacity() != 0 && working.capacity() <= MAX_KEPT_BUFFER {
            working.clear();
            let _ = WORKING.try_with(|kept| kept.set(working));
        }
        PackedTrace {
            trace_id,
            spans: std::mem::take(&mut self.span_ends),
            bytes: block,
        }
    }
}

/// The end of a span, as [`Records::end_span`] writes it.
pub(super) struct SpanEnd<'a> {
    pub(super) span_id: u64,
    pub(super) parent_id: Option<u64>,
    pub(super) start: SystemTime,
    pub(super) end: SystemTime,
    pub(super) name: &'a str,
    pub(super) span_type: &'a str,
    /// The span's error message, when it failed.
    pub(super) error: Option<&'a str>,
}

/// The largest trace buffer kept for reuse — by the thread that ended its trace, or, as a
/// block to copy traces into, by the export queue: a trace that grew past it (a large body)
/// is freed. So each thread that ends traces holds at most one such buffer (besides its
/// scratch).
pub(super) const MAX_KEPT_BUFFER: usize = 16 * 1024;

/// The most capacity a thread's scratch keeps between records (a larger one, after a huge
/// attribute, is freed).
const MAX_KEPT_SCRATCH: usize = 64 * 1024;

thread_local! {
    /// This thread's scratch, reused from record to record.
    static SCRATCH: Cell<Records> = Cell::new(Records::default());
    /// The buffer of the last trace finished on this thread, emptied, for the next trace begun
    /// on it.
    static WORKING: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

impl Records {
    /// Runs `f` on this thread's scratch, emptied. A record made while another is being made
    /// on this thread (a value's `Serialize` that logs) gets a scratch of its own; a scratch
    /// whose making panicked is dropped with it, so a half-made record never reaches a trace.
    pub(super) fn with_scratch<T>(f: impl FnOnce(&mut Self) -> T) -> T {
        let mut scratch = SCRATCH.try_with(Cell::take).unwrap_or_default();
        scratch.bytes.clear();
        scratch.span_ends = 0;
        let out = f(&mut scratch);
        if scratch.bytes.capacity() <= MAX_KEPT_SCRATCH {
            let _ = SCRATCH.try_with(|cell| cell.set(scratch));
        }
        out
    }

    /// Whether a record was made.
    pub(super) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn record(&mut self, record: Record, span_id: u64) {
        self.bytes.put_u8(record as u8);
        self.bytes.put_u64_le(span_id);
    }

    /// Starts an attribute record: the span and the key; its value follows.
    fn attribute_key(&mut self, span_id: u64, key: &str) -> &mut Vec<u8> {
        self.record(Record::Attribute, span_id);
        put_text(&mut self.bytes, key.as_bytes());
        &mut self.bytes
    }

    /// Sets the attribute `key` of span `span_id` to `value`.
    pub(super) fn attribute(&mut self, span_id: u64, key: &str, value: &AttributeValue) {
        let buffer = self.attribute_key(span_id, key);
        match value {
            AttributeValue::Json(json) => put_json(buffer, json),
            AttributeValue::JsonText(text) => put_json_text(buffer, text),
            AttributeValue::Str(text) => {
                buffer.put_u8(Tag::Str as u8);
                put_text(buffer, text.as_bytes());
            }
            AttributeValue::Int(number) => {
                buffer.put_u8(Tag::Int as u8);
                buffer.put_i64_le(*number);
            }
            AttributeValue::Bool(flag) => {
                buffer.put_u8(Tag::Bool as u8);
                buffer.put_u8(u8::from(*flag));
            }
            AttributeValue::TokenUsage(usage) => {
                buffer.put_u8(Tag::TokenUsage as u8);
                buffer.put_i64_le(usage.input_tokens);
                buffer.put_i64_le(usage.output_tokens);
                buffer.put_i64_le(usage.total_tokens);
            }
        }
    }

    /// Sets the attribute `key` of span `span_id` to `value` as JSON text.
    pub(super) fn attribute_json<V: Serialize + ?Sized>(
        &mut self,
        span_id: u64,
        key: &str,
        value: &V,
    ) {
        put_json(self.attribute_key(span_id, key), value);
    }

    /// Sets the attribute `key` of span `span_id` to `text`, which is JSON text.
    pub(super) fn attribute_json_text(&mut self, span_id: u64, key: &str, text: &[u8]) {
        put_json_text(self.attribute_key(span_id, key), text);
    }

    /// Adds `event` to span `span_id`.
    pub(super) fn event(&mut self, span_id: u64, event: &SpanEvent) {
        self.record(Record::Event, span_id);
        let buffer = &mut self.bytes;
        put_text(buffer, event.name.as_bytes());
        buffer.put_u64_le(epoch_ns(event.time));
        put_count(buffer, event.attributes.len());
        for (key, value) in &event.attributes {
            put_text(buffer, key.as_bytes());
            put_text(buffer, value.as_bytes());
        }
    }

    /// Ends a span: once appended, the trace holds it.
    pub(super) fn end_span(&mut self, span: &SpanEnd<'_>) {
        self.record(Record::SpanEnd, span.span_id);
        let buffer = &mut self.bytes;
        buffer.put_u64_le(span.parent_id.unwrap_or(0));
        buffer.put_u64_le(epoch_ns(span.start));
        buffer.put_u64_le(epoch_ns(span.end));
        put_text(buffer, span.name.as_bytes());
        put_text(buffer, span.span_type.as_bytes());
        match span.error {
            Some(message) => {
                buffer.put_u8(1);
                put_text(buffer, message.as_bytes());
            }
            None => buffer.put_u8(0),
        }
        self.span_ends += 1;
    }
}

/// A finished trace in one buffer: what the export queue holds.
#[derive(Debug, Clone)]
pub struct PackedTrace {
    trace_id: u128,
    spans: u32,
    /// A `Vec`, not `Bytes`: made from a `Vec` whose length is not its capacity, `Bytes`
    /// allocates a header on the prediction's path.
    bytes: Vec<u8>,
}

/// A packed trace that does not read back: a fault in chainlog, not in the trace's content.
#[derive(Debug, thiserror::Error)]
#[error("trace tr-{trace_id:032x} cannot be unpacked for export (a chainlog bug): {what}")]
pub struct UnpackError {
    trace_id: u128,
    what: &'static str,
}

impl PackedTrace {
    /// How many spans the trace holds.
    pub(super) fn span_count(&self) -> usize {
        self.spans as usize
    }

    /// The buffer, for another trace to record into once this one is exported.
    pub(super) fn into_buffer(self) -> Vec<u8> {
        self.bytes
    }

    /// The trace, its JSON texts slices of one copy of the buffer (made here, on the export's
    /// thread: the queue keeps the trace as it was, to put it back when a write is stopped).
    pub(super) fn unpack(&self) -> Result<TraceRecord, UnpackError> {
        Reader(Bytes::copy_from_slice(&self.bytes))
            .trace(self.trace_id, self.span_count())
            .map_err(|what| UnpackError {
                trace_id: self.trace_id,
                what,
            })
    }
}

fn epoch_ns(time: SystemTime) -> u64 {
    u64::try_from(unix_ns(time)).unwrap_or(0)
}

fn put_count(buffer: &mut Vec<u8>, count: usize) {
    buffer.put_u32_le(u32::try_from(count).unwrap_or(u32::MAX));
}

fn put_text(buffer: &mut Vec<u8>, text: &[u8]) {
    buffer.put_u64_le(text.len() as u64);
    buffer.put_slice(text);
}

/// `text`, which is JSON text, as a value.
fn put_json_text(buffer: &mut Vec<u8>, text: &[u8]) {
    buffer.put_u8(Tag::JsonText as u8);
    put_text(buffer, text);
}

/// A text that `write` writes straight into the buffer, its length set after.
fn put_written(buffer: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let at = buffer.len();
    buffer.put_u64_le(0);
    write(buffer);
    let len = (buffer.len() - at - 8) as u64;
    buffer[at..at + 8].copy_from_slice(&len.to_le_bytes());
}

/// `value` as a JSON text value; one that cannot be serialised (a map with keys that are not
/// strings) becomes a JSON string that says so.
fn put_json<V: Serialize + ?Sized>(buffer: &mut Vec<u8>, value: &V) {
    buffer.put_u8(Tag::JsonText as u8);
    put_written(buffer, |buffer| {
        let at = buffer.len();
        if let Err(error) = serde_json::to_writer(&mut *buffer, value) {
            buffer.truncate(at);
            let said = format!("not serialisable as JSON: {error}");
            // A string always serialises.
            let _ = serde_json::to_writer(&mut *buffer, &said);
        }
    });
}

/// Reads a packed trace's records.
struct Reader(Bytes);

/// What was being read when the buffer ran out or held something unexpected.
type Read<T> = Result<T, &'static str>;

/// A span's content while its records are read, until its end.
#[derive(Default)]
struct Content {
    attributes: Vec<(Cow<'static, str>, AttributeValue)>,
    events: Vec<SpanEvent>,
}

impl Reader {
    fn trace(mut self, trace_id: u128, span_count: usize) -> Read<TraceRecord> {
        let mut open: HashMap<u64, Content> = HashMap::new();
        let mut spans = Vec::with_capacity(span_count);
        while self.0.has_remaining() {
            let record = self.u8()?;
            let span_id = self.u64()?;
            match record {
                r if r == Record::Attribute as u8 => {
                    let key = Cow::Owned(self.text()?);
                    let value = self.value()?;
                    open.entry(span_id)
                        .or_default()
                        .attributes
                        .push((key, value));
                }
                r if r == Record::Event as u8 => {
                    let event = self.event()?;
                    open.entry(span_id).or_default().events.push(event);
                }
                r if r == Record::SpanEnd as u8 => {
                    let content = open.remove(&span_id).unwrap_or_default();
                    spans.push(self.span_end(trace_id, span_id, content)?);
                }
                _ => return Err("an unknown record"),
            }
        }
        if spans.len() != span_count {
            return Err("a span count that is not the spans'");
        }
        Ok(TraceRecord { trace_id, spans })
    }

    fn u64(&mut self) -> Read<u64> {
        self.0.try_get_u64_le().map_err(|_| "ended inside a number")
    }

    fn i64(&mut self) -> Read<i64> {
        self.0.try_get_i64_le().map_err(|_| "ended inside a number")
    }

    fn u8(&mut self) -> Read<u8> {
        self.0.try_get_u8().map_err(|_| "ended inside a tag")
    }

    fn count(&mut self) -> Read<u32> {
        self.0.try_get_u32_le().map_err(|_| "ended inside a count")
    }

    fn time(&mut self) -> Read<SystemTime> {
        Ok(SystemTime::UNIX_EPOCH + Duration::from_nanos(self.u64()?))
    }

    fn bytes(&mut self) -> Read<Bytes> {
        let len = usize::try_from(self.u64()?).map_err(|_| "a length beyond memory")?;
        if self.0.remaining() < len {
            return Err("ended inside a text");
        }
        Ok(self.0.split_to(len))
    }

    fn text(&mut self) -> Read<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "a text that is not UTF-8")
    }

    fn value(&mut self) -> Read<AttributeValue> {
        let tag = self.u8()?;
        Ok(match tag {
            t if t == Tag::JsonText as u8 => AttributeValue::JsonText(self.bytes()?),
            t if t == Tag::Str as u8 => AttributeValue::Str(Cow::Owned(self.text()?)),
            t if t == Tag::Int as u8 => AttributeValue::Int(self.i64()?),
            t if t == Tag::Bool as u8 => AttributeValue::Bool(self.u8()? != 0),
            t if t == Tag::TokenUsage as u8 => AttributeValue::TokenUsage(TokenUsage {
                input_tokens: self.i64()?,
                output_tokens: self.i64()?,
                total_tokens: self.i64()?,
            }),
            _ => return Err("an unknown value tag"),
        })
    }

    fn event(&mut self) -> Read<SpanEvent> {
        let name = self.text()?;
        let time = self.time()?;
        let attributes = (0..self.count()?)
            .map(|_| Ok((self.text()?, self.text()?)))
            .collect::<Read<Vec<_>>>()?;
        Ok(SpanEvent {
            name,
            time,
            attributes,
        })
    }

    fn span_end(&mut self, trace_id: u128, span_id: u64, content: Content) -> Read<SpanRecord> {
        let parent_id = Some(self.u64()?).filter(|&id| id != 0);
        let start = self.time()?;
        let end = self.time()?;
        let name = Cow::Owned(self.text()?);
        let span_type = Cow::Owned(self.text()?);
        let error = match self.u8()? {
            0 => None,
            _ => Some(self.text()?),
        };
        Ok(SpanRecord {
            trace_id,
            span_id,
            parent_id,
            name,
            span_type,
            start,
            end,
            attributes: content.attributes,
            events: content.events,
            error,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn end<'a>(
        span_id: u64,
        parent_id: Option<u64>,
        name: &'a str,
        error: Option<&'a str>,
    ) -> SpanEnd<'a> {
        SpanEnd {
            span_id,
            parent_id,
            start: SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            end: SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_001_000_000_001),
            name,
            span_type: "CHAIN",
            error,
        }
    }

    /// `f`'s records, appended to a fresh trace as one piece.
    fn packed(f: impl FnOnce(&mut Records)) -> Records {
        let mut packer = Records::for_trace();
        Records::with_scratch(|scratch| {
            f(scratch);
            packer.append(scratch);
        });
        packer
    }

    #[test]
    fn interleaved_records_of_two_spans_unpack_into_each_span_in_the_order_they_ended() {
        let usage = TokenUsage {
            input_tokens: 1,
            output_tokens: 2,
            total_tokens: i64::MAX,
        };
        let mut packer = packed(|scratch| {
            scratch.attribute_json(
                1,
                "mlflow.spanInputs",
                &serde_json::json!({"text": "é\"\n"}),
            );
            scratch.attribute_json_text(2, "mlflow.spanInputs", br#"{"model":"m"}"#);
            scratch.attribute(2, "n", &AttributeValue::Int(-7));
            scratch.attribute(1, "flag", &AttributeValue::Bool(true));
            scratch.attribute(2, "model", &AttributeValue::Str(Cow::Borrowed("gpt-4o")));
            scratch.attribute(2, "mlflow.chat.tokenUsage", &usage.into());
        });
        // A second piece, as another record call appends it.
        Records::with_scratch(|scratch| {
            scratch.event(
                2,
                &SpanEvent {
                    name: "llm request failed; retrying".to_owned(),
                    time: SystemTime::UNIX_EPOCH + Duration::from_secs(5),
                    attributes: vec![("retry".to_owned(), "1".to_owned())],
                },
            );
            scratch.end_span(&end(2, Some(1), "llm.chat", Some("boom")));
            scratch.attribute_json(1, "mlflow.spanOutputs", "ok");
            scratch.end_span(&end(1, None, "summarize", None));
            packer.append(scratch);
        });
        let packed = packer.finish(42, None);
        assert_eq!(packed.span_count(), 2);
        let trace = packed.unpack().unwrap();
        assert_eq!(trace.trace_id, 42);
        let [child, root] = &trace.spans[..] else {
            panic!("two spans: {:?}", trace.spans);
        };
        assert_eq!((child.span_id, child.parent_id), (2, Some(1)));
        assert_eq!((root.span_id, root.parent_id), (1, None));
        assert_eq!(child.name, "llm.chat");
        assert_eq!(child.start_ns(), 1_700_000_000_123_456_789);
        assert_eq!(child.end_ns(), 1_700_000_001_000_000_001);
        assert_eq!(
            root.attribute_text("mlflow.spanInputs").as_deref(),
            Some(r#"{"text":"é\"\n"}"#)
        );
        assert_eq!(root.attribute_text("flag").as_deref(), Some("true"));
        assert_eq!(
            root.attribute_text("mlflow.spanOutputs").as_deref(),
            Some(r#""ok""#)
        );
        assert_eq!(
            child.attribute_text("mlflow.spanInputs").as_deref(),
            Some(r#"{"model":"m"}"#)
        );
        assert_eq!(child.attribute_text("n").as_deref(), Some("-7"));
        assert_eq!(child.attribute_string("model").as_deref(), Some("gpt-4o"));
        assert_eq!(trace.token_usage(), Some(usage));
        assert_eq!(child.events.len(), 1);
        assert_eq!(
            child.events[0].attributes,
            [("retry".to_owned(), "1".to_owned())]
        );
        assert_eq!(child.error.as_deref(), Some("boom"));
        assert_eq!(root.error, None);
        // The packer starts the next trace empty.
        assert_eq!(packer.finish(43, None).unpack().unwrap().spans.len(), 0);
    }

    #[test]
    fn a_value_that_cannot_be_json_becomes_a_json_string_saying_why() {
        let not_json: BTreeMap<(u8, u8), u8> = BTreeMap::from([((1, 2), 3)]);
        let mut packer = packed(|scratch| {
            scratch.attribute_json(1, "mlflow.spanOutputs", &not_json);
            scratch.end_span(&end(1, None, "chain", None));
        });
        let trace = packer.finish(1, None).unpack().unwrap();
        let text = trace.spans[0]
            .attribute_string("mlflow.spanOutputs")
            .unwrap();
        assert!(
            text.starts_with("not serialisable as JSON: key must be a string"),
            "{text}"
        );
    }

    #[test]
    fn a_record_made_while_another_is_made_on_the_thread_gets_a_scratch_of_its_own() {
        let (outer, inner) = Records::with_scratch(|outer| {
            outer.attribute(1, "outer", &AttributeValue::Int(1));
            let inner = Records::with_scratch(|inner| {
                assert!(inner.is_empty());
                inner.attribute(1, "inner", &AttributeValue::Int(2));
                inner.bytes.clone()
            });
            (outer.bytes.clone(), inner)
        });
        assert_ne!(outer, inner);
        // A panic while a record is made leaves nothing of it in the next scratch.
        let _ = std::panic::catch_unwind(|| {
            Records::with_scratch(|scratch| {
                scratch.attribute(1, "half", &AttributeValue::Int(3));
                panic!("a Serialize that panics");
            })
        });
        Records::with_scratch(|scratch| assert!(scratch.is_empty()));
    }

    #[test]
    fn a_buffer_cut_anywhere_is_an_error_naming_the_trace_not_a_panic() {
        let mut packer = packed(|scratch| {
            scratch.attribute_json(1, "k", &serde_json::json!({"a": [1, 2]}));
            scratch.event(
                1,
                &SpanEvent {
                    name: "e".to_owned(),
                    time: SystemTime::now(),
                    attributes: vec![("f".to_owned(), "v".to_owned())],
                },
            );
            scratch.end_span(&end(1, None, "chain", Some("boom")));
        });
        let whole = packer.finish(7, None);
        assert!(whole.unpack().is_ok());
        for len in 0..whole.bytes.len() {
            let cut = PackedTrace {
                bytes: whole.bytes[..len].to_vec(),
                ..whole.clone()
            };
            let error = cut.unpack().unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("trace tr-{:032x} cannot be unpacked", 7)),
                "{error}"
            );
        }
    }

    #[test]
    fn a_finished_trace_is_copied_whole_into_its_block_and_the_thread_keeps_the_buffer() {
        // Run on a thread of its own: the buffer kept is this thread's.
        std::thread::spawn(|| {
            let mut records = Records::for_trace();
            records.attribute_json_text(1, "mlflow.spanInputs", br#"{"a":1}"#);
            records.end_span(&end(1, None, "chain", None));
            let recorded = records.bytes.clone();
            let working = records.bytes.as_ptr();
            // A block with an earlier trace's content in it: cleared first.
            let block = vec![0xAA; 8 * 1024];
            let packed = records.finish(9, Some(block));
            assert_eq!(
                packed.bytes, recorded,
                "the block holds the trace, nothing else"
            );
            assert_eq!(
                packed.bytes.capacity(),
                8 * 1024,
                "the block given, not a new one"
            );
            assert_eq!(packed.unpack().unwrap().spans.len(), 1);
            assert!(records.is_empty());
            // The next trace begun on this thread records into the same buffer, emptied.
            let next = Records::for_trace();
            assert_eq!(next.bytes.as_ptr(), working);
            assert!(next.is_empty());
            // Without a block, a new one of the trace's size; a second trace on the thread
            // while the first is open gets a buffer of its own.
            let open = Records::for_trace();
            assert_ne!(open.bytes.as_ptr(), working);
            assert!(open.bytes.capacity() >= INITIAL_CAPACITY);
            let mut next = next;
            next.attribute(1, "k", &AttributeValue::Int(1));
            let packed = next.finish(10, None);
            assert!(
                packed.bytes.capacity() < INITIAL_CAPACITY,
                "a block of the trace's size"
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_trace_begun_on_one_thread_and_ended_on_another_leaves_its_buffer_to_the_second() {
        let begun = std::thread::spawn(|| {
            let mut records = Records::for_trace();
            records.attribute(1, "k", &AttributeValue::Int(1));
            records
        })
        .join()
        .unwrap();
        let working = begun.bytes.as_ptr() as usize;
        std::thread::spawn(move || {
            let mut begun = begun;
            let packed = begun.finish(3, None);
            assert_eq!(packed.unpack().unwrap().spans.len(), 0);
            assert_eq!(Records::for_trace().bytes.as_ptr() as usize, working);
            // A buffer grown past MAX_KEPT_BUFFER is not kept; finishing twice keeps none.
            let mut big = Records::for_trace();
            big.bytes.reserve(MAX_KEPT_BUFFER + 1);
            let _ = big.finish(4, None);
            let _ = big.finish(5, None);
            assert_eq!(Records::for_trace().bytes.capacity(), INITIAL_CAPACITY);
        })
        .join()
        .unwrap();
    }
}
