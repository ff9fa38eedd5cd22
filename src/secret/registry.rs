//! The process-wide registry of secret values and the scrubber that masks them.
//!
//! Every place that comes to hold a secret registers it ([`register`]); every text from
//! outside goes through [`scrub`] before it is shown. Values are kept as [`SecretString`]s
//! (zeroed on drop, `Debug` redacted), never removed: a key the process once held may still
//! be echoed back later.

use std::{
    io,
    sync::{LazyLock, PoisonError, RwLock},
};

use secrecy::{ExposeSecret, SecretString};

use super::{name::is_secret_name, shape};

/// The shortest value [`scrub`] masks by value (see the module docs: the short-value rule).
pub const MIN_SCRUB_LEN: usize = 8;

/// Every registered value, longest first (so a secret that contains another is masked whole).
static REGISTRY: LazyLock<RwLock<Vec<SecretString>>> = LazyLock::new(|| RwLock::new(Vec::new()));

/// Adds `value` to the secrets [`scrub`] masks. Returns whether it will be masked by value:
/// `false` for a value shorter than [`MIN_SCRUB_LEN`] bytes (after trimming whitespace).
/// Registering the same value twice is harmless.
///
/// # Examples
///
/// ```
/// use chainlog::secret::{register, scrub};
/// assert!(register("canary-3f9a2c71e0"));
/// assert_eq!(scrub("401: Incorrect API key provided: canary-3f9a2c71e0."), "401: Incorrect API key provided: ***.");
/// assert!(!register("short"));
/// ```
pub fn register(value: &str) -> bool {
    let value = value.trim();
    if value.len() < MIN_SCRUB_LEN {
        return false;
    }
    // A known value takes no write lock: a writer waiting on the lock would hold up every
    // reader behind it (the lock prefers writers), among them a trace export thread at idle
    // priority and the requests scrubbed meanwhile.
    let known =
        |registry: &[SecretString]| registry.iter().any(|known| known.expose_secret() == value);
    if known(&REGISTRY.read().unwrap_or_else(PoisonError::into_inner)) {
        return true;
    }
    let mut registry = REGISTRY.write().unwrap_or_else(PoisonError::into_inner);
    if known(&registry) {
        return true;
    }
    let at = registry
        .iter()
        .position(|known| known.expose_secret().len() < value.len())
        .unwrap_or(registry.len());
    registry.insert(at, SecretString::from(value.to_owned()));
    true
}

/// Registers the value of every environment variable whose name is secret-named
/// (`OPENAI_API_KEY`, `MLFLOW_TRACKING_TOKEN`, `MLFLOW_TRACKING_PASSWORD`, `HF_TOKEN`, …), so
/// a key the process could send is masked even before anything reads it. The CLI calls this
/// once at start.
pub fn register_env() {
    for (name, value) in std::env::vars_os() {
        if let (Some(name), Some(value)) = (name.to_str(), value.to_str())
            && is_secret_name(name)
        {
            register(value);
        }
    }
}

/// `text` with every registered secret and every credential shape replaced by `***`.
///
/// # Examples
///
/// ```
/// use chainlog::secret::scrub;
/// assert_eq!(
///     scrub("upstream said: bad key sk-abcdefghijklmnop1234"),
///     "upstream said: bad key ***"
/// );
/// assert_eq!(scrub("nothing to hide"), "nothing to hide");
/// ```
pub fn scrub(text: &str) -> String {
    let mut ranges = registered_ranges(text);
    ranges.extend(shape::secret_ranges(text));
    shape::mask_ranges(text, ranges)
}

/// `text` with every registered secret replaced by `***`, and nothing else changed: for a
/// chain's *successful* output (printed by `run`/`predict`, a batch row, a `serve` answer),
/// where text shaped like a key may be legitimate content but a secret this process holds
/// never is (a provider that echoes the key into a reply cannot pass it on).
///
/// # Examples
///
/// ```
/// use chainlog::secret::{mask_registered, register};
/// register("canary-5d0e7a91b2");
/// assert_eq!(
///     mask_registered(r#"{"summary": "key canary-5d0e7a91b2, sample sk-abcdefghijklmnop1234"}"#),
///     r#"{"summary": "key ***, sample sk-abcdefghijklmnop1234"}"#
/// );
/// ```
pub fn mask_registered(text: &str) -> String {
    shape::mask_ranges(text, registered_ranges(text))
}

/// [`mask_registered`] for text that arrives in pieces (a streamed reply): a secret split
/// across two pieces is masked too. [`push`](Self::push) returns what is safe to pass on now
/// and holds back a tail that could be the start of a secret; [`finish`](Self::finish)
/// returns the rest, masked.
///
/// # Examples
///
/// ```
/// use chainlog::secret::{StreamMask, register};
/// register("canary-77aa11bb22");
/// let mut mask = StreamMask::default();
/// let mut out = mask.push("your key is canary-77");
/// out += &mask.push("aa11bb22 ok");
/// out += &mask.finish();
/// assert_eq!(out, "your key is *** ok");
/// ```
#[derive(Debug, Default)]
pub struct StreamMask {
    pending: String,
}

impl StreamMask {
    /// Adds `piece`; returns the masked text that can no longer be part of a secret.
    pub fn push(&mut self, piece: &str) -> String {
        self.pending.push_str(piece);
        let mut cut = self.pending.len() - held_tail(&self.pending);
        // A whole secret that the cut would split is held back whole.
        while let Some(range) = registered_ranges(&self.pending)
            .into_iter()
            .find(|range| range.start < cut && cut < range.end)
        {
            cut = range.start;
        }
        let ready = mask_registered(&self.pending[..cut]);
        self.pending.drain(..cut);
        ready
    }

    /// The text still held back, masked.
    pub fn finish(&mut self) -> String {
        mask_registered(&std::mem::take(&mut self.pending))
    }
}

/// The length of the longest tail of `text` that is the start of a registered secret.
fn held_tail(text: &str) -> usize {
    let registry = REGISTRY.read().unwrap_or_else(PoisonError::into_inner);
    let mut longest = 0;
    for secret in registry.iter() {
        let secret = secret.expose_secret();
        for len in (longest + 1..=secret.len().min(text.len())).rev() {
            if secret.is_char_boundary(len) && text.ends_with(&secret[..len]) {
                longest = len;
                break;
            }
        }
    }
    longest
}

/// The byte ranges of `text` that hold a registered secret.
fn registered_ranges(text: &str) -> Vec<std::ops::Range<usize>> {
    let registry = REGISTRY.read().unwrap_or_else(PoisonError::into_inner);
    let mut ranges = Vec::new();
    for secret in registry.iter() {
        let secret = secret.expose_secret();
        ranges.extend(
            text.match_indices(secret)
                .map(|(at, _)| at..at + secret.len()),
        );
    }
    ranges
}

/// A writer that [`scrub`]s what goes through it: the tracing subscriber's writer, so no log
/// line at any level carries a registered secret or a credential shape.
///
/// Each `write` is scrubbed on its own; tracing's formatter writes a whole event at once, so
/// a secret is never split across two writes.
///
/// # Examples
///
/// ```
/// use std::io::Write;
/// use chainlog::secret::Scrubbed;
/// let mut out = Scrubbed::new(Vec::new());
/// out.write_all(b"key=Bearer abcd1234efgh5678\n")?;
/// assert_eq!(out.into_inner(), b"key=Bearer ***\n");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Scrubbed<W>(W);

impl<W> Scrubbed<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self(inner)
    }

    /// The wrapped writer.
    pub fn into_inner(self) -> W {
        self.0
    }
}

impl<W: io::Write> io::Write for Scrubbed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let scrubbed = scrub(&text);
        if scrubbed == text {
            self.0.write_all(buf)?;
        } else {
            self.0.write_all(scrubbed.as_bytes())?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn registered_values_are_masked_wherever_they_appear() {
        register("canary-reg-0001-abcdef");
        register("canary-reg-0001");
        let text = "a canary-reg-0001-abcdef b \"canary-reg-0001\" c";
        assert_eq!(scrub(text), "a *** b \"***\" c");
    }

    #[test]
    fn short_values_are_not_masked_by_value() {
        assert!(!register("abc123"));
        assert!(!register("  abc1234  "));
        assert_eq!(scrub("abc123 and abc1234"), "abc123 and abc1234");
    }

    #[test]
    fn shapes_are_masked_without_registering() {
        assert_eq!(
            scrub("GET https://bob:hunter22@h/x?api-key=zz&v=1"),
            "GET https://bob:***@h/x?api-key=***&v=1"
        );
    }

    #[test]
    fn the_writer_scrubs_each_write() {
        register("canary-writer-0002-xyz");
        let mut out = Scrubbed::new(Vec::new());
        out.write_all(b"ERROR failed: canary-writer-0002-xyz\n")
            .unwrap();
        out.write_all(b"\xff plain bytes\n").unwrap();
        assert_eq!(
            out.into_inner(),
            b"ERROR failed: ***\n\xff plain bytes\n".to_vec()
        );
    }
}
