//! What a connection's requests share, and the checks that its client
//! certificate still holds: on every request, and for a tunnel (which
//! carries no more requests) through its [`proxy::upgrade::Lease`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;
use rustls_pki_types::CertificateDer;

use super::{Error, Gate};
use crate::authn::{self, Authenticator, CertIdentity, x509};
use crate::server::Downstream;
use crate::{clock, proxy, tls};

/// What the TLS layer established about a connection, shared by its requests.
#[derive(Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The connection as the accept loop counts it (tunnels hold it).
    pub downstream: Downstream,
    /// The upstream connections this connection keeps between requests.
    pub upstreams: proxy::Local,
    /// The identity headers of its last request.
    pub identity_headers: proxy::headers::Memo,
    /// The client certificate's identity, if a certificate was presented.
    pub cert: Option<CertIdentity>,
    /// The client certificate as an Envoy `X-Forwarded-Client-Cert` value,
    /// when `headers.forward_client_cert` is `xfcc`.
    pub xfcc: Option<HeaderValue>,
    /// The verified chain (leaf first; empty without a certificate), kept
    /// to verify it again when the TLS material changes.
    chain: Vec<CertificateDer<'static>>,
    /// The leaf's `notAfter` (Unix seconds).
    not_after: i64,
    /// The client-verifier generation the chain last verified under.
    checked: AtomicU64,
}

impl<F> Gate<F> {
    /// What a connection's requests share, for a connection the accept
    /// loop does not count (tests): the peer and, if any, the verified leaf.
    pub fn conn_info(&self, peer: SocketAddr, leaf_der: Option<&[u8]>) -> ConnInfo {
        let chain: Vec<CertificateDer<'static>> = leaf_der
            .map(|d| CertificateDer::from(d.to_vec()))
            .into_iter()
            .collect();
        let mut downstream = Downstream::detached(peer);
        downstream.verified_in = self.tls.generation();
        self.conn_info_for(downstream, &chain)
    }

    /// What a new connection's requests share: its peer and the identity of
    /// its verified client certificate, mapped once, and what a later
    /// request needs to check that the certificate still holds.
    pub fn conn_info_for(
        &self,
        downstream: Downstream,
        chain: &[CertificateDer<'static>],
    ) -> ConnInfo {
        let leaf = chain.first().map(AsRef::as_ref);
        ConnInfo {
            peer: downstream.peer,
            cert: leaf.map(|_| self.authn.map_cert(chain, &self.tls.issuers())),
            xfcc: leaf
                .filter(|_| self.headers.forward_client_cert)
                .and_then(x509::xfcc)
                .and_then(|v| HeaderValue::try_from(v).ok()),
            not_after: leaf.and_then(x509::not_after).unwrap_or(i64::MIN),
            checked: AtomicU64::new(downstream.verified_in),
            chain: chain.to_vec(),
            downstream,
            upstreams: proxy::Local::default(),
            identity_headers: proxy::headers::Memo::default(),
        }
    }

    /// What a tunnel of `conn` rests on: its certificate, if it has one.
    pub(super) fn lease(&self, conn: &ConnInfo) -> proxy::upgrade::Lease {
        if conn.chain.is_empty() {
            return proxy::upgrade::Lease::default();
        }
        let (tls, authn) = (self.tls.clone(), self.authn.clone());
        let (chain, named) = (conn.chain.clone(), conn.cert.clone());
        let checked = AtomicU64::new(conn.checked.load(Ordering::Acquire));
        let still_valid = move || {
            let was = checked.load(Ordering::Acquire);
            holds(&tls, &authn, &chain, named.as_ref(), was)
                .map(|now| checked.store(now, Ordering::Release))
                .is_ok()
        };
        proxy::upgrade::Lease {
            not_after: Some(conn.not_after),
            still_valid: Some(Arc::new(still_valid)),
        }
    }

    /// The connection's certificate still holds: not expired, and verified
    /// against the client CAs and CRLs now in service (again, if they
    /// changed since it last was). kube-apiserver checks a certificate on
    /// every request; a connection is no exception.
    pub(super) fn cert_in_force(&self, conn: &ConnInfo) -> Result<(), Error> {
        if conn.chain.is_empty() {
            return Ok(());
        }
        let stale = |s| Error::Authn(authn::Error::StaleCert(s));
        if clock::unix_now() > conn.not_after {
            return Err(stale(tls::Stale::Expired));
        }
        let checked = conn.checked.load(Ordering::Acquire);
        let now = holds(
            &self.tls,
            &self.authn,
            &conn.chain,
            conn.cert.as_ref(),
            checked,
        )
        .map_err(stale)?;
        if now != checked {
            conn.checked.store(now, Ordering::Release);
        }
        Ok(())
    }
}

/// `chain` still verifies against the material in service (again, if it
/// changed since generation `checked`), and the identity rules in service
/// still map it to `named`: a rule's `ca_file` may have dropped its CA
/// while the bundle kept it. `Ok` gives the generation it now holds for.
fn holds(
    tls: &tls::Acceptor,
    authn: &Authenticator,
    chain: &[CertificateDer<'static>],
    named: Option<&CertIdentity>,
    checked: u64,
) -> Result<u64, tls::Stale> {
    let now = tls.recheck(chain, checked)?;
    if now != checked && named != Some(&authn.map_cert(chain, &tls.issuers())) {
        return Err(tls::Stale::Untrusted);
    }
    Ok(now)
}
