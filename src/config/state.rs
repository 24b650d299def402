//! `[state] backend`, `url`, `timeout`, `on_failure`: where the state that several replicas must
//! share is kept — this process's redb files (the default) or one Redis.
//!
//! Only a plain Redis URL is accepted (`redis://` or `rediss://`; `${VAR}` for the password):
//! Sentinel and Cluster are not supported, because every key the gateway writes for a concern
//! shares one `{…}` hash tag and so one slot — a fleet talks to one primary (a managed endpoint
//! or a proxy in front of Sentinel does failover).

use std::time::Duration;

use super::raw::RawState;
use super::Validator;

/// Where shared state lives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StateBackend {
    /// redb files in `data_dir`, one process (the default).
    #[default]
    Embedded,
    /// One Redis shared by every replica.
    Redis(RedisSettings),
}

/// `[state] backend = "redis"`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` URL, `${VAR}`s replaced (so it may hold a password).
    pub url: String,
    /// The longest any command on the request path waits (default 50 ms).
    pub timeout: Duration,
    /// What limits do while Redis cannot answer.
    pub on_failure: OnFailure,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: only its redacted form is ever printed.
        f.debug_struct("RedisSettings")
            .field("url", &redacted_url(&self.url))
            .field("timeout", &self.timeout)
            .field("on_failure", &self.on_failure)
            .finish()
    }
}

/// What a rate limit or quota does while its shared store is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Count in this replica instead (N replicas allow up to N × the limit).
    #[default]
    Local,
    /// Let requests through unlimited.
    Open,
    /// Refuse with 503.
    Closed,
}

/// The URL without its password (`redis://:***@host:6379/0`), for logs and errors.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".into();
    };
    match rest.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

impl Validator<'_> {
    /// `[state]`'s backend keys.
    pub(super) fn state_backend(&mut self, raw: Option<&RawState>) -> StateBackend {
        let Some(raw) = raw else {
            return StateBackend::Embedded;
        };
        let backend = match &raw.backend {
            None => "embedded".to_string(),
            Some(text) => self.text(text).unwrap_or_default(),
        };
        match backend.as_str() {
            "embedded" => {
                for (key, set) in [
                    ("url", raw.url.as_ref()),
                    ("timeout", raw.timeout.as_ref()),
                    ("on_failure", raw.on_failure.as_ref()),
                ] {
                    if let Some(text) = set {
                        self.error(
                            text.span(),
                            format!("`{key}` needs backend = \"redis\" in [state]"),
                        );
                    }
                }
                StateBackend::Embedded
            }
            "redis" => {
                let url = match &raw.url {
                    None => {
                        let span = raw.backend.as_ref().map_or(0..0, |t| t.span());
                        self.error(
                            span,
                            "backend = \"redis\" needs a `url` (redis://HOST:PORT/DB)",
                        );
                        String::new()
                    }
                    Some(text) => {
                        let value = self.text(text).unwrap_or_default();
                        if let Err(message) = check_url(&value) {
                            self.error(text.span(), message);
                        }
                        value
                    }
                };
                let timeout = self.duration(raw.timeout.as_ref(), Duration::from_millis(50));
                if timeout.is_zero() {
                    if let Some(text) = &raw.timeout {
                        self.error(text.span(), "`timeout` must be more than 0");
                    }
                }
                let on_failure = match &raw.on_failure {
                    None => OnFailure::Local,
                    Some(text) => match self.text(text).as_deref() {
                        Some("local") | None => OnFailure::Local,
                        Some("open") => OnFailure::Open,
                        Some("closed") => OnFailure::Closed,
                        Some(other) => {
                            self.error(
                                text.span(),
                                format!(
                                    "on_failure `{other}` is not \"local\", \"open\" or \"closed\""
                                ),
                            );
                            OnFailure::Local
                        }
                    },
                };
                StateBackend::Redis(RedisSettings {
                    url,
                    timeout,
                    on_failure,
                })
            }
            other => {
                let span = raw.backend.as_ref().map_or(0..0, |t| t.span());
                self.error(
                    span,
                    format!("backend `{other}` is not \"embedded\" or \"redis\""),
                );
                StateBackend::Embedded
            }
        }
    }
}

/// A URL the Redis client can open: `redis://` or `rediss://`, with a host.
fn check_url(url: &str) -> Result<(), String> {
    let shown = redacted_url(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "`{shown}` is not a Redis URL: write redis://HOST:PORT/DB or rediss://HOST:PORT/DB"
        ));
    };
    match scheme {
        "redis" | "rediss" => {}
        "redis+sentinel" | "redis-sentinel" | "redis+cluster" => {
            return Err(format!(
                "`{scheme}://` is not supported: point `url` at the primary (a managed endpoint, or a proxy that follows Sentinel failover)"
            ))
        }
        _ => {
            return Err(format!(
                "`{shown}` is not a Redis URL: the scheme must be redis:// or rediss://"
            ))
        }
    }
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    if host.is_empty() || host.starts_with('/') {
        return Err(format!("`{shown}` names no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redacted_url("redis://:s3cret@10.0.0.1:6379/0"),
            "redis://:***@10.0.0.1:6379/0"
        );
        assert_eq!(
            redacted_url("rediss://app:s3cret@r.example:6380"),
            "rediss://app:***@r.example:6380"
        );
        assert_eq!(redacted_url("redis://127.0.0.1"), "redis://127.0.0.1");
    }

    fn errors(state: &str) -> String {
        let toml = format!(
            "[server]\nhttp = \"127.0.0.1:0\"\n[state]\n{state}\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\npublic = true\n"
        );
        match crate::config::Config::parse(&toml, std::path::Path::new("gateway.toml")) {
            Ok(_) => String::new(),
            Err(errors) => errors.to_string(),
        }
    }

    #[test]
    fn bad_state_settings_are_reported_where_they_are() {
        assert!(errors("backend = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"").is_empty());
        let wrong = errors("backend = \"redis\"\nurl = \"http://x\"\non_failure = \"maybe\"");
        assert!(wrong.contains("gateway.toml:5:7"), "{wrong}");
        assert!(wrong.contains("gateway.toml:6:14"), "{wrong}");
        let missing = errors("backend = \"redis\"");
        assert!(missing.contains("needs a `url`"), "{missing}");
        let stray = errors("url = \"redis://h\"");
        assert!(stray.contains("needs backend"), "{stray}");
        let secret = errors("backend = \"redis\"\nurl = \"redis+sentinel://:pw@h:26379\"");
        assert!(
            secret.contains("not supported") && !secret.contains("pw"),
            "{secret}"
        );
    }

    #[test]
    fn only_plain_redis_urls_pass() {
        assert!(check_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_url("rediss://:pw@host:6380").is_ok());
        assert!(check_url("http://127.0.0.1").is_err());
        assert!(check_url("redis+sentinel://h:26379/mymaster")
            .unwrap_err()
            .contains("not supported"));
        assert!(check_url("redis:///0").is_err());
        assert!(check_url("127.0.0.1:6379").is_err());
    }
}
