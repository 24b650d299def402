//! How the token service refuses: [`ServiceError`], with its RFC 6749 §5.2 code, status and
//! description, and the JSON answer every refusal (and token) is sent as.

use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use serde_json::json;

use super::store::StoreError;
use crate::{full_body, Body};

/// Why a request to the service was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceError {
    /// 400 `invalid_request`.
    InvalidRequest(&'static str),
    /// 401 `invalid_client`; `basic` when the client tried HTTP Basic (it gets a challenge).
    InvalidClient {
        /// Whether the client authenticated with HTTP Basic.
        basic: bool,
    },
    /// 400 `invalid_grant`.
    InvalidGrant(&'static str),
    /// 400 `invalid_scope`.
    InvalidScope,
    /// 400 `unsupported_grant_type`.
    UnsupportedGrantType,
    /// 401 `invalid_credentials`: wrong username or password (one answer for both).
    InvalidCredentials,
    /// 429 `too_many_attempts`, with the seconds to wait.
    TooManyAttempts(u64),
    /// 405, with the allowed method.
    MethodNotAllowed(&'static str),
    /// 415, with the expected media type.
    UnsupportedMediaType(&'static str),
    /// 413.
    BodyTooLarge,
    /// 503 `temporarily_unavailable`: the store failed (logged, never shown).
    Unavailable(String),
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        ServiceError::Unavailable(error.0)
    }
}

impl ServiceError {
    /// The RFC 6749 error code (the `result` label too).
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::InvalidRequest(_)
            | ServiceError::MethodNotAllowed(_)
            | ServiceError::UnsupportedMediaType(_)
            | ServiceError::BodyTooLarge => "invalid_request",
            ServiceError::InvalidClient { .. } => "invalid_client",
            ServiceError::InvalidGrant(_) => "invalid_grant",
            ServiceError::InvalidScope => "invalid_scope",
            ServiceError::UnsupportedGrantType => "unsupported_grant_type",
            ServiceError::InvalidCredentials => "invalid_credentials",
            ServiceError::TooManyAttempts(_) => "too_many_attempts",
            ServiceError::Unavailable(_) => "temporarily_unavailable",
        }
    }

    pub(super) fn status(&self) -> StatusCode {
        match self {
            ServiceError::InvalidClient { .. } | ServiceError::InvalidCredentials => {
                StatusCode::UNAUTHORIZED
            }
            ServiceError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            ServiceError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ServiceError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ServiceError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub(super) fn description(&self) -> String {
        match self {
            ServiceError::InvalidRequest(why) | ServiceError::InvalidGrant(why) => why.to_string(),
            ServiceError::InvalidClient { .. } => "the client id or secret is not valid".into(),
            ServiceError::InvalidScope => "the requested scope exceeds what was granted".into(),
            ServiceError::UnsupportedGrantType => {
                "grant_type must be client_credentials or refresh_token".into()
            }
            ServiceError::InvalidCredentials => "the username or password is not correct".into(),
            ServiceError::TooManyAttempts(_) => {
                "too many failed logins; wait for Retry-After seconds".into()
            }
            ServiceError::MethodNotAllowed(allowed) => format!("use {allowed}"),
            ServiceError::UnsupportedMediaType(expected) => format!("send {expected}"),
            ServiceError::BodyTooLarge => "the request body is too large".into(),
            ServiceError::Unavailable(_) => "the token service cannot answer now; retry".into(),
        }
    }

    /// The response: status, the gateway's JSON body shape, and the headers the error needs.
    pub fn into_response(self, request_id: &str) -> Response<Body> {
        if let ServiceError::Unavailable(detail) = &self {
            tracing::error!(request_id, error = %detail, "token service failed");
        }
        let body = json!({
            "error": self.code(),
            "error_description": self.description(),
            "request_id": request_id,
        });
        let mut response = json_response(self.status(), &body);
        let headers = response.headers_mut();
        match &self {
            ServiceError::InvalidClient { basic: true } => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"authgate\""),
                );
            }
            ServiceError::TooManyAttempts(seconds) => {
                headers.insert(RETRY_AFTER, HeaderValue::from(*seconds));
            }
            ServiceError::MethodNotAllowed(allowed) => {
                headers.insert(ALLOW, HeaderValue::from_static(allowed));
            }
            _ => {}
        }
        response
    }
}

pub(super) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full_body(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
