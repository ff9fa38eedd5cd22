//! Splitting params and tags into `runs/log-batch` requests MLflow accepts.
//!
//! Owns MLflow's limits (`mlflow/utils/validation.py`): keys up to 250 characters, param
//! values up to 6000, tag values up to 8000, at most 100 params and tags per request and
//! requests under 1 MB. A key over the limit is refused before anything is sent (so a run
//! never gets half its params); an over-long value is cut to the limit with a warning, which
//! is what the server itself does by default (`MLFLOW_TRUNCATE_LONG_VALUES`).

use super::wire::KeyValue;
use crate::store::StoreError;

/// `MAX_ENTITY_KEY_LENGTH`.
pub(super) const MAX_KEY_CHARS: usize = 250;
/// `MAX_PARAM_VAL_LENGTH`.
pub(super) const MAX_PARAM_VALUE_CHARS: usize = 6000;
/// `MAX_TAG_VAL_LENGTH`.
pub(super) const MAX_TAG_VALUE_CHARS: usize = 8000;
/// Params plus tags per request (MLflow allows 100 of each; one budget for both is safe).
pub(super) const MAX_ITEMS_PER_BATCH: usize = 100;
/// Encoded params and tags per request, leaving room under MLflow's 1 MB for the envelope.
const MAX_BATCH_BYTES: usize = 900_000;

/// One `runs/log-batch` request's params and tags.
#[derive(Debug, Default)]
pub(super) struct Batch<'a> {
    pub(super) params: Vec<KeyValue<'a>>,
    pub(super) tags: Vec<KeyValue<'a>>,
}

impl Batch<'_> {
    fn len(&self) -> usize {
        self.params.len() + self.tags.len()
    }
}

/// Params and tags as requests, in order; none when both are empty.
///
/// # Errors
///
/// [`StoreError::Mlflow`] (`INVALID_PARAMETER_VALUE`, as the server says it) when a key is
/// empty or longer than 250 characters.
pub(super) fn batches<'a>(
    params: &'a [(String, String)],
    tags: &'a [(String, String)],
) -> Result<Vec<Batch<'a>>, StoreError> {
    let items = params
        .iter()
        .map(|pair| (pair, Kind::Param))
        .chain(tags.iter().map(|pair| (pair, Kind::Tag)));
    let mut out: Vec<Batch<'a>> = Vec::new();
    let mut current = Batch::default();
    let mut bytes = 0;
    for ((key, value), kind) in items {
        check_key(key, kind)?;
        let item = KeyValue {
            key,
            value: truncate(key, value, kind),
        };
        let size = encoded_len(&item);
        if current.len() == MAX_ITEMS_PER_BATCH
            || (current.len() > 0 && bytes + size > MAX_BATCH_BYTES)
        {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        match kind {
            Kind::Param => current.params.push(item),
            Kind::Tag => current.tags.push(item),
        }
    }
    if current.len() > 0 {
        out.push(current);
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Param,
    Tag,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Param => "Param",
            Self::Tag => "Tag",
        }
    }

    fn max_value_chars(self) -> usize {
        match self {
            Self::Param => MAX_PARAM_VALUE_CHARS,
            Self::Tag => MAX_TAG_VALUE_CHARS,
        }
    }
}

fn check_key(key: &str, kind: Kind) -> Result<(), StoreError> {
    let message = if key.is_empty() {
        format!("{} key must not be empty", kind.name())
    } else if key.chars().count() > MAX_KEY_CHARS {
        format!(
            "'{} key' exceeds the maximum length of {MAX_KEY_CHARS} characters: `{}…`",
            kind.name(),
            key.chars().take(40).collect::<String>()
        )
    } else {
        return Ok(());
    };
    Err(StoreError::Mlflow {
        operation: "runs/log-batch".to_owned(),
        code: "INVALID_PARAMETER_VALUE".to_owned(),
        message,
    })
}

/// `value` cut to the limit (in characters, as MLflow counts them).
fn truncate<'a>(key: &str, value: &'a str, kind: Kind) -> &'a str {
    let limit = kind.max_value_chars();
    match value.char_indices().nth(limit) {
        None => value,
        Some((end, _)) => {
            tracing::warn!(
                key,
                chars = value.chars().count(),
                limit,
                "{} value is truncated to meet MLflow's length limit",
                kind.name()
            );
            &value[..end]
        }
    }
}

/// Bytes the item takes in the request's JSON, separator included.
fn encoded_len(item: &KeyValue<'_>) -> usize {
    serde_json::to_vec(item).map_or(usize::MAX / 2, |bytes| bytes.len() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(prefix: &str, n: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("{prefix}{i:03}"), format!("v{i}")))
            .collect()
    }

    #[test]
    fn params_and_tags_are_split_into_hundreds() -> Result<(), StoreError> {
        let (params, tags) = (pairs("p", 150), pairs("t", 70));
        let batches = batches(&params, &tags)?;
        let sizes: Vec<(usize, usize)> = batches
            .iter()
            .map(|b| (b.params.len(), b.tags.len()))
            .collect();
        assert_eq!(sizes, [(100, 0), (50, 50), (0, 20)]);
        assert_eq!(batches[1].params[0].key, "p100");
        assert_eq!(batches[2].tags[19].key, "t069");
        Ok(())
    }

    #[test]
    fn nothing_to_log_is_no_request() -> Result<(), StoreError> {
        assert!(batches(&[], &[])?.is_empty());
        Ok(())
    }

    #[test]
    fn long_values_are_cut_at_mlflow_limits_in_characters() -> Result<(), StoreError> {
        let params = vec![("p".to_owned(), "é".repeat(MAX_PARAM_VALUE_CHARS + 5))];
        let tags = vec![("t".to_owned(), "x".repeat(MAX_TAG_VALUE_CHARS + 1))];
        let batches = batches(&params, &tags)?;
        assert_eq!(
            batches[0].params[0].value.chars().count(),
            MAX_PARAM_VALUE_CHARS
        );
        assert_eq!(batches[0].tags[0].value.len(), MAX_TAG_VALUE_CHARS);
        Ok(())
    }

    #[test]
    fn over_long_key_is_refused_before_sending() {
        let params = vec![("k".repeat(MAX_KEY_CHARS + 1), "v".to_owned())];
        let err = batches(&params, &[]).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("exceeds the maximum length of 250")),
            "{err:?}"
        );
    }

    #[test]
    fn big_values_split_requests_under_one_megabyte() -> Result<(), StoreError> {
        // 8000 control characters encode as 48 000 bytes each: 100 would be 4.8 MB.
        let tags: Vec<(String, String)> = (0..100)
            .map(|i| (format!("t{i}"), "\u{1}".repeat(MAX_TAG_VALUE_CHARS)))
            .collect();
        let batches = batches(&[], &tags)?;
        assert!(batches.len() >= 5, "{}", batches.len());
        for batch in &batches {
            let size: usize = batch.tags.iter().map(encoded_len).sum();
            assert!(size <= MAX_BATCH_BYTES, "{size}");
        }
        Ok(())
    }
}
