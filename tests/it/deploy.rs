//! The deployment manifests under `deploy/`: both kustomizations render, every
//! object is a well-formed Kubernetes or cert-manager object (no misspelt
//! field survives), and the Deployment, its config, its Secrets and its
//! certificates fit together.
//!
//! Needs `kubectl` (with its built-in kustomize) on `PATH`, or `KUBECTL`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use authgate::config::Config;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, Pod, PodSpec, Probe, Service, ServiceAccount, Volume,
};
use k8s_openapi::api::flowcontrol::v1::{FlowSchema, PriorityLevelConfiguration};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod fleet;
mod monitoring;

// ── rendering ───────────────────────────────────────────────────────────────

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `kubectl kustomize DIR`, run from the repository root.
fn kustomize(dir: &str) -> String {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
    let out = Command::new(&kubectl)
        .args(["kustomize", dir])
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{kubectl} kustomize {dir}`: {e}. These tests need kubectl \
                 (with its built-in kustomize) on PATH, or KUBECTL=/path/to/kubectl"
            )
        });
    assert!(
        out.status.success(),
        "`{kubectl} kustomize {dir}` failed (kubectl without `kustomize`, or a broken \
         kustomization):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("kustomize output is UTF-8")
}

/// Every document of a multi-document YAML stream, as JSON values.
fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_str_multiple::<Value, Vec<_>>(yaml).expect("the YAML stream parses")
}

fn base() -> &'static [Value] {
    static DOCS: OnceLock<Vec<Value>> = OnceLock::new();
    DOCS.get_or_init(|| documents(&kustomize("deploy/base")))
}

fn overlay() -> &'static [Value] {
    static DOCS: OnceLock<Vec<Value>> = OnceLock::new();
    DOCS.get_or_init(|| documents(&kustomize("deploy/cert-manager")))
}

fn spiffe_example() -> Vec<Value> {
    let path = repo().join("deploy/cert-manager/examples/spiffe-client.yaml");
    documents(&std::fs::read_to_string(&path).expect("the SPIFFE example is readable"))
}

fn label(doc: &Value) -> String {
    format!(
        "{} {}/{}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["namespace"].as_str().unwrap_or("-"),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

// ── strict typing ───────────────────────────────────────────────────────────

/// The first place where `after` differs from `before`, if any.
fn first_difference(before: &Value, after: &Value, path: &str) -> Option<String> {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for key in b.keys().chain(a.keys()) {
                let at = format!("{path}.{key}");
                match (b.get(key), a.get(key)) {
                    (Some(x), Some(y)) => {
                        if let Some(d) = first_difference(x, y, &at) {
                            return Some(d);
                        }
                    }
                    (Some(_), None) => {
                        return Some(format!("{at} is dropped (a misspelt or misplaced field?)"));
                    }
                    _ => return Some(format!("{at} appears from nowhere")),
                }
            }
            None
        }
        (Value::Array(b), Value::Array(a)) if b.len() == a.len() => b
            .iter()
            .zip(a)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]"))),
        _ if before == after => None,
        _ => Some(format!("{path}: {before} became {after}")),
    }
}

/// Deserializes `doc` into its k8s-openapi type and requires the typed value
/// to serialize back to exactly `doc`. k8s-openapi ignores unknown fields, so
/// a misspelt field would pass the first step and is caught by the second.
fn typed<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<T, String> {
    let value: T =
        serde_json::from_value(doc.clone()).map_err(|e| format!("{}: {e}", label(doc)))?;
    let back = serde_json::to_value(&value).map_err(|e| format!("{}: {e}", label(doc)))?;
    match first_difference(doc, &back, "") {
        None => Ok(value),
        Some(d) => Err(format!("{}: {d}", label(doc))),
    }
}

/// Checks one document by its kind; unknown kinds are errors.
fn check_document(doc: &Value) -> Result<(), String> {
    match doc["kind"].as_str().unwrap_or_default() {
        "Namespace" => typed::<Namespace>(doc).map(drop),
        "ServiceAccount" => typed::<ServiceAccount>(doc).map(drop),
        "ClusterRole" => typed::<ClusterRole>(doc).map(drop),
        "ClusterRoleBinding" => typed::<ClusterRoleBinding>(doc).map(drop),
        "Role" => typed::<Role>(doc).map(drop),
        "RoleBinding" => typed::<RoleBinding>(doc).map(drop),
        "ConfigMap" => typed::<ConfigMap>(doc).map(drop),
        "Deployment" => typed::<Deployment>(doc).map(drop),
        "Service" => typed::<Service>(doc).map(drop),
        "PodDisruptionBudget" => typed::<PodDisruptionBudget>(doc).map(drop),
        "Pod" => typed::<Pod>(doc).map(drop),
        "FlowSchema" => typed::<FlowSchema>(doc).map(drop),
        "PriorityLevelConfiguration" => typed::<PriorityLevelConfiguration>(doc).map(drop),
        "HorizontalPodAutoscaler" => typed::<HorizontalPodAutoscaler>(doc).map(drop),
        "Certificate" => certificate(doc).and_then(|c| check_certificate(&c)),
        "Issuer" | "ClusterIssuer" => issuer(doc).and_then(|i| check_issuer(&i)),
        // Prometheus Operator CRDs (deploy/monitoring), checked structurally.
        "ServiceMonitor" => monitoring::service_monitor(doc).map(drop),
        "PrometheusRule" => monitoring::prometheus_rule(doc).map(drop),
        other => Err(format!(
            "{}: unknown kind {other:?} (teach tests/deploy.rs about it)",
            label(doc)
        )),
    }
}

fn check_all(docs: &[Value]) {
    let errors: Vec<String> = docs
        .iter()
        .filter_map(|d| check_document(d).err())
        .collect();
    assert!(errors.is_empty(), "invalid objects:\n{}", errors.join("\n"));
}

/// The single object of `kind`, typed.
fn one<T: DeserializeOwned + Serialize>(docs: &[Value], kind: &str) -> T {
    let mut found = all::<T>(docs, kind);
    assert_eq!(found.len(), 1, "expected exactly one {kind}");
    found.pop().expect("one object")
}

fn all<T: DeserializeOwned + Serialize>(docs: &[Value], kind: &str) -> Vec<T> {
    docs.iter()
        .filter(|d| d["kind"] == kind)
        .map(|d| typed(d).expect("a well-typed object"))
        .collect()
}

// ── cert-manager (minimal, strict) ──────────────────────────────────────────

/// A cert-manager object: only `cert-manager.io/v1` and only known fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CertManager<S> {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: S,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CertificateSpec {
    secret_name: String,
    common_name: Option<String>,
    #[serde(default)]
    dns_names: Vec<String>,
    #[serde(default)]
    usages: Vec<Usage>,
    #[serde(rename = "isCA", default)]
    is_ca: bool,
    issuer_ref: IssuerRef,
    private_key: Option<PrivateKey>,
    subject: Option<Subject>,
    duration: Option<String>,
    renew_before: Option<String>,
}

/// cert-manager's `KeyUsage` values (any other string is refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Usage {
    Signing,
    #[serde(rename = "digital signature")]
    DigitalSignature,
    #[serde(rename = "content commitment")]
    ContentCommitment,
    #[serde(rename = "key encipherment")]
    KeyEncipherment,
    #[serde(rename = "key agreement")]
    KeyAgreement,
    #[serde(rename = "data encipherment")]
    DataEncipherment,
    #[serde(rename = "cert sign")]
    CertSign,
    #[serde(rename = "crl sign")]
    CrlSign,
    #[serde(rename = "encipher only")]
    EncipherOnly,
    #[serde(rename = "decipher only")]
    DecipherOnly,
    Any,
    #[serde(rename = "server auth")]
    ServerAuth,
    #[serde(rename = "client auth")]
    ClientAuth,
    #[serde(rename = "code signing")]
    CodeSigning,
    #[serde(rename = "email protection")]
    EmailProtection,
    #[serde(rename = "s/mime")]
    Smime,
    #[serde(rename = "ipsec end system")]
    IpsecEndSystem,
    #[serde(rename = "ipsec tunnel")]
    IpsecTunnel,
    #[serde(rename = "ipsec user")]
    IpsecUser,
    Timestamping,
    #[serde(rename = "ocsp signing")]
    OcspSigning,
    #[serde(rename = "microsoft sgc")]
    MicrosoftSgc,
    #[serde(rename = "netscape sgc")]
    NetscapeSgc,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerRef {
    name: String,
    kind: Option<IssuerKind>,
    group: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
enum IssuerKind {
    Issuer,
    ClusterIssuer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PrivateKey {
    algorithm: Option<KeyAlgorithm>,
    size: Option<u32>,
    encoding: Option<KeyEncoding>,
    rotation_policy: Option<RotationPolicy>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
enum KeyAlgorithm {
    #[serde(rename = "RSA")]
    Rsa,
    #[serde(rename = "ECDSA")]
    Ecdsa,
    Ed25519,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
enum KeyEncoding {
    #[serde(rename = "PKCS1")]
    Pkcs1,
    #[serde(rename = "PKCS8")]
    Pkcs8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
enum RotationPolicy {
    Never,
    Always,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Subject {
    organizations: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IssuerSpec {
    self_signed: Option<SelfSigned>,
    ca: Option<CaIssuer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelfSigned {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CaIssuer {
    secret_name: String,
}

type Certificate = CertManager<CertificateSpec>;
type Issuer = CertManager<IssuerSpec>;

/// Parses a cert-manager object strictly; its metadata gets the round trip.
fn cert_manager<S: DeserializeOwned>(doc: &Value) -> Result<CertManager<S>, String> {
    let obj: CertManager<S> =
        serde_json::from_value(doc.clone()).map_err(|e| format!("{}: {e}", label(doc)))?;
    let meta: ObjectMeta = serde_json::from_value(doc["metadata"].clone())
        .map_err(|e| format!("{}: metadata: {e}", label(doc)))?;
    let back = serde_json::to_value(&meta).map_err(|e| format!("{}: {e}", label(doc)))?;
    if let Some(d) = first_difference(&doc["metadata"], &back, ".metadata") {
        return Err(format!("{}: {d}", label(doc)));
    }
    if obj.api_version != "cert-manager.io/v1" {
        return Err(format!(
            "{}: apiVersion {:?} is not cert-manager.io/v1",
            label(doc),
            obj.api_version
        ));
    }
    Ok(obj)
}

fn certificate(doc: &Value) -> Result<Certificate, String> {
    cert_manager(doc)
}

fn issuer(doc: &Value) -> Result<Issuer, String> {
    cert_manager(doc)
}

fn certificates(docs: &[Value]) -> Vec<Certificate> {
    docs.iter()
        .filter(|d| d["kind"] == "Certificate")
        .map(|d| certificate(d).expect("a valid Certificate"))
        .collect()
}

fn issuers(docs: &[Value]) -> Vec<Issuer> {
    docs.iter()
        .filter(|d| d["kind"] == "Issuer" || d["kind"] == "ClusterIssuer")
        .map(|d| issuer(d).expect("a valid Issuer"))
        .collect()
}

/// A Go duration (`2160h`, `1h30m`, `90s`), as cert-manager reads it.
fn go_duration(text: &str) -> Result<Duration, String> {
    let mut rest = text;
    let mut seconds = 0.0_f64;
    if rest.is_empty() {
        return Err("empty duration".to_owned());
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{text:?}: a number without a unit"))?;
        let (number, tail) = rest.split_at(number_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            other => return Err(format!("{text:?}: {other:?} is not a Go duration unit")),
        };
        let n: f64 = number
            .parse()
            .map_err(|_| format!("{text:?}: bad number {number:?}"))?;
        seconds += n * scale;
        rest = next;
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn check_certificate(c: &Certificate) -> Result<(), String> {
    let name = format!("Certificate {}", c.metadata.name.as_deref().unwrap_or("?"));
    let s = &c.spec;
    let fail = |why: String| Err(format!("{name}: {why}"));
    if c.kind != "Certificate" || s.secret_name.is_empty() {
        return fail("needs kind Certificate and a secretName".into());
    }
    if s.common_name.is_none() && s.dns_names.is_empty() {
        return fail("names nothing (no commonName, no dnsNames)".into());
    }
    if s.issuer_ref
        .group
        .as_deref()
        .is_some_and(|g| g != "cert-manager.io")
    {
        return fail(format!(
            "issuerRef.group {:?} is not cert-manager.io",
            s.issuer_ref.group
        ));
    }
    let server = s.usages.contains(&Usage::ServerAuth);
    let client = s.usages.contains(&Usage::ClientAuth);
    if s.is_ca && (server || client) {
        return fail("a CA certificate must not be a TLS leaf too".into());
    }
    if !s.is_ca && !server && !client {
        return fail(
            "a leaf needs `server auth` or `client auth` (cert-manager's defaults have neither)"
                .into(),
        );
    }
    if server && s.dns_names.is_empty() {
        return fail("a serving certificate needs dnsNames".into());
    }
    check_lifetime(s).map_err(|why| format!("{name}: {why}"))?;
    check_private_key(s.private_key.as_ref()).map_err(|why| format!("{name}: {why}"))
}

fn check_lifetime(s: &CertificateSpec) -> Result<(), String> {
    let duration = go_duration(s.duration.as_deref().unwrap_or("2160h"))?;
    if duration < Duration::from_secs(3600) {
        return Err("duration below cert-manager's minimum of 1h".into());
    }
    if let Some(rb) = &s.renew_before
        && go_duration(rb)? >= duration
    {
        return Err(format!("renewBefore {rb} is not shorter than the duration"));
    }
    Ok(())
}

fn check_private_key(key: Option<&PrivateKey>) -> Result<(), String> {
    let Some(k) = key else { return Ok(()) };
    let size_ok = match (k.algorithm.unwrap_or(KeyAlgorithm::Rsa), k.size) {
        // cert-manager ignores the size of an Ed25519 key.
        (_, None) | (KeyAlgorithm::Ed25519, _) => true,
        (KeyAlgorithm::Rsa, Some(n)) => n >= 2048,
        (KeyAlgorithm::Ecdsa, Some(n)) => [256, 384, 521].contains(&n),
    };
    if !size_ok {
        return Err(format!(
            "privateKey size {:?} does not fit {:?}",
            k.size, k.algorithm
        ));
    }
    if k.encoding == Some(KeyEncoding::Pkcs1) && k.algorithm == Some(KeyAlgorithm::Ed25519) {
        return Err("Ed25519 keys cannot be PKCS1".into());
    }
    Ok(())
}

fn check_issuer(i: &Issuer) -> Result<(), String> {
    let name = format!("{} {}", i.kind, i.metadata.name.as_deref().unwrap_or("?"));
    match (&i.spec.self_signed, &i.spec.ca) {
        (Some(SelfSigned {}), None) => Ok(()),
        (None, Some(ca)) if !ca.secret_name.is_empty() => Ok(()),
        _ => Err(format!(
            "{name}: needs exactly one of selfSigned and ca.secretName"
        )),
    }
}

// ── the Deployment and its config ───────────────────────────────────────────

fn pod_spec(d: &Deployment) -> &PodSpec {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("the Deployment has a pod template spec")
}

fn authgate_container(spec: &PodSpec) -> &Container {
    spec.containers
        .iter()
        .find(|c| c.name == "authgate")
        .expect("a container named authgate")
}

/// The authgate config from the ConfigMap the Deployment mounts at /etc/authgate.
fn config_of(docs: &[Value]) -> Config {
    let d: Deployment = one(docs, "Deployment");
    let (kind, name, key) = mounted_file(pod_spec(&d), Path::new("/etc/authgate/config.yaml"));
    assert_eq!(
        kind, "ConfigMap",
        "/etc/authgate/config.yaml comes from a ConfigMap"
    );
    let cm = all::<ConfigMap>(docs, "ConfigMap")
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(name.as_str()))
        .unwrap_or_else(|| panic!("the Deployment mounts ConfigMap {name}, which is not rendered"));
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(&key))
        .expect("the ConfigMap has the key");
    Config::from_yaml(text)
        .unwrap_or_else(|e| panic!("authgate refuses the ConfigMap's config: {e}"))
}

/// Which object and key a file inside the authgate container comes from:
/// `("Secret" | "ConfigMap", object name, key)`.
fn mounted_file(spec: &PodSpec, file: &Path) -> (&'static str, String, String) {
    let c = authgate_container(spec);
    let dir = file.parent().expect("a file in a directory");
    let base = file
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a file name");
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| Path::new(&m.mount_path) == dir)
        .unwrap_or_else(|| panic!("nothing is mounted at {}", dir.display()));
    let volume = volume(spec, &mount.name);
    let (kind, name, items) = if let Some(s) = &volume.secret {
        ("Secret", s.secret_name.clone(), s.items.as_ref())
    } else if let Some(cm) = &volume.config_map {
        ("ConfigMap", Some(cm.name.clone()), cm.items.as_ref())
    } else {
        panic!("volume {} is neither a Secret nor a ConfigMap", volume.name)
    };
    let key = match items {
        None => base.to_owned(),
        Some(items) => items
            .iter()
            .find(|i| i.path == base)
            .map(|i| i.key.clone())
            .unwrap_or_else(|| panic!("volume {} does not project {base}", volume.name)),
    };
    (kind, name.expect("a named Secret"), key)
}

fn volume<'a>(spec: &'a PodSpec, name: &str) -> &'a Volume {
    spec.volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no volume named {name}"))
}

/// The container port a probe or Service port names (by number or by name).
fn container_port(c: &Container, port: &IntOrString) -> i32 {
    match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .unwrap_or_else(|| panic!("the container has no port named {name}")),
    }
}

fn http_get(probe: Option<&Probe>, what: &str) -> (String, IntOrString, String) {
    let get = probe
        .and_then(|p| p.http_get.as_ref())
        .unwrap_or_else(|| panic!("the {what} probe is an httpGet"));
    (
        get.path.clone().unwrap_or_default(),
        get.port.clone(),
        get.scheme.clone().unwrap_or_else(|| "HTTP".to_owned()),
    )
}

fn port_of(addr: SocketAddr) -> i32 {
    i32::from(addr.port())
}

fn selects(
    selector: Option<&BTreeMap<String, String>>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let (Some(selector), Some(labels)) = (selector, labels) else {
        return false;
    };
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

// ── the tests ───────────────────────────────────────────────────────────────

#[test]
fn the_base_renders_into_known_kinds_that_survive_a_typed_round_trip() {
    check_all(base());
    let kinds: Vec<&str> = base().iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains(&kind), "the base has no {kind}");
    }
}

#[test]
fn the_cert_manager_overlay_renders_into_known_kinds_that_survive_a_typed_round_trip() {
    check_all(overlay());
    assert!(!certificates(overlay()).is_empty());
    assert!(!issuers(overlay()).is_empty());
}

#[test]
fn the_spiffe_example_is_made_of_known_kinds_that_survive_a_typed_round_trip() {
    check_all(&spiffe_example());
}

#[test]
fn an_unknown_kind_fails_the_check() {
    let doc = serde_json::json!({"apiVersion": "v1", "kind": "Secretz", "metadata": {"name": "x"}});
    assert!(check_document(&doc).unwrap_err().contains("unknown kind"));
}

#[test]
fn a_misspelt_field_fails_the_round_trip() {
    let mut doc = base()
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap()
        .clone();
    doc["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 40.into();
    let err = check_document(&doc).unwrap_err();
    assert!(
        err.contains("terminationGracePeriodSecond is dropped"),
        "{err}"
    );

    let mut cert = overlay()
        .iter()
        .find(|d| d["kind"] == "Certificate")
        .unwrap()
        .clone();
    cert["spec"]["dnsName"] = serde_json::json!(["x"]);
    assert!(check_document(&cert).unwrap_err().contains("unknown field"));
}

#[test]
fn a_usage_outside_cert_managers_set_is_refused() {
    let mut cert = overlay()
        .iter()
        .find(|d| d["kind"] == "Certificate")
        .unwrap()
        .clone();
    cert["spec"]["usages"] = serde_json::json!(["clientAuth"]);
    assert!(
        check_document(&cert)
            .unwrap_err()
            .contains("unknown variant")
    );
}

#[test]
fn the_config_map_holds_a_config_that_authgate_accepts() {
    for docs in [base(), overlay()] {
        let config = config_of(docs);
        assert!(config.kubernetes.is_some(), "the Kubernetes backend is on");
        let k = config.kubernetes.as_ref().unwrap();
        assert_eq!(k.kubeconfig, None, "in-cluster: no kubeconfig");
        assert!(k.token_review.is_some() && k.access_review.is_some());
        assert_eq!(config.routes.len(), 1);
        assert_eq!(
            config.routes[0]
                .upstream
                .as_ref()
                .unwrap()
                .target
                .to_string(),
            "http://app.authgate.svc:8080"
        );
        assert_eq!(config.admin.listen, Some("0.0.0.0:9090".parse().unwrap()));
        assert_eq!(config.limits.shutdown_delay, Duration::from_secs(5));
        assert_eq!(config.log.format, authgate::config::LogFormat::Json);
        assert!(
            config.tls.client_ca_file.is_some(),
            "client certificates are requested"
        );
    }
}

#[test]
fn the_deployment_mounts_whole_directories_and_never_uses_sub_path() {
    let d: Deployment = one(overlay(), "Deployment");
    let spec = pod_spec(&d);
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for m in c.volume_mounts.iter().flatten() {
            assert!(
                m.sub_path.is_none() && m.sub_path_expr.is_none(),
                "{}: volume {} is mounted with subPath, which never sees a Secret update",
                c.name,
                m.name
            );
            assert_eq!(
                m.read_only,
                Some(true),
                "{}: {} is mounted read-only",
                c.name,
                m.name
            );
            volume(spec, &m.name);
        }
    }
}

#[test]
fn the_deployment_mounts_the_config_map_and_the_tls_secrets_the_config_names() {
    let d: Deployment = one(overlay(), "Deployment");
    let spec = pod_spec(&d);
    let config = config_of(overlay());
    let tls = &config.tls;
    let client_ca = tls.client_ca_file.as_deref().expect("a client CA");
    let cert = mounted_file(spec, &tls.cert_file);
    let key = mounted_file(spec, &tls.key_file);
    let ca = mounted_file(spec, client_ca);
    assert_eq!((cert.0, cert.2.as_str()), ("Secret", "tls.crt"));
    assert_eq!((key.0, key.2.as_str()), ("Secret", "tls.key"));
    assert_eq!(cert.1, key.1, "certificate and key come from one Secret");
    assert_eq!((ca.0, ca.2.as_str()), ("Secret", "ca.crt"));
}

#[test]
fn the_probes_hit_healthz_and_readyz_on_the_admin_port() {
    let config = config_of(base());
    let admin = port_of(config.admin.listen.expect("the admin listener is on"));
    let scheme = if config.admin.tls { "HTTPS" } else { "HTTP" };
    let d: Deployment = one(base(), "Deployment");
    let c = authgate_container(pod_spec(&d));
    let (path, port, s) = http_get(c.liveness_probe.as_ref(), "liveness");
    assert_eq!(
        (path.as_str(), container_port(c, &port), s.as_str()),
        ("/healthz", admin, scheme)
    );
    let (path, port, s) = http_get(c.readiness_probe.as_ref(), "readiness");
    assert_eq!(
        (path.as_str(), container_port(c, &port), s.as_str()),
        ("/readyz", admin, scheme)
    );
    assert!(
        !config.admin.listen.unwrap().ip().is_loopback(),
        "kubelet probes the Pod IP"
    );
}

#[test]
fn the_grace_period_outlasts_the_shutdown_delay_and_timeout() {
    let config = config_of(base());
    let d: Deployment = one(base(), "Deployment");
    let grace = pod_spec(&d)
        .termination_grace_period_seconds
        .expect("a grace period");
    let needed = config.limits.shutdown_delay + config.limits.shutdown_timeout;
    assert!(
        u64::try_from(grace).unwrap() > needed.as_secs(),
        "terminationGracePeriodSeconds {grace} must exceed {needed:?}"
    );
}

#[test]
fn the_pod_runs_as_non_root_with_a_read_only_root_and_no_capabilities() {
    let d: Deployment = one(base(), "Deployment");
    let spec = pod_spec(&d);
    let c = authgate_container(spec);
    let pod = spec.security_context.clone().unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    assert_eq!(sc.run_as_non_root.or(pod.run_as_non_root), Some(true));
    assert_eq!(sc.run_as_user.or(pod.run_as_user), Some(65532));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let drop = sc.capabilities.and_then(|c| c.drop).unwrap_or_default();
    assert!(drop.iter().any(|c| c == "ALL"), "drops ALL capabilities");
    let seccomp = sc
        .seccomp_profile
        .or(pod.seccomp_profile)
        .expect("a seccomp profile");
    assert_eq!(seccomp.type_, "RuntimeDefault");
    let resources = c.resources.clone().expect("resources");
    for (what, list) in [
        ("requests", resources.requests),
        ("limits", resources.limits),
    ] {
        let list = list.unwrap_or_else(|| panic!("resource {what}"));
        assert!(list.contains_key("memory"), "memory {what}");
    }
}

#[test]
fn two_replicas_spread_over_nodes_and_a_disruption_budget_keeps_one() {
    let d: Deployment = one(base(), "Deployment");
    let ds = d.spec.as_ref().unwrap();
    assert_eq!(ds.replicas, Some(2));
    let spec = pod_spec(&d);
    let spread = spec
        .topology_spread_constraints
        .iter()
        .flatten()
        .any(|t| t.topology_key == "kubernetes.io/hostname");
    let anti = spec
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .is_some();
    assert!(spread || anti, "replicas are spread over nodes");
    let pod_labels = ds
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref());
    let pdb: PodDisruptionBudget = one(base(), "PodDisruptionBudget");
    let pdb = pdb.spec.unwrap();
    assert_eq!(pdb.min_available, Some(IntOrString::Int(1)));
    assert!(selects(
        pdb.selector.as_ref().and_then(|s| s.match_labels.as_ref()),
        pod_labels
    ));
    assert!(selects(ds.selector.match_labels.as_ref(), pod_labels));
}

#[test]
fn the_service_maps_443_to_the_listener_and_exposes_the_admin_port() {
    let config = config_of(base());
    let d: Deployment = one(base(), "Deployment");
    let c = authgate_container(pod_spec(&d));
    let svc: Service = one(base(), "Service");
    let spec = svc.spec.unwrap();
    let pod_labels = d
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref());
    assert!(
        selects(spec.selector.as_ref(), pod_labels),
        "the Service selects the pods"
    );
    let target = |port: i32| {
        let p = spec
            .ports
            .iter()
            .flatten()
            .find(|p| p.port == port)
            .unwrap_or_else(|| panic!("no Service port {port}"));
        container_port(c, p.target_port.as_ref().expect("a targetPort"))
    };
    assert_eq!(target(443), port_of(config.listen));
    assert_eq!(target(443), 8443);
    assert_eq!(target(9090), port_of(config.admin.listen.unwrap()));
}

#[test]
fn the_service_account_is_bound_to_system_auth_delegator() {
    let d: Deployment = one(base(), "Deployment");
    let sa = pod_spec(&d)
        .service_account_name
        .clone()
        .expect("a ServiceAccount");
    let ns = d.metadata.namespace.expect("a namespace");
    let account: ServiceAccount = one(base(), "ServiceAccount");
    assert_eq!(
        (account.metadata.name, account.metadata.namespace),
        (Some(sa.clone()), Some(ns.clone()))
    );
    let bindings = all::<ClusterRoleBinding>(base(), "ClusterRoleBinding");
    for role in [
        "system:auth-delegator",
        "system:service-account-issuer-discovery",
    ] {
        let bound = bindings.iter().any(|b| {
            b.role_ref.kind == "ClusterRole"
                && b.role_ref.name == role
                && b.subjects.iter().flatten().any(|s| {
                    s.kind == "ServiceAccount"
                        && s.name == sa
                        && s.namespace.as_deref() == Some(ns.as_str())
                })
        });
        assert!(bound, "ServiceAccount {ns}/{sa} is bound to {role}");
    }
    let namespace: Namespace = one(base(), "Namespace");
    assert_eq!(namespace.metadata.name, Some(ns));
}

#[test]
fn every_issuer_ref_names_an_issuer_in_the_rendering() {
    let mut docs = overlay().to_vec();
    docs.extend(spiffe_example());
    let issuers = issuers(&docs);
    for c in certificates(&docs) {
        let r = &c.spec.issuer_ref;
        let kind = r.kind.unwrap_or(IssuerKind::Issuer);
        let found = issuers.iter().any(|i| {
            i.metadata.name.as_deref() == Some(r.name.as_str())
                && match kind {
                    IssuerKind::ClusterIssuer => i.kind == "ClusterIssuer",
                    IssuerKind::Issuer => {
                        i.kind == "Issuer" && i.metadata.namespace == c.metadata.namespace
                    }
                }
        });
        assert!(
            found,
            "Certificate {:?}: no {kind:?} {}",
            c.metadata.name, r.name
        );
    }
    for i in &issuers {
        if let Some(ca) = &i.spec.ca {
            let made = certificates(&docs).into_iter().any(|c| {
                c.spec.is_ca
                    && c.spec.secret_name == ca.secret_name
                    && c.metadata.namespace == i.metadata.namespace
            });
            assert!(
                made,
                "CA Issuer {:?}: no isCA Certificate makes Secret {}",
                i.metadata.name, ca.secret_name
            );
        }
    }
}

#[test]
fn the_secrets_the_deployment_mounts_are_made_by_fitting_certificates() {
    let d: Deployment = one(overlay(), "Deployment");
    let spec = pod_spec(&d);
    let config = config_of(overlay());
    let made_by = |secret: &str| {
        certificates(overlay())
            .into_iter()
            .find(|c| c.spec.secret_name == secret)
            .unwrap_or_else(|| panic!("no Certificate makes Secret {secret}"))
    };
    let serving = made_by(&mounted_file(spec, &config.tls.cert_file).1);
    assert!(serving.spec.usages.contains(&Usage::ServerAuth));
    let svc: Service = one(overlay(), "Service");
    let (name, ns) = (svc.metadata.name.unwrap(), svc.metadata.namespace.unwrap());
    for dns in [
        format!("{name}.{ns}.svc"),
        format!("{name}.{ns}.svc.cluster.local"),
    ] {
        assert!(
            serving.spec.dns_names.contains(&dns),
            "the serving certificate covers {dns}"
        );
    }
    let ca = made_by(&mounted_file(spec, config.tls.client_ca_file.as_deref().unwrap()).1);
    assert!(ca.spec.is_ca, "the client CA bundle is a CA's ca.crt");
    let client_ca = volume(spec, "client-ca").secret.clone().unwrap();
    let keys: Vec<String> = client_ca
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(
        keys,
        ["ca.crt"],
        "only ca.crt of the CA Secret (never its tls.key) reaches the pod"
    );
}

#[test]
fn the_client_certificates_are_cn_o_style_with_client_auth_and_key_rotation() {
    let clients: Vec<Certificate> = certificates(overlay())
        .into_iter()
        .filter(|c| c.spec.usages.contains(&Usage::ClientAuth))
        .collect();
    let alice = clients
        .iter()
        .find(|c| c.spec.common_name.as_deref() == Some("alice"))
        .expect("a client certificate for alice");
    let orgs = alice.spec.subject.as_ref().map(|s| s.organizations.clone());
    assert_eq!(orgs, Some(vec!["dev".to_owned()]));
    for c in &clients {
        assert!(
            !c.spec.usages.contains(&Usage::ServerAuth),
            "{:?}",
            c.metadata.name
        );
        let policy = c.spec.private_key.as_ref().and_then(|k| k.rotation_policy);
        assert_eq!(
            policy,
            Some(RotationPolicy::Always),
            "{:?}",
            c.metadata.name
        );
    }
}

#[test]
fn the_spiffe_example_mounts_a_csi_driver_spiffe_volume_as_a_directory() {
    let docs = spiffe_example();
    let pod: Pod = one(&docs, "Pod");
    let spec = pod.spec.expect("a pod spec");
    let csi = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| {
            v.csi
                .as_ref()
                .is_some_and(|c| c.driver == "spiffe.csi.cert-manager.io")
        })
        .expect("a spiffe.csi.cert-manager.io volume");
    let source = csi.csi.as_ref().unwrap();
    assert_eq!(
        source.read_only,
        Some(true),
        "csi-driver-spiffe volumes are read-only"
    );
    let attributes = source.volume_attributes.clone().unwrap_or_default();
    for key in attributes.keys() {
        assert_eq!(
            key, "spiffe.csi.cert-manager.io/fs-group",
            "a csi-driver-spiffe volume attribute"
        );
    }
    let group = spec.security_context.as_ref().and_then(|s| s.run_as_group);
    if let Some(fs_group) = attributes.get("spiffe.csi.cert-manager.io/fs-group") {
        assert_eq!(
            Some(fs_group.parse::<i64>().unwrap()),
            group,
            "the key is readable by the Pod's group"
        );
    }
    let mounts: Vec<_> = spec
        .containers
        .iter()
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .collect();
    let mount = mounts
        .iter()
        .find(|m| m.name == csi.name)
        .expect("the SVID volume is mounted");
    assert!(
        mount.sub_path.is_none(),
        "mounted as a directory (renewals replace the files)"
    );
    let sa = spec
        .service_account_name
        .expect("a ServiceAccount of its own");
    let bindings = all::<RoleBinding>(&docs, "RoleBinding");
    assert!(
        bindings
            .iter()
            .any(|b| b.subjects.iter().flatten().any(|s| s.name == sa)),
        "the ServiceAccount may create CertificateRequests (csi-driver-spiffe impersonates it)"
    );
}
