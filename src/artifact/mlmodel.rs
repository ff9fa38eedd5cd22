//! The `MLmodel` file: MLflow's top-level keys (as MLflow 3 writes them, keys sorted the way
//! its YAML dump sorts them) and chainlog's own flavor, [`ChainlogFlavor`], under
//! `flavors.chainlog`. Owns the file names of the artifact, the flavor's `format_version` and
//! the check that refuses a version this build does not know.
//!
//! The top level is MLflow's format, so unknown keys there are ignored (MLflow keeps them
//! too); the flavor is ours, so unknown keys there are refused. `flavors.python_function`
//! ([`PyfuncFlavor`]) is MLflow's, written so that MLflow's Python world loads the model
//! through the loader every artifact carries ([`PYFUNC_LOADER_FILE`]).

use std::{
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ArtifactError;

/// The chainlog flavor format this build writes. Bump it when a field becomes meaningful;
/// readers refuse versions they do not know.
///
/// - 1: code, prompts, config and crate snapshot hashed; examples and
///   `environment_variables.txt` unlisted.
/// - 2: `files` lists every other file with its SHA-256, so the manifest is complete: a file
///   of the artifact that no record names is refused.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest flavor format this build still reads (1: read with its unlisted examples and
/// `environment_variables.txt` allowed, unhashed, as that format wrote them).
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// The MLflow version whose MLmodel format chainlog writes (`mlflow_version`).
pub const MLFLOW_VERSION: &str = "3.17.2";

/// The tag that records the artifact digest (the SHA-256 of the MLmodel's bytes) on the run
/// and on the LoggedModel, set when the model is logged; loading through the store checks
/// the downloaded MLmodel against it.
pub const ARTIFACT_DIGEST_TAG: &str = "chainlog.artifact_digest";

/// The MLmodel file, at the artifact's root.
pub const MLMODEL_FILE: &str = "MLmodel";
/// The chain config, references only.
pub const CONFIG_FILE: &str = "model_config.yaml";
/// The input example, as given.
pub const INPUT_EXAMPLE_FILE: &str = "input_example.json";
/// The input example as a scoring request (`{"inputs": <example>}`).
pub const SERVING_INPUT_EXAMPLE_FILE: &str = "serving_input_example.json";
/// The output example, as given.
pub const OUTPUT_EXAMPLE_FILE: &str = "output_example.json";
/// The names of the environment variables the chain needs.
pub const ENV_VARS_FILE: &str = "environment_variables.txt";
/// The chain source and the crate snapshot.
pub const CODE_DIR: &str = "code";
/// The prompt templates.
pub const PROMPTS_DIR: &str = "prompts";
/// The folder of the LLM exchanges recorded while running the examples, for `replay`.
pub const CASSETTES_DIR: &str = "cassettes";
/// The `python_function` loader in the artifact (MLflow puts `code/` on `sys.path` and
/// imports [`PYFUNC_LOADER_MODULE`] from it).
pub const PYFUNC_LOADER_FILE: &str = "code/chainlog_pyfunc.py";
/// The flavor's `loader_module`.
pub const PYFUNC_LOADER_MODULE: &str = "chainlog_pyfunc";
/// The loader's source (`python/chainlog_pyfunc.py` of this crate), as every artifact carries
/// it: Python's MLflow and pandas and the standard library only.
pub const PYFUNC_LOADER_SOURCE: &str = include_str!("../../python/chainlog_pyfunc.py");
/// The file MLflow writes into a registered model version's folder when it downloads one
/// (`models:/<name>/<version>`, `models:/<name>@<alias>`): its name and version. Not part of
/// the artifact, never read; a verified folder may hold it unlisted.
pub const REGISTERED_MODEL_META_FILE: &str = "registered_model_meta";
/// The detached OpenSSF Model Signing signature (`log --sign-key`). The one file no record
/// of the MLmodel lists: it signs the MLmodel among the other files, so it cannot be inside
/// what it signs.
pub const SIGNATURE_FILE: &str = "model.sig";

/// The MLmodel file. Field order is the order MLflow's sorted YAML dump writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlModel {
    /// Where the model's files live in the tracking store (the LoggedModel's artifact URI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_path: Option<String>,
    /// Names of the environment variables the chain reads (never values); absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_vars: Option<Vec<String>>,
    /// The flavors; chainlog writes only its own.
    pub flavors: Flavors,
    /// MLflow's flag; chainlog signatures come from JSON schemas, never Python type hints.
    #[serde(default)]
    pub is_signature_from_type_hint: bool,
    /// The MLflow version whose format this follows.
    pub mlflow_version: String,
    /// The LoggedModel id (`m-<32 hex>`).
    #[serde(default)]
    pub model_id: Option<String>,
    /// Total size of the artifact's files other than MLmodel, as MLflow counts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_size_bytes: Option<u64>,
    /// Equal to `model_id`, as MLflow 3's `log_model` writes it.
    pub model_uuid: String,
    /// `prompts:/name/version` URIs of registry prompts the chain uses, or null.
    #[serde(default)]
    pub prompts: Option<Vec<String>>,
    /// The run that logged the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Where the input examples are, when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_input_example_info: Option<InputExampleInfo>,
    /// The input and output column specs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
    /// MLflow's flag; always false here.
    #[serde(default)]
    pub type_hint_from_example: bool,
    /// `YYYY-MM-DD HH:MM:SS.ffffff`, UTC.
    pub utc_time_created: String,
}

/// `flavors:`. Other flavors (written by other tools) are ignored when reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flavors {
    /// chainlog's flavor.
    pub chainlog: ChainlogFlavor,
    /// MLflow's `python_function` flavor: how `mlflow.pyfunc.load_model` loads the model
    /// (absent in artifacts of chainlog before 0.1's pyfunc support).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_function: Option<PyfuncFlavor>,
}

/// `flavors.python_function`, with the keys MLflow's `pyfunc.add_to_model` writes that apply:
/// MLflow puts `<model>/<code>` on `sys.path`, imports `loader_module` and calls its
/// `_load_pyfunc(<model>, config)`. MLflow's format, so unknown keys are kept out of the way,
/// not refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PyfuncFlavor {
    /// The folder MLflow adds to `sys.path`: [`CODE_DIR`].
    pub code: String,
    /// The config inline, as MLflow writes `model_config`; `load_model(uri, model_config=…)`
    /// and `mlflow models serve`'s `SERVING_MODEL_CONFIG` override its keys.
    pub config: Value,
    /// [`PYFUNC_LOADER_MODULE`].
    pub loader_module: String,
    /// Always false: a chainlog model answers whole predictions.
    pub streamable: bool,
}

/// `flavors.chainlog`: what the chain is, where its files are with their hashes, and what
/// built it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainlogFlavor {
    /// [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The chain's name (its file stem).
    pub chain: String,
    /// The first line of the chain's `//!` docs.
    pub description: String,
    /// The chain source as compiled: `code/chains/<name>.rs`.
    pub code: FileRecord,
    /// The crate snapshot for `--build cargo`, when the crate's files were available.
    pub crate_snapshot: Option<SnapshotRecord>,
    /// The prompts, by name.
    pub prompts: Vec<PromptRecord>,
    /// Every other file of the artifact (examples, `environment_variables.txt`, …) with its
    /// SHA-256, sorted by path; with the records above, the complete list of the artifact's
    /// files but MLmodel itself and [`SIGNATURE_FILE`]. Absent (empty) in format 1.
    #[serde(default)]
    pub files: Vec<FileRecord>,
    /// The config inline (references, never values), as MLflow inlines `model_config`.
    pub config: Value,
    /// SHA-256 of `model_config.yaml` (= [`ChainConfig::sha256`](crate::config::ChainConfig::sha256)).
    pub config_sha256: String,
    /// The chainlog crate version that wrote the artifact.
    pub chainlog_version: String,
    /// `rustc --version` of the compiler that built it.
    pub rustc_version: String,
    /// The target triple it was built for.
    pub target: String,
    /// The git commit of the crate, when it is in a git work tree.
    pub git_commit: Option<String>,
    /// Whether the crate's files differed from that commit.
    pub git_dirty: Option<bool>,
    /// SHA-256 of the crate's `Cargo.lock`, when it has one.
    pub cargo_lock_sha256: Option<String>,
}

/// A file of the artifact and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// Relative to the artifact root, `/`-separated.
    pub path: String,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// The crate snapshot folder and the hash of its whole content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRecord {
    /// `code/`.
    pub path: String,
    /// How many files it holds.
    pub files: usize,
    /// SHA-256 over every file's relative path and SHA-256 (sorted by path).
    pub sha256: String,
}

/// One prompt: its name, its files and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptRecord {
    /// The name the chain reads it by.
    pub name: String,
    /// [`PromptTemplate::sha256`](crate::prompt::PromptTemplate::sha256).
    pub sha256: String,
    /// Its files under `prompts/`, in message order.
    pub files: Vec<FileRecord>,
    /// `prompts:/name/version` when it came from MLflow's Prompt Registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// `saved_input_example_info`, as MLflow writes it for a JSON-object example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputExampleInfo {
    /// `input_example.json`.
    pub artifact_path: String,
    /// `serving_input_example.json`.
    pub serving_input_path: String,
    /// `json_object`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// `signature:`: MLflow column specs as JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The input columns.
    pub inputs: String,
    /// The output columns.
    pub outputs: String,
    /// Inference params; chainlog has none.
    #[serde(default)]
    pub params: Option<String>,
}

impl MlModel {
    /// The YAML text of the file.
    ///
    /// # Errors
    ///
    /// [`ArtifactError::InvalidSpec`] if a value cannot be written as YAML.
    pub fn to_yaml(&self) -> Result<String, ArtifactError> {
        let text = serde_norway::to_string(self).map_err(|err| ArtifactError::InvalidSpec {
            message: format!("cannot write the MLmodel: {err}"),
        })?;
        // YAML 1.1 readers (MLflow's PyYAML) take a plain `YYYY-MM-DD HH:MM:SS` for a
        // timestamp, not a string; MLflow quotes it, and so do we. Only digits and `-: .` are
        // quoted this way, so single quotes need no escaping.
        let time = &self.utc_time_created;
        if time
            .bytes()
            .all(|b| b.is_ascii_digit() || b"-: .".contains(&b))
        {
            let plain = format!("\nutc_time_created: {time}\n");
            return Ok(text.replace(&plain, &format!("\nutc_time_created: '{time}'\n")));
        }
        Ok(text)
    }

    /// Parses an MLmodel file's text; `path` names it in errors. The chainlog flavor's
    /// `format_version` is checked before anything else in it.
    ///
    /// # Errors
    ///
    /// [`ArtifactError::Yaml`] for invalid YAML or a key of the wrong shape (naming the key
    /// path), [`ArtifactError::NotChainlog`] without `flavors.chainlog`,
    /// [`ArtifactError::UnknownFormatVersion`] for a version outside
    /// [`OLDEST_FORMAT_VERSION`]..=[`FORMAT_VERSION`].
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ArtifactError> {
        let yaml_error = |message: String| ArtifactError::Yaml {
            path: path.to_path_buf(),
            message,
        };
        let value: serde_norway::Value =
            serde_norway::from_str(text).map_err(|err| yaml_error(err.to_string()))?;
        let Some(flavor) = value.get("flavors").and_then(|f| f.get("chainlog")) else {
            return Err(ArtifactError::NotChainlog {
                path: path.to_path_buf(),
            });
        };
        let version = flavor.get("format_version");
        let known = u64::from(OLDEST_FORMAT_VERSION)..=u64::from(FORMAT_VERSION);
        if !version
            .and_then(serde_norway::Value::as_u64)
            .is_some_and(|v| known.contains(&v))
        {
            let found = version.map_or_else(
                || "missing".to_owned(),
                |v| {
                    serde_norway::to_string(v)
                        .map_or_else(|_| "?".to_owned(), |s| s.trim().to_owned())
                },
            );
            return Err(ArtifactError::UnknownFormatVersion {
                found,
                supported: FORMAT_VERSION,
            });
        }
        serde_path_to_error::deserialize(value).map_err(|err| {
            let key = err.path().to_string();
            yaml_error(format!("at `{key}`: {}", err.into_inner()))
        })
    }
}

/// `time` as MLflow writes `utc_time_created`: `YYYY-MM-DD HH:MM:SS.ffffff` in UTC. Times
/// before 1970 are written as the epoch.
pub(super) fn utc_time(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let of_day = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        since.subsec_micros()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // `day` is 1..=31 and `month` 1..=12 by construction.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn utc_time_is_written_the_way_mlflow_writes_it() {
        let at = |secs: u64, micros: u64| {
            utc_time(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
        };
        assert_eq!(at(0, 0), "1970-01-01 00:00:00.000000");
        assert_eq!(at(951_782_400, 5), "2000-02-29 00:00:00.000005");
        assert_eq!(at(1_795_607_772, 776_368), "2026-11-25 11:56:12.776368");
        assert_eq!(at(4_107_542_399, 999_999), "2100-02-28 23:59:59.999999");
    }

    #[test]
    fn utc_time_created_is_quoted_so_yaml_1_1_reads_a_string() {
        let text = [
            "flavors:",
            "  chainlog: {format_version: 1, chain: t, description: '', crate_snapshot: null,",
            "    code: {path: code/chains/t.rs, sha256: aa}, prompts: [], config: {},",
            "    config_sha256: bb, chainlog_version: 0.1.0, rustc_version: rustc, target: x,",
            "    git_commit: null, git_dirty: null, cargo_lock_sha256: null}",
            "mlflow_version: 3.17.2",
            "model_uuid: m-1",
            "utc_time_created: 2026-01-02 03:04:05.000006",
        ]
        .join("\n");
        let text = text.as_str();
        let model = MlModel::from_yaml(text, Path::new("MLmodel")).unwrap();
        assert_eq!(model.utc_time_created, "2026-01-02 03:04:05.000006");
        let written = model.to_yaml().unwrap();
        assert!(
            written.ends_with("\nutc_time_created: '2026-01-02 03:04:05.000006'\n"),
            "{written}"
        );
        assert_eq!(
            MlModel::from_yaml(&written, Path::new("MLmodel")).unwrap(),
            model
        );
    }

    #[test]
    fn mlflow_pyfunc_mlmodel_is_refused_as_not_chainlog() {
        let text = "artifact_path: mlflow-artifacts:/1/models/m-1/artifacts\n\
                    flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.loaders.code_model\n\
                    mlflow_version: 3.17.2\nmodel_uuid: m-1\nutc_time_created: '2026-01-01 00:00:00.000000'\n";
        let err = MlModel::from_yaml(text, Path::new("x/MLmodel")).unwrap_err();
        assert!(
            matches!(&err, ArtifactError::NotChainlog { path } if path.ends_with("MLmodel")),
            "{err}"
        );
    }

    #[test]
    fn unknown_or_missing_format_version_is_refused_naming_it() {
        for (version, found) in [
            ("format_version: 3\n    ", "3"),
            ("format_version: 0\n    ", "0"),
            ("", "missing"),
            ("format_version: x\n    ", "x"),
        ] {
            let text = format!("flavors:\n  chainlog:\n    {version}chain: t\n");
            let err = MlModel::from_yaml(&text, Path::new("MLmodel")).unwrap_err();
            match &err {
                ArtifactError::UnknownFormatVersion {
                    found: f,
                    supported,
                } => {
                    assert_eq!((f.as_str(), *supported), (found, FORMAT_VERSION));
                }
                other => panic!("{other:?}"),
            }
            assert!(
                err.to_string().contains(&format!("format_version {found}")),
                "{err}"
            );
        }
    }

    #[test]
    fn unknown_flavor_key_is_refused_naming_its_path() {
        let text = "flavors:\n  chainlog:\n    format_version: 1\n    surprise: 1\n";
        let err = MlModel::from_yaml(text, Path::new("MLmodel")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("flavors.chainlog"), "{message}");
        assert!(message.contains("surprise"), "{message}");
    }
}
