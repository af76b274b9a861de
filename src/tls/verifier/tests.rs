//! A CA rolled under its name, each key with its CRL: both keys'
//! certificates verify, and each CRL revokes only its own CA's serials.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SerialNumber,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use time::{Duration, OffsetDateTime};

use crate::config::Config;
use crate::tls::client_verifier;

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>, serial: u64) -> CertificateDer<'static> {
    let mut p = CertificateParams::new(vec!["client".into()]).unwrap();
    p.serial_number = Some(SerialNumber::from(serial));
    p.signed_by(&KeyPair::generate().unwrap(), issuer)
        .unwrap()
        .der()
        .clone()
}

fn crl(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    revoked: &[u64],
) -> CertificateRevocationListDer<'static> {
    numbered_crl(issuer, revoked, 1)
}

fn numbered_crl(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    revoked: &[u64],
    number: u64,
) -> CertificateRevocationListDer<'static> {
    let now = OffsetDateTime::now_utc();
    CertificateRevocationListParams {
        this_update: now - Duration::minutes(1),
        next_update: now + Duration::days(1),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: now - Duration::minutes(1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .unwrap()
    .der()
    .clone()
}

fn tls(extra: &str) -> crate::config::TlsConfig {
    let yaml = format!(
        "tls: {{cert_file: c, key_file: k, client_ca_file: ca, crl_files: [x]{extra}}}\nroutes: [{{path_prefix: /, upstream: \"http://127.0.0.1:1\"}}]\n"
    );
    Config::from_yaml(&yaml).unwrap().tls
}

#[test]
fn a_ca_rolled_under_its_name_keeps_both_keys_and_their_crls() {
    let (old, new) = (ca("rolled CA"), ca("rolled CA"));
    let cas = vec![old.der().clone(), new.der().clone()];
    let crls = vec![crl(&old, &[11]), crl(&new, &[21])];
    let v = client_verifier(&tls(""), "ca".as_ref(), cas, crls).unwrap();
    let verify = |c: &CertificateDer<'static>| v.verify_client_cert(c, &[], UnixTime::now());
    assert!(verify(&leaf(&old, 10)).is_ok(), "the old key's certificate");
    assert!(verify(&leaf(&new, 20)).is_ok(), "the new key's certificate");
    let revoked = rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked);
    assert_eq!(verify(&leaf(&old, 11)).unwrap_err(), revoked);
    assert_eq!(verify(&leaf(&new, 21)).unwrap_err(), revoked);
    // A serial revoked by one key does not revoke the other's.
    assert!(verify(&leaf(&new, 11)).is_ok());
    // A stranger under the same name is no one's.
    let stranger = ca("rolled CA");
    assert!(verify(&leaf(&stranger, 30)).is_err());
}

#[test]
fn a_rolled_key_without_a_crl_has_no_revocation_status() {
    let (old, new) = (ca("rolled CA"), ca("rolled CA"));
    let cas = vec![old.der().clone(), new.der().clone()];
    let crls = vec![crl(&old, &[])];
    let v = client_verifier(&tls(""), "ca".as_ref(), cas.clone(), crls.clone()).unwrap();
    assert!(
        v.verify_client_cert(&leaf(&old, 1), &[], UnixTime::now())
            .is_ok()
    );
    assert!(
        v.verify_client_cert(&leaf(&new, 2), &[], UnixTime::now())
            .is_err()
    );
    let v = client_verifier(
        &tls(", allow_unknown_revocation: true"),
        "ca".as_ref(),
        cas,
        crls,
    )
    .unwrap();
    assert!(
        v.verify_client_cert(&leaf(&new, 2), &[], UnixTime::now())
            .is_ok()
    );
}

#[test]
fn groups_split_only_names_with_two_keys() {
    let (a, b, c) = (ca("A"), ca("B"), ca("A"));
    let cas = [
        a.der().clone(),
        b.der().clone(),
        a.der().clone(),
        c.der().clone(),
    ];
    assert_eq!(super::groups(&cas), vec![vec![0, 1, 2], vec![3]]);
    assert_eq!(super::groups(&cas[..3]), vec![vec![0, 1, 2]]);
}

fn intermediate(
    name: &str,
    key_pem: &str,
    by: &CertifiedIssuer<'static, KeyPair>,
) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::signed_by(p, KeyPair::from_pem(key_pem).unwrap(), by).unwrap()
}

/// A root rolled under its name (old + new), the issuing
/// intermediate in the bundle with its CRL, allow_unknown_revocation on.
/// A leaf the intermediate's CRL revokes is refused by webpki over the
/// whole bundle, and must be by the rolled verifier too when the client
/// sends the intermediate as re-signed by the new root (that root's group
/// holds no CRL): every CRL of the leaf's issuer key is checked after a
/// group accepts.
#[test]
fn a_revoked_leaf_is_refused_through_the_other_roots_group_too() {
    let (r_old, r_new) = (ca("Root"), ca("Root"));
    let i_key = KeyPair::generate().unwrap().serialize_pem();
    let i = intermediate("Issuing", &i_key, &r_old);
    let i2 = intermediate("Issuing", &i_key, &r_new); // same name+key, new root
    let cas = vec![r_old.der().clone(), r_new.der().clone(), i.der().clone()];
    let crls = vec![crl(&i, &[5])];
    let revoked = leaf(&i, 5);
    let cfg = tls(", allow_unknown_revocation: true");

    // webpki alone, the whole bundle and every CRL: revoked.
    let plain =
        crate::tls::webpki_verifier(&cfg, "ca".as_ref(), cas.clone(), crls.clone()).unwrap();
    assert_eq!(
        plain
            .verify_client_cert(&revoked, &[i2.der().clone()], UnixTime::now())
            .unwrap_err(),
        rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)
    );
    // The rolled verifier that authgate builds for this bundle.
    let v = client_verifier(&cfg, "ca".as_ref(), cas, crls).unwrap();
    assert_eq!(
        v.verify_client_cert(&revoked, &[], UnixTime::now())
            .unwrap_err(),
        rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked),
        "sent alone it is refused"
    );
    let r = v.verify_client_cert(&revoked, &[i2.der().clone()], UnixTime::now());
    assert!(
        r.is_err(),
        "FAIL-OPEN: a leaf on the intermediate's CRL is accepted via the new root's group"
    );
}

/// The *intermediate* rolled under its name, both keys in
/// the bundle with their root, only the new key publishing a CRL (the old
/// one is being retired), allow_unknown_revocation on. A leaf the new
/// key's CRL revokes is accepted via the old key's group, which holds the
/// root, so the chain [leaf, new intermediate] validates there with no
/// CRL for the leaf's issuer at all.
#[test]
fn a_revoked_leaf_of_a_rolled_intermediate_is_refused_through_the_old_group_too() {
    let root = ca("Root");
    let i_old = intermediate(
        "Issuing",
        &KeyPair::generate().unwrap().serialize_pem(),
        &root,
    );
    let i_new = intermediate(
        "Issuing",
        &KeyPair::generate().unwrap().serialize_pem(),
        &root,
    );
    let cas = vec![root.der().clone(), i_old.der().clone(), i_new.der().clone()];
    let crls = vec![crl(&i_new, &[7])];
    let revoked = leaf(&i_new, 7);
    let cfg = tls(", allow_unknown_revocation: true");
    let v = client_verifier(&cfg, "ca".as_ref(), cas, crls).unwrap();
    assert!(
        v.verify_client_cert(&revoked, &[], UnixTime::now())
            .is_err(),
        "sent alone it is refused"
    );
    let r = v.verify_client_cert(&revoked, &[i_new.der().clone()], UnixTime::now());
    assert!(
        r.is_err(),
        "FAIL-OPEN: revoked leaf accepted via the old key's group"
    );
}

/// Two CRLs of one key, the older listed first: webpki would use the
/// first, so loading keeps only the newest (highest crlNumber).
#[test]
fn of_one_keys_crls_only_the_newest_is_loaded() {
    let a = ca("A");
    let older = numbered_crl(&a, &[], 1);
    let newer = numbered_crl(&a, &[9], 2);
    let to_pem = |d: &CertificateRevocationListDer<'_>| {
        let b64 =
            base64::engine::Engine::encode(&base64::engine::general_purpose::STANDARD, d.as_ref());
        format!("-----BEGIN X509 CRL-----\n{b64}\n-----END X509 CRL-----\n")
    };
    let cfg = tls("");
    let cas = vec![a.der().clone()];
    for order in [[&older, &newer], [&newer, &older]] {
        let text = format!("{}{}", to_pem(order[0]), to_pem(order[1]));
        let (loaded, _) = crate::tls::crls(&cfg, &cas, &[text.into_bytes()]).unwrap();
        assert_eq!(loaded, std::slice::from_ref(&newer));
        let v = client_verifier(&cfg, "ca".as_ref(), cas.clone(), loaded).unwrap();
        assert_eq!(
            v.verify_client_cert(&leaf(&a, 9), &[], UnixTime::now())
                .unwrap_err(),
            rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)
        );
    }
}

/// The issuing intermediate's CRL is stale (tls.allow_stale_crl
/// off, allow_unknown_revocation on), the root rolled. webpki over the
/// whole bundle refuses every leaf of that intermediate; the rolled
/// verifier accepts one sent with the intermediate re-signed by the new
/// root (that group holds no CRL, so nothing can be stale there).
#[test]
fn a_stale_crl_is_enforced_through_the_other_group_too() {
    let (r_old, r_new) = (ca("Root"), ca("Root"));
    let i_key = KeyPair::generate().unwrap().serialize_pem();
    let i = intermediate("Issuing", &i_key, &r_old);
    let i2 = intermediate("Issuing", &i_key, &r_new);
    let now = OffsetDateTime::now_utc();
    let stale = CertificateRevocationListParams {
        this_update: now - Duration::days(2),
        next_update: now - Duration::days(1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&i)
    .unwrap()
    .der()
    .clone();
    let cas = vec![r_old.der().clone(), r_new.der().clone(), i.der().clone()];
    let cfg = tls(", allow_unknown_revocation: true");
    let plain =
        crate::tls::webpki_verifier(&cfg, "ca".as_ref(), cas.clone(), vec![stale.clone()]).unwrap();
    let good = leaf(&i, 3);
    assert!(
        plain
            .verify_client_cert(&good, &[i2.der().clone()], UnixTime::now())
            .is_err()
    );
    let v = client_verifier(&cfg, "ca".as_ref(), cas, vec![stale]).unwrap();
    assert!(
        v.verify_client_cert(&good, &[i2.der().clone()], UnixTime::now())
            .is_err(),
        "FAIL-OPEN: stale CRL of the leaf's issuer not enforced via the other group"
    );
}

/// A CA that shards its CRL by distribution point (two CRLs, same issuer
/// and key, different scope): both load, and each revokes in its scope.
#[test]
fn the_shards_of_one_keys_crl_all_load() {
    use rcgen::{CrlDistributionPoint, CrlIssuingDistributionPoint};
    let a = ca("A");
    let now = OffsetDateTime::now_utc();
    let shard = |uri: &str, number: u64, revoked: &[u64]| {
        CertificateRevocationListParams {
            this_update: now - Duration::minutes(1),
            next_update: now + Duration::days(1),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: Some(CrlIssuingDistributionPoint {
                distribution_point: CrlDistributionPoint {
                    uris: vec![uri.into()],
                },
                scope: None,
            }),
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now - Duration::minutes(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&a)
        .unwrap()
        .der()
        .clone()
    };
    let s1 = shard("http://crl.example/1.crl", 5, &[9]);
    let s2 = shard("http://crl.example/2.crl", 6, &[]);
    let mut p = CertificateParams::new(vec!["client".into()]).unwrap();
    p.serial_number = Some(SerialNumber::from(9u64));
    p.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec!["http://crl.example/1.crl".into()],
    }];
    let revoked_leaf = p
        .signed_by(&KeyPair::generate().unwrap(), &a)
        .unwrap()
        .der()
        .clone();
    let to_pem = |d: &CertificateRevocationListDer<'_>| {
        let b64 =
            base64::engine::Engine::encode(&base64::engine::general_purpose::STANDARD, d.as_ref());
        format!("-----BEGIN X509 CRL-----\n{b64}\n-----END X509 CRL-----\n")
    };
    let cas = vec![a.der().clone()];
    for extra in ["", ", allow_unknown_revocation: true"] {
        let cfg = tls(extra);

        let text = format!("{}{}", to_pem(&s1), to_pem(&s2));
        let (loaded, _) = crate::tls::crls(&cfg, &cas, &[text.into_bytes()]).unwrap();
        assert_eq!(loaded.len(), 2);
        let v = client_verifier(&cfg, "ca".as_ref(), cas.clone(), loaded).unwrap();
        let r = v
            .verify_client_cert(&revoked_leaf, &[], UnixTime::now())
            .map(|_| ());
        assert!(r.is_err(), "[{extra}]: a revoked leaf accepted");
    }
}

#[test]
fn crls_rank_by_number_when_both_have_one_else_by_this_update() {
    use x509_parser::num_bigint::BigUint;
    let n = |v: u32| Some(BigUint::from(v));
    assert!(crate::tls::newer(&(n(2), 10), &(n(1), 20)));
    assert!(!crate::tls::newer(&(n(1), 20), &(n(2), 10)));
    assert!(
        crate::tls::newer(&(None, 20), &(n(9), 10)),
        "unnumbered: by thisUpdate"
    );
    assert!(crate::tls::newer(&(n(3), 20), &(n(3), 10)));
    assert!(!crate::tls::newer(&(n(3), 10), &(n(3), 10)));
}

/// A CRL of `a`: `uri` its issuing distribution point (`None`: a full
/// CRL), `number` its crlNumber, `next_days` its nextUpdate from now.
fn scoped_crl(
    a: &CertifiedIssuer<'static, KeyPair>,
    uri: Option<&str>,
    number: u64,
    revoked: &[u64],
    next_days: i64,
) -> CertificateRevocationListDer<'static> {
    use rcgen::{CrlDistributionPoint, CrlIssuingDistributionPoint};
    let now = OffsetDateTime::now_utc();
    CertificateRevocationListParams {
        this_update: now - Duration::days(2),
        next_update: now + Duration::days(next_days),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: uri.map(|u| CrlIssuingDistributionPoint {
            distribution_point: CrlDistributionPoint {
                uris: vec![u.into()],
            },
            scope: None,
        }),
        revoked_certs: revoked
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: now - Duration::minutes(1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(a)
    .unwrap()
    .der()
    .clone()
}

/// A leaf of `a` with `serial` and, if given, one CRL distribution point.
fn leaf_at(
    a: &CertifiedIssuer<'static, KeyPair>,
    serial: u64,
    point: Option<&str>,
) -> CertificateDer<'static> {
    let mut p = CertificateParams::new(vec!["client".into()]).unwrap();
    p.serial_number = Some(SerialNumber::from(serial));
    p.crl_distribution_points = point
        .map(|u| rcgen::CrlDistributionPoint {
            uris: vec![u.into()],
        })
        .into_iter()
        .collect();
    p.signed_by(&KeyPair::generate().unwrap(), a)
        .unwrap()
        .der()
        .clone()
}

fn loaded_verifier(
    extra: &str,
    a: &CertifiedIssuer<'static, KeyPair>,
    crls: &[&CertificateRevocationListDer<'static>],
) -> std::sync::Arc<dyn rustls::server::danger::ClientCertVerifier> {
    let to_pem = |d: &CertificateRevocationListDer<'_>| {
        let b64 =
            base64::engine::Engine::encode(&base64::engine::general_purpose::STANDARD, d.as_ref());
        format!("-----BEGIN X509 CRL-----\n{b64}\n-----END X509 CRL-----\n")
    };
    let text: String = crls.iter().map(|c| to_pem(c)).collect();
    let cfg = tls(extra);
    let cas = vec![a.der().clone()];
    let (loaded, _) = crate::tls::crls(&cfg, &cas, &[text.into_bytes()]).unwrap();
    client_verifier(&cfg, "ca".as_ref(), cas, loaded).unwrap()
}

/// An old full CRL listed before a newer shard: webpki alone would take
/// the full one (it covers every certificate) and miss the shard's
/// revocation; every CRL of the key is read after webpki accepts.
#[test]
fn an_older_full_crl_listed_first_does_not_hide_a_shards_revocation() {
    let a = ca("A");
    let u1 = "http://crl.example/1.crl";
    let full_old = scoped_crl(&a, None, 1, &[], 10);
    let shard_new = scoped_crl(&a, Some(u1), 2, &[9], 1);
    for extra in ["", ", allow_unknown_revocation: true"] {
        let v = loaded_verifier(extra, &a, &[&full_old, &shard_new]);
        for point in [Some(u1), None] {
            assert_eq!(
                v.verify_client_cert(&leaf_at(&a, 9, point), &[], UnixTime::now())
                    .unwrap_err(),
                rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked),
                "[{extra}] {point:?}"
            );
        }
        assert!(
            v.verify_client_cert(&leaf_at(&a, 8, Some(u1)), &[], UnixTime::now())
                .is_ok()
        );
    }
}

/// Two CRLs of one key and scope with the same rank: both stay loaded,
/// and a serial either lists is refused.
#[test]
fn crls_of_equal_rank_both_count() {
    let a = ca("A");
    let one = scoped_crl(&a, None, 3, &[], 1);
    let other = scoped_crl(&a, None, 3, &[9], 1);
    let v = loaded_verifier("", &a, &[&one, &other]);
    assert_eq!(
        v.verify_client_cert(&leaf_at(&a, 9, None), &[], UnixTime::now())
            .unwrap_err(),
        rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)
    );
}

/// A stale shard refuses the certificates it covers, not those of another
/// shard, and says "expired CRL", not "revoked".
#[test]
fn a_stale_shard_refuses_only_what_it_covers() {
    let a = ca("A");
    let (u1, u2) = ("http://crl.example/1.crl", "http://crl.example/2.crl");
    let fresh = scoped_crl(&a, Some(u1), 5, &[], 1);
    let stale = scoped_crl(&a, Some(u2), 6, &[], -1);
    let v = loaded_verifier("", &a, &[&fresh, &stale]);
    assert!(
        v.verify_client_cert(&leaf_at(&a, 11, Some(u1)), &[], UnixTime::now())
            .is_ok()
    );
    let refused = v
        .verify_client_cert(&leaf_at(&a, 12, Some(u2)), &[], UnixTime::now())
        .unwrap_err();
    assert_ne!(
        refused,
        rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)
    );
}
