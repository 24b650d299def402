//! Every metric name in one place, with the one function that records each, so names and
//! label sets cannot drift apart. Labels hold only small closed sets (route ids, issuer ids,
//! reason codes), never free text, so cardinality stays bounded.

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests answered: `{route, status}`.
pub const REQUESTS: &str = "authgate_requests_total";
/// Time from request head to response head: `{route}`.
pub const REQUEST_DURATION: &str = "authgate_request_duration_seconds";
/// Upstream failures: `{route, kind}` = connect | timeout | failed | overloaded.
pub const UPSTREAM_ERRORS: &str = "authgate_upstream_errors_total";
/// Upstream connections: `{upstream, state}` = open (idle or busy) | idle; HTTP/1.1 only (an
/// HTTP/2 target shares one connection).
pub const UPSTREAM_CONNECTIONS: &str = "authgate_upstream_connections";
/// Requests waiting for an upstream connection: `{upstream}`.
pub const UPSTREAM_PENDING: &str = "authgate_upstream_pending";
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
/// Requests that stopped waiting for an unknown-`kid` refetch (which went on without them).
pub const REFETCH_WAIT_ABANDONED: &str = "authgate_jwks_refetch_wait_abandoned_total";
/// Verified-token cache lookups: `{result}` = hit | miss.
pub const TOKEN_CACHE: &str = "authgate_token_cache_total";
/// Requests refused by a limit: `{route, plan, limit}`, limit = rate | quota, plan = the
/// consumer's plan or `-` (a route's own limit, no plan).
pub const RATE_LIMITED: &str = "authgate_rate_limited_total";
/// Metered tokens: `{route, model, kind}`, kind = input | output | cached.
pub const USAGE_TOKENS: &str = "authgate_usage_tokens_total";
/// Metered cost in USD: `{route, model}` (counted in micro-USD, exported as USD).
pub const USAGE_COST: &str = "authgate_usage_cost_usd_total";
/// Metered responses whose usage is an estimate (the provider never reported it): `{route}`.
pub const USAGE_ESTIMATED: &str = "authgate_usage_estimated_total";
/// Token-service requests: `{endpoint, result}`, result = ok or an RFC 6749 error code.
pub const TOKEN_SERVICE: &str = "authgate_token_service_requests_total";

/// Browser sign-ins completed (a session opened).
pub const SIGN_INS: &str = "authgate_sign_ins_total";
/// Sign-in callbacks refused: `{reason}` (missing_state, unknown_state, other_browser,
/// provider_refused, missing_code, code_refused, missing_id_token, wrong_nonce, a verifier
/// reason such as wrong_audience or bad_signature, provider_not_ready, provider_unreachable,
/// store_unavailable).
pub const SIGN_IN_FAILURES: &str = "authgate_sign_in_callbacks_failed_total";
/// Live browser sessions (across the fleet when sessions are on Redis).
pub const SESSIONS_ACTIVE: &str = "authgate_sessions_active";
/// Session refreshes with the provider's refresh token: `{result}` = ok | refused | unavailable.
pub const SESSION_REFRESHES: &str = "authgate_session_refreshes_total";
/// Logouts: `{kind}` = rp (the browser's) | back_channel (the provider's).
pub const LOGOUTS: &str = "authgate_logouts_total";

/// Histogram buckets for a gateway: 50 µs to 10 s.
const DURATION_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// The recorder's handle, once [`install`] has run (`None` inside: another recorder was first).
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns the handle `/metrics`
/// renders. `None` if another recorder was installed first (the metrics then go there).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), &DURATION_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(REVOCATION_LAG.into()),
                        &DURATION_BUCKETS,
                    )
                })
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

/// Calls `record` with the handle kept in `cell`, resolving it with `make` the first time. A
/// handle is kept only once [`install`] has run: from then on the process's recorder is fixed,
/// while one resolved earlier could be a no-op left over from before any recorder existed.
fn with_kept<T>(cell: &OnceLock<T>, make: impl FnOnce() -> T, record: impl FnOnce(&T)) {
    if let Some(handle) = cell.get() {
        record(handle);
    } else if HANDLE.get().is_some() {
        record(cell.get_or_init(make));
    } else {
        record(&make());
    }
}

/// The statuses a route keeps a resolved request counter for: the ones a gateway answers with.
/// Any other status is counted through a lookup, as correct and a little slower.
const KEPT_STATUSES: [u16; 16] = [
    200, 101, 201, 204, 301, 302, 304, 400, 401, 403, 404, 413, 500, 502, 503, 504,
];

/// One route's per-request metric handles, resolved on first use and then reused: recording
/// through a handle is an atomic add, where `counter!` with labels builds, sorts and hashes a
/// key and looks it up in the registry on every call. Lives as long as the route's snapshot.
#[derive(Debug)]
pub struct RouteMetrics {
    label: SharedString,
    requests: [OnceLock<Counter>; KEPT_STATUSES.len()],
    duration: OnceLock<Histogram>,
    /// `allow` decisions (reason `ok`) by method: `jwt`, `api_key`.
    allowed: [OnceLock<Counter>; 2],
}

impl RouteMetrics {
    /// The handles of the route labelled `label`, none resolved yet.
    pub fn new(label: SharedString) -> Self {
        RouteMetrics {
            label,
            requests: std::array::from_fn(|_| OnceLock::new()),
            duration: OnceLock::new(),
            allowed: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// The handles of requests no route matched (`route="-"`).
    pub fn no_route() -> &'static RouteMetrics {
        static NO_ROUTE: LazyLock<RouteMetrics> = LazyLock::new(|| RouteMetrics::new("-".into()));
        &NO_ROUTE
    }

    /// The handles of requests to the token service's endpoints (route `token_service`).
    pub fn token_service() -> &'static RouteMetrics {
        static TOKEN_SERVICE: LazyLock<RouteMetrics> =
            LazyLock::new(|| RouteMetrics::new("token_service".into()));
        &TOKEN_SERVICE
    }

    /// The handles of requests to the sign-in endpoints (route `sign_in`).
    pub fn sign_in() -> &'static RouteMetrics {
        static SIGN_IN: LazyLock<RouteMetrics> =
            LazyLock::new(|| RouteMetrics::new("sign_in".into()));
        &SIGN_IN
    }

    /// The `route` label.
    pub fn label(&self) -> &SharedString {
        &self.label
    }

    /// Counts one answered request and its duration.
    pub fn request(&self, status: u16, duration: Duration) {
        let counter = || metrics::counter!(REQUESTS, "route" => self.label.clone(), "status" => status_label(status));
        match KEPT_STATUSES.iter().position(|kept| *kept == status) {
            Some(slot) => with_kept(&self.requests[slot], counter, |c| c.increment(1)),
            None => counter().increment(1),
        }
        with_kept(
            &self.duration,
            || metrics::histogram!(REQUEST_DURATION, "route" => self.label.clone()),
            |h| h.record(duration.as_secs_f64()),
        );
    }

    /// Counts one authentication decision.
    pub fn auth_decision(&self, method: &'static str, result: &'static str, reason: &'static str) {
        let counter = || metrics::counter!(AUTH_DECISIONS, "route" => self.label.clone(), "method" => method, "result" => result, "reason" => reason);
        let slot = match (method, result, reason) {
            ("jwt", "allow", "ok") => Some(0),
            ("api_key", "allow", "ok") => Some(1),
            _ => None,
        };
        match slot {
            Some(slot) => with_kept(&self.allowed[slot], counter, |c| c.increment(1)),
            None => counter().increment(1),
        }
    }
}

/// Counts one upstream failure.
pub fn upstream_error(route: &SharedString, kind: &'static str) {
    metrics::counter!(UPSTREAM_ERRORS, "route" => route.clone(), "kind" => kind).increment(1);
}

/// One upstream's pool gauges, resolved once when its pool is built (the request path only
/// adds and subtracts).
#[derive(Clone)]
pub struct PoolGauges {
    /// Connections open.
    pub open: Gauge,
    /// Of those, idle.
    pub idle: Gauge,
    /// Requests waiting for a connection.
    pub pending: Gauge,
}

/// The pool gauges of `upstream`.
pub fn pool_gauges(upstream: &str) -> PoolGauges {
    let upstream = SharedString::from(upstream.to_string());
    PoolGauges {
        open: metrics::gauge!(UPSTREAM_CONNECTIONS, "upstream" => upstream.clone(), "state" => "open"),
        idle: metrics::gauge!(UPSTREAM_CONNECTIONS, "upstream" => upstream.clone(), "state" => "idle"),
        pending: metrics::gauge!(UPSTREAM_PENDING, "upstream" => upstream),
    }
}

/// Counts one configuration reload.
pub fn config_reload(ok: bool) {
    metrics::counter!(CONFIG_RELOADS, "result" => if ok { "ok" } else { "error" }).increment(1);
}

/// Calls `record` with the open-connections gauge of `listener`.
fn connections(listener: &'static str, record: impl FnOnce(&Gauge)) {
    static KEPT: [OnceLock<Gauge>; 2] = [OnceLock::new(), OnceLock::new()];
    let gauge = || metrics::gauge!(CONNECTIONS, "listener" => listener);
    match listener {
        "http" => with_kept(&KEPT[0], gauge, record),
        "https" => with_kept(&KEPT[1], gauge, record),
        _ => record(&gauge()),
    }
}

/// Tracks open connections on a listener.
pub fn connection_opened(listener: &'static str) {
    connections(listener, |g| g.increment(1.0));
}

/// The matching close.
pub fn connection_closed(listener: &'static str) {
    connections(listener, |g| g.decrement(1.0));
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

/// Counts a request that stopped waiting for an unknown-`kid` refetch.
pub fn refetch_wait_abandoned(issuer: &str) {
    metrics::counter!(REFETCH_WAIT_ABANDONED, "issuer" => issuer.to_string()).increment(1);
}

/// Counts a token-cache lookup.
pub fn token_cache(hit: bool) {
    static KEPT: [OnceLock<Counter>; 2] = [OnceLock::new(), OnceLock::new()];
    with_kept(
        &KEPT[usize::from(hit)],
        || metrics::counter!(TOKEN_CACHE, "result" => if hit { "hit" } else { "miss" }),
        |c| c.increment(1),
    );
}

/// Counts one token-service request.
pub fn token_service(endpoint: &'static str, result: &'static str) {
    metrics::counter!(TOKEN_SERVICE, "endpoint" => endpoint, "result" => result).increment(1);
}

/// Counts one request a limit refused.
pub fn rate_limited(route: &SharedString, plan: Option<&SharedString>, limit: &'static str) {
    let plan = plan
        .cloned()
        .unwrap_or_else(|| SharedString::const_str("-"));
    metrics::counter!(RATE_LIMITED, "route" => route.clone(), "plan" => plan, "limit" => limit)
        .increment(1);
}

/// Whether the shared state backend (Redis) answers: 1 or 0.
pub const STATE_BACKEND_UP: &str = "authgate_state_backend_up";
/// Shared-state commands that failed or timed out: `{operation}`.
pub const STATE_BACKEND_ERRORS: &str = "authgate_state_backend_errors_total";
/// Time from a revocation's append to the shared stream to this replica applying it.
pub const REVOCATION_LAG: &str = "authgate_revocation_lag_seconds";

/// Sets whether the shared state backend answers.
pub fn state_backend_up(up: bool) {
    metrics::gauge!(STATE_BACKEND_UP).set(if up { 1.0 } else { 0.0 });
}

/// Counts one failed shared-state command.
pub fn state_backend_error(operation: &'static str) {
    metrics::counter!(STATE_BACKEND_ERRORS, "operation" => operation).increment(1);
}

/// Records how long a revocation took to reach this replica.
pub fn revocation_lag(lag: Duration) {
    metrics::histogram!(REVOCATION_LAG).record(lag.as_secs_f64());
}

/// Counts one metered response's usage. The model label is the provider's model name (cut to
/// 100 characters), a set the provider bounds.
pub fn usage(
    route: &SharedString,
    model: &str,
    input: u64,
    output: u64,
    cached: u64,
    cost_micro_usd: u64,
    estimated: bool,
) {
    let model = SharedString::from(model.to_string());
    for (kind, tokens) in [("input", input), ("output", output), ("cached", cached)] {
        metrics::counter!(USAGE_TOKENS, "route" => route.clone(), "model" => model.clone(), "kind" => kind)
            .increment(tokens);
    }
    // The `metrics` facade counts in integers only; USD needs a fraction, so this one is a
    // gauge that only ever goes up (exported with `# TYPE … gauge`).
    #[allow(clippy::cast_precision_loss)]
    let usd = cost_micro_usd as f64 / 1e6;
    metrics::gauge!(USAGE_COST, "route" => route.clone(), "model" => model).increment(usd);
    if estimated {
        metrics::counter!(USAGE_ESTIMATED, "route" => route.clone()).increment(1);
    }
}

/// Counts one completed sign-in.
pub fn sign_in() {
    metrics::counter!(SIGN_INS).increment(1);
}

/// Counts one refused sign-in callback.
pub fn sign_in_failed(reason: &'static str) {
    metrics::counter!(SIGN_IN_FAILURES, "reason" => reason).increment(1);
}

/// Sets the number of live sessions.
pub fn sessions_active(count: u64) {
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!(SESSIONS_ACTIVE).set(count as f64);
}

/// Counts one session refresh.
pub fn session_refresh(result: &'static str) {
    metrics::counter!(SESSION_REFRESHES, "result" => result).increment(1);
}

/// Counts one logout.
pub fn logout(kind: &'static str) {
    metrics::counter!(LOGOUTS, "kind" => kind).increment(1);
}
