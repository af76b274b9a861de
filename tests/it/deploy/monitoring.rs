//! The monitoring component (`deploy/monitoring`): it renders on top of the
//! base and of the cert-manager overlay, adds exactly its own objects and
//! changes none of theirs, and its ServiceMonitor, PrometheusRule and
//! dashboard fit the Service, the admin listener, the certificates and the
//! RBAC they rely on.
//!
//! k8s-openapi does not know the Prometheus Operator kinds: they are parsed
//! into strict structs (`deny_unknown_fields`) holding the fields of
//! `monitoring.coreos.com/v1` the kit may use, so a misspelt field fails.

use std::path::{Component, Path, PathBuf};

use super::*;

mod kinds;

use kinds::Scheme;
pub(super) use kinds::{prometheus_rule, service_monitor};

// ── rendering with the component ────────────────────────────────────────────

/// A kustomization made in a temporary directory under the target dir:
/// `resources: [deploy/<on>]`, `components: [deploy/monitoring]`.
fn with_component(on: &str) -> Vec<Value> {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(tmp).expect("the target's tmp dir");
    let dir = tempfile::tempdir_in(tmp).expect("a temporary overlay directory");
    // kustomize refuses absolute paths to resources and components.
    let to = |what: &str| relative(dir.path(), &repo().join("deploy").join(what));
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\ncomponents:\n  - {}\n",
        to(on),
        to("monitoring")
    );
    std::fs::write(dir.path().join("kustomization.yaml"), kustomization)
        .expect("write the overlay");
    let root = dir.path().to_str().expect("a UTF-8 temporary path");
    documents(&kustomize(root))
}

/// `to` relative to the directory `from` (both made absolute).
fn relative(from: &Path, to: &Path) -> String {
    let from = from.canonicalize().expect("the overlay directory exists");
    let to = to.canonicalize().expect("the target directory exists");
    let (f, t): (Vec<Component<'_>>, Vec<Component<'_>>) =
        (from.components().collect(), to.components().collect());
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out.to_str().expect("a UTF-8 path").to_owned()
}

fn base_with_monitoring() -> &'static [Value] {
    static DOCS: OnceLock<Vec<Value>> = OnceLock::new();
    DOCS.get_or_init(|| with_component("base"))
}

fn overlay_with_monitoring() -> &'static [Value] {
    static DOCS: OnceLock<Vec<Value>> = OnceLock::new();
    DOCS.get_or_init(|| with_component("cert-manager"))
}

/// What the component adds, as [`label`]s.
const COMPONENT: [&str; 6] = [
    "ServiceMonitor authgate/authgate",
    "PrometheusRule authgate/authgate",
    "ConfigMap authgate/authgate-grafana-dashboard",
    "ClusterRoleBinding -/authgate:metrics-reader:prometheus",
    "Role authgate/authgate:prometheus",
    "RoleBinding authgate/authgate:prometheus",
];

fn only<T>(docs: &[Value], kind: &str, parse: fn(&Value) -> Result<T, String>) -> T {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected exactly one {kind}");
    parse(found[0]).unwrap_or_else(|e| panic!("{e}"))
}

// ── the tests ───────────────────────────────────────────────────────────────

#[test]
fn the_component_adds_only_its_objects_to_the_base_and_to_the_cert_manager_overlay() {
    for (plain, with) in [
        (base(), base_with_monitoring()),
        (overlay(), overlay_with_monitoring()),
    ] {
        check_all(with);
        for kind in ["ServiceMonitor", "PrometheusRule"] {
            assert!(
                !plain.iter().any(|d| d["kind"] == kind),
                "{kind} only comes with the component"
            );
        }
        let added: Vec<&Value> = with.iter().filter(|d| !plain.contains(d)).collect();
        let mut names: Vec<String> = added.iter().map(|d| label(d)).collect();
        names.sort();
        let mut want: Vec<String> = COMPONENT.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        assert_eq!(names, want, "the component adds exactly its objects");
        assert_eq!(
            with.len(),
            plain.len() + COMPONENT.len(),
            "and changes none of the others"
        );
    }
}

#[test]
fn the_service_monitor_scrapes_the_admin_port_with_a_token_over_verified_tls() {
    let docs = overlay_with_monitoring();
    let config = config_of(docs);
    let m = only(docs, "ServiceMonitor", service_monitor);
    let svc: Service = one(docs, "Service");
    let ns = svc.metadata.namespace.clone().expect("a namespace");
    assert!(
        selects(
            Some(&m.spec.selector.match_labels),
            svc.metadata.labels.as_ref()
        ),
        "the ServiceMonitor selects the Service"
    );
    let namespaces = m
        .spec
        .namespace_selector
        .as_ref()
        .expect("a namespaceSelector");
    assert!(namespaces.match_names.contains(&ns) || namespaces.any == Some(true));
    assert_eq!(
        m.spec.job_label, None,
        "job is the Service's name, as the alerts expect"
    );
    assert_eq!(svc.metadata.name.as_deref(), Some("authgate"));

    let [e] = m.spec.endpoints.as_slice() else {
        panic!("one endpoint")
    };
    let d: Deployment = one(docs, "Deployment");
    let c = authgate_container(pod_spec(&d));
    let port = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| {
            p.iter()
                .find(|p| p.name.as_deref() == Some(e.port.as_str()))
        })
        .unwrap_or_else(|| panic!("the Service has no port named {}", e.port));
    let target = container_port(c, port.target_port.as_ref().expect("a targetPort"));
    assert_eq!(
        target,
        port_of(config.admin.listen.expect("an admin listener"))
    );
    assert_eq!(e.path.as_deref(), Some("/metrics"));
    assert!(config.admin.tls, "the shipped admin listener serves TLS");
    assert_eq!(e.scheme, Some(Scheme::Https));
    assert_eq!(
        config.admin.access,
        authgate::config::AdminAccess::Authorized
    );
    assert_eq!(
        e.bearer_token_file.as_deref(),
        Some("/var/run/secrets/kubernetes.io/serviceaccount/token"),
        "Prometheus presents its own ServiceAccount token"
    );

    // The CA named is the one that issued the serving certificate, and the
    // server name is on it.
    let tls = e.tls_config.as_ref().expect("a tlsConfig");
    let ca = tls
        .ca
        .as_ref()
        .and_then(|c| c.secret.as_ref())
        .expect("a CA Secret");
    assert_eq!(ca.key, "ca.crt");
    let serving = certificates(docs)
        .into_iter()
        .find(|c| c.spec.secret_name == mounted_file(pod_spec(&d), &config.tls.cert_file).1)
        .expect("a Certificate makes the serving Secret");
    let server_name = tls.server_name.as_ref().expect("a serverName");
    assert!(
        serving.spec.dns_names.contains(server_name),
        "{server_name}"
    );
    let issuer = issuers(docs)
        .into_iter()
        .find(|i| i.metadata.name.as_deref() == Some(serving.spec.issuer_ref.name.as_str()))
        .expect("the serving certificate's issuer");
    let issuer_secret = issuer.spec.ca.expect("a CA Issuer").secret_name;
    assert_eq!(
        ca.name, issuer_secret,
        "the CA that signs the serving certificate"
    );
}

#[test]
fn prometheus_is_bound_to_the_role_that_may_get_metrics() {
    let docs = base_with_monitoring();
    let binding = all::<ClusterRoleBinding>(docs, "ClusterRoleBinding")
        .into_iter()
        .find(|b| b.metadata.name.as_deref() == Some("authgate:metrics-reader:prometheus"))
        .expect("the component's binding");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    let role = all::<ClusterRole>(docs, "ClusterRole")
        .into_iter()
        .find(|r| r.metadata.name.as_deref() == Some(binding.role_ref.name.as_str()))
        .expect("the bound ClusterRole is in the base");
    let grants = role.rules.iter().flatten().any(|r| {
        r.verbs.iter().any(|v| v == "get")
            && r.non_resource_urls
                .iter()
                .flatten()
                .any(|u| u == "/metrics")
    });
    assert!(grants, "the role grants get /metrics");
    let subjects = binding.subjects.unwrap_or_default();
    assert!(
        !subjects.is_empty() && subjects.iter().all(|s| s.kind == "ServiceAccount"),
        "bound to Prometheus's ServiceAccount"
    );

    // The same account may discover the Pods in authgate's namespace.
    let svc: Service = one(docs, "Service");
    let ns = svc.metadata.namespace.expect("a namespace");
    let named = |d: &&Value| d["metadata"]["name"] == "authgate:prometheus";
    let discovery: RoleBinding = typed(
        docs.iter()
            .find(|d| d["kind"] == "RoleBinding" && named(d))
            .expect("the discovery RoleBinding"),
    )
    .expect("a RoleBinding");
    assert_eq!(discovery.metadata.namespace.as_deref(), Some(ns.as_str()));
    assert_eq!(discovery.subjects.unwrap_or_default(), subjects);
    let role: Role = typed(
        docs.iter()
            .find(|d| d["kind"] == "Role" && named(d))
            .expect("the discovery Role"),
    )
    .expect("a Role");
    assert_eq!(role.metadata.name, Some(discovery.role_ref.name));
    assert_eq!(role.metadata.namespace, Some(ns));
    for resource in ["services", "endpoints", "pods", "endpointslices"] {
        let readable = role.rules.iter().flatten().any(|r| {
            r.resources.iter().flatten().any(|x| x == resource)
                && ["get", "list", "watch"]
                    .iter()
                    .all(|v| r.verbs.iter().any(|x| x == v))
        });
        assert!(readable, "Prometheus may list and watch {resource}");
    }
}

#[test]
fn the_dashboard_config_map_carries_the_raw_json_under_the_sidecar_label() {
    let docs = base_with_monitoring();
    let cm = all::<ConfigMap>(docs, "ConfigMap")
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some("authgate-grafana-dashboard"))
        .expect("the dashboard ConfigMap");
    let labels = cm.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("grafana_dashboard").map(String::as_str),
        Some("1")
    );
    let data = cm.data.unwrap_or_default();
    let shipped: Value =
        serde_json::from_str(data.get("authgate.json").expect("authgate.json")).expect("JSON");
    let raw = std::fs::read_to_string(repo().join("deploy/monitoring/dashboards/authgate.json"))
        .expect("the raw dashboard");
    let raw: Value = serde_json::from_str(&raw).expect("the raw dashboard is JSON");
    assert_eq!(shipped, raw, "the ConfigMap holds the raw file");
    assert_eq!(raw["uid"], "authgate");
    let panels = raw["panels"].as_array().expect("panels");
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "panel {} uses the dashboard's data source variable",
            p["title"]
        );
        assert!(
            p["targets"].as_array().is_some_and(|t| !t.is_empty()),
            "{}",
            p["title"]
        );
    }
}

#[test]
fn the_rendered_rules_are_the_shipped_file() {
    let rendered = only(base_with_monitoring(), "PrometheusRule", |d| Ok(d.clone()));
    let file = std::fs::read_to_string(repo().join("deploy/monitoring/prometheusrule.yaml"))
        .expect("the PrometheusRule file");
    let file: Value = serde_saphyr::from_str(&file).expect("YAML");
    assert_eq!(rendered["spec"], file["spec"], "kustomize changes no rule");
    let rule = prometheus_rule(&rendered).expect("a valid PrometheusRule");
    let alerts = rule.spec.groups.iter().flat_map(|g| &g.rules).count();
    assert!(alerts >= 12, "{alerts} alerts");
}

#[test]
fn a_broken_service_monitor_or_prometheus_rule_fails_the_check() {
    let docs = base_with_monitoring();
    let sm = docs
        .iter()
        .find(|d| d["kind"] == "ServiceMonitor")
        .expect("a ServiceMonitor");
    let pr = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    type Edit = fn(&mut Value);
    let monitors: [(&str, Edit, &str); 4] = [
        (
            "misspelt field",
            |d| d["spec"]["endpoints"][0]["bearerTokenFiel"] = "x".into(),
            "unknown field",
        ),
        (
            "no verification",
            |d| d["spec"]["endpoints"][0]["tlsConfig"]["insecureSkipVerify"] = true.into(),
            "insecureSkipVerify",
        ),
        (
            "bad interval",
            |d| d["spec"]["endpoints"][0]["interval"] = "30 seconds".into(),
            "Go duration",
        ),
        (
            "old group",
            |d| d["apiVersion"] = "monitoring.coreos.com/v1alpha1".into(),
            "apiVersion",
        ),
    ];
    for (what, edit, want) in monitors {
        let mut doc = sm.clone();
        edit(&mut doc);
        let err = service_monitor(&doc).expect_err(what);
        assert!(err.contains(want), "{what}: {err}");
        assert!(check_document(&doc).is_err(), "{what}: check_document");
    }
    let rules: [(&str, Edit, &str); 4] = [
        (
            "no severity",
            |d| d["spec"]["groups"][0]["rules"][0]["labels"] = serde_json::json!({}),
            "severity",
        ),
        (
            "no description",
            |d| {
                d["spec"]["groups"][0]["rules"][0]["annotations"] =
                    serde_json::json!({"summary": "x"})
            },
            "annotations",
        ),
        (
            "duplicate",
            |d| {
                d["spec"]["groups"][1]["rules"][0]["alert"] =
                    d["spec"]["groups"][0]["rules"][0]["alert"].clone()
            },
            "duplicate",
        ),
        (
            "misspelt for",
            |d| d["spec"]["groups"][0]["rules"][0]["fro"] = "5m".into(),
            "unknown field",
        ),
    ];
    for (what, edit, want) in rules {
        let mut doc = pr.clone();
        edit(&mut doc);
        let err = prometheus_rule(&doc).expect_err(what);
        assert!(err.contains(want), "{what}: {err}");
        assert!(check_document(&doc).is_err(), "{what}: check_document");
    }
}
