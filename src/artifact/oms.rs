//! Detached signatures in the OpenSSF Model Signing (OMS) format, key-based method, as PyPI's
//! `model-signing` 1.1.1 writes and verifies them (`model_signing sign key` /
//! `model_signing verify key`): [`sign_model`] writes `model.sig`, [`verify_model`] checks it.
//!
//! # Format
//!
//! `model.sig` is a Sigstore bundle (JSON, media type
//! `application/vnd.dev.sigstore.bundle.v0.3+json`):
//!
//! ```text
//! {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
//!  "verificationMaterial": {"publicKey": {"hint": <hex SHA-256 of the public key's PEM>},
//!                           "tlogEntries": []},
//!  "dsseEnvelope": {"payload": <base64 in-toto statement>,
//!                   "payloadType": "application/vnd.in-toto+json",
//!                   "signatures": [{"sig": <base64 DER ECDSA P-256/SHA-256 over the DSSE PAE>,
//!                                   "keyid": ""}]}}
//! ```
//!
//! The statement (`https://in-toto.io/Statement/v1`, predicate type
//! `https://model_signing/signature/v1.0`) has one subject, the model folder's name with a
//! SHA-256 over the raw digests of every resource in order, and a predicate with
//! `serialization` (`method: files`, `hash_type: sha256`, `allow_symlinks: false`,
//! `ignore_paths`) and `resources`: every file of the folder as `{name: <relative path>,
//! algorithm: sha256, digest: <hex SHA-256 of its bytes>}`, sorted by path component by
//! component (Python's `PurePosixPath` order). The ignored paths are model-signing's defaults:
//! `model.sig` itself (a file cannot hold its own signature) and `.git`, `.gitattributes`,
//! `.github`, `.gitignore` — which a chainlog artifact never holds (its manifest check refuses
//! them, since no record lists them).
//!
//! Verifying leaves out MLflow's `registered_model_meta` when the signature does not list it
//! (MLflow's Python client writes it into a registered model it downloads; nothing reads it).
//! Verifying also requires the signature to cover `MLmodel` (model-signing lets a signer
//! ignore any path): MLmodel lists every other file's hash, so a signature over it vouches for
//! the whole artifact, together with the manifest check that runs before it.
//!
//! The DSSE pre-authentication encoding signed is
//! `DSSEv1 <len(type)> <type> <len(payload)> <payload>`. Signing keys are EC P-256 in PEM
//! (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`, unencrypted); public keys are PEM
//! `PUBLIC KEY` (SubjectPublicKeyInfo). model-signing also takes P-384 and P-521 keys; this
//! build signs and verifies P-256 only and says so for the others.
//!
//! The cryptography is RustCrypto's (`p256`, `ecdsa`, `sha2`); nothing here is hand-rolled
//! but the JSON shapes and the PAE string.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
};

use base64::Engine as _;
use p256::{
    ecdsa::{
        DerSignature, Signature, SigningKey as EcSigningKey, VerifyingKey as EcVerifyingKey,
        signature::{Signer as _, Verifier as _},
    },
    pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePublicKey as _, LineEnding},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{
    ArtifactError,
    mlmodel::{MLMODEL_FILE, REGISTERED_MODEL_META_FILE, SIGNATURE_FILE},
    read::list_files,
};
use crate::digest::hex;

/// The Sigstore bundle media type model-signing writes and requires.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The DSSE payload type: an in-toto statement in JSON.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// model-signing's predicate type (v1.0).
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// Paths model-signing leaves out of a signature by default, relative to the model folder.
const DEFAULT_IGNORED: [&str; 5] = [
    ".git",
    ".gitattributes",
    ".gitignore",
    ".github",
    SIGNATURE_FILE,
];

/// Why a signature could not be made or does not verify. Each message names the file and
/// the reason in one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// A key file cannot be read or is not an EC P-256 key in PEM.
    #[error("cannot use key `{}`: {reason}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `--verify-key` was given but the model has no `model.sig`.
    #[error(
        "model is not signed: no `{}` (log it with --sign-key, or sign it with `model_signing sign key`)",
        path.display()
    )]
    Unsigned {
        /// Where the signature should be.
        path: PathBuf,
    },
    /// `model.sig` is not an OMS key-method signature chainlog can read.
    #[error("malformed signature `{}`: {reason}", path.display())]
    Malformed {
        /// The signature file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The signature was made with another key (the bundle's key hint, or the ECDSA check,
    /// says so).
    #[error("signature `{}` does not verify with key `{}`: {reason}", path.display(), key.display())]
    NotVerified {
        /// The signature file.
        path: PathBuf,
        /// The public key file.
        key: PathBuf,
        /// Why (`signed with another key`).
        reason: String,
    },
    /// The signature verifies but the files are not the ones signed.
    #[error("`{}` does not match signature `{}`: {reason}", path.display(), signature.display())]
    FileMismatch {
        /// The file at fault.
        path: PathBuf,
        /// The signature file.
        signature: PathBuf,
        /// `changed`, `not signed (added after signing)`, `missing`.
        reason: String,
    },
}

/// An EC P-256 private key for `log --sign-key`. Its `Debug` never shows the key.
pub struct SigningKey {
    key: EcSigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    /// Reads a PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`, what `openssl genpkey` writes)
    /// or SEC1 (`BEGIN EC PRIVATE KEY`, what `openssl ecparam -genkey` writes), unencrypted.
    ///
    /// # Errors
    ///
    /// [`SignatureError::Key`] naming the file: unreadable, not PEM, encrypted, or not P-256.
    pub fn from_pem_file(path: &Path) -> Result<Self, SignatureError> {
        let refuse = |reason: String| SignatureError::Key {
            path: path.to_path_buf(),
            reason,
        };
        let text = fs::read_to_string(path).map_err(|err| refuse(err.to_string()))?;
        if text.contains("ENCRYPTED") {
            return Err(refuse(
                "an encrypted private key; decrypt it first (`openssl pkey -in KEY -out PLAIN`)"
                    .to_owned(),
            ));
        }
        if let Ok(key) = EcSigningKey::from_pkcs8_pem(&text) {
            return Ok(Self { key });
        }
        match p256::SecretKey::from_sec1_pem(&text) {
            Ok(secret) => Ok(Self {
                key: EcSigningKey::from(secret),
            }),
            Err(_) => Err(refuse(
                "not an EC P-256 private key in PEM (PKCS#8 or SEC1); model signing with chainlog takes P-256 keys"
                    .to_owned(),
            )),
        }
    }

    /// The matching public key in PEM (`BEGIN PUBLIC KEY`), as `openssl pkey -pubout` writes it.
    ///
    /// # Errors
    ///
    /// [`SignatureError::Key`] if it cannot be encoded (it always can).
    pub fn public_key_pem(&self) -> Result<String, SignatureError> {
        public_pem(self.key.verifying_key(), Path::new("<signing key>"))
    }
}

/// An EC P-256 public key for `--verify-key`, with the file it came from (named in errors).
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    key: EcVerifyingKey,
    /// Hex SHA-256 of the key's PEM as model-signing computes it (the bundle's key hint).
    hint: String,
    path: PathBuf,
}

impl VerifyingKey {
    /// Reads a PEM public key (`BEGIN PUBLIC KEY`).
    ///
    /// # Errors
    ///
    /// [`SignatureError::Key`] naming the file: unreadable, not PEM, or not P-256.
    pub fn from_pem_file(path: &Path) -> Result<Self, SignatureError> {
        let refuse = |reason: String| SignatureError::Key {
            path: path.to_path_buf(),
            reason,
        };
        let text = fs::read_to_string(path).map_err(|err| refuse(err.to_string()))?;
        let key = EcVerifyingKey::from_public_key_pem(&text).map_err(|_| {
            refuse(
                "not an EC P-256 public key in PEM (`BEGIN PUBLIC KEY`); chainlog verifies P-256 signatures"
                    .to_owned(),
            )
        })?;
        let hint = hex(&Sha256::digest(public_pem(&key, path)?.as_bytes()));
        Ok(Self {
            key,
            hint,
            path: path.to_path_buf(),
        })
    }
}

/// The key's SubjectPublicKeyInfo PEM with LF line ends, byte for byte what Python's
/// `cryptography` writes (model-signing hashes it for the key hint).
fn public_pem(key: &EcVerifyingKey, path: &Path) -> Result<String, SignatureError> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|err| SignatureError::Key {
            path: path.to_path_buf(),
            reason: err.to_string(),
        })
}

/// Signs every file of the model folder `dir` (but `model.sig` and model-signing's default
/// ignored paths) and writes `dir/model.sig`; returns its path.
///
/// # Errors
///
/// [`ArtifactError::Io`] for a file that cannot be read or the signature that cannot be
/// written; [`SignatureError::FileMismatch`] for a symlink or other non-file in `dir`.
pub fn sign_model(dir: &Path, key: &SigningKey) -> Result<PathBuf, ArtifactError> {
    let signature_path = dir.join(SIGNATURE_FILE);
    let ignored: Vec<String> = DEFAULT_IGNORED.iter().map(|p| (*p).to_owned()).collect();
    let resources = hash_files(dir, &ignored, &signature_path)?;
    let statement = statement(dir, &resources, &ignored);
    let payload =
        serde_json::to_vec_pretty(&statement).map_err(|err| ArtifactError::InvalidSpec {
            message: format!("cannot write the signed statement: {err}"),
        })?;
    let signature: Signature = key.key.sign(&pae(&payload));
    let der: DerSignature = signature.to_der();
    let engine = base64::engine::general_purpose::STANDARD;
    let hint = hex(&Sha256::digest(
        key.public_key_pem()
            .map_err(ArtifactError::from)?
            .as_bytes(),
    ));
    let bundle = Bundle {
        media_type: BUNDLE_MEDIA_TYPE.to_owned(),
        verification_material: VerificationMaterial {
            public_key: Some(PublicKeyHint { hint: Some(hint) }),
            tlog_entries: Vec::new(),
        },
        dsse_envelope: Envelope {
            payload: engine.encode(&payload),
            payload_type: PAYLOAD_TYPE.to_owned(),
            signatures: vec![EnvelopeSignature {
                sig: engine.encode(der.as_bytes()),
                keyid: Some(String::new()),
            }],
        },
    };
    let text = serde_json::to_string_pretty(&bundle).map_err(|err| ArtifactError::InvalidSpec {
        message: format!("cannot write the signature: {err}"),
    })?;
    fs::write(&signature_path, text).map_err(|err| ArtifactError::io(&signature_path, err))?;
    Ok(signature_path)
}

/// Checks `dir/model.sig` against `key` and the files of `dir`: the bundle's shape, its key
/// hint, the ECDSA signature over the DSSE envelope, the statement's types and root digest,
/// and then that the folder holds exactly the signed files with the signed hashes.
///
/// # Errors
///
/// [`SignatureError::Unsigned`] without `model.sig`, [`SignatureError::Malformed`] for a
/// signature that cannot be read, [`SignatureError::NotVerified`] for one made with another
/// key (or changed) or that does not cover `MLmodel`, [`SignatureError::FileMismatch`]
/// naming a file changed, added or removed since signing; [`ArtifactError::Io`] for a file
/// that cannot be read.
pub fn verify_model(dir: &Path, key: &VerifyingKey) -> Result<(), ArtifactError> {
    let path = dir.join(SIGNATURE_FILE);
    let malformed = |reason: String| SignatureError::Malformed {
        path: path.clone(),
        reason,
    };
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(SignatureError::Unsigned { path }.into());
        }
        Err(err) => return Err(malformed(err.to_string()).into()),
    };
    let bundle: Bundle = serde_json::from_str(&text)
        .map_err(|err| malformed(format!("not a Sigstore bundle ({err})")))?;
    if bundle.media_type != BUNDLE_MEDIA_TYPE {
        return Err(malformed(format!(
            "media type `{}`, expected `{BUNDLE_MEDIA_TYPE}`",
            bundle.media_type
        ))
        .into());
    }
    let not_verified = |reason: String| SignatureError::NotVerified {
        path: path.clone(),
        key: key.path.clone(),
        reason,
    };
    if let Some(hint) = bundle
        .verification_material
        .public_key
        .as_ref()
        .and_then(|k| k.hint.as_deref())
        && hint != key.hint
    {
        return Err(not_verified(format!(
            "signed with another key (its key hint {hint} is not this key's {})",
            key.hint
        ))
        .into());
    }
    let envelope = &bundle.dsse_envelope;
    let engine = base64::engine::general_purpose::STANDARD;
    let payload = engine
        .decode(&envelope.payload)
        .map_err(|err| malformed(format!("payload is not base64 ({err})")))?;
    let first = envelope
        .signatures
        .first()
        .ok_or_else(|| malformed("the envelope holds no signature".to_owned()))?;
    let der = engine
        .decode(&first.sig)
        .map_err(|err| malformed(format!("signature is not base64 ({err})")))?;
    let signature = Signature::from_der(&der)
        .map_err(|_| malformed("signature is not a DER ECDSA P-256 signature".to_owned()))?;
    key.key
        .verify(&pae(&payload), &signature)
        .map_err(|_| not_verified("signed with another key, or changed".to_owned()))?;

    // The signature holds: the statement is the signer's. Now its content.
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(malformed(format!(
            "payload type `{}`, expected `{PAYLOAD_TYPE}`",
            envelope.payload_type
        ))
        .into());
    }
    let statement: Value = serde_json::from_slice(&payload)
        .map_err(|err| malformed(format!("payload is not JSON ({err})")))?;
    let signed = SignedManifest::from_statement(&statement).map_err(malformed)?;
    // MLmodel lists every other file's hash: a signature that leaves it out (model-signing's
    // `--ignore-paths` can) would vouch for less than the whole artifact.
    if !signed
        .resources
        .iter()
        .any(|(name, _)| name == MLMODEL_FILE)
    {
        return Err(not_verified(format!(
            "it does not cover `{MLMODEL_FILE}`, which lists every file of the artifact"
        ))
        .into());
    }
    let mut actual = hash_files(dir, &signed.ignored, &path)?;
    // MLflow's Python client writes `registered_model_meta` into a registered model it
    // downloads (into the store's own folder for a local store); inert, as in the manifest
    // check, unless it was signed.
    if !signed
        .resources
        .iter()
        .any(|(name, _)| name == REGISTERED_MODEL_META_FILE)
    {
        actual.retain(|(name, _)| name != REGISTERED_MODEL_META_FILE);
    }
    compare(dir, &path, &signed.resources, &actual)
}

/// The files and hashes a verified statement lists, and the paths it left out.
struct SignedManifest {
    resources: Vec<(String, String)>,
    ignored: Vec<String>,
}

impl SignedManifest {
    fn from_statement(statement: &Value) -> Result<Self, String> {
        let text = |value: &Value, key: &str| -> Result<String, String> {
            value
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("statement has no `{key}` string"))
        };
        if text(statement, "_type")? != STATEMENT_TYPE {
            return Err(format!("statement type is not `{STATEMENT_TYPE}`"));
        }
        let predicate_type = text(statement, "predicateType")?;
        if predicate_type != PREDICATE_TYPE {
            return Err(format!(
                "predicate type `{predicate_type}`; this chainlog reads `{PREDICATE_TYPE}` (model-signing 1.x)"
            ));
        }
        let subjects = statement
            .get("subject")
            .and_then(Value::as_array)
            .filter(|s| s.len() == 1)
            .ok_or("statement must have exactly one subject")?;
        let root = subjects[0]
            .get("digest")
            .map(|d| text(d, "sha256"))
            .transpose()?
            .ok_or("subject has no sha256 digest")?;
        let predicate = statement
            .get("predicate")
            .ok_or("statement has no predicate")?;
        let serialization = predicate
            .get("serialization")
            .ok_or("predicate has no serialization")?;
        let method = text(serialization, "method")?;
        let hash_type = text(serialization, "hash_type")?;
        if method != "files" || hash_type != "sha256" {
            return Err(format!(
                "serialization `{method}` with `{hash_type}`; chainlog verifies `files` with `sha256` (model-signing's default)"
            ));
        }
        let ignored = match serialization.get("ignore_paths") {
            None => Vec::new(),
            Some(paths) => paths
                .as_array()
                .and_then(|paths| {
                    paths
                        .iter()
                        .map(|p| p.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or("serialization.ignore_paths is not a list of strings")?,
        };
        let mut hasher = Sha256::new();
        let mut resources = Vec::new();
        let listed = predicate
            .get("resources")
            .and_then(Value::as_array)
            .ok_or("predicate has no resources list")?;
        for resource in listed {
            let name = text(resource, "name")?;
            let algorithm = text(resource, "algorithm")?;
            let digest = text(resource, "digest")?;
            if algorithm != "sha256" {
                return Err(format!("resource `{name}` is hashed with `{algorithm}`"));
            }
            let raw = decode_hex(&digest)
                .filter(|raw| raw.len() == 32)
                .ok_or_else(|| {
                    format!("resource `{name}` has digest `{digest}`, not SHA-256 hex")
                })?;
            hasher.update(&raw);
            resources.push((name, digest.to_ascii_lowercase()));
        }
        if hex(&hasher.finalize()) != root.to_ascii_lowercase() {
            return Err(
                "the subject's digest is not the digest of the listed resources".to_owned(),
            );
        }
        Ok(Self { resources, ignored })
    }
}

/// Refuses the first file that differs between what was signed and what `dir` holds.
fn compare(
    dir: &Path,
    signature: &Path,
    signed: &[(String, String)],
    actual: &[(String, String)],
) -> Result<(), ArtifactError> {
    let signed: std::collections::BTreeMap<&str, &str> = signed
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_str()))
        .collect();
    let actual: std::collections::BTreeMap<&str, &str> = actual
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_str()))
        .collect();
    let mismatch = |name: &str, reason: &str| {
        ArtifactError::from(SignatureError::FileMismatch {
            path: dir.join(name),
            signature: signature.to_path_buf(),
            reason: reason.to_owned(),
        })
    };
    for (name, digest) in &actual {
        match signed.get(name) {
            None => return Err(mismatch(name, "not signed (added after signing)")),
            Some(expected) if expected != digest => {
                return Err(mismatch(name, "changed since signing"));
            }
            Some(_) => {}
        }
    }
    if let Some(name) = signed.keys().find(|name| !actual.contains_key(*name)) {
        return Err(mismatch(name, "signed but missing"));
    }
    Ok(())
}

/// `(relative path, hex SHA-256)` of every file under `dir` but the ignored paths (and
/// anything under them), in model-signing's order (path component by component).
fn hash_files(
    dir: &Path,
    ignored: &[String],
    signature: &Path,
) -> Result<Vec<(String, String)>, ArtifactError> {
    let is_ignored = |relative: &str| {
        ignored.iter().any(|ignored| {
            let ignored = ignored.trim_end_matches('/');
            relative == ignored
                || relative
                    .strip_prefix(ignored)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    };
    let mut out = Vec::new();
    for relative in list_files(dir)? {
        if is_ignored(&relative) {
            continue;
        }
        let path = dir.join(&relative);
        let meta = fs::symlink_metadata(&path).map_err(|err| ArtifactError::io(&path, err))?;
        if !meta.is_file() {
            return Err(SignatureError::FileMismatch {
                path,
                signature: signature.to_path_buf(),
                reason: "not a regular file (symlinks are not signed)".to_owned(),
            }
            .into());
        }
        let bytes = fs::read(&path).map_err(|err| ArtifactError::io(&path, err))?;
        out.push((relative, hex(&Sha256::digest(&bytes))));
    }
    out.sort_by(|(a, _), (b, _)| a.split('/').cmp(b.split('/')));
    Ok(out)
}

/// The in-toto statement over `resources` (already in order).
fn statement(dir: &Path, resources: &[(String, String)], ignored: &[String]) -> Value {
    let mut root = Sha256::new();
    for (_, digest) in resources {
        // Our own hex: always valid.
        root.update(decode_hex(digest).unwrap_or_default());
    }
    let name = dir
        .file_name()
        .map_or_else(|| "model".to_owned(), |n| n.to_string_lossy().into_owned());
    json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": hex(&root.finalize())}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {
                "method": "files",
                "hash_type": "sha256",
                "allow_symlinks": false,
                "ignore_paths": ignored,
            },
            "resources": resources
                .iter()
                .map(|(name, digest)| json!({"name": name, "algorithm": "sha256", "digest": digest}))
                .collect::<Vec<_>>(),
        },
    })
}

/// DSSE's pre-authentication encoding of an in-toto payload.
fn pae(payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {PAYLOAD_TYPE} {} ",
        PAYLOAD_TYPE.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Bytes of a hex string, `None` if it is not hex.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The Sigstore bundle, as far as the key method fills it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    verification_material: VerificationMaterial,
    dsse_envelope: Envelope,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerificationMaterial {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key: Option<PublicKeyHint>,
    #[serde(default)]
    tlog_entries: Vec<Value>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PublicKeyHint {
    #[serde(default)]
    hint: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Serialize, Deserialize)]
struct EnvelopeSignature {
    sig: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keyid: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh P-256 key pair, written as PEM files in `dir`: `(private, public)`.
    pub(crate) fn key_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        use p256::{elliptic_curve::Generate as _, pkcs8::EncodePrivateKey as _};
        let secret = p256::SecretKey::try_generate().unwrap();
        let private = dir.join(format!("{name}.pem"));
        let public = dir.join(format!("{name}.pub.pem"));
        fs::write(
            &private,
            secret.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
        )
        .unwrap();
        fs::write(
            &public,
            secret
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        )
        .unwrap();
        (private, public)
    }

    fn model(dir: &Path) -> PathBuf {
        let model = dir.join("model");
        fs::create_dir_all(model.join("sub")).unwrap();
        fs::write(model.join("a.txt"), "hi\n").unwrap();
        fs::write(model.join(MLMODEL_FILE), "flavors: {}\n").unwrap();
        fs::write(model.join("a.b"), "y\n").unwrap();
        fs::write(model.join("sub/b"), "x\n").unwrap();
        model
    }

    fn message(err: ArtifactError) -> String {
        err.to_string()
    }

    #[test]
    fn signed_model_verifies_and_a_changed_byte_is_refused_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let (private, public) = key_pair(tmp.path(), "k");
        let model = model(tmp.path());
        let key = SigningKey::from_pem_file(&private).unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey(<redacted>)");
        sign_model(&model, &key).unwrap();
        let public = VerifyingKey::from_pem_file(&public).unwrap();
        verify_model(&model, &public).unwrap();

        fs::write(model.join("sub/b"), "X\n").unwrap();
        let err = message(verify_model(&model, &public).unwrap_err());
        assert!(
            err.contains("sub/b") && err.contains("changed since signing"),
            "{err}"
        );
        fs::write(model.join("sub/b"), "x\n").unwrap();
        fs::write(model.join("extra"), "").unwrap();
        let err = message(verify_model(&model, &public).unwrap_err());
        assert!(err.contains("extra") && err.contains("not signed"), "{err}");
        fs::remove_file(model.join("extra")).unwrap();
        // What MLflow's Python client writes into a registered model it downloads is inert.
        fs::write(model.join(REGISTERED_MODEL_META_FILE), "model_name: m\n").unwrap();
        verify_model(&model, &public).unwrap();
        fs::remove_file(model.join("a.b")).unwrap();
        let err = message(verify_model(&model, &public).unwrap_err());
        assert!(err.contains("a.b") && err.contains("missing"), "{err}");
    }

    #[test]
    fn resources_are_in_python_path_order() {
        let tmp = tempfile::tempdir().unwrap();
        let model = model(tmp.path());
        fs::create_dir_all(model.join("a")).unwrap();
        fs::write(model.join("a/z"), "").unwrap();
        let names: Vec<String> = hash_files(&model, &[], &model.join(SIGNATURE_FILE))
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        // PurePosixPath compares parts: ("a", "z") < ("a.b",); a string sort would not.
        assert_eq!(names, ["MLmodel", "a/z", "a.b", "a.txt", "sub/b"]);
    }

    #[test]
    fn other_key_malformed_and_missing_signatures_are_refused_in_one_line() {
        let tmp = tempfile::tempdir().unwrap();
        let (private, _) = key_pair(tmp.path(), "signer");
        let (_, other) = key_pair(tmp.path(), "other");
        let model = model(tmp.path());
        let other = VerifyingKey::from_pem_file(&other).unwrap();
        let err = message(verify_model(&model, &other).unwrap_err());
        assert!(err.contains("model is not signed"), "{err}");

        sign_model(&model, &SigningKey::from_pem_file(&private).unwrap()).unwrap();
        let err = message(verify_model(&model, &other).unwrap_err());
        assert!(err.contains("signed with another key"), "{err}");

        // The same bundle without its key hint: the ECDSA check refuses it.
        let sig = model.join(SIGNATURE_FILE);
        let mut bundle: Value = serde_json::from_str(&fs::read_to_string(&sig).unwrap()).unwrap();
        bundle["verificationMaterial"]
            .as_object_mut()
            .unwrap()
            .remove("publicKey");
        fs::write(&sig, bundle.to_string()).unwrap();
        let err = message(verify_model(&model, &other).unwrap_err());
        assert!(err.contains("signed with another key, or changed"), "{err}");

        for bad in ["", "{", "[]", r#"{"mediaType": "x"}"#, "not json"] {
            fs::write(&sig, bad).unwrap();
            let err = message(verify_model(&model, &other).unwrap_err());
            assert!(err.starts_with("malformed signature"), "{bad}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        bundle["dsseEnvelope"]["signatures"][0]["sig"] = json!("AAAA");
        fs::write(&sig, bundle.to_string()).unwrap();
        let err = message(verify_model(&model, &other).unwrap_err());
        assert!(err.contains("not a DER ECDSA"), "{err}");
    }

    #[test]
    fn signature_that_leaves_out_the_mlmodel_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (private, public) = key_pair(tmp.path(), "k");
        let model = model(tmp.path());
        let key = SigningKey::from_pem_file(&private).unwrap();
        // Signed as `model_signing sign key --ignore-paths MLmodel` would.
        let ignored = [MLMODEL_FILE.to_owned(), SIGNATURE_FILE.to_owned()];
        let resources = hash_files(&model, &ignored, &model.join(SIGNATURE_FILE)).unwrap();
        let payload = serde_json::to_vec(&statement(&model, &resources, &ignored)).unwrap();
        let sig: Signature = key.key.sign(&pae(&payload));
        let engine = base64::engine::general_purpose::STANDARD;
        let bundle = json!({
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {"tlogEntries": []},
            "dsseEnvelope": {
                "payload": engine.encode(&payload),
                "payloadType": PAYLOAD_TYPE,
                "signatures": [{"sig": engine.encode(sig.to_der().as_bytes())}],
            },
        });
        fs::write(model.join(SIGNATURE_FILE), bundle.to_string()).unwrap();
        let public = VerifyingKey::from_pem_file(&public).unwrap();
        let err = message(verify_model(&model, &public).unwrap_err());
        assert!(err.contains("does not cover `MLmodel`"), "{err}");
    }

    #[test]
    fn keys_that_are_not_p256_pem_are_refused_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("key.pem");
        fs::write(
            &path,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = SigningKey::from_pem_file(&path).unwrap_err().to_string();
        assert!(err.contains("key.pem") && err.contains("P-256"), "{err}");
        let err = VerifyingKey::from_pem_file(&path).unwrap_err().to_string();
        assert!(err.contains("key.pem") && err.contains("P-256"), "{err}");
        let err = SigningKey::from_pem_file(&tmp.path().join("none.pem"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("none.pem"), "{err}");
    }
}
