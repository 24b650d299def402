//! The limits that protect the gateway from its clients: body size (413), header size (431),
//! the header read timeout (slow loris), the idle timeout, and the connection cap.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;
use support::{send, start_gateway, upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the peer closes (Ok(bytes read)) or `limit` passes (Err).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Result<Vec<u8>, ()> {
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return Err(()),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(received),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

#[tokio::test]
async fn bodies_over_max_body_get_413_whether_declared_or_streamed() {
    let up = upstream::start("up").await;
    let config = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\nmax_body = \"1KiB\"\n\n[[routes]]\nid = \"r\"\nupstream = \"{}\"\npublic = true\n",
        up.url()
    );
    let gateway = start_gateway(&config).await;
    let client = support::http1_client();

    let small = Request::post(gateway.url("/"))
        .body(Full::new(Bytes::from(vec![b'a'; 1024])))
        .unwrap();
    let reply = send(&client, small).await;
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.json()["body_bytes"], 1024);

    let declared = Request::post(gateway.url("/"))
        .body(Full::new(Bytes::from(vec![b'a'; 1025])))
        .unwrap();
    let reply = send(&client, declared).await;
    assert_eq!(reply.status(), 413);
    assert_eq!(reply.json()["error"], "request_too_large");
    let requests_before = up.requests.load(std::sync::atomic::Ordering::SeqCst);

    // Chunked, no length: cut off while streaming.
    let chunks = futures_util::stream::iter(
        (0..8)
            .map(|_| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'b'; 512])))),
    );
    let streamed = Request::post(gateway.url("/"))
        .body(StreamBody::new(chunks))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(streamed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 413);
    // The declared-too-large request never reached the upstream.
    assert_eq!(requests_before, 1);
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let config = "[server]\nhttp = \"127.0.0.1:0\"\nmax_header_size = \"16KiB\"\n\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\npublic = true\n";
    let gateway = start_gateway(config).await;
    let mut stream = TcpStream::connect(gateway.http.unwrap()).await.unwrap();
    let big = "x".repeat(32 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let response = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");

    // A normal request still works.
    assert_eq!(support::get(&gateway.url("/")).await.status(), 200);
}

#[tokio::test]
async fn a_slow_loris_connection_is_closed_by_the_header_timeout() {
    let config = "[server]\nhttp = \"127.0.0.1:0\"\nheader_timeout = \"500ms\"\n\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\npublic = true\n";
    let gateway = start_gateway(config).await;
    let mut stream = TcpStream::connect(gateway.http.unwrap()).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    // Trickle one header byte every 100 ms, never finishing the head.
    let mut closed = false;
    for _ in 0..40 {
        if stream.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut buffer = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            // hyper may answer 408 before closing.
            Ok(Ok(_)) => {}
            Err(_) => {}
        }
    }
    assert!(closed, "the connection survived 4 s of trickling");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400),
        "closed too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "closed too late: {elapsed:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let config = "[server]\nhttp = \"127.0.0.1:0\"\nidle_timeout = \"300ms\"\n\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\npublic = true\n";
    let gateway = start_gateway(config).await;
    let mut stream = TcpStream::connect(gateway.http.unwrap()).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    let rest = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(rest.is_ok(), "the idle connection stayed open");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "closed before it was idle: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_slow_upstream_does_not_count_as_an_idle_connection() {
    let up = upstream::start("slow").await;
    let config = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\nidle_timeout = \"200ms\"\n\n[[routes]]\nid = \"r\"\nupstream = \"{}\"\npublic = true\n",
        up.url()
    );
    let gateway = start_gateway(&config).await;
    let reply = support::get(&gateway.url("/slow/800")).await;
    assert_eq!(reply.status(), 200);
}

#[tokio::test]
async fn connections_beyond_max_connections_wait_for_a_free_slot() {
    let config = "[server]\nhttp = \"127.0.0.1:0\"\nmax_connections = 1\n\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\npublic = true\n";
    let gateway = start_gateway(config).await;
    let address = gateway.http.unwrap();
    let mut first = TcpStream::connect(address).await.unwrap();
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), first.read(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));

    // The first connection stays open (keep-alive): the second is not served...
    let mut second = TcpStream::connect(address).await.unwrap();
    second
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let early = tokio::time::timeout(Duration::from_millis(400), second.read(&mut buffer)).await;
    assert!(early.is_err(), "served beyond max_connections");

    // ...until the first one closes.
    drop(first);
    let response = read_until_closed(&mut second, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_keep_alive_connection_waiting_for_its_next_request_is_not_cut_by_the_header_timeout() {
    let config = "[server]\nhttp = \"127.0.0.1:0\"\nheader_timeout = \"200ms\"\nidle_timeout = \"5s\"\n\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\npublic = true\n";
    let gateway = start_gateway(config).await;
    let mut stream = TcpStream::connect(gateway.http.unwrap()).await.unwrap();
    let mut buffer = [0u8; 4096];
    for _ in 0..2 {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));
        // Wait well past the header timeout before the next request.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
}

#[tokio::test]
async fn an_upgraded_tunnel_keeps_its_connection_slot() {
    let up = upstream::start("ws").await;
    let config = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\nmax_connections = 1\n\n[[routes]]\nid = \"r\"\nupstream = \"{}\"\npublic = true\n",
        up.url()
    );
    let gateway = start_gateway(&config).await;
    let address = gateway.http.unwrap();
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws"))
        .await
        .unwrap();

    // The tunnel holds the only slot: another connection waits.
    let mut second = TcpStream::connect(address).await.unwrap();
    second
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(400), second.read(&mut buffer)).await;
    assert!(
        early.is_err(),
        "an upgrade freed its slot: served beyond max_connections"
    );

    // Closing the tunnel frees it.
    socket.close(None).await.unwrap();
    drop(socket);
    let response = read_until_closed(&mut second, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200"));
}
