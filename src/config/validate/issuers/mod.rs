//! `authentication:` -> [`IssuerConfig`]s: kube-apiserver's rules for
//! `AuthenticationConfiguration.jwt[]` (its `validation.go`), without CEL.
//!
//! Every CEL field is refused by name; so are `egressSelectorType` and
//! `anonymous`, which authgate has no use for. Beyond the apiserver, a
//! `prefix` may not start with `system:` (an external issuer must not mint
//! Kubernetes system identities), and an issuer may not be the cluster's
//! own (`token_review.jwks.issuer`): its tokens would never reach
//! TokenReview.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::duration;
use crate::config::file::authn::{
    AuthenticationConfigurationFile, AuthenticationFile, ClaimMappingsFile, IssuerFile, JwtFile,
    PrefixedClaimFile,
};
use crate::config::issuers::{IssuerConfig, PrefixedClaim, SigningAlg};
use crate::config::{Error, defaults};

/// Issuers at most, as kube-apiserver allows.
const MAX_ISSUERS: usize = 64;

/// Keys are fetched at most this often by the periodic refresh.
const MIN_REFRESH: Duration = Duration::from_secs(10);

/// The `apiVersion`s read.
const API_VERSIONS: &[&str] = &[
    "apiserver.config.k8s.io/v1beta1",
    "apiserver.config.k8s.io/v1",
];

const CEL: &str = "CEL expressions are not supported by authgate; use the claim form";

/// Validates `authentication:`. `cluster_issuer`: the configured
/// `token_review.jwks.issuer`, which no external issuer may claim.
pub(super) fn issuers(
    a: AuthenticationFile,
    cluster_issuer: Option<&str>,
) -> Result<Vec<IssuerConfig>, Error> {
    let refresh = duration(
        "authentication.refresh",
        a.refresh,
        defaults::ISSUER_REFRESH,
    )?;
    if refresh < MIN_REFRESH {
        return Err(Error::invalid(
            "authentication.refresh",
            "must be at least 10s",
        ));
    }
    let algorithms = algorithms(a.signing_algs.as_deref())?;
    let (base, jwt) = match a.config_file {
        Some(_) if !a.jwt.is_empty() => {
            return Err(Error::invalid(
                "authentication.jwt",
                "cannot be combined with authentication.config_file; list the issuers in one place",
            ));
        }
        Some(path) => (format!("{}: ", path.display()), read(&path)?),
        None => ("authentication.".to_owned(), a.jwt),
    };
    if jwt.len() > MAX_ISSUERS {
        return Err(Error::invalid(
            format!("{base}jwt"),
            "must have at most 64 issuers",
        ));
    }
    let mut urls = HashSet::new();
    let mut discovery = HashSet::new();
    let mut out = Vec::with_capacity(jwt.len());
    for (i, j) in jwt.into_iter().enumerate() {
        let key = format!("{base}jwt[{i}]");
        let mut c = issuer(&key, j, refresh)?;
        c.algorithms.clone_from(&algorithms);
        if !urls.insert(c.url.clone()) {
            return Err(Error::invalid(
                format!("{key}.issuer.url"),
                format!("{:?} is listed twice", c.url),
            ));
        }
        if !discovery.insert(c.discovery_url.clone()) {
            return Err(Error::invalid(
                format!("{key}.issuer.discoveryURL"),
                format!("{:?} is listed twice", c.discovery_url),
            ));
        }
        if cluster_issuer == Some(c.url.as_str()) {
            return Err(Error::invalid(
                format!("{key}.issuer.url"),
                "is the cluster's ServiceAccount issuer (token_review.jwks.issuer); its tokens would never reach TokenReview",
            ));
        }
        out.push(c);
    }
    Ok(out)
}

/// `--oidc-sign-alg` (kube-rbac-proxy), or every algorithm authgate verifies.
fn algorithms(names: Option<&[String]>) -> Result<Vec<SigningAlg>, Error> {
    let Some(names) = names else {
        return Ok(SigningAlg::ALL.to_vec());
    };
    names
        .iter()
        .map(|n| {
            SigningAlg::from_name(n).ok_or_else(|| {
                Error::invalid(
                    "--oidc-sign-alg",
                    format!("{n:?} is not supported (RS256 or ES256)"),
                )
            })
        })
        .collect()
}

/// Reads an `AuthenticationConfiguration` file.
fn read(path: &Path) -> Result<Vec<JwtFile>, Error> {
    const KEY: &str = "authentication.config_file";
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(KEY, format!("cannot read {}: {e}", path.display())))?;
    let f: AuthenticationConfigurationFile = serde_saphyr::from_str(&text)
        .map_err(|e| Error::invalid(KEY, format!("{}: {e}", path.display())))?;
    let at = |field: &str| format!("{}: {field}", path.display());
    match f.api_version.as_deref() {
        Some(v) if API_VERSIONS.contains(&v) => {}
        other => {
            return Err(Error::invalid(
                at("apiVersion"),
                format!("{other:?} is not one of {API_VERSIONS:?}"),
            ));
        }
    }
    if f.kind.as_deref() != Some("AuthenticationConfiguration") {
        return Err(Error::invalid(
            at("kind"),
            "must be AuthenticationConfiguration",
        ));
    }
    if f.anonymous.is_some() {
        return Err(Error::invalid(
            at("anonymous"),
            "is not supported: authgate has no anonymous authentication (see paths.unauthenticated)",
        ));
    }
    Ok(f.jwt)
}

/// One `jwt[]` item under `key`.
fn issuer(key: &str, j: JwtFile, refresh: Duration) -> Result<IssuerConfig, Error> {
    if !j.user_validation_rules.is_empty() {
        return Err(Error::invalid(format!("{key}.userValidationRules"), CEL));
    }
    let iss = &j.issuer;
    let url = iss
        .url
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| Error::invalid(format!("{key}.issuer.url"), "is required"))?;
    check_url(&format!("{key}.issuer.url"), &url)?;
    let discovery_url = match &iss.discovery_url {
        Some(d) => {
            let k = format!("{key}.issuer.discoveryURL");
            if d.trim_end_matches('/') == url.trim_end_matches('/') {
                return Err(Error::invalid(k, "must be different from url"));
            }
            check_url(&k, d)?;
            d.clone()
        }
        None => format!(
            "{}/.well-known/openid-configuration",
            url.trim_end_matches('/')
        ),
    };
    if iss.egress_selector_type.is_some() {
        return Err(Error::invalid(
            format!("{key}.issuer.egressSelectorType"),
            "is not supported: authgate reaches the issuer directly",
        ));
    }
    let audiences = audiences(key, iss)?;
    let certificate_authority = match &iss.certificate_authority {
        None => None,
        Some(pem) => Some(ca(&format!("{key}.issuer.certificateAuthority"), pem)?),
    };
    let required_claims = claim_rules(key, &j)?;
    let mappings = j.claim_mappings.ok_or_else(|| {
        Error::invalid(
            format!("{key}.claimMappings.username"),
            "is required (claim and prefix)",
        )
    })?;
    let (username, groups, uid_claim) = claim_mappings(&format!("{key}.claimMappings"), mappings)?;
    Ok(IssuerConfig {
        key: key.to_owned(),
        url,
        discovery_url,
        audiences,
        certificate_authority,
        username,
        groups,
        uid_claim,
        required_claims,
        algorithms: SigningAlg::ALL.to_vec(),
        refresh,
    })
}

/// `https`, no user info, query or fragment, a host.
fn check_url(key: &str, url: &str) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::invalid(key, format!("{url:?}: {why}")));
    if url.contains('#') {
        return bad("must not contain a fragment");
    }
    let Ok(uri) = url.parse::<http::Uri>() else {
        return bad("is not a URL");
    };
    if uri.scheme_str() != Some("https") {
        return bad("URL scheme must be https");
    }
    let Some(authority) = uri.authority() else {
        return bad("has no host");
    };
    if authority.as_str().contains('@') {
        return bad("must not contain a username or password");
    }
    if uri.query().is_some() {
        return bad("must not contain a query");
    }
    Ok(())
}

fn audiences(key: &str, iss: &IssuerFile) -> Result<Vec<String>, Error> {
    let k = format!("{key}.issuer.audiences");
    if iss.audiences.is_empty() {
        return Err(Error::invalid(k, "at least one audience is required"));
    }
    let mut seen = HashSet::new();
    for (i, a) in iss.audiences.iter().enumerate() {
        if a.is_empty() {
            return Err(Error::invalid(format!("{k}[{i}]"), "must not be empty"));
        }
        if !seen.insert(a) {
            return Err(Error::invalid(
                format!("{k}[{i}]"),
                format!("{a:?} is listed twice"),
            ));
        }
    }
    let policy = iss.audience_match_policy.as_deref().unwrap_or("");
    let k = format!("{key}.issuer.audienceMatchPolicy");
    match (iss.audiences.len(), policy) {
        (_, "MatchAny") | (1, "") => Ok(iss.audiences.clone()),
        (1, p) => Err(Error::invalid(
            k,
            format!("{p:?}: must be empty or MatchAny for a single audience"),
        )),
        (_, p) => Err(Error::invalid(
            k,
            format!("{p:?}: must be MatchAny for multiple audiences"),
        )),
    }
}

/// PEM certificates that parse (the value is public, but long: omitted).
fn ca(key: &str, pem: &str) -> Result<String, Error> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::invalid(key, format!("is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::invalid(key, "holds no PEM certificate"));
    }
    for c in &certs {
        x509_parser::parse_x509_certificate(c)
            .map_err(|e| Error::invalid(key, format!("a certificate does not parse: {e}")))?;
    }
    Ok(pem.to_owned())
}

/// `claimValidationRules[]`: `{claim, requiredValue}` pairs.
fn claim_rules(key: &str, j: &JwtFile) -> Result<Vec<(String, String)>, Error> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, r) in j.claim_validation_rules.iter().enumerate() {
        let k = format!("{key}.claimValidationRules[{i}]");
        if r.expression.is_some() {
            return Err(Error::invalid(format!("{k}.expression"), CEL));
        }
        if r.message.is_some() {
            return Err(Error::invalid(
                format!("{k}.message"),
                "may not be specified when claim is set",
            ));
        }
        let claim = r
            .claim
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Error::invalid(format!("{k}.claim"), "is required"))?;
        if !seen.insert(claim.clone()) {
            return Err(Error::invalid(
                format!("{k}.claim"),
                format!("{claim:?} is listed twice"),
            ));
        }
        out.push((claim, r.required_value.clone().unwrap_or_default()));
    }
    Ok(out)
}

type Mappings = (PrefixedClaim, Option<PrefixedClaim>, Option<String>);

fn claim_mappings(key: &str, m: ClaimMappingsFile) -> Result<Mappings, Error> {
    let username = match m.username {
        Some(u) => prefixed(&format!("{key}.username"), u)?,
        None => None,
    }
    .ok_or_else(|| {
        Error::invalid(
            format!("{key}.username"),
            "claim is required (with a prefix)",
        )
    })?;
    let groups = match m.groups {
        Some(g) => prefixed(&format!("{key}.groups"), g)?,
        None => None,
    };
    let uid_claim = match m.uid {
        Some(u) if u.expression.is_some() => {
            return Err(Error::invalid(format!("{key}.uid.expression"), CEL));
        }
        Some(u) => u.claim.filter(|c| !c.is_empty()),
        None => None,
    };
    if let Some((i, e)) = m.extra.iter().enumerate().next() {
        let k = format!("{key}.extra[{i}]");
        return Err(match e.value_expression {
            Some(_) => Error::invalid(format!("{k}.valueExpression"), CEL),
            None => Error::invalid(
                format!("{k}.valueExpression"),
                "is required, and is CEL: authgate maps no extra attributes",
            ),
        });
    }
    Ok((username, groups, uid_claim))
}

/// A `{claim, prefix}` mapping; `None` when neither is set.
fn prefixed(key: &str, m: PrefixedClaimFile) -> Result<Option<PrefixedClaim>, Error> {
    if m.expression.is_some() {
        return Err(Error::invalid(format!("{key}.expression"), CEL));
    }
    let Some(claim) = m.claim.filter(|c| !c.is_empty()) else {
        if m.prefix.is_some() {
            return Err(Error::invalid(
                format!("{key}.claim"),
                "is required with prefix",
            ));
        }
        return Ok(None);
    };
    let prefix = m.prefix.ok_or_else(|| {
        Error::invalid(
            format!("{key}.prefix"),
            "is required when claim is set; it can be set to an empty string to disable prefixing",
        )
    })?;
    if prefix.starts_with("system:") {
        return Err(Error::invalid(
            format!("{key}.prefix"),
            "must not start with system: (reserved for Kubernetes identities)",
        ));
    }
    Ok(Some(PrefixedClaim { claim, prefix }))
}

#[cfg(test)]
mod tests;
