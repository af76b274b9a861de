//! The serving certificate generated at startup when kube-rbac-proxy's
//! flags give none (what kube-rbac-proxy does too).

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// A serving certificate generated at startup, held in memory only (never
/// written: sidecars often run with a read-only root file system).
#[derive(Clone, PartialEq, Eq)]
pub struct SelfSigned {
    /// The names it is valid for (its SANs).
    pub names: Vec<String>,
    /// PEM certificate (self-signed, not a CA).
    pub cert_pem: String,
    /// PEM private key.
    pub key_pem: String,
}

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSigned")
            .field("names", &self.names)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The host name of this machine (a pod's name in Kubernetes), if known.
pub fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// A self-signed serving certificate for `host` (when given), `localhost`
/// and `127.0.0.1`, valid for one year from an hour ago: what
/// kube-rbac-proxy generates when it has no `--tls-cert-file`
/// (client-go's `GenerateSelfSignedCertKey`, which names only the host).
pub fn generate(host: Option<&str>) -> Result<SelfSigned, rcgen::Error> {
    let mut names: Vec<String> = host.map(str::to_owned).into_iter().collect();
    for n in ["localhost", "127.0.0.1"] {
        if !names.iter().any(|have| have == n) {
            names.push(n.to_owned());
        }
    }
    let mut p = CertificateParams::new(names.clone())?;
    p.distinguished_name = DistinguishedName::new();
    let now = OffsetDateTime::now_utc();
    p.distinguished_name.push(
        DnType::CommonName,
        format!("{}@{}", names[0], now.unix_timestamp()),
    );
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(365);
    // No serial given: rcgen derives one from the key, unique per key.
    let key = KeyPair::generate()?;
    let cert = p.self_signed(&key)?;
    Ok(SelfSigned {
        names,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
