//! gRPC calls: the gateway's own refusals as gRPC answers, and the caller's `grpc-timeout`.
//!
//! A gRPC client reads the outcome of a call from `grpc-status` and `grpc-message`, not from the
//! HTTP status: an HTTP 401 with a JSON body reaches its user as "UNKNOWN" or "UNAVAILABLE:
//! protocol error". So when a request is a gRPC call (`content-type: application/grpc…`), a
//! refusal the gateway makes itself becomes a *Trailers-Only* response (gRPC over HTTP/2,
//! "Responses"): HTTP 200, `content-type: application/grpc`, `grpc-status` and a
//! percent-encoded `grpc-message`, no body. The refusal's other headers (`WWW-Authenticate`,
//! `Retry-After`, `RateLimit`, `X-Request-Id`) stay, as a client may read them as metadata.
//!
//! What an upstream answers is never rewritten: its statuses and trailers are its own.

use std::time::Duration;

use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, Response, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::{empty_body, Body};

/// `grpc-status`.
pub static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-message`.
pub static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// `grpc-timeout`.
pub static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// gRPC status codes the gateway answers with (grpc/doc/statuscodes.md).
pub mod code {
    /// Something the gateway cannot classify went wrong with the request.
    pub const INTERNAL: u32 = 13;
    /// The deadline passed before the upstream answered.
    pub const DEADLINE_EXCEEDED: u32 = 4;
    /// The caller may not make this call.
    pub const PERMISSION_DENIED: u32 = 7;
    /// A rate limit, quota, budget or size limit is used up.
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    /// No route serves this method.
    pub const UNIMPLEMENTED: u32 = 12;
    /// The upstream (or a dependency of the gateway) cannot take the call now; retrying may help.
    pub const UNAVAILABLE: u32 = 14;
    /// No valid credential came with the call.
    pub const UNAUTHENTICATED: u32 = 16;
}

/// Characters `grpc-message` must percent-encode: outside printable ASCII, and `%` itself.
const MESSAGE_ESCAPES: &AsciiSet = &CONTROLS.add(b'%');

/// Whether the request is a gRPC call: its content type is `application/grpc` or one of its
/// `+format` / `;params` forms (gRPC-Web's `application/grpc-web…` too, whose clients read a
/// Trailers-Only answer the same way).
pub fn is_call(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// The gRPC status that stands for the HTTP status of one of the gateway's refusals.
///
/// The mapping follows grpc/doc/http-grpc-status-mapping.md, except where the gateway knows more
/// than the HTTP status says: a limit that is used up is RESOURCE_EXHAUSTED (the client should
/// back off, not retry at once) and a timeout is DEADLINE_EXCEEDED.
pub fn code_for(status: StatusCode) -> u32 {
    match status.as_u16() {
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        413 | 429 | 431 => code::RESOURCE_EXHAUSTED,
        404 | 405 | 501 => code::UNIMPLEMENTED,
        504 => code::DEADLINE_EXCEEDED,
        500..=599 => code::UNAVAILABLE,
        _ => code::INTERNAL,
    }
}

/// Turns one of the gateway's refusals (the contract's JSON answer, already built) into the
/// Trailers-Only gRPC answer saying the same: `message` becomes `grpc-message`.
pub fn refusal(message: &str, mut response: Response<Body>) -> Response<Body> {
    let code = code_for(response.status());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.remove(CONTENT_LENGTH);
    headers.insert(GRPC_STATUS.clone(), HeaderValue::from(code));
    let encoded = utf8_percent_encode(message, MESSAGE_ESCAPES).to_string();
    if let Ok(value) = HeaderValue::from_str(&encoded) {
        headers.insert(GRPC_MESSAGE.clone(), value);
    }
    *response.body_mut() = empty_body();
    response
}

/// The call's deadline from `grpc-timeout` (1 to 8 digits and a unit: `H`, `M`, `S`, `m`, `u`,
/// `n`), or `None` when it is absent or malformed (the gRPC spec has a malformed value ignored
/// rather than failing the call).
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(&GRPC_TIMEOUT)?.as_bytes();
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(amount * 3600),
        b"M" => Duration::from_secs(amount * 60),
        b"S" => Duration::from_secs(amount),
        b"m" => Duration::from_millis(amount),
        b"u" => Duration::from_micros(amount),
        b"n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::full_body;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn grpc_content_types_are_calls() {
        for content_type in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc; charset=utf-8",
            "application/grpc-web+proto",
        ] {
            assert!(is_call(&headers(&[("content-type", content_type)])));
        }
        assert!(!is_call(&headers(&[("content-type", "application/json")])));
        assert!(!is_call(&HeaderMap::new()));
    }

    #[test]
    fn refusals_map_to_the_codes_clients_act_on() {
        assert_eq!(code_for(StatusCode::UNAUTHORIZED), code::UNAUTHENTICATED);
        assert_eq!(code_for(StatusCode::FORBIDDEN), code::PERMISSION_DENIED);
        assert_eq!(
            code_for(StatusCode::TOO_MANY_REQUESTS),
            code::RESOURCE_EXHAUSTED
        );
        assert_eq!(
            code_for(StatusCode::PAYLOAD_TOO_LARGE),
            code::RESOURCE_EXHAUSTED
        );
        assert_eq!(code_for(StatusCode::NOT_FOUND), code::UNIMPLEMENTED);
        assert_eq!(code_for(StatusCode::SERVICE_UNAVAILABLE), code::UNAVAILABLE);
        assert_eq!(code_for(StatusCode::BAD_GATEWAY), code::UNAVAILABLE);
        assert_eq!(
            code_for(StatusCode::GATEWAY_TIMEOUT),
            code::DEADLINE_EXCEEDED
        );
        assert_eq!(code_for(StatusCode::BAD_REQUEST), code::INTERNAL);
    }

    #[test]
    fn a_refusal_becomes_trailers_only_and_keeps_its_headers() {
        let mut response = Response::new(full_body("{\"error\":\"unauthorized\"}"));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response
            .headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("24"));
        let answer = refusal("no token: 100% refused\n", response);
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.headers()[CONTENT_TYPE], "application/grpc");
        assert_eq!(answer.headers()[&GRPC_STATUS], "16");
        assert_eq!(
            answer.headers()[&GRPC_MESSAGE],
            "no token: 100%25 refused%0A"
        );
        assert_eq!(answer.headers()["www-authenticate"], "Bearer");
        assert!(answer.headers().get(CONTENT_LENGTH).is_none());
        assert!(http_body::Body::is_end_stream(answer.body()));
    }

    #[test]
    fn grpc_timeout_units() {
        let parse = |value: &'static str| timeout(&headers(&[("grpc-timeout", value)]));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse("5n"), Some(Duration::from_nanos(5)));
        for malformed in ["", "S", "123456789S", "10x", "-1S", "1.5S", "10 S"] {
            assert_eq!(parse(malformed), None, "{malformed:?}");
        }
        assert_eq!(timeout(&HeaderMap::new()), None);
    }
}
