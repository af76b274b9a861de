//! The benchmark's TLS material, made with rcgen: a root CA, a server
//! certificate for `localhost` / `127.0.0.1`, and client certificates
//! (CN = user, O = group), all ECDSA P-256, as PEM files in one directory.
//! nginx, authgate and the fake API all use the same files.
//!
//! [`ClientCa`] is a client-certificate CA of its own (for `xtask
//! rotation`): several may share one subject DN, as a CA re-keyed in place
//! by cert-manager does, and each can write its CRL.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose as Eku, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose as Ku, RevocationReason, RevokedCertParams, SerialNumber, date_time_ymd,
};

use crate::Res;

/// The files of the PKI.
pub(crate) struct Pki {
    /// The CA certificate (trust anchor for the servers and the clients).
    pub(crate) ca_crt: PathBuf,
    /// Server certificate (SANs `localhost`, `127.0.0.1`), signed by the CA.
    pub(crate) server_crt: PathBuf,
    /// Its key (PKCS#8).
    pub(crate) server_key: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Pki {
    /// A new CA and server certificate in `dir` (created).
    pub(crate) fn create(dir: &Path) -> Res<Self> {
        std::fs::create_dir_all(dir)?;
        let issuer =
            CertifiedIssuer::self_signed(ca_params("authgate bench CA"), KeyPair::generate()?)?;
        let ca_crt = dir.join("ca.crt");
        std::fs::write(&ca_crt, issuer.pem())?;

        let mut p = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, "localhost");
        p.extended_key_usages = vec![Eku::ServerAuth];
        p.key_usages = vec![Ku::DigitalSignature];
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &issuer)?;
        let server_crt = dir.join("server.crt");
        let server_key = dir.join("server.key");
        std::fs::write(&server_crt, cert.pem())?;
        std::fs::write(&server_key, key.serialize_pem())?;
        Ok(Self {
            ca_crt,
            server_crt,
            server_key,
            issuer,
            dir: dir.to_owned(),
        })
    }

    /// A client certificate `<name>.crt` / `<name>.key` with subject
    /// `CN=<cn>, O=<org>`, signed by the CA. Returns (cert, key) paths.
    pub(crate) fn client(&self, name: &str, cn: &str, org: &str) -> Res<(PathBuf, PathBuf)> {
        client_cert(&self.issuer, &self.dir, name, (cn, org), None)
    }
}

/// A self-signed CA certificate's parameters, subject `CN=<cn>`.
fn ca_params(cn: &str) -> CertificateParams {
    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, cn);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![Ku::KeyCertSign, Ku::CrlSign, Ku::DigitalSignature];
    ca
}

/// A client certificate `CN=<cn>, O=<org>` (EKU clientAuth) signed by
/// `issuer`, written to `<dir>/<name>.{crt,key}`.
fn client_cert(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    dir: &Path,
    name: &str,
    (cn, org): (&str, &str),
    serial: Option<u64>,
) -> Res<(PathBuf, PathBuf)> {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name.push(DnType::OrganizationName, org);
    p.extended_key_usages = vec![Eku::ClientAuth];
    p.key_usages = vec![Ku::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    p.serial_number = serial.map(SerialNumber::from);
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, issuer)?;
    let crt = dir.join(format!("{name}.crt"));
    let k = dir.join(format!("{name}.key"));
    std::fs::write(&crt, cert.pem())?;
    std::fs::write(&k, key.serialize_pem())?;
    Ok((crt, k))
}

/// A client-certificate CA with a key of its own.
pub(crate) struct ClientCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl ClientCa {
    /// A new CA with subject `CN=<cn>`; its clients are written to `dir`.
    pub(crate) fn create(dir: &Path, cn: &str) -> Res<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            issuer: CertifiedIssuer::self_signed(ca_params(cn), KeyPair::generate()?)?,
            dir: dir.to_owned(),
        })
    }

    /// The CA certificate, PEM.
    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A client certificate with `serial`, `CN=<cn>, O=<org>`.
    pub(crate) fn client(
        &self,
        name: &str,
        cn: &str,
        org: &str,
        serial: u64,
    ) -> Res<(PathBuf, PathBuf)> {
        client_cert(&self.issuer, &self.dir, name, (cn, org), Some(serial))
    }

    /// A CRL (PEM) number `number` revoking `revoked`, valid from 2024 to
    /// 2100 (rcgen dates; the point is revocation, not freshness).
    pub(crate) fn crl_pem(&self, revoked: &[u64], number: u64) -> Res<String> {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(2100, 1, 1),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: date_time_ymd(2024, 1, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }
}
