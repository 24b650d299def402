//! Route matching: host (exact or `*.suffix`), path prefix on segment boundaries, methods.
//!
//! The most specific route wins: an exact host beats a wildcard, a longer wildcard suffix beats
//! a shorter one, any host beats none; then the longer path prefix; then a route that lists
//! methods beats one that takes any. Ties keep file order.
//!
//! Routes are grouped by host when a snapshot is built, so a lookup hashes the request's host
//! (and each of its parent domains for wildcards) and scans only that group's routes, already
//! sorted most specific first: the cost does not grow with the number of hosts configured.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::HashMap;

use http::Method;

use crate::config::{HostPattern, RouteSettings};
use crate::limits::Policy;
use crate::metrics::RouteMetrics;

/// A configured route with its metric handles, which live as long as the snapshot.
#[derive(Debug)]
pub struct Route {
    /// What the configuration says.
    pub settings: RouteSettings,
    /// The route's per-request metrics.
    pub metrics: RouteMetrics,
    /// The route's own rate limit, as a policy named `route:{id}` (plan names hold no `:`, so
    /// the two never share a counter).
    pub limit: Option<Policy>,
}

impl std::ops::Deref for Route {
    type Target = RouteSettings;

    fn deref(&self) -> &RouteSettings {
        &self.settings
    }
}

/// The routes of one snapshot, grouped by host and sorted by specificity within a group.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: HashMap<String, Vec<Route>>,
    /// Keyed by the suffix including its leading dot: `*.example.com` → `.example.com`.
    wildcard: HashMap<String, Vec<Route>>,
    any_host: Vec<Route>,
}

impl RouteTable {
    /// Groups and sorts `routes`.
    pub fn new(routes: Vec<RouteSettings>) -> Self {
        let mut table = RouteTable::default();
        for route in routes {
            let group = match &route.host {
                Some(HostPattern::Exact(host)) => table.exact.entry(host.clone()).or_default(),
                Some(HostPattern::Wildcard(suffix)) => {
                    table.wildcard.entry(suffix.clone()).or_default()
                }
                None => &mut table.any_host,
            };
            group.push(Route {
                metrics: RouteMetrics::new(route.label.clone()),
                limit: route
                    .limit
                    .as_ref()
                    .map(|limit| Policy::rate(&format!("route:{}", route.id), limit)),
                settings: route,
            });
        }
        let by_specificity = |group: &mut Vec<Route>| {
            // A stable sort, so equally specific routes keep file order.
            group.sort_by_key(|route| Reverse((route.path.len(), route.methods.is_some())));
        };
        table.exact.values_mut().for_each(by_specificity);
        table.wildcard.values_mut().for_each(by_specificity);
        by_specificity(&mut table.any_host);
        table
    }

    /// The route for a request. `host` is lowercase without a port; `path` is normalized (see
    /// [`normalize_path`]).
    pub fn find(&self, host: &str, path: &str, method: &Method) -> Option<&Route> {
        let in_group = |group: &'_ [Route]| -> Option<usize> {
            group.iter().position(|route| {
                path_matches(&route.path, path)
                    && route.methods.as_ref().is_none_or(|m| m.contains(method))
            })
        };
        if let Some(group) = self.exact.get(host) {
            if let Some(i) = in_group(group) {
                return Some(&group[i]);
            }
        }
        if !self.wildcard.is_empty() {
            // `a.b.example.com` tries `.b.example.com`, then `.example.com`, then `.com`:
            // the longest suffix first.
            let mut rest = host;
            while let Some(dot) = rest.bytes().skip(1).position(|b| b == b'.').map(|i| i + 1) {
                let suffix = &rest[dot..];
                if let Some(group) = self.wildcard.get(suffix) {
                    if let Some(i) = in_group(group) {
                        return Some(&group[i]);
                    }
                }
                rest = suffix;
            }
        }
        in_group(&self.any_host).map(|i| &self.any_host[i])
    }
}

/// `/orders` matches `/orders`, `/orders/` and `/orders/7`, never `/ordersx`.
fn path_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The request's host for routing: lowercase, without port or trailing dot.
pub fn routing_host(authority: &str) -> Cow<'_, str> {
    let host = if authority.starts_with('[') {
        // IPv6 literal: keep the brackets, drop the port.
        authority
            .find(']')
            .map_or(authority, |end| &authority[..=end])
    } else {
        authority.split(':').next().unwrap_or(authority)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// Removes `.` and `..` segments (RFC 3986 §5.2.4), also when written `%2e`, so that
/// `/public/../admin` is routed — and forwarded — as `/admin`, never matched against `/public`;
/// and merges repeated slashes, so that `//admin/x` is routed and forwarded as `/admin/x`, which
/// is how backends that merge slashes (nginx's default, many frameworks) read it. A trailing
/// slash is kept. Returns `None` for a path that does not start with `/`, or that hides a dot
/// segment behind an encoded slash or backslash (`/public/..%2Fadmin`): a backend that decodes
/// `%2F` would read it as a traversal. Encoded slashes in ordinary segments
/// (`group%2Fproject`) pass, and are not merged.
pub fn normalize_path(path: &str) -> Option<Cow<'_, str>> {
    if !path.starts_with('/') || hides_dot_segment(path) {
        return None;
    }
    let is_dot = |s: &str| s == "." || s.eq_ignore_ascii_case("%2e");
    let is_dot_dot = |s: &str| {
        s == ".."
            || [".%2e", "%2e.", "%2e%2e"]
                .iter()
                .any(|d| s.eq_ignore_ascii_case(d))
    };
    let segments = path[1..].split('/');
    let untouched = !path.contains("//") && !segments.clone().any(|s| is_dot(s) || is_dot_dot(s));
    if untouched {
        return Some(Cow::Borrowed(path));
    }
    let last = segments.clone().count() - 1;
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for (i, segment) in segments.enumerate() {
        if segment.is_empty() {
            // `//` merged; an empty last segment is the trailing slash.
            trailing_slash |= i == last;
        } else if is_dot(segment) {
            trailing_slash = true;
        } else if is_dot_dot(segment) {
            kept.pop();
            trailing_slash = true;
        } else {
            kept.push(segment);
            trailing_slash = false;
        }
    }
    let mut normalized = String::with_capacity(path.len());
    for segment in &kept {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if trailing_slash || normalized.is_empty() {
        normalized.push('/');
    }
    Some(Cow::Owned(normalized))
}

/// Whether decoding `%2F`/`%5C` (and `%2E`) would turn some segment into `.` or `..` parts.
fn hides_dot_segment(path: &str) -> bool {
    if !path.contains('%') {
        return false;
    }
    path.split('/').any(|segment| {
        let lower = segment.to_ascii_lowercase();
        if !lower.contains("%2f") && !lower.contains("%5c") {
            return false;
        }
        let decoded = lower
            .replace("%2f", "/")
            .replace("%5c", "/")
            .replace("%2e", ".");
        decoded.split('/').any(|part| part == "." || part == "..")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthRequirement, RouteTarget};

    fn route(
        id: &str,
        host: Option<HostPattern>,
        path: &str,
        methods: Option<Vec<Method>>,
    ) -> RouteSettings {
        RouteSettings {
            id: id.into(),
            label: id.to_string().into(),
            host,
            path: path.into(),
            methods,
            target: RouteTarget::Echo,
            public: true,
            auth: AuthRequirement::default(),
            forward_credentials: false,
            limit: None,
            usage: None,
        }
    }

    fn table() -> RouteTable {
        RouteTable::new(vec![
            route("catch-all", None, "/", None),
            route("orders", None, "/orders", None),
            route("orders-write", None, "/orders", Some(vec![Method::POST])),
            route("orders-items", None, "/orders/items", None),
            route(
                "wild",
                Some(HostPattern::Wildcard(".example.com".into())),
                "/",
                None,
            ),
            route(
                "wild-deep",
                Some(HostPattern::Wildcard(".eu.example.com".into())),
                "/",
                None,
            ),
            route(
                "api",
                Some(HostPattern::Exact("api.example.com".into())),
                "/",
                None,
            ),
        ])
    }

    fn find(host: &str, path: &str, method: Method) -> String {
        table()
            .find(host, path, &method)
            .map(|r| r.id.clone())
            .unwrap_or_default()
    }

    #[test]
    fn most_specific_route_wins() {
        assert_eq!(find("other", "/", Method::GET), "catch-all");
        assert_eq!(find("other", "/orders", Method::GET), "orders");
        assert_eq!(find("other", "/orders/7", Method::GET), "orders");
        assert_eq!(find("other", "/orders/7", Method::POST), "orders-write");
        assert_eq!(
            find("other", "/orders/items/1", Method::POST),
            "orders-items"
        );
        assert_eq!(find("other", "/ordersx", Method::GET), "catch-all");
        assert_eq!(find("a.example.com", "/orders", Method::GET), "wild");
        assert_eq!(find("a.eu.example.com", "/", Method::GET), "wild-deep");
        assert_eq!(find("example.com", "/", Method::GET), "catch-all");
        assert_eq!(find("api.example.com", "/orders", Method::GET), "api");
        assert_eq!(find("x.y.eu.example.com", "/", Method::GET), "wild-deep");
        assert_eq!(find("", "/", Method::GET), "catch-all");
        assert_eq!(find(".", "/", Method::GET), "catch-all");
        assert_eq!(find("é.example.com", "/", Method::GET), "wild");
    }

    #[test]
    fn nothing_matches_without_a_catch_all() {
        let table = RouteTable::new(vec![route(
            "orders",
            None,
            "/orders",
            Some(vec![Method::GET]),
        )]);
        assert!(table.find("h", "/", &Method::GET).is_none());
        assert!(table.find("h", "/orders", &Method::DELETE).is_none());
    }

    #[test]
    fn routing_host_drops_port_case_and_trailing_dot() {
        assert_eq!(routing_host("API.Example.com:8443"), "api.example.com");
        assert_eq!(routing_host("example.com."), "example.com");
        assert_eq!(routing_host("[::1]:8080"), "[::1]");
    }

    #[test]
    fn dot_segments_are_resolved_before_routing() {
        let n = |p| normalize_path(p).map(|c| c.into_owned());
        assert_eq!(n("/a/b").as_deref(), Some("/a/b"));
        assert_eq!(n("/public/../admin").as_deref(), Some("/admin"));
        assert_eq!(n("/public/%2e%2E/admin").as_deref(), Some("/admin"));
        assert_eq!(n("/a/./b/").as_deref(), Some("/a/b/"));
        assert_eq!(n("/a/..").as_deref(), Some("/"));
        assert_eq!(n("/../../etc").as_deref(), Some("/etc"));
        assert_eq!(n("/a/b/.."), Some("/a/".into()));
        assert_eq!(n("*"), None);
        assert_eq!(n("/public/..%2Fadmin"), None);
        assert_eq!(n("/public/%2e%2e%5cadmin"), None);
        assert_eq!(
            n("/api/projects/group%2Fproject").as_deref(),
            Some("/api/projects/group%2Fproject")
        );
    }

    #[test]
    fn repeated_slashes_are_merged() {
        let n = |p| normalize_path(p).map(|c| c.into_owned());
        assert_eq!(n("//protected/x").as_deref(), Some("/protected/x"));
        assert_eq!(n("/a//b").as_deref(), Some("/a/b"));
        assert_eq!(n("/a///").as_deref(), Some("/a/"));
        assert_eq!(n("//").as_deref(), Some("/"));
        assert_eq!(n("/a//..//b").as_deref(), Some("/b"));
        assert_eq!(n("/a/%2F%2Fb").as_deref(), Some("/a/%2F%2Fb"));
        // Already normal: borrowed, not copied.
        assert!(matches!(normalize_path("/a/b/"), Some(Cow::Borrowed(_))));
    }
}
