//! `[token_service]`: validation of the gateway's own token issuer — its signing keys, users,
//! clients, lifetimes, store and login limits — and the issuer entry through which the gateway
//! verifies its own tokens like any other issuer's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use toml::Spanned;

use super::issuers::published_key;
use super::raw::{RawTokenService, Text};
use super::{IssuerSettings, KeySource, Provision, SigningKey, Validator};
use crate::key_material::{self as keys, KeySet, VerificationKey};
use crate::passwords::SecretHash;
use crate::users::{self, UserTable};

/// The validated `[token_service]`.
#[derive(Debug, Clone)]
pub struct TokenServiceSettings {
    /// The issuer id routes name in `issuers = [...]`.
    pub id: String,
    /// The `iss` of the tokens it issues.
    pub issuer: String,
    /// The `aud` of the tokens it issues.
    pub audience: String,
    /// Where its endpoints are served on the gateway listener (`/auth`: `/auth/login`, …).
    pub path: String,
    /// Signing keys: the first signs, all are published.
    pub keys: Vec<PublishedKey>,
    /// Lifetime of access tokens.
    pub access_ttl: Duration,
    /// Absolute lifetime of a refresh-token family (from login).
    pub refresh_ttl: Duration,
    /// A refresh token unused this long expires.
    pub refresh_idle: Duration,
    /// A retired refresh token presented within this time of its rotation is refused without
    /// revoking its family (two tabs refreshing at once); later, it is reuse.
    pub reuse_grace: Duration,
    /// Users who may log in.
    pub users: Arc<UserTable>,
    /// Clients of the client-credentials grant, by id.
    pub clients: Arc<HashMap<String, Client>>,
    /// Where refresh tokens and revocations are kept.
    pub store: StoreLocation,
    /// Brute-force limits on login.
    pub login_limit: LoginLimit,
}

/// A key the token service signs with and publishes.
#[derive(Debug, Clone)]
pub struct PublishedKey {
    /// The public half, ready to verify with.
    pub verification: VerificationKey,
    /// The private key, with its `kid` set.
    pub signing: SigningKey,
    /// The public half, as served in the JWKS.
    pub public_jwk: serde_json::Value,
}

/// Where the token service keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A redb file (the default: `{data_dir}/token-store.redb`).
    Embedded(PathBuf),
    /// Process memory only: refresh tokens and revocations are lost at exit.
    Memory,
    /// The Redis of `[state]`, shared by every replica.
    Redis(super::RedisSettings),
}

/// A client of the client-credentials grant.
#[derive(Debug, Clone)]
pub struct Client {
    /// The client id (the `sub` of its tokens).
    pub id: String,
    /// Its secret's hash.
    pub secret: SecretHash,
    /// The scopes it may be granted.
    pub scopes: Vec<String>,
    /// A disabled client gets no tokens.
    pub disabled: bool,
    /// The plan its tokens' callers are on (`None`: `[consumers] default_plan`).
    pub plan: Option<String>,
}

/// Failed-login limits: more failures than this within `window` → 429.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLimit {
    /// Failures allowed per username.
    pub per_user: u32,
    /// Failures allowed per client address.
    pub per_client: u32,
    /// The window failures are counted in (and the longest Retry-After).
    pub window: Duration,
}

/// The issuer id when `id` is not set.
pub const DEFAULT_ID: &str = "authgate";

/// The signing key's file name in the data directory when `signing_keys` is not set.
pub const GENERATED_KEY_FILE: &str = "token-signing-key.pem";

impl TokenServiceSettings {
    /// The issuer entry through which the gateway verifies the tokens it issued.
    pub fn issuer_settings(&self) -> IssuerSettings {
        let mut algorithms: Vec<Algorithm> = Vec::new();
        for key in &self.keys {
            if !algorithms.contains(&key.signing.algorithm) {
                algorithms.push(key.signing.algorithm);
            }
        }
        IssuerSettings {
            id: self.id.clone(),
            issuer: self.issuer.clone(),
            audiences: vec![self.audience.clone()],
            algorithms,
            keys: KeySource::Static(self.key_set()),
            signing: self.keys.first().map(|k| k.signing.clone()),
            leeway: Duration::from_secs(30),
            required_for_ready: false,
            roles_claim: "roles".into(),
            subject_claim: "sub".into(),
            // RFC 9068 §4: a resource server checks that an access token says it is one.
            typ: Some("at+jwt".into()),
        }
    }

    /// Every signing key's public half, as a key set to verify with.
    pub fn key_set(&self) -> KeySet {
        KeySet::new(self.keys.iter().map(|k| k.verification.clone()).collect())
    }

    /// The JWK Set of every signing key.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self.keys.iter().map(|k| k.public_jwk.clone()).collect();
        serde_json::json!({ "keys": keys })
    }
}

impl Validator<'_> {
    pub(super) fn token_service(
        &mut self,
        spanned: &Spanned<RawTokenService>,
        data_dir: &Path,
        plans: &std::collections::BTreeMap<String, super::Plan>,
        state: &super::StateBackend,
    ) -> Option<TokenServiceSettings> {
        let raw = spanned.get_ref();
        let id = match &raw.id {
            Some(id) => self.text(id)?,
            None => DEFAULT_ID.to_string(),
        };
        let issuer = self.text(&raw.issuer)?;
        if issuer.is_empty() {
            self.error(raw.issuer.span(), "`issuer` must not be empty");
        }
        let audience = self.text(&raw.audience)?;
        let path = match &raw.path {
            // Carry on after a bad value, so that one run reports every problem.
            Some(text) => self
                .endpoint_path(text)
                .unwrap_or_else(|| "/auth".to_string()),
            None => "/auth".to_string(),
        };
        let keys = match &raw.signing_keys {
            Some(files) if files.is_empty() => {
                self.error(spanned.span(), "`signing_keys` needs at least one key");
                return None;
            }
            Some(files) => files
                .iter()
                .map(|file| self.signing_key(file))
                .collect::<Option<Vec<_>>>()?,
            None if matches!(state, super::StateBackend::Redis(_)) => {
                // Each replica would generate a key of its own, and tokens signed by one would
                // not verify on the others.
                self.error(
                    spanned.span(),
                    "with [state] backend = \"redis\" every replica must sign with the same keys: set `signing_keys`",
                );
                return None;
            }
            None => vec![self.generated_key(data_dir, spanned.span())?],
        };
        let shared = match state {
            super::StateBackend::Redis(settings) => Some(settings),
            super::StateBackend::Embedded => None,
        };
        let store = match raw.store.as_ref() {
            None => match shared {
                Some(settings) => StoreLocation::Redis(settings.clone()),
                None => StoreLocation::Embedded(data_dir.join("token-store.redb")),
            },
            Some(text) => match (self.text(text)?.as_str(), shared) {
                ("embedded", _) => StoreLocation::Embedded(data_dir.join("token-store.redb")),
                ("memory", _) => StoreLocation::Memory,
                ("redis", Some(settings)) => StoreLocation::Redis(settings.clone()),
                ("redis", None) => {
                    self.error(
                        text.span(),
                        "store \"redis\" needs [state] backend = \"redis\"",
                    );
                    StoreLocation::Memory
                }
                (other, _) => {
                    self.error(
                        text.span(),
                        format!("store `{other}` is not \"embedded\", \"memory\" or \"redis\""),
                    );
                    StoreLocation::Memory
                }
            },
        };
        let users = match &raw.users {
            Some(file) => {
                let path = self.path(file)?;
                if !self.readable(&path, file.span(), "users file") {
                    UserTable::default()
                } else {
                    let names: Vec<String> = plans.keys().cloned().collect();
                    match users::load_file(&path, Some(&names)) {
                        Ok(table) => table,
                        Err(diagnostics) => {
                            self.errors.extend(diagnostics);
                            UserTable::default()
                        }
                    }
                }
            }
            None => UserTable::default(),
        };
        let clients = self.clients(raw, plans);
        let limit = &raw.login_limit;
        let login_limit = LoginLimit {
            per_user: count(self.positive(limit.per_user.as_ref(), 5, "per_user")),
            per_client: count(self.positive(limit.per_client.as_ref(), 50, "per_client")),
            window: self.duration(limit.window.as_ref(), Duration::from_secs(15 * 60)),
        };
        let access_ttl = self.duration(raw.access_ttl.as_ref(), Duration::from_secs(15 * 60));
        let refresh_ttl = self.duration(raw.refresh_ttl.as_ref(), Duration::from_secs(30 * 86400));
        let refresh_idle = self.duration(raw.refresh_idle.as_ref(), Duration::from_secs(7 * 86400));
        if access_ttl.is_zero() {
            let span = raw
                .access_ttl
                .as_ref()
                .map_or(spanned.span(), Spanned::span);
            self.error(span, "`access_ttl` must be longer than zero");
        }
        Some(TokenServiceSettings {
            id,
            issuer,
            audience,
            path,
            keys,
            access_ttl,
            refresh_ttl,
            refresh_idle,
            reuse_grace: self.duration(raw.reuse_grace.as_ref(), Duration::ZERO),
            users: Arc::new(users),
            clients: Arc::new(clients),
            store,
            login_limit,
        })
    }

    pub(super) fn endpoint_path(&mut self, text: &Text) -> Option<String> {
        let value = self.text(text)?;
        let trimmed = value.trim_end_matches('/');
        let valid = trimmed.starts_with('/')
            && !trimmed.contains(['?', '#', '%'])
            && trimmed
                .split('/')
                .all(|segment| segment != "." && segment != "..");
        if !valid {
            self.error(
                text.span(),
                format!("`{value}` is not a path like \"/auth\" (it may not be \"/\")"),
            );
            return None;
        }
        Some(trimmed.to_string())
    }

    fn signing_key(&mut self, file: &Text) -> Option<PublishedKey> {
        let path = self.path(file)?;
        let asymmetric: Vec<Algorithm> = keys::SUPPORTED
            .iter()
            .copied()
            .filter(|a| !keys::is_hmac(*a))
            .collect();
        self.published(&path, &asymmetric, file.span())
    }

    /// The signing key kept in the data directory, generated (Ed25519, mode 0600) the first time.
    fn generated_key(
        &mut self,
        data_dir: &Path,
        span: std::ops::Range<usize>,
    ) -> Option<PublishedKey> {
        let path = data_dir.join(GENERATED_KEY_FILE);
        if self.provision == Provision::Nothing && !path.exists() {
            // A check proves the rest of the config without leaving a key behind.
            self.notes.push(format!(
                "the token service's signing key will be generated at {} when the gateway starts",
                path.display()
            ));
            let pem = pem_private_key(generate_pkcs8().ok()?.as_ref());
            return match published_key(pem.as_bytes(), None, &[Algorithm::EdDSA]) {
                Ok((verification, signing, public_jwk)) => Some(PublishedKey {
                    verification,
                    signing,
                    public_jwk,
                }),
                Err(reason) => {
                    self.error(span, reason);
                    None
                }
            };
        }
        match ensure_generated_key(&path) {
            Ok(true) => self.notes.push(format!(
                "generated the token service's signing key at {}",
                path.display()
            )),
            Ok(false) => {}
            Err(reason) => {
                self.error(
                    span,
                    format!(
                        "{}: {reason} (set `data_dir` to a writable directory)",
                        path.display()
                    ),
                );
                return None;
            }
        }
        self.sources.push(path.clone());
        self.published(&path, &[Algorithm::EdDSA], span)
    }

    /// The private key in the PEM file at `path`, for one of `allowed`, with its public half.
    fn published(
        &mut self,
        path: &Path,
        allowed: &[Algorithm],
        span: std::ops::Range<usize>,
    ) -> Option<PublishedKey> {
        let loaded = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|pem| published_key(&pem, None, allowed));
        match loaded {
            Ok((verification, signing, public_jwk)) => Some(PublishedKey {
                verification,
                signing,
                public_jwk,
            }),
            Err(reason) => {
                self.error(span, format!("{}: {reason}", path.display()));
                None
            }
        }
    }

    fn clients(
        &mut self,
        raw: &RawTokenService,
        plans: &std::collections::BTreeMap<String, super::Plan>,
    ) -> HashMap<String, Client> {
        let mut clients = HashMap::new();
        for spanned in &raw.clients {
            let client = spanned.get_ref();
            let Some(id) = self.text(&client.id) else {
                continue;
            };
            let Some(hash) = self.text(&client.secret_hash) else {
                continue;
            };
            let secret = match SecretHash::parse(&hash) {
                Ok(secret) => secret,
                Err(message) => {
                    self.error(client.secret_hash.span(), message);
                    continue;
                }
            };
            let scopes = client.scopes.iter().filter_map(|s| self.text(s)).collect();
            let plan = client
                .plan
                .as_ref()
                .and_then(|p| self.plan_reference(p, plans));
            let entry = Client {
                id: id.clone(),
                secret,
                scopes,
                disabled: client.disabled,
                plan,
            };
            if clients.insert(id.clone(), entry).is_some() {
                self.error(client.id.span(), format!("client `{id}` is listed twice"));
            }
        }
        clients
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Creates an Ed25519 private key at `path` unless one is there; whether it did. `create_new`
/// makes two processes starting at once agree on one key.
fn ensure_generated_key(path: &Path) -> Result<bool, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create its directory: {e}"))?;
    }
    let pem = pem_private_key(generate_pkcs8()?.as_ref());
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match file {
        Ok(mut file) => file
            .write_all(pem.as_bytes())
            .map(|()| true)
            .map_err(|e| format!("cannot write the generated key: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(format!("cannot create the generated key: {e}")),
    }
}

/// A new Ed25519 private key as a PKCS#8 document.
fn generate_pkcs8() -> Result<aws_lc_rs::pkcs8::Document, String> {
    aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
        .map_err(|_| "cannot generate a key".to_string())
}

/// A PKCS#8 document as a PEM `PRIVATE KEY` block.
fn pem_private_key(der: &[u8]) -> String {
    let text = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in text.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}
