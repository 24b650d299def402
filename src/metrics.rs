//! Every metric name in one place, with the one function that records each, so names and
//! label sets cannot drift apart. Labels hold only small closed sets (route ids, issuer ids,
//! reason codes), never free text, so cardinality stays bounded.

use std::time::Duration;

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

/// Counts one authentication decision.
pub fn auth_decision(
    route: &str,
    method: &'static str,
    result: &'static str,
    reason: &'static str,
) {
    metrics::counter!(AUTH_DECISIONS, "route" => route.to_string(), "method" => method, "result" => result, "reason" => reason)
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
