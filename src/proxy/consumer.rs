//! Who a request counts against, and on which plan: the step between authentication and the
//! limits. An API key names its plan in the keys file; a JWT by `[consumers] plan_claim`, or —
//! for the token service's own tokens — by its client's or user's entry; anyone else is on
//! `default_plan`. A caller without credentials (a public route) is its address, on
//! `anonymous_plan`.

use std::net::IpAddr;

use crate::auth::Identity;
use crate::limits::consumer::address_key;
use crate::limits::{Consumer, PlanPolicies};
use crate::runtime::Snapshot;

/// The consumer and its plan (`None`: no plan applies, only the route's own limit if any).
pub fn resolve<'a>(
    snapshot: &'a Snapshot,
    identity: Option<&'a Identity>,
    address: impl FnOnce() -> IpAddr,
) -> (Consumer<'a>, Option<&'a PlanPolicies>) {
    let limits = &snapshot.limits;
    let named = |name: Option<&str>| name.and_then(|n| limits.plan(n));
    match identity {
        None => (
            Consumer::Address(address_key(address())),
            limits.anonymous_plan().map(|p| &**p),
        ),
        Some(Identity::ApiKey(entry)) => (
            Consumer::ApiKey(&entry.id),
            named(entry.plan.as_deref())
                .or(limits.default_plan())
                .map(|p| &**p),
        ),
        Some(Identity::Jwt { verified, issuer } | Identity::Session { verified, issuer }) => {
            let claims = &verified.claims.all;
            let by_claim = limits
                .plan_claim
                .as_deref()
                .and_then(|path| crate::auth::claim_at(claims, path))
                .and_then(|value| value.as_str());
            // The token service's own tokens: the plan of the client or user it issued to.
            let by_entry = snapshot
                .token_service
                .as_ref()
                .filter(|service| service.settings.id == issuer.settings.id)
                .and_then(|service| match claims.get("client_id") {
                    Some(client) => service
                        .settings
                        .clients
                        .get(client.as_str()?)?
                        .plan
                        .as_deref(),
                    None => service
                        .settings
                        .users
                        .by_subject(&verified.claims.subject)?
                        .plan
                        .as_deref(),
                });
            let plan = named(by_claim)
                .or_else(|| named(by_entry))
                .or(limits.default_plan())
                .map(|p| &**p);
            (
                Consumer::Jwt {
                    issuer: &issuer.settings.id,
                    subject: &verified.claims.subject,
                },
                plan,
            )
        }
    }
}
