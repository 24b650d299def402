//! The serde mirror of gateway.toml, exactly as users write it. Unknown keys are errors (found
//! all at once by [`super::unknown_keys`], hence no `deny_unknown_fields` here), and every value
//! that validation may reject keeps its span so the error can name file:line:col.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A string value with the place it was written.
pub type Text = Spanned<String>;

/// The whole file.
#[derive(Debug, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub identity: RawIdentity,
    #[serde(default)]
    pub upstreams: BTreeMap<String, Spanned<RawUpstream>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub issuers: Vec<Spanned<RawIssuer>>,
    pub api_keys: Option<Spanned<RawApiKeys>>,
    #[serde(default)]
    pub log: RawLog,
    pub token_service: Option<Spanned<RawTokenService>>,
    #[serde(default)]
    pub plans: BTreeMap<String, Spanned<RawPlan>>,
    pub consumers: Option<Spanned<RawConsumers>>,
    pub state: Option<Spanned<RawState>>,
    pub forward_auth: Option<Spanned<RawForwardAuth>>,
    /// Not spanned: `[pricing.models."m"]` alone makes `[pricing]` a table without a place.
    pub pricing: Option<RawPricing>,
    pub sign_in: Option<Spanned<RawSignIn>>,
}

/// `[sign_in]`.
#[derive(Debug, Deserialize)]
pub struct RawSignIn {
    pub issuer: Text,
    pub client_id: Text,
    pub client_secret: Option<Text>,
    pub client_secret_file: Option<Text>,
    pub scopes: Option<Vec<Text>>,
    pub callback: Option<Text>,
    pub logout: Option<Text>,
    pub start: Option<Text>,
    pub logout_redirect: Option<Text>,
    pub cookie: Option<Text>,
    pub domain: Option<Text>,
    pub cookie_secure: Option<bool>,
    pub cookie_secret: Option<Text>,
    pub cookie_secret_file: Option<Text>,
    pub session_idle: Option<Text>,
    pub session_max: Option<Text>,
}

/// `[forward_auth]`.
#[derive(Debug, Deserialize)]
pub struct RawForwardAuth {
    pub path: Option<Text>,
    pub trusted: Option<Vec<Text>>,
    pub deny_status: Option<Spanned<i64>>,
}

/// `[pricing]`.
#[derive(Debug, Deserialize)]
pub struct RawPricing {
    pub file: Option<Text>,
    #[serde(default)]
    pub models: BTreeMap<String, Spanned<RawModelPrice>>,
    pub max_output_tokens: Option<Spanned<i64>>,
}

/// `[pricing.models."NAME"]`: USD per million tokens.
#[derive(Debug, Deserialize)]
pub struct RawModelPrice {
    pub input_per_million: Option<Spanned<f64>>,
    pub output_per_million: Option<Spanned<f64>>,
    pub cached_input_per_million: Option<Spanned<f64>>,
    pub cache_creation_per_million: Option<Spanned<f64>>,
}

/// One `[plans.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlan {
    pub rate: Option<Text>,
    pub burst: Option<Spanned<i64>>,
    pub quota: Option<Text>,
    pub tokens: Option<Text>,
    pub budget: Option<Text>,
}

/// `[consumers]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsumers {
    pub default_plan: Option<Text>,
    pub anonymous_plan: Option<Text>,
    pub plan_claim: Option<Text>,
    pub headers: Option<bool>,
}

/// `[state]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub data_dir: Option<Text>,
    pub backend: Option<Text>,
    pub url: Option<Text>,
    pub timeout: Option<Text>,
    pub on_failure: Option<Text>,
}

/// `[token_service]`.
#[derive(Debug, Deserialize)]
pub struct RawTokenService {
    pub id: Option<Text>,
    pub issuer: Text,
    pub audience: Text,
    pub path: Option<Text>,
    pub signing_keys: Option<Vec<Text>>,
    pub access_ttl: Option<Text>,
    pub refresh_ttl: Option<Text>,
    pub refresh_idle: Option<Text>,
    pub reuse_grace: Option<Text>,
    pub users: Option<Text>,
    #[serde(default)]
    pub clients: Vec<Spanned<RawClient>>,
    pub store: Option<Text>,
    pub data_dir: Option<Text>,
    #[serde(default)]
    pub login_limit: RawLoginLimit,
}

/// `[[token_service.clients]]`.
#[derive(Debug, Deserialize)]
pub struct RawClient {
    pub id: Text,
    pub secret_hash: Text,
    #[serde(default)]
    pub scopes: Vec<Text>,
    #[serde(default)]
    pub disabled: bool,
    pub plan: Option<Text>,
}

/// `[token_service.login_limit]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawLoginLimit {
    pub per_user: Option<Spanned<i64>>,
    pub per_client: Option<Spanned<i64>>,
    pub window: Option<Text>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawLog {
    pub format: Option<Text>,
}

/// `[api_keys]`.
#[derive(Debug, Deserialize)]
pub struct RawApiKeys {
    pub header: Option<Text>,
    pub file: Option<Text>,
    #[serde(default)]
    pub keys: Vec<Spanned<crate::api_keys::RawKey>>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawServer {
    pub http: Option<Text>,
    pub https: Option<Text>,
    pub header_timeout: Option<Text>,
    pub handshake_timeout: Option<Text>,
    pub idle_timeout: Option<Text>,
    pub max_body: Option<Text>,
    pub max_header_size: Option<Text>,
    pub max_connections: Option<Spanned<i64>>,
    pub shutdown_grace: Option<Text>,
    pub workers: Option<Spanned<i64>>,
    #[serde(default)]
    pub trusted_proxies: Vec<Text>,
    pub token_cache_size: Option<Spanned<i64>>,
    pub generate_traceparent: Option<bool>,
    pub upgrades: Option<Vec<Text>>,
}

/// `[admin]`.
#[derive(Debug, Deserialize)]
pub struct RawAdmin {
    pub listen: Text,
}

/// `[tls]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawTls {
    #[serde(default)]
    pub certificates: Vec<Spanned<RawCertificate>>,
    pub min_version: Option<Text>,
}

/// One `[[tls.certificates]]` entry.
#[derive(Debug, Deserialize)]
pub struct RawCertificate {
    pub cert: Text,
    pub key: Text,
}

/// `[identity]`: the header names the upstream receives and the prefixes stripped from clients.
#[derive(Debug, Default, Deserialize)]
pub struct RawIdentity {
    pub subject: Option<Text>,
    pub method: Option<Text>,
    pub issuer: Option<Text>,
    pub scopes: Option<Text>,
    pub key_id: Option<Text>,
    #[serde(default)]
    pub claims: BTreeMap<String, Text>,
    pub strip: Option<Vec<Text>>,
    pub forward_credentials: Option<bool>,
    pub assertion: Option<Spanned<RawAssertion>>,
}

/// `[identity.assertion]`.
#[derive(Debug, Deserialize)]
pub struct RawAssertion {
    pub private_key: Text,
    pub audience: Text,
    pub alg: Option<Text>,
    pub ttl: Option<Text>,
    pub issuer: Option<Text>,
    pub key_id: Option<Text>,
    pub header: Option<Text>,
}

/// One `[upstreams.NAME]`.
#[derive(Debug, Deserialize)]
pub struct RawUpstream {
    pub targets: Vec<Text>,
    pub connect_timeout: Option<Text>,
    pub timeout: Option<Text>,
    pub eject_for: Option<Text>,
    pub preserve_host: Option<bool>,
    pub ca: Option<Text>,
    pub credentials: Option<Spanned<RawCredentials>>,
    pub max_connections: Option<Spanned<i64>>,
    pub max_pending: Option<Spanned<i64>>,
    pub max_idle: Option<Spanned<i64>>,
    pub idle_timeout: Option<Text>,
    pub protocol: Option<Text>,
}

/// `credentials = { header = "…", value = "…" | value_file = "…" }` or `{ query = "…", value = "…" }`.
#[derive(Debug, Deserialize)]
pub struct RawCredentials {
    pub header: Option<Text>,
    pub query: Option<Text>,
    pub value: Option<Text>,
    pub value_file: Option<Text>,
}

/// One `[[routes]]` entry.
#[derive(Debug, Deserialize)]
pub struct RawRoute {
    pub id: Text,
    pub host: Option<Text>,
    pub path: Option<Text>,
    pub methods: Option<Vec<Text>>,
    pub upstream: Text,
    pub public: Option<bool>,
    pub auth: Option<Vec<Text>>,
    pub issuers: Option<Vec<Text>>,
    pub scopes: Option<Vec<Text>>,
    pub roles: Option<Vec<Text>>,
    pub claims: Option<BTreeMap<String, Spanned<toml::Value>>>,
    pub cookie: Option<Text>,
    pub forward_credentials: Option<bool>,
    pub rate: Option<Text>,
    pub burst: Option<Spanned<i64>>,
    pub usage: Option<Text>,
}

/// One `[[issuers]]` entry.
#[derive(Debug, Deserialize)]
pub struct RawIssuer {
    pub id: Text,
    pub issuer: Text,
    #[serde(default)]
    pub audiences: Vec<Text>,
    pub algorithms: Option<Vec<Text>>,
    pub discovery: Option<bool>,
    pub jwks_url: Option<Text>,
    pub jwks_file: Option<Text>,
    pub ca: Option<Text>,
    pub keys: Option<Vec<Text>>,
    pub secret: Option<Text>,
    pub secret_file: Option<Text>,
    pub private_key: Option<Text>,
    pub key_id: Option<Text>,
    pub refresh: Option<Text>,
    pub leeway: Option<Text>,
    pub max_staleness: Option<Text>,
    pub refetch_cooldown: Option<Text>,
    pub required_for_ready: Option<bool>,
    pub roles_claim: Option<Text>,
    pub subject_claim: Option<Text>,
    pub typ: Option<Text>,
}
