//! Client-certificate DER -> identity, XFCC element and notAfter.
//!
//! rustls verifies the chain before `CertMapper::map` runs, but the DER it
//! hands over is still attacker-chosen bytes (any CA-signed cert), so the
//! mapper, `xfcc` and `not_after` must never panic and must never produce an
//! identity that fails `Identity::invalid_field`.
#![no_main]

use std::sync::OnceLock;

use authgate::authn::x509::{CertMapper, not_after, xfcc};
use authgate::config::Config;
use libfuzzer_sys::fuzz_target;

/// The default rules (SPIFFE, then CN) followed by one `san` rule of each
/// kind, and the same `san` rules first, so every rule kind is reached.
const RULES: [&str; 2] = [
    r#"
identity:
  rules:
    - spiffe: {}
    - common_name: {}
    - san: {type: dns, pattern: "*.svc.cluster.local", user: "svc:{value}", groups: [svcs]}
    - san: {type: email, pattern: "*@example.com", user: "{value}", groups: [people]}
    - san: {type: uri, pattern: "https://*", user: "uri:{value}"}
"#,
    r#"
identity:
  rules:
    - san: {type: dns, pattern: "*", user: "dns:{value}", groups: ["{value}"]}
    - san: {type: uri, pattern: "*", user: "uri:{value}"}
    - san: {type: email, pattern: "*", user: "{value}"}
    - spiffe: {trust_domain: cluster.local}
"#,
];

fn mappers() -> &'static [CertMapper] {
    static MAPPERS: OnceLock<Vec<CertMapper>> = OnceLock::new();
    MAPPERS.get_or_init(|| {
        RULES
            .iter()
            .map(|rules| {
                let yaml = format!(
                    "tls: {{cert_file: c.crt, key_file: k.key}}\n\
                     routes: [{{path_prefix: /, upstream: \"http://127.0.0.1:8080\"}}]\n{rules}"
                );
                let config = Config::from_yaml(&yaml).expect("fuzz identity rules parse");
                CertMapper::new(&config.identity_rules)
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let expiry = not_after(data);

    // A fixed clock (mostly outside validity) and the certificate's own
    // notAfter (inside validity whenever notBefore <= notAfter), so the
    // name-mapping code is reached for well-formed certificates.
    let mut clocks = vec![1_700_000_000_i64];
    clocks.extend(expiry);
    for mapper in mappers() {
        for &now in &clocks {
            if let Ok(id) = mapper.map(data, now) {
                assert_eq!(
                    id.invalid_field(),
                    None,
                    "a mapped identity must be header-safe: {id:?}"
                );
                assert!(!id.user.is_empty());
                assert!(
                    id.extra
                        .values()
                        .flatten()
                        .any(|v| v.starts_with("X509SHA256=")),
                    "a certificate identity carries its fingerprint: {id:?}"
                );
            }
        }
    }

    if let Some(x) = xfcc(data) {
        let hash = x
            .strip_prefix("Hash=")
            .and_then(|rest| rest.get(..64))
            .expect("XFCC starts with Hash=<64 hex>");
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{x:?}");
        assert!(x[69..].starts_with(";Subject=\""), "{x:?}");
        // Whatever parses for XFCC also has a validity period.
        assert!(
            expiry.is_some(),
            "xfcc parsed a certificate not_after did not"
        );
    }
});
