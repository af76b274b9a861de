//! `routes[].upstream` and the files that go with it: which kinds of
//! upstream there are, and which TLS files each may have.
//!
//! - `http://host:port`, `https://host:port`, `h2c://host:port`: no path, no
//!   query (the request path is forwarded as is).
//! - `unix:///absolute/path`: the socket's path, nothing else.
//! - `upstream_ca_file` and the client certificate pair only with `https`;
//!   the certificate and its key only together.
//! - `h2c` speaks HTTP/2, which has no upgrades: `upgrades` is empty there.

use std::path::{Path, PathBuf};

use http::Uri;

use super::super::file::RouteFile;
use super::super::{CertKeyFiles, Error, UpstreamConfig, UpstreamTarget};

const KINDS: &str = "http://host:port, https://host:port, h2c://host:port or unix:///path";

/// The upstream of route `key` (`routes[i]`), from its `upstream`,
/// `upstream_ca_file` and `upstream_client_{cert,key}_file`.
pub(super) fn upstream(key: &str, r: &RouteFile, text: &str) -> Result<UpstreamConfig, Error> {
    let target = target(&format!("{key}.upstream"), text)?;
    let https = target.is_https();
    if r.upstream_ca_file.is_some() && !https {
        return Err(only_https(key, "upstream_ca_file"));
    }
    let client_cert = client_cert(key, r)?;
    if client_cert.is_some() && !https {
        return Err(only_https(key, "upstream_client_cert_file"));
    }
    Ok(UpstreamConfig {
        target,
        ca_file: r.upstream_ca_file.clone(),
        client_cert,
    })
}

/// Refuses the TLS files of a route without an upstream (`mode: auth`).
pub(super) fn no_files(key: &str, r: &RouteFile) -> Result<(), Error> {
    if r.upstream_ca_file.is_some() {
        return Err(only_https(key, "upstream_ca_file"));
    }
    if r.upstream_client_cert_file.is_some() || r.upstream_client_key_file.is_some() {
        return Err(only_https(key, "upstream_client_cert_file"));
    }
    Ok(())
}

fn only_https(key: &str, field: &str) -> Error {
    Error::invalid(
        format!("{key}.{field}"),
        "is only used with an https upstream",
    )
}

fn client_cert(key: &str, r: &RouteFile) -> Result<Option<CertKeyFiles>, Error> {
    match (&r.upstream_client_cert_file, &r.upstream_client_key_file) {
        (None, None) => Ok(None),
        (Some(cert), Some(key_file)) => Ok(Some(CertKeyFiles {
            cert_file: cert.clone(),
            key_file: key_file.clone(),
        })),
        (Some(_), None) => Err(Error::invalid(
            format!("{key}.upstream_client_cert_file"),
            format!("needs {key}.upstream_client_key_file"),
        )),
        (None, Some(_)) => Err(Error::invalid(
            format!("{key}.upstream_client_key_file"),
            format!("needs {key}.upstream_client_cert_file"),
        )),
    }
}

/// Parses `text` as one of the upstream kinds.
fn target(key: &str, text: &str) -> Result<UpstreamTarget, Error> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(Error::invalid(
            key,
            format!("{text:?} must be one of {KINDS}"),
        ));
    };
    if scheme == "unix" {
        return unix(key, text, rest).map(UpstreamTarget::Unix);
    }
    let make: fn(http::uri::Authority) -> UpstreamTarget = match scheme {
        "http" => UpstreamTarget::Http,
        "https" => UpstreamTarget::Https,
        "h2c" => UpstreamTarget::H2c,
        _ => {
            return Err(Error::invalid(
                key,
                format!("{text:?}: unknown scheme {scheme:?}; use {KINDS}"),
            ));
        }
    };
    // h2c is http on the wire; parse it as such.
    let uri: Uri = format!("http://{rest}")
        .parse()
        .map_err(|e| Error::invalid(key, format!("{text:?} is not a URL: {e}")))?;
    let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Err(Error::invalid(key, format!("{text:?} has no host")));
    };
    if authority.as_str().contains('@') {
        return Err(Error::invalid(
            key,
            format!("{text:?} must not carry credentials (user@host)"),
        ));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(Error::invalid(
            key,
            format!("{text:?} must not have a path or query (the request path is forwarded as is)"),
        ));
    }
    Ok(make(authority.clone()))
}

/// The socket path of `unix://<rest>`: absolute, nothing after it.
fn unix(key: &str, text: &str, rest: &str) -> Result<PathBuf, Error> {
    if !rest.starts_with('/') {
        return Err(Error::invalid(
            key,
            format!("{text:?}: a unix upstream is unix:///absolute/path/to.sock"),
        ));
    }
    if rest.contains(['?', '#']) || rest.ends_with('/') {
        return Err(Error::invalid(
            key,
            format!("{text:?}: the socket path must be a file, without query or fragment"),
        ));
    }
    Ok(Path::new(rest).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(upstream: &str) -> RouteFile {
        RouteFile {
            path_prefix: "/".into(),
            upstream: Some(upstream.into()),
            upstream_ca_file: None,
            upstream_client_cert_file: None,
            upstream_client_key_file: None,
            resource: None,
            rewrites: None,
            auth: None,
            upgrades: None,
            upgrades_on_public_paths: None,
        }
    }

    #[test]
    fn each_kind_parses_to_its_target() {
        let a = |s: &str| s.parse::<http::uri::Authority>().unwrap();
        let cases = [
            ("http://app:8080", UpstreamTarget::Http(a("app:8080"))),
            ("http://app:8080/", UpstreamTarget::Http(a("app:8080"))),
            ("https://10.0.0.1", UpstreamTarget::Https(a("10.0.0.1"))),
            ("h2c://[::1]:50051", UpstreamTarget::H2c(a("[::1]:50051"))),
            (
                "unix:///run/app/http.sock",
                UpstreamTarget::Unix("/run/app/http.sock".into()),
            ),
        ];
        for (text, want) in cases {
            let got = upstream("routes[0]", &route(text), text).unwrap();
            assert_eq!(got.target, want, "{text}");
        }
    }

    #[test]
    fn bad_upstreams_are_refused_naming_the_key_and_reason() {
        let cases = [
            (
                "ftp://x",
                "routes[0].upstream: \"ftp://x\": unknown scheme \"ftp\"",
            ),
            ("app:8080", "must be one of http://host:port"),
            ("h2c://x/base", "must not have a path or query"),
            ("https://u:p@x", "must not carry credentials"),
            ("http://", "routes[0].upstream: \"http://\""),
            ("unix://run/app.sock", "unix:///absolute/path/to.sock"),
            ("unix:///run/dir/", "the socket path must be a file"),
            ("unix:///s.sock?x=1", "the socket path must be a file"),
        ];
        for (text, want) in cases {
            let e = upstream("routes[0]", &route(text), text)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn tls_files_belong_to_https_and_come_in_pairs() {
        let with = |u: &str, ca: bool, cert: bool, key: bool| {
            let mut r = route(u);
            r.upstream_ca_file = ca.then(|| "ca.crt".into());
            r.upstream_client_cert_file = cert.then(|| "c.crt".into());
            r.upstream_client_key_file = key.then(|| "c.key".into());
            upstream("routes[1]", &r, u).map_err(|e| e.to_string())
        };
        let ok = with("https://x", true, true, true).unwrap();
        assert_eq!(
            ok.client_cert,
            Some(CertKeyFiles {
                cert_file: "c.crt".into(),
                key_file: "c.key".into()
            })
        );
        assert_eq!(ok.ca_file, Some("ca.crt".into()));
        let refused = [
            (
                with("https://x", false, true, false),
                "routes[1].upstream_client_cert_file: needs routes[1].upstream_client_key_file",
            ),
            (
                with("https://x", false, false, true),
                "routes[1].upstream_client_key_file: needs routes[1].upstream_client_cert_file",
            ),
            (
                with("http://x", false, true, true),
                "routes[1].upstream_client_cert_file: is only used with an https upstream",
            ),
            (
                with("h2c://x", true, false, false),
                "routes[1].upstream_ca_file: is only used with an https upstream",
            ),
            (
                with("unix:///s.sock", false, true, true),
                "routes[1].upstream_client_cert_file: is only used with an https upstream",
            ),
        ];
        for (got, want) in refused {
            assert_eq!(got.unwrap_err(), want);
        }
    }
}
