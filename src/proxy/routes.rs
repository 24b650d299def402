//! Route matching: host (exact or `*.suffix`), path prefix on segment boundaries, methods.
//!
//! The most specific route wins: an exact host beats a wildcard, a longer wildcard suffix beats
//! a shorter one, any host beats none; then the longer path prefix; then a route that lists
//! methods beats one that takes any. Ties keep file order. The table is sorted once when a
//! snapshot is built, so a lookup is a scan that stops at the first match.

use std::borrow::Cow;
use std::cmp::Reverse;

use http::Method;

use crate::config::{HostPattern, RouteSettings};

/// The routes of one snapshot, most specific first.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<RouteSettings>,
}

impl RouteTable {
    /// Sorts `routes` by specificity.
    pub fn new(mut routes: Vec<RouteSettings>) -> Self {
        routes.sort_by_key(|route| {
            let host_rank = match &route.host {
                Some(HostPattern::Exact(_)) => (2, 0),
                Some(HostPattern::Wildcard(suffix)) => (1, suffix.len()),
                None => (0, 0),
            };
            Reverse((host_rank, route.path.len(), route.methods.is_some()))
        });
        RouteTable { routes }
    }

    /// The route for a request. `host` is lowercase without a port; `path` is normalized (see
    /// [`normalize_path`]).
    pub fn find(&self, host: &str, path: &str, method: &Method) -> Option<&RouteSettings> {
        self.routes.iter().find(|route| {
            host_matches(route.host.as_ref(), host)
                && path_matches(&route.path, path)
                && route.methods.as_ref().is_none_or(|m| m.contains(method))
        })
    }
}

fn host_matches(pattern: Option<&HostPattern>, host: &str) -> bool {
    match pattern {
        None => true,
        Some(HostPattern::Exact(exact)) => exact == host,
        // `.example.com` matches `a.example.com` but not `example.com` itself.
        Some(HostPattern::Wildcard(suffix)) => {
            host.len() > suffix.len() && host.ends_with(suffix.as_str())
        }
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
/// `/public/../admin` is routed — and forwarded — as `/admin`, never matched against `/public`.
/// Returns `None` for a path that does not start with `/`.
pub fn normalize_path(path: &str) -> Option<Cow<'_, str>> {
    if !path.starts_with('/') {
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
    if !segments.clone().any(|s| is_dot(s) || is_dot_dot(s)) {
        return Some(Cow::Borrowed(path));
    }
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in segments {
        trailing_slash = false;
        if is_dot(segment) {
            trailing_slash = true;
        } else if is_dot_dot(segment) {
            kept.pop();
            trailing_slash = true;
        } else {
            kept.push(segment);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteTarget;

    fn route(
        id: &str,
        host: Option<HostPattern>,
        path: &str,
        methods: Option<Vec<Method>>,
    ) -> RouteSettings {
        RouteSettings {
            id: id.into(),
            host,
            path: path.into(),
            methods,
            target: RouteTarget::Echo,
            public: true,
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
    }
}
