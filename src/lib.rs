//! authgate: a reverse-proxy authentication gateway.
//!
//! It terminates TLS, decides whether a request may pass, tells the upstream who the caller is
//! through identity headers, and forwards the request. The path one request takes:
//!
//! ```text
//! TCP accept ─► TLS handshake (rustls; certificate picked by SNI; tickets for resumption;
//!               bounded by handshake_timeout)
//!           ─► HTTP/1.1 or HTTP/2 (by ALPN, or by the preface peeked on a plain connection)
//!           ─► proxy::handle(snapshot, request)      // one snapshot per request (runtime)
//!                judge the head: one bare host, chunked only, allowed upgrades → 400 / 501
//!                normalize the path (dot segments out, repeated slashes merged) → 400
//!                strip incoming identity headers (every route, public too)
//!                the token service's endpoints ({path}/login, /token, …, discovery, JWKS)
//!                forward-auth; sign-in's callback, logout and start
//!                    (`sign_in`: a browser's session, a navigation without one → 302)
//!                route = snapshot.routes.find(host, path, method)         → 404
//!                identity = auth.authenticate(route, headers)             → 401 / 503
//!                    (JWT against cached keys, or API key; then scopes, roles, claims → 403)
//!                consumer, plan = who it counts against; limits.check    → 429 (RateLimit)
//!                rewrite: hop-by-hop out, credentials out, X-Forwarded-* / Forwarded,
//!                         X-Request-Id, traceparent; identity headers (and assertion) in
//!                forward to the upstream (pooled client, timeouts, upgrade tunnel) → 502 / 504
//!                record: metrics and one access-log line
//! ```
//!
//! Module map:
//! - [`config`]: gateway.toml → validated [`config::Config`], errors as `file:line:col`.
//! - [`runtime`]: the immutable snapshot a request runs against, built from a `Config`.
//! - [`server`]: listeners, accept loop, TLS, connection limits, graceful shutdown.
//! - [`proxy`]: the request handler, route matching, header rewriting, upstream pool, upgrades,
//!   the built-in echo upstream.
//! - [`auth`]: credentials, JWT verification, key sets (static, JWKS, discovery), API keys, the
//!   verified-token cache, authorization rules, refusal diagnostics.
//! - [`token_service`]: the gateway's own issuer: login, refresh with rotation, client
//!   credentials, revocation, published keys and metadata.
//! - [`sign_in`]: browser sign-in (OIDC authorization code with PKCE), server-side sessions,
//!   RP-initiated and back-channel logout.
//! - [`identity`]: removing identity headers a client tried to send, and setting the caller's.
//! - [`error`]: the gateway's own errors and the one function that turns them into responses.
//! - [`limits`]: plans, rate limits and quotas per consumer, and the RateLimit headers.
//! - [`state`]: the store quotas persist through (a redb file in `[state] data_dir`), and the
//!   fleet's Redis.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics` and `/consumers/{id}` on the admin listener.

pub mod access_log;
pub mod admin;
pub mod api_keys;
pub mod assertion;
pub mod auth;
pub mod calendar;
pub mod clock;
pub mod config;
pub mod diagnostic;
pub mod error;
pub mod fingerprint;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod key_material;
pub mod limits;
pub mod metering;
pub mod metrics;
pub mod outbound;
pub mod passwords;
pub mod proxy;
pub mod runtime;
pub mod server;
pub mod sign_in;
pub mod state;
pub mod strict_json;
pub mod token_service;
pub mod users;

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
