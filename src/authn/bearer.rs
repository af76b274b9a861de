//! The `Authorization: Bearer` header (pure).

use std::fmt;

use std::sync::OnceLock;

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::cache::{Key, KeyHasher};

/// Tokens longer than this are refused without asking any backend.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// A bearer token, borrowed from the request's header: never copied,
/// except into the one review that needs it. Its `Debug` never shows the
/// secret; the only way to read it is [`BearerToken::expose`].
pub struct BearerToken<'a> {
    /// token68, so ASCII (checked by [`extract`]); turned into `&str` only
    /// where a backend reads it, so a cache hit never scans it twice.
    token: &'a [u8],
    /// Its keyed digest, computed once per request whatever backends ask.
    digest: OnceLock<(u64, Key)>,
}

impl<'a> BearerToken<'a> {
    /// Wraps a token that passed [`extract`]'s checks.
    fn new(token: &'a [u8]) -> Self {
        Self {
            token,
            digest: OnceLock::new(),
        }
    }

    /// The raw token, for sending to a token backend only.
    pub fn expose(&self) -> &'a str {
        // Cannot fail: `extract` admits token68 only, which is ASCII. Were
        // it to, the empty token it gives is refused by every backend
        // (TokenReview and JWT parsing reject it; no static token is empty).
        std::str::from_utf8(self.token).unwrap_or_default()
    }

    /// HMAC of the token under `keys` (hashed once per request and hasher):
    /// the cache key every token cache derives its own from.
    pub fn digest(&self, keys: &KeyHasher) -> Key {
        let compute = || keys.key(&[b"bearer", self.token]);
        match self.digest.get_or_init(|| (keys.id(), compute())) {
            (id, key) if *id == keys.id() => *key,
            _ => compute(),
        }
    }
}

impl fmt::Debug for BearerToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([REDACTED])")
    }
}

#[cfg(test)]
impl<'a> From<&'a str> for BearerToken<'a> {
    fn from(s: &'a str) -> Self {
        Self::new(s.as_bytes())
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
pub fn extract(headers: &HeaderMap) -> Result<Option<BearerToken<'_>>, Malformed> {
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
    Ok(Some(BearerToken::new(token)))
}

/// RFC 7235 token68: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(t: &[u8]) -> bool {
    let body_end = t.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    body_end > 0 && all_token68(&t[..body_end])
}

/// Whether every byte is a token68 body character. Branch-free over the
/// whole slice, so the compiler checks 16 bytes at a time (tokens are ~1 KB
/// JWTs checked on every request): `+` to `9` is one range (`+ , - . /`
/// and the digits) less the comma, which is a quarter fewer operations a
/// byte than testing the digits and four of the symbols apart.
fn all_token68(t: &[u8]) -> bool {
    t.iter().fold(true, |ok, &b| {
        let alpha = (b | 0x20).wrapping_sub(b'a') < 26;
        let plus_to_nine = (b.wrapping_sub(b'+') < 15) & (b != b',');
        ok & (alpha | plus_to_nine | (b == b'_') | (b == b'~'))
    })
}

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
            let h = headers(values);
            let got = extract(&h);
            if let Ok(Some(t)) = &got {
                // What a backend reads is what was hashed.
                assert_eq!(t.expose().as_bytes(), t.token, "{values:?}");
            }
            let got = got.as_ref().map(|t| t.as_ref().map(BearerToken::expose));
            assert_eq!(got, want.as_ref().map(|t| t.as_deref()), "{values:?}");
        }
    }

    #[test]
    fn the_digest_is_keyed_and_computed_once_per_hasher() {
        let (a, b) = (KeyHasher::random(), KeyHasher::random());
        let t = BearerToken::from("s3cr3t");
        let first = t.digest(&a);
        assert_eq!(first, t.digest(&a));
        assert_eq!(first, BearerToken::from("s3cr3t").digest(&a));
        assert_ne!(first, t.digest(&b), "another hasher never reads the memo");
        assert_eq!(t.digest(&b), BearerToken::from("s3cr3t").digest(&b));
        assert_ne!(first, BearerToken::from("s3cr3u").digest(&a));
    }

    #[test]
    fn the_token68_check_admits_exactly_its_alphabet() {
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(all_token68(&[b]), want, "{b:#04x}");
            assert_eq!(
                all_token68(&[b'a'; 40].iter().copied().chain([b]).collect::<Vec<_>>()),
                want
            );
        }
    }

    #[test]
    fn debug_output_hides_the_token() {
        let t = BearerToken::from("s3cr3t");
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }
}
