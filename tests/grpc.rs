//! gRPC through the gateway, with a real gRPC client and server (tonic) over h2c: unary,
//! server-streaming and bidirectional calls carry the caller's identity to the upstream; every
//! refusal the gateway makes reaches the client as its gRPC code and message; `grpc-timeout` is
//! honoured; health, reflection and the upstream's own errors pass through untouched.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::grpc::{self, Client, EchoRequest};
use support::{start_gateway, TestGateway};
use tonic::Code;

const SECRET: &str = "grpc-test-secret-of-at-least-32-bytes";

fn token(subject: &str, scope: &str) -> String {
    let claims = json!({
        "iss": "https://dev.test/", "aud": "echo-api", "sub": subject, "scope": scope,
        "exp": authgate::auth::unix_now() + 600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A gateway in front of `upstream` whose Echo route is `echo_route` (metrics are per process:
/// a test counting requests gets a route of its own).
async fn gateway_in_front_of(upstream: &str, echo_route: &str) -> TestGateway {
    start_gateway(&format!(
        r#"[server]
http = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[[issuers]]
id = "dev"
issuer = "https://dev.test/"
audiences = ["echo-api"]
algorithms = ["HS256"]
secret = "{SECRET}"

[upstreams.grpc]
targets = ["{upstream}"]
protocol = "h2c"

[upstreams.down]
targets = ["http://{closed}"]
protocol = "h2c"

[[routes]]
id = "{echo_route}"
path = "/authgate.test.Echo"
upstream = "grpc"
auth = ["jwt"]
scopes = ["echo"]

[[routes]]
id = "echo-limited"
path = "/authgate.test.Echo/Fail"
upstream = "grpc"
auth = ["jwt"]
rate = "1/h"
burst = 3

[[routes]]
id = "health"
path = "/grpc.health.v1.Health"
upstream = "grpc"
public = true

[[routes]]
id = "reflection"
path = "/grpc.reflection.v1.ServerReflection"
upstream = "grpc"
auth = ["jwt"]

[[routes]]
id = "down"
path = "/authgate.test.Down"
upstream = "down"
public = true
"#,
        closed = support::closed_port(),
    ))
    .await
}

struct Setup {
    gateway: TestGateway,
    url: String,
}

async fn setup() -> Setup {
    setup_with_route("echo").await
}

async fn setup_with_route(echo_route: &str) -> Setup {
    let upstream = grpc::start_upstream().await;
    let gateway = gateway_in_front_of(&format!("http://{upstream}"), echo_route).await;
    let url = format!("http://{}", gateway.http.unwrap());
    Setup { gateway, url }
}

impl Setup {
    async fn client(&self, token: Option<String>) -> Client {
        Client::connect(self.url.clone(), token).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unary_call_with_a_jwt_reaches_the_upstream_with_the_callers_identity() {
    let setup = setup().await;
    let client = setup.client(Some(token("alice", "echo"))).await;
    let reply = client.unary("hello").await.unwrap();
    assert_eq!(reply.message, "hello");
    assert_eq!(reply.subject, "alice");
    // The token was the gateway's business: the upstream never sees it.
    assert!(!reply.saw_authorization);
}

#[tokio::test(flavor = "multi_thread")]
async fn server_streaming_replies_arrive_as_the_upstream_sends_them() {
    let setup = setup().await;
    let client = setup.client(Some(token("alice", "echo"))).await;
    let started = Instant::now();
    let replies = client.stream("tick", 4, 300).await.unwrap();
    let indexes: Vec<u32> = replies.iter().map(|(reply, _)| reply.index).collect();
    assert_eq!(indexes, [0, 1, 2, 3]);
    assert!(replies.iter().all(|(reply, _)| reply.subject == "alice"));
    // The first reply is out long before the upstream has produced the last one: nothing on
    // the way buffers the stream.
    let first = replies[0].1.duration_since(started);
    let last = replies[3].1.duration_since(started);
    assert!(
        last - first >= Duration::from_millis(800),
        "first at {first:?}, last at {last:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bidirectional_stream_flows_both_ways_at_once() {
    let setup = setup().await;
    let client = setup.client(Some(token("bob", "echo"))).await;
    let replies = client.chat(&["one", "two", "three"]).await.unwrap();
    let messages: Vec<&str> = replies.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(messages, ["one", "two", "three"]);
    assert!(replies.iter().all(|reply| reply.subject == "bob"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_without_a_token_is_unauthenticated_with_the_reason() {
    let setup = setup().await;
    let status = setup.client(None).await.unary("hi").await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("credential"), "{status:?}");
    // The refusal's headers come along as metadata.
    assert!(status.metadata().get("www-authenticate").is_some());
    assert!(status.metadata().get("x-request-id").is_some());

    let forged = setup.client(Some("not.a.token".into())).await;
    let status = forged.unary("hi").await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_without_the_scope_is_permission_denied() {
    let setup = setup().await;
    let client = setup.client(Some(token("carol", "other"))).await;
    let status = client.unary("hi").await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let challenge = status.metadata().get("www-authenticate").unwrap();
    assert!(
        challenge.to_str().unwrap().contains(r#"scope="echo""#),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_used_up_rate_limit_is_resource_exhausted_and_upstream_errors_pass_untouched() {
    let setup = setup().await;
    let client = setup.client(Some(token("dave", ""))).await;
    let fail = |code: Code| {
        client.prepared(EchoRequest {
            message: "the upstream's own words".into(),
            count: code as u32,
            delay_ms: 0,
        })
    };
    for _ in 0..3 {
        let status = client.call("Fail", fail(Code::NotFound)).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert_eq!(status.message(), "the upstream's own words");
    }
    let status = client.call("Fail", fail(Code::NotFound)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.metadata().get("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_upstream_is_unavailable_and_an_unknown_method_unimplemented() {
    let setup = setup().await;
    let client = setup.client(None).await;
    let path = http::uri::PathAndQuery::from_static("/authgate.test.Down/Unary");
    let mut grpc = tonic::client::Grpc::new(
        tonic::transport::Endpoint::from_shared(setup.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    grpc.ready().await.unwrap();
    let status = grpc
        .unary::<_, grpc::EchoReply, _>(
            tonic::Request::new(EchoRequest::default()),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    let path = http::uri::PathAndQuery::from_static("/no.such.Service/Call");
    grpc.ready().await.unwrap();
    let status = grpc
        .unary::<_, grpc::EchoReply, _>(
            tonic::Request::new(EchoRequest::default()),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    drop(client);
}

/// One unary call made with hyper's own HTTP/2 client, so that no client library enforces the
/// `grpc-timeout` it sends: what comes back is the gateway's doing. Returns the response head
/// (a Trailers-Only answer carries `grpc-status` there) and the time it took.
async fn raw_call(
    url: &str,
    token: &str,
    request: EchoRequest,
    timeout: &str,
) -> (http::response::Parts, Duration) {
    use http_body_util::{BodyExt, Full};
    use prost::Message;
    let address = url.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let message = request.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&message);
    let call = http::Request::post(format!("{url}/authgate.test.Echo/Slow"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", timeout)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(bytes::Bytes::from(frame)))
        .unwrap();
    let started = Instant::now();
    let response = sender.send_request(call).await.unwrap();
    let elapsed = started.elapsed();
    let (parts, body) = response.into_parts();
    let _ = body.collect().await;
    (parts, elapsed)
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_timeout_bounds_the_wait_for_the_upstream() {
    let setup = setup().await;
    let token = token("erin", "echo");
    let late = EchoRequest {
        message: "late".into(),
        count: 0,
        delay_ms: 5_000,
    };
    let (head, elapsed) = raw_call(&setup.url, &token, late, "300m").await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.headers["grpc-status"], "4",
        "DEADLINE_EXCEEDED: {head:?}"
    );
    assert!(
        head.headers["grpc-message"]
            .to_str()
            .unwrap()
            .contains("in time"),
        "{head:?}"
    );
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

    // Within its deadline, a slow call still gets its answer (through tonic's own client).
    let client = setup.client(Some(token)).await;
    let mut request = client.prepared(EchoRequest {
        message: "in time".into(),
        count: 0,
        delay_ms: 100,
    });
    request.set_timeout(Duration::from_secs(5));
    let reply = client.call("Slow", request).await.unwrap().into_inner();
    assert_eq!(reply.message, "in time");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_pass_through() {
    let setup = setup().await;
    let anonymous = setup.client(None).await;
    assert_eq!(anonymous.health("").await.unwrap(), 1, "SERVING");
    assert_eq!(anonymous.health(grpc::SERVICE).await.unwrap(), 1);
    let status = anonymous.health("no.such.Service").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "the upstream's answer");

    let signed_in = setup.client(Some(token("frank", ""))).await;
    let services = signed_in.list_services().await.unwrap();
    assert!(
        services.iter().any(|s| s == "grpc.health.v1.Health"),
        "{services:?}"
    );
    let status = anonymous.list_services().await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_calls_are_counted_under_the_status_they_stand_for() {
    let setup = setup_with_route("echo-counted").await;
    let _ = setup.client(None).await.unary("hi").await.unwrap_err();
    let _ = setup
        .client(Some(token("gina", "echo")))
        .await
        .unary("hi")
        .await
        .unwrap();
    let admin = setup.gateway.admin.unwrap();
    let metrics = support::get(&format!("http://{admin}/metrics"))
        .await
        .text();
    assert!(
        metrics.contains(r#"authgate_requests_total{route="echo-counted",status="401"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"authgate_requests_total{route="echo-counted",status="200"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_http_request_to_the_same_route_keeps_its_json_refusal() {
    let setup = setup().await;
    let reply = support::get(&format!("{}/authgate.test.Echo/Unary", setup.url)).await;
    reply.assert_status(401);
    assert_eq!(reply.json()["error"], "unauthorized");
}
