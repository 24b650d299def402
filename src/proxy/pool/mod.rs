//! The connection pool of one upstream target, on `hyper::client::conn`.
//!
//! HTTP/1.1 connections carry one request at a time. An idle one is reused last-in first-out:
//! the warmest connection serves the next request, and the ones below it idle out, so a burst
//! leaves no more connections behind than the traffic after it needs. At most
//! `max_connections` are open; a request that finds none free waits (up to `max_pending` of
//! them, then 503 `upstream_overloaded`; a waiter is bounded by the upstream's `timeout`). A
//! connection goes back to the pool when its response body has been read to the end; a body
//! dropped early closes it, as what is left of the response would be read as the next one.
//!
//! HTTP/2 (h2c, or h2 by ALPN) multiplexes: one connection per target carries every request,
//! up to the server's stream limit, and is replaced when it closes.
//!
//! Nothing here runs per request but a lock around a `Vec` push or pop and a few atomics: no
//! task, no hashing of a pool key, no channel hop beyond the connection's own.

mod connect;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::HOST;
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use tokio::sync::Notify;

use crate::clock::monotonic_ms;
use crate::config::{PoolLimits, Target, UpstreamSettings};
use crate::metrics::PoolGauges;
use crate::Body;

pub use connect::ConnectError;
use connect::{Connector, Sender};

/// Why a request could not be exchanged with the target.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened: the target is down (another target may do).
    Connect(ConnectError),
    /// `max_connections` are busy and `max_pending` requests already wait.
    Overloaded,
    /// The exchange failed after the request was (or may have been) sent.
    Exchange(hyper::Error),
}

/// The pool of one target.
pub struct TargetPool {
    target: Target,
    preserve_host: bool,
    limits: PoolLimits,
    connector: Connector,
    /// Idle HTTP/1.1 connections, the most recently used last.
    idle: Mutex<Vec<Idle>>,
    /// The shared HTTP/2 connection, once there is one.
    http2: Mutex<Option<http2::SendRequest<Body>>>,
    /// Only one HTTP/2 connection is opened at a time, however many requests find none.
    http2_connecting: tokio::sync::Mutex<()>,
    /// Set when the target is known to speak HTTP/2 (configured, or agreed by ALPN).
    speaks_http2: AtomicBool,
    /// HTTP/1.1 connections open (idle or busy), under `max_connections`.
    open: AtomicUsize,
    /// Requests waiting for a connection, under `max_pending`.
    pending: AtomicUsize,
    /// Signalled when a connection goes idle or closes: a waiting request may go on.
    freed: Notify,
    gauges: PoolGauges,
}

/// An idle HTTP/1.1 connection.
struct Idle {
    sender: http1::SendRequest<Body>,
    slot: Slot,
    /// When it went idle ([`monotonic_ms`]).
    since_ms: u64,
}

/// One open HTTP/1.1 connection's place under `max_connections`, given back when dropped
/// (with the connection's sender, which closes it).
struct Slot(Arc<TargetPool>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.gauges.open.decrement(1.0);
        self.0.freed.notify_one();
    }
}

/// A request's place among the waiters, under `max_pending`.
struct Waiting<'a>(&'a TargetPool);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
        self.0.gauges.pending.decrement(1.0);
    }
}

/// A connection checked out for one request.
enum Lease {
    Http1 {
        sender: http1::SendRequest<Body>,
        slot: Slot,
        /// It served a request before, so the upstream may have closed it meanwhile.
        reused: bool,
    },
    Http2(http2::SendRequest<Body>),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data under these locks stays consistent whatever panicked while holding it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TargetPool {
    /// The pool for `settings.targets[index]`.
    pub fn new(settings: &UpstreamSettings, index: usize, gauges: PoolGauges) -> TargetPool {
        let target = settings.targets[index].clone();
        let connector = Connector::new(
            &target,
            settings.protocol,
            settings.connect_timeout,
            &settings.ca,
        );
        TargetPool {
            speaks_http2: AtomicBool::new(connector.always_http2()),
            target,
            preserve_host: settings.preserve_host,
            limits: settings.pool,
            connector,
            idle: Mutex::new(Vec::new()),
            http2: Mutex::new(None),
            http2_connecting: tokio::sync::Mutex::new(()),
            open: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            freed: Notify::new(),
            gauges,
        }
    }

    /// Sends `request` (its URI holds only path and query) and waits for the response head.
    /// The caller bounds the whole of it, the wait for a connection included, in time.
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<Body>,
    ) -> Result<Response<PooledBody>, SendError> {
        loop {
            match self.checkout().await? {
                Lease::Http1 {
                    mut sender,
                    slot,
                    reused,
                } => {
                    self.for_http1(&mut request);
                    match sender.try_send_request(request).await {
                        Ok(response) => {
                            let keep = Some(Keep { sender, slot });
                            return Ok(response.map(|inner| PooledBody { inner, keep }));
                        }
                        // A reused connection that the upstream closed before it took the
                        // request gives it back untouched: it goes on a fresh connection.
                        Err(mut error) => match error.take_message() {
                            Some(unsent) if reused => request = unsent,
                            _ => return Err(SendError::Exchange(error.into_error())),
                        },
                    }
                }
                Lease::Http2(mut sender) => {
                    self.for_http2(&mut request);
                    match sender.try_send_request(request).await {
                        Ok(response) => {
                            return Ok(response.map(|inner| PooledBody { inner, keep: None }))
                        }
                        Err(mut error) => match error.take_message() {
                            // The connection closed under it: the next one is opened anew.
                            Some(unsent) => {
                                self.forget_http2(&sender);
                                request = unsent;
                            }
                            None => return Err(SendError::Exchange(error.into_error())),
                        },
                    }
                }
            }
        }
    }

    /// A connection for one request: an idle one (most recent first), a new one under
    /// `max_connections`, or the first to come free.
    async fn checkout(self: &Arc<Self>) -> Result<Lease, SendError> {
        let mut waiting = None;
        loop {
            if self.speaks_http2.load(Ordering::Relaxed) {
                // Boxed, as it may connect (see `Connector::connect_boxed`).
                return Box::pin(self.http2_lease()).await;
            }
            while let Some(idle) = self.pop_idle() {
                let Idle {
                    mut sender, slot, ..
                } = idle;
                // Closed by the upstream while idle: dropped with its slot, the next one tried.
                if sender.ready().await.is_ok() {
                    return Ok(Lease::Http1 {
                        sender,
                        slot,
                        reused: true,
                    });
                }
            }
            if let Some(slot) = self.reserve() {
                return match self.connector.connect_boxed().await? {
                    Sender::Http1(sender) => Ok(Lease::Http1 {
                        sender,
                        slot,
                        reused: false,
                    }),
                    // `auto` learned from ALPN that the target speaks HTTP/2.
                    Sender::Http2(sender) => {
                        drop(slot);
                        self.speaks_http2.store(true, Ordering::Relaxed);
                        *lock(&self.http2) = Some(sender.clone());
                        Ok(Lease::Http2(sender))
                    }
                };
            }
            if waiting.is_none() {
                waiting = Some(self.wait_in_line()?);
            }
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking again, so a connection freed in between is not missed.
            freed.as_mut().enable();
            if lock(&self.idle).is_empty()
                && self.open.load(Ordering::Acquire) >= self.limits.max_connections
            {
                freed.await;
            }
        }
    }

    fn pop_idle(&self) -> Option<Idle> {
        let idle = lock(&self.idle).pop()?;
        self.gauges.idle.decrement(1.0);
        let fresh = monotonic_ms().saturating_sub(idle.since_ms)
            < self.limits.idle_timeout.as_millis() as u64;
        // Unused too long: the upstream may be about to close it; a new one is safer.
        Some(idle).filter(|_| fresh).or_else(|| self.pop_idle())
    }

    /// A place under `max_connections`, if one is free.
    fn reserve(self: &Arc<Self>) -> Option<Slot> {
        let max = self.limits.max_connections;
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()?;
        self.gauges.open.increment(1.0);
        Some(Slot(self.clone()))
    }

    fn wait_in_line(&self) -> Result<Waiting<'_>, SendError> {
        let max = self.limits.max_pending;
        self.pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |pending| {
                (pending < max).then_some(pending + 1)
            })
            .map_err(|_| SendError::Overloaded)?;
        self.gauges.pending.increment(1.0);
        Ok(Waiting(self))
    }

    /// Puts a connection whose exchange is complete back, unless enough are idle already.
    fn release(&self, sender: http1::SendRequest<Body>, slot: Slot) {
        if sender.is_closed() {
            return;
        }
        let now = monotonic_ms();
        let mut idle = lock(&self.idle);
        // The oldest idle connection is closed once it has outlived `idle_timeout`: reaping as
        // traffic flows, without a timer per connection.
        let expired = idle.first().is_some_and(|oldest| {
            now.saturating_sub(oldest.since_ms) >= self.limits.idle_timeout.as_millis() as u64
        });
        let reaped = expired.then(|| idle.remove(0));
        let kept = idle.len() < self.limits.max_idle;
        if kept {
            idle.push(Idle {
                sender,
                slot,
                since_ms: now,
            });
        }
        drop(idle);
        if reaped.is_some() {
            self.gauges.idle.decrement(1.0);
        }
        if kept {
            self.gauges.idle.increment(1.0);
            self.freed.notify_one();
        }
    }

    /// The shared HTTP/2 connection, opened (once, whoever asks at the same time) if needed.
    async fn http2_lease(self: &Arc<Self>) -> Result<Lease, SendError> {
        let open = || lock(&self.http2).clone().filter(|s| !s.is_closed());
        if let Some(sender) = open() {
            return Ok(Lease::Http2(sender));
        }
        let _connecting = self.http2_connecting.lock().await;
        if let Some(sender) = open() {
            return Ok(Lease::Http2(sender));
        }
        match self.connector.connect_boxed().await? {
            Sender::Http2(sender) => {
                *lock(&self.http2) = Some(sender.clone());
                Ok(Lease::Http2(sender))
            }
            // `auto`: this time the target's ALPN chose HTTP/1.1 (it was redeployed): it is
            // treated as such from now on, this first connection counted like any other.
            Sender::Http1(sender) => {
                self.speaks_http2.store(false, Ordering::Relaxed);
                self.open.fetch_add(1, Ordering::AcqRel);
                self.gauges.open.increment(1.0);
                let slot = Slot(self.clone());
                Ok(Lease::Http1 {
                    sender,
                    slot,
                    reused: false,
                })
            }
        }
    }

    fn forget_http2(&self, closed: &http2::SendRequest<Body>) {
        let mut shared = lock(&self.http2);
        if shared
            .as_ref()
            .is_some_and(|s| s.is_closed() || closed.is_closed())
        {
            *shared = None;
        }
    }

    /// HTTP/1.1 takes the origin form (`/path?query`) and the host in `Host`.
    fn for_http1(&self, request: &mut Request<Body>) {
        *request.version_mut() = Version::HTTP_11;
        if !self.preserve_host || !request.headers().contains_key(HOST) {
            if let Ok(host) = HeaderValue::from_str(self.target.authority.as_str()) {
                request.headers_mut().insert(HOST, host);
            }
        }
    }

    /// HTTP/2 carries scheme and authority in the URI (`:scheme`, `:authority`), not in `Host`.
    fn for_http2(&self, request: &mut Request<Body>) {
        *request.version_mut() = Version::HTTP_2;
        let host = request.headers_mut().remove(HOST);
        let authority = host
            .filter(|_| self.preserve_host)
            .and_then(|value| http::uri::Authority::try_from(value.as_bytes()).ok())
            .unwrap_or_else(|| self.target.authority.clone());
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(if self.target.scheme == Scheme::HTTPS {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        });
        parts.authority = Some(authority);
        parts.path_and_query = Some(
            request
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
}

/// What returns an HTTP/1.1 connection to its pool when the response is complete.
struct Keep {
    sender: http1::SendRequest<Body>,
    slot: Slot,
}

/// An upstream response body that gives its connection back to the pool once read to the end
/// (or closes it when dropped before).
pub struct PooledBody {
    inner: Incoming,
    keep: Option<Keep>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some(Keep { sender, slot }) = self.keep.take() {
            let pool = slot.0.clone();
            pool.release(sender, slot);
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            None => self.release(),
            Some(Ok(_)) if self.inner.is_end_stream() => self.release(),
            Some(Ok(_)) => {}
            // A broken exchange leaves the connection in no state to reuse.
            Some(Err(_)) => self.keep = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body nobody read because it was empty (a 204, a HEAD) is complete all the same.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}
