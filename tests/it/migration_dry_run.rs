//! Dry runs of every migration lever (`enforce: false` on a
//! `migration.mtls_required` entry and on a route closed to tokens): one
//! request set, replayed against the dry-run configuration and against the
//! same configuration enforced. The dry run serves what it served before
//! and counts as would-refuse exactly the requests enforcing then refuses,
//! with the reason enforcing gives.

use std::collections::BTreeMap;

use testkit::*;

const PROM: &str = "system:serviceaccount:monitoring:prom";
const PROM_TOKEN: &str = "prom-token-0c1d2e";

/// `enforce`: the value of every lever's `enforce`.
async fn env(enforce: bool) -> Env {
    Env::start(|y| {
        let up = y.routes.split('"').nth(1).expect("upstream").to_owned();
        y.routes = format!(
            "routes:\n  - {{path_prefix: /, upstream: \"{up}\"}}\n  - {{path_prefix: /mtls, upstream: \"{up}\", auth: {{methods: [mtls], enforce: {enforce}}}}}\n  - {{path_prefix: /forbid, upstream: \"{up}\", auth: {{token: forbidden, enforce: {enforce}}}}}\n  - {{path_prefix: /dep, upstream: \"{up}\", auth: {{token: deprecated}}}}\n"
        );
        y.statics = format!(
            "static:\n  tokens:\n    - {{token: {BOB_TOKEN}, user: bob, groups: [dev]}}\n    - {{token: {CAROL_TOKEN}, user: carol}}\n    - {{token: {PROM_TOKEN}, user: \"{PROM}\", groups: [\"system:serviceaccounts:monitoring\"]}}\n  allow:\n    - {{group: dev, verbs: [get], paths: [\"/**\"]}}\n    - {{group: \"system:serviceaccounts:monitoring\", verbs: [get], paths: [\"/**\"]}}\n"
        );
        // prom is pinned by a lever; carol by an enforced entry always.
        y.rest = format!(
            "migration:\n  mtls_required: [{{glob: \"system:serviceaccount:monitoring:*\", enforce: {enforce}}}, \"eve\"]\n  track_identities: true\n"
        );
        y.identity = SPIFFE_THEN_CN.into();
    })
    .await
}

#[derive(Clone, Copy, Debug)]
enum Cred {
    AliceCert,
    PromCert,
    BobToken,
    PromToken,
    AliceCertAndBobToken,
    BadToken,
    None,
}

async fn call(env: &Env, cred: Cred, path: &str) -> Resp {
    let alice = || env.cert_client("alice", &ClientOpts::cn("alice", &["dev"]));
    let r = match cred {
        Cred::AliceCert => alice().get(path, &[]).await,
        Cred::PromCert => {
            env.cert_client(
                "prom",
                &ClientOpts::spiffe("spiffe://cluster.local/ns/monitoring/sa/prom"),
            )
            .get(path, &[])
            .await
        }
        Cred::BobToken => env.client().get_with_token(path, BOB_TOKEN).await,
        Cred::PromToken => env.client().get_with_token(path, PROM_TOKEN).await,
        Cred::AliceCertAndBobToken => alice().get_with_token(path, BOB_TOKEN).await,
        Cred::BadToken => env.client().get_with_token(path, "not-a-token").await,
        Cred::None => env.client().get(path, &[]).await,
    };
    r.expect("response")
}

/// What happened to each request: (status, reason or the upstream's user).
async fn replay(env: &Env) -> Vec<(String, u16, String)> {
    use Cred::*;
    let mut out = Vec::new();
    for path in ["/api/x", "/mtls/x", "/forbid/x", "/dep/x"] {
        for cred in [
            AliceCert,
            PromCert,
            BobToken,
            PromToken,
            AliceCertAndBobToken,
            BadToken,
            None,
        ] {
            let before = env.upstream.count();
            let r = call(env, cred, path).await;
            let what = if r.status == 200 {
                assert_eq!(env.upstream.count(), before + 1, "{path} {cred:?}");
                env.upstream.last().all("x-remote-user").join(",")
            } else {
                assert_eq!(env.upstream.count(), before, "forwarded: {path} {cred:?}");
                r.reason()
            };
            out.push((format!("{path} {cred:?}"), r.status.as_u16(), what));
        }
    }
    out
}

fn would_refuse(report: &serde_json::Value) -> BTreeMap<(String, String), u64> {
    let mut m = BTreeMap::new();
    for r in report["routes"].as_array().expect("routes") {
        if let Some(w) = r["would_refuse"].as_object() {
            for (reason, n) in w {
                m.insert(
                    (
                        r["route"].as_str().expect("route").to_owned(),
                        reason.clone(),
                    ),
                    n.as_u64().expect("count"),
                );
            }
        }
    }
    m
}

#[tokio::test]
async fn a_dry_run_serves_and_counts_exactly_what_enforcing_refuses() {
    let dry = env(false).await;
    let enforced = env(true).await;
    let served_dry = replay(&dry).await;
    let served_enforced = replay(&enforced).await;

    // Nothing the dry run refuses is served when enforced, and every
    // difference is a dry-run request served that enforcing refuses.
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (d, e) in served_dry.iter().zip(&served_enforced) {
        assert_eq!(d.0, e.0);
        if d.1 != 200 {
            // The reason may differ (a bad token is rejected when read, and
            // not read at all when enforced); the refusal may not.
            assert_eq!(
                d.1, e.1,
                "refused in the dry run, so when enforced too: {d:?} {e:?}"
            );
        } else if e.1 != 200 {
            assert!(
                matches!(e.2.as_str(), "mtls_required" | "token_forbidden"),
                "{e:?}"
            );
            let route = format!("/{}", d.0.split('/').nth(1).expect("route"));
            let route = if route == "/api" {
                "/".to_owned()
            } else {
                route
            };
            *expected.entry((route, e.2.clone())).or_default() += 1;
        } else {
            assert_eq!(d, e, "served both ways, the same");
        }
    }
    // The request set exercises both levers.
    let lever = |reason: &str| expected.keys().filter(|(_, r)| r == reason).count();
    assert!(
        lever("mtls_required") >= 2 && lever("token_forbidden") >= 2,
        "{expected:?}"
    );

    // Counted in the metric and in /migration, by route and reason; never
    // when enforced.
    for ((route, reason), n) in &expected {
        let series =
            format!("authgate_would_refuse_total{{route=\"{route}\",reason=\"{reason}\"}}");
        assert_eq!(dry.gate.metric(&series).await, *n as f64, "{series}");
        assert_eq!(enforced.gate.metric(&series).await, 0.0, "{series}");
    }
    let (_, body) = dry.gate.admin("GET", "/migration").await;
    let report: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(would_refuse(&report), expected, "{body}");
    let total: u64 = expected.values().sum();
    assert_eq!(report["summary"]["would_refuse"], total, "{body}");
    let prom = report["identities"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["identity"] == PROM)
        .expect("prom's row");
    assert_eq!(prom["pinned_dry_run"], true, "{body}");
    assert_eq!(prom["pinned"], false, "{body}");
    assert!(prom["would_refuse"].as_u64().expect("count") >= 2, "{body}");
    let (_, body) = enforced.gate.admin("GET", "/migration").await;
    let report: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert!(would_refuse(&report).is_empty(), "{body}");

    // The dry run answers exactly as before the levers: the same requests
    // against a configuration without them.
    let before = Env::start(|y| {
        let up = y.routes.split('"').nth(1).expect("upstream").to_owned();
        y.routes = format!(
            "routes:\n  - {{path_prefix: /, upstream: \"{up}\"}}\n  - {{path_prefix: /mtls, upstream: \"{up}\"}}\n  - {{path_prefix: /forbid, upstream: \"{up}\"}}\n  - {{path_prefix: /dep, upstream: \"{up}\", auth: {{token: deprecated}}}}\n"
        );
        y.statics = format!(
            "static:\n  tokens:\n    - {{token: {BOB_TOKEN}, user: bob, groups: [dev]}}\n    - {{token: {CAROL_TOKEN}, user: carol}}\n    - {{token: {PROM_TOKEN}, user: \"{PROM}\", groups: [\"system:serviceaccounts:monitoring\"]}}\n  allow:\n    - {{group: \"system:authenticated\", verbs: [get], paths: [\"/**\"]}}\n"
        );
        y.rest = "migration:\n  mtls_required: [\"eve\"]\n".into();
        y.identity = SPIFFE_THEN_CN.into();
    })
    .await;
    assert_eq!(replay(&before).await, served_dry);
}

#[tokio::test]
async fn a_refusal_for_another_reason_is_not_a_would_refuse() {
    let dry = env(false).await;
    // carol's token authenticates on the dry-run route, but she may not get:
    // refused anyway, so enforcing would change nothing for this request.
    let r = dry
        .client()
        .get_with_token("/mtls/x", CAROL_TOKEN)
        .await
        .expect("response");
    assert_eq!(
        (r.status.as_u16(), r.reason()),
        (403, "forbidden".to_owned())
    );
    let r = dry
        .client()
        .get_with_token("/mtls/x", "not-a-token")
        .await
        .expect("response");
    assert_eq!(r.status, 401);
    let (_, body) = dry.gate.admin("GET", "/migration").await;
    let report: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert!(would_refuse(&report).is_empty(), "{body}");
}
