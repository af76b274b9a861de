//! Debian's nginx in front of authgate in `mode: auth`, running the shipped
//! snippet `deploy/auth-request/nginx.conf`: token and certificate clients
//! are allowed and denied exactly as in proxy mode, spoofed identity headers
//! never reach the upstream, and a forged certificate header from an
//! untrusted peer is ignored.
//!
//! Needs `nginx` and `curl`. Without nginx the test is skipped, unless
//! `AUTHGATE_REQUIRE_NGINX=1` (CI sets it), when it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use testkit::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn start(
        bin: &Path,
        pki: &Pki,
        authgate: std::net::SocketAddr,
        upstream: std::net::SocketAddr,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let d = pki.path().display().to_string();
        let snippet = std::fs::read_to_string(repo().join("deploy/auth-request/nginx.conf"))
            .expect("the shipped snippet")
            .replace("@LISTEN@", &format!("127.0.0.1:{port}"))
            .replace("@SERVER_CERT@", &format!("{d}/server.crt"))
            .replace("@SERVER_KEY@", &format!("{d}/server.key"))
            .replace("@CLIENT_CA@", &pki.ca_file.display().to_string())
            .replace("@UPSTREAM@", &format!("http://{upstream}"))
            .replace("@AUTHGATE@", &format!("https://{authgate}"))
            .replace("@AUTHGATE_CA@", &pki.ca_file.display().to_string())
            .replace("@AUTHGATE_NAME@", "localhost");
        let body: String = snippet
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        assert!(!body.contains('@'), "unfilled placeholder:\n{snippet}");
        let p = dir.path().display().to_string();
        std::fs::write(dir.path().join("authgate.conf"), snippet).expect("write snippet");
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n{user}events {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n  include {p}/authgate.conf;\n}}\n",
            user = if root { "user root;\n" } else { "" },
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
        let child = Command::new(bin)
            .args(["-p", &p, "-c", &format!("{p}/nginx.conf")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nginx");
        let n = Self { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = std::fs::read_to_string(n.dir.path().join("error.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "nginx never listened: {log}");
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }
}

/// curl; returns (status, response headers and body).
async fn curl(args: Vec<String>) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args(["-sS", "-i", "--max-time", "10", "-w", "\n%{http_code}"])
            .args(&args)
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    })
    .await
    .expect("curl task")
}

/// authgate in `mode: auth` (trusting 127.0.0.1) behind nginx running the
/// shipped snippet; `None` when nginx is not installed and not required.
#[expect(clippy::print_stderr, reason = "says why the test did nothing")]
async fn setup() -> Option<(Env, Nginx)> {
    let Some(bin) = nginx_binary() else {
        assert!(
            std::env::var("AUTHGATE_REQUIRE_NGINX").as_deref() != Ok("1"),
            "nginx is required (AUTHGATE_REQUIRE_NGINX=1) but not installed"
        );
        eprintln!("skipped: nginx is not installed");
        return None;
    };
    let env = Env::start(|y| {
        y.routes = "routes:\n  - {path_prefix: /, auth: {token: allowed}}\n  - {path_prefix: /api/legacy, auth: {token: deprecated}}\n".into();
        y.rest = "mode: auth\nauth:\n  trusted_proxies: [\"127.0.0.1\"]\nheaders:\n  group_separator: \",\"\n".into();
    })
    .await;
    let nginx = Nginx::start(&bin, &env.pki, env.gate.addr, env.upstream.addr);
    Some((env, nginx))
}

/// curl arguments for `path` on nginx, trusting the test root.
fn to_nginx(env: &Env, nginx: &Nginx, path: &str, extra: &[String]) -> Vec<String> {
    let mut a = vec![
        "--cacert".to_owned(),
        env.pki.ca_file.display().to_string(),
        "--resolve".into(),
        format!("localhost:{}:127.0.0.1", nginx.port),
    ];
    a.extend_from_slice(extra);
    a.push(format!("https://localhost:{}{path}", nginx.port));
    a
}

fn cert_args(c: &ClientCert) -> Vec<String> {
    vec![
        "--cert".into(),
        c.cert_file.display().to_string(),
        "--key".into(),
        c.key_file.display().to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn token_clients_are_allowed_and_denied_as_in_proxy_mode_and_spoofing_is_refused() {
    let Some((env, nginx)) = setup().await else {
        return;
    };
    let client = Client::new(([127, 0, 0, 1], nginx.port).into(), &env.pki.ca_der);
    // bob (dev) may get and create under /api; carol may nothing.
    for (method, path, token, status) in [
        ("GET", "/api/pods", BOB_TOKEN, 200),
        ("POST", "/api/pods", BOB_TOKEN, 200),
        ("DELETE", "/api/pods", BOB_TOKEN, 403),
        ("GET", "/admin", BOB_TOKEN, 403),
        ("GET", "/api/pods", CAROL_TOKEN, 403),
        ("GET", "/api/pods", "unknown-token", 401),
    ] {
        let before = env.upstream.count();
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let r = client.send(req).await.unwrap();
        assert_eq!(r.status, status, "{method} {path} {token}: {:?}", r.body);
        if status == 200 {
            assert_eq!(env.upstream.count(), before + 1);
            let seen = env.upstream.last();
            assert_eq!(seen.all("x-remote-user"), ["bob"]);
            assert_eq!(seen.all("x-remote-group"), ["dev,system:authenticated"]);
            assert_eq!(seen.all("x-remote-uid"), ["1001"]);
            assert!(seen.all("authorization").iter().all(String::is_empty));
        } else {
            assert_eq!(env.upstream.count(), before, "forwarded {method} {path}");
        }
    }
    let r = client.get("/api/pods", &[]).await.unwrap();
    assert_eq!(r.status, 401);

    // Spoofed identity headers reach authgate in the subrequest; nginx could
    // not strip them all from the proxied request, so the check refuses them.
    let bearer = format!("Bearer {BOB_TOKEN}");
    for spoof in ["x-remote-user", "X-Remote-Extra-Scopes", "impersonate-user"] {
        let before = env.upstream.count();
        let r = client
            .get("/api/pods", &[("authorization", &bearer), (spoof, "root")])
            .await
            .unwrap();
        assert_eq!(r.status, 403, "{spoof}");
        assert_eq!(env.upstream.count(), before, "{spoof} forwarded");
    }

    // A deprecated token route is served with authgate's Warning.
    let r = client
        .get_with_token("/api/legacy/x", BOB_TOKEN)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.headers["warning"],
        "299 authgate \"bearer token authentication is deprecated on this route; use a client certificate\""
    );
    let r = client.get_with_token("/api/x", BOB_TOKEN).await.unwrap();
    assert!(r.headers.get("warning").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_clients_with_curl_are_allowed_and_denied_as_in_proxy_mode() {
    let Some((env, nginx)) = setup().await else {
        return;
    };
    // nginx forwards the leaf only ($ssl_client_escaped_cert), so these are
    // issued by the root itself; an intermediate must be in authgate's client
    // CA bundle (deploy/README.md).
    let root = |cn: &str, o: &str| {
        env.pki
            .client(cn, &ClientOpts::cn(cn, &[o]).signer(Signer::Root))
    };
    for (cn, o, path, status) in [
        ("alice", "dev", "/api/x", 200),
        ("alice", "dev", "/admin", 403),
        ("olga", "ops", "/admin", 200),
        ("olga", "ops", "/api/x", 403),
    ] {
        let before = env.upstream.count();
        let (code, out) = curl(to_nginx(&env, &nginx, path, &cert_args(&root(cn, o)))).await;
        assert_eq!(code, status, "{cn} {path}: {out}");
        if status == 200 {
            assert_eq!(env.upstream.last().all("x-remote-user"), [cn]);
            assert_eq!(env.upstream.count(), before + 1);
        } else {
            assert_eq!(env.upstream.count(), before);
        }
    }
    // A certificate nginx refuses never reaches authgate: 400 from nginx.
    let foreign = env.pki.client(
        "mallory",
        &ClientOpts::cn("olga", &["ops"]).signer(Signer::Foreign),
    );
    let (code, out) = curl(to_nginx(&env, &nginx, "/admin", &cert_args(&foreign))).await;
    assert_eq!(code, 400, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_certificate_header_is_ignored_through_nginx_and_from_an_untrusted_peer() {
    let Some((env, nginx)) = setup().await else {
        return;
    };
    let ops = env.pki.client(
        "olga",
        &ClientOpts::cn("olga", &["ops"]).signer(Signer::Root),
    );
    let forged = utf8_percent_encode(
        &std::fs::read_to_string(&ops.cert_file).unwrap(),
        NON_ALPHANUMERIC,
    )
    .to_string();
    // Sent to nginx: replaced by nginx's own (empty: no certificate).
    let header = vec!["-H".to_owned(), format!("X-Client-Cert: {forged}")];
    let (code, out) = curl(to_nginx(&env, &nginx, "/admin", &header)).await;
    assert_eq!(code, 401, "{out}");
    // Nor does an Envoy-style XFCC sent through nginx count.
    let header = vec![
        "-H".to_owned(),
        format!("X-Forwarded-Client-Cert: Hash=00;Cert=\"{forged}\""),
    ];
    let (code, out) = curl(to_nginx(&env, &nginx, "/admin", &header)).await;
    assert_eq!(code, 401, "{out}");
    // Sent straight to authgate from a peer outside trusted_proxies
    // (127.0.0.2): X-Original-URI from such a peer is refused outright.
    let port = env.gate.addr.port();
    let (code, out) = curl(vec![
        "--cacert".into(),
        env.pki.ca_file.display().to_string(),
        "--interface".into(),
        "127.0.0.2".into(),
        "--resolve".into(),
        format!("localhost:{port}:127.0.0.1"),
        "-H".into(),
        format!("X-Client-Cert: {forged}"),
        "-H".into(),
        "X-Original-URI: /admin".into(),
        format!("https://localhost:{port}/auth"),
    ])
    .await;
    assert_eq!(code, 400, "{out}");
    assert!(out.contains("bad_request"), "{out}");
    assert_eq!(env.upstream.count(), 0);
}

#[test]
fn the_shipped_auth_mode_config_is_valid() {
    let text = std::fs::read_to_string(repo().join("deploy/auth-request/authgate.yaml")).unwrap();
    let config = authgate::config::Config::from_yaml(&text).expect("authgate.yaml validates");
    assert!(matches!(config.mode, authgate::config::Mode::Auth(_)));
}
