//! Listeners, the accept loop, per-connection serving, and graceful shutdown.
//!
//! [`RunningGateway::start`] binds every listener before it returns (so port 0 works and a
//! taken port is an error at start, not later), then serves until
//! [`RunningGateway::shutdown`]: stop accepting, let in-flight requests finish within
//! `shutdown_grace`, then close what is left.

mod activity;
mod h2_frames;
mod reload;
pub mod tls;

pub use reload::{Baseline, Reloader};

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::admin::Readiness;
use crate::config::Config;
use crate::proxy::upgrade::ConnectionSlot;
use crate::proxy::{self, ConnInfo};
use crate::runtime::{Runtime, Snapshot};
use activity::{Activity, TrackedIo, Verdict};
use tls::SniResolver;

/// Where the gateway is in its life; connections watch it to know when to wind down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Finish in-flight requests, take no new ones.
    Draining,
    /// The grace period is over: drop every connection.
    Closed,
}

/// What every connection task shares.
struct Shared {
    runtime: Arc<Runtime>,
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    idle_timeout: Duration,
    header_timeout: Duration,
    handshake_timeout: Duration,
}

/// A gateway that is serving. Dropping it stops it abruptly; [`RunningGateway::shutdown`] stops
/// it gracefully.
pub struct RunningGateway {
    /// The bound plain HTTP address.
    pub http_addr: Option<SocketAddr>,
    /// The bound HTTPS address.
    pub https_addr: Option<SocketAddr>,
    /// The bound admin address.
    pub admin_addr: Option<SocketAddr>,
    runtime: Arc<Runtime>,
    resolver: Arc<SniResolver>,
    readiness: Arc<Readiness>,
    phase: watch::Sender<Phase>,
    accept_loops: Vec<JoinHandle<()>>,
    admin_loop: Option<JoinHandle<()>>,
    connections: Arc<Semaphore>,
    max_connections: u32,
    shutdown_grace: Duration,
}

impl RunningGateway {
    /// Binds the configured listeners and starts serving.
    pub async fn start(config: Config) -> io::Result<RunningGateway> {
        crate::metrics::install();
        let server = config.server.clone();
        let resolver = Arc::new(SniResolver::new(&config.certificates));
        let snapshot = Snapshot::new(config.clone(), None).map_err(io::Error::other)?;
        let runtime = Arc::new(Runtime::from_pointee(snapshot));
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            // The header timeout is enforced per connection by `Activity` (see there why).
            .header_read_timeout(None)
            .max_buf_size(server.max_header_size);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(server.max_header_size).unwrap_or(u32::MAX));
        let shared = Arc::new(Shared {
            runtime: runtime.clone(),
            http1,
            http2,
            idle_timeout: server.idle_timeout,
            header_timeout: server.header_timeout,
            handshake_timeout: server.handshake_timeout,
        });
        let max_connections = u32::try_from(server.max_connections).unwrap_or(u32::MAX >> 3);
        let connections = Arc::new(Semaphore::new(max_connections as usize));
        let (phase, _) = watch::channel(Phase::Serving);
        let readiness = Arc::new(Readiness::default());

        let mut accept_loops = Vec::new();
        let bind = |address: SocketAddr, tls: Option<TlsAcceptor>, name: &'static str| async move {
            let listener = TcpListener::bind(address).await.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot listen on {address} ({name}): {e}"),
                )
            })?;
            let bound = listener.local_addr()?;
            tracing::info!(listener = name, address = %bound, "listening");
            Ok::<_, io::Error>((listener, bound, tls))
        };
        let mut http_addr = None;
        if let Some(address) = server.http {
            let (listener, bound, _) = bind(address, None, "http").await?;
            http_addr = Some(bound);
            accept_loops.push(tokio::spawn(accept_loop(
                listener,
                None,
                shared.clone(),
                connections.clone(),
                phase.subscribe(),
            )));
        }
        let mut https_addr = None;
        if let Some(address) = server.https {
            let tls_config = tls::server_config(resolver.clone(), config.tls_min_version)
                .map_err(io::Error::other)?;
            let (listener, bound, tls) =
                bind(address, Some(TlsAcceptor::from(tls_config)), "https").await?;
            https_addr = Some(bound);
            accept_loops.push(tokio::spawn(accept_loop(
                listener,
                tls,
                shared.clone(),
                connections.clone(),
                phase.subscribe(),
            )));
        }
        let mut admin_addr = None;
        let mut admin = None;
        if let Some(address) = config.admin {
            let (listener, bound, _) = bind(address, None, "admin").await?;
            admin_addr = Some(bound);
            // The admin listener outlives draining so probes can watch `/readyz` turn 503.
            admin = Some(tokio::spawn(admin_loop(
                listener,
                readiness.clone(),
                runtime.clone(),
                phase.subscribe(),
            )));
        }
        readiness.set(true);
        Ok(RunningGateway {
            http_addr,
            https_addr,
            admin_addr,
            runtime,
            resolver,
            readiness,
            phase,
            accept_loops,
            admin_loop: admin,
            connections,
            max_connections,
            shutdown_grace: server.shutdown_grace,
        })
    }

    /// The snapshot requests currently run against.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.runtime.load_full()
    }

    /// Swaps in a snapshot built from `config` (see [`Reloader::apply`]).
    pub fn reload(&self, config: Config) -> Result<(), String> {
        self.reloader().apply(config)
    }

    /// What applies new configurations to this gateway, for a watcher or a signal handler.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            runtime: self.runtime.clone(),
            resolver: self.resolver.clone(),
        }
    }

    /// Stops accepting, lets in-flight requests finish within `shutdown_grace`, then closes
    /// every connection. Returns whether everything finished within the grace period.
    pub async fn shutdown(self) -> bool {
        self.readiness.set(false);
        self.phase.send_replace(Phase::Draining);
        for accept_loop in self.accept_loops {
            let _ = accept_loop.await;
        }
        let drained = tokio::time::timeout(
            self.shutdown_grace,
            self.connections.acquire_many(self.max_connections),
        )
        .await
        .is_ok();
        self.phase.send_replace(Phase::Closed);
        if let Some(admin) = self.admin_loop {
            let _ = admin.await;
        }
        // Quota counters are written behind; what the last second counted lands now.
        self.runtime.load().limits.flush();
        self.runtime.load().meter.flush();
        drained
    }
}

/// Accepts connections until draining begins, one task each, at most `max_connections` at once
/// (further clients wait in the listen backlog).
async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    connections: Arc<Semaphore>,
    mut phase: watch::Receiver<Phase>,
) {
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = reached(&mut phase, Phase::Draining) => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = reached(&mut phase, Phase::Draining) => return,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        let phase = phase.clone();
        let listener = if tls.is_some() { "https" } else { "http" };
        tokio::spawn(async move {
            // The slot is freed when the connection ends, unless an upgrade tunnel took it over.
            let slot = ConnectionSlot::new(permit);
            crate::metrics::connection_opened(listener);
            serve_tcp(stream, peer, tls, slot, shared, phase).await;
            crate::metrics::connection_closed(listener);
        });
    }
}

async fn serve_tcp(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    slot: ConnectionSlot,
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
) {
    // Activity is tracked below TLS so handshake bytes count too.
    let activity = Activity::new();
    let conn = ConnInfo {
        peer,
        tls: tls.is_some(),
        slot,
    };
    match tls {
        None => {
            let mut watching = phase.clone();
            let protocol = tokio::select! {
                protocol = sniff(&stream, shared.header_timeout) => protocol,
                _ = reached(&mut watching, Phase::Draining) => None,
            };
            let Some(protocol) = protocol else { return };
            let stream = TrackedIo::new(stream, activity.clone());
            if protocol == Protocol::Http2 {
                activity.set_http2();
            }
            serve_connection(stream, protocol, conn, activity, shared, phase).await
        }
        // Boxed for the same reason as HTTP/2 below: the TLS path (handshake state, TLS
        // stream) is several times the plain one.
        Some(acceptor) => {
            Box::pin(serve_tls(stream, acceptor, conn, activity, shared, phase)).await;
        }
    }
}

async fn serve_tls(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    conn: ConnInfo,
    activity: Arc<Activity>,
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
) {
    let peer = conn.peer;
    let stream = TrackedIo::new(stream, activity.clone());
    match tokio::time::timeout(shared.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            // The handshake had its own timeout; the first request's head is due from now.
            activity.head_began();
            let protocol = if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                activity.set_http2();
                Protocol::Http2
            } else {
                Protocol::Http1
            };
            serve_connection(stream, protocol, conn, activity, shared, phase).await
        }
        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// The HTTP/2 connection preface (RFC 9113 §3.4), which a client with prior knowledge sends
/// first on a plain connection.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which protocol a plain connection speaks, judged from its first bytes without consuming
/// them; `None` if it closes or sends nothing within `header_timeout` (the first request's
/// head is due by then anyway). The bytes are peeked rather than read so that the HTTP/1
/// server reads the whole first packet into its own buffer at once: a sniffed prefix handed
/// back to it made it grow that buffer to twice its size on every connection.
async fn sniff(stream: &TcpStream, header_timeout: Duration) -> Option<Protocol> {
    let deadline = tokio::time::Instant::now() + header_timeout;
    let mut first = [0u8; H2_PREFACE.len()];
    let n = tokio::time::timeout_at(deadline, stream.peek(&mut first))
        .await
        .ok()?
        .ok()?;
    let mut seen = n;
    loop {
        if seen == 0 {
            return None;
        }
        if first[..seen] != H2_PREFACE[..seen] {
            return Some(Protocol::Http1);
        }
        if seen == H2_PREFACE.len() {
            return Some(Protocol::Http2);
        }
        // A beginning of the preface and no more yet (rare: clients send it in one piece). The
        // socket stays readable while unread bytes wait, so look again after a pause, within
        // the header timeout.
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        seen = stream.peek(&mut first).await.ok()?;
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one connection until it closes, goes idle, or the gateway
/// shuts down.
async fn serve_connection<I>(
    io: I,
    protocol: Protocol,
    conn: ConnInfo,
    activity: Arc<Activity>,
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let service = {
        let runtime = shared.runtime.clone();
        let activity = activity.clone();
        service_fn(move |request| {
            let in_flight = activity.request();
            // One snapshot for the whole request, whatever reloads happen meanwhile.
            let snapshot = runtime.load_full();
            let conn = conn.clone();
            // Boxed: hyper keeps room for one request future per connection for the connection's
            // whole life, so an unboxed (large) future would cost every idle keep-alive
            // connection its size; boxed, it costs a pointer, and the request its allocation.
            Box::pin(async move {
                let response = proxy::handle(&snapshot, request, conn).await;
                drop(in_flight);
                Ok::<_, Infallible>(response)
            })
        })
    };
    let watchdog = Watchdog {
        peer,
        activity: &activity,
        shared: &shared,
        phase,
    };
    match protocol {
        Protocol::Http1 => {
            let connection = shared
                .http1
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            watchdog.watch(connection, |c| c.graceful_shutdown()).await
        }
        // Boxed: a connection task is as large as its largest path, and an HTTP/2 connection's
        // state is several times an HTTP/1 one's, which should not pay for it.
        Protocol::Http2 => {
            // Frames are followed above TLS, so that each stream's headers are timed too.
            let io = h2_frames::FrameClock::new(io, h2_frames::HeadTimer::new(activity.clone()));
            let connection = shared.http2.serve_connection(TokioIo::new(io), service);
            Box::pin(watchdog.watch(connection, |c| c.graceful_shutdown())).await
        }
    }
}

/// What watches one connection: closes it when it goes idle, when a request head is too slow,
/// or when the gateway shuts down.
struct Watchdog<'a> {
    peer: SocketAddr,
    activity: &'a Activity,
    shared: &'a Shared,
    phase: watch::Receiver<Phase>,
}

impl Watchdog<'_> {
    /// Drives `connection` to its end; `graceful_shutdown` winds it down.
    async fn watch<C, E>(mut self, connection: C, graceful_shutdown: impl Fn(Pin<&mut C>))
    where
        C: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let (peer, activity, shared) = (self.peer, self.activity, self.shared);
        let phase = &mut self.phase;
        tokio::pin!(connection);
        // One timer for the connection's life, moved rather than re-created at each look.
        let check = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(check);
        let mut winding_down = false;
        loop {
            let verdict = activity.verdict(shared.idle_timeout, shared.header_timeout);
            let check_in = match verdict {
                Verdict::Wait(left) => left,
                Verdict::Idle | Verdict::HeadTooSlow => Duration::ZERO,
            };
            check.as_mut().reset(tokio::time::Instant::now() + check_in);
            tokio::select! {
                // The connection first: nearly every wake-up is its IO.
                biased;
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                    return;
                }
                changed = phase.changed() => {
                    match changed.map(|()| *phase.borrow_and_update()) {
                        Ok(Phase::Serving) => {}
                        Ok(Phase::Draining) => {
                            winding_down = true;
                            graceful_shutdown(connection.as_mut());
                        }
                        Ok(Phase::Closed) | Err(_) => return,
                    }
                }
                () = check.as_mut() => match verdict {
                    Verdict::Wait(_) => {}
                    Verdict::HeadTooSlow => {
                        tracing::debug!(%peer, "request head not complete within header_timeout; closing");
                        return;
                    }
                    Verdict::Idle if winding_down => {
                        // Already closing; an idle connection that has not closed is stuck.
                        return;
                    }
                    Verdict::Idle => {
                        tracing::debug!(%peer, "closing idle connection");
                        winding_down = true;
                        graceful_shutdown(connection.as_mut());
                    }
                },
            }
        }
    }
}

/// Resolves once the gateway is at `phase` or past it (or is gone).
async fn reached(phase: &mut watch::Receiver<Phase>, wanted: Phase) {
    let order = |p: Phase| p as u8;
    let _ = phase.wait_for(|p| order(*p) >= order(wanted)).await;
}

/// Serves `/healthz` and `/readyz` until the gateway closes.
async fn admin_loop(
    listener: TcpListener,
    readiness: Arc<Readiness>,
    runtime: Arc<Runtime>,
    mut phase: watch::Receiver<Phase>,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = reached(&mut phase, Phase::Closed) => return,
        };
        let readiness = readiness.clone();
        let runtime = runtime.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = crate::admin::handle(&request, &readiness, &runtime.load());
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
