//! A fleet's revocations: every replica follows the shared Stream of revocations and adds each
//! to its in-memory [`Revocations`], so the request path never asks Redis whether a token is
//! revoked and a revocation made on one replica is refused on all of them within about a
//! second (measured as `authgate_revocation_lag_seconds`).
//!
//! The follower reads with `XREAD BLOCK` on a connection of its own and remembers the last id
//! it applied. After a reconnect, and after every quiet second, it checks that the stream still
//! reaches back to that id; if it was trimmed past it, or is gone (Redis restarted empty), the
//! follower rebuilds from the sorted set of
//! revocations — and after an empty restart it writes its own set back, so a replica that
//! starts later still learns them.

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::streams::StreamReadReply;

use super::redis_store::{REVOKED_KEY, STREAM_KEY};
use super::revocations::Revocations;
use crate::state::redis::RedisState;

/// How long one `XREAD` waits for news before it asks again.
const BLOCK: Duration = Duration::from_millis(1000);
/// Entries applied per read.
const BATCH: usize = 1000;
/// The pause after a failure before the next attempt.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// Follows the revocation stream into `revocations` for as long as they are in use.
pub fn follow(redis: Arc<RedisState>, revocations: Weak<Revocations>) {
    let connection = redis.clone();
    redis.spawn(async move {
        let mut last: Option<String> = None;
        loop {
            let Some(set) = revocations.upgrade() else {
                return;
            };
            match follow_once(&connection, &set, &mut last).await {
                Ok(()) => {}
                Err(error) => {
                    tracing::debug!(%error, "revocation stream: reconnecting");
                    drop(set);
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        }
    });
}

/// Connects, catches up, then reads until an error (or until the set is no longer used).
async fn follow_once(
    redis: &RedisState,
    revocations: &Arc<Revocations>,
    last: &mut Option<String>,
) -> Result<(), String> {
    let mut connection = redis
        .dedicated(BLOCK + Duration::from_secs(1))
        .await
        .map_err(|e| e.0)?;
    catch_up(&mut connection, revocations, last).await?;
    loop {
        if Arc::strong_count(revocations) <= 1 {
            // Only the follower holds the set: its service is gone.
            return Ok(());
        }
        let from = last.clone().unwrap_or_else(|| "0-0".into());
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(STREAM_KEY)
            .arg(&from)
            .query_async(&mut connection)
            .await
            .map_err(|e| format!("XREAD: {:?}", e.kind()))?;
        let Some(reply) = reply else {
            // A quiet second: make sure the stream still reaches back to where we are (a
            // replica that was paused may find it trimmed past its last id).
            catch_up(&mut connection, revocations, last).await?;
            continue;
        };
        let now_ms = unix_ms();
        for entry in reply.keys.iter().flat_map(|k| k.ids.iter()) {
            if let (Some(jti), Some(exp)) = (entry.get::<String>("jti"), entry.get::<i64>("exp")) {
                revocations.insert(jti, exp);
            }
            if let Some(appended) = id_ms(&entry.id) {
                let lag = now_ms.saturating_sub(appended);
                crate::metrics::revocation_lag(Duration::from_millis(lag));
            }
            *last = Some(entry.id.clone());
        }
    }
}

/// Brings the set up to date before following: from the sorted set when the stream cannot be
/// trusted to hold everything since `last`.
async fn catch_up(
    connection: &mut redis::aio::MultiplexedConnection,
    revocations: &Revocations,
    last: &mut Option<String>,
) -> Result<(), String> {
    let first: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(STREAM_KEY)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(connection)
        .await
        .map_err(|e| format!("XRANGE: {:?}", e.kind()))?;
    let first = first.into_iter().next().map(|(id, _)| id);
    let resumable = match (last.as_deref(), first.as_deref()) {
        // The stream still starts at or before the next entry we need.
        (Some(last), Some(first)) => id_order(first) <= id_order(last),
        // Nothing read yet, or the stream is empty or starts after our place: reload.
        _ => false,
    };
    if resumable {
        return Ok(());
    }
    // A stream that is gone (not merely empty after a trim) means Redis lost its data.
    let exists: bool = redis::cmd("EXISTS")
        .arg(STREAM_KEY)
        .query_async(connection)
        .await
        .map_err(|e| format!("EXISTS: {:?}", e.kind()))?;
    let emptied = last.as_deref().is_some_and(|l| l != "0-0") && !exists;
    // The tail first, then the set: whatever is appended between the two is read again from
    // the stream, so nothing falls in the gap.
    let tail: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
        .arg(STREAM_KEY)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(connection)
        .await
        .map_err(|e| format!("XREVRANGE: {:?}", e.kind()))?;
    let now = crate::auth::unix_now();
    let stored: Vec<(String, i64)> = redis::cmd("ZRANGEBYSCORE")
        .arg(REVOKED_KEY)
        .arg(now)
        .arg("+inf")
        .arg("WITHSCORES")
        .query_async(connection)
        .await
        .map_err(|e| format!("ZRANGEBYSCORE: {:?}", e.kind()))?;
    let loaded = stored.len();
    for (jti, exp) in stored {
        revocations.insert(jti, exp);
    }
    if emptied {
        // Redis came back without its data: give it back what this replica still knows.
        let known = revocations.entries(now);
        if !known.is_empty() {
            let mut add = redis::cmd("ZADD");
            add.arg(REVOKED_KEY);
            for (jti, exp) in &known {
                add.arg(*exp).arg(jti);
            }
            add.query_async::<i64>(connection)
                .await
                .map_err(|e| format!("ZADD: {:?}", e.kind()))?;
        }
        tracing::warn!(
            restored = known.len(),
            "Redis lost its data: refresh tokens are gone (users sign in again); revocations were written back"
        );
    }
    tracing::debug!(loaded, "revocations loaded from Redis");
    *last = Some(
        tail.into_iter()
            .next()
            .map_or_else(|| "0-0".to_string(), |(id, _)| id),
    );
    Ok(())
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The milliseconds part of a stream id (`1700000000000-0`): when Redis appended it.
fn id_ms(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

/// A stream id as a comparable pair.
fn id_order(id: &str) -> (u64, u64) {
    let mut parts = id.splitn(2, '-');
    let ms = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let seq = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (ms, seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_compare_by_time_then_sequence() {
        assert!(id_order("1700000000000-5") < id_order("1700000000001-0"));
        assert!(id_order("1700000000000-5") > id_order("1700000000000-4"));
        assert_eq!(id_ms("1700000000123-7"), Some(1_700_000_000_123));
    }
}
