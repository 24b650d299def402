//! `[plans.NAME]`, `[consumers]`, `[state]` and a route's own `rate`/`burst`: validation of the
//! limits callers are held to, and of where the gateway keeps the state that outlives a
//! process. Only data lives here; the limiter itself is `crate::limits`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawConfig, RawPlan, Text};
use super::Validator;
use crate::diagnostic::unknown_plan;

/// A sustained rate: `count` requests per `period` ("10/s", "600/m", "3600/h").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period.
    pub count: u64,
    /// The period.
    pub period: Duration,
}

impl Rate {
    /// The time one request's allowance takes to come back: `period / count`, in nanoseconds.
    pub fn interval_nanos(&self) -> u64 {
        let nanos = u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX);
        (nanos / self.count.max(1)).max(1)
    }
}

/// A GCRA limit: a sustained rate and how many requests may arrive at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// The sustained rate.
    pub rate: Rate,
    /// Requests allowed at once (at least 1).
    pub burst: u64,
}

/// The calendar window a quota counts in, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaWindow {
    /// From 00:00 UTC to the next.
    Day,
    /// From the first of the month, 00:00 UTC, to the next first.
    Month,
}

/// A quota: `count` requests per calendar window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests per window.
    pub count: u64,
    /// The window.
    pub window: QuotaWindow,
}

/// One `[plans.NAME]`: the limits a consumer on it is held to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The plan's name (the `plan` label, the policy name in RateLimit headers).
    pub name: String,
    /// Its rate limit, if any.
    pub rate: Option<RateLimit>,
    /// Its quota, if any.
    pub quota: Option<Quota>,
    /// Input + output tokens per window (metered routes), if limited.
    pub tokens: Option<Quota>,
    /// Micro-USD per window (metered routes), if limited.
    pub budget: Option<Quota>,
}

/// `[consumers]`: which plan a caller without one of its own is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSettings {
    /// Authenticated callers without a plan of their own; `None` = unlimited.
    pub default_plan: Option<String>,
    /// Callers known only by their address (public routes); `None` = unlimited.
    pub anonymous_plan: Option<String>,
    /// A JWT claim (dotted path) naming the caller's plan.
    pub plan_claim: Option<String>,
    /// `RateLimit` / `RateLimit-Policy` on responses of limited requests.
    pub headers: bool,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            default_plan: None,
            anonymous_plan: None,
            plan_claim: None,
            headers: true,
        }
    }
}

/// The directory state is kept in when no `data_dir` is set and neither `AUTHGATE_DATA_DIR`
/// nor systemd's `STATE_DIRECTORY` says otherwise, relative to the config file.
pub const DEFAULT_DATA_DIR: &str = "data";

/// Whether `name` can be a plan name: it is written into headers and metric labels.
fn valid_plan_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Parses "N/s", "N/m", "N/h".
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let (count, unit) = split_count(text, "rate", "\"10/s\", \"600/m\" or \"3600/h\"")?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        other => {
            return Err(format!(
                "rate `{text}`: unknown unit `{other}`: use /s, /m or /h"
            ))
        }
    };
    Ok(Rate {
        count,
        period: Duration::from_secs(seconds),
    })
}

/// Parses "N/day", "N/month".
pub fn parse_quota(text: &str) -> Result<Quota, String> {
    let (count, unit) = split_count(text, "quota", "\"10000/day\" or \"1000000/month\"")?;
    let window = match unit {
        "day" => QuotaWindow::Day,
        "month" => QuotaWindow::Month,
        other => {
            return Err(format!(
                "quota `{text}`: unknown window `{other}`: use /day or /month"
            ))
        }
    };
    Ok(Quota { count, window })
}

fn split_count<'t>(text: &'t str, what: &str, example: &str) -> Result<(u64, &'t str), String> {
    let shape = || format!("{what} `{text}` is not a count per unit, e.g. {example}");
    let (count, unit) = text.trim().split_once('/').ok_or_else(shape)?;
    let count: u64 = count.trim().parse().map_err(|_| shape())?;
    if count == 0 {
        return Err(format!(
            "{what} `{text}` allows nothing: the count must be at least 1"
        ));
    }
    Ok((count, unit.trim()))
}

impl Validator<'_> {
    /// `[plans.*]`, in name order.
    pub(super) fn plans(
        &mut self,
        raw: &BTreeMap<String, Spanned<RawPlan>>,
    ) -> BTreeMap<String, Plan> {
        let mut plans = BTreeMap::new();
        for (name, spanned) in raw {
            if !valid_plan_name(name) {
                self.error(
                    spanned.span(),
                    format!("plan name `{name}` may hold only letters, digits, `-`, `_` and `.`"),
                );
                continue;
            }
            let plan = spanned.get_ref();
            let rate = self.rate_limit(plan.rate.as_ref(), plan.burst.as_ref());
            let quota = plan.quota.as_ref().and_then(|text| {
                let value = self.text(text)?;
                parse_quota(&value)
                    .map_err(|message| self.error(text.span(), message))
                    .ok()
            });
            let tokens = plan.tokens.as_ref().and_then(|text| {
                let value = self.text(text)?;
                super::metering::parse_tokens(&value)
                    .map_err(|message| self.error(text.span(), message))
                    .ok()
            });
            let budget = plan.budget.as_ref().and_then(|text| {
                let value = self.text(text)?;
                super::metering::parse_budget(&value)
                    .map_err(|message| self.error(text.span(), message))
                    .ok()
            });
            plans.insert(
                name.clone(),
                Plan {
                    name: name.clone(),
                    rate,
                    quota,
                    tokens,
                    budget,
                },
            );
        }
        plans
    }

    /// A `rate` with an optional `burst` (default: one second of the rate, at least 1).
    pub(super) fn rate_limit(
        &mut self,
        rate: Option<&Text>,
        burst: Option<&Spanned<i64>>,
    ) -> Option<RateLimit> {
        let Some(text) = rate else {
            if let Some(burst) = burst {
                self.error(burst.span(), "`burst` needs a `rate` beside it");
            }
            return None;
        };
        let value = self.text(text)?;
        let rate = match parse_rate(&value) {
            Ok(rate) => rate,
            Err(message) => {
                self.error(text.span(), message);
                return None;
            }
        };
        let burst = match burst {
            None => {
                let per_second =
                    u128::from(rate.count) * 1_000_000_000 / rate.period.as_nanos().max(1);
                u64::try_from(per_second).unwrap_or(u64::MAX).max(1)
            }
            Some(b) => match u64::try_from(*b.get_ref()) {
                Ok(n) if n > 0 => n,
                _ => {
                    self.error(
                        b.span(),
                        "`burst` must be at least 1 (a burst of 0 would refuse every request)",
                    );
                    return None;
                }
            },
        };
        Some(RateLimit { rate, burst })
    }

    /// `[consumers]`; every plan it names must be defined.
    pub(super) fn consumers(
        &mut self,
        raw: &RawConfig,
        plans: &BTreeMap<String, Plan>,
    ) -> ConsumerSettings {
        let Some(spanned) = &raw.consumers else {
            return ConsumerSettings::default();
        };
        let consumers = spanned.get_ref();
        let default_plan = consumers
            .default_plan
            .as_ref()
            .and_then(|t| self.plan_reference(t, plans));
        let anonymous_plan = consumers
            .anonymous_plan
            .as_ref()
            .and_then(|t| self.plan_reference(t, plans));
        let plan_claim = consumers.plan_claim.as_ref().and_then(|t| {
            let value = self.text(t)?;
            if value.is_empty() {
                self.error(t.span(), "`plan_claim` must name a claim");
                return None;
            }
            Some(value)
        });
        ConsumerSettings {
            default_plan,
            anonymous_plan,
            plan_claim,
            headers: consumers.headers.unwrap_or(true),
        }
    }

    /// A plan name that must be one of `plans`.
    pub(super) fn plan_reference(
        &mut self,
        text: &Text,
        plans: &BTreeMap<String, Plan>,
    ) -> Option<String> {
        let value = self.text(text)?;
        if plans.contains_key(&value) {
            Some(value)
        } else {
            self.error(text.span(), unknown_plan(&value, plans.keys()));
            None
        }
    }

    /// `[state] data_dir`, or the older `[token_service] data_dir`: one setting for every file
    /// the gateway writes (quotas, the token store, a generated signing key).
    pub(super) fn data_dir(&mut self, raw: &RawConfig) -> PathBuf {
        let state = raw
            .state
            .as_ref()
            .and_then(|s| s.get_ref().data_dir.as_ref());
        let service = raw
            .token_service
            .as_ref()
            .and_then(|t| t.get_ref().data_dir.as_ref());
        let chosen = match (state, service) {
            (Some(state), Some(service)) => {
                if state.get_ref() != service.get_ref() {
                    self.error(
                        service.span(),
                        "`data_dir` is set both here and in [state], differently: keep the one in [state]",
                    );
                }
                Some(state)
            }
            (state, service) => state.or(service),
        };
        match chosen.and_then(|text| self.text(text)) {
            Some(dir) => self.base_dir.join(dir),
            None => default_data_dir(&self.base_dir, |name| std::env::var_os(name)),
        }
    }
}

/// Where state is kept when no `data_dir` is set: `AUTHGATE_DATA_DIR`;
/// else systemd's `STATE_DIRECTORY` (set by `StateDirectory=`, the one writable place under
/// `ProtectSystem=strict`); else `data` beside the config file.
fn default_data_dir(
    base_dir: &std::path::Path,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> PathBuf {
    let from_env = |name| env(name).filter(|value| !value.is_empty());
    if let Some(dir) = from_env("AUTHGATE_DATA_DIR") {
        return base_dir.join(dir);
    }
    if let Some(dirs) = from_env("STATE_DIRECTORY") {
        // systemd lists one directory per `StateDirectory=` entry, colon-separated.
        let first = dirs
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        return PathBuf::from(first);
    }
    base_dir.join(DEFAULT_DATA_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_quotas_parse() {
        let rate = parse_rate("10/s").unwrap();
        assert_eq!(rate.interval_nanos(), 100_000_000);
        assert_eq!(parse_rate("600/m").unwrap().interval_nanos(), 100_000_000);
        assert_eq!(
            parse_rate("3600/h").unwrap().period,
            Duration::from_secs(3600)
        );
        for bad in ["10", "10/d", "x/s", "0/s", "-1/s", "/s", "10/"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_quota("10000/day").unwrap(),
            Quota {
                count: 10000,
                window: QuotaWindow::Day
            }
        );
        assert_eq!(parse_quota("5/month").unwrap().window, QuotaWindow::Month);
        for bad in ["10/s", "10/week", "0/day", "day"] {
            assert!(parse_quota(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plan_names_are_header_and_label_safe() {
        assert!(valid_plan_name("gold-2.v_1"));
        for bad in ["", "a b", "gold\"", "a\nb", "é"] {
            assert!(!valid_plan_name(bad), "{bad:?}");
        }
    }
}
