//! Every default of the configuration file, once.
//!
//! Validation applies these constants, [`TABLE`] lists them by key for
//! `authgate check-config --defaults`, and a test checks that README.md's
//! configuration reference states each one as written here.

use std::time::Duration;

/// `limits.max_connections`: what fits the shipped Deployment's 256Mi
/// memory limit. An idle TLS keep-alive connection costs about 48 KB of
/// resident memory with mimalloc (37 KB with glibc's malloc, which costs
/// 3-13% more CPU per request; nginx 16 KB; `cargo xtask bench --only
/// idle`), so 3072 of them take about 144 MiB and leave room for the
/// caches and the buffers of requests under way.
pub const MAX_CONNECTIONS: usize = 3072;
/// `limits.max_connections_per_ip`: a third of the connections, so one
/// address (one client, or one NAT) cannot take them all, while a front
/// proxy or node-local NAT still gets plenty.
pub const MAX_CONNECTIONS_PER_IP: usize = 1000;
/// `limits.max_handshakes`: TLS handshakes under way at once. A handshake
/// takes milliseconds; more than this in progress means clients that stall
/// one, and the rest wait for a slot.
pub const MAX_HANDSHAKES: usize = 1024;
/// `limits.max_handshakes_per_ip`: one address's share of them, so one
/// client stalling handshakes cannot hold the budget.
pub const MAX_HANDSHAKES_PER_IP: usize = 64;
/// `limits.handshake_timeout`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// `limits.header_read_timeout`.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// `limits.upstream_timeout`.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// `limits.upstream_idle_timeout`: nginx's upstream `keepalive_timeout`.
pub const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `limits.upstream_max_requests`: nginx's upstream `keepalive_requests`.
pub const UPSTREAM_MAX_REQUESTS: usize = 1000;
/// `limits.max_header_bytes`.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// `limits.idle_timeout`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `limits.shutdown_timeout`.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(25);
/// `limits.shutdown_delay`.
pub const SHUTDOWN_DELAY: Duration = Duration::ZERO;

/// `admin.max_connections`: the admin listener serves probes and scrapes,
/// so a small cap keeps it from being a second door to exhaust.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;
/// `admin.api_ready_window`.
pub const API_READY_WINDOW: Duration = Duration::from_secs(30);
/// `fleet.revocation_object.name`: the ConfigMap deploy/base ships.
pub const FLEET_REVOCATION_OBJECT: &str = "authgate-revocation";
/// `fleet.watch_timeout`: how long a lost permission on the revocation
/// object, or a watch connection that died silently, can go unnoticed
/// (client-go's reflectors use 5-10 minutes; a revocation path wants less).
pub const FLEET_WATCH_TIMEOUT: Duration = Duration::from_secs(60);

/// `kubernetes.timeout`.
pub const API_TIMEOUT: Duration = Duration::from_secs(5);
/// `kubernetes.max_in_flight`.
pub const API_MAX_IN_FLIGHT: usize = 64;
/// `kubernetes.qps`.
pub const API_QPS: f64 = 200.0;
/// `kubernetes.burst`.
pub const API_BURST: u32 = 400;

/// `token_review.cache.max_entries`.
pub const TOKEN_CACHE_ENTRIES: u64 = 10_000;
/// `token_review.cache.ttl`.
pub const TOKEN_TTL: Duration = Duration::from_secs(120);
/// `token_review.cache.failure_ttl`.
pub const TOKEN_FAILURE_TTL: Duration = Duration::from_secs(10);
/// `token_review.max_misses_per_client`: a client starting up presents a
/// handful of new tokens, not ten a second; a flood of garbage from one
/// address costs at most this many TokenReviews a second (20 at once).
pub const TOKEN_MISSES_PER_CLIENT: u32 = 10;
/// `token_review.jwks.refresh`: how long a key the cluster removed keeps
/// verifying here, so as short as `revalidate_after` (each refresh is two
/// small GETs per replica).
pub const JWKS_REFRESH: Duration = Duration::from_secs(60);
/// `token_review.jwks.revalidate_after`.
pub const JWKS_REVALIDATE_AFTER: Duration = Duration::from_secs(60);
/// `token_review.jwks.review_bad_signatures`: kube-apiserver refuses them.
pub const JWKS_REVIEW_BAD_SIGNATURES: bool = false;
/// `authentication.refresh`: an external issuer's keys, as often as the
/// cluster's.
pub const ISSUER_REFRESH: Duration = Duration::from_secs(60);

/// `access_review.cache.max_entries`.
pub const ACCESS_CACHE_ENTRIES: u64 = 10_000;
/// `access_review.cache.allow_ttl`.
pub const ALLOW_TTL: Duration = Duration::from_secs(300);
/// `access_review.cache.deny_ttl`.
pub const DENY_TTL: Duration = Duration::from_secs(30);
/// `token_review.cache.refresh_ahead`, `access_review.cache.refresh_ahead`.
pub const REFRESH_AHEAD: f64 = 0.2;
/// `token_review.cache.jitter`, `access_review.cache.jitter`.
pub const JITTER: f64 = 0.1;

/// `tls.reload_interval`.
pub const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(30);
/// `auth.cert_header`.
pub const AUTH_CERT_HEADER: &str = "X-Client-Cert";
/// `migration.max_identities`.
pub const MIGRATION_MAX_IDENTITIES: usize = 1000;
/// `log.level`.
pub const LOG_LEVEL: &str = "info";
/// `routes[].upgrades`.
pub const UPGRADES: &[&str] = &["websocket", "SPDY/3.1"];
/// `routes[].upgrades_on_public_paths`.
pub const UPGRADES_ON_PUBLIC_PATHS: bool = false;
/// `limits.max_connection_age`.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(24 * 3600);
/// `limits.tunnel_idle_timeout`.
pub const TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// `tls.allow_stale_crl`.
pub const ALLOW_STALE_CRL: bool = false;
/// `tls.http2`.
pub const TLS_HTTP2: bool = true;
/// `headers.strip_steering`.
pub const STRIP_STEERING: bool = true;
/// `paths.allow_matrix_params`.
pub const ALLOW_MATRIX_PARAMS: bool = false;
/// `authorization.verb_mapping`: kube-apiserver's own, so RBAC rules mean
/// here what they mean at the apiserver.
pub const VERB_MAPPING: &str = "kube-apiserver";

/// Every default by key, as README.md and `check-config --defaults` write it.
pub const TABLE: &[(&str, &str)] = &[
    ("limits.max_connections", "3072"),
    ("limits.max_connections_per_ip", "1000"),
    ("limits.max_handshakes", "1024"),
    ("limits.max_handshakes_per_ip", "64"),
    ("limits.handshake_timeout", "10s"),
    ("limits.header_read_timeout", "10s"),
    ("limits.upstream_timeout", "30s"),
    ("limits.upstream_idle_timeout", "60s"),
    ("limits.upstream_max_requests", "1000"),
    ("limits.max_header_bytes", "32768"),
    ("limits.idle_timeout", "60s"),
    ("limits.shutdown_timeout", "25s"),
    ("limits.shutdown_delay", "0s"),
    ("admin.max_connections", "64"),
    ("admin.api_ready_window", "30s"),
    ("kubernetes.timeout", "5s"),
    ("kubernetes.max_in_flight", "64"),
    ("kubernetes.qps", "200"),
    ("kubernetes.burst", "400"),
    ("token_review.cache.max_entries", "10000"),
    ("token_review.cache.ttl", "2m"),
    ("token_review.cache.failure_ttl", "10s"),
    ("token_review.cache.refresh_ahead", "0.2"),
    ("token_review.cache.jitter", "0.1"),
    ("token_review.max_misses_per_client", "10"),
    ("token_review.jwks.refresh", "60s"),
    ("token_review.jwks.revalidate_after", "60s"),
    ("token_review.jwks.review_bad_signatures", "false"),
    ("authentication.refresh", "60s"),
    ("access_review.cache.max_entries", "10000"),
    ("access_review.cache.allow_ttl", "5m"),
    ("access_review.cache.deny_ttl", "30s"),
    ("access_review.cache.refresh_ahead", "0.2"),
    ("access_review.cache.jitter", "0.1"),
    ("tls.reload_interval", "30s"),
    ("auth.cert_header", "X-Client-Cert"),
    ("migration.max_identities", "1000"),
    ("log.level", "info"),
    ("headers.strip_steering", "true"),
    ("paths.allow_matrix_params", "false"),
    ("routes[].upgrades", "[websocket, SPDY/3.1]"),
    ("routes[].upgrades_on_public_paths", "false"),
    ("routes[].rewrites.consume", "pin"),
    ("limits.tunnel_idle_timeout", "1h"),
    ("limits.max_connection_age", "24h"),
    ("authorization.verb_mapping", "kube-apiserver"),
    ("tls.allow_stale_crl", "false"),
    ("tls.http2", "true"),
    ("fleet.revocation_object.name", "authgate-revocation"),
    ("fleet.watch_timeout", "60s"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn get(k: &str) -> &'static str {
        TABLE
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{k} missing from TABLE"))
    }

    /// The rendered table says what the constants say.
    #[test]
    fn table_renders_the_constants() {
        let dur = |k: &str| humantime::parse_duration(get(k)).unwrap();
        for (key, c) in [
            ("limits.handshake_timeout", HANDSHAKE_TIMEOUT),
            ("limits.header_read_timeout", HEADER_READ_TIMEOUT),
            ("limits.upstream_timeout", UPSTREAM_TIMEOUT),
            ("limits.upstream_idle_timeout", UPSTREAM_IDLE_TIMEOUT),
            ("limits.idle_timeout", IDLE_TIMEOUT),
            ("limits.shutdown_timeout", SHUTDOWN_TIMEOUT),
            ("limits.shutdown_delay", SHUTDOWN_DELAY),
            ("admin.api_ready_window", API_READY_WINDOW),
            ("kubernetes.timeout", API_TIMEOUT),
            ("token_review.cache.ttl", TOKEN_TTL),
            ("token_review.cache.failure_ttl", TOKEN_FAILURE_TTL),
            ("token_review.jwks.refresh", JWKS_REFRESH),
            ("token_review.jwks.revalidate_after", JWKS_REVALIDATE_AFTER),
            ("authentication.refresh", ISSUER_REFRESH),
            ("access_review.cache.allow_ttl", ALLOW_TTL),
            ("access_review.cache.deny_ttl", DENY_TTL),
            ("tls.reload_interval", TLS_RELOAD_INTERVAL),
            ("limits.tunnel_idle_timeout", TUNNEL_IDLE_TIMEOUT),
            ("limits.max_connection_age", MAX_CONNECTION_AGE),
            ("fleet.watch_timeout", FLEET_WATCH_TIMEOUT),
        ] {
            assert_eq!(dur(key), c, "{key}");
        }
        for (key, c) in [
            ("limits.max_connections", MAX_CONNECTIONS),
            ("limits.max_connections_per_ip", MAX_CONNECTIONS_PER_IP),
            ("limits.max_handshakes", MAX_HANDSHAKES),
            ("limits.max_handshakes_per_ip", MAX_HANDSHAKES_PER_IP),
            ("limits.max_header_bytes", MAX_HEADER_BYTES),
            ("limits.upstream_max_requests", UPSTREAM_MAX_REQUESTS),
            ("admin.max_connections", ADMIN_MAX_CONNECTIONS),
            ("kubernetes.max_in_flight", API_MAX_IN_FLIGHT),
            ("migration.max_identities", MIGRATION_MAX_IDENTITIES),
            (
                "token_review.max_misses_per_client",
                TOKEN_MISSES_PER_CLIENT as usize,
            ),
        ] {
            assert_eq!(get(key), c.to_string(), "{key}");
        }
        assert_eq!(get("kubernetes.qps"), API_QPS.to_string());
        assert_eq!(get("kubernetes.burst"), API_BURST.to_string());
        assert_eq!(
            get("token_review.cache.max_entries"),
            TOKEN_CACHE_ENTRIES.to_string()
        );
        assert_eq!(
            get("access_review.cache.max_entries"),
            ACCESS_CACHE_ENTRIES.to_string()
        );
    }

    /// The same, for the constants that are not durations or counts.
    #[test]
    fn table_renders_the_other_constants() {
        assert_eq!(get("auth.cert_header"), AUTH_CERT_HEADER);
        assert_eq!(get("log.level"), LOG_LEVEL);
        assert_eq!(get("headers.strip_steering"), STRIP_STEERING.to_string());
        assert_eq!(
            get("routes[].upgrades"),
            format!("[{}]", UPGRADES.join(", "))
        );
        assert_eq!(
            get("routes[].upgrades_on_public_paths"),
            UPGRADES_ON_PUBLIC_PATHS.to_string()
        );
        assert_eq!(
            get("paths.allow_matrix_params"),
            ALLOW_MATRIX_PARAMS.to_string()
        );
        assert_eq!(get("authorization.verb_mapping"), VERB_MAPPING);
        assert_eq!(get("tls.allow_stale_crl"), ALLOW_STALE_CRL.to_string());
        assert_eq!(get("tls.http2"), TLS_HTTP2.to_string());
        assert_eq!(
            get("token_review.jwks.review_bad_signatures"),
            JWKS_REVIEW_BAD_SIGNATURES.to_string()
        );
        assert_eq!(crate::config::VerbMapping::default().name(), VERB_MAPPING);
    }

    #[test]
    fn table_renders_the_fleet_object_name() {
        let name = TABLE
            .iter()
            .find(|(k, _)| *k == "fleet.revocation_object.name")
            .map(|(_, v)| *v);
        assert_eq!(name, Some(FLEET_REVOCATION_OBJECT));
    }

    #[test]
    fn table_renders_the_freshness_constants() {
        let get = |key: &str| {
            TABLE
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        };
        for key in ["token_review.cache", "access_review.cache"] {
            assert_eq!(
                get(&format!("{key}.refresh_ahead")),
                Some(REFRESH_AHEAD.to_string())
            );
            assert_eq!(get(&format!("{key}.jitter")), Some(JITTER.to_string()));
        }
    }

    /// README.md's configuration table states every default as the table
    /// here does: a row `| `key` | `value` | ... |`, where a row may name
    /// several keys and values joined by ` / `.
    #[test]
    fn readme_states_every_default() {
        let readme = include_str!("../../README.md");
        let mut stated = std::collections::HashMap::new();
        for row in readme.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let (Some(keys), Some(values)) = (cells.get(1), cells.get(2)) else {
                continue;
            };
            let unquote = |s: &str| s.trim().trim_matches('`').to_owned();
            for (k, v) in keys.split(" / ").zip(values.split(" / ")) {
                stated.insert(unquote(k), unquote(v));
            }
        }
        for (key, value) in TABLE {
            assert_eq!(
                stated.get(*key).map(String::as_str),
                Some(*value),
                "README.md's configuration table must state {key}'s default as `{value}`"
            );
        }
    }
}
