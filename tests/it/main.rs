//! authgate's integration tests, one binary with one module per area. The
//! harness is the `testkit` crate (testkit/).
//!
//! The modules share one process: a test must not change process-wide state
//! (environment, current directory, global subscribers); child processes get
//! their environment through `Command::env`.

mod auth_mode;
mod cache_limits;
mod cli;
mod corpus;
mod corpus_auth;
mod corpus_h2;
mod corpus_proxy;
mod corpus_tls;
mod deploy;
mod fake_api_selftest;
mod handshakes;
mod issuers;
mod jwks;
mod keepalive;
mod krp;
mod kubernetes;
mod listeners;
mod migration;
mod migration_dry_run;
mod migration_fleet;
mod migration_page;
mod monitoring;
mod mtls;
mod nginx;
mod operations;
mod panics;
mod proxy;
mod real_apiserver;
mod reload;
mod rewrites;
mod secrets;
mod token_misses;
mod tokens;
mod trailers;
mod tunnels;
mod upstreams;
