//! `[upstreams.NAME]`: where requests go (targets, tried in turn), how long they may take,
//! which CA vouches for https targets, validated into [`UpstreamSettings`].

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
        })
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
