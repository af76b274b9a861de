//! The cluster's signing keys and local verification of one token (pure).
//!
//! A [`KeySet`] is built from the OIDC discovery document and the JWKS. Only
//! signature keys that authgate can verify are kept: RSA for RS256 and P-256
//! for ES256, each with a `kid`. [`KeySet::verify`] checks a token against it
//! with jsonwebtoken: the header's `alg` must be the key's, then signature,
//! `iss`, `aud`, `exp` and `nbf` (with [`LEEWAY_SECS`] of skew), then the
//! ServiceAccount claims ([`super::claims`]).

use std::collections::HashMap;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::claims::{self, Claims};
use crate::identity::Identity;

/// Clock skew allowed on `exp` and `nbf`, as kube-apiserver allows.
pub const LEEWAY_SECS: u64 = 60;

/// The algorithms authgate verifies (the ring provider of [`super::crypto`]).
pub const ALGORITHMS: &[Algorithm] = &[Algorithm::RS256, Algorithm::ES256];

/// Keys read from one JWKS document at most.
const MAX_KEYS: usize = 256;

/// The OIDC discovery document: only the issuer is read.
#[derive(Debug, Deserialize)]
pub struct Discovery {
    /// `issuer`.
    pub issuer: String,
}

/// A JWKS document, each key parsed on its own so that one unusable key
/// does not hide the others.
#[derive(Debug, Deserialize)]
pub struct JwksDocument {
    /// `keys`.
    pub keys: Vec<serde_json::Value>,
}

/// The issuer to require: the configured one, which must equal the
/// discovered one, or else the discovered one.
pub fn issuer(discovered: &str, configured: Option<&str>) -> Result<String, String> {
    if discovered.is_empty() {
        return Err("the discovery document names no issuer".to_owned());
    }
    match configured {
        Some(want) if want != discovered => Err(format!(
            "the discovered issuer {discovered:?} is not the configured {want:?}"
        )),
        _ => Ok(discovered.to_owned()),
    }
}

/// Why a token was not verified locally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The header's `kid` is not in the key set (refresh, then TokenReview).
    UnknownKid,
    /// The `kid` is one of the cluster's keys and the (unverified) `iss` is
    /// the cluster's, but the signature does not verify (or the header's
    /// `alg` is not the key's): kube-apiserver's
    /// ServiceAccount authenticator, which picks keys by `kid` the same
    /// way, refuses it too (refused here unless
    /// `review_bad_signatures`).
    BadSignature,
    /// Anything else, by its metric/log reason (goes to TokenReview).
    Rejected(&'static str),
}

/// The outcome of a local verification.
pub type Verified = Result<(Identity, u64), Failure>;

/// A verified-ready key set with the `iss` and `aud` it requires.
pub struct KeySet {
    keys: HashMap<String, (Algorithm, DecodingKey)>,
    issuer: String,
    rs256: Validation,
    es256: Validation,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// The usable keys of `doc`, requiring `issuer` and one of `audiences`
    /// (the issuer itself when empty, kube-apiserver's default API audience).
    pub fn new(doc: &JwksDocument, issuer: String, audiences: &[String]) -> Self {
        let audiences = if audiences.is_empty() {
            std::slice::from_ref(&issuer)
        } else {
            audiences
        };
        let required = ["exp", "iss", "aud", "sub"];
        let audiences = audiences.to_vec();
        Self::build(doc, issuer, &audiences, &required, ALGORITHMS)
    }

    /// The keys of an external issuer's `doc` whose algorithm is among
    /// `algorithms`, requiring `issuer`, one of `audiences` (never empty:
    /// the configuration requires one) and `exp` (`sub` is not required:
    /// the username may come from another claim).
    pub fn for_issuer(
        doc: &JwksDocument,
        issuer: String,
        audiences: &[String],
        algorithms: &[Algorithm],
    ) -> Self {
        let required = ["exp", "iss", "aud"];
        Self::build(doc, issuer, audiences, &required, algorithms)
    }

    fn build(
        doc: &JwksDocument,
        issuer: String,
        audiences: &[String],
        required: &[&str],
        algorithms: &[Algorithm],
    ) -> Self {
        let keys = doc
            .keys
            .iter()
            .take(MAX_KEYS)
            .filter_map(usable_key)
            .filter(|(_, (alg, _))| algorithms.contains(alg))
            .collect();
        let validation = |alg| {
            let mut v = Validation::new(alg);
            v.leeway = LEEWAY_SECS;
            v.validate_exp = true;
            v.validate_nbf = true;
            v.validate_aud = true;
            v.set_required_spec_claims(required);
            v.set_issuer(&[&issuer]);
            v.set_audience(audiences);
            v
        };
        Self {
            rs256: validation(Algorithm::RS256),
            es256: validation(Algorithm::ES256),
            keys,
            issuer,
        }
    }

    /// How many keys are usable.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The required issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The ids of the keys.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Whether a key with this id is present.
    pub fn has(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// Verifies `token` and maps it to its ServiceAccount identity, with its
    /// `exp`.
    pub fn verify(&self, token: &str) -> Verified {
        let claims: Claims = self.decode(token)?;
        let id = claims::identity(&claims).map_err(|_| rejected("claims"))?;
        Ok((id, claims.exp))
    }

    /// Checks `token`'s header, signature, `iss`, `aud`, `exp` and `nbf`
    /// against this set, and parses its claims as `T`.
    pub fn decode<T: DeserializeOwned>(&self, token: &str) -> Result<T, Failure> {
        if !super::crypto::install() {
            return Err(rejected("no_provider"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| rejected("malformed"))?;
        let kid = header.kid.as_deref().ok_or_else(|| rejected("no_kid"))?;
        let (alg, key) = self.keys.get(kid).ok_or(Failure::UnknownKid)?;
        // Under one of the set's keys, claiming its issuer: a signature
        // that cannot verify is a forgery, not another authenticator's token.
        let forged = |otherwise| {
            if unverified_issuer(token).as_deref() == Some(self.issuer.as_str()) {
                Failure::BadSignature
            } else {
                rejected(otherwise)
            }
        };
        if header.alg != *alg {
            return Err(forged("algorithm"));
        }
        let validation = match alg {
            Algorithm::ES256 => &self.es256,
            _ => &self.rs256,
        };
        // jsonwebtoken checks the signature before any claim.
        let data =
            jsonwebtoken::decode::<T>(token, key, validation).map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => forged("bad_signature"),
                kind => rejected(reason(kind)),
            })?;
        Ok(data.claims)
    }
}

/// The id of the key `token` names, if its header says so (unverified).
pub fn kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok()?.kid
}

/// Every issuer a token's payload names, unverified and leniently: each
/// `iss` key (a payload may repeat it, which a strict parser refuses), as a
/// string or as an array of strings; none when the payload is unreadable.
/// For routing only: a token naming an issuer in any of these ways is that
/// issuer's to accept or refuse, never another authenticator's.
pub fn unverified_issuers(token: &str) -> Vec<String> {
    use base64::Engine;
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

    struct All(Vec<String>);
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = All;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JWT payload")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<All, A::Error> {
            let mut out = Vec::new();
            while let Some(k) = m.next_key::<String>()? {
                if k != "iss" {
                    m.next_value::<IgnoredAny>()?;
                    continue;
                }
                match m.next_value::<serde_json::Value>()? {
                    serde_json::Value::String(s) => out.push(s),
                    serde_json::Value::Array(a) => {
                        out.extend(a.into_iter().filter_map(|v| v.as_str().map(str::to_owned)))
                    }
                    _ => {}
                }
            }
            Ok(All(out))
        }
    }
    impl<'de> Deserialize<'de> for All {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(V)
        }
    }
    let Some(payload) = token.split('.').nth(1) else {
        return Vec::new();
    };
    let Ok(json) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) else {
        return Vec::new();
    };
    serde_json::from_slice::<All>(&json).map_or_else(|_| Vec::new(), |a| a.0)
}

/// The `iss` claim of `token`, read without verifying anything (to choose
/// whose keys may verify it, never to trust it).
pub fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Iss>(&json).ok()?.iss
}

fn rejected(reason: &'static str) -> Failure {
    Failure::Rejected(reason)
}

fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature => "bad_signature",
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not_yet_valid",
        ErrorKind::InvalidAudience => "audience",
        ErrorKind::InvalidIssuer => "issuer",
        ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => "algorithm",
        _ => "malformed",
    }
}

/// `(kid, (alg, key))` for a signature key authgate can verify.
fn usable_key(v: &serde_json::Value) -> Option<(String, (Algorithm, DecodingKey))> {
    let jwk: Jwk = serde_json::from_value(v.clone()).ok()?;
    let c = &jwk.common;
    if !matches!(c.public_key_use, None | Some(PublicKeyUse::Signature)) {
        return None;
    }
    let kid = c.key_id.clone().filter(|k| !k.is_empty())?;
    let alg = match (&jwk.algorithm, c.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
            if p.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        _ => return None,
    };
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some((kid, (alg, key)))
}

#[cfg(test)]
mod tests;
