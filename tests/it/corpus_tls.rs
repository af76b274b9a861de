//! Bad-input corpus, below HTTP: hand-made TLS records on the TLS port,
//! every kind of bad client certificate (over TLS 1.3 and TLS 1.2),
//! slowloris clients, and a connection flood.
//!
//! Every case asserts its outcome, that the upstream saw nothing, and that a
//! good request still works afterwards.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use testkit::raw::{self, Until};
use testkit::*;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the server must answer a raw TLS-layer input.
#[derive(Clone, Copy, Debug)]
enum Tls {
    /// A fatal alert with this description, then a close.
    Alert(u8),
    /// A close, with no handshake record and nothing HTTP.
    Closed,
    /// A ServerHello (the positive control for the hand-made ClientHello).
    ServerHello,
}

const DECODE_ERROR: u8 = 50;
const PROTOCOL_VERSION: u8 = 70;
const UNEXPECTED_MESSAGE: u8 = 10;
const HANDSHAKE_FAILURE: u8 = 40;

#[tokio::test]
async fn hand_made_tls_records_are_refused_at_once_and_never_reach_http() {
    let env = Env::start(|y| y.rest = "limits: {handshake_timeout: 5s}\n".into()).await;
    let hello = raw::rustls_client_hello(&env.pki.ca_der);
    let http = format!(
        "GET /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {BOB_TOKEN}\r\n\r\n"
    );
    let sslv2 = [
        &[0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0, 0, 0, 0x10][..],
        &[
            0x07, 0x00, 0xc0, 0x05, 0x00, 0x80, 0x03, 0x00, 0x80, 0x01, 0x00, 0x80, 0x06, 0x00,
            0x40, 0x04, 0x00, 0x80, 0x02, 0x00, 0x80,
        ],
        &[0x42; 16],
    ]
    .concat();
    let oversized_record = [&[0x16, 0x03, 0x01, 0x48, 0x01][..], &[0x01; 512]].concat();
    let weak = [0x0005, 0x0004, 0x000a, 0x0001, 0x0003];
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<u8>, bool, Tls)> = vec![
        ("junk_bytes", b"\x00\x01\x02garbage\xff\xfe".repeat(10), false, Tls::Alert(DECODE_ERROR)),
        ("plain_http_request_on_the_tls_port", http.into_bytes(), false, Tls::Alert(DECODE_ERROR)),
        ("cleartext_h2_preface_on_the_tls_port", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), false, Tls::Alert(DECODE_ERROR)),
        ("sslv2_compatible_client_hello", sslv2, false, Tls::Alert(DECODE_ERROR)),
        ("sslv3_client_hello", raw::client_hello(0x0300, None), false, Tls::Alert(PROTOCOL_VERSION)),
        ("tls_1_0_client_hello", raw::client_hello(0x0301, None), false, Tls::Alert(PROTOCOL_VERSION)),
        ("tls_1_1_client_hello", raw::client_hello(0x0302, None), false, Tls::Alert(PROTOCOL_VERSION)),
        ("supported_versions_offering_only_tls_1_1", raw::client_hello(0x0303, Some(&[0x0302])), false, Tls::Alert(PROTOCOL_VERSION)),
        ("tls_1_2_client_hello_with_only_weak_ciphers", raw::client_hello_with(0x0303, None, &weak), false, Tls::Alert(HANDSHAKE_FAILURE)),
        ("application_data_before_the_handshake", raw::tls_record(0x17, 0x0303, b"hello"), false, Tls::Alert(UNEXPECTED_MESSAGE)),
        ("record_longer_than_the_tls_maximum", oversized_record, false, Tls::Alert(DECODE_ERROR)),
        ("truncated_client_hello_then_eof", hello[..hello.len() / 2].to_vec(), true, Tls::Closed),
        ("record_header_only_then_eof", hello[..5].to_vec(), true, Tls::Closed),
        // The same builder with TLS 1.2 gets a ServerHello: the refusals above
        // are about the versions and ciphers, not about the hand-made bytes.
        ("tls_1_2_client_hello_positive_control", raw::client_hello(0x0303, None), false, Tls::ServerHello),
    ];
    for (case, bytes, eof, want) in cases {
        let before = env.upstream.count();
        let wait = Duration::from_secs(3);
        let r = raw::tcp(env.gate.addr, &bytes, eof, wait).await;
        let head = &r.bytes[..r.bytes.len().min(8)];
        assert!(!r.http(), "{case}: the server answered HTTP: {head:02x?}");
        match want {
            Tls::Alert(code) => {
                assert_eq!(
                    head,
                    [0x15, 3, 3, 0, 2, 2, code],
                    "{case}: want fatal alert {code}"
                );
                assert!(
                    r.closed && r.elapsed < wait,
                    "{case}: not closed at once: {r:?}"
                );
            }
            Tls::Closed => {
                assert!(!r.server_hello(), "{case}: got a ServerHello");
                assert!(
                    r.closed && r.elapsed < wait,
                    "{case}: not closed at once: {r:?}"
                );
            }
            Tls::ServerHello => assert_eq!(head.get(5), Some(&2), "{case}: {head:02x?}"),
        }
        assert_eq!(env.upstream.count(), before, "{case}: reached the upstream");
        raw::assert_still_serves(&env, case).await;
    }
}

#[tokio::test]
async fn unknown_alpn_is_refused_in_the_handshake() {
    let env = Env::start(|_| {}).await;
    for alpn in [&b"h3"[..], b"spdy/3.1", b"http/1.0"] {
        let r = raw::tls_connect(&env, None, false, &[alpn]).await;
        let case = String::from_utf8_lossy(alpn);
        assert!(r.is_err(), "ALPN {case} only: handshake must fail");
    }
    // Control: offering no ALPN at all is HTTP/1.1.
    let tls = raw::tls_connect(&env, None, false, &[]).await.unwrap();
    let reply = raw::exchange(tls, raw::get_as_bob("/api/x", ""), Until::FirstResponse).await;
    assert_eq!(reply.statuses(), [200], "{}", reply.summary());
    assert_eq!(env.upstream.count(), 1);
    raw::assert_still_serves(&env, "unknown ALPN").await;
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    (p.not_before, p.not_after) = (
        now - time::Duration::days(1),
        now + time::Duration::days(30),
    );
    p
}

/// alice/dev, clientAuth, valid now: only its issuer is wrong.
fn alice_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, "alice");
    p.distinguished_name.push(DnType::OrganizationName, "dev");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    (p.not_before, p.not_after) = (
        now - time::Duration::hours(1),
        now + time::Duration::days(1),
    );
    p
}

fn client_cert(chain: Vec<CertificateDer<'static>>, key: &KeyPair) -> ClientCert {
    ClientCert {
        chain,
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        cert_file: "unused.crt".into(),
        key_file: "unused.key".into(),
    }
}

/// Certificates whose chain does not lead to the trusted root.
fn rogue_certs(pki: &Pki) -> Vec<(&'static str, ClientCert)> {
    let k = || KeyPair::generate().expect("key");
    let key = k();
    let self_signed = alice_params().self_signed(&key).expect("self-signed");
    let self_signed = client_cert(vec![self_signed.der().clone()], &key);
    // An intermediate named like the real one, signed by a CA nobody trusts.
    let other_root = CertifiedIssuer::self_signed(ca_params("other root"), k()).expect("CA");
    let rogue = CertifiedIssuer::signed_by(ca_params("test intermediate CA"), k(), &other_root)
        .expect("rogue intermediate");
    let key = k();
    let leaf = alice_params().signed_by(&key, &rogue).expect("leaf");
    let rogue_chain = client_cert(vec![leaf.der().clone(), rogue.der().clone()], &key);
    // A self-signed CA with the trusted root's name.
    let fake_root = CertifiedIssuer::self_signed(ca_params("test root CA"), k()).expect("CA");
    let key = k();
    let leaf = alice_params().signed_by(&key, &fake_root).expect("leaf");
    let fake_root_chain = client_cert(vec![leaf.der().clone(), fake_root.der().clone()], &key);
    // A valid leaf sent without its intermediate.
    let mut missing = pki.client("no-intermediate", &ClientOpts::cn("alice", &["dev"]));
    missing.chain.truncate(1);
    // A valid root-signed leaf (not a CA) used to sign another leaf.
    let ee = pki.client("ee-as-ca", &ClientOpts::cn("ee", &[]).signer(Signer::Root));
    let ee_key = KeyPair::try_from(ee.key.secret_pkcs8_der()).expect("key");
    let issuer = Issuer::from_ca_cert_der(&ee.chain[0], ee_key).expect("issuer");
    let key = k();
    let leaf = alice_params().signed_by(&key, &issuer).expect("leaf");
    let ee_chain = client_cert(vec![leaf.der().clone(), ee.chain[0].clone()], &key);
    // A valid leaf with one bit of its signature flipped.
    let mut tampered = pki.client("tampered", &ClientOpts::cn("alice", &["dev"]));
    let mut der = tampered.chain[0].to_vec();
    *der.last_mut().expect("signature") ^= 1;
    tampered.chain[0] = CertificateDer::from(der);
    vec![
        ("self_signed_client_cert", self_signed),
        ("intermediate_not_signed_by_the_trusted_root", rogue_chain),
        (
            "self_signed_ca_named_like_the_trusted_root",
            fake_root_chain,
        ),
        ("chain_missing_its_intermediate", missing),
        ("end_entity_cert_used_as_an_intermediate", ee_chain),
        ("leaf_with_a_corrupted_signature", tampered),
    ]
}

/// The handshake fails (always over TLS 1.2), or the connection closes
/// without any response: never a fallback to the bearer token.
async fn assert_refused(env: &Env, case: &str, cert: &ClientCert, tls12: bool) {
    let case = format!("{case} (TLS {})", if tls12 { "1.2" } else { "1.3" });
    let before = env.upstream.count();
    match raw::tls_connect(env, Some(cert), tls12, &[b"http/1.1"]).await {
        Err(_) => {}
        Ok(tls) => {
            assert!(!tls12, "{case}: the TLS 1.2 handshake succeeded");
            let reply =
                raw::exchange(tls, raw::get_as_bob("/api/x", ""), Until::FirstResponse).await;
            assert!(
                reply.responses.is_empty() && reply.closed,
                "{case}: {}",
                reply.summary()
            );
        }
    }
    assert_eq!(env.upstream.count(), before, "{case}: reached the upstream");
}

/// Every case over TLS 1.3 and TLS 1.2, then good certificates (serials 42
/// and 43, via the intermediate and via the root) as controls: the same
/// client code does get 200 as alice.
async fn refuse_all_then_controls(env: &Env, cases: &[(&str, ClientCert)]) {
    for (case, cert) in cases {
        for tls12 in [false, true] {
            assert_refused(env, case, cert, tls12).await;
        }
        raw::assert_still_serves(env, case).await;
    }
    let alice = || ClientOpts::cn("alice", &["dev"]);
    let good = [alice().serial(42), alice().serial(43).signer(Signer::Root)];
    for (i, opts) in good.iter().enumerate() {
        let cert = env.pki.client(&format!("good{i}"), opts);
        for tls12 in [false, true] {
            let case = format!("good{i} (tls12: {tls12})");
            let before = env.upstream.count();
            let tls = raw::tls_connect(env, Some(&cert), tls12, &[b"http/1.1"]).await;
            let tls = tls.unwrap_or_else(|e| panic!("{case}: {e}"));
            let get = raw::get_as_bob("/api/x", "");
            let reply = raw::exchange(tls, get, Until::FirstResponse).await;
            assert_eq!(reply.statuses(), [200], "{case}: {}", reply.summary());
            assert_eq!(env.upstream.count(), before + 1, "{case}");
            assert_eq!(
                env.upstream.last().all("x-remote-user"),
                ["alice"],
                "{case}"
            );
        }
    }
}

#[tokio::test]
async fn every_untrusted_or_unusable_client_certificate_fails_even_with_a_valid_token() {
    let env = Env::start(|_| {}).await;
    let alice = || ClientOpts::cn("alice", &["dev"]);
    let mut cases: Vec<(&str, ClientCert)> = [
        ("expired", alice().validity(Validity::Expired)),
        ("not_yet_valid", alice().validity(Validity::NotYetValid)),
        ("signed_by_an_untrusted_ca", alice().signer(Signer::Foreign)),
        ("server_auth_only_eku", alice().usage(Usage::ServerAuthOnly)),
    ]
    .into_iter()
    .map(|(case, opts)| (case, env.pki.client(case, &opts)))
    .collect();
    cases.extend(rogue_certs(&env.pki));
    refuse_all_then_controls(&env, &cases).await;
}

/// PEM for a list of DER certificates.
fn pem(certs: &[&CertificateDer<'_>]) -> String {
    use base64::Engine;
    let mut out = String::new();
    for c in certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(c.as_ref());
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

#[tokio::test]
async fn revoked_client_certificates_fail_even_with_a_valid_token() {
    // Trust root and intermediate, so each CRL's issuer is in the bundle.
    let env = Env::start_with(|pki, y| {
        let crl = pki.crl_file("revoked.crl", &[666, 667]);
        let intermediate = pki.client("bundle", &ClientOpts::cn("x", &[])).chain[1].clone();
        let bundle = pki.path().join("corpus-bundle.crt");
        std::fs::write(&bundle, pem(&[&pki.ca_der, &intermediate])).expect("bundle");
        y.tls_extra = format!(
            "  client_ca_file: {}\n  crl_files: [{}]\n",
            bundle.display(),
            crl.display()
        );
    })
    .await;
    let alice = || ClientOpts::cn("alice", &["dev"]);
    let cases = [
        ("revoked_by_the_intermediate_crl", alice().serial(666)),
        (
            "revoked_by_the_root_crl",
            alice().serial(667).signer(Signer::Root),
        ),
    ];
    let cases: Vec<(&str, ClientCert)> = cases
        .into_iter()
        .map(|(case, o)| (case, env.pki.client(case, &o)))
        .collect();
    refuse_all_then_controls(&env, &cases).await;
}

/// A 1 s header and handshake timeout.
async fn slow_env() -> Env {
    let limits = "limits: {header_read_timeout: 1s, handshake_timeout: 1s}\n";
    Env::start(|y| y.rest = limits.into()).await
}

fn assert_cut_near_one_second(case: &str, t: &raw::Trickle, total: usize) {
    assert!(t.closed, "{case}: never closed: {t:?}");
    assert!(
        t.sent < total,
        "{case}: the whole input went through: {t:?}"
    );
    let ok = t.elapsed >= Duration::from_millis(900) && t.elapsed < Duration::from_millis(2500);
    assert!(ok, "{case}: closed after {:?}, want ~1 s", t.elapsed);
    assert!(
        !String::from_utf8_lossy(&t.got).contains(" 200 "),
        "{case}: {t:?}"
    );
}

#[tokio::test]
async fn slowloris_request_heads_are_cut_at_the_header_read_timeout() {
    let env = slow_env().await;
    let head = raw::get_as_bob("/api/x", &format!("X-Pad: {}\r\n", "a".repeat(64)));
    let gap = Duration::from_millis(50);
    // A new connection that trickles its first request head.
    let mut tls = env.client().connect().await.unwrap();
    let t = raw::trickle(&mut tls, &head, gap).await;
    assert_cut_near_one_second("first_request_head_trickled", &t, head.len());
    assert_eq!(env.upstream.count(), 0);
    raw::assert_still_serves(&env, "first_request_head_trickled").await;
    // A keep-alive connection: one good request, then a trickled second head.
    let mut tls = env.client().connect().await.unwrap();
    tls.write_all(&raw::get_as_bob("/api/x", "")).await.unwrap();
    let mut got = Vec::new();
    while raw::parse_responses(&got, false).is_empty() {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(TIMEOUT, tls.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the first response");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(raw::parse_responses(&got, false)[0].status, 200);
    let before = env.upstream.count();
    let t = raw::trickle(&mut tls, &head, gap).await;
    assert_cut_near_one_second("keep_alive_second_head_trickled", &t, head.len());
    assert_eq!(env.upstream.count(), before);
    raw::assert_still_serves(&env, "keep_alive_second_head_trickled").await;
}

#[tokio::test]
async fn slow_or_silent_tls_handshakes_are_cut_at_the_handshake_timeout() {
    let env = slow_env().await;
    let hello = raw::rustls_client_hello(&env.pki.ca_der);
    let wait = Duration::from_secs(5);
    let window = Duration::from_millis(900)..Duration::from_millis(2500);
    for (case, bytes) in [
        ("no_client_hello_at_all", &[][..]),
        (
            "half_a_client_hello_then_silence",
            &hello[..hello.len() / 2],
        ),
        ("record_header_only_then_silence", &hello[..5]),
    ] {
        let r = raw::tcp(env.gate.addr, bytes, false, wait).await;
        assert!(r.closed && window.contains(&r.elapsed), "{case}: {r:?}");
        assert!(!r.server_hello(), "{case}");
        raw::assert_still_serves(&env, case).await;
    }
    let case = "client_hello_trickled_byte_by_byte";
    let mut tcp = tokio::net::TcpStream::connect(env.gate.addr).await.unwrap();
    let t = raw::trickle(&mut tcp, &hello, Duration::from_millis(50)).await;
    assert_cut_near_one_second(case, &t, hello.len());
    assert!(t.got.first() != Some(&0x16), "{case}: got a ServerHello");
    raw::assert_still_serves(&env, case).await;
    assert_eq!(
        env.upstream.count(),
        4,
        "only the good requests were forwarded"
    );
}

#[tokio::test]
async fn connections_beyond_max_connections_are_closed_and_slots_free_up() {
    let limits = "limits: {max_connections: 50, handshake_timeout: 10s}\n";
    let env = Env::start(|y| y.rest = limits.into()).await;
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(tokio::net::TcpStream::connect(env.gate.addr).await.unwrap());
    }
    // Each idle connection either holds a slot (still open) or was closed.
    let probes = idle.into_iter().map(|mut c| {
        tokio::spawn(async move {
            let mut b = [0u8; 8];
            let r = tokio::time::timeout(Duration::from_millis(1500), c.read(&mut b)).await;
            (matches!(r, Ok(Ok(0) | Err(_))), c)
        })
    });
    let mut closed = 0;
    let mut held = Vec::new();
    for p in probes.collect::<Vec<_>>() {
        match p.await.unwrap() {
            (true, _) => closed += 1,
            (false, c) => held.push(c),
        }
    }
    assert_eq!((closed, held.len()), (450, 50), "(closed, holding a slot)");
    let r = env.client().get_with_token("/api/x", BOB_TOKEN).await;
    assert!(r.is_err(), "a 51st connection must be refused: {r:?}");
    drop(held);
    let mut status = None;
    for _ in 0..100 {
        if let Ok(r) = env.client().get_with_token("/api/x", BOB_TOKEN).await {
            status = Some(r.status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status.map(|s| s.as_u16()), Some(200), "no slot freed up");
    assert_eq!(
        env.upstream.count(),
        1,
        "only the good request was forwarded"
    );
}
