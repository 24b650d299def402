//! What the token service's requests carry, read strictly: bounded JSON and form bodies
//! (a repeated form parameter is an error, RFC 6749 §3.2), HTTP Basic client credentials
//! (each part form-decoded, RFC 6749 §2.3.1) and a bearer token.

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::HeaderMap;
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;

use super::errors::ServiceError;

/// Request bodies larger than this are refused: every request here is a few hundred bytes.
const MAX_BODY: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
pub(crate) struct LoginRequest {
    pub(super) username: String,
    pub(super) password: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RefreshRequest {
    pub(super) refresh_token: String,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct LogoutRequest {
    pub(super) refresh_token: Option<String>,
}

/// Reads a small body of the expected media type.
pub(super) async fn read_body<B>(
    headers: &HeaderMap,
    body: B,
    form: bool,
) -> Result<Vec<u8>, ServiceError>
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let expected = if form {
        "application/x-www-form-urlencoded"
    } else {
        "application/json"
    };
    let media_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    // A logout may come with no body at all (the access token in Authorization is enough): no
    // media type is then fine, as long as there is indeed no body.
    let may_be_empty = media_type.is_none() && !form;
    if !media_type.is_some_and(|t| t.eq_ignore_ascii_case(expected)) && !may_be_empty {
        return Err(ServiceError::UnsupportedMediaType(expected));
    }
    let collected = Limited::new(body, MAX_BODY).collect().await.map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            ServiceError::BodyTooLarge
        } else {
            ServiceError::InvalidRequest("the request body could not be read")
        }
    })?;
    let bytes = collected.to_bytes();
    if may_be_empty && !bytes.is_empty() {
        return Err(ServiceError::UnsupportedMediaType(expected));
    }
    Ok(bytes.to_vec())
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(body).map_err(|_| {
        ServiceError::InvalidRequest("the body is not the JSON object this endpoint expects")
    })
}

/// The form's parameters; a repeated one is an error (RFC 6749 §3.2).
pub(crate) fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, ServiceError> {
    let mut params: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(body) {
        if params.iter().any(|(seen, _)| *seen == name) {
            return Err(ServiceError::InvalidRequest(
                "a parameter appears more than once",
            ));
        }
        params.push((name.into_owned(), value.into_owned()));
    }
    Ok(params)
}

/// A parameter, absent when missing or empty (RFC 6749 §3.1).
pub(super) fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// `Authorization: Basic` client credentials, each form-urlencoded (RFC 6749 §2.3.1).
pub(crate) fn basic_credentials(
    headers: &HeaderMap,
) -> Result<Option<(String, String)>, ServiceError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = ServiceError::InvalidClient { basic: true };
    let text = value.to_str().map_err(|_| malformed.clone())?;
    let Some((scheme, encoded)) = text.split_once(' ') else {
        return Err(malformed);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded.trim())
            .map_err(|_| malformed.clone())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed.clone())?;
    let (id, secret) = decoded.split_once(':').ok_or(malformed)?;
    Ok(Some((form_decode(id), form_decode(secret))))
}

/// `application/x-www-form-urlencoded` decoding of one value: `+` is a space, then `%XX`.
fn form_decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

pub(super) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut headers = HeaderMap::new();
        let encoded = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "my%20client:p%3Ass+word&x",
        );
        headers.insert(AUTHORIZATION, format!("Basic {encoded}").parse().unwrap());
        assert_eq!(
            basic_credentials(&headers).unwrap(),
            Some(("my client".into(), "p:ss word&x".into()))
        );
        headers.insert(AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert!(basic_credentials(&headers).is_err());
        headers.insert(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(basic_credentials(&headers).unwrap(), None);
    }

    #[test]
    fn repeated_form_parameters_are_refused() {
        assert!(parse_form(b"grant_type=a&grant_type=b").is_err());
        let params = parse_form(b"grant_type=client_credentials&scope=").unwrap();
        assert_eq!(param(&params, "scope"), None);
        assert_eq!(param(&params, "grant_type"), Some("client_credentials"));
    }
}
