//! Time to first byte and per-event latency of an SSE stream, direct from a local provider and
//! through a gateway metering it (`usage = "openai"`, a stream whose client did not ask for
//! usage, so the gateway adds the usage chunk and removes it again: the most work it does).
//! The provider stamps each event with the time it wrote it; the client subtracts.
//!
//! ```sh
//! cargo run --release --example sse_latency -- 200 50   # 200 streams of 50 events each
//! ```

#![allow(missing_docs, clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use authgate::config::Config;
use authgate::server::RunningGateway;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

static EPOCH: OnceLock<Instant> = OnceLock::new();

fn now_us() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

type ProviderBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn provider(
    request: Request<Incoming>,
    events: usize,
) -> Result<Response<ProviderBody>, Infallible> {
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let asked = String::from_utf8_lossy(&body).contains("include_usage");
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        for i in 0..events {
            let line = format!("data: {{\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" t{i}\"}}}}],\"sent\":{}}}\n\n", now_us());
            if sender
                .send(Ok(Frame::data(Bytes::from(line))))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if asked {
            let usage = format!("data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":5,\"completion_tokens\":{events}}},\"sent\":{}}}\n\n", now_us());
            let _ = sender.send(Ok(Frame::data(Bytes::from(usage)))).await;
        }
        let _ = sender
            .send(Ok(Frame::data(Bytes::from_static(b"data: [DONE]\n\n"))))
            .await;
    });
    let stream =
        futures_util::stream::unfold(
            receiver,
            |mut r| async move { r.recv().await.map(|x| (x, r)) },
        );
    Ok(Response::builder()
        .header("content-type", "text/event-stream")
        .body(StreamBody::new(stream).boxed())
        .unwrap())
}

/// One stream: (time to first byte, per-event delays), microseconds.
async fn stream(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: &str,
) -> (u64, Vec<u64>) {
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let started = now_us();
    let request = Request::post(url)
        .header("content-type", "application/json")
        .header("x-api-key", "unused")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let mut response = client.request(request).await.unwrap().into_body();
    let mut first = None;
    let mut delays = Vec::new();
    let mut pending = Vec::new();
    while let Some(Ok(frame)) = response.frame().await {
        let Some(data) = frame.data_ref() else {
            continue;
        };
        let arrived = now_us();
        first.get_or_insert(arrived - started);
        pending.extend_from_slice(data);
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            if let Some(sent) = text.split("\"sent\":").nth(1) {
                let sent: u64 = sent
                    .trim_end_matches(|c: char| !c.is_ascii_digit())
                    .parse()
                    .unwrap();
                delays.push(arrived - sent);
            }
        }
    }
    (first.unwrap_or(0), delays)
}

fn percentile(values: &mut [u64], p: f64) -> u64 {
    values.sort_unstable();
    values[((values.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let streams: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let events: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    now_us();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let provider_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            // Without it, Nagle's algorithm holds small writes for the peer's delayed ACK.
            let _ = socket.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(move |r| provider(r, events));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\n\n[state]\ndata_dir = \"{}\"\n\n[[routes]]\nid = \"llm\"\npath = \"/v1\"\nupstream = \"http://{provider_addr}\"\nusage = \"openai\"\npublic = true\n",
        dir.path().display()
    );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    let gateway = RunningGateway::start(Config::load(&path).unwrap())
        .await
        .unwrap();
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new()).build(connector);
    for (name, url) in [
        (
            "direct",
            format!("http://{provider_addr}/v1/chat/completions"),
        ),
        (
            "gateway",
            format!("http://{}/v1/chat/completions", gateway.http_addr.unwrap()),
        ),
    ] {
        let mut firsts = Vec::new();
        let mut delays = Vec::new();
        for _ in 0..streams {
            let (first, mut d) = stream(&client, &url).await;
            firsts.push(first);
            delays.append(&mut d);
        }
        println!(
            "{name:8} ttfb p50 {:5} µs p99 {:5} µs | per event ({} events) p50 {:4} µs p99 {:4} µs",
            percentile(&mut firsts, 0.5),
            percentile(&mut firsts, 0.99),
            delays.len(),
            percentile(&mut delays, 0.5),
            percentile(&mut delays, 0.99),
        );
    }
    gateway.shutdown().await;
}
