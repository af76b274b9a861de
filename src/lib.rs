//! authgate: one TLS port where Kubernetes clients authenticate with a client
//! certificate *or* a bearer token, are authorized the same way, and are
//! proxied to an upstream that learns who they are from identity headers.
//!
//! # How a request travels
//!
//! ```text
//!  client ──TCP──▶ server ──▶ tls ──▶ gate ─────────────────────────────────────▶ upstream
//!                  (accept,   (rustls, │  routes: normalise path, pick route
//!                   conn cap, optional │  authn:  verified cert ─▶ identity rules
//!                   drain)    client   │          else Bearer ──▶ token backends
//!                              cert)    │  authz:  identity + attributes ─▶ authorizers ─▶ Permit
//!                                       │  proxy:  Permit: strip spoofable headers, set X-Remote-*
//!                                       ▼
//!                         gate::error: every error ─▶ one Refusal ─▶ response,
//!                                      metric and access-log line (400..504)
//! ```
//!
//! The pipeline is written once, top-down, in [`gate`]. [`server::serve`] is
//! the one accept loop, for the main listener (the [`gate::Gate`]) and the
//! [`admin`] listener. Nothing reaches [`proxy`] without an
//! [`authz::permit::Permit`].
//!
//! authgate does not:
//! - forward a request whose identity or authorization could not be established
//!   (every failure ends in a response built from [`gate::Error::refusal`]);
//! - keep, log or echo a raw bearer token (tokens are [`authn::bearer::BearerToken`]s,
//!   whose `Debug` is redacted);
//! - trust identity headers sent by clients: they are removed before forwarding.

// The public modules are what `main`, `tests/it`, `testkit`, `benches/` and
// `fuzz/` use; `body`, `clock`, `server`, `cache` and `kubernetes` are
// crate-private.

// Foundations, used along the whole path.
pub(crate) mod body;
pub(crate) mod clock;
pub mod config;
pub mod identity;
pub mod metrics;
pub(crate) mod peer;

// The request path, in the order a request travels it.
pub mod authn;
pub mod authz;
pub mod gate;
pub mod proxy;
pub mod routes;
pub(crate) mod server;
pub mod tls;

// Decision backends and their caches.
pub mod backend;
pub(crate) mod cache;
pub(crate) mod kubernetes;

// Operations around the path.
pub mod access_log;
pub mod admin;
pub mod fleet;
pub mod migration;

// Wiring and tools.
pub mod app;
pub mod demo;
pub mod pki;

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

#[cfg(test)]
mod layering;
