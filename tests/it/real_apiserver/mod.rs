//! End to end against a real kube-apiserver + etcd (scripts/e2e.sh starts
//! them and sets AUTHGATE_E2E_DIR): ServiceAccounts, Roles and RoleBindings
//! made with kubectl, tokens from `kubectl create token`, and the authgate
//! binary in between.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::*;

mod fleet;
mod krp;
mod rewrites;

const BIN: &str = env!("CARGO_BIN_EXE_authgate");
const AUDIENCE: &str = "https://authgate.e2e";

struct Cluster {
    env: HashMap<String, String>,
}

impl Cluster {
    fn from_env() -> Self {
        let dir = std::env::var("AUTHGATE_E2E_DIR").expect("AUTHGATE_E2E_DIR (run scripts/e2e.sh)");
        let text = std::fs::read_to_string(Path::new(&dir).join("env")).expect("DIR/env");
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().to_owned(),
                    v.trim().trim_matches(['"', '\'']).to_owned(),
                )
            })
            .collect();
        Self { env }
    }

    fn get(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from DIR/env"))
    }

    /// Runs kubectl as the cluster admin; panics with its stderr on failure.
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run_kubectl(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("e2e setup")
    }

    /// A ServiceAccount token from `kubectl create token`; with an older
    /// kubectl (Debian's 1.20 has no `create token`), the same TokenRequest
    /// through `kubectl create --raw`.
    fn token(&self, ns: &str, sa: &str, audience: Option<&str>) -> String {
        let mut args = vec!["-n", ns, "create", "token", sa, "--duration", "1h"];
        if let Some(a) = audience {
            args.extend(["--audience", a]);
        }
        if let Some(out) = self.try_kubectl(&args, None) {
            return out.trim().to_owned();
        }
        let audiences = audience.map_or_else(|| "null".to_owned(), |a| format!("[\"{a}\"]"));
        let request = format!(
            r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{{"audiences":{audiences},"expirationSeconds":3600}}}}"#
        );
        let uri = format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token");
        let out = self.kubectl(&["create", "--raw", &uri, "-f", "-"], Some(&request));
        let v: serde_json::Value = serde_json::from_str(&out).expect("TokenRequest answer");
        v["status"]["token"]
            .as_str()
            .expect("status.token")
            .to_owned()
    }

    fn try_kubectl(&self, args: &[&str], stdin: Option<&str>) -> Option<String> {
        let out = self.run_kubectl(args, stdin);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// kubectl as the cluster admin, fed `stdin`; its output, whatever its status.
    fn run_kubectl(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.get("ADMIN_KUBECONFIG"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("kubectl output")
    }
}

/// The authgate binary serving one config; killed on drop.
struct Authgate {
    child: Child,
    port: u16,
}

impl Drop for Authgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_authgate(
    pki: &Pki,
    upstream: &Upstream,
    ns: &str,
    kubeconfig: &str,
    audiences: &[&str],
) -> Authgate {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("e2e setup")
        .local_addr()
        .expect("e2e setup")
        .port();
    let d = pki.path().display();
    let audiences = audiences
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let yaml = format!(
        "listen: \"127.0.0.1:{port}\"\ntls: {{cert_file: {d}/server.crt, key_file: {d}/server.key, client_ca_file: {d}/ca.crt}}\nidentity: {{rules: [{{spiffe: {{trust_domain: cluster.local}}}}, {{common_name: {{}}}}]}}\nroutes:\n  - path_prefix: /\n    upstream: \"http://{}\"\n    resource: {{namespace: {ns}, resource: services, subresource: proxy, name: web}}\nkubernetes: {{kubeconfig: {kubeconfig}, timeout: 5s}}\ntoken_review: {{audiences: [{audiences}]}}\nadmin: {{listen: \"off\"}}\n",
        upstream.addr
    );
    spawn_authgate(pki, port, &yaml)
}

/// Starts the binary on `yaml` (which listens on `port`) and waits for the port.
fn spawn_authgate(pki: &Pki, port: u16, yaml: &str) -> Authgate {
    let path: PathBuf = pki.path().join(format!("authgate-{port}.yaml"));
    std::fs::write(&path, yaml).expect("e2e setup");
    let child = Command::new(BIN)
        .args(["serve", "--config", path.to_str().expect("e2e setup")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("e2e setup");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "authgate did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Authgate { child, port }
}

fn setup_namespace(c: &Cluster) -> String {
    let ns = format!("e2e-{}", std::process::id());
    let manifest = format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: bot, namespace: {ns}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: other, namespace: {ns}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: not-a-delegator, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: web-proxy, namespace: {ns}}}
rules:
  - {{apiGroups: [""], resources: ["services/proxy"], resourceNames: ["web"], verbs: ["get", "create"]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: bot-web-proxy, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: web-proxy}}
subjects:
  - {{kind: ServiceAccount, name: bot, namespace: {ns}}}
"#
    );
    c.kubectl(&["apply", "-f", "-"], Some(&manifest));
    ns
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real kube-apiserver (scripts/e2e.sh)"]
async fn tokens_and_spiffe_certs_of_one_serviceaccount_share_one_rolebinding() {
    let cluster = Cluster::from_env();
    let ns = setup_namespace(&cluster);
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let gateway = cluster.get("GATEWAY_KUBECONFIG").to_owned();
    let gate = run_authgate(&pki, &upstream, &ns, &gateway, &[]);
    let client = Client::new(([127, 0, 0, 1], gate.port).into(), &pki.ca_der);

    // A ServiceAccount token from `kubectl create token`, allowed by the RoleBinding.
    let bot = cluster.token(&ns, "bot", None);
    let r = client.get_with_token("/anything", &bot).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = upstream.last();
    let user = format!("system:serviceaccount:{ns}:bot");
    assert_eq!(seen.all("x-remote-user"), std::slice::from_ref(&user));
    let groups = seen.all("x-remote-group");
    for g in [
        "system:serviceaccounts",
        &format!("system:serviceaccounts:{ns}"),
        "system:authenticated",
    ] {
        assert!(
            groups.iter().any(|have| have == g),
            "{g} missing from {groups:?}"
        );
    }
    assert!(seen.headers.get("authorization").is_none());

    // Another ServiceAccount without the binding: 403.
    let other = cluster.token(&ns, "other", None);
    let r = client.get_with_token("/anything", &other).await.unwrap();
    assert_eq!((r.status.as_u16(), r.reason().as_str()), (403, "forbidden"));

    // The migration story: a SPIFFE certificate of the same ServiceAccount is
    // the same user, authorized by the same RoleBinding; no token needed.
    let svid = pki.client(
        "bot-svid",
        &ClientOpts::spiffe(&format!("spiffe://cluster.local/ns/{ns}/sa/bot")),
    );
    let r = client
        .clone()
        .with_cert(&svid)
        .get("/anything", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(upstream.last().all("x-remote-user"), [user]);
    let other_svid = pki.client(
        "other-svid",
        &ClientOpts::spiffe(&format!("spiffe://cluster.local/ns/{ns}/sa/other")),
    );
    let r = client
        .clone()
        .with_cert(&other_svid)
        .get("/anything", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 403);

    // Invalid tokens are rejected by the real TokenReview.
    let r = client
        .get_with_token("/anything", "not.a.token")
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "token_rejected")
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real kube-apiserver (scripts/e2e.sh)"]
async fn an_audience_bound_token_is_accepted_only_where_that_audience_is_configured() {
    let cluster = Cluster::from_env();
    let ns = setup_namespace(&cluster);
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let gateway = cluster.get("GATEWAY_KUBECONFIG").to_owned();
    let bound = cluster.token(&ns, "bot", Some(AUDIENCE));
    let default = cluster.token(&ns, "bot", None);

    let plain = run_authgate(&pki, &upstream, &ns, &gateway, &[]);
    let c = Client::new(([127, 0, 0, 1], plain.port).into(), &pki.ca_der);
    let r = c.get_with_token("/x", &bound).await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "token_rejected")
    );
    assert_eq!(c.get_with_token("/x", &default).await.unwrap().status, 200);
    drop(plain);

    let scoped = run_authgate(&pki, &upstream, &ns, &gateway, &[AUDIENCE]);
    let c = Client::new(([127, 0, 0, 1], scoped.port).into(), &pki.ca_der);
    assert_eq!(c.get_with_token("/x", &bound).await.unwrap().status, 200);
    let r = c.get_with_token("/x", &default).await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "token_rejected")
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real kube-apiserver (scripts/e2e.sh)"]
async fn a_gateway_without_auth_delegator_fails_closed_with_503() {
    let cluster = Cluster::from_env();
    let ns = setup_namespace(&cluster);
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    // A kubeconfig for a ServiceAccount that may not create reviews.
    let own = cluster.token(&ns, "not-a-delegator", None);
    let kubeconfig = pki.path().join("weak.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{}\", certificate-authority: {}}}}}]\nusers: [{{name: u, user: {{token: {own}}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n",
            cluster.get("APISERVER_URL"),
            cluster.get("APISERVER_CA"),
        ),
    )
    .unwrap();
    let gate = run_authgate(&pki, &upstream, &ns, kubeconfig.to_str().unwrap(), &[]);
    let c = Client::new(([127, 0, 0, 1], gate.port).into(), &pki.ca_der);
    let bot = cluster.token(&ns, "bot", None);
    let r = c.get_with_token("/x", &bot).await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (503, "backend_error")
    );
    assert_eq!(upstream.count(), 0);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("e2e setup")
        .local_addr()
        .expect("e2e setup")
        .port()
}

/// `GET /metrics` from an admin listener on 127.0.0.1:`port` (plain HTTP).
fn scrape(port: u16) -> String {
    use std::io::Read;
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("admin listener");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("e2e setup");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("scrape");
    let mut out = String::new();
    tcp.read_to_string(&mut out).expect("scrape");
    out
}

/// The value of the series `name{labels}` (exact), 0 if absent.
fn series(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().expect("metric value"))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real kube-apiserver (scripts/e2e.sh)"]
async fn kubectl_create_token_jwts_are_verified_locally_with_the_cluster_jwks() {
    let cluster = Cluster::from_env();
    let ns = setup_namespace(&cluster);
    // The gateway reads /.well-known/openid-configuration and /openid/v1/jwks.
    cluster.kubectl(
        &["apply", "-f", "-"],
        Some(
            r"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: authgate-gateway-issuer-discovery}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:service-account-issuer-discovery}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: authgate-gateway}
",
        ),
    );
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let (port, admin) = (free_port(), free_port());
    let d = pki.path().display();
    let yaml = format!(
        "listen: \"127.0.0.1:{port}\"\ntls: {{cert_file: {d}/server.crt, key_file: {d}/server.key}}\nroutes:\n  - path_prefix: /\n    upstream: \"http://{}\"\n    resource: {{namespace: {ns}, resource: services, subresource: proxy, name: web}}\nkubernetes: {{kubeconfig: {}, timeout: 5s}}\ntoken_review: {{jwks: {{enabled: true, issuer: \"{}\"}}}}\nadmin: {{listen: \"127.0.0.1:{admin}\"}}\n",
        upstream.addr,
        cluster.get("GATEWAY_KUBECONFIG"),
        cluster.get("SERVICE_ACCOUNT_ISSUER"),
    );
    let gate = spawn_authgate(&pki, port, &yaml);
    let client = Client::new(([127, 0, 0, 1], gate.port).into(), &pki.ca_der);

    let m = scrape(admin);
    assert!(
        series(&m, "authgate_jwks_keys") >= 1.0,
        "the cluster's keys loaded at startup:\n{m}"
    );

    // A `kubectl create token` JWT (default audience = the issuer here):
    // accepted, with the identity the apiserver gives it, and no TokenReview.
    let bot = cluster.token(&ns, "bot", None);
    for _ in 0..5 {
        let r = client.get_with_token("/anything", &bot).await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let seen = upstream.last();
    let user = format!("system:serviceaccount:{ns}:bot");
    assert_eq!(seen.all("x-remote-user"), [user]);
    let uid = cluster.kubectl(
        &[
            "-n",
            &ns,
            "get",
            "sa",
            "bot",
            "-o",
            "jsonpath={.metadata.uid}",
        ],
        None,
    );
    assert_eq!(seen.all("x-remote-uid"), [uid.trim()]);
    let groups = seen.all("x-remote-group");
    assert_eq!(
        groups,
        [
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".to_owned(),
        ]
    );
    let m = scrape(admin);
    let verified = "authgate_jwt_verifications_total{result=\"verified\"}";
    let cached = "authgate_jwt_verifications_total{result=\"cached\"}";
    assert_eq!(series(&m, verified), 1.0, "{m}");
    assert_eq!(series(&m, cached), 4.0, "{m}");
    let reviews = "authgate_api_requests_total{kind=\"tokenreview\",code=\"2xx\"}";
    assert_eq!(series(&m, reviews), 0.0, "no TokenReview was made:\n{m}");

    // A token for another audience fails locally and goes to TokenReview,
    // which rejects it too.
    let other = cluster.token(&ns, "bot", Some(AUDIENCE));
    let r = client.get_with_token("/anything", &other).await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "token_rejected")
    );
    let m = scrape(admin);
    assert_eq!(
        series(&m, "authgate_jwt_verifications_total{result=\"audience\"}"),
        1.0
    );
    assert_eq!(series(&m, reviews), 1.0, "{m}");
}
