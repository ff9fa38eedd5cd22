//! Credentials for an MLflow tracking server, read the way MLflow's Python client reads them.
//!
//! Owns [`Auth`]: a bearer token (`MLFLOW_TRACKING_TOKEN`) or HTTP Basic credentials
//! (`MLFLOW_TRACKING_USERNAME` + `MLFLOW_TRACKING_PASSWORD`). The secret part is held in a
//! [`SecretString`], is put only into the `Authorization` header (marked sensitive, so
//! reqwest never prints it), is registered with the scrubber ([`crate::secret::register`]),
//! and `Debug` shows `***` in its place. Does not own the transport
//! that sends it (`http.rs`).

use reqwest::RequestBuilder;
use secrecy::{ExposeSecret, SecretString};

/// The bearer token variable.
const TOKEN_VAR: &str = "MLFLOW_TRACKING_TOKEN";
/// The Basic auth user variable.
const USERNAME_VAR: &str = "MLFLOW_TRACKING_USERNAME";
/// The Basic auth password variable.
const PASSWORD_VAR: &str = "MLFLOW_TRACKING_PASSWORD";

/// How requests to an MLflow server authenticate.
///
/// # Examples
///
/// ```
/// use chainlog::store::Auth;
///
/// let auth = Auth::bearer("s3cr3t-token");
/// assert_eq!(format!("{auth:?}"), "Auth::Bearer(***)");
/// ```
#[derive(Clone)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer(SecretString),
    /// `Authorization: Basic base64(<username>:<password>)`.
    Basic {
        /// Not a secret: shown in `Debug`.
        username: String,
        /// The password.
        password: SecretString,
    },
}

impl Auth {
    /// A bearer token.
    pub fn bearer(token: impl Into<String>) -> Self {
        let token = token.into();
        crate::secret::register(&token);
        Self::Bearer(SecretString::from(token))
    }

    /// HTTP Basic credentials.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        let (username, password) = (username.into(), password.into());
        crate::secret::register(&password);
        // What goes on the wire, `base64(user:password)`, is a secret too: a server that
        // echoes the header back must not put the password in a message in another spelling.
        crate::secret::register(&base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{username}:{password}"),
        ));
        Self::Basic {
            username,
            password: SecretString::from(password),
        }
    }

    /// Credentials from the environment, or `None` when none are set.
    ///
    /// MLflow's own precedence: `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`
    /// (both non-empty) give Basic auth; otherwise a non-empty `MLFLOW_TRACKING_TOKEN` gives a
    /// bearer token.
    pub fn from_env() -> Option<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Auth::from_env`], reading variables through `lookup` (for tests and callers
    /// that keep their own environment).
    ///
    /// # Examples
    ///
    /// ```
    /// use chainlog::store::Auth;
    ///
    /// let auth = Auth::from_lookup(|name| (name == "MLFLOW_TRACKING_TOKEN").then(|| "t".to_owned()));
    /// assert!(matches!(auth, Some(Auth::Bearer(_))));
    /// assert!(Auth::from_lookup(|_| None).is_none());
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let var = |name: &str| lookup(name).filter(|value| !value.is_empty());
        if let (Some(username), Some(password)) = (var(USERNAME_VAR), var(PASSWORD_VAR)) {
            return Some(Self::basic(username, password));
        }
        var(TOKEN_VAR).map(Self::bearer)
    }

    /// The `Authorization` header's value, for clients that take headers as text (the OTLP
    /// trace exporter).
    pub(crate) fn header_value(&self) -> String {
        use base64::Engine as _;
        match self {
            Self::Bearer(token) => format!("Bearer {}", token.expose_secret()),
            Self::Basic { username, password } => {
                let pair = format!("{username}:{}", password.expose_secret());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
        }
    }

    /// Adds the `Authorization` header (reqwest marks it sensitive).
    pub(crate) fn apply(&self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Self::Bearer(token) => request.bearer_auth(token.expose_secret()),
            Self::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose_secret()))
            }
        }
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bearer(_) => f.write_str("Auth::Bearer(***)"),
            Self::Basic { username, .. } => f
                .debug_struct("Auth::Basic")
                .field("username", username)
                .field("password", &"***")
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "canary-7f3a9c";

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn basic_credentials_win_over_token_like_mlflow() {
        let auth = Auth::from_lookup(lookup(&[
            (TOKEN_VAR, "tok"),
            (USERNAME_VAR, "ada"),
            (PASSWORD_VAR, CANARY),
        ]));
        assert!(matches!(auth, Some(Auth::Basic { ref username, .. }) if username == "ada"));
    }

    #[test]
    fn username_without_password_falls_back_to_token() {
        let auth = Auth::from_lookup(lookup(&[(TOKEN_VAR, CANARY), (USERNAME_VAR, "ada")]));
        assert!(matches!(auth, Some(Auth::Bearer(_))));
    }

    #[test]
    fn empty_variables_are_unset() {
        let auth = Auth::from_lookup(lookup(&[
            (TOKEN_VAR, ""),
            (USERNAME_VAR, ""),
            (PASSWORD_VAR, ""),
        ]));
        assert!(auth.is_none());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let bearer = format!("{:?}", Auth::bearer(CANARY));
        let basic = format!("{:?}", Auth::basic("ada", CANARY));
        assert!(!bearer.contains(CANARY), "{bearer}");
        assert!(!basic.contains(CANARY), "{basic}");
        assert!(basic.contains("ada"), "{basic}");
    }
}
