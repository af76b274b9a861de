//! A rewrite against the real apiserver: the namespace of the check comes
//! from the `namespace` query parameter, and a RoleBinding in that
//! namespace is what allows it (kube-rbac-proxy's examples/rewrites).

use super::*;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real kube-apiserver (scripts/e2e.sh)"]
async fn a_namespace_from_the_query_is_authorized_by_a_rolebinding_in_that_namespace() {
    let cluster = Cluster::from_env();
    let ns = setup_namespace(&cluster);
    let other = format!("{ns}-other");
    cluster.kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            r#"apiVersion: v1
kind: Namespace
metadata: {{name: {other}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: namespace-metrics, namespace: {ns}}}
rules:
  - {{apiGroups: [""], resources: ["namespace/metrics"], verbs: ["get"]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: bot-namespace-metrics, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: namespace-metrics}}
subjects:
  - {{kind: ServiceAccount, name: bot, namespace: {ns}}}
"#
        )),
    );
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let port = free_port();
    let d = pki.path().display();
    let yaml = format!(
        "listen: \"127.0.0.1:{port}\"\ntls: {{cert_file: {d}/server.crt, key_file: {d}/server.key}}\nroutes:\n  - path_prefix: /\n    upstream: \"http://{}\"\n    resource: {{version: v1, resource: namespace, subresource: metrics, namespace: \"{{{{ .Value }}}}\"}}\n    rewrites: {{query_parameter: namespace}}\nkubernetes: {{kubeconfig: {}, timeout: 5s}}\nadmin: {{listen: \"off\"}}\n",
        upstream.addr,
        cluster.get("GATEWAY_KUBECONFIG"),
    );
    let gate = spawn_authgate(&pki, port, &yaml);
    let c = Client::new(([127, 0, 0, 1], gate.port).into(), &pki.ca_der);
    let bot = cluster.token(&ns, "bot", None);

    // The RoleBinding's namespace: allowed, and the upstream gets it.
    let r = c
        .get_with_token(&format!("/metrics?namespace={ns}"), &bot)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(upstream.last().path, format!("/metrics?namespace={ns}"));

    // Another namespace, where no RoleBinding grants it: 403.
    let n = upstream.count();
    let r = c
        .get_with_token(&format!("/metrics?namespace={other}"), &bot)
        .await
        .unwrap();
    assert_eq!((r.status.as_u16(), r.reason().as_str()), (403, "forbidden"));
    // Both at once, the second percent-encoded: every value is reviewed, so 403.
    let encoded: String = other.bytes().map(|b| format!("%{b:02X}")).collect();
    let r = c
        .get_with_token(
            &format!("/metrics?namespace={ns}&namespace={encoded}"),
            &bot,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(
        upstream.count(),
        n,
        "nothing forwarded with an unauthorized namespace"
    );

    // Another ServiceAccount of the same namespace, without the binding: 403.
    let stranger = cluster.token(&ns, "other", None);
    let r = c
        .get_with_token(&format!("/metrics?namespace={ns}"), &stranger)
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    cluster.kubectl(&["delete", "namespace", &other, "--wait=false"], None);
}
