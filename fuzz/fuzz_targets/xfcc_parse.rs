//! `X-Forwarded-Client-Cert` value -> elements (Envoy's grammar), and the
//! certificate authgate reads from it.
//!
//! Input: the header value bytes. Properties: parsing never panics; every
//! key it returns is ASCII letters and digits; what it returns, written
//! back with authgate's own quoting (`authn::x509::xfcc_value`), parses to
//! the same elements; and reading the certificate from the value (as
//! `mode: auth` behind Envoy does) never panics and never accepts a value
//! of more than one element.
#![no_main]

use authgate::authn::x509::xfcc_value;
use authgate::gate::auth_request::{XFCC, forwarded_chain, parse_xfcc};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(elements) = parse_xfcc(value) {
        assert!(!elements.is_empty());
        for element in &elements {
            assert!(!element.is_empty(), "an empty element accepted");
            for (key, _) in element {
                assert!(!key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric()));
            }
        }
        let written = elements
            .iter()
            .map(|e| {
                e.iter()
                    .map(|(k, v)| format!("{k}={}", xfcc_value(v)))
                    .collect::<Vec<_>>()
                    .join(";")
            })
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(parse_xfcc(&written).as_ref(), Ok(&elements), "{written:?}");
    }

    let Ok(header) = HeaderValue::from_str(value) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(XFCC, header);
    if let Ok(Some(chain)) = forwarded_chain(&headers, &XFCC) {
        assert!(!chain.is_empty());
        assert_eq!(parse_xfcc(value).map(|e| e.len()), Ok(1));
    }
});
