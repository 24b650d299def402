//! Policies: one limit (a plan's rate, its quota, a route's own rate) with the name headers and
//! the store know it by, its table salt, and its `RateLimit-Policy` item, all built once per
//! snapshot so a request only looks them up.

use std::sync::Arc;

use http::HeaderValue;
use metrics::SharedString;

use super::gcra::Gcra;
use super::{consumer, headers, Consumer, Key};
use crate::config::{Quota, QuotaWindow, RateLimit};

/// What a policy limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// A GCRA rate.
    Rate(Gcra),
    /// A calendar quota.
    Quota(Quota),
}

/// One limit with its name, as headers and the store know it.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `gold`, `gold-quota`, `route-search`.
    pub name: Arc<str>,
    /// What it limits.
    pub kind: PolicyKind,
    salt: u64,
    /// The name as an sf-string.
    pub(super) quoted: String,
    /// Its `RateLimit-Policy` item.
    pub(super) item: String,
    /// `RateLimit-Policy` when it is the only policy.
    pub(super) header: HeaderValue,
}

impl Policy {
    /// A rate policy.
    pub fn rate(name: &str, limit: &RateLimit) -> Policy {
        let window = limit.rate.period.as_secs().max(1);
        Policy::new(
            name,
            PolicyKind::Rate(Gcra::new(limit)),
            limit.rate.count,
            window,
        )
    }

    /// A quota policy.
    pub fn quota(name: &str, quota: Quota) -> Policy {
        let window = match quota.window {
            QuotaWindow::Day => 86_400,
            QuotaWindow::Month => 30 * 86_400,
        };
        Policy::new(name, PolicyKind::Quota(quota), quota.count, window)
    }

    fn new(name: &str, kind: PolicyKind, quota: u64, window: u64) -> Policy {
        let item = headers::policy_item(name, quota, window);
        Policy {
            name: name.into(),
            kind,
            salt: consumer::policy_salt(name),
            quoted: headers::sf_string(name),
            header: headers::list(std::iter::once(item.as_str())),
            item,
        }
    }

    /// The key of `consumer` (whose hash is `consumer_hash`) under this policy.
    pub fn key<'a>(&'a self, consumer: &'a Consumer<'a>, consumer_hash: u64) -> Key<'a> {
        Key {
            hash: consumer::table_key(consumer_hash, self.salt),
            consumer,
            policy: self,
        }
    }

    /// `rate` or `quota`, the `limit` label.
    pub fn limit_label(&self) -> &'static str {
        match self.kind {
            PolicyKind::Rate(_) => "rate",
            PolicyKind::Quota(_) => "quota",
        }
    }
}

/// A plan's policies.
#[derive(Debug)]
pub struct PlanPolicies {
    /// The plan's name, as the `plan` label.
    pub label: SharedString,
    /// Its rate, named after the plan.
    pub rate: Option<Policy>,
    /// Its quota, named `{plan}-quota`.
    pub quota: Option<Policy>,
    /// `RateLimit-Policy` of its policies, built once.
    pub(super) header: Option<HeaderValue>,
}

impl PlanPolicies {
    pub(super) fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.rate.iter().chain(self.quota.iter())
    }
}

/// `RateLimit-Policy` for a route's own limit and a plan: built once for each alone, joined
/// only when both apply.
pub(super) fn policy_header(
    route: Option<&Policy>,
    plan: Option<&PlanPolicies>,
) -> Option<HeaderValue> {
    let plan_header = plan.and_then(|p| p.header.as_ref());
    match (route, plan_header) {
        (None, plan_header) => plan_header.cloned(),
        (Some(route), None) => Some(route.header.clone()),
        (Some(route), Some(_)) => {
            let plan = plan?;
            let items = std::iter::once(route).chain(plan.policies());
            Some(headers::list(items.map(|p| p.item.as_str())))
        }
    }
}
