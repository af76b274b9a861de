//! The client-certificate verifier, correct while a CA is rolled.
//!
//! webpki picks a certificate's CRL by issuer *name* and then checks its
//! signature with the issuer's key. While trust-manager rolls a CA under
//! the same name (bundle old + new, each with its CRL), one verifier would
//! check the new CA's certificates against the old CA's CRL and fail them
//! all. So the bundle is split into groups in which no two CAs share a name
//! with different keys, each group gets its own webpki verifier with the
//! CRLs its CAs signed, and a certificate is accepted when one group
//! accepts it. A bundle without such a pair is one group: webpki alone.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

/// The CAs (indices into the bundle) of each group, in bundle order: a CA
/// joins the first group holding no other key under its name.
pub(super) fn groups(cas: &[CertificateDer<'_>]) -> Vec<Vec<usize>> {
    let names: Vec<Option<(Vec<u8>, Vec<u8>)>> = cas
        .iter()
        .map(|c| {
            X509Certificate::from_der(c)
                .ok()
                .map(|(_, c)| (c.subject().as_raw().to_vec(), c.public_key().raw.to_vec()))
        })
        .collect();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let clashes = |g: &Vec<usize>| {
            g.iter().any(|&j| match (n, &names[j]) {
                (Some((s1, k1)), Some((s2, k2))) => s1 == s2 && k1 != k2,
                _ => false,
            })
        };
        match groups.iter_mut().find(|g| !clashes(g)) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}

/// The CA of `cas` that signed `crl`: its name and its key.
pub(super) fn signer<'a>(
    cas: &'a [X509Certificate<'a>],
    crl: &CertificateRevocationList<'_>,
) -> Option<&'a X509Certificate<'a>> {
    cas.iter()
        .find(|ca| ca.subject() == crl.issuer() && crl.verify_signature(ca.public_key()).is_ok())
}

/// The CRLs a CA of `group` signed.
pub(super) fn crls_of(
    group: &[usize],
    cas: &[CertificateDer<'_>],
    crls: &[CertificateRevocationListDer<'static>],
) -> Vec<CertificateRevocationListDer<'static>> {
    let parsed: Vec<X509Certificate<'_>> = group
        .iter()
        .filter_map(|&i| X509Certificate::from_der(&cas[i]).ok().map(|(_, c)| c))
        .collect();
    crls.iter()
        .filter(|der| {
            CertificateRevocationList::from_der(der)
                .is_ok_and(|(_, crl)| signer(&parsed, &crl).is_some())
        })
        .cloned()
        .collect()
}

/// One verifier per group; the first that accepts a certificate decides.
#[derive(Debug)]
pub(super) struct Rolled {
    parts: Vec<Arc<dyn ClientCertVerifier>>,
    hints: Vec<DistinguishedName>,
    /// Every CRL of the bundle, read once: a group's acceptance is checked
    /// against every CRL the leaf's own issuer key signed (a group may
    /// accept a chain through a CA whose CRL another group holds).
    revocations: Vec<Revocations>,
    /// `!tls.allow_stale_crl`.
    enforce_expiry: bool,
}

/// What one CRL says, and the key of the bundle CA that signed it.
#[derive(Debug)]
struct Revocations {
    /// The CRL's issuer name, raw.
    issuer: Vec<u8>,
    /// The signing CA's SubjectPublicKeyInfo, DER.
    key: Vec<u8>,
    /// Revoked serials, raw, sorted.
    serials: Vec<Vec<u8>>,
    /// `nextUpdate` (Unix seconds).
    next_update: Option<i64>,
    /// The distribution-point URIs of its issuing distribution point;
    /// `None`: a full CRL, covering every certificate of the issuer.
    scope: Option<Vec<String>>,
}

/// The URIs of a distribution-point name (`None` for a relative name).
fn uris(n: Option<&DistributionPointName<'_>>) -> Vec<String> {
    match n {
        Some(DistributionPointName::FullName(names)) => names
            .iter()
            .filter_map(|g| match g {
                GeneralName::URI(u) => Some((*u).to_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl Revocations {
    /// Whether this CRL is the one that speaks for a certificate with
    /// these CRL distribution points (`None`: it names none), as webpki
    /// decides it: a full CRL speaks for all, a shard for its points.
    fn covers(&self, leaf_points: Option<&[String]>) -> bool {
        match (&self.scope, leaf_points) {
            (None, _) | (Some(_), None) => true,
            (Some(scope), Some(points)) => {
                scope.is_empty() || points.iter().any(|p| scope.contains(p))
            }
        }
    }
}

impl Revocations {
    /// The CRLs of `crls` with the bundle CA that signed each (a CRL
    /// signed by none was refused at load; it is skipped here).
    fn of(cas: &[CertificateDer<'_>], crls: &[CertificateRevocationListDer<'_>]) -> Vec<Self> {
        let cas: Vec<X509Certificate<'_>> = cas
            .iter()
            .filter_map(|c| X509Certificate::from_der(c).ok().map(|(_, c)| c))
            .collect();
        crls.iter()
            .filter_map(|der| {
                let (_, crl) = CertificateRevocationList::from_der(der).ok()?;
                let signer = signer(&cas, &crl)?;
                let mut serials: Vec<Vec<u8>> = crl
                    .iter_revoked_certificates()
                    .map(|r| r.raw_serial().to_vec())
                    .collect();
                serials.sort();
                let scope = crl
                    .extensions()
                    .iter()
                    .find_map(|e| match e.parsed_extension() {
                        ParsedExtension::IssuingDistributionPoint(idp) => {
                            Some(uris(idp.distribution_point.as_ref()))
                        }
                        _ => None,
                    });
                Some(Self {
                    issuer: crl.issuer().as_raw().to_vec(),
                    key: signer.public_key().raw.to_vec(),
                    serials,
                    next_update: crl.next_update().map(|t| t.timestamp()),
                    scope,
                })
            })
            .collect()
    }
}

impl Rolled {
    /// `parts` must not be empty.
    pub(super) fn new(
        parts: Vec<Arc<dyn ClientCertVerifier>>,
        cas: &[CertificateDer<'static>],
        crls: &[CertificateRevocationListDer<'static>],
        enforce_expiry: bool,
    ) -> Self {
        let mut hints: Vec<DistinguishedName> = Vec::new();
        for p in &parts {
            for h in p.root_hint_subjects() {
                if !hints.iter().any(|x| x.as_ref() == h.as_ref()) {
                    hints.push(h.clone());
                }
            }
        }
        Self {
            parts,
            hints,
            revocations: Revocations::of(cas, crls),
            enforce_expiry,
        }
    }

    /// What the CRLs of the key that signed `leaf` say against it, after a
    /// group accepted it: any of them lists its serial (serials are unique
    /// per issuer, so every CRL of the key counts, whatever its scope), or
    /// the one that covers it is stale while that is enforced.
    /// Fail-closed: an unparseable leaf counts as revoked.
    fn refusal(&self, leaf: &CertificateDer<'_>) -> Option<Error> {
        let Ok((_, l)) = X509Certificate::from_der(leaf) else {
            return Some(Error::InvalidCertificate(CertificateError::Revoked));
        };
        let points: Option<Vec<String>> =
            l.extensions()
                .iter()
                .find_map(|e| match e.parsed_extension() {
                    ParsedExtension::CRLDistributionPoints(dps) => Some(
                        dps.points
                            .iter()
                            .flat_map(|p| uris(p.distribution_point.as_ref()))
                            .collect(),
                    ),
                    _ => None,
                });
        let now = crate::clock::unix_now();
        let mine: Vec<&Revocations> = self
            .revocations
            .iter()
            .filter(|r| r.issuer == l.issuer().as_raw())
            .filter(|r| {
                SubjectPublicKeyInfo::from_der(&r.key)
                    .is_ok_and(|(_, key)| l.verify_signature(Some(&key)).is_ok())
            })
            .collect();
        if mine.iter().any(|r| {
            r.serials
                .binary_search_by(|s| s.as_slice().cmp(l.raw_serial()))
                .is_ok()
        }) {
            return Some(Error::InvalidCertificate(CertificateError::Revoked));
        }
        let stale = self.enforce_expiry
            && mine
                .iter()
                .any(|r| r.covers(points.as_deref()) && r.next_update.is_some_and(|t| t < now));
        stale.then_some(Error::InvalidCertificate(
            CertificateError::ExpiredRevocationList,
        ))
    }

    fn first(&self) -> &dyn ClientCertVerifier {
        self.parts[0].as_ref()
    }
}

/// How much a refusal says about the certificate: a revocation or an
/// expiry found by the group of its issuer beats "unknown issuer" from
/// the others.
fn specificity(e: &Error) -> u8 {
    match e {
        Error::InvalidCertificate(CertificateError::Revoked) => 0,
        Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => 1,
        Error::InvalidCertificate(CertificateError::UnknownIssuer)
        | Error::InvalidCertificate(CertificateError::BadSignature) => 3,
        _ => 2,
    }
}

impl ClientCertVerifier for Rolled {
    fn offer_client_auth(&self) -> bool {
        self.first().offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.first().client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let mut best: Option<Error> = None;
        for p in &self.parts {
            match p.verify_client_cert(end_entity, intermediates, now) {
                Ok(v) => {
                    return match self.refusal(end_entity) {
                        Some(e) => Err(e),
                        None => Ok(v),
                    };
                }
                Err(e) => {
                    if best
                        .as_ref()
                        .is_none_or(|b| specificity(&e) < specificity(b))
                    {
                        best = Some(e);
                    }
                }
            }
        }
        Err(best.unwrap_or(Error::InvalidCertificate(CertificateError::UnknownIssuer)))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.first().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.first().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.first().supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests;
