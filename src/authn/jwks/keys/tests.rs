use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use super::*;

const ISS: &str = "https://kubernetes.default.svc";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

struct Signer(EcdsaKeyPair);

impl Signer {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Self(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .unwrap(),
        )
    }

    fn jwk(&self, kid: &str) -> Value {
        let p = self.0.public_key().as_ref();
        json!({
            "use": "sig", "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&p[33..65]),
        })
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let b = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let msg = format!("{}.{}", b(header), b(claims));
        let sig = self.0.sign(&SystemRandom::new(), msg.as_bytes()).unwrap();
        format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": [ISS], "sub": "system:serviceaccount:demo:web",
        "iat": now(), "nbf": now(), "exp": now() + 600,
        "kubernetes.io": {"namespace": "demo", "serviceaccount": {"name": "web", "uid": "u1"}}
    })
}

fn header(kid: &str) -> Value {
    json!({"alg": "ES256", "kid": kid})
}

fn set(keys: Vec<Value>, audiences: &[&str]) -> KeySet {
    let doc = JwksDocument { keys };
    let audiences: Vec<String> = audiences.iter().map(|a| (*a).to_owned()).collect();
    KeySet::new(&doc, ISS.to_owned(), &audiences)
}

#[test]
fn a_valid_es256_token_verifies_to_its_serviceaccount() {
    let k = Signer::new();
    let ks = set(vec![k.jwk("k1")], &[]);
    let c = claims();
    let (id, exp) = ks.verify(&k.sign(&header("k1"), &c)).unwrap();
    assert_eq!(id.user(), "system:serviceaccount:demo:web");
    assert_eq!(id.uid(), Some("u1"));
    assert_eq!(exp, c["exp"].as_u64().unwrap());
}

fn put(c: &mut serde_json::Map<String, Value>, key: &str, value: Value) {
    c.insert(key.to_owned(), value);
}

/// Claims for audience `https://authgate`, changed by `f`.
fn with(f: &dyn Fn(&mut serde_json::Map<String, Value>)) -> Value {
    let mut c = claims();
    c["aud"] = json!(["https://authgate"]);
    f(c.as_object_mut().unwrap());
    c
}

/// Tokens whose signature does not verify under `k1`.
fn forgeries(k: &Signer, other: &Signer) -> Vec<String> {
    let good = k.sign(&header("k1"), &with(&|_| {}));
    // A middle character: the last one may only carry padding bits.
    let at = good.rfind('.').unwrap() + 10;
    let mut tampered = good.clone().into_bytes();
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let (h, rest) = good.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let other_sub = with(&|c| put(c, "sub", json!("system:serviceaccount:demo:x")));
    vec![
        String::from_utf8(tampered).unwrap(),
        format!(
            "{h}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(other_sub.to_string())
        ),
        // Signed by k2's key but naming k1.
        other.sign(&header("k1"), &with(&|_| {})),
    ]
}

#[test]
fn every_defect_is_a_failure_with_its_reason() {
    let k = Signer::new();
    let other = Signer::new();
    let ks = set(vec![k.jwk("k1"), other.jwk("k2")], &["https://authgate"]);
    assert!(ks.verify(&k.sign(&header("k1"), &with(&|_| {}))).is_ok());
    // Forgeries under a known kid claiming the cluster's issuer: what the
    // apiserver refuses too.
    for token in forgeries(&k, &other) {
        assert_eq!(ks.verify(&token).map(|_| ()), Err(Failure::BadSignature));
    }
    // A bad signature claiming another issuer may be another authenticator's
    // token: not refused outright.
    let foreign = with(&|c| put(c, "iss", json!("https://idp.example")));
    let foreign = other.sign(&header("k1"), &foreign);
    assert_eq!(
        ks.verify(&foreign).map(|_| ()),
        Err(Failure::Rejected("bad_signature"))
    );

    type Edit = fn(&mut serde_json::Map<String, Value>);
    let claim_cases: [(&str, Edit); 9] = [
        ("audience", |c| put(c, "aud", json!(["other"]))),
        ("audience", |c| put(c, "aud", json!(ISS))),
        ("issuer", |c| put(c, "iss", json!("https://evil"))),
        ("expired", |c| put(c, "exp", json!(now() - 120))),
        ("not_yet_valid", |c| put(c, "nbf", json!(now() + 120))),
        ("malformed", |c| drop(c.remove("exp"))),
        ("malformed", |c| drop(c.remove("aud"))),
        ("malformed", |c| drop(c.remove("kubernetes.io"))),
        ("claims", |c| {
            put(c, "sub", json!("system:serviceaccount:demo:x"))
        }),
    ];
    for (reason, edit) in claim_cases {
        let token = k.sign(&header("k1"), &with(&edit));
        assert_eq!(
            ks.verify(&token).map(|_| ()),
            Err(Failure::Rejected(reason)),
            "{reason}"
        );
    }

    let good = with(&|_| {});
    let header_cases = [
        (json!({"alg": "ES256", "kid": "nope"}), Failure::UnknownKid),
        (json!({"alg": "ES256"}), Failure::Rejected("no_kid")),
        // The key's algorithm is not the header's: a forgery.
        (json!({"alg": "RS256", "kid": "k1"}), Failure::BadSignature),
        (
            json!({"alg": "none", "kid": "k1"}),
            Failure::Rejected("malformed"),
        ),
    ];
    for (h, want) in header_cases {
        assert_eq!(ks.verify(&k.sign(&h, &good)).map(|_| ()), Err(want), "{h}");
    }
    for junk in ["opaque-token", "a.b.c"] {
        assert_eq!(
            ks.verify(junk).map(|_| ()),
            Err(Failure::Rejected("malformed"))
        );
    }

    // Clock skew: expired 30 s ago or valid from 30 s on is still fine.
    let skewed = with(&|c| {
        put(c, "exp", json!(now() - 30));
        put(c, "nbf", json!(now() + 30));
    });
    assert!(ks.verify(&k.sign(&header("k1"), &skewed)).is_ok());
}

#[test]
fn without_audiences_the_issuer_is_the_audience() {
    let k = Signer::new();
    let ks = set(vec![k.jwk("k1")], &[]);
    assert!(ks.verify(&k.sign(&header("k1"), &claims())).is_ok());
    let mut c = claims();
    c["aud"] = json!(["https://kubernetes.default.svc.cluster.local"]);
    assert_eq!(
        ks.verify(&k.sign(&header("k1"), &c)).map(|_| ()),
        Err(Failure::Rejected("audience"))
    );
}

#[test]
fn only_signature_keys_with_an_id_and_a_known_algorithm_are_kept() {
    let k = Signer::new();
    let rsa =
        json!({"kty": "RSA", "kid": "r1", "alg": "RS256", "use": "sig", "n": "AQAB", "e": "AQAB"});
    let mut enc = k.jwk("enc");
    enc["use"] = json!("enc");
    let mut no_kid = k.jwk("");
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut rs512 = rsa.clone();
    rs512["kid"] = json!("r512");
    rs512["alg"] = json!("RS512");
    let mut p384 = k.jwk("p384");
    p384["crv"] = json!("P-384");
    p384["alg"] = json!("ES384");
    let mut no_alg = k.jwk("ec-no-alg");
    no_alg.as_object_mut().unwrap().remove("alg");
    let keys = vec![
        k.jwk("ec1"),
        rsa,
        enc,
        no_kid,
        rs512,
        p384,
        no_alg,
        json!({"kty": "oct", "kid": "h1", "k": "c2VjcmV0"}),
        json!({"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "AAAA"}),
        json!("garbage"),
    ];
    let ks = set(keys, &[]);
    let mut kids: Vec<&str> = ks.keys.keys().map(String::as_str).collect();
    kids.sort_unstable();
    assert_eq!(kids, ["ec-no-alg", "ec1", "r1"]);
    assert_eq!(ks.len(), 3);
    assert!(ks.has("r1") && !ks.has("h1"));
}

#[test]
fn the_configured_issuer_must_be_the_discovered_one() {
    assert_eq!(issuer(ISS, None).unwrap(), ISS);
    assert_eq!(issuer(ISS, Some(ISS)).unwrap(), ISS);
    assert!(issuer(ISS, Some("https://other")).is_err());
    assert!(issuer("", None).is_err());
}

#[test]
fn kid_reads_the_header_only() {
    let k = Signer::new();
    assert_eq!(
        kid(&k.sign(&header("abc"), &claims())).as_deref(),
        Some("abc")
    );
    assert_eq!(kid("not-a-jwt"), None);
}
