//! Connection activity tracking for the idle and header timeouts: an IO wrapper that records
//! when bytes last moved and when a request head started arriving, and a guard that counts
//! requests in flight.
//!
//! - Idle: no request in flight and nothing moved for `idle_timeout`.
//! - Header timeout: bytes of a new HTTP/1 request head arrived, and `header_timeout` later the
//!   head is still not complete (the slow-loris attack). hyper's own header timeout cannot be
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
    /// When the first byte of a request head arrived; 0 = no head in progress.
    head_started_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// HTTP/2 frames requests itself; the header timeout is for HTTP/1 heads.
    http2: AtomicBool,
    first_read_seen: AtomicBool,
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
    /// A tracker that counts "now" as the last activity.
    pub fn new() -> Arc<Self> {
        let activity = Activity::default();
        activity.touch();
        Arc::new(activity)
    }

    fn touch(&self) {
        self.last_ms.store(monotonic_ms(), Ordering::Relaxed);
    }

    /// Counts a request in flight until the guard drops; its head is complete.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started_ms.store(0, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Marks the connection as HTTP/2 (negotiated by ALPN).
    pub fn set_http2(&self) {
        self.http2.store(true, Ordering::Relaxed);
    }

    /// Bytes arrived from the client.
    fn received(&self, first_bytes: &[u8]) {
        let now = monotonic_ms();
        self.last_ms.store(now, Ordering::Relaxed);
        if !self.first_read_seen.swap(true, Ordering::Relaxed) && first_bytes.starts_with(b"PRI ") {
            // The HTTP/2 connection preface (prior knowledge on a plain listener).
            self.set_http2();
        }
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started_ms.load(Ordering::Relaxed) == 0
        {
            self.head_started_ms.store(now, Ordering::Relaxed);
        }
    }

    /// Whether the connection is idle, too slow with a request head, or neither for how long.
    ///
    /// A wait never exceeds `header_timeout` on an HTTP/1 connection: a head that starts during
    /// the wait started after the wait began, so its deadline is no earlier than the wait's end,
    /// and the next verdict sees it in time without anyone waking the watchdog.
    pub fn verdict(&self, idle_timeout: Duration, header_timeout: Duration) -> Verdict {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Verdict::Wait(self.cap(idle_timeout, header_timeout));
        }
        let now = monotonic_ms();
        let since = |then: u64| Duration::from_millis(now.saturating_sub(then));
        let mut wait = idle_timeout;
        let head_started = self.head_started_ms.load(Ordering::Relaxed);
        if head_started != 0 && !self.http2.load(Ordering::Relaxed) {
            match header_timeout
                .checked_sub(since(head_started))
                .filter(|left| !left.is_zero())
            {
                Some(left) => wait = wait.min(left),
                None => return Verdict::HeadTooSlow,
            }
        }
        match idle_timeout
            .checked_sub(since(self.last_ms.load(Ordering::Relaxed)))
            .filter(|left| !left.is_zero())
        {
            Some(left) => Verdict::Wait(self.cap(wait.min(left), header_timeout)),
            None => Verdict::Idle,
        }
    }

    /// `wait`, at most `header_timeout` unless the connection is HTTP/2 (which has no heads to
    /// time). Never zero when `wait` is not: a zero header timeout (every head too slow) is
    /// caught by the next read, and must not make the watchdog spin.
    fn cap(&self, wait: Duration, header_timeout: Duration) -> Duration {
        if self.http2.load(Ordering::Relaxed) || header_timeout.is_zero() {
            wait
        } else {
            wait.min(header_timeout)
        }
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

/// Wraps a connection's IO, noting every read or write that moves bytes.
#[derive(Debug)]
pub struct TrackedIo<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> TrackedIo<T> {
    /// Tracks `inner` into `activity`.
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        TrackedIo { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received(&buf.filled()[before..]);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
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
            self.activity.touch();
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

    #[test]
    fn an_http1_watchdog_looks_again_within_the_header_timeout() {
        let activity = Activity::new();
        let idle = waits(activity.verdict(IDLE, HEADER));
        assert!(idle <= HEADER && idle > HEADER - Duration::from_secs(1));
        let _in_flight = activity.request();
        assert!(waits(activity.verdict(IDLE, HEADER)) <= HEADER);
    }

    #[test]
    fn an_http2_watchdog_sleeps_until_the_idle_deadline() {
        let activity = Activity::new();
        activity.set_http2();
        let idle = waits(activity.verdict(IDLE, HEADER));
        assert!(idle > HEADER && idle <= IDLE);
    }

    #[test]
    fn a_head_is_timed_from_its_first_byte() {
        let activity = Activity::new();
        activity.received(b"GET / HTTP/1.1\r\n");
        assert!(waits(activity.verdict(IDLE, HEADER)) <= HEADER);
        assert_eq!(activity.verdict(IDLE, Duration::ZERO), Verdict::HeadTooSlow);
        // A complete head ends the header deadline; the next one starts a new one.
        let in_flight = activity.request();
        assert!(waits(activity.verdict(IDLE, HEADER)) <= HEADER);
        drop(in_flight);
        assert!(waits(activity.verdict(IDLE, Duration::ZERO)) > HEADER);
        activity.received(b"GET / HTTP/1.1\r\n");
        assert_eq!(activity.verdict(IDLE, Duration::ZERO), Verdict::HeadTooSlow);
    }
}
