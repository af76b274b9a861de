//! ServiceAccount token claims and the identity the apiserver gives them
//! (pure).
//!
//! The mapping follows kube-apiserver's `ServiceAccountInfo.UserInfo`: user
//! `system:serviceaccount:<ns>:<name>`, uid the ServiceAccount's uid, groups
//! `system:serviceaccounts` and `system:serviceaccounts:<ns>` (plus
//! `system:authenticated`, added by the union of authenticators), and extra
//! pod-name/pod-uid (both or neither), node-name (node-uid only with it) and
//! `credential-id: JTI=<jti>`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::identity::{AuthMethod, CREDENTIAL_ID_KEY, Identity};

/// `extra` key of the bound Pod's name.
pub const POD_NAME_KEY: &str = "authentication.kubernetes.io/pod-name";
/// `extra` key of the bound Pod's uid.
pub const POD_UID_KEY: &str = "authentication.kubernetes.io/pod-uid";
/// `extra` key of the Pod's Node name.
pub const NODE_NAME_KEY: &str = "authentication.kubernetes.io/node-name";
/// `extra` key of the Pod's Node uid.
pub const NODE_UID_KEY: &str = "authentication.kubernetes.io/node-uid";

/// The claims read after the signature, `iss`, `aud`, `exp` and `nbf` have
/// been checked by jsonwebtoken.
#[derive(Debug, Deserialize)]
pub struct Claims {
    /// `sub`.
    pub sub: String,
    /// `exp`, whole seconds (jsonwebtoken already refused other shapes).
    pub exp: u64,
    /// `jti`, set by kube-apiserver 1.29 and later.
    #[serde(default)]
    pub jti: Option<String>,
    /// The private `kubernetes.io` claim.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: Kubernetes,
}

/// The `kubernetes.io` claim.
#[derive(Debug, Deserialize)]
pub struct Kubernetes {
    /// The ServiceAccount's namespace.
    pub namespace: String,
    /// The ServiceAccount.
    pub serviceaccount: ObjectRef,
    /// The Pod the token is bound to.
    #[serde(default)]
    pub pod: Option<ObjectRef>,
    /// The Node of that Pod (1.30 and later).
    #[serde(default)]
    pub node: Option<ObjectRef>,
}

/// A `{name, uid}` reference.
#[derive(Debug, Default, Deserialize)]
pub struct ObjectRef {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Uid.
    #[serde(default)]
    pub uid: String,
}

/// Why verified claims do not make a ServiceAccount identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// Namespace, ServiceAccount name or uid is empty.
    #[error("the kubernetes.io claim lacks the namespace, name or uid")]
    Incomplete,
    /// `sub` is not `system:serviceaccount:<namespace>:<name>`.
    #[error("sub does not name the ServiceAccount of the kubernetes.io claim")]
    SubjectMismatch,
    /// A value cannot travel in a header or a log line.
    #[error("a claim has control characters")]
    BadCharacters,
}

/// The identity kube-apiserver gives a ServiceAccount token with `claims`.
pub fn identity(claims: &Claims) -> Result<Identity, Unusable> {
    let k = &claims.kubernetes;
    let (ns, sa) = (&k.namespace, &k.serviceaccount);
    if ns.is_empty() || sa.name.is_empty() || sa.uid.is_empty() {
        return Err(Unusable::Incomplete);
    }
    let user = format!("system:serviceaccount:{ns}:{}", sa.name);
    if claims.sub != user {
        return Err(Unusable::SubjectMismatch);
    }
    let mut extra = BTreeMap::new();
    let mut set = |key: &str, value: &str| {
        extra.insert(key.to_owned(), vec![value.to_owned()]);
    };
    if let Some(pod) = &k.pod
        && !pod.name.is_empty()
        && !pod.uid.is_empty()
    {
        set(POD_NAME_KEY, &pod.name);
        set(POD_UID_KEY, &pod.uid);
    }
    if let Some(node) = &k.node
        && !node.name.is_empty()
    {
        set(NODE_NAME_KEY, &node.name);
        if !node.uid.is_empty() {
            set(NODE_UID_KEY, &node.uid);
        }
    }
    if let Some(jti) = claims.jti.as_deref().filter(|j| !j.is_empty()) {
        set(CREDENTIAL_ID_KEY, &format!("JTI={jti}"));
    }
    let id = Identity::new(
        user,
        Some(sa.uid.clone()),
        vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{ns}"),
        ],
        extra,
        AuthMethod::Token,
    );
    match id.invalid_field() {
        Some(_) => Err(Unusable::BadCharacters),
        None => Ok(id),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(v: serde_json::Value) -> Claims {
        serde_json::from_value(v).unwrap()
    }

    fn base() -> serde_json::Value {
        json!({
            "iss": "https://kubernetes.default.svc",
            "aud": ["https://kubernetes.default.svc"],
            "sub": "system:serviceaccount:demo:web",
            "exp": 2_000_000_000u64,
            "kubernetes.io": {
                "namespace": "demo",
                "serviceaccount": {"name": "web", "uid": "sa-uid"}
            }
        })
    }

    #[test]
    fn a_plain_token_maps_to_the_serviceaccount_user_uid_and_groups() {
        let id = identity(&claims(base())).unwrap();
        assert_eq!(id.user(), "system:serviceaccount:demo:web");
        assert_eq!(id.uid(), Some("sa-uid"));
        assert_eq!(
            id.groups(),
            [
                "system:serviceaccounts",
                "system:serviceaccounts:demo",
                "system:authenticated"
            ]
        );
        assert!(id.extra().is_empty());
        assert_eq!(id.method(), AuthMethod::Token);
    }

    #[test]
    fn pod_node_and_jti_become_extra_as_the_apiserver_sets_them() {
        let mut v = base();
        v["jti"] = json!("0b1e-jti");
        v["kubernetes.io"]["pod"] = json!({"name": "web-0", "uid": "pod-uid"});
        v["kubernetes.io"]["node"] = json!({"name": "node-a", "uid": "node-uid"});
        let id = identity(&claims(v)).unwrap();
        let want: BTreeMap<String, Vec<String>> = [
            (POD_NAME_KEY, "web-0"),
            (POD_UID_KEY, "pod-uid"),
            (NODE_NAME_KEY, "node-a"),
            (NODE_UID_KEY, "node-uid"),
            (CREDENTIAL_ID_KEY, "JTI=0b1e-jti"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), vec![v.to_owned()]))
        .collect();
        assert_eq!(id.extra().to_map(), want);

        // A pod without its uid is not recorded; a node uid needs the name.
        let mut v = base();
        v["kubernetes.io"]["pod"] = json!({"name": "web-0"});
        v["kubernetes.io"]["node"] = json!({"uid": "node-uid"});
        assert!(identity(&claims(v)).unwrap().extra().is_empty());
        let mut v = base();
        v["kubernetes.io"]["node"] = json!({"name": "node-a"});
        v["jti"] = json!("");
        let id = identity(&claims(v)).unwrap();
        assert_eq!(id.extra().keys().collect::<Vec<_>>(), [NODE_NAME_KEY]);
    }

    #[test]
    fn sub_must_agree_and_the_serviceaccount_must_be_complete() {
        let mut v = base();
        v["sub"] = json!("system:serviceaccount:demo:other");
        assert_eq!(identity(&claims(v)), Err(Unusable::SubjectMismatch));
        let mut v = base();
        v["sub"] = json!("system:serviceaccount:kube-system:web");
        assert_eq!(identity(&claims(v)), Err(Unusable::SubjectMismatch));
        for field in ["name", "uid"] {
            let mut v = base();
            v["kubernetes.io"]["serviceaccount"][field] = json!("");
            assert_eq!(identity(&claims(v)), Err(Unusable::Incomplete), "{field}");
        }
        let mut v = base();
        v["kubernetes.io"]["namespace"] = json!("");
        v["sub"] = json!("system:serviceaccount::web");
        assert_eq!(identity(&claims(v)), Err(Unusable::Incomplete));
        let mut v = base();
        v["kubernetes.io"]["serviceaccount"]["uid"] = json!("a\nb");
        assert_eq!(identity(&claims(v)), Err(Unusable::BadCharacters));
        // Without the kubernetes.io claim the token is not a ServiceAccount's.
        let mut v = base();
        v.as_object_mut().unwrap().remove("kubernetes.io");
        assert!(serde_json::from_value::<Claims>(v).is_err());
    }
}
