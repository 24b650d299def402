//! A provider double on 127.0.0.1:0 that speaks the wire formats of OpenAI-compatible servers
//! and Anthropic's Messages API, and records what it received (headers, query, body).
//!
//! - `POST /v1/chat/completions`, `/v1/completions`: JSON, or SSE when `"stream": true`, with the
//!   final usage chunk only when `stream_options.include_usage` is true, then `data: [DONE]`;
//! - `POST /v1/embeddings`: JSON with `usage`;
//! - `POST /v1/responses`: JSON, or SSE events ending in `response.completed`;
//! - `POST /v1/messages`: Anthropic JSON, or SSE (`message_start` … two cumulative
//!   `message_delta`s … `message_stop`);
//! - anything else: `{"ok":true}`.
//!
//! Every SSE event is written in three pieces (its line split mid-JSON, then the line end,
//! then the blank line), each flushed on its own, so a reader sees lines cut across TCP reads.
//! The model `cut` makes a stream stop after its third text delta, the connection dropped.
//! Usage figures: prompt/input [`INPUT`] (of which [`CACHED`] from cache), output = the request's
//! `max_tokens` (default 5) — one delta per output token.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

type ProviderBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// Input tokens the double reports (OpenAI: `prompt_tokens`; Anthropic: `input_tokens`).
pub const INPUT: u64 = 17;
/// Of those, read from the cache (OpenAI `cached_tokens`, Anthropic `cache_read_input_tokens`).
pub const CACHED: u64 = 4;
/// Anthropic `cache_creation_input_tokens`.
pub const CACHE_CREATION: u64 = 3;

/// One request as the provider received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Value,
}

/// A running provider double.
#[derive(Clone)]
pub struct Provider {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Provider {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// Starts the double.
pub async fn start() -> Provider {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| answer(request, log.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Provider { addr, received }
}

async fn answer(
    request: Request<Incoming>,
    log: Arc<Mutex<Vec<Received>>>,
) -> Result<Response<ProviderBody>, Infallible> {
    let (parts, body) = request.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    log.lock().unwrap().push(Received {
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let model = body["model"].as_str().unwrap_or("unknown").to_string();
    let output = body["max_tokens"]
        .as_u64()
        .or_else(|| body["max_output_tokens"].as_u64())
        .unwrap_or(5);
    let stream = body["stream"].as_bool() == Some(true);
    let include_usage = body["stream_options"]["include_usage"].as_bool() == Some(true);
    let cut = model == "cut";
    let response = match (parts.uri.path(), stream) {
        ("/v1/chat/completions" | "/v1/completions", false) => json_response(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
            "usage": openai_usage(output),
        })),
        ("/v1/chat/completions" | "/v1/completions", true) => {
            let mut events = Vec::new();
            for i in 0..output {
                events.push((None, json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model,
                    "choices": [{"index": 0, "delta": {"content": format!("tok{i} ")}, "finish_reason": null}]}).to_string()));
            }
            if include_usage {
                events.push((
                    None,
                    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model,
                    "choices": [], "usage": openai_usage(output)})
                    .to_string(),
                ));
            }
            events.push((None, "[DONE]".to_string()));
            sse(events, cut)
        }
        ("/v1/embeddings", _) => json_response(json!({
            "object": "list", "model": model,
            "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 0.125]}],
            "usage": {"prompt_tokens": INPUT, "total_tokens": INPUT},
        })),
        ("/v1/responses", false) => json_response(json!({
            "id": "resp_1", "object": "response", "model": model, "status": "completed",
            "output": [{"type": "message", "content": [{"type": "output_text", "text": "hello"}]}],
            "usage": responses_usage(output),
        })),
        ("/v1/responses", true) => {
            let mut events = vec![(Some("response.created"), json!({"type": "response.created",
                "response": {"id": "resp_1", "model": model, "status": "in_progress", "usage": null}}).to_string())];
            for i in 0..output {
                events.push((
                    Some("response.output_text.delta"),
                    json!({"type": "response.output_text.delta", "delta": format!("tok{i} ")})
                        .to_string(),
                ));
            }
            events.push((Some("response.completed"), json!({"type": "response.completed",
                "response": {"id": "resp_1", "model": model, "status": "completed", "usage": responses_usage(output)}}).to_string()));
            sse(events, cut)
        }
        ("/v1/messages", false) => json_response(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": INPUT - CACHED - CACHE_CREATION, "output_tokens": output,
                      "cache_read_input_tokens": CACHED, "cache_creation_input_tokens": CACHE_CREATION},
        })),
        ("/v1/messages", true) => {
            let mut events = vec![(Some("message_start"), json!({"type": "message_start", "message": {
                "id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [],
                "usage": {"input_tokens": INPUT - CACHED - CACHE_CREATION, "output_tokens": 1,
                          "cache_read_input_tokens": CACHED, "cache_creation_input_tokens": CACHE_CREATION}}}).to_string()),
                (Some("content_block_start"), json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}).to_string()),
                (Some("ping"), json!({"type": "ping"}).to_string())];
            for i in 0..output {
                events.push((
                    Some("content_block_delta"),
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": format!("tok{i} ")}})
                    .to_string(),
                ));
            }
            events.push((
                Some("content_block_stop"),
                json!({"type": "content_block_stop", "index": 0}).to_string(),
            ));
            // Cumulative counts: the last one is the total, the sum would be wrong.
            events.push((Some("message_delta"), json!({"type": "message_delta", "delta": {"stop_reason": null}, "usage": {"output_tokens": output / 2}}).to_string()));
            events.push((Some("message_delta"), json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": output}}).to_string()));
            events.push((
                Some("message_stop"),
                json!({"type": "message_stop"}).to_string(),
            ));
            sse(events, cut)
        }
        _ => json_response(json!({"ok": true})),
    };
    Ok(response)
}

fn openai_usage(output: u64) -> Value {
    json!({"prompt_tokens": INPUT, "completion_tokens": output, "total_tokens": INPUT + output,
           "prompt_tokens_details": {"cached_tokens": CACHED}})
}

fn responses_usage(output: u64) -> Value {
    json!({"input_tokens": INPUT, "output_tokens": output, "total_tokens": INPUT + output,
           "input_tokens_details": {"cached_tokens": CACHED}})
}

fn json_response(value: Value) -> Response<ProviderBody> {
    Response::builder()
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(value.to_string()))
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap()
}

/// An SSE response whose events are written piece by piece; `cut` drops the connection after
/// the third event carrying generated text (`tokN `).
fn sse(events: Vec<(Option<&'static str>, String)>, cut: bool) -> Response<ProviderBody> {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut deltas = 0;
        for (event, data) in events {
            if cut && deltas == 3 {
                let _ = sender
                    .send(Err(std::io::Error::other("the provider went away")))
                    .await;
                return;
            }
            deltas += usize::from(data.contains("\"tok"));
            let mut line = String::new();
            if let Some(event) = event {
                line.push_str(&format!("event: {event}\n"));
            }
            line.push_str("data: ");
            line.push_str(&data);
            let middle = line.len() - data.len() / 2;
            let pieces = [
                line[..middle].to_string(),
                format!("{}\n", &line[middle..]),
                "\n".to_string(),
            ];
            for piece in pieces {
                if sender
                    .send(Ok(Frame::data(Bytes::from(piece))))
                    .await
                    .is_err()
                {
                    return;
                }
                // Each piece leaves in its own write: hyper flushes a frame before the next
                // arrives.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(StreamBody::new(stream).boxed())
        .unwrap()
}
