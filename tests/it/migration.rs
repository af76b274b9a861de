//! Migration policy over real TLS: every route policy x credential x pinning
//! combination with its exact status, Warning header and reason; the
//! `/migration` report and the identity metric after a mixed workload.

use testkit::*;

const PROM: &str = "system:serviceaccount:monitoring:prom";
const PROM_TOKEN: &str = "prom-token-0c1d2e";
const WARNING: &str = "299 authgate \"bearer token authentication is deprecated on this route; use a client certificate\"";

async fn env() -> Env {
    Env::start(|y| {
        let up = y.routes.split('"').nth(1).expect("upstream").to_owned();
        y.routes = format!(
            "routes:\n  - {{path_prefix: /, upstream: \"{up}\"}}\n  - {{path_prefix: /dep, upstream: \"{up}\", auth: {{token: deprecated}}}}\n  - {{path_prefix: /mtls, upstream: \"{up}\", auth: {{methods: [mtls]}}}}\n  - {{path_prefix: /forbid, upstream: \"{up}\", auth: {{token: forbidden}}}}\n  - {{path_prefix: /tok, upstream: \"{up}\", auth: {{methods: [token]}}}}\n"
        );
        y.statics = format!(
            "static:\n  tokens:\n    - {{token: {BOB_TOKEN}, user: bob, groups: [dev]}}\n    - {{token: {PROM_TOKEN}, user: \"{PROM}\", groups: [\"system:serviceaccounts\", \"system:serviceaccounts:monitoring\"]}}\n  allow:\n    - {{group: \"system:authenticated\", verbs: [get], paths: [\"/**\"]}}\n"
        );
        y.rest = "migration:\n  mtls_required: [\"system:serviceaccount:monitoring:*\"]\n  track_identities: true\n".into();
        y.identity = SPIFFE_THEN_CN.into();
    })
    .await
}

#[derive(Clone, Copy, Debug)]
enum Cred {
    /// alice's CN certificate.
    AliceCert,
    /// prom's SPIFFE certificate (pinned identity).
    PromCert,
    /// bob's token.
    BobToken,
    /// prom's token (pinned identity).
    PromToken,
    /// alice's certificate and bob's token together.
    AliceCertAndBobToken,
}

async fn call(env: &Env, cred: Cred, path: &str) -> Resp {
    let alice = || env.cert_client("alice", &ClientOpts::cn("alice", &["dev"]));
    let prom = || {
        env.cert_client(
            "prom",
            &ClientOpts::spiffe("spiffe://cluster.local/ns/monitoring/sa/prom"),
        )
    };
    let r = match cred {
        Cred::AliceCert => alice().get(path, &[]).await,
        Cred::PromCert => prom().get(path, &[]).await,
        Cred::BobToken => env.client().get_with_token(path, BOB_TOKEN).await,
        Cred::PromToken => env.client().get_with_token(path, PROM_TOKEN).await,
        Cred::AliceCertAndBobToken => alice().get_with_token(path, BOB_TOKEN).await,
    };
    r.expect("response")
}

#[tokio::test]
async fn every_route_policy_credential_and_pinning_combination() {
    use Cred::*;
    let env = env().await;
    // (path, credential, status, reason or the user the upstream sees, Warning)
    let cases: &[(&str, Cred, u16, &str, bool)] = &[
        // token: allowed (default)
        ("/api/x", AliceCert, 200, "alice", false),
        ("/api/x", PromCert, 200, PROM, false),
        ("/api/x", BobToken, 200, "bob", false),
        ("/api/x", PromToken, 401, "mtls_required", false),
        ("/api/x", AliceCertAndBobToken, 200, "alice", false),
        // token: deprecated
        ("/dep/x", AliceCert, 200, "alice", false),
        ("/dep/x", PromCert, 200, PROM, false),
        ("/dep/x", BobToken, 200, "bob", true),
        ("/dep/x", PromToken, 401, "mtls_required", false),
        ("/dep/x", AliceCertAndBobToken, 200, "alice", false),
        // methods: [mtls]
        ("/mtls/x", AliceCert, 200, "alice", false),
        ("/mtls/x", PromCert, 200, PROM, false),
        ("/mtls/x", BobToken, 401, "token_forbidden", false),
        ("/mtls/x", PromToken, 401, "token_forbidden", false),
        ("/mtls/x", AliceCertAndBobToken, 200, "alice", false),
        // token: forbidden
        ("/forbid/x", AliceCert, 200, "alice", false),
        ("/forbid/x", BobToken, 401, "token_forbidden", false),
        ("/forbid/x", PromToken, 401, "token_forbidden", false),
        // methods: [token]
        ("/tok/x", AliceCert, 401, "cert_not_accepted", false),
        ("/tok/x", PromCert, 401, "cert_not_accepted", false),
        ("/tok/x", BobToken, 200, "bob", false),
        ("/tok/x", PromToken, 401, "mtls_required", false),
        ("/tok/x", AliceCertAndBobToken, 200, "bob", false),
    ];
    for &(path, cred, status, what, warned) in cases {
        let before = env.upstream.count();
        let r = call(&env, cred, path).await;
        let ctx = format!("{path} {cred:?}: {:?}", r.body);
        assert_eq!(r.status, status, "{ctx}");
        let warning: Vec<_> = r.headers.get_all("warning").iter().collect();
        if warned {
            assert_eq!(warning, [WARNING], "{ctx}");
        } else {
            assert!(warning.is_empty(), "{ctx}");
        }
        if status == 200 {
            assert_eq!(env.upstream.count(), before + 1, "{ctx}");
            assert_eq!(env.upstream.last().all("x-remote-user"), [what], "{ctx}");
        } else {
            assert_eq!(env.upstream.count(), before, "forwarded: {ctx}");
            assert_eq!(r.reason(), what, "{ctx}");
            assert!(
                !String::from_utf8_lossy(&r.body).contains(PROM_TOKEN)
                    && !String::from_utf8_lossy(&r.body).contains(BOB_TOKEN),
                "{ctx}"
            );
        }
    }
    let msg = call(&env, PromToken, "/api/x").await.json()["message"].clone();
    assert_eq!(
        msg,
        format!(
            "{PROM} must authenticate with a client certificate; its bearer tokens are refused"
        )
    );
    let msg = call(&env, BobToken, "/mtls/x").await.json()["message"].clone();
    assert_eq!(
        msg,
        "bearer tokens are not accepted on this route; use a client certificate"
    );
    assert_eq!(
        env.gate
            .metric("authgate_deprecated_token_requests_total{route=\"/dep\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn the_report_lists_methods_counts_routes_and_pinning_per_identity() {
    use Cred::*;
    let env = env().await;
    let workload: &[(Cred, &str, usize)] = &[
        (AliceCert, "/api/a", 3),
        (AliceCert, "/mtls/a", 2),
        (BobToken, "/api/b", 4),
        (BobToken, "/dep/b", 1),
        (PromToken, "/api/c", 2), // refused: pinned, still reported
        (PromCert, "/api/c", 5),
    ];
    for &(cred, path, n) in workload {
        for _ in 0..n {
            call(&env, cred, path).await;
        }
    }

    let (status, body) = env.gate.admin("GET", "/migration").await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rows = report["identities"].as_array().unwrap();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["identity"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {body}"))
    };
    // Token users first.
    let order: Vec<&str> = rows
        .iter()
        .map(|r| r["identity"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["bob", PROM, "alice"], "{body}");

    let alice = row("alice");
    assert_eq!(alice["mtls"]["requests"], 5);
    assert!(alice.get("token").is_none());
    assert_eq!(alice["routes"], serde_json::json!(["/", "/mtls"]));
    assert_eq!(alice["pinned"], false);

    let bob = row("bob");
    assert_eq!(bob["token"]["requests"], 5);
    assert!(bob.get("mtls").is_none());
    assert_eq!(bob["routes"], serde_json::json!(["/", "/dep"]));
    let first = bob["token"]["first_seen"].as_str().unwrap();
    assert!(first.ends_with('Z') && first.len() == 20, "{first}");

    let prom = row(PROM);
    assert_eq!(prom["token"]["requests"], 2);
    assert_eq!(prom["mtls"]["requests"], 5);
    assert_eq!(prom["pinned"], true);

    let (status, text) = env.gate.admin("GET", "/migration?format=text").await;
    assert_eq!(status, 200);
    let bob_line = text.lines().find(|l| l.starts_with("bob ")).unwrap();
    let cols: Vec<&str> = bob_line.split_whitespace().collect();
    assert_eq!(cols[..4], ["bob", "no", "0", "5"], "{text}");

    let m = |identity: &str, method: &str| {
        format!("authgate_identity_requests_total{{identity=\"{identity}\",method=\"{method}\"}}")
    };
    assert_eq!(env.gate.metric(&m("bob", "token")).await, 5.0);
    assert_eq!(env.gate.metric(&m("alice", "mtls")).await, 5.0);
    assert_eq!(env.gate.metric(&m(PROM, "token")).await, 2.0);
}

#[tokio::test]
async fn without_tracking_the_metric_counts_methods_only_and_beyond_the_bound_is_other() {
    let env = Env::start(|y| {
        y.rest = "migration:\n  max_identities: 1\n".into();
    })
    .await;
    let alice = env.cert_client("alice", &ClientOpts::cn("alice", &["dev"]));
    alice.get("/api/x", &[]).await.unwrap();
    env.client()
        .get_with_token("/api/x", BOB_TOKEN)
        .await
        .unwrap();
    env.client()
        .get_with_token("/api/x", BOB_TOKEN)
        .await
        .unwrap();
    assert_eq!(
        env.gate
            .metric("authgate_identity_requests_total{method=\"token\"}")
            .await,
        2.0
    );
    assert_eq!(
        env.gate
            .metric("authgate_identity_requests_total{method=\"mtls\"}")
            .await,
        1.0
    );
    let (_, body) = env.gate.admin("GET", "/migration").await;
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = report["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["identity"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "other"], "{body}");
    assert_eq!(report["identities"][1]["token"]["requests"], 2);
}
