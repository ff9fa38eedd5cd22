//! The ids and timestamps MLflow stamps on new rows: run ids and link ids are
//! `uuid.uuid4().hex`, logged model ids `m-` + the same, times are milliseconds since the epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// A random (version 4) UUID as 32 lowercase hex digits, as Python's `uuid.uuid4().hex`.
pub(super) fn uuid4_hex() -> String {
    let mut bytes: [u8; 16] = rand::random();
    // RFC 4122: version 4 in the high nibble of byte 6, variant 10 in the top bits of byte 8.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    crate::digest::hex(&bytes)
}

/// A logged model id: `m-` + [`uuid4_hex`].
pub(super) fn model_id() -> String {
    format!("m-{}", uuid4_hex())
}

/// Now, in milliseconds since the Unix epoch (MLflow's `get_current_time_millis`).
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid4_hex_is_32_hex_digits_with_version_and_variant() {
        let id = uuid4_hex();
        assert_eq!(id.len(), 32);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(&id[12..13], "4");
        assert!(matches!(&id[16..17], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(id, uuid4_hex());
    }

    #[test]
    fn model_id_has_mlflow_prefix() {
        let id = model_id();
        assert!(id.starts_with("m-"));
        assert_eq!(id.len(), 34);
    }

    #[test]
    fn now_ms_is_after_2024() {
        assert!(now_ms() > 1_704_067_200_000);
    }
}
