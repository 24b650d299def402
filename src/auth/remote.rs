//! Remote key sets (`jwks_url`, OIDC discovery): fetched and refreshed by a background task,
//! never on the request path, with one exception: a token whose `kid` is unknown may trigger
//! one refetch, shared by every request waiting on it (single flight), at most once per
//! `refetch_cooldown`, and waited for only briefly.
//!
//! When the IdP cannot be reached the last good set keeps serving, up to `max_staleness`. A set
//! never obtained (or gone stale) makes requests for that issuer 503, not 401: the gateway cannot
//! decide, which is not the caller's fault.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::Value;

use super::keys::{KeySet, Origin};
use super::strict_json;
use crate::clock::monotonic_ms;
use crate::config::{RemoteLocation, RemoteSettings};
use crate::metrics;

/// The largest JWKS or discovery document accepted.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// How long one fetch (connect, response, body) may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for an unknown-`kid` refetch before giving up on it.
const REFETCH_WAIT: Duration = Duration::from_secs(2);
/// The shortest interval Cache-Control can shorten the refresh to.
const MIN_REFRESH: Duration = Duration::from_secs(30);
/// The longest pause between retries after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A key set as last fetched.
#[derive(Debug)]
pub struct Loaded {
    /// The usable keys.
    pub keys: Arc<KeySet>,
    /// When they were fetched (monotonic ms).
    pub fetched_ms: u64,
    /// The document they came from, to tell a changed set from a refetch of the same one.
    document: Value,
}

/// One issuer's remote key set and the machinery that keeps it fresh.
pub struct RemoteKeys {
    settings: RemoteSettings,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    current: ArcSwapOption<Loaded>,
    /// Bumped on every key-set change, so cached verifications made with older keys die.
    generation: AtomicU64,
    /// Single flight: one fetch at a time, whoever starts it.
    fetching: tokio::sync::Mutex<()>,
    /// When the last unknown-`kid` refetch started (monotonic ms; 0 = never).
    last_forced_ms: AtomicU64,
    /// The `jwks_uri` discovery found, reused until the next discovery.
    discovered: Mutex<Option<Uri>>,
    /// The last discovery document that named the configured issuer: where sign-in finds the
    /// provider's authorization, token and end-session endpoints.
    document: ArcSwapOption<Value>,
    /// Why the last fetch failed, until one succeeds: what `/readyz` says it waits for.
    last_error: Mutex<Option<String>>,
    /// Counts finished unknown-`kid` refetch tasks, for the requests waiting on one.
    refetches: tokio::sync::watch::Sender<u64>,
    /// Set while an unknown-`kid` refetch task runs.
    refetch_in_flight: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeys")
            .field("issuer", &self.settings.issuer_id)
            .finish_non_exhaustive()
    }
}

impl RemoteKeys {
    /// Creates the key source and starts its background refresher (which stops when the
    /// source is dropped, e.g. after a reload removed the issuer).
    pub fn start(settings: RemoteSettings) -> Arc<RemoteKeys> {
        let connector = crate::outbound::connector(FETCH_TIMEOUT, &settings.ca);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let keys = Arc::new(RemoteKeys {
            settings,
            client,
            current: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(()),
            last_forced_ms: AtomicU64::new(0),
            discovered: Mutex::new(None),
            document: ArcSwapOption::empty(),
            last_error: Mutex::new(None),
            refetches: tokio::sync::watch::Sender::new(0),
            refetch_in_flight: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(refresh_loop(Arc::downgrade(&keys)));
        keys
    }

    /// The settings this source was built from (a reload with equal settings reuses it).
    pub fn settings(&self) -> &RemoteSettings {
        &self.settings
    }

    /// The current keys, unless none were ever fetched or the last good ones are older than
    /// `max_staleness`.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        let loaded = self.current.load();
        let loaded = loaded.as_ref()?;
        let age = Duration::from_millis(monotonic_ms().saturating_sub(loaded.fetched_ms));
        (age <= self.settings.max_staleness).then(|| loaded.keys.clone())
    }

    /// Seconds since the keys were last fetched, if ever.
    pub fn age(&self) -> Option<Duration> {
        let loaded = self.current.load();
        loaded
            .as_ref()
            .map(|l| Duration::from_millis(monotonic_ms().saturating_sub(l.fetched_ms)))
    }

    /// The provider's discovery document as last fetched (discovery only), once one named the
    /// configured issuer.
    pub fn discovery_document(&self) -> Option<Arc<Value>> {
        self.document.load_full()
    }

    /// Why the last fetch failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    /// Changes whenever the key set does.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A token named a `kid` the current set lacks: refetch once, shared with every other
    /// request doing the same, unless a refetch started within the cooldown. Returns whether
    /// the key set changed since `seen_generation`.
    ///
    /// The fetch runs in a task of its own: a request stops waiting after 2 s, but the fetch
    /// goes on to its own timeout, so an IdP that answers in 3 s still delivers the rotated key
    /// (the cooldown it spent is not wasted).
    pub async fn refetch_for_unknown_kid(self: &Arc<Self>, seen_generation: u64) -> bool {
        // Subscribed before anything else, so a refetch that ends from here on is seen.
        let mut finished = self.refetches.subscribe();
        let in_flight = self.refetch_in_flight.load(Ordering::Acquire);
        if !in_flight && self.refetched_recently() {
            return self.generation() != seen_generation;
        }
        // One request claims the refetch and starts its task; every other one only waits for
        // it, so a flood of unknown kids starts one task, not one per request.
        let claimed = !in_flight
            && self
                .refetch_in_flight
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        if claimed {
            if self.refetched_recently() {
                // Another refetch ended between the check and the claim: its cooldown holds.
                self.refetch_in_flight.store(false, Ordering::Release);
                return self.generation() != seen_generation;
            }
            self.last_forced_ms.store(monotonic_ms(), Ordering::Release);
            let keys = self.clone();
            tokio::spawn(async move {
                {
                    let _flight = keys.fetching.lock().await;
                    // The periodic refresh may have brought the new set in meanwhile.
                    if keys.generation() == seen_generation {
                        let _ = keys.fetch_and_store("unknown_kid").await;
                    }
                }
                keys.refetch_in_flight.store(false, Ordering::Release);
                keys.refetches.send_modify(|count| *count += 1);
            });
        }
        let waited = tokio::time::timeout(REFETCH_WAIT, finished.changed()).await;
        if waited.is_err() {
            tracing::warn!(
                issuer = %self.settings.issuer_id,
                "stopped waiting for the unknown-kid refetch after {} s; it goes on in the background",
                REFETCH_WAIT.as_secs()
            );
            metrics::refetch_wait_abandoned(&self.settings.issuer_id);
        }
        self.generation() != seen_generation
    }

    /// Whether an unknown-`kid` refetch started within the cooldown.
    fn refetched_recently(&self) -> bool {
        let cooldown_ms =
            u64::try_from(self.settings.refetch_cooldown.as_millis()).unwrap_or(u64::MAX);
        let last = self.last_forced_ms.load(Ordering::Acquire);
        last != 0 && monotonic_ms().saturating_sub(last) < cooldown_ms
    }

    /// Fetches the set and swaps it in; returns the Cache-Control max-age, if any. The caller
    /// holds `fetching` or is the background loop (which takes it itself).
    async fn fetch_and_store(&self, trigger: &'static str) -> Result<Option<Duration>, String> {
        let result = tokio::time::timeout(FETCH_TIMEOUT * 2, self.fetch(trigger))
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        let issuer = self.settings.issuer_id.clone();
        match result {
            Ok((set, refused, max_age, document)) => {
                let changed = self
                    .current
                    .load()
                    .as_ref()
                    .is_none_or(|old| old.document != document);
                // Said once per key-set change, not again at every refresh of the same set.
                if changed {
                    for reason in refused {
                        tracing::warn!(issuer = %issuer, %reason, "key refused");
                        metrics::key_refused(&issuer);
                    }
                }
                self.current.store(Some(Arc::new(Loaded {
                    keys: Arc::new(set),
                    fetched_ms: monotonic_ms(),
                    document,
                })));
                if changed {
                    self.generation.fetch_add(1, Ordering::AcqRel);
                }
                *lock(&self.last_error) = None;
                tracing::debug!(issuer = %issuer, trigger, changed, "key set fetched");
                metrics::jwks_refresh(&issuer, "ok");
                Ok(max_age)
            }
            Err(error) => {
                let stale = self.current.load().is_some();
                tracing::warn!(issuer = %issuer, trigger, %error, keeping_last_good = stale, "key set fetch failed");
                metrics::jwks_refresh(&issuer, "error");
                *lock(&self.last_error) = Some(error.clone());
                Err(error)
            }
        }
    }

    /// The key set, from `jwks_url` or through discovery. The discovery document is fetched by
    /// the periodic refresh and when fetching the JWKS it named fails; an unknown-`kid`
    /// refetch reuses the `jwks_uri` found last, so it costs one fetch, not two in a row.
    async fn fetch(
        &self,
        trigger: &'static str,
    ) -> Result<(KeySet, Vec<String>, Option<Duration>, Value), String> {
        let (document, max_age, jwks_uri) = match &self.settings.location {
            RemoteLocation::Jwks(uri) => {
                let (document, max_age) = self.get_json(uri).await?;
                (document, max_age, uri.clone())
            }
            RemoteLocation::Discovery(issuer) => {
                let known = lock(&self.discovered)
                    .clone()
                    .filter(|_| trigger != "refresh");
                let fetched = match &known {
                    Some(uri) => self.get_json(uri).await.map(|(d, m)| (d, m, uri.clone())),
                    None => Err(String::new()),
                };
                match fetched {
                    Ok(found) => found,
                    Err(_) => {
                        let uri = self.discover(issuer).await?;
                        let (document, max_age) = self.get_json(&uri).await?;
                        (document, max_age, uri)
                    }
                }
            }
        };
        let (set, refused) =
            KeySet::from_jwks(&document, Origin::Published, &self.settings.algorithms)?;
        if set.is_empty() {
            return Err(format!("the JWKS at {jwks_uri} holds no usable key"));
        }
        Ok((set, refused, max_age, document))
    }

    /// `{issuer}/.well-known/openid-configuration` → its `jwks_uri`, after checking the
    /// document speaks for exactly the configured issuer.
    async fn discover(&self, issuer: &Uri) -> Result<Uri, String> {
        let base = issuer.to_string();
        let url = format!(
            "{}/.well-known/openid-configuration",
            base.trim_end_matches('/')
        );
        let uri: Uri = url
            .parse()
            .map_err(|_| format!("cannot build the discovery URL from {base}"))?;
        let document = match self.get_json(&uri).await {
            Ok((document, _)) => document,
            Err(error) => {
                // Keep using the jwks_uri found before, if any: the keys may still be reachable.
                let known = self.discovered.lock().ok().and_then(|d| d.clone());
                return known.ok_or(error);
            }
        };
        let named = document.get("issuer").and_then(Value::as_str);
        if named != Some(self.settings.issuer.as_str()) {
            return Err(format!(
                "the discovery document at {uri} names issuer {}, not the configured {:?}; refused",
                named.map_or_else(|| "none".to_string(), |n| format!("{n:?}")),
                self.settings.issuer
            ));
        }
        let jwks_uri: Uri = document
            .get("jwks_uri")
            .and_then(Value::as_str)
            .and_then(|u| u.parse().ok())
            .ok_or("the discovery document has no valid `jwks_uri`")?;
        let same_origin_http = jwks_uri.scheme_str() == Some("http")
            && issuer.scheme_str() == Some("http")
            && jwks_uri.host() == issuer.host();
        if jwks_uri.scheme_str() != Some("https") && !same_origin_http {
            return Err("the discovery document's `jwks_uri` is not https".into());
        }
        if let Ok(mut discovered) = self.discovered.lock() {
            *discovered = Some(jwks_uri.clone());
        }
        self.document.store(Some(Arc::new(document)));
        Ok(jwks_uri)
    }

    /// GETs a JSON document: 200 only (redirects are not followed), bounded in size and time.
    async fn get_json(&self, uri: &Uri) -> Result<(Value, Option<Duration>), String> {
        let request = Request::get(uri.clone())
            .header(ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("GET {uri}: {}", crate::outbound::error_chain(&e)))?;
            if response.status().is_redirection() {
                return Err(format!(
                    "GET {uri}: answered {} (redirects are not followed)",
                    response.status()
                ));
            }
            if response.status() != StatusCode::OK {
                return Err(format!("GET {uri}: answered {}", response.status()));
            }
            let max_age = response
                .headers()
                .get(CACHE_CONTROL)
                .and_then(|v| v.to_str().ok())
                .and_then(max_age);
            let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
                .collect()
                .await
                .map_err(|e| format!("GET {uri}: body: {e}"))?
                .to_bytes();
            let document =
                strict_json::parse(&body).map_err(|e| format!("GET {uri}: not valid JSON: {e}"))?;
            Ok((document, max_age))
        };
        tokio::time::timeout(FETCH_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("GET {uri}: timed out")))
    }
}

/// `max-age=N` from a Cache-Control value.
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|directive| {
        let (name, seconds) = directive.trim().split_once('=')?;
        name.eq_ignore_ascii_case("max-age")
            .then(|| {
                seconds
                    .trim()
                    .trim_matches('"')
                    .parse()
                    .ok()
                    .map(Duration::from_secs)
            })
            .flatten()
    })
}

/// Fetches at start, then every `refresh` (shortened by Cache-Control within bounds), backing
/// off after failures. Ends when the key source is dropped.
async fn refresh_loop(keys: Weak<RemoteKeys>) {
    let mut failures: u32 = 0;
    loop {
        let Some(source) = keys.upgrade() else { return };
        let refresh = source.settings.refresh;
        let outcome = {
            let _flight = source.fetching.lock().await;
            source.fetch_and_store("refresh").await
        };
        let pause = match outcome {
            Ok(max_age) => {
                failures = 0;
                match max_age {
                    Some(age) if age < refresh => age.max(MIN_REFRESH.min(refresh)),
                    _ => refresh,
                }
            }
            Err(_) => {
                failures = failures.saturating_add(1);
                let backoff = Duration::from_millis(500u64.saturating_mul(1 << failures.min(10)));
                backoff
                    .min(MAX_BACKOFF)
                    .min(refresh.max(Duration::from_secs(1)))
            }
        };
        metrics::jwks_age(&source.settings.issuer_id, source.age());
        drop(source);
        tokio::time::sleep(pause).await;
    }
}

/// The guarded value, even if a thread panicked while holding the lock (the value is a plain
/// string that cannot be left half-written).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            max_age("Max-Age=\"60\", must-revalidate"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(max_age("no-store"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }
}
