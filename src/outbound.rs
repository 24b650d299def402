//! The outbound connector for key fetching and the TLS configuration upstream pools share (TCP
//! with a connect timeout, then TLS through rustls on aws-lc-rs for `https://`, trusting the operating
//! system's roots plus any CA the configuration adds), and how its failures are described.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;

/// An HTTP-or-HTTPS connector.
pub fn connector(
    connect_timeout: Duration,
    extra_ca: &[CertificateDer<'static>],
) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(extra_ca))
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

/// The TLS client configuration for outbound connections: the system's roots plus `extra_ca`,
/// on aws-lc-rs, TLS 1.2 and 1.3.
pub fn tls_config(extra_ca: &[CertificateDer<'static>]) -> rustls::ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.extend(system_roots().roots.iter().cloned());
    for ca in extra_ca {
        // Config validation already proved each CA usable; one that is not makes TLS to that
        // destination fail closed.
        let _ = roots.add(ca.clone());
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
    .expect("the aws-lc-rs provider supports the default protocol versions")
}

/// The operating system's trust store, read once per process.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "could not read part of the system trust store");
        }
        roots.add_parsable_certificates(found.certs);
        roots
    })
}

/// The error with its causes, `a: b: c`, for logs.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        text.push_str(": ");
        text.push_str(&e.to_string());
        current = e.source();
    }
    text
}
