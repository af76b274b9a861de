//! An external issuer's keys over HTTPS (the I/O edge of `authentication.jwt[]`):
//! its discovery document (`<url>/.well-known/openid-configuration`, or
//! `discoveryURL`), whose `issuer` must be the configured URL, then the
//! `jwks_uri` it names, which must be `https`.
//!
//! TLS trusts `certificateAuthority` when given, else the system roots.
//! Each GET has [`TIMEOUT`] and reads at most [`MAX_BODY`] bytes; redirects
//! are not followed. A failure keeps the last good key set
//! ([`crate::authn::jwks::store`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::Algorithm;
use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;

use crate::BoxFuture;
use crate::authn::jwks::keys::{JwksDocument, KeySet};
use crate::authn::jwks::schedule;
use crate::authn::jwks::store::{Fetched, KeySource};
use crate::backend::BackendError;
use crate::config::issuers::{IssuerConfig, SigningAlg};

/// The `backend` of discovery failures (errors, logs).
pub const DISCOVERY: &str = "JWT issuer discovery";
/// The `backend` of JWKS failures.
pub const JWKS: &str = "JWT issuer JWKS";

/// Each GET, connection included, at most.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from one response at most.
pub const MAX_BODY: usize = 1 << 20;

/// The discovery fields read.
#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// Fetches one issuer's keys.
pub struct IssuerSource {
    url: String,
    discovery_url: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl IssuerSource {
    /// The source of `cfg`; `Err` when its TLS trust cannot be built.
    pub fn new(cfg: &IssuerConfig) -> Result<Self, String> {
        let tls = client_tls(cfg.certificate_authority.as_deref())
            .map_err(|e| format!("{}.issuer.certificateAuthority: {e}", cfg.key))?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        Ok(Self {
            url: cfg.url.clone(),
            discovery_url: cfg.discovery_url.clone(),
            audiences: cfg.audiences.clone(),
            algorithms: cfg
                .algorithms
                .iter()
                .map(|a| match a {
                    SigningAlg::Rs256 => Algorithm::RS256,
                    SigningAlg::Es256 => Algorithm::ES256,
                })
                .collect(),
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    async fn fetch_set(&self) -> Fetched {
        let (body, _) = self.get(DISCOVERY, &self.discovery_url).await?;
        let d: Discovery = serde_json::from_slice(&body).map_err(|e| bad(DISCOVERY, &e))?;
        if d.issuer != self.url {
            return Err(BackendError::BadResponse {
                backend: DISCOVERY,
                detail: format!(
                    "the discovered issuer {:?} is not the configured {:?}",
                    d.issuer, self.url
                ),
            });
        }
        if !d.jwks_uri.starts_with("https://") {
            return Err(BackendError::BadResponse {
                backend: DISCOVERY,
                detail: "jwks_uri is not an https URL".into(),
            });
        }
        let (body, headers) = self.get(JWKS, &d.jwks_uri).await?;
        let doc: JwksDocument = serde_json::from_slice(&body).map_err(|e| bad(JWKS, &e))?;
        let set = KeySet::for_issuer(&doc, self.url.clone(), &self.audiences, &self.algorithms);
        Ok((set, schedule::max_age(&headers)))
    }

    async fn get(
        &self,
        backend: &'static str,
        url: &str,
    ) -> Result<(Bytes, HeaderMap), BackendError> {
        let unreachable = |detail: String| BackendError::Unreachable { backend, detail };
        let req = Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| unreachable(format!("cannot build the request: {e}")))?;
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let status = resp.status();
            let (parts, body) = resp.into_parts();
            if status != StatusCode::OK {
                return Err(unreachable(format!("answered {status}")));
            }
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the body: {e}")))?
                .to_bytes();
            Ok((body, parts.headers))
        };
        tokio::time::timeout(TIMEOUT, call)
            .await
            .map_err(|_| BackendError::Timeout { backend })?
    }
}

impl KeySource for IssuerSource {
    fn issuer(&self) -> Option<&str> {
        Some(&self.url)
    }

    fn fetch(&self) -> BoxFuture<'_, Fetched> {
        Box::pin(self.fetch_set())
    }
}

/// A JSON document that is not the one expected: by position, never by content.
fn bad(backend: &'static str, e: &serde_json::Error) -> BackendError {
    BackendError::BadResponse {
        backend,
        detail: format!("malformed JSON at line {} column {}", e.line(), e.column()),
    }
}

/// An error and its causes, on one line (hyper's own says only "client error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// TLS towards the issuer: `pem`'s certificates, or the system roots.
fn client_tls(pem: Option<&str>) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = match pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots
                    .add(c.map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            }
            builder.with_root_certificates(Arc::new(roots))
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(|e| e.to_string())?
        }
    }
    .with_no_client_auth();
    // hyper-rustls sets ALPN itself (http/1.1 only: `enable_http1`) and
    // refuses a config that already has some.
    config.alpn_protocols.clear();
    Ok(config)
}
