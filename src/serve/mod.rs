//! MLflow's scoring protocol for one built chain, over axum: `GET /ping`, `GET /health`,
//! `GET /version` and `POST /invocations` (`dataframe_split`, `dataframe_records`,
//! `instances` or `inputs`, plus optional `params`) → `{"predictions": [...]}`, or a
//! server-sent event stream of the chain's text when the caller asks for one.
//!
//! It owns the HTTP surface only: turning a request into rows of chain input, checking
//! them, running them with bounded concurrency, and turning every failure into MLflow's
//! error body ([`ServeError`]). It does not load models (the runner does) and never
//! sends a secret or an upstream body to the client.
//!
//! The same protocol runs over JSON lines on stdin/stdout ([`serve_lines`]) in the child
//! process that MLflow's `python_function` flavor starts for a loaded model (`chainlog
//! worker`): the same parsing, input check and row runner, one answer line per request line.
//!
//! Main types: [`ServeState`] (the chain, its input check, [`ServeLimits`], an optional
//! bearer token), [`router`] and [`serve`], [`serve_lines`].

mod error;
mod handler;
mod input;
mod lines;
mod state;
#[cfg(test)]
mod tests;

pub use error::ServeError;
pub use handler::{router, serve};
pub use lines::{line_limits, serve_lines};
pub use state::{InputCheck, ServeLimits, ServeState, schema_check};
