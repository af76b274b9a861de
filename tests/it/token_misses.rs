//! `token_review.max_misses_per_client` over real sockets: a flood of
//! made-up tokens from one address is refused without TokenReviews, while a
//! client on another address keeps getting its 200s.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use testkit::*;

/// The other client address: loopback, routed by Linux without setup.
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_is_capped_while_another_address_gets_200() {
    let pki = Pki::new();
    let api = FakeApi::start(&pki).await;
    api.allow(
        Rule::group("system:serviceaccounts")
            .verb("get")
            .path("/api/*"),
    );
    let upstream = Upstream::start().await;
    let mut y = Yaml::new(&pki, upstream.addr);
    y.rest = format!(
        "kubernetes:\n  kubeconfig: {}\n  timeout: 2s\n",
        api.kubeconfig.display()
    );
    let gate = Gate::start(&y.render()).await;
    let tokens: Vec<String> = (0..5)
        .map(|i| {
            let t = format!("legit-sa-token-{i}");
            api.add_token(
                &t,
                &format!("system:serviceaccount:demo:app{i}"),
                &["system:serviceaccounts"],
            );
            t
        })
        .collect();

    // The flood: 300 distinct garbage tokens from 127.0.0.1, two at a time.
    let flood_client = gate.client(&pki);
    let started = Instant::now();
    let flood = tokio::spawn(async move {
        let mut lanes = tokio::task::JoinSet::new();
        for lane in 0..2 {
            let c = flood_client.clone();
            lanes.spawn(async move {
                let mut reasons = Vec::new();
                for i in (lane..300).step_by(2) {
                    let r = c
                        .get_with_token("/api/x", &format!("garbage-{i:04}"))
                        .await
                        .expect("flood request");
                    assert_eq!(r.status, 401);
                    reasons.push(r.reason());
                }
                reasons
            });
        }
        lanes.join_all().await.concat()
    });

    // Meanwhile the other address: five new tokens, four requests each.
    let legit = gate.client(&pki).from_ip(OTHER);
    for round in 0..4 {
        for t in &tokens {
            let r = legit.get_with_token("/api/x", t).await.expect("request");
            assert_eq!(r.status, 200, "round {round}: {:?}", r.body);
        }
    }
    let reasons = flood.await.expect("flood task");
    let elapsed = started.elapsed().as_secs();

    let rejected = reasons.iter().filter(|r| *r == "token_rejected").count();
    let limited = reasons
        .iter()
        .filter(|r| *r == "token_misses_exceeded")
        .count();
    assert_eq!(rejected + limited, 300, "{reasons:?}");
    // Burst 20, then 10 a second: the flood's TokenReviews are capped.
    let cap = 20 + 10 * (elapsed as usize + 1);
    assert!(rejected <= cap, "{rejected} reviewed in {elapsed}s");
    assert!(limited >= 300 - cap);
    // The API saw the flood's capped share and one review per legit token.
    assert_eq!(api.token_reviews(), rejected + tokens.len());
    assert_eq!(upstream.count(), 20);
}
