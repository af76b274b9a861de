//! Configuration errors never echo a static token.

use super::MINIMAL;
use crate::config::Config;

/// Part of every secret below; it must never appear in an error.
const MARK: &str = "XYZZY";

/// Malformed `static.tokens` entries, each holding the secret `S3cr3tXYZZY`
/// (once spelled with a YAML escape), with the key the error must name.
const MALFORMED: &[(&str, &str)] = &[
    // Validation: the value is well-formed YAML but not a usable token.
    (
        "static: {tokens: [{token: \"S3cr3tXYZZY with space\", user: bob}]}",
        "static.tokens[0].token",
    ),
    (
        "static: {tokens: [{token: \"S3cr3tXYZZY\\u0007\", user: bob}]}",
        "static.tokens[0].token",
    ),
    (
        "static: {tokens: [{token: \"S3cr3tXYZZY\\t\", user: bob}]}",
        "static.tokens[0].token",
    ),
    (
        "static: {tokens: [{token: \"S3cr3t\\u00e9XYZZY\", user: bob}]}",
        "static.tokens[0].token",
    ),
    (
        "static: {tokens: [{token: S3cr3tXYZZY, user: a}, {token: S3cr3tXYZZY, user: b}]}",
        "static.tokens[1]",
    ),
    // Parse: unknown keys next to a token, or a typo that holds it.
    (
        "static: {tokens: [{token: S3cr3tXYZZY, user: bob, usr: x}]}",
        "static",
    ),
    (
        "static: {tokens: [{tokn: S3cr3tXYZZY, user: bob}]}",
        "static",
    ),
    (
        "static:\n  tokens:\n    - token: S3cr3tXYZZY\n      user: bob\n      bogus: 1",
        "static",
    ),
    (
        "static:\n  tokens:\n    - token: S3cr3tXYZZY\n      user: bob\n  alow: []",
        "static",
    ),
    // Parse: wrong types, of the token and of its neighbours.
    (
        "static: {tokens: [{token: S3cr3tXYZZY, user: [bob]}]}",
        "static",
    ),
    (
        "static: {tokens: [{token: S3cr3tXYZZY, user: bob, groups: {a: 1}}]}",
        "static",
    ),
    (
        "static: {tokens: [{token: [S3cr3tXYZZY], user: bob}]}",
        "static",
    ),
    (
        "static: {tokens: [{token: {S3cr3tXYZZY: 1}, user: bob}]}",
        "static",
    ),
    ("static: {tokens: [S3cr3tXYZZY]}", "static"),
    ("static: {tokens: S3cr3tXYZZY}", "static"),
    (
        "static: {tokens: [{token: S3cr3tXYZZY, user: bob}], allow: [{user: a, verbs: get}]}",
        "static",
    ),
    (
        "static:\n  tokens:\n    - token: \"S3cr3t\\x58YZZY\"\n      user: [bob]",
        "static",
    ),
    (
        "static:\n  tokens:\n    - token: |\n        S3cr3tXYZZY\n      user: bob\n      bogus: 1",
        "static",
    ),
    // Syntax: unterminated quotes, bad indentation.
    (
        "static:\n  tokens:\n    - token: \"S3cr3tXYZZY\n      user: bob",
        "",
    ),
    ("static: {tokens: [{token: \"S3cr3tXYZZY, user: bob}]}", ""),
    ("static: {tokens: [{token: S3cr3tXYZZY, user: bob}", ""),
    (
        "static:\n  tokens:\n    - token: S3cr3tXYZZY\n     user: bob",
        "",
    ),
    // An error elsewhere, next to the token's line.
    (
        "static: {tokens: [{token: S3cr3tXYZZY, user: bob}]}\nlimits: {max_conections: 1}",
        "max_conections",
    ),
    (
        "static: {tokens: [{token: S3cr3tXYZZY, user: bob}]}\nlimits: {handshake_timeout: soon}",
        "limits",
    ),
];

#[test]
fn static_token_errors_never_echo_the_token() {
    for (entry, key) in MALFORMED {
        let yaml = format!("{MINIMAL}{entry}\n");
        let e = Config::from_yaml(&yaml).expect_err(entry);
        let (shown, debug) = (e.to_string(), format!("{e:?}"));
        assert!(
            !shown.contains(MARK) && !debug.contains(MARK),
            "{entry}\n--- shown:\n{shown}\n--- debug:\n{debug}"
        );
        assert!(shown.contains(key), "{entry}: {shown}");
    }
}

#[test]
fn a_static_token_no_client_could_send_is_refused() {
    let got = super::err(&format!(
        "{MINIMAL}static: {{tokens: [{{token: \"a b\", user: bob}}]}}\n"
    ));
    assert_eq!(
        got,
        "static.tokens[0].token: is not a bearer token: only letters, digits, \
         '-', '.', '_', '~', '+', '/' and trailing '=' can be sent (RFC 6750)"
    );
}
