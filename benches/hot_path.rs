//! Micro-benchmarks of the per-request work: the cache-hit authn+authz
//! decision, certificate identity extraction, header sanitation, and route
//! lookup among 1,000 routes.

mod support;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use authgate::authn::policy::Notice;
use authgate::authn::x509::CertMapper;
use authgate::authn::{Authenticator, TokenAuthenticator};
use authgate::authz::attributes::for_request;
use authgate::authz::{Authorizer, Authorizers};
use authgate::config::{HeaderNames, IdentityRule, RouteAuth, RuleKind};
use authgate::identity::{AuthMethod, Identity};
use authgate::proxy::headers;
use authgate::routes::{RouteId, RouteTable, normalize_path};
use authgate::tls::Issuers;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls_pki_types::CertificateDer;

/// The client address of every benched request.
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A realistic projected ServiceAccount token length (~1 KB JWT).
fn jwt_like() -> String {
    format!(
        "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.{}.{}",
        "a".repeat(700),
        "s".repeat(342)
    )
}

fn decision(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // kube::Client spawns its tower Buffer worker: it needs a runtime context.
    let _rt_guard = rt.enter();
    let kube = support::backend(10_000);
    let tokens: Vec<Arc<dyn TokenAuthenticator>> = vec![kube.token_review.clone().expect("tr")];
    let authz: Vec<Arc<dyn Authorizer>> = vec![kube.access_review.expect("sar")];
    let authn = Authenticator::new(CertMapper::new(&[]), tokens);
    let authz = Authorizers::new(authz);
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::try_from(format!("Bearer {}", jwt_like())).expect("header"),
    );
    let attrs = for_request(None, &Method::GET, "/api/v1/namespaces/default/pods");
    // Warm both caches.
    rt.block_on(async {
        let id = authn
            .authenticate(None, &headers, RouteAuth::default(), LOCALHOST)
            .await
            .expect("authn");
        authz
            .authorize(RouteId::new(0), &id, Notice::None, &attrs)
            .await
            .expect("authz");
    });
    c.bench_function("decision/token_cache_hit_authn_authz", |b| {
        b.to_async(&rt).iter(|| async {
            let id = authn
                .authenticate(None, black_box(&headers), RouteAuth::default(), LOCALHOST)
                .await
                .expect("authn");
            authz
                .authorize(RouteId::new(0), &id, Notice::None, black_box(&attrs))
                .await
                .expect("authz");
        });
    });
    let cert_id: authgate::authn::CertIdentity = Ok(Identity::new(
        "alice".into(),
        None,
        vec!["dev".into()],
        BTreeMap::from([(
            "authentication.kubernetes.io/credential-id".into(),
            vec!["X509SHA256=ab".into()],
        )]),
        AuthMethod::Mtls,
    ));
    rt.block_on(async {
        let id = authn
            .authenticate(
                Some(&cert_id),
                &HeaderMap::new(),
                RouteAuth::default(),
                LOCALHOST,
            )
            .await
            .expect("authn");
        authz
            .authorize(RouteId::new(0), &id, Notice::None, &attrs)
            .await
            .expect("authz");
    });
    c.bench_function("decision/mtls_cache_hit_authn_authz", |b| {
        b.to_async(&rt).iter(|| async {
            let id = authn
                .authenticate(
                    Some(&cert_id),
                    &HeaderMap::new(),
                    RouteAuth::default(),
                    LOCALHOST,
                )
                .await
                .expect("authn");
            authz
                .authorize(RouteId::new(0), &id, Notice::None, black_box(&attrs))
                .await
                .expect("authz");
        });
    });
}

fn cert(cn: Option<&str>, orgs: &[&str], uri: Option<&str>) -> Vec<u8> {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    if let Some(cn) = cn {
        p.distinguished_name.push(DnType::CommonName, cn);
    }
    if let Some(o) = orgs.first() {
        p.distinguished_name.push(DnType::OrganizationName, *o);
    }
    if let Some(u) = uri {
        p.subject_alt_names
            .push(SanType::URI(u.try_into().expect("uri")));
    }
    p.self_signed(&KeyPair::generate().expect("key"))
        .expect("cert")
        .der()
        .to_vec()
}

fn identity(c: &mut Criterion) {
    let mapper = CertMapper::new(&[
        IdentityRule::unbound(RuleKind::Spiffe {
            trust_domain: "cluster.local".into(),
        }),
        IdentityRule::unbound(RuleKind::CommonName),
    ]);
    let issuers = Issuers::default();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let cn = [CertificateDer::from(cert(Some("alice"), &["dev"], None))];
    let spiffe = [CertificateDer::from(cert(
        None,
        &[],
        Some("spiffe://cluster.local/ns/monitoring/sa/prometheus"),
    ))];
    c.bench_function("identity/cn_o_from_der", |b| {
        b.iter(|| mapper.map(black_box(&cn), &issuers, now).expect("maps"))
    });
    c.bench_function("identity/spiffe_from_der", |b| {
        b.iter(|| mapper.map(black_box(&spiffe), &issuers, now).expect("maps"))
    });
}

fn sanitation(c: &mut Criterion) {
    let names = HeaderNames::default();
    let id = Identity::new(
        "system:serviceaccount:monitoring:prometheus".into(),
        Some("5b7c".into()),
        vec![
            "system:serviceaccounts".into(),
            "system:serviceaccounts:monitoring".into(),
        ],
        BTreeMap::new(),
        AuthMethod::Token,
    );
    let mut base = HeaderMap::new();
    for (k, v) in [
        ("host", "api.example"),
        ("user-agent", "kubectl/v1.33.0"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip"),
        ("authorization", "Bearer abc.def.ghi"),
        ("x-remote-user", "mallory"),
        ("impersonate-user", "admin"),
        ("connection", "keep-alive"),
    ] {
        base.insert(k, HeaderValue::from_static(v));
    }
    c.bench_function("headers/strip_and_set_identity", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |h| {
                // What `headers::rewrite` does for a granted identity.
                headers::sanitize(h, &names);
                headers::set_identity(h, black_box(&id), &names).expect("rewrite")
            },
            criterion::BatchSize::SmallInput,
        );
    });
}

fn routes(c: &mut Criterion) {
    let table = RouteTable::new(
        (0..1000)
            .map(|i| (format!("/apis/group{i}.example.com/v1"), i))
            .chain([("/".to_owned(), 1000)])
            .collect(),
    );
    let path = "/apis/group731.example.com/v1/namespaces/default/widgets/w-1";
    c.bench_function("routes/normalize_and_select_among_1000", |b| {
        b.iter(|| {
            let p = normalize_path(black_box(path)).expect("path");
            *table.select(&p).expect("route")
        });
    });
}

criterion_group!(benches, decision, identity, sanitation, routes);
criterion_main!(benches);
