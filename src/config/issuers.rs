//! `[[issuers]]`: validation of token issuers and loading of their static keys.
//!
//! An issuer's keys come from exactly one kind of source: static (PEM `keys`, an HMAC `secret`
//! or `secret_file`, a `private_key`, a local `jwks_file`), or remote (`jwks_url`, or
//! `discovery = true`). Static keys are loaded here, so `authgate check` proves they parse and
//! are strong enough; remote ones are fetched by the runtime.

use std::net::IpAddr;
use std::time::Duration;

use http::Uri;
use jsonwebtoken::{Algorithm, EncodingKey};
use rustls_pki_types::CertificateDer;
use toml::Spanned;

use super::raw::{RawIssuer, Text};
use super::Validator;
use crate::key_material::{self as keys, KeySet, Origin, VerificationKey};

/// One validated `[[issuers]]` entry.
#[derive(Debug, Clone)]
pub struct IssuerSettings {
    /// The name routes and `authgate token` use.
    pub id: String,
    /// The `iss` value tokens must carry, byte for byte.
    pub issuer: String,
    /// `aud` must contain one of these.
    pub audiences: Vec<String>,
    /// Algorithms accepted for this issuer.
    pub algorithms: Vec<Algorithm>,
    /// Where the verification keys come from.
    pub keys: KeySource,
    /// The key `authgate token` signs with, when one is configured.
    pub signing: Option<SigningKey>,
    /// Allowed clock skew for `exp`, `nbf`, `iat`.
    pub leeway: Duration,
    /// Whether `/readyz` waits for this issuer's keys.
    pub required_for_ready: bool,
    /// The claim (dotted path) holding the caller's roles.
    pub roles_claim: String,
    /// The claim naming the caller (`sub` unless configured: several IdPs put the client of a
    /// client-credentials token in `client_id` or `azp` and send no `sub`).
    pub subject_claim: String,
    /// The `typ` header the issuer's tokens must carry (compared without case, `application/`
    /// optional, RFC 7515 §4.1.9), when required.
    pub typ: Option<String>,
}

/// Where an issuer's verification keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Loaded from configuration, fixed until the next reload.
    Static(KeySet),
    /// Fetched and refreshed in the background.
    Remote(Box<RemoteSettings>),
}

/// A remote key set and how it is kept fresh.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSettings {
    /// The issuer's id, for logs and metrics.
    pub issuer_id: String,
    /// The configured `iss`; discovery documents must name exactly this.
    pub issuer: String,
    /// The JWKS URL, or discovery from the issuer.
    pub location: RemoteLocation,
    /// Extra trust anchors for the IdP's TLS.
    pub ca: Vec<CertificateDer<'static>>,
    /// Algorithms keys may be used for.
    pub algorithms: Vec<Algorithm>,
    /// Background refresh interval (a shorter Cache-Control max-age wins, within bounds).
    pub refresh: Duration,
    /// How long the last good key set keeps serving while the IdP cannot be reached.
    pub max_staleness: Duration,
    /// At most one unknown-`kid` refetch per this interval.
    pub refetch_cooldown: Duration,
}

/// Where a remote key set is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteLocation {
    /// A JWKS URL.
    Jwks(Uri),
    /// `{issuer}/.well-known/openid-configuration` → `jwks_uri`.
    Discovery(Uri),
}

/// A key `authgate token` can sign with.
#[derive(Clone)]
pub struct SigningKey {
    /// The key.
    pub key: EncodingKey,
    /// The algorithm it signs with.
    pub algorithm: Algorithm,
    /// The `kid` put in minted tokens.
    pub kid: Option<String>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Validator<'_> {
    pub(super) fn issuers(&mut self, raw: &[Spanned<RawIssuer>]) -> Vec<IssuerSettings> {
        let mut seen = std::collections::HashSet::new();
        let mut issuers: Vec<IssuerSettings> = Vec::new();
        for spanned in raw {
            let Some(id) = self.text(&spanned.get_ref().id) else {
                continue;
            };
            if !seen.insert(id.clone()) {
                self.error(
                    spanned.get_ref().id.span(),
                    format!("issuer id `{id}` is used twice"),
                );
            }
            if let Some(settings) = self.issuer(id, spanned) {
                // Tokens are matched to their issuer by `iss`, so two entries cannot share one.
                if issuers.iter().any(|i| i.issuer == settings.issuer) {
                    self.error(
                        spanned.get_ref().issuer.span(),
                        format!("issuer `{}` is configured twice", settings.issuer),
                    );
                }
                issuers.push(settings);
            }
        }
        issuers
    }

    fn issuer(&mut self, id: String, spanned: &Spanned<RawIssuer>) -> Option<IssuerSettings> {
        let raw = spanned.get_ref();
        let errors_before = self.errors.len();
        let issuer = self.text(&raw.issuer)?;
        if issuer.is_empty() {
            self.error(raw.issuer.span(), "`issuer` cannot be empty");
        }
        let audiences: Vec<String> = raw.audiences.iter().filter_map(|a| self.text(a)).collect();
        if raw.audiences.is_empty() {
            self.error(spanned.span(), format!("issuer `{id}` needs `audiences`: tokens are accepted only for a named audience"));
        }
        let algorithms = match &raw.algorithms {
            None => keys::SUPPORTED.to_vec(),
            Some(names) => names
                .iter()
                .filter_map(|name| {
                    let value = self.text(name)?;
                    keys::parse_algorithm(&value).or_else(|| {
                        self.error(name.span(), format!("`{value}` is not a supported algorithm (HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384, EdDSA or Ed25519)"));
                        None
                    })
                })
                .collect(),
        };
        let leeway = self.duration(raw.leeway.as_ref(), Duration::from_secs(30));
        let kid = raw.key_id.as_ref().and_then(|k| self.text(k));

        let remote = raw.jwks_url.is_some() || raw.discovery == Some(true);
        let static_source = raw.keys.is_some()
            || raw.secret.is_some()
            || raw.secret_file.is_some()
            || raw.private_key.is_some()
            || raw.jwks_file.is_some();
        if remote && static_source {
            self.error(spanned.span(), format!("issuer `{id}` mixes remote keys (`jwks_url`/`discovery`) with static ones; use one kind"));
            return None;
        }
        if raw.jwks_url.is_some() && raw.discovery == Some(true) {
            self.error(
                spanned.span(),
                format!("issuer `{id}`: set `jwks_url` or `discovery = true`, not both"),
            );
            return None;
        }
        let mut signing = None;
        let keys = if remote {
            let location = match &raw.jwks_url {
                Some(url) => RemoteLocation::Jwks(self.fetch_url(url)?),
                None => RemoteLocation::Discovery(self.fetch_url(&raw.issuer)?),
            };
            let ca = match &raw.ca {
                Some(path) => self.ca_file(path)?,
                None => Vec::new(),
            };
            KeySource::Remote(Box::new(RemoteSettings {
                issuer_id: id.clone(),
                issuer: issuer.clone(),
                location,
                ca,
                algorithms: algorithms.clone(),
                refresh: self.duration(raw.refresh.as_ref(), Duration::from_secs(300)),
                max_staleness: self
                    .duration(raw.max_staleness.as_ref(), Duration::from_secs(86_400)),
                refetch_cooldown: self
                    .duration(raw.refetch_cooldown.as_ref(), Duration::from_secs(10)),
            }))
        } else if static_source {
            let mut loaded: Vec<VerificationKey> = Vec::new();
            let mut symmetric = false;
            for path in raw.keys.iter().flatten() {
                let file = self.path(path)?;
                match std::fs::read(&file)
                    .map_err(|e| e.to_string())
                    .and_then(|pem| keys::from_public_pem(&pem, kid.clone(), &algorithms))
                {
                    Ok(key) => loaded.push(key),
                    Err(reason) => self.error(path.span(), format!("{}: {reason}", file.display())),
                }
            }
            let secret = match (&raw.secret, &raw.secret_file) {
                (Some(_), Some(_)) => {
                    self.error(spanned.span(), "set `secret` or `secret_file`, not both");
                    None
                }
                (Some(text), None) => self.text(text).map(|s| (s.into_bytes(), text)),
                (None, Some(text)) => {
                    let file = self.path(text)?;
                    match std::fs::read(&file) {
                        // A trailing newline from `echo … > file` is not part of the secret.
                        Ok(bytes) => Some((trim_newline(bytes), text)),
                        Err(e) => {
                            self.error(text.span(), format!("cannot read {}: {e}", file.display()));
                            None
                        }
                    }
                }
                (None, None) => None,
            };
            if let Some((bytes, text)) = secret {
                symmetric = true;
                match keys::from_secret(&bytes, kid.clone(), None, &algorithms) {
                    Ok(key) => {
                        signing = key.algorithms.first().map(|alg| SigningKey {
                            key: EncodingKey::from_secret(&bytes),
                            algorithm: *alg,
                            kid: kid.clone(),
                        });
                        loaded.push(key);
                    }
                    // The reason names lengths and algorithms, never the secret.
                    Err(reason) => self.error(text.span(), reason),
                }
            }
            if let Some(path) = &raw.private_key {
                let file = self.path(path)?;
                match std::fs::read(&file)
                    .map_err(|e| e.to_string())
                    .and_then(|pem| private_key(&pem, kid.clone(), &algorithms))
                {
                    Ok((verification, signing_key)) => {
                        loaded.push(verification);
                        signing = Some(signing_key);
                    }
                    Err(reason) => self.error(path.span(), format!("{}: {reason}", file.display())),
                }
            }
            if let Some(path) = &raw.jwks_file {
                let file = self.path(path)?;
                let parsed = std::fs::read(&file)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| {
                        crate::strict_json::parse(&bytes)
                            .map_err(|e| format!("not valid JSON: {e}"))
                    })
                    .and_then(|document| KeySet::from_jwks(&document, Origin::Local, &algorithms));
                match parsed {
                    Ok((set, refused)) => {
                        for reason in refused {
                            self.error(path.span(), format!("{}: {reason}", file.display()));
                        }
                        symmetric |= set
                            .iter()
                            .any(|k| k.algorithms.iter().any(|a| keys::is_hmac(*a)));
                        loaded.extend(set.iter().cloned());
                    }
                    Err(reason) => self.error(path.span(), format!("{}: {reason}", file.display())),
                }
            }
            let asymmetric = loaded
                .iter()
                .any(|k| k.algorithms.iter().any(|a| !keys::is_hmac(*a)));
            if symmetric && asymmetric {
                self.error(spanned.span(), format!("issuer `{id}` mixes an HMAC secret with public keys; a token's key would be ambiguous"));
            }
            KeySource::Static(KeySet::new(loaded))
        } else {
            self.error(spanned.span(), format!("issuer `{id}` has no keys: set `jwks_url`, `discovery = true`, `keys`, `secret`, `secret_file`, `private_key` or `jwks_file`"));
            return None;
        };
        if raw.ca.is_some() && !remote {
            self.error(spanned.span(), "`ca` is only for fetching remote keys");
        }
        (self.errors.len() == errors_before).then_some(IssuerSettings {
            id,
            issuer,
            audiences,
            algorithms,
            keys,
            signing,
            leeway,
            required_for_ready: raw.required_for_ready.unwrap_or(true),
            roles_claim: raw
                .roles_claim
                .as_ref()
                .and_then(|r| self.text(r))
                .unwrap_or_else(|| "roles".into()),
            subject_claim: raw
                .subject_claim
                .as_ref()
                .and_then(|r| self.text(r))
                .unwrap_or_else(|| "sub".into()),
            typ: raw.typ.as_ref().and_then(|t| self.text(t)),
        })
    }

    /// A URL keys may be fetched from: https, or plain http only to a loopback address.
    fn fetch_url(&mut self, text: &Text) -> Option<Uri> {
        let value = self.text(text)?;
        let uri: Uri = match value.parse() {
            Ok(uri) => uri,
            Err(_) => {
                self.error(text.span(), format!("`{value}` is not a URL"));
                return None;
            }
        };
        let loopback = uri.host().is_some_and(|host| {
            host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        match uri.scheme_str() {
            Some("https") if uri.host().is_some() => Some(uri),
            Some("http") if loopback => Some(uri),
            Some("http") => {
                self.error(text.span(), format!("`{value}`: keys are fetched over https (plain http only from a loopback address)"));
                None
            }
            _ => {
                self.error(text.span(), format!("`{value}` is not an https URL"));
                None
            }
        }
    }
}

pub(super) fn trim_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    bytes
}

impl Validator<'_> {
    pub(super) fn assertion(
        &mut self,
        spanned: &Spanned<super::raw::RawAssertion>,
    ) -> Option<super::AssertionSettings> {
        let raw = spanned.get_ref();
        let file = self.path(&raw.private_key)?;
        let allowed: Vec<Algorithm> = match &raw.alg {
            None => keys::SUPPORTED
                .iter()
                .copied()
                .filter(|a| !keys::is_hmac(*a))
                .collect(),
            Some(name) => {
                let value = self.text(name)?;
                match keys::parse_algorithm(&value).filter(|a| !keys::is_hmac(*a)) {
                    Some(alg) => vec![alg],
                    None => {
                        self.error(
                            name.span(),
                            format!("`{value}` is not an asymmetric algorithm authgate signs with"),
                        );
                        return None;
                    }
                }
            }
        };
        let kid = raw.key_id.as_ref().and_then(|k| self.text(k));
        let loaded = std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|pem| published_key(&pem, kid, &allowed));
        let (_, signing, public_jwk) = match loaded {
            Ok(published) => published,
            Err(reason) => {
                self.error(
                    raw.private_key.span(),
                    format!("{}: {reason}", file.display()),
                );
                return None;
            }
        };
        Some(super::AssertionSettings {
            header: self.header_name(raw.header.as_ref(), "x-auth-assertion"),
            signing,
            public_jwk,
            ttl: self.duration(raw.ttl.as_ref(), Duration::from_secs(60)),
            audience: self.text(&raw.audience)?,
            issuer: raw
                .issuer
                .as_ref()
                .and_then(|i| self.text(i))
                .unwrap_or_else(|| "authgate".into()),
        })
    }
}

/// A private key the gateway signs with and publishes: its verification key, the signing key,
/// and the public JWK (with `kid` — the configured one, or the RFC 7638 thumbprint — `alg` and
/// `use`).
pub(super) fn published_key(
    pem: &[u8],
    kid: Option<String>,
    allowed: &[Algorithm],
) -> Result<(VerificationKey, SigningKey, serde_json::Value), String> {
    let (_, mut signing) = private_key(pem, kid.clone(), allowed)?;
    let mut public_jwk =
        public_jwk(&signing.key, signing.algorithm).ok_or("cannot derive its public key")?;
    // Without a configured kid, the key's RFC 7638 thumbprint names it.
    let kid = kid.unwrap_or_else(|| thumbprint(&public_jwk));
    signing.kid = Some(kid.clone());
    if let Some(object) = public_jwk.as_object_mut() {
        object.insert("kid".into(), kid.into());
        object.insert("alg".into(), keys::algorithm_name(signing.algorithm).into());
        object.insert("use".into(), "sig".into());
    }
    let verification = keys::from_jwk(&public_jwk, Origin::Local, &[signing.algorithm])?;
    Ok((verification, signing, public_jwk))
}

/// The RFC 7638 thumbprint of a public JWK: SHA-256 over its required members in order.
fn thumbprint(jwk: &serde_json::Value) -> String {
    let members: &[&str] = match jwk.get("kty").and_then(serde_json::Value::as_str) {
        Some("RSA") => &["e", "kty", "n"],
        Some("EC") => &["crv", "kty", "x", "y"],
        _ => &["crv", "kty", "x"],
    };
    let canonical: serde_json::Map<String, serde_json::Value> = members
        .iter()
        .filter_map(|m| Some((m.to_string(), jwk.get(*m)?.clone())))
        .collect();
    let text = serde_json::Value::Object(canonical).to_string();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        digest.as_ref(),
    )
}

/// The public JWK of a private key. Ed25519 is derived here because jsonwebtoken reads only
/// PKCS#8 v1 Ed25519 documents, while OpenSSL 3 and aws-lc write v2.
fn public_jwk(key: &EncodingKey, algorithm: Algorithm) -> Option<serde_json::Value> {
    if algorithm == Algorithm::EdDSA {
        use aws_lc_rs::signature::KeyPair;
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.as_bytes())
            .ok()?;
        let x = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            pair.public_key().as_ref(),
        );
        return Some(serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x}));
    }
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(key, algorithm).ok()?;
    serde_json::to_value(&jwk).ok()
}

/// Reads one type of PEM private key.
type PemLoader = fn(&[u8]) -> jsonwebtoken::errors::Result<EncodingKey>;

/// A PEM private key: the key `authgate token` signs with, and its public half for verifying.
fn private_key(
    pem: &[u8],
    kid: Option<String>,
    allowed: &[Algorithm],
) -> Result<(VerificationKey, SigningKey), String> {
    let candidates: [(PemLoader, &[Algorithm]); 3] = [
        (
            EncodingKey::from_rsa_pem,
            &[
                Algorithm::RS256,
                Algorithm::PS256,
                Algorithm::RS384,
                Algorithm::PS384,
                Algorithm::RS512,
                Algorithm::PS512,
            ],
        ),
        (
            EncodingKey::from_ec_pem,
            &[Algorithm::ES256, Algorithm::ES384],
        ),
        (EncodingKey::from_ed_pem, &[Algorithm::EdDSA]),
    ];
    for (load, algorithms) in candidates {
        let Ok(key) = load(pem) else { continue };
        for algorithm in algorithms.iter().filter(|a| allowed.contains(a)) {
            // The public half, as a JWK, goes through the same checks as any other key.
            let Some(mut jwk) = public_jwk(&key, *algorithm) else {
                continue;
            };
            if let Some(object) = jwk.as_object_mut() {
                object.remove("alg");
                object.remove("kid");
                if let Some(kid) = &kid {
                    object.insert("kid".into(), kid.clone().into());
                }
            }
            let verification = keys::from_jwk(&jwk, Origin::Local, allowed)?;
            return Ok((
                verification,
                SigningKey {
                    key,
                    algorithm: *algorithm,
                    kid,
                },
            ));
        }
        return Err("none of the issuer's `algorithms` fits this private key".into());
    }
    Err("it is not a PEM RSA, EC (P-256, P-384) or Ed25519 private key".into())
}
