//! This crate's chains with every chainlog command: chains, run, log, predict, serve, prompts, mock.

chainlog::main!();
