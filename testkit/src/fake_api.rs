//! A fake Kubernetes API server for integration tests: HTTPS (HTTP/1.1, as
//! the kube client speaks) on 127.0.0.1 with a certificate from the test PKI,
//! answering TokenReview and SubjectAccessReview the way kube-apiserver does,
//! with counters, recorded specs and fault injection.
//!
//! Every request must carry `Authorization: Bearer <gateway token>`; the
//! token is random and written with the address and CA into a kubeconfig
//! (`FakeApi::kubeconfig`), which is what the gate is configured with.
//!
//! Semantics copied from the real apiserver:
//! - reviews answer `201 Created` with the whole object (apiVersion, kind,
//!   metadata with `creationTimestamp: null`, the spec echoed back, status);
//! - a rejected token is `201` with `authenticated: false` and `error`, not
//!   an HTTP error; an empty `spec.token` is `400 BadRequest`;
//! - a SubjectAccessReview without exactly one of resourceAttributes /
//!   nonResourceAttributes, or without user and groups, is `422 Invalid`;
//! - errors are `metav1.Status` JSON bodies (401, 404, 405, 422, 429, 500).
//!
//! Unlike the real apiserver, the groups of a token are returned exactly as
//! registered (`system:authenticated` is not added).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::authentication::v1::TokenReviewSpec;
use k8s_openapi::api::authorization::v1::SubjectAccessReviewSpec;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::pki::Pki;

/// The audience the real apiserver uses when a TokenReview names none.
pub const DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc";

/// Serial number of the fake's server certificate.
const SERVER_SERIAL: u64 = 6443;
/// Open connections beyond this are closed at once.
const MAX_CONNECTIONS: usize = 256;
/// A TLS handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Request bodies larger than this get 413.
const MAX_BODY: usize = 1 << 20;
/// At most this many specs are recorded per endpoint (counters go on).
const MAX_RECORDED: usize = 10_000;
/// `Hang` and `HangMidResponse` give up (closing the connection) after this,
/// so a forgotten fault cannot hold a task forever.
const HANG_CAP: Duration = Duration::from_secs(300);

/// Who a registered token belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenIdentity {
    /// `status.user.username`.
    pub user: String,
    /// `status.user.uid`.
    pub uid: Option<String>,
    /// `status.user.groups`, exactly as given.
    pub groups: Vec<String>,
    /// `status.user.extra` (omitted when empty).
    pub extra: BTreeMap<String, Vec<String>>,
    /// The token's audiences; empty means `[DEFAULT_AUDIENCE]`.
    pub audiences: Vec<String>,
}

impl TokenIdentity {
    /// `user` with `groups`, the default audience, no uid or extra.
    pub fn new(user: &str, groups: &[&str]) -> Self {
        Self {
            user: user.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            ..Self::default()
        }
    }
}

/// An authorization rule of the fake SubjectAccessReview endpoint.
///
/// Subject: matches when `user` equals `spec.user` or `group` is one of
/// `spec.groups`; a rule with neither matches everyone. Verb: `"*"` or equal
/// to the request's verb. Object: a rule with `path` matches only
/// non-resource requests (exact, or prefix when it ends with `*`); a rule with
/// `resource` matches only resource requests (`"*"` or equal, then
/// `namespace` and `subresource` when set); a rule with neither matches both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Username to match.
    pub user: Option<String>,
    /// Group to match.
    pub group: Option<String>,
    /// Verb, `"*"` for any.
    pub verb: String,
    /// Non-resource path, `*` at the end for a prefix.
    pub path: Option<String>,
    /// Resource (`pods`), `"*"` for any.
    pub resource: Option<String>,
    /// Namespace of a resource request.
    pub namespace: Option<String>,
    /// Subresource of a resource request.
    pub subresource: Option<String>,
}

impl Rule {
    /// Any verb on anything, for everyone.
    pub fn anyone() -> Self {
        Self {
            user: None,
            group: None,
            verb: "*".to_owned(),
            path: None,
            resource: None,
            namespace: None,
            subresource: None,
        }
    }

    /// Any verb on anything, for user `user`.
    pub fn user(user: &str) -> Self {
        Self {
            user: Some(user.to_owned()),
            ..Self::anyone()
        }
    }

    /// Any verb on anything, for members of `group`.
    pub fn group(group: &str) -> Self {
        Self {
            group: Some(group.to_owned()),
            ..Self::anyone()
        }
    }

    /// Only `verb` (`"*"` for any).
    pub fn verb(mut self, verb: &str) -> Self {
        verb.clone_into(&mut self.verb);
        self
    }

    /// Only non-resource requests on `path` (prefix if it ends with `*`).
    pub fn path(mut self, path: &str) -> Self {
        self.path = Some(path.to_owned());
        self
    }

    /// Only resource requests on `resource` (`"*"` for any).
    pub fn resource(mut self, resource: &str) -> Self {
        self.resource = Some(resource.to_owned());
        self
    }

    /// Only resource requests in `namespace`.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_owned());
        self
    }

    /// Only resource requests on `subresource`.
    pub fn subresource(mut self, subresource: &str) -> Self {
        self.subresource = Some(subresource.to_owned());
        self
    }

    fn matches(&self, spec: &SubjectAccessReviewSpec) -> bool {
        let subject = match (&self.user, &self.group) {
            (None, None) => true,
            (user, group) => {
                user.as_ref()
                    .is_some_and(|u| spec.user.as_deref() == Some(u.as_str()))
                    || group
                        .as_ref()
                        .is_some_and(|g| spec.groups.iter().flatten().any(|x| x == g))
            }
        };
        if !subject {
            return false;
        }
        let verb_ok = |verb: Option<&str>| self.verb == "*" || verb == Some(self.verb.as_str());
        if let Some(nr) = &spec.non_resource_attributes {
            let object = match &self.path {
                Some(p) => path_matches(p, nr.path.as_deref().unwrap_or_default()),
                None => self.resource.is_none(),
            };
            return object && verb_ok(nr.verb.as_deref());
        }
        if let Some(ra) = &spec.resource_attributes {
            let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
            let object = match &self.resource {
                Some(r) => {
                    (r == "*" || set(&ra.resource).as_ref() == Some(r))
                        && self
                            .namespace
                            .as_ref()
                            .is_none_or(|ns| set(&ra.namespace).as_ref() == Some(ns))
                        && self
                            .subresource
                            .as_ref()
                            .is_none_or(|s| set(&ra.subresource).as_ref() == Some(s))
                }
                None => self.path.is_none(),
            };
            return object && verb_ok(ra.verb.as_deref());
        }
        false
    }
}

fn path_matches(rule: &str, path: &str) -> bool {
    match rule.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => rule == path,
    }
}

/// What an endpoint does instead of (or before) answering normally.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// Wait, then answer normally.
    Latency(Duration),
    /// 429 with `Retry-After` and a Status body (code 429, TooManyRequests).
    TooManyRequests {
        /// The `Retry-After` value (and `details.retryAfterSeconds`).
        retry_after_secs: u64,
    },
    /// 500 with a Status body (InternalError).
    ServerError,
    /// Never answer; the connection stays open until the client gives up
    /// (or 5 minutes pass, or the FakeApi is dropped).
    Hang,
    /// 201 with headers and `Content-Length`, half the body, then a stall.
    HangMidResponse,
    /// 201 with the body `{"kind": "TokenRev`.
    MalformedJson,
    /// 201 with a valid JSON object of kind ConfigMap.
    WrongKind,
}

/// Which endpoint(s) a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST .../tokenreviews`.
    TokenReview,
    /// `POST .../subjectaccessreviews`.
    AccessReview,
    /// Both review endpoints.
    Both,
    /// `GET /readyz`, `/livez`, `/healthz` and `/version`.
    Readyz,
    /// `GET /.well-known/openid-configuration` and `/openid/v1/jwks`.
    Jwks,
    /// Everything above.
    All,
}

#[derive(Default)]
struct Faults {
    token_review: Fault,
    access_review: Fault,
    readyz: Fault,
    jwks: Fault,
}

#[derive(Default)]
struct Counters {
    token_reviews: AtomicUsize,
    access_reviews: AtomicUsize,
    unauthorized: AtomicUsize,
    readyz: AtomicUsize,
    version: AtomicUsize,
    jwks: AtomicUsize,
    discovery: AtomicUsize,
}

struct State {
    gateway_token: String,
    url: String,
    down: AtomicBool,
    /// Keyed by the sha256 hex of the token.
    tokens: Mutex<HashMap<String, TokenIdentity>>,
    allow: Mutex<Vec<Rule>>,
    deny: Mutex<Vec<Rule>>,
    faults: Mutex<Faults>,
    counters: Counters,
    token_specs: Mutex<Vec<Value>>,
    access_specs: Mutex<Vec<Value>>,
    jwks: Mutex<Option<(Value, String)>>,
    /// `Cache-Control` of the JWKS response, if any.
    jwks_cache_control: Mutex<Option<String>>,
}

/// A running fake apiserver, stopped when dropped.
pub struct FakeApi {
    /// Where it listens (127.0.0.1).
    pub addr: SocketAddr,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// A kubeconfig for this server: its URL, the test root as CA and the
    /// gateway token.
    pub kubeconfig: PathBuf,
    ca_file: PathBuf,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl FakeApi {
    /// Starts on 127.0.0.1:0 with a server certificate signed by `pki`'s
    /// root, and writes `fake.kubeconfig` (or `fake-<port>.kubeconfig` if
    /// that exists) into `pki.path()`.
    pub async fn start(pki: &Pki) -> Self {
        let (cert_pem, key_pem) = pki.server_pair(SERVER_SERIAL);
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("fake api certificate");
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("fake api key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("fake api server config");
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let mut random = [0u8; 24];
        provider
            .secure_random
            .fill(&mut random)
            .expect("random gateway token");
        let gateway_token = format!("fakeapi-{}", hex::encode(random));

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let url = format!("https://{addr}");

        let mut kubeconfig = pki.path().join("fake.kubeconfig");
        if kubeconfig.exists() {
            kubeconfig = pki.path().join(format!("fake-{}.kubeconfig", addr.port()));
        }
        std::fs::write(
            &kubeconfig,
            render_kubeconfig(&url, &pki.ca_file, Some(&gateway_token)),
        )
        .expect("write kubeconfig");

        let state = Arc::new(State {
            gateway_token,
            url: url.clone(),
            down: AtomicBool::new(false),
            tokens: Mutex::default(),
            allow: Mutex::default(),
            deny: Mutex::default(),
            faults: Mutex::default(),
            counters: Counters::default(),
            token_specs: Mutex::default(),
            access_specs: Mutex::default(),
            jwks: Mutex::default(),
            jwks_cache_control: Mutex::default(),
        });
        let task = tokio::spawn(serve(listener, acceptor, state.clone()));
        Self {
            addr,
            url,
            kubeconfig,
            ca_file: pki.ca_file.clone(),
            state,
            task,
        }
    }

    /// The bearer token every request must carry.
    pub fn token(&self) -> &str {
        &self.state.gateway_token
    }

    /// Writes another kubeconfig for this server into the directory of
    /// [`FakeApi::kubeconfig`], with `token` (or no user credentials).
    pub fn write_kubeconfig(&self, name: &str, token: Option<&str>) -> PathBuf {
        let path = self.kubeconfig.with_file_name(name);
        std::fs::write(&path, render_kubeconfig(&self.url, &self.ca_file, token))
            .expect("write kubeconfig");
        path
    }

    /// A kube `Config` read from [`FakeApi::kubeconfig`] (kube's defaults,
    /// including `default_retry = true`).
    pub async fn kube_config(&self) -> kube::Config {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("kubeconfig to config")
    }

    /// The sha256 hex of `token`, as recorded in [`FakeApi::token_review_specs`].
    pub fn token_hash(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }

    /// Registers `token` for `user` with `groups` and the default audience.
    pub fn add_token(&self, token: &str, user: &str, groups: &[&str]) {
        self.add_token_with(token, TokenIdentity::new(user, groups));
    }

    /// Registers `token` (replacing any earlier registration).
    pub fn add_token_with(&self, token: &str, identity: TokenIdentity) {
        lock(&self.state.tokens).insert(Self::token_hash(token), identity);
    }

    /// Forgets `token`: later reviews say it is invalid.
    pub fn remove_token(&self, token: &str) {
        lock(&self.state.tokens).remove(&Self::token_hash(token));
    }

    /// Adds an allow rule.
    pub fn allow(&self, rule: Rule) {
        lock(&self.state.allow).push(rule);
    }

    /// Adds a deny rule (deny rules win).
    pub fn deny(&self, rule: Rule) {
        lock(&self.state.deny).push(rule);
    }

    /// Removes every allow and deny rule.
    pub fn clear_rules(&self) {
        lock(&self.state.allow).clear();
        lock(&self.state.deny).clear();
    }

    /// Sets the fault of `endpoint` (`Fault::None` to clear it).
    pub fn set_fault(&self, endpoint: Endpoint, fault: Fault) {
        use Endpoint as E;
        let mut f = lock(&self.state.faults);
        if matches!(endpoint, E::TokenReview | E::Both | E::All) {
            f.token_review = fault.clone();
        }
        if matches!(endpoint, E::AccessReview | E::Both | E::All) {
            f.access_review = fault.clone();
        }
        if matches!(endpoint, E::Readyz | E::All) {
            f.readyz = fault.clone();
        }
        if matches!(endpoint, E::Jwks | E::All) {
            f.jwks = fault;
        }
    }

    /// While down, new TCP connections are closed at once and a request on
    /// an open connection closes it without a response. Requests refused
    /// this way are not counted anywhere.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Serves `GET /.well-known/openid-configuration` (naming `issuer` and
    /// `<url>/openid/v1/jwks`) and `GET /openid/v1/jwks` (`jwks`).
    pub fn serve_jwks(&self, jwks: Value, issuer: &str) {
        *lock(&self.state.jwks) = Some((jwks, issuer.to_owned()));
    }

    /// TokenReviews received (with the gateway token), faults included.
    pub fn token_reviews(&self) -> usize {
        self.state.counters.token_reviews.load(Ordering::SeqCst)
    }

    /// SubjectAccessReviews received (with the gateway token), faults included.
    pub fn access_reviews(&self) -> usize {
        self.state.counters.access_reviews.load(Ordering::SeqCst)
    }

    /// Requests refused with 401 (missing or wrong gateway token).
    pub fn unauthorized(&self) -> usize {
        self.state.counters.unauthorized.load(Ordering::SeqCst)
    }

    /// Requests to `/readyz`, `/livez` and `/healthz`.
    pub fn readyz_calls(&self) -> usize {
        self.state.counters.readyz.load(Ordering::SeqCst)
    }

    /// Requests to `/version`.
    pub fn version_calls(&self) -> usize {
        self.state.counters.version.load(Ordering::SeqCst)
    }

    /// Answers `/openid/v1/jwks` with this `Cache-Control` (or none).
    pub fn set_jwks_cache_control(&self, value: Option<&str>) {
        *lock(&self.state.jwks_cache_control) = value.map(str::to_owned);
    }

    /// Requests to `/openid/v1/jwks`.
    pub fn jwks_fetches(&self) -> usize {
        self.state.counters.jwks.load(Ordering::SeqCst)
    }

    /// Requests to `/.well-known/openid-configuration`.
    pub fn discovery_fetches(&self) -> usize {
        self.state.counters.discovery.load(Ordering::SeqCst)
    }

    /// One entry per parsed TokenReview: `{"audiences": [..] or null,
    /// "tokenSha256": hex, "known": bool}`. The token itself is never kept.
    pub fn token_review_specs(&self) -> Vec<Value> {
        lock(&self.state.token_specs).clone()
    }

    /// The `spec` of every parsed SubjectAccessReview, as received.
    pub fn access_review_specs(&self) -> Vec<Value> {
        lock(&self.state.access_specs).clone()
    }

    /// Zeroes every counter and forgets the recorded specs.
    pub fn reset_counts(&self) {
        let c = &self.state.counters;
        for n in [
            &c.token_reviews,
            &c.access_reviews,
            &c.unauthorized,
            &c.readyz,
            &c.version,
            &c.jwks,
            &c.discovery,
        ] {
            n.store(0, Ordering::SeqCst);
        }
        lock(&self.state.token_specs).clear();
        lock(&self.state.access_specs).clear();
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a JoinSet): aborting it
        // aborts them all.
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn render_kubeconfig(url: &str, ca: &std::path::Path, token: Option<&str>) -> String {
    let q = |s: &str| serde_json::to_string(s).expect("json string");
    let user = match token {
        Some(t) => format!("    token: {}\n", q(t)),
        None => "    {}\n".to_owned(),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n    certificate-authority: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: gateway\ncurrent-context: fake\nusers:\n- name: gateway\n  user:\n{user}",
        q(url),
        q(&ca.display().to_string()),
    )
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, state: Arc<State>) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if state.down.load(Ordering::SeqCst) || conns.len() >= MAX_CONNECTIONS {
            drop(tcp);
            continue;
        }
        let acceptor = acceptor.clone();
        let state = state.clone();
        conns.spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let svc = service_fn(move |req| handle(state.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

/// A response body: all at once, or the first half and then a stall.
struct FakeBody {
    data: Option<Bytes>,
    len: u64,
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl FakeBody {
    fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        Self {
            len: data.len() as u64,
            data: Some(data),
            stall: None,
        }
    }

    fn half_then_stall(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        Self {
            len: data.len() as u64,
            data: Some(data.slice(..data.len() / 2)),
            stall: Some(Box::pin(tokio::time::sleep(HANG_CAP))),
        }
    }
}

impl hyper::body::Body for FakeBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        match &mut this.stall {
            Some(sleep) => match sleep.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => Poll::Ready(Some(Err(io::Error::other("stall cap reached")))),
            },
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.stall.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

type Resp = Response<FakeBody>;

fn json_response(code: StatusCode, body: &Value) -> Resp {
    Response::builder()
        .status(code)
        .header(CONTENT_TYPE, "application/json")
        .body(FakeBody::full(body.to_string()))
        .expect("response")
}

fn status_response(code: StatusCode, reason: &str, message: &str) -> Resp {
    json_response(
        code,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code.as_u16(),
        }),
    )
}

fn bearer_ok(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("bearer") && token.trim() == want
        })
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Resp, io::Error> {
    if state.down.load(Ordering::SeqCst) {
        // An error from the service makes hyper drop the connection without
        // writing a response.
        return Err(io::Error::other("fake apiserver is down"));
    }
    if !bearer_ok(req.headers(), &state.gateway_token) {
        state.counters.unauthorized.fetch_add(1, Ordering::SeqCst);
        return Ok(status_response(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
        ));
    }
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let want = |m: Method| -> Option<Resp> {
        (method != m).then(|| {
            status_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                &format!("the server does not allow this method on the requested resource ({method} {path})"),
            )
        })
    };
    let c = &state.counters;
    match path.as_str() {
        "/apis/authentication.k8s.io/v1/tokenreviews" => {
            if let Some(r) = want(Method::POST) {
                return Ok(r);
            }
            c.token_reviews.fetch_add(1, Ordering::SeqCst);
            let body = read_body(req).await;
            let fault = lock(&state.faults).token_review.clone();
            token_review(&state, body, fault).await
        }
        "/apis/authorization.k8s.io/v1/subjectaccessreviews" => {
            if let Some(r) = want(Method::POST) {
                return Ok(r);
            }
            c.access_reviews.fetch_add(1, Ordering::SeqCst);
            let body = read_body(req).await;
            let fault = lock(&state.faults).access_review.clone();
            access_review(&state, body, fault).await
        }
        "/readyz" | "/livez" | "/healthz" | "/version" => match want(Method::GET) {
            Some(r) => Ok(r),
            None => health(&state, &path).await,
        },
        "/.well-known/openid-configuration" | "/openid/v1/jwks" => match want(Method::GET) {
            Some(r) => Ok(r),
            None => oidc(&state, &path).await,
        },
        _ => Ok(not_found(&path)),
    }
}

/// `/readyz`, `/livez`, `/healthz` and `/version`.
async fn health(state: &State, path: &str) -> Result<Resp, io::Error> {
    let version = path == "/version";
    let counter = if version {
        &state.counters.version
    } else {
        &state.counters.readyz
    };
    counter.fetch_add(1, Ordering::SeqCst);
    let fault = lock(&state.faults).readyz.clone();
    if let Some(r) = apply_fault(fault).await? {
        return Ok(r);
    }
    Ok(if version {
        json_response(
            StatusCode::OK,
            &json!({
                "major": "1",
                "minor": "33",
                "gitVersion": "v1.33.0",
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean",
                "buildDate": "2025-04-23T00:00:00Z",
                "goVersion": "go1.24.2",
                "compiler": "gc",
                "platform": "linux/amd64",
            }),
        )
    } else {
        Response::builder()
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(FakeBody::full("ok"))
            .expect("response")
    })
}

/// The OIDC discovery document and the JWKS.
async fn oidc(state: &State, path: &str) -> Result<Resp, io::Error> {
    let keys = path == "/openid/v1/jwks";
    if keys {
        state.counters.jwks.fetch_add(1, Ordering::SeqCst);
    } else {
        state.counters.discovery.fetch_add(1, Ordering::SeqCst);
    }
    let fault = lock(&state.faults).jwks.clone();
    if let Some(r) = apply_fault(fault).await? {
        return Ok(r);
    }
    let Some((jwks, issuer)) = lock(&state.jwks).clone() else {
        return Ok(not_found(path));
    };
    if keys {
        let mut r = json_response(StatusCode::OK, &jwks);
        r.headers_mut().insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("application/jwk-set+json"),
        );
        if let Some(cc) = lock(&state.jwks_cache_control).clone() {
            r.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_str(&cc).expect("Cache-Control value"),
            );
        }
        return Ok(r);
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "issuer": issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", state.url),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }),
    ))
}

fn not_found(path: &str) -> Resp {
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("the server could not find the requested resource ({path})"),
    )
}

/// The body, or the error response to give instead (boxed: it is large).
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Box<Resp>> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(Box::new(status_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            &format!("request body: {e}"),
        ))),
    }
}

/// Parses `{"kind": kind, "spec": {...}}`; `kind` and `apiVersion` may be
/// absent (the URL names the type) but not wrong.
fn parse_review<T: serde::de::DeserializeOwned>(
    body: &[u8],
    kind: &str,
    api_version: &str,
) -> Result<T, Box<Resp>> {
    let bad = |m: String| Box::new(status_response(StatusCode::BAD_REQUEST, "BadRequest", &m));
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    if v.get("kind").is_some_and(|k| k != kind)
        || v.get("apiVersion").is_some_and(|a| a != api_version)
    {
        return Err(bad(format!(
            "expected {api_version} {kind}, got {} {}",
            v["apiVersion"], v["kind"]
        )));
    }
    serde_json::from_value(v.get("spec").cloned().unwrap_or_else(|| json!({})))
        .map_err(|e| bad(format!("invalid spec: {e}")))
}

fn record(list: &Mutex<Vec<Value>>, v: Value) {
    let mut l = lock(list);
    if l.len() < MAX_RECORDED {
        l.push(v);
    }
}

/// `Ok(Some(r))`: answer `r` instead; `Ok(None)`: answer normally;
/// `Err`: close the connection without an answer.
async fn apply_fault(fault: Fault) -> Result<Option<Resp>, io::Error> {
    Ok(Some(match fault {
        Fault::None => return Ok(None),
        Fault::Latency(d) => {
            tokio::time::sleep(d).await;
            return Ok(None);
        }
        Fault::TooManyRequests { retry_after_secs } => {
            let mut r = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": "Too many requests, please try again later.",
                    "reason": "TooManyRequests",
                    "details": {"retryAfterSeconds": retry_after_secs},
                    "code": 429,
                }),
            );
            r.headers_mut()
                .insert(RETRY_AFTER, http::HeaderValue::from(retry_after_secs));
            r
        }
        Fault::ServerError => status_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "Internal error occurred: fake apiserver fault",
        ),
        Fault::Hang => {
            tokio::time::sleep(HANG_CAP).await;
            return Err(io::Error::other("hang cap reached"));
        }
        Fault::HangMidResponse => {
            let body = json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "message": "this body never arrives in full",
                "code": 201,
            })
            .to_string();
            let len = body.len();
            Response::builder()
                .status(StatusCode::CREATED)
                .header(CONTENT_TYPE, "application/json")
                .header(CONTENT_LENGTH, len)
                .body(FakeBody::half_then_stall(body))
                .expect("response")
        }
        Fault::MalformedJson => Response::builder()
            .status(StatusCode::CREATED)
            .header(CONTENT_TYPE, "application/json")
            .body(FakeBody::full(r#"{"kind": "TokenRev"#))
            .expect("response"),
        Fault::WrongKind => json_response(
            StatusCode::CREATED,
            &json!({
                "kind": "ConfigMap",
                "apiVersion": "v1",
                "metadata": {"name": "not-a-review", "namespace": "default", "creationTimestamp": null},
                "data": {"hello": "world"},
            }),
        ),
    }))
}

async fn token_review(
    state: &State,
    body: Result<Bytes, Box<Resp>>,
    fault: Fault,
) -> Result<Resp, io::Error> {
    let spec = body.and_then(|b| {
        parse_review::<TokenReviewSpec>(&b, "TokenReview", "authentication.k8s.io/v1")
    });
    let mut known = None;
    if let Ok(spec) = &spec {
        let token = spec.token.as_deref().unwrap_or_default();
        let hash = FakeApi::token_hash(token);
        known = lock(&state.tokens).get(&hash).cloned();
        record(
            &state.token_specs,
            json!({"audiences": spec.audiences, "tokenSha256": hash, "known": known.is_some()}),
        );
    }
    if let Some(r) = apply_fault(fault).await? {
        return Ok(r);
    }
    let spec = match spec {
        Ok(s) => s,
        Err(r) => return Ok(*r),
    };
    if spec.token.as_deref().unwrap_or_default().is_empty() {
        return Ok(status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "token is required for TokenReview in authentication",
        ));
    }
    let wanted = match &spec.audiences {
        Some(a) if !a.is_empty() => a.clone(),
        _ => vec![DEFAULT_AUDIENCE.to_owned()],
    };
    let status = match known {
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
        Some(id) => {
            let has = if id.audiences.is_empty() {
                vec![DEFAULT_AUDIENCE.to_owned()]
            } else {
                id.audiences.clone()
            };
            let both: Vec<String> = wanted.iter().filter(|a| has.contains(a)).cloned().collect();
            if both.is_empty() {
                json!({
                    "authenticated": false,
                    "error": format!(
                        "token audiences {} is invalid for the target audiences {}",
                        go_list(&has),
                        go_list(&wanted)
                    ),
                })
            } else {
                let mut user = json!({"username": id.user, "groups": id.groups});
                if let Some(uid) = &id.uid {
                    user["uid"] = json!(uid);
                }
                if !id.extra.is_empty() {
                    user["extra"] = json!(id.extra);
                }
                json!({"authenticated": true, "user": user, "audiences": both})
            }
        }
    };
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": spec,
            "status": status,
        }),
    ))
}

/// `["a" "b"]`, as Go prints a `[]string` with `%q`.
fn go_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

async fn access_review(
    state: &State,
    body: Result<Bytes, Box<Resp>>,
    fault: Fault,
) -> Result<Resp, io::Error> {
    let spec = body.and_then(|b| {
        parse_review::<SubjectAccessReviewSpec>(
            &b,
            "SubjectAccessReview",
            "authorization.k8s.io/v1",
        )
    });
    if let Ok(spec) = &spec {
        record(
            &state.access_specs,
            serde_json::to_value(spec).expect("spec to json"),
        );
    }
    if let Some(r) = apply_fault(fault).await? {
        return Ok(r);
    }
    let spec = match spec {
        Ok(s) => s,
        Err(r) => return Ok(*r),
    };
    let invalid = |m: &str| {
        Ok(status_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &format!("SubjectAccessReview.authorization.k8s.io \"\" is invalid: {m}"),
        ))
    };
    if spec.resource_attributes.is_some() == spec.non_resource_attributes.is_some() {
        return invalid(
            "spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
        );
    }
    if spec.user.as_deref().unwrap_or_default().is_empty()
        && spec.groups.as_ref().is_none_or(Vec::is_empty)
    {
        return invalid(
            "spec.user: Invalid value: \"\": at least one of user or group must be specified",
        );
    }
    let denied = lock(&state.deny).iter().any(|r| r.matches(&spec));
    let allowed = !denied && lock(&state.allow).iter().any(|r| r.matches(&spec));
    let status = if denied {
        json!({"allowed": false, "denied": true, "reason": "denied by fake rule"})
    } else if allowed {
        json!({"allowed": true, "reason": "allowed by fake rule"})
    } else {
        json!({"allowed": false, "reason": "no rule matched"})
    };
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "kind": "SubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": spec,
            "status": status,
        }),
    ))
}
