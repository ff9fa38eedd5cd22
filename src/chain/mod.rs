//! Chains as code: the [`Chain`] trait, the contexts a chain is built and run with, and the
//! registry of the chains compiled into this binary.
//!
//! A chain is Rust code in `chains/<name>.rs`: serde + schemars `Input`/`Output` types and a
//! `pub fn build(ctx: &BuildContext) -> Result<MyChain, ChainError>`. `build.rs` discovers
//! those files and generates the registry (`chain_registry()`), embedding each chain's source
//! text as compiled; [`ChainEntry::sha256`] hashes exactly that text. The library never imports
//! `chains/`: the generated registry is included by the binary (and the tests) and handed to
//! the library as a [`ChainRegistry`].
//!
//! Parts: `error` ([`ChainError`]), `context` ([`BuildContext`], [`RunContext`]),
//! `registry` ([`ChainEntry`], [`ChainRegistry`], input checks against the schema),
//! `messages` (rendered prompts → chat messages).

mod context;
mod error;
mod messages;
mod registry;

pub use context::{
    BuildContext, ClientFactory, EnvReader, RunContext, openai_factory, prompt_entries,
};
pub use error::ChainError;
pub use messages::render_messages;
pub use registry::{BuiltChain, Chain, ChainEntry, ChainRegistry, check_against, schema_of};
