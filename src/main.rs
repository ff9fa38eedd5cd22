//! The `chainlog` binary: this repository's example chains (`chains/`, registered by
//! `chainlog-build` exactly as in a user's crate) plus every chainlog command.

chainlog::main!();
