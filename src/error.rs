//! The gateway's own errors, and the one function that turns any of them into a response.
//!
//! Every error says whose fault it is ([`Fault`]): the client's (4xx), the upstream's (502/504)
//! or the gateway's own. Handlers return these; only [`GatewayError::into_response`] decides
//! status, headers and body, so every refusal has the contract's shape:
//! `{"error": "...", "error_description": "...", "request_id": "..."}`.

use http::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION, RETRY_AFTER, SET_COOKIE, WWW_AUTHENTICATE,
};
use http::{Response, StatusCode};

pub use crate::auth::error::{Accepted, AuthError};
use crate::sign_in::error::{CallbackFailure, SignInError};
use crate::{full_body, Body};

/// The client's request body failed while it streamed to the upstream: a malformed chunked
/// coding (bad size, overflow, bare LF) or a connection lost mid-body. Wrapped around the
/// body's own error so that the upstream exchange it breaks is not blamed on the upstream.
#[derive(Debug, thiserror::Error)]
#[error("the request body is malformed or was cut off")]
pub struct ClientBodyError(#[source] pub hyper::Error);

/// Who caused a failure; decides 4xx against 5xx and which log level it deserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request was wrong.
    Client,
    /// The upstream failed or was too slow.
    Upstream,
    /// The gateway itself could not do its part.
    Gateway,
}

/// Everything the gateway itself refuses or fails at.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No route serves this host, path and method.
    #[error("no route serves this request")]
    NoRoute,
    /// The request head is unusable (no host, malformed path).
    #[error("{0}")]
    BadRequest(&'static str),
    /// The request body is larger than `max_body`.
    #[error("the request body is larger than the gateway accepts")]
    BodyTooLarge,
    /// The request uses a feature of HTTP the gateway does not forward (a transfer coding
    /// other than chunked).
    #[error("{0}")]
    NotImplemented(&'static str),
    /// No connection to any target could be opened.
    #[error("the upstream could not be reached")]
    UpstreamUnreachable,
    /// The upstream closed or broke the exchange.
    #[error("the upstream failed to answer")]
    UpstreamFailed,
    /// The upstream did not answer within its `timeout`.
    #[error("the upstream did not answer in time")]
    UpstreamTimeout,
    /// Every connection the upstream may have is busy and `max_pending` requests already wait.
    #[error("the upstream has too many requests in flight; retry shortly")]
    UpstreamOverloaded,
    /// Authentication or authorization failed.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// A peer outside `[forward_auth] trusted` asked for a forward-auth decision.
    #[error("this address may not ask for forward-auth decisions")]
    UntrustedPeer,
    /// A rate limit or quota of the caller's plan or of the route is used up.
    #[error("{}", limit_description(.0))]
    Limited(crate::limits::Refusal),
    /// The shared limits cannot be decided (Redis is down) and `on_failure = "closed"`.
    #[error("the limits cannot be checked now; retry shortly")]
    LimitsUnavailable,
    /// Browser sign-in: a navigation sent to the provider, or a callback, logout or start
    /// that did not go through.
    #[error("{0}")]
    SignIn(crate::sign_in::error::SignInError),
}

fn limit_description(refusal: &crate::limits::Refusal) -> String {
    match refusal.exceeded {
        crate::limits::Exceeded::Rate => format!(
            "the rate limit `{}` is used up; retry in {} s",
            refusal.policy, refusal.retry_after
        ),
        crate::limits::Exceeded::Quota => format!(
            "the quota `{}` is used up until its window ends in {} s",
            refusal.policy, refusal.retry_after
        ),
    }
}

impl GatewayError {
    /// Whose fault this is.
    pub fn fault(&self) -> Fault {
        match self {
            GatewayError::NoRoute
            | GatewayError::BadRequest(_)
            | GatewayError::BodyTooLarge
            | GatewayError::NotImplemented(_)
            | GatewayError::UntrustedPeer => Fault::Client,
            GatewayError::UpstreamUnreachable
            | GatewayError::UpstreamFailed
            | GatewayError::UpstreamTimeout
            | GatewayError::UpstreamOverloaded => Fault::Upstream,
            GatewayError::Auth(AuthError::KeysUnavailable { .. })
            | GatewayError::Auth(AuthError::SessionsUnavailable)
            | GatewayError::LimitsUnavailable => Fault::Gateway,
            GatewayError::Auth(_) | GatewayError::Limited(_) => Fault::Client,
            GatewayError::SignIn(error) => match error {
                SignInError::ProviderNotReady | SignInError::StoreUnavailable => Fault::Gateway,
                SignInError::ProviderUnreachable => Fault::Upstream,
                _ => Fault::Client,
            },
        }
    }

    /// The HTTP status the contract gives this error.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            GatewayError::UpstreamUnreachable | GatewayError::UpstreamFailed => {
                StatusCode::BAD_GATEWAY
            }
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::UpstreamOverloaded => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Auth(AuthError::InsufficientScope { .. } | AuthError::Forbidden(_))
            | GatewayError::UntrustedPeer => StatusCode::FORBIDDEN,
            GatewayError::Auth(
                AuthError::KeysUnavailable { .. } | AuthError::SessionsUnavailable,
            ) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Auth(_) => StatusCode::UNAUTHORIZED,
            GatewayError::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::LimitsUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::SignIn(error) => match error {
                SignInError::Required(_) => StatusCode::FOUND,
                SignInError::ProviderNotReady | SignInError::StoreUnavailable => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                SignInError::ProviderUnreachable => StatusCode::BAD_GATEWAY,
                SignInError::Callback(_)
                | SignInError::BadReturnTo
                | SignInError::BadLogoutToken(_) => StatusCode::BAD_REQUEST,
            },
        }
    }

    /// The short machine-readable code in the body's `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::NoRoute => "not_found",
            GatewayError::BadRequest(_) => "invalid_request",
            GatewayError::BodyTooLarge => "request_too_large",
            GatewayError::NotImplemented(_) => "not_implemented",
            GatewayError::UntrustedPeer => "forbidden",
            GatewayError::UpstreamUnreachable | GatewayError::UpstreamFailed => "bad_gateway",
            GatewayError::UpstreamTimeout => "gateway_timeout",
            GatewayError::UpstreamOverloaded => "upstream_overloaded",
            GatewayError::Auth(AuthError::Missing(_)) => "unauthorized",
            GatewayError::Auth(
                AuthError::KeysUnavailable { .. } | AuthError::SessionsUnavailable,
            ) => "temporarily_unavailable",
            GatewayError::Auth(error) => error.bearer_error().unwrap_or("unauthorized"),
            GatewayError::Limited(refusal) => match refusal.exceeded {
                crate::limits::Exceeded::Rate => "rate_limited",
                crate::limits::Exceeded::Quota => "quota_exceeded",
            },
            GatewayError::LimitsUnavailable => "temporarily_unavailable",
            GatewayError::SignIn(error) => match error {
                SignInError::Required(_) => "sign_in_required",
                SignInError::Callback(CallbackFailure::ProviderRefused) => "access_denied",
                SignInError::Callback(_) | SignInError::BadReturnTo => "invalid_request",
                // Back-Channel Logout 1.0 §2.8: a refused logout token is `invalid_request`.
                SignInError::BadLogoutToken(_) => "invalid_request",
                SignInError::ProviderNotReady | SignInError::StoreUnavailable => {
                    "temporarily_unavailable"
                }
                SignInError::ProviderUnreachable => "bad_gateway",
            },
        }
    }

    /// The response for this error. `request_id` is echoed so a caller can quote it.
    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let body = serde_json::json!({
            "error": self.code(),
            "error_description": self.to_string(),
            "request_id": request_id,
        });
        let mut response = Response::new(full_body(body.to_string()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let GatewayError::Auth(error) = &self {
            if let Some(challenge) = error
                .challenge()
                .and_then(|c| HeaderValue::from_str(&c).ok())
            {
                headers.insert(WWW_AUTHENTICATE, challenge);
            }
            if matches!(
                error,
                AuthError::KeysUnavailable { .. } | AuthError::SessionsUnavailable
            ) {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
            }
        }
        if let GatewayError::LimitsUnavailable | GatewayError::UpstreamOverloaded = self {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let GatewayError::SignIn(error) = &self {
            // Nothing about a sign-in may be cached: not a redirect, not a refusal.
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            match error {
                SignInError::Required(redirect) => {
                    headers.insert(LOCATION, redirect.location.clone());
                    for cookie in &redirect.cookies {
                        headers.append(SET_COOKIE, cookie.clone());
                    }
                }
                SignInError::ProviderNotReady | SignInError::StoreUnavailable => {
                    headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
                }
                _ => {}
            }
        }
        if let GatewayError::Limited(refusal) = self {
            headers.insert(RETRY_AFTER, HeaderValue::from(refusal.retry_after));
            headers.insert(
                crate::limits::headers::RATELIMIT_POLICY.clone(),
                refusal.policy_header,
            );
            headers.insert(crate::limits::headers::RATELIMIT.clone(), refusal.header);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn responses_have_the_contract_shape() {
        let response = GatewayError::UpstreamTimeout.into_response("req-1");
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["error"], "gateway_timeout");
        assert_eq!(json["request_id"], "req-1");
        assert!(json["error_description"]
            .as_str()
            .unwrap()
            .contains("in time"));
    }

    #[test]
    fn client_faults_are_4xx_and_upstream_faults_5xx() {
        for error in [
            GatewayError::NoRoute,
            GatewayError::BodyTooLarge,
            GatewayError::BadRequest("x"),
        ] {
            assert_eq!(error.fault(), Fault::Client);
            assert!(error.status().is_client_error());
        }
        // 501 is a 5xx by number, but what it refuses is the client's request.
        assert_eq!(GatewayError::NotImplemented("x").fault(), Fault::Client);
        assert_eq!(
            GatewayError::NotImplemented("x").status(),
            StatusCode::NOT_IMPLEMENTED
        );
        for error in [
            GatewayError::UpstreamUnreachable,
            GatewayError::UpstreamFailed,
            GatewayError::UpstreamTimeout,
        ] {
            assert_eq!(error.fault(), Fault::Upstream);
            assert!(error.status().is_server_error());
        }
    }
}
