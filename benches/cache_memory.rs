//! Memory of the caches: resident set size after caching 100,000 distinct
//! token identities and their access decisions (target: <= 64 MiB in all).
//! Run with `cargo bench --bench cache_memory`.

mod support;

use std::collections::BTreeMap;
use std::io::Write;

use authgate::authn::TokenAuthenticator;
use authgate::authn::bearer;
use authgate::authz::Authorizer;
use authgate::authz::attributes::for_request;
use http::{HeaderMap, HeaderValue, Method};

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
    let kube = support::backend(n as u64 + 1);
    let tr = kube.token_review.expect("tr");
    let sar = kube.access_review.expect("sar");
    let attrs = for_request(None, &Method::GET, "/metrics");
    let before = rss_kib();
    rt.block_on(async {
        for i in 0..n {
            let mut h = HeaderMap::new();
            // JWT-sized tokens, distinct per identity.
            let token = format!("eyJhbGciOiJSUzI1NiJ9.{i:0>700}.{}", "s".repeat(342));
            h.insert(
                "authorization",
                HeaderValue::try_from(format!("Bearer {token}")).expect("hdr"),
            );
            let t = bearer::extract(&h).expect("bearer").expect("token");
            let id = tr
                .authenticate(&t, std::net::Ipv4Addr::LOCALHOST.into())
                .await
                .expect("authn")
                .expect("identity");
            // Distinct users so every decision is its own SAR entry.
            let mut id = (*id).clone();
            id.user = format!("system:serviceaccount:bench:sa-{i}");
            id.extra = BTreeMap::new();
            sar.authorize(&id, &attrs).await.expect("authz");
        }
        tr.cache().sync().await;
        sar.cache().sync().await;
    });
    let after = rss_kib();
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "{{\"entries\": {n}, \"token_cache\": {}, \"sar_cache\": {}, \"rss_before_kib\": {before}, \"rss_after_kib\": {after}, \"rss_growth_mib\": {:.1}}}",
        tr.cache().len(),
        sar.cache().len(),
        (after.saturating_sub(before)) as f64 / 1024.0
    );
}
