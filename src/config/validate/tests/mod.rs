use super::*;
use std::time::Duration;

const MINIMAL: &str = "tls: {cert_file: c.crt, key_file: k.key}\nroutes: [{path_prefix: /, upstream: \"http://127.0.0.1:8080\"}]\n";

fn err(yaml: &str) -> String {
    Config::from_yaml(yaml).unwrap_err().to_string()
}

#[test]
fn minimal_config_gets_every_default() {
    let c = Config::from_yaml(MINIMAL).unwrap();
    assert_eq!(c.listen, "0.0.0.0:8443".parse().unwrap());
    assert_eq!(c.tls.min_version, TlsVersion::Tls12);
    assert!(c.tls.client_ca_file.is_none());
    assert!(matches!(
        c.identity_rules.as_slice(),
        [crate::config::IdentityRule {
            kind: crate::config::RuleKind::CommonName,
            ca_file: None
        }]
    ));
    assert_eq!(c.headers.user, "x-remote-user");
    assert_eq!(c.limits.max_connections, 3072);
    assert_eq!(c.limits.handshake_timeout, Duration::from_secs(10));
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.routes[0].path_prefix, "/");
}

#[test]
fn full_config_parses_into_typed_values() {
    let yaml = r#"
listen: "127.0.0.1:9443"
tls:
  cert_file: s.crt
  key_file: s.key
  client_ca_file: ca.crt
  crl_files: [a.crl]
  min_version: "1.3"
identity:
  rules:
    - spiffe: {trust_domain: cluster.local}
    - san: {type: dns, pattern: "*.svc.cluster.local", user: "svc:{value}", groups: [svcs]}
    - common_name: {}
static:
  tokens: [{token: t0k3n, user: bob, groups: [dev]}]
  allow: [{group: dev, verbs: [get], paths: ["/api/**"]}]
routes:
  - path_prefix: /api/
    upstream: "https://backend:8443"
    upstream_ca_file: up.crt
    resource: {namespace: web, resource: services, subresource: proxy, name: backend}
headers: {user: X-User, extra_prefix: X-Extra-}
limits: {max_connections: 5, handshake_timeout: 1500ms, header_read_timeout: 2s, upstream_timeout: 1m}
log: {format: json, level: debug}
"#;
    let c = Config::from_yaml(yaml).unwrap();
    assert_eq!(c.tls.min_version, TlsVersion::Tls13);
    assert_eq!(c.identity_rules.len(), 3);
    assert_eq!(c.routes[0].path_prefix, "/api");
    assert_eq!(c.routes[0].resources[0].attributes.subresource, "proxy");
    assert_eq!(c.headers.user, "x-user");
    assert_eq!(c.headers.extra_prefix, "x-extra-");
    assert_eq!(c.limits.handshake_timeout, Duration::from_millis(1500));
    assert_eq!(c.limits.upstream_timeout, Duration::from_secs(60));
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn bad_values_name_the_key_and_the_reason() {
    let with = |extra: &str| format!("{MINIMAL}{extra}");
    let cases = [
        ("routes: []\ntls: {cert_file: c, key_file: k}\n".to_owned(), "routes: needs at least one route"),
        ("routes: [{path_prefix: /, upstream: \"http://x\"}]\n".to_owned(), "tls: is required"),
        (
            "tls: {cert_file: c, key_file: k}\nroutes: [{path_prefix: /, upstream: \"ftp://x\"}]\n".to_owned(),
            "routes[0].upstream: \"ftp://x\": unknown scheme \"ftp\"; use http://host:port, https://host:port, h2c://host:port or unix:///path",
        ),
        (
            "tls: {cert_file: c, key_file: k}\nroutes: [{path_prefix: /, upstream: \"http://x/base\"}]\n".to_owned(),
            "routes[0].upstream: \"http://x/base\" must not have a path or query",
        ),
        (
            "tls: {cert_file: c, key_file: k}\nroutes: [{path_prefix: /a, upstream: \"http://x\"}, {path_prefix: /a/, upstream: \"http://y\"}]\n".to_owned(),
            "routes[1].path_prefix: \"/a\" is already used by an earlier route",
        ),
        (
            "tls: {cert_file: c, key_file: k}\nroutes: [{path_prefix: /, upstream: \"http://x\", upstream_ca_file: ca}]\n".to_owned(),
            "routes[0].upstream_ca_file: is only used with an https upstream",
        ),
        (
            "tls: {cert_file: c, key_file: k}\nroutes: [{path_prefix: /, upstream: \"h2c://x:50051\", upgrades: [websocket]}]\n".to_owned(),
            "routes[0].upgrades: an h2c upstream speaks HTTP/2, which has no protocol upgrades",
        ),
        (
            "tls: {cert_file: c, key_file: k}\nroutes: [{path_prefix: /, upstream: \"http://x\", upstream_client_cert_file: c.crt, upstream_client_key_file: c.key}]\n".to_owned(),
            "routes[0].upstream_client_cert_file: is only used with an https upstream",
        ),
        (
            "tls: {cert_file: c, key_file: k}\nroutes: [{path_prefix: /, upstream: \"https://x\", upstream_client_key_file: c.key}]\n".to_owned(),
            "routes[0].upstream_client_key_file: needs routes[0].upstream_client_cert_file",
        ),
        (
            "tls: {cert_file: c, key_file: k, client_ca_file: ca}\nmode: auth\nroutes: [{path_prefix: /, upstream_client_cert_file: c.crt}]\n".to_owned(),
            "routes[0].upstream_client_cert_file: is only used with an https upstream",
        ),
        (
            "tls: {cert_file: c, key_file: k}\nmode: auth\nauth: {trusted_proxies: [10.0.0.1]}\n".to_owned(),
            "auth.trusted_proxies: needs tls.client_ca_file to verify the certificates proxies forward",
        ),
        (
            "tls: {cert_file: c, key_file: k, client_ca_file: ca}\nmode: auth\nroutes: [{path_prefix: /, upstream: \"http://x\"}]\n".to_owned(),
            "routes[0].upstream: is not used with mode: auth (the front proxy forwards)",
        ),
        (
            "tls: {cert_file: c, key_file: k}\nroutes: [{path_prefix: /}]\n".to_owned(),
            "routes[0].upstream: is required",
        ),
        (with("identity: {rules: [{san: {type: ip, pattern: x, user: u}}]}\n"), "identity.rules[0].san.type: \"ip\" is not one of dns, uri, email"),
        (with("identity: {rules: [{spiffe: {trust_domain: \"Bad/TD\"}}]}\n"), "identity.rules[0].spiffe.trust_domain"),
        (with("identity: {rules: [{san: {type: dns, pattern: \"[\", user: u}}]}\n"), "identity.rules[0].san.pattern: invalid glob"),
        (with("static: {tokens: [{user: bob}]}\n"), "static.tokens[0]: needs exactly one of token and token_sha256"),
        (with("static: {tokens: [{token_sha256: zz, user: bob}]}\n"), "static.tokens[0].token_sha256: must be 64 hexadecimal characters"),
        (with("static: {tokens: [{token: a, user: x}, {token: a, user: y}]}\n"), "static.tokens[1]: duplicates an earlier token"),
        (with("static: {allow: [{user: a, group: b, verbs: [get], paths: [/]}]}\n"), "static.allow[0]: needs exactly one of user and group"),
        (with("static: {allow: [{user: a, verbs: [], paths: [/]}]}\n"), "static.allow[0].verbs: must not be empty"),
        (with("static: {allow: [{user: a, verbs: [get]}]}\n"), "static.allow[0]: needs exactly one of paths and resources"),
        (with("static: {allow: [{user: a, verbs: [get], paths: [api]}]}\n"), "static.allow[0].paths[0]: \"api\" must start with '/'"),
        (with("headers: {user: \"bad header\"}\n"), "headers.user: \"bad header\" is not a valid header name"),
        (with("limits: {max_connections: 0}\n"), "limits.max_connections: must be at least 1"),
        (with("limits: {handshake_timeout: 0s}\n"), "limits.handshake_timeout: must be greater than zero"),
        (with("limits: {max_header_bytes: 10}\n"), "limits.max_header_bytes: must be between"),
        (with("log: {format: xml}\n"), "log.format: \"xml\" is not text or json"),
        ("tls: {cert_file: c, key_file: k, min_version: \"1.1\"}\nroutes: [{path_prefix: /, upstream: \"http://x\"}]\n".to_owned(), "tls.min_version: \"1.1\" is not \"1.2\" or \"1.3\""),
        ("tls: {cert_file: c, key_file: k, crl_files: [x]}\nroutes: [{path_prefix: /, upstream: \"http://x\"}]\n".to_owned(), "tls.crl_files: needs tls.client_ca_file"),
    ];
    for (yaml, want) in cases {
        let got = err(&yaml);
        assert!(got.starts_with(want), "got {got:?}, want prefix {want:?}");
    }
}

#[test]
fn cache_freshness_defaults_and_bounds() {
    let kube = "kubernetes: {kubeconfig: k.yaml}\n";
    let c = Config::from_yaml(&format!("{MINIMAL}{kube}")).unwrap();
    let k = c.kubernetes.unwrap();
    assert_eq!(k.token_review.unwrap().freshness, Freshness::default());
    assert_eq!(k.access_review.unwrap().freshness.refresh_ahead, 0.2);
    let c = Config::from_yaml(&format!(
        "{MINIMAL}{kube}token_review: {{cache: {{refresh_ahead: 0, jitter: 0}}}}\n"
    ))
    .unwrap();
    let tr = c.kubernetes.unwrap().token_review.unwrap();
    assert_eq!(tr.freshness, Freshness::OFF);
    for (yaml, want) in [
        (
            "token_review: {cache: {jitter: 0.6}}\n",
            "token_review.cache.jitter: must be a fraction from 0 to 0.5",
        ),
        (
            "access_review: {cache: {refresh_ahead: -0.1}}\n",
            "access_review.cache.refresh_ahead: must be a fraction",
        ),
        (
            "access_review: {cache: {jitter: .nan}}\n",
            "access_review.cache.jitter: must be a fraction",
        ),
    ] {
        let got = err(&format!("{MINIMAL}{kube}{yaml}"));
        assert!(got.starts_with(want), "got {got:?}, want prefix {want:?}");
    }
}

#[test]
fn unknown_keys_and_bad_types_report_line_and_column() {
    let got = err(&format!("{MINIMAL}limits:\n  max_conections: 5\n"));
    assert!(got.contains("max_conections"), "{got}");
    assert!(got.contains("line 4"), "{got}");
    let got = err(&format!("{MINIMAL}limits:\n  handshake_timeout: soon\n"));
    assert!(got.contains("invalid duration \"soon\""), "{got}");
    assert!(got.contains("line 4"), "{got}");
}

mod rewrites;
mod rules;
mod secrets;
mod trust;

#[test]
fn an_h2c_route_takes_no_upgrades_and_the_other_kinds_the_default_ones() {
    let c = Config::from_yaml(
        "tls: {cert_file: c, key_file: k}\nroutes:\n  - {path_prefix: /grpc, upstream: \"h2c://127.0.0.1:50051\"}\n  - {path_prefix: /sidecar, upstream: \"unix:///run/app.sock\"}\n  - {path_prefix: /, upstream: \"https://api:6443\", upstream_client_cert_file: c.crt, upstream_client_key_file: c.key}\n",
    )
    .unwrap();
    assert!(c.routes[0].upgrades.is_empty());
    assert_eq!(c.routes[1].upgrades, ["websocket", "spdy/3.1"]);
    assert_eq!(c.routes[2].upgrades, ["websocket", "spdy/3.1"]);
    let up = c.routes[2].upstream.as_ref().unwrap();
    assert!(up.target.is_https());
    assert_eq!(
        up.client_cert.as_ref().map(|f| f.key_file.clone()),
        Some("c.key".into())
    );
}
