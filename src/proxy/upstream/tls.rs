//! The client side of TLS towards `https` upstreams. It holds whom to
//! trust (`upstream_ca_file`, or the system roots) and which certificate to
//! present (`upstream_client_{cert,key}_file`, the requestheader
//! front-proxy pattern). Both are loaded from files and swapped when the
//! files change, as the serving material is ([`crate::tls::reload`]).
//!
//! A new connection takes the material in service when it opens. Pooled
//! connections keep what they were opened with, as serving connections do.
//! A reload that fails keeps the material in service, is logged and is
//! counted (`authgate_upstream_tls_reloads_total{result="failure"}`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ClientConfig;
use rustls::sign::CertifiedKey;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::config::CertKeyFiles;
use crate::metrics::{Metrics, ResultLabel};
use crate::tls::reload::Reload;

/// Which of an upstream's TLS files a problem is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// `routes[].upstream_ca_file` (or the system roots without one).
    Ca,
    /// `routes[].upstream_client_cert_file`.
    ClientCert,
    /// `routes[].upstream_client_key_file`.
    ClientKey,
}

impl Which {
    /// The key under `routes[i]`.
    pub fn field(self) -> &'static str {
        match self {
            Self::Ca => "upstream_ca_file",
            Self::ClientCert => "upstream_client_cert_file",
            Self::ClientKey => "upstream_client_key_file",
        }
    }
}

/// A TLS file of an upstream that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct FileError {
    /// Which file.
    pub which: Which,
    /// Its path (`(system roots)` for the platform verifier).
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

fn error(which: Which, path: &Path, reason: impl std::fmt::Display) -> FileError {
    FileError {
        which,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The TLS files of one or more `https` upstreams.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Files {
    /// CA bundle; `None`: the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key.
    pub client_cert: Option<CertKeyFiles>,
}

impl Files {
    /// In a fixed order, with what each is.
    fn paths(&self) -> Vec<(Which, &Path)> {
        let mut p = Vec::new();
        if let Some(ca) = &self.ca_file {
            p.push((Which::Ca, ca.as_path()));
        }
        if let Some(pair) = &self.client_cert {
            p.push((Which::ClientCert, pair.cert_file.as_path()));
            p.push((Which::ClientKey, pair.key_file.as_path()));
        }
        p
    }
}

/// What one load of the files gives.
struct Material {
    /// ALPN `h2`, `http/1.1`: ordinary requests.
    alpn: Arc<ClientConfig>,
    /// ALPN `http/1.1` only: upgrade requests (HTTP/2 has no `Upgrade`).
    http1: Arc<ClientConfig>,
    fingerprint: [u8; 32],
}

/// The client TLS material of `https` upstreams, replaceable while serving.
pub struct ClientTls {
    files: Files,
    current: ArcSwap<Material>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Loads `files`: every PEM parses, the key matches the certificate.
    pub fn load(files: Files) -> Result<Self, FileError> {
        let m = load(&files)?;
        Ok(Self {
            files,
            current: ArcSwap::from_pointee(m),
        })
    }

    /// The configuration for a new connection: offering `h2` by ALPN, or
    /// HTTP/1.1 only.
    pub fn config(&self, offer_h2: bool) -> Arc<ClientConfig> {
        let m = self.current.load();
        if offer_h2 {
            m.alpn.clone()
        } else {
            m.http1.clone()
        }
    }

    /// The files it is loaded from.
    pub fn files(&self) -> &Files {
        &self.files
    }

    /// Reloads when the files changed (always with `force`). `Ok(true)`:
    /// new material is in service. `Err`: the old material stays.
    pub fn reload(&self, force: bool) -> Result<bool, FileError> {
        let in_service = self.current.load().fingerprint;
        if !force && read(&self.files)?.1 == in_service {
            return Ok(false);
        }
        let m = load(&self.files)?;
        if !force && m.fingerprint == in_service {
            return Ok(false);
        }
        self.current.store(Arc::new(m));
        Ok(true)
    }
}

/// A [`ClientTls`] under watch: reloads are logged and counted.
pub struct Watched {
    /// What is reloaded.
    pub tls: Arc<ClientTls>,
    /// Where reloads are counted.
    pub metrics: Metrics,
}

impl Reload for Watched {
    fn watched(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .tls
            .files
            .paths()
            .iter()
            .map(|(_, f)| match f.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    fn reload_files(&self, force: bool) {
        let result = match self.tls.reload(force) {
            Ok(false) => return,
            Ok(true) => {
                info!(files = ?self.tls.files, "upstream TLS material reloaded");
                "success"
            }
            Err(e) => {
                warn!(error = %e, "upstream TLS reload failed; keeping the material in service");
                "failure"
            }
        };
        self.metrics
            .upstream_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }
}

/// Reads every file; their contents and fingerprint.
fn read(files: &Files) -> Result<(Vec<Vec<u8>>, [u8; 32]), FileError> {
    let mut h = Sha256::new();
    let mut contents = Vec::new();
    for (which, path) in files.paths() {
        let bytes = std::fs::read(path).map_err(|e| error(which, path, e))?;
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
        contents.push(bytes);
    }
    Ok((contents, h.finalize().into()))
}

fn load(files: &Files) -> Result<Material, FileError> {
    let (contents, fingerprint) = read(files)?;
    let mut contents = contents.into_iter();
    let mut next = || contents.next().unwrap_or_default();
    let provider = crate::tls::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| error(Which::Ca, Path::new("-"), e))?;
    let builder = match &files.ca_file {
        Some(path) => {
            let certs = crate::tls::pem_certs(path, &next()).map_err(|e| reason(Which::Ca, e))?;
            let mut roots = rustls::RootCertStore::empty();
            for c in certs {
                roots.add(c).map_err(|e| error(Which::Ca, path, e))?;
            }
            builder.with_root_certificates(roots)
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(|e| error(Which::Ca, Path::new("(system roots)"), e))?
        }
    };
    let config = match &files.client_cert {
        None => builder.with_no_client_auth(),
        Some(pair) => {
            let chain = crate::tls::pem_certs(&pair.cert_file, &next())
                .map_err(|e| reason(Which::ClientCert, e))?;
            let key = PrivateKeyDer::from_pem_slice(&next())
                .map_err(|e| error(Which::ClientKey, &pair.key_file, e))?;
            CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(|e| {
                let why = format!("does not match {}: {e}", pair.cert_file.display());
                error(Which::ClientKey, &pair.key_file, why)
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| error(Which::ClientKey, &pair.key_file, e))?
        }
    };
    let with_alpn = |protocols: &[&[u8]]| {
        let mut c = config.clone();
        c.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        Arc::new(c)
    };
    Ok(Material {
        alpn: with_alpn(&[b"h2", b"http/1.1"]),
        http1: with_alpn(&[b"http/1.1"]),
        fingerprint,
    })
}

/// A [`crate::tls::Error`] about a file, as a [`FileError`] about `which`.
fn reason(which: Which, e: crate::tls::Error) -> FileError {
    match e {
        crate::tls::Error::File { path, reason } => FileError {
            which,
            path: path.display().to_string(),
            reason,
        },
        e @ crate::tls::Error::Rustls(_) => FileError {
            which,
            path: "-".into(),
            reason: e.to_string(),
        },
    }
}
