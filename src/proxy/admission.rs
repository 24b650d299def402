//! Admission: whether the caller may use the route it reached. Authentication against keys
//! already in memory, the route's policy, then the consumer's plan and the route's own limit.
//! Proxied requests and forward-auth decisions both pass through here, so a request is judged
//! the same way whichever door it came in by.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};

use super::consumer;
use super::routes::Route;
use crate::access_log::Exchange;
use crate::auth::Identity;
use crate::error::GatewayError;
use crate::limits::Denial;
use crate::runtime::Snapshot;

/// Authenticates and authorizes the caller of `route`, then checks its limits. `None` for a
/// public route. `client` names the caller's address, for consumers without credentials. What
/// the RateLimit fields of the response will say is left in `exchange`.
pub async fn admit<'s>(
    snapshot: &'s Snapshot,
    route: &'s Route,
    headers: &HeaderMap,
    client: impl FnOnce() -> IpAddr,
    request_id: &HeaderValue,
    exchange: &mut Exchange<'s>,
) -> Result<Option<Identity>, GatewayError> {
    // Against keys already in memory (no network wait, but for the bounded unknown-`kid`
    // refetch), then whether this caller may use the route.
    let identity = if route.public {
        None
    } else {
        let authenticated = match &snapshot.sign_in {
            // Boxed: a session may be read from the store (or refreshed at the provider), and
            // that state would otherwise enlarge every request's future.
            Some(sign_in) if route.auth.session => {
                Box::pin(sign_in.authenticate(&snapshot.auth, &route.auth, headers)).await
            }
            _ => snapshot.auth.authenticate(&route.auth, headers).await,
        };
        match authenticated {
            Ok(identity) => {
                exchange.auth_method = Some(identity.method());
                if exchange.logged {
                    exchange.principal =
                        Some(identity.key_id().unwrap_or(identity.subject()).to_string());
                }
                Some(identity)
            }
            Err(error) => {
                let reason = error.reason();
                if tracing::enabled!(tracing::Level::DEBUG) {
                    // What was presented beside what the route expects; never the token itself.
                    let detail =
                        crate::auth::diagnose::describe(&snapshot.auth, &route.auth, headers);
                    tracing::debug!(
                        request_id = request_id.to_str().unwrap_or_default(),
                        route = route.id.as_str(),
                        reason,
                        %detail,
                        "credential refused"
                    );
                }
                // Counted under the kind of credential that was presented, good or not.
                let presented = match &snapshot.sign_in {
                    Some(sign_in) if route.auth.session => {
                        sign_in.presented(&snapshot.auth, &route.auth, headers)
                    }
                    _ => snapshot.auth.presented_method(&route.auth, headers),
                };
                route.metrics.auth_decision(presented, "deny", reason);
                return Err(error.into());
            }
        }
    };

    // Limits come after authentication, so a refused credential costs its owner nothing, and
    // before anything is forwarded, so a refused request never reaches the upstream.
    let method = identity.as_ref().map_or("none", Identity::method);
    let limited = limit(snapshot, route, identity.as_ref(), client, exchange).await;
    if let Err(Denial::Unavailable) = limited {
        // `[state] on_failure = "closed"` and the shared limits cannot be asked.
        route
            .metrics
            .auth_decision(method, "deny", "limits_unavailable");
        exchange.reason = Some("limits_unavailable");
        return Err(GatewayError::LimitsUnavailable);
    }
    if let Err(Denial::Limited(refusal)) = limited {
        let (reason, limit) = match refusal.exceeded {
            crate::limits::Exceeded::Rate => ("rate_limited", "rate"),
            crate::limits::Exceeded::Quota => ("quota_exceeded", "quota"),
        };
        route.metrics.auth_decision(method, "deny", reason);
        crate::metrics::rate_limited(&route.label, exchange.plan.as_ref(), limit);
        exchange.reason = Some(reason);
        return Err(GatewayError::Limited(refusal));
    }
    if identity.is_some() {
        route.metrics.auth_decision(method, "allow", "ok");
    }
    Ok(identity)
}

/// Checks the consumer's plan and the route's own limit: in this process, or in the fleet's
/// shared state when `[state] backend = "redis"` (one round trip, bounded by its timeout).
async fn limit<'s>(
    snapshot: &'s Snapshot,
    route: &'s Route,
    identity: Option<&Identity>,
    client: impl FnOnce() -> IpAddr,
    exchange: &mut Exchange<'s>,
) -> Result<(), Denial> {
    let (consumer, plan) = consumer::resolve(snapshot, identity, client);
    if plan.is_none() && route.limit.is_none() {
        return Ok(());
    }
    exchange.plan = plan.map(|p| p.label.clone());
    let now = crate::limits::Now::current();
    let grant = snapshot
        .limits
        .decide(&consumer, plan, route.limit.as_ref(), 1, now)
        .await?;
    if snapshot.limits.headers {
        exchange.rate_limit = grant.headers();
    }
    Ok(())
}
