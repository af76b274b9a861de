//! TLS: the rustls server configuration, built from files.
//!
//! Client certificates are *requested, not required*: a client without one
//! falls back to a bearer token (see [`crate::authn`]). A client that does
//! present one must pass full verification (chain to `client_ca_file`,
//! validity, clientAuth EKU when an EKU is present, CRLs), or the handshake
//! fails; an invalid certificate never degrades to "anonymous".

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::config::{TlsConfig, TlsVersion};

/// A TLS material problem, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is unreadable or not PEM.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the assembled configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn file_error(path: &Path, reason: impl fmt::Display) -> Error {
    Error::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The crypto provider authgate uses everywhere (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain (at least one certificate).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificates found"));
    }
    Ok(certs)
}

/// Loads the serving certificate and key, checking that they belong together.
pub fn load_certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, Error> {
    let chain = read_certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| file_error(key_file, e))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        file_error(
            key_file,
            format!("does not match {}: {e}", cert_file.display()),
        )
    })
}

/// The serving certificate, replaceable while handshakes use it.
#[derive(Debug)]
pub struct ServingCert(ArcSwap<CertifiedKey>);

impl ServingCert {
    /// Starts with `key`.
    pub fn new(key: CertifiedKey) -> Self {
        Self(ArcSwap::from_pointee(key))
    }

    /// Replaces the certificate for new handshakes.
    pub fn store(&self, key: CertifiedKey) {
        self.0.store(Arc::new(key));
    }

    /// The current certificate.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.0.load_full()
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// Builds a server configuration from the files in `cfg`, serving `cert`.
pub fn server_config(cfg: &TlsConfig, cert: Arc<ServingCert>) -> Result<Arc<ServerConfig>, Error> {
    let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder =
        ServerConfig::builder_with_provider(provider()).with_protocol_versions(versions)?;
    let builder = match &cfg.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => builder.with_client_cert_verifier(client_verifier(cfg, ca_file)?),
    };
    let mut config = builder.with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn client_verifier(
    cfg: &TlsConfig,
    ca_file: &Path,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, Error> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca_file)? {
        roots.add(cert).map_err(|e| file_error(ca_file, e))?;
    }
    let mut crls = Vec::new();
    for path in &cfg.crl_files {
        let pem = std::fs::read(path).map_err(|e| file_error(path, e))?;
        let found = CertificateRevocationListDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error(path, e))?;
        if found.is_empty() {
            return Err(file_error(path, "no PEM CRLs found"));
        }
        crls.extend(found);
    }
    // Optional, not required: a client without a certificate may still
    // authenticate with a bearer token. A presented certificate must verify.
    let mut b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated();
    if !crls.is_empty() {
        b = b.with_crls(crls).only_check_end_entity_revocation();
        if cfg.allow_unknown_revocation {
            b = b.allow_unknown_revocation_status();
        }
    }
    b.build()
        .map_err(|e| file_error(ca_file, format!("cannot build client verifier: {e}")))
}

/// The current server configuration; reloads swap it for new handshakes
/// (which also starts a fresh session cache, so resumed sessions never
/// outlive a client-CA change).
#[derive(Debug)]
pub struct Acceptor {
    config: ArcSwap<ServerConfig>,
}

impl Acceptor {
    /// Starts with `config`.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            config: ArcSwap::new(config),
        }
    }

    /// An acceptor for one new connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }

    /// Replaces the configuration for new handshakes.
    pub fn store(&self, config: Arc<ServerConfig>) {
        self.config.store(config);
    }
}
