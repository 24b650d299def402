//! Why a request was not authenticated or not authorized ([`AuthError`]), with what the caller
//! is told: the `reason` label, the RFC 6750 error code and the `WWW-Authenticate` challenge.
//! Defined here, where the refusals arise; `crate::error` maps them to responses with every
//! other error of the gateway.

use super::jwt::JwtError;

/// Why a request was not authenticated or not authorized.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// No credential was sent; says which kinds the route takes.
    #[error("{}", missing_description(.0))]
    Missing(Accepted),
    /// An API key sent as `Authorization: Bearer`, where it is never looked for.
    #[error("an API key was sent as a bearer token: send it in the `{0}` header")]
    KeyAsBearer(http::HeaderName),
    /// More than one credential was sent.
    #[error("the request carries more than one credential")]
    Ambiguous,
    /// The credential is not well formed.
    #[error("the Authorization header is malformed")]
    MalformedCredential,
    /// An Authorization scheme other than Bearer.
    #[error("the Authorization scheme must be Bearer")]
    UnsupportedScheme,
    /// The token was refused.
    #[error("{0}")]
    Token(JwtError),
    /// A good token, from an issuer this route does not accept.
    #[error("tokens from this issuer are not accepted on this route")]
    IssuerNotAccepted,
    /// A good credential without every scope the route needs.
    #[error("the credential lacks a scope this route needs")]
    InsufficientScope {
        /// The scopes the route needs, space-separated.
        needed: String,
    },
    /// The gateway cannot decide: the issuer's keys are not available.
    #[error("the keys to verify this credential are not available yet; retry shortly")]
    KeysUnavailable {
        /// The issuer id, for logs.
        issuer: String,
    },
    /// A credential of a kind the route does not accept.
    #[error("this route does not accept this kind of credential")]
    MethodNotAccepted,
    /// The API key was refused.
    #[error("{}", api_key_description(*.0))]
    ApiKey(super::api_keys::KeyRefusal),
    /// A good credential without a role or claim the route needs.
    #[error("{0}")]
    Forbidden(&'static str),
    /// A token the token service revoked (logout, revocation, refresh-token reuse).
    #[error("the token has been revoked")]
    Revoked,
    /// An identity value that cannot be passed on as a header (CR, LF, NUL…).
    #[error("the credential holds a value that cannot be passed on safely")]
    UnsafeIdentity,
    /// A session cookie that names no live session: forged, made with another gateway key,
    /// logged out, or expired.
    #[error("the session has ended: sign in again")]
    SessionEnded,
    /// The gateway cannot decide: the session store (or the provider's metadata) cannot be
    /// reached.
    #[error("sessions cannot be checked now; retry shortly")]
    SessionsUnavailable,
}

/// The credential kinds a route takes, for telling a caller who sent none what to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// A signed-in browser's session.
    pub session: bool,
    /// Bearer tokens.
    pub jwt: bool,
    /// API keys, in this header.
    pub api_key: Option<http::HeaderName>,
}

fn missing_description(accepted: &Accepted) -> String {
    let mut ways = Vec::new();
    if accepted.session {
        ways.push("a signed-in session (open the page in a browser to sign in)".to_string());
    }
    if accepted.jwt {
        ways.push("`Authorization: Bearer <token>`".to_string());
    }
    if let Some(header) = &accepted.api_key {
        ways.push(format!("`{header}: <key>`"));
    }
    format!("this route needs a credential: send {}", ways.join(" or "))
}

/// What a caller is told about a refused API key. Unknown and disabled keys read the same, so
/// the answer does not confirm that a revoked key ever existed.
fn api_key_description(refusal: super::api_keys::KeyRefusal) -> &'static str {
    use super::api_keys::KeyRefusal;
    match refusal {
        KeyRefusal::Malformed => "the API key is malformed (wrong format or checksum)",
        KeyRefusal::Expired => "the API key has expired",
        KeyRefusal::Unknown | KeyRefusal::Disabled => "the API key is not valid",
    }
}

impl AuthError {
    /// The `reason` label: a small closed set.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing(_) => "missing",
            AuthError::KeyAsBearer(_) => "malformed",
            AuthError::Ambiguous => "ambiguous",
            AuthError::MalformedCredential | AuthError::UnsupportedScheme => "malformed",
            AuthError::Token(error) => error.reason(),
            AuthError::IssuerNotAccepted => "wrong_issuer",
            AuthError::InsufficientScope { .. } => "insufficient_scope",
            AuthError::KeysUnavailable { .. } => "keys_unavailable",
            AuthError::UnsafeIdentity => "unsafe_identity",
            AuthError::Revoked => "revoked",
            AuthError::MethodNotAccepted => "method_not_accepted",
            AuthError::ApiKey(refusal) => match refusal {
                super::api_keys::KeyRefusal::Malformed => "malformed",
                super::api_keys::KeyRefusal::Unknown => "unknown_key",
                super::api_keys::KeyRefusal::Expired => "expired",
                super::api_keys::KeyRefusal::Disabled => "revoked",
            },
            AuthError::Forbidden(_) => "insufficient_scope",
            AuthError::SessionEnded => "session_ended",
            AuthError::SessionsUnavailable => "sessions_unavailable",
        }
    }

    /// The RFC 6750 error code, when there is one.
    pub(crate) fn bearer_error(&self) -> Option<&'static str> {
        match self {
            AuthError::Missing(_)
            | AuthError::KeysUnavailable { .. }
            | AuthError::SessionsUnavailable => None,
            AuthError::Ambiguous
            | AuthError::KeyAsBearer(_)
            | AuthError::MalformedCredential
            | AuthError::UnsupportedScheme
            | AuthError::MethodNotAccepted => Some("invalid_request"),
            AuthError::Token(_)
            | AuthError::IssuerNotAccepted
            | AuthError::UnsafeIdentity
            | AuthError::Revoked
            | AuthError::SessionEnded
            | AuthError::ApiKey(_) => Some("invalid_token"),
            AuthError::InsufficientScope { .. } | AuthError::Forbidden(_) => {
                Some("insufficient_scope")
            }
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3): no `error` when no credential was sent.
    pub(crate) fn challenge(&self) -> Option<String> {
        if matches!(
            self,
            AuthError::KeysUnavailable { .. } | AuthError::SessionsUnavailable
        ) {
            return None;
        }
        let mut challenge = String::from("Bearer realm=\"authgate\"");
        if let Some(code) = self.bearer_error() {
            // Descriptions are fixed texts without quotes or backslashes.
            let description = self.to_string().replace(['"', '\\'], "'");
            challenge.push_str(&format!(
                ", error=\"{code}\", error_description=\"{description}\""
            ));
        }
        if let AuthError::InsufficientScope { needed } = self {
            challenge.push_str(&format!(", scope=\"{needed}\""));
        }
        Some(challenge)
    }
}
