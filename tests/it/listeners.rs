//! `listeners[]`: one real `authgate serve` process with two TLS listeners,
//! each with its own client CA, serving certificate and routes. The hostile
//! cases first: a certificate of one listener's CA is refused by the other
//! at the handshake, a path routed only on one is 404 on the other, a
//! broken certificate file of one keeps its old certificate serving and
//! leaves the other alone, and a listener that cannot bind fails startup
//! naming itself.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use testkit::*;

const BIN: &str = env!("CARGO_BIN_EXE_authgate");

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `GET path` on the plain-HTTP admin listener; (status, body), or `None`
/// while it is not up.
fn admin_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(at(port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// The value of the series `series` (name and labels) in `/metrics`.
fn metric(admin: u16, series: &str) -> Option<f64> {
    let (_, body) = admin_get(admin, "/metrics")?;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Two PKIs (one per listener), an upstream per listener, the ports.
struct Two {
    a: Pki,
    b: Pki,
    up_a: Upstream,
    up_b: Upstream,
    port_a: u16,
    port_b: u16,
    admin: u16,
    dir: tempfile::TempDir,
}

impl Two {
    async fn new() -> Self {
        Self {
            a: Pki::new(),
            b: Pki::new(),
            up_a: Upstream::start().await,
            up_b: Upstream::start().await,
            port_a: free_port(),
            port_b: free_port(),
            admin: free_port(),
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// Listener `alpha` (CA A, `/only-a` and `/shared` to upstream A) and
    /// `beta` (CA B, `/shared` to upstream B); anyone authenticated may do
    /// anything (the routes, not the policy, are under test).
    fn yaml(&self) -> String {
        let listener = |name: &str, port: u16, pki: &Pki, routes: &str| {
            let d = pki.path().display();
            format!(
                "  - name: {name}\n    listen: \"127.0.0.1:{port}\"\n    tls: {{cert_file: {d}/server.crt, key_file: {d}/server.key, client_ca_file: {d}/ca.crt, reload_interval: 1s}}\n    routes:\n{routes}"
            )
        };
        let a_routes = format!(
            "      - {{path_prefix: /only-a, upstream: \"http://{0}\"}}\n      - {{path_prefix: /shared, upstream: \"http://{0}\"}}\n",
            self.up_a.addr
        );
        let b_routes = format!(
            "      - {{path_prefix: /shared, upstream: \"http://{}\"}}\n",
            self.up_b.addr
        );
        format!(
            "listeners:\n{}{}static:\n  tokens: [{{token: {BOB_TOKEN}, user: bob}}]\n  allow: [{{user: \"*\", verbs: [\"*\"], paths: [\"*\"]}}]\nadmin: {{listen: \"127.0.0.1:{}\"}}\n",
            listener("alpha", self.port_a, &self.a, &a_routes),
            listener("beta", self.port_b, &self.b, &b_routes),
            self.admin,
        )
    }

    fn spawn(&self, yaml: &str) -> Child {
        let path = self.dir.path().join("authgate.yaml");
        std::fs::write(&path, yaml).expect("write config");
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn authgate")
    }

    /// The server, once `/readyz` says every listener is accepting.
    fn start(&self) -> Running {
        let running = Running(self.spawn(&self.yaml()));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match admin_get(self.admin, "/readyz") {
                Some((200, body)) => {
                    assert!(body.contains("listener/alpha/listener ok"), "{body}");
                    assert!(body.contains("listener/beta/listener ok"), "{body}");
                    return running;
                }
                other => assert!(Instant::now() < deadline, "never ready: {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn client_a(&self) -> Client {
        Client::new(at(self.port_a), &self.a.ca_der)
    }

    fn client_b(&self) -> Client {
        Client::new(at(self.port_b), &self.b.ca_der)
    }
}

/// The leaf certificate a listener presents.
async fn served_leaf(c: &Client) -> CertificateDer<'static> {
    let tls = c.connect().await.expect("handshake");
    let (_, session) = tls.get_ref();
    session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("a server certificate")
        .clone()
        .into_owned()
}

fn leaf_in(pki: &Pki) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(&pki.server_cert).expect("server certificate file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_of_one_listeners_ca_is_refused_at_the_other_listeners_handshake() {
    let t = Two::new().await;
    let _server = t.start();
    let alice_a = t.a.client("alice-a", &ClientOpts::cn("alice", &["dev"]));
    // On its own listener the certificate is alice.
    let r = t
        .client_a()
        .with_cert(&alice_a)
        .get("/shared", &[])
        .await
        .expect("alpha serves CA A's certificate");
    assert_eq!(r.status, 200);
    assert_eq!(t.up_a.last().all("x-remote-user"), ["alice"]);
    // On beta, whose client CA is B, the same certificate fails the
    // handshake: no request, no identity, nothing forwarded.
    let before = (t.up_a.count(), t.up_b.count());
    let refused = t.client_b().with_cert(&alice_a).get("/shared", &[]).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!((t.up_a.count(), t.up_b.count()), before);
    // Counted once the server side of the handshake has ended. Both test
    // roots are named "test root CA": CA A's certificate names beta's
    // issuer, and fails on its signature.
    let unknown_ca = r#"authgate_tls_handshake_failures_total{reason="bad_certificate"}"#;
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(t.admin, unknown_ca).is_none() {
        assert!(Instant::now() < deadline, "the refusal was never counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(t.admin, unknown_ca), Some(1.0));
    // Beta's own CA's certificates work there, and not on alpha.
    let bob_b = t.b.client("bob-b", &ClientOpts::cn("carl", &[]));
    let r = t.client_b().with_cert(&bob_b).get("/shared", &[]).await;
    assert_eq!(r.expect("beta serves CA B's certificate").status, 200);
    assert_eq!(t.up_b.last().all("x-remote-user"), ["carl"]);
    let refused = t.client_a().with_cert(&bob_b).get("/shared", &[]).await;
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_routed_only_on_one_listener_is_404_on_the_other() {
    let t = Two::new().await;
    let mut server = t.start();
    let token = [("authorization", &*format!("Bearer {BOB_TOKEN}"))];
    let r = t.client_a().get("/only-a/x", &token).await.expect("alpha");
    assert_eq!(r.status, 200);
    assert_eq!(t.up_a.last().path, "/only-a/x");
    let seen = (t.up_a.count(), t.up_b.count());
    // Beta has no /only-a route: 404, not beta's `/shared`, not alpha's upstream.
    let r = t.client_b().get("/only-a/x", &token).await.expect("beta");
    assert_eq!(r.status, 404);
    assert_eq!(r.reason(), "no_route");
    assert_eq!((t.up_a.count(), t.up_b.count()), seen);
    // The prefix both have goes to each listener's own upstream.
    let r = t.client_b().get("/shared/y", &token).await.expect("beta");
    assert_eq!(r.status, 200);
    assert_eq!((t.up_a.count(), t.up_b.count()), (seen.0, seen.1 + 1));
    assert_eq!(t.up_b.last().path, "/shared/y");
    // The access log names the listener of each request (lines are
    // written in batches, at least every 100 ms).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let _ = server.0.kill();
    let _ = server.0.wait();
    let mut log = String::new();
    if let Some(mut e) = server.0.stderr.take() {
        e.read_to_string(&mut log).expect("stderr");
    }
    let line = |path: &str, status: u16, listener: &str| {
        log.lines().any(|l| {
            l.contains(&format!("path=\"{path}\""))
                && l.contains(&format!("status={status}"))
                && l.ends_with(&format!("listener=\"{listener}\""))
        })
    };
    assert!(line("/only-a/x", 200, "alpha"), "{log}");
    assert!(line("/only-a/x", 404, "beta"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_certificate_file_of_one_listener_keeps_its_old_certificate_and_leaves_the_other_alone()
 {
    let mut t = Two::new().await;
    let _server = t.start();
    let (old_a, old_b) = (leaf_in(&t.a), leaf_in(&t.b));
    assert_eq!(served_leaf(&t.client_a()).await, old_a);
    assert_eq!(served_leaf(&t.client_b()).await, old_b);
    std::fs::write(&t.a.server_cert, "-----BEGIN CERTIFICATE-----\nbroken\n")
        .expect("break alpha's certificate");
    let failed = r#"authgate_listener_tls_reload_last_failure_timestamp_seconds{listener="alpha"}"#;
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(t.admin, failed).unwrap_or(0.0) == 0.0 {
        assert!(Instant::now() < deadline, "the broken file was never tried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Alpha serves its last good certificate; beta never failed.
    assert_eq!(served_leaf(&t.client_a()).await, old_a);
    assert_eq!(served_leaf(&t.client_b()).await, old_b);
    let beta_failed =
        r#"authgate_listener_tls_reload_last_failure_timestamp_seconds{listener="beta"}"#;
    assert_eq!(metric(t.admin, beta_failed), Some(0.0));
    let (status, body) = admin_get(t.admin, "/readyz").expect("readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("[-]listener/alpha/tls_reload failed"),
        "{body}"
    );
    assert!(body.contains("[+]listener/beta/tls_reload ok"), "{body}");
    // Beta's own rotation lands while alpha is still broken.
    t.b.issue_server(7);
    let new_b = leaf_in(&t.b);
    let deadline = Instant::now() + Duration::from_secs(15);
    while served_leaf(&t.client_b()).await != new_b {
        assert!(Instant::now() < deadline, "beta's rotation never landed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served_leaf(&t.client_a()).await, old_a);
    let token = [("authorization", &*format!("Bearer {BOB_TOKEN}"))];
    let r = t.client_a().get("/only-a", &token).await.expect("alpha");
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_cannot_bind_fails_startup_naming_it_and_its_address() {
    let t = Two::new().await;
    // Something else holds beta's port.
    let _taken = std::net::TcpListener::bind(at(t.port_b)).expect("take beta's port");
    let mut child = t.spawn(&t.yaml());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("authgate kept running without beta's port");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr).expect("stderr");
    }
    assert!(!status.success(), "{stderr}");
    let want = format!("listener \"beta\" cannot listen on 127.0.0.1:{}", t.port_b);
    assert!(stderr.contains(&want), "{stderr}");
    // Nothing was left serving on alpha's port.
    assert!(std::net::TcpStream::connect(at(t.port_a)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_has_its_own_labelled_certificate_series() {
    let t = Two::new().await;
    let _server = t.start();
    for l in ["alpha", "beta"] {
        let series = format!(
            "authgate_listener_serving_certificate_not_after_timestamp_seconds{{listener=\"{l}\"}}"
        );
        let v = metric(t.admin, &series).unwrap_or(0.0);
        assert!(v > 0.0, "{series}: {v}");
        let ca =
            format!("authgate_listener_client_ca_not_after_timestamp_seconds{{listener=\"{l}\"}}");
        assert!(metric(t.admin, &ca).unwrap_or(0.0) > 0.0, "{ca}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_loads_every_listeners_files_and_names_the_listener() {
    let t = Two::new().await;
    let path = t.dir.path().join("authgate.yaml");
    std::fs::write(&path, t.yaml()).expect("write config");
    let check = || {
        Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .expect("run check-config")
    };
    let out = check();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // Beta's key no longer matches its certificate.
    let (_, other_key) = t.b.server_pair(9);
    std::fs::write(&t.b.server_key, other_key).expect("write beta's key");
    let out = check();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(": listeners[1].tls.key_file: "), "{stderr}");
}
