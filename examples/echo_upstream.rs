//! A stand-alone upstream to put behind authgate: it answers every request with JSON of the
//! method, path and headers it received, so you can see what the gateway forwards (the
//! `X-Forwarded-*` headers, `X-Request-Id`, and, with authentication, `X-Auth-Subject`).
//!
//! ```sh
//! cargo run --example echo_upstream -- 127.0.0.1:3000
//! # then in gateway.toml: upstream = "http://127.0.0.1:3000"
//! ```

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = TcpListener::bind(&address).await?;
    println!("echo upstream listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = service_fn(|request: Request<Incoming>| async move {
                let headers: serde_json::Map<String, serde_json::Value> = request
                    .headers()
                    .iter()
                    .map(|(name, value)| {
                        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                        (name.as_str().to_string(), value.into())
                    })
                    .collect();
                let body = serde_json::json!({
                    "method": request.method().as_str(),
                    "path": request.uri().path(),
                    "subject": request.headers().get("x-auth-subject").and_then(|v| v.to_str().ok()),
                    "headers": headers,
                });
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body.to_string()))))
            });
            let connection = hyper::server::conn::http1::Builder::new();
            if let Err(error) = connection
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection error: {error}");
            }
        });
    }
}
