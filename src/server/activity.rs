//! Connection activity tracking for the idle and header timeouts: an IO wrapper that records
//! when bytes last moved and when a request head started arriving, and a guard that counts
//! requests in flight.
//!
//! - Idle: no request in flight and nothing moved for `idle_timeout`.
//! - Header timeout: bytes of a new HTTP/1 request head arrived, and `header_timeout` later the
//!   head is still not complete (the slow-loris attack). hyper's own header timeout cannot be
//!   used: it also runs while a keep-alive connection waits for its next request, which would
//!   cut every idle connection at `header_timeout` instead of `idle_timeout`.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

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
    /// Wakes the watchdog when a head starts, so its deadline is armed at once.
    head_begun: Notify,
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
            self.head_begun.notify_one();
        }
    }

    /// Resolves when a request head starts arriving.
    pub async fn head_begun(&self) {
        self.head_begun.notified().await;
    }

    /// Whether the connection is idle, too slow with a request head, or neither for how long.
    pub fn verdict(&self, idle_timeout: Duration, header_timeout: Duration) -> Verdict {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Verdict::Wait(idle_timeout);
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
            Some(left) => Verdict::Wait(wait.min(left)),
            None => Verdict::Idle,
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
