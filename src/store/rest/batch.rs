//! Splitting params and tags into `runs/log-batch` requests MLflow accepts.
//!
//! Owns MLflow's batch limits (`mlflow/utils/validation.py`): at most 100 params and tags per
//! request and requests under 1 MB. Keys and values go through `store::validate` first, as on
//! the SQLite store: a bad key is refused before anything is sent (so a run never gets half its
//! params); an over-long value is cut to the limit with a warning, which is what MLflow itself
//! does by default (`MLFLOW_TRUNCATE_LONG_VALUES`).

use super::wire::KeyValue;
use crate::store::{
    StoreError,
    validate::{self, KeyKind},
};

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
        .map(|pair| (pair, KeyKind::Param))
        .chain(tags.iter().map(|pair| (pair, KeyKind::Tag)));
    let mut out: Vec<Batch<'a>> = Vec::new();
    let mut current = Batch::default();
    let mut bytes = 0;
    for ((key, value), kind) in items {
        let item = KeyValue {
            key,
            value: validate::key_value("runs/log-batch", kind, key, value)?,
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
            KeyKind::Param => current.params.push(item),
            KeyKind::Tag => current.tags.push(item),
        }
    }
    if current.len() > 0 {
        out.push(current);
    }
    Ok(out)
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
        let params = vec![("p".to_owned(), "é".repeat(validate::MAX_PARAM_VALUE + 5))];
        let tags = vec![("t".to_owned(), "x".repeat(validate::MAX_TAG_VALUE + 1))];
        let batches = batches(&params, &tags)?;
        assert_eq!(
            batches[0].params[0].value.chars().count(),
            validate::MAX_PARAM_VALUE
        );
        assert_eq!(batches[0].tags[0].value.len(), validate::MAX_TAG_VALUE);
        Ok(())
    }

    #[test]
    fn over_long_key_is_refused_before_sending() {
        let params = vec![("k".repeat(validate::MAX_KEY + 1), "v".to_owned())];
        let err = batches(&params, &[]).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("the limit is 250")),
            "{err:?}"
        );
    }

    #[test]
    fn big_values_split_requests_under_one_megabyte() -> Result<(), StoreError> {
        // 8000 control characters encode as 48 000 bytes each: 100 would be 4.8 MB.
        let tags: Vec<(String, String)> = (0..100)
            .map(|i| (format!("t{i}"), "\u{1}".repeat(validate::MAX_TAG_VALUE)))
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
