//! Adversarial review (review-a): defects found in the rewrites, proven.

use super::param_rewrites::rewrite_gate;
use super::*;

const TENANT: &str = "routes:\n  - path_prefix: /\n    upstream: \"http://127.0.0.1:9\"\n    resource: {resource: pods, namespace: \"{{ .Value }}\"}\n    rewrites: {header: X-Scope-OrgID}\n";

const NAMESPACE_PARAMETER: &str = "routes:\n  - path_prefix: /\n    upstream: \"http://127.0.0.1:9\"\n    resource: {resource: pods, namespace: \"{{ .Value }}\"}\n    rewrites: {query_parameter: namespace}\n";

/// A gate of `rest` that allows resource checks in team-a only, and alice's
/// connection to it.
fn team_a_gate(s: &Setup, rest: &str) -> (Harness, ConnInfo) {
    let (h, _) = rewrite_gate(s, rest, &["team-a"]);
    let alice = h.with_cert(&s.cert("alice", Some("alice"), &[], &[]));
    (h, alice)
}

/// A client names the rewrite header in `Connection`: authgate authorizes
/// (and pins) team-a, then the hop-by-hop strip removes the pinned header,
/// so the upstream sees no tenant at all (Thanos/Loki then fall back to
/// their default tenant), a value that was never authorized.
#[tokio::test]
async fn review_a_connection_cannot_strip_the_pinned_rewrite_header() {
    let s = Setup::new();
    for consume in ["pin", "keep"] {
        let rest = TENANT.replace(
            "X-Scope-OrgID}",
            &format!("X-Scope-OrgID, consume: {consume}}}"),
        );
        let (h, alice) = team_a_gate(&s, &rest);
        let r = h
            .send(
                &alice,
                get(
                    "/api/v1/query?query=up",
                    &[("x-scope-orgid", "team-a"), ("connection", "x-scope-orgid")],
                ),
            )
            .await;
        if r.status == 200 {
            let seen = h.only_seen();
            assert_eq!(
                seen.all("x-scope-orgid"),
                ["team-a"],
                "consume: {consume}: the upstream must see the authorized tenant, not none"
            );
        } else {
            h.nothing_forwarded();
        }
    }
}

/// `namespace[0]=kube-system` is neither read nor refused nor consumed:
/// the upstream gets it next to the pinned `namespace=team-a`, and a `qs`
/// or PHP upstream reads kube-system as a namespace the client asked for.
#[tokio::test]
async fn review_a_bracketed_parameter_never_reaches_the_upstream_unauthorized() {
    let s = Setup::new();
    let (h, alice) = team_a_gate(&s, NAMESPACE_PARAMETER);
    let r = h
        .send(
            &alice,
            get(
                "/api/v1/pods?namespace[0]=kube-system&namespace=team-a",
                &[],
            ),
        )
        .await;
    if r.status == 200 {
        let seen = h.only_seen();
        assert!(
            !seen.path_and_query.contains("kube-system"),
            "forwarded unauthorized: {}",
            seen.path_and_query
        );
    } else {
        h.nothing_forwarded();
    }
}

/// A form-encoded POST carries the parameter in its body, which authgate
/// never reads: Go's `r.Form`/`r.FormValue` (prom-label-proxy's
/// `HTTPFormEnforcer`, Prometheus' own API) merge body values with the
/// query's, so `POST /api/v1/query?namespace=team-a` with the body
/// `namespace=kube-system` makes the upstream see kube-system, never
/// authorized. (The harness sends no body bytes; the request is forwarded
/// with its form content type all the same, and a body would go unread.)
#[tokio::test]
async fn review_a_form_bodies_cannot_carry_an_unauthorized_value() {
    let s = Setup::new();
    let (h, alice) = team_a_gate(&s, NAMESPACE_PARAMETER);
    let r = h
        .send(
            &alice,
            request(
                Method::POST,
                "/api/v1/query?namespace=team-a",
                &[("content-type", "application/x-www-form-urlencoded")],
            ),
        )
        .await;
    assert_ne!(
        r.status, 200,
        "a form body on a query-parameter rewrite route is forwarded unread"
    );
    h.nothing_forwarded();
}
