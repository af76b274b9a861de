//! The benchmark's TLS material, made with rcgen: a root CA, a server
//! certificate for `localhost` / `127.0.0.1`, and client certificates
//! (CN = user, O = group), all ECDSA P-256, as PEM files in one directory.
//! nginx, authgate and the fake API all use the same files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose as Eku, IsCa, KeyPair, KeyUsagePurpose as Ku,
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
        let mut ca = CertificateParams::default();
        ca.distinguished_name = DistinguishedName::new();
        ca.distinguished_name
            .push(DnType::CommonName, "authgate bench CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![Ku::KeyCertSign, Ku::CrlSign, Ku::DigitalSignature];
        let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
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
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name.push(DnType::OrganizationName, org);
        p.extended_key_usages = vec![Eku::ClientAuth];
        p.key_usages = vec![Ku::DigitalSignature];
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &self.issuer)?;
        let crt = self.dir.join(format!("{name}.crt"));
        let k = self.dir.join(format!("{name}.key"));
        std::fs::write(&crt, cert.pem())?;
        std::fs::write(&k, key.serialize_pem())?;
        Ok((crt, k))
    }
}
