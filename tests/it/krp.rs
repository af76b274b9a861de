//! A kube-rbac-proxy sidecar's arguments, unchanged, drive the authgate binary.

use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::*;

const BIN: &str = env!("CARGO_BIN_EXE_authgate");

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

    // kube-rbac-proxy serves /healthz on --proxy-endpoints-port with its TLS material.
    let out = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            &format!("{d}/ca.crt"),
            &format!("https://localhost:{health}/healthz"),
            "--resolve",
            &format!("localhost:{health}:127.0.0.1"),
        ])
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
            "--tls-cipher-suites: authgate always offers the TLS 1.2 suites",
        ),
        ("--http2-max-size=1", "limits.max_header_bytes"),
        (
            "--http2-max-concurrent-streams=10",
            "limits.max_connections",
        ),
        ("--version", "authgate --version"),
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
        .args([
            "serve",
            "--upstream=http://127.0.0.1:1",
            "--tls-private-key-file=k",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--tls-cert-file: is needed with --tls-private-key-file")
    );
}

/// The TCP ports process `pid` listens on (from /proc: its socket inodes
/// in LISTEN state), so no guess about "which port might it open" is needed.
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is ADDR:PORT in hex; state 0A is LISTEN; inode is field 9.
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let port = f[1].rsplit(':').next().expect("port");
                ports.push(u16::from_str_radix(port, 16).expect("hex port"));
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The serving certificate at 127.0.0.1:`port`, as `openssl s_client` sees it.
fn served_certificate(port: u16) -> rustls_pki_types::CertificateDer<'static> {
    use rustls_pki_types::pem::PemObject;
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("openssl");
    rustls_pki_types::CertificateDer::from_pem_slice(&out.stdout).expect("a served certificate")
}

/// Starts `authgate serve ARGS` (listening on `port`) and returns it, its
/// pid and its stderr lines up to "authgate serving".
async fn start_collecting_startup_log(port: u16, args: &[String]) -> (Running, u32, Vec<String>) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("authgate");
    let stderr = child.stderr.take().expect("stderr");
    let pid = child.id();
    let running = Running(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    wait_for_port(port).await;
    let mut lines = Vec::new();
    while !lines
        .iter()
        .any(|l: &String| l.contains("authgate serving"))
    {
        lines.push(
            rx.recv_timeout(Duration::from_secs(20))
                .expect("startup log lines"),
        );
    }
    (running, pid, lines)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sidecar_with_klog_flags_and_no_certificate_starts_next_to_prometheus() {
    let pki = Pki::new();
    let api = FakeApi::start(&pki).await;
    api.add_token("t0k3n", "alice", &[]);
    api.allow(Rule::user("alice"));
    let upstream = Upstream::start().await;
    // Prometheus's port (authgate's own admin default) is taken, by this test
    // or by someone else: either way authgate must start.
    let _prometheus = std::net::TcpListener::bind("127.0.0.1:9090").ok();
    let port = free_port();
    let args: Vec<String> = [
        format!("--secure-listen-address=127.0.0.1:{port}"),
        format!("--upstream=http://{}/", upstream.addr),
        format!("--kubeconfig={}", api.kubeconfig.display()),
    ]
    .into_iter()
    .chain(
        [
            "--http2-disable",
            "--add-dir-header",
            "--alsologtostderr=true",
            "--log-backtrace-at",
            ":0",
            "--log-dir=/nonexistent",
            "--log-file",
            "/nonexistent/krp.log",
            "--log-file-max-size=1800",
            "--one-output",
            "--skip-headers=false",
            "--skip-log-headers",
            "--stderrthreshold",
            "ERROR",
            "-v=2",
        ]
        .map(String::from),
    )
    .collect();
    let (_child, pid, lines) = start_collecting_startup_log(port, &args).await;

    // Exactly one warning, naming every ignored flag.
    let ignored: Vec<&String> = lines.iter().filter(|l| l.contains("ignored")).collect();
    assert_eq!(ignored.len(), 1, "{lines:#?}");
    assert!(ignored[0].contains("WARN"), "{}", ignored[0]);
    for flag in [
        "--add-dir-header",
        "--alsologtostderr",
        "--log-backtrace-at",
        "--log-dir",
        "--log-file,",
        "--log-file-max-size",
        "--one-output",
        "--skip-headers,",
        "--skip-log-headers",
        "--stderrthreshold",
    ] {
        assert!(ignored[0].contains(flag), "{flag}: {}", ignored[0]);
    }
    assert_eq!(
        lines.iter().filter(|l| l.contains("self-signed")).count(),
        1,
        "{lines:#?}"
    );

    // Only --secure-listen-address is listened on.
    assert_eq!(listening_ports(pid), [port]);

    // The generated certificate is served, valid for localhost (the client
    // verifies it, trusting only that certificate).
    let cert = served_certificate(port);
    let c = Client::new(([127, 0, 0, 1], port).into(), &cert);
    let r = c.get_with_token("/metrics", "t0k3n").await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(c.get("/metrics", &[]).await.unwrap().status, 401);

    // --http2-disable: a client offering h2 and HTTP/1.1 gets HTTP/1.1.
    let out = Command::new("curl")
        .args([
            "-sk",
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            "-H",
            "Authorization: Bearer t0k3n",
            &format!("https://127.0.0.1:{port}/metrics"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1.1");
}
