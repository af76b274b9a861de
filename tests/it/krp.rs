//! A kube-rbac-proxy sidecar's arguments, unchanged, drive the authgate binary.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::*;

const BIN: &str = env!("CARGO_BIN_EXE_authgate");

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

async fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "port {port} never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_typical_kube_rbac_proxy_sidecar_argument_list_works_unchanged() {
    let pki = Pki::new();
    let api = FakeApi::start(&pki).await;
    api.allow(
        Rule::group("system:serviceaccounts")
            .verb("get")
            .resource("services")
            .namespace("monitoring")
            .subresource("proxy"),
    );
    api.add_token(
        "prom-token",
        "system:serviceaccount:monitoring:prometheus",
        &["system:serviceaccounts"],
    );
    let upstream = Upstream::start().await;
    let krp_yaml = pki.path().join("krp.yaml");
    std::fs::write(
        &krp_yaml,
        "authorization:\n  resourceAttributes:\n    namespace: monitoring\n    apiVersion: v1\n    resource: services\n    subresource: proxy\n    name: node-exporter\n",
    )
    .unwrap();
    let (port, health) = (free_port(), free_port());
    let d = pki.path().display();
    let args = [
        format!("--secure-listen-address=127.0.0.1:{port}"),
        format!("--upstream=http://{}/", upstream.addr),
        "--logtostderr=true".into(),
        "--v=0".into(),
        format!("--tls-cert-file={d}/server.crt"),
        format!("--tls-private-key-file={d}/server.key"),
        format!("--client-ca-file={d}/ca.crt"),
        "--tls-min-version=VersionTLS12".into(),
        format!("--kubeconfig={}", api.kubeconfig.display()),
        format!("--config-file={}", krp_yaml.display()),
        "--auth-header-fields-enabled".into(),
        "--auth-header-groups-field-separator=|".into(),
        "--ignore-paths=/healthz,/metrics/*".into(),
        format!("--proxy-endpoints-port={health}"),
    ];
    let _child = Running(
        Command::new(BIN)
            .arg("serve")
            .args(&args)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port).await;
    wait_for_port(health).await;
    let c = Client::new(([127, 0, 0, 1], port).into(), &pki.ca_der);

    let r = c.get_with_token("/metrics", "prom-token").await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = upstream.last();
    assert_eq!(
        seen.all("x-remote-user"),
        ["system:serviceaccount:monitoring:prometheus"]
    );
    assert_eq!(
        seen.all("x-remote-groups"),
        ["system:serviceaccounts|system:authenticated"]
    );
    let sar = &api.access_review_specs()[0];
    assert_eq!(sar["resourceAttributes"]["name"], "node-exporter");
    assert_eq!(sar["resourceAttributes"]["verb"], "get");

    // Unknown tokens are refused; --ignore-paths are served without credentials.
    assert_eq!(
        c.get_with_token("/metrics", "nope").await.unwrap().status,
        401
    );
    let r = c
        .get("/healthz", &[("x-remote-user", "mallory")])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        upstream.last().headers.get("x-remote-user").is_none(),
        "public paths carry no identity"
    );
    assert_eq!(c.get("/metrics/cadvisor", &[]).await.unwrap().status, 200);
    assert_eq!(
        c.get("/metrics", &[]).await.unwrap().status,
        401,
        "only the listed paths are public"
    );

    let out = Command::new("curl")
        .args(["-sS", &format!("http://127.0.0.1:{health}/healthz")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}

#[test]
fn kube_rbac_proxy_flags_authgate_lacks_are_refused_by_name() {
    let cases = [
        (
            "--insecure-listen-address=0.0.0.0:8080",
            "--insecure-listen-address is not supported",
        ),
        (
            "--tls-cipher-suites=TLS_AES_128_GCM_SHA256",
            "--tls-cipher-suites is not supported",
        ),
        ("--no-such-flag=1", "--no-such-flag"),
    ];
    for (flag, want) in cases {
        let out = Command::new(BIN)
            .args(["serve", "--upstream=http://127.0.0.1:1", flag])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{flag}: {err}");
    }
    let out = Command::new(BIN)
        .args(["serve", "--upstream=http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-cert-file"));
}
