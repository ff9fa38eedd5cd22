//! Writing an artifact directory from an [`ArtifactSpec`]: [`write_artifact`].
//!
//! Everything is assembled in memory first (relative path → bytes), then written, then the
//! MLmodel last, so the MLmodel's hashes and `model_size_bytes` describe exactly the files
//! on disk. No absolute path of the author's machine is written anywhere: paths in the
//! MLmodel are relative to the artifact, and the config's origin is never recorded.

use std::{
    collections::{BTreeMap, btree_map::Entry},
    fs,
    path::{Path, PathBuf},
};

use serde_json::{Value, json};

use crate::digest::{sha256_hex, tree_sha256};

use super::{
    ArtifactError, ArtifactSpec, ChainlogFlavor, FileRecord, Flavors, InputExampleInfo, MlModel,
    PromptRecord, PyfuncFlavor, Signature, SnapshotRecord, WrittenArtifact,
    mlmodel::{
        CASSETTES_DIR, CODE_DIR, CONFIG_FILE, ENV_VARS_FILE, FORMAT_VERSION, INPUT_EXAMPLE_FILE,
        MLFLOW_VERSION, MLMODEL_FILE, OUTPUT_EXAMPLE_FILE, PROMPTS_DIR, PYFUNC_LOADER_FILE,
        PYFUNC_LOADER_MODULE, PYFUNC_LOADER_SOURCE, SERVING_INPUT_EXAMPLE_FILE, utc_time,
    },
    signature::mlflow_schema_json,
};

/// MLflow's header of `environment_variables.txt`, verbatim.
pub const ENV_VARS_HEADER: &str = "# This file records environment variable names that are used during model inference.\n\
# They might need to be set when creating a serving endpoint from this model.\n\
# Note: it is not guaranteed that all environment variables listed here are required\n";

/// Writes the artifact for `spec` into `dir` (created if missing; it must be empty).
///
/// Everything is read and checked before the first file is written, so a refused spec
/// leaves `dir` as it was.
///
/// # Errors
///
/// [`ArtifactError::DirNotEmpty`] if `dir` holds anything; [`ArtifactError::InvalidSpec`]
/// for a chain name that is not `[a-z0-9_]+`, a prompt file path that is not plainly
/// relative, two prompts with different content at one path, or a registry URI for a prompt
/// the chain does not have; [`ArtifactError::Io`] for a snapshot file that cannot be read or
/// an artifact file that cannot be written.
pub fn write_artifact(
    dir: &Path,
    spec: &ArtifactSpec<'_>,
) -> Result<WrittenArtifact, ArtifactError> {
    let chain = spec.chain.name();
    if chain.is_empty()
        || !chain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(invalid(format!("chain name `{chain}` is not [a-z0-9_]+")));
    }
    let signature = Signature {
        inputs: mlflow_schema_json(spec.chain.input_schema())?,
        outputs: mlflow_schema_json(spec.chain.output_schema())?,
        params: None,
    };
    let mut files = Files::default();
    let (code, crate_snapshot) = add_code(&mut files, spec)?;
    let prompts = add_prompts(&mut files, spec)?;
    files.put(CONFIG_FILE.to_owned(), spec.config.to_yaml().into_bytes());
    let saved_input_example_info = add_examples(&mut files, spec)?;
    for (name, bytes) in spec.cassettes.into_iter().flatten() {
        let plain = plain_relative(Path::new(name))
            .filter(|p| !p.contains('/'))
            .ok_or_else(|| {
                invalid(format!(
                    "cassette file name `{name}` is not a plain file name"
                ))
            })?;
        files.put(format!("{CASSETTES_DIR}/{plain}"), bytes.clone());
    }
    let env_vars: Vec<String> = spec.config.references().into_iter().collect();
    if !env_vars.is_empty() {
        let text = format!("{ENV_VARS_HEADER}{}\n", env_vars.join("\n"));
        files.put(ENV_VARS_FILE.to_owned(), text.into_bytes());
    }

    let others = files.other_records(&code, crate_snapshot.as_ref(), &prompts);

    prepare_dir(dir)?;
    let model_size_bytes = files.write_all(dir)?;
    let registry: Vec<String> = prompts.iter().filter_map(|p| p.uri.clone()).collect();
    let mlmodel = MlModel {
        artifact_path: spec.artifact_uri.map(str::to_owned),
        env_vars: (!env_vars.is_empty()).then_some(env_vars),
        flavors: Flavors {
            chainlog: flavor(spec, code, crate_snapshot, prompts, others),
            python_function: Some(PyfuncFlavor {
                code: CODE_DIR.to_owned(),
                config: spec.config.as_value().clone(),
                loader_module: PYFUNC_LOADER_MODULE.to_owned(),
                streamable: false,
            }),
        },
        is_signature_from_type_hint: false,
        mlflow_version: MLFLOW_VERSION.to_owned(),
        model_id: Some(spec.model_id.to_owned()),
        model_size_bytes: Some(model_size_bytes),
        model_uuid: spec.model_id.to_owned(),
        prompts: (!registry.is_empty()).then_some(registry),
        run_id: spec.run_id.map(str::to_owned),
        saved_input_example_info,
        signature: Some(signature),
        type_hint_from_example: false,
        utc_time_created: utc_time(spec.created),
    };
    let text = mlmodel.to_yaml()?;
    let path = dir.join(MLMODEL_FILE);
    fs::write(&path, &text).map_err(|source| ArtifactError::Io { path, source })?;

    let mut written: Vec<PathBuf> = files.paths().map(PathBuf::from).collect();
    written.push(PathBuf::from(MLMODEL_FILE));
    written.sort();
    Ok(WrittenArtifact {
        files: written,
        total_bytes: model_size_bytes + text.len() as u64,
        digest: sha256_hex(text.as_bytes()),
        mlmodel,
    })
}

/// The chainlog flavor: what the chain is, its records, and the spec's provenance.
fn flavor(
    spec: &ArtifactSpec<'_>,
    code: FileRecord,
    crate_snapshot: Option<SnapshotRecord>,
    prompts: Vec<PromptRecord>,
    files: Vec<FileRecord>,
) -> ChainlogFlavor {
    let provenance = spec.provenance;
    ChainlogFlavor {
        format_version: FORMAT_VERSION,
        chain: spec.chain.name().to_owned(),
        description: spec.chain.description().to_owned(),
        code,
        crate_snapshot,
        prompts,
        files,
        config: spec.config.as_value().clone(),
        config_sha256: spec.config.sha256(),
        chainlog_version: provenance.chainlog_version.clone(),
        rustc_version: provenance.rustc_version.clone(),
        target: provenance.target.clone(),
        git_commit: provenance.git.as_ref().map(|g| g.commit.clone()),
        git_dirty: provenance.git.as_ref().map(|g| g.dirty),
        cargo_lock_sha256: provenance.cargo_lock_sha256.clone(),
    }
}

/// Adds the crate snapshot (when the spec has one), the chain source as compiled and the
/// `python_function` loader under `code/`; returns their records. The loader is listed with
/// the other files (and with a snapshot, part of its hash too).
fn add_code(
    files: &mut Files,
    spec: &ArtifactSpec<'_>,
) -> Result<(FileRecord, Option<SnapshotRecord>), ArtifactError> {
    if let Some(plan) = spec.snapshot {
        for (relative, source) in plan.files() {
            files.put(format!("{CODE_DIR}/{relative}"), source.read()?);
        }
    }
    // The source as compiled wins over the snapshot's copy, which may have been edited since.
    let path = format!("{CODE_DIR}/chains/{}.rs", spec.chain.name());
    files.put(path.clone(), spec.chain.source().as_bytes().to_vec());
    // The loader of this build, whatever a crate file of the same path holds.
    files.put(
        PYFUNC_LOADER_FILE.to_owned(),
        PYFUNC_LOADER_SOURCE.as_bytes().to_vec(),
    );
    let code = FileRecord {
        path,
        sha256: spec.chain.sha256().to_owned(),
    };
    Ok((code, spec.snapshot.map(|_| files.snapshot_record())))
}

/// Adds the input example (as given and as a scoring request) and the output example;
/// returns MLflow's `saved_input_example_info` when there is an input example.
fn add_examples(
    files: &mut Files,
    spec: &ArtifactSpec<'_>,
) -> Result<Option<InputExampleInfo>, ArtifactError> {
    if let Some(example) = spec.output_example {
        files.put(OUTPUT_EXAMPLE_FILE.to_owned(), json_bytes(example)?);
    }
    let Some(example) = spec.input_example else {
        return Ok(None);
    };
    files.put(INPUT_EXAMPLE_FILE.to_owned(), json_bytes(example)?);
    let serving = json!({ "inputs": example });
    files.put(SERVING_INPUT_EXAMPLE_FILE.to_owned(), json_bytes(&serving)?);
    Ok(Some(InputExampleInfo {
        artifact_path: INPUT_EXAMPLE_FILE.to_owned(),
        serving_input_path: SERVING_INPUT_EXAMPLE_FILE.to_owned(),
        kind: "json_object".to_owned(),
    }))
}

/// Adds every prompt's files under `prompts/` and returns their records, by name.
fn add_prompts(
    files: &mut Files,
    spec: &ArtifactSpec<'_>,
) -> Result<Vec<PromptRecord>, ArtifactError> {
    let mut records = Vec::new();
    for (name, template) in spec.prompts.iter() {
        let mut records_of_files = Vec::new();
        for file in template.files() {
            let relative = plain_relative(&file.relative_path).ok_or_else(|| {
                invalid(format!(
                    "prompt `{name}` has file path `{}`, which is not plainly relative",
                    file.relative_path.display()
                ))
            })?;
            let path = format!("{PROMPTS_DIR}/{relative}");
            if !files.put_same(path.clone(), &file.bytes) {
                return Err(invalid(format!(
                    "two prompts hold different content at `{path}`"
                )));
            }
            records_of_files.push(FileRecord {
                path,
                sha256: file.sha256.clone(),
            });
        }
        records.push(PromptRecord {
            name: name.to_owned(),
            sha256: template.sha256().to_owned(),
            files: records_of_files,
            uri: spec.prompt_uris.get(name).map(|uri| (*uri).to_owned()),
        });
    }
    if let Some(unknown) = spec
        .prompt_uris
        .keys()
        .find(|name| spec.prompts.get(name).is_err())
    {
        return Err(invalid(format!(
            "a registry uri is given for prompt `{unknown}`, which the chain does not have"
        )));
    }
    Ok(records)
}

/// The artifact's files in memory: `/`-separated relative path → bytes.
#[derive(Default)]
struct Files(BTreeMap<String, Vec<u8>>);

impl Files {
    /// Adds or replaces a file.
    fn put(&mut self, path: String, bytes: Vec<u8>) {
        self.0.insert(path, bytes);
    }

    /// Adds a file unless the same path holds other bytes; `false` then.
    fn put_same(&mut self, path: String, bytes: &[u8]) -> bool {
        match self.0.entry(path) {
            Entry::Vacant(slot) => {
                slot.insert(bytes.to_vec());
                true
            }
            Entry::Occupied(slot) => slot.get() == bytes,
        }
    }

    fn paths(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The records of the files no other record covers (examples,
    /// `environment_variables.txt`, the pyfunc loader), sorted by path: with them the MLmodel
    /// lists every file.
    fn other_records(
        &self,
        code: &FileRecord,
        snapshot: Option<&SnapshotRecord>,
        prompts: &[PromptRecord],
    ) -> Vec<FileRecord> {
        let listed: std::collections::BTreeSet<&str> = std::iter::once(code.path.as_str())
            .chain(std::iter::once(CONFIG_FILE))
            .chain(
                prompts
                    .iter()
                    .flat_map(|p| p.files.iter().map(|f| f.path.as_str())),
            )
            .collect();
        self.0
            .iter()
            .filter(|(path, _)| {
                // The loader is listed on its own even inside the snapshot, so a changed
                // loader is refused by its name.
                !listed.contains(path.as_str())
                    && (path.as_str() == PYFUNC_LOADER_FILE
                        || !snapshot.is_some_and(|s| path.starts_with(&s.path)))
            })
            .map(|(path, bytes)| FileRecord {
                path: path.clone(),
                sha256: sha256_hex(bytes),
            })
            .collect()
    }

    /// The record of everything under `code/`.
    fn snapshot_record(&self) -> SnapshotRecord {
        let prefix = format!("{CODE_DIR}/");
        let hashes: Vec<(&str, String)> = self
            .0
            .iter()
            .filter_map(|(path, bytes)| Some((path.strip_prefix(&prefix)?, sha256_hex(bytes))))
            .collect();
        SnapshotRecord {
            path: prefix.clone(),
            files: hashes.len(),
            sha256: tree_sha256(hashes.iter().map(|(p, s)| (*p, s.as_str()))),
        }
    }

    /// Writes every file under `dir`; returns their total size.
    fn write_all(&self, dir: &Path) -> Result<u64, ArtifactError> {
        let mut total = 0;
        for (relative, bytes) in &self.0 {
            write_file(&dir.join(relative), bytes)?;
            total += bytes.len() as u64;
        }
        Ok(total)
    }
}

/// Writes `bytes` to `path`, creating its folder first.
pub(super) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|source| ArtifactError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    fs::write(path, bytes).map_err(|source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Creates `dir` if needed and checks that it is empty.
fn prepare_dir(dir: &Path) -> Result<(), ArtifactError> {
    let io = |source| ArtifactError::Io {
        path: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(io)?;
    if fs::read_dir(dir).map_err(io)?.next().is_some() {
        return Err(ArtifactError::DirNotEmpty {
            path: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// `a/b` for a relative path made only of normal UTF-8 components.
pub(super) fn plain_relative(path: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = path
        .components()
        .map(|c| match c {
            std::path::Component::Normal(name) => name.to_str(),
            _ => None,
        })
        .collect();
    parts
        .filter(|parts| !parts.is_empty())
        .map(|parts| parts.join("/"))
}

fn json_bytes(value: &Value) -> Result<Vec<u8>, ArtifactError> {
    crate::pyjson::dumps(value)
        .map(String::into_bytes)
        .map_err(|err| invalid(err.to_string()))
}

fn invalid(message: String) -> ArtifactError {
    ArtifactError::InvalidSpec { message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::test_helpers::{
        CANARY, MODEL_ID, SOURCE, config, entry, files_under, prompts, write_fixture,
    };
    use crate::artifact::{LoadedArtifact, Provenance};

    #[test]
    fn artifact_holds_every_file_of_the_layout() {
        let fixture = write_fixture(true);
        let files = files_under(&fixture.artifact);
        assert_eq!(
            files,
            [
                "MLmodel",
                "code/Cargo.lock",
                "code/Cargo.toml",
                "code/build.rs",
                "code/chainlog_pyfunc.py",
                "code/chains/t.rs",
                "code/chains/t.yaml",
                "code/data/words.txt",
                "code/prompts/greet.hbs",
                "code/src/lib.rs",
                "environment_variables.txt",
                "input_example.json",
                "model_config.yaml",
                "output_example.json",
                "prompts/greet.hbs",
                "prompts/qa/01-system.hbs",
                "prompts/qa/02-user.hbs",
                "serving_input_example.json",
            ]
        );
        let reported: Vec<String> = fixture
            .written
            .files
            .iter()
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .collect();
        assert_eq!(reported, files);
        let on_disk: u64 = files
            .iter()
            .map(|f| fs::metadata(fixture.artifact.join(f)).unwrap().len())
            .sum();
        assert_eq!(fixture.written.total_bytes, on_disk);
        let mlmodel_len = fs::metadata(fixture.artifact.join(MLMODEL_FILE))
            .unwrap()
            .len();
        assert_eq!(
            fixture.written.mlmodel.model_size_bytes,
            Some(on_disk - mlmodel_len)
        );
    }

    #[test]
    fn mlmodel_matches_snapshot() {
        let fixture = write_fixture(true);
        let text = fs::read_to_string(fixture.artifact.join(MLMODEL_FILE)).unwrap();
        insta::with_settings!({filters => vec![
            (r"[0-9a-f]{64}", "[sha256]"),
            (r"'?\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}'?", "[utc-time]"),
            (r"rustc_version: .*", "rustc_version: [rustc]"),
            (r"target: .*", "target: [target]"),
            (r"chainlog_version: .*", "chainlog_version: [version]"),
            // The pyfunc loader's size counts in it; `artifact_holds_every_file_of_the_layout`
            // checks the number.
            (r"model_size_bytes: \d+", "model_size_bytes: [size]"),
        ]}, {
            insta::assert_snapshot!("mlmodel", text);
        });
    }

    #[test]
    fn compiled_source_overrides_the_edited_file_on_disk() {
        let fixture = write_fixture(true);
        let logged = fs::read_to_string(fixture.artifact.join("code/chains/t.rs")).unwrap();
        assert_eq!(logged, SOURCE);
        let flavor = &fixture.written.mlmodel.flavors.chainlog;
        assert_eq!(flavor.code.path, "code/chains/t.rs");
        assert_eq!(flavor.code.sha256, sha256_hex(SOURCE.as_bytes()));
    }

    #[test]
    fn no_file_holds_an_absolute_local_path_or_a_secret() {
        let fixture = write_fixture(true);
        let mut needles = vec![
            fixture.root.path().to_string_lossy().into_owned(),
            fixture.crate_dir.to_string_lossy().into_owned(),
            fixture.artifact.to_string_lossy().into_owned(),
            std::env::temp_dir().to_string_lossy().into_owned(),
            CANARY.to_owned(),
        ];
        if let Ok(canonical) = fixture.root.path().canonicalize() {
            needles.push(canonical.to_string_lossy().into_owned());
        }
        for file in files_under(&fixture.artifact) {
            let bytes = fs::read(fixture.artifact.join(&file)).unwrap();
            for needle in &needles {
                let found = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
                assert!(!found, "`{file}` contains `{needle}`");
            }
        }
    }

    #[test]
    fn pyfunc_flavor_names_the_loader_shipped_under_code() {
        for with_crate in [true, false] {
            let fixture = write_fixture(with_crate);
            let pyfunc = fixture.written.mlmodel.flavors.python_function.unwrap();
            assert_eq!(pyfunc.loader_module, PYFUNC_LOADER_MODULE);
            assert_eq!(pyfunc.code, CODE_DIR);
            assert!(!pyfunc.streamable);
            assert_eq!(
                pyfunc.config,
                fixture.written.mlmodel.flavors.chainlog.config
            );
            let module = format!("{}/{}.py", pyfunc.code, pyfunc.loader_module);
            assert_eq!(module, PYFUNC_LOADER_FILE);
            let shipped = fs::read_to_string(fixture.artifact.join(&module)).unwrap();
            assert_eq!(shipped, PYFUNC_LOADER_SOURCE);
            assert!(shipped.contains("def _load_pyfunc(path, model_config=None)"));
            LoadedArtifact::read(&fixture.artifact)
                .unwrap()
                .verify()
                .unwrap();
        }
    }

    #[test]
    fn code_snapshot_has_no_dotfile_or_target() {
        let fixture = write_fixture(true);
        let code = files_under(&fixture.artifact.join(CODE_DIR));
        assert!(!code.is_empty());
        for file in &code {
            let hidden = file.split('/').any(|part| part.starts_with('.'));
            assert!(!hidden && !file.starts_with("target/"), "{file}");
            assert!(!file.starts_with("notes/"), "{file}");
        }
    }

    #[test]
    fn config_reference_is_kept_and_its_name_listed_in_environment_variables() {
        let fixture = write_fixture(false);
        let config = fs::read_to_string(fixture.artifact.join(CONFIG_FILE)).unwrap();
        assert!(config.contains("api_key: ${OPENAI_API_KEY}"), "{config}");
        let names = fs::read_to_string(fixture.artifact.join(ENV_VARS_FILE)).unwrap();
        assert_eq!(
            names,
            format!("{ENV_VARS_HEADER}OPENAI_API_KEY\nOPENAI_BASE_URL\n")
        );
        assert_eq!(
            fixture.written.mlmodel.env_vars.as_deref(),
            Some(&["OPENAI_API_KEY".to_owned(), "OPENAI_BASE_URL".to_owned()][..])
        );
    }

    #[test]
    fn examples_are_written_the_way_mlflow_writes_json_object_examples() {
        let fixture = write_fixture(false);
        let read = |name| fs::read_to_string(fixture.artifact.join(name)).unwrap();
        assert_eq!(read(INPUT_EXAMPLE_FILE), r#"{"n": 2, "text": "hello"}"#);
        assert_eq!(
            read(SERVING_INPUT_EXAMPLE_FILE),
            r#"{"inputs": {"n": 2, "text": "hello"}}"#
        );
        assert_eq!(read(OUTPUT_EXAMPLE_FILE), r#"{"reply": "hi"}"#);
        let info = fixture.written.mlmodel.saved_input_example_info.unwrap();
        assert_eq!(
            (
                info.artifact_path.as_str(),
                info.serving_input_path.as_str(),
                info.kind.as_str()
            ),
            (
                INPUT_EXAMPLE_FILE,
                SERVING_INPUT_EXAMPLE_FILE,
                "json_object"
            )
        );
    }

    #[test]
    fn without_crate_dir_code_holds_only_the_chain() {
        let fixture = write_fixture(false);
        assert_eq!(
            files_under(&fixture.artifact.join(CODE_DIR)),
            ["chainlog_pyfunc.py", "chains/t.rs"]
        );
        assert_eq!(
            fixture.written.mlmodel.flavors.chainlog.crate_snapshot,
            None
        );
    }

    #[test]
    fn registry_prompt_uri_is_listed_at_the_top_and_in_the_flavor() {
        let dir = tempfile::tempdir().unwrap();
        let (entry, config, prompts) = (entry(), config(dir.path()), prompts());
        let provenance = Provenance::of_binary();
        let spec = ArtifactSpec::new(&entry, &config, &prompts, MODEL_ID, &provenance)
            .with_prompt_uri("greet", "prompts:/greet/3");
        let written = write_artifact(&dir.path().join("a"), &spec).unwrap();
        assert_eq!(
            written.mlmodel.prompts,
            Some(vec!["prompts:/greet/3".to_owned()])
        );
        let records = &written.mlmodel.flavors.chainlog.prompts;
        assert_eq!(records[0].uri.as_deref(), Some("prompts:/greet/3"));
        assert_eq!(records[1].uri, None);

        let spec = ArtifactSpec::new(&entry, &config, &prompts, MODEL_ID, &provenance)
            .with_prompt_uri("nope", "prompts:/nope/1");
        let err = write_artifact(&dir.path().join("b"), &spec).unwrap_err();
        assert!(err.to_string().contains("`nope`"), "{err}");
        assert!(
            !dir.path().join("b").exists(),
            "a refused spec wrote nothing"
        );
    }

    #[test]
    fn writing_into_a_non_empty_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("stale.json"), "{}").unwrap();
        let (entry, config, prompts) = (entry(), config(dir.path()), prompts());
        let provenance = Provenance::of_binary();
        let spec = ArtifactSpec::new(&entry, &config, &prompts, MODEL_ID, &provenance);
        let err = write_artifact(dir.path(), &spec).unwrap_err();
        assert!(matches!(err, ArtifactError::DirNotEmpty { .. }), "{err:?}");
    }
}
