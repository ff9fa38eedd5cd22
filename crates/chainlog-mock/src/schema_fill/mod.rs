//! Deterministic JSON values generated from JSON Schemas.
//!
//! The mock OpenAI server answers a `response_format: json_schema` request, or a
//! forced tool call whose `parameters` is a JSON Schema, with a value built here.
//! The value is a pure function of `(schema, seed)`: the seed only varies which
//! word, number or enum member is picked, so different requests get different
//! but valid data.
//!
//! Owned here: local `$ref` resolution (`#`, `#/$defs/..`, `#/definitions/..`),
//! `allOf` merging, `anyOf`/`oneOf` branch choice, and building a value of each
//! JSON type within the usual bound keywords. Recursion ends past a depth limit by
//! choosing the smallest valid value. Not owned here: reading requests, wrapping
//! the value in a completion or tool call, or validating it.
//!
//! Known limits: only root-local refs (no `$id`/`$anchor`/remote); `not`,
//! `if`/`then`/`else`, `patternProperties`, `propertyNames` and `dependent*` are
//! ignored; `pattern` handles a regex subset (literals, escapes, classes, `.`,
//! groups with `|` taking the first branch, quantifiers; lookarounds produce
//! nothing, backreferences are not supported) and is not reconciled with
//! `minLength`/`maxLength`; a `oneOf` whose branches overlap can match twice;
//! arrays stop at 256 items whatever `minItems` says.
//!
//! Parts: `fill` ([`value_for_schema`] and a value for each JSON type) and `pattern` (strings
//! matching a `pattern` regex).

mod fill;
mod pattern;

pub(crate) use fill::value_for_schema;
