//! A test PKI made with rcgen: root CA, intermediate CA, a foreign CA, a
//! server certificate, and client certificates of every kind the tests need.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose as Eku, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose as Ku, RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

/// Which CA signs a client certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Signer {
    /// The trusted root directly.
    Root,
    /// The intermediate (the client sends it in its chain).
    #[default]
    Intermediate,
    /// A CA the server does not trust.
    Foreign,
}

/// The EKU extension of a client certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Usage {
    /// clientAuth.
    #[default]
    ClientAuth,
    /// serverAuth only (must be refused).
    ServerAuthOnly,
    /// No EKU extension (accepted, as webpki does).
    NoEku,
}

/// The validity window of a client certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Validity {
    /// Valid now.
    #[default]
    Now,
    /// Ended yesterday.
    Expired,
    /// Starts tomorrow.
    NotYetValid,
    /// Valid now, for this many more seconds (expires mid-test).
    Lasts(i64),
}

/// What to put in a client certificate.
#[derive(Clone, Debug, Default)]
pub struct ClientOpts {
    /// Subject CNs (two are possible for negative tests).
    pub cns: Vec<String>,
    /// Encode the CN as BMPString (not UTF-8 compatible).
    pub bmp_cn: bool,
    /// Subject O values (at most two).
    pub orgs: Vec<String>,
    /// URI SANs.
    pub uris: Vec<String>,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// Email SANs.
    pub emails: Vec<String>,
    /// Signer.
    pub signer: Signer,
    /// EKU.
    pub usage: Usage,
    /// Validity.
    pub validity: Validity,
    /// Serial number (set it to revoke the certificate).
    pub serial: Option<u64>,
}

impl ClientOpts {
    /// CN/O certificate.
    pub fn cn(cn: &str, orgs: &[&str]) -> Self {
        Self {
            cns: vec![cn.to_owned()],
            orgs: orgs.iter().map(|s| (*s).to_owned()).collect(),
            ..Self::default()
        }
    }

    /// Signed by `s`.
    pub fn signer(self, signer: Signer) -> Self {
        Self { signer, ..self }
    }

    /// With EKU `usage`.
    pub fn usage(self, usage: Usage) -> Self {
        Self { usage, ..self }
    }

    /// Valid `validity`.
    pub fn validity(self, validity: Validity) -> Self {
        Self { validity, ..self }
    }

    /// With serial number `serial`.
    pub fn serial(self, serial: u64) -> Self {
        Self {
            serial: Some(serial),
            ..self
        }
    }

    /// SPIFFE SVID: a URI SAN only.
    pub fn spiffe(uri: &str) -> Self {
        Self {
            uris: vec![uri.to_owned()],
            ..Self::default()
        }
    }
}

/// A client certificate and its key, in memory and on disk.
pub struct ClientCert {
    /// Leaf first, then the intermediate when it signed the leaf.
    pub chain: Vec<CertificateDer<'static>>,
    /// PKCS#8 key.
    pub key: PrivatePkcs8KeyDer<'static>,
    /// PEM chain file.
    pub cert_file: PathBuf,
    /// PEM key file.
    pub key_file: PathBuf,
}

impl ClientCert {
    /// The key as rustls wants it.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

/// The whole test PKI, written to a temporary directory.
pub struct Pki {
    /// Holds every file.
    pub dir: TempDir,
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
    foreign: CertifiedIssuer<'static, KeyPair>,
    /// Trust bundle for clients of the gate (the root).
    pub ca_file: PathBuf,
    /// Root and intermediate: the bundle to use with CRLs of both.
    pub bundle_file: PathBuf,
    /// The foreign CA alone (an independent second issuer, when a test
    /// trusts it too).
    pub foreign_file: PathBuf,
    /// The root certificate.
    pub ca_der: CertificateDer<'static>,
    /// Server chain for `localhost` / `127.0.0.1`.
    pub server_cert: PathBuf,
    /// Server key.
    pub server_key: PathBuf,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![Ku::KeyCertSign, Ku::CrlSign, Ku::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::days(1);
    p.not_after = now + Duration::days(30);
    p
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    /// Root, intermediate, foreign CA and a server certificate.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = CertifiedIssuer::self_signed(
            ca_params("test root CA"),
            KeyPair::generate().expect("key pair"),
        )
        .expect("root CA");
        let intermediate = CertifiedIssuer::signed_by(
            ca_params("test intermediate CA"),
            KeyPair::generate().expect("key pair"),
            &root,
        )
        .expect("intermediate CA");
        let foreign = CertifiedIssuer::self_signed(
            ca_params("foreign CA"),
            KeyPair::generate().expect("key pair"),
        )
        .expect("foreign CA");
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, root.pem()).expect("write ca.crt");
        let ca_der = root.der().clone();
        let bundle_file = dir.path().join("bundle.crt");
        std::fs::write(
            &bundle_file,
            format!("{}{}", root.pem(), intermediate.pem()),
        )
        .expect("write bundle.crt");
        let foreign_file = dir.path().join("foreign.crt");
        std::fs::write(&foreign_file, foreign.pem()).expect("write foreign.crt");
        let mut pki = Self {
            foreign_file,
            bundle_file,
            server_cert: dir.path().join("server.crt"),
            server_key: dir.path().join("server.key"),
            dir,
            root,
            intermediate,
            foreign,
            ca_file,
            ca_der,
        };
        pki.issue_server(1);
        pki
    }

    /// The directory holding the files.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// (Re)writes the server certificate with `serial`, signed by the root.
    pub fn issue_server(&mut self, serial: u64) {
        let (cert, key) = self.server_pair(serial);
        std::fs::write(&self.server_cert, cert).expect("write server.crt");
        std::fs::write(&self.server_key, key).expect("write server.key");
    }

    /// A server certificate and key (PEM) without writing them.
    pub fn server_pair(&self, serial: u64) -> (String, String) {
        let mut p = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server names");
        p.extended_key_usages = vec![Eku::ServerAuth];
        p.serial_number = Some(SerialNumber::from(serial));
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("key pair");
        let cert = p.signed_by(&key, &self.root).expect("server certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// Issues a client certificate named `name`.
    pub fn client(&self, name: &str, o: &ClientOpts) -> ClientCert {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        for (i, cn) in o.cns.iter().enumerate() {
            let t = if i == 0 {
                DnType::CommonName
            } else {
                DnType::CustomDnType(vec![2, 5, 4, 3])
            };
            let v = if o.bmp_cn {
                DnValue::BmpString(cn.as_str().try_into().expect("BMPString CN"))
            } else {
                DnValue::Utf8String(cn.clone())
            };
            p.distinguished_name.push(t, v);
        }
        for (i, org) in o.orgs.iter().enumerate() {
            let t = if i == 0 {
                DnType::OrganizationName
            } else {
                DnType::CustomDnType(vec![2, 5, 4, 10])
            };
            p.distinguished_name.push(t, org.as_str());
        }
        for u in &o.uris {
            p.subject_alt_names
                .push(SanType::URI(u.as_str().try_into().expect("URI SAN")));
        }
        for d in &o.dns {
            p.subject_alt_names
                .push(SanType::DnsName(d.as_str().try_into().expect("DNS SAN")));
        }
        for e in &o.emails {
            p.subject_alt_names.push(SanType::Rfc822Name(
                e.as_str().try_into().expect("email SAN"),
            ));
        }
        p.extended_key_usages = match o.usage {
            Usage::ClientAuth => vec![Eku::ClientAuth],
            Usage::ServerAuthOnly => vec![Eku::ServerAuth],
            Usage::NoEku => vec![],
        };
        p.key_usages = vec![Ku::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        (p.not_before, p.not_after) = match o.validity {
            Validity::Now => (now - Duration::hours(1), now + Duration::days(1)),
            Validity::Expired => (now - Duration::days(2), now - Duration::days(1)),
            Validity::NotYetValid => (now + Duration::days(1), now + Duration::days(2)),
            Validity::Lasts(secs) => (now - Duration::hours(1), now + Duration::seconds(secs)),
        };
        p.serial_number = o.serial.map(SerialNumber::from);
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("key pair");
        let issuer = match o.signer {
            Signer::Root => &self.root,
            Signer::Intermediate => &self.intermediate,
            Signer::Foreign => &self.foreign,
        };
        let cert = p.signed_by(&key, issuer).expect("client certificate");
        let extra = (o.signer == Signer::Intermediate).then(|| self.intermediate.der().clone());
        let mut pem = cert.pem();
        let mut chain = vec![cert.der().clone()];
        if let Some(inter) = extra {
            pem.push_str(&self.intermediate.pem());
            chain.push(inter);
        }
        let cert_file = self.path().join(format!("{name}.crt"));
        let key_file = self.path().join(format!("{name}.key"));
        std::fs::write(&cert_file, pem).expect("write client certificate");
        std::fs::write(&key_file, key.serialize_pem()).expect("write client key");
        ClientCert {
            chain,
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            cert_file,
            key_file,
        }
    }

    /// Writes CRLs for the root (revoking `revoked` serials) and the
    /// intermediate (revoking the same serials) into one PEM file.
    pub fn crl_file(&self, name: &str, revoked: &[u64]) -> PathBuf {
        self.crl_file_until(name, revoked, Duration::days(1))
    }

    /// Like [`Pki::crl_file`], with `nextUpdate` at now + `next_update`
    /// (negative: a CRL already stale).
    pub fn crl_file_until(&self, name: &str, revoked: &[u64], next_update: Duration) -> PathBuf {
        let now = OffsetDateTime::now_utc();
        let this_update =
            (now - Duration::minutes(1)).min(now + next_update - Duration::minutes(1));
        let params = |number: u64| CertificateRevocationListParams {
            this_update,
            next_update: now + next_update,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now - Duration::minutes(1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let number = now.unix_timestamp().unsigned_abs();
        let root = params(number).signed_by(&self.root).expect("root CRL");
        let inter = params(number)
            .signed_by(&self.intermediate)
            .expect("intermediate CRL");
        let path = self.path().join(name);
        std::fs::write(
            &path,
            format!(
                "{}{}",
                root.pem().expect("root CRL PEM"),
                inter.pem().expect("intermediate CRL PEM")
            ),
        )
        .expect("write CRL file");
        path
    }
}
