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
    for (net, reason) in [
        ("0.0.0.0/0", "trusts every address"),
        ("::/0", "trusts every address"),
        ("0.0.0.0/1", "wider than /8"),
        ("128.0.0.0/1", "wider than /8"),
        ("10.0.0.0/7", "wider than /8"),
        ("::/1", "wider than /8"),
        ("2000::/3", "wider than /8"),
        ("fe00::/7", "wider than /8"),
        ("::ffff:10.0.0.1", "IPv4-mapped"),
        ("::ffff:0.0.0.0/96", "IPv4-mapped"),
    ] {
        let got = err(&proxies(net));
        assert!(
            got.starts_with("auth.trusted_proxies[1]: ") && got.contains(reason),
            "{net}: {got}"
        );
    }
    for net in [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.1",
        "::1",
        "fc00::/7",
        "fd00::/8",
        "2001:db8::/32",
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
    for paths in ["[/healthz, /readyz]", "[\"/*\"]", "[\"/public/**\"]"] {
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
