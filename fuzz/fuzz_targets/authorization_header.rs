//! `Authorization` header(s) -> bearer token.
//!
//! Input: the header value bytes; a `\n` splits them into two values (the
//! repeated-header case). Values `http` refuses are skipped, as hyper would
//! refuse them before authgate sees the request.
#![no_main]

use authgate::authn::bearer::{MAX_TOKEN_LEN, Malformed, extract};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fn is_token68(t: &[u8]) -> bool {
    let body = t
        .iter()
        .rposition(|&b| b != b'=')
        .map_or(&t[..0], |i| &t[..=i]);
    !body.is_empty()
        && body
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for part in data.splitn(2, |&b| b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(part) {
            headers.append(AUTHORIZATION, v);
        }
    }
    let count = headers.get_all(AUTHORIZATION).iter().count();

    match extract(&headers) {
        Ok(None) => assert_eq!(count, 0, "a present header never means anonymous"),
        Ok(Some(token)) => {
            assert_eq!(count, 1);
            let t = token.expose();
            assert!(!t.is_empty(), "empty token accepted");
            assert!(
                t.len() <= MAX_TOKEN_LEN,
                "token of {} bytes accepted",
                t.len()
            );
            assert!(
                is_token68(t.as_bytes()),
                "non-token68 token accepted: {t:?}"
            );
            // The token is the tail of the one header value, after "Bearer ".
            let value = headers.get(AUTHORIZATION).map(HeaderValue::as_bytes);
            let value = value.unwrap_or_default();
            assert!(value.ends_with(t.as_bytes()));
            assert!(value[..6].eq_ignore_ascii_case(b"bearer"));
            // Debug never shows the secret (whatever the token is).
            assert_eq!(format!("{token:?}"), "BearerToken([REDACTED])");
        }
        Err(Malformed::Repeated) => assert_eq!(count, 2),
        Err(_) => assert_eq!(count, 1),
    }
});
