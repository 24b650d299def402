//! The access log: one line per request through `tracing` (target `authgate::access`), text by
//! default and JSON with `[log] format = "json"`. It names the request (id, route, `mode`: proxy
//! or forward_auth, method, path, status, duration, upstream, client), who made it (auth method,
//! subject or key id, and plan) and why it was refused (the closed `reason` set), and never a
//! token, key, secret, cookie or query string. `RUST_LOG=authgate::access=off` silences it.

use std::net::IpAddr;
use std::time::Duration;

use metrics::SharedString;

/// What the handler learned about a request on its way through, for metrics and the log.
#[derive(Debug, Default)]
pub struct Exchange<'s> {
    /// Whether the access log is on: the fields only it reads are filled only then.
    pub logged: bool,
    /// The route that matched.
    pub route: Option<SharedString>,
    /// The matched route's metric handles (none: no route matched).
    pub metrics: Option<&'s crate::metrics::RouteMetrics>,
    /// The upstream the request went to.
    pub upstream: Option<String>,
    /// `jwt`, `api_key`, or none.
    pub auth_method: Option<&'static str>,
    /// The subject (JWT) or key id (API key).
    pub principal: Option<String>,
    /// Why authentication or authorization refused the request.
    pub reason: Option<&'static str>,
    /// The W3C trace id the upstream received.
    pub trace_id: Option<String>,
    /// The consumer's plan, when one applied.
    pub plan: Option<SharedString>,
    /// Whether this was a forward-auth call rather than a proxied request.
    pub forward_auth: bool,
    /// Set for a forward-auth decision: the method and path of the request it was about,
    /// which the line names instead of the decision endpoint's own.
    pub decided: Option<(http::Method, String)>,
    /// `RateLimit-Policy` and `RateLimit` for the response, when a limit applied.
    pub rate_limit: Option<(http::HeaderValue, http::HeaderValue)>,
}

/// What the server knows about the request and response.
#[derive(Debug)]
pub struct Line<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// The method.
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The response status.
    pub status: u16,
    /// Time to the response head.
    pub duration: Duration,
    /// The peer's address.
    pub client: IpAddr,
    /// Request body size, when declared.
    pub bytes_in: Option<u64>,
    /// Response body size, when declared.
    pub bytes_out: Option<u64>,
}

/// Whether access-log lines are written (`RUST_LOG` may silence them).
pub fn enabled() -> bool {
    tracing::enabled!(target: "authgate::access", tracing::Level::INFO)
}

/// Writes the line, if the access log is enabled.
pub fn write(line: &Line<'_>, exchange: &Exchange<'_>) {
    if !enabled() {
        return;
    }
    tracing::info!(
        target: "authgate::access",
        request_id = line.request_id,
        route = exchange.route.as_deref().unwrap_or("-"),
        mode = if exchange.forward_auth { "forward_auth" } else { "proxy" },
        method = exchange.decided.as_ref().map_or(line.method, |(method, _)| method.as_str()),
        path = exchange.decided.as_ref().map_or(line.path, |(_, path)| path.as_str()),
        status = line.status,
        // Whole microseconds: `0.412`, not `0.41234599999999997`.
        duration_ms = u32::try_from(line.duration.as_micros()).unwrap_or(u32::MAX) as f64 / 1000.0,
        upstream = exchange.upstream.as_deref().unwrap_or("-"),
        auth = exchange.auth_method.unwrap_or("-"),
        principal = exchange.principal.as_deref().unwrap_or("-"),
        reason = exchange.reason.unwrap_or("-"),
        plan = exchange.plan.as_deref().unwrap_or("-"),
        trace_id = exchange.trace_id.as_deref().unwrap_or("-"),
        bytes_in = line.bytes_in,
        bytes_out = line.bytes_out,
        client = %line.client,
        "request"
    );
}
