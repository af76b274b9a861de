//! `authgate demo`: a dev PKI, a static backend, a built-in echo upstream and
//! ready-to-paste curl commands, with no cluster needed.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use base64::Engine;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tracing::debug;

use crate::body::{Body, full};
use crate::config::Config;
use crate::pki::{self, ClientSpec};

/// Everything the demo created, for printing.
pub struct Setup {
    /// The validated configuration.
    pub config: Config,
    /// The YAML it came from (holds only the token's SHA-256).
    pub yaml: String,
}

/// Creates (or reuses) the dev PKI and demo token under `dir` and returns the
/// demo configuration for `listen`, an echo upstream at `upstream` and the
/// admin listener (plain HTTP, loopback clients only) at `admin`.
pub fn setup(
    dir: &Path,
    listen: SocketAddr,
    upstream: SocketAddr,
    admin: SocketAddr,
) -> Result<Setup, Box<dyn std::error::Error>> {
    if !admin.ip().is_loopback() {
        return Err(format!(
            "--admin-listen {admin}: the demo's admin listener must be on loopback"
        )
        .into());
    }
    pki::init(dir)?;
    let client = |name: &str, cn: Option<&str>, orgs: &[&str], uris: &[&str]| ClientSpec {
        name: name.into(),
        cn: cn.map(Into::into),
        orgs: orgs.iter().map(|s| (*s).to_owned()).collect(),
        uris: uris.iter().map(|s| (*s).to_owned()).collect(),
        days: 30,
        ..ClientSpec::default()
    };
    pki::issue_client(dir, &client("alice", Some("alice"), &["dev"], &[]))?;
    pki::issue_client(
        dir,
        &client(
            "reporter",
            None,
            &[],
            &["spiffe://demo.authgate/ns/default/sa/reporter"],
        ),
    )?;
    let token = demo_token(&dir.join("demo.token"))?;
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    let d = dir.display();
    let yaml = format!(
        r#"# Written by `authgate demo`.
listen: "{listen}"
tls:
  cert_file: {d}/server.crt
  key_file: {d}/server.key
  client_ca_file: {d}/ca.crt
identity:
  rules:
    - spiffe: {{trust_domain: demo.authgate}}
    - common_name: {{}}
static:
  tokens:
    - {{token_sha256: "{digest}", user: bob, groups: [dev]}}
  allow:
    - {{group: dev, verbs: [get, post], paths: ["/api/**"]}}
    - {{group: "system:serviceaccounts:default", verbs: [get], paths: ["/api/**"]}}
    - {{group: admins, verbs: ["*"], paths: ["/admin", "/admin/**"]}}
routes:
  - {{path_prefix: /, upstream: "http://{upstream}"}}
admin: {{listen: "{admin}"}}
migration: {{track_identities: true}}
"#
    );
    let config = Config::from_yaml(&yaml)?;
    std::fs::write(dir.join("demo.yaml"), &yaml)?;
    Ok(Setup { config, yaml })
}

/// Reads the demo token from `path`, creating a random one first if needed.
fn demo_token(path: &Path) -> std::io::Result<String> {
    if let Ok(t) = std::fs::read_to_string(path) {
        let t = t.trim().to_owned();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let mut raw = [0u8; 24];
    crate::tls::provider()
        .secure_random
        .fill(&mut raw)
        .map_err(|_| std::io::Error::other("no random source"))?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let mut f = std::fs::OpenOptions::new();
    f.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        f.mode(0o600);
    }
    f.open(path)?.write_all(token.as_bytes())?;
    Ok(token)
}

/// The curl commands the demo prints, each with what it should show.
pub fn curl_commands(dir: &Path, listen: SocketAddr) -> Vec<(&'static str, String)> {
    let d = dir.display();
    let url = format!("https://localhost:{}", listen.port());
    let base = format!("curl -sS --cacert {d}/ca.crt");
    vec![
        (
            "mTLS (CN=alice, O=dev) -> 200",
            format!("{base} --cert {d}/alice.crt --key {d}/alice.key {url}/api/hello"),
        ),
        (
            "SPIFFE mTLS -> 200 as system:serviceaccount:default:reporter",
            format!("{base} --cert {d}/reporter.crt --key {d}/reporter.key {url}/api/hello"),
        ),
        (
            "bearer token (user bob) -> 200",
            format!("{base} -H \"Authorization: Bearer $(cat {d}/demo.token)\" {url}/api/hello"),
        ),
        ("no credentials -> 401", format!("{base} {url}/api/hello")),
        (
            "alice on /admin -> 403",
            format!("{base} --cert {d}/alice.crt --key {d}/alice.key {url}/admin"),
        ),
    ]
}

/// The admin commands the demo prints (migration report and page, metrics,
/// a flush), each with what it should show.
pub fn admin_commands(admin: SocketAddr) -> Vec<(&'static str, String)> {
    let url = format!("http://{admin}");
    vec![
        (
            "migration report: who uses tokens, who certificates -> 200",
            format!("curl -sS '{url}/migration?format=text'"),
        ),
        (
            "the same as JSON -> 200",
            format!("curl -sS {url}/migration"),
        ),
        (
            "the migration page (or open the URL in a browser) -> 200",
            format!("curl -sS -H 'Accept: text/html' {url}/migration"),
        ),
        (
            "Prometheus metrics -> 200",
            format!("curl -sS {url}/metrics"),
        ),
        (
            "revoke bob's cached reviews (with fleet: on every replica) -> 200",
            format!("curl -sS -X POST '{url}/cache/flush?user=bob'"),
        ),
    ]
}

/// An upstream that answers every request with the method, path and headers
/// it received, as JSON. Serves until `shutdown` resolves.
pub async fn serve_echo(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            () = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    debug!(error = %e, "echo accept failed");
                    continue;
                }
            },
        };
        tokio::spawn(async move {
            let svc =
                service_fn(|req: Request<Incoming>| async move { Ok::<_, Infallible>(echo(&req)) });
            let r = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades()
                .await;
            if let Err(e) = r {
                debug!(error = %e, "echo connection failed");
            }
        });
    }
}

fn echo(req: &Request<Incoming>) -> Response<Body> {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(k.to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let body = serde_json::json!({
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map_or("/", |p| p.as_str()),
        "headers": headers,
    });
    let mut resp = Response::new(full(Bytes::from(body.to_string())));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}
