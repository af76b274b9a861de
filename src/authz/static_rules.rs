//! The embedded authorizer: `static.allow` rules, matched in memory (pure).
//! It only ever allows or has no opinion; denial is the chain's default.
//!
//! Rules read as RBAC rules: verbs are matched against the request's verb
//! ([`super::attributes`]: the lower-cased method on paths, the Kubernetes
//! verb on resources), and a lone `*` path (compiled as `**`) is every path.

use globset::{GlobSet, GlobSetBuilder};

use super::attributes::{Attributes, Target};
use super::{Authorizer, Decision};
use crate::BoxFuture;
use crate::backend::BackendError;
use crate::config::{AllowRule, ResourceAttributes, ResourceRule, Subject};
use crate::identity::Identity;

/// Compiled `static.allow`.
#[derive(Debug, Default)]
pub struct StaticRules {
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct Rule {
    subject: Subject,
    verbs: Vec<String>,
    paths: GlobSet,
    resources: Vec<ResourceRule>,
}

impl StaticRules {
    /// Compiles validated rules.
    pub fn new(rules: &[AllowRule]) -> Self {
        let rules = rules
            .iter()
            .map(|r| {
                let mut set = GlobSetBuilder::new();
                for g in &r.paths {
                    set.add(g.clone());
                }
                Rule {
                    subject: r.subject.clone(),
                    verbs: r.verbs.clone(),
                    // Each glob compiled on its own at config time, so the set builds.
                    paths: set.build().unwrap_or_else(|_| GlobSet::empty()),
                    resources: r.resources.clone(),
                }
            })
            .collect();
        Self { rules }
    }

    /// Whether no rules are configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether some rule allows `attrs` for `id`.
    pub fn allows(&self, id: &Identity, attrs: &Attributes) -> bool {
        self.rules.iter().any(|r| r.allows(id, attrs))
    }
}

impl Rule {
    fn allows(&self, id: &Identity, attrs: &Attributes) -> bool {
        let subject = match &self.subject {
            Subject::User(u) => u == "*" || *u == id.user(),
            Subject::Group(g) => id.groups().iter().any(|have| **have == **g),
        };
        let verb = self.verbs.iter().any(|v| v == "*" || *v == attrs.verb);
        subject
            && verb
            && match &attrs.target {
                Target::NonResource { path } => self.paths.is_match(path),
                Target::Resource(r) => self.resources.iter().any(|rule| resource_matches(rule, r)),
            }
    }
}

fn resource_matches(rule: &ResourceRule, r: &ResourceAttributes) -> bool {
    let ok = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    ok(&rule.group, &r.group)
        && ok(&rule.resource, &r.resource)
        && ok(&rule.subresource, &r.subresource)
        && ok(&rule.namespace, &r.namespace)
        && ok(&rule.name, &r.name)
}

impl Authorizer for StaticRules {
    fn authorize<'a>(
        &'a self,
        id: &'a Identity,
        attrs: &'a Attributes,
    ) -> BoxFuture<'a, Result<Decision, BackendError>> {
        let d = if self.allows(id, attrs) {
            Decision::Allow
        } else {
            Decision::NoOpinion
        };
        Box::pin(std::future::ready(Ok(d)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use http::Method;

    use super::*;
    use crate::authz::attributes::for_request;
    use crate::config::Config;
    use crate::identity::AuthMethod;

    fn rules(allow: &str) -> StaticRules {
        let yaml = format!(
            "tls: {{cert_file: c, key_file: k}}\nroutes: [{{path_prefix: /, upstream: \"http://127.0.0.1:1\"}}]\nstatic:\n  allow:\n{allow}"
        );
        StaticRules::new(&Config::from_yaml(&yaml).unwrap().static_backend.allow)
    }

    fn who(user: &str, groups: &[&str]) -> Identity {
        let groups = groups.iter().map(|g| (*g).to_owned()).collect();
        Identity::new(
            user.into(),
            None,
            groups,
            BTreeMap::new(),
            AuthMethod::Token,
        )
    }

    #[test]
    fn path_rules_match_user_or_group_verb_and_glob() {
        let r = rules(
            "    - {user: alice, verbs: [get], paths: [\"/api/*\"]}\n    - {group: ops, verbs: [\"*\"], paths: [\"/admin/**\"]}\n",
        );
        let alice = who("alice", &[]);
        let carol = who("carol", &["ops"]);
        let cases = [
            (&alice, Method::GET, "/api/x", true),
            (&alice, Method::HEAD, "/api/x", true),
            (&alice, Method::GET, "/api/x/y", false),
            (&alice, Method::POST, "/api/x", false),
            (&alice, Method::GET, "/admin/a", false),
            (&carol, Method::DELETE, "/admin/a/b/c", true),
            (&carol, Method::GET, "/api/x", false),
        ];
        for (id, m, path, want) in cases {
            let attrs = for_request(None, &m, path);
            assert_eq!(r.allows(id, &attrs), want, "{} {m} {path}", id.user());
        }
    }

    #[test]
    fn resource_rules_match_set_fields_only() {
        let r = rules(
            "    - {group: dev, verbs: [get], resources: [{resource: services, subresource: proxy, namespace: web}]}\n",
        );
        let dev = who("dave", &["dev"]);
        let mut res = ResourceAttributes {
            namespace: "web".into(),
            resource: "services".into(),
            subresource: "proxy".into(),
            name: "frontend".into(),
            ..Default::default()
        };
        assert!(r.allows(&dev, &for_request(Some(&res), &Method::GET, "/")));
        res.namespace = "kube-system".into();
        assert!(!r.allows(&dev, &for_request(Some(&res), &Method::GET, "/")));
        // A path rule never allows a resource request and vice versa.
        assert!(!r.allows(&dev, &for_request(None, &Method::GET, "/")));
    }

    #[test]
    fn a_lone_star_path_is_every_path_as_in_rbac() {
        let r = rules("    - {user: alice, verbs: [get], paths: [\"*\"]}\n");
        let alice = who("alice", &[]);
        for path in ["/", "/x", "/a/b/c", "/api/v1/namespaces/x/pods"] {
            assert!(
                r.allows(&alice, &for_request(None, &Method::GET, path)),
                "{path}"
            );
        }
    }

    #[test]
    fn a_non_resource_post_needs_verb_post_not_create() {
        let r = rules(
            "    - {user: alice, verbs: [post], paths: [\"/api/**\"]}\n    - {user: bob, verbs: [create], paths: [\"/api/**\"]}\n",
        );
        let attrs = for_request(None, &Method::POST, "/api/x");
        assert!(r.allows(&who("alice", &[]), &attrs));
        assert!(!r.allows(&who("bob", &[]), &attrs));
    }

    #[test]
    fn with_the_kube_rbac_proxy_mapping_a_path_post_needs_create() {
        let yaml = "tls: {cert_file: c, key_file: k}\nroutes: [{path_prefix: /, upstream: \"http://127.0.0.1:1\"}]\nauthorization: {verb_mapping: kube-rbac-proxy}\nstatic:\n  allow:\n    - {user: bob, verbs: [create], paths: [\"/api/**\"]}\n";
        let c = Config::from_yaml(yaml).unwrap();
        let r = StaticRules::new(&c.static_backend.allow);
        let attrs = crate::authz::attributes::for_route(&c.routes[0], &Method::POST, "/api/x");
        assert_eq!(attrs.verb, "create");
        assert!(r.allows(&who("bob", &[]), &attrs));
    }
}
