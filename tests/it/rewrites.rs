//! `authorization.rewrites` and resource lists against the fake Kubernetes
//! API: kube-rbac-proxy's rewrite examples through its own flags, one
//! SubjectAccessReview per value, each cached on its own, and what the
//! echo upstream receives.

use std::process::{Command, Stdio};

use testkit::*;

const BIN: &str = env!("CARGO_BIN_EXE_authgate");

/// `authgate serve` with kube-rbac-proxy's flags and `config_file` as its
/// `--config-file`, in front of `upstream`, reviewing against `api`.
async fn krp_sidecar(
    pki: &Pki,
    api: &FakeApi,
    upstream: &Upstream,
    config_file: &str,
    extra: &[&str],
) -> (Running, Client) {
    let path = pki.path().join(format!("krp-{}.yaml", free_port()));
    std::fs::write(&path, config_file).expect("write --config-file");
    let port = free_port();
    let d = pki.path().display();
    let mut args = vec![
        format!("--secure-listen-address=127.0.0.1:{port}"),
        format!("--upstream=http://{}/", upstream.addr),
        format!("--tls-cert-file={d}/server.crt"),
        format!("--tls-private-key-file={d}/server.key"),
        format!("--kubeconfig={}", api.kubeconfig.display()),
        format!("--config-file={}", path.display()),
        "--logtostderr=true".into(),
        "--v=10".into(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let child = Command::new(BIN)
        .arg("serve")
        .args(&args)
        .stderr(Stdio::null())
        .spawn()
        .expect("authgate serve");
    let running = Running(child);
    wait_for_port(port).await;
    (
        running,
        Client::new(([127, 0, 0, 1], port).into(), &pki.ca_der),
    )
}

const DEFAULT_SA: &str = "system:serviceaccount:default:default";

/// GET `uri` with `sa-token`, `DEFAULT_SA`'s token.
async fn as_sa(c: &Client, uri: &str) -> Resp {
    c.get_with_token(uri, "sa-token").await.expect("a response")
}

/// examples/rewrites: `resourceAttributes` templated by the `namespace`
/// query parameter; a RoleBinding lets `default:default` get
/// `namespace/metrics` in `default`. Its client curls `/metrics?namespace=default`.
#[tokio::test(flavor = "multi_thread")]
async fn kube_rbac_proxys_rewrites_example_loads_and_behaves_as_documented() {
    let pki = Pki::new();
    let api = FakeApi::start(&pki).await;
    api.add_token("sa-token", DEFAULT_SA, &["system:serviceaccounts"]);
    api.allow(
        Rule::user(DEFAULT_SA)
            .verb("get")
            .resource("namespace")
            .subresource("metrics")
            .namespace("default"),
    );
    let upstream = Upstream::start().await;
    let example = "authorization:\n  rewrites:\n    byQueryParameter:\n      name: \"namespace\"\n  resourceAttributes:\n    apiVersion: v1\n    resource: namespace\n    subresource: metrics\n    namespace: \"{{ .Value }}\"\n";
    let (_krp, c) = krp_sidecar(&pki, &api, &upstream, example, &[]).await;

    // The example client's request: allowed, with the namespace templated in.
    let r = as_sa(&c, "/metrics?namespace=default").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(upstream.last().path, "/metrics?namespace=default");
    let sar = &api.access_review_specs()[0];
    let ra = &sar["resourceAttributes"];
    assert_eq!(
        (
            &ra["namespace"],
            &ra["resource"],
            &ra["subresource"],
            &ra["version"],
            &ra["verb"]
        ),
        (
            &"default".into(),
            &"namespace".into(),
            &"metrics".into(),
            &"v1".into(),
            &"get".into()
        )
    );
    // Without the parameter (kube-rbac-proxy issue #65: "the parameter must
    // be provided"): 400, no review.
    let before = api.access_reviews();
    let r = as_sa(&c, "/metrics").await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (400, "bad_request")
    );
    assert_eq!(api.access_reviews(), before);
    // Another namespace: no RoleBinding there.
    let r = as_sa(&c, "/metrics?namespace=kube-system").await;
    assert_eq!(r.status, 403);
    // The allowed namespace plus a second copy for another: refused, and
    // nothing more reached the upstream.
    let n = upstream.count();
    let r = as_sa(&c, "/metrics?namespace=default&namespace=kube-system").await;
    assert_eq!(r.status, 403);
    assert_eq!(upstream.count(), n);
    bodies_that_could_carry_the_parameter_are_refused(&api, &c, &upstream).await;
}

/// Review: a body an upstream framework could read the parameter from
/// (untyped: Rack; JSON: Rails) is 400 before any review; a YAML one is
/// reviewed and served.
async fn bodies_that_could_carry_the_parameter_are_refused(
    api: &FakeApi,
    c: &Client,
    upstream: &Upstream,
) {
    let n = upstream.count();
    api.allow(
        Rule::user(DEFAULT_SA)
            .verb("create")
            .resource("namespace")
            .subresource("metrics")
            .namespace("default"),
    );
    let post = |content_type: Option<&str>| {
        let mut b = http::Request::post("/metrics?namespace=default")
            .header("authorization", "Bearer sa-token");
        if let Some(t) = content_type {
            b = b.header("content-type", t);
        }
        b.body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"namespace=kube-system",
        )))
        .expect("request")
    };
    let before = api.access_reviews();
    for t in [None, Some("application/json")] {
        let r = c.send(post(t)).await.expect("a response");
        assert_eq!(
            (r.status.as_u16(), r.reason().as_str()),
            (400, "bad_request"),
            "{t:?}"
        );
    }
    assert_eq!((api.access_reviews(), upstream.count()), (before, n));
    let r = c
        .send(post(Some("application/yaml")))
        .await
        .expect("a response");
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(upstream.count(), n + 1);
}

/// kube-rbac-proxy's e2e "allow-header-rewrite-static": the `x-namespace`
/// header templates `namespaces` checks; a static rule grants one user
/// kube-system, RBAC grants another user `default`.
#[tokio::test(flavor = "multi_thread")]
async fn the_header_rewrite_with_static_rules_behaves_as_kube_rbac_proxys_e2e_says() {
    let pki = Pki::new();
    let api = FakeApi::start(&pki).await;
    let (with_static, with_rbac) = (
        "system:serviceaccount:default:client-with-static",
        "system:serviceaccount:default:client-with-rbac",
    );
    api.add_token("static-token", with_static, &["system:serviceaccounts"]);
    api.add_token("rbac-token", with_rbac, &["system:serviceaccounts"]);
    api.allow(
        Rule::user(with_rbac)
            .verb("get")
            .resource("namespaces")
            .namespace("default"),
    );
    let upstream = Upstream::start().await;
    let config = format!(
        "authorization:\n  rewrites:\n    byHttpHeader:\n      name: \"x-namespace\"\n  resourceAttributes:\n    resource: namespaces\n    namespace: \"{{{{ .Value }}}}\"\n  static:\n    - user:\n        name: {with_static}\n      resourceRequest: true\n      resource: namespaces\n      namespace: kube-system\n      verb: get\n"
    );
    let (_krp, c) = krp_sidecar(&pki, &api, &upstream, &config, &["--allow-paths=/metrics"]).await;
    let get = |token: &'static str, ns: &'static str| {
        let c = c.clone();
        async move {
            let auth = format!("Bearer {token}");
            let mut h = vec![("authorization", auth.as_str())];
            if !ns.is_empty() {
                h.push(("x-namespace", ns));
            }
            c.get("/metrics", &h).await.unwrap().status.as_u16()
        }
    };
    // granted-by-static: no review needed.
    let before = api.access_reviews();
    assert_eq!(get("static-token", "kube-system").await, 200);
    assert_eq!(api.access_reviews(), before, "the static rule decides");
    assert_eq!(upstream.last().all("x-namespace"), ["kube-system"]);
    // granted-by-rbac.
    assert_eq!(get("rbac-token", "default").await, 200);
    // forbidden-by-rewrite and forbidden-by-rewrite-for-sa.
    assert_eq!(get("rbac-token", "forbidden").await, 403);
    assert_eq!(get("rbac-token", "kube-system").await, 403);
    // forbidden-path (--allow-paths): 404 before anything else.
    let r = c.get_with_token("/forbidden", "rbac-token").await.unwrap();
    assert_eq!(r.status, 404);
}

/// A gate with `routes` reviewing against a fresh fake API; bob's token is
/// a ServiceAccount's.
async fn native(routes: &str) -> (FakeApi, Upstream, Gate, Pki) {
    let pki = Pki::new();
    let api = FakeApi::start(&pki).await;
    api.add_token("sa-token", DEFAULT_SA, &["system:serviceaccounts"]);
    let upstream = Upstream::start().await;
    let mut y = Yaml::new(&pki, upstream.addr);
    y.routes = routes.replace("UPSTREAM", &upstream.addr.to_string());
    y.rest = format!(
        "kubernetes:\n  kubeconfig: {}\n  timeout: 2s\naccess_review: {{cache: {{jitter: 0, refresh_ahead: 0}}}}\n",
        api.kubeconfig.display()
    );
    let gate = Gate::start(&y.render()).await;
    (api, upstream, gate, pki)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_review_per_value_each_cached_on_its_own() {
    let (api, upstream, gate, pki) = native(
        "routes:\n  - path_prefix: /\n    upstream: \"http://UPSTREAM\"\n    resource: {resource: pods, namespace: \"{{ .Value }}\"}\n    rewrites: {query_parameter: namespace}\n",
    )
    .await;
    for ns in ["a", "b", "c"] {
        api.allow(
            Rule::user(DEFAULT_SA)
                .verb("get")
                .resource("pods")
                .namespace(ns),
        );
    }
    let c = gate.client(&pki);
    let r = as_sa(&c, "/q?namespace=a&namespace=b").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(api.access_reviews(), 2, "one review per value");
    let namespaces: Vec<_> = api
        .access_review_specs()
        .iter()
        .map(|s| {
            s["resourceAttributes"]["namespace"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(namespaces, ["a", "b"]);
    // The same values again: both decisions come from the cache.
    let r = as_sa(&c, "/q?namespace=b&namespace=a").await;
    assert_eq!(r.status, 200);
    assert_eq!(api.access_reviews(), 2);
    // One cached, one new: one more review.
    let r = as_sa(&c, "/q?namespace=a&namespace=c&namespace=a").await;
    assert_eq!(r.status, 200);
    assert_eq!(api.access_reviews(), 3);
    assert_eq!(upstream.last().path, "/q?namespace=a&namespace=c");
    // Not allowed in d: refused, and d's answer is cached too.
    for _ in 0..2 {
        let r = as_sa(&c, "/q?namespace=a&namespace=d").await;
        assert_eq!(r.status, 403);
    }
    assert_eq!(api.access_reviews(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_check_of_a_resource_list_is_reviewed_and_cached_alone() {
    let (api, upstream, gate, pki) = native(
        "routes:\n  - path_prefix: /\n    upstream: \"http://UPSTREAM\"\n    resource:\n      - {resource: namespaces, verb: get}\n      - {resource: silences, group: monitoring.coreos.com, namespace: monitoring}\n",
    )
    .await;
    api.allow(Rule::user(DEFAULT_SA).verb("get").resource("namespaces"));
    api.allow(
        Rule::user(DEFAULT_SA)
            .verb("get")
            .resource("silences")
            .namespace("monitoring"),
    );
    let c = gate.client(&pki);
    assert_eq!(as_sa(&c, "/api/v2/silences").await.status, 200);
    assert_eq!(api.access_reviews(), 2);
    assert_eq!(as_sa(&c, "/api/v2/silences").await.status, 200);
    assert_eq!(api.access_reviews(), 2, "both cached");
    // POST: `create` on silences (not granted), `get` on namespaces (cached).
    let req = http::Request::post("/api/v2/silences")
        .header("authorization", "Bearer sa-token")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let n = upstream.count();
    let r = c.send(req).await.unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(api.access_reviews(), 3);
    let last = api.access_review_specs().pop().unwrap();
    assert_eq!(last["resourceAttributes"]["verb"], "create");
    assert_eq!(upstream.count(), n);
}
