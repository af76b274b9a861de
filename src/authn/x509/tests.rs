use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair, SanType};
use time::{Duration, OffsetDateTime};

use super::*;
use crate::config::Config;

fn mapper(rules_yaml: &str) -> CertMapper {
    let yaml = format!(
        "tls: {{cert_file: c, key_file: k}}\nroutes: [{{path_prefix: /, upstream: \"http://127.0.0.1:1\"}}]\n{rules_yaml}"
    );
    CertMapper::new(&Config::from_yaml(&yaml).unwrap().identity_rules)
}

#[derive(Default)]
struct Spec<'a> {
    cns: &'a [&'a str],
    orgs: &'a [&'a str],
    uris: &'a [&'a str],
    dns: &'a [&'a str],
    bmp_cn: bool,
}

fn cert(s: &Spec<'_>) -> Vec<u8> {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    // A second value of a type needs the raw-OID key (the DN is a map).
    let oid =
        |t: DnType, raw: Vec<u64>, i: usize| if i == 0 { t } else { DnType::CustomDnType(raw) };
    for (i, cn) in s.cns.iter().enumerate() {
        let value = if s.bmp_cn {
            DnValue::BmpString((*cn).try_into().unwrap())
        } else {
            DnValue::Utf8String((*cn).to_owned())
        };
        p.distinguished_name
            .push(oid(DnType::CommonName, vec![2, 5, 4, 3], i), value);
    }
    for (i, o) in s.orgs.iter().enumerate() {
        p.distinguished_name
            .push(oid(DnType::OrganizationName, vec![2, 5, 4, 10], i), *o);
    }
    for u in s.uris {
        p.subject_alt_names
            .push(SanType::URI((*u).try_into().unwrap()));
    }
    for d in s.dns {
        p.subject_alt_names
            .push(SanType::DnsName((*d).try_into().unwrap()));
    }
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::hours(1);
    p.self_signed(&KeyPair::generate().unwrap())
        .unwrap()
        .der()
        .to_vec()
}

/// Maps a lone leaf, no rule bound to an issuer.
fn map(m: &CertMapper, der: &[u8], now: i64) -> Result<Identity, CertUnmapped> {
    m.map(
        &[CertificateDer::from(der.to_vec())],
        &Issuers::default(),
        now,
    )
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn user_and_groups(
    r: Result<Identity, CertUnmapped>,
) -> Result<(String, Vec<String>), CertUnmapped> {
    r.map(|id| (id.user().to_owned(), id.groups().to_strings()))
}

fn ok(user: &str, groups: &[&str]) -> Result<(String, Vec<String>), CertUnmapped> {
    let mut g: Vec<String> = groups.iter().map(|s| (*s).to_owned()).collect();
    g.push("system:authenticated".into());
    Ok((user.to_owned(), g))
}

#[test]
#[expect(clippy::too_many_lines, reason = "one table of cases")]
fn spiffe_then_common_name() {
    let m = mapper(
        "identity:\n  rules:\n    - spiffe: {trust_domain: cluster.local}\n    - common_name: {}\n",
    );
    let spiffe = ["spiffe://cluster.local/ns/monitoring/sa/prometheus"];
    let cases = [
        (
            Spec {
                cns: &["alice"],
                orgs: &["dev", "ops"],
                ..Default::default()
            },
            ok("alice", &["dev", "ops"]),
        ),
        (
            Spec {
                uris: &spiffe,
                ..Default::default()
            },
            ok(
                "system:serviceaccount:monitoring:prometheus",
                &[
                    "system:serviceaccounts",
                    "system:serviceaccounts:monitoring",
                ],
            ),
        ),
        // SPIFFE comes first, so a cert with both maps to the ServiceAccount.
        (
            Spec {
                cns: &["alice"],
                uris: &spiffe,
                ..Default::default()
            },
            ok(
                "system:serviceaccount:monitoring:prometheus",
                &[
                    "system:serviceaccounts",
                    "system:serviceaccounts:monitoring",
                ],
            ),
        ),
        // A URI that is not a ServiceAccount SPIFFE ID falls through to the CN.
        (
            Spec {
                cns: &["bob"],
                uris: &["spiffe://td/workload/x"],
                ..Default::default()
            },
            ok("bob", &[]),
        ),
        (
            Spec {
                cns: &["a", "b"],
                ..Default::default()
            },
            Err(CertUnmapped::MultipleCommonNames),
        ),
        (
            Spec {
                cns: &["bmp"],
                bmp_cn: true,
                ..Default::default()
            },
            Err(CertUnmapped::NonUtf8Name),
        ),
        (
            Spec {
                dns: &["host.example"],
                ..Default::default()
            },
            Err(CertUnmapped::NoRuleMatched),
        ),
        (
            Spec {
                cns: &[""],
                ..Default::default()
            },
            Err(CertUnmapped::NoRuleMatched),
        ),
        (
            Spec {
                uris: &["spiffe://a/ns/x/sa/y", "spiffe://a/ns/x/sa/z"],
                ..Default::default()
            },
            Err(CertUnmapped::MultipleSpiffeIds),
        ),
        (
            Spec {
                uris: &["spiffe://a/ns/UPPER/sa/y"],
                ..Default::default()
            },
            Err(CertUnmapped::NoRuleMatched),
        ),
        (
            Spec {
                cns: &["eve\u{7}"],
                ..Default::default()
            },
            Err(CertUnmapped::InvalidCharacters),
        ),
    ];
    for (i, (spec, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            user_and_groups(map(&m, &cert(&spec), now())),
            want,
            "case {i}"
        );
    }
}

#[test]
fn the_default_rule_reads_the_common_name_only() {
    // A SPIFFE rule must name its trust domain, so the default has none:
    // a spiffe:// URI SAN alone names nobody.
    let m = mapper("");
    let svid = Spec {
        uris: &["spiffe://cluster.local/ns/kube-system/sa/admin"],
        ..Default::default()
    };
    assert_eq!(
        map(&m, &cert(&svid), now()).unwrap_err(),
        CertUnmapped::NoRuleMatched
    );
    let both = Spec {
        cns: &["alice"],
        uris: &["spiffe://cluster.local/ns/kube-system/sa/admin"],
        ..Default::default()
    };
    assert_eq!(
        user_and_groups(map(&m, &cert(&both), now())),
        ok("alice", &[])
    );
}

#[test]
fn a_rule_bound_to_an_issuer_never_applies_without_its_verdict() {
    // With no issuer verifier in service for it, a bound rule is skipped
    // (fail closed), and the next rule decides.
    let yaml = "tls: {cert_file: c, key_file: k, client_ca_file: ca}\nroutes: [{path_prefix: /, upstream: \"http://127.0.0.1:1\"}]\nidentity:\n  rules:\n    - {spiffe: {trust_domain: cluster.local}, ca_file: spiffe-ca.pem}\n    - common_name: {}\n";
    let m = CertMapper::new(&Config::from_yaml(yaml).unwrap().identity_rules);
    let both = Spec {
        cns: &["alice"],
        uris: &["spiffe://cluster.local/ns/kube-system/sa/admin"],
        ..Default::default()
    };
    assert_eq!(
        user_and_groups(map(&m, &cert(&both), now())),
        ok("alice", &[])
    );
}

#[test]
fn trust_domain_and_san_rules_apply_in_order() {
    let m = mapper(
        "identity:\n  rules:\n    - spiffe: {trust_domain: prod.example}\n    - san: {type: dns, pattern: \"*.svc.cluster.local\", user: \"svc:{value}\", groups: [services]}\n",
    );
    let prod = Spec {
        uris: &["spiffe://prod.example/ns/a/sa/b"],
        ..Default::default()
    };
    assert_eq!(
        user_and_groups(map(&m, &cert(&prod), now())).unwrap().0,
        "system:serviceaccount:a:b"
    );
    let other_td = Spec {
        uris: &["spiffe://dev.example/ns/a/sa/b"],
        cns: &["x"],
        ..Default::default()
    };
    assert_eq!(
        map(&m, &cert(&other_td), now()).unwrap_err(),
        CertUnmapped::NoRuleMatched
    );
    let svc = Spec {
        dns: &["other.example", "api.web.svc.cluster.local"],
        ..Default::default()
    };
    assert_eq!(
        user_and_groups(map(&m, &cert(&svc), now())),
        ok("svc:api.web.svc.cluster.local", &["services"])
    );
}

#[test]
fn identity_carries_the_certificate_fingerprint_and_method() {
    let der = cert(&Spec {
        cns: &["alice"],
        ..Default::default()
    });
    let id = map(&mapper(""), &der, now()).unwrap();
    let want = format!("X509SHA256={}", hex::encode(Sha256::digest(&der)));
    assert_eq!(id.extra().to_map()[CREDENTIAL_ID_KEY], [want]);
    assert_eq!(id.method(), AuthMethod::Mtls);
    assert_eq!(id.uid(), None);
}

#[test]
fn certificates_outside_validity_map_to_nobody() {
    let der = cert(&Spec {
        cns: &["alice"],
        ..Default::default()
    });
    let m = mapper("");
    assert_eq!(
        map(&m, &der, now() + 2 * 3600).unwrap_err(),
        CertUnmapped::OutsideValidity
    );
    assert_eq!(
        map(&m, &der, now() - 2 * 3600).unwrap_err(),
        CertUnmapped::OutsideValidity
    );
    assert_eq!(
        map(&m, b"not a certificate", now()).unwrap_err(),
        CertUnmapped::Unparseable
    );
}

#[test]
fn hostile_sans_stay_one_xfcc_element_and_parse_back_unchanged() {
    use crate::gate::auth_request::parse_xfcc;
    let hostile = [
        // Closes the quote and appends a forged element, unless `\` is escaped.
        r#"urn:a\",URI=spiffe://evil/ns/kube-system/sa/admin"#,
        r#"urn:a\";Cert="forged"#,
        r#"urn:a\",Hash=00"#,
        r"urn:trailing\",
        r#""quoted""#,
        "urn:a;Cert=x",
        "urn:a,Hash=00",
        "urn:a=b",
        r"urn:a\\\\b",
        "urn:with space",
        "urn:tab\there",
        "",
    ];
    for san in hostile {
        let uris: &[&str] = if san.is_empty() { &[] } else { &[san] };
        let dns: &[&str] = if san.is_empty() { &[] } else { &[san] };
        let der = cert(&Spec {
            cns: &[r#"CN \"x\" y,z"#],
            uris,
            dns,
            ..Default::default()
        });
        let xfcc = xfcc(&der).unwrap();
        let elements = parse_xfcc(&xfcc).unwrap_or_else(|e| panic!("{san:?} -> {xfcc:?}: {e}"));
        assert_eq!(elements.len(), 1, "{san:?} -> {xfcc:?}");
        let values = |key: &str| -> Vec<&str> {
            elements[0]
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(values("URI"), uris, "{xfcc:?}");
        assert_eq!(values("DNS"), dns, "{xfcc:?}");
        assert_eq!(values("Hash"), [hex::encode(Sha256::digest(&der))]);
        let (_, parsed) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(values("Subject"), [parsed.subject().to_string()]);
        assert_eq!(values("Cert"), Vec::<&str>::new());
    }
}
