//! `mode`, `auth`, `routes[].auth` and `migration`: who may use which
//! credential where.

use globset::Glob;
use http::HeaderName;

use super::{glob, probe};
use crate::config::file::{AuthEndpointFile, MigrationFile, PinFile, RouteAuthFile};
use crate::config::{AuthEndpoint, Error, MigrationConfig, Mode, RouteAuth, TokenPolicy, defaults};
use crate::identity::AUTHENTICATED_GROUP;
use crate::routes::normalize_prefix;

pub(super) fn mode(mode: Option<&str>, auth: Option<AuthEndpointFile>) -> Result<Mode, Error> {
    match (mode, auth) {
        (None | Some("proxy"), None) => Ok(Mode::Proxy),
        (None | Some("proxy"), Some(_)) => Err(Error::invalid("auth", "needs mode: auth")),
        (Some("auth"), a) => auth_endpoint(a.unwrap_or_default()).map(Mode::Auth),
        (Some(other), _) => Err(Error::invalid(
            "mode",
            format!("{other:?} is not proxy or auth"),
        )),
    }
}

fn auth_endpoint(a: AuthEndpointFile) -> Result<AuthEndpoint, Error> {
    let path = match a.path.as_deref() {
        None => "/auth".to_owned(),
        Some(p) => normalize_prefix(p).map_err(|why| Error::invalid("auth.path", why))?,
    };
    if path == "/" {
        return Err(Error::invalid("auth.path", "must not be /"));
    }
    let trusted_proxies = a
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, p)| trusted_proxy(&format!("auth.trusted_proxies[{i}]"), p))
        .collect::<Result<Vec<_>, _>>()?;
    let name = a
        .cert_header
        .as_deref()
        .unwrap_or(defaults::AUTH_CERT_HEADER);
    let cert_header = HeaderName::try_from(name).map_err(|_| {
        Error::invalid("auth.cert_header", format!("{name:?} is not a header name"))
    })?;
    Ok(AuthEndpoint {
        path,
        trusted_proxies,
        cert_header,
    })
}

/// The shortest accepted prefixes. A trusted proxy's forwarded certificate
/// *is* the client's identity, so every address in the list can say who
/// anyone is: a whole private network is every pod and node of a cluster,
/// and a public range is someone else's network.
const V4_PRIVATE_MIN: u8 = 16;
const V4_MIN: u8 = 24;
const V6_PRIVATE_MIN: u8 = 48;
const V6_MIN: u8 = 64;

/// IPv4 private (RFC 1918), shared (RFC 6598) and loopback space, where a
/// /16 may be one cluster's proxies.
const V4_PRIVATE: [ipnet::Ipv4Net; 5] = [
    ipnet::Ipv4Net::new_assert(std::net::Ipv4Addr::new(10, 0, 0, 0), 8),
    ipnet::Ipv4Net::new_assert(std::net::Ipv4Addr::new(172, 16, 0, 0), 12),
    ipnet::Ipv4Net::new_assert(std::net::Ipv4Addr::new(192, 168, 0, 0), 16),
    ipnet::Ipv4Net::new_assert(std::net::Ipv4Addr::new(100, 64, 0, 0), 10),
    ipnet::Ipv4Net::new_assert(std::net::Ipv4Addr::new(127, 0, 0, 0), 8),
];

/// IPv6 unique-local (fc00::/7) and loopback space.
const V6_PRIVATE: [ipnet::Ipv6Net; 2] = [
    ipnet::Ipv6Net::new_assert(std::net::Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
    ipnet::Ipv6Net::new_assert(std::net::Ipv6Addr::LOCALHOST, 128),
];

/// The rule, as the refusal states it.
const RULE: &str = "auth.trusted_proxies takes IPv4 /16 or longer in private and loopback space \
    (10/8, 172.16/12, 192.168/16, 100.64/10, 127/8) and IPv4 /24 or longer elsewhere, \
    IPv6 /48 or longer in unique-local (fc00::/7) and loopback space and IPv6 /64 or longer elsewhere";

/// One `auth.trusted_proxies` entry: an address, or a CIDR no wider than
/// [`RULE`] allows; not IPv4-mapped IPv6.
fn trusted_proxy(key: &str, p: &str) -> Result<ipnet::IpNet, Error> {
    let net = p
        .parse::<ipnet::IpNet>()
        .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| Error::invalid(key, format!("{p:?} is not an IP address or CIDR")))?;
    if net.prefix_len() == 0 {
        return Err(Error::invalid(
            key,
            format!(
                "{p:?} trusts every address to vouch for client certificates; name the proxies"
            ),
        ));
    }
    let min = match net {
        ipnet::IpNet::V4(v4) if V4_PRIVATE.iter().any(|r| r.contains(&v4)) => V4_PRIVATE_MIN,
        ipnet::IpNet::V4(_) => V4_MIN,
        ipnet::IpNet::V6(v6) if V6_PRIVATE.iter().any(|r| r.contains(&v6)) => V6_PRIVATE_MIN,
        ipnet::IpNet::V6(_) => V6_MIN,
    };
    if net.prefix_len() < min {
        return Err(Error::invalid(
            key,
            format!(
                "{p:?} is wider than /{min}: it trusts strangers to vouch for client certificates; \
                 name the proxies ({RULE})"
            ),
        ));
    }
    if let ipnet::IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.network().to_ipv4_mapped()
    {
        // Peers are compared in their IPv4 form, so this would match nobody.
        return Err(Error::invalid(
            key,
            format!("{p:?} is IPv4-mapped, and peers are matched as IPv4: write {v4} or its CIDR"),
        ));
    }
    Ok(net)
}

pub(super) fn route_auth(key: &str, a: Option<RouteAuthFile>) -> Result<RouteAuth, Error> {
    let Some(a) = a else {
        return Ok(RouteAuth::default());
    };
    let (mut mtls, mut token) = (true, true);
    if let Some(methods) = a.methods {
        (mtls, token) = (false, false);
        for (i, m) in methods.iter().enumerate() {
            match m.as_str() {
                "mtls" => mtls = true,
                "token" => token = true,
                _ => {
                    return Err(Error::invalid(
                        format!("{key}.methods[{i}]"),
                        format!("{m:?} is not mtls or token"),
                    ));
                }
            }
        }
        if !mtls && !token {
            return Err(Error::invalid(
                format!("{key}.methods"),
                "must name mtls, token or both",
            ));
        }
    }
    let policy = match a.token.as_deref() {
        None | Some("allowed") => TokenPolicy::Allowed,
        Some("deprecated") => TokenPolicy::Deprecated,
        Some("forbidden") => TokenPolicy::Forbidden,
        Some(other) => {
            return Err(Error::invalid(
                format!("{key}.token"),
                format!("{other:?} is not allowed, deprecated or forbidden"),
            ));
        }
    };
    if !token && policy != TokenPolicy::Allowed {
        return Err(Error::invalid(
            format!("{key}.token"),
            "has no effect: methods leaves out token",
        ));
    }
    if !mtls && policy == TokenPolicy::Forbidden {
        return Err(Error::invalid(
            format!("{key}.token"),
            "forbidden leaves the route with no method (methods is [token])",
        ));
    }
    let token = if token {
        policy
    } else {
        TokenPolicy::Forbidden
    };
    let enforce = a.enforce.unwrap_or(true);
    // A dry run shadows closing a route to tokens, the one lever of a
    // token-to-mTLS move; anything else it would shadow is not a refusal
    // the same request set could be replayed against.
    let closed = mtls && token == TokenPolicy::Forbidden;
    if !enforce && !closed {
        return Err(Error::invalid(
            format!("{key}.enforce"),
            "false has no effect: only a route closed to tokens (methods: [mtls] or token: forbidden) can be dry-run",
        ));
    }
    Ok(RouteAuth {
        mtls,
        token,
        enforce,
    })
}

pub(super) fn migration(m: MigrationFile) -> Result<MigrationConfig, Error> {
    let pins = m
        .mtls_required
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (g, enforce, key) = match p {
                PinFile::Glob(g) => (g, true, format!("migration.mtls_required[{i}]")),
                PinFile::Entry(e) => (
                    &e.glob,
                    e.enforce.unwrap_or(true),
                    format!("migration.mtls_required[{i}].glob"),
                ),
            };
            if g.is_empty() {
                return Err(Error::invalid(key, "must not be empty"));
            }
            let glob = glob(&key, g, false)?;
            refuse_pinning_everyone(&key, &glob)?;
            Ok((glob, enforce))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Dry-run entries obey the same rules: switching one to enforce must
    // not be what pins everyone.
    let all: Vec<Glob> = pins.iter().map(|(g, _)| g.clone()).collect();
    let (enforced, dry_run): (Vec<_>, Vec<_>) = pins.into_iter().partition(|(_, e)| *e);
    let mtls_required: Vec<Glob> = enforced.into_iter().map(|(g, _)| g).collect();
    let mtls_required_dry_run: Vec<Glob> = dry_run.into_iter().map(|(g, _)| g).collect();
    if all.len() > 1 && probe::pins_all(&all, &probe::identities()) {
        return Err(Error::invalid(
            "migration.mtls_required",
            "together the globs match every identity; name users or groups",
        ));
    }
    let max_identities = m
        .max_identities
        .unwrap_or(defaults::MIGRATION_MAX_IDENTITIES);
    if max_identities == 0 || max_identities > 100_000 {
        return Err(Error::invalid(
            "migration.max_identities",
            format!("{max_identities} is not between 1 and 100000"),
        ));
    }
    Ok(MigrationConfig {
        mtls_required,
        mtls_required_dry_run,
        track_identities: m.track_identities,
        max_identities,
    })
}

/// Refuses a glob that pins every identity, names `system:authenticated`
/// (which every identity has), or pins every system identity.
fn refuse_pinning_everyone(key: &str, glob: &Glob) -> Result<(), Error> {
    let g = glob.glob();
    let one = std::slice::from_ref(glob);
    let why = if probe::pins_all(one, &probe::identities()) {
        "matches every identity; name users or groups"
    } else if glob.compile_matcher().is_match(AUTHENTICATED_GROUP) {
        "matches system:authenticated, the group of every identity; name users or groups"
    } else if probe::pins_all(one, &probe::system_identities()) {
        "matches every system identity (ServiceAccounts, nodes, control-plane components); name them"
    } else {
        return Ok(());
    };
    Err(Error::invalid(key, format!("{g:?} {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(methods: Option<&[&str]>, token: Option<&str>) -> Result<RouteAuth, String> {
        let f = RouteAuthFile {
            methods: methods.map(|m| m.iter().map(|s| (*s).to_owned()).collect()),
            token: token.map(str::to_owned),
            enforce: None,
        };
        route_auth("routes[0].auth", Some(f)).map_err(|e| e.to_string())
    }

    #[test]
    fn route_auth_combinations() {
        use TokenPolicy::*;
        let ok = |mtls, token| {
            Ok(RouteAuth {
                mtls,
                token,
                enforce: true,
            })
        };
        assert_eq!(auth(None, None), ok(true, Allowed));
        assert_eq!(auth(None, Some("deprecated")), ok(true, Deprecated));
        assert_eq!(auth(None, Some("forbidden")), ok(true, Forbidden));
        assert_eq!(auth(Some(&["mtls"]), None), ok(true, Forbidden));
        assert_eq!(auth(Some(&["token"]), None), ok(false, Allowed));
        assert_eq!(
            auth(Some(&["token"]), Some("deprecated")),
            ok(false, Deprecated)
        );
        assert_eq!(
            auth(Some(&["mtls"]), Some("deprecated")),
            Err("routes[0].auth.token: has no effect: methods leaves out token".into())
        );
        assert_eq!(
            auth(Some(&["token"]), Some("forbidden")),
            Err(
                "routes[0].auth.token: forbidden leaves the route with no method (methods is [token])"
                    .into()
            )
        );
        assert_eq!(
            auth(Some(&[]), None),
            Err("routes[0].auth.methods: must name mtls, token or both".into())
        );
        assert_eq!(
            auth(Some(&["mtls", "basic"]), None),
            Err("routes[0].auth.methods[1]: \"basic\" is not mtls or token".into())
        );
        assert_eq!(
            auth(None, Some("maybe")),
            Err("routes[0].auth.token: \"maybe\" is not allowed, deprecated or forbidden".into())
        );
    }

    #[test]
    fn only_a_route_closed_to_tokens_can_be_dry_run() {
        let dry = |methods: Option<&[&str]>, token: Option<&str>| {
            let f = RouteAuthFile {
                methods: methods.map(|m| m.iter().map(|s| (*s).to_owned()).collect()),
                token: token.map(str::to_owned),
                enforce: Some(false),
            };
            route_auth("routes[0].auth", Some(f)).map_err(|e| e.to_string())
        };
        let closed = Ok(RouteAuth {
            mtls: true,
            token: TokenPolicy::Forbidden,
            enforce: false,
        });
        assert_eq!(dry(Some(&["mtls"]), None), closed);
        assert_eq!(dry(None, Some("forbidden")), closed);
        let lax = closed.map(RouteAuth::in_force);
        assert_eq!(lax, Ok(RouteAuth::default()));
        for (methods, token) in [
            (None, None),
            (None, Some("deprecated")),
            (Some(&["token"][..]), None),
        ] {
            let got = dry(methods, token).unwrap_err();
            assert!(
                got.starts_with("routes[0].auth.enforce: false has no effect"),
                "{got}"
            );
        }
    }

    #[test]
    fn dry_run_pins_are_kept_apart_and_checked_like_the_others() {
        let yaml = "mtls_required: [alice, {glob: \"team-*\", enforce: false}, {glob: bob}]\n";
        let f: MigrationFile = serde_saphyr::from_str(yaml).unwrap();
        let m = migration(f).unwrap();
        let globs = |v: &[Glob]| v.iter().map(|g| g.glob().to_owned()).collect::<Vec<_>>();
        assert_eq!(globs(&m.mtls_required), ["alice", "bob"]);
        assert_eq!(globs(&m.mtls_required_dry_run), ["team-*"]);
        let f: MigrationFile =
            serde_saphyr::from_str("mtls_required: [{glob: \"*\", enforce: false}]\n").unwrap();
        assert_eq!(
            migration(f).unwrap_err().to_string(),
            "migration.mtls_required[0].glob: \"*\" matches every identity; name users or groups"
        );
    }

    #[test]
    fn mode_and_auth_endpoint() {
        assert!(matches!(mode(None, None), Ok(Mode::Proxy)));
        let Ok(Mode::Auth(a)) = mode(Some("auth"), None) else {
            panic!("auth mode expected")
        };
        assert_eq!(a.path, "/auth");
        assert_eq!(a.cert_header, "x-client-cert");
        let bad = AuthEndpointFile {
            trusted_proxies: vec!["10.0.0.0/16".into(), "::1".into(), "nginx".into()],
            ..Default::default()
        };
        assert_eq!(
            mode(Some("auth"), Some(bad)).unwrap_err().to_string(),
            "auth.trusted_proxies[2]: \"nginx\" is not an IP address or CIDR"
        );
        assert_eq!(
            mode(None, Some(AuthEndpointFile::default()))
                .unwrap_err()
                .to_string(),
            "auth: needs mode: auth"
        );
        assert_eq!(
            mode(Some("edge"), None).unwrap_err().to_string(),
            "mode: \"edge\" is not proxy or auth"
        );
    }

    #[test]
    fn migration_refuses_globs_that_pin_everyone() {
        let m = |g: &str| {
            migration(MigrationFile {
                mtls_required: vec![PinFile::Glob(g.into())],
                ..Default::default()
            })
            .map(|c| c.mtls_required.len())
            .map_err(|e| e.to_string())
        };
        assert_eq!(m("system:serviceaccount:monitoring:*"), Ok(1));
        assert_eq!(
            m("*"),
            Err(
                "migration.mtls_required[0]: \"*\" matches every identity; name users or groups"
                    .into()
            )
        );
        assert!(
            m("a[")
                .unwrap_err()
                .starts_with("migration.mtls_required[0]: invalid glob")
        );
    }

    #[test]
    fn probes_pin_as_the_runtime_pins() {
        for g in [
            "*",
            "alice",
            "dev",
            "system:*",
            "system:authenticated",
            "[a-m]*",
        ] {
            let mut b = globset::GlobSetBuilder::new();
            b.add(glob("k", g, false).unwrap());
            let set = b.build().unwrap();
            for id in probe::identities() {
                assert_eq!(
                    probe::pinned(&set, &id),
                    crate::migration::pinned(&set, &id),
                    "{g} {}",
                    id.user()
                );
            }
        }
    }
}
