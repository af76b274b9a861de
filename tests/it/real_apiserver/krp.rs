//! kube-rbac-proxy's own e2e scenarios (its `test/e2e`: basics, static
//! authorizer, client certificates, token masking, `--ignore-paths`,
//! `--allow-paths`, HTTP/2, h2c upstream), written again for authgate:
//! `authgate serve` started with kube-rbac-proxy's flags only, in front of a
//! real kube-apiserver that answers its TokenReviews and SubjectAccessReviews.

use std::process::{Command, Stdio};

use super::*;

/// The authgate binary started as a kube-rbac-proxy sidecar: its stderr
/// goes to a file (read by [`Sidecar::log`]).
struct Sidecar {
    gate: Authgate,
    log: PathBuf,
}

impl Sidecar {
    /// `authgate serve --secure-listen-address=127.0.0.1:<free> --kubeconfig=<gateway> ARGS`.
    fn start(cluster: &Cluster, pki: &Pki, args: &[String]) -> Self {
        let port = free_port();
        let log = pki.path().join(format!("sidecar-{port}.log"));
        let child = Command::new(BIN)
            .arg("serve")
            .arg(format!("--secure-listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--kubeconfig={}",
                cluster.get("GATEWAY_KUBECONFIG")
            ))
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("e2e setup"))
            .spawn()
            .expect("e2e setup");
        let gate = Authgate { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "authgate did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { gate, log }
    }

    fn port(&self) -> u16 {
        self.gate.port
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).expect("sidecar log")
    }

    fn client(&self, pki: &Pki) -> Client {
        Client::new(([127, 0, 0, 1], self.port()).into(), &pki.ca_der)
    }
}

/// The serving flags of a sidecar with the test PKI's certificate.
fn tls_flags(pki: &Pki) -> Vec<String> {
    let d = pki.path().display();
    vec![
        format!("--tls-cert-file={d}/server.crt"),
        format!("--tls-private-key-file={d}/server.key"),
    ]
}

/// A ClusterRole for kube-rbac-proxy's client paths, bound to `subject`
/// (a `kind: ...` YAML flow mapping); waits until RBAC answers for `user`
/// (so no early denial is cached).
fn allow_paths_for(c: &Cluster, ns: &str, name: &str, subject: &str, user: &str) {
    let manifest = format!(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {ns}-{name}}}
rules:
  - {{nonResourceURLs: ["/metrics", "/api/v1/label/*", "/healthz"], verbs: ["get"]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {ns}-{name}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {ns}-{name}}}
subjects:
  - {subject}
"#
    );
    c.kubectl(&["apply", "-f", "-"], Some(&manifest));
    let deadline = Instant::now() + Duration::from_secs(20);
    while c
        .try_kubectl(&["auth", "can-i", "get", "/metrics", "--as", user], None)
        .is_none_or(|out| out.trim() != "yes")
    {
        assert!(Instant::now() < deadline, "RBAC never allowed {user}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The RBAC of kube-rbac-proxy's basics: ServiceAccount `bot` may `get`
/// `/metrics`, `other` may not. Returns the namespace.
fn basics(c: &Cluster) -> String {
    let ns = setup_namespace(c);
    let user = format!("system:serviceaccount:{ns}:bot");
    let subject = format!("{{kind: ServiceAccount, name: bot, namespace: {ns}}}");
    allow_paths_for(c, &ns, "krp-client", &subject, &user);
    ns
}

/// The HTTP version curl (offering h2 and HTTP/1.1) gets from `port`.
fn curl_http_version(pki: &Pki, port: u16, token: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--http2", "-o", "/dev/null", "-w", "%{http_version}"])
        .arg("--cacert")
        .arg(pki.path().join("ca.crt"))
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("https://localhost:{port}/metrics"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real kube-apiserver (scripts/e2e.sh)"]
async fn basics_a_token_with_rbac_succeeds_and_one_without_fails() {
    let cluster = Cluster::from_env();
    let ns = basics(&cluster);
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let mut args = tls_flags(&pki);
    args.extend([
        format!("--upstream=http://{}/", upstream.addr),
        "--logtostderr=true".into(),
        "--v=10".into(),
    ]);
    let sidecar = Sidecar::start(&cluster, &pki, &args);
    let c = sidecar.client(&pki);

    // "As a client with the correct RBAC rules, I succeed with my request."
    let bot = cluster.token(&ns, "bot", None);
    let r = c.get_with_token("/metrics", &bot).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(upstream.last().path, "/metrics");
    // "As a client without any RBAC rule access, I fail with my request."
    let other = cluster.token(&ns, "other", None);
    let r = c.get_with_token("/metrics", &other).await.unwrap();
    assert_eq!((r.status.as_u16(), r.reason().as_str()), (403, "forbidden"));
    // No token, or one the apiserver rejects: 401.
    assert_eq!(c.get("/metrics", &[]).await.unwrap().status, 401);
    let r = c.get_with_token("/metrics", "not.a.token").await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        upstream.count(),
        1,
        "only the allowed request was forwarded"
    );

    // Token masking: even at -v=10 no token reaches the log, and the
    // upstream gets no Authorization header.
    let log = sidecar.log();
    for t in [&bot, &other] {
        assert!(!log.contains(t.as_str()), "a token in the log");
    }
    assert!(upstream.last().headers.get("authorization").is_none());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real kube-apiserver (scripts/e2e.sh)"]
async fn the_static_authorizer_allows_what_the_config_file_lists_without_rbac() {
    let cluster = Cluster::from_env();
    let ns = setup_namespace(&cluster);
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let config = pki.path().join("krp-static.yaml");
    std::fs::write(
        &config,
        format!(
            "authorization:\n  static:\n    - user:\n        name: system:serviceaccount:{ns}:other\n      resourceRequest: false\n      path: /metrics\n      verb: get\n"
        ),
    )
    .expect("e2e setup");
    let mut args = tls_flags(&pki);
    args.extend([
        format!("--upstream=http://{}/", upstream.addr),
        format!("--config-file={}", config.display()),
    ]);
    let sidecar = Sidecar::start(&cluster, &pki, &args);
    let c = sidecar.client(&pki);
    let other = cluster.token(&ns, "other", None);
    // Listed: allowed with no RBAC rule at all.
    let r = c.get_with_token("/metrics", &other).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Another path or verb falls through to SubjectAccessReview: denied.
    let r = c.get_with_token("/debug", &other).await.unwrap();
    assert_eq!(r.status, 403);
    let post = http::Request::post("/metrics")
        .header("authorization", format!("Bearer {other}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    assert_eq!(c.send(post).await.unwrap().status, 403);
    // Another user (without RBAC rules) is not the listed one.
    let unlisted = cluster.token(&ns, "not-a-delegator", None);
    let r = c.get_with_token("/metrics", &unlisted).await.unwrap();
    assert_eq!(r.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real kube-apiserver (scripts/e2e.sh)"]
async fn client_certificates_from_the_client_ca_file_are_authorized_by_rbac() {
    let cluster = Cluster::from_env();
    let ns = setup_namespace(&cluster);
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let user = format!("krp-cert-{ns}");
    let subject = format!("{{kind: User, name: {user}, apiGroup: rbac.authorization.k8s.io}}");
    allow_paths_for(&cluster, &ns, "krp-cert", &subject, &user);
    let mut args = tls_flags(&pki);
    args.extend([
        format!("--upstream=http://{}/", upstream.addr),
        format!("--client-ca-file={}", pki.path().join("ca.crt").display()),
        "--auth-header-fields-enabled".into(),
    ]);
    let sidecar = Sidecar::start(&cluster, &pki, &args);
    let c = sidecar.client(&pki);

    // With RBAC: succeeds, as the certificate's CN.
    let good = pki.client("krp-cert", &ClientOpts::cn(&user, &[]));
    let r = c
        .clone()
        .with_cert(&good)
        .get("/metrics", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        upstream.last().all("x-remote-user"),
        std::slice::from_ref(&user)
    );
    // Without RBAC: fails.
    let stranger = pki.client("krp-stranger", &ClientOpts::cn("nobody-bound", &[]));
    let r = c
        .clone()
        .with_cert(&stranger)
        .get("/metrics", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    // A certificate from another CA, even with the bound name: the handshake fails.
    let foreign = pki.client(
        "krp-foreign",
        &ClientOpts::cn(&user, &[]).signer(Signer::Foreign),
    );
    assert!(
        c.clone()
            .with_cert(&foreign)
            .get("/metrics", &[])
            .await
            .is_err()
    );
    assert_eq!(upstream.count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real kube-apiserver (scripts/e2e.sh)"]
async fn ignore_paths_are_served_without_a_token_and_allow_paths_limit_the_rest() {
    let cluster = Cluster::from_env();
    let ns = basics(&cluster);
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let bot = cluster.token(&ns, "bot", None);

    let mut ignore = tls_flags(&pki);
    ignore.extend([
        format!("--upstream=http://{}/", upstream.addr),
        "--ignore-paths=/metrics,/api/v1/*".into(),
    ]);
    let sidecar = Sidecar::start(&cluster, &pki, &ignore);
    let c = sidecar.client(&pki);
    for (path, want) in [
        ("/metrics", 200),
        ("/api/v1/labels", 200),
        ("/", 401),
        ("/api/v1/label/job/values", 401),
    ] {
        let r = c.get(path, &[]).await.unwrap();
        assert_eq!(r.status.as_u16(), want, "{path} without a token");
    }
    drop(sidecar);

    let mut allow = tls_flags(&pki);
    allow.extend([
        format!("--upstream=http://{}/", upstream.addr),
        "--allow-paths=/metrics,/api/v1/label/*/values".into(),
    ]);
    let sidecar = Sidecar::start(&cluster, &pki, &allow);
    let c = sidecar.client(&pki);
    for (path, want) in [
        ("/", 404),
        ("/api/v1/label/name", 404),
        ("/metrics", 200),
        ("/api/v1/label/job/values", 200),
    ] {
        let r = c.get_with_token(path, &bot).await.unwrap();
        assert_eq!(r.status.as_u16(), want, "{path} with a bound token");
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real kube-apiserver (scripts/e2e.sh)"]
async fn http2_is_served_unless_http2_disable_is_given() {
    let cluster = Cluster::from_env();
    let ns = basics(&cluster);
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let bot = cluster.token(&ns, "bot", None);
    let mut args = tls_flags(&pki);
    args.push(format!("--upstream=http://{}/", upstream.addr));

    let sidecar = Sidecar::start(&cluster, &pki, &args);
    assert_eq!(curl_http_version(&pki, sidecar.port(), &bot), "2");
    let session = sidecar.client(&pki).h2_session().await;
    let mut s = session.clone();
    assert_eq!(s.get_with_token("/metrics", &bot).await.unwrap(), 200);
    drop(sidecar);

    args.push("--http2-disable".into());
    let sidecar = Sidecar::start(&cluster, &pki, &args);
    assert_eq!(curl_http_version(&pki, sidecar.port(), &bot), "1.1");
    // A client that offers only h2 finds no protocol in common.
    assert!(sidecar.client(&pki).http2().connect().await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real kube-apiserver (scripts/e2e.sh)"]
async fn an_h2c_only_upstream_is_reached_with_upstream_force_h2c() {
    let cluster = Cluster::from_env();
    let ns = basics(&cluster);
    let pki = Pki::new();
    let upstream = GrpcUpstream::start().await;
    let bot = cluster.token(&ns, "bot", None);
    let mut args = tls_flags(&pki);
    args.extend([
        format!("--upstream=http://{}/", upstream.addr),
        "--upstream-force-h2c".into(),
    ]);
    let sidecar = Sidecar::start(&cluster, &pki, &args);
    let c = sidecar.client(&pki);
    let r = c.get_with_token("/metrics", &bot).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].version, http::Version::HTTP_2, "h2c upstream");
    assert_eq!(seen[0].seen.path, "/metrics");
    // Denied requests never reach it.
    let other = cluster.token(&ns, "other", None);
    assert_eq!(
        c.get_with_token("/metrics", &other).await.unwrap().status,
        403
    );
    assert_eq!(upstream.seen().len(), 1);
}
