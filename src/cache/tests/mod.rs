mod refresh;

use std::sync::atomic::AtomicUsize;

use sha2::Sha256;

use super::*;

fn counting(
    calls: &Arc<AtomicUsize>,
    result: Result<(u32, Duration), BackendError>,
    delay: Duration,
) -> impl FnOnce() -> BoxFuture<'static, Result<(u32, Keep), BackendError>> + use<> {
    let calls = calls.clone();
    move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            result.map(|(v, ttl)| (v, ttl.into()))
        })
    }
}

fn down() -> BackendError {
    BackendError::Unreachable {
        backend: "test",
        detail: "down".into(),
    }
}

#[test]
fn keys_are_keyed_and_length_prefixed() {
    let h = KeyHasher::random();
    assert_eq!(h.key(&[b"ab", b"c"]), h.key(&[b"ab", b"c"]));
    assert_ne!(h.key(&[b"ab", b"c"]), h.key(&[b"a", b"bc"]));
    assert_ne!(
        h.key(&[b"ab"]),
        KeyHasher::random().key(&[b"ab"]),
        "keys differ per process key"
    );
    let plain = <Sha256 as sha2::Digest>::digest(b"ab");
    assert_ne!(h.key(&[b"ab"])[..], plain[..16]);
}

#[tokio::test]
async fn concurrent_lookups_share_one_fetch_and_later_ones_hit() {
    let cache = ReviewCache::new(Kind::Token, 100);
    let calls = Arc::new(AtomicUsize::new(0));
    let key = [1u8; 16];
    let mut joins = Vec::new();
    for _ in 0..50 {
        let cache = cache.clone();
        let fetch = counting(
            &calls,
            Ok((7, Duration::from_secs(60))),
            Duration::from_millis(50),
        );
        joins.push(tokio::spawn(
            async move { cache.get_or_fetch(key, fetch).await },
        ));
    }
    for j in joins {
        assert_eq!(j.await.unwrap(), Ok(7));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let fetch = counting(&calls, Ok((8, Duration::from_secs(60))), Duration::ZERO);
    assert_eq!(cache.get_or_fetch(key, fetch).await, Ok(7));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().misses.load(Ordering::Relaxed), 1);
    assert_eq!(
        cache.stats().coalesced.load(Ordering::Relaxed)
            + cache.stats().hits.load(Ordering::Relaxed),
        50
    );
}

#[tokio::test]
async fn errors_are_shared_but_never_stored() {
    let cache = ReviewCache::new(Kind::Token, 100);
    let calls = Arc::new(AtomicUsize::new(0));
    let key = [2u8; 16];
    assert_eq!(
        cache
            .get_or_fetch(key, counting(&calls, Err(down()), Duration::ZERO))
            .await,
        Err(down())
    );
    let ok = counting(&calls, Ok((1, Duration::from_secs(60))), Duration::ZERO);
    assert_eq!(cache.get_or_fetch(key, ok).await, Ok(1));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn entries_expire_after_their_own_ttl_and_zero_ttl_is_not_stored() {
    let cache = ReviewCache::new(Kind::Token, 100);
    let calls = Arc::new(AtomicUsize::new(0));
    let (short, zero) = ([3u8; 16], [4u8; 16]);
    for _ in 0..2 {
        let f = counting(&calls, Ok((1, Duration::from_millis(200))), Duration::ZERO);
        cache.get_or_fetch(short, f).await.unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    cache
        .get_or_fetch(
            short,
            counting(&calls, Ok((1, Duration::from_secs(9))), Duration::ZERO),
        )
        .await
        .unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "expired entry fetched again"
    );
    for _ in 0..2 {
        cache
            .get_or_fetch(
                zero,
                counting(&calls, Ok((1, Duration::ZERO)), Duration::ZERO),
            )
            .await
            .unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4, "zero TTL is never stored");
}

#[tokio::test]
async fn a_caller_that_goes_away_does_not_cancel_the_shared_fetch() {
    let cache = ReviewCache::new(Kind::Token, 100);
    let calls = Arc::new(AtomicUsize::new(0));
    let key = [5u8; 16];
    let first = {
        let cache = cache.clone();
        let f = counting(
            &calls,
            Ok((9, Duration::from_secs(60))),
            Duration::from_millis(100),
        );
        tokio::spawn(async move { cache.get_or_fetch(key, f).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = {
        let cache = cache.clone();
        let f = counting(&calls, Ok((0, Duration::from_secs(60))), Duration::ZERO);
        tokio::spawn(async move { cache.get_or_fetch(key, f).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    first.abort();
    assert_eq!(second.await.unwrap(), Ok(9));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_panicking_fetch_is_an_error_and_the_key_recovers() {
    let cache: ReviewCache<u32> = ReviewCache::new(Kind::Token, 100);
    let key = [6u8; 16];
    let r = cache
        .get_or_fetch(key, || Box::pin(async { panic!("boom") }))
        .await;
    assert!(matches!(r, Err(BackendError::BadResponse { .. })), "{r:?}");
    let r = cache
        .get_or_fetch(key, || {
            Box::pin(async { Ok((3, Duration::from_secs(5).into())) })
        })
        .await;
    assert_eq!(r, Ok(3));
}

#[tokio::test]
async fn capacity_is_bounded() {
    let cache = ReviewCache::new(Kind::Token, 100);
    for i in 0..2_000u32 {
        let mut key = [0u8; 16];
        key[..4].copy_from_slice(&i.to_be_bytes());
        cache
            .get_or_fetch(key, move || {
                Box::pin(async move { Ok((i, Duration::from_secs(60).into())) })
            })
            .await
            .unwrap();
    }
    cache.sync().await;
    assert!(cache.len() <= 100, "{}", cache.len());
}

#[tokio::test]
async fn traced_records_what_each_cache_did() {
    let tokens = ReviewCache::new(Kind::Token, 100);
    let access = ReviewCache::new(Kind::Access, 100);
    let calls = Arc::new(AtomicUsize::new(0));
    let ok = || counting(&calls, Ok((1, Duration::from_secs(60))), Duration::ZERO);
    let ((), first) = traced(async {
        tokens.get_or_fetch([7; 16], ok()).await.unwrap();
    })
    .await;
    assert_eq!(
        first,
        Lookups {
            token: Lookup::Miss,
            access: Lookup::None
        }
    );
    let ((), second) = traced(async {
        tokens.get_or_fetch([7; 16], ok()).await.unwrap();
        access.get_or_fetch([8; 16], ok()).await.unwrap();
    })
    .await;
    assert_eq!(
        second,
        Lookups {
            token: Lookup::Hit,
            access: Lookup::Miss
        }
    );
}

/// A fetch that answers `value` once `gate` is released.
fn held(
    calls: &Arc<AtomicUsize>,
    gate: &Arc<tokio::sync::Notify>,
    value: u32,
) -> impl FnOnce() -> BoxFuture<'static, Result<(u32, Keep), BackendError>> + use<> {
    let (calls, gate) = (calls.clone(), gate.clone());
    move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            gate.notified().await;
            Ok((value, Duration::from_secs(300).into()))
        })
    }
}

#[tokio::test]
async fn a_review_under_way_at_a_flush_never_stores_its_answer() {
    for per_user in [false, true] {
        let cache: ReviewCache<u32> = ReviewCache::new(Kind::Access, 100);
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let key = [7u8; 16];
        // A review starts (the API is slow) ...
        let before = {
            let (cache, fetch) = (cache.clone(), held(&calls, &gate, 1));
            tokio::spawn(async move { cache.get_or_fetch(key, fetch).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        // ... the operator flushes (everything, or this value's user) ...
        if per_user {
            cache.clear_if(|v| *v == 1);
        } else {
            cache.clear();
        }
        // ... a lookup after the flush does not join the old review ...
        let after = {
            let (cache, fetch) = (cache.clone(), held(&calls, &gate, 2));
            tokio::spawn(async move { cache.get_or_fetch(key, fetch).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "per_user={per_user}");
        // ... and when both answer, the old answer goes to its own caller only.
        gate.notify_waiters();
        assert_eq!(before.await.unwrap(), Ok(1));
        assert_eq!(after.await.unwrap(), Ok(2));
        cache.sync().await;
        let fetch = counting(&calls, Ok((3, Duration::from_secs(1))), Duration::ZERO);
        assert_eq!(
            cache.get_or_fetch(key, fetch).await,
            Ok(2),
            "per_user={per_user}: the post-flush answer is the one kept"
        );
    }
}

#[tokio::test]
async fn an_entry_stored_after_a_user_flush_by_an_older_review_is_refused_on_read() {
    let cache: ReviewCache<u32> = ReviewCache::new(Kind::Token, 100);
    let calls = Arc::new(AtomicUsize::new(0));
    let key = [9u8; 16];
    // Store as a flight launched before the flush would, racing past the
    // store-time check: the read check alone must refuse it.
    let old = cache.inner.generation.load(Ordering::Acquire);
    cache.clear_if(|v| *v == 1);
    let store = cache.inner.store.as_ref().unwrap();
    let stale = |value| store.entry(value, Duration::from_secs(300), 0.0, old, 0);
    store.insert(key, stale(1));
    let fetch = counting(&calls, Ok((5, Duration::from_secs(300))), Duration::ZERO);
    assert_eq!(cache.get_or_fetch(key, fetch).await, Ok(5));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // An older entry the flush does not cover still counts.
    let other = [10u8; 16];
    store.insert(other, stale(4));
    let fetch = counting(&calls, Ok((6, Duration::from_secs(300))), Duration::ZERO);
    assert_eq!(cache.get_or_fetch(other, fetch).await, Ok(4));
    // A full flush covers every older entry.
    cache.clear();
    store.insert(other, stale(4));
    let fetch = counting(&calls, Ok((6, Duration::from_secs(300))), Duration::ZERO);
    assert_eq!(cache.get_or_fetch(other, fetch).await, Ok(6));
}

#[tokio::test]
async fn too_many_user_flushes_collapse_into_a_full_one() {
    let cache: ReviewCache<u32> = ReviewCache::new(Kind::Token, 100);
    let calls = Arc::new(AtomicUsize::new(0));
    let key = [11u8; 16];
    let fetch = counting(&calls, Ok((1, Duration::from_secs(300))), Duration::ZERO);
    assert_eq!(cache.get_or_fetch(key, fetch).await, Ok(1));
    for n in 0..=flush::MAX_FLUSH_MARKS as u32 {
        cache.clear_if(move |v| *v == 1000 + n);
    }
    assert!(cache.inner.flushes.lock().unwrap().marks.len() <= flush::MAX_FLUSH_MARKS);
    let fetch = counting(&calls, Ok((2, Duration::from_secs(300))), Duration::ZERO);
    assert_eq!(
        cache.get_or_fetch(key, fetch).await,
        Ok(2),
        "fails safe: a miss"
    );
}
