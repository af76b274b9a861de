//! Bad-input corpus for `mode: auth`: forged, junk and duplicated
//! certificate and original-request headers. Each case asserts its status
//! and reason, that a refusal carries no identity, and that a good check
//! still succeeds afterwards.

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use testkit::*;

/// Who sends the case: a trusted proxy (127.0.0.1), or an untrusted peer
/// (a gate that trusts only 10.9.9.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    Trusted,
    Untrusted,
}

async fn auth_env(trusted: &str) -> Env {
    Env::start(|y| {
        y.routes = String::new();
        y.rest = format!("mode: auth\nauth:\n  trusted_proxies: [\"{trusted}\"]\n");
    })
    .await
}

fn escaped(cert: &ClientCert) -> String {
    let pem = std::fs::read_to_string(&cert.cert_file).expect("certificate file");
    utf8_percent_encode(&pem, NON_ALPHANUMERIC).to_string()
}

/// `(name, peer, headers with placeholders (see [`Certs::expand`]), status, reason)`.
type Case = (
    &'static str,
    Peer,
    &'static [(&'static str, &'static str)],
    u16,
    &'static str,
);

const ADMIN: (&str, &str) = ("x-original-uri", "/admin");
const BOB: (&str, &str) = ("authorization", "Bearer {BOB}");

#[rustfmt::skip]
const CASES: &[Case] = &[
    ("forged cert header from an untrusted peer", Peer::Untrusted, &[ADMIN, ("x-client-cert", "{OPS}")], 400, "bad_request"),
    ("forged XFCC from an untrusted peer", Peer::Untrusted, &[ADMIN, ("x-forwarded-client-cert", "Hash=00;Cert=\"{OPS}\"")], 400, "bad_request"),
    ("junk cert header", Peer::Trusted, &[ADMIN, ("x-client-cert", "%%%")], 401, "cert_refused"),
    ("PEM armour around junk", Peer::Trusted, &[ADMIN, ("x-client-cert", "-----BEGIN%20CERTIFICATE-----%0AAAAA%0A-----END%20CERTIFICATE-----")], 401, "cert_refused"),
    ("certificate of another PKI", Peer::Trusted, &[ADMIN, ("x-client-cert", "{OTHER_PKI}")], 401, "cert_refused"),
    ("certificate of the foreign signer", Peer::Trusted, &[ADMIN, ("x-client-cert", "{FOREIGN}")], 401, "cert_refused"),
    ("expired certificate", Peer::Trusted, &[ADMIN, ("x-client-cert", "{EXPIRED}")], 401, "cert_refused"),
    ("serverAuth-only certificate", Peer::Trusted, &[ADMIN, ("x-client-cert", "{SERVER_EKU}")], 401, "cert_refused"),
    ("two cert headers", Peer::Trusted, &[ADMIN, ("x-client-cert", "{OPS}"), ("x-client-cert", "{OPS}")], 401, "cert_refused"),
    ("XFCC when cert_header is X-Client-Cert", Peer::Trusted, &[ADMIN, ("x-forwarded-client-cert", "Hash=00;Cert=\"{OPS}\"")], 401, "missing_credentials"),
    ("empty cert header", Peer::Trusted, &[ADMIN, ("x-client-cert", "")], 401, "missing_credentials"),
    ("20 KB junk cert header", Peer::Trusted, &[ADMIN, ("x-client-cert", "{20K}")], 401, "cert_refused"),
    ("method with a space", Peer::Trusted, &[("x-original-method", "GE T"), BOB], 400, "bad_request"),
    ("two original URIs", Peer::Trusted, &[("x-original-uri", "/api/x"), ADMIN, BOB], 400, "bad_request"),
    ("two original methods", Peer::Trusted, &[("x-original-method", "GET"), ("x-original-method", "DELETE"), BOB], 400, "bad_request"),
    ("encoded slash in the original URI", Peer::Trusted, &[("x-original-uri", "/api%2f..%2fadmin"), BOB], 400, "bad_request"),
    ("dot-dot above the root", Peer::Trusted, &[("x-original-uri", "/api/../../admin"), BOB], 400, "bad_request"),
    ("relative original URI", Peer::Trusted, &[("x-original-uri", "admin"), BOB], 400, "bad_request"),
    ("traversal to /admin is checked as /admin", Peer::Trusted, &[("x-original-uri", "/api/%2e%2e/admin"), BOB], 403, "forbidden"),
    ("absolute-form original URI is checked by its path", Peer::Trusted, &[("x-original-uri", "https://evil.example/admin"), BOB], 403, "forbidden"),
    ("spoofed X-Remote-User on the check", Peer::Trusted, &[ADMIN, ("x-remote-user", "olga"), BOB], 403, "spoofed_identity"),
    ("spoofed X-Remote-Extra on the check", Peer::Trusted, &[("x-original-uri", "/api/x"), ("X-Remote-Extra-Scopes", "admin"), BOB], 403, "spoofed_identity"),
    ("spoofed Impersonate-User in capitals", Peer::Trusted, &[("x-original-uri", "/api/x"), ("IMPERSONATE-USER", "olga"), BOB], 403, "spoofed_identity"),
    ("spoofed identity and X-Original-URI from an untrusted peer", Peer::Untrusted, &[("x-original-uri", "/api/x"), ("x-remote-group", "ops"), BOB], 400, "bad_request"),
    ("X-Original-Method alone from an untrusted peer", Peer::Untrusted, &[("x-original-method", "DELETE"), BOB], 400, "bad_request"),
    ("X-Original-URI and -Method from an untrusted peer", Peer::Untrusted, &[("x-original-method", "GET"), ("x-original-uri", "/api/x"), BOB], 400, "bad_request"),
];

/// The certificates the placeholders stand for, URL-escaped PEM.
struct Certs(Vec<(&'static str, String)>);

impl Certs {
    fn new(pki: &Pki, other: &Pki) -> Self {
        let olga = || ClientOpts::cn("olga", &["ops"]);
        Self(vec![
            ("{OPS}", escaped(&pki.client("olga", &olga()))),
            ("{OTHER_PKI}", escaped(&other.client("olga", &olga()))),
            (
                "{FOREIGN}",
                escaped(&pki.client("f", &olga().signer(Signer::Foreign))),
            ),
            (
                "{EXPIRED}",
                escaped(&pki.client("e", &olga().validity(Validity::Expired))),
            ),
            (
                "{SERVER_EKU}",
                escaped(&pki.client("s", &olga().usage(Usage::ServerAuthOnly))),
            ),
            ("{BOB}", BOB_TOKEN.to_owned()),
            ("{20K}", "A".repeat(20_000)),
        ])
    }

    fn expand(&self, v: &str) -> String {
        self.0
            .iter()
            .fold(v.to_owned(), |v, (k, c)| v.replace(k, c))
    }
}

#[tokio::test]
async fn forged_junk_and_duplicated_check_headers_are_refused_with_their_reason() {
    let trusted = auth_env("127.0.0.1").await;
    let untrusted = auth_env("10.9.9.9").await;
    let certs = Certs::new(&trusted.pki, &untrusted.pki);
    let bob = format!("Bearer {BOB_TOKEN}");
    assert!(CASES.len() >= 26);
    for &(name, peer, headers, status, reason) in CASES {
        let env = match peer {
            Peer::Trusted => &trusted,
            Peer::Untrusted => &untrusted,
        };
        let headers: Vec<(&str, String)> =
            headers.iter().map(|(k, v)| (*k, certs.expand(v))).collect();
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = env.client().get("/auth", &h).await.unwrap();
        assert_eq!(
            (r.status.as_u16(), r.reason().as_str()),
            (status, reason),
            "{name}: {:?}",
            r.body
        );
        assert!(r.headers.get("x-remote-user").is_none(), "{name}");
        assert!(
            !String::from_utf8_lossy(&r.body).contains(BOB_TOKEN),
            "{name}"
        );
        // Still serving (Envoy-style, which any peer may send).
        let ok = env
            .client()
            .get("/auth/api/x", &[("authorization", &bob)])
            .await
            .unwrap();
        assert_eq!(ok.status, 200, "after {name}");
        assert_eq!(ok.headers["x-remote-user"], "bob");
    }
    // The genuine article still works from the trusted proxy.
    let ops = certs.expand("{OPS}");
    let r = trusted
        .client()
        .get(
            "/auth",
            &[("x-original-uri", "/admin"), ("x-client-cert", &ops)],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.headers["x-remote-user"], "olga");
}

/// The XFCC value Envoy (`SANITIZE_SET`) writes for `cert`: `Hash`, `Cert`,
/// then the URI SANs unquoted, as Envoy writes them.
fn envoy_xfcc(cert: &ClientCert, uris: &[&str]) -> String {
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(cert.chain[0].as_ref()));
    let mut v = format!("Hash={hash};Cert=\"{}\"", escaped(cert));
    for u in uris {
        v.push_str(&format!(";URI={u}"));
    }
    v
}

/// Behind Envoy (`cert_header: X-Forwarded-Client-Cert`) an XFCC value must
/// be one element with one `Cert` whose `Hash` is its SHA-256: anything
/// else is refused rather than read as someone's certificate. olga (ops)
/// may use `/admin`, so a value misread as hers would show as a 200.
#[tokio::test]
async fn ambiguous_or_forged_xfcc_values_are_refused_and_carry_no_identity() {
    let env = Env::start(|y| {
        y.routes = String::new();
        y.rest = "mode: auth\nauth:\n  trusted_proxies: [\"127.0.0.1\"]\n  cert_header: X-Forwarded-Client-Cert\n".into();
    })
    .await;
    let olga = env.pki.client("olga", &ClientOpts::cn("olga", &["ops"]));
    let bob = env.pki.client("bob", &ClientOpts::cn("bob", &["dev"]));
    let good = envoy_xfcc(&olga, &[]);
    let stolen = format!("Cert=\"{}\"", escaped(&olga));
    let (hash, bob_hash) = (&good[..good.find(';').unwrap()], {
        let b = envoy_xfcc(&bob, &[]);
        b[..b.find(';').unwrap()].to_owned()
    });
    // CA-issued certificates whose URI SAN, written unquoted, smuggles
    // olga's certificate in as a second element or a second key.
    let comma = format!("urn:x,{stolen}");
    let semicolon = format!("urn:x;{stolen}");
    let mallory = |name: &str, uri: &str| {
        let opts = ClientOpts {
            uris: vec![uri.to_owned()],
            ..ClientOpts::cn("mallory", &["dev"])
        };
        env.pki.client(name, &opts)
    };
    let (m1, m2) = (mallory("m1", &comma), mallory("m2", &semicolon));
    let refused = "cert_refused";
    // (case, XFCC header values, reason)
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        ("two elements", vec![format!("{good},{good}")], refused),
        (
            "two elements, the first someone else's",
            vec![format!("{},{good}", envoy_xfcc(&bob, &[]))],
            refused,
        ),
        ("two Cert keys", vec![format!("{good};{stolen}")], refused),
        ("two Hash keys", vec![format!("{hash};{good}")], refused),
        (
            "a Hash of another certificate",
            vec![format!("{bob_hash};{stolen}")],
            refused,
        ),
        ("no Hash", vec![stolen.clone()], refused),
        // Envoy with `cert: false`: no certificate at all (so no identity).
        ("no Cert", vec![hash.to_owned()], "missing_credentials"),
        (
            "a URI SAN holding ,Cert=",
            vec![envoy_xfcc(&m1, &[&comma])],
            refused,
        ),
        (
            "a URI SAN holding ;Cert=",
            vec![envoy_xfcc(&m2, &[&semicolon])],
            refused,
        ),
        (
            "two XFCC headers",
            vec![good.clone(), good.clone()],
            refused,
        ),
    ];
    for (name, values, reason) in cases {
        let h: Vec<(&str, &str)> = values
            .iter()
            .map(|v| ("x-forwarded-client-cert", v.as_str()))
            .collect();
        let r = env.client().get("/auth/admin", &h).await.unwrap();
        assert_eq!(
            (r.status.as_u16(), r.reason().as_str()),
            (401, reason),
            "{name}: {:?}",
            r.body
        );
        for k in ["x-remote-user", "x-remote-group", "x-remote-uid"] {
            assert!(r.headers.get(k).is_none(), "{name}: {k}");
        }
    }
    // The genuine article: olga, allowed.
    let r = env
        .client()
        .get("/auth/admin", &[("x-forwarded-client-cert", &good)])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.headers["x-remote-user"], "olga");
}
