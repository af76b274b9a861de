//! The pipeline in memory: a real [`Gate`] built from YAML by
//! [`crate::app::gate`], driven with `http::Request`s of an empty body, and
//! an in-memory [`Forward`] that records what the upstream would see. No
//! sockets; TLS, framing and timeouts are tested over real sockets in
//! `tests/`.

mod admission;
mod auth_mode;
mod lookalikes;
mod param_rewrites;
mod refusals;
mod review_a;
mod rewrite;
mod token_misses;
mod tunnels;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use tempfile::TempDir;

use super::{ConnInfo, Gate, Parts};
use crate::authz::permit::Permit;
use crate::body::{self, Body};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pki::{self, ClientSpec};
use crate::proxy::{self, Forward};
use crate::routes::RouteId;
use crate::server::Downstream;
use crate::tls;

/// Bob's static token (groups `dev`).
const BOB: &str = "bob-token-7f3a9c";
/// Carol's static token (no groups, no permissions).
const CAROL: &str = "carol-token-51be02";

/// What the in-memory upstream received.
#[derive(Clone, Debug)]
struct Seen {
    route: RouteId,
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }
}

/// How the in-memory upstream answers.
#[derive(Clone, Copy, Debug, Default)]
enum Answer {
    #[default]
    Ok,
    Refused,
    Timeout,
    Panic,
}

/// An upstream in memory: records each request, answers per [`Answer`].
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
    answer: Mutex<Answer>,
}

impl<B: Send> Forward<B> for Recorder {
    async fn forward(
        &self,
        permit: &Permit,
        req: Request<B>,
        path_and_query: PathAndQuery,
        _downstream: &Downstream,
        _local: &proxy::Local,
    ) -> Result<Response<Body>, proxy::Error> {
        let answer = *self.answer.lock().unwrap();
        let upstream = "10.0.0.1:80".to_owned();
        match answer {
            Answer::Ok => {}
            Answer::Refused => {
                return Err(proxy::Error::Unavailable {
                    upstream,
                    detail: "connection refused".into(),
                });
            }
            Answer::Timeout => {
                return Err(proxy::Error::Timeout {
                    upstream,
                    timeout: std::time::Duration::from_secs(30),
                });
            }
            Answer::Panic => panic!("the upstream client has a bug"),
        }
        self.seen.lock().unwrap().push(Seen {
            route: permit.route(),
            method: req.method().clone(),
            path_and_query: path_and_query.to_string(),
            headers: req.headers().clone(),
        });
        Ok(body::text(StatusCode::OK, "upstream"))
    }
}

/// A test configuration: a dev PKI, the static backend, and YAML a test adds.
struct Setup {
    dir: TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        pki::init(dir.path()).unwrap();
        Self { dir }
    }

    /// Client certificate DER issued by the test CA.
    fn cert(&self, name: &str, cn: Option<&str>, orgs: &[&str], uris: &[&str]) -> Vec<u8> {
        let spec = ClientSpec {
            name: name.into(),
            cn: cn.map(Into::into),
            orgs: orgs.iter().map(|s| (*s).to_owned()).collect(),
            uris: uris.iter().map(|s| (*s).to_owned()).collect(),
            days: 1,
            ..ClientSpec::default()
        };
        let (crt, _) = pki::issue_client(self.dir.path(), &spec).unwrap();
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        CertificateDer::from_pem_file(crt).unwrap().to_vec()
    }

    /// The YAML: TLS from the PKI, the static backend, `rest` (routes and
    /// anything else; one route `/` unless `rest` has `routes:`).
    fn yaml(&self, rest: &str) -> String {
        let d = self.dir.path().display();
        let routes = if rest.contains("routes:") {
            ""
        } else {
            "routes:\n  - {path_prefix: /, upstream: \"http://127.0.0.1:9\"}\n"
        };
        format!(
            "listen: \"127.0.0.1:0\"\ntls:\n  cert_file: {d}/server.crt\n  key_file: {d}/server.key\n  client_ca_file: {d}/ca.crt\n\
static:\n  tokens:\n    - {{token: {BOB}, user: bob, uid: \"1001\", groups: [dev]}}\n    - {{token: {CAROL}, user: carol}}\n  allow:\n    - {{group: dev, verbs: [get, post], paths: [\"/api/**\"]}}\n    - {{group: ops, verbs: [\"*\"], paths: [\"/admin\", \"/admin/**\"]}}\n    - {{user: \"system:serviceaccount:monitoring:prom\", verbs: [get], paths: [\"/api/**\"]}}\n\
{routes}{rest}"
        )
    }

    fn gate(&self, rest: &str) -> Harness {
        let config = Config::from_yaml(&self.yaml(rest)).unwrap();
        let tls = Arc::new(tls::Acceptor::new(tls::load(&config.tls).unwrap()));
        let upstream = Arc::new(Recorder::default());
        let metrics = Metrics::new();
        let gate = crate::app::gate(&config, None, tls, &metrics, Shared(upstream.clone()));
        Harness {
            gate,
            upstream,
            metrics,
        }
    }

    /// A gate assembled from parts, for backends no config can express.
    fn gate_with(&self, rest: &str, f: impl FnOnce(&mut Parts<Shared>)) -> Harness {
        let config = Config::from_yaml(&self.yaml(rest)).unwrap();
        let tls = Arc::new(tls::Acceptor::new(tls::load(&config.tls).unwrap()));
        let upstream = Arc::new(Recorder::default());
        let metrics = Metrics::new();
        let mut parts = Parts {
            routes: config.routes.clone(),
            authn: crate::authn::Authenticator::new(
                crate::authn::x509::CertMapper::new(&config.identity_rules),
                vec![],
            ),
            authz: crate::authz::Authorizers::default(),
            headers: config.headers.clone(),
            paths: config.paths.clone(),
            migration: crate::migration::Migration::new(&config.migration),
            mode: config.mode.clone(),
            tls,
            metrics: metrics.clone(),
            forward: Shared(upstream.clone()),
        };
        f(&mut parts);
        Harness {
            gate: Gate::new(parts),
            upstream,
            metrics,
        }
    }
}

/// The recorder, shared between the gate and the test.
#[derive(Clone)]
struct Shared(Arc<Recorder>);

impl<B: Send> Forward<B> for Shared {
    async fn forward(
        &self,
        permit: &Permit,
        req: Request<B>,
        path_and_query: PathAndQuery,
        downstream: &Downstream,
        local: &proxy::Local,
    ) -> Result<Response<Body>, proxy::Error> {
        self.0
            .forward(permit, req, path_and_query, downstream, local)
            .await
    }
}

struct Harness {
    gate: Gate<Shared>,
    upstream: Arc<Recorder>,
    metrics: Metrics,
}

/// A response, read whole.
struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Got {
    /// The JSON `reason` of a refusal.
    fn reason(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        v["reason"].as_str().unwrap().to_owned()
    }

    fn message(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        v["message"].as_str().unwrap().to_owned()
    }

    fn status_reason(&self) -> (u16, String) {
        (self.status.as_u16(), self.reason())
    }
}

fn peer() -> SocketAddr {
    "192.0.2.7:50000".parse().unwrap()
}

/// A GET of `path` with `headers` (name, value).
fn get(path: &str, headers: &[(&str, &str)]) -> Request<Empty<Bytes>> {
    request(Method::GET, path, headers)
}

fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> Request<Empty<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "authgate.test");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Empty::new()).unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

impl Harness {
    /// A connection without a client certificate.
    fn anonymous(&self) -> ConnInfo {
        self.gate.conn_info(peer(), None)
    }

    /// A connection with the client certificate `der`.
    fn with_cert(&self, der: &[u8]) -> ConnInfo {
        self.gate.conn_info(peer(), Some(der))
    }

    async fn send(&self, conn: &ConnInfo, req: Request<Empty<Bytes>>) -> Got {
        let resp = self.gate.handle(conn, req).await;
        let (parts, body) = resp.into_parts();
        Got {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    fn answer(&self, a: Answer) {
        *self.upstream.answer.lock().unwrap() = a;
    }

    /// Everything the upstream has seen so far, taken.
    fn seen(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.upstream.seen.lock().unwrap())
    }

    /// The one request the upstream saw since the last call.
    fn only_seen(&self) -> Seen {
        let mut seen = self.seen();
        assert_eq!(seen.len(), 1, "expected exactly one forwarded request");
        seen.remove(0)
    }

    fn nothing_forwarded(&self) {
        let seen = self.seen();
        assert!(seen.is_empty(), "forwarded on a refusal: {seen:?}");
    }
}
