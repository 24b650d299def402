//! gateway.toml → a validated, typed [`Config`].
//!
//! Loading runs in three steps: `${VAR}` interpolation happens per string value (so a secret
//! holding TOML syntax cannot change the file's structure), serde reads the raw types in
//! `raw` while `unknown_keys` collects every key they lack (each an error), and `Validator`
//! turns them into typed settings: it parses
//! durations, sizes and addresses, reads the certificate files, resolves route → upstream
//! references and checks names are unique. It collects every problem rather than stopping at the
//! first, each as `file:line:col: message`.

mod credentials;
mod forward_auth;
mod issuers;
mod metering;
mod plans;
mod raw;
mod routes;
mod sign_in;
mod state;
mod token_service;
pub mod units;
mod unknown_keys;
mod upstreams;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use ipnet::IpNet;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::api_keys::KeyTable;

pub use crate::diagnostic::{line_and_column, unknown_plan, ConfigErrors, Diagnostic};
pub use credentials::{CredentialPlace, UpstreamCredential};
pub use forward_auth::ForwardAuthSettings;
pub use issuers::{IssuerSettings, KeySource, RemoteLocation, RemoteSettings, SigningKey};
pub use metering::{ModelPrice, PricingSettings, UsageFormat};
pub use plans::{
    parse_quota, parse_rate, ConsumerSettings, Plan, Quota, QuotaWindow, Rate, RateLimit,
    DEFAULT_DATA_DIR,
};
use raw::{RawConfig, Text};
pub use routes::{AuthRequirement, HostPattern, RouteSettings, RouteTarget};
pub use sign_in::{
    CookieSettings, Secret, SessionStoreLocation, SignInSettings, MIN_COOKIE_SECRET, SESSIONS_FILE,
};
pub use state::{redacted_url, OnFailure, RedisSettings, StateBackend};
pub use token_service::{
    Client, LoginLimit, PublishedKey, StoreLocation, TokenServiceSettings, GENERATED_KEY_FILE,
};
pub use upstreams::{parse_target, PoolLimits, Target, UpstreamProtocol, UpstreamSettings};

/// The upstream name routes use for the built-in echo responder.
pub const BUILTIN_ECHO: &str = "builtin:echo";

/// The route `upstream` of a route that only answers forward-auth decisions.
pub const NO_UPSTREAM: &str = "none";

/// Lowercases `name` and reads `_` as `-`: how identity-header names and `strip` prefixes
/// are compared, so `X_Auth_Subject` is caught as `x-auth-subject`.
pub fn normalize_header_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// A complete, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was loaded from (paths inside it are resolved against its directory).
    pub file: PathBuf,
    /// `[server]`.
    pub server: ServerSettings,
    /// `[admin] listen`, when the admin listener is enabled.
    pub admin: Option<SocketAddr>,
    /// `[[tls.certificates]]`, loaded; the first is the default for unknown SNI names.
    pub certificates: Vec<Certificate>,
    /// `[tls] min_version`: the oldest TLS version the HTTPS listener speaks.
    pub tls_min_version: TlsVersion,
    /// `[identity]`.
    pub identity: IdentitySettings,
    /// Every upstream by name: the `[upstreams.NAME]` tables, plus one per URL a route names.
    pub upstreams: BTreeMap<String, UpstreamSettings>,
    /// `[[routes]]`, in file order.
    pub routes: Vec<RouteSettings>,
    /// `[[issuers]]`, in file order.
    pub issuers: Vec<IssuerSettings>,
    /// `[api_keys]`, with its keys loaded.
    pub api_keys: Option<ApiKeySettings>,
    /// Every file the configuration names (certificates, keys, CAs, secrets, the keys file).
    pub sources: Vec<PathBuf>,
    /// `[log] format = "json"`: log lines as JSON objects (default: readable text).
    pub log_json: bool,
    /// `[token_service]`: the gateway's own token issuer (its issuer is also in `issuers`).
    pub token_service: Option<TokenServiceSettings>,
    /// What loading found a start would create (a generated key, say), for `check` to report.
    pub notes: Vec<String>,
    /// `[plans.NAME]`, by name.
    pub plans: BTreeMap<String, Plan>,
    /// `[consumers]`.
    pub consumers: ConsumerSettings,
    /// `[state] data_dir`: where every file the gateway writes lives (quotas, token store).
    pub data_dir: PathBuf,
    /// `[forward_auth]`, when other proxies may ask the gateway for decisions.
    pub forward_auth: Option<ForwardAuthSettings>,
    /// `[state] backend`: where the state a fleet shares is kept.
    pub state: StateBackend,
    /// `[pricing]`: what metered usage costs.
    pub pricing: PricingSettings,
    /// `[sign_in]`: browser sign-in through an OpenID Connect provider.
    pub sign_in: Option<SignInSettings>,
}

/// A TLS protocol version the HTTPS listener may be limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3 (Mozilla's "intermediate" profile; the default).
    #[default]
    Tls12,
    /// TLS 1.3 only (Mozilla's "modern" profile).
    Tls13,
}

/// `[api_keys]`: where keys are presented and the keys themselves.
#[derive(Debug, Clone)]
pub struct ApiKeySettings {
    /// The request header carrying the key.
    pub header: HeaderName,
    /// The keys file, watched for changes.
    pub file: Option<PathBuf>,
    /// The version of the keys file that `table` was read from.
    pub file_version: crate::fingerprint::Fingerprint,
    /// Keys written inline in gateway.toml.
    pub inline: Arc<KeyTable>,
    /// File and inline keys, as loaded.
    pub table: Arc<KeyTable>,
    /// The plan names keys may name, for checking the keys file when it is reloaded alone.
    pub plans: Arc<[String]>,
}

/// `[server]`: listeners and the limits that protect them.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Plain HTTP listener.
    pub http: Option<SocketAddr>,
    /// TLS listener.
    pub https: Option<SocketAddr>,
    /// A client must send a request's complete head within this time.
    pub header_timeout: Duration,
    /// A TLS handshake must complete within this time.
    pub handshake_timeout: Duration,
    /// A connection with no request in flight and no bytes moving is closed after this.
    pub idle_timeout: Duration,
    /// Largest request body forwarded; larger ones get 413.
    pub max_body: u64,
    /// Largest request head accepted; larger ones get 431.
    pub max_header_size: usize,
    /// Connections served at once across all listeners; further ones wait in the backlog.
    pub max_connections: usize,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Runtime worker threads; 0 = one per available core.
    pub workers: usize,
    /// Peers whose X-Forwarded-* / Forwarded / X-Request-Id headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Verified tokens remembered until their `exp`; 0 turns the cache off.
    pub token_cache_size: usize,
    /// Add a W3C `traceparent` to requests that arrive without a valid one.
    pub generate_traceparent: bool,
    /// Protocols an HTTP/1.1 upgrade may switch to, lowercase (default: `websocket`).
    pub upgrades: Vec<String>,
}

/// A TLS certificate chain with its key, ready for rustls.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// The certificate file, for messages.
    pub file: PathBuf,
    /// DNS names from the certificate's subject alternative names, lowercase; may hold
    /// wildcards such as `*.example.com`.
    pub names: Vec<String>,
    /// Chain and signing key.
    pub key: Arc<CertifiedKey>,
}

/// `[identity]`: what the upstream learns about the caller, and which incoming headers are
/// removed so that a client can never pose as someone else.
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    /// Header carrying the caller's subject.
    pub subject: HeaderName,
    /// Header carrying how the caller authenticated.
    pub method: HeaderName,
    /// Header carrying the token issuer.
    pub issuer: HeaderName,
    /// Header carrying the granted scopes.
    pub scopes: HeaderName,
    /// Header carrying the API key id.
    pub key_id: HeaderName,
    /// Claim name → header.
    pub claims: Vec<(String, HeaderName)>,
    /// Incoming headers starting with these (lowercase, `_` read as `-`) are removed.
    pub strip_prefixes: Vec<String>,
    /// Whether `Authorization`, the API key header and the token cookies reach the upstream
    /// (a route may say otherwise for itself).
    pub forward_credentials: bool,
    /// Every cookie a route reads a bearer token from: removed before forwarding on every route
    /// that does not forward credentials, so a token meant for one route reaches no upstream.
    pub token_cookies: Vec<String>,
    /// The signed identity assertion, when configured.
    pub assertion: Option<AssertionSettings>,
}

/// `[identity.assertion]`: a short-lived JWT, signed by the gateway, stating the caller's
/// identity, so a backend can prove a request came through the gateway.
#[derive(Debug, Clone)]
pub struct AssertionSettings {
    /// The header it travels in.
    pub header: HeaderName,
    /// The signing key (its `kid` is set).
    pub signing: SigningKey,
    /// The public key as a JWK, served at `/.well-known/jwks.json` on the admin listener.
    pub public_jwk: serde_json::Value,
    /// Lifetime of each assertion.
    pub ttl: Duration,
    /// `aud` of each assertion.
    pub audience: String,
    /// `iss` of each assertion.
    pub issuer: String,
}

impl IdentitySettings {
    /// Every header name the gateway itself sets to describe the caller.
    pub fn injected_headers(&self) -> impl Iterator<Item = &HeaderName> {
        [
            &self.subject,
            &self.method,
            &self.issuer,
            &self.scopes,
            &self.key_id,
        ]
        .into_iter()
        .chain(self.claims.iter().map(|(_, header)| header))
        .chain(self.assertion.iter().map(|a| &a.header))
    }
}

/// Whether loading a configuration may create what a start needs (the token service's
/// generated signing key), or must leave the file system exactly as it found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provision {
    /// `run` and reloads: create what is missing.
    Create,
    /// `check`, `token`, `users add`: write nothing; what a start would create is made up in
    /// memory so that the rest can still be validated.
    Nothing,
}

impl Config {
    /// Reads and validates the file at `path` for serving: what a start needs and does not
    /// find (the token service's signing key) is created.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::load_with(path, Provision::Create)
    }

    /// Reads and validates the file at `path` as [`Config::load`] does, writing nothing.
    pub fn inspect(path: &Path) -> Result<Config, ConfigErrors> {
        Config::load_with(path, Provision::Nothing)
    }

    fn load_with(path: &Path, provision: Provision) -> Result<Config, ConfigErrors> {
        let source = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::one(Diagnostic::whole_file(
                path,
                format!("cannot read the config file: {e}"),
            ))
        })?;
        Config::parse_with(&source, path, provision)
    }

    /// Validates `source` as if it had been read from `file` (relative paths in it are resolved
    /// against `file`'s directory), creating what a start needs.
    pub fn parse(source: &str, file: &Path) -> Result<Config, ConfigErrors> {
        Config::parse_with(source, file, Provision::Create)
    }

    /// Validates `source` as if it had been read from `file`.
    pub fn parse_with(
        source: &str,
        file: &Path,
        provision: Provision,
    ) -> Result<Config, ConfigErrors> {
        let (raw, unknown): (RawConfig, _) = unknown_keys::deserialize(source).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim().to_string();
            ConfigErrors::one(Diagnostic::at(file, source, span, message))
        })?;
        // Unknown keys are errors, reported with everything validation finds in the same run.
        let errors = unknown
            .into_iter()
            .map(|key| Diagnostic::at(file, source, key.span, key.message))
            .collect();
        let mut validator = Validator {
            file,
            source,
            base_dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
            provision,
            errors,
            sources: Vec::new(),
            notes: Vec::new(),
        };
        let mut config = validator.config(raw);
        if validator.errors.is_empty() {
            config.notes = validator.notes;
            Ok(config)
        } else {
            // In file order, the config itself first: the way an editor walks them.
            let mut diagnostics = validator.errors;
            diagnostics.sort_by(|a, b| {
                (a.file != file, &a.file, a.line, a.column).cmp(&(
                    b.file != file,
                    &b.file,
                    b.line,
                    b.column,
                ))
            });
            Err(ConfigErrors {
                diagnostics,
                named: config.sources,
            })
        }
    }
}

/// Turns raw values into typed ones, recording a [`Diagnostic`] for each problem and carrying on
/// with a placeholder so that one run reports everything.
struct Validator<'a> {
    file: &'a Path,
    source: &'a str,
    base_dir: PathBuf,
    provision: Provision,
    errors: Vec<Diagnostic>,
    /// Every file the config names, for the reload watcher.
    sources: Vec<PathBuf>,
    /// What a start would do beyond reading, for `check` to say.
    notes: Vec<String>,
}

impl Validator<'_> {
    fn error(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        self.errors
            .push(Diagnostic::at(self.file, self.source, span, message));
    }

    /// The string with `${VAR}` references replaced.
    fn text(&mut self, text: &Text) -> Option<String> {
        match units::interpolate(text.get_ref(), |name| std::env::var(name).ok()) {
            Ok(value) => Some(value),
            Err(message) => {
                self.error(text.span(), message);
                None
            }
        }
    }

    fn duration(&mut self, text: Option<&Text>, default: Duration) -> Duration {
        let Some(text) = text else { return default };
        let Some(value) = self.text(text) else {
            return default;
        };
        units::parse_duration(&value).unwrap_or_else(|message| {
            self.error(text.span(), message);
            default
        })
    }

    fn size(&mut self, text: Option<&Text>, default: u64) -> u64 {
        let Some(text) = text else { return default };
        let Some(value) = self.text(text) else {
            return default;
        };
        units::parse_size(&value).unwrap_or_else(|message| {
            self.error(text.span(), message);
            default
        })
    }

    fn address(&mut self, text: &Text) -> Option<SocketAddr> {
        let value = self.text(text)?;
        match value.parse() {
            Ok(address) => Some(address),
            Err(_) => {
                self.error(
                    text.span(),
                    format!(
                        "`{value}` is not an address: write it as IP:PORT, e.g. 127.0.0.1:8080"
                    ),
                );
                None
            }
        }
    }

    /// A path from the file, resolved against the config file's directory.
    /// Whether the file at `path` can be opened; if not, the error is reported at `span`, the
    /// line that names it (rather than at 1:1 of a file that is not there).
    fn readable(&mut self, path: &Path, span: std::ops::Range<usize>, what: &str) -> bool {
        match std::fs::File::open(path) {
            Ok(_) => true,
            Err(e) => {
                self.error(
                    span,
                    format!("cannot read the {what} {}: {e}", path.display()),
                );
                false
            }
        }
    }

    fn path(&mut self, text: &Text) -> Option<PathBuf> {
        let value = self.text(text)?;
        let path = self.base_dir.join(value);
        self.sources.push(path.clone());
        Some(path)
    }

    fn header_name(&mut self, text: Option<&Text>, default: &'static str) -> HeaderName {
        let Some(text) = text else {
            return HeaderName::from_static(default);
        };
        let value = self.text(text).unwrap_or_default();
        HeaderName::from_bytes(value.as_bytes()).unwrap_or_else(|_| {
            self.error(text.span(), format!("`{value}` is not a valid header name"));
            HeaderName::from_static(default)
        })
    }

    fn config(&mut self, mut raw: RawConfig) -> Config {
        let server = self.server(&raw.server);
        let admin = raw.admin.as_ref().and_then(|a| self.address(&a.listen));
        let certificates = raw
            .tls
            .certificates
            .iter()
            .filter_map(|c| self.certificate(c.get_ref()))
            .collect::<Vec<_>>();
        let tls_min_version = match &raw.tls.min_version {
            None => TlsVersion::default(),
            Some(text) => match self.text(text).as_deref() {
                Some("1.2") => TlsVersion::Tls12,
                Some("1.3") => TlsVersion::Tls13,
                Some(other) => {
                    self.error(
                        text.span(),
                        format!("TLS version `{other}` is not \"1.2\" or \"1.3\""),
                    );
                    TlsVersion::default()
                }
                None => TlsVersion::default(),
            },
        };
        if server.https.is_some() && raw.tls.certificates.is_empty() {
            let span = raw.server.https.as_ref().map_or(0..0, |t| t.span());
            self.error(
                span,
                "`https` needs at least one [[tls.certificates]] entry",
            );
        }
        let mut identity = self.identity(&raw.identity);
        let mut upstreams = BTreeMap::new();
        for (name, upstream) in &raw.upstreams {
            if let Some(settings) = self.upstream(name, upstream) {
                upstreams.insert(name.clone(), settings);
            }
        }
        let mut issuers = self.issuers(&raw.issuers);
        let plans = self.plans(&raw.plans);
        let consumers = self.consumers(&raw, &plans);
        let data_dir = self.data_dir(&raw);
        let state = self.state_backend(raw.state.as_ref().map(|s| s.get_ref()));
        let pricing = self.pricing(raw.pricing.as_ref());
        let token_service = raw
            .token_service
            .as_ref()
            .and_then(|t| self.token_service(t, &data_dir, &plans, &state));
        if let (Some(service), Some(raw_service)) = (&token_service, &raw.token_service) {
            // The gateway verifies its own tokens like any issuer's; ids and `iss` stay unique.
            let own = service.issuer_settings();
            if issuers
                .iter()
                .any(|i| i.id == own.id || i.issuer == own.issuer)
            {
                self.error(
                    raw_service.span(),
                    format!(
                        "the token service's id `{}` or issuer `{}` is also an [[issuers]] entry",
                        own.id, own.issuer
                    ),
                );
            }
            issuers.push(own);
        }
        // Routes are checked against what is configured, not what loaded: a keys file with an
        // error is reported once, not again as "no credential can reach this route".
        let api_keys_configured = raw.api_keys.is_some();
        let plan_names: Arc<[String]> = plans.keys().cloned().collect();
        let api_keys = raw
            .api_keys
            .take()
            .and_then(|keys| self.api_keys(keys, plan_names));
        let routes = self.routes(
            &raw.routes,
            &mut upstreams,
            &issuers,
            api_keys_configured,
            identity.forward_credentials,
            raw.sign_in.is_some(),
        );
        let sign_in = raw
            .sign_in
            .as_ref()
            .and_then(|s| self.sign_in(s, &issuers, &state, &data_dir));
        identity.token_cookies = routes
            .iter()
            .filter_map(|r| r.auth.cookie.clone())
            .collect();
        identity.token_cookies.sort();
        identity.token_cookies.dedup();
        let forward_auth = raw.forward_auth.as_ref().map(|fa| {
            let settings = self.forward_auth(fa);
            self.forward_auth_overlaps(fa.span(), &settings, token_service.as_ref(), &routes);
            settings
        });
        if forward_auth.is_none() {
            for raw_route in &raw.routes {
                if raw_route.get_ref().upstream.get_ref() == NO_UPSTREAM {
                    self.error(
                        raw_route.get_ref().upstream.span(),
                        "`upstream = \"none\"` routes only answer forward-auth: add a [forward_auth] section",
                    );
                }
            }
        }
        if server.http.is_none() && server.https.is_none() {
            self.error(0..0, "no listener: set `http` or `https` in [server]");
        }
        Config {
            file: self.file.to_path_buf(),
            server,
            admin,
            certificates,
            tls_min_version,
            identity,
            upstreams,
            routes,
            issuers,
            api_keys,
            token_service,
            plans,
            consumers,
            data_dir,
            forward_auth,
            state,
            pricing,
            sign_in,
            sources: std::mem::take(&mut self.sources),
            notes: Vec::new(),
            log_json: match &raw.log.format {
                None => false,
                Some(format) => match self.text(format).as_deref() {
                    Some("json") => true,
                    Some("text") | None => false,
                    Some(other) => {
                        self.error(
                            format.span(),
                            format!("log format `{other}` is not \"text\" or \"json\""),
                        );
                        false
                    }
                },
            },
        }
    }

    fn api_keys(
        &mut self,
        raw: toml::Spanned<raw::RawApiKeys>,
        plans: Arc<[String]>,
    ) -> Option<ApiKeySettings> {
        let span = raw.span();
        let raw = raw.into_inner();
        let header = self.header_name(raw.header.as_ref(), "x-api-key");
        let file = raw.file.as_ref().and_then(|f| self.path(f));
        let entries: Vec<_> = raw
            .keys
            .into_iter()
            .map(|k| {
                let span = k.span();
                (k.into_inner(), span)
            })
            .collect();
        let inline = match crate::api_keys::build(entries, self.file, self.source, &plans) {
            Ok(table) => table,
            Err(diagnostics) => {
                self.errors.extend(diagnostics);
                return None;
            }
        };
        // Taken before reading: the watcher applies any change made after this point.
        let file_version = file.as_deref().and_then(crate::fingerprint::of);
        if let (Some(path), Some(text)) = (&file, &raw.file) {
            if !self.readable(path, text.span(), "keys file") {
                return None;
            }
        }
        let table = match &file {
            Some(path) => match crate::api_keys::load_file(path, &plans) {
                Ok(table) => table.merged_with(&inline),
                Err(diagnostics) => {
                    self.errors.extend(diagnostics);
                    return None;
                }
            },
            None if inline.is_empty() => {
                self.error(
                    span,
                    "[api_keys] needs a `file` or inline [[api_keys.keys]] entries",
                );
                return None;
            }
            None => KeyTable::default().merged_with(&inline),
        };
        Some(ApiKeySettings {
            header,
            file,
            file_version,
            inline: Arc::new(inline),
            table: Arc::new(table),
            plans,
        })
    }

    /// CIDR ranges (or single addresses), each bad one reported where it was written.
    fn networks(&mut self, list: &[Text]) -> Vec<IpNet> {
        list.iter()
            .filter_map(|text| {
                let value = self.text(text)?;
                let parsed = value
                    .parse::<IpNet>()
                    .or_else(|_| value.parse::<std::net::IpAddr>().map(IpNet::from));
                parsed
                    .map_err(|_| {
                        self.error(
                            text.span(),
                            format!("`{value}` is not a CIDR range or IP address"),
                        )
                    })
                    .ok()
            })
            .collect()
    }

    fn server(&mut self, raw: &raw::RawServer) -> ServerSettings {
        let max_header_size = self.size(raw.max_header_size.as_ref(), 64 * 1024);
        if max_header_size < 8192 {
            let span = raw.max_header_size.as_ref().map_or(0..0, |t| t.span());
            self.error(span, "`max_header_size` must be at least 8KiB");
        }
        let trusted_proxies = self.networks(&raw.trusted_proxies);
        ServerSettings {
            http: raw.http.as_ref().and_then(|t| self.address(t)),
            https: raw.https.as_ref().and_then(|t| self.address(t)),
            header_timeout: self.duration(raw.header_timeout.as_ref(), Duration::from_secs(10)),
            handshake_timeout: self
                .duration(raw.handshake_timeout.as_ref(), Duration::from_secs(10)),
            idle_timeout: self.duration(raw.idle_timeout.as_ref(), Duration::from_secs(60)),
            max_body: self.size(raw.max_body.as_ref(), 10 * 1024 * 1024),
            max_header_size: usize::try_from(max_header_size.max(8192)).unwrap_or(usize::MAX),
            max_connections: self.positive(raw.max_connections.as_ref(), 10_000, "max_connections"),
            shutdown_grace: self.duration(raw.shutdown_grace.as_ref(), Duration::from_secs(30)),
            workers: match &raw.workers {
                Some(w) if *w.get_ref() < 0 => {
                    self.error(w.span(), "`workers` cannot be negative");
                    0
                }
                Some(w) => usize::try_from(*w.get_ref()).unwrap_or(0),
                None => 0,
            },
            trusted_proxies,
            token_cache_size: match &raw.token_cache_size {
                Some(n) if *n.get_ref() < 0 => {
                    self.error(n.span(), "`token_cache_size` cannot be negative");
                    0
                }
                Some(n) => usize::try_from(*n.get_ref()).unwrap_or(usize::MAX),
                None => 100_000,
            },
            generate_traceparent: raw.generate_traceparent.unwrap_or(true),
            upgrades: self.upgrades(raw.upgrades.as_deref()),
        }
    }

    /// `upgrades`: protocol names (RFC 9110 tokens); `h2c` is refused, never passed.
    fn upgrades(&mut self, raw: Option<&[Text]>) -> Vec<String> {
        let Some(raw) = raw else {
            return vec!["websocket".to_string()];
        };
        let mut upgrades = Vec::with_capacity(raw.len());
        for text in raw {
            let Some(value) = self.text(text) else {
                continue;
            };
            let token = !value.is_empty()
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                self.error(
                    text.span(),
                    format!("`{value}` is not a protocol name (a token such as \"websocket\")"),
                );
            } else if value.eq_ignore_ascii_case("h2c") {
                self.error(
                    text.span(),
                    "`h2c` upgrades are never passed: RFC 9113 deprecates them, and a tunnel to an h2c backend would carry requests the gateway never judged",
                );
            } else {
                upgrades.push(value.to_ascii_lowercase());
            }
        }
        upgrades
    }

    /// A whole number of at least zero.
    fn count(&mut self, value: Option<&toml::Spanned<i64>>, default: usize, key: &str) -> usize {
        match value {
            None => default,
            Some(v) => usize::try_from(*v.get_ref()).unwrap_or_else(|_| {
                self.error(v.span(), format!("`{key}` must be zero or more"));
                default
            }),
        }
    }

    fn positive(&mut self, value: Option<&toml::Spanned<i64>>, default: usize, key: &str) -> usize {
        match value {
            None => default,
            Some(v) => match usize::try_from(*v.get_ref()) {
                Ok(n) if n > 0 => n,
                _ => {
                    self.error(v.span(), format!("`{key}` must be a positive number"));
                    default
                }
            },
        }
    }

    fn certificate(&mut self, raw: &raw::RawCertificate) -> Option<Certificate> {
        let cert_path = self.path(&raw.cert)?;
        let key_path = self.path(&raw.key)?;
        let chain = match CertificateDer::pem_file_iter(&cert_path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        {
            Ok(chain) if !chain.is_empty() => chain,
            Ok(_) => {
                self.error(
                    raw.cert.span(),
                    format!("{} holds no certificate", cert_path.display()),
                );
                return None;
            }
            Err(e) => {
                self.error(
                    raw.cert.span(),
                    format!("cannot read certificate {}: {e}", cert_path.display()),
                );
                return None;
            }
        };
        // A PEM block whose body is not a certificate is the cert file's fault: say so at the
        // `cert` line, not as a key that does not fit it.
        if let Err(e) = webpki::EndEntityCert::try_from(&chain[0]) {
            self.error(
                raw.cert.span(),
                format!(
                    "{} does not hold a valid X.509 certificate: {e}",
                    cert_path.display()
                ),
            );
            return None;
        }
        let key = match PrivateKeyDer::from_pem_file(&key_path) {
            Ok(key) => key,
            Err(e) => {
                self.error(
                    raw.key.span(),
                    format!("cannot read private key {}: {e}", key_path.display()),
                );
                return None;
            }
        };
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let key = match CertifiedKey::from_der(chain, key, &provider) {
            Ok(key) => key,
            Err(e) => {
                self.error(
                    raw.key.span(),
                    format!(
                        "{} does not fit {}: {e}",
                        key_path.display(),
                        cert_path.display()
                    ),
                );
                return None;
            }
        };
        let names = match key.end_entity_cert().map(webpki::EndEntityCert::try_from) {
            Ok(Ok(cert)) => cert
                .valid_dns_names()
                .map(str::to_ascii_lowercase)
                .collect(),
            _ => {
                self.error(
                    raw.cert.span(),
                    format!("{} is not a valid X.509 certificate", cert_path.display()),
                );
                return None;
            }
        };
        Some(Certificate {
            file: cert_path,
            names,
            key: Arc::new(key),
        })
    }

    fn identity(&mut self, raw: &raw::RawIdentity) -> IdentitySettings {
        let claims = raw
            .claims
            .iter()
            .map(|(claim, header)| {
                (
                    claim.clone(),
                    self.header_name(Some(header), "x-auth-claim"),
                )
            })
            .collect();
        let strip_prefixes = match &raw.strip {
            None => vec!["x-auth-".to_string()],
            Some(prefixes) => prefixes
                .iter()
                .filter_map(|p| {
                    let value = self.text(p)?;
                    if value.is_empty() {
                        self.error(
                            p.span(),
                            "an empty `strip` prefix would remove every header",
                        );
                        return None;
                    }
                    Some(normalize_header_name(&value))
                })
                .collect(),
        };
        IdentitySettings {
            subject: self.header_name(raw.subject.as_ref(), "x-auth-subject"),
            method: self.header_name(raw.method.as_ref(), "x-auth-method"),
            issuer: self.header_name(raw.issuer.as_ref(), "x-auth-issuer"),
            scopes: self.header_name(raw.scopes.as_ref(), "x-auth-scopes"),
            key_id: self.header_name(raw.key_id.as_ref(), "x-auth-key-id"),
            claims,
            strip_prefixes,
            forward_credentials: raw.forward_credentials.unwrap_or(false),
            token_cookies: Vec::new(),
            assertion: raw.assertion.as_ref().and_then(|a| self.assertion(a)),
        }
    }
    /// A PEM file of CA certificates that rustls accepts as trust anchors.
    fn ca_file(&mut self, text: &Text) -> Option<Vec<CertificateDer<'static>>> {
        let path = self.path(text)?;
        let certs = match CertificateDer::pem_file_iter(&path)
            .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        {
            Ok(certs) if !certs.is_empty() => certs,
            Ok(_) => {
                self.error(
                    text.span(),
                    format!("{} holds no certificate", path.display()),
                );
                return None;
            }
            Err(e) => {
                self.error(
                    text.span(),
                    format!("cannot read CA file {}: {e}", path.display()),
                );
                return None;
            }
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in &certs {
            if let Err(e) = roots.add(cert.clone()) {
                self.error(
                    text.span(),
                    format!("{}: not a usable CA certificate: {e}", path.display()),
                );
                return None;
            }
        }
        Some(certs)
    }
}
