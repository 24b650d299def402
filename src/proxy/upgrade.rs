//! HTTP/1.1 protocol upgrades (WebSocket and others) passed through as a byte tunnel.
//!
//! When the upstream answers `101 Switching Protocols`, both sides' connections are taken over
//! by a task that copies bytes each way until either side closes. The task is spawned, so the
//! request handler returns the 101 at once and never waits on the tunnel.
//!
//! The tunnel inherits its connection's `max_connections` slot: a client cannot exceed the
//! limit by upgrading, and a graceful shutdown waits (within `shutdown_grace`) for open tunnels
//! as it does for requests in flight.

use std::sync::{Arc, Mutex};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::OwnedSemaphorePermit;

/// A connection's `max_connections` slot, which a tunnel takes over from it.
#[derive(Debug, Clone, Default)]
pub struct ConnectionSlot(Arc<Mutex<Option<OwnedSemaphorePermit>>>);

impl ConnectionSlot {
    /// A slot holding `permit`.
    pub fn new(permit: OwnedSemaphorePermit) -> Self {
        ConnectionSlot(Arc::new(Mutex::new(Some(permit))))
    }

    /// Takes the permit out (the tunnel keeps it; the connection then frees nothing).
    pub fn take(&self) -> Option<OwnedSemaphorePermit> {
        self.0.lock().ok()?.take()
    }
}

/// Joins the client's and the upstream's upgraded connections once both are ready.
pub fn spawn_tunnel(client: OnUpgrade, upstream: OnUpgrade, slot: &ConnectionSlot) {
    let permit = slot.take();
    tokio::spawn(async move {
        let _permit = permit;
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => tracing::debug!(bytes_up = up, bytes_down = down, "tunnel closed"),
            Err(error) => tracing::debug!(%error, "tunnel ended with an error"),
        }
    });
}
