//! What a request asks to do, in SubjectAccessReview terms (pure).

use http::Method;

use crate::config::ResourceAttributes;

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
    /// `get`, `create`, `update`, `patch`, `delete`, or the lower-cased method.
    pub verb: String,
    /// What is accessed.
    pub target: Target,
}

/// Maps an HTTP method to a Kubernetes verb, as the apiserver does:
/// GET and HEAD are `get` (kube-rbac-proxy's `*` for HEAD is a known bug).
pub fn verb(method: &Method) -> String {
    match *method {
        Method::GET | Method::HEAD => "get".to_owned(),
        Method::POST => "create".to_owned(),
        Method::PUT => "update".to_owned(),
        Method::PATCH => "patch".to_owned(),
        Method::DELETE => "delete".to_owned(),
        ref other => other.as_str().to_ascii_lowercase(),
    }
}

/// The attributes of a request: the route's resource when it has one,
/// otherwise the normalised path.
pub fn for_request(
    resource: Option<&ResourceAttributes>,
    method: &Method,
    path: &str,
) -> Attributes {
    let target = match resource {
        Some(r) => Target::Resource(r.clone()),
        None => Target::NonResource {
            path: path.to_owned(),
        },
    };
    Attributes {
        verb: verb(method),
        target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_map_to_kubernetes_verbs() {
        let cases = [
            ("GET", "get"),
            ("HEAD", "get"),
            ("POST", "create"),
            ("PUT", "update"),
            ("PATCH", "patch"),
            ("DELETE", "delete"),
            ("OPTIONS", "options"),
            ("PROPFIND", "propfind"),
        ];
        for (m, want) in cases {
            assert_eq!(
                verb(&Method::from_bytes(m.as_bytes()).unwrap()),
                want,
                "{m}"
            );
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
        assert_eq!(a.verb, "create");
        assert_eq!(
            a.target,
            Target::NonResource {
                path: "/metrics".into()
            }
        );
    }
}
