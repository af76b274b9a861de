//! `authgate migration check` against a real Prometheus (Debian's
//! `prometheus`) scraping two authgate replicas (two processes of the real
//! binary): a route with recent token use (exit 1, listing who on either
//! replica), one without (exit 0), one no replica has (exit 2), a window
//! the token use is older than (exit 0), and a Prometheus that answers
//! something else (exit 2). The replicas' access log marks dry-run
//! requests `dry_run=true`.
//!
//! Without `/usr/bin/prometheus` the test is skipped, unless
//! `AUTHGATE_REQUIRE_PROMETHEUS=1` (CI sets it), when it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use testkit::*;

const BIN: &str = env!("CARGO_BIN_EXE_authgate");
const PROMETHEUS: &str = "/usr/bin/prometheus";

pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr").port()
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} never came up: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One authgate process with its own configuration.
pub(crate) struct Replica {
    child: Child,
    /// The TLS listener.
    pub(crate) addr: std::net::SocketAddr,
    /// The admin listener (plain HTTP, loopback).
    pub(crate) admin: u16,
    /// Its stderr (the log, access lines included).
    pub(crate) log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    /// Starts the binary with `static_and_routes` (the `static:` and
    /// `routes:` sections, which may name `{UP}` for the upstream), identity
    /// tracking on, the admin listener on a free loopback port.
    pub(crate) fn start(
        pki: &Pki,
        upstream: std::net::SocketAddr,
        static_and_routes: &str,
    ) -> Self {
        Self::start_with(pki, upstream, static_and_routes, "")
    }

    /// [`Self::start`] with `migration` added under `migration:` (indented).
    pub(crate) fn start_with(
        pki: &Pki,
        upstream: std::net::SocketAddr,
        static_and_routes: &str,
        migration: &str,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, admin) = (free_port(), free_port());
        let config = format!(
            "listen: \"127.0.0.1:{port}\"\ntls:\n  cert_file: {}\n  key_file: {}\n  client_ca_file: {}\n{}\nadmin:\n  listen: \"127.0.0.1:{admin}\"\nmigration:\n  track_identities: true\n{migration}",
            pki.server_cert.display(),
            pki.server_key.display(),
            pki.ca_file.display(),
            static_and_routes.replace("{UP}", &format!("http://{upstream}")),
        );
        let path = dir.path().join("authgate.yaml");
        std::fs::write(&path, config).expect("write config");
        let log = dir.path().join("stderr.log");
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start authgate");
        let r = Self {
            child,
            addr: ([127, 0, 0, 1], port).into(),
            admin,
            log,
            _dir: dir,
        };
        wait_for(
            "authgate",
            || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok()
            },
            &r.log,
        );
        r
    }

    /// A client without a certificate.
    pub(crate) fn client(&self, pki: &Pki) -> Client {
        Client::new(self.addr, &pki.ca_der)
    }
}

struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `targets` (admin ports) every second.
    fn start(targets: &[u16]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let targets: Vec<String> = targets
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: authgate\n    scrape_interval: 1s\n    scrape_timeout: 900ms\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("write config");
        let log = dir.path().join("prometheus.log");
        let child = Command::new(PROMETHEUS)
            .arg(format!(
                "--config.file={}/prometheus.yml",
                dir.path().display()
            ))
            .arg(format!("--storage.tsdb.path={}/data", dir.path().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start prometheus");
        let p = Self {
            child,
            port,
            log,
            _dir: dir,
        };
        wait_for("prometheus", || p.get("/-/ready").0 == 200, &p.log);
        p
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// (status, body) of a GET.
    fn get(&self, path: &str) -> (u16, String) {
        curl(&[format!("{}{path}", self.url())])
    }

    /// The value of a one-sample PromQL answer, if there is one.
    fn scalar(&self, promql: &str) -> Option<f64> {
        let (_, body) = curl(&[
            "-G".into(),
            format!("{}/api/v1/query", self.url()),
            "--data-urlencode".into(),
            format!("query={promql}"),
        ]);
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `promql` answers `want`.
    fn wait_until(&self, promql: &str, want: f64) {
        wait_for(
            &format!("{promql} == {want}"),
            || self.scalar(promql) == Some(want),
            &self.log,
        );
    }
}

fn curl(args: &[String]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn check(prometheus: &str, route: &str, window: &str) -> Output {
    Command::new(BIN)
        .args([
            "migration",
            "check",
            "--prometheus",
            prometheus,
            "--route",
            route,
            "--quiet-for",
            window,
            "--timeout",
            "5s",
        ])
        .output()
        .expect("run authgate migration check")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `true` when Prometheus is there; `false` (skip) when it is not and not
/// required.
#[expect(clippy::print_stderr, reason = "says why the test did nothing")]
pub(crate) fn have(binary: &str, require: &str) -> bool {
    if Path::new(binary).exists() {
        return true;
    }
    assert!(
        std::env::var(require).as_deref() != Ok("1"),
        "{binary} is required ({require}=1) but not installed"
    );
    eprintln!("skipped: {binary} is not installed");
    false
}

const CONFIG: &str = "static:\n  tokens:\n    - {token: bob-token-7f3a9c, user: bob}\n    - {token: carol-token-51be02, user: carol}\n  allow:\n    - {group: \"system:authenticated\", verbs: [get], paths: [\"/**\"]}\nroutes:\n  - {path_prefix: /, upstream: \"{UP}\"}\n  - {path_prefix: /legacy, upstream: \"{UP}\"}\n  - {path_prefix: /quiet, upstream: \"{UP}\"}\n  - {path_prefix: /closing, upstream: \"{UP}\", auth: {methods: [mtls], enforce: false}}\n";

/// `check` off the async runtime.
async fn check_async(url: &str, route: &'static str, window: &'static str) -> Output {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || check(&url, route, window))
        .await
        .expect("check task")
}

/// Tokens on /legacy: bob through one replica, carol through the other; on
/// /quiet only a certificate; bob's token on the dry-run route.
async fn workload(pki: &Pki, a: &Replica, b: &Replica) {
    let alice = pki.client("alice", &ClientOpts::cn("alice", &["dev"]));
    for (replica, token) in [(a, BOB_TOKEN), (b, CAROL_TOKEN)] {
        let r = replica.client(pki).get_with_token("/legacy/x", token).await;
        assert_eq!(r.expect("legacy").status, 200);
        let r = replica
            .client(pki)
            .with_cert(&alice)
            .get("/quiet/x", &[])
            .await;
        assert_eq!(r.expect("quiet").status, 200);
    }
    let r = a.client(pki).get_with_token("/closing/x", BOB_TOKEN).await;
    assert_eq!(r.expect("closing").status, 200, "a dry run serves");
}

#[tokio::test(flavor = "multi_thread")]
async fn migration_check_answers_from_prometheus_scraping_two_replicas() {
    if !have(PROMETHEUS, "AUTHGATE_REQUIRE_PROMETHEUS") {
        return;
    }
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let a = Replica::start(&pki, upstream.addr, CONFIG);
    let b = Replica::start(&pki, upstream.addr, CONFIG);
    workload(&pki, &a, &b).await;
    let last_token = Instant::now();

    let prom = Prometheus::start(&[a.admin, b.admin]);
    prom.wait_until("count(up{job=\"authgate\"} == 1)", 2.0);
    prom.wait_until(
        "count(authgate_identity_last_seen_timestamp_seconds{route=\"/legacy\",method=\"token\"})",
        2.0,
    );
    prom.wait_until(
        "sum(authgate_would_refuse_total{route=\"/closing\",reason=\"token_forbidden\"})",
        1.0,
    );
    // Each replica has every configured route's series from the start.
    prom.wait_until(
        "count(authgate_route_last_seen_timestamp_seconds{route=\"/quiet\"})",
        4.0,
    );

    let url = prom.url();
    let out = check_async(&url, "/legacy", "7d").await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut names: Vec<&str> = stdout
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["bob", "carol"], "{t}");
    assert!(
        stdout.lines().nth(2).is_some_and(|l| l.ends_with('Z')),
        "{t}"
    );

    for (route, window, code, says) in [
        ("/quiet", "7d", 0, "refuses nobody"),
        ("/closing", "7d", 1, "bob"),
        ("/nope", "7d", 2, "no authgate replica"),
    ] {
        let out = check_async(&url, route, window).await;
        let t = text(&out);
        assert_eq!(out.status.code(), Some(code), "{route}: {t}");
        assert!(t.contains(says), "{route}: {t}");
    }

    // The tokens are older than a short window: quiet (the gauges still
    // carry their time, so this is the window at work, not missing data).
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(last_token.elapsed())).await;
    let out = check_async(&url, "/legacy", "3s").await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Something that is not Prometheus answers: no answer, exit 2.
    let out = check_async(&format!("http://{}", upstream.addr), "/legacy", "7d").await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("no answer") && out.stdout.is_empty(), "{t}");
    // Prometheus gone: exit 2.
    drop(prom);
    let out = check_async(&url, "/legacy", "7d").await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("cannot reach Prometheus"), "{t}");

    // The dry-run request's access line says so.
    let log = std::fs::read_to_string(&a.log).expect("log");
    let line = log
        .lines()
        .find(|l| l.contains("path=\"/closing/x\""))
        .unwrap_or_else(|| panic!("no access line for /closing/x:\n{log}"));
    assert!(
        line.contains("status=200")
            && line.contains("dry_run=true would_refuse=\"token_forbidden\""),
        "{line}"
    );
}
