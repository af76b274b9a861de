//! `mode: auth`: what a front proxy's check request says about the original
//! request. Pure parsing; the gate decides.
//!
//! nginx `auth_request` sends the original method and URI in
//! `X-Original-Method` / `X-Original-URI` and the client certificate,
//! URL-escaped PEM (`$ssl_client_escaped_cert`), in a header of our choosing.
//! Envoy's HTTP `ext_authz` sends the original method, the original path
//! below its `path_prefix`, and the certificate in `X-Forwarded-Client-Cert`
//! (`Cert="<URL-escaped PEM>"`). Which header carries the certificate is
//! configured (`auth.cert_header`); no other is read.
//!
//! The original request is named once: nginx's `X-Original-*` headers are
//! believed only from `auth.trusted_proxies` and only on a check of the
//! endpoint itself; Envoy's path below the endpoint never takes them.
//! XFCC is parsed strictly per Envoy's grammar ([`parse_xfcc`]), because
//! Envoy writes the client's URI and DNS SANs into it unquoted.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, Method, Request, Uri};
use percent_encoding::percent_decode;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

use crate::config::AuthEndpoint;
use crate::routes::normalize_path;

/// nginx: the original method.
pub const ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
/// nginx: the original request URI.
pub const ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
/// Envoy: the forwarded client certificate details.
pub const XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// The request being checked.
#[derive(Debug, PartialEq, Eq)]
pub struct Original {
    /// Its method.
    pub method: Method,
    /// Its normalised path.
    pub path: String,
}

/// Why a check request cannot be answered.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Not the check endpoint.
    #[error("{0:?} is not the auth endpoint")]
    NotEndpoint(String),
    /// Bad `X-Original-Method`.
    #[error("X-Original-Method is not a method")]
    Method,
    /// Bad `X-Original-URI` or path.
    #[error("the original URI is not usable: {0}")]
    Uri(String),
    /// A header that must appear once appears more often.
    #[error("{0} appears more than once")]
    Duplicated(&'static str),
    /// A certificate header that holds no certificate.
    #[error("the forwarded client certificate is malformed")]
    Cert,
    /// `X-Original-*` on a check below the endpoint, whose path already
    /// names the original request (Envoy never sends them).
    #[error("X-Original-Method/X-Original-URI on a check below the auth endpoint")]
    OriginalBelowEndpoint,
    /// A check of the endpoint itself that does not name its request.
    #[error("a check of the auth endpoint itself needs X-Original-URI")]
    OriginalUriMissing,
    /// `X-Original-*` from a peer that is not a trusted proxy.
    #[error("X-Original-Method/X-Original-URI from a peer not in auth.trusted_proxies")]
    OriginalUntrusted,
    /// An `X-Forwarded-Client-Cert` that does not follow Envoy's grammar.
    #[error("X-Forwarded-Client-Cert: {0}")]
    Xfcc(XfccSyntax),
    /// An `X-Forwarded-Client-Cert` of other than one element.
    #[error("X-Forwarded-Client-Cert has {0} elements; only one is accepted")]
    XfccElements(usize),
    /// A `Cert` without the `Hash` Envoy always writes beside it.
    #[error("X-Forwarded-Client-Cert has a Cert but no Hash")]
    XfccNoHash,
    /// A `Hash` that is not the SHA-256 of the `Cert` leaf.
    #[error("the X-Forwarded-Client-Cert Hash is not the SHA-256 of its Cert")]
    XfccHashMismatch,
}

/// The original method and path of a check request to `endpoint`, from a
/// peer that is (`trusted_peer`) or is not a trusted proxy.
///
/// nginx checks the endpoint itself and names the original request in
/// `X-Original-Method` / `X-Original-URI`; those are read only from a
/// trusted proxy, and refused from anyone else rather than ignored (a check
/// that names one request must not be answered for another). A check of the
/// endpoint itself without `X-Original-URI` names none, and is refused. Envoy checks
/// the original path below the endpoint and never sends them, so there they
/// are refused from everyone: they could only come from the client.
pub fn original<B>(
    req: &Request<B>,
    endpoint: &str,
    trusted_peer: bool,
) -> Result<Original, Malformed> {
    // The endpoint prefix is stripped before the rest is normalised, so a
    // `..` in the original path cannot climb into (or out of) the endpoint.
    let uri_err = |e: crate::routes::BadPath| Malformed::Uri(e.to_string());
    let raw = req.uri().path();
    let below = match raw.strip_prefix(endpoint) {
        Some("") => None,
        Some(rest) if rest.starts_with('/') => Some(normalize_path(rest).map_err(uri_err)?),
        _ => {
            let own = normalize_path(raw).map_err(uri_err)?;
            if own != endpoint {
                return Err(Malformed::NotEndpoint(own));
            }
            None
        }
    };
    let h = req.headers();
    // One value each: two would leave the decision to whichever is read.
    for name in ["x-original-method", "x-original-uri"] {
        if h.get_all(name).iter().nth(1).is_some() {
            return Err(Malformed::Duplicated(name));
        }
    }
    let (x_method, x_uri) = (h.get(ORIGINAL_METHOD), h.get(ORIGINAL_URI));
    if x_method.is_some() || x_uri.is_some() {
        if below.is_some() {
            return Err(Malformed::OriginalBelowEndpoint);
        }
        if !trusted_peer {
            return Err(Malformed::OriginalUntrusted);
        }
    }
    let method = match x_method {
        Some(m) => Method::from_bytes(m.as_bytes()).map_err(|_| Malformed::Method)?,
        None => req.method().clone(),
    };
    let path = match (x_uri, below) {
        // nginx: `$request_uri`, origin-form with its query.
        (Some(uri), _) => {
            let uri: Uri = uri
                .to_str()
                .ok()
                .and_then(|u| u.parse().ok())
                .ok_or_else(|| Malformed::Uri("X-Original-URI is not a URI".into()))?;
            normalize_path(uri.path()).map_err(|e| Malformed::Uri(e.to_string()))?
        }
        // Envoy: the original path below the endpoint (normalised above).
        (None, Some(rest)) => rest,
        // A check of the endpoint itself that names no request: not a
        // check of `/` (nginx as shipped always sends X-Original-URI).
        (None, None) => return Err(Malformed::OriginalUriMissing),
    };
    Ok(Original { method, path })
}

/// Method-override and URL-rewrite headers, which no front proxy adds (it
/// names the checked request in `X-Original-*` or the path below the
/// endpoint): a client's. Proxy mode strips them; the front proxy passes
/// them to the upstream, which may act on them instead of the request that
/// was checked. `X-Original-URI`/`-Method` (nginx's own), `X-Forwarded-*`
/// and `Forwarded` (which proxies set) are not among them.
const STEERING: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

/// The first method-override or URL-rewrite header of a check, in any
/// spelling an upstream folds to one (`_` read as `-`), if any: the gate
/// refuses such a check, as it refuses claimed identity headers.
pub fn steering(headers: &HeaderMap) -> Option<&HeaderName> {
    headers
        .keys()
        .find(|k| STEERING.contains(&&*crate::proxy::headers::normalized(k.as_str())))
}

/// Whether `peer` is a trusted front proxy.
pub fn trusted(ep: &AuthEndpoint, peer: IpAddr) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        v4 => v4,
    };
    ep.trusted_proxies.iter().any(|net| net.contains(&peer))
}

/// The client certificate chain (leaf first) a trusted proxy forwarded in
/// `cert_header`: URL-escaped PEM (nginx `$ssl_client_escaped_cert`), or,
/// when `cert_header` is `X-Forwarded-Client-Cert`, the `Cert` of its one
/// element, whose `Hash` must be the SHA-256 of the leaf ([`xfcc_cert`]).
/// Only that one header is read: a proxy that sets one header passes the
/// others through from the client. `Ok(None)`: no certificate.
pub fn forwarded_chain(
    headers: &HeaderMap,
    cert_header: &HeaderName,
) -> Result<Option<Vec<CertificateDer<'static>>>, Malformed> {
    if headers.get_all(cert_header).iter().nth(1).is_some() {
        return Err(Malformed::Duplicated("the client certificate header"));
    }
    let Some(value) = headers.get(cert_header).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let (escaped, hash) = if cert_header == XFCC {
        let xfcc = value.to_str().map_err(|_| Malformed::Cert)?;
        match xfcc_cert(xfcc)? {
            Some(XfccCert { cert, hash }) => (cert.into_bytes(), Some(hash)),
            None => return Ok(None),
        }
    } else {
        (value.as_bytes().to_vec(), None)
    };
    let pem: Vec<u8> = percent_decode(&escaped).collect();
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Malformed::Cert)?;
    let Some(leaf) = chain.first() else {
        return Err(Malformed::Cert);
    };
    if let Some(hash) = hash
        && !hash.eq_ignore_ascii_case(&hex::encode(Sha256::digest(leaf)))
    {
        return Err(Malformed::XfccHashMismatch);
    }
    Ok(Some(chain))
}

// === XFCC ===

/// One element of an `X-Forwarded-Client-Cert` value: its `key=value`
/// pairs in order, keys as written (Envoy's keys are case-insensitive),
/// values unquoted and unescaped.
pub type XfccElement = Vec<(String, String)>;

/// How an `X-Forwarded-Client-Cert` value breaks Envoy's grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XfccSyntax {
    /// Nothing, a `,` at either end, or `,,`.
    #[error("an empty element")]
    EmptyElement,
    /// A `;` at either end of an element, or `;;`.
    #[error("an empty key=value pair")]
    EmptyPair,
    /// A key that is not ASCII letters and digits (whitespace included).
    #[error("a key that is not letters and digits")]
    BadKey,
    /// A key without `=`.
    #[error("a key without a value")]
    NoValue,
    /// A `"` or `\` in a value that is not quoted.
    #[error("a quote or backslash in an unquoted value")]
    StrayQuote,
    /// A quoted value without its closing quote.
    #[error("an unterminated quoted value")]
    Unterminated,
    /// Something other than `;`, `,` or the end right after a quoted value.
    #[error("text after a quoted value")]
    AfterQuote,
}

/// Parses an `X-Forwarded-Client-Cert` value per Envoy's grammar: elements
/// separated by `,`, `key=value` pairs by `;`. A value is quoted (`"..."`,
/// where `\` escapes the next character, so it may hold `,` `;` `=` `"`)
/// or unquoted (it may hold `=`, but no `"` or `\`). Keys are ASCII letters
/// and digits. Anything else is refused, never guessed at: Envoy writes the
/// client's URI and DNS SANs unquoted, so a lenient reading is how a SAN
/// becomes structure.
pub fn parse_xfcc(value: &str) -> Result<Vec<XfccElement>, XfccSyntax> {
    let mut elements = Vec::new();
    let mut element = XfccElement::new();
    let mut rest = value;
    loop {
        let (key, tail) = rest.split_at(rest.find(['=', ';', ',']).unwrap_or(rest.len()));
        if key.is_empty() && !tail.starts_with('=') {
            return Err(if element.is_empty() {
                XfccSyntax::EmptyElement
            } else {
                XfccSyntax::EmptyPair
            });
        }
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(XfccSyntax::BadKey);
        }
        let tail = tail.strip_prefix('=').ok_or(XfccSyntax::NoValue)?;
        let (value, tail) = match tail.strip_prefix('"') {
            Some(quoted) => {
                let (value, after) = unquote(quoted)?;
                if !(after.is_empty() || after.starts_with([';', ','])) {
                    return Err(XfccSyntax::AfterQuote);
                }
                (value, after)
            }
            None => {
                let (value, after) = tail.split_at(tail.find([';', ',']).unwrap_or(tail.len()));
                if value.contains(['"', '\\']) {
                    return Err(XfccSyntax::StrayQuote);
                }
                (value.to_owned(), after)
            }
        };
        element.push((key.to_owned(), value));
        match tail.as_bytes().first() {
            None => {
                elements.push(element);
                return Ok(elements);
            }
            Some(b';') => {}
            Some(_) => elements.push(std::mem::take(&mut element)),
        }
        rest = &tail[1..];
    }
}

/// A quoted value after its opening quote: the unescaped value, and the rest
/// after the closing quote.
fn unquote(s: &str) -> Result<(String, &str), XfccSyntax> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => out.push(chars.next().ok_or(XfccSyntax::Unterminated)?.1),
            c => out.push(c),
        }
    }
    Err(XfccSyntax::Unterminated)
}

/// The certificate of an Envoy XFCC element.
struct XfccCert {
    /// `Cert`: the URL-escaped PEM.
    cert: String,
    /// `Hash`: the hex SHA-256 of the leaf DER.
    hash: String,
}

/// The `Cert` and `Hash` of the one element of an XFCC value, `None` when
/// it has no `Cert`.
///
/// One element: `SANITIZE_SET` writes exactly the client's, so a second one
/// is either an appending proxy authgate cannot tell from the client, or the
/// client's SAN text. One `Cert` and one `Hash`: a second is a SAN's text.
/// `Hash` is required beside `Cert` because Envoy always writes it: it binds
/// the element to the certificate Envoy's TLS stack verified, so a `Cert`
/// smuggled in a SAN when Envoy writes none (`cert: false`) cannot match it.
fn xfcc_cert(value: &str) -> Result<Option<XfccCert>, Malformed> {
    let elements = parse_xfcc(value).map_err(Malformed::Xfcc)?;
    let [element] = elements.as_slice() else {
        return Err(Malformed::XfccElements(elements.len()));
    };
    let one = |key: &str, what: &'static str| {
        let mut values = element.iter().filter(|(k, _)| k.eq_ignore_ascii_case(key));
        match (values.next(), values.next()) {
            (_, Some(_)) => Err(Malformed::Duplicated(what)),
            (v, None) => Ok(v.map(|(_, v)| v.clone())),
        }
    };
    let cert = one("cert", "the X-Forwarded-Client-Cert Cert")?;
    let hash = one("hash", "the X-Forwarded-Client-Cert Hash")?;
    match (cert, hash) {
        (None, _) => Ok(None),
        (Some(_), None) => Err(Malformed::XfccNoHash),
        (Some(cert), Some(hash)) => Ok(Some(XfccCert { cert, hash })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn orig(method: &str, path: &str) -> Result<Original, Malformed> {
        Ok(Original {
            method: Method::from_bytes(method.as_bytes()).unwrap(),
            path: path.into(),
        })
    }

    #[test]
    fn nginx_headers_then_envoy_path_prefix() {
        let nginx = [
            ("x-original-method", "DELETE"),
            ("x-original-uri", "/api/%2e%2e/v1/pods?watch=1"),
        ];
        assert_eq!(
            original(&req("/auth", &nginx), "/auth", true),
            orig("DELETE", "/v1/pods")
        );
        assert_eq!(
            original(&req("/auth/api/v1", &[]), "/auth", true),
            orig("GET", "/api/v1")
        );
        // Envoy's check of `/`: the endpoint and a slash.
        assert_eq!(
            original(&req("/auth/", &[]), "/auth", true),
            orig("GET", "/")
        );
        // `..` may not climb out of the original path into the endpoint.
        assert!(matches!(
            original(&req("/auth/../auth/secret", &[]), "/auth", true),
            Err(Malformed::Uri(_))
        ));
        assert_eq!(
            original(&req("/auth/api/./v1//pods", &[]), "/auth", true),
            orig("GET", "/api/v1/pods")
        );
        assert_eq!(
            original(&req("/authz", &[]), "/auth", true),
            Err(Malformed::NotEndpoint("/authz".into()))
        );
        assert_eq!(
            original(
                &req("/auth", &[("x-original-method", "GE T")]),
                "/auth",
                true
            ),
            Err(Malformed::Method)
        );
        assert!(matches!(
            original(
                &req("/auth", &[("x-original-uri", "no-slash")]),
                "/auth",
                true
            ),
            Err(Malformed::Uri(_))
        ));
    }

    #[test]
    fn trusted_proxies_by_cidr_including_v4_mapped() {
        let ep = AuthEndpoint {
            path: "/auth".into(),
            trusted_proxies: vec![
                "127.0.0.1/32".parse().unwrap(),
                "10.1.0.0/16".parse().unwrap(),
            ],
            cert_header: HeaderName::from_static("x-client-cert"),
        };
        assert!(trusted(&ep, "127.0.0.1".parse().unwrap()));
        assert!(trusted(&ep, "::ffff:10.1.2.3".parse().unwrap()));
        assert!(!trusted(&ep, "10.2.0.1".parse().unwrap()));
        assert!(!trusted(&ep, "::1".parse().unwrap()));
    }

    #[test]
    fn original_headers_only_from_a_trusted_proxy_and_never_below_the_endpoint() {
        let nginx = [("x-original-uri", "/api/x")];
        assert_eq!(
            original(&req("/auth", &nginx), "/auth", true),
            orig("GET", "/api/x")
        );
        for headers in [&nginx, &[("x-original-method", "DELETE")]] {
            assert_eq!(
                original(&req("/auth", headers), "/auth", false),
                Err(Malformed::OriginalUntrusted)
            );
        }
        for trusted in [true, false] {
            assert_eq!(
                original(&req("/auth/admin", &nginx), "/auth", trusted),
                Err(Malformed::OriginalBelowEndpoint)
            );
            assert_eq!(
                original(&req("/auth/admin", &[]), "/auth", trusted),
                orig("GET", "/admin")
            );
        }
    }

    /// A check of the endpoint itself names its request in X-Original-URI
    /// (nginx always sends it); without it, it names none, and is not read
    /// as a check of `/`.
    #[test]
    fn a_check_of_the_endpoint_itself_without_x_original_uri_is_refused() {
        for trusted in [true, false] {
            for path in ["/auth", "//auth"] {
                assert_eq!(
                    original(&req(path, &[]), "/auth", trusted),
                    Err(Malformed::OriginalUriMissing),
                    "{path}, trusted: {trusted}"
                );
            }
        }
        assert_eq!(
            original(
                &req("/auth", &[("x-original-method", "GET")]),
                "/auth",
                true
            ),
            Err(Malformed::OriginalUriMissing)
        );
        // With it, the method defaults to the check's own.
        assert_eq!(
            original(&req("/auth", &[("x-original-uri", "/")]), "/auth", true),
            orig("GET", "/")
        );
    }

    #[test]
    fn steering_names_method_overrides_and_rewritten_urls_in_any_spelling() {
        let one = |name: &str| {
            let mut h = HeaderMap::new();
            h.insert(HeaderName::try_from(name).unwrap(), "x".parse().unwrap());
            h
        };
        for name in [
            "X-HTTP-Method-Override",
            "x-http-method",
            "X-Method-Override",
            "X-Original-URL",
            "x-rewrite-url",
            "x_http_method_override",
            "X_HTTP_Method",
            "x-method_override",
            "X_Original_URL",
            "x_rewrite_url",
        ] {
            let h = one(name);
            assert_eq!(
                steering(&h).map(HeaderName::as_str),
                Some(name.to_ascii_lowercase().as_str()),
                "{name}"
            );
        }
        // What nginx and Envoy set themselves, and other proxies' headers.
        for name in [
            "x-original-uri",
            "x-original-method",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x_forwarded_for",
            "forwarded",
            "x-real-ip",
            "x-client-cert",
            "x-forwarded-client-cert",
            "authorization",
            "x-http-method-overrides",
            "x-original-urls",
        ] {
            assert_eq!(steering(&one(name)), None, "{name}");
        }
        let mut h = one("x-forwarded-host");
        h.insert("x-rewrite-url", "/admin".parse().unwrap());
        assert_eq!(steering(&h).map(HeaderName::as_str), Some("x-rewrite-url"));
    }

    fn elements(els: &[&[(&str, &str)]]) -> Result<Vec<XfccElement>, XfccSyntax> {
        Ok(els
            .iter()
            .map(|e| e.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect())
            .collect())
    }

    #[test]
    fn parse_xfcc_follows_envoys_grammar_and_refuses_the_rest() {
        use XfccSyntax::*;
        let envoy = r#"By=spiffe://gw;Hash=ab12;Cert="-----BEGIN%20CERT";Subject="CN=a,O=b";URI=spiffe://td/ns/n/sa/s;DNS=a.example"#;
        let cases = [
            // What Envoy writes (SANITIZE_SET, every detail).
            (
                envoy,
                elements(&[&[
                    ("By", "spiffe://gw"),
                    ("Hash", "ab12"),
                    ("Cert", "-----BEGIN%20CERT"),
                    ("Subject", "CN=a,O=b"),
                    ("URI", "spiffe://td/ns/n/sa/s"),
                    ("DNS", "a.example"),
                ]]),
            ),
            ("Hash=ab;URI=", elements(&[&[("Hash", "ab"), ("URI", "")]])),
            // Keys as written; the reader compares them ignoring case.
            (
                "hash=ab,HASH=cd",
                elements(&[&[("hash", "ab")], &[("HASH", "cd")]]),
            ),
            // Quoted values hold separators, escaped quotes and backslashes.
            (
                r#"Subject="CN=\"x,y\";O=a\\b""#,
                elements(&[&[("Subject", r#"CN="x,y";O=a\b"#)]]),
            ),
            (r#"URI="a\,b""#, elements(&[&[("URI", "a,b")]])),
            (r#"URI="""#, elements(&[&[("URI", "")]])),
            // Unquoted values may hold `=`: Envoy writes URI SANs as they are.
            (
                "URI=https://x/?a=b=c",
                elements(&[&[("URI", "https://x/?a=b=c")]]),
            ),
            // A SAN's `,` or `;` becomes structure (which the reader refuses).
            (
                "URI=urn:x,Cert=abc",
                elements(&[&[("URI", "urn:x")], &[("Cert", "abc")]]),
            ),
            (
                "URI=urn:x;Cert=abc",
                elements(&[&[("URI", "urn:x"), ("Cert", "abc")]]),
            ),
            // Empty elements and pairs.
            ("", Err(EmptyElement)),
            (",Hash=ab", Err(EmptyElement)),
            ("Hash=ab,", Err(EmptyElement)),
            ("Hash=ab,,Hash=cd", Err(EmptyElement)),
            ("Hash=ab;", Err(EmptyPair)),
            ("Hash=ab;;URI=x", Err(EmptyPair)),
            // Keys: letters and digits, nothing around them.
            ("=ab", Err(BadKey)),
            (" Hash=ab", Err(BadKey)),
            ("Hash=ab; Cert=x", Err(BadKey)),
            ("Ha\"sh=ab", Err(BadKey)),
            ("Cert-X=ab", Err(BadKey)),
            ("Hash", Err(NoValue)),
            ("Hash=ab;Cert", Err(NoValue)),
            // Quotes and backslashes only inside quoted values.
            (r#"URI=a"b"#, Err(StrayQuote)),
            (r"URI=a\b", Err(StrayQuote)),
            (r#"URI=urn:x";Cert="abc""#, Err(StrayQuote)),
            (r#"Cert="abc"#, Err(Unterminated)),
            (r#"Cert="abc\""#, Err(Unterminated)),
            (r#"Cert="abc\"#, Err(Unterminated)),
            (r#"Cert="abc"d"#, Err(AfterQuote)),
            (r#"Cert="a""b""#, Err(AfterQuote)),
        ];
        for (value, want) in cases {
            assert_eq!(parse_xfcc(value), want, "{value:?}");
        }
    }

    /// The fuzz target's properties (fuzz/fuzz_targets/xfcc_parse.rs), over
    /// every string of up to 6 characters from the grammar's alphabet.
    #[test]
    fn parse_xfcc_round_trips_through_authgates_quoting_for_every_short_string() {
        use crate::authn::x509::xfcc_value;
        let alphabet = ['a', '=', '"', '\\', ',', ';', ' '];
        let mut inputs = vec![String::new()];
        for _ in 0..6 {
            let longer: Vec<String> = inputs
                .iter()
                .filter(|s| s.len() == inputs.last().map_or(0, String::len))
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            inputs.extend(longer);
        }
        let mut parsed = 0;
        for input in &inputs {
            let Ok(elements) = parse_xfcc(input) else {
                continue;
            };
            parsed += 1;
            let written = elements
                .iter()
                .map(|e| {
                    let pairs: Vec<_> = e
                        .iter()
                        .map(|(k, v)| format!("{k}={}", xfcc_value(v)))
                        .collect();
                    pairs.join(";")
                })
                .collect::<Vec<_>>()
                .join(",");
            assert_eq!(
                parse_xfcc(&written).as_ref(),
                Ok(&elements),
                "{input:?} -> {written:?}"
            );
        }
        assert!(parsed > 100, "{parsed}");
    }

    #[test]
    fn xfcc_cert_is_the_one_elements_with_one_cert_and_its_hash() {
        let got = |v: &str| xfcc_cert(v).map(|c| c.map(|c| (c.cert, c.hash)));
        let pem = Ok(Some(("pem".to_owned(), "ab".to_owned())));
        assert_eq!(got(r#"Hash=ab;Cert="pem";URI=x"#), pem);
        assert_eq!(got(r#"hash=ab;CERT="pem""#), pem);
        assert_eq!(got("Hash=ab;URI=spiffe://x"), Ok(None));
        assert_eq!(got("URI=x"), Ok(None));
        assert_eq!(got(r#"Cert="pem""#), Err(Malformed::XfccNoHash));
        assert_eq!(
            got(r#"Hash=ab;Cert="pem",Hash=cd;Cert="other""#),
            Err(Malformed::XfccElements(2))
        );
        let two_certs = Err(Malformed::Duplicated("the X-Forwarded-Client-Cert Cert"));
        assert_eq!(got(r#"Hash=ab;Cert="pem";URI=urn:x;Cert=other"#), two_certs);
        assert_eq!(got(r#"Hash=ab;Cert="pem";cert=other"#), two_certs);
        assert_eq!(
            got("Hash=ab;URI=x;HASH=cd;Cert=x"),
            Err(Malformed::Duplicated("the X-Forwarded-Client-Cert Hash"))
        );
        assert_eq!(
            got(r#"Hash=ab;Cert="pem"#),
            Err(Malformed::Xfcc(XfccSyntax::Unterminated))
        );
    }

    #[test]
    fn forwarded_chain_decodes_escaped_pem_and_refuses_junk() {
        let ca = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        let pem = ca.cert.pem();
        let escaped: String =
            percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let name = HeaderName::from_static("x-client-cert");
        let mut h = HeaderMap::new();
        h.insert(&name, escaped.parse().unwrap());
        let chain = forwarded_chain(&h, &name).unwrap().unwrap();
        assert_eq!(chain, vec![ca.cert.der().clone()]);

        // XFCC is read only when it is the configured header.
        let hash = hex::encode(Sha256::digest(ca.cert.der()));
        let mut x = HeaderMap::new();
        x.insert(
            XFCC,
            format!("Hash={hash};Cert=\"{escaped}\"").parse().unwrap(),
        );
        assert_eq!(forwarded_chain(&x, &name), Ok(None));
        assert_eq!(forwarded_chain(&x, &XFCC).unwrap().unwrap().len(), 1);
        // A Hash that is another certificate's.
        let other = "00".repeat(32);
        x.insert(
            XFCC,
            format!("Hash={other};Cert=\"{escaped}\"").parse().unwrap(),
        );
        assert_eq!(forwarded_chain(&x, &XFCC), Err(Malformed::XfccHashMismatch));
        h.insert(XFCC, "Hash=1".parse().unwrap());
        assert_eq!(forwarded_chain(&h, &XFCC), Ok(None));

        assert_eq!(forwarded_chain(&HeaderMap::new(), &name), Ok(None));
        let mut junk = HeaderMap::new();
        junk.insert(&name, "not%20a%20cert".parse().unwrap());
        assert_eq!(forwarded_chain(&junk, &name), Err(Malformed::Cert));
    }
}
