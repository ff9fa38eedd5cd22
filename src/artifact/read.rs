//! Reading an artifact directory back: [`LoadedArtifact::read`] parses the MLmodel (refusing
//! a flavor `format_version` it does not know and any path that leaves the directory),
//! [`LoadedArtifact::read_pinned`] first checks the MLmodel's bytes against a digest recorded
//! elsewhere (the tracking store, `--expect-digest`), and [`LoadedArtifact::verify`] checks
//! that the MLmodel lists every file and every hash it records against the files.
//!
//! The artifact digest is the SHA-256 of the MLmodel file's bytes: the MLmodel records the
//! SHA-256 of every other file (but [`SIGNATURE_FILE`]), so the digest binds them all.
//!
//! Nothing of an artifact should be used before `verify` passes: the code is about to be
//! built and run.

use std::{
    fs,
    path::{Path, PathBuf},
};

use serde_json::Value;

use crate::digest::{sha256_hex, tree_sha256};

use super::{
    ArtifactError, ChainlogFlavor, MlModel,
    mlmodel::{
        CASSETTES_DIR, CODE_DIR, CONFIG_FILE, ENV_VARS_FILE, INPUT_EXAMPLE_FILE, MLMODEL_FILE,
        OUTPUT_EXAMPLE_FILE, PROMPTS_DIR, REGISTERED_MODEL_META_FILE, SERVING_INPUT_EXAMPLE_FILE,
        SIGNATURE_FILE,
    },
    write::plain_relative,
};
use crate::config::ChainConfig;

/// What a command uses of an artifact: which files must be fetched and verified before it
/// runs. A model fetched from a store is fetched (and checked) only as far as its command
/// needs; a local directory is always checked whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// `predict` and `serve` in this binary: the config, the prompts and the other listed
    /// files outside `code/` and `cassettes/` (the examples, `environment_variables.txt`). The
    /// chain's code is checked by its hash in the MLmodel, not read.
    Run,
    /// `replay`: what [`Needs::Run`] needs and the recorded exchanges (`cassettes/`).
    Replay,
    /// Everything: the crate snapshot for `--build cargo`, the pyfunc loader, a signature
    /// over every file.
    Everything,
}

impl Needs {
    /// Whether a file the flavor lists in `files` is needed.
    fn wants(self, path: &str) -> bool {
        let under = |dir: &str| {
            path.strip_prefix(dir)
                .is_some_and(|rest| rest.starts_with('/'))
        };
        match self {
            Self::Run => !under(CODE_DIR) && !under(CASSETTES_DIR),
            Self::Replay => !under(CODE_DIR),
            Self::Everything => true,
        }
    }
}

/// An artifact directory whose MLmodel has been read.
#[derive(Debug, Clone)]
pub struct LoadedArtifact {
    dir: PathBuf,
    mlmodel: MlModel,
    /// SHA-256 of the MLmodel's bytes as read.
    digest: String,
}

impl LoadedArtifact {
    /// Reads `dir/MLmodel`.
    ///
    /// # Errors
    ///
    /// [`ArtifactError::MissingFile`] without an MLmodel, those of
    /// [`MlModel::from_yaml`] (invalid YAML, [`ArtifactError::NotChainlog`],
    /// [`ArtifactError::UnknownFormatVersion`]), and [`ArtifactError::UnsafePath`] when a
    /// path in the flavor is absolute or climbs out of `dir`.
    pub fn read(dir: &Path) -> Result<Self, ArtifactError> {
        Self::read_checked(dir, None)
    }

    /// Reads `dir/MLmodel` after checking that its bytes have the SHA-256 `expected` (the
    /// artifact digest); `origin` says where that digest comes from in the error
    /// (`recorded in the tracking store`). Nothing of the MLmodel is parsed before.
    ///
    /// # Errors
    ///
    /// [`ArtifactError::DigestMismatch`], then those of [`read`](Self::read).
    pub fn read_pinned(
        dir: &Path,
        expected: &str,
        origin: &'static str,
    ) -> Result<Self, ArtifactError> {
        Self::read_checked(dir, Some((expected, origin)))
    }

    fn read_checked(
        dir: &Path,
        expected: Option<(&str, &'static str)>,
    ) -> Result<Self, ArtifactError> {
        let path = dir.join(MLMODEL_FILE);
        let bytes = fs::read(&path).map_err(|err| ArtifactError::io(&path, err))?;
        let digest = sha256_hex(&bytes);
        if let Some((expected, origin)) = expected
            && !digest.eq_ignore_ascii_case(expected.trim())
        {
            return Err(ArtifactError::DigestMismatch {
                path,
                origin,
                expected: expected.trim().to_ascii_lowercase(),
                actual: digest,
            });
        }
        let text = String::from_utf8(bytes).map_err(|err| ArtifactError::Yaml {
            path: path.clone(),
            message: err.to_string(),
        })?;
        let mlmodel = MlModel::from_yaml(&text, &path)?;
        let flavor = &mlmodel.flavors.chainlog;
        let paths = std::iter::once(flavor.code.path.as_str())
            .chain(flavor.crate_snapshot.iter().map(|s| s.path.as_str()))
            .chain(
                flavor
                    .prompts
                    .iter()
                    .flat_map(|p| p.files.iter().map(|f| f.path.as_str())),
            )
            .chain(flavor.files.iter().map(|f| f.path.as_str()));
        for entry in paths {
            if plain_relative(Path::new(entry)).is_none() {
                return Err(ArtifactError::UnsafePath {
                    mlmodel: path,
                    entry: entry.to_owned(),
                });
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            mlmodel,
            digest,
        })
    }

    /// The artifact digest: the SHA-256 of the MLmodel's bytes, lowercase hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The artifact directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The MLmodel.
    pub fn mlmodel(&self) -> &MlModel {
        &self.mlmodel
    }

    /// The chainlog flavor of the MLmodel.
    pub fn flavor(&self) -> &ChainlogFlavor {
        &self.mlmodel.flavors.chainlog
    }

    /// The folder holding the prompt templates (`prompts/`), laid out as the config's
    /// `prompts:` section names them.
    pub fn prompts_dir(&self) -> PathBuf {
        self.dir.join(PROMPTS_DIR)
    }

    /// The crate snapshot folder (`code/`), when the artifact has one.
    pub fn snapshot_dir(&self) -> Option<PathBuf> {
        self.flavor()
            .crate_snapshot
            .as_ref()
            .map(|s| self.dir.join(&s.path))
    }

    /// The run tags of the artifact's provenance and hashes ([`ChainlogFlavor::run_tags`]).
    pub fn run_tags(&self) -> Vec<(String, String)> {
        self.flavor().run_tags()
    }

    /// Checks that the MLmodel lists every file of the artifact, then every hash the flavor
    /// records: the chain source, each prompt file (and each prompt's hash over its files),
    /// `model_config.yaml` and the inline config, every other listed file (examples,
    /// `environment_variables.txt`), and the crate snapshot's content (no file changed, added
    /// or removed under `code/`).
    ///
    /// # Errors
    ///
    /// [`ArtifactError::UnlistedFile`] naming the first file no record lists (but MLmodel
    /// and `model.sig`), [`ArtifactError::HashMismatch`] naming the first file that differs
    /// (the MLmodel itself when a hash it records disagrees with the rest of it, the `code/`
    /// folder for the snapshot), [`ArtifactError::MissingFile`] for a listed file that is
    /// gone, [`ArtifactError::Config`] for an inline config that is no longer a valid config.
    pub fn verify(&self) -> Result<(), ArtifactError> {
        self.verify_for(Needs::Everything)
    }

    /// The files `needs` uses, as the MLmodel lists them (relative, `/`-separated): the config,
    /// every prompt file and the listed files `needs` wants; for [`Needs::Everything`] also the
    /// chain source (the rest of the crate snapshot is not listed file by file: fetch the
    /// whole artifact for it).
    pub fn files_for(&self, needs: Needs) -> Vec<String> {
        let flavor = self.flavor();
        let mut files = vec![CONFIG_FILE.to_owned()];
        if needs == Needs::Everything {
            files.push(flavor.code.path.clone());
        }
        files.extend(
            flavor
                .prompts
                .iter()
                .flat_map(|p| p.files.iter().map(|f| f.path.clone())),
        );
        files.extend(
            flavor
                .files
                .iter()
                .filter(|f| needs.wants(&f.path))
                .map(|f| f.path.clone()),
        );
        files
    }

    /// [`verify`](Self::verify) of what `needs` uses: no file the MLmodel does not list, and
    /// every hash of the files [`files_for`](Self::files_for) names (with each prompt's and
    /// the config's own hash); [`Needs::Everything`] is `verify`. A file `needs` does not use
    /// may be absent (not fetched yet) and is not checked.
    ///
    /// # Errors
    ///
    /// As [`verify`](Self::verify), for the files checked.
    pub fn verify_for(&self, needs: Needs) -> Result<(), ArtifactError> {
        self.check_complete()?;
        let flavor = self.flavor();
        let everything = needs == Needs::Everything;
        if everything {
            self.check_file(&flavor.code.path, &flavor.code.sha256)?;
        }
        for file in flavor.files.iter().filter(|f| needs.wants(&f.path)) {
            self.check_file(&file.path, &file.sha256)?;
        }
        for prompt in &flavor.prompts {
            for file in &prompt.files {
                self.check_file(&file.path, &file.sha256)?;
            }
            let prefix = format!("{PROMPTS_DIR}/");
            let listed = prompt.files.iter().map(|f| {
                let path = f.path.strip_prefix(&prefix).unwrap_or(&f.path);
                (path, f.sha256.as_str())
            });
            self.check_recorded(&prompt.sha256, tree_sha256(listed))?;
        }
        self.check_file(CONFIG_FILE, &flavor.config_sha256)?;
        let mlmodel_path = self.dir.join(MLMODEL_FILE);
        let inline =
            ChainConfig::from_value(flavor.config.clone(), &mlmodel_path).map_err(|source| {
                ArtifactError::Config {
                    path: mlmodel_path,
                    source,
                }
            })?;
        self.check_recorded(&flavor.config_sha256, inline.sha256())?;
        if let Some(snapshot) = flavor.crate_snapshot.as_ref().filter(|_| everything) {
            let root = self.dir.join(&snapshot.path);
            let mut hashes = Vec::with_capacity(snapshot.files);
            hash_tree(&root, "", &mut hashes)?;
            let actual = tree_sha256(hashes.iter().map(|(p, s)| (p.as_str(), s.as_str())));
            if actual != snapshot.sha256 || hashes.len() != snapshot.files {
                return Err(ArtifactError::HashMismatch {
                    path: root,
                    expected: snapshot.sha256.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }

    /// The chain source as logged. Call [`verify`](Self::verify) first.
    ///
    /// # Errors
    ///
    /// [`ArtifactError::MissingFile`], [`ArtifactError::Io`] (also for text that is not
    /// UTF-8).
    pub fn source(&self) -> Result<String, ArtifactError> {
        let path = self.dir.join(&self.flavor().code.path);
        fs::read_to_string(&path).map_err(|err| ArtifactError::io(&path, err))
    }

    /// The config as logged (`model_config.yaml`). Call [`verify`](Self::verify) first.
    ///
    /// # Errors
    ///
    /// [`ArtifactError::Config`] when it cannot be read or is not a valid config.
    pub fn config(&self) -> Result<ChainConfig, ArtifactError> {
        let path = self.dir.join(CONFIG_FILE);
        ChainConfig::from_path(&path).map_err(|source| ArtifactError::Config { path, source })
    }

    /// The input example, if one was logged.
    ///
    /// # Errors
    ///
    /// [`ArtifactError::Io`], or [`ArtifactError::Yaml`] for a file that is not JSON.
    pub fn input_example(&self) -> Result<Option<Value>, ArtifactError> {
        self.optional_json(INPUT_EXAMPLE_FILE)
    }

    /// The output example, if one was logged.
    ///
    /// # Errors
    ///
    /// As [`input_example`](Self::input_example).
    pub fn output_example(&self) -> Result<Option<Value>, ArtifactError> {
        self.optional_json(OUTPUT_EXAMPLE_FILE)
    }

    fn optional_json(&self, name: &str) -> Result<Option<Value>, ArtifactError> {
        let path = self.dir.join(name);
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|err| ArtifactError::Yaml {
                        path,
                        message: err.to_string(),
                    })
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ArtifactError::Io { path, source }),
        }
    }

    /// Refuses a file that no record lists. MLmodel is the manifest and `model.sig` signs it,
    /// so neither is listed; MLflow's Python client adds [`REGISTERED_MODEL_META_FILE`] to a
    /// registered model it downloads (inert: nothing reads it); format 1 did not list its examples and
    /// `environment_variables.txt`, so an artifact of that format may hold them unlisted.
    fn check_complete(&self) -> Result<(), ArtifactError> {
        let flavor = self.flavor();
        let mut listed: std::collections::BTreeSet<&str> =
            [MLMODEL_FILE, SIGNATURE_FILE, REGISTERED_MODEL_META_FILE]
                .into_iter()
                .chain(std::iter::once(CONFIG_FILE))
                .chain(std::iter::once(flavor.code.path.as_str()))
                .chain(
                    flavor
                        .prompts
                        .iter()
                        .flat_map(|p| p.files.iter().map(|f| f.path.as_str())),
                )
                .chain(flavor.files.iter().map(|f| f.path.as_str()))
                .collect();
        if flavor.format_version == 1 {
            listed.extend([
                INPUT_EXAMPLE_FILE,
                SERVING_INPUT_EXAMPLE_FILE,
                OUTPUT_EXAMPLE_FILE,
                ENV_VARS_FILE,
            ]);
        }
        let snapshot = flavor.crate_snapshot.as_ref().map(|s| {
            let mut prefix = s.path.trim_end_matches('/').to_owned();
            prefix.push('/');
            prefix
        });
        for relative in list_files(&self.dir)? {
            let covered = listed.contains(relative.as_str())
                || snapshot
                    .as_deref()
                    .is_some_and(|prefix| relative.starts_with(prefix));
            if !covered {
                return Err(ArtifactError::UnlistedFile {
                    path: self.dir.join(relative),
                });
            }
        }
        Ok(())
    }

    /// Refuses `relative` unless its bytes hash to `expected`.
    fn check_file(&self, relative: &str, expected: &str) -> Result<(), ArtifactError> {
        let path = self.dir.join(relative);
        let bytes = fs::read(&path).map_err(|err| ArtifactError::io(&path, err))?;
        let actual = sha256_hex(&bytes);
        if actual == expected {
            Ok(())
        } else {
            Err(ArtifactError::HashMismatch {
                path,
                expected: expected.to_owned(),
                actual,
            })
        }
    }

    /// Refuses an MLmodel whose recorded hash disagrees with what its other records give.
    fn check_recorded(&self, expected: &str, actual: String) -> Result<(), ArtifactError> {
        if actual == expected {
            Ok(())
        } else {
            Err(ArtifactError::HashMismatch {
                path: self.dir.join(MLMODEL_FILE),
                expected: expected.to_owned(),
                actual,
            })
        }
    }
}

/// The `/`-separated path of every entry under `dir` that is not a folder (files, and
/// symlinks or other entries, which no record lists), sorted.
pub(super) fn list_files(dir: &Path) -> Result<Vec<String>, ArtifactError> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), ArtifactError> {
        let entries = fs::read_dir(dir).map_err(|err| ArtifactError::io(dir, err))?;
        for entry in entries {
            let entry = entry.map_err(|err| ArtifactError::io(dir, err))?;
            let relative = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let kind = entry
                .file_type()
                .map_err(|err| ArtifactError::io(entry.path(), err))?;
            if kind.is_dir() {
                walk(&entry.path(), &format!("{relative}/"), out)?;
            } else {
                out.push(relative);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort();
    Ok(out)
}

/// `(relative path, sha256)` of every entry under `dir`; a symlink or other non-file entry
/// is recorded by kind, so it never matches a snapshot (which holds only files).
fn hash_tree(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, String)>,
) -> Result<(), ArtifactError> {
    let entries = fs::read_dir(dir).map_err(|err| ArtifactError::io(dir, err))?;
    for entry in entries {
        let entry = entry.map_err(|err| ArtifactError::io(dir, err))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = format!("{prefix}{name}");
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|err| ArtifactError::io(&path, err))?;
        if kind.is_dir() {
            hash_tree(&path, &format!("{relative}/"), out)?;
        } else if kind.is_file() {
            let bytes = fs::read(&path).map_err(|err| ArtifactError::io(&path, err))?;
            out.push((relative, sha256_hex(&bytes)));
        } else {
            out.push((relative, "not-a-file".to_owned()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{
        ENV_VARS_FILE, FORMAT_VERSION, PYFUNC_LOADER_FILE,
        test_helpers::{MODEL_ID, RUN_ID, SOURCE, write_fixture},
    };

    /// Flips the last bit of the file's first byte.
    fn tamper(path: &Path) {
        let mut bytes = fs::read(path).unwrap();
        bytes[0] ^= 1;
        fs::write(path, bytes).unwrap();
    }

    fn mismatch_path(err: ArtifactError) -> PathBuf {
        match err {
            ArtifactError::HashMismatch {
                path,
                expected,
                actual,
            } => {
                assert_ne!(expected, actual);
                path
            }
            other => panic!("expected a hash mismatch, got {other:?}"),
        }
    }

    #[test]
    fn write_read_verify_round_trip() {
        let fixture = write_fixture(true);
        let loaded = LoadedArtifact::read(&fixture.artifact).unwrap();
        loaded.verify().unwrap();
        assert_eq!(loaded.mlmodel(), &fixture.written.mlmodel);
        assert_eq!(loaded.flavor().format_version, FORMAT_VERSION);
        assert_eq!(loaded.mlmodel().model_id.as_deref(), Some(MODEL_ID));
        assert_eq!(loaded.mlmodel().run_id.as_deref(), Some(RUN_ID));
        assert_eq!(loaded.source().unwrap(), SOURCE);
        let config = loaded.config().unwrap();
        assert_eq!(config.sha256(), loaded.flavor().config_sha256);
        assert_eq!(config.as_value(), &loaded.flavor().config);
        assert_eq!(
            loaded.input_example().unwrap(),
            Some(serde_json::json!({"text": "hello", "n": 2}))
        );
        assert_eq!(
            loaded.output_example().unwrap(),
            Some(serde_json::json!({"reply": "hi"}))
        );
        assert_eq!(loaded.snapshot_dir(), Some(fixture.artifact.join("code/")));
        assert_eq!(loaded.run_tags(), fixture.written.run_tags());
    }

    #[test]
    fn prompts_reload_from_the_artifact_with_their_logged_hashes() {
        let fixture = write_fixture(false);
        let loaded = LoadedArtifact::read(&fixture.artifact).unwrap();
        let config = loaded.config().unwrap();
        let entries: std::collections::BTreeMap<String, String> =
            serde_json::from_value(config.as_value()["prompts"].clone()).unwrap();
        let set = crate::prompt::PromptSet::load(&loaded.prompts_dir(), &entries).unwrap();
        for record in &loaded.flavor().prompts {
            assert_eq!(
                set.get(&record.name).unwrap().sha256(),
                record.sha256,
                "{}",
                record.name
            );
        }
    }

    #[test]
    fn run_tags_carry_provenance_and_every_hash() {
        let fixture = write_fixture(true);
        let tags = fixture.written.run_tags();
        let keys: Vec<&str> = tags.iter().map(|(k, _)| k.as_str()).collect();
        for key in [
            "chainlog.version",
            "chainlog.rustc",
            "chainlog.target",
            "chainlog.cargo_lock_sha256",
            "chainlog.code_sha256",
            "chainlog.config_sha256",
            "chainlog.prompt.greet.sha256",
            "chainlog.prompt.qa.sha256",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        // The fixture crate is not in git: no commit tag rather than a wrong one.
        assert!(!keys.contains(&"mlflow.source.git.commit"), "{keys:?}");
    }

    #[test]
    fn tampered_code_is_refused_naming_the_file() {
        let fixture = write_fixture(true);
        tamper(&fixture.artifact.join("code/chains/t.rs"));
        let err = LoadedArtifact::read(&fixture.artifact)
            .unwrap()
            .verify()
            .unwrap_err();
        assert!(err.to_string().contains("code/chains/t.rs"), "{err}");
        assert!(mismatch_path(err).ends_with("code/chains/t.rs"));
    }

    #[test]
    fn tampered_prompt_is_refused_naming_the_file() {
        let fixture = write_fixture(false);
        tamper(&fixture.artifact.join("prompts/qa/02-user.hbs"));
        let err = LoadedArtifact::read(&fixture.artifact)
            .unwrap()
            .verify()
            .unwrap_err();
        assert!(mismatch_path(err).ends_with("prompts/qa/02-user.hbs"));
    }

    #[test]
    fn tampered_config_is_refused_naming_the_file() {
        let fixture = write_fixture(false);
        tamper(&fixture.artifact.join(CONFIG_FILE));
        let err = LoadedArtifact::read(&fixture.artifact)
            .unwrap()
            .verify()
            .unwrap_err();
        assert!(mismatch_path(err).ends_with(CONFIG_FILE));
    }

    #[test]
    fn edited_inline_config_is_refused_naming_the_mlmodel() {
        let fixture = write_fixture(false);
        let path = fixture.artifact.join(MLMODEL_FILE);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("sentences: 3"));
        fs::write(&path, text.replace("sentences: 3", "sentences: 4")).unwrap();
        let err = LoadedArtifact::read(&fixture.artifact)
            .unwrap()
            .verify()
            .unwrap_err();
        assert!(mismatch_path(err).ends_with(MLMODEL_FILE));
    }

    #[test]
    fn changed_or_added_snapshot_file_is_refused_naming_the_snapshot() {
        let fixture = write_fixture(true);
        tamper(&fixture.artifact.join("code/src/lib.rs"));
        let err = LoadedArtifact::read(&fixture.artifact)
            .unwrap()
            .verify()
            .unwrap_err();
        assert!(mismatch_path(err).ends_with("code"));

        let fixture = write_fixture(true);
        fs::write(fixture.artifact.join("code/src/extra.rs"), "").unwrap();
        let err = LoadedArtifact::read(&fixture.artifact)
            .unwrap()
            .verify()
            .unwrap_err();
        assert!(mismatch_path(err).ends_with("code"));
    }

    #[test]
    fn missing_file_is_refused_naming_it() {
        let fixture = write_fixture(false);
        fs::remove_file(fixture.artifact.join("prompts/greet.hbs")).unwrap();
        let err = LoadedArtifact::read(&fixture.artifact)
            .unwrap()
            .verify()
            .unwrap_err();
        assert!(
            matches!(&err, ArtifactError::MissingFile { path } if path.ends_with("prompts/greet.hbs")),
            "{err:?}"
        );
        let empty = tempfile::tempdir().unwrap();
        let err = LoadedArtifact::read(empty.path()).unwrap_err();
        assert!(
            matches!(&err, ArtifactError::MissingFile { path } if path.ends_with(MLMODEL_FILE)),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_format_version_is_refused_on_read() {
        let fixture = write_fixture(false);
        let path = fixture.artifact.join(MLMODEL_FILE);
        let text = fs::read_to_string(&path).unwrap();
        fs::write(
            &path,
            text.replace("format_version: 2", "format_version: 99"),
        )
        .unwrap();
        let err = LoadedArtifact::read(&fixture.artifact).unwrap_err();
        assert!(
            matches!(&err, ArtifactError::UnknownFormatVersion { found, supported: 2 } if found == "99"),
            "{err:?}"
        );
        assert!(err.to_string().contains("format_version 99"), "{err}");
    }

    #[test]
    fn file_no_record_lists_is_refused_naming_it() {
        for extra in [
            "prompts/qa/03-user.hbs",
            "code/chains/other.rs",
            "notes.txt",
            ".gitignore",
        ] {
            let fixture = write_fixture(false);
            fs::write(fixture.artifact.join(extra), "extra").unwrap();
            let err = LoadedArtifact::read(&fixture.artifact)
                .unwrap()
                .verify()
                .unwrap_err();
            assert!(
                matches!(&err, ArtifactError::UnlistedFile { path } if path.ends_with(extra)),
                "{extra}: {err:?}"
            );
            assert!(err.to_string().contains(extra), "{err}");
        }
    }

    #[test]
    fn every_other_file_is_listed_and_checked() {
        let fixture = write_fixture(false);
        let listed: Vec<&str> = fixture
            .written
            .mlmodel
            .flavors
            .chainlog
            .files
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(
            listed,
            [
                PYFUNC_LOADER_FILE,
                ENV_VARS_FILE,
                INPUT_EXAMPLE_FILE,
                OUTPUT_EXAMPLE_FILE,
                SERVING_INPUT_EXAMPLE_FILE
            ]
        );
        tamper(&fixture.artifact.join(PYFUNC_LOADER_FILE));
        let err = LoadedArtifact::read(&fixture.artifact)
            .unwrap()
            .verify()
            .unwrap_err();
        assert!(mismatch_path(err).ends_with(PYFUNC_LOADER_FILE));

        let fixture = write_fixture(false);
        tamper(&fixture.artifact.join(ENV_VARS_FILE));
        let err = LoadedArtifact::read(&fixture.artifact)
            .unwrap()
            .verify()
            .unwrap_err();
        assert!(mismatch_path(err).ends_with(ENV_VARS_FILE));

        let fixture = write_fixture(false);
        fs::remove_file(fixture.artifact.join(OUTPUT_EXAMPLE_FILE)).unwrap();
        let err = LoadedArtifact::read(&fixture.artifact)
            .unwrap()
            .verify()
            .unwrap_err();
        assert!(
            matches!(&err, ArtifactError::MissingFile { path } if path.ends_with(OUTPUT_EXAMPLE_FILE)),
            "{err:?}"
        );
    }

    /// What predict and serve use is named and checked; the crate snapshot and the pyfunc
    /// loader are not (they may be absent from a partial copy, or changed, and still pass
    /// `Needs::Run`), but a present file no record lists and a changed used file are refused;
    /// `Needs::Everything` is `verify`, which refuses the partial copy.
    #[test]
    fn needs_names_and_checks_only_what_is_used() {
        let fixture = write_fixture(true);
        let artifact = LoadedArtifact::read(&fixture.artifact).unwrap();
        assert_eq!(
            artifact.files_for(Needs::Run),
            [
                CONFIG_FILE,
                "prompts/greet.hbs",
                "prompts/qa/01-system.hbs",
                "prompts/qa/02-user.hbs",
                ENV_VARS_FILE,
                INPUT_EXAMPLE_FILE,
                OUTPUT_EXAMPLE_FILE,
                SERVING_INPUT_EXAMPLE_FILE
            ]
        );
        assert_eq!(
            artifact.files_for(Needs::Replay),
            artifact.files_for(Needs::Run),
            "the fixture has no cassettes"
        );
        assert!(
            artifact
                .files_for(Needs::Everything)
                .contains(&"code/chains/t.rs".to_owned())
        );
        tamper(&fixture.artifact.join(PYFUNC_LOADER_FILE));
        fs::remove_dir_all(fixture.artifact.join("code/src")).unwrap();
        artifact.verify_for(Needs::Run).unwrap();
        assert!(artifact.verify().is_err());

        fs::write(fixture.artifact.join("prompts/qa/03-user.hbs"), "extra").unwrap();
        let err = artifact.verify_for(Needs::Run).unwrap_err();
        assert!(
            matches!(&err, ArtifactError::UnlistedFile { path } if path.ends_with("prompts/qa/03-user.hbs")),
            "{err:?}"
        );
        fs::remove_file(fixture.artifact.join("prompts/qa/03-user.hbs")).unwrap();
        tamper(&fixture.artifact.join(INPUT_EXAMPLE_FILE));
        let err = artifact.verify_for(Needs::Run).unwrap_err();
        assert!(mismatch_path(err).ends_with(INPUT_EXAMPLE_FILE));
    }

    #[test]
    fn needs_replay_wants_cassettes_and_run_does_not() {
        for (needs, cassette, pyfunc, example) in [
            (Needs::Run, false, false, true),
            (Needs::Replay, true, false, true),
            (Needs::Everything, true, true, true),
        ] {
            assert_eq!(needs.wants("cassettes/case-0.yaml"), cassette, "{needs:?}");
            assert_eq!(needs.wants(PYFUNC_LOADER_FILE), pyfunc, "{needs:?}");
            assert_eq!(needs.wants(INPUT_EXAMPLE_FILE), example, "{needs:?}");
            assert!(
                needs.wants("codex/x"),
                "{needs:?}: only the folder code/ is left out"
            );
        }
    }

    #[test]
    fn a_changed_pyfunc_loader_is_refused_by_name_inside_a_snapshot_too() {
        let fixture = write_fixture(true);
        let listed = &fixture.written.mlmodel.flavors.chainlog.files;
        assert!(
            listed.iter().any(|f| f.path == PYFUNC_LOADER_FILE),
            "{listed:?}"
        );
        tamper(&fixture.artifact.join(PYFUNC_LOADER_FILE));
        let err = LoadedArtifact::read(&fixture.artifact)
            .unwrap()
            .verify()
            .unwrap_err();
        assert!(mismatch_path(err).ends_with(PYFUNC_LOADER_FILE));
    }

    #[test]
    fn mlflow_registered_model_meta_is_tolerated_and_nothing_else_beside_it() {
        let fixture = write_fixture(true);
        fs::write(
            fixture.artifact.join(REGISTERED_MODEL_META_FILE),
            "model_name: sum\nmodel_version: 1\n",
        )
        .unwrap();
        let loaded = LoadedArtifact::read(&fixture.artifact).unwrap();
        loaded.verify().unwrap();
        // Only at the root, and only that name.
        fs::write(
            fixture
                .artifact
                .join("prompts")
                .join(REGISTERED_MODEL_META_FILE),
            "x",
        )
        .unwrap();
        let err = loaded.verify().unwrap_err();
        assert!(matches!(err, ArtifactError::UnlistedFile { .. }), "{err:?}");
    }

    #[test]
    fn pinned_digest_is_checked_before_the_mlmodel_is_parsed() {
        let fixture = write_fixture(false);
        let digest = fixture.written.digest.clone();
        let loaded = LoadedArtifact::read_pinned(&fixture.artifact, &digest, "recorded").unwrap();
        assert_eq!(loaded.digest(), digest);
        assert_eq!(
            digest,
            crate::digest::sha256_hex(&fs::read(fixture.artifact.join(MLMODEL_FILE)).unwrap())
        );
        // Not even YAML any more: the digest refuses it first.
        fs::write(fixture.artifact.join(MLMODEL_FILE), "{{{").unwrap();
        let err = LoadedArtifact::read_pinned(&fixture.artifact, &digest, "recorded").unwrap_err();
        assert!(
            matches!(&err, ArtifactError::DigestMismatch { path, expected, .. }
                if path.ends_with(MLMODEL_FILE) && *expected == digest),
            "{err:?}"
        );
        assert!(err.to_string().contains("digest recorded"), "{err}");
    }

    #[test]
    fn format_1_artifact_still_reads_and_verifies() {
        let fixture = write_fixture(false);
        let path = fixture.artifact.join(MLMODEL_FILE);
        let mut mlmodel = fixture.written.mlmodel.clone();
        mlmodel.flavors.chainlog.format_version = 1;
        mlmodel.flavors.chainlog.files.clear();
        // Format 1 predates the pyfunc loader.
        mlmodel.flavors.python_function = None;
        fs::remove_file(fixture.artifact.join(PYFUNC_LOADER_FILE)).unwrap();
        let text = mlmodel
            .to_yaml()
            .unwrap()
            .replace("\n    files: []\n", "\n");
        assert!(!text.contains("\n    files:"), "{text}");
        fs::write(&path, text).unwrap();
        let loaded = LoadedArtifact::read(&fixture.artifact).unwrap();
        loaded.verify().unwrap();
        // Format 1 tolerated its unlisted examples, nothing else.
        fs::write(fixture.artifact.join("prompts/extra.hbs"), "x").unwrap();
        let err = loaded.verify().unwrap_err();
        assert!(matches!(err, ArtifactError::UnlistedFile { .. }), "{err:?}");
    }

    #[test]
    fn path_leaving_the_artifact_is_refused() {
        let fixture = write_fixture(false);
        let path = fixture.artifact.join(MLMODEL_FILE);
        let text = fs::read_to_string(&path).unwrap();
        for bad in ["../../etc/passwd", "/etc/passwd"] {
            fs::write(
                &path,
                text.replace("path: code/chains/t.rs", &format!("path: {bad}")),
            )
            .unwrap();
            let err = LoadedArtifact::read(&fixture.artifact).unwrap_err();
            assert!(
                matches!(&err, ArtifactError::UnsafePath { entry, .. } if entry == bad),
                "{err:?}"
            );
        }
    }
}
