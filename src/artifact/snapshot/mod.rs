//! The crate snapshot an artifact carries under `code/` for a later `--build cargo`: a copy
//! of the crate that compiled the chain which builds on its own, planned as a whole
//! ([`SnapshotPlan::collect`]) before anything is written.
//!
//! What goes in:
//! - **The crate's files**: all of them, as `cargo package` takes them (a chain may
//!   `include_str!` a data file anywhere in the crate). In a git work tree, the files git
//!   tracks or would track (`git ls-files --cached --others --exclude-standard`: a module not
//!   yet added is compiled all the same, an ignored scratch file stays out); elsewhere the
//!   folder is walked. Never `target/` (or any folder cargo marked with `CACHEDIR.TAG`),
//!   never a dotfile or anything inside a dot-folder, never MLflow store output (`mlruns/`,
//!   `mlflow.db`); a symlink of the crate itself is skipped.
//! - **`Cargo.lock`**: the crate's own, tracked or not; when it has none but lies in a
//!   workspace whose root has one, that one (a build may then need to drop the entries of
//!   the workspace's other members, which `--locked` refuses).
//! - **Packages inside the crate's folder**: every `[workspace] members` entry (globs
//!   expanded, `exclude` honoured) and every path dependency below the crate's folder, at
//!   their relative places, by the same file rules applied in their own folders; their
//!   manifests are unchanged (cargo refuses a workspace whose members are missing).
//!   Members outside the crate are removed from `members`/`default-members`.
//! - **Path dependencies outside the crate's folder** go to `vendor/<package>/` (as
//!   `cargo vendor` does), by the same file rules, and every manifest of the snapshot that
//!   points at one is rewritten with a relative `path` (`vendor/chainlog`,
//!   `../chainlog-build` between vendored packages). A vendored manifest loses `[workspace]`,
//!   `package.workspace`, `[patch]`/`[replace]` and its path dev-dependencies (a
//!   dependency's tests are never built), and its workspace inheritance (`workspace = true`)
//!   is resolved from its workspace root, as `cargo package` does. When the crate is a
//!   workspace root, `vendor` is added to its `[workspace] exclude`, so the vendored
//!   packages stay the non-members they were.
//!
//! - **With `log --vendor`, the registry and git dependencies' sources** under
//!   `cargo-vendor/<crate>-<version>/` (`cargo vendor` output, `.cargo-checksum.json` files
//!   included: the dotfile rule does not apply there), and the source replacement a build
//!   needs to use them offline in `cargo-vendor/source-config.toml`
//!   ([`SnapshotPlan::vendor_registry_sources`], [`source_replacement_args`]).
//!
//! Path dependencies are found by reading the manifests with `toml_edit` (rewrites keep
//! comments and formatting) in `[dependencies]`, `[build-dependencies]`,
//! `[dev-dependencies]`, their `[target.'cfg(..)']` forms, `[workspace.dependencies]` and
//! `[patch.*]` — and recursively in every path dependency's (normal and build ones for a
//! vendored package). Cargo is never run for that: logging stays fast and offline (only
//! `--vendor` runs `cargo vendor`).
//!
//! Refused, naming the dependency and the manifest that declares it: a path dependency whose
//! folder or `Cargo.toml` is missing, one that is a symlink, a dependency's file that is a
//! symlink out of its folder, two outside packages with the same name, inheritance that
//! cannot be resolved, and any manifest of the snapshot that would still hold the absolute
//! path of the crate or of a vendored package.

mod files;
mod manifest;
mod plan;
mod registry;

pub use plan::{SnapshotPlan, SnapshotSource, VENDOR_DIR};
pub use registry::{CARGO_VENDOR_DIR, SOURCE_CONFIG_FILE, source_replacement_args};
