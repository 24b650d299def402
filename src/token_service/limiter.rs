//! Login brute-force limits: failed attempts are counted per username and per client address
//! in a fixed window that starts at the first failure. Once either count reaches its limit,
//! every attempt (right password or not) gets 429 with the seconds until the window ends, so
//! guessing stops paying; a success clears the username's count.

use std::net::IpAddr;

use dashmap::DashMap;

use crate::config::LoginLimit;
use crate::limits::consumer::address_key as client_key;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: i64,
    failures: u32,
}

/// Failure counts by username and by client address.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    users: DashMap<String, Window>,
    clients: DashMap<IpAddr, Window>,
}

/// Entries kept before expired windows are swept out, so a flood of made-up usernames cannot
/// grow memory without bound.
const SWEEP_ABOVE: usize = 100_000;

impl LoginLimiter {
    /// `Err(seconds to wait)` when `user` or `client` has used up its failures.
    pub fn check(
        &self,
        limit: &LoginLimit,
        user: &str,
        client: IpAddr,
        now: i64,
    ) -> Result<(), u64> {
        let window = i64::try_from(limit.window.as_secs()).unwrap_or(i64::MAX);
        let wait = |w: &Window, max: u32| {
            let ends = w.started.saturating_add(window);
            (w.failures >= max && ends > now).then(|| u64::try_from(ends - now).unwrap_or(1))
        };
        let by_user = self.users.get(user).and_then(|w| wait(&w, limit.per_user));
        let by_client = self
            .clients
            .get(&client_key(client))
            .and_then(|w| wait(&w, limit.per_client));
        match by_user.max(by_client) {
            Some(seconds) => Err(seconds.max(1)),
            None => Ok(()),
        }
    }

    /// Counts a failed attempt.
    pub fn failed(&self, limit: &LoginLimit, user: &str, client: IpAddr, now: i64) {
        let window = i64::try_from(limit.window.as_secs()).unwrap_or(i64::MAX);
        let count = |w: &mut Window| {
            if w.started.saturating_add(window) <= now {
                *w = Window {
                    started: now,
                    failures: 0,
                };
            }
            w.failures = w.failures.saturating_add(1);
        };
        let fresh = Window {
            started: now,
            failures: 0,
        };
        count(&mut self.users.entry(user.to_string()).or_insert(fresh));
        count(&mut self.clients.entry(client_key(client)).or_insert(fresh));
        if self.users.len() + self.clients.len() > SWEEP_ABOVE {
            self.purge(limit, now);
        }
    }

    /// Clears a username's failures after it logged in.
    pub fn succeeded(&self, user: &str) {
        self.users.remove(user);
    }

    /// Drops windows that have ended.
    pub fn purge(&self, limit: &LoginLimit, now: i64) {
        let window = i64::try_from(limit.window.as_secs()).unwrap_or(i64::MAX);
        self.users
            .retain(|_, w| w.started.saturating_add(window) > now);
        self.clients
            .retain(|_, w| w.started.saturating_add(window) > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limit() -> LoginLimit {
        LoginLimit {
            per_user: 3,
            per_client: 5,
            window: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_username_is_locked_after_its_failures_until_the_window_ends() {
        let limiter = LoginLimiter::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for second in 0..3 {
            assert!(limiter.check(&limit(), "alice", ip, 100 + second).is_ok());
            limiter.failed(&limit(), "alice", ip, 100 + second);
        }
        assert_eq!(limiter.check(&limit(), "alice", ip, 110), Err(50));
        // Another user from elsewhere is not affected.
        assert!(limiter
            .check(&limit(), "bob", "10.0.0.2".parse().unwrap(), 110)
            .is_ok());
        // The window started at the first failure.
        assert!(limiter
            .check(&limit(), "alice", "10.0.0.9".parse().unwrap(), 160)
            .is_ok());
    }

    #[test]
    fn one_address_trying_many_usernames_is_locked_too() {
        let limiter = LoginLimiter::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for n in 0..5 {
            limiter.failed(&limit(), &format!("user{n}"), ip, 100);
        }
        assert!(limiter.check(&limit(), "someone-else", ip, 101).is_err());
        assert!(limiter
            .check(&limit(), "someone-else", "10.0.0.2".parse().unwrap(), 101)
            .is_ok());
    }

    #[test]
    fn addresses_of_one_ipv6_slash_64_count_as_one_client() {
        let limiter = LoginLimiter::default();
        for n in 0..5 {
            let address: IpAddr = format!("2001:db8:1:2::{n}").parse().unwrap();
            limiter.failed(&limit(), &format!("user{n}"), address, 100);
        }
        let neighbour: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiter.check(&limit(), "x", neighbour, 101).is_err());
        assert!(limiter.check(&limit(), "x", elsewhere, 101).is_ok());
    }

    #[test]
    fn a_success_clears_the_username() {
        let limiter = LoginLimiter::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        limiter.failed(&limit(), "alice", ip, 100);
        limiter.failed(&limit(), "alice", ip, 100);
        limiter.succeeded("alice");
        limiter.failed(&limit(), "alice", ip, 101);
        limiter.failed(&limit(), "alice", ip, 101);
        assert!(limiter.check(&limit(), "alice", ip, 102).is_ok());
        limiter.purge(&limit(), 1000);
        assert!(limiter.users.is_empty() && limiter.clients.is_empty());
    }
}
