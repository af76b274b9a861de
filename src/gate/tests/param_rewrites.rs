//! `routes[].rewrites` and resource lists through the whole pipeline: what
//! the authorizers are asked, and what the upstream receives.

use std::sync::Mutex as StdMutex;

use super::*;
use crate::BoxFuture;
use crate::authz::attributes::{Attributes, Target};
use crate::authz::{Authorizer, Authorizers, Decision};
use crate::backend::BackendError;
use crate::identity::Identity;

/// Allows resource checks in the listed namespaces (or with the listed
/// resource), records every check it is asked. review_a uses it too.
#[derive(Default)]
pub(super) struct Namespaces {
    allowed: Vec<&'static str>,
    asked: StdMutex<Vec<Attributes>>,
}

impl Authorizer for Namespaces {
    fn authorize<'a>(
        &'a self,
        _: &'a Identity,
        attrs: &'a Attributes,
    ) -> BoxFuture<'a, Result<Decision, BackendError>> {
        self.asked.lock().unwrap().push(attrs.clone());
        let ok = match &attrs.target {
            Target::Resource(r) => {
                self.allowed.contains(&r.namespace.as_str())
                    || self.allowed.contains(&r.resource.as_str())
            }
            Target::NonResource { .. } => false,
        };
        Box::pin(std::future::ready(Ok(if ok {
            Decision::Allow
        } else {
            Decision::NoOpinion
        })))
    }
}

const PROM_LABEL_PROXY: &str = "routes:\n  - path_prefix: /\n    upstream: \"http://127.0.0.1:9\"\n    resource: {resource: pods, namespace: \"{{ .Value }}\"}\n    rewrites: {query_parameter: namespace, header: X-Scope-OrgID}\n";

/// A gate of `rest` whose only authorizer is a [`Namespaces`] allowing `allowed`.
pub(super) fn rewrite_gate(
    s: &Setup,
    rest: &str,
    allowed: &[&'static str],
) -> (Harness, Arc<Namespaces>) {
    let authz = Arc::new(Namespaces {
        allowed: allowed.to_vec(),
        ..Namespaces::default()
    });
    let a = authz.clone();
    let h = s.gate_with(rest, move |p| {
        p.authz = Authorizers::new(vec![a as Arc<dyn Authorizer>]);
    });
    (h, authz)
}

fn asked(a: &Namespaces) -> Vec<String> {
    std::mem::take(&mut *a.asked.lock().unwrap())
        .into_iter()
        .map(|x| match x.target {
            Target::Resource(r) => format!("{} {}/{}", x.verb, r.resource, r.namespace),
            Target::NonResource { path } => format!("{} {path}", x.verb),
        })
        .collect()
}

#[tokio::test]
async fn a_second_copy_of_the_parameter_is_authorized_too_and_never_forwarded_unauthorized() {
    let s = Setup::new();
    let (h, authz) = rewrite_gate(&s, PROM_LABEL_PROXY, &["team-a"]);
    let alice = h.with_cert(&s.cert("alice", Some("alice"), &[], &[]));

    let r = h
        .send(&alice, get("/api/v1/query?query=up&namespace=team-a", &[]))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        h.only_seen().path_and_query,
        "/api/v1/query?query=up&namespace=team-a"
    );
    assert_eq!(asked(&authz), ["get pods/team-a"]);

    // A second copy (plain, percent-encoded, or in the header) is checked
    // on its own and refused: nothing reaches the upstream.
    for (uri, hdrs) in [
        ("/api/v1/query?namespace=team-a&namespace=team-b", vec![]),
        ("/api/v1/query?namespace=team-a&%6Eamespace=team-b", vec![]),
        (
            "/api/v1/query?namespace=team-a",
            vec![("x-scope-orgid", "team-b")],
        ),
        (
            "/api/v1/query?namespace=team-a",
            vec![("x-scope-orgid", "team-a, team-b")],
        ),
    ] {
        let r = h.send(&alice, get(uri, &hdrs)).await;
        assert_eq!(
            r.status_reason(),
            (403, "forbidden".into()),
            "{uri} {hdrs:?}"
        );
        assert!(r.message().contains("\"team-b\""), "{}", r.message());
        h.nothing_forwarded();
        assert!(asked(&authz).contains(&"get pods/team-b".to_owned()));
    }
}

#[tokio::test]
async fn pinned_values_replace_every_client_spelling() {
    let s = Setup::new();
    let (h, _) = rewrite_gate(&s, PROM_LABEL_PROXY, &["team-a", "team-b"]);
    let alice = h.with_cert(&s.cert("alice", Some("alice"), &[], &[]));
    let r = h
        .send(
            &alice,
            get(
                "/q?%6Eamespace=team-a&query=up&namespace=%74eam-b",
                &[("X-Scope-OrgID", "team-b,team-a")],
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = h.only_seen();
    assert_eq!(
        seen.path_and_query,
        "/q?query=up&namespace=team-a&namespace=team-b"
    );
    assert_eq!(seen.all("x-scope-orgid"), ["team-b", "team-a"]);
}

#[tokio::test]
async fn hostile_spellings_are_refused_with_400_before_any_check() {
    let s = Setup::new();
    let (h, authz) = rewrite_gate(&s, PROM_LABEL_PROXY, &["team-a"]);
    let alice = h.with_cert(&s.cert("alice", Some("alice"), &[], &[]));
    for (uri, hdrs) in [
        ("/q?namespace=team-a;namespace=kube-system", vec![]),
        ("/q?namespace=team-a&Namespace=kube-system", vec![]),
        ("/q?namespace=", vec![]),
        ("/q?namespace", vec![]),
        ("/q?namespace=*", vec![]),
        ("/q?namespace=team+a", vec![]),
        ("/q?namespace=%7B%7B.Value%7D%7D", vec![]),
        ("/q?namespace=Team-A", vec![]),
        ("/q?n%zzamespace=x&namespace=team-a", vec![]),
        ("/q", vec![]),
        (
            "/q?namespace=team-a",
            vec![("x_scope_orgid", "kube-system")],
        ),
        ("/q?namespace=team-a", vec![("x-scope-orgid", "")]),
    ] {
        let r = h.send(&alice, get(uri, &hdrs)).await;
        assert_eq!(
            r.status_reason(),
            (400, "bad_request".into()),
            "{uri} {hdrs:?}"
        );
        h.nothing_forwarded();
    }
    assert!(asked(&authz).is_empty(), "nothing malformed is reviewed");
}

#[tokio::test]
async fn removed_parameters_never_reach_the_upstream() {
    let s = Setup::new();
    let rest = PROM_LABEL_PROXY.replace("X-Scope-OrgID}", "X-Scope-OrgID, consume: remove}");
    let (h, _) = rewrite_gate(&s, &rest, &["team-a"]);
    let alice = h.with_cert(&s.cert("alice", Some("alice"), &[], &[]));
    let r = h
        .send(
            &alice,
            get("/q?namespace=team-a&x=1", &[("x-scope-orgid", "team-a")]),
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = h.only_seen();
    assert_eq!(seen.path_and_query, "/q?x=1");
    assert_eq!(seen.header("x-scope-orgid"), None);
}

#[tokio::test]
async fn every_resource_of_a_list_must_allow() {
    let s = Setup::new();
    let rest = "routes:\n  - path_prefix: /\n    upstream: \"http://127.0.0.1:9\"\n    resource:\n      - {resource: namespaces, verb: get}\n      - {resource: silences, namespace: monitoring, verb: patch}\n";
    let alice = s.cert("alice", Some("alice"), &[], &[]);
    let (h, authz) = rewrite_gate(&s, rest, &["namespaces", "monitoring"]);
    let r = h
        .send(&h.with_cert(&alice), get("/api/v2/silences", &[]))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        asked(&authz),
        ["get namespaces/", "patch silences/monitoring"]
    );
    h.only_seen();
    // Allowed one but not the other: 403, naming the one refused.
    let (h, authz) = rewrite_gate(&s, rest, &["namespaces"]);
    let r = h
        .send(&h.with_cert(&alice), get("/api/v2/silences", &[]))
        .await;
    assert_eq!(r.status_reason(), (403, "forbidden".into()));
    assert!(
        r.message().contains("may not patch resource \"silences\""),
        "{}",
        r.message()
    );
    assert_eq!(
        asked(&authz),
        ["get namespaces/", "patch silences/monitoring"]
    );
    h.nothing_forwarded();
}
