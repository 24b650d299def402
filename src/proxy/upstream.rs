//! Upstreams: one connection pool per target (see [`super::pool`]), round robin over the
//! targets, and ejection of targets that refuse connections.
//!
//! A request whose body is empty can safely go to the next target when a connection cannot be
//! opened (nothing was sent), so such requests only fail when every target is down. A request
//! with a body is sent once: its body is a stream that cannot be replayed.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use http::{Request, Response};
use http_body::Body as _;

use super::pool::{PooledBody, SendError, TargetPool};
use crate::clock::monotonic_ms;
use crate::config::UpstreamSettings;
use crate::error::{ClientBodyError, GatewayError};
use crate::outbound::error_chain;
use crate::Body;

/// One upstream with its targets' pools.
pub struct Upstream {
    settings: UpstreamSettings,
    pools: Vec<Arc<TargetPool>>,
    next: AtomicUsize,
    /// Per target: until when (monotonic ms, see [`monotonic_ms`]) it is skipped; 0 = never.
    ejected_until: Vec<AtomicU64>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.settings.name)
            .finish()
    }
}

impl Upstream {
    /// Builds the pools for `settings`.
    pub fn new(settings: UpstreamSettings) -> Self {
        let gauges = crate::metrics::pool_gauges(&settings.name);
        let pools = (0..settings.targets.len())
            .map(|index| Arc::new(TargetPool::new(&settings, index, gauges.clone())))
            .collect();
        let ejected_until = settings.targets.iter().map(|_| AtomicU64::new(0)).collect();
        Upstream {
            settings,
            pools,
            next: AtomicUsize::new(0),
            ejected_until,
        }
    }

    /// The upstream's settings.
    pub fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    /// The next target in round robin among those not ejected, so load stays even while a
    /// target is out; when all are ejected, the next one anyway (better a likely failure than a
    /// certain one).
    fn pick(&self) -> usize {
        let count = self.settings.targets.len();
        if count == 1 {
            return 0;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let now = monotonic_ms();
        let live = |i: &usize| self.ejected_until[*i].load(Ordering::Relaxed) <= now;
        let live_count = (0..count).filter(live).count();
        if live_count == 0 {
            return turn % count;
        }
        (0..count)
            .filter(live)
            .nth(turn % live_count)
            .unwrap_or(turn % count)
    }

    fn eject(&self, index: usize) {
        let until = monotonic_ms()
            + u64::try_from(self.settings.eject_for.as_millis()).unwrap_or(u64::MAX / 2);
        self.ejected_until[index].store(until, Ordering::Relaxed);
    }

    /// Sends `request` (its URI holds only path and query) to a target and waits for the
    /// response head within the upstream's `timeout` (the wait for a connection included).
    pub fn send(
        &self,
        request: Request<Body>,
    ) -> impl std::future::Future<Output = Result<Response<PooledBody>, GatewayError>> + '_ {
        let deadline = tokio::time::Instant::now() + self.settings.timeout;
        let attempts = if request.body().is_end_stream() {
            self.settings.targets.len()
        } else {
            1
        };
        // Taken apart before the future is made, so that it holds the request once (as its
        // parts) rather than also keeping room for the whole request beside them.
        let (parts, body) = request.into_parts();
        self.send_parts(parts, body, attempts, deadline)
    }

    async fn send_parts(
        &self,
        parts: http::request::Parts,
        body: Body,
        attempts: usize,
        deadline: tokio::time::Instant,
    ) -> Result<Response<PooledBody>, GatewayError> {
        let (mut parts, mut body) = (Some(parts), Some(body));
        for attempt in 1..=attempts {
            let index = self.pick();
            let target = &self.settings.targets[index];
            // Only a retry needs the head again: the last (usually the only) attempt takes it.
            let head = if attempt == attempts {
                parts.take()
            } else {
                parts.clone()
            };
            let Some(head) = head else { break };
            let sending = self.pools[index].send(Request::from_parts(
                head,
                body.take().unwrap_or_else(crate::empty_body),
            ));
            match tokio::time::timeout_at(deadline, sending).await {
                Err(_elapsed) => return Err(GatewayError::UpstreamTimeout),
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(SendError::Overloaded)) => {
                    tracing::warn!(upstream = %self.settings.name, target = %target.authority, "upstream target overloaded: max_connections busy and max_pending waiting");
                    return Err(GatewayError::UpstreamOverloaded);
                }
                Ok(Err(SendError::Connect(error))) => {
                    tracing::warn!(upstream = %self.settings.name, target = %target.authority, error = %error_chain(&error), "upstream target unreachable; ejecting it");
                    self.eject(index);
                }
                Ok(Err(SendError::Exchange(error))) => {
                    if has_source::<http_body_util::LengthLimitError>(&error) {
                        return Err(GatewayError::BodyTooLarge);
                    }
                    if has_source::<ClientBodyError>(&error) {
                        return Err(GatewayError::BadRequest(
                            "the request body is malformed or was cut off",
                        ));
                    }
                    tracing::warn!(upstream = %self.settings.name, target = %target.authority, error = %error_chain(&error), "upstream exchange failed");
                    return Err(GatewayError::UpstreamFailed);
                }
            }
        }
        Err(GatewayError::UpstreamUnreachable)
    }
}

/// Whether any error in `error`'s source chain is a `T`.
fn has_source<T: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<T>() {
            return true;
        }
        current = e.source();
    }
    false
}
