//! Authorization: may this identity do this? Certificate and token identities
//! take the same path. Authorizers are asked in order (static rules, then the
//! Kubernetes API); the first that allows or denies decides, and when none
//! has an opinion the answer is no.

pub mod access_review;
pub mod attributes;
pub mod permit;
pub mod rewrite;
pub mod static_rules;

use std::sync::Arc;

use crate::BoxFuture;
use crate::authn::policy::Notice;
use crate::backend::BackendError;
use crate::identity::Identity;
use crate::routes::RouteId;
use attributes::{Attributes, Target};
use permit::Permit;

/// One authorizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Explicitly denied, with the authorizer's reason (may be empty;
    /// interned, as the same few reasons come back for many requests).
    Deny(Arc<str>),
    /// Neither; the next authorizer is asked.
    NoOpinion,
}

/// A decision backend.
pub trait Authorizer: Send + Sync {
    /// Decides; `Err` when it could not (the request fails with 503).
    fn authorize<'a>(
        &'a self,
        id: &'a Identity,
        attrs: &'a Attributes,
    ) -> BoxFuture<'a, Result<Decision, BackendError>>;
}

/// Why a request is not authorized.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Denied, or no authorizer allowed it.
    #[error("user {user:?} may not {verb} {target}{}", reason_suffix(.reason))]
    Denied {
        /// Who asked.
        user: String,
        /// The verb.
        verb: String,
        /// `path "/x"` or `resource "services/proxy" in namespace "ns"`.
        target: String,
        /// The authorizer's reason, if it gave one.
        reason: String,
    },
    /// An authorizer could not decide.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

/// Describes a target for messages, e.g. `path "/metrics"`.
pub fn describe(target: &Target) -> String {
    match target {
        Target::NonResource { path } => format!("path {path:?}"),
        Target::Resource(r) => {
            let mut s = format!("resource {:?}", r.resource);
            if !r.subresource.is_empty() {
                s = format!("resource \"{}/{}\"", r.resource, r.subresource);
            }
            if !r.group.is_empty() {
                s.push_str(&format!(" in group {:?}", r.group));
            }
            if !r.namespace.is_empty() {
                s.push_str(&format!(" in namespace {:?}", r.namespace));
            }
            s
        }
    }
}

/// The configured authorizers, in order.
#[derive(Default)]
pub struct Authorizers {
    chain: Vec<Arc<dyn Authorizer>>,
}

impl Authorizers {
    /// Authorizers are asked in the order given.
    pub fn new(chain: Vec<Arc<dyn Authorizer>>) -> Self {
        Self { chain }
    }

    /// A permit for `route` only when some authorizer allows before any
    /// denies. `notice` is what admission asks the response to carry.
    pub async fn authorize(
        &self,
        route: RouteId,
        id: &Identity,
        notice: Notice,
        attrs: &Attributes,
    ) -> Result<Permit, Error> {
        self.authorize_all(route, id, notice, std::slice::from_ref(attrs))
            .await
    }

    /// A permit for `route` only when every check is allowed, each decided
    /// (and cached) on its own, in order; the first refusal decides, and
    /// no check is no permit.
    pub async fn authorize_all(
        &self,
        route: RouteId,
        id: &Identity,
        notice: Notice,
        checks: &[Attributes],
    ) -> Result<Permit, Error> {
        if checks.is_empty() {
            return Err(Error::Denied {
                user: id.user().to_owned(),
                verb: String::new(),
                target: "nothing (no check)".into(),
                reason: String::new(),
            });
        }
        for attrs in checks {
            self.decide(id, attrs).await?;
        }
        Ok(Permit::granted(route, id.clone(), notice))
    }

    /// `Ok` when some authorizer allows `attrs` before any denies.
    async fn decide(&self, id: &Identity, attrs: &Attributes) -> Result<(), Error> {
        let mut reason = String::new();
        for a in &self.chain {
            match a.authorize(id, attrs).await? {
                Decision::Allow => return Ok(()),
                Decision::Deny(why) => {
                    reason = why.to_string();
                    break;
                }
                Decision::NoOpinion => {}
            }
        }
        Err(Error::Denied {
            user: id.user().to_owned(),
            verb: attrs.verb.clone(),
            target: describe(&attrs.target),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::identity::AuthMethod;

    struct Fixed(Result<Decision, BackendError>);

    impl Authorizer for Fixed {
        fn authorize<'a>(
            &'a self,
            _: &'a Identity,
            _: &'a Attributes,
        ) -> BoxFuture<'a, Result<Decision, BackendError>> {
            Box::pin(std::future::ready(self.0.clone()))
        }
    }

    fn chain(ds: Vec<Result<Decision, BackendError>>) -> Authorizers {
        Authorizers::new(
            ds.into_iter()
                .map(|d| Arc::new(Fixed(d)) as Arc<dyn Authorizer>)
                .collect(),
        )
    }

    #[tokio::test]
    async fn first_opinion_decides_and_silence_denies() {
        let id = Identity::new(
            "alice".into(),
            None,
            vec![],
            BTreeMap::new(),
            AuthMethod::Mtls,
        );
        let attrs = attributes::for_request(None, &http::Method::GET, "/x");
        let route = RouteId::new(3);
        let decide = |ds| {
            let (id, attrs) = (id.clone(), attrs.clone());
            async move { chain(ds).authorize(route, &id, Notice::None, &attrs).await }
        };
        let down = BackendError::Timeout {
            backend: "SubjectAccessReview",
        };
        let no = || Ok(Decision::NoOpinion);
        let allow = || Ok(Decision::Allow);
        let deny = || Ok(Decision::Deny("nope".into()));
        let permit = decide(vec![no(), allow()]).await.unwrap();
        assert_eq!(permit.route(), route);
        assert_eq!(permit.identity().unwrap().user(), "alice");
        assert!(decide(vec![allow(), Err(down.clone())]).await.is_ok());
        let e = decide(vec![deny(), allow()]).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "user \"alice\" may not get path \"/x\": nope"
        );
        assert!(matches!(
            decide(vec![no()]).await,
            Err(Error::Denied { .. })
        ));
        assert!(matches!(decide(vec![]).await, Err(Error::Denied { .. })));
        assert_eq!(
            decide(vec![no(), Err(down.clone())]).await.unwrap_err(),
            Error::Backend(down)
        );
    }
}
