//! authgate: a reverse-proxy authentication gateway.
//!
//! It terminates TLS, decides whether a request may pass, tells the upstream who the caller is
//! through identity headers, and forwards the request. The path one request takes:
//!
//! ```text
//! TCP accept ─► TLS handshake (rustls; certificate picked by SNI; bounded by a timeout)
//!           ─► HTTP/1.1 or HTTP/2 (by ALPN, or by the preface peeked on a plain connection), upgrades on
//!           ─► Gateway::handle(request)
//!                let snap = runtime.load();               // one snapshot per request
//!                route = snap.routes.find(host, path, method)          → 404
//!                strip incoming identity headers (every route, public too)
//!                rewrite: hop-by-hop out, X-Forwarded-* / Forwarded set, X-Request-Id
//!                forward to the upstream (pooled client, timeouts, upgrade tunnel) → 502 / 504
//! ```
//!
//! Module map:
//! - [`config`]: gateway.toml → validated [`config::Config`], errors as `file:line:col`.
//! - [`runtime`]: the immutable snapshot a request runs against, built from a `Config`.
//! - [`server`]: listeners, accept loop, TLS, connection limits, graceful shutdown.
//! - [`proxy`]: the request handler, route matching, header rewriting, upstream pool, upgrades,
//!   the built-in echo upstream.
//! - [`identity`]: removing identity headers a client tried to send.
//! - [`error`]: the gateway's own errors and the one function that turns them into responses.
//! - [`admin`]: `/healthz` and `/readyz` on the admin listener.

pub mod access_log;
pub mod admin;
pub mod assertion;
pub mod auth;
pub mod clock;
pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod metrics;
pub mod outbound;
pub mod proxy;
pub mod runtime;
pub mod server;
pub mod token_service;

use bytes::Bytes;

/// The error type bodies carry: any error, sendable across tasks.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every request the gateway forwards and every response it returns: streamed,
/// never collected in memory.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A body holding `bytes`, for the responses the gateway writes itself.
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    use http_body_util::BodyExt;
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty_body() -> Body {
    use http_body_util::BodyExt;
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}
