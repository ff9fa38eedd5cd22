//! Integration tests: one test binary (one link step). Each module covers one capability.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
