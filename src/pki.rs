//! A development PKI made with rcgen: `authgate certs init|client` and the demo.
//!
//! Not for production: use cert-manager (see `deploy/`). Keys are written
//! with mode 0600.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// A PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// rcgen refused the parameters or could not parse the CA.
    #[error("{what}: {source}")]
    Rcgen {
        /// What was being done.
        what: String,
        /// Cause.
        source: rcgen::Error,
    },
    /// The request itself is unusable.
    #[error("{0}")]
    Invalid(String),
}

fn rcgen_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> Error {
    let what = what.into();
    move |source| Error::Rcgen { what, source }
}

/// What to put in a client certificate.
#[derive(Clone, Debug, Default)]
pub struct ClientSpec {
    /// File stem: writes `<name>.crt` and `<name>.key`.
    pub name: String,
    /// Subject CN (the Kubernetes user name); SPIFFE certificates have none.
    pub cn: Option<String>,
    /// Subject O values (Kubernetes groups); at most two (an rcgen limit).
    pub orgs: Vec<String>,
    /// URI SANs, e.g. `spiffe://cluster.local/ns/default/sa/app`.
    pub uris: Vec<String>,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// Email SANs.
    pub emails: Vec<String>,
    /// Lifetime in days.
    pub days: u32,
}

/// Paths of a PKI directory's files.
pub struct Layout {
    /// CA certificate.
    pub ca_crt: PathBuf,
    /// CA key.
    pub ca_key: PathBuf,
    /// Server certificate.
    pub server_crt: PathBuf,
    /// Server key.
    pub server_key: PathBuf,
}

impl Layout {
    /// The files in `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            ca_crt: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_crt: dir.join("server.crt"),
            server_key: dir.join("server.key"),
        }
    }
}

/// Creates `dir/ca.{crt,key}` unless both already exist, then (re)issues
/// `dir/server.{crt,key}` for `localhost` and `127.0.0.1`. Returns whether a
/// new CA was made.
pub fn init(dir: &Path) -> Result<bool, Error> {
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    let l = Layout::new(dir);
    let new_ca = !(l.ca_crt.exists() && l.ca_key.exists());
    if new_ca {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, "authgate dev CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut p, 365);
        p.serial_number = Some(random_serial());
        let key = KeyPair::generate().map_err(rcgen_err("generate CA key"))?;
        let cert = p.self_signed(&key).map_err(rcgen_err("sign CA"))?;
        write(&l.ca_crt, cert.pem().as_bytes(), false)?;
        write(&l.ca_key, key.serialize_pem().as_bytes(), true)?;
    }
    let issuer = load_issuer(&l)?;
    let mut p = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .map_err(rcgen_err("server SANs"))?;
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, "localhost");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut p, 365);
    p.serial_number = Some(random_serial());
    p.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(rcgen_err("generate server key"))?;
    let cert = p
        .signed_by(&key, &issuer)
        .map_err(rcgen_err("sign server certificate"))?;
    write(&l.server_crt, cert.pem().as_bytes(), false)?;
    write(&l.server_key, key.serialize_pem().as_bytes(), true)?;
    Ok(new_ca)
}

/// Issues `dir/<name>.{crt,key}`, signed by `dir/ca.*`, with EKU clientAuth.
pub fn issue_client(dir: &Path, spec: &ClientSpec) -> Result<(PathBuf, PathBuf), Error> {
    if spec.name.is_empty() || spec.name.contains(['/', '\\']) || spec.name.starts_with('.') {
        return Err(Error::Invalid(format!(
            "--name {:?} is not a plain file name",
            spec.name
        )));
    }
    if spec.orgs.len() > 2 {
        return Err(Error::Invalid(
            "at most two --org values are supported".into(),
        ));
    }
    if spec.cn.is_none() && spec.uris.is_empty() && spec.dns.is_empty() && spec.emails.is_empty() {
        return Err(Error::Invalid(
            "give --cn or at least one SAN (--uri, --dns, --email)".into(),
        ));
    }
    let issuer = load_issuer(&Layout::new(dir))?;
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    if let Some(cn) = &spec.cn {
        p.distinguished_name.push(DnType::CommonName, cn.as_str());
    }
    // DistinguishedName is a map: a second O needs its own key, the raw OID.
    let org_types = [
        DnType::OrganizationName,
        DnType::CustomDnType(vec![2, 5, 4, 10]),
    ];
    for (t, o) in org_types.into_iter().zip(&spec.orgs) {
        p.distinguished_name.push(t, o.as_str());
    }
    let san = |what: &str, v: &str| Error::Invalid(format!("{what} {v:?} is not a valid SAN"));
    for u in &spec.uris {
        p.subject_alt_names.push(SanType::URI(
            u.as_str().try_into().map_err(|_| san("--uri", u))?,
        ));
    }
    for d in &spec.dns {
        p.subject_alt_names.push(SanType::DnsName(
            d.as_str().try_into().map_err(|_| san("--dns", d))?,
        ));
    }
    for e in &spec.emails {
        p.subject_alt_names.push(SanType::Rfc822Name(
            e.as_str().try_into().map_err(|_| san("--email", e))?,
        ));
    }
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut p, spec.days.max(1));
    p.serial_number = Some(random_serial());
    p.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(rcgen_err("generate client key"))?;
    let cert = p
        .signed_by(&key, &issuer)
        .map_err(rcgen_err("sign client certificate"))?;
    let crt = dir.join(format!("{}.crt", spec.name));
    let key_path = dir.join(format!("{}.key", spec.name));
    write(&crt, cert.pem().as_bytes(), false)?;
    write(&key_path, key.serialize_pem().as_bytes(), true)?;
    Ok((crt, key_path))
}

fn load_issuer(l: &Layout) -> Result<Issuer<'static, KeyPair>, Error> {
    let read = |p: &Path| {
        fs::read_to_string(p).map_err(|source| Error::Io {
            path: p.to_owned(),
            source,
        })
    };
    let key =
        KeyPair::from_pem(&read(&l.ca_key)?).map_err(rcgen_err(l.ca_key.display().to_string()))?;
    Issuer::from_ca_cert_pem(&read(&l.ca_crt)?, key)
        .map_err(rcgen_err(l.ca_crt.display().to_string()))
}

fn validity(p: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::minutes(5);
    p.not_after = now + Duration::days(i64::from(days));
}

fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    // Serial numbers need not be secret; a failure here means no OS RNG at all.
    let _ = crate::tls::provider().secure_random.fill(&mut b);
    b[0] &= 0x7f; // positive
    SerialNumber::from_slice(&b)
}

fn write(path: &Path, bytes: &[u8], secret: bool) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(bytes).map_err(io)
}
