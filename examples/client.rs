//! A client calling an upstream API through authgate: sends one request and prints the status,
//! the request id the gateway assigned, and the body.
//!
//! ```sh
//! cargo run --release &                              # the gateway with the shipped gateway.toml
//! cargo run --example client -- http://127.0.0.1:8080/orders/7
//! ```

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8080/anything".into());
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client.get(url.parse()?).await?;
    println!("status: {}", response.status());
    if let Some(id) = response.headers().get("x-request-id") {
        println!("request id: {}", id.to_str()?);
    }
    let body = response.into_body().collect().await?.to_bytes();
    println!("{}", String::from_utf8_lossy(&body));
    Ok(())
}
