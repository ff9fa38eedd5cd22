//! Chat roles and rendered output: [`Role`], [`RenderedMessage`], [`Rendered`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// Who speaks a chat message. Serialised lowercase, as OpenAI and MLflow write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions from the application.
    System,
    /// Instructions from the developer (OpenAI's newer name for `system` on reasoning models).
    Developer,
    /// The end user's turn.
    User,
    /// The model's turn (few-shot examples, earlier answers).
    Assistant,
}

impl Role {
    /// Every role, in the order above.
    pub const ALL: [Role; 4] = [Role::System, Role::Developer, Role::User, Role::Assistant];

    /// The lowercase wire name: `system`, `developer`, `user`, `assistant`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    /// The role with this lowercase wire name, if there is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use chainlog::prompt::Role;
    /// assert_eq!(Role::parse("system"), Some(Role::System));
    /// assert_eq!(Role::parse("System"), None);
    /// ```
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rendered chat message; serialises as `{"role": …, "content": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedMessage {
    /// Who speaks.
    pub role: Role,
    /// The rendered text.
    pub content: String,
}

/// The output of [`PromptTemplate::render`](super::PromptTemplate::render): the same shape as the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendered {
    /// A text prompt's output.
    Text(String),
    /// A chat prompt's messages, in file order.
    Chat(Vec<RenderedMessage>),
}

impl Rendered {
    /// The messages to send to a chat model; a text prompt becomes one user message.
    ///
    /// # Examples
    ///
    /// ```
    /// use chainlog::prompt::{Rendered, Role};
    /// let messages = Rendered::Text("hello".into()).into_messages();
    /// assert_eq!(messages[0].role, Role::User);
    /// assert_eq!(messages[0].content, "hello");
    /// ```
    pub fn into_messages(self) -> Vec<RenderedMessage> {
        match self {
            Rendered::Text(content) => vec![RenderedMessage {
                role: Role::User,
                content,
            }],
            Rendered::Chat(messages) => messages,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn role_serialises_lowercase_and_round_trips() {
        for role in Role::ALL {
            assert_eq!(serde_json::to_value(role).unwrap(), json!(role.as_str()));
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        let m: RenderedMessage =
            serde_json::from_value(json!({"role": "developer", "content": "x"})).unwrap();
        assert_eq!(m.role, Role::Developer);
    }

    #[test]
    fn a_text_output_becomes_one_user_message() {
        let messages = Rendered::Text("hi".into()).into_messages();
        assert_eq!(
            messages,
            [RenderedMessage {
                role: Role::User,
                content: "hi".into()
            }]
        );
    }
}
