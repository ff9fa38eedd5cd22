//! Compiling one template source: handlebars' parser, clearer syntax errors, the refusal of
//! constructs this module does not support, and the discovery of the variables a template
//! reads from its input.
//!
//! Variables are found by walking the compiled [`Template`], following handlebars-rust's own
//! path resolution (`context.rs`): `#each` and `#with` push a block context for their body,
//! `#if`/`#unless` and every `{{else}}` branch do not; `@root.x` always reaches the input;
//! `../x` reaches it when it climbs exactly as many blocks as are open (or when none is open);
//! block params (`as |item|`) and `@index`-style locals never do.

use std::collections::BTreeSet;
use std::path::Path as FsPath;

use handlebars::template::{BlockParam, HelperTemplate, Parameter, Template, TemplateElement};
use handlebars::{Path, PathSeg, TemplateError, TemplateErrorReason};

use super::PromptError;

/// The helpers `handlebars::Handlebars::new()` registers (no optional features enabled).
/// Anything else would fail at render time, so it is refused at load.
const HELPERS: [&str; 17] = [
    "if", "unless", "each", "with", "lookup", "raw", "log", "eq", "ne", "gt", "gte", "lt", "lte",
    "and", "or", "not", "len",
];

/// A template compiled once at load, with the top-level variables it reads.
#[derive(Debug)]
pub(super) struct Compiled {
    /// The parsed template, ready to register.
    pub template: Template,
    /// Top-level input keys the template reads.
    pub variables: BTreeSet<String>,
}

/// Parses `source` (registered under `key`), refuses what rendering could not honour, and
/// collects its variables.
///
/// # Errors
///
/// [`PromptError::Syntax`] naming `path`, with the line and column of the fault.
pub(super) fn compile(source: &str, key: &str, path: &FsPath) -> Result<Compiled, PromptError> {
    let template = Template::compile_with_name(source, key.to_owned())
        .map_err(|err| syntax_error(source, path, &err))?;
    let mut walker = Walker {
        path,
        variables: BTreeSet::new(),
        depth: 0,
        block_params: Vec::new(),
    };
    walker.template(&template, (0, 0))?;
    let variables = walker.variables;
    Ok(Compiled {
        template,
        variables,
    })
}

/// Handlebars reports an unclosed block at the end of the input; point at its opening tag.
fn syntax_error(source: &str, path: &FsPath, err: &TemplateError) -> PromptError {
    let (line, column) = err.pos().unwrap_or((0, 0));
    let unclosed = matches!(err.reason(), TemplateErrorReason::InvalidSyntax(_))
        .then(|| unclosed_tag(source))
        .flatten();
    let (line, column, message) = match unclosed {
        Some((l, c, what)) => (l, c, format!("{what} is never closed")),
        None => (line, column, err.reason().to_string()),
    };
    PromptError::Syntax {
        path: path.to_path_buf(),
        line,
        column,
        message,
    }
}

/// The innermost construct still open at the end of `source`: a block (`{{#if x}}`), a raw
/// block, a comment or a bare `{{`. Returns its 1-based line, column and a description.
///
/// Only consulted once handlebars has already failed, to place the error better.
fn unclosed_tag(source: &str) -> Option<(usize, usize, String)> {
    let mut open: Vec<(usize, String)> = Vec::new();
    let mut at = 0;
    while let Some(found) = source.get(at..).and_then(|rest| rest.find("{{")) {
        let start = at + found;
        let rest = source.get(start..).unwrap_or_default();
        if start > 0 && source.as_bytes().get(start - 1) == Some(&b'\\') {
            at = start + 2;
            continue;
        }
        let (closer, what) = if rest.starts_with("{{{{") {
            ("{{{{/", "raw block `{{{{`")
        } else if rest.starts_with("{{!--") {
            ("--}}", "comment `{{!--`")
        } else {
            ("}}", "tag `{{`")
        };
        let search_from = start + if rest.starts_with("{{{{") { 4 } else { 2 };
        let Some(end) = source.get(search_from..).and_then(|r| r.find(closer)) else {
            return Some(position(source, start, what.to_owned()));
        };
        let end = search_from + end;
        if closer == "{{{{/" {
            // Skip the raw body and its closing tag; nothing inside is a tag.
            at = source
                .get(end..)
                .and_then(|r| r.find("}}}}"))
                .map_or(source.len(), |e| end + e + 4);
            continue;
        }
        let inner = source
            .get(start + 2..end)
            .unwrap_or_default()
            .trim_start_matches(['~', ' ', '\t', '\r', '\n']);
        if let Some(opened) = inner.strip_prefix('#') {
            let name: String = opened
                .trim_start_matches(['>', '*', ' '])
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '~' && *c != '}')
                .collect();
            open.push((start, format!("block `{{{{#{name}}}}}`")));
        } else if inner.starts_with('/') {
            open.pop();
        }
        at = end + closer.len();
    }
    open.pop()
        .map(|(start, what)| position(source, start, what))
}

/// 1-based line and column of byte offset `at`.
fn position(source: &str, at: usize, what: String) -> (usize, usize, String) {
    let before = source.get(..at).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    (line, column, what)
}

/// Walks a compiled template, tracking how many context-changing blocks are open and which
/// block params are in scope.
struct Walker<'a> {
    path: &'a FsPath,
    variables: BTreeSet<String>,
    /// Open `#each`/`#with` bodies: how far `../` must climb to reach the input.
    depth: usize,
    /// Block params of every open block; handlebars resolves them at any distance.
    block_params: Vec<String>,
}

impl Walker<'_> {
    fn template(&mut self, template: &Template, outer: (usize, usize)) -> Result<(), PromptError> {
        for (i, element) in template.elements.iter().enumerate() {
            // Block elements get their mapping when opened, so indices line up.
            let at = template.mapping.get(i).map_or(outer, |m| (m.0, m.1));
            match element {
                TemplateElement::RawString(_) | TemplateElement::Comment(_) => {}
                TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                    self.expression(h, at)?;
                }
                TemplateElement::HelperBlock(h) => self.block(h, at)?,
                TemplateElement::PartialExpression(_) | TemplateElement::PartialBlock(_) => {
                    return Err(self.refuse(at, "partials (`{{> name}}`) are not supported: a prompt is one self-contained template".to_owned()));
                }
                TemplateElement::DecoratorExpression(_) | TemplateElement::DecoratorBlock(_) => {
                    return Err(
                        self.refuse(at, "decorators (`{{* name}}`) are not supported".to_owned())
                    );
                }
                _ => {
                    return Err(self.refuse(at, "unsupported handlebars construct".to_owned()));
                }
            }
        }
        Ok(())
    }

    /// `{{x}}`, `{{{x}}}`, `{{helper a b=c}}`, or a subexpression's body.
    fn expression(&mut self, h: &HelperTemplate, at: (usize, usize)) -> Result<(), PromptError> {
        let name_only = !h.block && h.params.is_empty() && h.hash.is_empty();
        if name_only {
            return match &h.name {
                // Handlebars calls a helper of that name before it looks up a value, so an
                // input named `len` or `log` would be silently shadowed.
                Parameter::Path(_) if is_helper(p_raw(&h.name)) => {
                    let name = p_raw(&h.name);
                    Err(self.refuse(
                        at,
                        format!(
                            "`{{{{{name}}}}}` calls the `{name}` helper with no arguments; \
                             to read an input named `{name}` write `{{{{this.{name}}}}}`"
                        ),
                    ))
                }
                Parameter::Path(p) => {
                    self.path(p);
                    Ok(())
                }
                Parameter::Subexpression(_) => self.parameter(&h.name, at),
                _ => Ok(()),
            };
        }
        self.helper_call(h, at)
    }

    /// The helper name, params and hash of a call, all read in the current scope.
    fn helper_call(&mut self, h: &HelperTemplate, at: (usize, usize)) -> Result<(), PromptError> {
        match &h.name {
            Parameter::Subexpression(_) => self.parameter(&h.name, at)?,
            name => {
                let name = p_raw(name);
                if !is_helper(name) {
                    let known = HELPERS.join(", ");
                    return Err(
                        self.refuse(at, format!("unknown helper `{name}` (known: {known})"))
                    );
                }
            }
        }
        for param in &h.params {
            self.parameter(param, at)?;
        }
        let mut hash: Vec<_> = h.hash.iter().collect();
        hash.sort_by(|a, b| a.0.cmp(b.0));
        for (_, param) in hash {
            self.parameter(param, at)?;
        }
        Ok(())
    }

    /// `{{#helper params}}body{{else}}inverse{{/helper}}`.
    fn block(&mut self, h: &HelperTemplate, at: (usize, usize)) -> Result<(), PromptError> {
        self.helper_call(h, at)?;
        if let Some(body) = &h.template {
            let name = p_raw(&h.name);
            if name == "each" || name == "with" {
                let params = block_param_names(h.block_param.as_ref());
                let pushed = params.len();
                self.block_params.extend(params);
                self.depth += 1;
                let walked = self.template(body, at);
                self.depth -= 1;
                self.block_params
                    .truncate(self.block_params.len().saturating_sub(pushed));
                walked?;
            } else {
                self.template(body, at)?;
            }
        }
        // `{{else}}` runs in the scope the block was opened in (an else-chain nests here).
        if let Some(inverse) = &h.inverse {
            self.template(inverse, at)?;
        }
        Ok(())
    }

    fn parameter(&mut self, param: &Parameter, at: (usize, usize)) -> Result<(), PromptError> {
        match param {
            Parameter::Path(p) => self.path(p),
            Parameter::Subexpression(sub) => match sub.as_element() {
                TemplateElement::Expression(h) => self.expression(h, at)?,
                _ => return Err(self.refuse(at, "unsupported subexpression".to_owned())),
            },
            _ => {}
        }
        Ok(())
    }

    /// Records the top-level name a path reads from the input, if it reads one.
    fn path(&mut self, path: &Path) {
        let Path::Relative((segments, _)) = path else {
            return; // `@index`, `@key`, `@root`, `../@first`: block locals.
        };
        let mut ups = 0;
        let mut from_root = false;
        let mut first = None;
        for segment in segments {
            match segment {
                PathSeg::Named(name) => {
                    first = Some(name);
                    break;
                }
                // The grammar rule type is private to handlebars; its Debug name is the rule's.
                PathSeg::Ruled(rule) => match format!("{rule:?}").as_str() {
                    "path_up" => ups += 1,
                    "path_root" => from_root = true,
                    _ => return,
                },
                _ => return,
            }
        }
        let Some(name) = first else {
            return; // `this`, `../this`: a whole context, not a variable.
        };
        let top_level = if from_root {
            true
        } else if self.block_params.iter().any(|p| p == name) {
            false
        } else {
            // Climbing past the root falls back to the current block in handlebars-rust.
            self.depth == 0 || ups == self.depth
        };
        if top_level {
            self.variables.insert(name.clone());
        }
    }

    fn refuse(&self, at: (usize, usize), message: String) -> PromptError {
        PromptError::Syntax {
            path: self.path.to_path_buf(),
            line: at.0,
            column: at.1,
            message,
        }
    }
}

fn is_helper(name: &str) -> bool {
    HELPERS.contains(&name)
}

/// The name as written (`if`, `person.name`), empty for literals and subexpressions.
fn p_raw(param: &Parameter) -> &str {
    param.as_name().unwrap_or_default()
}

fn block_param_names(param: Option<&BlockParam>) -> Vec<String> {
    let names: Vec<&Parameter> = match param {
        Some(BlockParam::Single(p)) => vec![p],
        Some(BlockParam::Pair((a, b))) => vec![a, b],
        _ => vec![],
    };
    names
        .into_iter()
        .filter_map(Parameter::as_name)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(source: &str) -> Vec<String> {
        compile(source, "t", FsPath::new("t.hbs"))
            .unwrap()
            .variables
            .into_iter()
            .collect()
    }

    fn syntax(source: &str) -> (usize, usize, String) {
        match compile(source, "t", FsPath::new("t.hbs")).unwrap_err() {
            PromptError::Syntax {
                line,
                column,
                message,
                ..
            } => (line, column, message),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn plain_and_triple_stash_variables_are_found() {
        assert_eq!(
            vars("Hi {{name}}, {{{ body }}} {{ name }}"),
            ["body", "name"]
        );
    }

    #[test]
    fn dotted_and_bracketed_paths_name_their_first_segment() {
        assert_eq!(
            vars("{{user.name}} {{order/id}} {{this.x}} {{./y}} {{[odd key].z}}"),
            ["odd key", "order", "user", "x", "y"]
        );
    }

    #[test]
    fn each_reads_its_list_but_not_the_item_fields() {
        assert_eq!(
            vars("{{#each items}}{{this}} {{name}} {{this.id}} {{@index}} {{@first}}{{/each}}"),
            ["items"]
        );
    }

    #[test]
    fn parent_paths_inside_each_reach_the_input() {
        assert_eq!(
            vars("{{#each items}}{{../title}} {{@root.lang}}{{#if ../flag}}x{{/if}}{{/each}}"),
            ["flag", "items", "lang", "title"]
        );
    }

    #[test]
    fn parent_paths_count_only_each_and_with_blocks() {
        let source = "{{#each a}}{{#each b}}{{../c}} {{../../d}}{{/each}}{{/each}}";
        // `b` is a field of an `a` item; `../c` stays one level inside.
        assert_eq!(vars(source), ["a", "d"]);
        assert_eq!(
            vars("{{../top}} {{#if x}}{{../y}}{{/if}}"),
            ["top", "x", "y"]
        );
    }

    #[test]
    fn if_unless_and_else_read_in_the_current_scope() {
        assert_eq!(
            vars(
                "{{#if flag}}{{a}}{{else if other}}{{b}}{{else}}{{c}}{{/if}}{{#unless off}}{{d}}{{/unless}}"
            ),
            ["a", "b", "c", "d", "flag", "off", "other"]
        );
    }

    #[test]
    fn with_changes_the_context_and_its_else_does_not() {
        assert_eq!(
            vars("{{#with person}}{{name}} {{../greeting}}{{else}}{{fallback}}{{/with}}"),
            ["fallback", "greeting", "person"]
        );
    }

    #[test]
    fn block_params_are_not_variables_even_behind_parent_paths() {
        let source = "{{#each items as |item i|}}{{item.name}} {{i}} {{../item}}{{/each}}\
                      {{#with user as |u|}}{{u.name}}{{/with}}";
        assert_eq!(vars(source), ["items", "user"]);
    }

    #[test]
    fn each_else_reads_the_outer_scope() {
        assert_eq!(
            vars("{{#each xs}}{{y}}{{else}}{{empty}}{{/each}}"),
            ["empty", "xs"]
        );
    }

    #[test]
    fn helper_params_hashes_and_subexpressions_are_read() {
        let source = "{{lookup table key}} {{#if (eq kind \"a\")}}{{/if}} {{len (lookup m k2)}} \
                      {{#if (and a b) includeZero=z}}{{/if}} {{log msg}}";
        assert_eq!(
            vars(source),
            ["a", "b", "k2", "key", "kind", "m", "msg", "table", "z"]
        );
    }

    #[test]
    fn literals_this_locals_comments_and_raw_blocks_are_not_variables() {
        let source = "{{eq 1 \"x\"}} {{this}} {{@root}} {{!-- {{hidden}} --}} {{! also }} \
                      {{{{raw}}}}{{not_a_var}}{{{{/raw}}}} \\{{escaped}}";
        assert_eq!(vars(source), Vec::<String>::new());
    }

    #[test]
    fn unclosed_block_is_reported_where_it_opens() {
        let (line, column, message) = syntax("one\ntwo\n{{#if x}}\nbody\nmore\n");
        assert_eq!((line, column), (3, 1));
        assert!(message.contains("`{{#if}}` is never closed"), "{message}");
    }

    #[test]
    fn mismatched_close_keeps_the_handlebars_position() {
        let (line, _, message) = syntax("a\n{{#if x}}\n{{/each}}\n");
        assert_eq!(line, 3);
        assert!(
            message.contains("\"if\" was opened, but \"each\" is closing"),
            "{message}"
        );
    }

    #[test]
    fn unknown_helpers_partials_and_decorators_are_refused() {
        let (line, _, message) = syntax("ok\n{{shout name}}");
        assert_eq!(line, 2);
        assert!(message.contains("unknown helper `shout`"), "{message}");
        assert!(
            syntax("{{#person}}{{name}}{{/person}}")
                .2
                .contains("unknown helper `person`")
        );
        assert!(syntax("{{> header}}").2.contains("partials"));
        let shadowed = syntax("{{#each xs}}{{len}}{{/each}}").2;
        assert!(
            shadowed.contains("`{{len}}` calls the `len` helper"),
            "{shadowed}"
        );
        assert_eq!(vars("{{this.len}} {{[log]}}"), ["len", "log"]);
        assert!(
            syntax("{{#*inline \"p\"}}x{{/inline}}")
                .2
                .contains("decorators")
        );
    }

    #[test]
    fn unclosed_tag_finds_the_innermost_open_block() {
        let found = unclosed_tag("{{#each a}}\n  {{#if b}}{{/if}}\n  {{#with c}}{{/with}}\n");
        assert_eq!(found, Some((1, 1, "block `{{#each}}`".to_owned())));
        assert_eq!(unclosed_tag("{{#if a}}{{/if}}"), None);
        assert_eq!(
            unclosed_tag("x {{!-- open"),
            Some((1, 3, "comment `{{!--`".to_owned()))
        );
    }
}
