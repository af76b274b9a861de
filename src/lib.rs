//! authgate: one TLS port where Kubernetes clients authenticate with a client
//! certificate *or* a bearer token, are authorized the same way, and are
//! proxied to an upstream that learns who they are from identity headers.
//!
//! # How a request travels
//!
//! ```text
//!  client ──TCP──▶ server ──▶ tls ──▶ gate ─────────────────────────────────────▶ upstream
//!                  (accept,   (rustls, │  routes: normalise path, pick route
//!                   conn cap)  optional │  authn:  verified cert ─▶ identity rules
//!                              client   │          else Bearer ──▶ token backends
//!                              cert)    │  authz:  identity + attributes ─▶ authorizers
//!                                       │  proxy:  strip spoofable headers, set X-Remote-*
//!                                       ▼
//!                                    respond: every error ─▶ 400/401/403/404/502/503/504
//! ```
//!
//! The pipeline is written once, top-down, in [`gate`].
//!
//! authgate does not:
//! - forward a request whose identity or authorization could not be established
//!   (every failure ends in a response built by [`respond`]);
//! - keep, log or echo a raw bearer token (tokens are [`authn::bearer::BearerToken`]s,
//!   whose `Debug` is redacted);
//! - trust identity headers sent by clients: they are removed before forwarding.

pub mod config;

pub mod server;

pub mod tls;

pub mod identity;

pub mod authn;

pub mod authz;

pub mod routes;

pub mod gate;

pub mod proxy;

pub mod auth_request;

pub mod migration;

pub mod respond;

pub mod audit;

pub mod metrics;

pub mod admin;

pub mod backend;

pub mod cache;

pub mod kubernetes;

pub mod app;

pub mod pki;

pub mod demo;

/// A boxed, sendable future, the return type of the async backend traits
/// ([`authn::TokenAuthenticator`], [`authz::Authorizer`]) so they can be used
/// as trait objects.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Installs ring as the process-wide rustls crypto provider.
///
/// authgate compiles in ring only; the kube client still asks for the
/// process default, so this runs first thing in `main` and in tests.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
