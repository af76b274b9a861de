//! `headers:` -> [`HeaderNames`]: the names the identity is written under.
//!
//! An identity header is set from values a backend vouches for, after the
//! client's copies are stripped. Named like a framing, hop-by-hop, routing or
//! credential header it would let an identity smuggle a request, forge a hop
//! or a credential, or strip the client's framing; named like another
//! identity header it would merge two claims into one. Both are refused, in
//! every spelling an upstream folds to one (`_` read as `-`).

use http::HeaderName;

use crate::config::file::HeadersFile;
use crate::config::{Error, HeaderNames, defaults};

/// Why a reserved name must not carry an identity.
const FRAMING: &str = "it frames the message or the connection";
const ROUTING: &str = "proxies and upstreams route by it or trust it";
const CREDENTIAL: &str = "it carries a credential or authgate's own signal";

/// Names no identity header may have: `(name, prefix, why)`; with `prefix`,
/// every name that starts with `name`. Lower-case, as `http` keeps names.
const RESERVED: &[(&str, bool, &str)] = &[
    // RFC 9110 7.6.1 hop-by-hop, RFC 9112 framing.
    ("connection", false, FRAMING),
    ("content-", true, FRAMING),
    ("expect", false, FRAMING),
    ("keep-alive", false, FRAMING),
    ("proxy-", true, FRAMING),
    ("te", false, FRAMING),
    ("trailer", false, FRAMING),
    ("transfer-encoding", false, FRAMING),
    ("upgrade", false, FRAMING),
    // Routing, forwarding, and what nginx `auth_request` / Envoy send.
    ("host", false, ROUTING),
    ("forwarded", false, ROUTING),
    ("via", false, ROUTING),
    ("x-real-ip", false, ROUTING),
    ("x-forwarded-", true, ROUTING),
    ("x-original-", true, ROUTING),
    ("x-envoy-", true, ROUTING),
    // Credentials, impersonation, client certificates, authgate's responses.
    ("authorization", false, CREDENTIAL),
    ("cookie", false, CREDENTIAL),
    ("set-cookie", false, CREDENTIAL),
    ("www-authenticate", false, CREDENTIAL),
    ("warning", false, CREDENTIAL),
    ("impersonate-", true, CREDENTIAL),
    ("client-cert", true, CREDENTIAL),
    ("ssl-client-", true, CREDENTIAL),
    ("x-ssl-client-", true, CREDENTIAL),
];

/// A header name as CGI, WSGI, Rack and PHP read it: `_` folded into `-`
/// (both spellings become `HTTP_X_REMOTE_USER`), so names are compared and
/// reserved in this form (as `proxy::headers::normalized` strips them).
fn folded(name: &str) -> String {
    name.replace('_', "-")
}

/// The reserved entry `name` (in any spelling an upstream folds to one)
/// falls under, if any.
fn reserved(name: &str) -> Option<&'static str> {
    let name = folded(name);
    let name = name.as_str();
    RESERVED
        .iter()
        .find(|(r, prefix, _)| {
            if *prefix {
                name.starts_with(r)
            } else {
                name == *r
            }
        })
        .map(|(_, _, why)| *why)
}

/// The reserved entry some header beginning with `prefix` (in any
/// spelling an upstream folds to one) falls under.
fn reserved_under_prefix(prefix: &str) -> Option<(&'static str, &'static str)> {
    let prefix = folded(prefix);
    let prefix = prefix.as_str();
    RESERVED
        .iter()
        .find(|(r, is_prefix, _)| r.starts_with(prefix) || (*is_prefix && prefix.starts_with(r)))
        .map(|(r, _, why)| (*r, *why))
}

/// Validates `headers:`.
pub(super) fn header_names(h: HeadersFile) -> Result<HeaderNames, Error> {
    let d = HeaderNames::default();
    let user = name("headers.user", h.user, d.user)?;
    let group = name("headers.group", h.group, d.group)?;
    let uid = name("headers.uid", h.uid, d.uid)?;
    let named = [
        ("headers.user", &user),
        ("headers.group", &group),
        ("headers.uid", &uid),
    ];
    for (i, (key, n)) in named.iter().enumerate() {
        if let Some((earlier, _)) = named[..i]
            .iter()
            .find(|(_, m)| folded(m.as_str()) == folded(n.as_str()))
        {
            return Err(Error::invalid(
                *key,
                format!(
                    "{:?} is also {earlier}; each identity header needs its own name",
                    n.as_str()
                ),
            ));
        }
    }
    let extra_prefix = extra_prefix(h.extra_prefix, d.extra_prefix)?;
    if let Some((key, n)) = named
        .iter()
        .find(|(_, n)| folded(n.as_str()).starts_with(&folded(&extra_prefix)))
    {
        let extra_key = &n.as_str()[extra_prefix.len()..];
        return Err(Error::invalid(
            "headers.extra_prefix",
            format!(
                "{extra_prefix:?} would also write {key} ({:?}) for an extra key {extra_key:?}",
                n.as_str()
            ),
        ));
    }
    let forward_client_cert = match h.forward_client_cert.as_deref() {
        None | Some("none") => false,
        Some("xfcc") => true,
        Some(other) => {
            return Err(Error::invalid(
                "headers.forward_client_cert",
                format!("{other:?} is not none or xfcc"),
            ));
        }
    };
    if h.group_separator.as_deref() == Some("") {
        return Err(Error::invalid(
            "headers.group_separator",
            "must not be empty",
        ));
    }
    Ok(HeaderNames {
        forward_client_cert,
        enabled: h.enabled.unwrap_or(true),
        group_separator: h.group_separator,
        user,
        group,
        uid,
        extra_prefix,
        strip_steering: h.strip_steering.unwrap_or(defaults::STRIP_STEERING),
    })
}

/// One identity header name: valid, and not reserved.
fn name(key: &str, v: Option<String>, default: HeaderName) -> Result<HeaderName, Error> {
    let Some(s) = v else {
        return Ok(default);
    };
    let n = HeaderName::try_from(s.as_str())
        .map_err(|_| Error::invalid(key, format!("{s:?} is not a valid header name")))?;
    if let Some(why) = reserved(n.as_str()) {
        return Err(Error::invalid(
            key,
            format!("{:?} must not be an identity header: {why}", n.as_str()),
        ));
    }
    Ok(n)
}

/// `headers.extra_prefix`, lower-cased: non-empty, a valid name prefix, and
/// not a prefix of any reserved name (the prefix also decides which client
/// headers are stripped).
fn extra_prefix(v: Option<String>, default: String) -> Result<String, Error> {
    const KEY: &str = "headers.extra_prefix";
    let Some(p) = v else {
        return Ok(default);
    };
    if p.is_empty() {
        return Err(Error::invalid(
            KEY,
            "must not be empty: every header would be an extra identity header, and stripped from clients",
        ));
    }
    let probe = format!("{p}x");
    HeaderName::try_from(probe.as_str())
        .map_err(|_| Error::invalid(KEY, format!("{p:?} is not a valid header name prefix")))?;
    let p = p.to_ascii_lowercase();
    if let Some((r, why)) = reserved_under_prefix(&p) {
        return Err(Error::invalid(
            KEY,
            format!("{p:?} must not begin a reserved header such as {r:?}: {why}"),
        ));
    }
    Ok(p)
}
