//! Connection activity tracking for the idle and header timeouts: an IO wrapper ([`Observed`])
//! that records when bytes last moved and when a request head started arriving, and a guard
//! that counts requests in flight.
//!
//! - Idle: no request in flight and nothing moved for `idle_timeout`.
//! - Header timeout: a request head is in progress, and `header_timeout` later it is still not
//!   complete (the slow-loris attack). The first request's head is in progress from the moment
//!   the connection is served, so a client that sends nothing frees its `max_connections` slot
//!   after `header_timeout`, not `idle_timeout`; later HTTP/1 heads from their first byte;
//!   HTTP/2 heads as [`super::h2_frames`] reports them. hyper's own header timeout cannot be
//!   used: it also runs while a keep-alive connection waits for its next request, which would
//!   cut every idle connection at `header_timeout` instead of `idle_timeout`.
//!
//! The watchdog is never woken by a request: it looks again at least every `header_timeout`
//! (see [`Activity::verdict`]), so a head that starts while it sleeps is still caught exactly
//! at its deadline, and the request path pays nothing for the timeouts but a few atomic stores.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::clock::monotonic_ms;

/// Shared between a connection's IO wrapper, its requests and its watchdog.
#[derive(Debug, Default)]
pub struct Activity {
    last_ms: AtomicU64,
    /// When the request head in progress started; 0 = none.
    head_started_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// HTTP/2: heads are reported by the frame clock, not by reads and requests.
    http2: AtomicBool,
}

/// What a connection's watchdog should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing yet; look again after this long.
    Wait(Duration),
    /// The connection is idle: close it gracefully.
    Idle,
    /// A request head has taken longer than the header timeout: drop the connection.
    HeadTooSlow,
}

impl Activity {
    /// A tracker that counts "now" as the last activity, with the first request's head
    /// in progress since now.
    pub fn new() -> Arc<Self> {
        let activity = Activity::default();
        activity.touch();
        activity.head_began();
        Arc::new(activity)
    }

    /// A request head began now (or the first one is awaited from now, after a handshake).
    pub fn head_began(&self) {
        // Never 0, which means "no head".
        self.head_started_ms
            .store(monotonic_ms().max(1), Ordering::Relaxed);
    }

    /// No request head is in progress (HTTP/2: every header block read is complete).
    pub fn head_ended(&self) {
        self.head_started_ms.store(0, Ordering::Relaxed);
    }

    fn touch(&self) {
        self.last_ms.store(monotonic_ms(), Ordering::Relaxed);
    }

    /// Counts a request in flight until the guard drops; its head is complete (on HTTP/2 the
    /// frame clock knows whether another stream's head is on its way).
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if !self.http2.load(Ordering::Relaxed) {
            self.head_ended();
        }
        InFlight(self.clone())
    }

    /// Marks the connection as HTTP/2 (negotiated by ALPN).
    pub fn set_http2(&self) {
        self.http2.store(true, Ordering::Relaxed);
    }

    /// Bytes arrived from the client: on HTTP/1, with no request in flight, they begin a head.
    fn received(&self) {
        let now = monotonic_ms();
        self.last_ms.store(now, Ordering::Relaxed);
        if !self.http2.load(Ordering::Relaxed)
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started_ms.load(Ordering::Relaxed) == 0
        {
            self.head_began();
        }
    }

    /// Whether the connection is idle, too slow with a request head, or neither for how long.
    ///
    /// A wait never exceeds `header_timeout`: a head that starts during the wait started after
    /// the wait began, so its deadline is no earlier than the wait's end, and the next verdict
    /// sees it in time without anyone waking the watchdog. On HTTP/2 a head may be in progress
    /// while other streams' requests are in flight, so it is timed whatever is in flight.
    pub fn verdict(&self, idle_timeout: Duration, header_timeout: Duration) -> Verdict {
        let now = monotonic_ms();
        let since = |then: u64| Duration::from_millis(now.saturating_sub(then));
        let mut wait = idle_timeout;
        let head_started = self.head_started_ms.load(Ordering::Relaxed);
        if head_started != 0 {
            match header_timeout
                .checked_sub(since(head_started))
                .filter(|left| !left.is_zero())
            {
                Some(left) => wait = wait.min(left),
                None => return Verdict::HeadTooSlow,
            }
        }
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Verdict::Wait(cap(wait, header_timeout));
        }
        match idle_timeout
            .checked_sub(since(self.last_ms.load(Ordering::Relaxed)))
            .filter(|left| !left.is_zero())
        {
            Some(left) => Verdict::Wait(cap(wait.min(left), header_timeout)),
            None => Verdict::Idle,
        }
    }
}

/// `wait`, at most `header_timeout`. Never zero when `wait` is not: a zero header timeout
/// (every head too slow) is caught by the next read, and must not make the watchdog spin.
fn cap(wait: Duration, header_timeout: Duration) -> Duration {
    if header_timeout.is_zero() {
        wait
    } else {
        wait.min(header_timeout)
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What an [`Observed`] IO wrapper tells about the bytes that move.
pub trait Observer {
    /// `bytes` were read from the client.
    fn read(&mut self, bytes: &[u8]);
    /// Bytes were written to the client.
    fn wrote(&mut self);
}

/// A connection's IO, passed through unchanged, with every read and write that moves bytes
/// reported to an [`Observer`].
#[derive(Debug)]
pub struct Observed<T, O> {
    inner: T,
    observer: O,
}

impl<T, O> Observed<T, O> {
    /// Reports `inner`'s traffic to `observer`.
    pub fn new(inner: T, observer: O) -> Self {
        Observed { inner, observer }
    }
}

/// IO whose traffic is noted in its connection's [`Activity`] (below TLS, so handshake bytes
/// count too).
pub type TrackedIo<T> = Observed<T, Arc<Activity>>;

impl Observer for Arc<Activity> {
    fn read(&mut self, _bytes: &[u8]) {
        self.received();
    }

    fn wrote(&mut self) {
        self.touch();
    }
}

impl<T: AsyncRead + Unpin, O: Observer + Unpin> AsyncRead for Observed<T, O> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.observer.read(&buf.filled()[before..]);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin, O: Observer + Unpin> AsyncWrite for Observed<T, O> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.observer.wrote();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.observer.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);
    const HEADER: Duration = Duration::from_secs(10);

    fn waits(verdict: Verdict) -> Duration {
        match verdict {
            Verdict::Wait(left) => left,
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    /// A tracker past its first request, as after one exchange.
    fn served() -> Arc<Activity> {
        let activity = Activity::new();
        drop(activity.request());
        activity
    }

    #[test]
    fn a_watchdog_looks_again_within_the_header_timeout() {
        for http2 in [false, true] {
            let activity = served();
            if http2 {
                activity.set_http2();
            }
            let idle = waits(activity.verdict(IDLE, HEADER));
            assert!(idle <= HEADER && idle > HEADER - Duration::from_secs(1));
            let _in_flight = activity.request();
            assert!(waits(activity.verdict(IDLE, HEADER)) <= HEADER);
        }
    }

    #[test]
    fn the_first_head_is_timed_from_the_start() {
        let activity = Activity::new();
        assert_eq!(activity.verdict(IDLE, Duration::ZERO), Verdict::HeadTooSlow);
        drop(activity.request());
        assert!(waits(activity.verdict(IDLE, Duration::ZERO)) > HEADER);
    }

    #[test]
    fn a_head_is_timed_from_its_first_byte() {
        let activity = served();
        activity.received();
        assert!(waits(activity.verdict(IDLE, HEADER)) <= HEADER);
        assert_eq!(activity.verdict(IDLE, Duration::ZERO), Verdict::HeadTooSlow);
        // A complete head ends the header deadline; the next one starts a new one.
        let in_flight = activity.request();
        assert!(waits(activity.verdict(IDLE, HEADER)) <= HEADER);
        drop(in_flight);
        assert!(waits(activity.verdict(IDLE, Duration::ZERO)) > HEADER);
        activity.received();
        assert_eq!(activity.verdict(IDLE, Duration::ZERO), Verdict::HeadTooSlow);
    }

    #[test]
    fn an_http2_head_is_timed_while_other_streams_are_in_flight() {
        let activity = Activity::new();
        activity.set_http2();
        activity.head_ended();
        let _in_flight = activity.request();
        activity.received();
        assert!(
            waits(activity.verdict(IDLE, Duration::ZERO)) > HEADER,
            "reads alone time nothing"
        );
        activity.head_began();
        assert_eq!(activity.verdict(IDLE, Duration::ZERO), Verdict::HeadTooSlow);
        activity.head_ended();
        assert!(waits(activity.verdict(IDLE, Duration::ZERO)) > HEADER);
    }
}
