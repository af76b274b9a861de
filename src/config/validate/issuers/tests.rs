use crate::config::Config;
use crate::config::issuers::SigningAlg;

const BASE: &str = "tls: {cert_file: c.crt, key_file: k.key}\nroutes: [{path_prefix: /, upstream: \"http://127.0.0.1:8080\"}]\n";

fn load(extra: &str) -> Result<Config, String> {
    Config::from_yaml(&format!("{BASE}{extra}")).map_err(|e| e.to_string())
}

/// An inline issuer (flow YAML) with `rest` as the item's other lines.
fn jwt(issuer: &str, rest: &str) -> String {
    format!("authentication:\n  jwt:\n    - issuer: {{{issuer}}}\n{rest}")
}

const GOOD_ISSUER: &str = "url: \"https://idp.example\", audiences: [app]";
const GOOD_MAPPINGS: &str = "      claimMappings: {username: {claim: sub, prefix: \"idp:\"}}\n";

#[test]
fn an_issuer_gets_its_discovery_url_and_defaults() {
    let c = load(&jwt(GOOD_ISSUER, GOOD_MAPPINGS)).expect("valid");
    let i = &c.issuers[0];
    assert_eq!(i.key, "authentication.jwt[0]");
    assert_eq!(
        i.discovery_url,
        "https://idp.example/.well-known/openid-configuration"
    );
    assert_eq!(
        (i.username.claim.as_str(), i.username.prefix.as_str()),
        ("sub", "idp:")
    );
    assert!(i.groups.is_none() && i.uid_claim.is_none());
    assert_eq!(i.algorithms, SigningAlg::ALL);
    assert_eq!(i.refresh, std::time::Duration::from_secs(60));
    assert!(load("").expect("valid").issuers.is_empty());

    let c = load(&jwt(
        "url: \"https://idp.example/\", discoveryURL: \"https://d.example/x\", audiences: [a, b], audienceMatchPolicy: MatchAny",
        "      claimValidationRules: [{claim: hd, requiredValue: example.com}]\n      claimMappings:\n        username: {claim: email, prefix: \"\"}\n        groups: {claim: roles, prefix: \"r:\"}\n        uid: {claim: oid}\n",
    ))
    .expect("valid");
    let i = &c.issuers[0];
    assert_eq!(i.discovery_url, "https://d.example/x");
    assert_eq!(i.audiences, ["a", "b"]);
    assert_eq!(
        i.required_claims,
        [("hd".to_owned(), "example.com".to_owned())]
    );
    assert_eq!(i.uid_claim.as_deref(), Some("oid"));
    assert_eq!(i.groups.as_ref().map(|g| g.prefix.as_str()), Some("r:"));
}

/// Every CEL field is refused at load, naming its key.
#[test]
fn cel_expressions_are_refused_naming_the_key() {
    let cel = "CEL expressions are not supported";
    let cases = [
        (
            "      claimMappings: {username: {expression: \"claims.sub\"}}\n",
            "authentication.jwt[0].claimMappings.username.expression",
        ),
        (
            "      claimMappings: {username: {claim: sub, prefix: \"\"}, groups: {expression: \"claims.g\"}}\n",
            "authentication.jwt[0].claimMappings.groups.expression",
        ),
        (
            "      claimMappings: {username: {claim: sub, prefix: \"\"}, uid: {expression: \"claims.u\"}}\n",
            "authentication.jwt[0].claimMappings.uid.expression",
        ),
        (
            "      claimMappings: {username: {claim: sub, prefix: \"\"}, extra: [{key: example.com/x, valueExpression: \"claims.x\"}]}\n",
            "authentication.jwt[0].claimMappings.extra[0].valueExpression",
        ),
        (
            "      claimValidationRules: [{expression: \"claims.a == 1\", message: m}]\n",
            "authentication.jwt[0].claimValidationRules[0].expression",
        ),
        (
            "      userValidationRules: [{expression: \"!user.username.startsWith('x')\"}]\n",
            "authentication.jwt[0].userValidationRules",
        ),
    ];
    for (rest, key) in cases {
        let rest = if rest.contains("claimMappings") {
            rest.to_owned()
        } else {
            format!("{GOOD_MAPPINGS}{rest}")
        };
        let got = load(&jwt(GOOD_ISSUER, &rest)).expect_err("refused");
        assert_eq!(
            got,
            format!("{key}: {cel} by authgate; use the claim form"),
            "{rest}"
        );
    }
}

#[test]
fn each_bad_issuer_value_names_its_key() {
    let m = GOOD_MAPPINGS;
    let cases = [
        (
            jwt("audiences: [a]", m),
            "authentication.jwt[0].issuer.url: is required",
        ),
        (
            jwt("url: \"http://idp\", audiences: [a]", m),
            "authentication.jwt[0].issuer.url: \"http://idp\": URL scheme must be https",
        ),
        (
            jwt("url: \"https://u:p@idp\", audiences: [a]", m),
            "must not contain a username or password",
        ),
        (
            jwt("url: \"https://idp?x=1\", audiences: [a]", m),
            "must not contain a query",
        ),
        (
            jwt("url: \"https://idp#f\", audiences: [a]", m),
            "must not contain a fragment",
        ),
        (
            jwt(
                "url: \"https://idp\", discoveryURL: \"https://idp/\", audiences: [a]",
                m,
            ),
            "authentication.jwt[0].issuer.discoveryURL: must be different from url",
        ),
        (
            jwt("url: \"https://idp\"", m),
            "authentication.jwt[0].issuer.audiences: at least one audience is required",
        ),
        (
            jwt(
                "url: \"https://idp\", audiences: [a, a], audienceMatchPolicy: MatchAny",
                m,
            ),
            "authentication.jwt[0].issuer.audiences[1]: \"a\" is listed twice",
        ),
        (
            jwt("url: \"https://idp\", audiences: [a, b]", m),
            "authentication.jwt[0].issuer.audienceMatchPolicy: \"\": must be MatchAny for multiple audiences",
        ),
        (
            jwt(
                "url: \"https://idp\", audiences: [a], audienceMatchPolicy: MatchAll",
                m,
            ),
            "must be empty or MatchAny for a single audience",
        ),
        (
            jwt(
                "url: \"https://idp\", audiences: [a], certificateAuthority: nope",
                m,
            ),
            "authentication.jwt[0].issuer.certificateAuthority: holds no PEM certificate",
        ),
        (
            jwt(
                "url: \"https://idp\", audiences: [a], egressSelectorType: cluster",
                m,
            ),
            "authentication.jwt[0].issuer.egressSelectorType: is not supported",
        ),
    ];
    for (yaml, want) in cases {
        let got = load(&yaml).expect_err("refused");
        assert!(got.contains(want), "{yaml}\n{got}");
    }
}

#[test]
fn each_bad_mapping_or_rule_names_its_key() {
    let m = GOOD_MAPPINGS;
    let cases = [
        (
            jwt(
                GOOD_ISSUER,
                "      claimMappings: {username: {claim: sub}}\n",
            ),
            "authentication.jwt[0].claimMappings.username.prefix: is required when claim is set",
        ),
        (
            jwt(
                GOOD_ISSUER,
                "      claimMappings: {username: {claim: sub, prefix: \"system:\"}}\n",
            ),
            "authentication.jwt[0].claimMappings.username.prefix: must not start with system:",
        ),
        (
            jwt(
                GOOD_ISSUER,
                "      claimMappings: {username: {claim: sub, prefix: \"\"}, groups: {claim: g}}\n",
            ),
            "authentication.jwt[0].claimMappings.groups.prefix: is required",
        ),
        (
            jwt(GOOD_ISSUER, ""),
            "authentication.jwt[0].claimMappings.username: is required",
        ),
        (
            jwt(
                GOOD_ISSUER,
                &format!("{m}      claimValidationRules: [{{claim: a}}, {{claim: a}}]\n"),
            ),
            "authentication.jwt[0].claimValidationRules[1].claim: \"a\" is listed twice",
        ),
        (
            format!(
                "{}    - issuer: {{{GOOD_ISSUER}}}\n{m}",
                jwt(GOOD_ISSUER, m)
            ),
            "authentication.jwt[1].issuer.url: \"https://idp.example\" is listed twice",
        ),
        (
            format!("{}  refresh: 5s\n", jwt(GOOD_ISSUER, m)),
            "authentication.refresh: must be at least 10s",
        ),
        (
            format!("{}  config_file: /x.yaml\n", jwt(GOOD_ISSUER, m)),
            "authentication.jwt: cannot be combined with authentication.config_file",
        ),
        (
            "authentication: {config_file: /nonexistent/authn.yaml}\n".to_owned(),
            "authentication.config_file: cannot read /nonexistent/authn.yaml",
        ),
        (
            jwt(GOOD_ISSUER, "      claimMapping: {}\n"),
            "unknown field",
        ),
    ];
    for (yaml, want) in cases {
        let got = load(&yaml).expect_err("refused");
        assert!(got.contains(want), "{yaml}\n{got}");
    }
}

#[test]
fn the_cluster_issuer_cannot_be_an_external_one() {
    let yaml = format!(
        "kubernetes: {{kubeconfig: k.yaml}}\ntoken_review: {{jwks: {{enabled: true, issuer: \"https://idp.example\"}}}}\n{}",
        jwt(GOOD_ISSUER, GOOD_MAPPINGS)
    );
    let got = load(&yaml).expect_err("refused");
    assert!(
        got.starts_with("authentication.jwt[0].issuer.url: is the cluster's ServiceAccount issuer"),
        "{got}"
    );
}

#[test]
fn an_authentication_configuration_file_is_read_as_kube_apiserver_writes_it() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("authn.yaml");
    let write = |text: &str| std::fs::write(&path, text).expect("write");
    let load_file = || {
        load(&format!(
            "authentication: {{config_file: {}}}\n",
            path.display()
        ))
    };
    write(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n- issuer:\n    url: https://idp.example\n    audiences: [app]\n  claimMappings:\n    username: {claim: sub, prefix: \"idp:\"}\n",
    );
    let c = load_file().expect("valid");
    assert_eq!(c.issuers[0].url, "https://idp.example");
    let at = path.display().to_string();
    let cases = [
        (
            "apiVersion: apiserver.config.k8s.io/v1alpha1\nkind: AuthenticationConfiguration\n",
            format!("{at}: apiVersion: Some(\"apiserver.config.k8s.io/v1alpha1\") is not one of"),
        ),
        (
            "apiVersion: apiserver.config.k8s.io/v1beta1\nkind: Other\n",
            format!("{at}: kind: must be AuthenticationConfiguration"),
        ),
        (
            "apiVersion: apiserver.config.k8s.io/v1beta1\nkind: AuthenticationConfiguration\nanonymous: {enabled: true}\n",
            format!("{at}: anonymous: is not supported"),
        ),
        (
            "apiVersion: apiserver.config.k8s.io/v1beta1\nkind: AuthenticationConfiguration\njwt:\n- issuer: {url: https://idp, audiences: [a]}\n  claimMappings:\n    username: {expression: claims.sub}\n",
            format!("{at}: jwt[0].claimMappings.username.expression: CEL expressions"),
        ),
    ];
    for (text, want) in cases {
        write(text);
        let got = load_file().expect_err("refused");
        assert!(got.starts_with(&want), "{text}\n{got}");
    }
}
