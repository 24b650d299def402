//! Opening one connection to a target: TCP (bounded by the upstream's `connect_timeout`, no
//! Nagle delay), TLS for https targets (SNI = the target's host, ALPN by `protocol`), then the
//! HTTP/1.1 or HTTP/2 handshake. The connection's task is spawned here, once for the
//! connection's life: requests reach it through the returned sender, with no task per request.

use std::sync::Arc;
use std::time::Duration;

use http::uri::Scheme;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::{Target, UpstreamProtocol};
use crate::Body;

/// A connection's sending half, by the protocol it speaks.
pub enum Sender {
    /// HTTP/1.1: one request at a time.
    Http1(http1::SendRequest<Body>),
    /// HTTP/2: any number of streams at once (up to the server's limit), so it is shared.
    Http2(http2::SendRequest<Body>),
}

/// Why a connection could not be opened. Every kind means "try another target".
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TCP connect failed (refused, unreachable, name not resolved).
    #[error("connect: {0}")]
    Io(#[source] std::io::Error),
    /// TCP connect took longer than `connect_timeout`.
    #[error("connect timed out")]
    Timeout,
    /// The TLS handshake failed (certificate, protocol).
    #[error("TLS handshake: {0}")]
    Tls(#[source] std::io::Error),
    /// `protocol = "h2"` but the target's TLS handshake did not agree on it.
    #[error("the target does not offer HTTP/2 by ALPN")]
    NoHttp2,
    /// The HTTP handshake failed (for HTTP/2: the preface or settings exchange).
    #[error("HTTP handshake: {0}")]
    Handshake(#[source] hyper::Error),
}

/// Opens connections to one target.
pub struct Connector {
    host: String,
    port: u16,
    protocol: UpstreamProtocol,
    connect_timeout: Duration,
    /// For https targets: the TLS client and the name the certificate must hold.
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Connector {
    /// A connector for `target`; `ca` adds trust anchors to the system's for https.
    pub fn new(
        target: &Target,
        protocol: UpstreamProtocol,
        connect_timeout: Duration,
        ca: &[CertificateDer<'static>],
    ) -> Connector {
        let https = target.scheme == Scheme::HTTPS;
        // `[::1]` in an authority is `::1` to connect to and to name in SNI.
        let host = target
            .authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = target
            .authority
            .port_u16()
            .unwrap_or(if https { 443 } else { 80 });
        let tls = https
            .then(|| {
                let mut config = crate::outbound::tls_config(ca);
                config.alpn_protocols = match protocol {
                    UpstreamProtocol::H2 => vec![b"h2".to_vec()],
                    UpstreamProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
                    UpstreamProtocol::Http1 | UpstreamProtocol::H2c => vec![b"http/1.1".to_vec()],
                };
                let name = ServerName::try_from(host.clone()).ok()?;
                Some((TlsConnector::from(Arc::new(config)), name))
            })
            .flatten();
        Connector {
            host,
            port,
            protocol,
            connect_timeout,
            tls,
        }
    }

    /// Whether every connection this connector opens speaks HTTP/2 (known before connecting).
    pub fn always_http2(&self) -> bool {
        matches!(self.protocol, UpstreamProtocol::H2 | UpstreamProtocol::H2c)
    }

    /// [`Connector::connect`] on the heap. Opening a connection (TCP, TLS, HTTP handshakes)
    /// holds kilobytes of state while it waits, and every request's future would carry room
    /// for it, copied at each move, though only the few requests that open a connection use
    /// it: boxed, they alone pay for one allocation.
    pub async fn connect_boxed(&self) -> Result<Sender, super::SendError> {
        Box::pin(self.connect())
            .await
            .map_err(super::SendError::Connect)
    }

    /// Opens one connection and completes its handshake.
    pub async fn connect(&self) -> Result<Sender, ConnectError> {
        let connecting = TcpStream::connect((self.host.as_str(), self.port));
        let tcp = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| ConnectError::Timeout)?
            .map_err(ConnectError::Io)?;
        // Requests are written whole; waiting to coalesce small writes only adds latency.
        let _ = tcp.set_nodelay(true);
        let Some((tls, name)) = &self.tls else {
            return match self.protocol {
                UpstreamProtocol::H2c => http2_handshake(TokioIo::new(tcp)).await,
                _ => http1_handshake(TokioIo::new(tcp)).await,
            };
        };
        let stream = tls
            .connect(name.clone(), tcp)
            .await
            .map_err(ConnectError::Tls)?;
        let agreed_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        match self.protocol {
            UpstreamProtocol::H2 if !agreed_h2 => Err(ConnectError::NoHttp2),
            UpstreamProtocol::H2 | UpstreamProtocol::Auto if agreed_h2 => {
                http2_handshake(TokioIo::new(stream)).await
            }
            _ => http1_handshake(TokioIo::new(stream)).await,
        }
    }
}

async fn http1_handshake<T>(io: TokioIo<T>) -> Result<Sender, ConnectError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(ConnectError::Handshake)?;
    tokio::spawn(async move {
        // Upgrades: a 101 hands the connection to the tunnel instead of ending it.
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "upstream connection ended");
        }
    });
    Ok(Sender::Http1(sender))
}

async fn http2_handshake<T>(io: TokioIo<T>) -> Result<Sender, ConnectError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        // A connection that goes silent (a dead peer behind NAT) is found by pings and closed,
        // so its streams fail rather than hang until their timeouts.
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .handshake(io)
        .await
        .map_err(ConnectError::Handshake)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "upstream HTTP/2 connection ended");
        }
    });
    Ok(Sender::Http2(sender))
}
