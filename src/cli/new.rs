//! `chainlog new <dir>`: scaffold a crate for your own chains.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use crate::scaffold::{ChainlogSource, NewCrate, scaffold};

/// Options of `chainlog new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The folder to create.
    dir: PathBuf,
    /// The example chain's name (snake_case).
    #[arg(long, value_name = "NAME", default_value = "ask")]
    chain: String,
    /// The package name (default: the folder's name).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Depend on the chainlog checkout at this path (default: the checkout this binary was
    /// built from).
    #[arg(long, value_name = "DIR", conflicts_with = "chainlog_git")]
    chainlog_path: Option<String>,
    /// Depend on chainlog from this git repository.
    #[arg(long, value_name = "URL")]
    chainlog_git: Option<String>,
}

/// Runs `chainlog new`.
///
/// # Errors
///
/// A folder in use, a bad name, no chainlog to depend on, a file that cannot be written.
pub fn run(args: &NewArgs) -> anyhow::Result<()> {
    let chainlog = match (&args.chainlog_path, &args.chainlog_git) {
        (Some(path), _) => ChainlogSource::Path(path.clone()),
        (None, Some(url)) => ChainlogSource::Git(url.clone()),
        (None, None) => match ChainlogSource::compiled_checkout() {
            Some(source) => source,
            None => bail!(
                "the chainlog checkout this binary was built from is gone; pass --chainlog-path DIR or --chainlog-git URL"
            ),
        },
    };
    let spec = NewCrate {
        dir: args.dir.clone(),
        package: args.name.clone(),
        chain: args.chain.clone(),
        chainlog,
    };
    let written = scaffold(&spec)?;
    for file in &written {
        println!("created {}", args.dir.join(file).display());
    }
    eprintln!(
        "next: cd {} && cargo run -- log {} --input-example '{{\"question\": \"What does MLflow track?\"}}'",
        args.dir.display(),
        args.chain
    );
    Ok(())
}
