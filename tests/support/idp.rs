//! A test identity provider: key pairs generated per run, tokens signed with them (or crafted
//! by hand for attacks), and a real JWKS / OIDC discovery server on 127.0.0.1:0 that counts its
//! fetches and can be switched off.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use tokio::net::TcpListener;

type PemLoader = fn(&[u8]) -> jsonwebtoken::errors::Result<EncodingKey>;

/// A signing key with its public JWK.
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    /// The public key as a JWK (with `kid`, `alg`, `use`).
    pub jwk: Value,
    /// The private key, PKCS#8 PEM.
    pub private_pem: String,
    /// The public key, SPKI PEM.
    pub public_pem: String,
}

impl TestKey {
    /// A fresh key for `alg` (RS*/PS* → RSA 2048, ES256 → P-256, ES384 → P-384, EdDSA → Ed25519).
    pub fn generate(kid: &str, alg: Algorithm) -> TestKey {
        let (rcgen_alg, load): (&'static rcgen::SignatureAlgorithm, PemLoader) = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => (&rcgen::PKCS_RSA_SHA256, EncodingKey::from_rsa_pem),
            Algorithm::ES256 => (&rcgen::PKCS_ECDSA_P256_SHA256, EncodingKey::from_ec_pem),
            Algorithm::ES384 => (&rcgen::PKCS_ECDSA_P384_SHA384, EncodingKey::from_ec_pem),
            Algorithm::EdDSA => (&rcgen::PKCS_ED25519, EncodingKey::from_ed_pem),
            other => panic!("no key pair for {other:?}"),
        };
        let pair = rcgen::KeyPair::generate_for(rcgen_alg).unwrap();
        let private_pem = pair.serialize_pem();
        let public_pem = pair.public_key_pem();
        let encoding = load(private_pem.as_bytes()).unwrap();
        let mut jwk = if alg == Algorithm::EdDSA {
            // jsonwebtoken derives Ed25519 public keys only from PKCS#8 v1 documents.
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key_raw())})
        } else {
            serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, alg).unwrap())
                .unwrap()
        };
        let object = jwk.as_object_mut().unwrap();
        object.insert("kid".into(), kid.into());
        object.insert("use".into(), "sig".into());
        TestKey {
            kid: kid.to_string(),
            alg,
            encoding,
            jwk,
            private_pem,
            public_pem,
        }
    }

    /// Signs `claims` with a standard header (`alg`, `kid`, `typ`).
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(
            &json!({"alg": alg_name(self.alg), "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }

    /// Signs `claims` under an arbitrary header (for crafted tokens).
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &self.encoding, self.alg).unwrap();
        format!("{signing_input}.{signature}")
    }
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn alg_name(alg: Algorithm) -> &'static str {
    authgate::auth::keys::algorithm_name(alg)
}

/// Claims valid for `issuer` and audience `api` for an hour.
pub fn claims(issuer: &str, subject: &str) -> Value {
    let now = authgate::auth::unix_now();
    json!({"iss": issuer, "sub": subject, "aud": "api", "iat": now, "exp": now + 3600, "scope": "orders:read"})
}

/// A JWKS and discovery server.
#[derive(Clone)]
pub struct Idp {
    pub addr: SocketAddr,
    keys: Arc<Mutex<Vec<Value>>>,
    /// Fetches of `/jwks.json`.
    pub jwks_fetches: Arc<AtomicUsize>,
    /// Fetches of the discovery document.
    pub discovery_fetches: Arc<AtomicUsize>,
    /// While false, every request is answered 503.
    up: Arc<AtomicBool>,
    /// The `issuer` the discovery document claims (defaults to the server's own URL).
    claimed_issuer: Arc<Mutex<Option<String>>>,
    cache_control: Arc<Mutex<Option<String>>>,
    /// How long each answer is held back (a slow IdP), in milliseconds.
    delay_ms: Arc<AtomicUsize>,
}

impl Idp {
    /// Starts serving `keys` (public JWKs).
    pub async fn start(keys: Vec<Value>) -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let idp = Idp {
            addr: listener.local_addr().unwrap(),
            keys: Arc::new(Mutex::new(keys)),
            jwks_fetches: Arc::new(AtomicUsize::new(0)),
            discovery_fetches: Arc::new(AtomicUsize::new(0)),
            up: Arc::new(AtomicBool::new(true)),
            claimed_issuer: Arc::new(Mutex::new(None)),
            cache_control: Arc::new(Mutex::new(None)),
            delay_ms: Arc::new(AtomicUsize::new(0)),
        };
        let server = idp.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: http::Request<hyper::body::Incoming>| {
                            let response = server.answer(request.uri().path());
                            let delay = server.delay_ms.load(Ordering::SeqCst) as u64;
                            async move {
                                tokio::time::sleep(Duration::from_millis(delay)).await;
                                Ok::<_, Infallible>(response)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        idp
    }

    /// `http://127.0.0.1:PORT` — also the issuer its discovery document names.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.url())
    }

    /// Replaces the published keys.
    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.keys.lock().unwrap() = keys;
    }

    /// Takes the IdP down (503 for everything) or brings it back.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    /// Makes the discovery document claim another issuer.
    pub fn claim_issuer(&self, issuer: &str) {
        *self.claimed_issuer.lock().unwrap() = Some(issuer.to_string());
    }

    /// Holds every answer back by `delay` (the count of fetches moves when a request arrives).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as usize, Ordering::SeqCst);
    }

    pub fn set_cache_control(&self, value: &str) {
        *self.cache_control.lock().unwrap() = Some(value.to_string());
    }

    pub fn fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Waits (at most 10 s) until the JWKS has been fetched at least `n` times.
    pub async fn wait_for_fetches(&self, n: usize) {
        for _ in 0..1000 {
            if self.fetches() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "the JWKS was fetched {} times, not {n}, within 10 s",
            self.fetches()
        );
    }

    fn answer(&self, path: &str) -> Response<Full<Bytes>> {
        if !self.up.load(Ordering::SeqCst) {
            return status(StatusCode::SERVICE_UNAVAILABLE);
        }
        let body = match path {
            "/jwks.json" => {
                self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                json!({ "keys": *self.keys.lock().unwrap() })
            }
            "/.well-known/openid-configuration" => {
                self.discovery_fetches.fetch_add(1, Ordering::SeqCst);
                let issuer = self
                    .claimed_issuer
                    .lock()
                    .unwrap()
                    .clone()
                    .unwrap_or_else(|| self.url());
                json!({ "issuer": issuer, "jwks_uri": self.jwks_url() })
            }
            _ => return status(StatusCode::NOT_FOUND),
        };
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        if let Some(value) = self.cache_control.lock().unwrap().clone() {
            response
                .headers_mut()
                .insert("cache-control", value.parse().unwrap());
        }
        response
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}

pub fn b64_decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}
