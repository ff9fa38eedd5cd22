//! SHA-256 digests as chainlog records them (lowercase hex): of bytes — a chain's source, a
//! prompt file, a config, Cargo.lock — and of a set of files by their paths and digests (a
//! prompt folder, the crate snapshot). One rule for every hash that lands in an artifact or a
//! run tag, so they can be compared.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex SHA-256 of a set of files: over `(path, sha256)` pairs sorted by path
/// (`/`-separated, relative), each hashed as `path NUL sha256-hex LF`. The same rule as
/// [`PromptTemplate::sha256`](crate::prompt::PromptTemplate::sha256), so it does not depend
/// on where the files are or the order they were listed in.
pub(crate) fn tree_sha256<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut sorted: Vec<(&str, &str)> = files.into_iter().collect();
    sorted.sort_unstable();
    let mut hasher = Sha256::new();
    for (path, sha) in sorted {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(sha.as_bytes());
        hasher.update([b'\n']);
    }
    hex(&hasher.finalize())
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            // Writing to a String cannot fail.
            let _ = write!(out, "{byte:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::{PromptTemplate, Role};

    #[test]
    fn sha256_hex_is_lowercase_hex_of_the_bytes() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn tree_sha256_ignores_listing_order() {
        let a = tree_sha256([("b", "2"), ("a", "1")]);
        let b = tree_sha256([("a", "1"), ("b", "2")]);
        assert_eq!(a, b);
        assert_ne!(a, tree_sha256([("a", "1"), ("b", "3")]));
    }

    #[test]
    fn tree_sha256_matches_the_prompt_hash_rule() {
        let prompt = PromptTemplate::chat(
            "qa",
            vec![
                (Role::System, "Be brief.".into()),
                (Role::User, "{{q}}".into()),
            ],
        )
        .unwrap();
        let files: Vec<(String, String)> = prompt
            .files()
            .iter()
            .map(|f| {
                (
                    f.relative_path.to_string_lossy().into_owned(),
                    f.sha256.clone(),
                )
            })
            .collect();
        let tree = tree_sha256(files.iter().map(|(p, s)| (p.as_str(), s.as_str())));
        assert_eq!(tree, prompt.sha256());
    }
}
