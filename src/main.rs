//! The `chainlog` binary: the chains compiled from `chains/` plus the library's command line.

include!(concat!(env!("OUT_DIR"), "/chain_registry.rs"));

fn main() -> std::process::ExitCode {
    chainlog::cli::main(chain_registry())
}
