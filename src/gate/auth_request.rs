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

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, Method, Request, Uri};
use percent_encoding::percent_decode;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

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
}

/// The original method and path of a check request to `endpoint`.
pub fn original<B>(req: &Request<B>, endpoint: &str) -> Result<Original, Malformed> {
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
    let method = match h.get(ORIGINAL_METHOD) {
        Some(m) => Method::from_bytes(m.as_bytes()).map_err(|_| Malformed::Method)?,
        None => req.method().clone(),
    };
    let path = match (h.get(ORIGINAL_URI), below) {
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
        (None, None) => "/".to_owned(),
    };
    Ok(Original { method, path })
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
/// when `cert_header` is `X-Forwarded-Client-Cert`, the `Cert` of its last
/// element. Only that one header is read: a proxy that sets one header
/// passes the others through from the client. `Ok(None)`: no certificate.
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
    let escaped = if cert_header == XFCC {
        let xfcc = value.to_str().map_err(|_| Malformed::Cert)?;
        match xfcc_cert(xfcc) {
            Some(c) => c.into_bytes(),
            None => return Ok(None),
        }
    } else {
        value.as_bytes().to_vec()
    };
    let pem: Vec<u8> = percent_decode(&escaped).collect();
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Malformed::Cert)?;
    if chain.is_empty() {
        return Err(Malformed::Cert);
    }
    Ok(Some(chain))
}

/// The unquoted `Cert` value of the last element of an XFCC header.
fn xfcc_cert(xfcc: &str) -> Option<String> {
    let last = split_unquoted(xfcc, ',').pop()?;
    split_unquoted(&last, ';').into_iter().find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("cert")
            .then(|| unquote(v.trim()))
    })
}

/// Splits on `sep` outside double quotes (a backslash escapes a quote).
fn split_unquoted(s: &str, sep: char) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut escaped) = (Vec::new(), String::new(), false, false);
    for c in s.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => v.to_owned(),
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
            original(&req("/auth", &nginx), "/auth"),
            orig("DELETE", "/v1/pods")
        );
        assert_eq!(
            original(&req("/auth/api/v1", &[]), "/auth"),
            orig("GET", "/api/v1")
        );
        assert_eq!(original(&req("/auth", &[]), "/auth"), orig("GET", "/"));
        assert_eq!(original(&req("//auth", &[]), "/auth"), orig("GET", "/"));
        // `..` may not climb out of the original path into the endpoint.
        assert!(matches!(
            original(&req("/auth/../auth/secret", &[]), "/auth"),
            Err(Malformed::Uri(_))
        ));
        assert_eq!(
            original(&req("/auth/api/./v1//pods", &[]), "/auth"),
            orig("GET", "/api/v1/pods")
        );
        assert_eq!(
            original(&req("/authz", &[]), "/auth"),
            Err(Malformed::NotEndpoint("/authz".into()))
        );
        assert_eq!(
            original(&req("/auth", &[("x-original-method", "GE T")]), "/auth"),
            Err(Malformed::Method)
        );
        assert!(matches!(
            original(&req("/auth", &[("x-original-uri", "no-slash")]), "/auth"),
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
    fn xfcc_cert_is_the_last_elements_and_respects_quotes() {
        let xfcc = r#"By=spiffe://a;Cert="first",Hash=ab;Subject="CN=x,O=\"y;z\"";Cert="-----BEGIN%20CERT""#;
        assert_eq!(xfcc_cert(xfcc).as_deref(), Some("-----BEGIN%20CERT"));
        assert_eq!(xfcc_cert("Hash=ab;URI=spiffe://x"), None);
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
        let mut x = HeaderMap::new();
        x.insert(XFCC, format!("Hash=1;Cert=\"{escaped}\"").parse().unwrap());
        assert_eq!(forwarded_chain(&x, &name), Ok(None));
        assert_eq!(forwarded_chain(&x, &XFCC).unwrap().unwrap().len(), 1);
        h.insert(XFCC, "Hash=1".parse().unwrap());
        assert_eq!(forwarded_chain(&h, &XFCC), Ok(None));

        assert_eq!(forwarded_chain(&HeaderMap::new(), &name), Ok(None));
        let mut junk = HeaderMap::new();
        junk.insert(&name, "not%20a%20cert".parse().unwrap());
        assert_eq!(forwarded_chain(&junk, &name), Err(Malformed::Cert));
    }
}
