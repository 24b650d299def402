//! Metering: token usage and cost per consumer on routes with `usage = "openai" | "anthropic"`.
//!
//! Before forwarding, [`Meter::reserve`] sets aside the worst case of the request (its input
//! estimate plus `max_tokens`, or `[pricing] max_output_tokens`) against the consumer's plan
//! `tokens` and `budget`; a request that does not fit is refused and the upstream is never
//! called. The response streams through a [`body::MeteredBody`] that reads the usage as it goes
//! by; when it ends (or is cut off) [`Meter::settle`] replaces the reservation with what was
//! really used, records it, and counts it in the metrics. Amounts are integers: tokens and
//! micro-USD. Counters and records are written behind, on a thread of their own, to the
//! [`UsageStore`](crate::state::usage::UsageStore); a start loads the counters back. With
//! `[state] backend = "redis"`, the counters that decide are the fleet's, in Redis
//! ([`shared::SharedBudgets`]); records and totals stay with the replica that served the request.

pub mod body;
pub mod pricing;
pub mod report;
pub mod request;
pub mod shared;
pub mod sse;
pub mod usage;
mod writer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::HeaderValue;

use crate::config::{Config, OnFailure, PricingSettings, Quota, StateBackend};
use crate::limits::headers as ratelimit;
use crate::limits::{Denial, Exceeded, Refusal};
use crate::state::usage::{DayTotals, UsageRecord, UsageStore};
use crate::state::QuotaRow;

pub use usage::Usage;

/// How long records are kept (days); daily totals are kept [`TOTALS_DAYS`].
pub const RECORD_DAYS: i64 = 90;
/// How long per-consumer daily totals are kept (days).
pub const TOTALS_DAYS: i64 = 400;

/// The plan limits metering enforces.
#[derive(Debug, Clone, Copy, Default)]
struct Allowance {
    tokens: Option<Quota>,
    budget: Option<Quota>,
}

/// One counter: what a consumer used of one limit in its current window, and what requests in
/// flight have reserved.
#[derive(Debug, Clone, Copy, Default)]
struct Counter {
    window: i64,
    used: u64,
    reserved: u64,
    dirty: bool,
}

type Counters = Mutex<HashMap<(String, String), Counter>>;

/// What survives reloads: the store, the counters, the writer thread.
#[derive(Debug)]
struct Shared {
    store: Arc<dyn UsageStore>,
    counters: Arc<Counters>,
    writer: writer::Writer,
}

/// Metering for one snapshot; the counters and the store are shared with the snapshots before
/// and after it.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    shared: Option<Arc<Shared>>,
    pricing: Arc<PricingSettings>,
    plans: Arc<HashMap<String, Allowance>>,
    /// The fleet's counters, and what to do when Redis cannot answer.
    fleet: Option<(shared::SharedBudgets, OnFailure)>,
}

/// What a request set aside: (limit, consumer, window, amount) per limit in this process, or
/// a hold in the fleet's counters with the names of its limits.
#[derive(Debug, Default)]
pub struct Reservation {
    held: Vec<(String, String, i64, u64)>,
    in_fleet: Option<(shared::Held, Vec<String>)>,
}

/// Everything a finished response's usage is recorded with.
#[derive(Debug, Clone)]
pub struct Settlement {
    /// The consumer's canonical id.
    pub consumer: String,
    /// The route's id (metrics label).
    pub route: metrics::SharedString,
    /// The request's id.
    pub request_id: String,
    /// The model the request named.
    pub model: Option<String>,
    /// The request's input estimate, used when the provider never reported usage.
    pub input_estimate: u64,
    /// The upstream's status code.
    pub status: u16,
}

impl Meter {
    /// The metering of `config`, keeping the store and counters of `previous`. Opens the
    /// store (`usage.redb` in the data directory) when a route is first metered.
    pub fn new(config: &Config, previous: Option<&Meter>) -> Result<Meter, String> {
        let plans = config
            .plans
            .values()
            .map(|plan| {
                let allowance = Allowance {
                    tokens: plan.tokens,
                    budget: plan.budget,
                };
                (plan.name.clone(), allowance)
            })
            .collect();
        let metered = config.routes.iter().any(|r| r.usage.is_some());
        let shared = match previous.and_then(|p| p.shared.clone()) {
            Some(shared) => Some(shared),
            None if metered => {
                let path = config.data_dir.join(crate::state::usage::FILE_NAME);
                let store = crate::state::usage::EmbeddedUsageStore::open(&path)
                    .map_err(|e| format!("usage store {}: {e}", path.display()))?;
                Some(Shared::open(Arc::new(store))?)
            }
            None => None,
        };
        let fleet = match &config.state {
            StateBackend::Redis(settings) if metered => {
                let redis = crate::state::redis::RedisState::shared(settings)
                    .map_err(|e| format!("shared budgets: {e}"))?;
                Some((shared::SharedBudgets::new(redis), settings.on_failure))
            }
            _ => None,
        };
        Ok(Meter {
            shared,
            pricing: Arc::new(config.pricing.clone()),
            plans: Arc::new(plans),
            fleet,
        })
    }

    /// Metering over `store` (tests, other backends).
    pub fn with_store(config: &Config, store: Arc<dyn UsageStore>) -> Result<Meter, String> {
        let mut meter = Meter::new(config, None)?;
        meter.shared = Some(Shared::open(store)?);
        Ok(meter)
    }

    /// The output a request without `max_tokens` may use, as reserved.
    pub fn max_output_tokens(&self) -> u64 {
        self.pricing.max_output_tokens
    }

    /// Sets aside `input + output` tokens and their cost for `consumer` on `plan`, or refuses
    /// when a limit of the plan would be exceeded.
    pub fn reserve(
        &self,
        consumer: &str,
        plan: Option<&str>,
        model: Option<&str>,
        input: u64,
        output: u64,
        unix: i64,
    ) -> Result<Reservation, Refusal> {
        let Some(shared) = &self.shared else {
            return Ok(Reservation::default());
        };
        let wanted = self.wanted(plan, model, input, output);
        let mut counters = shared.counters.lock().unwrap_or_else(|e| e.into_inner());
        // Every limit is checked before any is charged: a refusal leaves nothing behind.
        for (quota, name, amount) in &wanted {
            let (start, end) = crate::limits::quota::window(quota.window, unix);
            let counter = counters
                .get(&(name.clone(), consumer.to_string()))
                .copied()
                .unwrap_or_default();
            let used = if counter.window == start {
                counter.used
            } else {
                0
            };
            if used + counter.reserved + amount > quota.count || used >= quota.count {
                return Err(refusal(name, quota, end - unix));
            }
        }
        let mut reservation = Reservation::default();
        for (quota, name, amount) in wanted {
            let (start, _) = crate::limits::quota::window(quota.window, unix);
            let counter = counters
                .entry((name.clone(), consumer.to_string()))
                .or_default();
            if counter.window != start {
                counter.window = start;
                counter.used = 0;
                counter.dirty = true;
            }
            counter.reserved += amount;
            reservation
                .held
                .push((name, consumer.to_string(), start, amount));
        }
        Ok(reservation)
    }

    /// [`Meter::reserve`], in the fleet's counters when `[state] backend = "redis"` (one round
    /// trip, bounded by `[state] timeout`). When Redis cannot answer, `on_failure` decides:
    /// `local` reserves in this process, `open` lets the request through, `closed` refuses it.
    pub async fn reserve_for(
        &self,
        consumer: &str,
        plan: Option<&str>,
        model: Option<&str>,
        input: u64,
        output: u64,
        unix: i64,
    ) -> Result<Reservation, Denial> {
        let local = || {
            self.reserve(consumer, plan, model, input, output, unix)
                .map_err(Denial::Limited)
        };
        let Some((fleet, on_failure)) = &self.fleet else {
            return local();
        };
        let limits: Vec<(Quota, shared::Want)> = self
            .wanted(plan, model, input, output)
            .into_iter()
            .map(|(quota, name, amount)| {
                let want = shared::Want {
                    name,
                    count: quota.count,
                    window: crate::limits::quota::window(quota.window, unix),
                    amount,
                };
                (quota, want)
            })
            .collect();
        if limits.is_empty() {
            return Ok(Reservation::default());
        }
        let wants: Vec<shared::Want> = limits.iter().map(|(_, want)| want.clone()).collect();
        match fleet.reserve(consumer, &wants, unix).await {
            Ok(shared::Reserved::Held(held)) => Ok(Reservation {
                held: Vec::new(),
                in_fleet: Some((held, wants.into_iter().map(|w| w.name).collect())),
            }),
            Ok(shared::Reserved::Refused(index)) => {
                let (quota, want) = &limits[index.min(limits.len() - 1)];
                Err(Denial::Limited(refusal(
                    &want.name,
                    quota,
                    want.window.1 - unix,
                )))
            }
            Err(_) => match on_failure {
                OnFailure::Local => local(),
                OnFailure::Open => Ok(Reservation::default()),
                OnFailure::Closed => Err(Denial::Unavailable),
            },
        }
    }

    /// The plan's limits a request takes from, each with its name and the amount the request
    /// reserves: `input + output` tokens, and their cost at the model's prices.
    fn wanted(
        &self,
        plan: Option<&str>,
        model: Option<&str>,
        input: u64,
        output: u64,
    ) -> Vec<(Quota, String, u64)> {
        let Some((plan, allowance)) = plan.and_then(|p| Some((p, *self.plans.get(p)?))) else {
            return Vec::new();
        };
        let usage = Usage {
            input,
            output,
            ..Usage::default()
        };
        let cost = pricing::cost(&self.pricing, model, None, usage);
        [
            (allowance.tokens, format!("{plan}-tokens"), input + output),
            (allowance.budget, format!("{plan}-budget"), cost),
        ]
        .into_iter()
        .filter_map(|(quota, name, amount)| Some((quota?, name, amount)))
        .collect()
    }

    /// Gives `reservation` back unused: the request never reached a response (the upstream
    /// failed, the gateway refused it after reserving).
    pub fn release(&self, reservation: Reservation) {
        if let (Some((held, names)), Some((fleet, _))) = (reservation.in_fleet, &self.fleet) {
            fleet.settle(held, vec![0; names.len()]);
        }
        let Some(shared) = &self.shared else { return };
        let mut counters = shared.counters.lock().unwrap_or_else(|e| e.into_inner());
        for (name, consumer, _, amount) in reservation.held {
            if let Some(counter) = counters.get_mut(&(name, consumer)) {
                counter.reserved = counter.reserved.saturating_sub(amount);
            }
        }
    }

    /// Replaces `reservation` with what the response used, records it and counts it.
    pub fn settle(
        &self,
        reservation: Reservation,
        settlement: Settlement,
        response_model: Option<String>,
        usage: Usage,
        estimated: bool,
        unix: i64,
    ) {
        let Some(shared) = &self.shared else { return };
        let cost = pricing::cost(
            &self.pricing,
            settlement.model.as_deref(),
            response_model.as_deref(),
            usage,
        );
        if let (Some((held, names)), Some((fleet, _))) = (reservation.in_fleet, &self.fleet) {
            let used = names
                .iter()
                .map(|name| {
                    if name.ends_with("-budget") {
                        cost
                    } else {
                        usage.input + usage.output
                    }
                })
                .collect();
            fleet.settle(held, used);
        }
        {
            let mut counters = shared.counters.lock().unwrap_or_else(|e| e.into_inner());
            for (name, consumer, window, amount) in reservation.held {
                let Some(counter) = counters.get_mut(&(name.clone(), consumer)) else {
                    continue;
                };
                counter.reserved = counter.reserved.saturating_sub(amount);
                if counter.window == window {
                    counter.used += if name.ends_with("-budget") {
                        cost
                    } else {
                        usage.input + usage.output
                    };
                    counter.dirty = true;
                }
            }
        }
        let model = response_model
            .or(settlement.model)
            .unwrap_or_else(|| "unknown".into());
        let model = label(&model);
        crate::metrics::usage(
            &settlement.route,
            &model,
            usage.input,
            usage.output,
            usage.cached,
            cost,
            estimated,
        );
        shared.writer.record(UsageRecord {
            time: unix,
            request_id: settlement.request_id,
            consumer: settlement.consumer,
            route: settlement.route.to_string(),
            model,
            input_tokens: usage.input,
            output_tokens: usage.output,
            cached_tokens: usage.cached,
            cache_creation_tokens: usage.cache_creation,
            cost_micro_usd: cost,
            estimated,
            status: settlement.status,
        });
    }

    /// Writes what is pending (records, counters) and waits for it, bounded (shutdown, and
    /// the usage endpoints, which read what was recorded until now).
    pub fn flush(&self) {
        if let Some(shared) = &self.shared {
            shared.writer.flush();
        }
    }

    /// Daily totals of days `from..=to` (days since the epoch), of one consumer or all.
    pub fn totals(
        &self,
        consumer: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<DayTotals>, String> {
        self.read(|store| store.totals(consumer, from, to))
    }

    /// Records of days `from..=to`, of one consumer or all.
    pub fn records(
        &self,
        consumer: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<UsageRecord>, String> {
        self.read(|store| store.records(consumer, from, to))
    }

    /// Reads the store after writing what is pending; nothing when no route is metered.
    fn read<T>(
        &self,
        query: impl FnOnce(&dyn UsageStore) -> Result<Vec<T>, crate::state::StateError>,
    ) -> Result<Vec<T>, String> {
        let Some(shared) = &self.shared else {
            return Ok(Vec::new());
        };
        self.flush();
        query(shared.store.as_ref()).map_err(|e| e.to_string())
    }
}

impl Shared {
    fn open(store: Arc<dyn UsageStore>) -> Result<Arc<Shared>, String> {
        let rows = store.load_counters().map_err(|e| e.to_string())?;
        let counters: HashMap<_, _> = rows
            .into_iter()
            .map(|row: QuotaRow| {
                let counter = Counter {
                    window: row.window,
                    used: row.used,
                    reserved: 0,
                    dirty: false,
                };
                ((row.policy, row.consumer), counter)
            })
            .collect();
        let counters = Arc::new(Mutex::new(counters));
        let writer = writer::Writer::start(store.clone(), counters.clone());
        Ok(Arc::new(Shared {
            store,
            counters,
            writer,
        }))
    }
}

/// A model name fit for a metrics label and a record: at most 100 characters of it.
fn label(model: &str) -> String {
    model.chars().take(100).collect()
}

fn refusal(name: &str, quota: &Quota, seconds_left: i64) -> Refusal {
    let window = match quota.window {
        crate::config::QuotaWindow::Day => 86_400,
        crate::config::QuotaWindow::Month => 30 * 86_400,
    };
    let retry_after = u64::try_from(seconds_left.max(1)).unwrap_or(1);
    let item = ratelimit::policy_item(name, quota.count, window);
    let mut standing = Vec::new();
    ratelimit::push_item(&mut standing, &ratelimit::sf_string(name), 0, retry_after);
    Refusal {
        exceeded: Exceeded::Quota,
        policy: Arc::from(name),
        retry_after,
        policy_header: ratelimit::list(std::iter::once(item.as_str())),
        header: HeaderValue::from_bytes(&standing).unwrap_or_else(|_| HeaderValue::from_static("")),
    }
}
