//! Which key and environment-variable names hold secrets.
//!
//! A name is compared in lowercase snake case (`hfToken` → `hf_token`, `x-api-key` →
//! `x_api_key`, `OPENAI_API_KEY` → `openai_api_key`), without a trailing number
//! (`openai_key_2` → `openai_key`). It is secret-named when:
//!
//! - it is, or ends with `_` and, one of the [`SECRET_WORDS`] (`key`, `token`, `secret`,
//!   `password`, `pass`, `auth`, `credential`, … and plurals such as `api_keys`, `secrets`);
//! - it ends with one of [`GLUED_SECRET_WORDS`] even without a separator (`openaiapikey`);
//! - it starts with `credential` (`credentials_json`), unless it names where a credential is
//!   rather than the credential (`credentials_path`, `credential_file`, `credential_env`);
//!
//! and it is not one of the [`NOT_SECRET`] names, alone or as a `_`-separated suffix: the
//! common keys that end in `key` or `token` without holding a secret (`sort_key`,
//! `output_key`, `public_key`, `eos_token`, `page_token`, …). Names that merely contain a
//! word (`max_tokens`, `token_limit`, `key_field`, `tokenizer`, `author`, `bypass`) are not
//! secret-named.

/// Words that make a name secret-named, alone or as a `_`-separated suffix.
const SECRET_WORDS: &[&str] = &[
    "key",
    "api_keys",
    "apikey",
    "apikeys",
    "private_keys",
    "access_keys",
    "secret_keys",
    "token",
    "access_tokens",
    "auth_tokens",
    "secret",
    "secrets",
    "password",
    "passwords",
    "passwd",
    "pass",
    "passphrase",
    "credential",
    "credentials",
    "auth",
    "authorization",
];

/// Words that make a name secret-named even glued to a prefix without a separator
/// (`openaiapikey`); the short, common ones (`token`, `key`, `auth`, `pass`) need one.
const GLUED_SECRET_WORDS: &[&str] = &["api_key", "apikey", "password", "passwd", "secret"];

/// Endings of `credential*` names that say where a credential is, not what it is.
const LOCATION_SUFFIXES: &[&str] = &[
    "_path",
    "_file",
    "_dir",
    "_env",
    "_var",
    "_name",
    "_type",
    "_id",
    "_provider",
];

/// Names that end like a secret but are not: lookup keys of data structures, public keys,
/// special tokens of tokenizers, pagination tokens.
const NOT_SECRET: &[&str] = &[
    "sort_key",
    "cache_key",
    "primary_key",
    "foreign_key",
    "partition_key",
    "group_key",
    "dedup_key",
    "join_key",
    "hash_key",
    "range_key",
    "lookup_key",
    "id_key",
    "input_key",
    "output_key",
    "memory_key",
    "text_key",
    "content_key",
    "metadata_key",
    "result_key",
    "response_key",
    "state_key",
    "public_key",
    "bos_token",
    "eos_token",
    "pad_token",
    "unk_token",
    "sep_token",
    "cls_token",
    "mask_token",
    "stop_token",
    "start_token",
    "end_token",
    "special_token",
    "max_token",
    "page_token",
    "next_page_token",
];

/// Whether a key (or environment variable) name says it holds a secret.
///
/// # Examples
///
/// ```
/// use chainlog::secret::is_secret_name;
/// assert!(is_secret_name("OPENAI_API_KEY"));
/// assert!(is_secret_name("hfToken"));
/// assert!(is_secret_name("db_pass"));
/// assert!(!is_secret_name("max_tokens"));
/// assert!(!is_secret_name("sort_key"));
/// ```
pub fn is_secret_name(name: &str) -> bool {
    let normalized = normalize(name);
    // A numbered name is the name: `openai_key_2`, `api_key2`.
    let name = normalized.trim_end_matches(|c: char| c.is_ascii_digit() || c == '_');
    let ends_with_word = |word: &str| {
        name.strip_suffix(word)
            .is_some_and(|rest| rest.is_empty() || rest.ends_with('_'))
    };
    if NOT_SECRET.iter().any(|word| ends_with_word(word)) {
        return false;
    }
    SECRET_WORDS.iter().any(|word| ends_with_word(word))
        || GLUED_SECRET_WORDS.iter().any(|word| name.ends_with(word))
        || (name.starts_with("credential")
            && !LOCATION_SUFFIXES.iter().any(|end| name.ends_with(end)))
}

/// Lowercase snake case: `hfToken` → `hf_token`, `x-api-key` → `x_api_key`.
fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut after_lower = false;
    for c in name.chars() {
        if c.is_uppercase() && after_lower {
            out.push('_');
        }
        after_lower = c.is_lowercase() || c.is_ascii_digit();
        if c == '-' || c == '.' || c.is_whitespace() {
            out.push('_');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_match_words_and_suffixes_in_any_case() {
        for name in [
            "api_key",
            "API_KEY",
            "apiKey",
            "api-key",
            "x-api-key",
            "apikey",
            "openai_api_key",
            "OpenAIApiKey",
            "openai_key_2",
            "api_key2",
            "TOKEN_1",
            "key",
            "signing_key",
            "private_key",
            "access_key",
            "hf_token",
            "hfToken",
            "token",
            "access_token",
            "refresh_token",
            "secret",
            "client_secret",
            "webhook_secret",
            "password",
            "db_passwd",
            "pass",
            "db_pass",
            "passphrase",
            "credential",
            "credentials",
            "credentials_json",
            "auth",
            "basic_auth",
            "Authorization",
            "OPENAI_API_KEY",
            "MLFLOW_TRACKING_TOKEN",
            "MLFLOW_TRACKING_PASSWORD",
            "api_keys",
            "secrets",
            "passwords",
        ] {
            assert!(is_secret_name(name), "{name} should be secret-named");
        }
    }

    #[test]
    fn ordinary_names_are_not_secret_named() {
        for name in [
            "max_tokens",
            "maxTokens",
            "max_completion_tokens",
            "tokenizer",
            "token_limit",
            "tokens",
            "key_field",
            "keys",
            "keyword",
            "monkey",
            "sort_key",
            "output_key",
            "llm_output_key",
            "public_key",
            "eos_token",
            "pad_token",
            "next_page_token",
            "author",
            "oauth_enabled",
            "bypass",
            "compass",
            "model",
            "base_url",
            "secretary_name",
            "credentials_path",
            "credential_file",
            "OPENAI_BASE_URL",
            "SSH_AUTH_SOCK",
            "PWD",
            "OLDPWD",
        ] {
            assert!(!is_secret_name(name), "{name} should not be secret-named");
        }
    }
}
