//! JSON text spaced the way Python's `json.dumps` spaces it (`{"a": 1, "b": [1, 2]}`), which
//! is how MLflow writes signatures and input examples. Readers do not care; people comparing
//! a chainlog artifact with an MLflow one do.

use std::io;

use serde::Serialize;
use serde_json::ser::{Formatter, Serializer};

/// `", "` between items and `": "` after keys, on one line.
struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

/// `value` as one line of JSON in Python's spacing.
///
/// # Errors
///
/// Only if `value`'s `Serialize` fails (a map with non-string keys); never for a
/// [`serde_json::Value`].
pub(super) fn to_python_json<T: Serialize + ?Sized>(value: &T) -> Result<String, String> {
    let mut out = Vec::new();
    let mut serializer = Serializer::with_formatter(&mut out, PythonFormatter);
    value
        .serialize(&mut serializer)
        .map_err(|err| err.to_string())?;
    String::from_utf8(out).map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spaces_items_and_keys_like_python() {
        let text = to_python_json(&json!({"b": [1, 2.5, "x"], "a": {"c": null}})).unwrap();
        assert_eq!(text, r#"{"a": {"c": null}, "b": [1, 2.5, "x"]}"#);
    }

    #[test]
    fn empty_containers_stay_compact() {
        assert_eq!(
            to_python_json(&json!({"a": [], "b": {}})).unwrap(),
            r#"{"a": [], "b": {}}"#
        );
    }
}
