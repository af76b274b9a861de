//! The kind of an upstream: how to reach it ([`Transport`]) and which HTTP
//! it speaks there ([`Protocol`]). Everything here is a pure decision; the
//! dialing is [`super::connect`]'s.
//!
//! | `routes[].upstream` | transport | protocol | upgrades |
//! |---|---|---|---|
//! | `http://host:port` | TCP | HTTP/1.1 | yes |
//! | `https://host:port` | TLS | `h2` by ALPN when offered, else HTTP/1.1 | yes, on a connection offering only `http/1.1` |
//! | `h2c://host:port` | TCP | HTTP/2, prior knowledge | no (HTTP/2 has no `Upgrade`) |
//! | `unix:///path` | Unix socket | HTTP/1.1, `Host: localhost` | yes |

use std::path::PathBuf;
use std::sync::Arc;

use http::Version;
use http::uri::{Authority, Scheme};

use super::tls::ClientTls;
use crate::config::UpstreamTarget;

/// How bytes reach the upstream.
#[derive(Clone, Debug)]
pub enum Transport {
    /// A TCP connection to the request URI's authority.
    Tcp,
    /// TLS over TCP to the request URI's authority.
    Tls(Arc<ClientTls>),
    /// A Unix socket at this path, whatever the request URI says.
    Unix(PathBuf),
}

/// The HTTP spoken over the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 when the upstream selects `h2` by ALPN, else HTTP/1.1.
    Alpn,
    /// HTTP/2 from the first byte (h2c, "prior knowledge").
    Http2,
}

/// An upstream's transport and protocol.
#[derive(Clone, Debug)]
pub struct Kind {
    /// How to reach it.
    pub transport: Transport,
    /// What to speak.
    pub protocol: Protocol,
}

/// The authority of requests to a Unix-socket upstream (the `Host` it sees).
/// The socket path is no host name, and sidecars answer `localhost`.
pub const UNIX_AUTHORITY: Authority = Authority::from_static("localhost");

impl Kind {
    /// The kind of `target`; `tls` is the client TLS of an `https` target
    /// (ignored for the others). `None`: an `https` target without its TLS,
    /// which is never spoken to in plain text.
    pub fn of(target: &UpstreamTarget, tls: Option<Arc<ClientTls>>) -> Option<Self> {
        let (transport, protocol) = match (target, tls) {
            (UpstreamTarget::Http(_), _) => (Transport::Tcp, Protocol::Http1),
            (UpstreamTarget::Https(_), Some(tls)) => (Transport::Tls(tls), Protocol::Alpn),
            (UpstreamTarget::Https(_), None) => return None,
            (UpstreamTarget::H2c(_), _) => (Transport::Tcp, Protocol::Http2),
            (UpstreamTarget::Unix(path), _) => (Transport::Unix(path.clone()), Protocol::Http1),
        };
        Some(Self {
            transport,
            protocol,
        })
    }

    /// The kind to carry an upgrade request (`Connection: upgrade`): the
    /// same transport over HTTP/1.1 only, or `None` when the upstream
    /// speaks nothing but HTTP/2.
    pub fn for_upgrade(&self) -> Option<Self> {
        match self.protocol {
            Protocol::Http2 => None,
            Protocol::Http1 | Protocol::Alpn => Some(Self {
                transport: self.transport.clone(),
                protocol: Protocol::Http1,
            }),
        }
    }

    /// Whether the connector offers `h2` by ALPN.
    pub fn offers_h2(&self) -> bool {
        self.protocol == Protocol::Alpn
    }

    /// The version to tag requests with: the legacy client refuses an
    /// HTTP/2-tagged request on an HTTP/1.1 connection, and takes an
    /// HTTP/1.1-tagged one on an HTTP/2 connection (what ALPN chose).
    pub fn request_version(&self) -> Version {
        match self.protocol {
            Protocol::Http2 => Version::HTTP_2,
            Protocol::Http1 | Protocol::Alpn => Version::HTTP_11,
        }
    }
}

/// The scheme of request URIs to `target` (what the pool keys on and
/// HTTP/2's `:scheme` says): `https` for TLS, `http` for the rest.
pub fn scheme(target: &UpstreamTarget) -> Scheme {
    match target {
        UpstreamTarget::Https(_) => Scheme::HTTPS,
        UpstreamTarget::Http(_) | UpstreamTarget::H2c(_) | UpstreamTarget::Unix(_) => Scheme::HTTP,
    }
}

/// The authority of request URIs to `target`: its host and port, or
/// [`UNIX_AUTHORITY`] for a socket.
pub fn authority(target: &UpstreamTarget) -> Authority {
    match target {
        UpstreamTarget::Http(a) | UpstreamTarget::Https(a) | UpstreamTarget::H2c(a) => a.clone(),
        UpstreamTarget::Unix(_) => UNIX_AUTHORITY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_target_gets_its_transport_protocol_and_request_uri() {
        let a = Authority::from_static("app:8080");
        let cases = [
            (
                UpstreamTarget::Http(a.clone()),
                Protocol::Http1,
                "http",
                "app:8080",
            ),
            (
                UpstreamTarget::Https(a.clone()),
                Protocol::Alpn,
                "https",
                "app:8080",
            ),
            (UpstreamTarget::H2c(a), Protocol::Http2, "http", "app:8080"),
            (
                UpstreamTarget::Unix("/run/a.sock".into()),
                Protocol::Http1,
                "http",
                "localhost",
            ),
        ];
        for (target, protocol, scheme_, authority_) in cases {
            assert_eq!(scheme(&target).as_str(), scheme_, "{target:?}");
            assert_eq!(authority(&target).as_str(), authority_, "{target:?}");
            match Kind::of(&target, None) {
                Some(k) => assert_eq!(k.protocol, protocol, "{target:?}"),
                // https without its client TLS: no kind, never plain text.
                None => assert!(target.is_https()),
            }
        }
        assert!(matches!(
            Kind::of(&UpstreamTarget::Unix("/run/a.sock".into()), None).unwrap().transport,
            Transport::Unix(p) if p == std::path::Path::new("/run/a.sock")
        ));
    }

    #[test]
    fn upgrades_go_over_http1_and_never_to_an_h2c_upstream() {
        let a = Authority::from_static("app:8080");
        let https = Kind {
            transport: Transport::Tcp,
            protocol: Protocol::Alpn,
        };
        assert!(https.offers_h2());
        let up = https.for_upgrade().unwrap();
        assert_eq!(up.protocol, Protocol::Http1);
        assert!(!up.offers_h2());
        assert_eq!(up.request_version(), Version::HTTP_11);
        let h2c = Kind::of(&UpstreamTarget::H2c(a.clone()), None).unwrap();
        assert!(h2c.for_upgrade().is_none());
        assert_eq!(h2c.request_version(), Version::HTTP_2);
        let plain = Kind::of(&UpstreamTarget::Http(a), None).unwrap();
        assert_eq!(
            plain.for_upgrade().map(|k| k.protocol),
            Some(Protocol::Http1)
        );
    }
}
