//! An upstream on 127.0.0.1:0 that records the exact bytes it receives, below any HTTP library,
//! so a test can say what a backend was sent, byte for byte.
//!
//! It answers each request head with `200 ok` once the body (by Content-Length, or chunked up
//! to its last chunk) has arrived. A head asking to upgrade (`Upgrade` + `Connection: upgrade`)
//! is answered `101 Switching Protocols` to the first protocol offered, as a backend accepting
//! it would, and everything after it is recorded as tunnel bytes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running recording upstream.
#[derive(Clone)]
pub struct RawUpstream {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<u8>>>,
}

impl RawUpstream {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far, on every connection, as text (lossy).
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// Waits (at most 5 s) until the received bytes contain `needle`.
    pub async fn wait_for(&self, needle: &str) -> String {
        for _ in 0..500 {
            let received = self.received();
            if received.contains(needle) {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "the upstream did not receive {needle:?} within 5 s; it received:\n{}",
            self.received()
        );
    }
}

/// Starts the recording upstream.
pub async fn start() -> RawUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let shared = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, shared.clone()));
        }
    });
    RawUpstream { addr, log }
}

enum State {
    Head,
    Body(usize),
    Chunked,
    Tunnel,
}

async fn serve(mut stream: TcpStream, log: Arc<Mutex<Vec<u8>>>) {
    let mut pending = Vec::new();
    let mut state = State::Head;
    let mut buffer = [0u8; 8192];
    loop {
        let n = match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        log.lock().unwrap().extend_from_slice(&buffer[..n]);
        if matches!(state, State::Tunnel) {
            continue;
        }
        pending.extend_from_slice(&buffer[..n]);
        // Bounded: each pass consumes a head or a body, or waits for more bytes.
        for _ in 0..64 {
            match state {
                State::Tunnel => break,
                State::Head => {
                    let Some(end) = find(&pending, b"\r\n\r\n") else {
                        break;
                    };
                    let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
                    pending.drain(..end + 4);
                    if let Some(protocol) = upgrade(&head) {
                        let answer = format!("HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: {protocol}\r\n\r\n");
                        let _ = stream.write_all(answer.as_bytes()).await;
                        state = State::Tunnel;
                    } else if head.contains("\r\ntransfer-encoding: chunked") {
                        state = State::Chunked;
                    } else {
                        let length = field(&head, "content-length")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        state = State::Body(length);
                    }
                }
                State::Body(length) => {
                    if pending.len() < length {
                        break;
                    }
                    pending.drain(..length);
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    state = State::Head;
                }
                State::Chunked => {
                    let Some(end) = find(&pending, b"0\r\n\r\n") else {
                        break;
                    };
                    pending.drain(..end + 5);
                    state = State::Body(0);
                }
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A header's value in a lowercased head.
fn field<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.split("\r\n")
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// The first protocol of an upgrade request, if the head is one.
fn upgrade(head: &str) -> Option<String> {
    let connection = field(head, "connection")?;
    if !connection.split(',').any(|t| t.trim() == "upgrade") {
        return None;
    }
    Some(
        field(head, "upgrade")?
            .split(',')
            .next()?
            .trim()
            .to_string(),
    )
}
