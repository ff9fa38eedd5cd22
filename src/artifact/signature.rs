//! The MLmodel `signature`: a chain's input and output JSON schemas (as schemars writes them)
//! turned into MLflow's column specs, the JSON text MLflow stores in `signature.inputs` and
//! `signature.outputs`.
//!
//! MLflow's format (`mlflow/types/schema.py`, `ColSpec.to_dict`) is a list of columns, each
//! `{"type": <type>, "name": <name>, "required": <bool>}`, where a type is a data type name
//! (`string`, `long`, `double`, `boolean`, …) or a nested
//! `{"type": "array", "items": <type>}`, `{"type": "object", "properties": {<name>: <type> +
//! "required"}}`, `{"type": "map", "values": <type>}` or `{"type": "any"}`. An object schema
//! gives one named column per property; any other schema gives one unnamed column.
//!
//! JSON schema → MLflow: `string` → `string`, `integer` → `long`, `number` → `double`,
//! `boolean` → `boolean`, `array` → `array` of its `items`, `object` with `properties` →
//! `object` (MLflow refuses an object without properties), `object` without them → `map` of its
//! `additionalProperties`; `$ref`s into `$defs` are followed; a `null` alternative
//! (`Option<T>`) makes a property optional; anything MLflow cannot express (a union of
//! different types, tuples, a type that contains itself) is `any`.

use serde::{Serialize, Serializer, ser::SerializeMap};
use serde_json::Value;

use super::ArtifactError;

/// Nesting beyond which a schema is `any`. Recursive types stop at their first repeat; this
/// bounds a schema that is merely absurdly deep.
const MAX_DEPTH: usize = 64;

/// An MLflow type.
#[derive(Debug, Clone, PartialEq)]
enum MlType {
    /// A `DataType` by its name (`string`, `long`, `double`, `boolean`).
    Data(&'static str),
    /// `Array(items)`.
    Array(Box<MlType>),
    /// `Object(properties)`: `(name, type, required)`, sorted by name as MLflow sorts them.
    Object(Vec<(String, MlType, bool)>),
    /// `Map(values)`, string keys.
    Map(Box<MlType>),
    /// `AnyType`.
    Any,
}

/// MLflow's `signature.inputs`/`outputs` JSON text for a JSON schema.
///
/// # Errors
///
/// [`ArtifactError::InvalidSpec`] if the columns cannot be serialised (they always can: the
/// error exists so that no `unwrap` is needed).
///
/// # Examples
///
/// ```
/// use chainlog::artifact::mlflow_schema_json;
/// let schema = serde_json::json!({
///     "type": "object",
///     "properties": {"text": {"type": "string"}, "n": {"type": ["integer", "null"]}},
///     "required": ["text"]
/// });
/// assert_eq!(
///     mlflow_schema_json(&schema)?,
///     r#"[{"type": "long", "name": "n", "required": false}, {"type": "string", "name": "text", "required": true}]"#
/// );
/// # Ok::<(), chainlog::artifact::ArtifactError>(())
/// ```
pub fn mlflow_schema_json(schema: &Value) -> Result<String, ArtifactError> {
    let (ty, nullable) = Converter { root: schema }.convert(schema, &mut Vec::new());
    let columns: Vec<ColSpec<'_>> = match &ty {
        MlType::Object(properties) => properties
            .iter()
            .map(|(name, ty, required)| ColSpec {
                ty,
                name: Some(name),
                required: *required,
            })
            .collect(),
        other => vec![ColSpec {
            ty: other,
            name: None,
            required: !nullable,
        }],
    };
    crate::pyjson::dumps(&columns).map_err(|err| ArtifactError::InvalidSpec {
        message: err.to_string(),
    })
}

/// Walks a schema, resolving `$ref`s against its root.
struct Converter<'a> {
    root: &'a Value,
}

/// The schemas being converted, outermost first: `$ref` targets (to stop at a type that
/// contains itself) and, by its length, the depth.
type Stack<'a> = Vec<&'a Value>;

impl<'a> Converter<'a> {
    /// The MLflow type of `schema`, and whether it admits `null`.
    fn convert(&self, schema: &'a Value, stack: &mut Stack<'a>) -> (MlType, bool) {
        let Value::Object(map) = schema else {
            return (MlType::Any, false);
        };
        if stack.len() > MAX_DEPTH || stack.iter().any(|seen| std::ptr::eq(*seen, schema)) {
            return (MlType::Any, false);
        }
        stack.push(schema);
        let converted = self.convert_map(map, stack);
        stack.pop();
        converted
    }

    fn convert_map(
        &self,
        map: &'a serde_json::Map<String, Value>,
        stack: &mut Stack<'a>,
    ) -> (MlType, bool) {
        if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
            return match reference
                .strip_prefix('#')
                .and_then(|pointer| self.root.pointer(pointer))
            {
                Some(target) => self.convert(target, stack),
                None => (MlType::Any, false),
            };
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(variants)) = map.get(key) {
                return self.union(variants, stack);
            }
        }
        if let Some(Value::Array(parts)) = map.get("allOf")
            && let [only] = parts.as_slice()
        {
            return self.convert(only, stack);
        }
        match map.get("type") {
            Some(Value::String(name)) => self.typed(name, map, stack),
            Some(Value::Array(names)) => {
                let nullable = names.iter().any(|n| n == "null");
                let others: Vec<&str> = names
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|n| *n != "null")
                    .collect();
                match others.as_slice() {
                    [one] => (self.typed(one, map, stack).0, nullable),
                    _ => (MlType::Any, nullable),
                }
            }
            _ if map.contains_key("properties") => self.typed("object", map, stack),
            _ => (untyped(map), false),
        }
    }

    /// A union: `T | null` is `T`, nullable; alternatives of one type are that type.
    fn union(&self, variants: &'a [Value], stack: &mut Stack<'a>) -> (MlType, bool) {
        let mut nullable = false;
        let mut types = Vec::new();
        for variant in variants {
            if variant.get("type").and_then(Value::as_str) == Some("null") {
                nullable = true;
                continue;
            }
            let (ty, null) = self.convert(variant, stack);
            nullable |= null;
            types.push(ty);
        }
        match types.split_first() {
            Some((first, rest)) if rest.iter().all(|ty| ty == first) => (first.clone(), nullable),
            _ => (MlType::Any, nullable),
        }
    }

    /// A schema with one `type` name.
    fn typed(
        &self,
        name: &str,
        map: &'a serde_json::Map<String, Value>,
        stack: &mut Stack<'a>,
    ) -> (MlType, bool) {
        let ty = match name {
            "string" => MlType::Data("string"),
            "integer" => MlType::Data("long"),
            "number" => MlType::Data("double"),
            "boolean" => MlType::Data("boolean"),
            "array" => MlType::Array(Box::new(match map.get("items") {
                Some(items @ Value::Object(_)) => self.convert(items, stack).0,
                _ => MlType::Any,
            })),
            "object" => self.object(map, stack),
            "null" => return (MlType::Any, true),
            _ => MlType::Any,
        };
        (ty, false)
    }

    /// An object with properties, or else a map.
    fn object(&self, map: &'a serde_json::Map<String, Value>, stack: &mut Stack<'a>) -> MlType {
        let required: Vec<&str> = map
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match map.get("properties") {
            Some(Value::Object(properties)) if !properties.is_empty() => {
                let mut out: Vec<(String, MlType, bool)> = properties
                    .iter()
                    .map(|(name, schema)| {
                        let (ty, nullable) = self.convert(schema, stack);
                        let listed = required.contains(&name.as_str());
                        (name.clone(), ty, listed && !nullable)
                    })
                    .collect();
                out.sort_by(|a, b| a.0.cmp(&b.0));
                MlType::Object(out)
            }
            _ => MlType::Map(Box::new(match map.get("additionalProperties") {
                Some(values @ Value::Object(_)) => self.convert(values, stack).0,
                _ => MlType::Any,
            })),
        }
    }
}

/// A schema without `type`: an `enum` or `const` of strings is a string.
fn untyped(map: &serde_json::Map<String, Value>) -> MlType {
    let all_strings = match (map.get("enum"), map.get("const")) {
        (Some(Value::Array(values)), _) => {
            !values.is_empty() && values.iter().all(Value::is_string)
        }
        (_, Some(value)) => value.is_string(),
        _ => false,
    };
    if all_strings {
        MlType::Data("string")
    } else {
        MlType::Any
    }
}

/// One column: the type's entries, then `name` (if any) and `required`, in MLflow's order.
struct ColSpec<'a> {
    ty: &'a MlType,
    name: Option<&'a str>,
    required: bool,
}

impl Serialize for ColSpec<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        type_entries(self.ty, &mut map)?;
        if let Some(name) = self.name {
            map.serialize_entry("name", name)?;
        }
        map.serialize_entry("required", &self.required)?;
        map.end()
    }
}

/// A bare type (`items`, `values`): its entries only.
struct TypeDict<'a>(&'a MlType);

impl Serialize for TypeDict<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        type_entries(self.0, &mut map)?;
        map.end()
    }
}

/// An object's `properties`: name → type entries + `required`.
struct Properties<'a>(&'a [(String, MlType, bool)]);

impl Serialize for Properties<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, ty, required) in self.0 {
            let property = ColSpec {
                ty,
                name: None,
                required: *required,
            };
            map.serialize_entry(name, &property)?;
        }
        map.end()
    }
}

fn type_entries<M: SerializeMap>(ty: &MlType, map: &mut M) -> Result<(), M::Error> {
    match ty {
        MlType::Data(name) => map.serialize_entry("type", name),
        MlType::Array(items) => {
            map.serialize_entry("type", "array")?;
            map.serialize_entry("items", &TypeDict(items))
        }
        MlType::Object(properties) => {
            map.serialize_entry("type", "object")?;
            map.serialize_entry("properties", &Properties(properties))
        }
        MlType::Map(values) => {
            map.serialize_entry("type", "map")?;
            map.serialize_entry("values", &TypeDict(values))
        }
        MlType::Any => map.serialize_entry("type", "any"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use schemars::JsonSchema;
    use serde_json::json;

    use super::*;
    use crate::chain::schema_of;

    fn columns(schema: &Value) -> Value {
        serde_json::from_str(&mlflow_schema_json(schema).unwrap()).unwrap()
    }

    #[derive(JsonSchema)]
    #[expect(dead_code, reason = "only the schema is used")]
    struct Doc {
        title: String,
        pages: Option<u32>,
    }

    #[derive(JsonSchema)]
    #[expect(dead_code, reason = "only the schema is used")]
    enum Tone {
        Formal,
        Casual,
    }

    #[derive(JsonSchema)]
    #[expect(dead_code, reason = "only the schema is used")]
    struct Input {
        text: String,
        count: i64,
        ratio: f64,
        flag: bool,
        tags: Vec<String>,
        doc: Doc,
        docs: Vec<Doc>,
        extra: BTreeMap<String, f32>,
        tone: Tone,
        maybe: Option<String>,
    }

    #[test]
    fn struct_input_gives_one_named_column_per_field() {
        let got = columns(&schema_of::<Input>());
        let doc = json!({"type": "object", "properties": {
            "pages": {"type": "long", "required": false},
            "title": {"type": "string", "required": true}}});
        let mut docs_items = doc.clone();
        docs_items.as_object_mut().unwrap().remove("required");
        assert_eq!(
            got,
            json!([
                {"type": "long", "name": "count", "required": true},
                {"type": "object", "properties": doc["properties"], "name": "doc", "required": true},
                {"type": "array", "items": docs_items, "name": "docs", "required": true},
                {"type": "map", "values": {"type": "double"}, "name": "extra", "required": true},
                {"type": "boolean", "name": "flag", "required": true},
                {"type": "string", "name": "maybe", "required": false},
                {"type": "double", "name": "ratio", "required": true},
                {"type": "array", "items": {"type": "string"}, "name": "tags", "required": true},
                {"type": "string", "name": "text", "required": true},
                {"type": "string", "name": "tone", "required": true},
            ])
        );
    }

    #[test]
    fn text_is_spaced_like_mlflow_writes_it() {
        let schema = json!({"type": "object", "properties": {"name": {"type": "string"}},
            "required": ["name"]});
        assert_eq!(
            mlflow_schema_json(&schema).unwrap(),
            r#"[{"type": "string", "name": "name", "required": true}]"#
        );
    }

    #[test]
    fn non_object_schema_gives_one_unnamed_column() {
        assert_eq!(
            columns(&schema_of::<String>()),
            json!([{"type": "string", "required": true}])
        );
        assert_eq!(
            columns(&schema_of::<Option<f64>>()),
            json!([{"type": "double", "required": false}])
        );
    }

    #[test]
    fn object_without_properties_is_a_map_since_mlflow_refuses_empty_objects() {
        assert_eq!(
            columns(&json!({"type": "object"})),
            json!([{"type": "map", "values": {"type": "any"}, "required": true}])
        );
    }

    #[test]
    fn unions_of_different_types_and_recursion_become_any() {
        let schema = json!({"type": "object", "properties": {
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "tuple": {"type": "array", "prefixItems": [{"type": "string"}], "items": false},
            "node": {"$ref": "#/$defs/Node"}},
            "required": ["either", "tuple", "node"],
            "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}}});
        let got = columns(&schema);
        assert_eq!(
            got[0],
            json!({"type": "any", "name": "either", "required": true})
        );
        assert_eq!(got[2]["items"], json!({"type": "any"}));
        // The recursive type stops at its first repeat instead of looping.
        assert_eq!(
            got[1],
            json!({"type": "object", "properties": {"next": {"type": "any", "required": false}},
                "name": "node", "required": true})
        );
    }
}
