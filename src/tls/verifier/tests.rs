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
    let now = OffsetDateTime::now_utc();
    CertificateRevocationListParams {
        this_update: now - Duration::minutes(1),
        next_update: now + Duration::days(1),
        crl_number: SerialNumber::from(1u64),
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
