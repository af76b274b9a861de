//! Authorization by the Kubernetes SubjectAccessReview API, cached: the one
//! authorizer certificate and token identities both converge on.
//!
//! The cache key covers the whole spec (user, uid, groups, extra, verb and
//! target); groups and extra enter it as their keyed digests, computed once
//! per identity part ([`crate::identity::Groups::digest`]). Each decision
//! keeps the identity it is about (shared with the token cache), for
//! flushing by user. `status.denied` wins over `status.allowed`. Allows are
//! kept for `allow_ttl`, everything else for `deny_ttl` (both jittered),
//! errors never.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes as SarResource, SubjectAccessReview,
    SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};
use tracing::debug;

use super::attributes::{Attributes, Target};
use super::{Authorizer, Decision};
use crate::BoxFuture;
use crate::backend::BackendError;
use crate::cache::{Key, KeyHasher, Kind, ReviewCache, jittered};
use crate::config::AccessReviewConfig;
use crate::identity::Identity;
use crate::kubernetes::ApiClient;

const BACKEND: &str = "SubjectAccessReview";
const PATH: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

/// The cached SubjectAccessReview authorizer.
pub struct AccessReviewer {
    api: Arc<ApiClient>,
    cache: ReviewCache<(Decision, Identity)>,
    keys: KeyHasher,
    allow_ttl: Duration,
    deny_ttl: Duration,
    /// `access_review.cache.jitter`.
    jitter: f64,
}

impl AccessReviewer {
    /// An authorizer calling `api` with the settings of `cfg`.
    pub fn new(api: Arc<ApiClient>, cfg: &AccessReviewConfig, keys: KeyHasher) -> Self {
        Self {
            api,
            cache: ReviewCache::build(
                Kind::Access,
                cfg.max_entries,
                cfg.freshness.refresh_ahead,
                weigh,
                |(decision, _)| matches!(decision, Decision::Allow),
            ),
            keys,
            allow_ttl: cfg.allow_ttl,
            deny_ttl: cfg.deny_ttl,
            jitter: cfg.freshness.jitter,
        }
    }

    /// The decision cache (for metrics and flushing); each decision is kept
    /// with the user it is about.
    pub fn cache(&self) -> &ReviewCache<(Decision, Identity)> {
        &self.cache
    }

    /// Drops cached decisions: all of them, or those about `user`.
    pub fn flush(&self, user: Option<&str>) {
        match user {
            None => self.cache.clear(),
            Some(u) => {
                let u = u.to_owned();
                self.cache.clear_if(move |(_, about)| about.user() == u);
            }
        }
    }
}

impl Authorizer for AccessReviewer {
    fn authorize<'a>(
        &'a self,
        id: &'a Identity,
        attrs: &'a Attributes,
    ) -> BoxFuture<'a, Result<Decision, BackendError>> {
        let key = cache_key(&self.keys, id, attrs);
        Box::pin(async move {
            let (decision, _) = self
                .cache
                .get_or_fetch(key, move || {
                    // Built only to start a review: a hit allocates nothing.
                    let spec = spec(id, attrs);
                    let (api, about) = (self.api.clone(), id.clone());
                    let (allow_ttl, deny_ttl, jitter) =
                        (self.allow_ttl, self.deny_ttl, self.jitter);
                    Box::pin(async move {
                        let decision = review(&api, spec).await?;
                        let ttl = if decision == Decision::Allow {
                            allow_ttl
                        } else {
                            deny_ttl
                        };
                        Ok(((decision, about), jittered(ttl, jitter).into()))
                    })
                })
                .await?;
            Ok(decision)
        })
    }
}

/// What a decision entry holds on its own: its reason (the identity is
/// counted by the token cache, or is a connection's).
fn weigh((decision, _): &(Decision, Identity)) -> usize {
    match decision {
        Decision::Deny(why) => 16 + why.len(),
        Decision::Allow | Decision::NoOpinion => 0,
    }
}

/// The cache key of a request: every field that goes into the spec.
pub fn cache_key(keys: &KeyHasher, id: &Identity, attrs: &Attributes) -> Key {
    let mut k = keys.builder();
    // The fingerprint covers user, uid, groups and extra, length-prefixed.
    k.part(b"sar").part(id.fingerprint().as_bytes());
    k.part(attrs.verb.as_bytes());
    match &attrs.target {
        Target::NonResource { path } => {
            k.part(b"path").part(path.as_bytes());
        }
        Target::Resource(r) => {
            k.part(b"resource");
            for f in [
                &r.namespace,
                &r.group,
                &r.version,
                &r.resource,
                &r.subresource,
                &r.name,
            ] {
                k.part(f.as_bytes());
            }
        }
    }
    k.finish()
}

/// The SubjectAccessReview spec of a request (pure).
pub fn spec(id: &Identity, attrs: &Attributes) -> SubjectAccessReviewSpec {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let (resource_attributes, non_resource_attributes) = match &attrs.target {
        Target::NonResource { path } => (
            None,
            Some(NonResourceAttributes {
                path: Some(path.clone()),
                verb: Some(attrs.verb.clone()),
            }),
        ),
        Target::Resource(r) => (
            Some(SarResource {
                namespace: opt(&r.namespace),
                group: opt(&r.group),
                version: opt(&r.version),
                resource: opt(&r.resource),
                subresource: opt(&r.subresource),
                name: opt(&r.name),
                verb: Some(attrs.verb.clone()),
                ..Default::default()
            }),
            None,
        ),
    };
    SubjectAccessReviewSpec {
        user: Some(id.user().to_owned()),
        uid: id.uid().map(str::to_owned),
        groups: Some(id.groups().to_strings()),
        extra: (!id.extra().is_empty()).then(|| id.extra().to_map()),
        resource_attributes,
        non_resource_attributes,
    }
}

/// Reads a SubjectAccessReview status (pure): denied wins over allowed.
pub fn decision(status: &SubjectAccessReviewStatus) -> Decision {
    if status.denied == Some(true) {
        Decision::Deny(crate::identity::shared_str(
            status.reason.as_deref().unwrap_or_default(),
        ))
    } else if status.allowed {
        Decision::Allow
    } else {
        Decision::NoOpinion
    }
}

async fn review(api: &ApiClient, spec: SubjectAccessReviewSpec) -> Result<Decision, BackendError> {
    let body = serde_json::to_vec(&SubjectAccessReview {
        spec,
        ..Default::default()
    })
    .map_err(|_| BackendError::BadResponse {
        backend: BACKEND,
        detail: "cannot encode the request".into(),
    })?;
    let status: SubjectAccessReviewStatus = api
        .create(
            BACKEND,
            PATH,
            "authorization.k8s.io/v1",
            "SubjectAccessReview",
            body,
        )
        .await?;
    if let Some(e) = status.evaluation_error.as_deref().filter(|e| !e.is_empty()) {
        debug!(
            evaluation_error = e,
            "SubjectAccessReview reported an evaluation error"
        );
    }
    Ok(decision(&status))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use http::Method;

    use super::*;
    use crate::authz::attributes::for_request;
    use crate::config::ResourceAttributes;
    use crate::identity::AuthMethod;

    fn alice() -> Identity {
        let extra = BTreeMap::from([("scopes".to_owned(), vec!["a".to_owned()])]);
        Identity::new(
            "alice".into(),
            Some("u1".into()),
            vec!["dev".into()],
            extra,
            AuthMethod::Mtls,
        )
    }

    #[test]
    fn spec_carries_user_uid_groups_extra_and_exactly_one_attribute_kind() {
        let s = spec(&alice(), &for_request(None, &Method::HEAD, "/metrics"));
        assert_eq!(s.user.as_deref(), Some("alice"));
        assert_eq!(s.uid.as_deref(), Some("u1"));
        assert_eq!(
            s.groups.as_deref(),
            Some(&["dev".to_owned(), "system:authenticated".to_owned()][..])
        );
        assert_eq!(s.extra.as_ref().unwrap()["scopes"], ["a"]);
        let nr = s.non_resource_attributes.unwrap();
        assert_eq!(
            (nr.path.as_deref(), nr.verb.as_deref()),
            (Some("/metrics"), Some("get"))
        );
        assert!(s.resource_attributes.is_none());

        let res = ResourceAttributes {
            namespace: "web".into(),
            resource: "services".into(),
            subresource: "proxy".into(),
            ..Default::default()
        };
        let s = spec(&alice(), &for_request(Some(&res), &Method::POST, "/x"));
        let r = s.resource_attributes.unwrap();
        assert_eq!(r.verb.as_deref(), Some("create"));
        assert_eq!(r.namespace.as_deref(), Some("web"));
        assert_eq!(r.group, None);
        assert!(s.non_resource_attributes.is_none());
    }

    #[test]
    fn denied_wins_over_allowed() {
        let st = |allowed, denied: Option<bool>| SubjectAccessReviewStatus {
            allowed,
            denied,
            reason: Some("r".into()),
            ..Default::default()
        };
        assert_eq!(decision(&st(true, None)), Decision::Allow);
        assert_eq!(decision(&st(true, Some(true))), Decision::Deny("r".into()));
        assert_eq!(decision(&st(false, Some(false))), Decision::NoOpinion);
        assert_eq!(decision(&st(false, None)), Decision::NoOpinion);
    }

    #[test]
    fn every_spec_field_changes_the_cache_key() {
        let keys = KeyHasher::random();
        let base = alice();
        let get = for_request(None, &Method::GET, "/a");
        let k = |id: &Identity, a: &Attributes| cache_key(&keys, id, a);
        let reference = k(&base, &get);
        assert_eq!(reference, k(&alice(), &get));
        let with = |uid: Option<&str>, groups: &[&str], extra: &[(&str, &[&str])]| {
            let extra = extra
                .iter()
                .map(|(k, vs)| {
                    (
                        (*k).to_owned(),
                        vs.iter().map(|v| (*v).to_owned()).collect(),
                    )
                })
                .collect();
            let groups = groups.iter().map(|g| (*g).to_owned()).collect();
            Identity::new(
                "alice".into(),
                uid.map(Into::into),
                groups,
                extra,
                AuthMethod::Mtls,
            )
        };
        let a: &[&str] = &["a"];
        assert_eq!(
            reference,
            k(&with(Some("u1"), &["dev"], &[("scopes", a)]), &get)
        );
        assert_ne!(reference, k(&with(None, &["dev"], &[("scopes", a)]), &get));
        assert_ne!(
            reference,
            k(&with(Some("u1"), &["dev", "ops"], &[("scopes", a)]), &get)
        );
        assert_ne!(
            reference,
            k(
                &with(Some("u1"), &["dev"], &[("scopes", a), ("x", &[])]),
                &get
            )
        );
        assert_ne!(
            reference,
            k(&with(Some("u1"), &["dev"], &[("scopes", &["b"])]), &get)
        );
        assert_ne!(
            reference,
            k(&with(Some("u1"), &["dev"], &[("scope", &["sa"])]), &get)
        );
        assert_ne!(
            reference,
            k(&with(Some("u1"), &["de", "v"], &[("scopes", a)]), &get)
        );
        assert_ne!(reference, k(&base, &for_request(None, &Method::POST, "/a")));
        assert_ne!(reference, k(&base, &for_request(None, &Method::GET, "/b")));
        let res = ResourceAttributes {
            resource: "a".into(),
            ..Default::default()
        };
        assert_ne!(
            reference,
            k(&base, &for_request(Some(&res), &Method::GET, "/a"))
        );
    }
}
