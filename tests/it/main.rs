//! Integration tests: one test binary (one link step). Each module covers one capability.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod llm_client;
mod llm_retry;
mod mock_cassette;
mod mock_chat;
mod mock_endpoints;
mod mock_faults;
mod mock_python;
mod mock_rules;
mod readme;
mod support;
