//! The timestamp format of every view of the report.

use std::time::{Duration, UNIX_EPOCH};

/// Unix seconds as RFC 3339 (`1970-01-01T00:00:00Z`).
pub fn rfc3339_string(unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

pub(super) fn rfc3339<S: serde::Serializer>(unix: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_string(*unix))
}
