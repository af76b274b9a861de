//! `identity.rules`: which certificate names make an identity, and which
//! issuers may vouch for them.
//!
//! A rule without `ca_file` trusts every CA of `tls.client_ca_file` to
//! sign the names it reads. That is safe only while the bundle holds one
//! issuer; with more, any of them could write another's names (a CN issuer
//! writing a `spiffe://` URI SAN), so [`crate::tls::load`] then refuses an
//! unbound rule. A SPIFFE rule always names its trust domain.

use std::path::PathBuf;

use super::{file, glob};
use crate::config::{Error, IdentityRule, RuleKind, SanKind, TlsConfig};

/// The rules, or the default `[common_name: {}]`.
pub(super) fn rules(
    rules: Option<Vec<file::RuleFile>>,
    tls: &TlsConfig,
) -> Result<Vec<IdentityRule>, Error> {
    let Some(rules) = rules else {
        return Ok(vec![IdentityRule::unbound(RuleKind::CommonName)]);
    };
    if rules.is_empty() {
        return Err(Error::invalid(
            "identity.rules",
            "is empty: no certificate could name anyone (omit it for the default [common_name: {}])",
        ));
    }
    rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| rule(&format!("identity.rules[{i}]"), r, tls))
        .collect()
}

fn rule(key: &str, r: file::RuleFile, tls: &TlsConfig) -> Result<IdentityRule, Error> {
    let kind = match (r.spiffe, r.common_name, r.san) {
        (Some(s), None, None) => spiffe(key, s)?,
        (None, Some(_), None) => RuleKind::CommonName,
        (None, None, Some(s)) => san(key, s)?,
        _ => {
            return Err(Error::invalid(
                key,
                "needs exactly one of spiffe, common_name, san",
            ));
        }
    };
    let ca_file = r.ca_file.map(|f| ca_file(key, f, tls)).transpose()?;
    Ok(IdentityRule { kind, ca_file })
}

fn ca_file(key: &str, f: PathBuf, tls: &TlsConfig) -> Result<PathBuf, Error> {
    if tls.client_ca_file.is_none() {
        return Err(Error::invalid(
            format!("{key}.ca_file"),
            "needs tls.client_ca_file (the rule narrows which of its CAs may sign)",
        ));
    }
    if f.as_os_str().is_empty() {
        return Err(Error::invalid(
            format!("{key}.ca_file"),
            "must not be empty",
        ));
    }
    Ok(f)
}

fn spiffe(key: &str, s: file::SpiffeRuleFile) -> Result<RuleKind, Error> {
    let Some(td) = s.trust_domain else {
        return Err(Error::invalid(
            format!("{key}.spiffe.trust_domain"),
            "is required: without it any issuer's spiffe:// URI would name a ServiceAccount of any trust domain",
        ));
    };
    let ok = !td.is_empty()
        && td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    if !ok {
        return Err(Error::invalid(
            format!("{key}.spiffe.trust_domain"),
            format!(
                "{td:?} is not a SPIFFE trust domain (lower-case letters, digits, '-', '.', '_')"
            ),
        ));
    }
    Ok(RuleKind::Spiffe { trust_domain: td })
}

fn san(key: &str, s: file::SanRuleFile) -> Result<RuleKind, Error> {
    let kind = match s.kind.as_str() {
        "dns" => SanKind::Dns,
        "uri" => SanKind::Uri,
        "email" => SanKind::Email,
        other => {
            return Err(Error::invalid(
                format!("{key}.san.type"),
                format!("{other:?} is not one of dns, uri, email"),
            ));
        }
    };
    if s.user.trim().is_empty() {
        return Err(Error::invalid(
            format!("{key}.san.user"),
            "must not be empty",
        ));
    }
    Ok(RuleKind::San {
        kind,
        pattern: glob(&format!("{key}.san.pattern"), &s.pattern, false)?,
        user: s.user,
        groups: s.groups,
    })
}
