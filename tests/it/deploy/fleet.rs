//! The fleet's objects in `deploy/`: the revocation ConfigMap and its
//! one-object RBAC in the base, and the optional flowcontrol and autoscaling
//! components rendered on top of the base.

use super::*;

/// `kubectl kustomize` of the base with `components` (paths under deploy/),
/// through a kustomization written under target/.
fn with_components(components: &[&str]) -> Vec<Value> {
    let dir = repo()
        .join("target/deploy-components")
        .join(components.join("+").replace('/', "_"));
    std::fs::create_dir_all(&dir).expect("a scratch directory under target/");
    let list: Vec<String> = components
        .iter()
        .map(|c| format!("../../../deploy/{c}"))
        .collect();
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../../../deploy/base]\ncomponents: [{}]\n",
            list.join(", ")
        ),
    )
    .expect("write the kustomization");
    documents(&kustomize(dir.to_str().expect("a UTF-8 path")))
}

#[test]
fn the_base_ships_the_revocation_object_the_config_names_in_the_pods_namespace() {
    let config = config_of(base());
    let fleet = config.fleet.expect("the base turns fleet on");
    assert_eq!(fleet.namespace, None, "the pod's own namespace");
    let d: Deployment = one(base(), "Deployment");
    let ns = d.metadata.namespace.expect("a namespace");
    let cm = all::<ConfigMap>(base(), "ConfigMap")
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(fleet.name.as_str()))
        .unwrap_or_else(|| panic!("no ConfigMap {} in the base", fleet.name));
    assert_eq!(cm.metadata.namespace.as_deref(), Some(ns.as_str()));
    let data = cm.data.unwrap_or_default();
    let seen = authgate::fleet::object::read(None, None, &data);
    assert_eq!(seen.malformed, None, "the shipped data reads");
    assert_eq!((seen.epoch.as_str(), seen.users.len()), ("0", 0));
}

#[test]
fn the_service_account_may_get_list_watch_and_update_the_one_revocation_object_only() {
    let fleet = config_of(base()).fleet.expect("fleet on");
    let d: Deployment = one(base(), "Deployment");
    let sa = pod_spec(&d)
        .service_account_name
        .clone()
        .expect("a ServiceAccount");
    let ns = d.metadata.namespace.expect("a namespace");
    let bindings: Vec<RoleBinding> = all(base(), "RoleBinding");
    let roles: Vec<Role> = all(base(), "Role");
    let mut granted = Vec::new();
    for b in &bindings {
        let ours = b.subjects.iter().flatten().any(|s| {
            s.kind == "ServiceAccount" && s.name == sa && s.namespace.as_deref() == Some(&ns)
        });
        if !ours {
            continue;
        }
        assert_eq!(b.role_ref.kind, "Role", "namespaced grants only");
        let role = roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(b.role_ref.name.as_str()))
            .unwrap_or_else(|| panic!("RoleBinding to missing Role {}", b.role_ref.name));
        assert_eq!(role.metadata.namespace.as_deref(), Some(ns.as_str()));
        granted.extend(role.rules.iter().flatten().cloned());
    }
    assert_eq!(granted.len(), 1, "exactly one rule: {granted:?}");
    let rule = &granted[0];
    assert_eq!(rule.api_groups.as_deref(), Some(&[String::new()][..]));
    assert_eq!(
        rule.resources.as_deref(),
        Some(&["configmaps".to_owned()][..])
    );
    assert_eq!(rule.resource_names.as_deref(), Some(&[fleet.name][..]));
    let mut verbs = rule.verbs.clone();
    verbs.sort();
    assert_eq!(verbs, ["get", "list", "update", "watch"]);
}

#[test]
fn the_flowcontrol_component_gives_the_reviews_of_authgates_account_a_level_of_their_own() {
    let docs = with_components(&["flowcontrol"]);
    check_all(&docs);
    let d: Deployment = one(&docs, "Deployment");
    let sa = pod_spec(&d)
        .service_account_name
        .clone()
        .expect("a ServiceAccount");
    let ns = d.metadata.namespace.expect("a namespace");
    let level: PriorityLevelConfiguration = one(&docs, "PriorityLevelConfiguration");
    let schema: FlowSchema = one(&docs, "FlowSchema");
    let spec = schema.spec.expect("a spec");
    assert_eq!(
        Some(spec.priority_level_configuration.name),
        level.metadata.name
    );
    let precedence = spec.matching_precedence.expect("a precedence");
    assert!(
        (801..9000).contains(&precedence),
        "after the system schemas, before service-accounts: {precedence}"
    );
    let mut reviews = Vec::new();
    for rule in spec.rules.iter().flatten() {
        assert!(rule.subjects.iter().all(|s| {
            s.service_account
                .as_ref()
                .is_some_and(|a| a.name == sa && a.namespace == ns)
        }));
        for r in rule.resource_rules.iter().flatten() {
            assert_eq!(r.verbs, ["create"]);
            reviews.extend(
                r.resources
                    .iter()
                    .map(|res| format!("{}/{res}", r.api_groups[0])),
            );
        }
    }
    reviews.sort();
    assert_eq!(
        reviews,
        [
            "authentication.k8s.io/tokenreviews",
            "authorization.k8s.io/subjectaccessreviews"
        ]
    );
}

/// The v1beta1 variant (what the e2e tier's v1.20 server takes) says what
/// the v1 one says, but for the version and the renamed shares field.
#[test]
fn the_v1beta1_flowcontrol_variant_matches_the_v1_one() {
    let read = |p: &str| documents(&std::fs::read_to_string(repo().join(p)).expect("readable"));
    let v1 = read("deploy/flowcontrol/flowcontrol.yaml");
    let mut beta = read("deploy/flowcontrol/v1beta1/flowcontrol.yaml");
    assert_eq!(v1.len(), beta.len());
    for (a, b) in v1.iter().zip(beta.iter_mut()) {
        assert_eq!(b["apiVersion"], "flowcontrol.apiserver.k8s.io/v1beta1");
        b["apiVersion"] = a["apiVersion"].clone();
        if let Some(limited) = b
            .pointer_mut("/spec/limited")
            .and_then(Value::as_object_mut)
        {
            let shares = limited
                .remove("assuredConcurrencyShares")
                .expect("v1beta1 shares");
            limited.insert("nominalConcurrencyShares".into(), shares);
            limited.insert(
                "lendablePercent".into(),
                a["spec"]["limited"]["lendablePercent"].clone(),
            );
        }
        assert_eq!(a, b);
    }
}

#[test]
fn the_autoscaling_component_scales_the_deployment_which_then_sets_no_replicas() {
    let docs = with_components(&["autoscaling"]);
    check_all(&docs);
    let d: Deployment = one(&docs, "Deployment");
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), None);
    let hpa: HorizontalPodAutoscaler = one(&docs, "HorizontalPodAutoscaler");
    let spec = hpa.spec.expect("a spec");
    assert_eq!(
        (
            spec.scale_target_ref.kind.as_str(),
            Some(&spec.scale_target_ref.name)
        ),
        ("Deployment", d.metadata.name.as_ref())
    );
    assert_eq!(hpa.metadata.namespace, d.metadata.namespace);
    let pdb: PodDisruptionBudget = one(&docs, "PodDisruptionBudget");
    let Some(IntOrString::Int(min_available)) = pdb.spec.and_then(|s| s.min_available) else {
        panic!("minAvailable is a number");
    };
    assert!(
        spec.min_replicas.unwrap_or(1) > min_available,
        "the PodDisruptionBudget can still evict one"
    );
    assert!(spec.max_replicas >= spec.min_replicas.unwrap_or(1));
    // The base alone keeps its replicas.
    let base_d: Deployment = one(base(), "Deployment");
    assert_eq!(base_d.spec.and_then(|s| s.replicas), Some(2));
}
