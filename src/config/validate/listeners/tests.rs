use super::*;
use crate::config::Config;

fn err(yaml: &str) -> String {
    Config::from_yaml(yaml)
        .expect_err("must be refused")
        .to_string()
}

const TWO: &str = r#"
listeners:
  - name: metrics
    listen: "127.0.0.1:9443"
    tls: {cert_file: a.crt, key_file: a.key, client_ca_file: ca-a.crt}
    routes: [{path_prefix: /metrics, upstream: "http://127.0.0.1:9100"}]
  - listen: "127.0.0.1:8443"
    tls: {cert_file: b.crt, key_file: b.key}
    identity: {rules: [{spiffe: {trust_domain: cluster.local}}]}
    routes: [{path_prefix: /, upstream: "http://127.0.0.1:8080"}]
"#;

#[test]
fn each_listener_keeps_its_own_address_tls_identity_and_routes() {
    let c = Config::from_yaml(TWO).expect("valid");
    let [a, b] = c.listeners.as_slice() else {
        panic!("two listeners: {:?}", c.listeners);
    };
    assert_eq!(a.name, "metrics");
    assert_eq!(b.name, "listener-1", "the default name is by index");
    assert_eq!(a.listen, "127.0.0.1:9443".parse().expect("addr"));
    assert_eq!(a.tls.client_ca_file.as_deref(), Some("ca-a.crt".as_ref()));
    assert!(b.tls.client_ca_file.is_none());
    assert_eq!(a.routes[0].path_prefix, "/metrics");
    assert_eq!(b.routes[0].path_prefix, "/");
    assert!(matches!(
        b.identity_rules[0].kind,
        crate::config::RuleKind::Spiffe { .. }
    ));
    // The first listener is also the single-listener view.
    assert_eq!(c.listen, a.listen);
    assert_eq!(c.routes[0].path_prefix, "/metrics");
}

#[test]
fn the_shorthand_is_one_listener_named_main() {
    let c = Config::from_yaml(
        "tls: {cert_file: c, key_file: k}\nroutes: [{path_prefix: /, upstream: \"http://x:1\"}]\n",
    )
    .expect("valid");
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].name, SHORTHAND_NAME);
    assert_eq!(c.listeners[0].listen, "0.0.0.0:8443".parse().expect("addr"));
}

#[test]
fn mixing_both_forms_names_the_shorthand_keys() {
    for (extra, keys) in [
        ("listen: \"127.0.0.1:1\"\n", "listen"),
        ("tls: {cert_file: c, key_file: k}\n", "tls"),
        (
            "routes: [{path_prefix: /x, upstream: \"http://x:1\"}]\n",
            "routes",
        ),
        ("identity: {rules: [{common_name: {}}]}\n", "identity"),
        (
            "listen: \"127.0.0.1:1\"\ntls: {cert_file: c, key_file: k}\n",
            "listen, tls",
        ),
    ] {
        let e = err(&format!("{TWO}{extra}"));
        assert!(
            e.starts_with(&format!(
                "listeners: cannot be combined with the top-level {keys} "
            )),
            "{extra}: {e}"
        );
    }
}

#[test]
fn bad_listener_names_and_addresses_name_the_key() {
    let tls = "tls: {cert_file: c, key_file: k}";
    let route = "routes: [{path_prefix: /, upstream: \"http://x:1\"}]";
    let cases = [
        ("listeners: []\n".to_owned(), "listeners: is empty"),
        (
            format!(
                "listeners:\n  - {{name: a, listen: \"127.0.0.1:1\", {tls}, {route}}}\n  - {{name: a, listen: \"127.0.0.1:2\", {tls}, {route}}}\n"
            ),
            "listeners[1].name: \"a\" is already the name of an earlier listener",
        ),
        (
            format!(
                "listeners:\n  - {{listen: \"127.0.0.1:1\", {tls}, {route}}}\n  - {{name: listener-0, listen: \"127.0.0.1:2\", {tls}, {route}}}\n"
            ),
            "listeners[1].name: \"listener-0\" is already the name",
        ),
        (
            format!(
                "listeners:\n  - {{listen: \"127.0.0.1:8443\", {tls}, {route}}}\n  - {{listen: \"127.0.0.1:8443\", {tls}, {route}}}\n"
            ),
            "listeners[1].listen: 127.0.0.1:8443 overlaps the address 127.0.0.1:8443 of listener \"listener-0\"",
        ),
        (
            format!(
                "listeners:\n  - {{listen: \"127.0.0.1:8443\", {tls}, {route}}}\n  - {{listen: \"0.0.0.0:8443\", {tls}, {route}}}\n"
            ),
            "listeners[1].listen: 0.0.0.0:8443 overlaps",
        ),
        (
            format!(
                "listeners:\n  - {{listen: \"[::]:8443\", {tls}, {route}}}\n  - {{listen: \"127.0.0.1:8443\", {tls}, {route}}}\n"
            ),
            "listeners[1].listen: 127.0.0.1:8443 overlaps",
        ),
    ];
    for (yaml, want) in cases {
        let e = err(&yaml);
        assert!(e.contains(want), "{yaml}\nwant {want:?}\ngot  {e:?}");
    }
}

#[test]
fn bad_keys_of_a_listener_name_the_listener_and_the_key() {
    let tls = "tls: {cert_file: c, key_file: k}";
    let route = "routes: [{path_prefix: /, upstream: \"http://x:1\"}]";
    let cases = [
        (
            format!("listeners:\n  - {{{tls}, {route}}}\n"),
            "listeners[0].listen: is required",
        ),
        (
            format!("listeners:\n  - {{listen: \"127.0.0.1:1\", {route}}}\n"),
            "listeners[0].tls: is required",
        ),
        (
            format!("listeners:\n  - {{listen: \"127.0.0.1:1\", {tls}}}\n"),
            "listeners[0].routes: needs at least one route",
        ),
        (
            format!("listeners:\n  - {{name: \"a b\", listen: \"127.0.0.1:1\", {tls}, {route}}}\n"),
            "listeners[0].name: \"a b\" must be 1 to 63",
        ),
        (
            format!("listeners:\n  - {{name: \"\", listen: \"127.0.0.1:1\", {tls}, {route}}}\n"),
            "listeners[0].name: \"\" must be 1 to 63",
        ),
        (
            format!(
                "listeners:\n  - {{listen: \"127.0.0.1:1\", {tls}, {route}}}\n  - {{listen: \"127.0.0.1:2\", {tls}, routes: [{{path_prefix: /, upstream: \"ftp://x\"}}]}}\n"
            ),
            "listeners[1].routes[0].upstream: \"ftp://x\": unknown scheme",
        ),
        (
            format!(
                "listeners:\n  - {{listen: \"127.0.0.1:1\", tls: {{cert_file: c, key_file: k, min_version: \"1.1\"}}, {route}}}\n"
            ),
            "listeners[0].tls.min_version: \"1.1\" is not",
        ),
        (
            format!(
                "listeners:\n  - {{listen: \"127.0.0.1:1\", {tls}, identity: {{rules: []}}, {route}}}\n"
            ),
            "listeners[0].identity.rules: is empty",
        ),
        (
            format!("listeners:\n  - {{listen: \"127.0.0.1:1\", {tls}, {route}, bogus: 1}}\n"),
            "unknown field `bogus`",
        ),
        (
            format!(
                "mode: auth\nauth: {{trusted_proxies: [127.0.0.1]}}\nlisteners:\n  - {{listen: \"127.0.0.1:1\", tls: {{cert_file: c, key_file: k, client_ca_file: ca}}}}\n  - {{listen: \"127.0.0.1:2\", {tls}}}\n"
            ),
            "auth.trusted_proxies: needs tls.client_ca_file to verify the certificates proxies forward (in listeners[1])",
        ),
    ];
    for (yaml, want) in cases {
        let e = err(&yaml);
        assert!(e.contains(want), "{yaml}\nwant {want:?}\ngot  {e:?}");
    }
}

#[test]
fn ephemeral_ports_and_other_ports_do_not_conflict() {
    let tls = "tls: {cert_file: c, key_file: k}";
    let route = "routes: [{path_prefix: /, upstream: \"http://x:1\"}]";
    let yaml = format!(
        "listeners:\n  - {{listen: \"127.0.0.1:0\", {tls}, {route}}}\n  - {{listen: \"127.0.0.1:0\", {tls}, {route}}}\n  - {{listen: \"0.0.0.0:8443\", {tls}, {route}}}\n  - {{listen: \"[::1]:8443\", {tls}, {route}}}\n  - {{listen: \"0.0.0.0:8444\", {tls}, {route}}}\n"
    );
    let c = Config::from_yaml(&yaml).expect("distinct addresses");
    assert_eq!(c.listeners.len(), 5);
}

#[test]
fn paths_are_checked_against_every_listeners_routes() {
    // `/public/**` leaves `/` guarded (its prefix only) but covers the whole
    // of the second listener's `/public` route.
    let yaml = r#"
paths: {unauthenticated: ["/public/**", "/public"]}
listeners:
  - {listen: "127.0.0.1:1", tls: {cert_file: c, key_file: k}, routes: [{path_prefix: /, upstream: "http://x:1"}]}
  - {listen: "127.0.0.1:2", tls: {cert_file: c, key_file: k}, routes: [{path_prefix: /public, upstream: "http://x:1"}]}
"#;
    let e = err(yaml);
    assert!(e.starts_with("paths.unauthenticated"), "{e}");
}
