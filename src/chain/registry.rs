//! The [`Chain`] trait and the registry of the chains compiled into a binary: each entry's
//! name, description, source text as compiled and its SHA-256, input/output schemas and build
//! function. Input is checked against the input schema before a chain runs.

use std::{
    future::Future,
    sync::{Arc, OnceLock},
};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use tracing::Instrument;

use super::{BuildContext, ChainError, RunContext};
use crate::{
    digest::sha256_hex,
    llm::{CallLoad, LlmClient},
};

/// A chain: typed input in, typed output out, any Rust in between.
///
/// Implement it on the type your `build` function returns:
///
/// ```
/// use chainlog::chain::{Chain, ChainError, RunContext};
/// use schemars::JsonSchema;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize, JsonSchema)]
/// struct Input { text: String }
/// #[derive(Serialize, JsonSchema)]
/// struct Output { shout: String }
///
/// struct Shout;
/// impl Chain for Shout {
///     type Input = Input;
///     type Output = Output;
///     async fn invoke(&self, input: Input, _ctx: &RunContext) -> Result<Output, ChainError> {
///         Ok(Output { shout: input.text.to_uppercase() })
///     }
/// }
/// ```
pub trait Chain: Send + Sync + 'static {
    /// The input; its JSON schema is the chain's input signature.
    type Input: DeserializeOwned + JsonSchema + Send + 'static;
    /// The output; its JSON schema is the chain's output signature.
    type Output: Serialize + JsonSchema + Send + 'static;

    /// Runs the chain once.
    fn invoke(
        &self,
        input: Self::Input,
        ctx: &RunContext,
    ) -> impl Future<Output = Result<Self::Output, ChainError>> + Send;
}

/// The JSON schema of a type, as the chain's signature uses it.
pub fn schema_of<T: JsonSchema>() -> Value {
    schemars::schema_for!(T).to_value()
}

/// A chain with its types erased to JSON, so chains of different types share one registry.
#[async_trait]
trait ErasedChain: Send + Sync {
    async fn invoke_json(&self, input: Value, ctx: &RunContext) -> Result<Value, ChainError>;
}

struct Erased<C> {
    name: &'static str,
    chain: C,
}

#[async_trait]
impl<C: Chain> ErasedChain for Erased<C> {
    async fn invoke_json(&self, input: Value, ctx: &RunContext) -> Result<Value, ChainError> {
        let input: C::Input = serde_json::from_value(input).map_err(|err| ChainError::Input {
            chain: self.name.to_owned(),
            problems: err.to_string(),
        })?;
        let output = self.chain.invoke(input, ctx).await?;
        serde_json::to_value(output).map_err(|source| ChainError::Output {
            chain: self.name.to_owned(),
            source,
        })
    }
}

type BuildFn = Box<dyn Fn(&BuildContext) -> Result<Arc<dyn ErasedChain>, ChainError> + Send + Sync>;

/// Checks `input` against a compiled input schema, naming every field at fault
/// (`input.text: 5 is not of type "string"`): the one place chain input errors are worded.
///
/// # Errors
///
/// [`ChainError::Input`] listing the problems.
pub fn check_against(
    chain: &str,
    validator: &jsonschema::Validator,
    input: &Value,
) -> Result<(), ChainError> {
    let problems: Vec<String> = validator
        .iter_errors(input)
        .map(|error| {
            let path = error.instance_path().as_str().replace('/', ".");
            format!("input{path}: {error}")
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ChainError::Input {
            chain: chain.to_owned(),
            problems: problems.join("; "),
        })
    }
}

/// One chain compiled into this binary.
pub struct ChainEntry {
    name: &'static str,
    description: &'static str,
    source_path: &'static str,
    source: &'static str,
    sha256: OnceLock<String>,
    input_schema: Value,
    output_schema: Value,
    validator: OnceLock<Result<jsonschema::Validator, String>>,
    build: BuildFn,
}

impl std::fmt::Debug for ChainEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainEntry")
            .field("name", &self.name)
            .field("source_path", &self.source_path)
            .finish_non_exhaustive()
    }
}

impl ChainEntry {
    /// An entry; `build.rs` generates these calls, one per `chains/<name>.rs`.
    pub fn new<C: Chain>(
        name: &'static str,
        description: &'static str,
        source_path: &'static str,
        source: &'static str,
        build: fn(&BuildContext) -> Result<C, ChainError>,
    ) -> Self {
        Self {
            name,
            description,
            source_path,
            source,
            sha256: OnceLock::new(),
            input_schema: schema_of::<C::Input>(),
            output_schema: schema_of::<C::Output>(),
            validator: OnceLock::new(),
            build: Box::new(move |ctx| {
                let chain = build(ctx)?;
                Ok(Arc::new(Erased { name, chain }) as Arc<dyn ErasedChain>)
            }),
        }
    }

    /// The chain's name (its file stem).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The first line of the chain file's `//!` docs.
    pub fn description(&self) -> &'static str {
        self.description
    }

    /// The chain's path in the crate (`chains/summarize.rs`).
    pub fn source_path(&self) -> &'static str {
        self.source_path
    }

    /// The chain's source text exactly as compiled into this binary.
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// Hex SHA-256 of [`source`](Self::source).
    pub fn sha256(&self) -> &str {
        self.sha256
            .get_or_init(|| sha256_hex(self.source.as_bytes()))
    }

    /// JSON schema of the input.
    pub fn input_schema(&self) -> &Value {
        &self.input_schema
    }

    /// JSON schema of the output.
    pub fn output_schema(&self) -> &Value {
        &self.output_schema
    }

    /// Checks `input` against the input schema, naming every field at fault.
    ///
    /// # Errors
    ///
    /// [`ChainError::Input`] listing the problems (`input.text: is a required property`).
    pub fn check_input(&self, input: &Value) -> Result<(), ChainError> {
        let validator = self.validator.get_or_init(|| {
            jsonschema::validator_for(&self.input_schema).map_err(|e| e.to_string())
        });
        let validator = validator.as_ref().map_err(|message| ChainError::Input {
            chain: self.name.to_owned(),
            problems: format!("the chain's input schema is invalid: {message}"),
        })?;
        check_against(self.name, validator, input)
    }

    /// Builds the chain.
    ///
    /// # Errors
    ///
    /// Whatever the chain's build function refuses (a missing prompt, a bad config section).
    pub fn build(&self, ctx: &BuildContext) -> Result<BuiltChain, ChainError> {
        let chain = (self.build)(ctx)?;
        Ok(BuiltChain {
            name: self.name,
            chain,
            clients: ctx.clients().into(),
        })
    }
}

/// A built chain, ready to run many times.
#[derive(Clone)]
pub struct BuiltChain {
    name: &'static str,
    chain: Arc<dyn ErasedChain>,
    /// The LLM clients the chain was built with, one per config section, so a batch or a
    /// server can show calls in flight against `llm.concurrency`.
    clients: Arc<[Arc<dyn LlmClient>]>,
}

impl std::fmt::Debug for BuiltChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltChain")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl BuiltChain {
    /// LLM calls in flight now against the limit, summed over the chain's clients; `None`
    /// when none of them has a limit (scripted clients) or the chain has no LLM.
    pub fn calls(&self) -> Option<CallLoad> {
        self.clients
            .iter()
            .filter_map(|client| client.calls())
            .reduce(|a, b| a + b)
    }

    /// Runs the chain on JSON input inside a `chain` span. Check the input with
    /// [`ChainEntry::check_input`] first for field-level errors.
    ///
    /// # Errors
    ///
    /// Whatever the chain fails with.
    pub async fn invoke(&self, input: Value, ctx: &RunContext) -> Result<Value, ChainError> {
        // The log lines' span, and the trace's (MLflow's root CHAIN span, or a child of the
        // span current here).
        let span = tracing::info_span!(parent: ctx.span(), "chain", chain = %self.name);
        let traced = crate::trace::TraceSpan::new(self.name, "CHAIN");
        // Set now: a future dropped before its end (a caller that gave up, a timeout) leaves
        // a span with its inputs, failed as dropped (by its instrumented future).
        crate::trace::json_value(&traced, "mlflow.spanInputs", &input);
        let ctx = RunContext::clone(ctx);
        let result = traced
            .clone()
            .instrument(self.chain.invoke_json(input, &ctx).instrument(span))
            .await;
        match &result {
            Ok(output) => crate::trace::json_value(&traced, "mlflow.spanOutputs", output),
            Err(error) => crate::trace::fail(&traced, crate::trace::error_chain(error)),
        }
        result
    }
}

/// The chains compiled into a binary, by name.
#[derive(Debug, Default)]
pub struct ChainRegistry {
    entries: Vec<ChainEntry>,
}

impl ChainRegistry {
    /// A registry of these entries (sorted by name).
    pub fn new(mut entries: Vec<ChainEntry>) -> Self {
        entries.sort_by_key(|entry| entry.name);
        Self { entries }
    }

    /// Every chain, by name.
    pub fn entries(&self) -> &[ChainEntry] {
        &self.entries
    }

    /// The chain called `name`.
    ///
    /// # Errors
    ///
    /// [`ChainError::UnknownChain`] listing the known chains.
    pub fn get(&self, name: &str) -> Result<&ChainEntry, ChainError> {
        self.entries
            .iter()
            .find(|entry| entry.name == name)
            .ok_or_else(|| ChainError::UnknownChain {
                name: name.to_owned(),
                known: self.entries.iter().map(|e| e.name.to_owned()).collect(),
            })
    }
}
