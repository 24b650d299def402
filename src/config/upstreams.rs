//! `[upstreams.NAME]`: where requests go (targets, tried in turn), how long they may take,
//! which CA vouches for https targets, the connection pool's limits and the protocol spoken,
//! validated into [`UpstreamSettings`].

use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::Uri;
use rustls_pki_types::CertificateDer;

use super::credentials::UpstreamCredential;
use super::raw::{self, Text};
use super::Validator;

/// One upstream: where requests go and how long they may take.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSettings {
    /// The name routes use.
    pub name: String,
    /// Targets, tried in round robin.
    pub targets: Vec<Target>,
    /// Time allowed to open a connection to a target.
    pub connect_timeout: Duration,
    /// Time allowed for the upstream to answer with a response head.
    pub timeout: Duration,
    /// A target that refused a connection is skipped for this long.
    pub eject_for: Duration,
    /// Send the client's Host to the upstream (true) or the target's own authority (false).
    pub preserve_host: bool,
    /// Extra trust anchors for https targets, beyond the system's.
    pub ca: Vec<CertificateDer<'static>>,
    /// The upstream's own credential, set in place of the client's.
    pub credential: Option<UpstreamCredential>,
    /// The connection pool's limits, per target.
    pub pool: PoolLimits,
    /// The protocol spoken to the targets.
    pub protocol: UpstreamProtocol,
}

/// How many connections a target gets, and how many requests may wait for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Connections open at once (HTTP/1.1: one request each); more requests wait.
    pub max_connections: usize,
    /// Requests waiting for a connection; beyond it, 503 `upstream_overloaded`.
    pub max_pending: usize,
    /// Idle connections kept for reuse.
    pub max_idle: usize,
    /// An idle connection unused this long is closed rather than reused.
    pub idle_timeout: Duration,
}

impl Default for PoolLimits {
    /// Enough for a busy service behind one target, and far fewer connections than clients: an
    /// upstream answering in 1 ms serves 256,000 req/s through 256 connections, and the 1,025th
    /// request waiting in line is better answered 503 at once than after the timeout.
    fn default() -> Self {
        PoolLimits {
            max_connections: 256,
            max_pending: 1024,
            max_idle: 64,
            idle_timeout: Duration::from_secs(90),
        }
    }
}

/// `protocol`: what the gateway speaks to the targets. HTTP/1.1 unless configured, as for
/// Envoy and nginx: an upstream that starts answering HTTP/2 by ALPN after a redeploy must not
/// change how the gateway talks to it (WebSocket upgrades need HTTP/1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (the default, and what `auto` means for http:// targets).
    #[default]
    Http1,
    /// HTTP/2 by prior knowledge over plain TCP (gRPC servers without TLS).
    H2c,
    /// HTTP/2 over TLS, required by ALPN (https:// targets only).
    H2,
    /// HTTP/2 when the target's TLS handshake offers it by ALPN, else HTTP/1.1.
    Auto,
}

/// One upstream target: `http://host:port` or `https://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Host and port.
    pub authority: Authority,
}

impl Validator<'_> {
    pub(super) fn upstream(
        &mut self,
        name: &str,
        raw: &toml::Spanned<raw::RawUpstream>,
    ) -> Option<UpstreamSettings> {
        let upstream = raw.get_ref();
        if name == super::NO_UPSTREAM {
            self.error(
                raw.span(),
                format!("`{name}` is reserved: a route's `upstream = \"{name}\"` means it only answers forward-auth"),
            );
            return None;
        }
        if upstream.targets.is_empty() {
            self.error(raw.span(), format!("upstream `{name}` has no targets"));
            return None;
        }
        let targets: Vec<Target> = upstream
            .targets
            .iter()
            .filter_map(|t| self.target(t))
            .collect();
        let ca = match &upstream.ca {
            None => Vec::new(),
            Some(text) => self.ca_file(text)?,
        };
        let credential = match &upstream.credentials {
            None => None,
            Some(raw) => Some(self.upstream_credential(name, raw)?),
        };
        let pool = self.pool_limits(upstream);
        let protocol = self.protocol(upstream, &targets);
        (targets.len() == upstream.targets.len()).then(|| UpstreamSettings {
            name: name.to_string(),
            targets,
            connect_timeout: self
                .duration(upstream.connect_timeout.as_ref(), Duration::from_secs(2)),
            timeout: self.duration(upstream.timeout.as_ref(), Duration::from_secs(30)),
            eject_for: self.duration(upstream.eject_for.as_ref(), Duration::from_secs(10)),
            preserve_host: upstream.preserve_host.unwrap_or(true),
            ca,
            credential,
            pool,
            protocol,
        })
    }

    fn pool_limits(&mut self, upstream: &raw::RawUpstream) -> PoolLimits {
        let defaults = PoolLimits::default();
        let max_connections = self.positive(
            upstream.max_connections.as_ref(),
            defaults.max_connections,
            "max_connections",
        );
        PoolLimits {
            max_connections,
            max_pending: self.count(
                upstream.max_pending.as_ref(),
                defaults.max_pending,
                "max_pending",
            ),
            max_idle: self
                .count(upstream.max_idle.as_ref(), defaults.max_idle, "max_idle")
                .min(max_connections),
            idle_timeout: self.duration(upstream.idle_timeout.as_ref(), defaults.idle_timeout),
        }
    }

    fn protocol(&mut self, upstream: &raw::RawUpstream, targets: &[Target]) -> UpstreamProtocol {
        let Some(text) = &upstream.protocol else {
            return UpstreamProtocol::default();
        };
        let protocol = match self.text(text).as_deref() {
            Some("http1") => UpstreamProtocol::Http1,
            Some("h2c") => UpstreamProtocol::H2c,
            Some("h2") => UpstreamProtocol::H2,
            Some("auto") => UpstreamProtocol::Auto,
            Some(other) => {
                self.error(
                    text.span(),
                    format!("protocol `{other}` is not \"http1\", \"h2c\", \"h2\" or \"auto\""),
                );
                return UpstreamProtocol::default();
            }
            None => return UpstreamProtocol::default(),
        };
        let wants = match protocol {
            UpstreamProtocol::H2c => Some((
                Scheme::HTTP,
                "`h2c` is HTTP/2 without TLS: its targets are http://",
            )),
            UpstreamProtocol::H2 => Some((
                Scheme::HTTPS,
                "`h2` is HTTP/2 over TLS: its targets are https:// (`h2c` for http://)",
            )),
            _ => None,
        };
        if let Some((scheme, message)) = wants {
            if targets.iter().any(|target| target.scheme != scheme) {
                self.error(text.span(), message.to_string());
            }
        }
        protocol
    }

    pub(super) fn target(&mut self, text: &Text) -> Option<Target> {
        let value = self.text(text)?;
        match parse_target(&value) {
            Ok(target) => Some(target),
            Err(message) => {
                self.error(text.span(), message);
                None
            }
        }
    }
}

/// Parses `http://host:port` or `https://host:port` (a trailing `/` is allowed, nothing more).
pub fn parse_target(value: &str) -> Result<Target, String> {
    let uri: Uri = value
        .parse()
        .map_err(|_| format!("`{value}` is not a URL"))?;
    let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
    if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
        return Err(format!(
            "`{value}`: upstream targets use http:// or https://"
        ));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("`{value}` has no host"))?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "`{value}`: a target is scheme://host:port, without a path"
        ));
    }
    Ok(Target { scheme, authority })
}
