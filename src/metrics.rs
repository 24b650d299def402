//! Every metric name in one place, with the one function that records each, so names and
//! label sets cannot drift apart. Labels hold only small closed sets (route ids, issuer ids,
//! reason codes), never free text, so cardinality stays bounded.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::SharedString;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests answered: `{route, status}`.
pub const REQUESTS: &str = "authgate_requests_total";
/// Time from request head to response head: `{route}`.
pub const REQUEST_DURATION: &str = "authgate_request_duration_seconds";
/// Upstream failures: `{route, kind}` = connect | timeout | failed.
pub const UPSTREAM_ERRORS: &str = "authgate_upstream_errors_total";
/// Configuration reloads: `{result}` = ok | error.
pub const CONFIG_RELOADS: &str = "authgate_config_reloads_total";
/// Open connections: `{listener}`.
pub const CONNECTIONS: &str = "authgate_connections";
/// Auth decisions: `{route, method, result, reason}`.
pub const AUTH_DECISIONS: &str = "authgate_auth_decisions_total";
/// JWKS fetches: `{issuer, result}`.
pub const JWKS_REFRESH: &str = "authgate_jwks_refresh_total";
/// Age of each issuer's key set: `{issuer}`.
pub const JWKS_AGE: &str = "authgate_jwks_age_seconds";
/// Keys refused when loading: `{issuer}`.
pub const KEYS_REFUSED: &str = "authgate_keys_refused_total";
/// Verified-token cache lookups: `{result}` = hit | miss.
pub const TOKEN_CACHE: &str = "authgate_token_cache_total";
/// Token-service requests: `{endpoint, result}`, result = ok or an RFC 6749 error code.
pub const TOKEN_SERVICE: &str = "authgate_token_service_requests_total";

/// Histogram buckets for a gateway: 50 µs to 10 s.
const DURATION_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// Installs the Prometheus recorder (once per process) and returns the handle `/metrics`
/// renders. `None` if another recorder was installed first (the metrics then go there).
pub fn install() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), &DURATION_BUCKETS)
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(|error| tracing::warn!(%error, "metrics recorder not installed"))
                .ok()?;
            // Histogram samples wait in a buffer until upkeep folds them into the buckets; without
            // it, memory would grow with every request between scrapes.
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                });
            if let Err(error) = spawned {
                tracing::warn!(%error, "metrics upkeep thread not started");
            }
            Some(handle)
        })
        .as_ref()
}

/// The status code as a static label (no allocation for the codes a gateway answers with).
fn status_label(status: u16) -> SharedString {
    match status {
        200 => "200".into(),
        101 => "101".into(),
        201 => "201".into(),
        204 => "204".into(),
        301 => "301".into(),
        302 => "302".into(),
        304 => "304".into(),
        400 => "400".into(),
        401 => "401".into(),
        403 => "403".into(),
        404 => "404".into(),
        413 => "413".into(),
        500 => "500".into(),
        502 => "502".into(),
        503 => "503".into(),
        504 => "504".into(),
        other => other.to_string().into(),
    }
}

/// Counts one answered request and its duration.
pub fn request(route: &SharedString, status: u16, duration: Duration) {
    metrics::counter!(REQUESTS, "route" => route.clone(), "status" => status_label(status))
        .increment(1);
    metrics::histogram!(REQUEST_DURATION, "route" => route.clone()).record(duration.as_secs_f64());
}

/// Counts one upstream failure.
pub fn upstream_error(route: &SharedString, kind: &'static str) {
    metrics::counter!(UPSTREAM_ERRORS, "route" => route.clone(), "kind" => kind).increment(1);
}

/// Counts one configuration reload.
pub fn config_reload(ok: bool) {
    metrics::counter!(CONFIG_RELOADS, "result" => if ok { "ok" } else { "error" }).increment(1);
}

/// Tracks open connections on a listener.
pub fn connection_opened(listener: &'static str) {
    metrics::gauge!(CONNECTIONS, "listener" => listener).increment(1.0);
}

/// The matching close.
pub fn connection_closed(listener: &'static str) {
    metrics::gauge!(CONNECTIONS, "listener" => listener).decrement(1.0);
}

/// Counts one authentication decision.
pub fn auth_decision(
    route: &SharedString,
    method: &'static str,
    result: &'static str,
    reason: &'static str,
) {
    metrics::counter!(AUTH_DECISIONS, "route" => route.clone(), "method" => method, "result" => result, "reason" => reason)
        .increment(1);
}

/// Counts one JWKS fetch.
pub fn jwks_refresh(issuer: &str, result: &'static str) {
    metrics::counter!(JWKS_REFRESH, "issuer" => issuer.to_string(), "result" => result)
        .increment(1);
}

/// Records how old an issuer's key set is.
pub fn jwks_age(issuer: &str, age: Option<Duration>) {
    if let Some(age) = age {
        metrics::gauge!(JWKS_AGE, "issuer" => issuer.to_string()).set(age.as_secs_f64());
    }
}

/// Counts a key refused at load.
pub fn key_refused(issuer: &str) {
    metrics::counter!(KEYS_REFUSED, "issuer" => issuer.to_string()).increment(1);
}

/// Counts a token-cache lookup.
pub fn token_cache(hit: bool) {
    metrics::counter!(TOKEN_CACHE, "result" => if hit { "hit" } else { "miss" }).increment(1);
}

/// Counts one token-service request.
pub fn token_service(endpoint: &'static str, result: &'static str) {
    metrics::counter!(TOKEN_SERVICE, "endpoint" => endpoint, "result" => result).increment(1);
}
