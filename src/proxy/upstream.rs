//! Upstreams: a pooled HTTP client per upstream, round robin over its targets, and ejection of
//! targets that refuse connections.
//!
//! A request whose body is empty can safely go to the next target when a connection cannot be
//! opened (nothing was sent), so such requests only fail when every target is down. A request
//! with a body is sent once: its body is a stream that cannot be replayed.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::clock::monotonic_ms;
use crate::config::{Target, UpstreamSettings};
use crate::error::{ClientBodyError, GatewayError};
use crate::outbound::error_chain;
use crate::{empty_body, Body};

/// One upstream with its connection pool.
pub struct Upstream {
    settings: UpstreamSettings,
    client: Client<HttpsConnector<HttpConnector>, Body>,
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
    /// Builds the client for `settings`.
    pub fn new(settings: UpstreamSettings) -> Self {
        let connector = crate::outbound::connector(settings.connect_timeout, &settings.ca);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let ejected_until = settings.targets.iter().map(|_| AtomicU64::new(0)).collect();
        Upstream {
            settings,
            client,
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
    /// response head within the upstream's `timeout`.
    pub async fn send(&self, request: Request<Body>) -> Result<Response<Incoming>, GatewayError> {
        let deadline = tokio::time::Instant::now() + self.settings.timeout;
        let replayable = request.body().is_end_stream() && self.settings.targets.len() > 1;
        let (mut parts, body) = request.into_parts();
        let mut body = Some(body);
        let attempts = if replayable {
            self.settings.targets.len()
        } else {
            1
        };
        for attempt in 1..=attempts {
            let index = self.pick();
            let target = &self.settings.targets[index];
            let mut outgoing = Request::new(body.take().unwrap_or_else(empty_body));
            *outgoing.method_mut() = parts.method.clone();
            *outgoing.uri_mut() = target_uri(target, parts.uri.path_and_query());
            // Only a retry needs the head again: the last (usually the only) attempt takes it.
            if attempt == attempts {
                *outgoing.headers_mut() = std::mem::take(&mut parts.headers);
                *outgoing.extensions_mut() = std::mem::take(&mut parts.extensions);
            } else {
                *outgoing.headers_mut() = parts.headers.clone();
                *outgoing.extensions_mut() = parts.extensions.clone();
            }
            if !self.settings.preserve_host || !outgoing.headers().contains_key(HOST) {
                if let Ok(host) = HeaderValue::from_str(target.authority.as_str()) {
                    outgoing.headers_mut().insert(HOST, host);
                }
            }
            match tokio::time::timeout_at(deadline, self.client.request(outgoing)).await {
                Err(_elapsed) => return Err(GatewayError::UpstreamTimeout),
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(error)) if error.is_connect() => {
                    tracing::warn!(upstream = %self.settings.name, target = %target.authority, error = %error_chain(&error), "upstream target unreachable; ejecting it");
                    self.eject(index);
                }
                Ok(Err(error)) => {
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

fn target_uri(target: &Target, path_and_query: Option<&PathAndQuery>) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(target.scheme.clone());
    parts.authority = Some(target.authority.clone());
    parts.path_and_query = Some(
        path_and_query
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    Uri::from_parts(parts).unwrap_or_default()
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
