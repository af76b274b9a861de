//! Protocol upgrades (WebSocket; SPDY for `kubectl exec`, `attach`,
//! `port-forward`): the one place where authgate stops seeing requests, so
//! it opens a tunnel only when everything says it should.
//!
//! - The request asks for a protocol the route allows (never `h2c`), and on
//!   a public path only if the route allows that too ([`allowed`], checked by
//!   the gate before anyone is asked who the client is).
//! - The upstream's `101` names that protocol, and for WebSocket carries the
//!   `Sec-WebSocket-Accept` of the request's key ([`switched`]); otherwise
//!   its answer is a 502 and nothing is spliced, so an upstream that answers
//!   101 without switching cannot open a raw channel to later requests.
//! - The tunnel keeps its connection's slot and drain token, ends after
//!   `limits.tunnel_idle_timeout` without a byte either way, is closed at
//!   the shutdown drain deadline, at `limits.max_connection_age`, and as
//!   soon as the connection's certificate stops holding (expired, revoked,
//!   CA removed: its [`Lease`], checked every second) ([`splice`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine;
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::debug;

use crate::config::{RouteConfig, UpstreamTarget};
use crate::server::Hold;

const SEC_WEBSOCKET_KEY: &str = "sec-websocket-key";
const SEC_WEBSOCKET_ACCEPT: &str = "sec-websocket-accept";
/// RFC 6455 section 1.3.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The protocol a request asks to upgrade to (`Connection: upgrade` and
/// `Upgrade: X`), if it asks.
pub fn requested(h: &HeaderMap) -> Option<HeaderValue> {
    let asked = h
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asked.then(|| h.get(UPGRADE).cloned()).flatten()
}

/// Why an upgrade is refused (400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not on the route's list.
    #[error("upgrading to {0:?} is not allowed on this route (routes[].upgrades)")]
    Protocol(String),
    /// A public path, and the route does not allow upgrades there.
    #[error("upgrades are not allowed on unauthenticated paths")]
    PublicPath,
    /// The route's upstream speaks HTTP/2 only (`h2c://`), which has no
    /// `Upgrade`.
    #[error("this route's upstream speaks HTTP/2 (h2c), which has no protocol upgrades")]
    Http2Upstream,
}

/// Whether `route` lets a request upgrade to `protocol`. `Upgrade` may list
/// several protocols; each must be allowed.
pub fn allowed(route: &RouteConfig, protocol: &HeaderValue, public: bool) -> Result<(), Refused> {
    if route
        .upstream
        .as_ref()
        .is_some_and(|u| matches!(u.target, UpstreamTarget::H2c(_)))
    {
        return Err(Refused::Http2Upstream);
    }
    let text = protocol.to_str().unwrap_or("");
    let mut any = false;
    for p in text.split(',').map(str::trim) {
        any = true;
        if p.is_empty() || !route.upgrades.iter().any(|a| a.eq_ignore_ascii_case(p)) {
            return Err(Refused::Protocol(p.to_owned()));
        }
    }
    if !any || text.is_empty() {
        return Err(Refused::Protocol(
            String::from_utf8_lossy(protocol.as_bytes()).into_owned(),
        ));
    }
    if public && !route.upgrades_on_public_paths {
        return Err(Refused::PublicPath);
    }
    Ok(())
}

/// The `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ctx.finish())
}

/// Whether a `101` with `response` headers switched to what the request
/// (`requested` protocol, `request` headers) asked for.
pub fn switched(
    requested: &HeaderValue,
    request: &HeaderMap,
    response: &HeaderMap,
) -> Result<(), &'static str> {
    let Some(got) = response.get(UPGRADE) else {
        return Err("the upstream switched protocols without naming one");
    };
    if !got.as_bytes().eq_ignore_ascii_case(requested.as_bytes()) {
        return Err("the upstream switched to another protocol than requested");
    }
    if requested.as_bytes().eq_ignore_ascii_case(b"websocket") {
        let key = request.get(SEC_WEBSOCKET_KEY).map(HeaderValue::as_bytes);
        let accept = response
            .get(SEC_WEBSOCKET_ACCEPT)
            .map(HeaderValue::as_bytes);
        match (key, accept) {
            (Some(k), Some(a)) if a == accept_key(k).as_bytes() => {}
            _ => return Err("the upstream's Sec-WebSocket-Accept does not match the key"),
        }
    }
    Ok(())
}

/// What a tunnel's identity rests on: the connection's client certificate.
/// A tunnel carries no more requests, so nothing else would check it again.
#[derive(Clone, Default)]
pub struct Lease {
    /// The certificate's `notAfter` (Unix seconds).
    pub not_after: Option<i64>,
    /// Verifies the certificate again against the TLS material in service;
    /// `false` ends the tunnel.
    pub still_valid: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl Lease {
    /// Whether the tunnel may go on at Unix time `now`.
    fn holds(&self, now: i64) -> bool {
        self.not_after.is_none_or(|t| now <= t) && self.still_valid.as_ref().is_none_or(|f| f())
    }
}

/// How often a tunnel checks its lease.
const LEASE_CHECK: Duration = Duration::from_secs(1);

/// Copies bytes both ways between client and upstream until either side
/// closes, the tunnel idles for `idle`, `lease` stops holding, `ends_at`
/// passes (the connection's age limit) or `hold` says stop. The task holds
/// `hold` (the connection's slot and drain token) until it ends.
pub fn splice(
    client: OnUpgrade,
    upstream: OnUpgrade,
    hold: Hold,
    idle: Duration,
    lease: Lease,
    ends_at: Instant,
) {
    tokio::spawn(async move {
        let (Ok(c), Ok(u)) = tokio::join!(client, upstream) else {
            debug!("upgrade did not complete on both sides");
            return;
        };
        let start = Instant::now();
        let last = Arc::new(AtomicU64::new(0));
        let mut c = Seen::new(TokioIo::new(c), last.clone(), start);
        let mut u = Seen::new(TokioIo::new(u), last.clone(), start);
        let copy = tokio::io::copy_bidirectional(&mut c, &mut u);
        tokio::pin!(copy);
        loop {
            if !lease.holds(crate::clock::unix_now()) {
                debug!("the tunnel's certificate no longer holds; closing");
                return;
            }
            let Some(aged) = ends_at.checked_duration_since(Instant::now()) else {
                debug!("tunnel reached limits.max_connection_age; closing");
                return;
            };
            let quiet_for = start
                .elapsed()
                .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
            let Some(left) = idle.checked_sub(quiet_for).filter(|d| !d.is_zero()) else {
                debug!("tunnel idle; closing");
                return;
            };
            let left = left.min(aged).min(LEASE_CHECK);
            tokio::select! {
                r = &mut copy => {
                    debug!(?r, "tunnel closed");
                    return;
                }
                () = tokio::time::sleep(left) => {}
                () = hold.stopped() => {
                    debug!("shutdown deadline; closing tunnel");
                    return;
                }
            }
        }
    });
}

/// An IO that notes when bytes last moved (ms since `start`).
struct Seen<T> {
    inner: T,
    last: Arc<AtomicU64>,
    start: Instant,
}

impl<T> Seen<T> {
    fn new(inner: T, last: Arc<AtomicU64>, start: Instant) -> Self {
        Self { inner, last, start }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Seen<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Seen<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteAuth;

    fn route(upgrades: &[&str], public: bool) -> RouteConfig {
        RouteConfig {
            path_prefix: "/".into(),
            upstream: None,
            resources: vec![],
            rewrites: None,
            auth: RouteAuth::default(),
            upgrades: upgrades.iter().map(|s| s.to_ascii_lowercase()).collect(),
            upgrades_on_public_paths: public,
            verb_mapping: crate::config::VerbMapping::default(),
        }
    }

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn only_listed_protocols_upgrade_and_public_paths_need_leave() {
        let r = route(&["websocket", "SPDY/3.1"], false);
        assert_eq!(allowed(&r, &hv("websocket"), false), Ok(()));
        assert_eq!(allowed(&r, &hv("WebSocket"), false), Ok(()));
        assert_eq!(allowed(&r, &hv("spdy/3.1"), false), Ok(()));
        for bad in ["h2c", "websocket, h2c", "", "tls/1.0", "websocket2"] {
            assert!(
                matches!(allowed(&r, &hv(bad), false), Err(Refused::Protocol(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            allowed(&r, &hv("websocket"), true),
            Err(Refused::PublicPath)
        );
        assert_eq!(
            allowed(&route(&["websocket"], true), &hv("websocket"), true),
            Ok(())
        );
        assert!(allowed(&route(&[], false), &hv("websocket"), false).is_err());
        let mut h2c = route(&["websocket"], true);
        h2c.upstream = Some(crate::config::UpstreamConfig {
            target: UpstreamTarget::H2c(http::uri::Authority::from_static("grpc:50051")),
            ca_file: None,
            client_cert: None,
        });
        assert_eq!(
            allowed(&h2c, &hv("websocket"), false),
            Err(Refused::Http2Upstream)
        );
    }

    #[test]
    fn the_websocket_accept_key_is_rfc_6455s() {
        // The example of RFC 6455 section 1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_101_must_name_the_protocol_and_prove_the_key() {
        let mut req = HeaderMap::new();
        req.insert(SEC_WEBSOCKET_KEY, hv("dGhlIHNhbXBsZSBub25jZQ=="));
        let resp = |upgrade: Option<&str>, accept: Option<&str>| {
            let mut h = HeaderMap::new();
            if let Some(u) = upgrade {
                h.insert(UPGRADE, hv(u));
            }
            if let Some(a) = accept {
                h.insert(SEC_WEBSOCKET_ACCEPT, hv(a));
            }
            h
        };
        let good = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        let ws = hv("websocket");
        assert!(switched(&ws, &req, &resp(Some("websocket"), Some(good))).is_ok());
        assert!(switched(&ws, &req, &resp(Some("WebSocket"), Some(good))).is_ok());
        assert!(switched(&ws, &req, &resp(None, Some(good))).is_err());
        assert!(switched(&ws, &req, &resp(Some("websocket"), None)).is_err());
        assert!(switched(&ws, &req, &resp(Some("websocket"), Some("AAAA"))).is_err());
        assert!(switched(&ws, &req, &resp(Some("spdy/3.1"), Some(good))).is_err());
        assert!(switched(&ws, &HeaderMap::new(), &resp(Some("websocket"), Some(good))).is_err());
        let spdy = hv("SPDY/3.1");
        assert!(switched(&spdy, &req, &resp(Some("SPDY/3.1"), None)).is_ok());
        assert!(switched(&spdy, &req, &resp(Some("websocket"), None)).is_err());
    }
}
