//! Bad-input corpus, HTTP/1.1 over TLS: Authorization headers, oversized
//! heads, request smuggling, absolute-form targets and CONNECT.
//!
//! Requests are written byte for byte, so inputs the http crate refuses to
//! build (NUL, CR, LF, obs-fold, conflicting framing) reach the server as an
//! attacker would send them. Every case asserts its outcome, that the
//! upstream saw nothing it should not, and that a good request still works
//! afterwards (and is the only new thing the upstream saw).

use std::time::Duration;

use testkit::raw;
use testkit::*;

/// What a case must end in.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// This status and reason ("" for hyper's own bodiless refusals), and
    /// nothing forwarded.
    Refused(u16, &'static str),
    /// 431, or the connection closed without a response; nothing forwarded.
    TooLarge,
    /// 200 as bob; the upstream saw exactly this path, with its own Host.
    Forwarded(&'static str),
}

const INVALID_TOKEN: Want = Want::Refused(401, "invalid_token");
const PARSER_400: Want = Want::Refused(400, "");
const BAD_REQUEST: Want = Want::Refused(400, "bad_request");

/// `(name, raw request with placeholders (see [`expand`]), outcome)`.
type Case = (&'static str, &'static str, Want);

/// A GET with extra header lines (each ending in CRLF).
macro_rules! get {
    ($target:literal, $headers:expr) => {
        concat!(
            "GET ",
            $target,
            " HTTP/1.1\r\nHost: localhost\r\n",
            $headers,
            "\r\n"
        )
    };
}

/// A request with bob's token and `Host: evil.example`.
macro_rules! evil {
    ($method:literal, $target:literal) => {
        concat!(
            $method,
            " ",
            $target,
            " HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer {T}\r\n\r\n"
        )
    };
}

/// Expands placeholders, so the tables stay literal: `{T}` bob's token, `{S}`
/// the smuggled request, `{16K}` a token one byte over 16 KiB, `{48K}` three
/// times that, `{1M}` 1 MiB, `{70K}` 70,000 bytes, `{101H}` / `{10000H}` that
/// many small header lines, `{xE9}` the Latin-1 byte 0xE9 (not UTF-8).
fn expand(template: &str) -> Vec<u8> {
    let headers = |n: usize| (0..n).map(|i| format!("X-H{i}: v\r\n")).collect::<String>();
    let token_16k = "a".repeat(16 * 1024 + 1);
    let s = template
        .replace("{S}", &smuggled())
        .replace("{T}", BOB_TOKEN)
        .replace("{16K}", &token_16k)
        .replace("{48K}", &token_16k.repeat(3))
        .replace("{1M}", &"a".repeat(1 << 20))
        .replace("{70K}", &"a".repeat(70_000))
        .replace("{101H}", &headers(101))
        .replace("{10000H}", &headers(10_000));
    s.split("{xE9}")
        .map(str::as_bytes)
        .collect::<Vec<_>>()
        .join(&0xe9)
}

/// The request hidden in a body: authorized, so if any parser along the way
/// treats it as a request of its own, the upstream records `/api/smuggled`.
fn smuggled() -> String {
    format!(
        "GET /api/smuggled HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {BOB_TOKEN}\r\n\r\n"
    )
}

/// Routes `/api` and `/admin` only; a 1 s header timeout closes idle
/// keep-alive connections quickly.
async fn env() -> Env {
    Env::start(|y| {
        raw::api_and_admin_routes(y);
        y.rest = "limits: {header_read_timeout: 1s}\n".into();
    })
    .await
}

async fn check(env: &Env, (case, template, want): Case) {
    let before = env.upstream.count();
    let reply = raw::h1(env, expand(template)).await;
    let got = reply.summary();
    let first = reply.responses.first();
    match want {
        Want::Refused(status, reason) => {
            let r = first.unwrap_or_else(|| panic!("{case}: no response: {got}"));
            let outcome = (r.status, r.reason());
            assert_eq!(outcome, (status, reason.to_owned()), "{case}: {got}");
            if status == 401 {
                let challenge = r.header("www-authenticate").unwrap_or_default();
                assert!(challenge.starts_with("Bearer realm="), "{case}: {}", r.head);
            }
            let body = String::from_utf8_lossy(&r.body);
            assert!(
                !body.contains(BOB_TOKEN),
                "{case}: the token leaked: {body}"
            );
        }
        Want::TooLarge => assert!(
            first.map(|r| r.status) == Some(431) || (first.is_none() && reply.closed),
            "{case}: want 431 or a close, got {got}"
        ),
        Want::Forwarded(path) => {
            assert_eq!(reply.statuses(), [200], "{case}: {got}");
            assert_eq!(env.upstream.count(), before + 1, "{case}: forwarded once");
            let seen = env.upstream.last();
            assert_eq!(seen.path, path, "{case}: forwarded path");
            assert_eq!(seen.all("x-remote-user"), ["bob"], "{case}");
            let host = env.upstream.addr.to_string();
            assert_eq!(seen.all("host"), [host], "{case}: upstream Host");
            assert!(seen.headers.get("authorization").is_none(), "{case}");
        }
    }
    if !matches!(want, Want::Forwarded(_)) {
        assert_eq!(env.upstream.count(), before, "{case}: reached the upstream");
    }
    raw::assert_still_serves(env, case).await;
}

async fn run(cases: &[Case]) {
    let env = env().await;
    for case in cases {
        check(&env, *case).await;
    }
}

#[rustfmt::skip]
const AUTHORIZATION: &[Case] = &[
    ("basic_scheme_is_invalid_token", get!("/api/x", "Authorization: Basic Ym9iOnB3\r\n"), INVALID_TOKEN),
    ("empty_authorization_is_invalid_token", get!("/api/x", "Authorization:\r\n"), INVALID_TOKEN),
    ("whitespace_only_authorization_is_invalid_token", get!("/api/x", "Authorization:  \t \r\n"), INVALID_TOKEN),
    ("bearer_without_token_is_invalid_token", get!("/api/x", "Authorization: Bearer\r\n"), INVALID_TOKEN),
    ("bearer_with_only_spaces_is_invalid_token", get!("/api/x", "Authorization: Bearer    \r\n"), INVALID_TOKEN),
    ("duplicated_authorization_is_invalid_token", get!("/api/x", "Authorization: Bearer {T}\r\nAuthorization: Bearer {T}\r\n"),
        INVALID_TOKEN,
    ),
    ("duplicated_authorization_in_another_casing_is_invalid_token", get!("/api/x", "Authorization: Bearer {T}\r\nauthorization: Bearer {T}\r\n"),
        INVALID_TOKEN,
    ),
    ("valid_token_plus_basic_is_invalid_token", get!("/api/x", "Authorization: Bearer {T}\r\nAuthorization: Basic eDp5\r\n"),
        INVALID_TOKEN,
    ),
    ("comma_joined_tokens_are_invalid_token", get!("/api/x", "Authorization: Bearer {T}, Bearer {T}\r\n"), INVALID_TOKEN),
    ("token_over_16_kib_is_invalid_token", get!("/api/x", "Authorization: Bearer {16K}\r\n"), INVALID_TOKEN),
    ("authorization_over_max_header_bytes_is_431_or_closed", get!("/api/x", "Authorization: Bearer {48K}\r\n"), Want::TooLarge),
    ("nul_in_token_is_refused_by_the_parser", get!("/api/x", "Authorization: Bearer bob\0tok\r\n"), PARSER_400),
    ("cr_in_token_is_refused_by_the_parser", get!("/api/x", "Authorization: Bearer bob\rtok\r\n"), PARSER_400),
    ("lf_in_token_is_refused_by_the_parser", get!("/api/x", "Authorization: Bearer bob\ntok\r\n"), PARSER_400),
    ("non_ascii_utf8_in_token_is_invalid_token", get!("/api/x", "Authorization: Bearer t\u{f6}k\r\n"), INVALID_TOKEN),
    ("latin1_byte_in_token_is_invalid_token", get!("/api/x", "Authorization: Bearer t{xE9}k\r\n"), INVALID_TOKEN),
    ("tab_inside_token_is_invalid_token", get!("/api/x", "Authorization: Bearer bob\ttok\r\n"), INVALID_TOKEN),
    ("tab_after_scheme_is_invalid_token", get!("/api/x", "Authorization: Bearer\t{T}\r\n"), INVALID_TOKEN),
    ("quoted_token_is_invalid_token", get!("/api/x", "Authorization: Bearer \"{T}\"\r\n"), INVALID_TOKEN),
    ("unknown_token_is_token_rejected", get!("/api/x", "Authorization: Bearer not-a-known-token\r\n"), Want::Refused(401, "token_rejected")),
    ("proxy_authorization_alone_is_missing_credentials", get!("/api/x", "Proxy-Authorization: Bearer {T}\r\n"), Want::Refused(401, "missing_credentials")),
    ("token_in_query_string_is_missing_credentials", get!("/api/x?access_token={T}", ""), Want::Refused(401, "missing_credentials")),
    ("token_in_cookie_is_missing_credentials", get!("/api/x", "Cookie: token={T}\r\n"), Want::Refused(401, "missing_credentials")),
    // Header names are case-insensitive: the same header, accepted.
    ("lower_case_authorization_name_is_the_same_header", get!("/api/x", "authorization: Bearer {T}\r\n"), Want::Forwarded("/api/x")),
    ("upper_case_authorization_name_is_the_same_header", get!("/api/x", "AUTHORIZATION: Bearer {T}\r\n"), Want::Forwarded("/api/x")),
    ("lower_case_bearer_scheme_is_accepted", get!("/api/x", "Authorization: bearer {T}\r\n"), Want::Forwarded("/api/x")),
];

#[tokio::test]
async fn malformed_authorization_headers_are_refused_before_any_backend() {
    run(AUTHORIZATION).await;
}

#[rustfmt::skip]
const HEADS: &[Case] = &[
    ("one_mib_header_is_431_or_closed", get!("/api/x", "Authorization: Bearer {T}\r\nX-Big: {1M}\r\n"), Want::TooLarge),
    ("ten_thousand_headers_are_431_or_closed", get!("/api/x", "Authorization: Bearer {T}\r\n{10000H}"), Want::TooLarge),
    ("hundred_and_one_small_headers_are_431", get!("/api/x", "Authorization: Bearer {T}\r\n{101H}"), Want::Refused(431, "")),
    ("request_target_over_the_head_limit_is_431_or_closed", get!("/api/{70K}", "Authorization: Bearer {T}\r\n"), Want::TooLarge),
    ("space_before_colon_in_an_identity_header_is_400", get!("/api/x", "Authorization: Bearer {T}\r\nX-Remote-User : SPOOF\r\n"), PARSER_400),
    ("space_inside_a_header_name_is_400", get!("/api/x", "Authorization: Bearer {T}\r\nX Remote User: SPOOF\r\n"), PARSER_400),
    ("nul_in_a_header_name_is_400", get!("/api/x", "Authorization: Bearer {T}\r\nX-Remote\0User: SPOOF\r\n"), PARSER_400),
    ("header_line_without_colon_is_400", get!("/api/x", "Authorization: Bearer {T}\r\nX-Remote-User\r\n"), PARSER_400),
    ("lower_case_http_version_is_400", "GET /api/x http/1.1\r\nHost: localhost\r\nAuthorization: Bearer {T}\r\n\r\n", PARSER_400),
    ("http_2_0_request_line_is_400", "GET /api/x HTTP/2.0\r\nHost: localhost\r\nAuthorization: Bearer {T}\r\n\r\n", PARSER_400),
    ("request_line_without_version_is_400", "GET /api/x\r\nHost: localhost\r\nAuthorization: Bearer {T}\r\n\r\n", PARSER_400),
    ("invalid_character_in_method_is_400", "GE(T /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {T}\r\n\r\n", PARSER_400),
];

#[tokio::test]
async fn malformed_or_oversized_request_heads_are_refused_and_never_forwarded() {
    run(HEADS).await;
}

/// A GET of `target` with bob's token.
macro_rules! bob {
    ($target:literal) => {
        get!($target, "Authorization: Bearer {T}\r\n")
    };
}

const FORBIDDEN: Want = Want::Refused(403, "forbidden");

/// bob may get `/api/**` and nothing under `/admin`; routes are `/api` and
/// `/admin` only. The normalisation rules are in `src/routes.rs`.
#[rustfmt::skip]
const PATHS: &[Case] = &[
    ("dot_dot_into_admin_is_forbidden", bob!("/api/../admin"), FORBIDDEN),
    ("encoded_dot_dot_into_admin_is_forbidden", bob!("/api/%2e%2e/admin"), FORBIDDEN),
    ("upper_case_encoded_dot_dot_is_forbidden", bob!("/api/%2E%2E/admin"), FORBIDDEN),
    ("half_encoded_dot_dot_is_forbidden", bob!("/api/.%2e/admin"), FORBIDDEN),
    ("encoded_single_dot_then_dot_dot_is_forbidden", bob!("/api/%2e/../admin"), FORBIDDEN),
    ("double_slash_admin_is_forbidden", bob!("//admin"), FORBIDDEN),
    ("slashes_around_dot_dot_are_forbidden", bob!("/api//..//admin"), FORBIDDEN),
    ("dot_dot_with_trailing_slash_is_forbidden", bob!("/api/./../admin/"), FORBIDDEN),
    ("semicolon_segment_before_dot_dot_is_refused", bob!("/api;/../admin"), BAD_REQUEST),
    ("encoded_slash_is_400", bob!("/api%2f..%2fadmin"), BAD_REQUEST),
    ("upper_case_encoded_slash_is_400", bob!("/api/x%2Fy"), BAD_REQUEST),
    ("backslash_is_400", bob!("/api\\..\\admin"), BAD_REQUEST),
    ("encoded_backslash_is_400", bob!("/api/%5c..%5cadmin"), BAD_REQUEST),
    ("raw_nul_in_path_is_400", bob!("/api/\0x"), PARSER_400),
    ("encoded_nul_is_400", bob!("/api/x%00"), BAD_REQUEST),
    ("encoded_crlf_is_400", bob!("/api/x%0d%0aX-Remote-User:%20admin"), BAD_REQUEST),
    ("encoded_tab_is_400", bob!("/api/x%09y"), BAD_REQUEST),
    ("invalid_escape_is_400", bob!("/api/%zz"), BAD_REQUEST),
    ("truncated_escape_is_400", bob!("/api/x%2"), BAD_REQUEST),
    ("lone_percent_is_400", bob!("/api/%"), BAD_REQUEST),
    ("percent_of_percent_is_400", bob!("/api/%%32%65%%32%65/admin"), BAD_REQUEST),
    ("dot_dot_above_the_root_is_400", bob!("/api/../../admin"), BAD_REQUEST),
    ("encoded_dot_dot_above_the_root_is_400", bob!("/%2e%2e/admin"), BAD_REQUEST),
    ("raw_latin1_byte_in_path_is_400", bob!("/api/{xE9}"), PARSER_400),
    ("prefix_matches_whole_segments_only", bob!("/apis/x"), Want::Refused(404, "no_route")),
    ("path_parameter_on_admin_is_refused", bob!("/admin;x=1"), BAD_REQUEST),
    ("path_parameter_hiding_a_route_is_refused", bob!("/admin;jsessionid=1/secret"), BAD_REQUEST),
    ("path_parameter_after_dot_dot_is_refused", bob!("/api/..;/admin"), BAD_REQUEST),
    ("prefixes_are_case_sensitive", bob!("/API/x"), Want::Refused(404, "no_route")),
    // Escapes of non-unreserved bytes stay encoded: never decoded into dots.
    ("overlong_utf8_dots_stay_encoded_under_api", bob!("/api/%c0%ae%c0%ae/admin"), Want::Forwarded("/api/%C0%AE%C0%AE/admin")),
    ("double_encoded_dots_are_decoded_at_most_once", bob!("/api/%252e%252e/admin"), Want::Forwarded("/api/%252e%252e/admin")),
    ("encoded_unreserved_characters_are_decoded", bob!("/%61pi/%78"), Want::Forwarded("/api/x")),
    ("dot_dot_in_the_query_is_not_a_path", bob!("/api/x?p=../../admin"), Want::Forwarded("/api/x?p=../../admin")),
];

#[tokio::test]
async fn path_traversal_spellings_are_normalised_or_refused_before_authorization() {
    run(PATHS).await;
}

#[rustfmt::skip]
const ABSOLUTE_FORM_AND_CONNECT: &[Case] = &[
    ("absolute_form_https_goes_to_the_configured_upstream", evil!("GET", "https://evil.example/api/x"), Want::Forwarded("/api/x")),
    ("absolute_form_http_with_port_and_query", evil!("GET", "http://evil.example:8080/api/x?q=1"), Want::Forwarded("/api/x?q=1")),
    ("absolute_form_with_userinfo", evil!("GET", "https://admin:pw@evil.example/api/x"), Want::Forwarded("/api/x")),
    ("host_header_never_becomes_the_upstream_host", evil!("GET", "/api/x"), Want::Forwarded("/api/x")),
    ("absolute_form_to_admin_is_forbidden", evil!("GET", "https://evil.example/admin"), Want::Refused(403, "forbidden")),
    ("absolute_form_with_dot_segments_to_admin_is_forbidden", evil!("GET", "https://evil.example/api/../admin"), Want::Refused(403, "forbidden")),
    ("absolute_form_to_an_unrouted_path_is_404", evil!("GET", "https://evil.example/metrics"), Want::Refused(404, "no_route")),
    ("connect_authority_form_is_400", evil!("CONNECT", "evil.example:443"), BAD_REQUEST),
    ("connect_origin_form_is_400", evil!("CONNECT", "/api/x"), BAD_REQUEST),
    ("connect_absolute_form_is_400", evil!("CONNECT", "https://evil.example/api/x"), BAD_REQUEST),
    ("asterisk_form_options_is_400", evil!("OPTIONS", "*"), BAD_REQUEST),
    ("scheme_less_target_is_400", evil!("GET", "evil.example/api/x"), PARSER_400),
];

#[tokio::test]
async fn absolute_form_is_routed_by_path_only_and_connect_is_refused() {
    run(ABSOLUTE_FORM_AND_CONNECT).await;
}

/// How a smuggling attempt must end.
#[derive(Clone, Copy, Debug)]
enum Smug {
    /// Exactly one response with this status, then a close; nothing forwarded.
    Only(u16),
    /// At most one response, then a close; the upstream saw at most the outer
    /// request, with unambiguous framing, and never the smuggled one.
    OuterAtMost,
}

/// A POST with bob's token, extra header lines and a body.
macro_rules! post {
    ($headers:literal, $body:literal) => {
        concat!(
            "POST /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {T}\r\n",
            $headers,
            "\r\n",
            $body
        )
    };
}

#[rustfmt::skip]
const SMUGGLING: &[(&str, &str, Smug)] = &[
    // Transfer-Encoding wins over Content-Length (RFC 9112 6.3): the body is
    // decoded as chunked, Content-Length is dropped, the connection closes.
    ("content_length_then_transfer_encoding", post!("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n{S}"), Smug::OuterAtMost),
    ("transfer_encoding_then_content_length", post!("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n{S}"), Smug::OuterAtMost),
    ("cl_and_te_on_an_unauthenticated_carrier_is_401_then_closed", "POST /api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{S}", Smug::Only(401)),
    ("double_content_length_with_different_values", post!("Content-Length: 0\r\nContent-Length: 80\r\n", "{S}"), Smug::Only(400)),
    ("content_length_list_with_different_values", post!("Content-Length: 0, 80\r\n", "{S}"), Smug::Only(400)),
    ("negative_content_length", post!("Content-Length: -1\r\n", "{S}"), Smug::Only(400)),
    ("content_length_with_plus_sign", post!("Content-Length: +0\r\n", "{S}"), Smug::Only(400)),
    ("obs_fold_continuation_line", post!("X-Folded: a\r\n  b\r\nContent-Length: 0\r\n", "{S}"), Smug::Only(400)),
    ("obs_fold_transfer_encoding", post!("Content-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n{S}"), Smug::Only(400)),
    ("space_before_colon_in_transfer_encoding", post!("Content-Length: 5\r\nTransfer-Encoding : chunked\r\n", "0\r\n\r\n{S}"), Smug::Only(400)),
    ("transfer_encoding_not_ending_in_chunked", post!("Transfer-Encoding: chunked, gzip\r\n", "0\r\n\r\n{S}"), Smug::Only(400)),
    ("transfer_encoding_repeated_with_identity_last", post!("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", "0\r\n\r\n{S}"), Smug::Only(400)),
    ("transfer_encoding_xchunked", post!("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n{S}"), Smug::Only(400)),
    ("transfer_encoding_in_http_1_0", "POST /api/x HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer {T}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{S}", Smug::Only(400)),
    // Invalid chunked bodies: the head may already be on its way upstream,
    // but the connection must die and nothing after the bad chunk may run.
    ("invalid_chunk_size", post!("Transfer-Encoding: chunked\r\n", "zz\r\n{S}"), Smug::OuterAtMost),
    ("chunk_size_overflow", post!("Transfer-Encoding: chunked\r\n", "fffffffffffffffffff\r\n{S}"), Smug::OuterAtMost),
    ("chunk_data_longer_than_its_size", post!("Transfer-Encoding: chunked\r\n", "1\r\nxx\r\n0\r\n\r\n{S}"), Smug::OuterAtMost),
];

async fn smuggle(env: &Env, case: &str, template: &str, want: Smug) {
    let before = env.upstream.count();
    let reply = raw::h1_until_close(env, expand(template), Duration::from_secs(5)).await;
    // Anything forwarded after the close would show up by now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = reply.summary();
    let seen = &env.upstream.seen()[before..];
    let leaked = seen.iter().any(|s| s.path.contains("smuggled"));
    assert!(!leaked, "{case}: the smuggled request reached the upstream");
    assert!(reply.closed, "{case}: the connection stayed open: {got}");
    match want {
        Smug::Only(status) => {
            assert_eq!(reply.statuses(), [status], "{case}: {got}");
            assert!(seen.is_empty(), "{case}: reached the upstream");
        }
        Smug::OuterAtMost => {
            assert!(
                reply.responses.len() <= 1,
                "{case}: a second response: {got}"
            );
            assert!(seen.len() <= 1, "{case}: the upstream saw {}", seen.len());
            for s in seen {
                assert_eq!(s.path, "/api/x", "{case}");
                let cl = s.headers.contains_key("content-length");
                let te = s.headers.contains_key("transfer-encoding");
                assert!(!(cl && te), "{case}: forwarded with both CL and TE");
            }
        }
    }
    raw::assert_still_serves(env, case).await;
}

#[tokio::test]
async fn smuggling_attempts_are_refused_or_closed_and_the_hidden_request_never_runs() {
    let env = env().await;
    for (case, template, want) in SMUGGLING {
        smuggle(&env, case, template, *want).await;
    }
}

#[tokio::test]

async fn invalid_chunked_body_is_a_400_not_blamed_on_the_upstream() {
    let env = env().await;
    let template = post!("Transfer-Encoding: chunked\r\n", "zz\r\n");
    let reply = raw::h1_until_close(&env, expand(template), Duration::from_secs(5)).await;
    assert_eq!(reply.statuses(), [400], "{}", reply.summary());
    assert_eq!(env.upstream.count(), 0);
}

/// A GET with bob's token and spoofed header lines. Every spoofed value
/// carries the marker `SPOOF`, which must never reach the upstream.
macro_rules! spoofed {
    ($headers:literal) => {
        get!("/api/x", concat!("Authorization: Bearer {T}\r\n", $headers))
    };
}

#[rustfmt::skip]
const SPOOFED: &[(&str, &str)] = &[
    ("x_remote_user_title_case", spoofed!("X-Remote-User: mallory-SPOOF\r\n")),
    ("x_remote_user_lower_case", spoofed!("x-remote-user: mallory-SPOOF\r\n")),
    ("x_remote_user_upper_case", spoofed!("X-REMOTE-USER: mallory-SPOOF\r\n")),
    ("x_remote_user_mixed_case", spoofed!("x-ReMoTe-UsEr: mallory-SPOOF\r\n")),
    ("x_remote_user_duplicated", spoofed!("X-Remote-User: a-SPOOF\r\nX-Remote-User: b-SPOOF\r\n")),
    ("x_remote_user_empty", spoofed!("X-Remote-User:\r\n")),
    ("x_remote_group_duplicated_in_two_casings", spoofed!("X-Remote-Group: system:masters SPOOF\r\nx-remote-group: SPOOF\r\n")),
    ("x_remote_uid", spoofed!("X-Remote-Uid: 0-SPOOF\r\n")),
    ("x_remote_extra_duplicated", spoofed!("X-Remote-Extra-Scopes: SPOOF\r\nx-remote-extra-scopes: SPOOF\r\n")),
    ("x_remote_extra_credential_id", spoofed!("X-Remote-Extra-Authentication.kubernetes.io%2fcredential-id: X509SHA256=SPOOF\r\n")),
    ("impersonate_user", spoofed!("Impersonate-User: admin-SPOOF\r\n")),
    ("impersonate_group_duplicated", spoofed!("Impersonate-Group: system:masters SPOOF\r\nIMPERSONATE-GROUP: SPOOF\r\n")),
    ("impersonate_uid", spoofed!("impersonate-uid: SPOOF\r\n")),
    ("impersonate_extra", spoofed!("Impersonate-Extra-Scopes: SPOOF\r\n")),
    ("x_forwarded_client_cert", spoofed!("X-Forwarded-Client-Cert: Hash=SPOOF;Subject=\"CN=admin\"\r\n")),
    ("x_forwarded_client_cert_duplicated_in_two_casings", spoofed!("x-forwarded-client-cert: SPOOF\r\nX-FORWARDED-CLIENT-CERT: SPOOF\r\n")),
    ("client_cert", spoofed!("Client-Cert: :SPOOF:\r\n")),
    ("client_cert_chain", spoofed!("CLIENT-CERT-CHAIN: :SPOOF:\r\n")),
    ("ssl_client_headers", spoofed!("SSL-Client-Verify: SUCCESS SPOOF\r\nssl-client-s-dn: CN=admin SPOOF\r\nX-SSL-Client-Cert: SPOOF\r\n")),
    ("connection_nominating_an_identity_header", spoofed!("Connection: X-Remote-Group, X-Remote-User\r\nX-Remote-Group: SPOOF\r\n")),
    ("bare_lf_starting_an_identity_header_line", spoofed!("X-Pad: 1\nX-Remote-User: mallory-SPOOF\r\n")),
    // `_` for `-`: CGI, WSGI, Rack and PHP fold both to `HTTP_X_REMOTE_USER`.
    ("x_remote_user_with_underscores", spoofed!("X_Remote_User: mallory-SPOOF\r\n")),
    ("x_remote_group_with_underscores", spoofed!("x_remote_group: system:masters SPOOF\r\n")),
    ("x_remote_extra_with_underscores", spoofed!("X_REMOTE_EXTRA_scopes: SPOOF\r\n")),
    ("impersonate_user_with_underscores", spoofed!("Impersonate_User: admin-SPOOF\r\n")),
    ("xfcc_with_underscores", spoofed!("X_Forwarded_Client_Cert: Hash=SPOOF\r\n")),
    ("ssl_client_with_mixed_separators", spoofed!("SSL_Client-Verify: SUCCESS SPOOF\r\n")),
    // Steering: the upstream must act on the method, path and peer authorized.
    ("x_http_method_override", spoofed!("X-HTTP-Method-Override: DELETE-SPOOF\r\n")),
    ("x_http_method_override_with_underscores", spoofed!("x_http_method_override: DELETE-SPOOF\r\n")),
    ("x_method_override", spoofed!("X-Method-Override: DELETE-SPOOF\r\n")),
    ("x_http_method", spoofed!("X-HTTP-Method: DELETE-SPOOF\r\n")),
    ("x_original_url", spoofed!("X-Original-URL: /admin?SPOOF\r\n")),
    ("x_rewrite_url", spoofed!("X-Rewrite-URL: /admin?SPOOF\r\n")),
    ("x_original_uri_from_a_client", spoofed!("X-Original-URI: /admin?SPOOF\r\nX-Original-Method: DELETE-SPOOF\r\n")),
    ("forwarded", spoofed!("Forwarded: for=10.0.0.1;host=SPOOF;proto=https\r\n")),
    ("x_real_ip", spoofed!("X-Real-IP: 10.0.0.1-SPOOF\r\n")),
    ("x_real_ip_with_underscores", spoofed!("X_Real_IP: 10.0.0.1-SPOOF\r\n")),
    ("x_forwarded_for_and_host", spoofed!("X-Forwarded-For: 10.0.0.1-SPOOF\r\nX-Forwarded-Host: SPOOF.example\r\nX_Forwarded_Proto: SPOOF\r\n")),
    ("true_client_ip", spoofed!("True-Client-IP: SPOOF\r\nX-Client-IP: SPOOF\r\n")),
    ("every_family_at_once", spoofed!("X-Remote-User: SPOOF\r\nX-REMOTE-GROUP: SPOOF\r\nx-remote-uid: SPOOF\r\nX-Remote-Extra-A: SPOOF\r\nImpersonate-User: SPOOF\r\nImpersonate-Group: SPOOF\r\nX-Forwarded-Client-Cert: SPOOF\r\nClient-Cert: SPOOF\r\nSSL-Client-Cert: SPOOF\r\n")),
];

/// The upstream saw exactly authgate's identity headers (bob's, or with a
/// certificate alice's) and no spoofable header or spoofed value at all.
fn assert_only_authgate_identity(seen: &Seen, case: &str, cert: bool) {
    const CRED: &str = "x-remote-extra-authentication.kubernetes.io%2fcredential-id";
    const BANNED: [&str; 14] = [
        "impersonate-",
        "x-forwarded-client-cert",
        "client-cert",
        "ssl-client-",
        "x-ssl-client-",
        "authorization",
        "x-http-method",
        "x-method-override",
        "x-original-",
        "x-rewrite-url",
        "forwarded",
        "x-real-ip",
        "x-client-ip",
        "true-client-ip",
    ];
    let (user, uid): (&str, &[&str]) = if cert {
        ("alice", &[])
    } else {
        ("bob", &["1001"])
    };
    assert_eq!(seen.all("x-remote-user"), [user], "{case}");
    assert_eq!(
        seen.all("x-remote-group"),
        ["dev", "system:authenticated"],
        "{case}"
    );
    assert_eq!(seen.all("x-remote-uid"), uid, "{case}");
    // authgate's own: the peer it saw, the host it was asked for.
    assert_eq!(seen.all("x-forwarded-for"), ["127.0.0.1"], "{case}");
    assert_eq!(seen.all("x-forwarded-host"), ["localhost"], "{case}");
    for (name, value) in &seen.headers {
        let (name, value) = (name.as_str(), String::from_utf8_lossy(value.as_bytes()));
        assert!(
            !value.contains("SPOOF"),
            "{case}: {name}: {value} reached the upstream"
        );
        assert!(
            !BANNED.iter().any(|b| name.starts_with(b)) && !name.contains('_'),
            "{case}: {name} reached the upstream"
        );
        if name.starts_with("x-remote-extra-") {
            assert!(
                cert && name == CRED && value.starts_with("X509SHA256="),
                "{case}: {name}: {value}"
            );
        }
    }
}

#[tokio::test]
async fn spoofed_identity_headers_in_every_casing_never_reach_the_upstream() {
    let env = env().await;
    for (case, template) in SPOOFED {
        let before = env.upstream.count();
        let reply = raw::h1(&env, expand(template)).await;
        assert_eq!(reply.statuses(), [200], "{case}: {}", reply.summary());
        assert_eq!(env.upstream.count(), before + 1, "{case}: forwarded once");
        assert_only_authgate_identity(&env.upstream.last(), case, false);
    }
    // The same, all at once, from a client whose certificate maps to alice.
    let alice = env.cert_client("alice", &ClientOpts::cn("alice", &["dev"]));
    let tls = alice.connect().await.unwrap();
    let lines = SPOOFED.iter().flat_map(|(_, t)| t.split("\r\n").skip(3));
    let headers: String = lines
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\r\n"))
        .collect();
    let bytes = expand(&format!(
        "GET /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {{T}}\r\n{headers}\r\n"
    ));
    let reply = raw::exchange(tls, bytes, raw::Until::FirstResponse).await;
    assert_eq!(reply.statuses(), [200], "cert client: {}", reply.summary());
    assert_only_authgate_identity(
        &env.upstream.last(),
        "every_family_from_a_cert_client",
        true,
    );
    raw::assert_still_serves(&env, "spoofed identity headers").await;
}
