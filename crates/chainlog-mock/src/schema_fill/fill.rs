//! Building the value: [`value_for_schema`], the seeded generator ([`Filler`]), flattening
//! `$ref`/`allOf`/`anyOf`/`oneOf`, one value per JSON type within the bound keywords, and the
//! keyword helpers those share. Strings for a `pattern` come from the sibling `pattern` module.

use serde_json::{Map, Number, Value, json};

/// A schema object after `$ref`/`allOf`/`anyOf`/`oneOf` have been flattened away.
type Schema = Map<String, Value>;

/// Depth past which only the smallest valid values are produced.
const MAX_DEPTH: usize = 6;
/// Depth at which generation gives up with `null` (schemas with no finite instance).
const HARD_DEPTH: usize = 4 * MAX_DEPTH;
/// Most subschemas flattened for one value (bounds pathological `$ref` chains).
const MAX_HOPS: usize = 256;
/// Words that seed-picked strings are made of.
const WORDS: &[&str] = &[
    "amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "harbor", "iris", "juniper",
    "kestrel", "lumen", "maple", "nectar", "orchid", "pebble",
];

/// Builds a JSON value that validates against `schema`, deterministically.
///
/// # Returns
/// The same value for the same `(schema, seed)`. Objects carry every listed
/// property (strict mode requires them all), arrays hold at least one item when
/// allowed, and `true`/`{}` yields a string. A `false` schema, or one with no
/// finite instance, yields `null`.
pub(crate) fn value_for_schema(schema: &Value, seed: u64) -> Value {
    let mut filler = Filler {
        root: schema,
        state: seed,
    };
    filler.fill(schema, 0)
}

/// Generation state: the root schema for `$ref` lookups and the seeded RNG state.
pub(super) struct Filler<'a> {
    /// The schema that `#` refers to.
    root: &'a Value,
    /// SplitMix64 state, advanced once per draw.
    state: u64,
}

impl Filler<'_> {
    /// Next pseudo-random number (SplitMix64).
    pub(super) fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = self.state;
        let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A seed-picked index below `len` (0 when `len` is 0).
    pub(super) fn pick(&mut self, len: usize) -> usize {
        usize::try_from(self.next() % len.max(1) as u64).unwrap_or(0)
    }

    /// A seed-picked word.
    fn word(&mut self) -> &'static str {
        WORDS[self.pick(WORDS.len())]
    }

    /// Resolves `$ref`, `allOf`, `anyOf` and `oneOf` into one flat keyword map
    /// (`None` for the `false` schema). Past the depth limit a branch is chosen
    /// for smallness (null, then scalars); before it, the first non-null branch.
    fn flatten(&self, schema: &Value, depth: usize, budget: &mut usize) -> Option<Schema> {
        let mut map = match schema {
            Value::Bool(false) => return None,
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        if *budget == 0 {
            return Some(map);
        }
        *budget -= 1;
        if let Some(Value::String(r)) = map.remove("$ref") {
            let target = match r.strip_prefix('#') {
                Some("") => Some(self.root),
                Some(pointer) => self.root.pointer(pointer),
                None => None,
            };
            if let Some(target) = target {
                map = merge(self.flatten(target, depth, budget)?, map);
            }
        }
        if let Some(Value::Array(branches)) = map.remove("allOf") {
            for b in &branches {
                map = merge(map, self.flatten(b, depth, budget)?);
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = map.remove(key) {
                let flat: Vec<Schema> = branches
                    .iter()
                    .filter_map(|b| self.flatten(b, depth, budget))
                    .collect();
                let rank = |m: &Schema| match types_of(m).as_deref() {
                    Some(["null"]) => 0,
                    _ if m.get("const").is_some_and(Value::is_null) => 0,
                    Some([t, ..]) if *t != "object" && *t != "array" => 1,
                    _ => 2,
                };
                let chosen = if depth >= MAX_DEPTH {
                    flat.iter().min_by_key(|m| rank(m))
                } else {
                    flat.iter().find(|m| rank(m) != 0).or(flat.first())
                };
                map = merge(map, chosen.cloned()?);
            }
        }
        Some(map)
    }

    /// Builds a value for `schema` at nesting `depth`.
    fn fill(&mut self, schema: &Value, depth: usize) -> Value {
        let mut budget = MAX_HOPS;
        let Some(s) = self
            .flatten(schema, depth, &mut budget)
            .filter(|_| depth <= HARD_DEPTH)
        else {
            return Value::Null;
        };
        if let Some(c) = s.get("const") {
            return c.clone();
        }
        if let Some(Value::Array(options)) = s.get("enum") {
            let non_null: Vec<&Value> = options.iter().filter(|v| !v.is_null()).collect();
            if non_null.is_empty() {
                return options.first().cloned().unwrap_or(Value::Null);
            }
            return non_null[self.pick(non_null.len())].clone();
        }
        let types = types_of(&s).unwrap_or_default();
        let ty = match types.iter().copied().find(|t| *t != "null") {
            _ if types.is_empty() => infer_type(&s),
            Some(_) if depth >= MAX_DEPTH && types.contains(&"null") => "null",
            found => found.unwrap_or("null"),
        };
        match ty {
            "object" => self.object(&s, depth),
            "array" => self.array(&s, depth),
            "integer" | "number" => self.number(&s, ty == "integer"),
            "boolean" => Value::Bool(self.next().is_multiple_of(2)),
            "null" => Value::Null,
            _ => Value::String(self.string(&s)),
        }
    }

    /// An object with every listed property (only `required` ones past the depth
    /// limit), required extras from `additionalProperties`, and `minProperties` met.
    fn object(&mut self, s: &Schema, depth: usize) -> Value {
        let required: Vec<&str> = match s.get("required") {
            Some(Value::Array(r)) => r.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let mut out = Map::new();
        for (key, sub) in s
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if depth < MAX_DEPTH || required.contains(&key.as_str()) {
                out.insert(key.clone(), self.fill(sub, depth + 1));
            }
        }
        let extra = s
            .get("additionalProperties")
            .cloned()
            .unwrap_or(Value::Bool(true));
        for key in required
            .into_iter()
            .filter(|k| !out.contains_key(*k))
            .collect::<Vec<_>>()
        {
            out.insert(key.to_owned(), self.fill(&extra, depth + 1));
        }
        while out.len() < uint(s, "minProperties").unwrap_or(0) && extra != Value::Bool(false) {
            let key = format!("{}_{}", self.word(), out.len());
            out.insert(key, self.fill(&extra, depth + 1));
        }
        Value::Object(out)
    }

    /// An array honouring `prefixItems` (or draft-07 tuple `items`), `items`,
    /// `contains`, item-count bounds and `uniqueItems`.
    fn array(&mut self, s: &Schema, depth: usize) -> Value {
        let (prefix, rest): (&[Value], _) = match (s.get("prefixItems"), s.get("items")) {
            (Some(Value::Array(p)), items) => (p, items),
            (None, Some(Value::Array(p))) => (p, s.get("additionalItems")),
            (_, items) => (&[], items),
        };
        let any = Value::Bool(true);
        let rest = rest.map_or(Some(&any), |r| {
            Some(r).filter(|r| **r != Value::Bool(false))
        });
        let min = uint(s, "minItems").unwrap_or(0).min(256);
        let mut want = if depth >= MAX_DEPTH {
            min
        } else {
            min.max(1 + self.pick(2)).max(prefix.len())
        };
        want = want.min(uint(s, "maxItems").unwrap_or(usize::MAX));
        if rest.is_none() {
            want = want.min(prefix.len());
        }
        let unique = s.get("uniqueItems") == Some(&Value::Bool(true));
        let mut out: Vec<Value> = Vec::new();
        for _ in 0..want * 8 + 16 {
            let i = out.len();
            let Some(sub) = prefix.get(i).or(rest).filter(|_| i < want) else {
                break;
            };
            let v = match s.get("contains") {
                Some(c) if i == 0 => self.fill(&json!({ "allOf": [sub, c] }), depth + 1),
                _ => self.fill(sub, depth + 1),
            };
            if !(unique && out.contains(&v)) {
                out.push(v);
            }
        }
        Value::Array(out)
    }

    /// A number (integral when `integer`) within the bounds and a multiple of `multipleOf`.
    fn number(&mut self, s: &Schema, integer: bool) -> Value {
        let (lo, lo_ex) = bound(s, "minimum", "exclusiveMinimum", f64::max);
        let (hi, hi_ex) = bound(s, "maximum", "exclusiveMaximum", f64::min);
        let step = s
            .get("multipleOf")
            .and_then(Value::as_f64)
            .filter(|m| *m > 0.0 && m.is_finite());
        let m = step.unwrap_or(1.0);
        let ok = |v: &f64| {
            lo.is_none_or(|l| if lo_ex { *v > l } else { *v >= l })
                && hi.is_none_or(|h| if hi_ex { *v < h } else { *v <= h })
                && (!integer || v.fract() == 0.0)
        };
        let ks: Vec<f64> = if m.fract() == 0.0 && m < 9.0e15 {
            // Up to 41 consecutive multiples from the lowest allowed one.
            let (kmin, kmax) = (lo.map(|l| (l / m).ceil()), hi.map(|h| (h / m).floor()));
            let base = kmin.or(kmax.map(|b| b - 20.0)).unwrap_or(1.0);
            (0..=40)
                .map(|j| base + f64::from(j))
                .filter(|k| kmax.is_none_or(|b| *k <= b))
                .collect()
        } else {
            // A fractional step times 0, ±1, ±2, ±4, ... is exact in f64.
            let powers = (0..60).flat_map(|j| [2f64.powi(j), -(2f64.powi(j))]);
            std::iter::once(0.0).chain(powers).collect()
        };
        let mut valid: Vec<f64> = ks.into_iter().map(|k| k * m).filter(ok).collect();
        valid.truncate(if m.fract() == 0.0 { 41 } else { 6 }); // keep fractional values small
        let v = match (valid.is_empty(), lo, hi) {
            (false, ..) => valid[self.pick(valid.len())],
            (true, Some(l), Some(h)) => (l + h) / 2.0,
            (true, Some(b), None) | (true, None, Some(b)) => b,
            (true, None, None) => 0.0,
        };
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            Value::from(v as i64)
        } else {
            Number::from_f64(v).map_or(Value::from(0), Value::Number)
        }
    }

    /// A string from `format`, else `pattern`, else two words; then fitted to the
    /// length bounds by padding with words or truncating.
    fn string(&mut self, s: &Schema) -> String {
        let format = s
            .get("format")
            .and_then(Value::as_str)
            .and_then(|f| self.format(f));
        let mut out = match (format, s.get("pattern").and_then(Value::as_str)) {
            (Some(f), _) => f,
            (None, Some(p)) => {
                let (chars, mut out) = (p.chars().collect::<Vec<_>>(), String::new());
                self.pattern(&chars, &mut 0, &mut out);
                out
            }
            (None, None) => format!("{}-{}", self.word(), self.word()),
        };
        let (min, max) = (uint(s, "minLength").unwrap_or(0), uint(s, "maxLength"));
        while out.chars().count() < min {
            out.push_str(self.word());
        }
        out.chars()
            .take(max.unwrap_or(usize::MAX).max(min))
            .collect()
    }

    /// A value for a known `format`, or `None` for an unknown one.
    fn format(&mut self, format: &str) -> Option<String> {
        let (r, w) = (self.next(), self.word());
        let (mo, d, h, mi) = (r % 12 + 1, r % 28 + 1, r % 24, r % 60);
        let (hi, lo) = (r >> 32, r & 0xffff_ffff_ffff);
        Some(match format {
            "date-time" => format!("2024-{mo:02}-{d:02}T{h:02}:{mi:02}:00Z"),
            "date" => format!("2024-{mo:02}-{d:02}"),
            "time" => format!("{h:02}:{mi:02}:00Z"),
            "email" | "idn-email" => format!("{w}{mi}@example.com"),
            "uri" | "url" | "iri" | "uri-reference" | "iri-reference" => {
                format!("https://example.com/{w}")
            }
            "hostname" | "idn-hostname" => format!("{w}.example.com"),
            "uuid" => format!("{hi:08x}-{:04x}-4{mi:03x}-8{d:03x}-{lo:012x}", hi & 0xffff),
            "ipv4" => format!("192.0.2.{}", r % 254 + 1),
            "ipv6" => format!("2001:db8::{:x}", r % 0xfffe + 1),
            "duration" => format!("P{d}D"),
            _ => return None,
        })
    }
}

/// The tightest of `plain` and `exclusive` (draft-04 boolean form included) and
/// whether it is exclusive; `tighter` is `f64::max` for lower bounds, `f64::min` for upper.
fn bound(
    s: &Schema,
    plain: &str,
    exclusive: &str,
    tighter: fn(f64, f64) -> f64,
) -> (Option<f64>, bool) {
    let p = s.get(plain).and_then(Value::as_f64);
    match (p, s.get(exclusive)) {
        (_, Some(Value::Bool(true))) => (p, p.is_some()),
        (Some(p), Some(Value::Number(e)))
            if e.as_f64().is_some_and(|e| tighter(p, e) == p && p != e) =>
        {
            (Some(p), false)
        }
        (_, Some(Value::Number(e))) => (e.as_f64(), true),
        _ => (p, false),
    }
}

/// A non-negative integer keyword, capped at 4096 so hostile bounds stay cheap.
fn uint(s: &Schema, key: &str) -> Option<usize> {
    s.get(key)
        .and_then(Value::as_u64)
        .map(|n| n.min(4096) as usize)
}

/// The `type` keyword of `s` as a list (`None` when absent).
fn types_of(s: &Schema) -> Option<Vec<&str>> {
    s.get("type").map(type_list)
}

/// A `type` keyword value (string or array of strings) as a list.
fn type_list(t: &Value) -> Vec<&str> {
    match t {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The type implied by the keywords present when `type` is absent (`"any"` when none).
fn infer_type(s: &Schema) -> &'static str {
    let has = |keys: &str| keys.split(' ').any(|k| s.contains_key(k));
    if has("properties required additionalProperties minProperties") {
        "object"
    } else if has("items prefixItems minItems maxItems contains") {
        "array"
    } else if has("minimum maximum exclusiveMinimum exclusiveMaximum multipleOf") {
        "number"
    } else {
        "any"
    }
}

/// Merges schema `b` into `a` as `allOf` would: properties and `required` are
/// united, `type` is intersected, bounds keep the tighter value, other keywords of `b` win.
fn merge(mut a: Schema, b: Schema) -> Schema {
    for (k, new) in b {
        let merged = match (k.as_str(), a.remove(&k), new) {
            (_, None, new) => new,
            ("properties", Some(Value::Object(mut old)), Value::Object(new)) => {
                for (pk, pv) in new {
                    let both = match old.remove(&pk) {
                        Some(o) => json!({ "allOf": [o, pv] }),
                        None => pv,
                    };
                    old.insert(pk, both);
                }
                Value::Object(old)
            }
            ("required", Some(Value::Array(mut old)), Value::Array(new)) => {
                let fresh: Vec<Value> = new.into_iter().filter(|x| !old.contains(x)).collect();
                old.extend(fresh);
                Value::Array(old)
            }
            ("type", Some(old), new) => {
                let (ta, tb) = (type_list(&old), type_list(&new));
                let both: Vec<&str> = (ta.iter().copied())
                    .filter_map(|t| match t {
                        _ if tb.contains(&t) => Some(t),
                        "number" | "integer"
                            if tb.contains(&"number") || tb.contains(&"integer") =>
                        {
                            Some("integer")
                        }
                        _ => None,
                    })
                    .collect();
                if both.is_empty() { new } else { json!(both) }
            }
            (key, Some(old), new) => match (old.as_f64(), new.as_f64()) {
                (Some(x), Some(y)) if key.starts_with("min") || key == "exclusiveMinimum" => {
                    if x > y { old } else { new }
                }
                (Some(x), Some(y)) if key.starts_with("max") || key == "exclusiveMaximum" => {
                    if x < y { old } else { new }
                }
                _ => new,
            },
        };
        a.insert(k, merged);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::{MAX_DEPTH, value_for_schema};
    use serde_json::{Value, json};

    /// Schemas the mock must fill (strict mode, schemars 1.x output, hand-written tool
    /// parameters), keyed by what each one exercises.
    const TABLE: &str = r##"{
        "empty schema": {},
        "true schema": true,
        "string length bounds": {"type": "string", "minLength": 12, "maxLength": 14},
        "tiny max length": {"type": "string", "maxLength": 2},
        "formats": {"type": "object", "properties": {"at": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"}, "clock": {"type": "string", "format": "time"},
            "mail": {"type": "string", "format": "email"}, "link": {"type": "string", "format": "uri"},
            "id": {"type": "string", "format": "uuid"}, "ip": {"type": "string", "format": "ipv4"},
            "ip6": {"type": "string", "format": "ipv6"}, "host": {"type": "string", "format": "hostname"}}},
        "patterns": {"type": "array", "items": false, "prefixItems": [
            {"type": "string", "pattern": "^[A-Z]{3}-\\d{4}$"}, {"type": "string", "pattern": "^(?:foo|bar)_[a-z0-9]+$"},
            {"type": "string", "pattern": "^\\+?[0-9]{1,3}( [0-9]{2,4})*$"}, {"type": "string", "pattern": "v\\d+\\.\\d+"},
            {"type": "string", "pattern": "^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$"}, {"type": "string", "pattern": "^(?!admin)[a-z]{4,8}$"}]},
        "string enum": {"type": "string", "enum": ["red", "green", "blue"]},
        "const object": {"const": {"kind": "fixed"}},
        "nullable string": {"type": ["string", "null"]},
        "nullable listed first": {"type": ["null", "integer"], "minimum": 3},
        "integer exclusiveMinimum and multipleOf": {"type": "integer", "exclusiveMinimum": 10, "maximum": 30, "multipleOf": 7},
        "draft-04 boolean exclusiveMinimum": {"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer",
            "minimum": 0, "exclusiveMinimum": true, "maximum": 1},
        "upper bound only": {"type": "integer", "maximum": -1000},
        "open unit interval": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "fractional multipleOf": {"type": "number", "minimum": 0.1, "maximum": 5, "multipleOf": 0.1},
        "integer with fractional multipleOf": {"type": "integer", "minimum": 1000, "multipleOf": 0.5},
        "boolean and null tuple": {"type": "array", "prefixItems": [{"type": "boolean"}, {"type": "null"}], "minItems": 2},
        "unique bounded array": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 3},
            "minItems": 3, "maxItems": 3, "uniqueItems": true},
        "array contains": {"type": "array", "items": {"type": "integer"}, "contains": {"const": 42}},
        "strict mode nested arrays of objects": {"type": "object", "additionalProperties": false,
            "required": ["name", "steps"], "properties": {"name": {"type": "string"},
            "steps": {"type": "array", "minItems": 2, "items": {"type": "object", "additionalProperties": false,
            "required": ["title", "tags", "done"], "properties": {"title": {"type": "string"},
            "done": {"type": "boolean"}, "tags": {"type": "array", "items": {"enum": ["a", "b", null]}}}}}}},
        "schemars defs and refs": {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Plan",
            "type": "object", "required": ["owner", "status", "items"], "properties": {
            "owner": {"$ref": "#/$defs/Person"}, "status": {"$ref": "#/$defs/Status"},
            "backup": {"anyOf": [{"$ref": "#/$defs/Person"}, {"type": "null"}]},
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}}},
            "$defs": {"Person": {"type": "object", "required": ["name", "age"], "properties": {"name": {"type": "string"},
            "age": {"type": "integer", "format": "uint8", "minimum": 0, "maximum": 255}}},
            "Status": {"oneOf": [{"type": "string", "const": "open"}, {"type": "string", "const": "closed"}]},
            "Item": {"type": "object", "required": ["qty"], "properties": {
            "qty": {"type": "integer", "format": "uint32", "minimum": 0}, "note": {"type": ["string", "null"]}}}}},
        "draft-07 definitions tuple": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
            "definitions": {"Point": {"type": "array", "items": [{"type": "number"}, {"type": "number"}], "additionalItems": false}},
            "properties": {"p": {"$ref": "#/definitions/Point"}}, "required": ["p"]},
        "recursive tree via root ref": {"type": "object", "required": ["value", "children"], "properties": {
            "value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#"}}}},
        "recursive linked list": {"$ref": "#/$defs/Node", "$defs": {"Node": {"type": "object", "required": ["v", "next"],
            "properties": {"v": {"type": "string"}, "next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}}}}},
        "allOf merges object branches": {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "integer", "minimum": 5}}, "required": ["b"]}]},
        "anyOf skips the null branch": {"anyOf": [{"type": "null"}, {"type": "number", "maximum": -0.5}]},
        "additionalProperties schema": {"type": "object", "required": ["x", "extra"], "minProperties": 4,
            "properties": {"x": {"type": "boolean"}}, "additionalProperties": {"type": "integer"}},
        "schemars tagged enum": {"oneOf": [
            {"type": "object", "properties": {"kind": {"type": "string", "const": "circle"}, "r": {"type": "number"}},
            "required": ["kind", "r"]}, {"type": "object", "properties": {"kind": {"type": "string", "const": "square"},
            "side": {"type": "number", "exclusiveMinimum": 0}}, "required": ["kind", "side"]}]},
        "openai strict recursive ui": {"type": "object", "additionalProperties": false,
            "required": ["type", "label", "children", "attributes"], "properties": {
            "type": {"type": "string", "enum": ["div", "button", "header"]}, "label": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#"}}, "attributes": {"type": "array", "items": {
            "type": "object", "additionalProperties": false, "required": ["name", "value"],
            "properties": {"name": {"type": "string"}, "value": {"type": "string"}}}}}},
        "tool parameters": {"type": "object", "required": ["location"], "properties": {
            "location": {"type": "string", "description": "City"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7}}}
    }"##;

    /// `TABLE` parsed into `(name, schema)` pairs.
    fn table() -> Vec<(String, Value)> {
        let table: serde_json::Map<String, Value> = serde_json::from_str(TABLE).unwrap();
        table.into_iter().collect()
    }

    #[test]
    fn every_table_schema_yields_valid_values_across_seeds() {
        let table = table();
        assert!(table.len() >= 20, "{}", table.len());
        for (name, schema) in table {
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .unwrap();
            for seed in [0, 1, 2, 7, 42, 1234, u64::MAX] {
                let value = value_for_schema(&schema, seed);
                let errors: Vec<String> = validator
                    .iter_errors(&value)
                    .map(|e| e.to_string())
                    .collect();
                assert!(
                    errors.is_empty(),
                    "{name} seed {seed}: {value} -> {errors:?}"
                );
            }
        }
    }

    #[test]
    fn same_schema_and_seed_give_the_same_value() {
        for (name, schema) in table() {
            assert_eq!(
                value_for_schema(&schema, 99),
                value_for_schema(&schema, 99),
                "{name}"
            );
        }
    }

    #[test]
    fn different_seeds_vary_the_data() {
        let schema = json!({"type": "object", "properties": {"s": {"type": "string"}, "n": {"type": "integer"}}});
        let values: Vec<Value> = (0..8).map(|seed| value_for_schema(&schema, seed)).collect();
        assert!(values.iter().any(|v| *v != values[0]), "{values:?}");
    }

    #[test]
    fn objects_carry_every_listed_property_even_when_optional() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}});
        let value = value_for_schema(&schema, 3);
        assert!(
            value.get("a").is_some() && value.get("b").is_some(),
            "{value}"
        );
    }

    #[test]
    fn recursion_stops_at_the_depth_limit() {
        fn depth(v: &Value) -> usize {
            let kids = v.get("kids").and_then(Value::as_array);
            kids.map_or(0, |k| 1 + k.iter().map(depth).max().unwrap_or(0))
        }
        let schema = json!({"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}});
        let levels = depth(&value_for_schema(&schema, 5));
        assert!((1..=MAX_DEPTH).contains(&levels), "{levels}");
    }

    #[test]
    fn unsatisfiable_schemas_return_without_panicking() {
        assert_eq!(value_for_schema(&json!(false), 1), Value::Null);
        let endless =
            json!({"type": "object", "required": ["next"], "properties": {"next": {"$ref": "#"}}});
        for schema in [
            endless,
            json!({"$ref": "#"}),
            json!({"$ref": "#/$defs/missing"}),
            json!({"pattern": "(((["}),
            json!({"pattern": "((a{256}){256}){256}"}),
            json!({"type": "integer", "minimum": 5, "maximum": 1}),
        ] {
            let _ = value_for_schema(&schema, 1);
        }
    }
}
