//! `File` -> `Config`: defaults, types and cross-field rules, each error naming its key.

use std::collections::HashSet;
use std::time::Duration;

use globset::{Glob, GlobBuilder};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::defaults;
use super::file::{self, File};
use super::{
    AccessReviewConfig, AdminAccess, AdminConfig, AllowRule, Config, Error, Freshness,
    KubernetesConfig, Limits, LogConfig, LogFormat, Mode, ResourceRule, RouteAuth, RouteConfig,
    StaticConfig, StaticToken, Subject, TlsConfig, TlsVersion, TokenReviewConfig, UpstreamTarget,
    VerbMapping,
};
use crate::routes::normalize_prefix;

/// Parses YAML into the file shape; unknown keys and wrong types are errors
/// carrying the line and column, and never a static token.
pub fn parse_yaml(text: &str) -> Result<File, Error> {
    serde_saphyr::from_str(text).map_err(|e| Error::Parse(secrets::parse_error(text, &e)))
}

impl TryFrom<File> for Config {
    type Error = Error;

    fn try_from(mut f: File) -> Result<Self, Error> {
        if f.tls.is_none() && f.listeners.is_none() {
            return Err(Error::invalid("tls", "is required"));
        }
        let mode = policy::mode(f.mode.take().as_deref(), f.auth.take())?;
        let verb_mapping = verb_mapping(std::mem::take(&mut f.authorization))?;
        let listeners = listeners::listeners(&mut f, &mode, verb_mapping)?;
        let all_routes: Vec<RouteConfig> =
            listeners.iter().flat_map(|l| l.routes.clone()).collect();
        let first = listeners[0].clone();
        let kubernetes = kubernetes(f.kubernetes, f.token_review, f.access_review)?;
        let cluster_issuer = kubernetes.as_ref().and_then(|k| {
            let jwks = k.token_review.as_ref()?.jwks.as_ref()?;
            jwks.issuer.as_deref()
        });
        let issuers = issuers::issuers(f.authentication, cluster_issuer)?;
        let headers = headers::header_names(f.headers)?;
        rewrites::check_headers(&all_routes, &headers)?;
        let fleet = fleet::fleet(f.fleet, kubernetes.is_some())?;
        Ok(Self {
            listen: first.listen,
            tls: first.tls,
            identity_rules: first.identity_rules,
            static_backend: static_config(f.static_backend.unwrap_or_default())?,
            paths: paths::paths(f.paths, &all_routes)?,
            routes: first.routes,
            headers,
            limits: limits(f.limits)?,
            log: log_config(f.log)?,
            kubernetes,
            issuers,
            admin: admin(f.admin)?,
            migration: policy::migration(f.migration)?,
            mode,
            listeners,
            fleet,
        })
    }
}

/// `authorization:`: how methods become verbs.
fn verb_mapping(a: file::AuthorizationFile) -> Result<VerbMapping, Error> {
    let name = a.verb_mapping.as_deref().unwrap_or(defaults::VERB_MAPPING);
    VerbMapping::from_name(name).ok_or_else(|| {
        Error::invalid(
            "authorization.verb_mapping",
            format!("{name:?} is not kube-apiserver or kube-rbac-proxy"),
        )
    })
}

fn admin(a: file::AdminFile) -> Result<AdminConfig, Error> {
    let listen = match a.listen.as_deref() {
        None => Some(([127, 0, 0, 1], 9090).into()),
        Some("off") => None,
        Some(addr) => Some(addr.parse().map_err(|_| {
            Error::invalid(
                "admin.listen",
                format!("{addr:?} is not an address like 127.0.0.1:9090, or off"),
            )
        })?),
    };
    let access = match a.access.as_deref() {
        None | Some("loopback") => AdminAccess::Loopback,
        Some("authorized") => AdminAccess::Authorized,
        Some(other) => {
            return Err(Error::invalid(
                "admin.access",
                format!("{other:?} is not loopback or authorized"),
            ));
        }
    };
    if access == AdminAccess::Authorized && !a.tls {
        return Err(Error::invalid(
            "admin.access",
            "authorized needs admin.tls: true (credentials must not travel in clear text)",
        ));
    }
    let max_connections = a.max_connections.unwrap_or(defaults::ADMIN_MAX_CONNECTIONS);
    if max_connections == 0 {
        return Err(Error::invalid(
            "admin.max_connections",
            "must be at least 1",
        ));
    }
    Ok(AdminConfig {
        listen,
        access,
        tls: a.tls,
        api_ready_window: duration(
            "admin.api_ready_window",
            a.api_ready_window,
            defaults::API_READY_WINDOW,
        )?,
        max_connections,
    })
}

fn duration(
    key: &str,
    v: Option<file::HumanDuration>,
    default: Duration,
) -> Result<Duration, Error> {
    match v {
        None => Ok(default),
        Some(file::HumanDuration(v)) if v.is_zero() => {
            Err(Error::invalid(key, "must be greater than zero"))
        }
        Some(file::HumanDuration(v)) => Ok(v),
    }
}

fn kubernetes(
    k: Option<file::KubernetesFile>,
    tr: file::TokenReviewFile,
    ar: file::AccessReviewFile,
) -> Result<Option<KubernetesConfig>, Error> {
    let Some(k) = k else {
        for (key, on) in [
            ("token_review.enabled", tr.enabled),
            ("token_review.jwks.enabled", tr.jwks.enabled),
            ("access_review.enabled", ar.enabled),
        ] {
            if on == Some(true) {
                return Err(Error::invalid(key, "needs a kubernetes section"));
            }
        }
        return Ok(None);
    };
    let max_in_flight = k.max_in_flight.unwrap_or(defaults::API_MAX_IN_FLIGHT);
    if max_in_flight == 0 {
        return Err(Error::invalid(
            "kubernetes.max_in_flight",
            "must be at least 1",
        ));
    }
    let qps = k.qps.unwrap_or(defaults::API_QPS);
    if !(qps.is_finite() && qps > 0.0) {
        return Err(Error::invalid(
            "kubernetes.qps",
            "must be a positive number",
        ));
    }
    let burst = k.burst.unwrap_or(defaults::API_BURST);
    if burst == 0 {
        return Err(Error::invalid("kubernetes.burst", "must be at least 1"));
    }
    let token_review = token_review(tr)?;
    let access_review = if ar.enabled.unwrap_or(true) {
        let c = ar.cache;
        Some(AccessReviewConfig {
            max_entries: c.max_entries.unwrap_or(defaults::ACCESS_CACHE_ENTRIES),
            allow_ttl: duration(
                "access_review.cache.allow_ttl",
                c.allow_ttl,
                defaults::ALLOW_TTL,
            )?,
            deny_ttl: duration(
                "access_review.cache.deny_ttl",
                c.deny_ttl,
                defaults::DENY_TTL,
            )?,
            freshness: freshness("access_review.cache", c.refresh_ahead, c.jitter)?,
        })
    } else {
        None
    };
    Ok(Some(KubernetesConfig {
        kubeconfig: k.kubeconfig,
        timeout: duration("kubernetes.timeout", k.timeout, defaults::API_TIMEOUT)?,
        max_in_flight,
        qps,
        burst,
        token_review,
        access_review,
    }))
}

/// `<section>.refresh_ahead` and `<section>.jitter`: fractions in `[0, 0.5]`.
fn freshness(
    section: &'static str,
    refresh_ahead: Option<f64>,
    jitter: Option<f64>,
) -> Result<Freshness, Error> {
    let fraction = |name: &'static str, v: Option<f64>, default: f64| match v {
        None => Ok(default),
        Some(f) if (0.0..=0.5).contains(&f) => Ok(f),
        Some(_) => Err(Error::invalid(
            format!("{section}.{name}"),
            "must be a fraction from 0 to 0.5",
        )),
    };
    Ok(Freshness {
        refresh_ahead: fraction("refresh_ahead", refresh_ahead, defaults::REFRESH_AHEAD)?,
        jitter: fraction("jitter", jitter, defaults::JITTER)?,
    })
}

/// `token_review:` (with its `jwks:`) of a configured `kubernetes` section.
fn token_review(tr: file::TokenReviewFile) -> Result<Option<TokenReviewConfig>, Error> {
    Ok(if tr.enabled.unwrap_or(true) {
        let c = tr.cache;
        if tr.audiences.iter().any(String::is_empty) {
            return Err(Error::invalid(
                "token_review.audiences",
                "must not contain an empty audience",
            ));
        }
        let max_entries = c.max_entries.unwrap_or(defaults::TOKEN_CACHE_ENTRIES);
        let jwks = jwks::jwks(tr.jwks, &tr.audiences, max_entries)?;
        Some(TokenReviewConfig {
            audiences: tr.audiences,
            max_entries,
            ttl: duration("token_review.cache.ttl", c.ttl, defaults::TOKEN_TTL)?,
            failure_ttl: duration(
                "token_review.cache.failure_ttl",
                c.failure_ttl,
                defaults::TOKEN_FAILURE_TTL,
            )?,
            max_misses_per_client: tr
                .max_misses_per_client
                .unwrap_or(defaults::TOKEN_MISSES_PER_CLIENT),
            freshness: freshness("token_review.cache", c.refresh_ahead, c.jitter)?,
            jwks,
        })
    } else {
        jwks::refuse_without_token_review(&tr.jwks)?;
        None
    })
}

/// `routes[].upgrades`: HTTP tokens, lower-cased; never `h2c`.
fn upgrades(key: &str, list: Option<Vec<String>>) -> Result<Vec<String>, Error> {
    let list = list.unwrap_or_else(|| defaults::UPGRADES.iter().map(|s| (*s).to_owned()).collect());
    list.into_iter()
        .enumerate()
        .map(|(i, p)| {
            let k = format!("{key}[{i}]");
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~/".contains(c);
            if p.is_empty() || !p.chars().all(token) {
                return Err(Error::invalid(k, format!("{p:?} is not a protocol name")));
            }
            if p.eq_ignore_ascii_case("h2c") {
                return Err(Error::invalid(
                    k,
                    "h2c is not an upgrade over TLS (HTTP/2 is negotiated by ALPN)",
                ));
            }
            Ok(p.to_ascii_lowercase())
        })
        .collect()
}

fn tls_config(t: file::TlsFile) -> Result<TlsConfig, Error> {
    let min_version = match t.min_version.as_deref() {
        None | Some("1.2") => TlsVersion::Tls12,
        Some("1.3") => TlsVersion::Tls13,
        Some(other) => {
            return Err(Error::invalid(
                "tls.min_version",
                format!("{other:?} is not \"1.2\" or \"1.3\""),
            ));
        }
    };
    if !t.crl_files.is_empty() && t.client_ca_file.is_none() {
        return Err(Error::invalid(
            "tls.crl_files",
            "needs tls.client_ca_file (CRLs apply to client certificates)",
        ));
    }
    Ok(TlsConfig {
        cert_file: t.cert_file,
        key_file: t.key_file,
        client_ca_file: t.client_ca_file,
        crl_files: t.crl_files,
        allow_unknown_revocation: t.allow_unknown_revocation,
        allow_stale_crl: t.allow_stale_crl.unwrap_or(defaults::ALLOW_STALE_CRL),
        min_version,
        reload_interval: duration(
            "tls.reload_interval",
            t.reload_interval,
            defaults::TLS_RELOAD_INTERVAL,
        )?,
        rule_ca_files: Vec::new(),
        http2: t.http2.unwrap_or(defaults::TLS_HTTP2),
        self_signed: t.self_signed.map(std::sync::Arc::new),
    })
}

pub(super) fn glob(key: &str, pattern: &str, literal_separator: bool) -> Result<Glob, Error> {
    GlobBuilder::new(pattern)
        .literal_separator(literal_separator)
        .build()
        .map_err(|e| Error::invalid(key, format!("invalid glob {pattern:?}: {}", e.kind())))
}

fn static_config(s: file::StaticFile) -> Result<StaticConfig, Error> {
    let mut seen = HashSet::new();
    let mut tokens = Vec::with_capacity(s.tokens.len());
    for (i, t) in s.tokens.into_iter().enumerate() {
        let key = format!("static.tokens[{i}]");
        let sha256 = match (&t.token, &t.token_sha256) {
            (Some(tok), None) => {
                let tok = tok.expose_secret();
                if tok.is_empty() {
                    return Err(Error::invalid(format!("{key}.token"), "must not be empty"));
                }
                // The reason only: the value is a secret.
                if !is_token68(tok) {
                    return Err(Error::invalid(
                        format!("{key}.token"),
                        "is not a bearer token: only letters, digits, '-', '.', '_', '~', '+', '/' \
                         and trailing '=' can be sent (RFC 6750)",
                    ));
                }
                Sha256::digest(tok.as_bytes()).into()
            }
            (None, Some(hex)) => parse_sha256(&format!("{key}.token_sha256"), hex)?,
            _ => {
                return Err(Error::invalid(
                    key,
                    "needs exactly one of token and token_sha256",
                ));
            }
        };
        if !seen.insert(sha256) {
            return Err(Error::invalid(key, "duplicates an earlier token"));
        }
        if t.user.is_empty() {
            return Err(Error::invalid(format!("{key}.user"), "must not be empty"));
        }
        tokens.push(StaticToken {
            sha256,
            user: t.user,
            uid: t.uid,
            groups: t.groups,
        });
    }
    let allow = s
        .allow
        .into_iter()
        .enumerate()
        .map(|(i, a)| allow_rule(&format!("static.allow[{i}]"), a))
        .collect::<Result<_, _>>()?;
    Ok(StaticConfig { tokens, allow })
}

/// RFC 6750 `b64token` (RFC 7235 token68), what `authn::bearer` accepts:
/// a token outside it could never be presented.
fn is_token68(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fn parse_sha256(key: &str, text: &str) -> Result<[u8; 32], Error> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out)
        .map_err(|_| Error::invalid(key, "must be 64 hexadecimal characters"))?;
    Ok(out)
}

fn allow_rule(key: &str, a: file::AllowFile) -> Result<AllowRule, Error> {
    let subject = match (a.user, a.group) {
        (Some(u), None) => Subject::User(u),
        (None, Some(g)) => Subject::Group(g),
        _ => return Err(Error::invalid(key, "needs exactly one of user and group")),
    };
    if a.verbs.is_empty() {
        return Err(Error::invalid(format!("{key}.verbs"), "must not be empty"));
    }
    if a.paths.is_empty() == a.resources.is_empty() {
        return Err(Error::invalid(
            key,
            "needs exactly one of paths and resources",
        ));
    }
    let paths = a
        .paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let k = format!("{key}.paths[{i}]");
            match p.as_str() {
                // RBAC's `*`: every non-resource URL (`**` has meant that too).
                "*" | "**" => glob(&k, "**", true),
                _ => paths::path_glob(&k, p),
            }
        })
        .collect::<Result<_, _>>()?;
    let any = |v: Option<String>| v.filter(|s| s != "*");
    let resources = a
        .resources
        .into_iter()
        .map(|r| ResourceRule {
            group: any(r.group),
            resource: any(r.resource),
            subresource: any(r.subresource),
            namespace: any(r.namespace),
            name: any(r.name),
        })
        .collect();
    Ok(AllowRule {
        subject,
        verbs: a.verbs,
        paths,
        resources,
    })
}

fn routes(
    rs: Vec<file::RouteFile>,
    mode: &Mode,
    verb_mapping: VerbMapping,
) -> Result<Vec<RouteConfig>, Error> {
    if rs.is_empty() {
        return match mode {
            // A check endpoint needs no upstream: one default route covers all.
            Mode::Auth(_) => Ok(vec![RouteConfig {
                path_prefix: "/".into(),
                upstream: None,
                resources: Vec::new(),
                rewrites: None,
                auth: RouteAuth::default(),
                upgrades: upgrades("routes", None)?,
                upgrades_on_public_paths: false,
                verb_mapping,
            }]),
            Mode::Proxy => Err(Error::invalid("routes", "needs at least one route")),
        };
    }
    let mut seen = HashSet::new();
    rs.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let key = format!("routes[{i}]");
            let path_prefix = normalize_prefix(&r.path_prefix)
                .map_err(|why| Error::invalid(format!("{key}.path_prefix"), why))?;
            if !seen.insert(path_prefix.clone()) {
                return Err(Error::invalid(
                    format!("{key}.path_prefix"),
                    format!("{path_prefix:?} is already used by an earlier route"),
                ));
            }
            let upstream = match (&r.upstream, mode) {
                (Some(u), Mode::Proxy) => Some(upstream::upstream(&key, &r, u)?),
                (None, Mode::Proxy) => {
                    return Err(Error::invalid(format!("{key}.upstream"), "is required"));
                }
                (Some(_), Mode::Auth(_)) => {
                    return Err(Error::invalid(
                        format!("{key}.upstream"),
                        "is not used with mode: auth (the front proxy forwards)",
                    ));
                }
                (None, Mode::Auth(_)) => {
                    upstream::no_files(&key, &r)?;
                    None
                }
            };
            // HTTP/2 has no upgrades: an h2c route takes none.
            let h2c = matches!(
                upstream.as_ref().map(|u| &u.target),
                Some(UpstreamTarget::H2c(_))
            );
            let upgrades = match r.upgrades {
                Some(list) if h2c && !list.is_empty() => {
                    return Err(Error::invalid(
                        format!("{key}.upgrades"),
                        "an h2c upstream speaks HTTP/2, which has no protocol upgrades; leave it unset or []",
                    ));
                }
                _ if h2c => Vec::new(),
                list => upgrades(&format!("{key}.upgrades"), list)?,
            };
            let (resources, rewrites) =
                rewrites::route_checks(&key, r.resource, r.rewrites, mode)?;
            Ok(RouteConfig {
                path_prefix,
                upstream,
                resources,
                rewrites,
                auth: policy::route_auth(&format!("{key}.auth"), r.auth)?,
                upgrades,
                upgrades_on_public_paths: r
                    .upgrades_on_public_paths
                    .unwrap_or(defaults::UPGRADES_ON_PUBLIC_PATHS),
                verb_mapping,
            })
        })
        .collect()
}

fn limits(l: file::LimitsFile) -> Result<Limits, Error> {
    let d = Limits::default();
    let positive = |key: &str, v: Option<file::HumanDuration>, default| match v {
        None => Ok(default),
        Some(file::HumanDuration(v)) if v.is_zero() => {
            Err(Error::invalid(key, "must be greater than zero"))
        }
        Some(file::HumanDuration(v)) => Ok(v),
    };
    let at_least_one = |key: &str, v: Option<usize>, default: usize| match v.unwrap_or(default) {
        0 => Err(Error::invalid(key, "must be at least 1")),
        n => Ok(n),
    };
    // `limits.<field>`: the file's value or the default, checked.
    macro_rules! pos {
        ($f:ident) => {
            positive(concat!("limits.", stringify!($f)), l.$f, d.$f)?
        };
    }
    macro_rules! one {
        ($f:ident) => {
            at_least_one(concat!("limits.", stringify!($f)), l.$f, d.$f)?
        };
    }
    let max_connections = one!(max_connections);
    let max_connections_per_ip = one!(max_connections_per_ip);
    let max_handshakes = one!(max_handshakes);
    let max_handshakes_per_ip = one!(max_handshakes_per_ip);
    let max_header_bytes = l.max_header_bytes.unwrap_or(d.max_header_bytes);
    if !(8192..=1024 * 1024).contains(&max_header_bytes) {
        return Err(Error::invalid(
            "limits.max_header_bytes",
            "must be between 8192 and 1048576",
        ));
    }
    Ok(Limits {
        max_connections,
        max_connections_per_ip,
        max_handshakes,
        max_handshakes_per_ip,
        handshake_timeout: pos!(handshake_timeout),
        header_read_timeout: pos!(header_read_timeout),
        upstream_timeout: pos!(upstream_timeout),
        upstream_idle_timeout: pos!(upstream_idle_timeout),
        upstream_max_requests: one!(upstream_max_requests),
        max_header_bytes,
        idle_timeout: pos!(idle_timeout),
        shutdown_timeout: pos!(shutdown_timeout),
        shutdown_delay: l
            .shutdown_delay
            .map_or(d.shutdown_delay, |file::HumanDuration(v)| v),
        tunnel_idle_timeout: pos!(tunnel_idle_timeout),
        max_connection_age: pos!(max_connection_age),
    })
}

fn log_config(l: file::LogFile) -> Result<LogConfig, Error> {
    let format = match l.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(Error::invalid(
                "log.format",
                format!("{other:?} is not text or json"),
            ));
        }
    };
    Ok(LogConfig {
        format,
        level: l.level.unwrap_or_else(|| defaults::LOG_LEVEL.to_owned()),
    })
}

mod fleet;
mod headers;
mod identity;
mod issuers;
mod jwks;
mod listeners;
mod paths;
mod policy;
mod probe;
mod rewrites;
mod secrets;
#[cfg(test)]
mod tests;
mod upstream;
