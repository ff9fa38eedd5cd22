//! JSON text exactly as Python's `json.dumps` writes it with its defaults (`", "` and `": "`
//! separators, `ensure_ascii=True`): how MLflow writes signatures, input examples and the
//! values its client stores as JSON strings (the logged model tag `mlflow.modelVersions`, a
//! chat prompt's `mlflow.prompt.text`). Readers do not care; people comparing a chainlog
//! artifact or store with an MLflow one do.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

/// serde_json's compact formatter with Python's separators and ASCII-only strings.
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

    /// serde_json has already escaped `"`, `\` and control characters; Python's
    /// `ensure_ascii` also escapes DEL and everything outside ASCII, as UTF-16 units.
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if (' '..='~').contains(&c) {
                let mut buf = [0u8; 4];
                writer.write_all(c.encode_utf8(&mut buf).as_bytes())?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// `value` as Python's `json.dumps(value)` writes it (object keys in the order `value`
/// serializes them).
pub(crate) fn dumps<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value.serialize(&mut ser)?;
    // The formatter writes only ASCII.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn dumps_matches_python_separators() {
        let value = json!([{"name": "reg-model", "version": 1}]);
        assert_eq!(
            dumps(&value).unwrap(),
            r#"[{"name": "reg-model", "version": 1}]"#
        );
    }

    #[test]
    fn dumps_escapes_non_ascii_like_ensure_ascii() {
        // Python: json.dumps("é\x7f😀\n\"") == '"\\u00e9\\u007f\\ud83d\\ude00\\n\\""'
        assert_eq!(
            dumps("é\u{7f}😀\n\"").unwrap(),
            r#""\u00e9\u007f\ud83d\ude00\n\"""#
        );
    }
}
