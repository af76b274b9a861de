//! Tokens are secrets: the real binary, logging at trace level in both
//! formats, never writes a raw token, whatever path the request takes.

use std::process::{Command, Stdio};

use testkit::*;

const BIN: &str = env!("CARGO_BIN_EXE_authgate");

/// Kills the server if the test fails half-way.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_raw_token_appears_in_trace_logs_on_any_path() {
    for format in ["text", "json"] {
        let pki = Pki::new();
        let api = FakeApi::start(&pki).await;
        api.allow(
            Rule::group("system:serviceaccounts")
                .verb("get")
                .path("/api/*"),
        );
        let upstream = Upstream::start().await;
        let port = free_port();
        let mut y = Yaml::new(&pki, upstream.addr);
        y.rest = format!(
            "listen: \"127.0.0.1:{port}\"\nkubernetes: {{kubeconfig: {}, timeout: 1s}}\nlog: {{format: {format}, level: trace}}\nadmin: {{listen: \"off\"}}\n",
            api.kubeconfig.display()
        );
        let config = pki.path().join("authgate.yaml");
        std::fs::write(&config, y.render().replace("listen: \"127.0.0.1:0\"\n", "")).unwrap();
        let log = pki.path().join("stderr.log");
        let mut child = KillOnDrop(
            Command::new(BIN)
                .args(["serve", "--config", config.to_str().unwrap()])
                .env("RUST_LOG", "trace")
                .stdout(Stdio::null())
                .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
                .spawn()
                .unwrap(),
        );
        wait_for_port(port).await;
        let c = Client::new(([127, 0, 0, 1], port).into(), &pki.ca_der);

        let good = "SECRETgood7c1f";
        api.add_token(
            good,
            "system:serviceaccount:demo:bot",
            &["system:serviceaccounts"],
        );
        let mut secrets = vec![good.to_owned(), BOB_TOKEN.to_owned()];
        assert_eq!(c.get_with_token("/api/x", good).await.unwrap().status, 200);
        assert_eq!(c.get_with_token("/api/x", good).await.unwrap().status, 200);
        assert_eq!(
            c.clone()
                .http2()
                .get_with_token("/api/x", good)
                .await
                .unwrap()
                .status,
            200
        );
        assert_eq!(
            c.get_with_token("/api/x", BOB_TOKEN).await.unwrap().status,
            200
        );
        let faults = [
            Fault::None,
            Fault::ServerError,
            Fault::TooManyRequests {
                retry_after_secs: 1,
            },
            Fault::MalformedJson,
            Fault::WrongKind,
            Fault::Hang,
            Fault::HangMidResponse,
        ];
        for (i, fault) in faults.into_iter().enumerate() {
            api.set_fault(Endpoint::TokenReview, fault);
            let t = format!("SECRETfault{i}x9q");
            c.get_with_token("/api/x", &t).await.unwrap();
            secrets.push(t);
        }
        api.set_fault(Endpoint::TokenReview, Fault::None);
        for header in [
            "Bearer SECRETbad a",
            "Basic SECRETbasic",
            "Bearer SECRET~ok SECRETtwo",
        ] {
            let r = c.get("/api/x", &[("authorization", header)]).await.unwrap();
            assert_eq!(r.status, 401, "{header}");
        }
        secrets.extend(["SECRETbad", "SECRETbasic", "SECRET~ok", "SECRETtwo"].map(String::from));

        let _ = Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status();
        let _ = child.0.wait();
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(
            logged.len() > 10_000,
            "trace logging is on ({} bytes)",
            logged.len()
        );
        assert!(
            logged.contains("token_rejected") || logged.contains("backend_"),
            "access lines are there"
        );
        for s in &secrets {
            assert!(
                !logged.contains(s.as_str()),
                "{format}: token {s:?} appears in the log"
            );
        }
        assert!(
            !logged.contains("SECRET"),
            "{format}: no fragment of any token appears in the log"
        );
        if format == "json" {
            check_access_lines(&logged);
        }
    }
}

/// Every access line is one JSON object with the documented fields, and the
/// reasons come from the fixed taxonomy.
fn check_access_lines(logged: &str) {
    let lines: Vec<serde_json::Value> = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "authgate::access")
        .collect();
    assert!(lines.len() >= 10, "{} access lines", lines.len());
    let taxonomy = [
        "allowed",
        "missing_credentials",
        "invalid_token",
        "token_rejected",
        "cert_unmapped",
        "forbidden",
        "backend_timeout",
        "backend_throttled",
        "backend_unreachable",
        "backend_error",
        "upstream_error",
        "upstream_timeout",
    ];
    for l in &lines {
        for field in [
            "timestamp",
            "peer",
            "method",
            "path",
            "route",
            "user",
            "groups",
            "auth",
            "status",
            "reason",
            "latency_us",
            "token_cache",
            "access_cache",
        ] {
            assert!(!l[field].is_null(), "field {field} missing in {l}");
        }
        let reason = l["reason"].as_str().expect("reason");
        assert!(
            taxonomy.contains(&reason),
            "reason {reason} is not in the taxonomy"
        );
    }
    let first_ok = lines
        .iter()
        .find(|l| l["reason"] == "allowed")
        .expect("an allowed line");
    assert_eq!(first_ok["user"], "system:serviceaccount:demo:bot");
    assert_eq!(first_ok["token_cache"], "miss");
    let cached = lines.iter().filter(|l| l["token_cache"] == "hit").count();
    assert!(cached >= 2, "cache hits are flagged ({cached})");
}
