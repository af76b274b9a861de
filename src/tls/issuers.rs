//! The issuers `identity.rules[].ca_file` binds rules to: a rule applies
//! only to chains that end at a CA of its file (Envoy's SPIFFE validator
//! keeps one bundle per trust domain for the same reason).
//!
//! With more than one issuer in the client bundle, an unbound rule would
//! let any of them write the names it reads, so loading refuses it.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{Error, file_error, pem_certs, provider};

/// One verifier per rule (`None`: the rule is not bound).
#[derive(Clone, Default)]
pub struct Issuers(Arc<[Option<Arc<dyn ClientCertVerifier>>]>);

impl Issuers {
    /// Whether `chain` (leaf first, already verified against the client
    /// bundle) ends at a CA of rule `rule`'s `ca_file`; `false` for a rule
    /// that names none (the mapper asks only of bound rules).
    pub fn issued(&self, rule: usize, chain: &[CertificateDer<'_>]) -> bool {
        match (self.0.get(rule), chain.split_first()) {
            (Some(Some(v)), Some((leaf, intermediates))) => v
                .verify_client_cert(leaf, intermediates, UnixTime::now())
                .is_ok(),
            _ => false,
        }
    }
}

/// Builds the verifiers of `files` (one per rule, as read), after checking
/// that no rule is unbound while `bundle` holds more than one issuer.
pub(super) fn load(
    bundle_path: &Path,
    bundle: &[CertificateDer<'_>],
    files: &[(Option<&Path>, Vec<u8>)],
) -> Result<Issuers, Error> {
    let names = issuer_names(bundle);
    if names.len() > 1
        && let Some(i) = files.iter().position(|(f, _)| f.is_none())
    {
        return Err(file_error(
            bundle_path,
            format!(
                "holds {} issuers ({}), so identity.rules[{i}] must name its ca_file: \
                 unbound, any of them could sign the names it maps",
                names.len(),
                names.join("; ")
            ),
        ));
    }
    files
        .iter()
        .map(|(path, pem)| match path {
            None => Ok(None),
            Some(path) => verifier(path, pem).map(Some),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|v| Issuers(v.into()))
}

/// The independent issuers of `certs`: the distinct subject names of the
/// CAs no other CA of the bundle signed. An intermediate under a root of the
/// bundle is that root's (its holder can issue anything anyway), and a CA
/// re-keyed under the same name, as cert-manager and trust-manager roll
/// one, is one issuer.
fn issuer_names(certs: &[CertificateDer<'_>]) -> Vec<String> {
    let parsed: Vec<X509Certificate<'_>> = certs
        .iter()
        .filter_map(|c| X509Certificate::from_der(c).ok().map(|(_, c)| c))
        .collect();
    let signed_by_another = |c: &X509Certificate<'_>| {
        c.subject() != c.issuer()
            && parsed.iter().any(|p| {
                p.subject() == c.issuer() && c.verify_signature(Some(p.public_key())).is_ok()
            })
    };
    let mut names: Vec<String> = parsed
        .iter()
        .filter(|c| !signed_by_another(c))
        .map(|c| c.subject().to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn verifier(path: &Path, pem: &[u8]) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    let mut roots = RootCertStore::empty();
    for cert in pem_certs(path, pem)? {
        roots.add(cert).map_err(|e| file_error(path, e))?;
    }
    // Revocation is the client verifier's job; this only asks "which CA".
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| file_error(path, format!("cannot build an issuer verifier: {e}")))
}
