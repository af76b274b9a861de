//! Client-side rate limit for API calls: a token bucket with reservations,
//! as client-go's `--kube-api-qps` / `--kube-api-burst`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// `qps` calls per second on average, up to `burst` at once.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    qps: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// A full bucket.
    pub(crate) fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            qps,
            burst,
            state: Mutex::new(Bucket {
                tokens: burst,
                at: Instant::now(),
            }),
        }
    }

    /// Reserves a call at `now`: how long to wait for it, or `None` (and no
    /// reservation) when the wait would pass `deadline`.
    pub(crate) fn reserve(&self, now: Instant, deadline: Instant) -> Option<Duration> {
        let mut b = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.qps).min(self.burst);
        b.at = now;
        let wait = if b.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - b.tokens) / self.qps)
        };
        if now + wait > deadline {
            return None;
        }
        b.tokens -= 1.0;
        Some(wait)
    }

    /// Waits for a call slot; `false` when none comes before `deadline`.
    pub(crate) async fn acquire(&self, deadline: Instant) -> bool {
        match self.reserve(Instant::now(), deadline) {
            Some(wait) if wait.is_zero() => true,
            Some(wait) => {
                tokio::time::sleep(wait).await;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_qps_then_refusal_past_the_deadline() {
        let r = RateLimiter::new(10.0, 3);
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(r.reserve(t0, far), Some(Duration::ZERO));
        }
        // The bucket is empty: the next calls queue 100 ms apart.
        assert_eq!(r.reserve(t0, far), Some(Duration::from_millis(100)));
        let third = r.reserve(t0, far).unwrap();
        assert!((third.as_secs_f64() - 0.2).abs() < 1e-9, "{third:?}");
        // A deadline closer than the queue refuses without reserving.
        assert_eq!(r.reserve(t0, t0 + Duration::from_millis(250)), None);
        assert!(r.reserve(t0, t0 + Duration::from_millis(301)).is_some());
        // After a quiet second the bucket refills to its burst, not beyond.
        let later = t0 + Duration::from_secs(10);
        for _ in 0..3 {
            assert_eq!(
                r.reserve(later, far + Duration::from_secs(60)),
                Some(Duration::ZERO)
            );
        }
        assert!(r.reserve(later, far).unwrap() > Duration::ZERO);
    }
}
