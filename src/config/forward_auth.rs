//! `[forward_auth]`: the endpoint another proxy (nginx `auth_request`, Traefik `ForwardAuth`,
//! Envoy `ext_authz`) asks whether a request may pass. Only data lives here; the decision is
//! `crate::proxy::forward_auth`.

use http::StatusCode;
use ipnet::IpNet;
use toml::Spanned;

use super::raw::RawForwardAuth;
use super::{RouteSettings, TokenServiceSettings, Validator};

/// Where forward-auth is served when `path` is not given.
pub const DEFAULT_PATH: &str = "/authz";

/// `[forward_auth]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuthSettings {
    /// Served on the gateway listeners, before the routes: this path and everything under it.
    pub path: String,
    /// The peers allowed to ask; any other peer is refused with 403. Default: loopback only.
    pub trusted: Vec<IpNet>,
    /// The status every refusal but 401 and 403 is given (429, 404, 400 …), for proxies that
    /// read any other status as their own failure (nginx answers those with 500).
    pub deny_status: Option<StatusCode>,
}

impl ForwardAuthSettings {
    /// Whether a (normalized) request path is the endpoint or under it.
    pub fn serves(&self, path: &str) -> bool {
        path.strip_prefix(self.path.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

fn loopback() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|net| net.parse().ok())
        .collect()
}

impl Validator<'_> {
    pub(super) fn forward_auth(&mut self, raw: &Spanned<RawForwardAuth>) -> ForwardAuthSettings {
        let raw = raw.get_ref();
        let path = raw
            .path
            .as_ref()
            .and_then(|text| self.endpoint_path(text))
            .unwrap_or_else(|| DEFAULT_PATH.to_string());
        let trusted = match &raw.trusted {
            Some(list) => self.networks(list),
            None => loopback(),
        };
        let deny_status = raw.deny_status.as_ref().and_then(|status| {
            match u16::try_from(*status.get_ref()).ok().filter(|s| [401, 403].contains(s)) {
                Some(code) => StatusCode::from_u16(code).ok(),
                None => {
                    self.error(
                        status.span(),
                        format!(
                            "deny_status {} is not 401 or 403 (the statuses nginx's auth_request passes on)",
                            status.get_ref()
                        ),
                    );
                    None
                }
            }
        });
        ForwardAuthSettings {
            path,
            trusted,
            deny_status,
        }
    }

    /// The endpoint is served before the routes and the token service's paths: a route or
    /// token endpoint under it could never be reached, and one above it loses that part.
    pub(super) fn forward_auth_overlaps(
        &mut self,
        span: std::ops::Range<usize>,
        settings: &ForwardAuthSettings,
        token_service: Option<&TokenServiceSettings>,
        routes: &[RouteSettings],
    ) {
        if let Some(service) = token_service {
            if settings.serves(&service.path) || service_serves(&service.path, &settings.path) {
                self.error(
                    span.clone(),
                    format!(
                        "forward_auth path `{}` overlaps the token service's path `{}`",
                        settings.path, service.path
                    ),
                );
            }
        }
        for route in routes {
            if route.path != "/" && settings.serves(&route.path) {
                self.error(
                    span.clone(),
                    format!(
                        "route `{}` (path `{}`) is under forward_auth path `{}`, which is served first: the route could never be reached",
                        route.id, route.path, settings.path
                    ),
                );
            }
        }
    }
}

fn service_serves(service: &str, path: &str) -> bool {
    path.strip_prefix(service)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_path_and_below_on_segment_boundaries() {
        let settings = ForwardAuthSettings {
            path: "/authz".into(),
            trusted: loopback(),
            deny_status: None,
        };
        assert!(settings.serves("/authz"));
        assert!(settings.serves("/authz/orders/7"));
        assert!(!settings.serves("/authzz"));
        assert!(!settings.serves("/auth"));
    }
}
