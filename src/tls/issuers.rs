//! The issuers `identity.rules[].ca_file` binds rules to: a rule applies
//! only to chains that end at a CA of its file (Envoy's SPIFFE validator
//! keeps one bundle per trust domain for the same reason).
//!
//! With more than one issuer in the client bundle, an unbound rule would
//! let any of them write the names it reads, so loading refuses it. While
//! a CA is rolled (old and new key in the bundle) that holds too: a rule
//! then names its `ca_file`, which may be the client bundle itself.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{Error, file_error, pem_certs, provider};

/// One verifier per rule (`None`: the rule is not bound).
#[derive(Clone, Default)]
pub struct Issuers(Arc<[Option<Arc<dyn ClientCertVerifier>>]>);

impl Issuers {
    /// Whether `chain` (leaf first, already verified against the client
    /// bundle) ends at a CA of rule `rule`'s `ca_file`; `false` for a rule
    /// that names none (the mapper asks only of bound rules).
    pub fn issued(&self, rule: usize, chain: &[CertificateDer<'_>]) -> bool {
        match (self.0.get(rule), chain.split_first()) {
            (Some(Some(v)), Some((leaf, intermediates))) => v
                .verify_client_cert(leaf, intermediates, UnixTime::now())
                .is_ok(),
            _ => false,
        }
    }
}

/// Builds the verifiers of `files` (one per rule, as read), after checking
/// that no rule is unbound while `bundle` holds more than one issuer.
pub(super) fn load(
    bundle_path: &Path,
    bundle: &[CertificateDer<'_>],
    files: &[(Option<&Path>, Vec<u8>)],
) -> Result<Issuers, Error> {
    let names = issuer_names(bundle);
    if names.len() > 1
        && let Some(i) = files.iter().position(|(f, _)| f.is_none())
    {
        return Err(file_error(
            bundle_path,
            format!(
                "holds {} issuers ({}), so identity.rules[{i}] must name its ca_file: \
                 unbound, any of them could sign the names it maps",
                names.len(),
                names.join("; ")
            ),
        ));
    }
    files
        .iter()
        .map(|(path, pem)| match path {
            None => Ok(None),
            Some(path) => verifier(path, pem).map(Some),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|v| Issuers(v.into()))
}

/// The independent issuers of `certs`, one name each: the groups of CA
/// keys connected by signatures within the bundle (an intermediate and the
/// root that signed it, or two CAs cross-signed, are one issuer). CAs are
/// told apart by their raw subject *and* key: two CAs that share a name
/// but not a key (two kubeadm clusters' `CN=kubernetes`, or an old and a
/// new key while a CA is rolled) are two issuers, since nothing in the
/// bundle says one holder controls both.
fn issuer_names(certs: &[CertificateDer<'_>]) -> Vec<String> {
    let parsed: Vec<X509Certificate<'_>> = certs
        .iter()
        .filter_map(|c| X509Certificate::from_der(c).ok().map(|(_, c)| c))
        .collect();
    // One node per distinct (subject, key); certificates of the same CA
    // re-issued with the same key are one node.
    let id = |c: &X509Certificate<'_>| (c.subject().as_raw().to_vec(), c.public_key().raw.to_vec());
    let mut nodes: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut node_of = Vec::with_capacity(parsed.len());
    for c in &parsed {
        let k = id(c);
        let n = nodes.iter().position(|x| *x == k).unwrap_or_else(|| {
            nodes.push(k);
            nodes.len() - 1
        });
        node_of.push(n);
    }
    // Union-find over "p's key signed c".
    let mut parent: Vec<usize> = (0..nodes.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for (ci, c) in parsed.iter().enumerate() {
        for (pi, p) in parsed.iter().enumerate() {
            if node_of[ci] != node_of[pi]
                && p.subject() == c.issuer()
                && c.verify_signature(Some(p.public_key())).is_ok()
            {
                let (a, b) = (
                    root(&mut parent, node_of[ci]),
                    root(&mut parent, node_of[pi]),
                );
                parent[a] = b;
            }
        }
    }
    let mut names: Vec<(usize, String)> = Vec::new();
    for (ci, c) in parsed.iter().enumerate() {
        let r = root(&mut parent, node_of[ci]);
        if !names.iter().any(|(x, _)| *x == r) {
            names.push((r, c.subject().to_string()));
        }
    }
    names.into_iter().map(|(_, n)| n).collect()
}

fn verifier(path: &Path, pem: &[u8]) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    let mut roots = RootCertStore::empty();
    for cert in pem_certs(path, pem)? {
        roots.add(cert).map_err(|e| file_error(path, e))?;
    }
    // Revocation is the client verifier's job; this only asks "which CA".
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| file_error(path, format!("cannot build an issuer verifier: {e}")))
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa,
        Issuer, KeyPair, KeyUsagePurpose,
    };
    use rustls_pki_types::CertificateDer;

    fn params(dn: &[(DnType, &str)]) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        for (t, v) in dn {
            p.distinguished_name.push(t.clone(), *v);
        }
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p
    }

    fn root(dn: &[(DnType, &str)]) -> CertificateDer<'static> {
        CertifiedIssuer::self_signed(params(dn), KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .clone()
    }

    /// Whether an unbound rule loads with this bundle.
    fn unbound_rule_loads(bundle: &[CertificateDer<'static>]) -> bool {
        super::load("ca.crt".as_ref(), bundle, &[(None, Vec::new())]).is_ok()
    }

    /// Two unrelated CAs that merely share a subject (two kubeadm clusters'
    /// "CN=kubernetes", or a CA rolled to a new key) are two issuers: either
    /// could mint the other's names, so unbound rules do not load.
    #[test]
    fn two_keys_under_one_name_are_two_issuers() {
        let a = root(&[(DnType::CommonName, "kubernetes")]);
        let b = root(&[(DnType::CommonName, "kubernetes")]);
        assert_eq!(super::issuer_names(&[a.clone(), b.clone()]).len(), 2);
        assert!(!unbound_rule_loads(&[a.clone(), b]));
        // The same CA twice (re-issued with its key) is one.
        assert!(unbound_rule_loads(&[a.clone(), a]));
    }

    /// Subjects whose text renders alike (CN=x + O=y, and a single CN
    /// "x, O=y") are still two issuers: names are compared raw.
    #[test]
    fn subjects_that_render_alike_are_two_issuers() {
        let a = root(&[(DnType::CommonName, "x"), (DnType::OrganizationName, "y")]);
        let b = root(&[(DnType::CommonName, "x, O=y")]);
        let names = super::issuer_names(&[a.clone(), b.clone()]);
        assert!(
            names.len() == 2,
            "distinct subjects counted as one issuer: {names:?}"
        );
    }

    /// Two CAs cross-signed by each other are one issuer (not none), and
    /// a third, independent root is another.
    #[test]
    fn a_cross_signed_pair_is_one_issuer_and_another_root_another() {
        let (kx, ky) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
        let (px, py) = (
            params(&[(DnType::CommonName, "X")]),
            params(&[(DnType::CommonName, "Y")]),
        );
        let ix = Issuer::new(px.clone(), KeyPair::from_pem(&kx.serialize_pem()).unwrap());
        let iy = Issuer::new(py.clone(), KeyPair::from_pem(&ky.serialize_pem()).unwrap());
        let x_by_y = px.signed_by(&kx, &iy).unwrap().der().clone();
        let y_by_x = py.signed_by(&ky, &ix).unwrap().der().clone();
        let z = root(&[(DnType::CommonName, "Z")]);
        let bundle = [x_by_y, y_by_x, z];
        let names = super::issuer_names(&bundle);
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(!unbound_rule_loads(&bundle));
        // A root and the intermediate it signed are one.
        let (kr, ki) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
        let pr = params(&[(DnType::CommonName, "R")]);
        let r = pr.self_signed(&kr).unwrap().der().clone();
        let ir = Issuer::new(pr, kr);
        let i = params(&[(DnType::CommonName, "I")])
            .signed_by(&ki, &ir)
            .unwrap()
            .der()
            .clone();
        assert!(unbound_rule_loads(&[r, i]));
    }
}
