// The body of `cache_memory` and `cache_memory_mimalloc` (included by both).

use std::io::Write;

use authgate::authn::TokenAuthenticator;
use authgate::authn::bearer;
use authgate::authz::Authorizer;
use authgate::authz::attributes::for_request;
use http::{HeaderMap, HeaderValue, Method};

/// A JWT-sized token (~1 KB) carrying the number `i` (the in-memory API
/// answers it as ServiceAccount `i`).
fn numbered_token(i: usize) -> String {
    format!("eyJhbGciOiJSUzI1NiJ9.{i:0>700}.{}", "s".repeat(342))
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::var("ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // kube::Client spawns its tower Buffer worker: it needs a runtime context.
    let _rt_guard = rt.enter();
    // Room to spare: a bounded store may start evicting before it is full
    // (quick_cache's shards), and every entry should count here.
    let kube = support::backend(n as u64 * 11 / 10 + 1);
    let tr = kube.token_review.expect("tr");
    let sar = kube.access_review.expect("sar");
    let attrs = for_request(None, &Method::GET, "/metrics");
    let before = rss_kib();
    let extras = rt.block_on(async {
        let mut extras = 0;
        for i in 0..n {
            let mut h = HeaderMap::new();
            h.insert(
                "authorization",
                HeaderValue::try_from(format!("Bearer {}", numbered_token(i))).expect("hdr"),
            );
            let t = bearer::extract(&h).expect("bearer").expect("token");
            let id = tr
                .authenticate(&t, std::net::Ipv4Addr::LOCALHOST.into())
                .await
                .expect("authn")
                .expect("identity");
            extras += id.extra().len();
            // Every identity is its own user: one decision entry each.
            sar.authorize(&id, &attrs).await.expect("authz");
        }
        tr.cache().sync().await;
        sar.cache().sync().await;
        extras
    });
    let after = rss_kib();
    let growth = after.saturating_sub(before);
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "{{\"entries\": {n}, \"extras_per_identity\": {:.1}, \"token_cache\": {}, \"sar_cache\": {}, \"rss_before_kib\": {before}, \"rss_after_kib\": {after}, \"rss_growth_mib\": {:.1}, \"rss_bytes_per_identity_and_decision\": {:.0}}}",
        extras as f64 / n.max(1) as f64,
        tr.cache().len(),
        sar.cache().len(),
        growth as f64 / 1024.0,
        growth as f64 * 1024.0 / n.max(1) as f64,
    );
    // cache-bytes: as `authgate_cache_bytes` counts them.
    let per = |bytes: u64, entries: u64| bytes as f64 / entries.max(1) as f64;
    let _ = writeln!(
        out,
        "{{\"token_cache_bytes\": {}, \"token_bytes_per_entry\": {:.0}, \"access_cache_bytes\": {}, \"access_bytes_per_entry\": {:.0}, \"interned_strings_and_lists\": {:?}}}",
        tr.cache().bytes(),
        per(tr.cache().bytes(), tr.cache().len()),
        sar.cache().bytes(),
        per(sar.cache().bytes(), sar.cache().len()),
        authgate::identity::interned(),
    );
}
