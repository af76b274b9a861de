//! Verified client certificate -> [`Identity`] (pure).
//!
//! rustls has already verified the chain, validity, EKU and revocation by the
//! time this runs; this module only decides *who* the certificate names,
//! following the ordered `identity.rules`. Anything ambiguous maps to nobody.

use std::collections::BTreeMap;

use globset::GlobMatcher;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use rustls_pki_types::CertificateDer;

use crate::config::{IdentityRule, RuleKind, SanKind};
use crate::identity::{AuthMethod, CREDENTIAL_ID_KEY, Identity};
use crate::tls::Issuers;

/// Why a verified certificate names no identity (reason `cert_unmapped`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertUnmapped {
    /// No rule matched.
    #[error("no identity rule matches the certificate")]
    NoRuleMatched,
    /// More than one subject CN.
    #[error("the certificate has more than one common name")]
    MultipleCommonNames,
    /// A CN or O that is not a UTF-8 compatible string type (e.g. BMPString).
    #[error("the certificate subject has a name that is not UTF-8")]
    NonUtf8Name,
    /// More than one SPIFFE ID.
    #[error("the certificate has more than one SPIFFE ID")]
    MultipleSpiffeIds,
    /// A SAN entry that does not decode.
    #[error("the certificate has an invalid subject alternative name")]
    InvalidSan,
    /// A name with control characters.
    #[error("the certificate names an identity with control characters")]
    InvalidCharacters,
    /// The DER does not parse (cannot happen after rustls verified it).
    #[error("the certificate does not parse")]
    Unparseable,
    /// Outside its validity period (possible only on a resumed session).
    #[error("the certificate is expired or not yet valid")]
    OutsideValidity,
}

/// A compiled rule list.
#[derive(Debug)]
pub struct CertMapper {
    rules: Vec<Bound>,
}

/// A rule and whether it is bound to its `ca_file`'s issuers.
#[derive(Debug)]
struct Bound {
    rule: Rule,
    bound: bool,
}

#[derive(Debug)]
enum Rule {
    Spiffe {
        trust_domain: String,
    },
    CommonName,
    San {
        kind: SanKind,
        pattern: GlobMatcher,
        user: String,
        groups: Vec<String>,
    },
}

/// The names in a certificate the rules look at.
struct Names<'a> {
    cns: Vec<&'a str>,
    orgs: Vec<&'a str>,
    dns: Vec<&'a str>,
    uris: Vec<&'a str>,
    emails: Vec<&'a str>,
}

impl CertMapper {
    /// Compiles `rules`.
    pub fn new(rules: &[IdentityRule]) -> Self {
        let rules = rules
            .iter()
            .map(|r| Bound {
                bound: r.ca_file.is_some(),
                rule: match &r.kind {
                    RuleKind::Spiffe { trust_domain } => Rule::Spiffe {
                        trust_domain: trust_domain.clone(),
                    },
                    RuleKind::CommonName => Rule::CommonName,
                    RuleKind::San {
                        kind,
                        pattern,
                        user,
                        groups,
                    } => Rule::San {
                        kind: *kind,
                        pattern: pattern.compile_matcher(),
                        user: user.clone(),
                        groups: groups.clone(),
                    },
                },
            })
            .collect();
        Self { rules }
    }

    /// Maps a verified chain (leaf first) to an identity at `now` (Unix
    /// seconds). A rule bound to a `ca_file` is skipped unless `issuers`
    /// says the chain ends at one of its CAs.
    pub fn map(
        &self,
        chain: &[CertificateDer<'_>],
        issuers: &Issuers,
        now: i64,
    ) -> Result<Identity, CertUnmapped> {
        let leaf_der: &[u8] = chain.first().ok_or(CertUnmapped::Unparseable)?;
        let (_, cert) =
            X509Certificate::from_der(leaf_der).map_err(|_| CertUnmapped::Unparseable)?;
        let v = cert.validity();
        if now < v.not_before.timestamp() || now > v.not_after.timestamp() {
            return Err(CertUnmapped::OutsideValidity);
        }
        let names = names(&cert)?;
        let (user, groups) = self
            .rules
            .iter()
            .enumerate()
            .filter(|(i, r)| !r.bound || issuers.issued(*i, chain))
            .find_map(|(_, r)| r.rule.apply(&names).transpose())
            .unwrap_or(Err(CertUnmapped::NoRuleMatched))?;
        let fingerprint = hex::encode(Sha256::digest(leaf_der));
        let extra = BTreeMap::from([(
            CREDENTIAL_ID_KEY.to_owned(),
            vec![format!("X509SHA256={fingerprint}")],
        )]);
        let id = Identity::new(user, None, groups, extra, AuthMethod::Mtls);
        if id.invalid_field().is_some() {
            return Err(CertUnmapped::InvalidCharacters);
        }
        Ok(id)
    }
}

impl Rule {
    /// `Ok(None)`: the rule does not apply; `Err`: the certificate is ambiguous.
    fn apply(&self, n: &Names<'_>) -> Result<Option<(String, Vec<String>)>, CertUnmapped> {
        match self {
            Self::Spiffe { trust_domain } => spiffe(n, trust_domain),
            Self::CommonName => match n.cns.as_slice() {
                [] | [""] => Ok(None),
                [cn] => Ok(Some((
                    (*cn).to_owned(),
                    n.orgs.iter().map(|o| (*o).to_owned()).collect(),
                ))),
                _ => Err(CertUnmapped::MultipleCommonNames),
            },
            Self::San {
                kind,
                pattern,
                user,
                groups,
            } => {
                let values = match kind {
                    SanKind::Dns => &n.dns,
                    SanKind::Uri => &n.uris,
                    SanKind::Email => &n.emails,
                };
                Ok(values
                    .iter()
                    .find(|v| pattern.is_match(v))
                    .map(|v| (user.replace("{value}", v), groups.clone())))
            }
        }
    }
}

/// The leaf's notAfter (Unix seconds), for expiry metrics.
pub fn not_after(leaf_der: &[u8]) -> Option<i64> {
    let (_, cert) = X509Certificate::from_der(leaf_der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// An Envoy-style `X-Forwarded-Client-Cert` element for the leaf:
/// `Hash=<hex sha256 of DER>;Subject="<DN>";URI=<uri>;DNS=<dns>`.
pub fn xfcc(leaf_der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(leaf_der).ok()?;
    let names = names(&cert).ok()?;
    let mut out = format!("Hash={}", hex::encode(Sha256::digest(leaf_der)));
    // Always quoted, as Envoy writes it.
    out.push_str(&format!(
        ";Subject=\"{}\"",
        xfcc_escape(&cert.subject().to_string())
    ));
    for u in &names.uris {
        out.push_str(&format!(";URI={}", xfcc_value(u)));
    }
    for d in &names.dns {
        out.push_str(&format!(";DNS={}", xfcc_value(d)));
    }
    Some(out)
}

/// An XFCC value that Envoy's grammar (and
/// [`crate::gate::auth_request::parse_xfcc`]) reads back as exactly `v`:
/// quoted when it holds any of `,` `;` `=` `"` `\` or whitespace, which
/// would otherwise end it or start a key or an element; as it is otherwise.
/// A SAN is the certificate holder's text: unescaped, a `\"` in it would
/// close the quote and append a forged element.
pub fn xfcc_value(v: &str) -> String {
    if v.contains([',', ';', '=', '"', '\\']) || v.contains(char::is_whitespace) {
        format!("\"{}\"", xfcc_escape(v))
    } else {
        v.to_owned()
    }
}

/// The inside of a quoted XFCC value: `\` -> `\\`, `"` -> `\"`.
fn xfcc_escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

/// SPIFFE ID `spiffe://<td>/ns/<ns>/sa/<sa>` -> the ServiceAccount's user and groups.
fn spiffe(n: &Names<'_>, want_td: &str) -> Result<Option<(String, Vec<String>)>, CertUnmapped> {
    let mut ids = n.uris.iter().filter_map(|u| u.strip_prefix("spiffe://"));
    let Some(id) = ids.next() else {
        return Ok(None);
    };
    if ids.next().is_some() {
        return Err(CertUnmapped::MultipleSpiffeIds);
    }
    let Some((td, path)) = id.split_once('/') else {
        return Ok(None);
    };
    if td != want_td {
        return Ok(None);
    }
    let mut parts = path.split('/');
    let (Some("ns"), Some(ns), Some("sa"), Some(sa), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Ok(None);
    };
    if !is_dns_name(ns) || !is_dns_name(sa) {
        return Ok(None);
    }
    Ok(Some((
        format!("system:serviceaccount:{ns}:{sa}"),
        vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{ns}"),
        ],
    )))
}

/// Kubernetes object-name syntax (RFC 1123 subdomain), which namespaces and
/// ServiceAccounts follow.
fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
}

fn names<'a>(cert: &'a X509Certificate<'a>) -> Result<Names<'a>, CertUnmapped> {
    let text = |attr: &'a x509_parser::x509::AttributeTypeAndValue<'a>| {
        attr.as_str().map_err(|_| CertUnmapped::NonUtf8Name)
    };
    let subject = cert.subject();
    let mut n = Names {
        cns: subject
            .iter_common_name()
            .map(text)
            .collect::<Result<_, _>>()?,
        orgs: subject
            .iter_organization()
            .map(text)
            .collect::<Result<_, _>>()?,
        dns: Vec::new(),
        uris: Vec::new(),
        emails: Vec::new(),
    };
    let san = cert
        .subject_alternative_name()
        .map_err(|_| CertUnmapped::InvalidSan)?;
    for gn in san.iter().flat_map(|s| s.value.general_names.iter()) {
        match gn {
            GeneralName::DNSName(s) => n.dns.push(s),
            GeneralName::URI(s) => n.uris.push(s),
            GeneralName::RFC822Name(s) => n.emails.push(s),
            GeneralName::Invalid(..) => return Err(CertUnmapped::InvalidSan),
            _ => {}
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests;
