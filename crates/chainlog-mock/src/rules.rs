//! Rules files: match a request on its endpoint, model, message content, role and tools, and
//! answer with a reply or a sequence of replies.
//!
//! Owns the YAML format, its loading (errors name the file, the line and what is wrong) and
//! matching. It does not write replies (see `chat`, `responses`).
//!
//! ```yaml
//! latency: { fixed_ms: 20 }            # default for every rule (optional)
//! rules:
//!   - name: weather                    # shown in the journal as rule:weather#<step>
//!     match:
//!       endpoint: chat                 # chat | responses | embeddings (any when absent)
//!       model: gpt-4o-mini             # exact model name
//!       content: weather               # substring of a message's text...
//!       content_regex: "(?i)forecast"  # ...or a regex (both must hold when both are given)
//!       role: user                     # only messages with this role are searched
//!       last: true                     # only the last message is searched
//!       tools: true                    # tools offered (true) or not (false)
//!     reply:
//!       tool_calls: [{ name: get_weather, arguments: { city: Paris } }]
//!   - name: flaky
//!     match: { content: retry me }
//!     sequence:                        # one step per matching request; the last one repeats
//!       - fault: { kind: rate_limit, retry_after_secs: 1 }
//!       - text: "ok after a retry"
//! ```
//!
//! Rules are tried in file order; the first that matches answers.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
};

use regex::Regex;
use serde::Deserialize;

use super::{
    fault::Latency,
    profile::Profile,
    reply::{Decision, Step},
};

/// A rules file that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The file could not be read.
    #[error("failed to read rules file `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid rules file.
    #[error("invalid rules file `{path}` at line {line}, column {column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the fault.
        line: usize,
        /// 1-based column of the fault.
        column: usize,
        /// What is wrong.
        message: String,
    },
}

/// Which endpoint a request came to, for matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/responses`.
    Responses,
    /// `POST /v1/embeddings`.
    Embeddings,
}

/// What rules see of a request.
#[derive(Debug)]
pub struct RequestView<'a> {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The model named by the request.
    pub model: &'a str,
    /// `(role, text)` of each message, in order.
    pub messages: Vec<(&'a str, String)>,
    /// Whether the request offers tools.
    pub tools_offered: bool,
}

/// A compiled regex that deserializes from its pattern (so a bad pattern is reported at its
/// line in the rules file).
#[derive(Debug, Clone)]
struct Pattern(Regex);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Regex::new(&text)
            .map(Pattern)
            .map_err(|err| serde::de::Error::custom(format!("invalid regex `{text}`: {err}")))
    }
}

/// The conditions of a rule; all given ones must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Matcher {
    endpoint: Option<Endpoint>,
    model: Option<String>,
    content: Option<String>,
    content_regex: Option<Pattern>,
    role: Option<String>,
    #[serde(default)]
    last: bool,
    tools: Option<bool>,
}

impl Matcher {
    fn matches(&self, request: &RequestView<'_>) -> bool {
        if self.endpoint.is_some_and(|e| e != request.endpoint)
            || self.model.as_deref().is_some_and(|m| m != request.model)
            || self.tools.is_some_and(|t| t != request.tools_offered)
        {
            return false;
        }
        let searched = if self.last {
            request.messages.last().into_iter().collect::<Vec<_>>()
        } else {
            request.messages.iter().collect()
        };
        let mut searched = searched
            .into_iter()
            .filter(|(role, _)| self.role.as_deref().is_none_or(|r| r == *role))
            .peekable();
        if self.content.is_none() && self.content_regex.is_none() {
            // A role (or `last`) alone asks only that such a message exists.
            return self.role.is_none() && !self.last || searched.peek().is_some();
        }
        searched.any(|(_, text)| {
            self.content.as_deref().is_none_or(|c| text.contains(c))
                && self
                    .content_regex
                    .as_ref()
                    .is_none_or(|Pattern(re)| re.is_match(text))
        })
    }
}

/// One rule: conditions and the reply (or sequence of replies) they lead to.
#[derive(Debug, Deserialize)]
#[serde(try_from = "RawRule")]
struct Rule {
    name: String,
    matcher: Matcher,
    steps: Vec<Step>,
    /// How many requests this rule has answered: picks the step of a sequence.
    hits: AtomicUsize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    #[serde(rename = "match", default)]
    matcher: Matcher,
    reply: Option<Step>,
    sequence: Option<Vec<Step>>,
}

impl TryFrom<RawRule> for Rule {
    type Error = String;

    fn try_from(raw: RawRule) -> Result<Self, Self::Error> {
        let steps = match (raw.reply, raw.sequence) {
            (Some(step), None) => vec![step],
            (None, Some(steps)) if !steps.is_empty() => steps,
            (None, Some(_)) => return Err("`sequence` must list at least one reply".to_owned()),
            (None, None) => return Err("a rule needs `reply` or `sequence`".to_owned()),
            (Some(_), Some(_)) => {
                return Err("a rule takes `reply` or `sequence`, not both".to_owned());
            }
        };
        Ok(Rule {
            name: raw.name.unwrap_or_default(),
            matcher: raw.matcher,
            steps,
            hits: AtomicUsize::new(0),
        })
    }
}

/// A loaded rules file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// Default latency of every rule's replies.
    #[serde(default)]
    latency: Option<Latency>,
    /// The server whose quirks to play (`openai`, `llama.cpp`); see [`Profile`].
    #[serde(default, deserialize_with = "profile_name")]
    profile: Option<Profile>,
    rules: Vec<Rule>,
}

/// A profile by name; an unknown name lists the ones that exist.
fn profile_name<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<Profile>, D::Error> {
    let name = String::deserialize(de)?;
    Profile::from_name(&name)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

impl RuleSet {
    /// Loads a rules file.
    ///
    /// # Errors
    ///
    /// [`RulesError`] naming the file, and for bad content the line, column and what is wrong.
    pub fn from_path(path: &Path) -> Result<Self, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }

    /// Parses rules from YAML text; `origin` names it in errors.
    ///
    /// # Errors
    ///
    /// [`RulesError::Parse`] with the line, column and what is wrong.
    ///
    /// # Examples
    ///
    /// ```
    /// use chainlog_mock::RuleSet;
    /// let rules = RuleSet::from_yaml("rules:\n  - match: { content: hi }\n    reply: { text: hello }\n", "inline".as_ref())?;
    /// assert_eq!(rules.len(), 1);
    /// # Ok::<(), chainlog_mock::RulesError>(())
    /// ```
    pub fn from_yaml(text: &str, origin: &Path) -> Result<Self, RulesError> {
        serde_norway::from_str(text).map_err(|err| {
            let (line, column) = err
                .location()
                .map_or((0, 0), |location| (location.line(), location.column()));
            RulesError::Parse {
                path: origin.to_owned(),
                line,
                column,
                message: strip_location(&err.to_string()),
            }
        })
    }

    /// The profile the file asks for (`profile: llama.cpp`), if any.
    pub fn profile(&self) -> Option<Profile> {
        self.profile
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The reply of the first rule that matches, advancing its sequence.
    pub fn decide(&self, request: &RequestView<'_>, default_latency: Latency) -> Option<Decision> {
        let (index, rule) = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.matcher.matches(request))?;
        let hit = rule.hits.fetch_add(1, Ordering::Relaxed);
        let step_index = hit.min(rule.steps.len() - 1);
        let step = &rule.steps[step_index];
        let name = if rule.name.is_empty() {
            format!("#{index}")
        } else {
            rule.name.clone()
        };
        Some(Decision {
            reply: step.reply.clone(),
            latency: step.latency.or(self.latency).unwrap_or(default_latency),
            answered_by: format!("rule:{name}#{step_index}"),
        })
    }
}

/// serde_norway appends " at line L column C" to messages; the error already carries both.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{fault::Fault, reply::Reply};

    fn view<'a>(model: &'a str, messages: &[(&'a str, &str)], tools: bool) -> RequestView<'a> {
        RequestView {
            endpoint: Endpoint::Chat,
            model,
            messages: messages
                .iter()
                .map(|(role, text)| (*role, (*text).to_owned()))
                .collect(),
            tools_offered: tools,
        }
    }

    fn parse(text: &str) -> Result<RuleSet, RulesError> {
        RuleSet::from_yaml(text, Path::new("rules.yaml"))
    }

    #[test]
    fn first_matching_rule_answers() {
        let rules = parse(
            r#"
rules:
  - name: weather
    match: { content: weather, role: user, tools: true }
    reply: { tool_calls: [{ name: get_weather, arguments: { city: Paris } }] }
  - name: regex
    match: { content_regex: "(?i)^HELLO", model: gpt-4o-mini }
    reply: { text: hi there }
"#,
        )
        .unwrap();
        let decision = rules
            .decide(
                &view("m", &[("user", "what is the weather?")], true),
                Latency::default(),
            )
            .unwrap();
        assert_eq!(decision.answered_by, "rule:weather#0");
        assert!(matches!(decision.reply, Reply::ToolCalls(_)));
        assert!(
            rules
                .decide(
                    &view("m", &[("user", "what is the weather?")], false),
                    Latency::default()
                )
                .is_none()
        );
        let decision = rules
            .decide(
                &view("gpt-4o-mini", &[("user", "hello you")], false),
                Latency::default(),
            )
            .unwrap();
        assert_eq!(decision.reply, Reply::Text("hi there".to_owned()));
    }

    #[test]
    fn sequence_advances_and_repeats_its_last_step() {
        let rules = parse(
            r#"
latency: { fixed_ms: 5 }
rules:
  - match: {}
    sequence:
      - fault: { kind: rate_limit, retry_after_secs: 2 }
      - text: ok
"#,
        )
        .unwrap();
        let request = view("m", &[("user", "x")], false);
        let first = rules.decide(&request, Latency::default()).unwrap();
        assert_eq!(
            first.reply,
            Reply::Fault(Fault::RateLimit {
                retry_after_secs: 2
            })
        );
        assert_eq!(first.latency, Latency::fixed(5));
        assert_eq!(first.answered_by, "rule:#0#0");
        for _ in 0..2 {
            let next = rules.decide(&request, Latency::default()).unwrap();
            assert_eq!(next.reply, Reply::Text("ok".to_owned()));
            assert_eq!(next.answered_by, "rule:#0#1");
        }
    }

    #[test]
    fn last_and_role_restrict_the_searched_messages() {
        let rules =
            parse("rules:\n  - match: { role: tool, last: true }\n    reply: { text: done }\n")
                .unwrap();
        assert!(
            rules
                .decide(
                    &view("m", &[("tool", "42"), ("user", "and?")], false),
                    Latency::default()
                )
                .is_none()
        );
        assert!(
            rules
                .decide(
                    &view("m", &[("user", "go"), ("tool", "42")], false),
                    Latency::default()
                )
                .is_some()
        );
    }

    #[test]
    fn errors_name_file_line_and_problem() {
        let err = parse("rules:\n  - match: { contnt: x }\n    reply: { text: y }\n").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("rules.yaml"), "{message}");
        assert!(message.contains("line 2"), "{message}");
        assert!(message.contains("contnt"), "{message}");

        let err = parse("rules:\n  - match: { content_regex: \"(\" }\n    reply: { text: y }\n")
            .unwrap_err();
        assert!(err.to_string().contains("invalid regex"), "{err}");
        assert!(err.to_string().contains("line 2"), "{err}");

        let err = parse("rules:\n  - match: {}\n    reply: { text: y, json: {} }\n").unwrap_err();
        assert!(err.to_string().contains("exactly one"), "{err}");

        let err =
            parse("rules:\n  - match: {}\n    reply: { fault: { kind: boom } }\n").unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
    }
}
