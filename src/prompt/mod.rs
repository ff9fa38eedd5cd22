//! Prompt templates: handlebars files under `prompts/`, compiled once at load, checked for
//! missing inputs before any LLM call, and rendered in strict mode with no HTML escaping.
//!
//! Owns loading, variable discovery, checking and rendering of prompts. It does not own where
//! the prompts folder is (the chain's config and the artifact reader say that), nor logging
//! them (the artifact writer takes [`PromptTemplate::files`] and [`PromptTemplate::sha256`]),
//! nor sending them (the LLM client takes [`Rendered::into_messages`]). Main types:
//! [`PromptTemplate`] and [`PromptSet`].
//!
//! # Layout
//!
//! ```text
//! prompts/
//!   summarize.hbs            a TEXT prompt: one template
//!   chat_qa/                 a CHAT prompt: one template per message
//!     01-system.hbs          NN-<role>.hbs, ordered by the number NN;
//!     02-user.hbs            roles: system, developer, user, assistant
//!     03-assistant.hbs
//! ```
//!
//! Anything else in a chat folder (another extension, an unknown role, a subfolder, a
//! dotfile, two files with the same number) is an error naming the file. A file's final line
//! ending is dropped, so an editor's trailing newline is not sent to the model. A chain reads
//! prompts by name through a [`PromptSet`], whose entries map names to these paths.
//!
//! # Templates
//!
//! Handlebars as implemented by `handlebars` 6, with its built-in helpers (`if`, `unless`,
//! `each`, `with`, `lookup`, `eq`, `and`, `len`, …). Partials, decorators and unknown helpers
//! are refused at load, since they would fail (or hide variables) at render time. A template
//! that only uses `{{var}}` is also a valid MLflow Prompt Registry template.
//!
//! # Variables
//!
//! [`PromptTemplate::variables`] lists the top-level input keys a prompt reads, found by
//! walking the compiled template: `{{var}}` → `var`; `{{obj.field}}` → `obj`; helper and block
//! params (`{{#each items}}`, `{{#if flag}}`, `{{lookup table key}}`, subexpressions, hash
//! values) → their paths. Inside `#each`/`#with` the block's own context is not the input:
//! `this`, `{{field}}`, `this.field`, `@index`/`@key`/`@first` and block params
//! (`as |item|`) are not variables, while `../x` (climbing out of every open block) and
//! `@root.x` are. [`PromptTemplate::check`] fails with every missing name;
//! [`PromptTemplate::render`] checks first, then renders, and also reports a missing nested
//! field by its path.

mod compile;
mod error;
mod load;
mod message;
mod set;
mod template;

pub use error::PromptError;
pub use message::{Rendered, RenderedMessage, Role};
pub use set::PromptSet;
pub use template::{PromptFile, PromptKind, PromptTemplate};
