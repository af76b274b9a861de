//! Refresh-ahead, jitter, expiry and eviction, on tokio's paused clock with
//! a fake backend that counts its calls.

use std::sync::Mutex as StdMutex;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::*;
use crate::authn::token_review::success_keep;
use crate::cache::jitter::jitter_by;

const TTL: Duration = Duration::from_secs(100);

/// A fake review API: counts calls, answers `answer` after `delay`, with
/// the TTL `ttl` gives for the time of the answer.
struct Api {
    calls: AtomicUsize,
    answer: StdMutex<Result<u32, BackendError>>,
    delay: Duration,
    ttl: Box<dyn Fn(Instant) -> Keep + Send + Sync>,
    /// When set, every review waits for it (after counting).
    hold: Option<Arc<Notify>>,
}

impl Api {
    fn new(delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            answer: StdMutex::new(Ok(1)),
            delay,
            ttl: Box::new(|_| TTL.into()),
            hold: None,
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn answer(&self, a: Result<u32, BackendError>) {
        *self.answer.lock().unwrap() = a;
    }

    fn fetch(self: &Arc<Self>) -> impl FnOnce() -> Fetched<u32> + use<> {
        let api = self.clone();
        move || {
            Box::pin(async move {
                api.calls.fetch_add(1, Ordering::SeqCst);
                if let Some(h) = &api.hold {
                    h.notified().await;
                }
                tokio::time::sleep(api.delay).await;
                let answer = api.answer.lock().unwrap().clone();
                answer.map(|v| (v, (api.ttl)(Instant::now())))
            })
        }
    }
}

fn refreshing() -> ReviewCache<u32> {
    ReviewCache::build(Kind::Token, 1000, 0.2, |_| 0, |_| true)
}

/// Looks `key` up; also says whether the caller waited (the paused clock
/// moved while it looked).
async fn lookup(
    cache: &ReviewCache<u32>,
    api: &Arc<Api>,
    key: Key,
) -> (Result<u32, BackendError>, bool) {
    let before = Instant::now();
    let r = cache.get_or_fetch(key, api.fetch()).await;
    (r, Instant::now() > before)
}

#[test]
fn jitter_moves_a_ttl_by_at_most_its_fraction() {
    let ttl = Duration::from_secs(100);
    let cases = [
        (0.1, 0.0, 100.0),
        (0.1, 0.5, 95.0),
        (0.1, 1.0, 90.0),
        (0.0, 0.9, 100.0),
        (0.9, 1.0, 50.0),
        (0.1, -3.0, 100.0),
    ];
    for (fraction, unit, want) in cases {
        let got = jitter_by(ttl, fraction, unit).as_secs_f64();
        assert!((got - want).abs() < 1e-6, "{fraction} {unit}: {got}");
    }
    for _ in 0..1000 {
        let j = jittered(ttl, 0.1);
        assert!(j >= Duration::from_secs(90) && j <= ttl, "{j:?}");
    }
    assert_eq!(jittered(ttl, 0.0), ttl);
}

#[tokio::test(start_paused = true)]
async fn a_hot_key_is_refreshed_ahead_and_no_request_waits_after_warm_up() {
    let (cache, api) = (refreshing(), Api::new(Duration::from_secs(1)));
    let key = [1u8; 16];
    let (first, waited) = lookup(&cache, &api, key).await;
    assert_eq!((first, waited), (Ok(1), true), "the first request waits");
    // One request a second over three TTLs.
    for second in 1..=300 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (r, waited) = lookup(&cache, &api, key).await;
        assert_eq!(r, Ok(1));
        assert!(!waited, "a request waited at {second}s");
    }
    let s = cache.stats();
    assert_eq!(s.misses.load(Ordering::Relaxed), 1);
    let refreshes = s.refresh_started.load(Ordering::Relaxed) as usize;
    assert_eq!(s.refresh_stored.load(Ordering::Relaxed) as usize, refreshes);
    // A refresh at 80% of each life: about one per 81 s, never two a TTL.
    assert_eq!(api.calls(), 1 + refreshes);
    assert!((3..=4).contains(&refreshes), "{refreshes}");
}

#[tokio::test(start_paused = true)]
async fn keys_that_are_not_hot_cost_one_call_per_ttl() {
    let (cache, api) = (refreshing(), Api::new(Duration::ZERO));
    // 10,000 requests over 100 keys within the first 70% of one TTL.
    for round in 0..100u8 {
        for k in 0..100u8 {
            let (r, _) = lookup(&cache, &api, [k; 16]).await;
            assert_eq!(r, Ok(1));
        }
        if round % 10 == 9 {
            tokio::time::sleep(Duration::from_secs(7)).await;
        }
    }
    assert_eq!(api.calls(), 100, "one review per key");
    assert_eq!(cache.stats().refresh_started.load(Ordering::Relaxed), 0);
    // A key used once per TTL, early in each life: never refreshed.
    let key = [200u8; 16];
    for _ in 0..3 {
        lookup(&cache, &api, key).await.0.unwrap();
        tokio::time::sleep(Duration::from_secs(50)).await;
        lookup(&cache, &api, key).await.0.unwrap();
        tokio::time::sleep(Duration::from_secs(51)).await;
    }
    assert_eq!(api.calls(), 103, "one review per TTL");
    assert_eq!(cache.stats().refresh_started.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_leaves_the_entry_to_expire_and_is_not_retried() {
    let (cache, api) = (refreshing(), Api::new(Duration::from_secs(1)));
    let key = [2u8; 16];
    assert_eq!(lookup(&cache, &api, key).await.0, Ok(1));
    // Stored at 1 s: expires at 101 s, refreshes from 81 s.
    api.answer(Err(down()));
    tokio::time::sleep(Duration::from_secs(85)).await;
    for _ in 0..14 {
        let (r, waited) = lookup(&cache, &api, key).await;
        assert_eq!((r, waited), (Ok(1), false));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(api.calls(), 2, "one refresh, not retried on every hit");
    let s = cache.stats();
    assert_eq!(s.refresh_failed.load(Ordering::Relaxed), 1);
    // At its expiry the entry is gone: the error reaches the caller, it is
    // not answered from the expired entry, and it is not stored.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(lookup(&cache, &api, key).await.0, Err(down()));
    assert_eq!(lookup(&cache, &api, key).await.0, Err(down()));
    assert_eq!(api.calls(), 4);
    assert_eq!(s.evicted_expiry.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn a_flush_during_a_refresh_neither_stores_it_nor_lets_it_be_joined() {
    for per_user in [false, true] {
        let cache = refreshing();
        let api = Api::new(Duration::ZERO);
        let key = [3u8; 16];
        assert_eq!(lookup(&cache, &api, key).await.0, Ok(1));
        // The refresh starts (the API is slow) ...
        let gate = Arc::new(Notify::new());
        let slow = Arc::new(Api {
            hold: Some(gate.clone()),
            ..Arc::into_inner(Api::new(Duration::ZERO)).unwrap()
        });
        tokio::time::sleep(Duration::from_secs(90)).await;
        assert_eq!(lookup(&cache, &slow, key).await.0, Ok(1), "a hit starts it");
        tokio::task::yield_now().await;
        assert_eq!(slow.calls(), 1);
        // ... the operator flushes ...
        if per_user {
            cache.clear_if(|v| *v == 1);
        } else {
            cache.clear();
        }
        // ... a lookup after the flush starts its own review, unjoined ...
        api.answer(Ok(3));
        assert_eq!(lookup(&cache, &api, key).await.0, Ok(3));
        assert_eq!(api.calls(), 2, "per_user={per_user}");
        // ... and the old refresh, answering now, is not stored.
        gate.notify_waiters();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(slow.calls(), 1);
        assert_eq!(
            lookup(&cache, &api, key).await.0,
            Ok(3),
            "per_user={per_user}"
        );
        assert_eq!(cache.stats().refresh_stored.load(Ordering::Relaxed), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_refresh_never_serves_a_token_past_its_exp() {
    let start = Instant::now();
    // The token's `exp` is 130 s from now; every answer's TTL is capped
    // by it as the token reviewer caps it.
    let api = Arc::new(Api {
        ttl: Box::new(move |now| success_keep(TTL, Some(130), now.duration_since(start))),
        ..Arc::into_inner(Api::new(Duration::ZERO)).unwrap()
    });
    let cache = refreshing();
    let key = [4u8; 16];
    let mut served_after_exp = 0;
    let mut calls_before = api.calls();
    for _ in 0..200 {
        let (r, _) = lookup(&cache, &api, key).await;
        assert_eq!(r, Ok(1));
        let now = start.elapsed();
        if now >= Duration::from_secs(130) && api.calls() == calls_before {
            served_after_exp += 1;
        }
        calls_before = api.calls();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        served_after_exp, 0,
        "no answer from the cache at or past exp"
    );
    assert!(cache.inner.live(&key).is_none());
    // Review: the refresh at 80 s gets 50 s, cut short by `exp`, and is not
    // refreshed again (each shorter remainder was: three refreshes in all).
    assert_eq!(cache.stats().refresh_started.load(Ordering::Relaxed), 1);
    assert_eq!(cache.stats().misses.load(Ordering::Relaxed), 1 + 70);
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_one_off_keys_does_not_evict_the_keys_in_use() {
    let cache: ReviewCache<u32> = ReviewCache::build(Kind::Token, 1000, 0.0, |_| 0, |_| true);
    let api = Api::new(Duration::ZERO);
    let good = |i: u32| {
        let mut k = [0xAAu8; 16];
        k[..4].copy_from_slice(&i.to_be_bytes());
        k
    };
    for _ in 0..2 {
        for i in 0..100 {
            lookup(&cache, &api, good(i)).await.0.unwrap();
        }
    }
    assert_eq!(api.calls(), 100);
    // Ten times the capacity in tokens seen once, while the good ones stay
    // in use.
    for n in 0..10_000u32 {
        let mut bad = [0x55u8; 16];
        bad[..4].copy_from_slice(&n.to_be_bytes());
        lookup(&cache, &api, bad).await.0.unwrap();
        if n % 500 == 499 {
            for i in 0..100 {
                lookup(&cache, &api, good(i)).await.0.unwrap();
            }
        }
    }
    let reviewed_again = api.calls() - 100 - 10_000;
    assert_eq!(reviewed_again, 0, "good keys evicted by the flood");
    assert!(cache.len() <= 1000, "{}", cache.len());
    assert!(cache.stats().evicted_size.load(Ordering::Relaxed) >= 9_000);
}

/// Review round 5: a refresh-ahead review is not charged to `admit` (the
/// per-client TokenReview budget), so a cached rejection refreshed ahead
/// would let a client keep bad tokens re-reviewed for free, forever. Only
/// positive answers are refreshable (the token reviewer passes
/// `Option::is_some`): a negative one expires and its next lookup is a
/// miss that asks `admit`.
#[tokio::test(start_paused = true)]
async fn a_negative_answer_is_never_refreshed_outside_the_miss_budget() {
    let cache: ReviewCache<u32> = ReviewCache::build(Kind::Token, 1000, 0.2, |_| 0, |_| false);
    let api = Api::new(Duration::ZERO);
    let key = [0x55u8; 16];
    let admitted = Arc::new(AtomicUsize::new(0));
    let a = admitted.clone();
    let first = cache
        .get_or_fetch_admitted(
            key,
            move || {
                a.fetch_add(1, Ordering::SeqCst);
                true
            },
            api.fetch(),
        )
        .await;
    assert!(matches!(first, Some(Ok(_))));
    for _ in 0..10 {
        // One hit in the last 20% of each life; the client's budget says no
        // (served while the entry lives, refused once it has expired).
        tokio::time::sleep(TTL.mul_f64(0.85)).await;
        let _ = cache
            .get_or_fetch_admitted(key, || false, api.fetch())
            .await;
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        api.calls(),
        admitted.load(Ordering::SeqCst),
        "{} reviews made, {} admitted",
        api.calls(),
        admitted.load(Ordering::SeqCst)
    );
}
