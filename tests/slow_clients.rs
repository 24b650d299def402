//! Slow clients cannot hold a connection slot: a connection that sends nothing, and a request
//! head trickled over HTTP/1.1 or HTTP/2 (a stream's HEADERS frame one byte at a time), are
//! closed after `header_timeout`, not `idle_timeout`. Raw bytes over real sockets; the bounds
//! are generous (the timeout is 1 s, the idle timeout 60 s, closing must come within 5 s) so
//! that a loaded machine does not make them flaky.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use support::start_gateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONFIG: &str = "[server]\nhttp = \"127.0.0.1:0\"\nheader_timeout = \"1s\"\nidle_timeout = \"60s\"\n\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\npublic = true\n";

/// Closing must come within this, far below `idle_timeout`.
const BOUND: Duration = Duration::from_secs(5);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut bytes = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// A HEADERS frame (END_HEADERS | END_STREAM) for `GET /` on `stream`, HPACK without the
/// dynamic table: `:method GET`, `:scheme http`, `:path /` from the static table, then
/// `:authority t` and `x-pad` literals.
fn get_headers(stream: u32, pad: usize) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x84, 0x01, 0x01, b't'];
    block.extend_from_slice(&[0x00, 0x05]);
    block.extend_from_slice(b"x-pad");
    block.push(u8::try_from(pad).unwrap());
    block.extend(std::iter::repeat_n(b'a', pad));
    frame(0x1, 0x5, stream, &block)
}

/// Reads until the peer closes (the time it took), or `BOUND` passes (`None`).
async fn closed_within_bound(stream: &mut TcpStream, started: Instant) -> Option<Duration> {
    let mut buffer = [0u8; 4096];
    loop {
        let left = BOUND.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends `bytes` one at a time, 200 ms apart, until the gateway closes the connection (the
/// time it took), or `BOUND` passes or the bytes run out (`None`).
async fn trickle_until_closed(stream: &mut TcpStream, bytes: &[u8]) -> Option<Duration> {
    send_until_closed(stream, bytes.iter().map(|b| vec![*b])).await
}

/// Sends each of `pieces`, 200 ms apart, until the gateway closes the connection (the time it
/// took), or `BOUND` passes or the pieces run out (`None`).
async fn send_until_closed(
    stream: &mut TcpStream,
    pieces: impl Iterator<Item = Vec<u8>>,
) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    for piece in pieces {
        if started.elapsed() > BOUND {
            return None;
        }
        if stream.write_all(&piece).await.is_err() {
            return Some(started.elapsed());
        }
        let pause = Instant::now();
        while let Some(left) = Duration::from_millis(200).checked_sub(pause.elapsed()) {
            match tokio::time::timeout(left, stream.read(&mut buffer)).await {
                Err(_) => break,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
                // Frames the gateway sends meanwhile (SETTINGS, PING acks, its answers).
                Ok(Ok(_)) => {}
            }
        }
    }
    None
}

/// Asserts that the connection was closed within `BOUND` (else fails with `what`), and not
/// before the 1 s header timeout could have passed.
fn closed_in_time(took: Option<Duration>, what: &str) {
    let took = took.unwrap_or_else(|| panic!("{what}"));
    assert!(
        took >= Duration::from_millis(800),
        "closed too early: {took:?}"
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let gateway = start_gateway(CONFIG).await;
    let mut stream = TcpStream::connect(gateway.http.unwrap()).await.unwrap();
    let started = Instant::now();
    let took = closed_within_bound(&mut stream, started).await;
    closed_in_time(
        took,
        "a silent connection held its slot past 5 s (idle_timeout is 60 s)",
    );
}

#[tokio::test]
async fn an_http2_connection_that_sends_no_request_is_closed_after_the_header_timeout() {
    let gateway = start_gateway(CONFIG).await;
    let mut stream = TcpStream::connect(gateway.http.unwrap()).await.unwrap();
    let started = Instant::now();
    let mut opening = PREFACE.to_vec();
    opening.extend(frame(0x4, 0, 0, &[]));
    stream.write_all(&opening).await.unwrap();
    // PINGs keep bytes moving, but are no request.
    let pings = std::iter::repeat_with(|| frame(0x6, 0, 0, &[0; 8])).take(40);
    let closed = send_until_closed(&mut stream, pings)
        .await
        .map(|_| started.elapsed());
    closed_in_time(
        closed,
        "an HTTP/2 connection without a request held its slot past 5 s",
    );
}

#[tokio::test]
async fn an_http2_stream_whose_headers_trickle_is_closed_after_the_header_timeout() {
    let gateway = start_gateway(CONFIG).await;
    let mut stream = TcpStream::connect(gateway.http.unwrap()).await.unwrap();
    let mut opening = PREFACE.to_vec();
    opening.extend(frame(0x4, 0, 0, &[]));
    opening.extend(get_headers(1, 0));
    stream.write_all(&opening).await.unwrap();
    // The first request is answered: a HEADERS frame (type 1) for stream 1 comes back.
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + BOUND;
    while !answered(&received) {
        assert!(
            Instant::now() < deadline,
            "the first request was not answered"
        );
        let n = tokio::time::timeout(BOUND, stream.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before answering");
        received.extend_from_slice(&buffer[..n]);
    }
    // The next stream's HEADERS, at one byte per 200 ms, would take 16 s to complete.
    let took = trickle_until_closed(&mut stream, &get_headers(3, 60)).await;
    closed_in_time(
        took,
        "a trickled HEADERS frame held the connection past 5 s",
    );
}

/// Whether the server's frames in `bytes` include a HEADERS frame for stream 1.
fn answered(bytes: &[u8]) -> bool {
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = usize::from(bytes[at]) << 16
            | usize::from(bytes[at + 1]) << 8
            | usize::from(bytes[at + 2]);
        if bytes[at + 3] == 0x1 && bytes[at + 5..at + 9] == 1u32.to_be_bytes() {
            return true;
        }
        at += 9 + len;
    }
    false
}

#[tokio::test]
async fn an_idle_http2_connection_between_requests_is_not_cut_by_the_header_timeout() {
    let config = CONFIG.replace("header_timeout = \"1s\"", "header_timeout = \"300ms\"");
    let gateway = start_gateway(&config).await;
    let tcp = TcpStream::connect(gateway.http.unwrap()).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    for _ in 0..2 {
        let request = http::Request::get("http://t/").body(()).unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        let response = tokio::time::timeout(BOUND, response)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), 200);
        // Well past the header timeout, with no stream open.
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    assert!(!connection.is_finished(), "the idle connection was closed");
}

#[tokio::test]
async fn a_slow_http1_first_request_head_is_closed_after_the_header_timeout() {
    let gateway = start_gateway(CONFIG).await;
    let mut stream = TcpStream::connect(gateway.http.unwrap()).await.unwrap();
    let head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let took = trickle_until_closed(&mut stream, head).await;
    closed_in_time(
        took,
        "a trickled first request head held the connection past 5 s",
    );
}

#[tokio::test]
async fn a_tls_connection_that_sends_nothing_after_its_handshake_is_closed_after_the_header_timeout(
) {
    support::install_crypto();
    let ca = support::certs::TestCa::new();
    let leaf = ca.issue(&["a.test"]);
    let dir = tempfile::tempdir().unwrap();
    support::write_file(dir.path(), "a.pem", &leaf.cert_pem);
    support::write_file(dir.path(), "a-key.pem", &leaf.key_pem);
    let config = "[server]\nhttps = \"127.0.0.1:0\"\nheader_timeout = \"1s\"\nidle_timeout = \"60s\"\n\n[[tls.certificates]]\ncert = \"a.pem\"\nkey = \"a-key.pem\"\n\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\npublic = true\n";
    let gateway = support::start_gateway_in(dir, config).await;
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let connector =
            tokio_rustls::TlsConnector::from(std::sync::Arc::new(ca.client_config(&[alpn])));
        let tcp = TcpStream::connect(gateway.https.unwrap()).await.unwrap();
        let mut tls = connector
            .connect(support::certs::server_name("a.test"), tcp)
            .await
            .unwrap();
        let started = Instant::now();
        let mut buffer = [0u8; 4096];
        let closed = loop {
            let left = BOUND.checked_sub(started.elapsed());
            let Some(left) = left else { break None };
            match tokio::time::timeout(left, tls.read(&mut buffer)).await {
                Err(_) => break None,
                Ok(Ok(0)) | Ok(Err(_)) => break Some(started.elapsed()),
                // The server's own frames (HTTP/2 SETTINGS).
                Ok(Ok(_)) => {}
            }
        };
        closed_in_time(
            closed,
            &format!(
                "a silent TLS connection ({}) held its slot past 5 s",
                String::from_utf8_lossy(alpn)
            ),
        );
    }
}
