//! Request method + path -> normalised path -> authorization attributes.
//!
//! Input: `METHOD PATH` (split at the first space; no space means an empty
//! method, which falls back to GET). Authorization and forwarding both use
//! the normalised path, so it must be canonical: rooted, no empty or dot
//! segments, and a fixed point of normalisation.
#![no_main]

use authgate::authz::attributes::{Target, for_request, verb};
use authgate::routes::normalize_path;
use http::Method;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (method, path) = match data.iter().position(|&b| b == b' ') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let Ok(normalized) = normalize_path(path) else {
        return;
    };

    assert!(normalized.starts_with('/'), "{path:?} -> {normalized:?}");
    assert!(!normalized.contains("//"), "{path:?} -> {normalized:?}");
    for seg in normalized.split('/') {
        assert!(
            seg != "." && seg != "..",
            "dot segment left: {path:?} -> {normalized:?}"
        );
    }
    assert!(
        !normalized
            .bytes()
            .any(|b| b.is_ascii_control() || b == b'\\'),
        "{path:?} -> {normalized:?}"
    );
    let again = normalize_path(&normalized);
    assert_eq!(
        again.as_deref(),
        Ok(normalized.as_str()),
        "normalisation is not idempotent: {path:?} -> {normalized:?} -> {again:?}"
    );

    let method = if method.is_empty() {
        Method::GET
    } else {
        match Method::from_bytes(method) {
            Ok(m) => m,
            Err(_) => return,
        }
    };
    let attrs = for_request(None, &method, &normalized);
    assert_eq!(attrs.verb, verb(&method));
    assert!(!attrs.verb.is_empty());
    assert_eq!(
        attrs.target,
        Target::NonResource {
            path: normalized.clone()
        }
    );
});
