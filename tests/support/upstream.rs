//! A real upstream on 127.0.0.1:0 (HTTP/1.1 only, like most backends) that reports what it
//! received. Paths:
//! - anything: JSON `{server, method, path, query, version, headers, body_bytes}`; the body is
//!   counted as it streams, never held;
//! - `/slow/MS`: the same after MS milliseconds;
//! - `/download/N`: N bytes, streamed in 64 KiB chunks;
//! - `/hop`: a response carrying hop-by-hop and `Connection`-named headers;
//! - `/ws`: a WebSocket echo.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

type UpBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A running test upstream.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    /// Requests whose head has arrived.
    pub requests: Arc<AtomicUsize>,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
}

impl Upstream {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits (at most 5 s) until `n` requests have arrived.
    pub async fn wait_for_requests(&self, n: usize) {
        for _ in 0..500 {
            if self.requests.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the upstream did not receive {n} requests within 5 s");
    }
}

/// Starts a plain HTTP upstream that names itself `name` in its answers.
pub async fn start(name: &'static str) -> Upstream {
    start_with_tls(name, None).await
}

/// Starts an upstream, over TLS when `tls` is given.
pub async fn start_with_tls(name: &'static str, tls: Option<TlsAcceptor>) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let accepted = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            accepted.fetch_add(1, Ordering::SeqCst);
            let counter = counter.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    answer(name, request)
                });
                let builder = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await;
                    }
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                }
            });
        }
    });
    Upstream {
        addr,
        requests,
        connections,
    }
}

async fn answer(
    name: &'static str,
    mut request: Request<Incoming>,
) -> Result<Response<UpBody>, Infallible> {
    let path = request.uri().path().to_string();
    if path == "/ws" {
        return Ok(websocket_echo(&mut request));
    }
    if let Some(size) = path.strip_prefix("/download/") {
        return Ok(download(size.parse().unwrap()));
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
    }
    let mut headers = serde_json::Map::new();
    for (name, value) in request.headers() {
        let value =
            serde_json::Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::Array(values)) => values.push(value),
            Some(first) => *first = serde_json::Value::Array(vec![first.clone(), value]),
            None => {
                headers.insert(name.as_str().to_string(), value);
            }
        }
    }
    let summary = serde_json::json!({
        "server": name,
        "method": request.method().as_str(),
        "path": path,
        "query": request.uri().query(),
        "version": format!("{:?}", request.version()),
        "headers": headers,
    });
    // Count the body as it streams: a large upload must not be held anywhere.
    let mut body = request.into_body();
    let mut body_bytes = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => body_bytes += frame.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => break,
        }
    }
    let mut summary = summary;
    summary["body_bytes"] = body_bytes.into();
    let mut response = Response::new(full(summary.to_string()));
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    if path == "/hop" {
        let headers = response.headers_mut();
        headers.insert("connection", "x-up-secret".parse().unwrap());
        headers.insert("x-up-secret", "1".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert("x-up-kept", "1".parse().unwrap());
    }
    Ok(response)
}

fn full(text: String) -> UpBody {
    Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed()
}

/// N bytes in 64 KiB chunks, produced as the client reads them.
fn download(size: u64) -> Response<UpBody> {
    const CHUNK: u64 = 64 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK as usize]);
    let chunks = futures_util::stream::unfold(size, move |left| {
        let chunk = chunk.clone();
        async move {
            (left > 0).then(|| {
                let n = left.min(CHUNK);
                (Ok(Frame::data(chunk.slice(..n as usize))), left - n)
            })
        }
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(chunks)));
    response.headers_mut().insert("content-length", size.into());
    response
}

fn websocket_echo(request: &mut Request<Incoming>) -> Response<UpBody> {
    let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
        let mut response = Response::new(full("not a websocket request".into()));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(message)) = socket.next().await {
            if message.is_close() {
                break;
            }
            if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .body(full(String::new()))
        .unwrap()
}
