//! Requests a backend could read differently from the gateway, sent as raw bytes to a real
//! gateway in front of an upstream that records the exact bytes it receives: each is refused
//! (or made unambiguous) before it is routed, so the upstream never sees a request the gateway
//! did not judge.
#![allow(clippy::unwrap_used)]

mod support;

use support::raw_upstream::{self, RawUpstream};
use support::{raw_request, start_gateway, TestGateway};

/// A public catch-all route and a protected `/protected` route (API keys), both to `up`.
async fn gateway(up: &RawUpstream, server: &str) -> TestGateway {
    let config = format!(
        r#"[server]
http = "127.0.0.1:0"
{server}

[api_keys]
[[api_keys.keys]]
id = "k"
hash = "sha256:{hash}"
subject = "svc"

[[routes]]
id = "public"
upstream = "{url}"
public = true

[[routes]]
id = "protected"
path = "/protected"
upstream = "{url}"
"#,
        hash = "ab".repeat(32),
        url = up.url(),
    );
    start_gateway(&config).await
}

/// An HTTP/2 client (prior knowledge) connected to the gateway.
async fn h2_client(gateway: &TestGateway) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(gateway.http.unwrap())
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    client.ready().await.unwrap()
}

/// Sends `request` (its authority becomes `:authority`) and waits for the status.
async fn h2_send(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    request: http::Request<()>,
) -> u16 {
    let (response, _) = client.send_request(request, true).unwrap();
    let response = tokio::time::timeout(std::time::Duration::from_secs(5), response)
        .await
        .unwrap()
        .unwrap();
    response.status().as_u16()
}

/// Sends a GET for `uri` (its authority becomes `:authority`) and waits for the status.
async fn h2_status(client: &mut h2::client::SendRequest<bytes::Bytes>, uri: &str) -> u16 {
    h2_send(client, http::Request::get(uri).body(()).unwrap()).await
}

fn status(response: &str) -> &str {
    response.get(9..12).unwrap_or(response)
}

#[tokio::test]
async fn a_host_that_is_not_one_bare_host_is_refused_before_routing() {
    let up = raw_upstream::start().await;
    let gateway = gateway(&up, "").await;
    let addr = gateway.http.unwrap();
    for request in [
        "GET /x HTTP/1.1\r\nHost: public.example, internal.example\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: internal.example/x\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: user@internal.example\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: \r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
        "GET /x HTTP/1.1\r\n\r\n",
        "GET /x HTTP/1.0\r\n\r\n",
        "GET http://user@internal.example/x HTTP/1.1\r\nHost: internal.example\r\n\r\n",
        "GET http://internal.example/x HTTP/1.1\r\nHost: public.example\r\n\r\n",
    ] {
        let response = raw_request(addr, request.as_bytes()).await;
        assert_eq!(status(&response), "400", "{request:?} → {response}");
        assert!(
            response.contains("\"error\":\"invalid_request\""),
            "{response}"
        );
    }
    assert_eq!(up.received(), "", "a refused request reached the upstream");

    // A bare host, with or without a port, passes and is forwarded as sent.
    let response = raw_request(
        addr,
        b"GET /x HTTP/1.1\r\nHost: Internal.example:8080\r\n\r\n",
    )
    .await;
    assert_eq!(status(&response), "200", "{response}");
    let received = up.wait_for("\r\n\r\n").await;
    assert!(
        received.starts_with("GET /x HTTP/1.1\r\n")
            && received.contains("\r\nhost: Internal.example:8080\r\n"),
        "{received}"
    );
}

#[tokio::test]
async fn userinfo_in_an_http2_authority_is_refused() {
    let up = raw_upstream::start().await;
    let gateway = gateway(&up, "").await;
    let mut client = h2_client(&gateway).await;
    assert_eq!(
        h2_status(&mut client, "http://x@internal.example/x").await,
        400
    );
    assert_eq!(up.received(), "", "a refused request reached the upstream");
    assert_eq!(
        h2_status(&mut client, "http://internal.example/x").await,
        200
    );
    let received = up.wait_for("\r\n\r\n").await;
    assert!(
        received.contains("\r\nhost: internal.example\r\n"),
        "{received}"
    );
}

#[tokio::test]
async fn an_h2c_upgrade_is_declined_so_no_tunnel_carries_unjudged_requests() {
    let up = raw_upstream::start().await;
    let gateway = gateway(&up, "").await;
    let mut stream = tokio::net::TcpStream::connect(gateway.http.unwrap())
        .await
        .unwrap();
    // The upgrade request, then (as soon as a tunnel would be open) a request for the
    // protected route without a credential.
    let upgrade = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    tokio::io::AsyncWriteExt::write_all(&mut stream, upgrade)
        .await
        .unwrap();
    let first = support::read_response(&mut stream).await;
    assert_eq!(status(&first), "200", "{first}");
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        b"GET /protected/x HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await
    .unwrap();
    let second = support::read_response(&mut stream).await;
    assert_eq!(status(&second), "401", "{second}");

    let received = up.received();
    assert!(received.starts_with("GET / HTTP/1.1\r\n"), "{received}");
    let lower = received.to_ascii_lowercase();
    assert!(
        !lower.contains("upgrade") && !lower.contains("http2-settings"),
        "the upgrade reached the upstream:\n{received}"
    );
    assert!(!received.contains("/protected"), "{received}");
}

/// Sends an upgrade request for `path` offering `protocol`; the status, and what the upstream
/// received for it.
async fn upgrade(
    gateway: &TestGateway,
    up: &RawUpstream,
    path: &str,
    protocol: &str,
) -> (String, String) {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: {protocol}\r\n\r\n"
    );
    let response = raw_request(gateway.http.unwrap(), request.as_bytes()).await;
    let received = up.wait_for(&format!("GET {path} ")).await;
    (status(&response).to_string(), received)
}

#[tokio::test]
async fn an_upgrade_to_a_protocol_not_configured_is_declined() {
    let up = raw_upstream::start().await;
    // The default: websocket only.
    let gateway = gateway(&up, "").await;
    let (status, received) = upgrade(&gateway, &up, "/irc", "irc/6.9").await;
    assert_eq!(status, "200");
    assert!(
        !received.to_ascii_lowercase().contains("upgrade"),
        "{received}"
    );

    // An allowed one passes, and its 101 reaches the client.
    let (status, received) = upgrade(&gateway, &up, "/ws", "websocket").await;
    assert_eq!(status, "101");
    assert!(
        received.contains("\r\nupgrade: websocket\r\n"),
        "{received}"
    );

    // `upgrades = []` allows none.
    let up = raw_upstream::start().await;
    let gateway = self::gateway(&up, "upgrades = []").await;
    let (status, received) = upgrade(&gateway, &up, "/ws", "websocket").await;
    assert_eq!(status, "200");
    assert!(
        !received.to_ascii_lowercase().contains("upgrade"),
        "{received}"
    );
}

#[tokio::test]
async fn repeated_slashes_are_merged_before_routing_and_forwarded_merged() {
    let up = raw_upstream::start().await;
    let gateway = gateway(&up, "").await;
    let addr = gateway.http.unwrap();
    let response = raw_request(addr, b"GET //protected/x HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(status(&response), "401", "{response}");
    let response = raw_request(
        addr,
        b"GET /a//protected/../b///c?q=//x HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await;
    assert_eq!(status(&response), "200", "{response}");
    let received = up.wait_for("\r\n\r\n").await;
    assert!(
        received.starts_with("GET /a/b/c?q=//x HTTP/1.1\r\n"),
        "{received}"
    );
    assert!(!received.contains("protected"), "{received}");
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_501() {
    let up = raw_upstream::start().await;
    let gateway = gateway(&up, "").await;
    let response = raw_request(
        gateway.http.unwrap(),
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status(&response), "501", "{response}");
    assert!(
        response.contains("\"error\":\"not_implemented\""),
        "{response}"
    );
    assert_eq!(up.received(), "", "the request reached the upstream");
}

#[test]
fn check_refuses_h2c_and_non_tokens_in_upgrades() {
    let (code, stderr) = support::check_config(
        "[server]\nhttp = \"127.0.0.1:0\"\nupgrades = [\"websocket\", \"h2c\", \"a b\"]\n",
    );
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines[0].starts_with("gateway.toml:3:26: `h2c` upgrades are never passed"),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("gateway.toml:3:33: `a b` is not a protocol name"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_400_not_an_upstream_error() {
    let up = raw_upstream::start().await;
    let config = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[routes]]\nid = \"chunked-body\"\nupstream = \"{}\"\npublic = true\n",
        up.url()
    );
    let gateway = start_gateway(&config).await;
    for (what, body) in [
        ("bad size", "zz\r\nhello\r\n0\r\n\r\n"),
        ("overflow", "fffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
        ("bare LF", "5\nhello\n0\n\n"),
    ] {
        let request =
            format!("POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        let response = raw_request(gateway.http.unwrap(), request.as_bytes()).await;
        assert_eq!(status(&response), "400", "{what}: {response}");
        assert!(
            response.contains("\"error\":\"invalid_request\""),
            "{what}: {response}"
        );
    }
    let metrics = support::get(&format!("http://{}/metrics", gateway.admin.unwrap())).await;
    let page = String::from_utf8_lossy(&metrics.body);
    assert!(
        !page
            .lines()
            .any(|l| l.starts_with("authgate_upstream_errors_total") && l.contains("chunked-body")),
        "a client's broken body was counted against the upstream:\n{page}"
    );
    assert!(
        page.lines()
            .any(|l| l.starts_with("authgate_requests_total")
                && l.contains("route=\"chunked-body\"")
                && l.contains("status=\"400\"")),
        "{page}"
    );
}

#[tokio::test]
async fn http2_cookie_crumbs_reach_an_http1_upstream_as_one_field() {
    let up = raw_upstream::start().await;
    let gateway = gateway(&up, "").await;
    let mut client = h2_client(&gateway).await;
    let request = http::Request::get("http://t/cookies")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("cookie", "c=3")
        .body(())
        .unwrap();
    assert_eq!(h2_send(&mut client, request).await, 200);
    let received = up.wait_for("\r\n\r\n").await;
    let cookies: Vec<&str> = received
        .split("\r\n")
        .filter(|line| line.to_ascii_lowercase().starts_with("cookie:"))
        .collect();
    assert_eq!(cookies, ["cookie: a=1; b=2; c=3"], "{received}");
}
