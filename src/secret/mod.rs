//! Secrets: which names say a value is secret, which texts look like credentials, and the one
//! scrubber that masks every secret this process holds in any text that came from outside.
//!
//! Three parts, each used by the layers above (config, llm, store, serve, cli):
//!
//! - `name` ([`is_secret_name`]): key and environment-variable names that hold secrets
//!   (`api_key`, `*_token`, `*_key`, `password`, `pass`, `credential*`, …) and the common
//!   non-secrets that look like them (`max_tokens`, `sort_key`, `eos_token`, …).
//! - `shape` ([`credential_shape`], [`mask_credentials`]): credentials recognisable by their
//!   form — `sk-…`, `Bearer …`, `ghp_…`, `xox?-…`, `AKIA…`, PEM private keys, a password in a
//!   URL's userinfo (`https://user:pw@host`) and key-shaped query parameters (`?api-key=…`,
//!   `&token=…`, `&sig=…`).
//! - `registry` ([`register`], [`scrub`], [`Scrubbed`]): a process-wide list of every secret
//!   value the process holds — each [`ApiKey`](crate::llm::ApiKey) made, the resolved secrets
//!   of chain configs, the tracking store's token or password, the mock's required key, the
//!   serve token and the secret-named environment variables ([`register_env`]) — and
//!   [`scrub`], which replaces each of them, and every credential shape, with `***`.
//!
//! Where it is applied: where outside text enters (the LLM client's error construction:
//! provider error bodies, stream error events, reply excerpts, transport errors; the MLflow
//! server's error messages) and, as a final guard, at every output — the CLI's error line, the
//! tracing subscriber's writer (every log line at every level), `serve`'s error bodies and
//! batch error rows. A chain's successful output (printed, a batch row, a `serve` answer)
//! goes through [`mask_registered`], which masks the registered values only: text shaped like
//! a key may be legitimate output, a secret this process holds never is. Text a streaming
//! chain emits as it goes is not masked (a key could be split across two deltas); its final
//! output is.
//!
//! # The short-value rule
//!
//! A registered value shorter than [`MIN_SCRUB_LEN`] (8) bytes is not scrubbed by value:
//! masking every `abc` or `1234` in every message would make messages unreadable and would
//! itself reveal the short secret by the holes it leaves. Such values are still never written
//! by chainlog's own code (every type holding one hides it in `Debug`), and short values of
//! a credential *shape* are still masked by shape. Real API keys and tokens are far longer.
//!
//! Owns no error type: nothing here fails.

mod name;
mod registry;
mod shape;

pub use name::is_secret_name;
pub use registry::{
    MIN_SCRUB_LEN, Scrubbed, StreamMask, mask_registered, register, register_env, scrub,
};
pub use shape::{credential_shape, mask_credentials};
