//! Limits per consumer: plans (a rate and a quota), a route's own rate, and the decision a
//! request gets from them after it is authenticated and before it is forwarded.
//!
//! Every limit goes through one small trait, [`Limiter`]: take `cost` units for a key at a
//! time, give them back, read the standing, reset. Rates ([`gcra::RateTable`]) and quotas
//! ([`quota::QuotaTable`]) implement it in this process; a store shared by a fleet, and budgets
//! counted in tokens or money, implement the same calls with another cost.
//!
//! [`Limits`] is one snapshot's view: the plans of its config, compiled into [`Policy`]s with
//! their header items ready. The tables behind it are shared by every snapshot, so a reload
//! that changes a plan's numbers applies them at once while each consumer keeps its state.
//!
//! ```
//! use authgate::limits::gcra::Gcra;
//! // 10/s with a burst of 5: five at once, then one per 100 ms.
//! let gcra = Gcra { interval: 100_000_000, burst: 5 };
//! let mut tat = 0;
//! for _ in 0..5 {
//!     tat = gcra.take(tat, 1_000, 1).unwrap();
//! }
//! assert_eq!(gcra.take(tat, 1_000, 1), Err(100_000_000));
//! ```

pub mod consumer;
pub mod gcra;
pub mod headers;
mod policy;
pub mod quota;
mod report;
pub mod shared;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use http::HeaderValue;

pub use consumer::Consumer;
pub use policy::{PlanPolicies, Policy, PolicyKind};

use crate::config::{Config, OnFailure, StateBackend};
use gcra::RateTable;
use policy::policy_header;
use quota::QuotaTable;

/// The time a decision is made at: a monotonic clock for rates, the wall clock for quotas'
/// calendar windows. Passed in, so tests decide what time it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Nanoseconds of the process's monotonic clock.
    pub nanos: u64,
    /// Seconds since the epoch, UTC.
    pub unix: i64,
}

impl Now {
    /// The current time.
    pub fn current() -> Now {
        Now {
            nanos: crate::clock::monotonic_ns(),
            unix: crate::auth::unix_now(),
        }
    }
}

/// Where a consumer stands under one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Units that could be taken now.
    pub remaining: u64,
    /// Nanoseconds until the allowance is whole again (a rate's burst refilled, a quota's
    /// window over).
    pub reset_nanos: u64,
    /// Set when units were refused: nanoseconds until they could be taken.
    pub wait_nanos: Option<u64>,
}

impl Standing {
    fn unlimited() -> Standing {
        Standing {
            remaining: u64::MAX,
            reset_nanos: 0,
            wait_nanos: None,
        }
    }
}

/// One consumer under one policy, as a limiter sees it.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    /// The table index: the consumer's hash mixed with the policy's salt.
    pub hash: u64,
    /// The consumer, for limiters that keep its name (the quota store).
    pub consumer: &'a Consumer<'a>,
    /// The policy.
    pub policy: &'a Policy,
}

/// Check-and-consume: the one path every limit takes.
pub trait Limiter: Send + Sync + std::fmt::Debug {
    /// Takes `cost` units for `key` at `now` — all of them, or (when `wait_nanos` is set in the
    /// answer) none.
    fn acquire(&self, key: &Key<'_>, cost: u64, now: Now) -> Standing;
    /// Gives back units `acquire` took (a later limit refused the request).
    fn release(&self, key: &Key<'_>, cost: u64, now: Now);
    /// Where `key` stands without taking anything; `None` when it holds no state.
    fn standing(&self, key: &Key<'_>, now: Now) -> Option<Standing>;
    /// Forgets what `key` used; whether it held anything.
    fn reset(&self, key: &Key<'_>) -> bool;
}

/// The tables every snapshot shares.
#[derive(Debug)]
struct Tables {
    rates: RateTable,
    /// Opened once a config has a quota.
    quotas: OnceLock<QuotaTable>,
    /// The directory the quotas are kept in (a reload cannot move it).
    data_dir: OnceLock<std::path::PathBuf>,
}

/// One snapshot's limits.
#[derive(Debug)]
pub struct Limits {
    plans: HashMap<String, Arc<PlanPolicies>>,
    default_plan: Option<Arc<PlanPolicies>>,
    anonymous_plan: Option<Arc<PlanPolicies>>,
    /// `[consumers] plan_claim`.
    pub plan_claim: Option<String>,
    /// `[consumers] headers`: RateLimit fields on allowed responses.
    pub headers: bool,
    tables: Arc<Tables>,
    /// With `[state] backend = "redis"`: limits decided in Redis, and what to do without it.
    shared: Option<(shared::SharedLimits, OnFailure)>,
}

/// Why the limits did not let a request through.
#[derive(Debug, Clone)]
pub enum Denial {
    /// A limit is used up: 429.
    Limited(Refusal),
    /// The shared limits cannot be decided now and `on_failure = "closed"`: 503.
    Unavailable,
}

/// A request the limits let through, with what the headers say about it.
#[derive(Debug)]
pub struct Grant<'a> {
    route: Option<&'a Policy>,
    plan: Option<&'a PlanPolicies>,
    items: [Option<(&'a Policy, Standing)>; 3],
}

impl<'a> Grant<'a> {
    /// The policies that apply, in their order (the route's rate, the plan's rate, its quota),
    /// and a grant with nothing taken yet.
    fn empty(
        route: Option<&'a Policy>,
        plan: Option<&'a PlanPolicies>,
    ) -> ([Option<&'a Policy>; 3], Grant<'a>) {
        let policies = [
            route,
            plan.and_then(|p| p.rate.as_ref()),
            plan.and_then(|p| p.quota.as_ref()),
        ];
        let grant = Grant {
            route,
            plan,
            items: [None; 3],
        };
        (policies, grant)
    }

    /// `RateLimit-Policy` and `RateLimit` for the response, when a policy applied.
    pub fn headers(&self) -> Option<(HeaderValue, HeaderValue)> {
        let policies = policy_header(self.route, self.plan)?;
        let mut standing = Vec::with_capacity(64);
        for (policy, state) in self.items.iter().flatten() {
            headers::push_item(
                &mut standing,
                &policy.quoted,
                state.remaining,
                headers::ceil_seconds(state.reset_nanos),
            );
        }
        Some((policies, headers::value(standing)))
    }
}

/// Which kind of limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// A rate: retry shortly.
    Rate,
    /// A quota: retry in the next window.
    Quota,
}

/// A request the limits refused: what the 429 says.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Which kind of limit.
    pub exceeded: Exceeded,
    /// The policy's name.
    pub policy: Arc<str>,
    /// Whole seconds until the request could pass (at least 1).
    pub retry_after: u64,
    /// `RateLimit-Policy`: every policy that applied.
    pub policy_header: HeaderValue,
    /// `RateLimit`: the refusing policy, nothing left.
    pub header: HeaderValue,
}

impl Limits {
    /// The limits of `config`, keeping the tables of `previous` (the snapshot being replaced).
    /// Fails only when the quota store cannot be opened.
    pub fn new(config: &Config, previous: Option<&Limits>) -> Result<Limits, String> {
        let plans: HashMap<String, Arc<PlanPolicies>> = config
            .plans
            .values()
            .map(|plan| {
                let mut policies = PlanPolicies {
                    label: Arc::<str>::from(plan.name.as_str()).into(),
                    rate: plan
                        .rate
                        .as_ref()
                        .map(|rate| Policy::rate(&plan.name, rate)),
                    quota: plan
                        .quota
                        .map(|quota| Policy::quota(&format!("{}-quota", plan.name), quota)),
                    header: None,
                };
                if policies.policies().next().is_some() {
                    let items = policies.policies().map(|p| p.item.as_str());
                    policies.header = Some(headers::list(items));
                }
                (plan.name.clone(), Arc::new(policies))
            })
            .collect();
        let wants_quotas = config.plans.values().any(|p| p.quota.is_some());
        let tables = match previous {
            Some(previous) => previous.tables.clone(),
            None => {
                let tables = Arc::new(Tables {
                    rates: RateTable::default(),
                    quotas: OnceLock::new(),
                    data_dir: OnceLock::new(),
                });
                upkeep(Arc::downgrade(&tables));
                tables
            }
        };
        if wants_quotas {
            match tables.data_dir.get() {
                // The first config with a quota opens the store; a reload cannot move it.
                None => {
                    let quotas = open_quotas(&config.data_dir)?;
                    let _ = tables.quotas.set(quotas);
                    let _ = tables.data_dir.set(config.data_dir.clone());
                }
                Some(kept) if *kept != config.data_dir => {
                    tracing::warn!(kept = %kept.display(), "data_dir changed: quotas stay where they were opened until a restart");
                }
                Some(_) => {}
            }
        }
        let find = |name: &Option<String>| name.as_ref().and_then(|n| plans.get(n).cloned());
        let shared = match &config.state {
            StateBackend::Redis(settings) => {
                let redis = crate::state::redis::RedisState::shared(settings)
                    .map_err(|e| format!("shared limits: {e}"))?;
                Some((shared::SharedLimits::new(redis), settings.on_failure))
            }
            StateBackend::Embedded => None,
        };
        Ok(Limits {
            shared,
            default_plan: find(&config.consumers.default_plan),
            anonymous_plan: find(&config.consumers.anonymous_plan),
            plan_claim: config.consumers.plan_claim.clone(),
            headers: config.consumers.headers,
            plans,
            tables,
        })
    }

    /// The plan called `name`.
    pub fn plan(&self, name: &str) -> Option<&Arc<PlanPolicies>> {
        self.plans.get(name)
    }

    /// `[consumers] default_plan`.
    pub fn default_plan(&self) -> Option<&Arc<PlanPolicies>> {
        self.default_plan.as_ref()
    }

    /// `[consumers] anonymous_plan`.
    pub fn anonymous_plan(&self) -> Option<&Arc<PlanPolicies>> {
        self.anonymous_plan.as_ref()
    }

    fn limiter(&self, policy: &Policy) -> Option<&dyn Limiter> {
        match policy.kind {
            PolicyKind::Rate(_) => Some(&self.tables.rates),
            PolicyKind::Quota(_) => self.tables.quotas.get().map(|q| q as &dyn Limiter),
        }
    }

    /// Takes `cost` units from every policy that applies — the route's own rate, the plan's
    /// rate, the plan's quota — or from none: when one refuses, what the others took is given
    /// back, so a refused request costs nothing.
    pub fn check<'a>(
        &self,
        consumer: &Consumer<'_>,
        plan: Option<&'a PlanPolicies>,
        route: Option<&'a Policy>,
        cost: u64,
        now: Now,
    ) -> Result<Grant<'a>, Refusal> {
        let (policies, mut grant) = Grant::empty(route, plan);
        let hash = consumer.hash();
        for (slot, policy) in policies.iter().enumerate() {
            let Some(policy) = policy else { continue };
            let Some(limiter) = self.limiter(policy) else {
                continue;
            };
            let key = policy.key(consumer, hash);
            let standing = limiter.acquire(&key, cost, now);
            if let Some(wait) = standing.wait_nanos {
                for (taken, _) in grant.items.iter().flatten() {
                    if let Some(limiter) = self.limiter(taken) {
                        limiter.release(&taken.key(consumer, hash), cost, now);
                    }
                }
                return Err(refusal(policy, standing, wait, route, plan));
            }
            grant.items[slot] = Some((policy, standing));
        }
        Ok(grant)
    }

    /// [`Limits::check`] for a fleet: with `[state] backend = "redis"` every limit of the request
    /// is decided in Redis in one round trip, bounded by `[state] timeout`; when Redis cannot
    /// answer, `on_failure` decides (`local`: [`Limits::check`] in this process, `open`: no limit,
    /// `closed`: [`Denial::Unavailable`]). Without Redis it is [`Limits::check`].
    pub async fn decide<'a>(
        &self,
        consumer: &Consumer<'_>,
        plan: Option<&'a PlanPolicies>,
        route: Option<&'a Policy>,
        cost: u64,
        now: Now,
    ) -> Result<Grant<'a>, Denial> {
        let Some((shared, on_failure)) = &self.shared else {
            return self
                .check(consumer, plan, route, cost, now)
                .map_err(Denial::Limited);
        };
        let (slots, mut grant) = Grant::empty(route, plan);
        let applied: Vec<(usize, &'a Policy)> = slots
            .iter()
            .enumerate()
            .filter_map(|(slot, policy)| policy.map(|p| (slot, p)))
            .collect();
        if applied.is_empty() {
            return Ok(grant);
        }
        let policies: Vec<&Policy> = applied.iter().map(|(_, p)| *p).collect();
        // Boxed: the round trip's state is large, and only a fleet on Redis pays for it; the
        // local check above keeps every caller's future small.
        match Box::pin(shared.decide(consumer, &policies, cost, now)).await {
            Ok(shared::Decision::Allowed(standings)) => {
                for ((slot, policy), standing) in applied.iter().zip(standings) {
                    grant.items[*slot] = Some((policy, standing));
                }
                Ok(grant)
            }
            Ok(shared::Decision::Refused { index, standing }) => {
                let policy = policies[index.min(policies.len() - 1)];
                let wait = standing.wait_nanos.unwrap_or(1);
                Err(Denial::Limited(refusal(
                    policy, standing, wait, route, plan,
                )))
            }
            Err(_) => match on_failure {
                OnFailure::Local => self
                    .check(consumer, plan, route, cost, now)
                    .map_err(Denial::Limited),
                OnFailure::Open => Ok(grant),
                OnFailure::Closed => Err(Denial::Unavailable),
            },
        }
    }

    /// With `[state] backend = "redis"`: whether Redis answers now.
    pub fn state_backend_up(&self) -> Option<bool> {
        self.shared
            .as_ref()
            .map(|(shared, _)| shared.redis().is_up())
    }

    /// Writes the quota counters that changed (shutdown, admin resets; else every second).
    pub fn flush(&self) {
        if let Some(quotas) = self.tables.quotas.get() {
            if let Err(error) = quotas.flush(crate::auth::unix_now()) {
                tracing::error!(%error, "quota counters not written; retrying");
            }
        }
    }

    /// Rate cells and quota counters held in memory.
    pub fn held(&self) -> (usize, usize) {
        (
            self.tables.rates.len(),
            self.tables.quotas.get().map_or(0, QuotaTable::len),
        )
    }
}

/// The 429 of `policy`, which refused with `standing` (`wait`: nanoseconds until it would not).
fn refusal(
    policy: &Policy,
    standing: Standing,
    wait: u64,
    route: Option<&Policy>,
    plan: Option<&PlanPolicies>,
) -> Refusal {
    let mut header = Vec::new();
    headers::push_item(
        &mut header,
        &policy.quoted,
        0,
        headers::ceil_seconds(standing.reset_nanos.max(wait)),
    );
    Refusal {
        exceeded: match policy.kind {
            PolicyKind::Rate(_) => Exceeded::Rate,
            PolicyKind::Quota(_) => Exceeded::Quota,
        },
        policy: policy.name.clone(),
        retry_after: headers::ceil_seconds(wait).max(1),
        policy_header: policy_header(route, plan).unwrap_or_else(|| policy.header.clone()),
        header: headers::value(header),
    }
}

fn open_quotas(data_dir: &Path) -> Result<QuotaTable, String> {
    let path = data_dir.join(crate::state::embedded::FILE_NAME);
    let store = crate::state::embedded::EmbeddedQuotaStore::open(&path)
        .map_err(|e| format!("quota store: {e}"))?;
    QuotaTable::open(Box::new(store)).map_err(|e| format!("quota store {}: {e}", path.display()))
}

/// How often quota counters are written and idle rate cells looked for.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Idle rate cells are swept every this many upkeep rounds.
const SWEEP_EVERY: u32 = 10;

/// Writes quota counters every second and drops idle rate cells every ten, on a thread of its
/// own (a store write must not hold a request thread), until the tables are gone.
fn upkeep(tables: Weak<Tables>) {
    let spawned = std::thread::Builder::new()
        .name("limits-upkeep".into())
        .spawn(move || {
            let mut round = 0u32;
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                let Some(tables) = tables.upgrade() else {
                    return;
                };
                if let Some(quotas) = tables.quotas.get() {
                    if let Err(error) = quotas.flush(crate::auth::unix_now()) {
                        tracing::error!(%error, "quota counters not written; retrying");
                    }
                }
                round += 1;
                if round % SWEEP_EVERY == 0 {
                    tables.rates.sweep(crate::clock::monotonic_ns());
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "limits upkeep thread not started");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(dir: &Path, plans: &str) -> Limits {
        let toml = format!(
            "[server]\nhttp = \"127.0.0.1:0\"\n[state]\ndata_dir = \"{}\"\n{plans}\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\npublic = true\n",
            dir.display()
        );
        let config = Config::parse(&toml, &dir.join("gateway.toml")).unwrap();
        Limits::new(&config, None).unwrap()
    }

    #[test]
    fn a_refusal_by_one_limit_gives_back_what_the_others_took() {
        let dir = tempfile::tempdir().unwrap();
        let limits = limits(
            dir.path(),
            "[plans.p]\nrate = \"10/s\"\nburst = 5\nquota = \"2/day\"\n",
        );
        let plan = limits.plan("p").unwrap().clone();
        let consumer = Consumer::ApiKey("k");
        let now = Now {
            nanos: 1_000_000_000,
            unix: 86_400 * 1000,
        };
        for _ in 0..2 {
            limits.check(&consumer, Some(&plan), None, 1, now).unwrap();
        }
        let refused = limits
            .check(&consumer, Some(&plan), None, 1, now)
            .unwrap_err();
        assert_eq!(refused.exceeded, Exceeded::Quota);
        assert_eq!(&*refused.policy, "p-quota");
        assert_eq!(refused.retry_after, 86_400);
        // Two taken by the rate, the third given back: three of five left.
        let rate = plan.rate.as_ref().unwrap();
        let standing = limits
            .tables
            .rates
            .standing(&rate.key(&consumer, consumer.hash()), now)
            .unwrap();
        assert_eq!(standing.remaining, 3);
    }

    #[test]
    fn grants_carry_every_policy_in_the_fields() {
        let dir = tempfile::tempdir().unwrap();
        let limits = limits(
            dir.path(),
            "[plans.p]\nrate = \"10/s\"\nquota = \"5/month\"\n",
        );
        let plan = limits.plan("p").unwrap().clone();
        let route = Policy::rate(
            "route:r",
            &crate::config::RateLimit {
                rate: crate::config::parse_rate("1/m").unwrap(),
                burst: 2,
            },
        );
        let consumer = Consumer::Address("192.0.2.1".parse().unwrap());
        // 2024-02-10T00:00:00Z: 20 days to March 1st (2024 is a leap year).
        let now = Now {
            nanos: 5,
            unix: 1_707_523_200,
        };
        let grant = limits
            .check(&consumer, Some(&plan), Some(&route), 1, now)
            .unwrap();
        let (policy, standing) = grant.headers().unwrap();
        assert_eq!(
            policy,
            "\"route:r\";q=1;w=60, \"p\";q=10;w=1, \"p-quota\";q=5;w=2592000"
        );
        assert_eq!(
            standing,
            "\"route:r\";r=1;t=60, \"p\";r=9;t=1, \"p-quota\";r=4;t=1728000"
        );
    }
}
