//! TTL jitter, so replicas and restarts do not expire their entries
//! together. The reviewers apply it before any cap (a JWT's `exp`).

use std::time::Duration;

/// `ttl` shortened by up to `fraction` of itself, by `unit` in `[0, 1)`
/// (pure): replicas and restarts do not expire their entries together, and
/// the configured TTL stays a hard bound (an operator counting on
/// `allow_ttl` for how long a revoked permission can last gets no more).
pub(crate) fn jitter_by(ttl: Duration, fraction: f64, unit: f64) -> Duration {
    let fraction = fraction.clamp(0.0, 0.5);
    ttl.mul_f64(1.0 - fraction * unit.clamp(0.0, 1.0))
}

/// `ttl` jittered: shortened by up to `fraction` (see [`jitter_by`]).
pub(crate) fn jittered(ttl: Duration, fraction: f64) -> Duration {
    if fraction <= 0.0 {
        return ttl;
    }
    use std::hash::{BuildHasher, Hasher};
    // A fresh random SipHash key per call: not secret, only spread.
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    jitter_by(ttl, fraction, (bits >> 11) as f64 / (1u64 << 53) as f64)
}
