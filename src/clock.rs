//! Wall-clock time in Unix seconds, the unit of certificate validity, JWT
//! `exp` and the migration report. Monotonic time (`Instant`) is used for
//! durations everywhere else.

use std::time::{SystemTime, UNIX_EPOCH};

/// The time since the Unix epoch, to the nanosecond (0 if the clock is
/// before it).
pub(crate) fn since_epoch() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
