//! [`PromptTemplate`]: one prompt, compiled once, checked and rendered many times, with its
//! [`PromptKind`] and its [`PromptFile`]s.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use handlebars::{Context, Handlebars, RenderError, RenderErrorReason};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::compile::compile;
use super::{PromptError, Rendered, RenderedMessage, Role};
use crate::digest::{sha256_hex, tree_sha256};

/// Whether a prompt is one text or a list of role-tagged messages; serialised as MLflow's
/// `_mlflow_prompt_type` (`text` | `chat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptKind {
    /// One template (`prompts/<name>.hbs`).
    Text,
    /// One template per message (`prompts/<name>/NN-<role>.hbs`).
    Chat,
}

impl PromptKind {
    /// `text` or `chat`.
    pub fn as_str(self) -> &'static str {
        match self {
            PromptKind::Text => "text",
            PromptKind::Chat => "chat",
        }
    }
}

/// One file of a prompt, as it would be logged in an artifact's `prompts/` folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptFile {
    /// Relative to the prompts folder: `summarize.hbs`, `chat_qa/01-system.hbs`.
    pub relative_path: PathBuf,
    /// The file's bytes, exactly as read (or, in memory, the template text).
    pub bytes: Vec<u8>,
    /// Lowercase hex SHA-256 of `bytes`.
    pub sha256: String,
}

/// The template a file holds, as compiled: one trailing line ending dropped.
fn source_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    text.to_owned()
}

/// One template of a prompt before compiling: a text prompt has one, a chat prompt one per
/// message.
#[derive(Debug)]
pub(super) struct Source {
    /// Where it is logged, relative to the prompts folder.
    pub relative_path: PathBuf,
    /// What a syntax error names: the file on disk, or for an in-memory prompt its name.
    pub error_path: PathBuf,
    /// The message's role; `None` for a text prompt.
    pub role: Option<Role>,
    /// The bytes [`PromptTemplate::files`] reports.
    pub bytes: Vec<u8>,
    /// The handlebars source compiled.
    pub text: String,
}

/// A handlebars prompt, compiled once at load and rendered in strict mode without HTML
/// escaping. Cheap to clone (the compiled templates are shared).
#[derive(Clone)]
pub struct PromptTemplate {
    name: String,
    /// Registry keys (the relative paths) of the templates, with their roles for chat.
    parts: Vec<(String, Option<Role>)>,
    kind: PromptKind,
    variables: BTreeSet<String>,
    files: Vec<PromptFile>,
    sha256: String,
    /// One registry per prompt: strict, no escaping, holding only this prompt's templates.
    registry: Arc<Handlebars<'static>>,
}

impl fmt::Debug for PromptTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PromptTemplate")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("variables", &self.variables)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl PromptTemplate {
    /// Loads `path`: a file is a text prompt, a folder of `NN-<role>.hbs` files a chat prompt
    /// (see the [module docs](super)). One trailing line ending of each file is dropped.
    ///
    /// # Errors
    ///
    /// [`PromptError::NotFound`], [`PromptError::Read`], [`PromptError::BadChatFile`],
    /// [`PromptError::Syntax`] (naming the file and line), [`PromptError::InvalidName`].
    pub fn from_path(name: &str, path: &Path) -> Result<Self, PromptError> {
        super::load::from_path(name, path)
    }

    /// A text prompt from a template string (a registry prompt, a test).
    ///
    /// # Errors
    ///
    /// [`PromptError::Syntax`] with the prompt's name as the path;
    /// [`PromptError::InvalidName`].
    ///
    /// # Examples
    ///
    /// ```
    /// use chainlog::prompt::{PromptTemplate, Rendered};
    /// let t = PromptTemplate::text("summary", "Summarize in {{n}} words: {{text}}")?;
    /// let out = t.render(&serde_json::json!({"text": "a < b & c", "n": 3}))?;
    /// assert_eq!(out, Rendered::Text("Summarize in 3 words: a < b & c".into()));
    /// # Ok::<(), chainlog::prompt::PromptError>(())
    /// ```
    pub fn text(name: &str, template: &str) -> Result<Self, PromptError> {
        let source = Source {
            relative_path: PathBuf::from(format!("{name}.hbs")),
            error_path: PathBuf::from(name),
            role: None,
            bytes: template.as_bytes().to_vec(),
            text: template.to_owned(),
        };
        Self::build(name, PromptKind::Text, vec![source])
    }

    /// A chat prompt from `(role, template)` pairs, in order. Its [files](Self::files) are
    /// named as the folder layout would name them (`<name>/01-system.hbs`, …).
    ///
    /// # Errors
    ///
    /// [`PromptError::BadChatFile`] when `messages` is empty; [`PromptError::Syntax`] naming
    /// `<name>/NN-<role>.hbs`; [`PromptError::InvalidName`].
    ///
    /// # Examples
    ///
    /// ```
    /// use chainlog::prompt::{PromptTemplate, Role};
    /// let t = PromptTemplate::chat("qa", vec![
    ///     (Role::System, "Answer in {{lang}}.".into()),
    ///     (Role::User, "{{question}}".into()),
    /// ])?;
    /// let names: Vec<_> = t.variables().iter().cloned().collect();
    /// assert_eq!(names, ["lang", "question"]);
    /// # Ok::<(), chainlog::prompt::PromptError>(())
    /// ```
    pub fn chat(name: &str, messages: Vec<(Role, String)>) -> Result<Self, PromptError> {
        if messages.is_empty() {
            return Err(PromptError::BadChatFile {
                path: PathBuf::from(name),
                reason: "a chat prompt needs at least one message".to_owned(),
            });
        }
        let width = messages.len().to_string().len().max(2);
        let sources = messages
            .into_iter()
            .enumerate()
            .map(|(i, (role, text))| {
                let relative_path = Path::new(name).join(format!("{:0width$}-{role}.hbs", i + 1));
                Source {
                    error_path: relative_path.clone(),
                    relative_path,
                    role: Some(role),
                    bytes: text.as_bytes().to_vec(),
                    text,
                }
            })
            .collect();
        Self::build(name, PromptKind::Chat, sources)
    }

    /// Compiles every source into one fresh registry.
    pub(super) fn build(
        name: &str,
        kind: PromptKind,
        sources: Vec<Source>,
    ) -> Result<Self, PromptError> {
        if !valid_name(name) {
            return Err(PromptError::InvalidName {
                name: name.to_owned(),
            });
        }
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        let mut parts = Vec::with_capacity(sources.len());
        let mut variables = BTreeSet::new();
        let mut files = Vec::with_capacity(sources.len());
        for source in sources {
            let key = slash_path(&source.relative_path);
            let compiled = compile(&source.text, &key, &source.error_path)?;
            variables.extend(compiled.variables);
            registry.register_template(&key, compiled.template);
            parts.push((key, source.role));
            files.push(PromptFile {
                sha256: sha256_hex(&source.bytes),
                relative_path: source.relative_path,
                bytes: source.bytes,
            });
        }
        let sha256 = prompt_sha256(&files);
        Ok(Self {
            name: name.to_owned(),
            parts,
            kind,
            variables,
            files,
            sha256,
            registry: Arc::new(registry),
        })
    }

    /// The prompt's name (the key a chain reads it by).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Text or chat.
    pub fn kind(&self) -> PromptKind {
        self.kind
    }

    /// The top-level input keys the prompt reads, known before rendering (see the
    /// [module docs](super) for what counts).
    ///
    /// # Examples
    ///
    /// ```
    /// use chainlog::prompt::PromptTemplate;
    /// let t = PromptTemplate::text("t", "{{#each docs}}{{title}} {{../style}}{{/each}}{{user.name}}")?;
    /// let names: Vec<_> = t.variables().iter().cloned().collect();
    /// assert_eq!(names, ["docs", "style", "user"]);
    /// # Ok::<(), chainlog::prompt::PromptError>(())
    /// ```
    pub fn variables(&self) -> &BTreeSet<String> {
        &self.variables
    }

    /// Checks that `vars` is an object holding every [variable](Self::variables) (a `null`
    /// value counts as present). Call it before any LLM call; [`render`](Self::render) calls
    /// it too.
    ///
    /// # Errors
    ///
    /// [`PromptError::MissingVariables`] listing every missing name, sorted.
    ///
    /// # Examples
    ///
    /// ```
    /// use chainlog::prompt::{PromptError, PromptTemplate};
    /// let t = PromptTemplate::text("summary", "{{style}}: {{text}}")?;
    /// let err = t.check(&serde_json::json!({})).unwrap_err();
    /// assert!(matches!(err, PromptError::MissingVariables { names, .. } if names == ["style", "text"]));
    /// # Ok::<(), PromptError>(())
    /// ```
    pub fn check(&self, vars: &Value) -> Result<(), PromptError> {
        let object = vars.as_object();
        let names: Vec<String> = self
            .variables
            .iter()
            .filter(|name| object.is_none_or(|o| !o.contains_key(name.as_str())))
            .cloned()
            .collect();
        if names.is_empty() {
            Ok(())
        } else {
            Err(PromptError::MissingVariables {
                prompt: self.name.clone(),
                names,
            })
        }
    }

    /// Renders the prompt with `vars`: [`check`](Self::check) first, then every template in
    /// strict mode, nothing escaped. The same input always gives the same output. Nothing is
    /// parsed here: the cost is the check, one clone of `vars` and the render itself.
    ///
    /// # Errors
    ///
    /// [`PromptError::MissingVariables`] (from the check, or for a missing nested field);
    /// [`PromptError::Render`] for other handlebars failures.
    pub fn render(&self, vars: &Value) -> Result<Rendered, PromptError> {
        self.check(vars)?;
        let context = Context::from(vars.clone());
        let render = |key: &str| {
            self.registry
                .render_with_context(key, &context)
                .map_err(|err| self.render_error(&err, vars))
        };
        match self.kind {
            PromptKind::Text => {
                let mut out = String::new();
                for (key, _) in &self.parts {
                    out.push_str(&render(key)?);
                }
                Ok(Rendered::Text(out))
            }
            PromptKind::Chat => self
                .parts
                .iter()
                .map(|(key, role)| {
                    Ok(RenderedMessage {
                        role: role.unwrap_or(Role::User),
                        content: render(key)?,
                    })
                })
                .collect::<Result<_, _>>()
                .map(Rendered::Chat),
        }
    }

    /// The template as MLflow's Prompt Registry stores it (`mlflow.prompt.text`): a text
    /// prompt's source, or for a chat prompt a JSON list of `{"role", "content"}`.
    pub fn registry_template(&self) -> String {
        match self.kind {
            PromptKind::Text => self
                .files
                .iter()
                .map(|file| source_text(&file.bytes))
                .collect(),
            PromptKind::Chat => {
                let messages: Vec<serde_json::Value> = self
                    .parts
                    .iter()
                    .zip(&self.files)
                    .map(|((_, role), file)| {
                        serde_json::json!({
                            "role": role.unwrap_or(Role::User).as_str(),
                            "content": source_text(&file.bytes),
                        })
                    })
                    .collect();
                serde_json::Value::Array(messages).to_string()
            }
        }
    }

    /// The prompt's files, in message order, with their relative paths and hashes.
    pub fn files(&self) -> &[PromptFile] {
        &self.files
    }

    /// Lowercase hex SHA-256 of the whole prompt: over its files sorted by relative path
    /// (`/`-separated), each as `path NUL sha256-hex LF`. Independent of where the prompts
    /// folder is and of the order files were read in.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    fn render_error(&self, err: &RenderError, vars: &Value) -> PromptError {
        let reason = match err.reason() {
            // Strict mode also reports `#each`/`#with` over a value that is present but
            // cannot be iterated or entered (null, false, a number); say so rather than
            // calling it missing.
            RenderErrorReason::MissingVariable(Some(path)) if resolves(vars, path) => format!(
                "`{path}` is present but `#each`/`#with` without `{{{{else}}}}` needs a list \
                 or an object there"
            ),
            RenderErrorReason::MissingVariable(Some(path)) => {
                return PromptError::MissingVariables {
                    prompt: self.name.clone(),
                    names: vec![path.clone()],
                };
            }
            other => other.to_string(),
        };
        let template = err.template_name.as_deref().unwrap_or(&self.name);
        let message = match (err.line_no, err.column_no) {
            (Some(line), Some(column)) => {
                format!("{template} at line {line}, column {column}: {reason}")
            }
            _ => format!("{template}: {reason}"),
        };
        PromptError::Render {
            prompt: self.name.clone(),
            message,
        }
    }
}

/// Whether a handlebars path (`a.b`, `a/0`, `this.a`) names a value present in `vars`.
fn resolves(vars: &Value, path: &str) -> bool {
    path.split(['.', '/'])
        .filter(|s| !s.is_empty() && *s != "this")
        .try_fold(vars, |value, segment| match value {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
        .is_some()
}

/// MLflow's prompt name rule (`^[a-zA-Z0-9_.-]+$`), minus names made only of dots, which
/// would be a path of their own.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !name.chars().all(|c| c == '.')
}

/// A relative path with `/` separators on every platform (a stable key and hash input).
pub(super) fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn prompt_sha256(files: &[PromptFile]) -> String {
    let paths: Vec<String> = files.iter().map(|f| slash_path(&f.relative_path)).collect();
    tree_sha256(
        paths
            .iter()
            .map(String::as_str)
            .zip(files.iter().map(|f| f.sha256.as_str())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn render_fails_on_missing_variable_naming_it_and_the_prompt() {
        let t = PromptTemplate::text("summary", "Summarize {{text}}").unwrap();
        let err = t.render(&json!({"txt": "x"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "prompt `summary` needs variables `text` that the input does not provide"
        );
    }

    #[test]
    fn render_names_a_missing_nested_field() {
        let t = PromptTemplate::text("p", "{{user.name}}").unwrap();
        let err = t.render(&json!({"user": {}})).unwrap_err();
        assert!(
            matches!(&err, PromptError::MissingVariables { prompt, names } if prompt == "p" && names[0].contains("name")),
            "{err:?}"
        );
    }

    #[test]
    fn render_does_not_escape_html() {
        let t = PromptTemplate::text("p", "{{a}} {{{a}}} <b>&amp;</b>").unwrap();
        let out = t
            .render(&json!({"a": "<tag attr=\"v\" x='y'> & more"}))
            .unwrap();
        assert_eq!(
            out,
            Rendered::Text(
                "<tag attr=\"v\" x='y'> & more <tag attr=\"v\" x='y'> & more <b>&amp;</b>".into()
            )
        );
    }

    #[test]
    fn a_block_over_a_present_but_unusable_value_is_a_render_error() {
        let t = PromptTemplate::text("p", "a\n{{#with who}}{{name}}{{/with}}").unwrap();
        let err = t.render(&json!({"who": null})).unwrap_err();
        let PromptError::Render { prompt, message } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(prompt, "p");
        assert!(message.contains("`who` is present but"), "{message}");
        let t = PromptTemplate::text("p", "{{#each xs}}{{this}}{{/each}}").unwrap();
        assert!(matches!(
            t.render(&json!({"xs": 5})),
            Err(PromptError::Render { .. })
        ));
        assert_eq!(
            t.render(&json!({"xs": []})).unwrap(),
            Rendered::Text(String::new())
        );
    }

    #[test]
    fn prompt_types_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<PromptTemplate>();
        send_sync::<crate::prompt::PromptSet>();
        send_sync::<PromptError>();
    }

    #[test]
    fn an_input_named_like_a_helper_renders_through_this() {
        let t = PromptTemplate::text("p", "{{this.len}}/{{[log]}}").unwrap();
        let out = t.render(&json!({"len": 3, "log": "x"})).unwrap();
        assert_eq!(out, Rendered::Text("3/x".into()));
    }

    #[test]
    fn rendering_is_deterministic() {
        let t = PromptTemplate::text(
            "p",
            "{{#each tags}}{{@key}}={{this}};{{/each}}{{#each xs}}{{@index}}:{{this}} {{/each}}",
        )
        .unwrap();
        let vars = json!({"tags": {"b": 2, "a": 1, "c": 3}, "xs": ["x", "y"]});
        let first = t.render(&vars).unwrap();
        for _ in 0..20 {
            assert_eq!(t.render(&vars).unwrap(), first);
        }
        assert_eq!(t.clone().render(&vars).unwrap(), first);
    }

    #[test]
    fn check_lists_every_missing_variable() {
        let t = PromptTemplate::text("summary", "{{text}} {{style}} {{#if brief}}!{{/if}} {{n}}")
            .unwrap();
        let err = t.check(&json!({"n": null})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "prompt `summary` needs variables `brief`, `style`, `text` that the input does not provide"
        );
        let err = t.check(&json!("not an object")).unwrap_err();
        assert!(matches!(err, PromptError::MissingVariables { names, .. } if names.len() == 4));
        t.check(&json!({"text": 1, "style": 2, "brief": false, "n": 3}))
            .unwrap();
    }

    #[test]
    fn chat_renders_messages_in_order_with_roles() {
        let t = PromptTemplate::chat(
            "qa",
            vec![
                (Role::System, "Be {{tone}}.".into()),
                (Role::User, "{{q}}".into()),
                (Role::Assistant, "ok".into()),
            ],
        )
        .unwrap();
        assert_eq!(t.kind(), PromptKind::Chat);
        let out = t.render(&json!({"tone": "brief", "q": "why?"})).unwrap();
        let pairs: Vec<(Role, String)> = out
            .into_messages()
            .into_iter()
            .map(|m| (m.role, m.content))
            .collect();
        assert_eq!(
            pairs,
            [
                (Role::System, "Be brief.".into()),
                (Role::User, "why?".into()),
                (Role::Assistant, "ok".into())
            ]
        );
        let paths: Vec<String> = t
            .files()
            .iter()
            .map(|f| slash_path(&f.relative_path))
            .collect();
        assert_eq!(
            paths,
            ["qa/01-system.hbs", "qa/02-user.hbs", "qa/03-assistant.hbs"]
        );
    }

    #[test]
    fn in_memory_syntax_error_names_the_prompt() {
        let err = PromptTemplate::text("summary", "ok\n{{#if x}}").unwrap_err();
        assert!(
            matches!(&err, PromptError::Syntax { path, line: 2, .. } if path == Path::new("summary")),
            "{err:?}"
        );
        let err = PromptTemplate::chat("qa", vec![(Role::User, "{{".into())]).unwrap_err();
        assert!(
            matches!(&err, PromptError::Syntax { path, .. } if path == Path::new("qa/01-user.hbs")),
            "{err:?}"
        );
    }

    #[test]
    fn empty_chat_and_bad_names_are_refused() {
        assert!(matches!(
            PromptTemplate::chat("qa", vec![]),
            Err(PromptError::BadChatFile { .. })
        ));
        for name in ["", "..", "a/b", "with space"] {
            assert!(
                matches!(
                    PromptTemplate::text(name, "x"),
                    Err(PromptError::InvalidName { .. })
                ),
                "{name}"
            );
        }
        PromptTemplate::text("my-prompt_v2.1", "x").unwrap();
    }

    #[test]
    fn sha256_is_stable_and_tracks_content() {
        let a = PromptTemplate::text("summary", "Summarize {{text}}").unwrap();
        let b = PromptTemplate::text("summary", "Summarize {{text}}").unwrap();
        let c = PromptTemplate::text("summary", "Summarize: {{text}}").unwrap();
        assert_eq!(a.sha256(), b.sha256());
        assert_ne!(a.sha256(), c.sha256());
        assert_eq!(a.sha256().len(), 64);
        // SHA-256 of "Summarize {{text}}".
        assert_eq!(a.files()[0].sha256, sha256_hex(b"Summarize {{text}}"));
    }
}
