//! The upstream's own credential on the way out: whatever the client sent under the same
//! header or query parameter is removed, and the gateway's value is set. Runs after
//! authentication, just before forwarding, so no client ever needs (or sees) the provider's key.

use http::uri::PathAndQuery;
use http::{Request, Uri};

use crate::config::{CredentialPlace, UpstreamCredential};
use crate::error::GatewayError;

/// Replaces the client's credential with `credential` in `request`.
pub fn apply<B>(
    request: &mut Request<B>,
    credential: &UpstreamCredential,
) -> Result<(), GatewayError> {
    match &credential.place {
        CredentialPlace::Header(name) => {
            // `insert` drops every value the client sent under this name.
            request
                .headers_mut()
                .insert(name.clone(), credential.value.clone());
        }
        CredentialPlace::Query(name) => {
            let value = credential.value.to_str().unwrap_or_default();
            let uri = with_query_parameter(request.uri(), name, value)?;
            *request.uri_mut() = uri;
        }
    }
    Ok(())
}

/// `uri` with every `name=…` pair (however the client encoded `name`) removed and
/// `name=value` (value already percent-encoded) appended.
fn with_query_parameter(uri: &Uri, name: &str, value: &str) -> Result<Uri, GatewayError> {
    let mut query = String::new();
    for pair in uri.query().unwrap_or_default().split('&') {
        if pair.is_empty() {
            continue;
        }
        let key = pair.split('=').next().unwrap_or_default();
        let decoded = percent_encoding::percent_decode_str(&key.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        if decoded == name {
            continue;
        }
        query.push_str(pair);
        query.push('&');
    }
    let encoded_name: String =
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).collect();
    query.push_str(&encoded_name);
    query.push('=');
    query.push_str(value);
    let path_and_query = format!("{}?{query}", uri.path());
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        PathAndQuery::try_from(path_and_query)
            .map_err(|_| GatewayError::BadRequest("the request query is malformed"))?,
    );
    Uri::from_parts(parts).map_err(|_| GatewayError::BadRequest("the request query is malformed"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::{HeaderName, HeaderValue};

    fn credential(place: CredentialPlace, value: &str) -> UpstreamCredential {
        UpstreamCredential {
            place,
            value: HeaderValue::from_str(value).unwrap(),
        }
    }

    #[test]
    fn a_header_replaces_every_value_the_client_sent() {
        let mut request = Request::builder()
            .uri("/v1/x")
            .header("authorization", "Bearer client")
            .header("authorization", "Bearer other")
            .body(())
            .unwrap();
        let name = HeaderName::from_static("authorization");
        apply(
            &mut request,
            &credential(CredentialPlace::Header(name.clone()), "Bearer gw"),
        )
        .unwrap();
        let values: Vec<_> = request.headers().get_all(&name).iter().collect();
        assert_eq!(values, ["Bearer gw"]);
    }

    #[test]
    fn a_query_parameter_replaces_the_clients_however_encoded() {
        let mut request = Request::builder()
            .uri("/v1/x?a=1&key=client&%6Bey=sneaky&b=2")
            .body(())
            .unwrap();
        apply(
            &mut request,
            &credential(CredentialPlace::Query("key".into()), "s%2Fcret"),
        )
        .unwrap();
        assert_eq!(request.uri().query(), Some("a=1&b=2&key=s%2Fcret"));
        let mut bare = Request::builder().uri("/v1/x").body(()).unwrap();
        apply(
            &mut bare,
            &credential(CredentialPlace::Query("key".into()), "v"),
        )
        .unwrap();
        assert_eq!(bare.uri().to_string(), "/v1/x?key=v");
    }
}
