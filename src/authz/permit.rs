//! What authorization hands to forwarding.
//!
//! A [`Permit`] is the only thing [`crate::proxy`] accepts in order to
//! rewrite a request's identity headers and send it upstream, and only two
//! places can make one: [`super::Authorizers::authorize`], for an identity
//! the authorizers allowed, and [`Permit::public`], for a path configured as
//! `paths.unauthenticated`. Its fields are private, so no other code path
//! can forward a request.

use crate::authn::policy::Notice;
use crate::identity::Identity;
use crate::routes::RouteId;

/// Leave to forward one request on one route.
#[derive(Clone, Debug)]
pub struct Permit {
    route: RouteId,
    grant: Grant,
}

#[derive(Clone, Debug)]
enum Grant {
    Public,
    Granted { identity: Identity, notice: Notice },
}

/// What a [`Permit`] allows, for reading.
#[derive(Clone, Copy, Debug)]
pub enum Kind<'p> {
    /// A public path: no identity, and identity headers are stripped.
    Public,
    /// An authenticated, authorized identity.
    Granted {
        /// Who.
        identity: &'p Identity,
        /// What the response must carry.
        notice: Notice,
    },
}

impl Permit {
    /// A permit for a path that `paths.unauthenticated` makes public: it
    /// carries no identity. Only route selection calls this.
    pub(crate) fn public(route: RouteId) -> Self {
        Self {
            route,
            grant: Grant::Public,
        }
    }

    /// Made by the authorizers once `identity` is allowed.
    pub(super) fn granted(route: RouteId, identity: Identity, notice: Notice) -> Self {
        Self {
            route,
            grant: Grant::Granted { identity, notice },
        }
    }

    /// The route the permit is for.
    pub fn route(&self) -> RouteId {
        self.route
    }

    /// What it allows.
    pub fn kind(&self) -> Kind<'_> {
        match &self.grant {
            Grant::Public => Kind::Public,
            Grant::Granted { identity, notice } => Kind::Granted {
                identity,
                notice: *notice,
            },
        }
    }

    /// The identity, unless the path is public.
    pub fn identity(&self) -> Option<&Identity> {
        match &self.grant {
            Grant::Public => None,
            Grant::Granted { identity, .. } => Some(identity),
        }
    }
}
