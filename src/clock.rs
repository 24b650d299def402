//! A process-wide monotonic clock in milliseconds, small enough to live in an atomic: used for
//! deadlines read on the request path (target ejection, connection idleness, rate limits).

use std::sync::OnceLock;
use std::time::Instant;

static BASE: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the first call in this process, starting at 1 so that 0 can mean "never".
pub fn monotonic_ms() -> u64 {
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
}

/// Nanoseconds since the first call in this process (of either function), starting at 1.
pub fn monotonic_ns() -> u64 {
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
}
