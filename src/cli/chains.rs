//! `chainlog chains`: the chains compiled into this binary.

use std::io::Write;

use anyhow::Context;
use clap::Args;

use crate::chain::ChainRegistry;

/// Options of `chainlog chains`.
#[derive(Debug, Args)]
pub struct ChainsArgs {
    /// Print JSON (name, sha256, description, source path, input and output schemas).
    #[arg(long)]
    json: bool,
}

/// Lists the chains.
///
/// # Errors
///
/// Only when stdout cannot be written.
pub fn run(registry: &ChainRegistry, args: &ChainsArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if args.json {
        let list: Vec<serde_json::Value> = registry
            .entries()
            .iter()
            .map(|entry| {
                serde_json::json!({
                    "name": entry.name(),
                    "sha256": entry.sha256(),
                    "description": entry.description(),
                    "source_path": entry.source_path(),
                    "input_schema": entry.input_schema(),
                    "output_schema": entry.output_schema(),
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &list).context("failed to write to stdout")?;
        writeln!(out).context("failed to write to stdout")?;
        return Ok(());
    }
    let width = registry
        .entries()
        .iter()
        .map(|e| e.name().len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(out, "{:width$}  {:12}  DESCRIPTION", "NAME", "SHA256")
        .context("failed to write to stdout")?;
    for entry in registry.entries() {
        writeln!(
            out,
            "{:width$}  {:12}  {}",
            entry.name(),
            &entry.sha256()[..12],
            entry.description()
        )
        .context("failed to write to stdout")?;
    }
    Ok(())
}
