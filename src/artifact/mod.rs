//! The model artifact: the directory chainlog logs to MLflow as a LoggedModel's files —
//! writing it, reading it back and verifying its hashes. Synchronous, on local directories
//! only; moving it to and from a tracking store belongs to `store`, building and running the
//! chain it holds to the runner.
//!
//! ```text
//! MLmodel                    MLflow's top-level keys + flavors.chainlog (format_version,
//!                            chain, code/prompt/config paths and SHA-256s, inline config,
//!                            provenance: chainlog/rustc/target, git commit, Cargo.lock hash)
//! code/chains/<name>.rs      the chain source as compiled into the binary
//! code/chainlog_pyfunc.py    the loader of MLflow's `python_function` flavor
//!                            (`python/chainlog_pyfunc.py` of this crate)
//! code/…                     a snapshot of the crate for `--build cargo` that builds on its
//!                            own: files git tracks or would track (not ignored), no target/, no dotfiles, Cargo.lock
//!                            (the workspace's when the crate has none), members inside it
//!                            at their places
//! code/vendor/<package>/…    path dependencies from outside the crate, manifests repointed
//!                            at them with relative paths
//! code/cargo-vendor/…        with `log --vendor`: the sources of every registry and git
//!                            dependency (`cargo vendor`), and source-config.toml
//! prompts/…                  the templates, at their paths relative to the prompts folder
//! model_config.yaml          the config: `${ENV}` references, never values
//! input_example.json         the input example, and serving_input_example.json ({"inputs": …})
//! output_example.json        the output example, when given
//! environment_variables.txt  names of the variables the config references (MLflow's header)
//! cassettes/cases.jsonl      the cases run at log (input, output, cassette), for `replay`
//! cassettes/case-<n>.yaml    their LLM exchanges in the mock's cassette format, scrubbed
//! model.sig                  with `log --sign-key`: an OpenSSF Model Signing signature
//! ```
//!
//! Integrity: the MLmodel lists every other file (cassettes included) with its SHA-256 (format 2; the crate
//! snapshot as one hash over its files, the pyfunc loader included), and
//! [`LoadedArtifact::verify`] refuses a file it does not list as well as a listed one that is
//! missing or changed — but for [`REGISTERED_MODEL_META_FILE`], which MLflow's Python client
//! writes into a registered model it downloads and nothing reads. The artifact digest —
//! the SHA-256 of the MLmodel's bytes, [`LoadedArtifact::digest`] — thus binds every file;
//! the tracking store records it at log time (`chainlog.artifact_digest`) and loading checks
//! it first ([`LoadedArtifact::read_pinned`]). `model.sig` is the one file the MLmodel cannot
//! list (it signs the MLmodel); it is checked on its own, by [`verify_model`].
//!
//! No absolute path of the author's machine is written: the MLmodel's paths are relative to
//! the artifact (unlike MLflow's own `model_code_path`).
//!
//! Main types: [`ArtifactSpec`] and [`write_artifact`] (write), [`LoadedArtifact`] (read,
//! [`verify`](LoadedArtifact::verify)), [`MlModel`] with [`ChainlogFlavor`] (the format) and
//! [`PyfuncFlavor`] (MLflow's `python_function`, so `mlflow.pyfunc.load_model` runs the chain),
//! [`Provenance`] (what built the chain, and its run tags), [`SnapshotPlan`] (the crate
//! snapshot, planned before anything is written), [`ArtifactError`].
//!
//! Parts: `mlmodel` (the MLmodel types, file names, the format_version check), `oms`
//! (OpenSSF Model Signing signatures: [`sign_model`], [`verify_model`]), `signature`
//! (JSON schema → MLflow column specs), `spec` (what to write), `write`, `read`, `snapshot` ([`SnapshotPlan`]: which
//! crate files go in, path dependencies vendored), `provenance`, `error`.

mod error;
mod mlmodel;
mod oms;
mod provenance;
mod read;
mod signature;
mod snapshot;
mod spec;
#[cfg(test)]
mod test_helpers;
mod write;

pub use error::ArtifactError;
pub use mlmodel::{
    ARTIFACT_DIGEST_TAG, CASSETTES_DIR, CODE_DIR, CONFIG_FILE, ChainlogFlavor, ENV_VARS_FILE,
    FORMAT_VERSION, FileRecord, Flavors, INPUT_EXAMPLE_FILE, InputExampleInfo, MLFLOW_VERSION,
    MLMODEL_FILE, MlModel, OLDEST_FORMAT_VERSION, OUTPUT_EXAMPLE_FILE, PROMPTS_DIR,
    PYFUNC_LOADER_FILE, PYFUNC_LOADER_MODULE, PYFUNC_LOADER_SOURCE, PromptRecord, PyfuncFlavor,
    REGISTERED_MODEL_META_FILE, SERVING_INPUT_EXAMPLE_FILE, SIGNATURE_FILE, Signature,
    SnapshotRecord,
};
pub use oms::{SignatureError, SigningKey, VerifyingKey, sign_model, verify_model};
pub use provenance::{CHAINLOG_VERSION, GitState, Provenance, RUSTC_VERSION, TARGET};
pub use read::{LoadedArtifact, Needs};
pub use signature::mlflow_schema_json;
pub use snapshot::{
    CARGO_VENDOR_DIR, SOURCE_CONFIG_FILE, SnapshotPlan, SnapshotSource, VENDOR_DIR,
    source_replacement_args,
};
pub use spec::{ArtifactSpec, WrittenArtifact};
pub use write::{ENV_VARS_HEADER, write_artifact};
