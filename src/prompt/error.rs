//! [`PromptError`]: everything that can go wrong loading, checking or rendering a prompt.

use std::io;
use std::path::PathBuf;

/// A prompt that could not be loaded, checked or rendered.
///
/// Load-time faults ([`Read`](Self::Read), [`Syntax`](Self::Syntax),
/// [`BadChatFile`](Self::BadChatFile), [`NotFound`](Self::NotFound), …) name the file;
/// run-time faults ([`MissingVariables`](Self::MissingVariables), [`Render`](Self::Render))
/// name the prompt.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// A prompt file or folder exists but could not be read (or is not UTF-8).
    #[error("failed to read prompt file `{path}`")]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A template is not valid handlebars, or uses something this module refuses (a partial,
    /// a decorator, an unknown helper).
    #[error("syntax error in prompt `{path}` at line {line}, column {column}: {message}")]
    Syntax {
        /// The file, or for an in-memory prompt its name (`name/NN-role.hbs` for a chat
        /// message).
        path: PathBuf,
        /// 1-based line of the fault (0 when handlebars does not say).
        line: usize,
        /// 1-based column of the fault (0 when handlebars does not say).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The input lacks variables the prompt uses; found before anything is rendered.
    #[error("prompt `{prompt}` needs variables {} that the input does not provide", quoted(.names))]
    MissingVariables {
        /// The prompt's name.
        prompt: String,
        /// Every missing variable, sorted (a dotted path when a nested field is missing).
        names: Vec<String>,
    },
    /// Handlebars failed while rendering (a helper given the wrong kind of value, …).
    #[error("failed to render prompt `{prompt}`: {message}")]
    Render {
        /// The prompt's name.
        prompt: String,
        /// What handlebars reported, with the file, line and column when it knows them.
        message: String,
    },
    /// A chain asked a [`PromptSet`](super::PromptSet) for a name it does not hold.
    #[error("unknown prompt `{name}`; known prompts: {}", quoted(.known))]
    UnknownPrompt {
        /// The name asked for.
        name: String,
        /// The names the set holds, sorted.
        known: Vec<String>,
    },
    /// A chat prompt folder holds something that is not a `NN-<role>.hbs` message file, or
    /// a chat prompt has no message at all.
    #[error("bad chat prompt file `{path}`: {reason}")]
    BadChatFile {
        /// The offending file (or the folder, or the in-memory prompt's name).
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// Neither a file nor a folder exists at the path.
    #[error(
        "prompt `{path}` not found (a text prompt is named with its extension, `name.hbs`; a chat prompt is a folder of NN-<role>.hbs files)"
    )]
    NotFound {
        /// The path looked at.
        path: PathBuf,
    },
    /// A [`PromptSet`](super::PromptSet) entry points outside the prompts folder.
    #[error("prompt path `{path}` must be relative to the prompts folder and stay inside it")]
    BadPath {
        /// The path as written in the entry.
        path: PathBuf,
    },
    /// A prompt name that MLflow's Prompt Registry would refuse (and that could not be a
    /// file name).
    #[error("invalid prompt name `{name}`: use letters, digits, `_`, `.` and `-`, not only dots")]
    InvalidName {
        /// The name given.
        name: String,
    },
}

/// "`a`, `b`" for a list of names; "none" when empty.
fn quoted(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_variables_message_lists_every_name() {
        let err = PromptError::MissingVariables {
            prompt: "summary".into(),
            names: vec!["style".into(), "text".into()],
        };
        assert_eq!(
            err.to_string(),
            "prompt `summary` needs variables `style`, `text` that the input does not provide"
        );
    }

    #[test]
    fn unknown_prompt_message_says_none_when_the_set_is_empty() {
        let err = PromptError::UnknownPrompt {
            name: "x".into(),
            known: vec![],
        };
        assert_eq!(err.to_string(), "unknown prompt `x`; known prompts: none");
    }
}
