//! What a request asks to do, in SubjectAccessReview terms (pure).
//!
//! The verb follows kube-apiserver's `RequestInfo`: a resource request's
//! verb is the Kubernetes verb of its method (POST `create`, PUT `update`,
//! ...), a non-resource request's the lower-cased method (POST `post`), as
//! RBAC's `nonResourceURLs` rules expect. `authorization.verb_mapping:
//! kube-rbac-proxy` maps non-resource requests like resource ones instead,
//! as kube-rbac-proxy does.

use http::Method;

use http::HeaderMap;
use http::uri::PathAndQuery;

use super::rewrite::{self, Refused, Values};
use crate::config::{ResourceAttributes, ResourceCheck, RouteConfig, VerbMapping};

/// What is being accessed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A URL path (`nonResourceAttributes.path`).
    NonResource {
        /// The normalised request path.
        path: String,
    },
    /// A Kubernetes-style resource (`resourceAttributes`).
    Resource(ResourceAttributes),
}

/// The verb and target of a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// The Kubernetes verb (resource requests, or `kube-rbac-proxy` mapping)
    /// or the lower-cased method (non-resource requests).
    pub verb: String,
    /// What is accessed.
    pub target: Target,
}

/// The verb of a resource request, as the apiserver maps it: GET and HEAD
/// `get`, POST `create`, PUT `update`, PATCH `patch`, DELETE `delete`; any
/// other method lower-cased (it matches only a rule naming it, or `*`).
pub fn resource_verb(method: &Method) -> String {
    match *method {
        Method::GET | Method::HEAD => "get".to_owned(),
        Method::POST => "create".to_owned(),
        Method::PUT => "update".to_owned(),
        Method::PATCH => "patch".to_owned(),
        Method::DELETE => "delete".to_owned(),
        ref other => other.as_str().to_ascii_lowercase(),
    }
}

/// The verb of a non-resource request under `mapping`. HEAD is `get` either
/// way: it is a GET without the body, so a `get` rule covers it (the
/// apiserver passes `head`, which no built-in role grants; kube-rbac-proxy
/// passes an empty verb, which only `*` matches).
pub fn non_resource_verb(mapping: VerbMapping, method: &Method) -> String {
    match mapping {
        VerbMapping::KubeRbacProxy => resource_verb(method),
        VerbMapping::KubeApiserver if *method == Method::HEAD => "get".to_owned(),
        VerbMapping::KubeApiserver => method.as_str().to_ascii_lowercase(),
    }
}

/// The verb of a non-resource request under the default mapping
/// (kube-apiserver's: the lower-cased method, HEAD `get`).
pub fn verb(method: &Method) -> String {
    non_resource_verb(VerbMapping::default(), method)
}

/// What a request on a route must be allowed, and what to forward.
#[derive(Debug)]
pub struct Bound {
    /// Every check; all must allow.
    pub checks: Vec<Attributes>,
    values: Values,
}

/// The checks of a request on `route`: its resources (each rewrite value
/// in each templated one) or its path. `body`: whether it carries one.
pub fn bind(
    route: &RouteConfig,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: bool,
) -> Result<Bound, Refused> {
    let values = match &route.rewrites {
        Some(rw) => rewrite::values(rw, query, headers, body)?,
        None => Values::default(),
    };
    let checks = checks(route, method, path, &values)?;
    Ok(Bound { checks, values })
}

impl Bound {
    /// The path-and-query to forward, with the rewrite parameter and header
    /// consumed ([`rewrite::consume`]).
    pub fn consume(
        &self,
        route: &RouteConfig,
        pq: PathAndQuery,
        headers: &mut HeaderMap,
    ) -> Result<PathAndQuery, Refused> {
        rewrite::consume(route, &self.values, pq, headers)
    }
}

/// Every check of a request on `route`, all of which must allow: each of
/// its resources (with the resource verb, or the check's own), each
/// templated one once per rewrite value, duplicates dropped; or, when it has
/// none, the normalised path (with the verb the route's `verb_mapping`
/// gives). Never empty.
pub fn checks(
    route: &RouteConfig,
    method: &Method,
    path: &str,
    values: &Values,
) -> Result<Vec<Attributes>, Refused> {
    if route.resources.is_empty() {
        return Ok(vec![attributes(None, route.verb_mapping, method, path)]);
    }
    let all = values.all();
    let mut out: Vec<Attributes> = Vec::new();
    for check in &route.resources {
        let verb = check.verb.clone().unwrap_or_else(|| resource_verb(method));
        let rendered = if check.templates.is_empty() {
            vec![check.attributes.clone()]
        } else {
            all.iter()
                .map(|v| render(check, v, values))
                .collect::<Result<_, _>>()?
        };
        for r in rendered {
            let a = Attributes {
                verb: verb.clone(),
                target: Target::Resource(r),
            };
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    Ok(out)
}

/// `check` with `value` in its templated fields, each of which must then be
/// valid as the apiserver validates that field.
fn render(
    check: &ResourceCheck,
    value: &str,
    values: &Values,
) -> Result<ResourceAttributes, Refused> {
    let mut r = check.attributes.clone();
    for (field, template) in &check.templates {
        let v = template.render(value);
        if !field.accepts(&v) {
            return Err(Refused::Invalid {
                from: values.source_of(value),
                field: field.key(),
                rule: field.rule(),
            });
        }
        *field.get_mut(&mut r) = v;
    }
    Ok(r)
}

/// The first check of a request on a route without rewrites (tests).
#[cfg(test)]
pub fn for_route(route: &RouteConfig, method: &Method, path: &str) -> Attributes {
    let mut c = checks(route, method, path, &Values::default()).expect("no rewrites");
    c.remove(0)
}

/// [`for_route`] for a route with the default verb mapping.
pub fn for_request(
    resource: Option<&ResourceAttributes>,
    method: &Method,
    path: &str,
) -> Attributes {
    attributes(resource, VerbMapping::default(), method, path)
}

fn attributes(
    resource: Option<&ResourceAttributes>,
    mapping: VerbMapping,
    method: &Method,
    path: &str,
) -> Attributes {
    match resource {
        Some(r) => Attributes {
            verb: resource_verb(method),
            target: Target::Resource(r.clone()),
        },
        None => Attributes {
            verb: non_resource_verb(mapping, method),
            target: Target::NonResource {
                path: path.to_owned(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kube_rbac_proxy_mapping_gives_kubernetes_verbs_to_paths_too() {
        let route = |verb_mapping| RouteConfig {
            path_prefix: "/".into(),
            upstream: None,
            resources: vec![],
            rewrites: None,
            auth: crate::config::RouteAuth::default(),
            verb_mapping,
            upgrades: vec![],
            upgrades_on_public_paths: false,
        };
        let (krp, native) = (
            route(VerbMapping::KubeRbacProxy),
            route(VerbMapping::KubeApiserver),
        );
        for (m, want_krp, want_native) in [
            ("GET", "get", "get"),
            ("HEAD", "get", "get"),
            ("POST", "create", "post"),
            ("PUT", "update", "put"),
            ("PATCH", "patch", "patch"),
            ("DELETE", "delete", "delete"),
            ("OPTIONS", "options", "options"),
            ("PROPFIND", "propfind", "propfind"),
        ] {
            let method = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(for_route(&krp, &method, "/x").verb, want_krp, "{m}");
            assert_eq!(for_route(&native, &method, "/x").verb, want_native, "{m}");
            assert_eq!(verb(&method), want_native, "{m}");
        }
    }

    #[test]
    fn route_resource_replaces_the_path() {
        let res = ResourceAttributes {
            namespace: "monitoring".into(),
            resource: "services".into(),
            subresource: "proxy".into(),
            ..Default::default()
        };
        let a = for_request(Some(&res), &Method::GET, "/metrics");
        assert_eq!(a.target, Target::Resource(res));
        let a = for_request(None, &Method::POST, "/metrics");
        assert_eq!(a.verb, "post");
        assert_eq!(
            a.target,
            Target::NonResource {
                path: "/metrics".into()
            }
        );
    }

    #[test]
    fn non_resource_verbs_are_the_lower_cased_method_with_head_as_get() {
        for (m, want) in [
            ("GET", "get"),
            ("HEAD", "get"),
            ("POST", "post"),
            ("PUT", "put"),
            ("PATCH", "patch"),
            ("DELETE", "delete"),
            ("OPTIONS", "options"),
            ("PROPFIND", "propfind"),
        ] {
            let method = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(for_request(None, &method, "/x").verb, want, "{m}");
        }
    }

    #[test]
    fn resource_verbs_follow_the_apiserver() {
        let res = ResourceAttributes {
            resource: "services".into(),
            ..Default::default()
        };
        for (m, want) in [
            ("GET", "get"),
            ("HEAD", "get"),
            ("POST", "create"),
            ("PUT", "update"),
            ("PATCH", "patch"),
            ("DELETE", "delete"),
        ] {
            let method = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(for_request(Some(&res), &method, "/x").verb, want, "{m}");
        }
    }
}
