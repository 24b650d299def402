//! The upstream pool, seen from outside with real sockets: connections are reused, many
//! clients share few upstream connections, `max_connections` and `max_pending` hold (503
//! `upstream_overloaded` beyond them, a waiting request going on when a connection frees up),
//! an upstream that closes its connections costs no request, and a response body abandoned
//! half-way does not hand a broken connection to the next request.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::Ordering;

use http::Request;
use http_body_util::Full;
use support::{http1_client, send, start_gateway, upstream, TestGateway};

async fn gateway(upstream: &str, limits: &str) -> TestGateway {
    start_gateway(&format!(
        r#"[server]
http = "127.0.0.1:0"

[upstreams.app]
targets = ["{upstream}"]
timeout = "5s"
{limits}

[[routes]]
id = "app"
path = "/"
upstream = "app"
public = true
"#
    ))
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sequential_requests_reuse_one_upstream_connection() {
    let up = upstream::start("up").await;
    let gateway = gateway(&up.url(), "").await;
    // A new client connection each time: the gateway's pool, not the client, keeps it warm.
    for _ in 0..20 {
        support::get(&gateway.url("/")).await.assert_status(200);
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn many_clients_share_at_most_max_connections() {
    let up = upstream::start("up").await;
    let gateway = gateway(&up.url(), "max_connections = 4\nmax_pending = 1000").await;
    let url = gateway.url("/slow/20");
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { support::get(&url).await.status() })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    let connections = up.connections.load(Ordering::SeqCst);
    assert!(
        (1..=4).contains(&connections),
        "{connections} upstream connections"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_max_pending_the_answer_is_503_upstream_overloaded() {
    let up = upstream::start("up").await;
    let gateway = gateway(&up.url(), "max_connections = 1\nmax_pending = 1").await;
    let url = gateway.url("/slow/600");
    let busy = tokio::spawn({
        let url = url.clone();
        async move { support::get(&url).await.status() }
    });
    up.wait_for_requests(1).await;
    let waiting = tokio::spawn({
        let url = url.clone();
        async move { support::get(&url).await.status() }
    });
    // The waiting request is counted before the third one arrives.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let refused = support::get(&url).await;
    refused.assert_status(503);
    assert_eq!(refused.json()["error"], "upstream_overloaded");
    assert!(refused.header("retry-after").is_some());
    // The one that waited went on when the first connection came free.
    assert_eq!(busy.await.unwrap(), 200);
    assert_eq!(waiting.await.unwrap(), 200);
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_download_does_not_poison_the_next_request() {
    let up = upstream::start("up").await;
    let gateway = gateway(&up.url(), "max_connections = 1").await;
    // A client reads the head of a large download, then goes away.
    let mut stream = tokio::net::TcpStream::connect(gateway.http.unwrap())
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /download/10000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 4096];
    let read = stream.read(&mut buffer).await.unwrap();
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));
    drop(stream);
    // The next request gets a whole, correct answer (on a new connection).
    for _ in 0..3 {
        let reply = support::get(&gateway.url("/after")).await;
        reply.assert_status(200);
        assert_eq!(reply.json()["path"], "/after");
    }
}

/// An upstream that answers each request and closes the connection (`Connection: close`).
async fn closing_upstream() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let accepted = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        bytes::Bytes::from_static(b"once"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, connections)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_closes_its_connections_costs_no_request() {
    let (url, connections) = closing_upstream().await;
    let gateway = gateway(&url, "").await;
    let client = http1_client();
    for _ in 0..10 {
        let request = Request::get(gateway.url("/"))
            .body(Full::default())
            .unwrap();
        let reply = send(&client, request).await;
        reply.assert_status(200);
        assert_eq!(reply.text(), "once");
    }
    // Each closed connection was dropped, never offered to the next request.
    assert_eq!(connections.load(Ordering::SeqCst), 10);
}

/// A TLS upstream offering `h2` and `http/1.1` by ALPN, answering with the HTTP version the
/// request arrived in and a trailer.
async fn tls_upstream(ca: &support::certs::TestCa) -> String {
    use http_body_util::StreamBody;
    use rustls::pki_types::pem::PemObject;
    let leaf = ca.issue(&["localhost"]);
    let certs = vec![leaf.der.clone()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let version = format!("{:?}", request.version());
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("x-checksum", http::HeaderValue::from_static("abc"));
                        let frames = vec![
                            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(
                                bytes::Bytes::from(version),
                            )),
                            Ok(hyper::body::Frame::trailers(trailers)),
                        ];
                        Ok::<_, std::convert::Infallible>(http::Response::new(StreamBody::new(
                            futures_util::stream::iter(frames),
                        )))
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(io, service)
                    .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    format!("https://localhost:{port}")
}

#[tokio::test(flavor = "multi_thread")]
async fn https_targets_speak_http2_by_alpn_when_asked_and_trailers_come_back() {
    support::install_crypto();
    let ca = support::certs::TestCa::new();
    let url = tls_upstream(&ca).await;
    for (protocol, expected) in [
        ("h2", "HTTP/2.0"),
        ("auto", "HTTP/2.0"),
        ("http1", "HTTP/1.1"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        support::write_file(dir.path(), "ca.pem", ca.pem());
        let toml = format!(
            r#"[server]
http = "127.0.0.1:0"

[upstreams.app]
targets = ["{url}"]
ca = "ca.pem"
protocol = "{protocol}"

[[routes]]
id = "app"
path = "/"
upstream = "app"
public = true
"#
        );
        let gateway = support::start_gateway_in(dir, &toml).await;
        // An HTTP/2 client asking for trailers gets the upstream's.
        let client = support::http2_client();
        let request = Request::get(gateway.url("/"))
            .header("te", "trailers")
            .body(Full::default())
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200, "{protocol}");
        use http_body_util::BodyExt;
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        assert_eq!(collected.to_bytes(), expected, "{protocol}");
        if protocol != "http1" {
            assert_eq!(trailers.unwrap()["x-checksum"], "abc", "{protocol}");
        }
    }
}
