//! `[[routes]]`: what each route matches (host, path, methods), where it sends requests, and
//! what a caller must present and hold to use it, validated into [`RouteSettings`].

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use http::Method;

use super::raw::{self, Text};
use super::{IssuerSettings, RateLimit, UpstreamSettings, Validator, BUILTIN_ECHO, NO_UPSTREAM};

/// Which hosts a route serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this host (lowercase, no port).
    Exact(String),
    /// Any host ending in this suffix, which starts with a dot: `*.example.com` → `.example.com`.
    Wildcard(String),
}

/// Where a route sends its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// An entry of [`Config::upstreams`].
    Upstream(String),
    /// The built-in echo responder.
    Echo,
    /// Nowhere: the route only answers forward-auth decisions (`upstream = "none"`); a request
    /// sent to it directly finds no route.
    None,
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone)]
pub struct RouteSettings {
    /// Unique id; the `route` label in metrics and logs.
    pub id: String,
    /// The id as a metrics label, shared rather than copied per request.
    pub label: metrics::SharedString,
    /// Host restriction, if any.
    pub host: Option<HostPattern>,
    /// Path prefix, matched on segment boundaries; `/` matches everything. Never ends in `/`
    /// except for the root itself.
    pub path: String,
    /// Allowed methods; `None` = any.
    pub methods: Option<Vec<Method>>,
    /// Where requests go.
    pub target: RouteTarget,
    /// No credentials needed.
    pub public: bool,
    /// What a caller must present when the route is not public.
    pub auth: AuthRequirement,
    /// Whether the credentials (`Authorization`, the API key header, token cookies) reach the
    /// upstream: the route's own `forward_credentials`, else `[identity]`'s.
    pub forward_credentials: bool,
    /// The route's own rate limit, per consumer.
    pub limit: Option<RateLimit>,
    /// `usage`: the provider format token usage is read from, when the route is metered.
    pub usage: Option<super::UsageFormat>,
}

/// The credentials a protected route accepts and what they must grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthRequirement {
    /// Bearer JWTs are accepted.
    pub jwt: bool,
    /// API keys are accepted.
    pub api_key: bool,
    /// Only tokens from these issuer ids; `None` = any configured issuer.
    pub issuers: Option<Vec<String>>,
    /// Scopes the credential must all hold.
    pub scopes: Vec<String>,
    /// The credential must hold at least one of these roles (when any are listed).
    pub roles: Vec<String>,
    /// Claims (by dotted path) that must equal these values exactly.
    pub claims: Vec<(String, serde_json::Value)>,
    /// A cookie that may carry the bearer token (browsers, WebSocket upgrades).
    pub cookie: Option<String>,
    /// A signed-in browser's session (`[sign_in]`) is accepted.
    pub session: bool,
}

impl Validator<'_> {
    pub(super) fn routes(
        &mut self,
        raw: &[toml::Spanned<raw::RawRoute>],
        upstreams: &mut BTreeMap<String, UpstreamSettings>,
        issuers: &[IssuerSettings],
        api_keys: bool,
        forward_credentials: bool,
        sign_in: bool,
    ) -> Vec<RouteSettings> {
        let mut seen_ids = HashSet::new();
        let mut routes = Vec::new();
        for spanned in raw {
            let route = spanned.get_ref();
            let Some(id) = self.text(&route.id) else {
                continue;
            };
            if !seen_ids.insert(id.clone()) {
                self.error(route.id.span(), format!("route id `{id}` is used twice"));
            }
            let host = route.host.as_ref().and_then(|h| self.host_pattern(h));
            let path = match &route.path {
                None => "/".to_string(),
                Some(text) => self.route_path(text).unwrap_or_else(|| "/".into()),
            };
            let methods = route.methods.as_ref().map(|methods| {
                methods
                    .iter()
                    .filter_map(|m| {
                        let value = self.text(m)?.to_ascii_uppercase();
                        Method::from_bytes(value.as_bytes())
                            .map_err(|_| {
                                self.error(m.span(), format!("`{value}` is not an HTTP method"))
                            })
                            .ok()
                    })
                    .collect()
            });
            let target = self.route_target(&route.upstream, upstreams);
            let public = route.public.unwrap_or(false);
            let auth = self.auth_requirement(&id, spanned, public, issuers, api_keys, sign_in);
            let limit = self.rate_limit(route.rate.as_ref(), route.burst.as_ref());
            let usage = route
                .usage
                .as_ref()
                .and_then(|text| self.usage_format(text));
            if let Some(target) = target {
                routes.push(RouteSettings {
                    label: std::sync::Arc::<str>::from(id.as_str()).into(),
                    id,
                    host,
                    path,
                    methods,
                    target,
                    public,
                    auth,
                    forward_credentials: route.forward_credentials.unwrap_or(forward_credentials),
                    limit,
                    usage,
                });
            }
        }
        routes
    }

    fn auth_requirement(
        &mut self,
        id: &str,
        spanned: &toml::Spanned<raw::RawRoute>,
        public: bool,
        issuers: &[IssuerSettings],
        api_keys: bool,
        sign_in: bool,
    ) -> AuthRequirement {
        let route = spanned.get_ref();
        let texts = |v: &Option<Vec<Text>>| v.iter().flatten().cloned().collect::<Vec<Text>>();
        if public {
            for (key, present) in [
                ("auth", route.auth.is_some()),
                ("issuers", route.issuers.is_some()),
                ("scopes", route.scopes.is_some()),
                ("roles", route.roles.is_some()),
                ("claims", route.claims.is_some()),
                ("cookie", route.cookie.is_some()),
            ] {
                if present {
                    self.error(spanned.span(), format!("route `{id}` is public, so `{key}` would never be checked; remove one of them"));
                }
            }
            return AuthRequirement::default();
        }
        let mut requirement = AuthRequirement {
            jwt: route.auth.is_none(),
            api_key: route.auth.is_none(),
            ..Default::default()
        };
        for method in texts(&route.auth) {
            match self.text(&method).as_deref() {
                Some("jwt") => requirement.jwt = true,
                Some("api_key") => requirement.api_key = true,
                Some("session") if sign_in => requirement.session = true,
                Some("session") => self.error(
                    method.span(),
                    "auth method \"session\" needs a [sign_in] section",
                ),
                Some(other) => self.error(
                    method.span(),
                    format!(
                        "unknown auth method `{other}`: use \"jwt\", \"api_key\" or \"session\""
                    ),
                ),
                None => {}
            }
        }
        if let Some(list) = &route.issuers {
            let mut allowed = Vec::new();
            for name in list {
                let Some(value) = self.text(name) else {
                    continue;
                };
                if issuers.iter().any(|i| i.id == value) {
                    allowed.push(value);
                } else {
                    self.error(
                        name.span(),
                        format!("issuer `{value}` is not defined in [[issuers]]"),
                    );
                }
            }
            requirement.issuers = Some(allowed);
        }
        requirement.scopes = texts(&route.scopes)
            .iter()
            .filter_map(|s| self.text(s))
            .collect();
        requirement.roles = texts(&route.roles)
            .iter()
            .filter_map(|s| self.text(s))
            .collect();
        for (path, value) in route.claims.iter().flatten() {
            match serde_json::to_value(value.get_ref()) {
                Ok(json) if json.is_string() || json.is_number() || json.is_boolean() => {
                    requirement.claims.push((path.clone(), json))
                }
                _ => self.error(
                    value.span(),
                    format!("claim `{path}` must be matched against a string, number or boolean"),
                ),
            }
        }
        requirement.cookie = route.cookie.as_ref().and_then(|c| self.text(c));
        // API keys arrive with the `[api_keys]` table; until one is configured only JWTs can
        // satisfy a route, and a route no credential can satisfy is a mistake, not a lock.
        let usable_issuers = match &requirement.issuers {
            Some(allowed) => !allowed.is_empty(),
            None => !issuers.is_empty(),
        };
        if !(requirement.jwt && usable_issuers
            || requirement.api_key && api_keys
            || requirement.session)
        {
            self.error(
                spanned.span(),
                format!("route `{id}` requires credentials, but none it accepts can be presented: configure an [[issuers]] entry (and accept \"jwt\") or [api_keys] (and accept \"api_key\"), or set `public = true`"),
            );
        }
        requirement
    }

    fn host_pattern(&mut self, text: &Text) -> Option<HostPattern> {
        let value = self.text(text)?.to_ascii_lowercase();
        let (pattern, name) = match value.strip_prefix("*.") {
            Some(rest) => (HostPattern::Wildcard(format!(".{rest}")), rest),
            None => (HostPattern::Exact(value.clone()), value.as_str()),
        };
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if valid {
            Some(pattern)
        } else {
            self.error(
                text.span(),
                format!("`{value}` is not a host name (wildcards are written `*.example.com`)"),
            );
            None
        }
    }

    fn route_path(&mut self, text: &Text) -> Option<String> {
        let value = self.text(text)?;
        if !value.starts_with('/') || value.contains(['?', '#', ' ']) {
            self.error(
                text.span(),
                format!("route path `{value}` must start with `/` and hold no query"),
            );
            return None;
        }
        let trimmed = value.trim_end_matches('/');
        Some(if trimmed.is_empty() {
            "/".into()
        } else {
            trimmed.into()
        })
    }

    fn route_target(
        &mut self,
        text: &Text,
        upstreams: &mut BTreeMap<String, UpstreamSettings>,
    ) -> Option<RouteTarget> {
        let value = self.text(text)?;
        if value == BUILTIN_ECHO {
            return Some(RouteTarget::Echo);
        }
        if value == NO_UPSTREAM {
            return Some(RouteTarget::None);
        }
        if upstreams.contains_key(&value) {
            return Some(RouteTarget::Upstream(value));
        }
        if value.contains("://") {
            let target = self.target(text)?;
            upstreams
                .entry(value.clone())
                .or_insert_with(|| UpstreamSettings {
                    name: value.clone(),
                    targets: vec![target],
                    connect_timeout: Duration::from_secs(2),
                    timeout: Duration::from_secs(30),
                    eject_for: Duration::from_secs(10),
                    preserve_host: true,
                    ca: Vec::new(),
                    credential: None,
                    pool: super::upstreams::PoolLimits::default(),
                    protocol: super::upstreams::UpstreamProtocol::default(),
                });
            return Some(RouteTarget::Upstream(value));
        }
        self.error(
            text.span(),
            format!("upstream `{value}` is not defined: name an [upstreams.NAME], a URL, or \"{BUILTIN_ECHO}\""),
        );
        None
    }
}
