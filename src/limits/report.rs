//! What the admin listener shows and changes for one consumer: its plan and standing
//! (`GET /consumers/{id}`), and a quota reset (`DELETE /consumers/{id}/quota`).

use super::{headers, quota, Consumer, Limiter, Limits, Now, Policy, PolicyKind, Standing};

impl Limits {
    /// What the admin listener shows for a consumer id: its plan and where it stands under it.
    /// `None` when no plan holds state for it (never seen, or idle long enough to be dropped).
    pub fn describe(&self, id: &str, now: Now) -> Option<serde_json::Value> {
        let consumer = Consumer::parse(id)?;
        let hash = consumer.hash();
        let mut names: Vec<&String> = self.plans.keys().collect();
        names.sort();
        let mut found = None;
        for name in names {
            let plan = &self.plans[name];
            let rate = plan.rate.as_ref().and_then(|policy| {
                let standing = self
                    .tables
                    .rates
                    .standing(&policy.key(&consumer, hash), now)?;
                Some((policy, standing))
            });
            let quota = plan.quota.as_ref().and_then(|policy| {
                let quotas = self.tables.quotas.get()?;
                let standing = quotas.standing(&policy.key(&consumer, hash), now)?;
                Some((policy, standing))
            });
            if rate.is_none() && quota.is_none() {
                continue;
            }
            // A consumer that changed plans may hold state under both: the one with a live
            // rate cell is the one in use.
            let live = rate.is_some();
            found = Some((name, plan, rate, quota));
            if live {
                break;
            }
        }
        let (name, plan, rate, quota) = found?;
        let rate_json = |policy: &Policy, standing: Option<Standing>| match policy.kind {
            PolicyKind::Rate(gcra) => {
                let standing = standing.unwrap_or(Standing {
                    remaining: gcra.burst,
                    reset_nanos: 0,
                    wait_nanos: None,
                });
                serde_json::json!({
                    "policy": &*policy.name,
                    "burst": gcra.burst,
                    "interval_ms": gcra.interval as f64 / 1e6,
                    "remaining": standing.remaining,
                    "reset_seconds": headers::ceil_seconds(standing.reset_nanos),
                })
            }
            PolicyKind::Quota(_) => serde_json::Value::Null,
        };
        let quota_json = |policy: &Policy, standing: Option<Standing>| match policy.kind {
            PolicyKind::Quota(q) => {
                let (_, end) = quota::window(q.window, now.unix);
                let remaining = standing.map_or(q.count, |s| s.remaining);
                serde_json::json!({
                    "policy": &*policy.name,
                    "limit": q.count,
                    "used": q.count - remaining.min(q.count),
                    "remaining": remaining,
                    "reset_seconds": end - now.unix,
                })
            }
            PolicyKind::Rate(_) => serde_json::Value::Null,
        };
        Some(serde_json::json!({
            "consumer": consumer.to_string(),
            "plan": name,
            "rate": plan.rate.as_ref().map(|p| rate_json(p, rate.map(|(_, s)| s))),
            "quota": plan.quota.as_ref().map(|p| quota_json(p, quota.map(|(_, s)| s))),
        }))
    }

    /// Sets the consumer's quota counters back to zero under every plan; whether it had any.
    pub fn reset_quota(&self, id: &str) -> bool {
        let Some(consumer) = Consumer::parse(id) else {
            return false;
        };
        let Some(quotas) = self.tables.quotas.get() else {
            return false;
        };
        let hash = consumer.hash();
        let mut any = false;
        for plan in self.plans.values() {
            if let Some(policy) = &plan.quota {
                any |= quotas.reset(&policy.key(&consumer, hash));
            }
        }
        if any {
            self.flush();
        }
        any
    }
}
