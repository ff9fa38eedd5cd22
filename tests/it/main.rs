//! Integration tests: one test binary (one link step). Each module covers one capability.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

// The chains compiled from `chains/`, as the binary has them.
include!(concat!(env!("OUT_DIR"), "/chain_registry.rs"));

mod artifact_mlflow;
mod chain_cli;
mod chain_examples;
mod chain_support;
mod direct_store;
mod integrity;
mod llm_client;
mod llm_retry;
mod log_chain;
mod mock_cassette;
mod mock_chat;
mod mock_endpoints;
mod mock_faults;
mod mock_profiles;
mod mock_python;
mod mock_rules;
mod predict_batch;
mod predict_serve;
mod pyfunc;
mod readme;
mod replay;
mod secret_canary;
mod store_read;
mod store_rest;
mod store_sqlite;
mod support;
mod traces;
mod user_crate;
