//! A local OIDC issuer for the tests: its own P-256 signing keys, and its
//! discovery document and JWKS served over HTTPS on 127.0.0.1 with a
//! certificate of its own PKI (the CA given as `certificateAuthority`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use testkit::Pki;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A P-256 signing key under a `kid`.
pub(super) struct EcKey {
    pub(super) kid: String,
    pair: EcdsaKeyPair,
}

impl EcKey {
    /// A new key.
    pub(super) fn new(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("EC key");
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("EC PKCS#8");
        Self {
            kid: kid.to_owned(),
            pair,
        }
    }

    /// Its public JWK.
    pub(super) fn jwk(&self) -> Value {
        let p = self.pair.public_key().as_ref();
        json!({"use": "sig", "kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256",
               "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..65])})
    }

    /// A JWT over `claims` with `header`, signed by this key.
    pub(super) fn sign_with(&self, header: &Value, claims: &Value) -> String {
        let msg = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), msg.as_bytes())
            .expect("EC sign");
        format!("{msg}.{}", B64.encode(sig.as_ref()))
    }

    /// A JWT over the raw JSON `payload` (duplicate keys possible), ES256
    /// under this key's kid (review-b).
    pub(super) fn sign_raw(&self, payload: &str) -> String {
        let header = json!({"alg": "ES256", "kid": self.kid}).to_string();
        let msg = format!("{}.{}", B64.encode(header), B64.encode(payload));
        let sig = self
            .pair
            .sign(&SystemRandom::new(), msg.as_bytes())
            .expect("EC sign");
        format!("{msg}.{}", B64.encode(sig.as_ref()))
    }

    /// A JWT over `claims`, ES256 under this key's kid.
    pub(super) fn sign(&self, claims: &Value) -> String {
        self.sign_with(&json!({"alg": "ES256", "kid": self.kid}), claims)
    }
}

#[derive(Default)]
struct State {
    jwks: Mutex<Value>,
    /// Discovery names this issuer instead of the real one.
    claimed_issuer: Mutex<Option<String>>,
    down: AtomicBool,
    discovery_fetches: AtomicUsize,
    jwks_fetches: AtomicUsize,
}

/// The issuer, stopped on drop.
pub(super) struct Idp {
    /// `https://127.0.0.1:<port>`: its `iss`.
    pub(super) url: String,
    /// The PEM of the CA its certificate chains to.
    pub(super) ca_pem: String,
    /// Holds the CA and the server certificate.
    _pki: Pki,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Idp {
    /// Starts on 127.0.0.1:0, serving `keys`.
    pub(super) async fn start(keys: &[Value]) -> Self {
        let pki = Pki::new();
        let certs = CertificateDer::pem_file_iter(&pki.server_cert)
            .expect("server.crt")
            .collect::<Result<Vec<_>, _>>()
            .expect("server chain");
        let key = PrivateKeyDer::from_pem_file(&pki.server_key).expect("server.key");
        let config = rustls::ServerConfig::builder_with_provider(testkit::tls_provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(State::default());
        *state.jwks.lock().expect("lock") = json!({ "keys": keys });
        let (st, base) = (state.clone(), url.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, st, base) = (acceptor.clone(), st.clone(), base.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let (st, base) = (st.clone(), base.clone());
                        async move { Ok::<_, std::convert::Infallible>(answer(&st, &base, &req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        let ca_pem = std::fs::read_to_string(&pki.ca_file).expect("ca.crt");
        Self {
            url,
            ca_pem,
            _pki: pki,
            state,
            task,
        }
    }

    /// Serves `keys` from now on.
    pub(super) fn serve_keys(&self, keys: &[Value]) {
        *self.state.jwks.lock().expect("lock") = json!({ "keys": keys });
    }

    /// Answers 503 to everything while `down`.
    pub(super) fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Its discovery document names `issuer` rather than its own URL.
    pub(super) fn claim_issuer(&self, issuer: &str) {
        *self.state.claimed_issuer.lock().expect("lock") = Some(issuer.to_owned());
    }

    /// JWKS GETs answered so far.
    pub(super) fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Discovery GETs so far (answered or refused).
    pub(super) fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(st: &State, base: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let json = |status: StatusCode, v: Value| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(v.to_string())))
            .expect("response")
    };
    let path = req.uri().path();
    if path == "/.well-known/openid-configuration" {
        st.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    }
    if st.down.load(Ordering::SeqCst) {
        return json(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "down"}));
    }
    match path {
        "/.well-known/openid-configuration" => {
            let issuer = st
                .claimed_issuer
                .lock()
                .expect("lock")
                .clone()
                .unwrap_or_else(|| base.to_owned());
            json(
                StatusCode::OK,
                json!({"issuer": issuer, "jwks_uri": format!("{base}/keys")}),
            )
        }
        "/keys" => {
            st.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            json(StatusCode::OK, st.jwks.lock().expect("lock").clone())
        }
        _ => json(StatusCode::NOT_FOUND, json!({})),
    }
}
