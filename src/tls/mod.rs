//! TLS: the rustls server configuration, built from files, replaceable while
//! serving.
//!
//! Client certificates are *requested, not required*: a client without one
//! falls back to a bearer token (see [`crate::authn`]). A client that does
//! present one must pass full verification (chain to `client_ca_file`,
//! validity, clientAuth EKU when an EKU is present, CRLs), or the handshake
//! fails; an invalid certificate never degrades to "anonymous".

pub mod issuers;
pub mod reload;
mod verifier;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::clock::unix_now;
use crate::config::{TlsConfig, TlsVersion};
pub use issuers::Issuers;

/// A TLS material problem, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is unreadable, not PEM, or its content is unacceptable.
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

/// What is in service, for readiness and metrics.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// notAfter of the serving leaf (Unix seconds).
    pub serving_not_after: i64,
    /// Serial of the serving leaf, hex.
    pub serving_serial: String,
    /// Earliest notAfter in the client CA bundle, when one is configured.
    pub client_ca_not_after: Option<i64>,
    /// CRLs loaded.
    pub crls: usize,
    /// The earliest `nextUpdate` of the CRLs in service (Unix seconds).
    pub crl_next_update: Option<i64>,
    /// When this material was loaded (Unix seconds).
    pub loaded_at: i64,
}

impl Material {
    /// When the CRLs in service go stale, if that is enforced.
    fn stale_after(&self) -> Option<i64> {
        self.status
            .crl_next_update
            .filter(|_| self.enforce_crl_expiry)
    }
}

/// Everything loaded from the TLS files at one moment.
pub struct Material {
    /// A stale CRL is refused (`tls.allow_stale_crl` is off).
    pub enforce_crl_expiry: bool,
    /// The server configuration for new handshakes.
    pub server_config: Arc<ServerConfig>,
    /// What it contains.
    pub status: Status,
    /// SHA-256 over every file's content, to notice changes.
    pub fingerprint: [u8; 32],
    /// The client-certificate verifier, when a client CA is configured
    /// (also used for certificates a trusted front proxy forwards).
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// The issuers `identity.rules[].ca_file` bind rules to.
    pub issuers: Issuers,
}

/// The files of `cfg`, in a fixed order.
fn files(cfg: &TlsConfig) -> Vec<&Path> {
    let mut f = Vec::new();
    // A generated pair is in memory: nothing to read or watch for it.
    if cfg.self_signed.is_none() {
        f.extend([cfg.cert_file.as_path(), cfg.key_file.as_path()]);
    }
    f.extend(cfg.client_ca_file.as_deref());
    f.extend(cfg.crl_files.iter().map(PathBuf::as_path));
    f.extend(cfg.rule_ca_files.iter().flatten().map(PathBuf::as_path));
    f
}

/// The directories holding the files of `cfg` (what a reload watches).
pub fn directories(cfg: &TlsConfig) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = files(cfg)
        .iter()
        .map(|f| match f.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Reads every file of `cfg` and returns their contents and fingerprint.
fn read_all(cfg: &TlsConfig) -> Result<(Vec<Vec<u8>>, [u8; 32]), Error> {
    let mut h = Sha256::new();
    let mut contents = Vec::new();
    if let Some(pair) = &cfg.self_signed {
        for bytes in [pair.cert_pem.as_bytes(), pair.key_pem.as_bytes()] {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
            contents.push(bytes.to_vec());
        }
    }
    for path in files(cfg) {
        let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
        contents.push(bytes);
    }
    Ok((contents, h.finalize().into()))
}

/// The fingerprint of the files as they are now.
pub fn fingerprint(cfg: &TlsConfig) -> Result<[u8; 32], Error> {
    read_all(cfg).map(|(_, f)| f)
}

/// Loads and validates everything: the key matches the certificate, every
/// PEM parses, every CRL is signed by a CA in the client bundle.
pub fn load(cfg: &TlsConfig) -> Result<Material, Error> {
    let (contents, fingerprint) = read_all(cfg)?;
    let mut contents = contents.into_iter();
    let mut next = || contents.next().unwrap_or_default();
    let (cert_pem, key_pem) = (next(), next());
    let chain = pem_certs(&cfg.cert_file, &cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| file_error(&cfg.key_file, e))?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        file_error(
            &cfg.key_file,
            format!("does not match {}: {e}", cfg.cert_file.display()),
        )
    })?;
    let leaf = certified
        .cert
        .first()
        .cloned()
        .ok_or_else(|| file_error(&cfg.cert_file, "empty chain"))?;
    let (serving_not_after, serving_serial) = leaf_facts(&cfg.cert_file, &leaf)?;

    let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder =
        ServerConfig::builder_with_provider(provider()).with_protocol_versions(versions)?;
    let (builder, client_ca_not_after, (crls, crl_next_update), client_verifier, issuers) =
        match &cfg.client_ca_file {
            None => (
                builder.with_no_client_auth(),
                None,
                (0, None),
                None,
                Issuers::default(),
            ),
            Some(ca_file) => {
                let cas = pem_certs(ca_file, &next())?;
                let crl_pems: Vec<Vec<u8>> = cfg.crl_files.iter().map(|_| next()).collect();
                let rule_files: Vec<(Option<&Path>, Vec<u8>)> = cfg
                    .rule_ca_files
                    .iter()
                    .map(|f| (f.as_deref(), f.as_ref().map(|_| next()).unwrap_or_default()))
                    .collect();
                let issuers = issuers::load(ca_file, &cas, &rule_files)?;
                let (crls, next_update) = crls(cfg, &cas, &crl_pems)?;
                let earliest = earliest_not_after(ca_file, &cas)?;
                let n = crls.len();
                let verifier = client_verifier(cfg, ca_file, cas, crls)?;
                (
                    builder.with_client_cert_verifier(verifier.clone()),
                    Some(earliest),
                    (n, next_update),
                    Some(verifier),
                    issuers,
                )
            }
        };
    let mut config = builder.with_cert_resolver(Arc::new(FixedCert(Arc::new(certified))));
    config.alpn_protocols = if cfg.http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    // Session tickets (stateless resumption, so more than the session
    // cache's 256 clients resume) under a key of this material's own: like
    // the session cache, a reload drops every ticket issued before it, and a
    // resumed session never skips a client-CA or CRL change.
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(Material {
        enforce_crl_expiry: !cfg.allow_stale_crl,
        server_config: Arc::new(config),
        status: Status {
            serving_not_after,
            serving_serial,
            client_ca_not_after,
            crls,
            crl_next_update,
            loaded_at: unix_now(),
        },
        fingerprint,
        client_verifier,
        issuers,
    })
}

/// The certificates of PEM `pem` (read from `path`), at least one, each parsing.
pub fn pem_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificates found"));
    }
    for c in &certs {
        X509Certificate::from_der(c)
            .map_err(|e| file_error(path, format!("certificate does not parse: {e}")))?;
    }
    Ok(certs)
}

fn leaf_facts(path: &Path, leaf: &CertificateDer<'_>) -> Result<(i64, String), Error> {
    let (_, c) = X509Certificate::from_der(leaf).map_err(|e| file_error(path, e))?;
    Ok((c.validity().not_after.timestamp(), c.raw_serial_as_string()))
}

fn earliest_not_after(path: &Path, certs: &[CertificateDer<'_>]) -> Result<i64, Error> {
    let mut earliest = i64::MAX;
    for c in certs {
        let (_, c) = X509Certificate::from_der(c).map_err(|e| file_error(path, e))?;
        earliest = earliest.min(c.validity().not_after.timestamp());
    }
    Ok(earliest)
}

/// The newest CRL of one scope: (issuer name, signing key, issuing
/// distribution point), (crlNumber, thisUpdate), nextUpdate, the CRL.
type Newest = (
    (Vec<u8>, Vec<u8>, Vec<u8>),
    (Option<x509_parser::num_bigint::BigUint>, i64),
    Option<i64>,
    CertificateRevocationListDer<'static>,
);

/// Whether CRL rank `a` is newer than `b`: by crlNumber when both have one
/// (RFC 5280 makes it monotonic per issuer), else by thisUpdate.
fn newer(
    a: &(Option<x509_parser::num_bigint::BigUint>, i64),
    b: &(Option<x509_parser::num_bigint::BigUint>, i64),
) -> bool {
    match (&a.0, &b.0) {
        (Some(x), Some(y)) if x != y => x > y,
        _ => a.1 > b.1,
    }
}

/// Parses the CRLs and checks each is signed by a CA of the bundle: a CRL
/// from elsewhere would make every certificate's status unknown.
fn crls(
    cfg: &TlsConfig,
    cas: &[CertificateDer<'_>],
    pems: &[Vec<u8>],
) -> Result<(Vec<CertificateRevocationListDer<'static>>, Option<i64>), Error> {
    let parsed_cas: Vec<X509Certificate<'_>> = cas
        .iter()
        .filter_map(|c| X509Certificate::from_der(c).ok().map(|(_, c)| c))
        .collect();
    let mut out = Vec::new();
    let mut next_update: Option<i64> = None;
    // Per (issuer name, signing key): the newest CRL, its nextUpdate.
    let mut newest: Vec<Newest> = Vec::new();
    for (path, pem) in cfg.crl_files.iter().zip(pems) {
        let found = CertificateRevocationListDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error(path, e))?;
        if found.is_empty() {
            return Err(file_error(path, "no PEM CRLs found"));
        }
        for der in found {
            let (_, crl) = CertificateRevocationList::from_der(&der)
                .map_err(|e| file_error(path, format!("CRL does not parse: {e}")))?;
            let Some(signer) = verifier::signer(&parsed_cas, &crl) else {
                return Err(file_error(
                    path,
                    format!(
                        "CRL of {} is not signed by a CA in tls.client_ca_file",
                        crl.issuer()
                    ),
                ));
            };
            // webpki uses the first CRL of an issuer name it finds: of one
            // key's CRLs for one scope (its issuing distribution point:
            // a CA may shard its CRL) only the newest may be loaded, or an
            // older one listed first would hide a newer revocation.
            let scope = crl
                .extensions()
                .iter()
                .find(|e| e.oid.to_id_string() == "2.5.29.28")
                .map(|e| e.value.to_vec())
                .unwrap_or_default();
            let key = (
                crl.issuer().as_raw().to_vec(),
                signer.public_key().raw.to_vec(),
                scope,
            );
            let rank = (crl.crl_number().cloned(), crl.last_update().timestamp());
            let next = crl.next_update().map(|t| t.timestamp());
            // Equal rank: both stay (the revocation check reads every CRL).
            match newest
                .iter_mut()
                .find(|(k, r, ..)| *k == key && (newer(&rank, r) || newer(r, &rank)))
            {
                Some(slot) if !newer(&rank, &slot.1) => {}
                Some(slot) => *slot = (key, rank, next, der.clone()),
                None => newest.push((key, rank, next, der.clone())),
            }
        }
    }
    for (_, _, next, der) in newest {
        if let Some(t) = next {
            next_update = Some(next_update.map_or(t, |n: i64| n.min(t)));
        }
        out.push(der);
    }
    Ok((out, next_update))
}

fn client_verifier(
    cfg: &TlsConfig,
    ca_file: &Path,
    cas: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    let groups = verifier::groups(&cas);
    if let [_] = groups.as_slice() {
        let v = webpki_verifier(cfg, ca_file, cas.clone(), crls.clone())?;
        if crls.is_empty() {
            return Ok(v);
        }
        // webpki uses the first CRL that covers a certificate: a full CRL
        // listed before a newer shard would hide the shard's revocations.
        return Ok(Arc::new(verifier::Rolled::new(
            vec![v],
            &cas,
            &crls,
            !cfg.allow_stale_crl,
        )));
    }
    // A CA rolled under its name: one verifier per group (see `verifier`).
    let mut parts = Vec::with_capacity(groups.len());
    for g in &groups {
        let own = verifier::crls_of(g, &cas, &crls);
        // With CRLs in force, a group none of whose CAs published one has
        // no revocation status: refused, unless that is allowed.
        if !crls.is_empty() && own.is_empty() && !cfg.allow_unknown_revocation {
            continue;
        }
        let members = g.iter().map(|&i| cas[i].clone()).collect();
        parts.push(webpki_verifier(cfg, ca_file, members, own)?);
    }
    if parts.is_empty() {
        return Err(file_error(
            ca_file,
            "no CA of the bundle has a CRL in tls.crl_files",
        ));
    }
    Ok(Arc::new(verifier::Rolled::new(
        parts,
        &cas,
        &crls,
        !cfg.allow_stale_crl,
    )))
}

fn webpki_verifier(
    cfg: &TlsConfig,
    ca_file: &Path,
    cas: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    let mut roots = RootCertStore::empty();
    for cert in cas {
        roots.add(cert).map_err(|e| file_error(ca_file, e))?;
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
        // A CRL past its nextUpdate no longer says who is revoked.
        if !cfg.allow_stale_crl {
            b = b.enforce_revocation_expiration();
        }
    }
    b.build()
        .map_err(|e| file_error(ca_file, format!("cannot build client verifier: {e}")))
}

/// Serves one certificate (each [`Material`] has its own).
#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// `cfg` with HTTP/1.1 as its only ALPN protocol.
fn http1_only(cfg: &Arc<ServerConfig>) -> Arc<ServerConfig> {
    let mut c = ServerConfig::clone(cfg);
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

/// A generation no material ever has: a chain "verified in" it is verified
/// again on its first check.
pub const UNVERIFIED: u64 = u64::MAX;

/// The material in service. A reload swaps it for new handshakes; a new
/// server configuration also brings a fresh session cache and ticket key,
/// so a resumed session never outlives a client-CA or CRL change.
pub struct Acceptor {
    config: ArcSwap<ServerConfig>,
    /// The same material for the admin listener, which speaks HTTP/1.1
    /// only; derived once per install, not per connection.
    admin_config: ArcSwap<ServerConfig>,
    status: ArcSwap<Status>,
    fingerprint: ArcSwap<[u8; 32]>,
    /// The client verifier in service and its generation (bumped by every
    /// install), swapped together so a re-check never pairs one with the
    /// other's.
    client_verifier: ArcSwap<InService>,
}

/// The client-certificate verifier in service, numbered.
struct InService {
    generation: u64,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// The issuers of the bound identity rules, of the same files.
    issuers: Issuers,
    /// After this (Unix seconds) a CRL in service is stale and enforced:
    /// every check verifies again (and fails).
    stale_after: Option<i64>,
}

/// Why a certificate that verified at its handshake no longer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    /// Past its `notAfter`.
    #[error("the client certificate has expired")]
    Expired,
    /// On a CRL now in service.
    #[error("the client certificate has been revoked")]
    Revoked,
    /// Its CA is no longer in the client bundle (or it fails otherwise).
    #[error("the client certificate is no longer trusted")]
    Untrusted,
}

impl fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acceptor")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl Acceptor {
    /// Starts with `m`.
    pub fn new(m: Material) -> Self {
        let stale_after = m.stale_after();
        Self {
            admin_config: ArcSwap::new(http1_only(&m.server_config)),
            config: ArcSwap::new(m.server_config),
            status: ArcSwap::from_pointee(m.status),
            fingerprint: ArcSwap::from_pointee(m.fingerprint),
            client_verifier: ArcSwap::from_pointee(InService {
                generation: 0,
                stale_after,
                verifier: m.client_verifier,
                issuers: m.issuers,
            }),
        }
    }

    /// An acceptor for one new connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }

    /// An acceptor for one new admin connection (HTTP/1.1 by ALPN).
    pub fn admin_acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.admin_config.load_full())
    }

    /// The current server configuration.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config.load_full()
    }

    /// Puts `m` in service for new handshakes.
    pub fn install(&self, m: Material) {
        let stale_after = m.stale_after();
        self.admin_config.store(http1_only(&m.server_config));
        self.config.store(m.server_config);
        self.status.store(Arc::new(m.status));
        self.fingerprint.store(Arc::new(m.fingerprint));
        let generation = self.client_verifier.load().generation + 1;
        self.client_verifier.store(Arc::new(InService {
            generation,
            stale_after,
            verifier: m.client_verifier,
            issuers: m.issuers,
        }));
    }

    /// The issuers of the bound identity rules in service.
    pub fn issuers(&self) -> Issuers {
        self.client_verifier.load().issuers.clone()
    }

    /// The generation of the client verifier in service.
    pub fn generation(&self) -> u64 {
        self.client_verifier.load().generation
    }

    /// Verifies a connection's chain again, unless generation `checked`
    /// is still in service; `Ok` gives the generation it now holds for.
    pub fn recheck(&self, chain: &[CertificateDer<'static>], checked: u64) -> Result<u64, Stale> {
        use rustls::{CertificateError as C, Error as E};
        let in_service = self.client_verifier.load();
        let stale = in_service.stale_after.is_some_and(|t| unix_now() > t);
        if in_service.generation == checked && !stale {
            return Ok(checked);
        }
        let (Some(v), Some((leaf, intermediates))) = (&in_service.verifier, chain.split_first())
        else {
            return Err(Stale::Untrusted);
        };
        match v.verify_client_cert(leaf, intermediates, rustls_pki_types::UnixTime::now()) {
            Ok(_) => Ok(in_service.generation),
            Err(E::InvalidCertificate(C::Revoked)) => Err(Stale::Revoked),
            Err(E::InvalidCertificate(C::Expired | C::ExpiredContext { .. })) => {
                Err(Stale::Expired)
            }
            Err(_) => Err(Stale::Untrusted),
        }
    }

    /// Verifies a client certificate chain (leaf first) that did not come
    /// in a handshake, as the handshake would: against the client CA bundle
    /// and CRLs in service. Fails when no client CA is configured.
    pub fn verify_client_chain(&self, chain: &[CertificateDer<'static>]) -> Result<(), String> {
        let in_service = self.client_verifier.load();
        let Some(v) = in_service.verifier.as_ref() else {
            return Err("no client CA is configured (tls.client_ca_file)".into());
        };
        let (leaf, intermediates) = chain.split_first().ok_or("empty chain")?;
        v.verify_client_cert(leaf, intermediates, rustls_pki_types::UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// What is in service.
    pub fn status(&self) -> Arc<Status> {
        self.status.load_full()
    }

    /// The fingerprint of the files in service.
    pub fn fingerprint(&self) -> [u8; 32] {
        **self.fingerprint.load()
    }
}
