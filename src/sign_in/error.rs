//! Why a sign-in, callback or logout did not go through ([`SignInError`]), with the `reason`
//! label each failure is counted under. Defined here, where they arise; `crate::error` turns
//! them into responses with every other error of the gateway.

use http::HeaderValue;

/// A response that sends the browser elsewhere: to the provider to sign in, or back to the
/// page it came from.
#[derive(Debug, Clone)]
pub struct Redirect {
    /// `Location`.
    pub location: HeaderValue,
    /// `Set-Cookie` headers to send with it.
    pub cookies: Vec<HeaderValue>,
}

/// A sign-in step that did not go through.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SignInError {
    /// A navigation without a live session: the browser is sent to the provider. Not a
    /// failure, but it leaves the request path the way refusals do.
    #[error("sign in first")]
    Required(Box<Redirect>),
    /// The callback was refused; the browser should start again.
    #[error("{}", .0.description())]
    Callback(CallbackFailure),
    /// The provider's metadata (discovery document, keys) has not been fetched yet.
    #[error("the identity provider is not available yet; retry shortly")]
    ProviderNotReady,
    /// The provider's token endpoint could not be reached or answered nonsense.
    #[error("the identity provider could not be reached")]
    ProviderUnreachable,
    /// The session store cannot be reached.
    #[error("sessions cannot be stored now; retry shortly")]
    StoreUnavailable,
    /// A `return_to` that is not a path on this host (no open redirects).
    #[error("`return_to` must be a path on this host")]
    BadReturnTo,
    /// A back-channel logout request with a missing or invalid `logout_token`.
    #[error("the logout token is not valid: {0}")]
    BadLogoutToken(&'static str),
}

/// Why a callback was refused. Each is one `reason` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackFailure {
    /// No `state` parameter.
    MissingState,
    /// A `state` this gateway did not issue, or one already used (a replayed callback), or
    /// one that expired.
    UnknownState,
    /// The sign-in was started by another browser (its binding cookie is not this one's).
    OtherBrowser,
    /// The provider answered with an `error` (the user declined, say).
    ProviderRefused,
    /// No `code` parameter.
    MissingCode,
    /// The provider refused to exchange the code.
    CodeRefused,
    /// The provider sent no ID token.
    MissingIdToken,
    /// The ID token's `nonce` is not the one this sign-in sent.
    WrongNonce,
    /// The ID token failed verification: the verifier's reason.
    IdToken(&'static str),
}

impl CallbackFailure {
    /// The `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            CallbackFailure::MissingState => "missing_state",
            CallbackFailure::UnknownState => "unknown_state",
            CallbackFailure::OtherBrowser => "other_browser",
            CallbackFailure::ProviderRefused => "provider_refused",
            CallbackFailure::MissingCode => "missing_code",
            CallbackFailure::CodeRefused => "code_refused",
            CallbackFailure::MissingIdToken => "missing_id_token",
            CallbackFailure::WrongNonce => "wrong_nonce",
            CallbackFailure::IdToken(reason) => reason,
        }
    }

    fn description(&self) -> &'static str {
        match self {
            CallbackFailure::MissingState => "the sign-in callback carries no state",
            CallbackFailure::UnknownState => {
                "this sign-in is unknown, expired or already finished: start again"
            }
            CallbackFailure::OtherBrowser => "this sign-in was started in another browser",
            CallbackFailure::ProviderRefused => "the identity provider did not sign you in",
            CallbackFailure::MissingCode => "the sign-in callback carries no code",
            CallbackFailure::CodeRefused => "the identity provider refused the sign-in code",
            CallbackFailure::MissingIdToken => "the identity provider sent no ID token",
            CallbackFailure::WrongNonce => "the ID token does not belong to this sign-in",
            CallbackFailure::IdToken(_) => "the ID token is not valid",
        }
    }
}

impl SignInError {
    /// The `reason` label of a failed callback (or of any other failure on the way to one).
    pub fn reason(&self) -> &'static str {
        match self {
            SignInError::Required(_) => "sign_in_required",
            SignInError::Callback(failure) => failure.reason(),
            SignInError::ProviderNotReady => "provider_not_ready",
            SignInError::ProviderUnreachable => "provider_unreachable",
            SignInError::StoreUnavailable => "store_unavailable",
            SignInError::BadReturnTo => "bad_return_to",
            SignInError::BadLogoutToken(_) => "bad_logout_token",
        }
    }
}
