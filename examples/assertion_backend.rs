//! A backend that trusts only requests that came through authgate: it verifies the signed
//! identity assertion (`X-Auth-Assertion`) against the gateway's published keys
//! (`/.well-known/jwks.json` on the admin listener) and answers 401 to anything else, including
//! a request that sets `X-Auth-Subject` itself.
//!
//! ```sh
//! # gateway.toml: [identity.assertion] private_key = "assertion.pem", audience = "orders"
//! cargo run --example assertion_backend -- 127.0.0.1:3000 http://127.0.0.1:9901/.well-known/jwks.json orders
//! ```

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use tokio::net::TcpListener;

/// What the backend checks assertions against.
pub struct Verifier {
    /// The gateway's assertion keys.
    pub keys: JwkSet,
    /// The audience the gateway signs for this backend.
    pub audience: String,
    /// The assertion issuer (`authgate` unless configured otherwise).
    pub issuer: String,
}

impl Verifier {
    /// Fetches the gateway's JWK Set.
    pub async fn fetch(
        jwks_url: &str,
        audience: &str,
        issuer: &str,
    ) -> Result<Verifier, Box<dyn std::error::Error + Send + Sync>> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let response = client.get(jwks_url.parse()?).await?;
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Verifier {
            keys: serde_json::from_slice(&body)?,
            audience: audience.into(),
            issuer: issuer.into(),
        })
    }

    /// The verified subject of an assertion, or why it is refused.
    pub fn verify(&self, assertion: &str) -> Result<String, String> {
        let header = jsonwebtoken::decode_header(assertion).map_err(|e| e.to_string())?;
        let kid = header.kid.ok_or("the assertion names no key")?;
        let jwk = self
            .keys
            .find(&kid)
            .ok_or("the assertion's key is not the gateway's")?;
        // The algorithm comes from the gateway's published key, never from the assertion.
        let algorithm = jwk
            .common
            .key_algorithm
            .and_then(|a| a.to_string().parse().ok())
            .ok_or("the published key names no algorithm")?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        let mut validation = Validation::new(algorithm);
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &validation)
            .map_err(|e| e.to_string())?;
        data.claims["sub"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "no subject".into())
    }
}

/// Answers each request: 200 with the verified subject, or 401.
pub async fn serve(listener: TcpListener, verifier: Arc<Verifier>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let verifier = verifier.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let verdict = request
                    .headers()
                    .get("x-auth-assertion")
                    .ok_or_else(|| {
                        "no assertion: the request did not come through the gateway".to_string()
                    })
                    .and_then(|v| v.to_str().map_err(|e| e.to_string()))
                    .and_then(|assertion| verifier.verify(assertion));
                let (status, body) = match verdict {
                    Ok(subject) => (
                        StatusCode::OK,
                        serde_json::json!({ "verified_subject": subject }),
                    ),
                    Err(reason) => (
                        StatusCode::UNAUTHORIZED,
                        serde_json::json!({ "error": reason }),
                    ),
                };
                let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
                *response.status_mut() = status;
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let jwks_url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:9901/.well-known/jwks.json".into());
    let audience = args.next().unwrap_or_else(|| "backend".into());
    let verifier = Verifier::fetch(&jwks_url, &audience, "authgate").await?;
    let listener = TcpListener::bind(&address).await?;
    println!(
        "assertion backend on {} (keys from {jwks_url})",
        listener.local_addr()?
    );
    serve(listener, Arc::new(verifier)).await;
    Ok(())
}
