//! Upstream kinds and how to reach them, apart from the pool that holds
//! the connections: a [`kind::Kind`] (transport and protocol), the dial
//! ([`connect`]), and the client TLS of `https` upstreams ([`tls`]).
//!
//! HTTP/1.1 kinds are reached on connections each client connection owns
//! ([`local`]); the others, and upgrades, through one pooled hyper-util
//! client per distinct kind ([`client`]).

pub mod connect;
pub mod kind;
pub mod local;
pub mod tls;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::{RouteConfig, UpstreamConfig, UpstreamTarget};
use connect::Connector;
use kind::{Kind, Protocol};
use tls::{ClientTls, Files};

/// The pooled client of one kind of upstream.
pub type HttpClient = Client<Connector, super::trailers::NoTrailers<Incoming>>;

/// The pooled client for `kind`: HTTP/2 from the first byte for
/// [`Protocol::Http2`], by ALPN for [`Protocol::Alpn`], else HTTP/1.1.
pub fn client(kind: Kind) -> HttpClient {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256);
    if kind.protocol == Protocol::Http2 {
        b.http2_only(true);
    }
    b.build(Connector::new(kind))
}

/// What makes two upstreams' connections interchangeable: everything
/// but the authority, which the pool keys on itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PoolKey {
    /// `http://`.
    Http,
    /// `h2c://`.
    H2c,
    /// `https://` with these TLS files.
    Https(Files),
    /// `unix://` at this path (the URI says `localhost` for every socket,
    /// so each socket needs a pool of its own).
    Unix(PathBuf),
}

impl PoolKey {
    /// The key of `u`.
    pub fn of(u: &UpstreamConfig) -> Self {
        match &u.target {
            UpstreamTarget::Http(_) => Self::Http,
            UpstreamTarget::H2c(_) => Self::H2c,
            UpstreamTarget::Https(_) => Self::Https(files(u)),
            UpstreamTarget::Unix(p) => Self::Unix(p.clone()),
        }
    }
}

fn files(u: &UpstreamConfig) -> Files {
    Files {
        ca_file: u.ca_file.clone(),
        client_cert: u.client_cert.clone(),
    }
}

/// An upstream TLS file that cannot be used, naming its key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {source}")]
pub struct SetupError {
    /// The key, e.g. `routes[0].upstream_client_key_file`.
    pub key: String,
    /// What is wrong with the file.
    #[source]
    pub source: tls::FileError,
}

/// Loads the client TLS of every `https` route, once per distinct set of
/// files: every PEM parses and each client key matches its certificate.
pub fn load_tls(routes: &[RouteConfig]) -> Result<HashMap<Files, Arc<ClientTls>>, SetupError> {
    let mut loaded = HashMap::new();
    for (i, r) in routes.iter().enumerate() {
        let Some(u) = r.upstream.as_ref().filter(|u| u.target.is_https()) else {
            continue;
        };
        let f = files(u);
        if loaded.contains_key(&f) {
            continue;
        }
        let tls = ClientTls::load(f.clone()).map_err(|source| SetupError {
            key: format!("routes[{i}].{}", source.which.field()),
            source,
        })?;
        loaded.insert(f, Arc::new(tls));
    }
    Ok(loaded)
}
