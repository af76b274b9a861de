//! Header name -> whether authgate strips it before the upstream, and
//! whether `mode: auth` reads it as a claimed identity (`proxy::headers`).
//!
//! Input: 8 bytes of a variant mask (little-endian), then the header name.
//! Properties: `normalized` is idempotent, keeps the length and leaves no
//! `_`; a name that normalises into a spoofable family (`X-Remote-*`,
//! `Impersonate-*`, the client-certificate headers, `Authorization`, the
//! configured identity names and extra prefix) or onto a request-steering
//! header is stripped; a variant with `_`/`-` swapped and ASCII letters
//! re-cased at the masked positions is stripped exactly when the name is,
//! and claims an identity exactly when it does; a name that claims an
//! identity is always stripped. Checked with the default header names and
//! with custom ones.
#![no_main]

use authgate::config::HeaderNames;
use authgate::proxy::headers::{claimed_identity, normalized, strip_spoofable};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

/// Prefixes that claim an identity or a client certificate (README,
/// "Forward").
const FAMILIES: &[&str] = &[
    "x-remote-",
    "impersonate-",
    "x-forwarded-client-cert",
    "x-client-cert",
    "client-cert",
    "ssl-client-",
    "x-ssl-client-",
];

/// Whole names always stripped: the credential and the steering headers.
const EXACT: &[&str] = &[
    "authorization",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-original-uri",
    "x-original-method",
    "x-rewrite-url",
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-prefix",
    "x-forwarded-port",
    "x-forwarded-server",
];

fn one(name: &HeaderName) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(name.clone(), HeaderValue::from_static("v"));
    h
}

fn stripped(name: &HeaderName, names: &HeaderNames) -> bool {
    let mut h = one(name);
    strip_spoofable(&mut h, names);
    h.is_empty()
}

fn claims(name: &HeaderName, names: &HeaderNames) -> bool {
    claimed_identity(&one(name), names).is_some()
}

/// `name` with `_` and `-` swapped and ASCII letters re-cased where `mask`
/// has a bit set (bit `i % 64` for character `i`).
fn variant(name: &str, mask: u64) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| match c {
            _ if (mask >> (i % 64)) & 1 == 0 => c,
            '_' => '-',
            '-' => '_',
            c if c.is_ascii_lowercase() => c.to_ascii_uppercase(),
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

fn custom() -> HeaderNames {
    HeaderNames {
        user: HeaderName::from_static("x-auth-user"),
        group: HeaderName::from_static("x-auth-groups"),
        uid: HeaderName::from_static("x-auth-uid"),
        extra_prefix: "x-auth-extra-".to_owned(),
        ..HeaderNames::default()
    }
}

fn check(name: &str, header: &HeaderName, v: Option<&HeaderName>, names: &HeaderNames) {
    let n = normalized(header.as_str());
    let configured = [&names.user, &names.group, &names.uid]
        .iter()
        .any(|h| n == h.as_str());
    let s = stripped(header, names);
    if FAMILIES.iter().any(|f| n.starts_with(f))
        || EXACT.contains(&n.as_ref())
        || n.starts_with(names.extra_prefix.as_str())
        || configured
    {
        assert!(s, "{name:?} ({n}) reaches the upstream");
    }
    let c = claims(header, names);
    assert!(!c || s, "{name:?} claims an identity but is forwarded");
    if let Some(v) = v {
        assert_eq!(stripped(v, names), s, "{name:?} vs {v}: stripped");
        assert_eq!(claims(v, names), c, "{name:?} vs {v}: claimed");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((mask, name)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Ok(name) = std::str::from_utf8(name) else {
        return;
    };
    let n = normalized(name);
    assert_eq!(normalized(&n), n, "not idempotent");
    assert_eq!(n.len(), name.len());
    assert!(!n.contains('_'));
    let Ok(header) = HeaderName::try_from(name) else {
        return;
    };
    let v = variant(name, u64::from_le_bytes(*mask));
    let v = HeaderName::try_from(v.as_str()).ok();
    check(name, &header, v.as_ref(), &HeaderNames::default());
    check(name, &header, v.as_ref(), &custom());
});
