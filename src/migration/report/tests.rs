use super::*;
use AuthMethod::{Mtls, Token};

#[test]
fn tracks_the_first_identities_by_name_and_sums_the_rest() {
    let t = Tracker::new(2, true);
    t.record("alice", Token, "/api", Pin::No, 100);
    t.record("alice", Token, "/api", Pin::No, 160);
    t.record("alice", Mtls, "/metrics", Pin::No, 200);
    t.record("bob", Mtls, "/api", Pin::Enforced, 110);
    t.record("carol", Token, "/api", Pin::DryRun, 120);
    t.record("dave", Token, "/x", Pin::No, 130);
    t.record(OTHER, Mtls, "/x", Pin::No, 140);

    let r = t.report();
    let names: Vec<&str> = r.identities.iter().map(|r| r.identity.as_str()).collect();
    assert_eq!(names, ["alice", "bob", "other"]);
    let alice = &r.identities[0].usage;
    assert_eq!(
        alice.token,
        Some(Seen {
            requests: 2,
            first_seen: 100,
            last_seen: 160
        })
    );
    assert_eq!(alice.mtls.map(|s| s.requests), Some(1));
    assert_eq!(alice.routes, ["/api", "/metrics"]);
    assert_eq!(
        alice.last_seen_on,
        [
            LastSeen {
                mtls: 0,
                token: 160
            },
            LastSeen {
                mtls: 200,
                token: 0
            }
        ]
    );
    assert!(r.identities[1].usage.pinned);
    let other = &r.identities[2].usage;
    assert_eq!(other.token.map(|s| s.requests), Some(2));
    assert_eq!(other.mtls.map(|s| s.requests), Some(1));
    assert_eq!(other.routes, ["/api", "/x"]);
    assert!(other.pinned_dry_run && !other.pinned);

    assert_eq!(
        r.summary,
        Summary {
            mtls_requests: 3,
            token_requests: 4,
            identities: 2,
            mtls_only_identities: 1,
            would_refuse: 0,
        }
    );
    let routes: Vec<(&str, u64, u64)> = r
        .routes
        .iter()
        .map(|r| {
            (
                r.route.as_str(),
                r.mtls.map_or(0, |s| s.requests),
                r.token.map_or(0, |s| s.requests),
            )
        })
        .collect();
    assert_eq!(routes, [("/api", 1, 3), ("/metrics", 1, 0), ("/x", 1, 1)]);

    let text = r.to_text();
    assert!(text.starts_with("IDENTITY"), "{text}");
    assert!(text.contains("1970-01-01T00:01:40Z"), "{text}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["identities"][0]["identity"], "alice");
    assert_eq!(json["identities"][0]["token"]["requests"], 2);
    assert_eq!(
        json["identities"][0]["token"]["first_seen"],
        "1970-01-01T00:01:40Z"
    );
    assert!(json["identities"][1].get("token").is_none());
    assert_eq!(json["identities"][2]["pinned_dry_run"], true);
    assert!(json["identities"][0].get("pinned_dry_run").is_none());
    assert_eq!(json["routes"][0]["token"]["requests"], 3);
}
