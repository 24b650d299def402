//! Forwarding through a real gateway to real upstreams: routing, header rewriting, protocol
//! translation, upgrades, and what the client sees when the upstream fails.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::Full;
use support::{get, send, start_gateway, upstream};
use tokio_tungstenite::tungstenite::Message;

fn server_block() -> &'static str {
    "[server]\nhttp = \"127.0.0.1:0\"\n"
}

#[tokio::test]
async fn the_most_specific_route_wins() {
    let (catch_all, orders, orders_post, api_host, wildcard) = tokio::join!(
        upstream::start("catch-all"),
        upstream::start("orders"),
        upstream::start("orders-post"),
        upstream::start("api-host"),
        upstream::start("wildcard"),
    );
    let config = format!(
        r#"{server}
[[routes]]
id = "catch-all"
upstream = "{catch_all}"
public = true

[[routes]]
id = "orders"
path = "/orders"
upstream = "{orders}"
public = true

[[routes]]
id = "orders-post"
path = "/orders/"
methods = ["post"]
upstream = "{orders_post}"
public = true

[[routes]]
id = "wildcard"
host = "*.example.com"
upstream = "{wildcard}"
public = true

[[routes]]
id = "api"
host = "api.example.com"
upstream = "{api_host}"
public = true
"#,
        server = server_block(),
        catch_all = catch_all.url(),
        orders = orders.url(),
        orders_post = orders_post.url(),
        api_host = api_host.url(),
        wildcard = wildcard.url(),
    );
    let gateway = start_gateway(&config).await;
    let client = support::http1_client();
    let cases = [
        ("GET", "other.test", "/", "catch-all"),
        ("GET", "other.test", "/orders", "orders"),
        ("GET", "other.test", "/orders/42?x=1", "orders"),
        ("POST", "other.test", "/orders/42", "orders-post"),
        ("GET", "other.test", "/ordersx", "catch-all"),
        ("GET", "shop.example.com", "/orders", "wildcard"),
        ("GET", "API.Example.com:8080", "/orders", "api-host"),
        ("GET", "example.com", "/", "catch-all"),
    ];
    for (method, host, path, expected) in cases {
        let request = Request::builder()
            .method(method)
            .uri(gateway.url(path))
            .header("host", host)
            .body(Full::default())
            .unwrap();
        let reply = send(&client, request).await;
        assert_eq!(reply.status(), 200, "{method} {host}{path}");
        assert_eq!(reply.json()["server"], expected, "{method} {host}{path}");
    }
}

#[tokio::test]
async fn no_matching_route_is_a_404_with_the_contract_body() {
    let config = format!(
        "{}\n[[routes]]\nid = \"only\"\npath = \"/only\"\nmethods = [\"GET\"]\nupstream = \"builtin:echo\"\npublic = true\n",
        server_block()
    );
    let gateway = start_gateway(&config).await;
    for path in ["/", "/onlyx", "/other/only"] {
        let reply = get(&gateway.url(path)).await;
        assert_eq!(reply.status(), 404, "{path}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let body = reply.json();
        assert_eq!(body["error"], "not_found");
        assert_eq!(body["request_id"], reply.header("x-request-id").unwrap());
        assert!(body["error_description"]
            .as_str()
            .unwrap()
            .contains("route"));
    }
    let delete = Request::delete(gateway.url("/only"))
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&support::http1_client(), delete).await.status(), 404);
}

#[tokio::test]
async fn dot_segments_cannot_escape_a_route() {
    let (public, private) = tokio::join!(upstream::start("public"), upstream::start("private"));
    let config = format!(
        "{}\n[[routes]]\nid = \"public\"\npath = \"/public\"\nupstream = \"{}\"\npublic = true\n\n[[routes]]\nid = \"private\"\npath = \"/private\"\nupstream = \"{}\"\npublic = true\n",
        server_block(),
        public.url(),
        private.url()
    );
    let gateway = start_gateway(&config).await;
    for path in [
        "/public/../private/x",
        "/public/%2e%2e/private/x",
        "/public/./../private/x",
    ] {
        let reply = get(&gateway.url(path)).await;
        assert_eq!(reply.json()["server"], "private", "{path}");
        assert_eq!(
            reply.json()["path"],
            "/private/x",
            "the upstream sees the path that was routed"
        );
    }
}

#[tokio::test]
async fn hop_by_hop_and_connection_named_headers_are_removed_both_ways() {
    let up = upstream::start("up").await;
    let config = support::public_route_config(&up.url());
    let gateway = start_gateway(&config).await;
    let request = Request::get(gateway.url("/hop"))
        .header("connection", "x-secret, x-other")
        .header("x-secret", "1")
        .header("x-other", "2")
        .header("keep-alive", "timeout=5")
        .header("te", "gzip, trailers")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("upgrade", "h2c")
        .header("x-kept", "3")
        .body(Full::default())
        .unwrap();
    let reply = send(&support::http1_client(), request).await;
    let seen = &reply.json()["headers"];
    for removed in [
        "x-secret",
        "x-other",
        "keep-alive",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(
            seen.get(removed).is_none(),
            "{removed} reached the upstream: {seen}"
        );
    }
    // Of `TE`, only `trailers` goes on: it says the client takes trailers (gRPC needs it).
    assert_eq!(seen["te"], "trailers");
    assert_eq!(seen["x-kept"], "3");
    // The upstream's own hop-by-hop headers do not reach the client.
    assert_eq!(reply.header("x-up-secret"), None);
    assert_eq!(reply.header("keep-alive"), None);
    assert_eq!(reply.header("x-up-kept"), Some("1"));
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_client_are_replaced() {
    let up = upstream::start("up").await;
    let config = support::public_route_config(&up.url());
    let gateway = start_gateway(&config).await;
    let request = Request::get(gateway.url("/"))
        .header("host", "shop.test")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "bank.test")
        .header("forwarded", "for=6.6.6.6")
        .header("x-request-id", "chosen-by-client")
        .body(Full::default())
        .unwrap();
    let reply = send(&support::http1_client(), request).await;
    let seen = &reply.json()["headers"];
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "shop.test");
    assert_eq!(
        seen["forwarded"],
        "for=127.0.0.1;proto=http;host=\"shop.test\""
    );
    assert_eq!(
        seen["host"], "shop.test",
        "the client's Host is preserved by default"
    );
    let id = reply.header("x-request-id").unwrap();
    assert_ne!(id, "chosen-by-client");
    assert_eq!(
        seen["x-request-id"], id,
        "the upstream receives the id the client gets"
    );
}

#[tokio::test]
async fn forwarding_headers_from_a_trusted_proxy_are_extended() {
    let up = upstream::start("up").await;
    let config = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.0/8\"]\n\n[[routes]]\nid = \"r\"\nupstream = \"{}\"\npublic = true\n",
        up.url()
    );
    let gateway = start_gateway(&config).await;
    let request = Request::get(gateway.url("/"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-request-id", "edge-1234")
        .body(Full::default())
        .unwrap();
    let reply = send(&support::http1_client(), request).await;
    let seen = &reply.json()["headers"];
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["x-request-id"], "edge-1234");
    assert_eq!(reply.header("x-request-id"), Some("edge-1234"));
}

#[tokio::test]
async fn identity_headers_sent_by_a_client_never_reach_the_upstream() {
    let up = upstream::start("up").await;
    let config = support::public_route_config(&up.url());
    let gateway = start_gateway(&config).await;
    let request = Request::get(gateway.url("/"))
        .header("X-Auth-Subject", "admin")
        .header("x_auth_subject", "admin")
        .header("X-AUTH-SCOPES", "everything")
        .header("x-authz", "kept")
        .body(Full::default())
        .unwrap();
    for client in [support::http1_client(), support::http2_client()] {
        let reply = send(&client, request.clone()).await;
        let seen = &reply.json()["headers"];
        assert!(seen.get("x-auth-subject").is_none(), "{seen}");
        assert!(seen.get("x_auth_subject").is_none(), "{seen}");
        assert!(seen.get("x-auth-scopes").is_none(), "{seen}");
        assert_eq!(seen["x-authz"], "kept");
    }
}

#[tokio::test]
async fn an_http2_client_reaches_an_http1_upstream() {
    let up = upstream::start("up").await;
    let config = support::public_route_config(&up.url());
    let gateway = start_gateway(&config).await;
    let request = Request::post(gateway.url("/h2?q=1"))
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let reply = send(&support::http2_client(), request).await;
    assert_eq!(reply.response.version(), http::Version::HTTP_2);
    let seen = reply.json();
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["query"], "q=1");
    assert_eq!(seen["body_bytes"], 5);
    assert_eq!(seen["headers"]["host"], gateway.http.unwrap().to_string());
}

#[tokio::test]
async fn the_builtin_echo_shows_what_an_upstream_would_receive() {
    let config = format!(
        "{}\n[[routes]]\nid = \"echo\"\nupstream = \"builtin:echo\"\npublic = true\n",
        server_block()
    );
    let gateway = start_gateway(&config).await;
    let request = Request::get(gateway.url("/anything?x=1"))
        .header("x-auth-subject", "mallory")
        .header("x-custom", "yes")
        .body(Full::default())
        .unwrap();
    let reply = send(&support::http1_client(), request).await;
    assert_eq!(reply.status(), 200);
    let echo = reply.json();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/anything");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["headers"]["x-custom"], "yes");
    assert_eq!(echo["headers"]["x-forwarded-for"], "127.0.0.1");
    assert!(echo["headers"].get("x-auth-subject").is_none());
    assert_eq!(
        echo["headers"]["x-request-id"],
        reply.header("x-request-id").unwrap()
    );
}

#[tokio::test]
async fn a_websocket_is_tunnelled_until_a_side_closes() {
    let up = upstream::start("up").await;
    let config = support::public_route_config(&up.url());
    let gateway = start_gateway(&config).await;
    let url = format!("ws://{}/ws", gateway.http.unwrap());
    let (mut socket, response) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(response.status(), 101);
    for i in 0..20 {
        let text = format!("message {i}");
        socket.send(Message::text(text.clone())).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed, Message::text(text));
    }
    // Ordinary requests keep flowing while the tunnel is open.
    assert_eq!(get(&gateway.url("/")).await.status(), 200);
    socket.send(Message::Binary(vec![1, 2, 3])).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::Binary(vec![1, 2, 3]));
    socket.close(None).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502() {
    let dead = support::closed_port();
    let config = format!(
        "{}\n[upstreams.dead]\ntargets = [\"http://{dead}\"]\nconnect_timeout = \"500ms\"\n\n[[routes]]\nid = \"r\"\nupstream = \"dead\"\npublic = true\n",
        server_block()
    );
    let gateway = start_gateway(&config).await;
    let reply = get(&gateway.url("/")).await;
    assert_eq!(reply.status(), 502);
    assert_eq!(reply.json()["error"], "bad_gateway");
    assert_eq!(
        reply.json()["request_id"],
        reply.header("x-request-id").unwrap()
    );
}

#[tokio::test]
async fn a_slow_upstream_is_a_504() {
    let up = upstream::start("slow").await;
    let config = format!(
        "{}\n[upstreams.slow]\ntargets = [\"{}\"]\ntimeout = \"200ms\"\n\n[[routes]]\nid = \"r\"\nupstream = \"slow\"\npublic = true\n",
        server_block(),
        up.url()
    );
    let gateway = start_gateway(&config).await;
    let started = std::time::Instant::now();
    let reply = get(&gateway.url("/slow/3000")).await;
    assert_eq!(reply.status(), 504);
    assert_eq!(reply.json()["error"], "gateway_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at the timeout, not when the upstream did"
    );
    assert_eq!(get(&gateway.url("/slow/10")).await.status(), 200);
}

#[tokio::test]
async fn round_robin_skips_a_target_that_refuses_connections() {
    let (a, b) = tokio::join!(upstream::start("a"), upstream::start("b"));
    let dead = support::closed_port();
    let config = format!(
        "{}\n[upstreams.pool]\ntargets = [\"{}\", \"http://{dead}\", \"{}\"]\neject_for = \"1m\"\n\n[[routes]]\nid = \"r\"\nupstream = \"pool\"\npublic = true\n",
        server_block(),
        a.url(),
        b.url()
    );
    let gateway = start_gateway(&config).await;
    let mut seen = std::collections::HashMap::new();
    for _ in 0..20 {
        let reply = get(&gateway.url("/")).await;
        assert_eq!(
            reply.status(),
            200,
            "a request without a body moves on to a live target"
        );
        *seen
            .entry(reply.json()["server"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both live targets serve: {seen:?}");
    assert!(
        seen.values().all(|&n| n >= 8),
        "load is spread evenly: {seen:?}"
    );
}

#[tokio::test]
async fn an_https_upstream_is_verified_against_the_configured_ca() {
    support::install_crypto();
    let ca = support::certs::TestCa::new();
    let leaf = ca.issue(&["localhost"]);
    let up = upstream::start_with_tls("tls-up", Some(support::certs::acceptor(&leaf))).await;
    let port = up.addr.port();
    let dir = tempfile::tempdir().unwrap();
    support::write_file(dir.path(), "upstream-ca.pem", ca.pem());
    let config = format!(
        "{}\n[upstreams.trusted]\ntargets = [\"https://localhost:{port}\"]\nca = \"upstream-ca.pem\"\npreserve_host = false\n\n[upstreams.untrusted]\ntargets = [\"https://localhost:{port}\"]\n\n[[routes]]\nid = \"trusted\"\npath = \"/trusted\"\nupstream = \"trusted\"\npublic = true\n\n[[routes]]\nid = \"untrusted\"\npath = \"/untrusted\"\nupstream = \"untrusted\"\npublic = true\n",
        server_block()
    );
    let gateway = support::start_gateway_in(dir, &config).await;
    let reply = get(&gateway.url("/trusted")).await;
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.json()["server"], "tls-up");
    assert_eq!(reply.json()["headers"]["host"], format!("localhost:{port}"));
    assert_eq!(
        get(&gateway.url("/untrusted")).await.status(),
        502,
        "an unknown CA is refused"
    );
}

#[tokio::test]
async fn ambiguous_requests_are_refused_with_400() {
    let up = upstream::start("up").await;
    let config = support::public_route_config(&up.url());
    let gateway = start_gateway(&config).await;
    let reply = get(&gateway.url("/public/..%2Fadmin")).await;
    assert_eq!(reply.status(), 400);
    assert_eq!(reply.json()["error"], "invalid_request");
    // An encoded slash inside an ordinary segment passes untouched.
    let reply = get(&gateway.url("/projects/group%2Fproject")).await;
    assert_eq!(reply.json()["path"], "/projects/group%2Fproject");

    let mut stream = tokio::net::TcpStream::connect(gateway.http.unwrap())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut response),
    )
    .await
    .unwrap()
    .unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert_eq!(
        up.requests.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the ordinary request reached the upstream"
    );
}
