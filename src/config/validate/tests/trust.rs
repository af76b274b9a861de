//! Configurations that would open the gate to the wrong identity are refused,
//! naming the key and the reason.

use super::{MINIMAL, err};
use crate::config::Config;

/// `mode: auth` with a client CA, so `auth.trusted_proxies` is accepted.
const AUTH_MODE: &str = "tls: {cert_file: c, key_file: k, client_ca_file: ca}\nmode: auth\n";

fn proxies(net: &str) -> String {
    format!("{AUTH_MODE}auth: {{trusted_proxies: [10.0.0.1, \"{net}\"]}}\n")
}

#[test]
fn trusted_proxies_that_trust_everyone_or_a_continent_are_refused() {
    const V4_PRIVATE: &str = "wider than /16";
    const V4_PUBLIC: &str = "wider than /24";
    const V6_ULA: &str = "wider than /48";
    const V6_PUBLIC: &str = "wider than /64";
    // The refusal states the rule.
    const RULE: &str = "auth.trusted_proxies takes IPv4 /16 or longer in private and loopback space (10/8, 172.16/12, 192.168/16, 100.64/10, 127/8) and IPv4 /24 or longer elsewhere, IPv6 /48 or longer in unique-local (fc00::/7) and loopback space and IPv6 /64 or longer elsewhere";
    let got = err(&proxies("10.0.0.0/8"));
    assert!(got.contains(RULE), "{got}");
    for (net, reason) in [
        ("0.0.0.0/0", "trusts every address"),
        ("::/0", "trusts every address"),
        ("0.0.0.0/1", V4_PUBLIC),
        ("128.0.0.0/1", V4_PUBLIC),
        ("10.0.0.0/7", V4_PUBLIC),
        // Whole private networks: a cluster's every pod and node.
        ("10.0.0.0/8", V4_PRIVATE),
        ("10.0.0.0/15", V4_PRIVATE),
        ("172.16.0.0/12", V4_PRIVATE),
        ("100.64.0.0/10", V4_PRIVATE),
        ("127.0.0.0/8", V4_PRIVATE),
        // Public ranges: someone else's network.
        ("0.0.0.0/8", V4_PUBLIC),
        ("1.0.0.0/8", V4_PUBLIC),
        ("8.8.0.0/16", V4_PUBLIC),
        ("100.0.0.0/8", V4_PUBLIC),
        ("172.15.0.0/16", V4_PUBLIC),
        ("192.168.0.0/15", V4_PUBLIC),
        ("203.0.112.0/23", V4_PUBLIC),
        ("::/1", V6_PUBLIC),
        ("2000::/3", V6_PUBLIC),
        ("2000::/8", V6_PUBLIC),
        ("2001::/16", V6_PUBLIC),
        ("2600::/12", V6_PUBLIC),
        ("2001:db8::/32", V6_PUBLIC),
        ("2001:db8::/63", V6_PUBLIC),
        ("fe80::/10", V6_PUBLIC),
        ("fe00::/7", V6_PUBLIC),
        ("fc00::/7", V6_ULA),
        ("fd00::/8", V6_ULA),
        ("fd00:1::/47", V6_ULA),
        ("::ffff:10.0.0.1", "IPv4-mapped"),
        ("::ffff:0.0.0.0/96", "IPv4-mapped"),
    ] {
        let got = err(&proxies(net));
        assert!(
            got.starts_with("auth.trusted_proxies[1]: ")
                && got.contains(reason)
                && got.contains(&format!("{net:?}")),
            "{net}: {got}"
        );
    }
    for net in [
        "10.0.0.0/16",
        "10.42.7.0/24",
        "172.16.0.0/16",
        "172.31.255.0/24",
        "192.168.0.0/16",
        "100.64.0.0/16",
        "127.0.0.0/16",
        "127.0.0.1",
        "198.51.100.0/24",
        "203.0.113.7",
        "::1",
        "fd00:1:2::/48",
        "fc00::/48",
        "2001:db8:1:2::/64",
        "2001:db8::1",
    ] {
        if let Err(e) = Config::from_yaml(&proxies(net)) {
            panic!("{net}: {e}");
        }
    }
}

/// Framing, hop-by-hop, routing and credential headers: an identity header
/// of one of these names would smuggle a request or forge a hop.
const UNSAFE_NAMES: &[&str] = &[
    "content-length",
    "Transfer-Encoding",
    "host",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "authorization",
    "cookie",
    "expect",
    "forwarded",
    "x-forwarded-for",
    "X-Forwarded-Host",
    "x-forwarded-proto",
    "x-forwarded-client-cert",
    "impersonate-user",
    "x-original-uri",
    "x-original-method",
];

#[test]
fn identity_headers_that_frame_route_or_carry_credentials_are_refused() {
    for key in ["user", "group", "uid"] {
        for name in UNSAFE_NAMES {
            let got = err(&format!("{MINIMAL}headers: {{{key}: \"{name}\"}}\n"));
            assert!(
                got.starts_with(&format!("headers.{key}: "))
                    && got.contains(&name.to_ascii_lowercase())
                    && got.contains("must not be"),
                "{key} = {name}: {got}"
            );
        }
        // Read with `_` as `-` (as CGI, WSGI, Rack and PHP read it).
        for name in UNSAFE_NAMES.iter().filter(|n| n.contains('-')) {
            let folded = name.replace('-', "_");
            let got = err(&format!("{MINIMAL}headers: {{{key}: \"{folded}\"}}\n"));
            assert!(
                got.starts_with(&format!("headers.{key}: "))
                    && got.contains(&folded.to_ascii_lowercase())
                    && got.contains("must not be"),
                "{key} = {folded}: {got}"
            );
        }
        let got = err(&format!("{MINIMAL}headers: {{{key}: \":authority\"}}\n"));
        assert!(got.starts_with(&format!("headers.{key}: ")), "{got}");
    }
}

#[test]
fn an_extra_prefix_that_is_empty_or_covers_an_unsafe_header_is_refused() {
    for prefix in [
        "",
        "x-",
        "X-Forwarded-",
        "content-",
        "impersonate-",
        "proxy-",
        "t",
        "x-original-",
        "x_",
        "X_Forwarded_",
        "content_",
        "impersonate_",
        "x_original_",
    ] {
        let got = err(&format!(
            "{MINIMAL}headers: {{extra_prefix: \"{prefix}\"}}\n"
        ));
        assert!(
            got.starts_with("headers.extra_prefix: "),
            "{prefix:?}: {got}"
        );
    }
    let got = err(&format!("{MINIMAL}headers: {{extra_prefix: \"\"}}\n"));
    assert!(got.contains("must not be empty"), "{got}");
}

#[test]
fn two_identity_headers_with_one_name_are_refused() {
    for (headers, key) in [
        ("{user: X-Id, group: x-id}", "headers.group"),
        ("{uid: X-Remote-User}", "headers.uid"),
        ("{group: x-remote-uid, uid: X-Remote-Uid}", "headers.uid"),
        // An extra key `user` would become the user header.
        ("{extra_prefix: X-Remote-}", "headers.extra_prefix"),
        ("{user: x-remote-extra-user}", "headers.extra_prefix"),
        // One name to CGI, WSGI, Rack and PHP, which read `_` as `-`.
        ("{user: x-user, group: x_user}", "headers.group"),
        ("{user: x_user, group: x-user}", "headers.group"),
        ("{uid: x_remote_user}", "headers.uid"),
        ("{group: X_Remote_Uid}", "headers.uid"),
        (
            "{user: x-extra-user, extra_prefix: x_extra_}",
            "headers.extra_prefix",
        ),
        (
            "{user: x_extra_user, extra_prefix: x-extra-}",
            "headers.extra_prefix",
        ),
        ("{user: x_remote_extra_user}", "headers.extra_prefix"),
    ] {
        let got = err(&format!("{MINIMAL}headers: {headers}\n"));
        assert!(got.starts_with(&format!("{key}: ")), "{headers}: {got}");
    }
    let ok = format!(
        "{MINIMAL}headers: {{user: X-Auth-User, group: X-Auth-Groups, uid: X-Auth-Uid, extra_prefix: X-Auth-Extra-}}\n"
    );
    if let Err(e) = Config::from_yaml(&ok) {
        panic!("{e}");
    }
}

#[test]
fn unauthenticated_paths_that_cover_every_path_are_refused() {
    let with = |paths: &str| format!("{MINIMAL}paths: {{unauthenticated: {paths}}}\n");
    for (paths, key) in [
        ("[\"/**\"]", "paths.unauthenticated[0]"),
        ("[/healthz, \"/**\"]", "paths.unauthenticated[1]"),
        ("[\"/**/*\"]", "paths.unauthenticated[0]"),
        // Together, though no single glob does.
        ("[\"/\", \"/*\", \"/*/**\"]", "paths.unauthenticated"),
        // Everything but the bare prefix is as good as everything.
        ("[\"/**/?*\"]", "paths.unauthenticated[0]"),
        ("[\"/?*/**\", \"/?*\"]", "paths.unauthenticated"),
        ("[\"/*/**\", \"/?*\"]", "paths.unauthenticated"),
        ("[\"/[!Q]*\", \"/[!Q]*/**\"]", "paths.unauthenticated"),
    ] {
        let got = err(&with(paths));
        assert!(
            got.starts_with(&format!("{key}: ")) && got.contains("every path"),
            "{paths}: {got}"
        );
    }
    // Every path the only route serves is as good as every path.
    let only_api = "tls: {cert_file: c, key_file: k}\nroutes: [{path_prefix: /api, upstream: \"http://127.0.0.1:8080\"}]\npaths: {unauthenticated: [/api, \"/api/**\"]}\n";
    let got = err(only_api);
    assert!(
        got.starts_with("paths.unauthenticated") && got.contains("every path"),
        "{got}"
    );
    // A whole second route made public: its upstream never sees an identity.
    let two = "tls: {cert_file: c, key_file: k}\nroutes: [{path_prefix: /, upstream: \"http://127.0.0.1:8080\"}, {path_prefix: /admin, upstream: \"http://127.0.0.1:8081\"}]\n";
    for paths in [
        "[/admin, \"/admin/**\"]",
        "[\"/admin/**\"]",
        "[\"/admin/?*\", \"/admin/*/**\"]",
    ] {
        let got = err(&format!("{two}paths: {{unauthenticated: {paths}}}\n"));
        assert!(
            got.starts_with("paths.unauthenticated") && got.contains("/admin"),
            "{paths}: {got}"
        );
    }
    for paths in [
        "[\"/admin/healthz\"]",
        "[\"/admin/public/**\", /healthz]",
        "[\"/api/**\", \"/apis/**\"]",
    ] {
        if let Err(e) = Config::from_yaml(&format!("{two}paths: {{unauthenticated: {paths}}}\n")) {
            panic!("{paths}: {e}");
        }
    }
    for paths in [
        "[/healthz, /readyz]",
        "[/healthz, /readyz, /livez, \"/healthz/**\", /metrics, \"/.well-known/**\"]",
        // One segment deep (`*` does not cross `/`): /api/v1/... stays guarded.
        "[\"/*\"]",
        "[\"/?*\"]",
        "[\"/public/**\"]",
    ] {
        if let Err(e) = Config::from_yaml(&with(paths)) {
            panic!("{paths}: {e}");
        }
    }
    // An allow-list that allows everything closes nothing and is accepted.
    let all = format!("{MINIMAL}paths: {{allow: [\"/**\"]}}\n");
    if let Err(e) = Config::from_yaml(&all) {
        panic!("{e}");
    }
}

#[test]
fn mtls_required_globs_that_pin_everyone_are_refused() {
    let with = |globs: &str| format!("{MINIMAL}migration: {{mtls_required: {globs}}}\n");
    for glob in [
        "*",
        "**",
        "?*",
        "[a-z]*",
        "{*}",
        "system:*",
        "*:*",
        "s*",
        "system:authenticated",
        "system:auth*",
    ] {
        let got = err(&with(&format!("[alice, \"{glob}\"]")));
        assert!(
            got.starts_with("migration.mtls_required[1]: ") && got.contains(glob),
            "{glob}: {got}"
        );
    }
    let got = err(&with(
        "[\"[a-m]*\", x, \"system:serviceaccount:*\", \"system:node:*\", \"system:kube-*\"]",
    ));
    assert!(
        got.starts_with("migration.mtls_required: "),
        "together: {got}"
    );
    for globs in [
        "[alice, dev]",
        "[\"system:serviceaccount:monitoring:*\"]",
        "[\"system:serviceaccount:*\"]",
        "[\"system:nodes\"]",
    ] {
        if let Err(e) = Config::from_yaml(&with(globs)) {
            panic!("{globs}: {e}");
        }
    }
}

#[test]
fn identity_rules_must_say_whose_names_they_trust() {
    let with = |rules: &str| format!("{MINIMAL}identity: {{rules: {rules}}}\n");
    let ca = "tls: {cert_file: c, key_file: k, client_ca_file: ca}\nroutes: [{path_prefix: /, upstream: \"http://127.0.0.1:1\"}]\n";
    for (yaml, key, reason) in [
        // Any trust domain: any issuer's spiffe:// URI is a ServiceAccount.
        (
            with("[{spiffe: {}}]"),
            "identity.rules[0].spiffe.trust_domain",
            "is required",
        ),
        (
            with("[{common_name: {}}, {spiffe: {}}]"),
            "identity.rules[1].spiffe.trust_domain",
            "is required",
        ),
        (
            with("[{common_name: {}, spiffe: {trust_domain: td}}]"),
            "identity.rules[0]",
            "exactly one of spiffe, common_name, san",
        ),
        (with("[{}]"), "identity.rules[0]", "exactly one of"),
        (with("[]"), "identity.rules", "is empty"),
        // A rule bound to an issuer, without any client CA to narrow.
        (
            with("[{common_name: {}, ca_file: cn-ca.pem}]"),
            "identity.rules[0].ca_file",
            "needs tls.client_ca_file",
        ),
        (
            format!("{ca}identity: {{rules: [{{common_name: {{}}, ca_file: \"\"}}]}}\n"),
            "identity.rules[0].ca_file",
            "must not be empty",
        ),
    ] {
        let got = err(&yaml);
        assert!(got.contains(key) && got.contains(reason), "{yaml}\n{got}");
    }
    // Bound rules load their files with the TLS material.
    let c = Config::from_yaml(&format!(
        "{ca}identity: {{rules: [{{spiffe: {{trust_domain: td}}, ca_file: s.pem}}, {{common_name: {{}}}}]}}\n"
    ))
    .unwrap();
    assert_eq!(
        c.tls.rule_ca_files,
        [Some(std::path::PathBuf::from("s.pem")), None]
    );
}
