//! The HTTPS listener: certificates chosen by SNI, the default certificate, ALPN for HTTP/2 and
//! HTTP/1.1, TLS 1.2 and 1.3, and the handshake timeout.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use support::certs::{server_name, Leaf, TestCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct TlsSetup {
    ca: TestCa,
    default_leaf: Leaf,
    wildcard_leaf: Leaf,
    gateway: support::TestGateway,
}

async fn tls_gateway() -> TlsSetup {
    tls_gateway_with("").await
}

/// [`tls_gateway`] with `tls` lines in the `[tls]` table.
async fn tls_gateway_with(tls: &str) -> TlsSetup {
    support::install_crypto();
    let ca = TestCa::new();
    // The first certificate is the default: it also covers 127.0.0.1, the name a client uses
    // when it sends no SNI.
    let default_leaf = ca.issue(&["a.test", "127.0.0.1"]);
    let wildcard_leaf = ca.issue(&["*.b.test"]);
    let dir = tempfile::tempdir().unwrap();
    support::write_file(dir.path(), "a.pem", &default_leaf.cert_pem);
    support::write_file(dir.path(), "a-key.pem", &default_leaf.key_pem);
    support::write_file(dir.path(), "b.pem", &wildcard_leaf.cert_pem);
    support::write_file(dir.path(), "b-key.pem", &wildcard_leaf.key_pem);
    let config = format!(
        r#"
[server]
https = "127.0.0.1:0"
handshake_timeout = "300ms"

[tls]
{tls}

[[tls.certificates]]
cert = "a.pem"
key = "a-key.pem"

[[tls.certificates]]
cert = "b.pem"
key = "b-key.pem"

[[routes]]
id = "echo"
upstream = "builtin:echo"
public = true
"#
    );
    let gateway = support::start_gateway_in(dir, &config).await;
    TlsSetup {
        ca,
        default_leaf,
        wildcard_leaf,
        gateway,
    }
}

/// Handshakes as `name` (a DNS name sends SNI; an IP address sends none) with certificate
/// verification against the test CA; returns the presented certificate and negotiated ALPN.
async fn handshake(
    setup: &TlsSetup,
    name: &str,
    alpn: &[&[u8]],
) -> Result<
    (
        CertificateDer<'static>,
        Option<Vec<u8>>,
        tokio_rustls::client::TlsStream<TcpStream>,
    ),
    std::io::Error,
> {
    let connector = TlsConnector::from(Arc::new(setup.ca.client_config(alpn)));
    let tcp = TcpStream::connect(setup.gateway.https.unwrap()).await?;
    let stream = connector.connect(server_name(name), tcp).await?;
    let (_, session) = stream.get_ref();
    let cert = session.peer_certificates().unwrap()[0].clone().into_owned();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    Ok((cert, alpn, stream))
}

#[tokio::test]
async fn sni_picks_the_certificate_by_its_names_and_the_first_is_the_default() {
    let setup = tls_gateway().await;
    let (cert, _, _) = handshake(&setup, "a.test", &[]).await.unwrap();
    assert_eq!(cert, setup.default_leaf.der);
    let (cert, _, _) = handshake(&setup, "shop.b.test", &[]).await.unwrap();
    assert_eq!(cert, setup.wildcard_leaf.der);
    let (cert, _, _) = handshake(&setup, "127.0.0.1", &[]).await.unwrap();
    assert_eq!(
        cert, setup.default_leaf.der,
        "no SNI: the default certificate"
    );
    // An unknown name gets the default certificate, which the client rightly rejects.
    let error = handshake(&setup, "unknown.test", &[]).await.unwrap_err();
    assert!(error.to_string().contains("certificate"), "{error}");
    // A wildcard covers one label only.
    assert!(handshake(&setup, "deep.shop.b.test", &[]).await.is_err());
}

#[tokio::test]
async fn alpn_offers_http2_and_http11_and_both_are_served() {
    let setup = tls_gateway().await;
    let (_, alpn, _) = handshake(&setup, "a.test", &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let (_, alpn, mut stream) = handshake(&setup, "a.test", &[b"http/1.1"]).await.unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    stream
        .write_all(b"GET /over-tls HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains(r#""x-forwarded-proto":"https""#),
        "{response}"
    );
    assert!(response.contains(r#""path":"/over-tls""#), "{response}");

    // HTTP/2 over TLS through a real client.
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(setup.ca.client_config(&[]))
        .https_only()
        .enable_http2()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build::<_, http_body_util::Full<bytes::Bytes>>(https);
    let port = setup.gateway.https.unwrap().port();
    let request = http::Request::get(format!("https://127.0.0.1:{port}/h2"))
        .body(Default::default())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
}

/// A client that speaks only `version` and trusts the test CA; each config is one client,
/// with its own session cache.
fn versioned_client(
    setup: &TlsSetup,
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(setup.ca.pem().as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Connects as `client`, sends one request and reads the answer (which is also when TLS 1.3
/// session tickets arrive); the handshake's kind.
async fn one_request(
    setup: &TlsSetup,
    client: &Arc<rustls::ClientConfig>,
) -> std::io::Result<rustls::HandshakeKind> {
    let tcp = TcpStream::connect(setup.gateway.https.unwrap()).await?;
    let mut stream = TlsConnector::from(client.clone())
        .connect(server_name("a.test"), tcp)
        .await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    Ok(stream.get_ref().1.handshake_kind().unwrap())
}

#[tokio::test]
async fn tls12_and_tls13_are_accepted() {
    let setup = tls_gateway().await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let tcp = TcpStream::connect(setup.gateway.https.unwrap())
            .await
            .unwrap();
        let stream = TlsConnector::from(versioned_client(&setup, version))
            .connect(server_name("a.test"), tcp)
            .await
            .unwrap();
        assert_eq!(stream.get_ref().1.protocol_version(), Some(version.version));
    }
}

#[tokio::test]
async fn min_version_1_3_refuses_tls12_handshakes() {
    let setup = tls_gateway_with("min_version = \"1.3\"").await;
    let tls13 = versioned_client(&setup, &rustls::version::TLS13);
    assert_eq!(
        one_request(&setup, &tls13).await.unwrap(),
        rustls::HandshakeKind::Full
    );
    let tls12 = versioned_client(&setup, &rustls::version::TLS12);
    assert!(one_request(&setup, &tls12).await.is_err());
}

/// A session resumes however many other clients came in between: stateless tickets, not a
/// server cache of 256 entries (about 128 TLS 1.3 clients) as rustls has by default.
#[tokio::test]
async fn a_session_resumes_after_hundreds_of_other_clients() {
    let setup = tls_gateway().await;
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let first = versioned_client(&setup, version);
        assert_eq!(
            one_request(&setup, &first).await.unwrap(),
            rustls::HandshakeKind::Full
        );
        for _ in 0..300 {
            one_request(&setup, &versioned_client(&setup, version))
                .await
                .unwrap();
        }
        let again = one_request(&setup, &first).await.unwrap();
        assert_eq!(again, rustls::HandshakeKind::Resumed, "{version:?}");
    }
}

#[tokio::test]
async fn a_stalled_handshake_is_dropped_after_the_timeout() {
    let setup = tls_gateway().await;
    let address: SocketAddr = setup.gateway.https.unwrap();
    let mut stream = TcpStream::connect(address).await.unwrap();
    // Send nothing: the gateway must hang up by itself (timeout 300ms).
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buffer)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "connection still open: {read:?}"
    );
}
