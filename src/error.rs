//! The gateway's own errors, and the one function that turns any of them into a response.
//!
//! Every error says whose fault it is ([`Fault`]): the client's (4xx), the upstream's (502/504)
//! or the gateway's own. Handlers return these; only [`GatewayError::into_response`] decides
//! status, headers and body, so every refusal has the contract's shape:
//! `{"error": "...", "error_description": "...", "request_id": "..."}`.

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};

use crate::{full_body, Body};

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
    /// No connection to any target could be opened.
    #[error("the upstream could not be reached")]
    UpstreamUnreachable,
    /// The upstream closed or broke the exchange.
    #[error("the upstream failed to answer")]
    UpstreamFailed,
    /// The upstream did not answer within its `timeout`.
    #[error("the upstream did not answer in time")]
    UpstreamTimeout,
}

impl GatewayError {
    /// Whose fault this is.
    pub fn fault(&self) -> Fault {
        match self {
            GatewayError::NoRoute | GatewayError::BadRequest(_) | GatewayError::BodyTooLarge => {
                Fault::Client
            }
            GatewayError::UpstreamUnreachable
            | GatewayError::UpstreamFailed
            | GatewayError::UpstreamTimeout => Fault::Upstream,
        }
    }

    /// The HTTP status the contract gives this error.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::UpstreamUnreachable | GatewayError::UpstreamFailed => {
                StatusCode::BAD_GATEWAY
            }
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The short machine-readable code in the body's `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::NoRoute => "not_found",
            GatewayError::BadRequest(_) => "invalid_request",
            GatewayError::BodyTooLarge => "request_too_large",
            GatewayError::UpstreamUnreachable | GatewayError::UpstreamFailed => "bad_gateway",
            GatewayError::UpstreamTimeout => "gateway_timeout",
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
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
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
