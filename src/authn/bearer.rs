//! The `Authorization: Bearer` header (pure).

use std::fmt;

use http::HeaderMap;
use http::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};

/// Tokens longer than this are refused without asking any backend.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// A bearer token. Its `Debug` never shows the secret; the only way to read
/// it is [`BearerToken::expose`].
#[derive(Clone)]
pub struct BearerToken(SecretString);

impl BearerToken {
    /// Wraps a token that passed [`extract`]'s checks.
    fn new(token: &str) -> Self {
        Self(SecretString::from(token))
    }

    /// The raw token, for hashing and for sending to a token backend only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([REDACTED])")
    }
}

#[cfg(test)]
impl From<&str> for BearerToken {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

/// Why an `Authorization` header was refused before any backend saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// More than one `Authorization` header.
    #[error("more than one Authorization header")]
    Repeated,
    /// A scheme other than `Bearer` (e.g. `Basic`).
    #[error("the Authorization scheme is not Bearer")]
    NotBearer,
    /// `Bearer` with nothing after it.
    #[error("the bearer token is empty")]
    Empty,
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("the bearer token is longer than 16 KiB")]
    TooLong,
    /// Characters outside the token68 alphabet (JWTs and Kubernetes tokens fit it).
    #[error("the bearer token has characters outside the token68 alphabet")]
    BadCharacters,
}

/// Reads the bearer token from `headers`.
///
/// No header is `Ok(None)`; a header that cannot carry a usable token is an
/// error, so a client never silently falls back to anonymous.
pub fn extract(headers: &HeaderMap) -> Result<Option<BearerToken>, Malformed> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Malformed::Repeated);
    }
    let raw = value.as_bytes();
    let (scheme, rest) = match raw.iter().position(|&b| b == b' ') {
        Some(i) => (&raw[..i], &raw[i + 1..]),
        None => (raw, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(Malformed::NotBearer);
    }
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let token = &rest[start..];
    if token.is_empty() {
        return Err(Malformed::Empty);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(Malformed::TooLong);
    }
    if !is_token68(token) {
        return Err(Malformed::BadCharacters);
    }
    // token68 is ASCII, so this cannot fail.
    let token = std::str::from_utf8(token).map_err(|_| Malformed::BadCharacters)?;
    Ok(Some(BearerToken::new(token)))
}

/// RFC 7235 token68: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(t: &[u8]) -> bool {
    let body_end = t.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    body_end > 0 && t[..body_end].iter().all(|&b| TOKEN68[usize::from(b)])
}

/// The token68 body characters, one lookup per byte (tokens are ~1 KB JWTs
/// checked on every request).
static TOKEN68: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn authorization_headers_parse_or_are_refused() {
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        type Case<'a> = (&'a [&'a [u8]], Result<Option<&'a str>, Malformed>);
        let cases: &[Case<'_>] = &[
            (&[], Ok(None)),
            (&[b"Bearer abc"], Ok(Some("abc"))),
            (&[b"bearer abc"], Ok(Some("abc"))),
            (&[b"BEARER   abc"], Ok(Some("abc"))),
            (&[b"Bearer eyJ.eyJ.sig-_"], Ok(Some("eyJ.eyJ.sig-_"))),
            (&[b"Bearer abc=="], Ok(Some("abc=="))),
            (&[b"Bearer ="], Err(Malformed::BadCharacters)),
            (&[b"Bearer a=b"], Err(Malformed::BadCharacters)),
            (&[b"Bearer"], Err(Malformed::Empty)),
            (&[b"Bearer "], Err(Malformed::Empty)),
            (&[b"Basic dXNlcjpwYXNz"], Err(Malformed::NotBearer)),
            (&[b"Bearerabc"], Err(Malformed::NotBearer)),
            (&[b"Bearer a b"], Err(Malformed::BadCharacters)),
            (&[b"Bearer a\tb"], Err(Malformed::BadCharacters)),
            (&[b"Bearer t\xc3\xa9"], Err(Malformed::BadCharacters)),
            (&[b"Bearer a", b"Bearer b"], Err(Malformed::Repeated)),
            (&[long.as_bytes()], Err(Malformed::TooLong)),
        ];
        for (values, want) in cases {
            let got = extract(&headers(values));
            let got = got.as_ref().map(|t| t.as_ref().map(BearerToken::expose));
            assert_eq!(got, want.as_ref().map(|t| t.as_deref()), "{values:?}");
        }
    }

    #[test]
    fn debug_output_hides_the_token() {
        let t = BearerToken::from("s3cr3t");
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }
}
