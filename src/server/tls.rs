//! TLS for the HTTPS listener: TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`, and the
//! certificate chosen by SNI among the configured ones by each certificate's own DNS names.
//!
//! Lookup order: an exact name, then a wildcard one level up (`*.example.com` serves
//! `a.example.com`, never `example.com` or `a.b.example.com`, as RFC 6125 §6.4.3 has it), then
//! the first configured certificate as the default. The certificate set sits behind an
//! [`ArcSwap`] so a reload changes what new handshakes get without touching live connections.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::config::{Certificate, TlsVersion};

/// Certificates indexed by the names they serve.
#[derive(Debug, Default)]
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl CertStore {
    /// Indexes `certificates`; when two claim the same name, the earlier one keeps it.
    pub fn new(certificates: &[Certificate]) -> Self {
        let mut store = CertStore {
            default: certificates.first().map(|c| c.key.clone()),
            ..CertStore::default()
        };
        for certificate in certificates {
            for name in &certificate.names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut store.wildcard, parent),
                    None => (&mut store.exact, name.as_str()),
                };
                map.entry(key.to_string())
                    .or_insert_with(|| certificate.key.clone());
            }
        }
        store
    }

    /// The certificate for a handshake that asked for `server_name` (None = no SNI).
    pub fn pick(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let by_name = server_name.and_then(|name| {
            let name = name.to_ascii_lowercase();
            self.exact.get(&name).cloned().or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent).cloned()
            })
        });
        by_name.or_else(|| self.default.clone())
    }
}

/// rustls's view of the current [`CertStore`].
#[derive(Debug, Default)]
pub struct SniResolver {
    store: ArcSwap<CertStore>,
}

impl SniResolver {
    /// A resolver serving `certificates`.
    pub fn new(certificates: &[Certificate]) -> Self {
        SniResolver {
            store: ArcSwap::from_pointee(CertStore::new(certificates)),
        }
    }

    /// Replaces the certificates new handshakes are offered.
    pub fn replace(&self, certificates: &[Certificate]) {
        self.store.store(Arc::new(CertStore::new(certificates)));
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.store.load().pick(hello.server_name())
    }
}

/// Sessions the server remembers for clients that resume by id (TLS 1.2 without tickets).
/// rustls's default of 256 (two entries per TLS 1.3 connection) loses a client's session after
/// about 128 others; an entry is a few hundred bytes.
const SESSION_CACHE_ENTRIES: usize = 20_000;

/// The rustls server configuration for the HTTPS listener. Cipher suites and key-exchange
/// groups are aws-lc-rs's defaults (Mozilla "intermediate" exactly on TLS 1.2, every TLS 1.3
/// suite); `min_version` 1.3 drops TLS 1.2 ("modern"). Resumption is by stateless tickets,
/// whose keys rustls's ticketer rotates (a new key every 6 hours, the previous one still
/// accepted), so any number of clients resume without server memory.
pub fn server_config(
    resolver: Arc<SniResolver>,
    min_version: TlsVersion,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = match min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    Ok(Arc::new(config))
}
