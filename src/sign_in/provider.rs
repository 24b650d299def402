//! The provider's side of sign-in: its endpoints, read from the discovery document the key-set
//! refresh already keeps (never fetched on the request path), and calls to its token endpoint
//! (code exchange, refresh) through the gateway's own outbound connector, bounded in time and
//! size, with the client's credentials as `client_secret_basic`.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::CertificateDer;
use serde_json::Value;

use crate::auth::Issuer;

/// How long one call to the token endpoint may take, connect to last byte.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest token response read.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// The provider endpoints sign-in uses.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// Where the browser signs in.
    pub authorization: String,
    /// Where codes and refresh tokens are exchanged.
    pub token: Uri,
    /// Where RP-initiated logout sends the browser, if the provider has one.
    pub end_session: Option<String>,
}

/// The endpoints in `issuer`'s discovery document, each https (or plain http on the issuer's
/// own host, as for its keys); `None` until the document has been fetched.
pub fn endpoints(issuer: &Issuer) -> Option<Endpoints> {
    let document = issuer.discovery_document()?;
    let issuer_uri: Uri = issuer.settings.issuer.parse().ok()?;
    let url = |name: &str| -> Option<Uri> {
        let uri: Uri = document.get(name)?.as_str()?.parse().ok()?;
        let https = uri.scheme_str() == Some("https");
        let same_host_http = uri.scheme_str() == Some("http")
            && issuer_uri.scheme_str() == Some("http")
            && uri.host() == issuer_uri.host();
        (https || same_host_http).then_some(uri)
    };
    Some(Endpoints {
        authorization: url("authorization_endpoint")?.to_string(),
        token: url("token_endpoint")?,
        end_session: url("end_session_endpoint").map(|u| u.to_string()),
    })
}

/// `endpoint` with `query` appended (after `&` when it has a query of its own already).
pub fn with_query(endpoint: &str, query: &str) -> String {
    let separator = if endpoint.contains('?') { '&' } else { '?' };
    format!("{endpoint}{separator}{query}")
}

/// A token endpoint's answer.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// The ID token.
    pub id_token: Option<String>,
    /// A refresh token, when granted.
    pub refresh_token: Option<String>,
    /// Seconds the access token lives.
    pub expires_in: Option<i64>,
    /// The scopes granted, space-separated.
    pub scope: Option<String>,
}

/// Why a token endpoint call did not produce tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The provider answered 4xx: the code or refresh token is no good.
    Refused,
    /// No usable answer: unreachable, timed out, 5xx, or not a token response.
    Unreachable(String),
}

/// The client's credentials at the token endpoint.
#[derive(Clone)]
pub struct ClientCredentials {
    /// `client_id`.
    pub id: String,
    /// The secret, for `client_secret_basic`; `None`: a public client.
    pub secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The HTTP client sign-in calls its provider with.
#[derive(Debug, Clone)]
pub struct ProviderClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl ProviderClient {
    /// A client trusting the system roots plus `ca` (the issuer's own `ca`).
    pub fn new(ca: &[CertificateDer<'static>]) -> Self {
        let connector = crate::outbound::connector(Duration::from_secs(5), ca);
        ProviderClient {
            client: Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
        }
    }

    /// POSTs `form` to the token endpoint with the client's credentials.
    pub async fn token(
        &self,
        endpoint: &Uri,
        client: &ClientCredentials,
        form: &[(&str, &str)],
    ) -> Result<Tokens, CallError> {
        let request = build_request(endpoint, client, form)?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                CallError::Unreachable(format!(
                    "POST {endpoint}: {}",
                    crate::outbound::error_chain(&e)
                ))
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| CallError::Unreachable(format!("POST {endpoint}: body: {e}")))?
                .to_bytes();
            if status.is_client_error() {
                return Err(CallError::Refused);
            }
            if status != StatusCode::OK {
                return Err(CallError::Unreachable(format!(
                    "POST {endpoint}: answered {status}"
                )));
            }
            let document: Value = serde_json::from_slice(&body).map_err(|_| {
                CallError::Unreachable(format!("POST {endpoint}: not a JSON token response"))
            })?;
            let text = |name: &str| {
                document
                    .get(name)
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            Ok(Tokens {
                id_token: text("id_token"),
                refresh_token: text("refresh_token"),
                expires_in: document.get("expires_in").and_then(Value::as_i64),
                scope: text("scope"),
            })
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(CallError::Unreachable(format!(
                    "POST {endpoint}: timed out"
                )))
            })
    }
}

/// The token request: `form` plus the client's credentials, as one POST.
fn build_request(
    endpoint: &Uri,
    client: &ClientCredentials,
    form: &[(&str, &str)],
) -> Result<Request<Full<Bytes>>, CallError> {
    let mut body = form_urlencoded::Serializer::new(String::new());
    for (name, value) in form {
        body.append_pair(name, value);
    }
    let mut request = Request::post(endpoint.clone())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json");
    match &client.secret {
        // RFC 6749 §2.3.1: both parts form-encoded, then joined and base64-encoded.
        Some(secret) => {
            let encode =
                |bytes: &[u8]| -> String { form_urlencoded::byte_serialize(bytes).collect() };
            let pair = format!("{}:{}", encode(client.id.as_bytes()), encode(secret));
            let mut value =
                http::HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(pair))).map_err(
                    |_| CallError::Unreachable("the client credentials do not fit a header".into()),
                )?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        None => {
            body.append_pair("client_id", &client.id);
        }
    }
    request
        .body(Full::new(Bytes::from(body.finish())))
        .map_err(|e| CallError::Unreachable(e.to_string()))
}
