//! Every `authgate_*` metric the alerts and the dashboard read is in a real
//! scrape: the authgate binary, started on loopback against the fake
//! Kubernetes API, after a few requests of each kind (tokens, client
//! certificates, refusals, failed handshakes, a throttled review).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::*;

use super::selectors::{selectors, series_labels, unmatched};
use super::{alerts, dashboard_queries, metric_names, rule_groups};

const BIN: &str = env!("CARGO_BIN_EXE_authgate");
const TOKEN: &str = "monitoring-sa-token";
const NOBODY: &str = "monitoring-nobody-token";
const REVOKED: u64 = 4242;

/// Waits for `port`; on a timeout, says what authgate logged.
async fn wait_for_port(port: u16, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "port {port} never opened; authgate said:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /metrics` on the (plain, loopback) admin listener.
fn scrape(admin: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).expect("connect to admin");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("send the scrape");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the scrape");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// The sample names of an exposition (`_bucket`, `_sum`, `_count` and
/// `_total` included, as Prometheus stores them).
fn sample_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| l.starts_with("authgate_"))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

fn config(pki: &Pki, api: &FakeApi, upstream: &Upstream, port: u16, admin: u16) -> String {
    let d = pki.path().display();
    let crl = pki.crl_file("revoked.crl", &[REVOKED]);
    format!(
        "listen: \"127.0.0.1:{port}\"
tls:
  cert_file: {d}/server.crt
  key_file: {d}/server.key
  client_ca_file: {bundle}
  crl_files: [{crl}]
routes:
  - {{path_prefix: /api/legacy, upstream: \"http://{up}\", auth: {{token: deprecated}}}}
  - {{path_prefix: /, upstream: \"http://{up}\"}}
kubernetes:
  kubeconfig: {kubeconfig}
  timeout: 2s
admin:
  listen: \"127.0.0.1:{admin}\"
migration:
  track_identities: true
",
        bundle = pki.bundle_file.display(),
        crl = crl.display(),
        up = upstream.addr,
        kubeconfig = api.kubeconfig.display(),
    )
}

/// Tokens (allowed, on a deprecated route, unknown, forbidden), client
/// certificates (allowed; expired, foreign, revoked: failed handshakes) and
/// a throttled TokenReview.
async fn drive(pki: &Pki, api: &FakeApi, port: u16) {
    let c = Client::new(([127, 0, 0, 1], port).into(), &pki.ca_der);
    for _ in 0..3 {
        assert_eq!(
            c.get_with_token("/api/x", TOKEN)
                .await
                .expect("a response")
                .status,
            200
        );
    }
    let legacy = c
        .get_with_token("/api/legacy/x", TOKEN)
        .await
        .expect("a response");
    assert_eq!(legacy.status, 200);
    assert_eq!(
        c.get_with_token("/api/x", "unknown")
            .await
            .expect("a response")
            .status,
        401
    );
    assert_eq!(
        c.get_with_token("/api/x", NOBODY)
            .await
            .expect("a response")
            .status,
        403
    );
    let alice = c
        .clone()
        .with_cert(&pki.client("alice", &ClientOpts::cn("alice", &["dev"])));
    assert_eq!(
        alice.get("/api/x", &[]).await.expect("a response").status,
        200
    );
    for (name, opts) in [
        (
            "old",
            ClientOpts::cn("alice", &["dev"]).validity(Validity::Expired),
        ),
        (
            "foreign",
            ClientOpts::cn("alice", &["dev"]).signer(Signer::Foreign),
        ),
        (
            "revoked",
            ClientOpts::cn("mallory", &["dev"]).serial(REVOKED),
        ),
    ] {
        let refused = c.clone().with_cert(&pki.client(name, &opts));
        assert!(
            refused.get("/api/x", &[]).await.is_err(),
            "{name} is refused"
        );
    }
    api.set_fault(
        Endpoint::TokenReview,
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
    );
    let throttled = c
        .get_with_token("/api/x", "another-token")
        .await
        .expect("a response");
    assert_eq!(throttled.status, 503);
    api.set_fault(Endpoint::TokenReview, Fault::None);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_rules_and_the_dashboard_read_is_in_a_real_scrape() {
    let pki = Pki::new();
    let api = FakeApi::start(&pki).await;
    api.allow(
        Rule::group("system:serviceaccounts")
            .verb("get")
            .path("/api/*"),
    );
    api.allow(Rule::group("dev").verb("get").path("/api/*"));
    api.add_token(
        TOKEN,
        "system:serviceaccount:m:sa",
        &["system:serviceaccounts"],
    );
    api.add_token(NOBODY, "system:serviceaccount:m:nobody", &[]);
    let upstream = Upstream::start().await;
    let (port, admin) = (free_port(), free_port());
    let file = pki.path().join("monitoring.yaml");
    std::fs::write(&file, config(&pki, &api, &upstream, port, admin)).expect("write the config");
    let log = pki.path().join("authgate.log");
    let _child = Running(
        Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .spawn()
            .expect("start authgate"),
    );
    wait_for_port(port, &log).await;
    wait_for_port(admin, &log).await;

    // Before any failure, the alerting series exist at 0, so the first
    // revoked handshake or failed reload is an increase.
    let fresh = scrape(admin);
    for series in [
        r#"authgate_tls_handshake_failures_total{reason="revoked"} 0"#,
        r#"authgate_tls_handshake_failures_total{reason="expired"} 0"#,
        r#"authgate_tls_handshake_failures_total{reason="unknown_ca"} 0"#,
        r#"authgate_tls_reloads_total{result="failure"} 0"#,
        r#"authgate_upstream_tls_reloads_total{result="failure"} 0"#,
    ] {
        assert!(fresh.contains(series), "{series} missing from\n{fresh}");
    }

    drive(&pki, &api, port).await;
    let body = scrape(admin);
    let exposed = sample_names(&body);
    for series in [
        r#"authgate_tls_handshake_failures_total{reason="revoked"} 1"#,
        r#"authgate_tls_handshake_failures_total{reason="expired"} 1"#,
        r#"authgate_tls_handshake_failures_total{reason="unknown_ca"} 1"#,
    ] {
        assert!(body.contains(series), "{series} missing from\n{body}");
    }
    let throttled = r#"authgate_api_throttled_total{kind="tokenreview"} "#;
    assert!(body.contains(throttled), "{throttled} missing from\n{body}");
    assert!(!body.contains(TOKEN), "metrics never carry tokens");

    let mut used: Vec<(String, String)> = Vec::new();
    for (alert, expr) in alerts(&rule_groups()) {
        used.extend(metric_names(&expr).into_iter().map(|m| (m, alert.clone())));
    }
    for q in dashboard_queries() {
        used.extend(
            metric_names(&q)
                .into_iter()
                .map(|m| (m, "the dashboard".to_owned())),
        );
    }
    assert!(used.len() > 30, "{} uses found", used.len());
    let missing: Vec<String> = used
        .iter()
        .filter(|(m, _)| !exposed.contains(m))
        .map(|(m, by)| format!("{m} (read by {by})"))
        .collect();
    assert!(
        missing.is_empty(),
        "not in the scrape:\n{}\n\nexposed: {exposed:#?}",
        missing.join("\n")
    );

    // And every label matcher selects series that exist.
    let scraped = series_labels(&body);
    let exprs = alerts(&rule_groups()).into_iter().map(|(_, e)| e);
    let unmatched: Vec<String> = exprs
        .chain(dashboard_queries())
        .flat_map(|e| selectors(&e))
        .flat_map(|(metric, matchers)| {
            let scraped = &scraped;
            matchers
                .into_iter()
                .filter_map(move |m| unmatched(&metric, &m, scraped))
        })
        .collect();
    assert!(unmatched.is_empty(), "{}", unmatched.join("\n"));
}
